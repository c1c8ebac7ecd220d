//! Contact details: e-mail addresses, and phone numbers in international (`+CC`, `00CC`)
//! and national forms, checked against each country code's number lengths, the North
//! American numbering plan, and the shapes national numbers are written in.

use super::bounds;
use super::digit_run::DigitRun;

/// The e-mail address matched at `start..end` (local part, `@`, dotted domain with an
/// alphabetic top-level label), widened back over non-ASCII letters of the local part.
pub fn email(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let mut start = start;
    while let Some(c) = bounds::before(text, start) {
        if c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-') {
            start -= c.len_utf8();
        } else {
            break;
        }
    }
    let value = &text[start..end];
    let (local, domain) = value.rsplit_once('@')?;
    let local = local.trim_start_matches('.');
    if local.is_empty() || local.ends_with('.') || local.contains("..") {
        return None;
    }
    if domain
        .split('.')
        .any(|label| label.is_empty() || label.starts_with('-') || label.ends_with('-'))
    {
        return None;
    }
    if bounds::after(text, end).is_some_and(|c| c.is_alphanumeric() || c == '@') {
        return None;
    }
    Some((
        end - value.len() + (value.len() - local.len() - domain.len() - 1),
        end,
    ))
}

/// NSN lengths (min, max) per country calling code, the national number after the code.
fn nsn_lengths(code: u32) -> Option<(usize, usize)> {
    Some(match code {
        1 => (10, 10),
        7 => (10, 10),
        20 => (8, 10),
        27 => (9, 9),
        30 => (10, 10),
        31 => (9, 9),
        32 => (8, 9),
        33 => (9, 9),
        34 => (9, 9),
        36 => (8, 9),
        39 => (6, 11),
        40 => (9, 9),
        41 => (9, 9),
        43 => (4, 13),
        44 => (7, 10),
        45 => (8, 8),
        46 => (7, 10),
        47 => (8, 8),
        48 => (9, 9),
        49 => (6, 13),
        51 => (8, 9),
        52 => (10, 10),
        54 => (10, 11),
        55 => (10, 11),
        56 => (9, 9),
        57 => (10, 10),
        58 => (10, 10),
        60 => (8, 10),
        61 => (9, 9),
        62 => (8, 12),
        63 => (8, 10),
        64 => (8, 10),
        65 => (8, 8),
        66 => (8, 9),
        81 => (9, 10),
        82 => (8, 10),
        84 => (9, 10),
        86 => (10, 11),
        90 => (10, 10),
        91 => (10, 10),
        92 => (9, 10),
        94 => (9, 9),
        98 => (10, 10),
        212 => (9, 9),
        213 => (9, 9),
        216 => (8, 8),
        234 => (8, 10),
        254 => (9, 9),
        351 => (9, 9),
        352 => (6, 11),
        353 => (7, 10),
        354 => (7, 7),
        358 => (6, 11),
        359 => (8, 9),
        370 => (8, 8),
        371 => (8, 8),
        372 => (7, 8),
        380 => (9, 9),
        385 => (8, 9),
        386 => (8, 8),
        420 => (9, 9),
        421 => (9, 9),
        852 => (8, 8),
        886 => (9, 9),
        966 => (9, 9),
        971 => (8, 9),
        972 => (8, 9),
        _ => return None,
    })
}

/// A number after its country code, `digits` without the code.
fn international(digits: &[u8]) -> bool {
    for code_len in 1..=3 {
        if digits.len() <= code_len {
            return false;
        }
        let code = digits[..code_len]
            .iter()
            .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'));
        if let Some((min, max)) = nsn_lengths(code) {
            let mut nsn = &digits[code_len..];
            // `+44 (0)117 ...`: the trunk 0 written after the code is not dialled.
            if nsn.first() == Some(&b'0') && code != 39 {
                nsn = &nsn[1..];
            }
            if code == 1 {
                return nanp(nsn);
            }
            return (min..=max).contains(&nsn.len());
        }
    }
    false
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
    let separators_ok = (0..k.saturating_sub(1)).all(|i| {
        let sep = run.separator(text, i);
        sep.len() <= 2
            && sep
                .bytes()
                .all(|b| matches!(b, b' ' | b'-' | b'.' | b'(' | b')'))
    });
    if !separators_ok {
        return false;
    }
    if run.plus {
        return d.len() >= 8 && international(d);
    }
    if let Some(rest) = d.strip_prefix(b"00") {
        return k >= 2 && international(rest);
    }
    let shape: Vec<usize> = run.shape(k).collect();
    if d[0] == b'0' {
        // A national number with its trunk 0 (most of Europe, Japan, Australia, Brazil).
        return (9..=11).contains(&d.len())
            && d[1] != b'0'
            && (k == 1 || (2..=5).contains(&shape[0]));
    }
    let us = match shape.as_slice() {
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
    // A Brazilian number without its trunk: area code, then 4+4 or 5+4 (`11 3080-4609`).
    let brazil = matches!(shape.as_slice(), [2, 4, 4] | [2, 5, 4])
        && run.separator(text, 0) == " "
        && run.separator(text, 1) == "-";
    // An Indian mobile without its trunk: 5+5 digits starting 6-9 (`98765 43210`).
    let india = shape == [5, 5] && (b'6'..=b'9').contains(&d[0]) && run.separator(text, 0) == " ";
    us || threes || brazil || india
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
        ] {
            assert_eq!(phone_in(number), Some(number), "{number}");
        }
        assert_eq!(
            phone_in("+1 517-795-6459 ext. 310"),
            Some("+1 517-795-6459 ext. 310")
        );
        assert_eq!(phone_in("+1-879-843-0377x549"), Some("+1-879-843-0377x549"));
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
        assert_eq!(email("a@-x.org", 0, 8), None);
    }
}
