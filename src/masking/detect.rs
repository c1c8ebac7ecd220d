//! The built-in detectors in one walk over the text: candidate shapes (one pattern each,
//! in priority order) are found where they start, literal-prefixed ones from their
//! literals (`literals`), the others from a trigger byte (`triggers`), and each is
//! confirmed by its family's validator. Random tokens and lines of key material
//! come from a loop over token runs after it.

use std::cell::Cell;

use aho_corasick::{AhoCorasick, MatchKind};

use super::digit_run::DigitRun;
use super::kinds::{Builtin, Found};
use super::shapes::{PREFIXES, SHAPES, Shape, is_literal};
use super::triggers::{Candidate, KnownRuns};
use super::{
    bounds, command_flags, contact, finance, literals, national_id, network, secrets, triggers,
};

thread_local! {
    /// The candidates of the text being walked (see `Detectors::find_shapes`).
    static CANDIDATES: Cell<Vec<Candidate>> = const { Cell::new(Vec::new()) };
    /// The digits of the number being checked.
    static DIGITS: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The compiled built-in detectors.
pub struct Detectors {
    /// The literal-prefixed shapes, in priority order.
    literal_shapes: Vec<Shape>,
    /// Per literal shape, the bytes its matches start with.
    literal_starts: Vec<[bool; 256]>,
    /// Every literal the literal-prefixed shapes' matches start with (`PREFIXES`).
    prefixes: Prefixes,
    /// Per pattern of `prefixes`, its shape.
    prefix_shapes: Vec<Shape>,
    /// [`PUNCTUATION_LITERALS`].
    punctuation: Prefixes,
}

impl std::fmt::Debug for Detectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detectors").finish_non_exhaustive()
    }
}

impl Default for Detectors {
    fn default() -> Self {
        Detectors::new()
    }
}

impl Detectors {
    pub fn new() -> Detectors {
        let literal_shapes: Vec<Shape> = SHAPES
            .iter()
            .map(|(shape, _)| *shape)
            .filter(|&shape| is_literal(shape))
            .collect();
        let prefixes = Prefixes::new(PREFIXES.iter().flat_map(|(_, literals)| literals.iter()));
        let prefix_shapes = PREFIXES
            .iter()
            .flat_map(|(shape, literals)| literals.iter().map(|_| *shape))
            .collect();
        Detectors {
            literal_starts: literal_shapes.iter().map(|&s| start_bytes(s)).collect(),
            literal_shapes,
            prefixes,
            prefix_shapes,
            punctuation: Prefixes::new(PUNCTUATION_LITERALS.iter()),
        }
    }

    /// Appends the values found in `text`, in order and not overlapping.
    ///
    /// Inlined into its one caller, `Masker::find`: left out of line there since the
    /// caller reads folded text too, with its own loops out of line in turn, it cost
    /// ~140 instructions a request more on the masking bench.
    #[inline(always)]
    pub fn find(&self, text: &str, out: &mut Vec<Found>) {
        let first = out.len();
        self.find_shapes(text, out);
        random_tokens(text, out, first);
        self.punctuated_values(text, out, first);
    }

    /// The walk over the shapes: at each place one starts, leftmost first, the shapes
    /// that match there are confirmed in priority order (their order in `SHAPES`); the
    /// first value confirmed is taken and the walk goes on after it. A place where
    /// shapes matched but none was confirmed moves the walk past its word: a value
    /// does not start inside one.
    fn find_shapes(&self, text: &str, out: &mut Vec<Found>) {
        // The thread's candidate list, reused: a text costs no allocation once the
        // thread has seen one as long.
        let mut candidates = CANDIDATES.take();
        let mut digits = DIGITS.take();
        candidates.clear();
        self.walk(text, &mut candidates, &mut digits, out);
        CANDIDATES.set(candidates);
        DIGITS.set(digits);
    }

    /// Out of line: inlined into the masker's `find` (as the compiler chose once its
    /// callees grew), it cost some 1 100 instructions a request on the masking bench
    /// (86 119 against 85 014, `scripts/bench-instructions`, route `masked`).
    #[inline(never)]
    fn walk(
        &self,
        text: &str,
        candidates: &mut Vec<Candidate>,
        digits: &mut Vec<u8>,
        out: &mut Vec<Found>,
    ) {
        let bytes = text.as_bytes();
        triggers::candidates(bytes, candidates);
        candidates.sort_unstable_by_key(|c| (c.start, c.shape as u8));
        let mut next_candidate = 0;
        // The next literal match at or after `at`: (start, end, shape).
        // The runs the literals' reads found: a literal repeated inside its own run
        // (`sk-sk-sk-...`) reads it once, not once from each.
        let mut known = KnownRuns::default();
        let mut literal = self.literal_from(bytes, 0, &mut known);
        let mut at = 0;
        // Where the last value ended: a footer's key material is not taken back past it.
        let mut floor = 0;
        while at < bytes.len() {
            if literal.is_some_and(|(start, _, _)| start < at) {
                literal = self.literal_from(bytes, at, &mut known);
            }
            // A candidate whose trigger the walk has passed starts nothing any more; one
            // that began behind the walk starts where the walk is.
            while candidates
                .get(next_candidate)
                .is_some_and(|c| c.anchor < at)
            {
                next_candidate += 1;
            }
            let triggered_start = candidates.get(next_candidate).map(|c| c.start.max(at));
            let start = match (triggered_start, literal) {
                (None, None) => break,
                (Some(t), None) => t,
                (None, Some((l, _, _))) => l,
                (Some(t), Some((l, _, _))) => t.min(l),
            };
            // The shapes that may start here, as a bit set in priority order, and the
            // ends already known of their matches here.
            let mut shapes = 0u32;
            let mut ends = [None; SHAPES.len()];
            while let Some(c) = candidates.get(next_candidate) {
                if c.anchor < at {
                    next_candidate += 1;
                    continue;
                }
                if c.start.max(at) != start {
                    break;
                }
                shapes |= 1 << c.shape as u32;
                // The end read with it holds unless the walk moved the start up.
                if c.start == start {
                    ends[c.shape as usize] = Some(c.end);
                }
                next_candidate += 1;
            }
            if let Some((l, end, shape)) = literal
                && l == start
            {
                shapes |= 1 << shape as u32;
                ends[shape as usize] = Some(end);
                // Another literal shape may match here too (tried if this one is not
                // confirmed).
                let byte = usize::from(bytes[start]);
                for (&other, starts) in self.literal_shapes.iter().zip(&self.literal_starts) {
                    if other as u8 > shape as u8 && starts[byte] {
                        shapes |= 1 << other as u32;
                    }
                }
            }
            let mut matched = false;
            let mut hit = None;
            while shapes != 0 {
                let shape = SHAPES[shapes.trailing_zeros() as usize].0;
                shapes &= shapes - 1;
                let end = ends[shape as usize].or_else(|| {
                    if is_literal(shape) {
                        literals::end_of(shape, bytes, start, &mut known)
                    } else {
                        triggers::end_of(shape, bytes, start, &mut known)
                    }
                });
                let Some(end) = end else {
                    continue;
                };
                matched = true;
                hit = confirm(shape, text, start, end, floor, digits);
                if hit.is_some() {
                    break;
                }
            }
            match hit {
                // A value widened back into the one before it (an e-mail's local part)
                // starts where that one ends: never dropped, never overlapping.
                Some(mut found) if found.end > floor.max(found.start) => {
                    found.start = found.start.max(floor);
                    floor = found.end;
                    at = found.end.max(start + 1);
                    out.push(found);
                }
                // Nothing matched here (a candidate moved up to the walk): the walk
                // goes on from here without those candidates.
                _ if !matched => at = at.max(start),
                _ => {
                    let mut next = start + 1;
                    while next < bytes.len()
                        && bytes[next].is_ascii_alphanumeric()
                        && bytes[start].is_ascii_alphanumeric()
                    {
                        next += 1;
                    }
                    at = next;
                }
            }
        }
    }

    /// The leftmost match of a literal-prefixed shape at or after `from`.
    ///
    /// Every such match starts with one of `PREFIXES`: the literals are found first
    /// (a SIMD search), and the shape the literal names is read by hand there. Only one
    /// literal can start at a place (none is a prefix of another), so its shape is the
    /// only literal shape that can match there.
    fn literal_from(
        &self,
        bytes: &[u8],
        from: usize,
        known: &mut KnownRuns,
    ) -> Option<(usize, usize, Shape)> {
        let mut at = from;
        loop {
            let (start, pattern) = self.prefixes.find(bytes, at)?;
            let shape = self.prefix_shapes[pattern];
            if let Some(end) = literals::end_of(shape, bytes, start, known) {
                return Some((start, end, shape));
            }
            at = start + 1;
        }
    }
}

/// The search for the literals: `aho-corasick`'s packed searcher (Teddy) on its own,
/// which reports the literal itself, where the `AhoCorasick` automaton behind it ran
/// again from each place Teddy flagged. No literal is the head of another, so at most
/// one matches at a place and leftmost-first is the only order there is.
enum Prefixes {
    Packed(aho_corasick::packed::Searcher),
    /// Where no packed searcher can be built (a target without Teddy).
    Automaton(AhoCorasick),
}

