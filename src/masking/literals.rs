//! The literal-prefixed shapes (`sk-`, `eyJ`, `AKIA`, `Bearer`, `-----BEGIN`, ...) read
//! by hand where their literal was found: the literal names the pattern's alternative,
//! and its extent is a run of one byte class, exactly as its pattern in
//! `shapes::SHAPES` would match anchored there (a property test holds them to the
//! patterns). An anchored regex search cost some 9,000 instructions a literal.

use super::shapes::Shape;
use super::triggers::{self, KnownRuns};

/// `[A-Za-z0-9_\-]`
fn token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn alphanumeric(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// `[A-Za-z0-9_]`
fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `[A-Za-z0-9\-]`
fn dashed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// `[a-f0-9]`
fn lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// `[A-Z0-9]`
fn upper_or_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

/// `[A-Za-z0-9._~+/\-]`: a bearer token.
fn bearer_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'+' | b'/' | b'-')
}

/// How many bytes of `class` start at `at`.
fn run(bytes: &[u8], at: usize, class: fn(u8) -> bool) -> usize {
    bytes
        .get(at..)
        .map_or(0, |rest| rest.iter().take_while(|&&b| class(b)).count())
}

/// One alternative of `Shape::Prefixed`: its literal, the class of the rest, the rest's
/// least length, and whether that length is exact (`{32}`).
struct Alternative {
    literal: &'static [u8],
    class: fn(u8) -> bool,
    least: usize,
    exact: bool,
}

const fn at_least(literal: &'static [u8], class: fn(u8) -> bool, least: usize) -> Alternative {
    Alternative {
        literal,
        class,
        least,
        exact: false,
    }
}

const fn exactly(literal: &'static [u8], class: fn(u8) -> bool, len: usize) -> Alternative {
    Alternative {
        literal,
        class,
        least: len,
        exact: true,
    }
}

/// The alternatives of `Shape::Prefixed`, in the pattern's order. Each literal starts
/// with one of `shapes::PROVIDER_KEY_PREFIXES` (several may share one: `xox`, `shp`).
const PREFIXED: [Alternative; 46] = [
    at_least(b"sk-", token, 20),
    at_least(b"sk_live_", alphanumeric, 10),
    at_least(b"sk_test_", alphanumeric, 10),
    at_least(b"rk_live_", alphanumeric, 10),
    at_least(b"rk_test_", alphanumeric, 10),
    at_least(b"sk_", lower_hex, 32),
    at_least(b"whsec_", alphanumeric, 20),
    at_least(b"ghp_", alphanumeric, 30),
    at_least(b"gho_", alphanumeric, 30),
    at_least(b"ghu_", alphanumeric, 30),
    at_least(b"ghs_", alphanumeric, 30),
    at_least(b"ghr_", alphanumeric, 30),
    at_least(b"github_pat_", word, 30),
    at_least(b"xoxa-", dashed, 10),
    at_least(b"xoxb-", dashed, 10),
    at_least(b"xoxp-", dashed, 10),
    at_least(b"xoxo-", dashed, 10),
    at_least(b"xoxs-", dashed, 10),
    at_least(b"xoxr-", dashed, 10),
    at_least(b"xoxe-", dashed, 10),
    at_least(b"AIza", token, 30),
    at_least(b"glpat-", token, 20),
    at_least(b"hf_", alphanumeric, 30),
    at_least(b"npm_", alphanumeric, 30),
    at_least(b"ya29.", token, 20),
    // `SG.` takes a second run after a dot: see `prefixed_end`.
    at_least(b"SG.", token, 16),
    at_least(b"dop_v1_", lower_hex, 40),
    exactly(b"shpat_", hex, 32),
    exactly(b"shpca_", hex, 32),
    exactly(b"shppa_", hex, 32),
    exactly(b"shpss_", hex, 32),
    at_least(b"pypi-", token, 50),
    at_least(b"xapp-", dashed, 20),
    at_least(b"lsv2_pt_", word, 32),
    at_least(b"lsv2_sk_", word, 32),
    at_least(b"fw_", alphanumeric, 20),
    at_least(b"dapi", lower_hex, 32),
    at_least(b"sbp_", lower_hex, 40),
    at_least(b"NRAK-", alphanumeric, 27),
    at_least(b"dp.pt.", alphanumeric, 40),
    at_least(b"dp.st.", alphanumeric, 40),
    at_least(b"dp.sa.", alphanumeric, 40),
    at_least(b"dp.ct.", alphanumeric, 40),
    at_least(b"glrt-", token, 20),
    at_least(b"gldt-", token, 20),
    at_least(b"glptt-", token, 20),
];

