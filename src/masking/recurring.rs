//! Values found by the words around them (a bare SSN after "SSN:", a key after "api
//! key", a name after "my name is") are looked for again in the rest of the body: the
//! assistant's "I see you mentioned 815518385" has no such words, yet is the same value.

use super::Span;

/// Shorter values are not looked for again: a three-letter name would be found beside
/// unrelated words too often to be worth it.
const LEAST_LEN: usize = 4;

/// At most this many values of one body are looked for again: a body listing thousands
/// of keys would otherwise cost a search per key in each of its strings.
const MOST_VALUES: usize = 64;

/// A search for one value, set up once per body. `memchr::memmem::Finder` was measured
/// first: its set-up (two-way factorisation, rare-byte ranking, vectors) cost some
/// 2 700 instructions a value, more than searching the whole body; the packed-pair
/// finder it uses inside costs a few hundred.
struct ValueSearch {
    value: Box<[u8]>,
    #[cfg(target_arch = "x86_64")]
    pair: Option<memchr::arch::x86_64::sse2::packedpair::Finder>,
}

impl ValueSearch {
    fn new(value: &[u8]) -> Self {
        ValueSearch {
            value: value.into(),
            #[cfg(target_arch = "x86_64")]
            pair: memchr::arch::x86_64::sse2::packedpair::Finder::new(value),
        }
    }

    fn value(&self) -> &[u8] {
        &self.value
    }

    /// The first place at or after `from` where the value stands in `haystack`.
    fn find_from(&self, haystack: &[u8], from: usize) -> Option<usize> {
        let rest = haystack.get(from..)?;
        #[cfg(target_arch = "x86_64")]
        if let Some(pair) = &self.pair
            && rest.len() >= pair.min_haystack_len()
        {
            return pair.find(rest, &self.value).map(|at| from + at);
        }
        // A short rest (the pair needs a vector's width past the value), or no pair:
        // byte by byte. `memchr::memmem::find` would set a whole finder up per call.
        let (&first, _) = self.value.split_first()?;
        (0..=rest.len().checked_sub(self.value.len())?)
            .find(|&at| rest[at] == first && rest[at..].starts_with(&self.value))
            .map(|at| from + at)
    }

    /// Every place where the value stands on its own in `haystack`, not overlapping.
    fn standalone_in<'h>(&'h self, haystack: &'h [u8]) -> impl Iterator<Item = usize> + 'h {
        let mut from = 0;
        std::iter::from_fn(move || {
            while let Some(start) = self.find_from(haystack, from) {
                let end = start + self.value.len();
                if standalone(haystack, start, end) {
                    from = end;
                    return Some(start);
                }
                from = start + 1;
            }
            None
        })
    }
}

/// One value and how often it was replaced in the body so far.
struct Value {
    search: ValueSearch,
    kind: super::Kind,
    replaced: usize,
}

/// The values of one body found by their context ([`Span::by_context`]), so far.
#[derive(Default)]
pub(crate) struct Recurring {
    values: Vec<Value>,
}

impl Recurring {
    /// Keeps the values in `spans` (just found in `text`) told by their context, then
    /// adds to `spans` every other standalone occurrence in `text` of each value kept
    /// so far, in order. A place some other span covers keeps that span.
    pub fn extend(&mut self, text: &str, spans: &mut Vec<Span>) {
        let bytes = text.as_bytes();
        for span in spans.iter().filter(|span| span.by_context) {
            let value = &bytes[span.start..span.end];
            if value.len() >= LEAST_LEN
                // A word of prose taken by its context (`Wrong password: status`) would
                // take that word everywhere else.
                && !value.iter().all(u8::is_ascii_lowercase)
                && self.values.len() < MOST_VALUES
                && !self.values.iter().any(|kept| kept.search.value() == value)
            {
                self.values.push(Value {
                    search: ValueSearch::new(value),
                    kind: span.kind.clone(),
                    replaced: 0,
                });
            }
        }
        if self.values.is_empty() {
            return;
        }
        let found = spans.len();
        let mut covered = Covered::of(spans);
        for value in &self.values {
            let len = value.search.value().len();
            for start in value.search.standalone_in(bytes) {
                let end = start + len;
                if covered.take(start, end) {
                    spans.push(Span {
                        start,
                        end,
                        kind: value.kind.clone(),
                        by_context: false,
                    });
                }
            }
        }
        if spans.len() > found {
            spans.sort_by_key(|span| span.start);
        }
        for span in spans.iter() {
            let text = &bytes[span.start..span.end];
            if let Some(value) = self
                .values
                .iter_mut()
                .find(|value| value.search.value() == text)
            {
                value.replaced += 1;
            }
        }
    }

