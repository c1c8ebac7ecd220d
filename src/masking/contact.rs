//! Contact details: e-mail addresses, and phone numbers in international (`+CC`, `00CC`)
//! and national forms: international ones checked against their calling code's national
//! number plan (libphonenumber's metadata), national ones against the North American
//! numbering plan, the shapes national numbers are written in, or a word for a phone
//! just before them (`call me at`, `电话`).

use std::sync::{LazyLock, OnceLock};

use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, meta};

use super::bounds;
use super::digit_run::{self, DigitRun};
use super::phone_plan::CALLING_CODES as CALLING_CODES_PLAN;

/// The e-mail address matched at `start..end` (local part, `@`, dotted domain with an
/// alphabetic top-level label), widened back over non-ASCII letters of the local part.
pub fn email(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    // Bytes searched in place, here and for the labels: `str`'s char searchers cost
    // more to set up than these few bytes take to read.
    let at = start + memchr::memrchr(b'@', &text.as_bytes()[start..end])?;
    address(text, start, at, at + 1, end)
}

/// An e-mail address whose `@` is percent-encoded (`john%40example.com` in a URL's
/// query) or written as HTML's character reference (`mary&#64;example.org`,
/// `&#x40;`, as pages hide addresses from harvesters), at the `%` or `&` at `at`: the
/// local part before it and the domain after it, read as the `@` shape reads them and
/// checked as [`email`] checks them.
pub fn encoded_email(text: &str, at: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let rest = &bytes[at..];
    let sign = if rest.starts_with(b"%40") {
        3
    } else if rest.starts_with(b"&#64;") {
        5
    } else if rest
        .get(..6)
        .is_some_and(|r| r.eq_ignore_ascii_case(b"&#x40;"))
    {
        6
    } else {
        return None;
    };
    let end = super::triggers::domain_end(bytes, at + sign)?;
    address(text, at, at, at + sign, end)
}

/// The address whose local part ends at `at` and whose domain is `domain..end`, the
/// local part widened back from `start` over its characters (non-ASCII letters among
/// them), when both parts are well formed and no word goes on after it.
fn address(
    text: &str,
    start: usize,
    at: usize,
    domain: usize,
    end: usize,
) -> Option<(usize, usize)> {
    let mut start = start;
    while let Some(c) = bounds::before(text, start) {
        // An apostrophe inside a name (`o'brien@`) is part of it, never a quote's end.
        let inside_name = c == '\'' && bounds::before(text, start - 1).is_some_and(bounds::is_word);
        if bounds::is_word(c) || matches!(c, '.' | '%' | '+' | '-') || inside_name {
            start -= c.len_utf8();
        } else {
            break;
        }
    }
    let local = text[start..at].trim_start_matches('.');
    let end = top_level_end(text.as_bytes(), domain, end);
    // Two bytes compared in place: `str::contains` sets up a substring searcher per
    // call, costlier than the whole of a short local part.
    if local.is_empty()
        || local.ends_with('.')
        || local.as_bytes().windows(2).any(|pair| pair == b"..")
        || !domain_labels_valid(&text.as_bytes()[domain..end])
        || bounds::after(text, end).is_some_and(|c| bounds::is_letter_or_digit(c) || c == '@')
    {
        return None;
    }
    Some((at - local.len(), end))
}

/// Where the address whose domain the shape read as `domain..end` ends: given back to
/// the label before while the last one is not a top-level domain but a file's extension
/// (`ann@example.org.csv`, a file named after its owner, keeps its `.csv`) or was cut
/// inside a word (`ann@example.com.mp3`: the shape's top level is `mp`, a digit after
/// it). The label before must be letters only, as a top-level domain is. Without this,
/// the second was no address at all (a letter or digit right after one refuses it).
fn top_level_end(bytes: &[u8], domain: usize, mut end: usize) -> usize {
    while let Some(dot) = memchr::memrchr(b'.', &bytes[domain..end]).map(|d| domain + d) {
        let cut_inside = bytes.get(end).is_some_and(u8::is_ascii_alphanumeric);
        if !cut_inside && !is_file_extension(&bytes[dot + 1..end]) {
            break;
        }
        let label = match memchr::memrchr(b'.', &bytes[domain..dot]) {
            Some(before) => &bytes[domain + before + 1..dot],
            None => break,
        };
        if !is_top_level(label) {
            break;
        }
        end = dot;
    }
    end
}

/// A label that may end an address: two ASCII letters or more, nothing else (as the
/// `@` shape's `\.[A-Za-z]{2,}` reads it when no letter or digit follows).
pub(super) fn is_top_level(label: &[u8]) -> bool {
    label.len() >= 2 && label.iter().all(u8::is_ascii_alphabetic)
}

/// File name extensions that are no top-level domain (each checked absent from the
/// public suffix list: `zip`, `mov`, `md`, `py`, `sh` and `docs` are domains, and are not
/// here). Only letters: an extension with a digit (`mp3`) is cut inside a word.
const FILE_EXTENSIONS: [&[u8]; 67] = [
    b"txt", b"pdf", b"csv", b"tsv", b"json", b"jsonl", b"ndjson", b"xml", b"html", b"htm",
    b"xhtml", b"yaml", b"yml", b"toml", b"ini", b"cfg", b"conf", b"log", b"doc", b"docx", b"xls",
    b"xlsx", b"xlsm", b"ppt", b"pptx", b"odt", b"ods", b"odp", b"rtf", b"eml", b"msg", b"vcf",
    b"ics", b"png", b"jpg", b"jpeg", b"gif", b"webp", b"svg", b"bmp", b"tif", b"tiff", b"heic",
    b"wav", b"ogg", b"flac", b"webm", b"avi", b"mkv", b"tar", b"gz", b"tgz", b"xz", b"rar",
    b"parquet", b"pkl", b"sql", b"bak", b"tmp", b"dat", b"exe", b"dll", b"pem", b"crt", b"ipynb",
    b"tex", b"epub",
];

