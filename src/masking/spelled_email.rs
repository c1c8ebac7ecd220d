//! E-mail addresses spelled out to get past harvesters and filters: `ann [at] example
//! [dot] com`, `ann(at)example.com`, `ann.lee {at} mail (dot) example (dot) org`. Found
//! from the bracketed `at` (or `@`) that no other text writes, then read both ways.

use super::bounds;
use super::contact::is_top_level;
use super::kinds::{Builtin, Found};
use super::triggers::{is_blank, is_local_byte};

/// The bracket pairs an `at` or a `dot` is spelled between.
const BRACKETS: [(u8, u8); 4] = [(b'[', b']'), (b'(', b')'), (b'{', b'}'), (b'<', b'>')];

/// Longest local part and domain read, in bytes (RFC 5321's limits).
const LOCAL_MAX: usize = 64;
const DOMAIN_MAX: usize = 255;

/// Appends the spelled addresses of `text` to `found`: one `memchr` pass for the
/// closing brackets (`]`, `)`, `}`), one for `>`, each checked for the `at` before it.
/// A packed literal search for the markers cost some 2 300 instructions a request on
/// the masking bench (a case-blind automaton, 33 000); these passes cost a fraction of
/// that, as brackets are few in prose.
pub fn find(text: &str, found: &mut Vec<Found>) {
    let bytes = text.as_bytes();
    let closers = memchr::memchr3_iter(b']', b')', b'}', bytes);
    for close in closers.chain(memchr::memchr_iter(b'>', bytes)) {
        let Some(marker) = marker_before(bytes, close) else {
            continue;
        };
        let (Some(start), Some(end)) = (local_start(text, marker), domain_end(text, close + 1))
        else {
            continue;
        };
        found.push(Found {
            start,
            end,
            kind: Builtin::EmailAddress,
            by_context: false,
        });
    }
}