fn hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

const AWS_PREFIXES: [&[u8]; 11] = [
    b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"AGPA", b"AIDA", b"AIPA", b"ANPA", b"ANVA", b"APKA",
    b"AROA",
];

/// The end of a match of the literal-prefixed `shape` anchored at `start`, as its
/// pattern in `shapes::SHAPES` would give it; `None` for the triggered shapes. `known`
/// holds the runs read for the text's earlier literals (`sk-sk-sk-...`: one run).
pub fn end_of(shape: Shape, bytes: &[u8], start: usize, known: &mut KnownRuns) -> Option<usize> {
    let rest = bytes.get(start..)?;
    match shape {
        Shape::PemBegin => pem_end(bytes, start, b"-----BEGIN"),
        Shape::PemEnd => pem_end(bytes, start, b"-----END"),
        Shape::Jwt => {
            if !rest.starts_with(b"eyJ") {
                return None;
            }
            let head = known.end(bytes, start + 3, token) - (start + 3);
            if head < 10 {
                return None;
            }
            let mut end = start + 3 + head;
            for _ in 0..2 {
                if bytes.get(end) != Some(&b'.') {
                    break;
                }
                end = known.end(bytes, end + 1, token);
            }
            Some(end)
        }
        Shape::Bearer => {
            if !(rest.starts_with(b"Bearer")
                || rest.starts_with(b"bearer")
                || rest.starts_with(b"BEARER"))
            {
                return None;
            }
            let blanks = run(bytes, start + 6, triggers::is_blank);
            if blanks == 0 {
                return None;
            }
            let value = start + 6 + blanks;
            let len = run(bytes, value, bearer_byte);
            (len >= 12).then_some(value + len)
        }
        Shape::Prefixed => prefixed_end(bytes, start, known),
        Shape::ProsePassword => prose_password_end(bytes, start, known),
        Shape::AwsKeyId => {
            if !AWS_PREFIXES.iter().any(|p| rest.starts_with(p)) {
                return None;
            }
            (known.end(bytes, start + 4, upper_or_digit) >= start + 20).then_some(start + 20)
        }
        _ => None,
    }
}

fn prefixed_end(bytes: &[u8], start: usize, known: &mut KnownRuns) -> Option<usize> {
    let rest = &bytes[start..];
    let &Alternative {
        literal,
        class,
        least,
        exact,
    } = PREFIXED
        .iter()
        // The first byte before the comparison: a call to `memcmp` per alternative
        // otherwise.
        .find(|a| rest.first() == a.literal.first() && rest.starts_with(a.literal))?;
    let value = start + literal.len();
    let len = known.end(bytes, value, class) - value;
    if len < least {
        return None;
    }
    if exact {
        return Some(value + least);
    }
    let end = value + len;
    if literal == b"SG." {
        // `SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}`
        if bytes.get(end) != Some(&b'.') {
            return None;
        }
        let second = known.end(bytes, end + 1, token) - (end + 1);
        return (second >= 16).then_some(end + 1 + second);
    }
    Some(end)
}