/// Whether `label` is one of [`FILE_EXTENSIONS`], in any case. Read once per address.
fn is_file_extension(label: &[u8]) -> bool {
    FILE_EXTENSIONS
        .iter()
        .any(|extension| extension.eq_ignore_ascii_case(label))
}

/// No empty label, none starting or ending with `-`.
fn domain_labels_valid(labels: &[u8]) -> bool {
    !(labels.first().is_none_or(|&b| b == b'.' || b == b'-')
        || labels.last().is_some_and(|&b| b == b'.' || b == b'-')
        || labels
            .windows(2)
            .any(|pair| matches!(pair, [b'.', b'.' | b'-'] | [b'-', b'.'])))
}

/// The national number plans of every country calling code (`phone_plan.rs`, generated
/// from libphonenumber's metadata). Each code's pattern is compiled the first time a
/// number of that code is met: all of them at once would cost a start-up of 60 ms.
struct CallingCodes {
    /// Per code (0..1000), its plan's index in `CALLING_CODES_PLAN` and `patterns`.
    index: Vec<Option<u16>>,
    patterns: Vec<OnceLock<meta::Regex>>,
}

static CALLING_CODES: LazyLock<CallingCodes> = LazyLock::new(|| {
    let mut index = vec![None; 1000];
    for (i, &(code, _, _)) in CALLING_CODES_PLAN.iter().enumerate() {
        index[usize::from(code)] = Some(i as u16);
    }
    CallingCodes {
        index,
        patterns: CALLING_CODES_PLAN.iter().map(|_| OnceLock::new()).collect(),
    }
});

impl CallingCodes {
    /// Whether `national` is a number of calling code `code`'s plan; `None` when no
    /// such code exists.
    fn has(&self, code: u32, national: &[u8]) -> Option<bool> {
        let i = usize::from((*self.index.get(code as usize)?)?);
        let (_, lengths, pattern) = CALLING_CODES_PLAN[i];
        if national.len() >= 32 || lengths & (1 << national.len()) == 0 {
            return Some(false);
        }
        let pattern = self.patterns[i].get_or_init(|| {
            // Every one compiles: `every_calling_code_plan_compiles`.
            plan_regex(pattern).expect("libphonenumber's patterns compile")
        });
        Some(pattern.is_match(Input::new(national).anchored(Anchored::Yes)))
    }
}

/// A plan's pattern, to be run anchored: it then matches a whole national number only.
fn plan_regex(pattern: &str) -> Result<meta::Regex, Box<meta::BuildError>> {
    meta::Builder::new()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(&format!("(?:{pattern})$"))
        .map_err(Box::new)
}

/// A number after its country code, `digits` without the `+` or `00`: the code, then a
/// national number its plan has (calling codes are prefix-free: the first that exists
/// is the code).
fn international(digits: &[u8]) -> bool {
    for code_len in 1..=3 {
        if digits.len() <= code_len {
            return false;
        }
        let code = digit_run::value_of(&digits[..code_len]);
        let national = &digits[code_len..];
        if let Some(valid) = CALLING_CODES.has(code, national) {
            // `+44 (0)117 ...`: the trunk 0 written after the code is not dialled (and
            // where a 0 is dialled, as in Italy, the plan has the number with it).
            return valid
                || (national.first() == Some(&b'0')
                    && CALLING_CODES.has(code, &national[1..]) == Some(true));
        }
    }
    false
}

/// Whether the run at `start` goes on from digits before it, one separator between
/// (`4296 0448...`): its first group is then not the start of a number.
fn after_digit_group(bytes: &[u8], start: usize) -> bool {
    start >= 2
        && matches!(bytes[start - 1], b' ' | b'-' | b'.')
        && bytes[start - 2].is_ascii_digit()
}

/// A ten-digit North American number: area and exchange codes start with 2-9.
fn nanp(d: &[u8]) -> bool {
    d.len() == 10 && (b'2'..=b'9').contains(&d[0]) && (b'2'..=b'9').contains(&d[3])
}

/// The phone number at the head of `run` (the most groups that form one); returns its
/// end, an extension (`x123`, `ext. 123`) included.
pub fn phone(text: &str, run: &DigitRun, digits: &mut Vec<u8>) -> Option<usize> {
    let groups = run.groups().len();
    let paren = text.as_bytes()[run.start] == b'(';
    for k in (1..=groups).rev() {
        let n = run.digit_count(k);
        if n == 6 && k == groups {
            if short_named(text, run, k) {
                return Some(run.end_of(k));
            }
            continue;
        }
        if !(7..=15).contains(&n) {
            continue;
        }
        run.digits(text, k, digits);
        if phone_shape(text, run, k, digits, paren) {
            let end = run.end_of(k);
            return Some(extension(text, end).unwrap_or(end));
        }
    }
    None
}