    /// Whether `body` (the raw bytes the texts came from) holds a value more often than
    /// it was replaced: found in a later string, it also stands in an earlier one,
    /// passed before the value was known. The body is then masked again, these values
    /// known from the start ([`Recurring::known`]).
    pub fn missed_in(&self, body: &[u8]) -> bool {
        self.values
            .iter()
            .any(|value| value.search.standalone_in(body).count() > value.replaced)
    }

    /// The same values, none replaced yet: for masking the body again.
    pub fn known(self) -> Recurring {
        Recurring {
            values: self
                .values
                .into_iter()
                .map(|value| Value {
                    replaced: 0,
                    ..value
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The places of a text that spans cover, as disjoint ranges by start. A value repeated
/// through a body (`SSN 815518385 ` ten thousand times) is found as often as spans
/// there are: comparing each place with every span cost time in the square of the
/// body's length.
enum Covered {
    /// Few spans: compared one by one, with no map to build.
    Few(Vec<(usize, usize)>),
    Many(std::collections::BTreeMap<usize, usize>),
}

impl Covered {
    const FEW: usize = 16;

    fn of(spans: &[Span]) -> Covered {
        let ranges = spans.iter().map(|span| (span.start, span.end));
        if spans.len() < Self::FEW {
            return Covered::Few(ranges.collect());
        }
        let mut covered = Covered::Many(Default::default());
        for (start, end) in ranges {
            covered.add(start, end);
        }
        covered
    }

    /// Adds `start..end`, merged with the ranges it meets.
    fn add(&mut self, mut start: usize, mut end: usize) {
        match self {
            Covered::Few(ranges) if ranges.len() + 1 < Self::FEW => ranges.push((start, end)),
            Covered::Few(ranges) => {
                let ranges = std::mem::take(ranges);
                *self = Covered::Many(Default::default());
                for (start, end) in ranges.into_iter().chain([(start, end)]) {
                    self.add(start, end);
                }
            }
            Covered::Many(ranges) => {
                while let Some((&from, &to)) = ranges.range(..end).next_back()
                    && to > start
                {
                    ranges.remove(&from);
                    start = start.min(from);
                    end = end.max(to);
                }
                ranges.insert(start, end);
            }
        }
    }

    /// Covers `start..end` if nothing covers any of it yet: whether it did.
    fn take(&mut self, start: usize, end: usize) -> bool {
        let met = match self {
            Covered::Few(ranges) => ranges.iter().any(|&(s, e)| s < end && start < e),
            // Disjoint ranges by start end in the same order: only the last one to
            // start before `end` can reach past `start`.
            Covered::Many(ranges) => ranges
                .range(..end)
                .next_back()
                .is_some_and(|(_, &e)| e > start),
        };
        if !met {
            self.add(start, end);
        }
        !met
    }
}

/// Whether `bytes[start..end]` stands on its own: not the middle of a longer word or
/// number. An edge that is itself punctuation (a key's `-`) needs nothing beside it.
/// Letters beyond ASCII do not join: Chinese and Japanese write a value right beside
/// the words (`电话13812345678`), and a UTF-8 match starts and ends on characters.
fn standalone(bytes: &[u8], start: usize, end: usize) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let open_before = start == 0 || !word(bytes[start]) || !word(bytes[start - 1]);
    let open_after = end == bytes.len() || !word(bytes[end - 1]) || !word(bytes[end]);
    open_before && open_after
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::Kind;

    /// Finds `SSN 123456789`'s digits only after the word.
    struct AfterWord;

    impl AfterWord {
        fn find(&self, text: &str, spans: &mut Vec<Span>) {
            for (at, _) in text.match_indices("SSN ") {
                let start = at + 4;
                let end = start + 9;
                if text.len() >= end && text.as_bytes()[start..end].iter().all(u8::is_ascii_digit) {
                    spans.push(Span {
                        start,
                        end,
                        kind: Kind("US_SSN".into()),
                        by_context: true,
                    });
                }
            }
        }
    }

    fn places(recurring: &mut Recurring, text: &str) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        AfterWord.find(text, &mut spans);
        recurring.extend(text, &mut spans);
        spans.iter().map(|s| (s.start, s.end)).collect()
    }

    #[test]
    fn a_value_found_once_is_found_again_in_that_text_and_the_next() {
        let mut recurring = Recurring::default();
        let first = "x 536221234 then SSN 536221234.";
        assert_eq!(places(&mut recurring, first), [(2, 11), (21, 30)]);
        assert_eq!(
            places(&mut recurring, "you said 536221234, 5362212345 a536221234"),
            [(9, 18)]
        );
        assert_eq!(places(&mut recurring, "nothing here"), []);
        assert!(!recurring.missed_in(b"536221234 536221234 536221234"));
        assert!(recurring.missed_in(b"536221234 536221234 536221234 (536221234)"));
        assert!(!recurring.missed_in(b"536221234 536221234 536221234 5362212345"));
    }

    #[test]
    fn short_values_words_and_values_told_by_their_form_are_not_looked_for() {
        for (end, by_context, text) in [
            (2, true, "536221234 and 536221234"),
            (9, false, "536221234 and 536221234"),
            (6, true, "status and status"),
        ] {
            let mut spans = vec![Span {
                start: 0,
                end,
                kind: Kind("US_SSN".into()),
                by_context,
            }];
            let mut recurring = Recurring::default();
            recurring.extend(text, &mut spans);
            assert_eq!(spans.len(), 1);
            assert!(recurring.is_empty());
        }
    }

    #[test]
    fn a_value_is_found_at_every_place_in_haystacks_of_every_length() {
        // Short haystacks take the fallback, longer ones the packed pair.
        for value in ["abcd", "536221234", "sk-0123456789abcdefghijKLMNOPQRST"] {
            let search = ValueSearch::new(value.as_bytes());
            for len in value.len()..80 {
                for at in 0..=len - value.len() {
                    let mut haystack = vec![b' '; len];
                    haystack[at..at + value.len()].copy_from_slice(value.as_bytes());
                    assert_eq!(
                        search.standalone_in(&haystack).collect::<Vec<_>>(),
                        [at],
                        "{value} at {at} of {len}"
                    );
                }
            }
        }
    }

    /// A value repeated through a body is found at each place, past the spans already
    /// there (the ranges kept in a map once there are many).
    #[test]
    fn a_value_repeated_thousands_of_times_is_found_at_each_place() {
        let mut recurring = Recurring::default();
        let text = "SSN 815518385 ".repeat(3000) + &"815518385 x ".repeat(3000);
        let places = places(&mut recurring, &text);
        assert_eq!(places.len(), 6000);
        for (n, &(start, end)) in places.iter().enumerate() {
            let at = if n < 3000 {
                n * 14 + 4
            } else {
                3000 * 14 + (n - 3000) * 12
            };
            assert_eq!((start, end), (at, at + 9), "place {n}");
        }
    }

    /// Covered ranges answer as comparing with each range does, few or many, whatever
    /// the order and overlaps of what they were given.
    #[test]
    fn covered_ranges_meet_what_each_range_would() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        for round in 0..300 {
            let given: Vec<Span> = (0..next(40))
                .map(|_| {
                    let start = next(200);
                    Span {
                        start,
                        end: start + 1 + next(12),
                        kind: Kind("X".into()),
                        by_context: false,
                    }
                })
                .collect();
            let mut naive: Vec<(usize, usize)> = given.iter().map(|s| (s.start, s.end)).collect();
            let mut covered = Covered::of(&given);
            for _ in 0..60 {
                let start = next(220);
                let end = start + 1 + next(12);
                let free = !naive.iter().any(|&(s, e)| s < end && start < e);
                assert_eq!(
                    covered.take(start, end),
                    free,
                    "round {round}: {start}..{end}"
                );
                if free {
                    naive.push((start, end));
                }
            }
        }
    }

    #[test]
    fn standalone_edges() {
        let text = b"a-sk-abc sk-abc_ 9sk-abc";
        // `-` before a value starting with a letter: a word of its own.
        assert!(standalone(text, 2, 8));
        assert!(!standalone(text, 9, 15));
        assert!(!standalone(text, 18, 24));
        assert!(standalone(b"-abc-", 0, 5));
        let cjk = "「536221234」ですね".as_bytes();
        assert!(standalone(cjk, 3, 12));
    }
}