/// `(?:assword|ASSWORD)(?:(?:[ \t]+[A-Za-z]+){0,4}[ \t]+(?:is|was|IS|WAS):?)?[ \t]+`
/// and a password's bytes, six or more (a quote may open them). The words between are
/// whole (a blank must follow each), so the greedy repetition takes the most words that
/// let the rest match; with no verb that lets it match, the value right after the
/// blanks (a `.netrc` entry's).
fn prose_password_end(bytes: &[u8], start: usize, known: &mut KnownRuns) -> Option<usize> {
    let rest = &bytes[start..];
    if !(rest.starts_with(b"assword") || rest.starts_with(b"ASSWORD")) {
        return None;
    }
    // `after[k]`: where the rest would start after `k` words.
    let mut after = [start + 7; 5];
    let mut words = 0;
    while words < 4 {
        let at = after[words];
        let blanks = run(bytes, at, triggers::is_blank);
        let letters = run(bytes, at + blanks, |b| b.is_ascii_alphabetic());
        if blanks == 0 || letters == 0 {
            break;
        }
        words += 1;
        after[words] = at + blanks + letters;
    }
    (0..=words)
        .rev()
        .find_map(|k| told_value_end(bytes, after[k], known))
        .or_else(|| blanks_and_value_end(bytes, start + 7, known))
}

/// `[ \t]+(?:is|was|IS|WAS):?[ \t]+` and a value as an assigned password's
/// (`triggers::password_value_end`, a backtick opening it too) at `at`: the end of the
/// value.
fn told_value_end(bytes: &[u8], at: usize, known: &mut KnownRuns) -> Option<usize> {
    let blanks = run(bytes, at, triggers::is_blank);
    if blanks == 0 {
        return None;
    }
    let verb = at + blanks;
    let rest = &bytes[verb..];
    let len = [&b"is"[..], b"was", b"IS", b"WAS"]
        .iter()
        .find(|v| rest.starts_with(v))?
        .len();
    let mut at = verb + len;
    // A `:` not followed by blanks fails either way: it is no blank itself.
    if bytes.get(at) == Some(&b':') {
        at += 1;
    }
    blanks_and_value_end(bytes, at, known)
}

/// `[ \t]+` and a value as an assigned password's at `at` (a backtick may open it):
/// the end of the value.
fn blanks_and_value_end(bytes: &[u8], at: usize, known: &mut KnownRuns) -> Option<usize> {
    let blanks = run(bytes, at, triggers::is_blank);
    if blanks == 0 {
        return None;
    }
    let opens = |b| matches!(b, b'"' | b'\'' | b'`');
    triggers::password_value_end(bytes, at + blanks, opens, known)
}