impl Prefixes {
    fn new<'a>(literals: impl Iterator<Item = &'a &'static str> + Clone) -> Prefixes {
        let mut config = aho_corasick::packed::Config::new();
        config.match_kind(aho_corasick::packed::MatchKind::LeftmostFirst);
        match config.builder().extend(literals.clone()).build() {
            Some(searcher) => Prefixes::Packed(searcher),
            None => Prefixes::automaton(literals),
        }
    }

    fn automaton<'a>(literals: impl Iterator<Item = &'a &'static str>) -> Prefixes {
        Prefixes::Automaton(
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(literals)
                .expect("the literal prefixes compile"),
        )
    }

    /// The leftmost literal at or after `from`: its start and its index.
    fn find(&self, bytes: &[u8], from: usize) -> Option<(usize, usize)> {
        match self {
            Prefixes::Packed(searcher) => searcher
                .find_in(bytes, aho_corasick::Span::from(from..bytes.len()))
                .map(|m| (m.start(), m.pattern().as_usize())),
            Prefixes::Automaton(automaton) => automaton
                .find(aho_corasick::Input::new(bytes).span(from..bytes.len()))
                .map(|m| (m.start(), m.pattern().as_usize())),
        }
    }
}

fn confirm(
    shape: Shape,
    text: &str,
    start: usize,
    end: usize,
    floor: usize,
    digits: &mut Vec<u8>,
) -> Option<Found> {
    let with = |span: Option<(usize, usize)>, kind: Builtin| {
        span.map(|(start, end)| Found {
            start,
            end,
            kind,
            by_context: false,
        })
    };
    match shape {
        Shape::PemBegin => secrets::pem_block(text, start, end),
        Shape::PemEnd => secrets::pem_footer(text, start, end, floor),
        Shape::UrlPassword => with(
            network::url_password(text, start, end),
            Builtin::UrlPassword,
        ),
        Shape::Jwt => secrets::jwt(text, start, end),
        Shape::Bearer => secrets::bearer(text, start, end),
        Shape::Basic => secrets::basic(text, start, end),
        Shape::Prefixed => secrets::prefixed(text, start, end),
        Shape::AwsKeyId => secrets::aws_key_id(text, start, end),
        Shape::Assigned => secrets::assigned(text, start, end),
        Shape::QuerySecret => secrets::query_secret(text, start, end),
        Shape::Password => secrets::password(text, start, end),
        Shape::UserPassword => secrets::user_password(text, start, end),
        Shape::ProsePassword => secrets::prose_password(text, start, end),
        Shape::Email => contact::email(text, start, end).map(|(start, end)| {
            secrets::url_user_key(text, start, end).unwrap_or(Found {
                start,
                end,
                kind: Builtin::EmailAddress,
                by_context: false,
            })
        }),
        Shape::Iban => with(
            finance::iban(text, start).map(|e| (start, e)),
            Builtin::IbanCode,
        ),
        Shape::Ipv6 => with(network::ipv6(text, start, end), Builtin::IpAddress),
        Shape::Ipv4 => with(network::ipv4(text, start, end), Builtin::IpAddress),
        Shape::Number => number(text, start, end, digits),
    }
}

/// The bytes of a token run: letters, digits, `_ + / -`.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'+' | b'/' | b'-');
        b += 1;
    }
    table
};

/// Token runs outside the values already found: random-looking tokens of 32+
/// characters (opaque bearer tokens, AWS secret keys, session keys), keys after a
/// key-like word, and whole lines of 64 or 70 base64 characters (key material whose
/// header is in another piece). A plain loop over the runs rather than regex patterns: a
/// `{32,}` counter starting in every word would cost the lazy DFA most of its time.
fn random_tokens(text: &str, found: &mut Vec<Found>, first: usize) {
    const MIN: usize = 32;
    let bytes = text.as_bytes();
    let mut extra = Vec::new();
    let mut next_found = first;
    // `i` is 0 or just past a byte that is not a token byte, so no run starts before it
    // and goes on past it. A run of MIN bytes starting at or after `i` starts after the
    // last byte of `i..i + MIN` that is not a token byte: one block test moves `i` past
    // it, most of a block in prose, and a block of token bytes alone is a run from `i`.
    let mut i = 0;
    while let Some(window) = bytes.get(i..).and_then(|rest| rest.first_chunk::<MIN>()) {
        if let Some(last) = last_non_token(window) {
            i += last + 1;
            // The steps land on one of a Discord token's two dots: the token's bytes that
            // are no token bytes (and those just around it) are less than 32 apart, and
            // each step lands on the last such byte of the next 32.
            if bytes[i - 1] == b'.'
                && let Some(token) = secrets::discord_token(text, i - 1)
                && !clashes(&found[first..], &token)
            {
                i = token.end;
                extra.push(token);
            }
            continue;
        }
        let start = i;
        let mut run_end = i + MIN;
        while run_end < bytes.len() && TOKEN_BYTES[usize::from(bytes[run_end])] {
            run_end += 1;
        }
        // Base64 padding belongs to the token.
        let mut end = run_end;
        while end < bytes.len() && bytes[end] == b'=' {
            end += 1;
        }
        while next_found < found.len() && found[next_found].end <= start {
            next_found += 1;
        }
        // A run through a value already found (often a long key or JWT) is not one, nor
        // a token that goes on past its run (an Atlassian token's checksum) into one.
        let reaches_found = |to: usize| next_found < found.len() && found[next_found].start < to;
        if !reaches_found(end)
            && let Some(token) = token_run(text, start, end)
            && !reaches_found(token.end)
        {
            extra.push(token);
        }
        i = run_end + 1;
    }
    take_in(found, first, extra);
}

/// The literals values found from punctuation start at, which the candidate scan does
/// not stop at (it stops in `0x30..=0x40` only): a flag that may take a password (`-p`,
/// `-a`, `-k`; `--password` at its second `-`), a percent-encoded `@`, and where a
/// command's password is a word, not a flag's value: `htpasswd`'s name and the `\\` of
/// `net use`'s share. With a two-byte fingerprint each and eight literals at most (a
/// bucket each), a literal costs the search only where its two bytes stand: the last
/// three cost the search 178 631 instructions on the corpus (0.18% of `junction mask`'s;
/// `htpasswd`, whose `ht` is common, most). `&#`: an `@` as HTML's character reference;
/// `</`: the closing tag of an XML element named as a password or a key.
const PUNCTUATION_LITERALS: [&str; 8] = ["-p", "-a", "%40", "-k", "htpasswd", "\\\\", "&#", "</"];

impl Detectors {
    /// Values found from punctuation, outside the values already found: passwords
    /// after a tool's flag (`mysql -pS3cret`) or in its words (`htpasswd -b`, `net use`)
    /// and e-mail addresses whose `@` is percent-encoded in a URL
    /// (`email=john%40example.com`). One packed search for
    /// [`PUNCTUATION_LITERALS`], 2% of `junction mask`'s instructions on the corpus;
    /// a `memchr3` for `-`, `%` and `.` (Discord tokens, found by `random_tokens` now)
    /// stopped at every hyphen and full stop of prose, some 120 instructions each
    /// (5.9%), and a vectorised block test of those places cost 3.9%.
    fn punctuated_values(&self, text: &str, found: &mut Vec<Found>, first: usize) {
        let bytes = text.as_bytes();
        let mut extra: Vec<Found> = Vec::new();
        let mut from = 0;
        while let Some((at, _)) = self.punctuation.find(bytes, from) {
            from = at + 1;
            let value = match bytes[at] {
                b'%' | b'&' => contact::encoded_email(text, at).map(|(start, end)| Found {
                    start,
                    end,
                    kind: Builtin::EmailAddress,
                    by_context: false,
                }),
                b'h' => command_flags::htpasswd(text, at),
                b'<' => secrets::xml_element_value(text, at),
                b'\\' => command_flags::net_use(text, at),
                // `--password` and `--pass` are found at their second `-`.
                _ if at > 0 && bytes[at - 1] == b'-' => command_flags::password(text, at - 1),
                _ => command_flags::password(text, at),
            };
            let Some(value) = value else {
                continue;
            };
            let after_last = extra.last().is_none_or(|f: &Found| f.end <= value.start);
            from = from.max(value.end);
            if after_last && !clashes(&found[first..], &value) {
                extra.push(value);
            }
        }
        take_in(found, first, extra);
    }
}

/// Whether `value` overlaps a value found already, other than one wholly inside it that
/// it may take in (a number inside a password, a Discord token assigned to a key-like
/// name and taken whole by that); nothing is taken into an e-mail address.
fn clashes(found: &[Found], value: &Found) -> bool {
    let widens = value.kind != Builtin::EmailAddress;
    found.iter().any(|f| {
        f.start < value.end
            && value.start < f.end
            && !(widens && value.start <= f.start && f.end <= value.end)
    })
}

/// Values a later pass found (`extra`, none clashing) put among this text's
/// (`found[first..]`) in order of their starts, taking the places of those inside them.
fn take_in(found: &mut Vec<Found>, first: usize, extra: Vec<Found>) {
    if extra.is_empty() {
        return;
    }
    let mut kept = first;
    for at in first..found.len() {
        let f = found[at];
        if !extra
            .iter()
            .any(|value| value.start <= f.start && f.end <= value.end)
        {
            found[kept] = f;
            kept += 1;
        }
    }
    found.truncate(kept);
    found.extend(extra);
    found[first..].sort_by_key(|f| f.start);
}

