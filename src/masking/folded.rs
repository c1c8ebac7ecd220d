//! Text as the built-in detectors read it: full-width forms (`４１１１`, `＠`, `＋８１`,
//! as Japanese and Chinese input methods type them), other scripts' decimal digits
//! (Arabic-Indic `٠٥٠`, Devanagari, Bengali, Thai, ...) and typography's spaces and
//! dashes between digits (`06 12 34 56 78` with no-break spaces, `555–0134`) folded to
//! ASCII, with the way back to the original's offsets, so every number-reading detector
//! takes them as is.

use super::kinds::Found;

/// The zero of every Unicode decimal-digit run (`Nd`) in the Basic Multilingual Plane
/// but ASCII's and the full-width one (folded with the other full-width forms), in
/// order: a digit is one of these plus 0 to 9. From Python's `unicodedata` (Unicode
/// 14): `[c for c in range(0x80, 0x10000) if category(chr(c)) == "Nd" and digit(chr(c)) == 0]`.
const ZEROS: [u32; 35] = [
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66,
    0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0,
];

/// The UTF-8 lead bytes below this start no character [`ascii_of`] folds (U+0660, the
/// first, is `D9 A0`) but the no-break space's ([`NBSP_LEAD`]): text without one,
/// nearly all prompts, is read as it is.
const FIRST_LEAD: u8 = 0xD9;

/// The lead byte of U+0080-00BF, the no-break space (`C2 A0`) among them. Not the
/// accented letters' (`é` is `C3 A9`): European text without a no-break space is not
/// walked for nothing.
const NBSP_LEAD: u8 = 0xC2;

/// Whether `b` may lead a character that [`ascii_of`] or [`separator_of`] folds.
fn may_lead(b: u8) -> bool {
    b >= FIRST_LEAD || b == NBSP_LEAD
}

/// The ASCII separator a space or a dash of typography is read as, where it joins two
/// groups of letters or digits, bracketed or not ([`FoldedText::fold`] looks at both
/// sides): the no-break, figure, thin and narrow no-break spaces (French `06 12 34 56
/// 78`, `+33 6 12 34 56 78`), the ideographic space; the hyphens, the figure and en
/// dashes, the minus sign and katakana's long-vowel mark as Japanese writes phone
/// numbers with it (`090ー1234ー5678`). Not the em dash: it ends a clause, it does not
/// join groups.
fn separator_of(c: char) -> Option<u8> {
    match c {
        '\u{00A0}' | '\u{2007}' | '\u{2009}' | '\u{202F}' | '\u{3000}' => Some(b' '),
        '\u{2010}'..='\u{2013}' | '\u{2212}' | '\u{30FC}' | '\u{FF70}' => Some(b'-'),
        _ => None,
    }
}

/// The ASCII byte `c` is read as: a full-width form's (U+FF01-FF5E, as NFKC folds them)
/// or a decimal digit's.
fn ascii_of(c: char) -> Option<u8> {
    let c = u32::from(c);
    if (0xFF01..=0xFF5E).contains(&c) {
        return u8::try_from(c - 0xFEE0).ok();
    }
    let run = ZEROS.partition_point(|&zero| zero <= c);
    let zero = *ZEROS.get(run.checked_sub(1)?)?;
    u8::try_from(c - zero)
        .ok()
        .filter(|&d| d < 10)
        .map(|d| b'0' + d)
}

/// Whether any byte of `bytes` is a lead byte [`FIRST_LEAD`] or above, or
/// [`NBSP_LEAD`]. This runs on every text masked, so it has no early exit, which the
/// compiler turns into vector code (no `unsafe`): the largest byte of the 32-byte
/// blocks and whether one is `NBSP_LEAD` (unrolled vector maxima and compares), then
/// the high bits of the rest ORed as words, its bytes compared one by one only when
/// one has its high bit set. Blocks tested one by one for an early exit took about
/// twice that (~1 100 instructions a request on the masking bench, against ~600).
fn may_fold(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(32);
    // Lane by lane, reduced once at the end: a fold to one byte per block reduced
    // every block (twenty instructions each).
    let mut lanes = [0u8; 32];
    let mut nbsp_leads = [0u8; 32];
    for block in &mut blocks {
        for ((lane, nbsp), &b) in lanes.iter_mut().zip(&mut nbsp_leads).zip(block) {
            *lane = (*lane).max(b);
            *nbsp |= u8::from(b == NBSP_LEAD);
        }
    }
    let most = lanes.iter().fold(0u8, |most, &lane| most.max(lane));
    let nbsp = nbsp_leads.iter().fold(0u8, |any, &lane| any | lane);
    let rest = blocks.remainder();
    let mut words = rest.chunks_exact(8);
    let high = (&mut words).fold(0u64, |high, word| {
        high | u64::from_le_bytes(word.try_into().unwrap_or_default())
    }) | words
        .remainder()
        .iter()
        .fold(0u64, |high, &b| high | u64::from(b));
    most >= FIRST_LEAD
        || nbsp != 0
        || (high & 0x8080_8080_8080_8080 != 0 && rest.iter().any(|&b| may_lead(b)))
}