/// `-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----` (or `-----END`): the longest
/// middle that lets the rest match, ` BLOCK` taken when it is there.
fn pem_end(bytes: &[u8], start: usize, head: &[u8]) -> Option<usize> {
    if !bytes[start..].starts_with(head) {
        return None;
    }
    let middle = start + head.len();
    // Read no further than the pattern's 40: `-----BEGIN AAAA...` repeated is read once.
    let longest = bytes[middle..]
        .iter()
        .take(41)
        .take_while(|&&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ')
        .count()
        .min(40);
    (0..=longest).rev().find_map(|k| {
        let at = middle + k;
        let tail = bytes[at..].strip_prefix(b"PRIVATE KEY")?;
        if tail.starts_with(b" BLOCK-----") {
            Some(at + 11 + 11)
        } else if tail.starts_with(b"-----") {
            Some(at + 11 + 5)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex_automata::util::syntax;
    use regex_automata::{Anchored, Input, meta};

    use super::super::shapes::{PREFIXES, pattern};

    fn anchored(shape: Shape) -> meta::Regex {
        meta::Builder::new()
            .syntax(syntax::Config::new().unicode(false).utf8(true))
            .build(pattern(shape))
            .unwrap()
    }

    /// Pieces texts are made of: every literal, the bytes of each class and its edges.
    fn pieces() -> Vec<&'static str> {
        let literals = PREFIXES
            .iter()
            .flat_map(|(_, literals)| literals.iter().copied());
        literals
            .chain(
                PREFIXED
                    .iter()
                    .map(|a| std::str::from_utf8(a.literal).unwrap()),
            )
            .chain([
                " ",
                "\t",
                ".",
                "-",
                "_",
                "~",
                "+",
                "/",
                "=",
                "é",
                "\n",
                "a",
                "f",
                "g",
                "Z",
                "0",
                "9",
                "abcdef0123",
                "ABCDEF0123",
                "0123456789abcdef",
                "0123456789ABCDEFGHIJ",
                "abcdefghijKLMNOPQRST",
                "-----",
                " RSA ",
                "PRIVATE KEY",
                "PRIVATE KEY-----",
                " BLOCK",
                " BLOCK-----",
                "PGP ",
                "eyJhbGciOiJIUzI1NiJ9",
                " is ",
                " was",
                "IS",
                ":",
                " for",
                "the ",
                "`",
                "'",
                "\"",
                "hunter22",
                "p@ss!",
                "open sesame",
                "\"a b,c'\"",
            ])
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Each hand-read literal shape ends where its pattern, anchored at the same
        /// place, ends.
        #[test]
        fn hand_read_literal_shapes_match_their_patterns(
            parts in prop::collection::vec(prop::sample::select(pieces()), 0..30)
        ) {
            let text = parts.concat();
            let bytes = text.as_bytes();
            for (shape, _) in PREFIXES {
                let regex = anchored(shape);
                // One for the whole text, as the walk keeps it: the runs it knows
                // must give the ends a fresh read would.
                let mut known = KnownRuns::default();
                for start in 0..=bytes.len() {
                    if !text.is_char_boundary(start) {
                        continue;
                    }
                    let input = Input::new(bytes).range(start..).anchored(Anchored::Yes);
                    let expected = regex.search(&input).map(|m| m.end());
                    prop_assert_eq!(end_of(shape, bytes, start, &mut known), expected, "{:?} at {} in {:?}", shape, start, text);
                }
            }
        }
    }

    /// A password told in prose, quoted or not, of every length around the quoted
    /// value's bounds and with every byte a quoted one may hold: the hand reader ends
    /// where the pattern ends.
    #[test]
    fn told_passwords_are_read_as_their_pattern_reads_them() {
        let regex = anchored(Shape::ProsePassword);
        for lead in [
            "my password is ",
            "PASSWORD WAS: ",
            "password for it is\t",
            "login u password ",
            "password  ",
            "password for it ",
        ] {
            for open in ["", "\"", "'", "`"] {
                for alphabet in ["aZ9!@#$%^&*(){}[]<>?/~|", "a b,c;d'e\t\"f`"] {
                    for len in (0..9).chain(62..67) {
                        let value: String = alphabet.chars().cycle().skip(len).take(len).collect();
                        for after in ["", " x", "\"", "'", "`", ",", "\\", "é"] {
                            let text = format!("x {lead}{open}{value}{after}");
                            let bytes = text.as_bytes();
                            let start = text.find("assword").or(text.find("ASSWORD")).unwrap();
                            let input = Input::new(bytes).range(start..).anchored(Anchored::Yes);
                            let expected = regex.search(&input).map(|m| m.end());
                            assert_eq!(
                                end_of(
                                    Shape::ProsePassword,
                                    bytes,
                                    start,
                                    &mut KnownRuns::default()
                                ),
                                expected,
                                "{text:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Each alternative starts with one listed literal, and each listed literal starts
    /// an alternative: the literal search finds every alternative, and finds nothing
    /// that none reads.
    #[test]
    fn the_prefixed_alternatives_start_with_the_listed_literals() {
        let (_, literals) = PREFIXES
            .iter()
            .find(|(shape, _)| *shape == Shape::Prefixed)
            .unwrap();
        for alternative in &PREFIXED {
            let heads = literals
                .iter()
                .filter(|l| alternative.literal.starts_with(l.as_bytes()))
                .count();
            assert_eq!(
                heads,
                1,
                "{:?}",
                String::from_utf8_lossy(alternative.literal)
            );
        }
        for literal in *literals {
            assert!(
                PREFIXED
                    .iter()
                    .any(|a| a.literal.starts_with(literal.as_bytes())),
                "{literal:?}"
            );
        }
    }
}
