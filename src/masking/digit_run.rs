//! A run of digits with separators (`+1 (415) 555-0100`, `4111 1111 1111 1111`), cut
//! into its digit groups, so card, SSN and phone validators can read the same candidate
//! and try it whole or shortened to fewer groups.

/// The value of a few ASCII digits (a calling code, a card's prefix, an octet): the
/// caller has checked that they are digits and few enough for a `u32`.
pub fn value_of(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |value, digit| value * 10 + u32::from(digit - b'0'))
}

/// Groups kept at most; a longer run is read up to here.
const MAX_GROUPS: usize = 16;

/// One run of digits and separators found in a text.
#[derive(Clone, Debug)]
pub struct DigitRun {
    /// Byte offset of the run (its `+` or `(` if it starts with one).
    pub start: usize,
    /// A leading `+` (international form).
    pub plus: bool,
    /// Digit groups as byte ranges in the text.
    groups: [(usize, usize); MAX_GROUPS],
    count: usize,
}

impl DigitRun {
    /// Reads the run `text[start..end]` (digits, spaces, `().-/`, a leading `+` or `+(`).
    pub fn read(text: &str, start: usize, end: usize) -> DigitRun {
        let bytes = text.as_bytes();
        let mut run = DigitRun {
            start,
            plus: false,
            groups: [(0, 0); MAX_GROUPS],
            count: 0,
        };
        let mut at = start;
        while at < end && !bytes[at].is_ascii_digit() {
            if bytes[at] == b'+' {
                run.plus = true;
            }
            at += 1;
        }
        while at < end && run.count < MAX_GROUPS {
            let group_start = at;
            while at < end && bytes[at].is_ascii_digit() {
                at += 1;
            }
            run.groups[run.count] = (group_start, at);
            run.count += 1;
            while at < end && !bytes[at].is_ascii_digit() {
                at += 1;
            }
        }
        run
    }

    pub fn groups(&self) -> &[(usize, usize)] {
        &self.groups[..self.count]
    }

    /// The end (byte offset) of the first `k` groups.
    pub fn end_of(&self, k: usize) -> usize {
        self.groups[k - 1].1
    }

    /// Digits in the first `k` groups.
    pub fn digit_count(&self, k: usize) -> usize {
        self.groups[..k].iter().map(|(s, e)| e - s).sum()
    }

    /// The digits of the first `k` groups, appended to `out` (cleared first).
    pub fn digits(&self, text: &str, k: usize, out: &mut Vec<u8>) {
        out.clear();
        for &(s, e) in &self.groups[..k] {
            out.extend_from_slice(&text.as_bytes()[s..e]);
        }
    }

    /// The text between group `i` and group `i + 1`.
    pub fn separator<'t>(&self, text: &'t str, i: usize) -> &'t str {
        &text[self.groups[i].1..self.groups[i + 1].0]
    }

    /// Group lengths of the first `k` groups.
    pub fn shape(&self, k: usize) -> impl Iterator<Item = usize> + '_ {
        self.groups[..k].iter().map(|(s, e)| e - s)
    }

    /// True when the first `k` groups are joined by one and the same separator, one of
    /// `allowed` (or there is a single group).
    pub fn one_separator(&self, text: &str, k: usize, allowed: &[&str]) -> bool {
        if k < 2 {
            return true;
        }
        let first = self.separator(text, 0);
        allowed.contains(&first) && (1..k - 1).all(|i| self.separator(text, i) == first)
    }
}