/// What a token run of 32+ bytes at `start..end` is, if anything: a key of a short
/// prefix and hex (Twilio's `SK`, Mailgun's `key-`: the loop visits every run of their
/// length from its first byte, so they cost no literal in the packed search), a line of
/// key material, a random-looking token, or a key after a key-like word.
fn token_run(text: &str, start: usize, end: usize) -> Option<Found> {
    if matches!(end - start, 34 | 36 | 39)
        && let Some(key) = secrets::short_prefixed_hex_key(text, start, end)
    {
        return Some(key);
    }
    secrets::pem_line(text, start, end)
        .or_else(|| secrets::random_token(text, start, end))
        .or_else(|| secrets::key_after_key_word(text, start, end))
        .or_else(|| secrets::atlassian_token(text, start, end))
        .or_else(|| secrets::path_token(text, start, end))
        .or_else(|| secrets::vault_token(text, start, end))
        // Its length tested here: the call is out of line, and most runs fall through.
        .or_else(|| (end - start == 40).then(|| secrets::aws_secret_after_id(text, start, end))?)
}

/// The offset of the last byte of `window` that is not a token byte ([`TOKEN_BYTES`]).
/// Every byte is classed with range compares and no early exit, which the compiler
/// turns into vector compares; the flags are then read eight at a time as words, from
/// the last.
#[inline(always)]
fn last_non_token<const N: usize>(window: &[u8; N]) -> Option<usize> {
    let mut flags = [0u8; N];
    for (flag, &byte) in flags.iter_mut().zip(window) {
        let token = (byte.wrapping_sub(b'0') < 10)
            | ((byte | 0x20).wrapping_sub(b'a') < 26)
            | (byte == b'_')
            | (byte == b'+')
            | (byte == b'/')
            | (byte == b'-');
        *flag = u8::from(!token);
    }
    flags
        .chunks_exact(8)
        .enumerate()
        .rev()
        .find_map(|(word_at, word)| {
            let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
            (word != 0).then(|| word_at * 8 + 7 - word.leading_zeros() as usize / 8)
        })
}

/// A validator of a digit run: the end of the value at its head.
type RunCheck = fn(&str, &DigitRun, &mut Vec<u8>) -> Option<usize>;

/// A run of digits: a card, an SSN or a phone number, tried in that order, each on the
/// whole run or on its first groups.
fn number(text: &str, start: usize, end: usize, digits: &mut Vec<u8>) -> Option<Found> {
    // After a `#` of its own (`card #4111 ...`, `SSN #078-05-1120`) or a path's `/`
    // (`GET /v1/cards/4111111111111111`) only the forms that tell themselves are taken
    // (a card by its check digit, an SSN in its groups): `#4521` is a ticket and
    // `/users/4155552671` an id as often as a phone.
    let self_told_only = !bounds::number_may_start(text, start);
    if self_told_only && !bounds::after_sign_or_path(text.as_bytes(), start) {
        return None;
    }
    let run = DigitRun::read(text, start, end);
    // A path's segment ends at the next `/` (`/customers/4111-1111-1111-1111/charges`).
    let whole_ends_cleanly =
        bounds::number_may_end(text, end) || (self_told_only && text[end..].starts_with('/'));
    let checks: [(RunCheck, Builtin); 3] = [
        (finance::card, Builtin::CreditCard),
        (national_id::ssn, Builtin::UsSsn),
        (contact::phone, Builtin::PhoneNumber),
    ];
    for (check, kind) in checks {
        // There, an SSN only in its three groups, and no phone at all.
        if self_told_only
            && (kind == Builtin::PhoneNumber || (kind == Builtin::UsSsn && run.groups().len() < 3))
        {
            continue;
        }
        let Some(value_end) = check(text, &run, digits) else {
            continue;
        };
        let whole = value_end >= end;
        // An extension (`x549`) may run past the regex's match.
        let whole_ends_cleanly = if value_end > end {
            bounds::number_may_end(text, value_end)
        } else {
            whole_ends_cleanly
        };
        // A run is only shortened at a space (`4111 1111 1111 1111 2 items`), a `/`
        // (`4111 1111 1111 1111/12`) or a sentence's full stop (`SSN 815518385. 2
        // kids`): groups joined by `-` or `.` are one token (`123-456-789-0123`).
        let shortened_at_space = !whole
            && (text[value_end..].starts_with([' ', '/']) || text[value_end..].starts_with(". "))
            && !text[..value_end].ends_with(' ');
        if (whole && whole_ends_cleanly) || shortened_at_space {
            return Some(Found {
                start,
                end: value_end,
                kind,
                // Nine plain digits are an SSN only beside the word.
                by_context: kind == Builtin::UsSsn && value_end - start == 9,
            });
        }
    }
    None
}