fn phone_shape(text: &str, run: &DigitRun, k: usize, d: &[u8], paren: bool) -> bool {
    let mut slashes = 0;
    let separators_ok = (0..k.saturating_sub(1)).all(|i| {
        let sep = run.separator(text, i);
        slashes += usize::from(sep.contains('/'));
        sep.len() <= 2
            && sep
                .bytes()
                .all(|b| matches!(b, b' ' | b'-' | b'.' | b'(' | b')' | b'/'))
    });
    if !separators_ok || slashes > 1 {
        return false;
    }
    if run.plus {
        return d.len() >= 8 && international(d);
    }
    if let Some(rest) = d.strip_prefix(b"00").filter(|_| slashes == 0) {
        // Written whole only after a word for a phone (`phone: 0097082691186`).
        return international(rest) && (k >= 2 || named_as_a_phone(text, run.start));
    }
    let mut lengths = [0usize; 16];
    for (length, group) in lengths.iter_mut().zip(run.shape(k)) {
        *length = group;
    }
    let shape = &lengths[..k.min(16)];
    if slashes == 1 {
        return slashed(text, run, shape, d);
    }
    if d[0] == b'0' {
        // A national number with its trunk 0 (most of Europe, Japan, Australia, Brazil),
        // or an Indian mobile with it (`098765 43210`: 0, then 5+5 starting 6-9).
        return ((9..=11).contains(&d.len())
            && d[1] != b'0'
            && (k == 1
                || (2..=5).contains(&shape[0])
                || (shape == [6, 5] && (b'6'..=b'9').contains(&d[1]))))
            // Twelve with the trunk, the area or network code and the rest: Germany's
            // and Austria's mobiles and longer landlines (`0151 23456789`, `0676
            // 12345678`, `089 123456789`), Indonesia's mobiles in 4-4-4 with hyphens
            // (`0812-3456-7890`). Not written whole (a UPC-A code is twelve digits,
            // often from 0), nor in 4-4-4 with blanks (`Order 0123 4567 8901`), and
            // only as a whole run of its own: the last twelve of `4296 0448 1234 9147`
            // (a sixteen-digit number that failed as a card) are no phone.
            || (d.len() == 12
                && d[1] != b'0'
                && k == run.groups().len()
                && (matches!(shape, [3..=5, _])
                    || (shape == [4, 4, 4] && run.one_separator(text, 3, &["-"])))
                && !after_digit_group(text.as_bytes(), run.start))
            || (d.len() == 8 && k >= 3 && swedish_short(text, run, k, d))
            || named_number(text, run, shape, d);
    }
    let us = match shape {
        [10] => !paren && nanp(d),
        [3, 3, 4] => nanp(d),
        [11] => !paren && d[0] == b'1' && nanp(&d[1..]),
        [1, 3, 3, 4] => d[0] == b'1' && nanp(&d[1..]),
        _ => false,
    };
    // Nine digits in threes (`732 141 175`): Polish, Spanish, Portuguese mobiles (4-9).
    let threes = shape == [3, 3, 3]
        && (b'4'..=b'9').contains(&d[0])
        && !paren
        && run.one_separator(text, 3, &[" ", "-"]);
    // A Brazilian number without its trunk: area code (no 0 in it), then 4+4 or 5+4
    // (`11 3080-4609`, `(11) 96123-4567` as libphonenumber formats it); a mobile's 9+4
    // also with a blank (`11 96123 4567`).
    let brazil = matches!(shape, [2, 4, 4] | [2, 5, 4])
        && d[1] != b'0'
        && match (run.separator(text, 0), run.separator(text, 1)) {
            (" ", "-") => true,
            (") ", "-") => paren,
            (" ", " ") => shape == [2, 5, 4] && d[2] == b'9',
            _ => false,
        };
    // An Indian mobile without its trunk: 5+5 digits starting 6-9 (`98765 43210`; not
    // with a hyphen, as ranges are written: `uids 64010-64016`, `60000-64999`).
    let india = shape == [5, 5] && (b'6'..=b'9').contains(&d[0]) && run.separator(text, 0) == " ";
    // Russia's, Kazakhstan's and Belarus's trunk 8, then the area code and 3-2-2, the
    // grouping these numbers are written in (`8 (495) 123-45-67`, `8-800-555-35-35`).
    let trunk_eight = shape == [1, 3, 3, 2, 2] && d[0] == b'8';
    // The calling code in brackets with no `+` (`(351) 212233079`), the rest a number
    // of its plan.
    let code_in_brackets = paren
        && k >= 2
        && shape[0] <= 3
        && run.separator(text, 0).starts_with(')')
        && CALLING_CODES.has(digit_run::value_of(&d[..shape[0]]), &d[shape[0]..]) == Some(true);
    us || threes
        || code_in_brackets
        || brazil
        || india
        || trunk_eight
        || (!paren && national_by_plan(text, run, shape, d))
        || named_number(text, run, shape, d)
}

/// Numbers written as a region's own locale writes them, with no calling code and a
/// form of their own, held to that region's plan (libphonenumber's, as for
/// international numbers): Japan's numbers without their trunk 0 (`90-4560-1048`),
/// Poland's landlines in 2-3-2-2 (`22 383 47 01`) and Spain's numbers in 3-2-2-2
/// (`612 34 56 78`). Out of line: few numbers get this far.
#[inline(never)]
fn national_by_plan(text: &str, run: &DigitRun, shape: &[usize], d: &[u8]) -> bool {
    let of_plan = |code| CALLING_CODES.has(code, d) == Some(true);
    match shape {
        [2, 4, 4] => run.one_separator(text, 3, &["-"]) && of_plan(81),
        [2, 3, 2, 2] => run.one_separator(text, 4, &[" "]) && of_plan(48),
        // Spain's nine digits in 3-2-2-2 (`612 34 56 78`): no trunk, 5-9 first.
        [3, 2, 2, 2] => run.one_separator(text, 4, &[" "]) && of_plan(34),
        _ => false,
    }
}

/// A number of 7 to 13 digits in any grouping, just after a word for a phone (`call me
/// at 62819482`, `Tel.: 0 2318 6091`, `cellulare 339338086`, `电话18730792440`): how a
/// hundred regions' national numbers are written (Norway's and Denmark's eight digits,
/// Greece's `6983 016613`, China's mobiles written whole) cannot be told from order,
/// build and account numbers and from the constants of code by their digits; the word
/// tells them. Dates (`2024-03-15`) stay dates. Out of line, and the words are looked
/// for last: few numbers get this far.
#[inline(never)]
fn named_number(text: &str, run: &DigitRun, shape: &[usize], d: &[u8]) -> bool {
    (7..=13).contains(&d.len()) && !date_like(shape, d) && named_as_a_phone(text, run.start)
}