/// A text with its foldable characters folded, and per byte of it, the offset in the
/// original of the character it came from. Kept per thread and reused.
#[derive(Debug, Default)]
pub struct FoldedText {
    text: String,
    /// `origin[i]`: where folded byte `i` was in the original; one more entry, the
    /// original's length, for offsets at the end.
    origin: Vec<u32>,
}

impl FoldedText {
    pub const fn new() -> FoldedText {
        FoldedText {
            text: String::new(),
            origin: Vec::new(),
        }
    }

    /// Folds `text` into `self`; false, and `self` not to be read, when `text` has
    /// nothing to fold (or is too long for the map's 32-bit offsets).
    #[inline]
    pub fn fold(&mut self, text: &str) -> bool {
        may_fold(text.as_bytes()) && self.fold_some(text)
    }

    /// [`FoldedText::fold`] past its test. Out of line: it runs only for texts holding
    /// such a byte, and `Masker::find`, where the test is inlined, stays small.
    #[inline(never)]
    fn fold_some(&mut self, text: &str) -> bool {
        let bytes = text.as_bytes();
        if u32::try_from(text.len()).is_err() {
            return false;
        }
        self.text.clear();
        self.origin.clear();
        let mut folded_any = false;
        let mut copied = 0;
        let mut at = 0;
        while at < bytes.len() {
            if !may_lead(bytes[at]) {
                at += 1;
                continue;
            }
            // These bytes always lead a char; were one not to, it is passed.
            let Some(c) = text.get(at..).and_then(|rest| rest.chars().next()) else {
                at += 1;
                continue;
            };
            let ascii = ascii_of(c).or_else(|| {
                let separator = separator_of(c)?;
                // The byte before as read: the last folded if nothing was copied since.
                let before = if at == copied {
                    self.text.as_bytes().last().copied()
                } else {
                    Some(bytes[at - 1])
                };
                let after = text[at + c.len_utf8()..].chars().next().and_then(|a| {
                    u8::try_from(a)
                        .ok()
                        .filter(u8::is_ascii)
                        .or_else(|| ascii_of(a))
                });
                // A group's end and the next's start: `555 0134`, `(948) 631`, `+1 (887)`.
                let joins = before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b')')
                    && after.is_some_and(|a| a.is_ascii_alphanumeric() || a == b'(');
                joins.then_some(separator)
            });
            let Some(ascii) = ascii else {
                at += c.len_utf8();
                continue;
            };
            self.copy(text, copied, at);
            self.text.push(char::from(ascii));
            self.origin.push(at as u32);
            folded_any = true;
            at += c.len_utf8();
            copied = at;
        }
        if !folded_any {
            return false;
        }
        self.copy(text, copied, text.len());
        self.origin.push(text.len() as u32);
        true
    }

    /// Copies `text[from..to]` as it is.
    fn copy(&mut self, text: &str, from: usize, to: usize) {
        self.text.push_str(&text[from..to]);
        self.origin.extend(from as u32..to as u32);
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The original's offset of the folded text's offset `at` (a char boundary of each).
    pub fn origin(&self, at: usize) -> usize {
        self.origin[at] as usize
    }

    /// Values found in the folded text, moved to the original's offsets.
    #[inline(never)]
    pub fn map_back(&self, found: &mut [Found]) {
        for value in found {
            value.start = self.origin(value.start);
            value.end = self.origin(value.end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(text: &str) -> Option<String> {
        let mut folded = FoldedText::default();
        folded.fold(text).then(|| folded.as_str().to_owned())
    }

    #[test]
    fn full_width_forms_and_other_scripts_digits_fold_to_ascii() {
        assert_eq!(
            folded("カード ４１１１－１１１１ ｊｏ＠ｅｘ．ｊｐ").as_deref(),
            Some("カード 4111-1111 jo@ex.jp")
        );
        assert_eq!(
            folded("رقمي ٠٥٠١٢٣٤٥٦٧").as_deref(),
            Some("رقمي 0501234567")
        );
        assert_eq!(folded("۰۹۱۲").as_deref(), Some("0912"));
        assert_eq!(folded("ফোন ০১৭১১").as_deref(), Some("ফোন 01711"));
        assert_eq!(folded("फ़ोन ९८७६").as_deref(), Some("फ़ोन 9876"));
        assert_eq!(folded("๐๘๑"), Some("081".to_owned()));
    }

    #[test]
    fn spaces_and_dashes_of_typography_fold_between_letters_and_digits() {
        assert_eq!(
            folded("au 06\u{a0}12\u{202f}34\u{2009}56\u{2007}78").as_deref(),
            Some("au 06 12 34 56 78")
        );
        assert_eq!(
            folded("555–0134 and 123‑45−6789").as_deref(),
            Some("555-0134 and 123-45-6789")
        );
        // Beside a folded digit, on either side.
        assert_eq!(
            folded("電話０９０ー１２３４ー５６７８").as_deref(),
            Some("電話090-1234-5678")
        );
        assert_eq!(folded("DE89\u{3000}3704").as_deref(), Some("DE89 3704"));
        // Not where they do not join two groups: the text is read as it is.
        for text in [
            "Tél\u{a0}: 06",
            "« bonjour\u{a0}»",
            "2019 – 2024",
            "コーヒー",
            "a—b",
            "ends with 4\u{a0}",
        ] {
            assert_eq!(folded(text), None, "{text}");
        }
    }

    #[test]
    fn text_with_nothing_to_fold_is_read_as_it_is() {
        for text in [
            "",
            "plain ascii 4111",
            "café naïve",
            "电话号码、请回复。",
            "日本語のテキスト",
            "😀 ok",
            "٪ ؟",
        ] {
            assert_eq!(folded(text), None, "{text}");
        }
    }

    #[test]
    fn full_width_punctuation_folds_as_nfkc_folds_it() {
        assert_eq!(
            folded("电话（手机）：１３８，好").as_deref(),
            Some("电话(手机):138,好")
        );
    }

    #[test]
    fn every_folded_offset_leads_back_to_its_character() {
        let text = "a١b２ｃ😀d";
        let mut folded = FoldedText::default();
        assert!(folded.fold(text));
        assert_eq!(folded.as_str(), "a1b2c😀d");
        let starts: Vec<usize> = folded
            .as_str()
            .char_indices()
            .map(|(at, _)| folded.origin(at))
            .collect();
        let original: Vec<usize> = text.char_indices().map(|(at, _)| at).collect();
        assert_eq!(starts, original);
        assert_eq!(folded.origin(folded.as_str().len()), text.len());
    }

    #[test]
    fn only_decimal_digits_and_full_width_forms_fold() {
        for c in [
            '\u{065F}', '\u{066A}', '\u{0970}', '\u{FF00}', '\u{FF5F}', '\u{FFE0}', 'Ⅻ', '²', '½',
        ] {
            assert_eq!(ascii_of(c), None, "{c:?}");
        }
        for zero in ZEROS {
            for d in 0..10 {
                let c = char::from_u32(zero + d).unwrap();
                assert_eq!(ascii_of(c), Some(b'0' + d as u8), "{c:?}");
                assert!(c.is_numeric());
                assert!(c.to_string().as_bytes()[0] >= FIRST_LEAD, "{c:?}");
            }
        }
        assert_eq!(ascii_of('！'), Some(b'!'));
        assert_eq!(ascii_of('～'), Some(b'~'));
    }

    #[test]
    fn the_block_test_finds_a_lead_byte_at_every_place() {
        for len in 0..100 {
            for place in 0..len {
                let mut bytes = vec![b'a'; len];
                bytes[place] = FIRST_LEAD;
                assert!(may_fold(&bytes), "{len} {place}");
                bytes[place] = NBSP_LEAD;
                assert!(may_fold(&bytes), "{len} {place}");
                for not_a_lead in [FIRST_LEAD - 1, NBSP_LEAD + 1, NBSP_LEAD - 1] {
                    bytes[place] = not_a_lead;
                    assert!(!may_fold(&bytes), "{len} {place}");
                }
            }
        }
    }
}