/// The bytes a match of the literal-prefixed `shape` can start with (none for the
/// triggered shapes: their places come from `triggers`).
fn start_bytes(shape: Shape) -> [bool; 256] {
    let mut table = [false; 256];
    for (_, literals) in PREFIXES.iter().filter(|(s, _)| *s == shape) {
        for literal in *literals {
            table[usize::from(literal.as_bytes()[0])] = true;
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::super::shapes::pattern;
    use super::*;

    /// Every match of a literal-prefixed pattern starts with one of its shape's
    /// `PREFIXES`: the literals the pattern's matches can start with, read from the
    /// pattern itself, each begin with one of them.
    #[test]
    fn the_prefixes_start_every_literal_shape_match() {
        use regex_syntax::hir::literal::Extractor;
        for (shape, literals) in PREFIXES {
            let hir = regex_syntax::ParserBuilder::new()
                .unicode(false)
                .utf8(true)
                .build()
                .parse(pattern(shape))
                .unwrap();
            let starts = Extractor::new().extract(&hir);
            let starts = starts
                .literals()
                .unwrap_or_else(|| panic!("{shape:?}: a match may start with anything"));
            for start in starts {
                assert!(
                    literals
                        .iter()
                        .any(|l| start.as_bytes().starts_with(l.as_bytes())),
                    "{shape:?}: {:?} starts with none of {literals:?}",
                    String::from_utf8_lossy(start.as_bytes())
                );
            }
        }
    }

    /// No literal is the head of another, so the literal found at a place names the one
    /// shape that can match there.
    #[test]
    fn no_prefix_starts_another() {
        let all: Vec<&str> = PREFIXES
            .iter()
            .flat_map(|(_, l)| l.iter().copied())
            .collect();
        for a in &all {
            for b in &all {
                assert!(a == b || !b.starts_with(a), "{a:?} starts {b:?}");
            }
        }
    }

    proptest::proptest! {
        /// Literals found first and the shape read by hand at each give what one regex
        /// of the literal shapes' patterns finds run unanchored.
        #[test]
        fn literal_matches_are_found_as_an_unanchored_search_finds_them(
            pieces in proptest::collection::vec(proptest::sample::select(literal_pieces()), 0..24),
            from in 0usize..200,
        ) {
            use regex_automata::util::syntax;
            use regex_automata::{Input, meta};
            let text = pieces.concat();
            let detectors = Detectors::new();
            let patterns: Vec<&str> = detectors.literal_shapes.iter().map(|&s| pattern(s)).collect();
            let regex = meta::Builder::new()
                .syntax(syntax::Config::new().unicode(false).utf8(true))
                .build_many(&patterns)
                .unwrap();
            let from = from.min(text.len());
            let unanchored = regex
                .search(&Input::new(text.as_bytes()).range(from..))
                .map(|m| (m.start(), m.end(), detectors.literal_shapes[m.pattern().as_usize()]));
            let mut known = KnownRuns::default();
            proptest::prop_assert_eq!(detectors.literal_from(text.as_bytes(), from, &mut known), unanchored);
            // The runs it now knows give the same ends from every later place.
            for at in from..=text.len() {
                let fresh = detectors.literal_from(text.as_bytes(), at, &mut KnownRuns::default());
                proptest::prop_assert_eq!(detectors.literal_from(text.as_bytes(), at, &mut known), fresh);
            }
            // The packed searcher (where the target has one) and the automaton find the
            // same literals.
            let automaton = Prefixes::automaton(PREFIXES.iter().flat_map(|(_, l)| l.iter()));
            proptest::prop_assert!(matches!(detectors.prefixes, Prefixes::Packed(_)) || !cfg!(target_arch = "x86_64"));
            for at in from..=text.len() {
                proptest::prop_assert_eq!(detectors.prefixes.find(text.as_bytes(), at), automaton.find(text.as_bytes(), at));
            }
        }
    }

    /// The block test classes every byte as the table does, and finds the last byte
    /// that is not a token byte wherever it is, with others before it or none.
    #[test]
    fn last_non_token_agrees_with_the_table() {
        for byte in 0..=255u8 {
            for at in 0..32 {
                let mut window = [b'a'; 32];
                window[at] = byte;
                let expected = (!TOKEN_BYTES[usize::from(byte)]).then_some(at);
                assert_eq!(last_non_token(&window), expected, "{byte:#x} at {at}");
                window[0] = b' ';
                let expected = expected.or(Some(0)).max(Some(0));
                assert_eq!(
                    last_non_token(&window),
                    expected,
                    "{byte:#x} at {at}, space first"
                );
            }
        }
        assert_eq!(last_non_token(&[b'Z'; 32]), None);
    }

    /// `random_tokens` as it was before it skipped the runs through values found: every
    /// run probed read back and forth, then checked against the values.
    fn random_tokens_reference(text: &str, found: &mut Vec<Found>, first: usize) {
        const MIN: usize = 32;
        let bytes = text.as_bytes();
        let is_token = |at: usize| TOKEN_BYTES[usize::from(bytes[at])];
        let mut extra = Vec::new();
        let mut next_found = first;
        let mut i = 0;
        while i + MIN <= bytes.len() {
            let probe = i + MIN - 1;
            if !is_token(probe) {
                i = probe + 1;
                continue;
            }
            let mut start = probe;
            while start > i && is_token(start - 1) {
                start -= 1;
            }
            let mut run_end = probe + 1;
            while run_end < bytes.len() && is_token(run_end) {
                run_end += 1;
            }
            let mut end = run_end;
            while end < bytes.len() && bytes[end] == b'=' {
                end += 1;
            }
            // 32 token bytes, padding apart: counting the padding took a shorter run
            // only where a probe happened to land in it (its start's alignment).
            if run_end - start >= MIN {
                while next_found < found.len() && found[next_found].end <= start {
                    next_found += 1;
                }
                let overlaps = next_found < found.len() && found[next_found].start < end;
                if !overlaps && let Some(token) = token_run(text, start, end) {
                    extra.push(token);
                }
            }
            i = run_end + 1;
        }
        if !extra.is_empty() {
            found.extend(extra);
            found[first..].sort_by_key(|f| f.start);
        }
    }

    fn token_pieces() -> Vec<&'static str> {
        literal_pieces()
            .into_iter()
            .chain([
                "aB3dE5gH7jK9mN1pQ2rS4tU6vW8xY0zA",
                "Zq8Xw7Vc6Bn5Mm4Ll3Kk2Jj1Hh0Gg9Ff8Dd7Ss6Aa5Pp4Oo3Ii2Uu1Yy0Tt9Rr8Ee",
                "==",
                "=",
                "\n",
                "a@example.com",
                "+1 415 555 0134",
                "4111 1111 1111 1111",
                "api_key=",
                "Bearer ",
                "xY9",
                "/",
                "+",
            ])
            .collect()
    }

    /// `random_tokens` against `random_tokens_reference` on `text`.
    fn random_tokens_as_before(text: &str) {
        let mut values = vec![Found {
            start: 0,
            end: 0,
            kind: Builtin::Jwt,
            by_context: false,
        }];
        Detectors::new().find_shapes(text, &mut values);
        let mut expected = values.clone();
        random_tokens_reference(text, &mut expected, 1);
        random_tokens(text, &mut values, 1);
        let spans = |v: &[Found]| {
            v.iter()
                .map(|f| (f.start, f.end, f.kind.name()))
                .collect::<Vec<_>>()
        };
        assert_eq!(spans(&values), spans(&expected), "{text:?}");
    }

    /// Tokens just before, after and around values found, at every offset of the
    /// probes (one byte in 32).
    #[test]
    fn random_tokens_beside_values_at_every_offset() {
        let token = "aB3dE5gH7jK9mN1pQ2rS4tU6vW8xY0zA";
        let values = [
            "a@example.com",
            "sk-proj-abcDEF1234567890abcdefGHIJ",
            "+1 415 555 0134",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIz",
            "api_key=Zq8Xw7Vc6Bn5Mm4Ll3Kk2Jj1",
        ];
        for lead in 0..40 {
            for value in values {
                for sep in ["", " ", ",", "\n", "=="] {
                    let filler = "x".repeat(lead);
                    random_tokens_as_before(&format!("{filler} {token}{sep}{value} {token}"));
                    random_tokens_as_before(&format!("{filler} {value}{sep}{token}{sep}{value}"));
                    random_tokens_as_before(&format!("{filler}{token}{token}{sep}{value}{token}"));
                }
            }
        }
    }

    proptest::proptest! {
        /// Runs through a value already found are passed without reading back to
        /// their start: the tokens found are those of reading every run whole.
        #[test]
        fn random_tokens_find_what_reading_every_run_finds(
            pieces in proptest::collection::vec(proptest::sample::select(token_pieces()), 0..40),
        ) {
            let text = pieces.concat();
            let detectors = Detectors::new();
            let mut values = vec![Found { start: 0, end: 0, kind: Builtin::Jwt, by_context: false }];
            detectors.find_shapes(&text, &mut values);
            let mut expected = values.clone();
            random_tokens_reference(&text, &mut expected, 1);
            random_tokens(&text, &mut values, 1);
            let spans = |v: &[Found]| v.iter().map(|f| (f.start, f.end, f.kind.name())).collect::<Vec<_>>();
            proptest::prop_assert_eq!(spans(&values), spans(&expected));
        }
    }

    /// Texts for the literal shapes: their prefixes, values, prefixes cut short, and
    /// filler.
    fn literal_pieces() -> Vec<&'static str> {
        let prefixes = PREFIXES
            .iter()
            .flat_map(|(_, literals)| literals.iter().copied());
        prefixes.chain(LITERAL_PIECES.iter().copied()).collect()
    }

    const LITERAL_PIECES: &[&str] = &[
        " ",
        "x",
        "-",
        "_",
        ".",
        "A",
        "0123456789",
        "abcdefghijKLMNOPQRST",
        "-----",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY",
        "-----END PRIVATE KEY-----",
        "-----END EC PRIVATE KEY BLOCK-----",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        "Bearer ",
        "bearer\t",
        "Bear",
        "sk",
        "sk-proj-",
        "gh",
        "0123456789abcdef0123456789abcdef",
        "IOSFODNN7EXAMPLE",
        "xoxb-",
        "shpat_",
        "sk_live_",
        "lsv2_pt_",
        "dp.pt.",
    ];

    fn found(text: &str) -> Vec<(&str, &'static str)> {
        let mut out = Vec::new();
        Detectors::new().find(text, &mut out);
        out.iter()
            .map(|f| (&text[f.start..f.end], f.kind.name()))
            .collect()
    }

    /// Which values are told only by the words around them (and so looked for again
    /// in the rest of a body), and which by their form as well.
    #[test]
    fn values_told_by_their_context_are_marked_so() {
        let marked = |text: &str| -> Vec<(String, bool)> {
            let mut out = Vec::new();
            Detectors::new().find(text, &mut out);
            out.iter()
                .map(|f| (text[f.start..f.end].to_string(), f.by_context))
                .collect()
        };
        let hex = "0123456789abcdef0123456789abcdef";
        for (text, value, by_context) in [
            ("my SSN is 536221234", "536221234", true),
            ("SSN 536-22-1234", "536-22-1234", false),
            ("card 4111 1111 1111 1111", "4111 1111 1111 1111", false),
            (&format!("API_KEY={hex}") as &str, hex, true),
            (&format!("my api key is {hex}"), hex, true),
            (
                "X-Api-Key: sk-proj-abcDEF1234567890abcdefGHIJ",
                "sk-proj-abcDEF1234567890abcdefGHIJ",
                false,
            ),
            (
                "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCY8EXAMPLEKEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCY8EXAMPLEKEY",
                false,
            ),
            (
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIz",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIz",
                false,
            ),
            (
                "Authorization: Bearer abcdef0123456789",
                "abcdef0123456789",
                true,
            ),
            ("DB_PASSWORD=hunter22x", "hunter22x", true),
        ] {
            assert_eq!(marked(text), [(value.to_string(), by_context)], "{text}");
        }
    }

    #[test]
    fn one_of_each() {
        let text = "Mail jane.doe@example.com or call +1 (415) 555-0134. Card 4111 1111 1111 1111, \
                    IBAN DE89 3704 0044 0532 0130 00, SSN 536-22-1234, from 10.0.0.12 and 2001:db8::8a2e:370:7334. \
                    AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE key sk-proj-abcDEF1234567890abcdefGHIJ \
                    Authorization: Bearer abcdef0123456789ABCDEFxyz \
                    token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIz \
                    db postgres://app:Sup3rS3cret@db:5432/x";
        assert_eq!(
            found(text),
            vec![
                ("jane.doe@example.com", "EMAIL_ADDRESS"),
                ("+1 (415) 555-0134", "PHONE_NUMBER"),
                ("4111 1111 1111 1111", "CREDIT_CARD"),
                ("DE89 3704 0044 0532 0130 00", "IBAN_CODE"),
                ("536-22-1234", "US_SSN"),
                ("10.0.0.12", "IP_ADDRESS"),
                ("2001:db8::8a2e:370:7334", "IP_ADDRESS"),
                ("AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY"),
                ("sk-proj-abcDEF1234567890abcdefGHIJ", "API_KEY"),
                ("abcdef0123456789ABCDEFxyz", "API_KEY"),
                (
                    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIz",
                    "JWT"
                ),
                ("Sup3rS3cret", "URL_PASSWORD"),
            ]
        );
    }

    /// A number's run may hold a `/` (`0732/16372651`): a card or a phone number with a
    /// `/` and more after it is the run shortened there, as at a space.
    #[test]
    fn numbers_end_at_a_slash_with_more_after() {
        for (text, value, kind) in [
            (
                "card 4111 1111 1111 1111/12 exp",
                "4111 1111 1111 1111",
                "CREDIT_CARD",
            ),
            (
                "card 4111111111111111/0925",
                "4111111111111111",
                "CREDIT_CARD",
            ),
            ("Tel. 0732/16372651", "0732/16372651", "PHONE_NUMBER"),
        ] {
            assert_eq!(found(text), vec![(value, kind)], "{text}");
        }
        for text in ["on 01/02/2023 at 10/100/1000", "ratio 1000000/3"] {
            assert_eq!(found(text), vec![], "{text}");
        }
    }

    /// Nine plain digits told by an SSN's context and followed by another number (after
    /// a space, or a sentence's full stop) are the SSN, and the number after stays:
    /// the run is shortened there as for a card; so is a formatted SSN unless its
    /// groups are joined by spaces. Without the context, or joined to the next digits
    /// by `-`, `.` or `/`, they stay (or are another type's).
    #[test]
    fn a_context_ssn_followed_by_another_number_is_the_ssn_alone() {
        for (text, value, kind) in [
            ("my SSN is 815518385. 2 kids", "815518385", "US_SSN"),
            ("SSN 815518385 7 days ago", "815518385", "US_SSN"),
            ("SSN 815518385 1", "815518385", "US_SSN"),
            ("ssn=815518385 1", "815518385", "US_SSN"),
            ("SSN 815518385.  2 kids", "815518385", "US_SSN"),
            ("SSN 815518385 1234", "815518385", "US_SSN"),
            ("SSN 815518385 1234 5678", "815518385", "US_SSN"),
            ("SSN 123-45-6789 7 days ago", "123-45-6789", "US_SSN"),
            ("ssn: 123.45.6789 2", "123.45.6789", "US_SSN"),
            (
                "card 4111111111111111. 2 items",
                "4111111111111111",
                "CREDIT_CARD",
            ),
        ] {
            assert_eq!(found(text), vec![(value, kind)], "{text}");
        }
        for text in [
            "order 815518385 7 days ago",
            "build 815518385. 2 failed",
            "SSN 815518385-1",
            "SSN 815518385.1",
            "SSN 815518385/2",
            "SSN 815518385.2 kids",
            "SSN 123 45 6789 7",
            "SSN 123-45-6789-7",
        ] {
            assert_eq!(found(text), vec![], "{text}");
        }
        // Ten digits with no word for an SSN are a phone number, as before.
        assert_eq!(
            found("call 815518385 1 time"),
            vec![("815518385 1", "PHONE_NUMBER")]
        );
    }

    /// Connection strings as people write them: an empty user, a password with the
    /// unescaped `#^?|{}` of generated passwords, an `@` in it; the password alone.
    #[test]
    fn passwords_in_connection_strings() {
        for (text, password) in [
            ("redis://:s3cretpass@redis.internal:6379/0", "s3cretpass"),
            (
                "DATABASE_URL=postgresql://app:xK9#mQ2@db:5432/app",
                "xK9#mQ2",
            ),
            (
                "mongodb+srv://admin:Pa^5|w{0}rd?@cluster0.mongodb.net/db",
                "Pa^5|w{0}rd?",
            ),
            ("amqp://guest:gu@st@localhost:5672/", "gu@st"),
        ] {
            assert_eq!(found(text), vec![(password, "URL_PASSWORD")], "{text}");
        }
        // No password, or no user info: nothing.
        for text in [
            "https://user@host/a#b?c",
            "http://host:8080/#x@y",
            "see http://x.io/?a=1@2",
        ] {
            assert!(
                !found(text).iter().any(|(_, kind)| *kind == "URL_PASSWORD"),
                "{text}: {:?}",
                found(text)
            );
        }
    }

    /// Passwords assigned to password-like names in config files, JSON, YAML, SQL,
    /// command lines and prose; the value alone, whatever printable bytes it holds.
    #[test]
    fn passwords_assigned_to_password_names() {
        for (text, password) in [
            ("DB_PASSWORD=hunter2!x", "hunter2!x"),
            // Quoted, a password is read to its closing quote, blanks, `,;` and the
            // other quote included.
            (
                "{\"username\": \"bob\", \"password\": \"P@ss w0rd\"}",
                "P@ss w0rd",
            ),
            (
                "PASSWORD=\"correct horse battery staple\"",
                "correct horse battery staple",
            ),
            ("  password: 'open sesame 42'", "open sesame 42"),
            ("db_pass = \"a,b;c d'e\" # prod", "a,b;c d'e"),
            ("passphrase:\t\"it's my dog.\"", "it's my dog."),
            ("{\"password\": \"Tr0ub4dor&3\"}", "Tr0ub4dor&3"),
            ("  password: correct-horse-battery", "correct-horse-battery"),
            ("POSTGRES_PASSWORD: secret", "secret"),
            ("SMTP_PASS=xK9#mQ2$vB", "xK9#mQ2$vB"),
            ("mysql --user=root --password=S3cr3t!", "S3cr3t!"),
            ("ALTER USER app PASSWORD = 'n3w-P4ss';", "n3w-P4ss"),
            ("wifi passphrase: blue-falcon-42.", "blue-falcon-42"),
            ("new_password2 = \"Winter2024\"", "Winter2024"),
            ("mysql_pwd=qwerty123", "qwerty123"),
            ("Passwort: Sommer2024!", "Sommer2024!"),
            ("db_kennwort=Geheim123", "Geheim123"),
            ("wachtwoord: Welkom01!", "Welkom01!"),
            ("contrasena=Verano2024", "Verano2024"),
            ("SENHA=Senha@123", "Senha@123"),
            ("set `DB_PASSWORD=hunter22` first", "hunter22"),
            ("password=P@ss(w0rd)!", "P@ss(w0rd)!"),
            ("password=$uper5ecret!", "$uper5ecret!"),
            ("PGPASSWORD={x7/Lq%9", "{x7/Lq%9"),
            ("passphrase: correct.horse.battery", "correct.horse.battery"),
            ("admin_password: /9kQ#x2!", "/9kQ#x2!"),
            ("wifi passphrase: /akVRD3l6", "/akVRD3l6"),
            ("password: KNJz3LLZ<ei", "KNJz3LLZ<ei"),
            // Whole, whatever they hold: `\`, quotes, `,;`, a backtick, letters beyond
            // ASCII (an unquoted value runs to a blank; a quoted one to its closing
            // quote, `\"` escaping one).
            ("password: pa\"ss\\w0rd!", "pa\"ss\\w0rd!"),
            ("password: pass\\w0rd!", "pass\\w0rd!"),
            ("DB_PASSWORD=Pa$$w0rd\\xyz123", "Pa$$w0rd\\xyz123"),
            ("DB_PASSWORD=ab\\cdefgh99", "ab\\cdefgh99"),
            ("DB_PASSWORD=abc\"def12345", "abc\"def12345"),
            ("DB_PASSWORD=it'sMyPass99", "it'sMyPass99"),
            ("DB_PASSWORD=abc,def123456", "abc,def123456"),
            ("DB_PASSWORD=abc;def123456", "abc;def123456"),
            ("SMTP_PASS=p@ss`w0rd99", "p@ss`w0rd99"),
            ("DB_PASSWORD=\"quote\\\"inside99\"", "quote\\\"inside99"),
            ("password=\"abc\\\"de fg\"", "abc\\\"de fg"),
            ("password=Grüße2024!x", "Grüße2024!x"),
            ("DB_PASSWORD=\"Ünïcödé-Pass1\"", "Ünïcödé-Pass1"),
            ("DB_PASSWORD=pässwort99AB", "pässwort99AB"),
            ("password: Pässwörd9!", "Pässwörd9!"),
            ("password: 密码Secret123", "密码Secret123"),
            // What closes the text around a value is not the value's.
            ("password=abc123, user=bob", "abc123"),
            ("login(password=hunter22, user=bob)", "hunter22"),
            ("run([\"mysql\", \"--password=hunter22\"])", "hunter22"),
            ("export DB_PASSWORD='hunter22'.", "hunter22"),
            ("cmd 'DB_PASSWORD=hunter22' ok", "hunter22"),
            // Where the end is in doubt, more is taken, never less.
            (
                "Server=db;Password=S3cret;Trusted_Connection=True",
                "S3cret;Trusted_Connection=True",
            ),
        ] {
            let expected = if password.is_empty() {
                vec![]
            } else {
                vec![(password, "PASSWORD")]
            };
            assert_eq!(found(text), expected, "{text}");
        }
        // References, placeholders, types and paths where a password would go, names
        // that only end like one, and values too short: nothing.
        for text in [
            "password=${DB_PASSWORD}",
            "password: {{ vault.db_password }}",
            "password: <your password>",
            "password = os.environ[\"PW\"]",
            "password = os.environ[\"DB_PASSWORD\"]",
            "password = config[\"db\"][\"password\"]",
            "password=os.getenv('DB_PASSWORD', 'default')",
            "password = getpass.getpass(\"Password: \")",
            "password = input(\"Enter your password: \")",
            "\"password\": [\"a\", \"b\"]",
            "f\"password={password}\"",
            "conn = connect(user=user, password=password)",
            "password=settings.DB_PASSWORD",
            "password: String,",
            "password: Option<String>,",
            "password: ********",
            "password=[REDACTED]",
            "PWD=/home/alice/src",
            "PWD=/Users",
            "PWD=/data2",
            "OLDPWD=~/projects",
            "bypass=enabled-for-tests",
            "passport: X1234567",
            "password: abc12",
            "\"password\": {\"type\": \"string\"}",
            "password: required",
            "password: Some(password),",
            "let given_pass = vec![0u8; len];",
            "let password = run_forward(bytes, at);",
            "let pass = std::env::var(\"PASS\")",
            "In the first pass: headers, then bodies.",
            "password: $DB_PASSWORD",
            "password=%DB_PASS%",
            "db_password = config.db.password",
            "self.password = password",
            // Quoted: a blank first, no closing quote on the line, over 64 bytes,
            // under 6, a reference.
            "password: \" spaced out\"",
            "password: \"open sesame\n42\"",
            "password = \"this sentence in quotes runs on for more than sixty-four bytes, so it is no password\"",
            "password = \"a b c\"",
            "password: \"${DB_PASSWORD}\"",
            "PWD = \"'`pwd`'\"",
            "password = \"`cat /run/secrets/db`\"",
            "password: '<your password>'",
        ] {
            assert!(
                !found(text).iter().any(|(_, kind)| *kind == "PASSWORD"),
                "{text}: {:?}",
                found(text)
            );
        }
    }

    #[test]
    fn more_providers_and_key_blocks() {
        let text = "npm npm_abcdefghijklmnopqrstuvwxyz0123456789 \
                    google ya29.a0AfH6SMBx3examplexyz123456 \
                    sendgrid SG.abcdefghij0123456789.ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg \
                    -----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----";
        let kinds: Vec<&str> = found(text).iter().map(|(_, k)| *k).collect();
        assert_eq!(
            kinds,
            vec!["API_KEY", "API_KEY", "API_KEY", "PRIVATE_KEY"],
            "{:?}",
            found(text)
        );
    }

    /// Keys the random-token test does not take (hex, one case, short, dotted) are
    /// found by their prefixes; the AI providers' keys of random base62 are taken whole
    /// by that test; words and names that start alike stay.
    #[test]
    fn keys_of_more_providers_are_found_and_their_look_alikes_stay() {
        let hex48 = "3f1c9a7be0d24c58a6f1e2b3c4d5e6f7a8b9c0d1e2f3a4b5";
        for key in [
            format!("sk_{hex48}"),
            format!("lsv2_pt_{}_{}", &hex48[..32], &hex48[..10]),
            format!("lsv2_sk_{}_{}", &hex48[..32], &hex48[..10]),
            "fw_3ZkQ8vYp2LmN7xRt5WbC9dHs".to_string(),
            format!("dapi{}", &hex48[..32]),
            format!("sbp_{}", &hex48[..40]),
            "NRAK-7Q2X9K4M1P8Z3R6T0V5W2Y4B1C3".to_string(),
            "dp.pt.Xk2R9mQ7vL4pW8nT3yB6cZ1hF5jD0sG2aK7eU9iO4qM".to_string(),
            "glrt-t9Xk2R_mQ7vL4pW8nT3-".to_string(),
            "gldt-9Xk2RmQ7vL4pW8nT3yB6".to_string(),
            "glptt-Xk2RmQ7vL4pW8nT3yB6c".to_string(),
            "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".to_string(),
            "xai-Xk2R9mQ7vL4pW8nT3yB6cZ1hF5jD0sG2aK7eU9iO4qMwE3rT8yU1iO2pA5sD7fG9hJ".to_string(),
            "pplx-Xk2R9mQ7vL4pW8nT3yB6cZ1hF5jD0sG2aK7eU9iO4qMw".to_string(),
            "r8_Xk2R9mQ7vL4pW8nT3yB6cZ1hF5jD0sG2aK7".to_string(),
        ] {
            for text in [
                format!("use {key} in the client"),
                format!("KEY={key}"),
                format!("{key}."),
            ] {
                assert_eq!(found(&text), [(key.as_str(), "API_KEY")], "{text}");
            }
        }
        for text in [
            "task_manager and disk_usage_report_generator_v2 ran",
            "sk_live_ and sk_test_ and sk_abc",
            "sk_3f1c9a7be0d24c58 is too short",
            "fw_version fw_update_handler",
            "dapibus nec dapi1234",
            "lsv2_pt_ lsv2_sk_abc",
            "NRAK-TEST and NRAK-12",
            "dp.pt.short dp.xx.notakey",
            "glrt-short glrt-config-runner-tokens",
            "model xai-grok-2-latest or xai-grok-beta",
            "gsk_ gsk_small",
        ] {
            assert_eq!(found(text), [], "{text}");
        }
    }

    /// A password told in prose is found, up to four words between `password` and the
    /// verb; prose about passwords stays.
    #[test]
    fn passwords_told_in_prose_are_found() {
        for (text, password) in [
            ("my password is hunter22", "hunter22"),
            ("The password is Tr0ub4dor&3.", "Tr0ub4dor&3"),
            ("Your new password is: Xk9#mP2q", "Xk9#mP2q"),
            ("the password for the root account is S3cret!", "S3cret!"),
            ("my gmail password was `correctHorse`, then", "correctHorse"),
            ("PASSWORD IS \"Winter2024!\"", "Winter2024!"),
            ("Password\tis\tp@ssw_rd", "p@ssw_rd"),
            (
                "the wifi password is horse-battery-staple",
                "horse-battery-staple",
            ),
            ("my password for gmail is 123456", "123456"),
            ("my password is S3cr\\et!", "S3cr\\et!"),
            ("my password is it'sMyPass99, ok", "it'sMyPass99"),
            (
                "the password is \"quote\\\"inside99\".",
                "quote\\\"inside99",
            ),
            ("password was uzhpkt_yny_gld", "uzhpkt_yny_gld"),
            // Text with no blank after the value goes with it: a password may hold
            // any letter (`Pässwörd9!`, `密码Secret123`).
            ("密码: my password is hunter22です", "hunter22です"),
            // Quoted, a passphrase of three words or more; one word as unquoted.
            (
                "my password is \"correct horse battery staple\", ok",
                "correct horse battery staple",
            ),
            ("the password was 'open sesame 42'.", "open sesame 42"),
            ("the password is \"hunter22\"", "hunter22"),
            // `.netrc` entries, on one line or several: no verb, any value.
            (
                "machine github.com login octocat password sunshine",
                "sunshine",
            ),
            (
                "machine ftp.example.org\n  login anna\n  password \"p4ss word\"\n",
                "p4ss word",
            ),
            ("default login anonymous password guest12", "guest12"),
        ] {
            assert_eq!(found(text), [(password, "PASSWORD")], "{text}");
        }
        for text in [
            // No verb and no `.netrc` entry before.
            "password required for the login",
            "enter your password twice",
            "the machine asks for a password before login",
            "machine learning login password resetting",
            "defaults login x password sunshine",
            "the password is required",
            "The password is incorrect.",
            "the password is case-sensitive",
            "my password is too long",
            "the password is hashed with bcrypt",
            "the password is stored in /etc/secrets",
            "the password was last changed 2024-01-01",
            "the password is ${DB_PASSWORD}",
            "the password is ********",
            "the password is 8+ chars",
            "a bypassword is hunter22",
            "password_is hunter22",
            "the password of the admin user on that host is hunter22",
            "Passwords are hunter22",
            "If the password is L{None}, the PASS command waits",
            "the password is not_set yet",
            "the password is \"required\"",
            "the password was 'too short'",
        ] {
            assert_eq!(found(text), [], "{text}");
        }
    }

    /// A Discord bot token is taken whole wherever it stands, also where its last part
    /// alone is a random token; dotted runs whose first part is no user id stay.
    #[test]
    fn discord_bot_tokens_are_found_whole() {
        for token in [
            // Ids of 18 and 19 digits; HMACs of 27 and 38 characters.
            "MTA0NjE4NTYzMjQ1NjE3MjQ5.GZ4v8k.aBcD3fGh1jKlMn0pQrStUvWxYz9",
            "OTI1NzIzMTA3MDM4OTMxOTEzNQ.2O76UM.FxFkM_R5Kjp1vRt-1fjORS_6ilI8ihN5KXSc7T",
            "MTI0ODI2OTY0NDQyODMwNjU2Ng.yiA4uo.Rg7TkQ2mX9vLp4Wn8sBc3Dh6Jf1Aq5EyZr0",
        ] {
            for text in [
                format!("DISCORD_TOKEN={token}"),
                format!("client.run('{token}')"),
                format!("The bot uses {token}. It fails."),
                format!("令牌{token}已泄露"),
            ] {
                assert_eq!(found(&text), [(token, "API_KEY")], "{text}");
            }
        }
        // Found wherever the token-run walk's steps fall: after every length of text of
        // short words, of long token runs, or of dots, and with text after it or none.
        let token = "MTA0NjE4NTYzMjQ1NjE3MjQ5.GZ4v8k.aBcD3fGh1jKlMn0pQrStUvWxYz9";
        for filler in [
            "the bot ",
            "abcdefghijklmnopqrstuvwxyz0123456789-_+/ABCDEFGHIJ ",
            ". .. ... ",
        ] {
            for lead in 0..80 {
                for tail in ["", " ", " works.", " and then a long tail of prose words"] {
                    let before: String = filler.chars().cycle().take(lead).collect();
                    let text = format!("{before} {token}{tail}");
                    let values = found(&text);
                    assert!(values.contains(&(token, "API_KEY")), "{text:?}: {values:?}");
                }
            }
        }
        for text in [
            // Base64 of words, not of digits; a 0 first; ids of the wrong length.
            "SGVsbG8gV29ybGQgdGhpcyBp.GZ4v8k.aBcD3fGh1jKlMn0pQrStUvWxYz9",
            "MDEyMzQ1Njc4OTAxMjM0NTY3.GZ4v8k.aBcD3fGh1jKlMn0pQrStUvWxYz9",
            "MTA0NjE4NTYzMjQ1Nj.GZ4v8k.aBcD3fGh1jKlMn0pQrStUvWxYz9",
            // A short last part, a longer middle one, a word glued before.
            "MTA0NjE4NTYzMjQ1NjE3MjQ5.GZ4v8k.aBcD3fGh1jKl",
            "MTA0NjE4NTYzMjQ1NjE3MjQ5.GZ4v8kk.aBcD3fGh1jKlMn0pQrStUvWxYz9",
            "xMTA0NjE4NTYzMjQ1NjE3MjQ5.GZ4v8k.aBcD3fGh1jKlMn0pQrStUvWxYz9",
            "see www.github.com/abcdef.html and v1.2.3.4567890",
        ] {
            assert_eq!(found(text), [], "{text}");
        }
    }

    /// `key` is found as an API key after every lead of up to `leads` bytes of words and
    /// digits: wherever the token-run walk's steps fall.
    fn found_wherever_the_walk_steps(key: &str, leads: usize) {
        for lead in 0..leads {
            let before: String = "ab cdefghijklmnopqrstuvwxyz0123456789 "
                .chars()
                .cycle()
                .take(lead)
                .collect();
            let text = format!("{before} {key} and more");
            assert!(found(&text).contains(&(key, "API_KEY")), "{text:?}");
        }
    }

    /// Twilio's `SK` and Mailgun's `key-`/`pubkey-` keys are taken by their form wherever
    /// they stand; the same hex with another word glued before or after, another
    /// prefix, the wrong case or length, stays as any hex run does.
    #[test]
    fn twilio_and_mailgun_keys_are_found_by_their_form() {
        for key in [
            "SK59b73e72d95578684115e47c6e5abbd3",
            "SKAC00A3C4707BA5E7B3E0E97327748FE5",
            "key-21eedf9319a0fce4810a8aaecb0f602d",
            "key-3ax6xnjp29jd6fds4gc373sgvjxteol0",
            "pubkey-a8f6bccd29e0f354e9de3ed0e6edd612",
        ] {
            for text in [
                key.to_string(),
                format!("client = Client('{key}', secret)"),
                format!("The sid was {key}. It is revoked."),
                format!("{{\"sid\": \"{key}\", \"region\": \"us1\"}}"),
                format!("密钥{key}已泄露"),
            ] {
                assert_eq!(found(&text), [(key, "API_KEY")], "{text}");
            }
            found_wherever_the_walk_steps(key, 70);
        }
        let hex = "f3a80e3eaa2a34a479907fede1810238";
        for text in [
            // Glued to a longer word, before or after; another word's `key-`.
            format!("xSK{hex}"),
            format!("SK{hex}0"),
            format!("monkey-{hex}"),
            format!("my-key-{hex}"),
            format!("pubkey-{hex}x"),
            format!("www.SK{hex}"),
            // Small `sk`; a SKU number; digits only; Mailgun's hex in capitals; short.
            format!("sk{hex}"),
            "SKU12345678901234567890123456789012".to_string(),
            "SK12345678901234567890123456789012".to_string(),
            format!("key-{}", hex.to_uppercase()),
            format!("key-{}", &hex[1..]),
            // Mailgun's older form of letters and digits, with too few digits; a
            // `pubkey-` of letters past `f`.
            "key-abcdefghijklmnopqrstuvwxyzabcde1".to_string(),
            "pubkey-3ax6xnjp29jd6fds4gc373sgvjxteol0".to_string(),
            // Digests: a git SHA, a sha256, a 32-digit md5.
            "commit 9fceb02d0ae598e95dc970b74767f19372d61af8".to_string(),
            "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_string(),
            format!("md5 {hex}"),
        ] {
            assert_eq!(found(&text), [], "{text}");
        }
    }

    /// An Atlassian API token is taken whole, its checksum after the padding with it,
    /// wherever it stands; without the eight hex digits, or glued to more, it is not one.
    #[test]
    fn atlassian_tokens_are_found_with_their_checksum() {
        let body: String = "aB3-xY_9zQ7k".chars().cycle().take(177).collect();
        let token = format!("ATATT3{body}=0A1B2C3D");
        for text in [
            token.clone(),
            format!("jira token {token} done"),
            format!("{{\"token\": \"{token}\"}}"),
            format!("JIRA_API_TOKEN={token}\nJIRA_USER=me"),
            format!("令牌{token}已泄露"),
        ] {
            assert_eq!(found(&text), [(token.as_str(), "API_KEY")], "{text}");
        }
        found_wherever_the_walk_steps(&token, 40);
        for text in [
            // Seven digits; a word glued after; not hex; another prefix.
            format!("ATATT3{body}=0A1B2C3"),
            format!("ATATT3{body}=0A1B2C3Dx"),
            format!("ATATT3{body}=0A1B2C3G"),
            format!("XTATT3{body}=0A1B2C3D"),
        ] {
            assert!(
                !found(&text).iter().any(|(value, _)| value.ends_with("2C3D")
                    || value.ends_with("2C3")
                    || value.ends_with("2C3G")),
                "{text}"
            );
        }
    }

    /// A webhook's URL carries its secret at the end of its path: Discord's and Slack's,
    /// and any path under `hooks` whose last part is a random token. The ids before it,
    /// paths of words, digests and short parts, and random-looking last parts of other
    /// paths (class names) stay.
    #[test]
    fn webhook_and_capability_urls_lose_their_secret() {
        let discord = "aBcD3fGh1jKlMn0pQrStUvWxYz9-Xk9mQ2vLp7RtY4nB8sW3cJ6hQ_r5Ty8uI0oP2aS4dF6";
        let slack = "Xk9mQ2vLp7RtY4nB8sW3cJ6h";
        let capability = "Zq8Rk2Lm9Vx4Tn7Wb3Yc6Hd1Jf5Gs0Pa";
        for (text, secret) in [
            (
                format!("post to https://discord.com/api/webhooks/1046185632456172490/{discord}"),
                discord,
            ),
            (
                format!(
                    "curl -X POST https://hooks.slack.com/services/T024BE7LD/B01ABCDEF12/{slack} -d @m.json"
                ),
                slack,
            ),
            (
                format!(
                    "SLACK_WEBHOOK=https://hooks.slack.com/services/T024BE7LD/B01ABCDEF12/{slack}"
                ),
                slack,
            ),
            (
                format!("POST https://hooks.example.com/hooks/catch/2024/{capability}."),
                capability,
            ),
        ] {
            assert_eq!(found(&text), [(secret, "API_KEY")], "{text}");
        }
        for text in [
            "https://github.com/rust-lang/rust/blob/master/compiler/rustc_middle/src/ty/mod.rs",
            "see https://github.com/org/repo/commit/9fceb02d0ae598e95dc970b74767f19372d61af8",
            "https://hooks.slack.com/services/T024BE7LD/B01ABCDEF12/short",
            "https://example.com/services/t024be7ld/b01abcdef12/Xk9mQ2vLp7RtY4nB8sW3cJ6h",
            "https://example.com/docs/v2/guides/getting-started/installation-on-linux",
            "Passed: com/sun/crypto/provider/Cipher/ChaCha20/unittest/ChaCha20Poly1305ParametersUnitTest.java",
        ] {
            assert_eq!(found(text), [], "{text}");
        }
    }

    /// Vault's tokens are taken with their prefix, though a token does not start after
    /// a dot; a Sentry DSN's key is a key, not an e-mail address's user part.
    #[test]
    fn vault_tokens_and_sentry_keys() {
        let vault = "hvs.CAESIJlU9JMYEhOPYv4IgfT5R6iC3YA6Q5H6f-jB0n_YGHjKGh4KHGh2cy5oR0Z3Y1pX";
        for text in [
            format!("vault login {vault}"),
            format!("token: {vault}."),
            format!("{{\"auth\": {{\"client_token\": \"{vault}\"}}}}"),
            format!("batch {}", vault.replacen("hvs.", "hvb.", 1)),
        ] {
            let expected = if text.starts_with("batch") {
                vault.replacen("hvs.", "hvb.", 1)
            } else {
                vault.to_string()
            };
            assert_eq!(found(&text), [(expected.as_str(), "API_KEY")], "{text}");
        }
        for text in [
            "see www.hvs.CAESIJlU9JMYEhOPYv4IgfT5R6iC3YA6Q5H6fjB0nYGHjKGh",
            "file hvs.abcdefghijklmnopqrstuvwxyzabcdefgh.txt",
        ] {
            assert_eq!(found(text), [], "{text}");
        }
        let key = "4f9a2c1e8b7d4e6f9a0b1c2d3e4f5a6b";
        let dsn = format!("SENTRY_DSN=https://{key}@o123456.ingest.sentry.io/7654321");
        assert_eq!(found(&dsn), [(key, "API_KEY")], "{dsn}");
        for text in [
            "mail https://john.doe@example.com/ or ftp://anonymous@ftp.example.com",
            "write to 4f9a2c1e8b7d4e6f9a0b1c2d3e4f5a6b@example.com",
        ] {
            assert!(
                found(text).iter().all(|(_, kind)| *kind == "EMAIL_ADDRESS"),
                "{text}"
            );
        }
    }

    /// A pre-signed URL is a key: its signature (Azure's SAS `sig`, S3's and GCS's
    /// `X-*-Signature`, CloudFront's `Signature`) and a key-like parameter's value go
    /// whole, percent escapes and all; the access key id in `X-Amz-Credential` goes as
    /// an access key id, its scope stays; parameters named otherwise, placeholders and
    /// encoded URLs stay.
    #[test]
    fn signed_urls_lose_their_signature() {
        let sas = "aB3%2Bk9Lm%2FQx7Zt2Wv5Yp8Rn1Jc4Hd6Fg0Es3Tu9Io%3D";
        let hex = "3b6f0c2d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";
        let cloudfront = "Kq3m~Zx9Lp2Vb7Nc4Rt8Yw1Hs6Jd0Fg5Ak3Pm~Qe7Tn2Ux9Wb4Ic8Oy1Zr6Ld0G";
        let session = "IQoJb3JpZ2luX2VjEJr%2F%2F%2F%2F%2FwEaCXVzLWVhc3QtMSJHMEUCIQD";
        for (text, secret) in [
            (
                format!("https://a.blob.core.windows.net/c/b?sp=r&sv=2022-11-02&sr=b&sig={sas}"),
                sas,
            ),
            (
                format!("<https://a.blob.core.windows.net/c/b?sig={sas}&se=2026-02-01>"),
                sas,
            ),
            (
                format!("s3.amazonaws.com/k.txt?X-Amz-Expires=3600&X-Amz-Signature={hex}"),
                hex,
            ),
            (
                format!("storage.googleapis.com/b/o?x-goog-signature={hex}&x=1"),
                hex,
            ),
            (
                format!(
                    "cloudfront.net/a.jpg?Expires=1767225600&Signature={cloudfront}&Key-Pair-Id=K2J"
                ),
                cloudfront,
            ),
            (
                format!("k.txt?X-Amz-Security-Token={session}&X-Amz-Date=20261201T000000Z"),
                session,
            ),
        ] {
            assert_eq!(found(&text), [(secret, "API_KEY")], "{text}");
        }
        let scoped = "k.txt?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261201%2Fus-east-1%2Fs3%2Faws4_request";
        assert_eq!(
            found(scoped),
            [("AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY")],
            "{scoped}"
        );
        for text in [
            "GET /cb?token_url=https%3A%2F%2Fauth.example.com%2Ftoken&state=abc",
            "see https://x.io/?signature=YOUR_SIGNATURE_HERE",
            "https://x.io/a?design=aB3%2Bk9Lm%2FQx7Zt2Wv5Yp8Rn1%3D",
            "https://x.io/a?sig=short%2Fvalue",
            "the sig=aB3%2Bk9Lm%2FQx7Zt2Wv5Yp8 without a query",
        ] {
            assert_eq!(found(text), [], "{text}");
        }
    }

    /// A random value after `session` or `cookie` is a session's key: whoever holds it is
    /// logged in. A digest after other words stays, as before.
    #[test]
    fn session_keys_in_cookies_and_prose_are_keys() {
        let hex = "8f2a9c3e1b7d4f6a0c5e9b2d8a1f3c7e";
        for text in [
            format!("Cookie: theme=dark; session={hex}"),
            format!("my session id is {hex}"),
            format!("Set-Cookie: sid={hex}; HttpOnly"),
            format!("sessionid {hex}"),
            format!("the cookies held {hex}"),
        ] {
            assert_eq!(found(&text), [(hex, "API_KEY")], "{text}");
        }
        let upper = hex.to_uppercase();
        let text = format!("Session-ID: {upper}");
        assert_eq!(found(&text), [(upper.as_str(), "API_KEY")], "{text}");
        for text in [
            format!("commit {hex}"),
            format!("md5 {hex}"),
            "session_path=/var/lib/php/sessions/abcdefghijklmnop".to_string(),
            // A session word inside a longer name, before a path or a name.
            "see java/net/CookieHandler/EmptyCookieHeader.java".to_string(),
            "ActiveSessionChanged (/org/freedesktop/ConsoleKit/Session2)".to_string(),
        ] {
            assert_eq!(found(&text), [], "{text}");
        }
    }

    /// A tool's password flag gives a password found by its context, so its repeats
    /// are masked too; a number inside it is part of it.
    #[test]
    fn passwords_after_a_tools_flag_are_found_by_context() {
        let text = "mysql -uroot -p4111111111111111 shop; sshpass -p 'S3cret!' ssh root@host; \
                    argocd login cd --password Xk9mQ2vL";
        let mut out = Vec::new();
        Detectors::new().find(text, &mut out);
        let values: Vec<(&str, &str, bool)> = out
            .iter()
            .map(|f| (&text[f.start..f.end], f.kind.name(), f.by_context))
            .collect();
        assert_eq!(
            values,
            [
                ("4111111111111111", "PASSWORD", true),
                ("S3cret!", "PASSWORD", true),
                ("Xk9mQ2vL", "PASSWORD", true)
            ]
        );
    }

    /// curl's `-u user:password` in its forms; other tools' `-u user:group` stays.
    #[test]
    fn curl_credentials_lose_their_password() {
        for (text, password) in [
            ("curl -u admin:S3cret! https://api.example.com", "S3cret!"),
            ("curl -s -u 'deploy:hunter2' https://x.test/", "hunter2"),
            (
                "curl --user \"bob:p@ss:w0rd\" -X POST https://x.test",
                "p@ss:w0rd",
            ),
            ("curl --user=ci-bot:tok3n.x https://x.test", "tok3n.x"),
            (
                "curl https://x.test \\\n  -H 'Accept: */*' \\\n  -u me:pa55wd",
                "pa55wd",
            ),
            ("run curl -u admin:Changeme1.", "Changeme1"),
        ] {
            assert_eq!(found(text), [(password, "PASSWORD")], "{text}");
        }
        for text in [
            "docker run -u 1000:1000 alpine",
            "docker exec -u www-data:www-data app sh",
            "curl -u $USER:$PASS https://x.test",
            "curl -u admin:${TOKEN} https://x.test",
            "curl -uadmin:secret https://x.test",
            "curl x-u admin:secret",
            "curl -u admin:pw12 https://x.test",
        ] {
            assert_eq!(found(text), [], "{text}");
        }
    }

    #[test]
    fn look_alikes_stay() {
        let text = "uuid 8e90276d-0640-4a57-b70c-f8ea9587951d commit 7092e1e352f5c25b5b83b244e50b6491580e1890 \
                    image sha256:15d32a4781b971d8b0340a78c7e446dea52ea8c13e669d41c50dfd5bc997eb22 \
                    v1.32.1 1.2.3 1.2.3.4.5 order PO-2021-8507784 ticket JIRA-89143 at 2023-01-26 06:45:05 \
                    or 12/Jan/2024:05:31:13 +0000, price $82,780.09, zip 32719-4691, isbn 978-7-589-30107-3, \
                    card 5500354633134648, 5974 1410 0870 1210 or 4813 5696 7208 9467, id 123-456-789-0123, color #bdc471, port 35535, float -195.610408, 1ZISOEXST1C4NYS0OM, \
                    issue #4521 and #123456789, oid 4111.1111.1111.1111.1";
        assert_eq!(found(text), vec![]);
        // After a `#` of its own, a form that tells itself is taken (a card number by
        // its check digit, an SSN in its groups), as after a label's `#`: a ticket of
        // the card's or the SSN's form is far rarer than a card after `card #`.
        for text in [
            "SSN#219-09-9998, Card#4111111111111111",
            "SSN #219-09-9998, card #4111111111111111",
        ] {
            assert_eq!(
                found(text),
                vec![
                    ("219-09-9998", "US_SSN"),
                    ("4111111111111111", "CREDIT_CARD")
                ],
                "{text}"
            );
        }
    }

    #[test]
    fn an_aws_key_pair_is_found_whole() {
        assert_eq!(
            found("creds AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY for prod"),
            vec![
                ("AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY"),
                ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "API_KEY"),
            ]
        );
    }

    #[test]
    fn private_key_blocks_whole() {
        let text = "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\nthanks";
        let got = found(text);
        assert_eq!(got.len(), 1);
        assert!(got[0].0.starts_with("-----BEGIN") && got[0].0.ends_with("KEY-----"));
    }

    #[test]
    fn non_ascii_text_never_panics_and_spans_are_on_char_boundaries() {
        let text = "Grüße an José (josé@exämple.de), Tel. +49 30 1234567 — 東京 080-1234-5678 ½ 1.2.3.4 日本語";
        let mut out = Vec::new();
        Detectors::new().find(text, &mut out);
        for f in &out {
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        }
        for cut in 0..text.len() {
            if text.is_char_boundary(cut) {
                Detectors::new().find(&text[cut..], &mut Vec::new());
            }
        }
    }
}