/// A whole run of six digits, written whole or grouped by single spaces, after a
/// noun for a phone or a phrase such as `call me at` (`phone: 81 77 89`, Luxembourg's
/// numbers; `call us on 800778`, the United Arab Emirates' toll-free ones). Not after
/// a bare `call` (`call   401126 <add>` in disassembly), nor `cell` or `sms` (a
/// spreadsheet's cell, a code sent by text), nor in brackets (`call(123456)`).
#[inline(never)]
fn short_named(text: &str, run: &DigitRun, k: usize) -> bool {
    text.as_bytes()[run.start] != b'('
        && run.one_separator(text, k, &[" "])
        && named_word(text, run.start).is_some_and(|(word, gap)| match word {
            b"cell" | b"sms" => false,
            b"call" => gap.iter().any(u8::is_ascii_alphabetic),
            _ => true,
        })
}

/// A run that starts with a date: `2024-03-15 10`, `15.03.2024`, `20011215`.
fn date_like(shape: &[usize], d: &[u8]) -> bool {
    let year = |digits: &[u8]| matches!(digits, [b'1', b'9', ..] | [b'2', b'0', ..]);
    let month = |digits: &[u8]| matches!(digits, [b'0', b'1'..=b'9'] | [b'1', b'0'..=b'2']);
    match shape {
        [4, 2, 2, ..] => year(&d[..4]),
        [2, 2, 4, ..] => year(&d[4..8]),
        [8] => year(&d[..4]) && month(&d[4..6]),
        _ => false,
    }
}

/// How far before a number a word for a phone is looked for: the sentence's or the
/// label's words just before it, not the document's.
const PHONE_WORDS_BEFORE: usize = 40;

/// Words for a phone, each a word of its own (`Tel.:` and `phone number` are; `SYSCALL`,
/// `VRING_CALL`, `telemetry` and `calls` are not), in the languages of the regions whose
/// numbers this reads; not `number` alone (`order number`, `numero d'ordine`), but
/// one's own (`my number`, `mi número`, `mon numéro`, `meine Nummer`), nor `contact`.
/// Abbreviations as labels write them (`Tlf.`, `Telf.`, `Tfno.`, `Cel:`, `τηλ.`), and
/// compounds (`Telefonnummer`, `Rufnummer`): a word must end where its text does.
/// Sixty-four at most: [`PHONE_WORD_STARTS`] holds them as the bits of a `u64`.
const PHONE_WORDS: [&str; 50] = [
    "phone",
    "phones",
    "telephone",
    "tel",
    "mobile",
    "mobil",
    "mob",
    "cell",
    "cellphone",
    "cellulare",
    "call",
    "whatsapp",
    "sms",
    "fax",
    "my number",
    "mi número",
    "mi numero",
    "mon numéro",
    "meine nummer",
    "mio numero",
    "meu número",
    "telefon",
    "telefono",
    "teléfono",
    "telefone",
    "téléphone",
    "handy",
    "телефон",
    "τηλέφωνο",
    "电话",
    "電話",
    "手机",
    "手機",
    "tlf",
    "τηλ",
    "telf",
    "tfno",
    "cel",
    "celular",
    "móvil",
    "movil",
    "telefonnummer",
    "telefoon",
    "telefonu",
    "rufnummer",
    "handynummer",
    "mobilnummer",
    "puhelin",
    "gsm",
    "msisdn",
];

/// Per byte, the [`PHONE_WORDS`] (as bits) that start with it, in either case.
const PHONE_WORD_STARTS: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < PHONE_WORDS.len() {
        let first = PHONE_WORDS[i].as_bytes()[0];
        table[first.to_ascii_lowercase() as usize] |= 1 << i;
        table[first.to_ascii_uppercase() as usize] |= 1 << i;
        i += 1;
    }
    table
};

/// Whether a word for a phone ([`PHONE_WORDS`]) is among the few words before `start`,
/// in the same phrase ([`one_phrase`]: `call me at`, `you can reach me on my cell at`,
/// `Phone No.:`). Read backwards from the number, and given up at the first byte no
/// phrase has (a digit, a bracket, a line break): in code and data that is a byte or
/// two, so the numbers of a JSON body cost next to nothing here.
fn named_as_a_phone(text: &str, start: usize) -> bool {
    named_word(text, start).is_some()
}

/// [`named_as_a_phone`]'s word (as [`PHONE_WORDS`] has it) and the text between it and
/// the number, if there is one.
fn named_word(text: &str, start: usize) -> Option<(&'static [u8], &[u8])> {
    let bytes = text.as_bytes();
    // Bytes compared, not characters: a window cut inside a character is no matter.
    let from = start.saturating_sub(PHONE_WORDS_BEFORE);
    let mut at = start;
    while at > from {
        at -= 1;
        let byte = bytes[at];
        if !is_phrase_byte(byte) {
            return None;
        }
        let mut words = PHONE_WORD_STARTS[usize::from(byte)];
        if words == 0 || (at > 0 && goes_on_a_word(bytes[at - 1])) {
            continue;
        }
        while words != 0 {
            let word = PHONE_WORDS[words.trailing_zeros() as usize].as_bytes();
            words &= words - 1;
            let end = at + word.len();
            if end <= start
                && bytes[at..end].eq_ignore_ascii_case(word)
                // A word in letters ends there; `电话` may touch its number.
                && !(word[word.len() - 1].is_ascii_alphabetic() && goes_on_a_word(bytes[end]))
                // A field's last word names a phone (`mobile_phone`), but code's
                // constants end in verbs and grids (`VHOST_SET_VRING_CALL`, `GRID_CELL`).
                && !(at > 0 && bytes[at - 1] == b'_' && matches!(word, b"call" | b"cell" | b"sms"))
                && one_phrase(&bytes[end..start])
            {
                return Some((word, &bytes[end..start]));
            }
        }
    }
    None
}

/// A byte of a phrase's words (in any script), blanks and `:,.-'"#/`, and of a field
/// as data and code name it (`phone=`, `"phone": "`, `<phone>`, `PHONE_NUMBER=`).
fn is_phrase_byte(b: u8) -> bool {
    b.is_ascii_alphabetic()
        || b >= 0x80
        || matches!(
            b,
            b' ' | b'\t'
                | b':'
                | b','
                | b'.'
                | b'-'
                | b'\''
                | b'"'
                | b'#'
                | b'/'
                | b'='
                | b'>'
                | b'_'
        )
}