/// Where the spelled `@` whose closing bracket is at `close` starts: `[at]`, `(at)`,
/// `{at}` or `<at>` (written `at`, `AT` or `At`, a blank allowed inside each bracket),
/// or `@` between brackets. The brackets are what no prose or code writes around the
/// word `at` (`(at least`, `[at index]` have no bracket right after it).
fn marker_before(bytes: &[u8], close: usize) -> Option<usize> {
    let (open, _) = BRACKETS.into_iter().find(|&(_, c)| c == bytes[close])?;
    let mut at = close;
    if at > 0 && is_blank(bytes[at - 1]) {
        at -= 1;
    }
    if at >= 1 && bytes[at - 1] == b'@' {
        at -= 1;
    } else if at >= 2 && matches!(&bytes[at - 2..at], b"at" | b"AT" | b"At") {
        at -= 2;
    } else {
        return None;
    }
    if at > 0 && is_blank(bytes[at - 1]) {
        at -= 1;
    }
    // Lazily: `at - 1` overflows at the text's start (the fuzzer's `at)` there).
    (at > 0 && bytes[at - 1] == open).then(|| at - 1)
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// Where the local part before the marker at `marker` starts: blanks, then a run of
/// local-part bytes and spelled dots (`john [dot] smith`), starting at a word's start.
fn local_start(text: &str, marker: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = skip_blanks_back(bytes, marker);
    let end = at;
    loop {
        while at > 0 && end - at < LOCAL_MAX && is_local_byte(bytes[at - 1]) {
            at -= 1;
        }
        match spelled_dot_before(bytes, at) {
            Some(dot) if dot > 0 && is_local_byte(bytes[dot - 1]) => at = dot,
            _ => break,
        }
    }
    let local = &bytes[at..end];
    // Chinese, Japanese and the like may stand right before it (`联系ann(at)...`).
    let starts_word = bounds::before(text, at).is_none_or(|c| !bounds::is_letter_or_digit(c));
    (starts_word
        && !local.is_empty()
        && end - at <= LOCAL_MAX
        && local.iter().any(u8::is_ascii_alphanumeric)
        && !local.starts_with(b".")
        && !local.ends_with(b"."))
    .then_some(at)
}

/// Where the domain after the marker ending at `from` ends: labels joined by dots,
/// spelled dots or the word `dot` between blanks, the last all letters (two or more),
/// not followed by a letter or digit.
fn domain_end(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = skip_blanks(bytes, from);
    let start = at;
    let mut labels = 0;
    let mut end = None;
    loop {
        let label_start = at;
        while at < bytes.len() && is_label_byte(bytes[at]) {
            at += 1;
        }
        let label = &bytes[label_start..at];
        if label.is_empty() || label[0] == b'-' || label[label.len() - 1] == b'-' {
            break;
        }
        labels += 1;
        if labels >= 2 && is_top_level(label) {
            end = Some(at);
        }
        match dot_after(bytes, at) {
            Some(next) if next - start <= DOMAIN_MAX => at = next,
            _ => break,
        }
    }
    let end = end?;
    bounds::after(text, end)
        .is_none_or(|c| !bounds::is_letter_or_digit(c))
        .then_some(end)
}

/// Past a dot between two labels at `at`: `.`, or a spelled dot with optional blanks
/// around it, or the word `dot` between blanks; followed by a label byte.
fn dot_after(bytes: &[u8], at: usize) -> Option<usize> {
    let next = if bytes.get(at) == Some(&b'.') {
        at + 1
    } else {
        let word = skip_blanks(bytes, at);
        let rest = &bytes[word..];
        if let Some(len) = spelled_dot(rest) {
            skip_blanks(bytes, word + len)
        } else if word > at
            && rest.len() > 4
            && rest[..3].eq_ignore_ascii_case(b"dot")
            && is_blank(rest[3])
        {
            skip_blanks(bytes, word + 3)
        } else {
            return None;
        }
    };
    bytes
        .get(next)
        .is_some_and(|&b| b.is_ascii_alphanumeric())
        .then_some(next)
}

/// The length of the spelled dot `rest` starts with: `dot` in any case between a pair
/// of brackets, a blank allowed inside each (`[dot]`, `( DOT )`).
fn spelled_dot(rest: &[u8]) -> Option<usize> {
    let first = *rest.first()?;
    let (_, close) = BRACKETS.into_iter().find(|&(o, _)| o == first)?;
    let mut at = 1;
    if rest.get(at).copied().is_some_and(is_blank) {
        at += 1;
    }
    if !rest.get(at..at + 3)?.eq_ignore_ascii_case(b"dot") {
        return None;
    }
    at += 3;
    if rest.get(at).copied().is_some_and(is_blank) {
        at += 1;
    }
    (rest.get(at) == Some(&close)).then_some(at + 1)
}

/// Where a spelled dot (with optional blanks around it) ending at `at` starts.
fn spelled_dot_before(bytes: &[u8], at: usize) -> Option<usize> {
    let end = skip_blanks_back(bytes, at);
    // A spelled dot is five to seven bytes long.
    (5..=7).find_map(|len| {
        let start = end.checked_sub(len)?;
        (spelled_dot(&bytes[start..end]) == Some(len)).then(|| skip_blanks_back(bytes, start))
    })
}

/// At most two blanks: a spelled address is written with one or none.
fn skip_blanks(bytes: &[u8], mut at: usize) -> usize {
    for _ in 0..2 {
        if bytes.get(at).copied().is_some_and(is_blank) {
            at += 1;
        }
    }
    at
}

fn skip_blanks_back(bytes: &[u8], mut at: usize) -> usize {
    for _ in 0..2 {
        if at > 0 && is_blank(bytes[at - 1]) {
            at -= 1;
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spelled(text: &str) -> Vec<&str> {
        let mut found = Vec::new();
        find(text, &mut found);
        found.iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn spelled_addresses_are_found_whole() {
        for (text, address) in [
            (
                "mail ann [at] example [dot] com today",
                "ann [at] example [dot] com",
            ),
            ("ann(at)example.com", "ann(at)example.com"),
            (
                "ann.lee {AT} mail (dot) example (dot) org.",
                "ann.lee {AT} mail (dot) example (dot) org",
            ),
            (
                "john [dot] smith [at] gmail [dot] com",
                "john [dot] smith [at] gmail [dot] com",
            ),
            (
                "reach me: bob [at] example dot co dot uk, thanks",
                "bob [at] example dot co dot uk",
            ),
            ("x_y+tag [@] corp.example.io", "x_y+tag [@] corp.example.io"),
            ("ann< at >example<dot>de", "ann< at >example<dot>de"),
            (
                "Ann [ AT ] Example [ DOT ] COM",
                "Ann [ AT ] Example [ DOT ] COM",
            ),
            ("联系ann(at)example.com谢谢", "ann(at)example.com"),
        ] {
            assert_eq!(spelled(text), [address], "{text}");
        }
    }

    #[test]
    fn brackets_around_at_in_other_text_are_no_address() {
        for text in [
            // No domain with a top level after it.
            "see the value [at] index 3",
            "the [at] sign",
            "meet (at) noon",
            "arr[at] = 1",
            // No local part before it.
            "[at] example.com",
            "(at) example [dot] com",
            // A top level with a digit, or a word going on after it.
            "ann [at] example [dot] c0m",
            "ann [at] example.comfy2",
            // One label only.
            "ann [at] localhost",
            // A marker's closing half at the text's start (found by the fuzzer: the
            // opening bracket's place was computed before it was known to exist).
            "at)mail.example.org",
            "@]example.org",
            " at ]x.org",
            // Inside a word of a script that writes spaces.
            "éann [at] example.com",
            "ann [at] example.comé",
            // `dot` without blanks is a word's part.
            "ann [at] exampledotcom",
        ] {
            assert_eq!(spelled(text), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn each_marker_and_dot_is_read() {
        let markers = [
            "[at]", "[AT]", "(At)", "{at}", "<at>", "[ at ]", "( AT )", "{ at }", "< at >", "[@]",
            "(@)",
        ];
        for marker in markers {
            for dot in [".", "[dot]", "( dot )", " {DOT} ", "<dot >", " dot "] {
                let text = format!("ann{marker}example{dot}org");
                assert_eq!(spelled(&text), [text.as_str()], "{marker} {dot}");
            }
        }
        // Brackets that do not pair are no dot.
        assert_eq!(spelled("ann [at] example [dot) org"), Vec::<&str>::new());
    }
}