/// A letter, digit or `_` that goes on a word, but for `_`, which joins the words of a
/// field's name (`mobile_phone`, `phone_number`: each word is read on its own).
fn goes_on_a_word(b: u8) -> bool {
    b != b'_' && super::triggers::is_word_byte(b)
}

/// Whether the text between a word and a number reads as one phrase ([`named_as_a_phone`]),
/// whose bytes the caller has read backwards as phrase bytes ([`is_phrase_byte`]: no
/// digits, brackets or code, `call to _nc_keypad() from 20011215`): no sentence's end
/// (`. The`), and at most four words, each one that leads to a phone's number
/// ([`LINKING_WORDS`]: `me at`, `is`, `my office on`); other words make it another
/// thing's number (`Call ID`, `sms code`, `call duration`, `phone model`, `mobile app
/// version`). Words in other scripts are let through.
fn one_phrase(gap: &[u8]) -> bool {
    debug_assert!(gap.iter().all(|&b| is_phrase_byte(b)));
    let breaks = gap.iter().enumerate().any(|(at, &b)| {
        b == b'.'
            && gap.get(at + 1) == Some(&b' ')
            && gap[at + 1..]
                .iter()
                .find(|&&after| after != b' ')
                .is_some_and(u8::is_ascii_uppercase)
    });
    if breaks {
        return false;
    }
    let mut words = 0;
    for word in gap.split(|b| !b.is_ascii_alphabetic() && *b < 0x80) {
        if word.is_empty() || word.iter().any(|&b| b >= 0x80) {
            continue;
        }
        words += 1;
        if words > 4 || !LINKING_WORDS.iter().any(|w| w.eq_ignore_ascii_case(word)) {
            return false;
        }
    }
    true
}

/// The words that may stand between a word for a phone and its number.
const LINKING_WORDS: [&[u8]; 48] = [
    b"me", b"at", b"on", b"is", b"are", b"was", b"my", b"our", b"your", b"his", b"her", b"their",
    b"the", b"number", b"numbers", b"no", b"nr", b"num", b"us", b"him", b"them", b"to", b"via",
    b"or", b"reach", b"reached", b"can", b"be", b"under", b"also", b"please", b"office", b"home",
    b"work", b"private", b"direct", b"main", b"line", b"de", b"es", b"est", b"ist", b"unter",
    b"al", b"nummer", b"numero", b"le", b"el",
];

/// A number with one `/` after its area code, as German, Austrian, Swiss, Hungarian
/// and Belgian numbers are written (`0732/16372651`, `06-30/434 8395`, `03/ 673 22 13`):
/// with its trunk 0 (`06` in Hungary), the rest a number of one of those plans, or after
/// a word for a phone. Not a date (`01/02/2023`), nor a ratio or a path's numbers
/// without that trunk (`10/100/1000`).
#[inline(never)]
fn slashed(text: &str, run: &DigitRun, shape: &[usize], d: &[u8]) -> bool {
    let k = shape.len();
    if date_like(shape, d) {
        return false;
    }
    let of_plan = |code, national: &[u8]| CALLING_CODES.has(code, national) == Some(true);
    // The `/` right after the area code (after `06-30` in Hungary), then the
    // subscriber's number (`08-02/09-13` is two dates).
    let slash_at = (0..k - 1).find(|&i| run.separator(text, i).contains('/'));
    let after_area_code = match slash_at {
        Some(0) => shape[0] >= 2,
        Some(1) => shape[0] == 2 && d.starts_with(b"06"),
        _ => false,
    } && slash_at.is_some_and(|at| shape[at + 1] >= 3);
    let trunk = after_area_code
        && (8..=14).contains(&d.len())
        && d[0] == b'0'
        && d[1] != b'0'
        && ([49, 43, 41, 32]
            .into_iter()
            .any(|code| of_plan(code, &d[1..]))
            || (d.starts_with(b"06") && of_plan(36, &d[2..])));
    trunk || named_number(text, run, shape, d)
}

/// Sweden's short numbers with their trunk 0, the area code then a hyphen and pairs
/// (`08-49 02 67`): eight digits, fewer than the other trunk numbers' nine.
#[inline(never)]
fn swedish_short(text: &str, run: &DigitRun, k: usize, d: &[u8]) -> bool {
    run.separator(text, 0) == "-"
        && (1..k - 1).all(|i| run.separator(text, i) == " ")
        && CALLING_CODES.has(46, &d[1..]) == Some(true)
}

/// An extension right after a number: `x123`, ` ext. 123`, ` extension 123`.
fn extension(text: &str, at: usize) -> Option<usize> {
    let rest = text.get(at..)?.as_bytes();
    let mut i = 0;
    while i < rest.len() && i < 2 && rest[i] == b' ' {
        i += 1;
    }
    let word = rest.get(i..)?;
    let marker = [&b"extension"[..], b"ext.", b"ext", b"x"]
        .into_iter()
        .find(|m| word.len() >= m.len() && word[..m.len()].eq_ignore_ascii_case(m))?;
    i += marker.len();
    while i < rest.len() && rest[i] == b' ' {
        i += 1;
    }
    let digits_start = i;
    while i < rest.len() && rest[i].is_ascii_digit() && i - digits_start < 6 {
        i += 1;
    }
    (i > digits_start && bounds::number_may_end(text, at + i)).then_some(at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone_in(text: &str) -> Option<&str> {
        let start = text.find(|c: char| c.is_ascii_digit() || c == '+' || c == '(')?;
        let end = text.rfind(|c: char| c.is_ascii_digit())? + 1;
        let run = DigitRun::read(text, start, end);
        phone(text, &run, &mut Vec::new()).map(|e| &text[start..e])
    }

    #[test]
    fn international_and_national_numbers() {
        for number in [
            "(830) 749-1767",
            "207-516-6843",
            "+1 (414) 956-0742",
            "367.283.2746",
            "+13474570696",
            "1-845-216-4155",
            "9014901540",
            "+44 161 496 0532",
            "+44(0)117 4960448",
            "0141 4960643",
            "+33 5 45 96 68 67",
            "02 14 25 04 31",
            "+49 7742 005707",
            "04381 426212",
            "+81 80-9723-1651",
            "080-1963-0853",
            "+46 8 72 26 92",
            "08-764 67 28",
            "+91 60269 48516",
            "+61403092693",
            "732 141 175",
            "+55 94 5234-3898",
            "+41 52 033 48 84",
            "17 3080-4609",
            "98765 43210",
            "(02) 9876 5432",
            "0412 345 678",
            "(555)234-5678",
            "001-843-628-7982",
            "098765 43210",
            "8 (495) 123-45-67",
            "8-800-555-35-35",
            "8 727 123 45 67",
            "90-4560-1048",
            "22 383 47 01",
            "612 34 56 78",
            "912 34 56 78",
            "08-49 02 67",
            "0151 23456789",
            "01511 2345678",
            "0676 12345678",
            "089 123456789",
            "0812-3456-7890",
            "(11) 96123-4567",
            "(11) 2345-6789",
            "11 96123 4567",
        ] {
            assert_eq!(phone_in(number), Some(number), "{number}");
        }
        // Italy's nine- and eleven-digit mobiles, after a word for a phone.
        assert_eq!(phone_in("cellulare 339338086"), Some("339338086"));
        assert_eq!(phone_in("Call me at 37702529064"), Some("37702529064"));
        assert_eq!(phone_in("mobile 9290810033"), Some("9290810033"));
        assert_eq!(phone_in("tel. 3450255170"), Some("3450255170"));
        // India's landlines written whole, after one.
        assert_eq!(phone_in("phone: 5490267304"), Some("5490267304"));
        assert_eq!(phone_in("order number is 5490267304"), None);
        // One's own number, in the languages of the regions read.
        assert_eq!(phone_in("Mi número es 6123 45678"), Some("6123 45678"));
        assert_eq!(phone_in("mon numéro est le 6123 4567"), Some("6123 4567"));
        assert_eq!(phone_in("Meine Nummer: 30 1234567"), Some("30 1234567"));
        assert_eq!(phone_in("il mio numero è 3331234567"), Some("3331234567"));
        assert_eq!(phone_in("el número de pedido 61234567"), None);
        // Labels' abbreviations and compounds.
        for (text, number) in [
            ("Tlf: 22 33 44 55", "22 33 44 55"),
            ("τηλ. 210 1234567", "210 1234567"),
            ("Telf. 61234567", "61234567"),
            ("Tfno.: 612345678", "612345678"),
            ("Cel: 11 987654321", "11 987654321"),
            ("celular 11987654321", "11987654321"),
            ("móvil 61234567", "61234567"),
            ("Telefonnummer: 30 1234567", "30 1234567"),
            ("Telefoon: 20 1234567", "20 1234567"),
            ("numer telefonu 512345678", "512345678"),
            ("Rufnummer 30 1234567", "30 1234567"),
            ("GSM 470 12 34 56", "470 12 34 56"),
            ("Mob. 61234567", "61234567"),
            ("mob: 612 345 67", "612 345 67"),
            // As data and code name the field.
            ("phone=015123456789", "015123456789"),
            ("phone = 61234567", "61234567"),
            ("?phone=61234567&x=1", "61234567"),
            ("phone=\"61234567\"", "61234567"),
            ("phone\t61234567", "61234567"),
            ("<phone>61234567</phone>", "61234567"),
            ("phone_number=61234567", "61234567"),
            ("mobile_phone: 61234567", "61234567"),
            ("export PHONE_NUMBER=61234567", "61234567"),
            ("msisdn=4915123456789", "4915123456789"),
            ("tel=447700900123", "447700900123"),
        ] {
            assert_eq!(phone_in(text), Some(number), "{text}");
        }
        for text in [
            "celebrate 61234567",
            "Telefonbuch 30 1234567",
            "gsmarena 1234567",
            "mobster 61234567",
            "a mob of 61234567",
            "phone_model_id=61234567",
            "sms_code=61234567",
            "call_count = 61234567",
            "syscall=61234567",
            "GRID_CELL = 61234567",
            "SYS_CALL=61234567",
            // Twelve digits from a 0 only grouped: whole, they are as often a UPC-A.
            "012345678905",
            "4296 0448 1234 9147",
            "Order 0123 4567 8901",
            "12 31234 5678",
            "(10) 2345-6789",
            "0448 1234 9147 2",
            "Allocate gid 64040-64044 (grsec-tpe)",
            "60000-64999 range",
        ] {
            assert_eq!(phone_in(text), None, "{text}");
        }
        // Spain's 3-2-2-2 only as its plan has it.
        assert_eq!(phone_in("123 45 67 89"), None);
        assert_eq!(phone_in("412 34 56 78"), None);
        assert_eq!(
            phone_in("+1 517-795-6459 ext. 310"),
            Some("+1 517-795-6459 ext. 310")
        );
        assert_eq!(phone_in("+1-879-843-0377x549"), Some("+1-879-843-0377x549"));
        // The calling code in brackets after its `+` (Lithuania's, Latvia's).
        assert_eq!(phone_in("+(370) 60313721"), Some("+(370) 60313721"));
        assert_eq!(phone_in("+(371) 2601815"), None, "short of Latvia's plan");
        // Or in brackets with no `+` (Portugal's), held to the plan all the same.
        assert_eq!(phone_in("(351) 212233079"), Some("(351) 212233079"));
        assert_eq!(phone_in("(351) 239 624 595"), Some("(351) 239 624 595"));
        assert_eq!(phone_in("(351) 21223307"), None);
        assert_eq!(phone_in("(999) 212233079"), None);
        // One `/` after the area code, with the trunk 0 (`06` in Hungary).
        for number in [
            "0732/16372651",
            "030/12345678",
            "06-30/434 8395",
            "03/ 673 22 13",
        ] {
            assert_eq!(phone_in(number), Some(number), "{number}");
        }
        for not_a_number in [
            "01/02/2023",
            "2023/11/05 1234",
            "10/100/1000",
            "0/10000000",
            "030/1234/5678",
            "(08-02/09-13)",
            "08-02/09-13",
            "0732/16 37",
            "30/166 1318",
        ] {
            assert_eq!(phone_in(not_a_number), None, "{not_a_number}");
        }
    }

    /// Any region's national number, in the grouping its locale writes, just after a
    /// word for a phone; not without one, not after a sentence's end, not a date.
    #[test]
    fn numbers_after_a_word_for_a_phone() {
        for (text, number) in [
            ("Call me at 62819482 tomorrow.", "62819482"),
            ("phone: 9603 0824", "9603 0824"),
            ("My number is 6983 016613, thanks", "6983 016613"),
            ("Tel.: 0 2318 6091", "0 2318 6091"),
            ("电话18730792440", "18730792440"),
            ("我的手机是 139 1234 5678", "139 1234 5678"),
            ("Mobil: 790 93 78", "790 93 78"),
            ("you can reach me on my cell at 331-86091", "331-86091"),
            ("Fax 26 76 01 81", "26 76 01 81"),
            ("Phone No. 454 32 319", "454 32 319"),
            ("call my office on 62819482", "62819482"),
            ("Mobile, private: 62819482", "62819482"),
            ("Teléfono: 319 797 11 47", "319 797 11 47"),
            ("телефон 8 877 065 8948", "8 877 065 8948"),
            ("phone: 0097082691186", "0097082691186"),
            ("Call me at 30/166 1318 tomorrow.", "30/166 1318"),
            ("My number is 03572/80385280, thanks", "03572/80385280"),
            // Six digits: Luxembourg's numbers, the Emirates' toll-free ones.
            ("phone: 123456", "123456"),
            ("Call me at 81 77 89 tomorrow.", "81 77 89"),
            ("Tel. 4 821 23", "4 821 23"),
            ("call us on 800778", "800778"),
            ("电话29 00 24", "29 00 24"),
        ] {
            assert_eq!(phone_in(text), Some(number), "{text}");
        }
        for text in [
            "62819482",
            "order number 62819482",
            "numero d'ordine 62819482",
            "callback 62819482",
            "telemetry 62819482",
            "SYSCALL 62819482",
            "calls: 62819482",
            "I will call you back. Order 62819482 shipped",
            "call me\n62819482",
            "correct location of call to _nc_keypad() from 62819482",
            "a possibly multi-cell character.  The 62819482",
            "multi-cell character.  The 20030614",
            "Call me about 20011215",
            "call after 5 at 62819482",
            "Call me at 2024-03-15 10",
            "call on 15.03.2024",
            "phone: 12345",
            "call   401126 <add>",
            "call(123456)",
            "cell 123456 of the sheet",
            "SMS 123456",
            "call me on 15.03.24",
            "phone 2024-03-15",
            "order number 123456",
            "Call ID 123456",
            "0097082691186",
            "call them, then the office, the bank and the school about 62819482",
            "Call ID: 83749283",
            "sms code 12345678",
            "call duration 1234567 ms",
            "The phone model 12345678 is discontinued",
            "phone bill of 1234567 won",
            "call count: 1234567",
            "mobile app version 10203040",
            "Our call center handled 1234567 calls",
            "call stack depth 12345678",
        ] {
            assert_eq!(phone_in(text), None, "{text}");
        }
    }

    #[test]
    fn every_calling_code_plan_compiles() {
        for &(code, lengths, pattern) in CALLING_CODES_PLAN {
            assert!(plan_regex(pattern).is_ok(), "+{code}: {pattern}");
            assert!(lengths != 0 && lengths < 1 << 20, "+{code}");
        }
        assert_eq!(CALLING_CODES_PLAN.len(), 215);
    }

    /// International numbers are held to their calling code's plan, for every code
    /// libphonenumber knows, not only the common ones.
    #[test]
    fn international_numbers_follow_their_country_plan() {
        for number in [
            "+254 712 345 678",
            "+234 802 123 4567",
            "+880 1712-345678",
            "+593 99 123 4567",
            "+39 06 6982 1234",
            "+43 1 58058 0",
            "+44 (0)20 7946 0958",
            "0044 20 7946 0958",
        ] {
            assert_eq!(phone_in(number), Some(number), "{number}");
        }
        for not_a_number in [
            // No area code starts with 1 in North America.
            "+1 123 456 7890",
            // Too short for the United Kingdom's plan; a Russian number starting 1.
            "+44 20 7946",
            "+7 123 456 7890",
            // No such calling code.
            "+999 123 456 789",
            "+80 1234 5678",
        ] {
            assert_eq!(phone_in(not_a_number), None, "{not_a_number}");
        }
    }

    #[test]
    fn look_alikes_are_not_phones() {
        for text in [
            "2023-01-26 06",
            "978-7-589-30107-3",
            "32719-4691",
            "652.2526812",
            "2021-8507784",
            "1700543428",
            "4111 1111 1111 1111",
            "+999 123 456 789",
            "100 200 300",
            "12345",
            "012345 67890",
            "7 (495) 123-45-67",
            "8 (495) 123-45",
            // Italy's shorter and longer mobiles written whole, with no word for a
            // phone before them: build or order numbers.
            "393971655",
            "34415449771",
            // Ten digits with no word for a phone before them: an ioctl's number, an
            // Indian or Italian mobile's form.
            "3221775131",
            "9290810033",
            "VHOST_SET_VRING_CALL = 3221775131",
            "SYSCALL 3450255170",
            // Ten digits from 1: a Unix time, and no region's number here.
            "1461668236",
            // Sweden's short form wants its hyphen after the area code.
            "08 49 02 67",
        ] {
            assert_eq!(phone_in(text), None, "{text}");
        }
    }

    #[test]
    fn emails() {
        let text = "mail renée.smith+x@mail.example.co.uk, or .a@b.c";
        let s = text.find('r').unwrap();
        let end = text.find(',').unwrap();
        assert_eq!(email(text, s + 5, end), Some((s, end)));
        assert_eq!(email("a..b@x.org", 0, 10), None);
        // Internationalised domains; the top-level domain is read in ASCII letters.
        for (text, address) in [
            ("contact: info@müller.de, thanks", "info@müller.de"),
            ("jürgen@bücher.example.com", "jürgen@bücher.example.com"),
            ("mail wang@例え.jp now", "wang@例え.jp"),
        ] {
            // The shape's match starts at the ASCII run before the `@`.
            let at = text.find('@').unwrap();
            let ascii = text[..at].len()
                - text[..at]
                    .trim_end_matches(|c: char| c.is_ascii_alphanumeric())
                    .len();
            let start = text.find(address).unwrap();
            let end = start + address.len();
            assert_eq!(email(text, at - ascii, end), Some((start, end)), "{text}");
        }
        assert_eq!(email("a@-x.org", 0, 8), None);
        // An apostrophe inside a name is part of the address; a quote around it is not.
        for (text, address) in [
            ("write to o'brien@example.ie today", "o'brien@example.ie"),
            ("name='john@example.org'", "john@example.org"),
            (
                "it's 'd'arcy.o'neil@example.com'",
                "d'arcy.o'neil@example.com",
            ),
        ] {
            let at = text.find('@').unwrap();
            let start = text.find(address).unwrap();
            let end = start + address.len();
            let shape_start = text[..at].rfind('\'').unwrap() + 1;
            assert_eq!(email(text, shape_start, end), Some((start, end)), "{text}");
        }
    }

    /// No extension given back is a top-level domain: each is held to the public suffix
    /// list (Debian's `publicsuffix`, which scripts/test installs).
    #[test]
    fn no_file_extension_is_a_top_level_domain() {
        let path = "/usr/share/publicsuffix/public_suffix_list.dat";
        let list = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (apt-get install publicsuffix)"));
        let domains: std::collections::HashSet<&str> = list
            .lines()
            .filter(|line| !line.starts_with("//"))
            .map(str::trim)
            .collect();
        assert!(
            domains.contains("com") && domains.contains("zip"),
            "a whole list"
        );
        for extension in FILE_EXTENSIONS {
            let extension = std::str::from_utf8(extension).unwrap();
            assert!(
                !domains.contains(extension),
                "{extension} is a top-level domain"
            );
        }
    }

    #[test]
    fn an_address_ends_before_a_file_s_extension_and_inside_a_cut_word() {
        // The address as found from the shape's own reading of the domain.
        fn found(text: &str) -> Option<&str> {
            let at = text.find('@').unwrap();
            let start = text[..at].rfind(' ').map_or(0, |space| space + 1);
            let end = super::super::triggers::domain_end(text.as_bytes(), at + 1)?;
            email(text, start, end).map(|(start, end)| &text[start..end])
        }
        for (text, address) in [
            ("upload ann.lee@example.org.csv", "ann.lee@example.org"),
            ("see ann@example.org.PDF now", "ann@example.org"),
            ("ann@x.example.co.uk.tar.gz", "ann@x.example.co.uk"),
            // Cut inside a word: the shape's top level was `mp`, a digit after it.
            ("ann@example.com.mp3 attached", "ann@example.com"),
            ("ann@example.com.ab12", "ann@example.com"),
            // Top-level domains named like extensions stay whole.
            ("ann@example.org.zip", "ann@example.org.zip"),
            ("ann@example.py", "ann@example.py"),
            ("ann@example.org.uk", "ann@example.org.uk"),
            ("ann@example.org.Thanks", "ann@example.org.Thanks"),
            // Nothing before the extension reads as a top level: the whole is taken.
            ("ann@host.csv", "ann@host.csv"),
            ("ann@host.io2.csv", "ann@host.io2.csv"),
            // A hyphen after the top level is no word going on.
            ("ann@mail.example.com-based", "ann@mail.example.com"),
        ] {
            assert_eq!(found(text), Some(address), "{text}");
        }
        // Still no address when nothing before reads as a top level.
        assert_eq!(found("ann@host.mp3"), None);
    }

    /// Addresses whose `@` is percent-encoded, in query strings; the local part may hold
    /// other escapes.
    #[test]
    fn encoded_emails() {
        fn found(text: &str) -> Option<&str> {
            let at = text.find("%40").or_else(|| text.find("&#")).unwrap();
            encoded_email(text, at).map(|(s, e)| &text[s..e])
        }
        for (text, address) in [
            (
                "/unsubscribe?email=john%40example.com&x=1",
                "john%40example.com",
            ),
            (
                "?to=a.b%2Bnews%40mail.example.co.uk",
                "a.b%2Bnews%40mail.example.co.uk",
            ),
            ("email=jürgen.x%40bücher.de", "jürgen.x%40bücher.de"),
            // HTML's character references.
            (
                "mail mary.smith&#64;example.org now",
                "mary.smith&#64;example.org",
            ),
            ("<a>mary&#X40;example.org</a>", "mary&#X40;example.org"),
        ] {
            assert_eq!(found(text), Some(address), "{text}");
        }
        for text in [
            "?q=%40example.com",
            "price%40off",
            "a..b%40example.com",
            "a%40-x.org",
            "a%40example.comx@",
            "a&#64example.org",
            "a&#65;example.org",
        ] {
            assert_eq!(found(text), None, "{text}");
        }
    }
}
