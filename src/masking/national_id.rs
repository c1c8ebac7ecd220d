//! US Social Security numbers: `ddd-dd-dddd` or `ddd dd dddd` in the ranges the SSA
//! issues (no area 000, 666 or 9xx, no group 00, no serial 0000); nine plain digits, or
//! `ddd.dd.dddd`, only when the text around them speaks of an SSN.

use super::bounds;
use super::digit_run::DigitRun;

/// How far before a plain nine-digit number a context word is looked for: a table's
/// header line, a form's label.
const CONTEXT_BEFORE: usize = 4096;
const CONTEXT_AFTER: usize = 48;
/// Compared whatever their case; the names code gives the field too
/// (`social_security_number`, `socialSecurityNumber`, `social-security-number`).
const CONTEXT_WORDS: [&[u8]; 6] = [
    b"ssn",
    b"social security",
    b"social_security",
    b"social-security",
    b"socialsecurity",
    b"sozialversicherung",
];

/// The SSN at the head of `run`; returns its end.
pub fn ssn(text: &str, run: &DigitRun, digits: &mut Vec<u8>) -> Option<usize> {
    if run.plus || text.as_bytes()[run.start] == b'(' {
        return None;
    }
    let groups = run.groups();
    let three_groups = groups.len() >= 3 && run.shape(3).eq([3, 2, 4]);
    // Dots between the groups are a form's or a database's way to write one, but also
    // other numbers' (`123.45.6789` as a part number): taken near a word for an SSN, as
    // nine plain digits are.
    let (k, needs_context) = if three_groups && run.one_separator(text, 3, &["-", " "]) {
        (3, false)
    } else if three_groups && run.one_separator(text, 3, &["."]) {
        (3, true)
    } else if run.shape(1).eq([9]) {
        (1, true)
    } else {
        return None;
    };
    let end = run.end_of(k);
    // A formatted SSN followed by more groups (`123-45-6789-01`, `123 45 6789 01`) is
    // some other number. A space after nine plain digits, or after groups joined by
    // something else (`SSN 123-45-6789 7 days ago`), ends the SSN: the number after it
    // is the sentence's, and the run is shortened there.
    if k < groups.len() {
        let next = run.separator(text, k - 1);
        let own = k > 1 && run.separator(text, 0) == next;
        if next.len() == 1 && (next != " " || own) {
            return None;
        }
    }
    run.digits(text, k, digits);
    if !valid_ranges(digits) {
        return None;
    }
    if needs_context && !context_near(text, run.start, end) {
        return None;
    }
    Some(end)
}

fn valid_ranges(d: &[u8]) -> bool {
    let area = &d[0..3];
    area != b"000" && area != b"666" && area[0] != b'9' && &d[3..5] != b"00" && &d[5..9] != b"0000"
}

fn context_near(text: &str, start: usize, end: usize) -> bool {
    let around = bounds::window(
        text,
        start.saturating_sub(CONTEXT_BEFORE),
        end + CONTEXT_AFTER,
    );
    CONTEXT_WORDS
        .iter()
        .any(|w| bounds::contains_ignore_case(around.as_bytes(), w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssn_in(text: &str, at: usize) -> Option<&str> {
        let end = at
            + text[at..]
                .find(|c: char| c.is_alphabetic() || c == ',')
                .unwrap_or(text.len() - at);
        let end = text[..end].trim_end().len();
        let run = DigitRun::read(text, at, end);
        ssn(text, &run, &mut Vec::new()).map(|e| &text[at..e])
    }

    #[test]
    fn formatted_ssns_in_valid_ranges() {
        assert_eq!(ssn_in("123-45-6789", 0), Some("123-45-6789"));
        assert_eq!(ssn_in("536 22 1234", 0), Some("536 22 1234"));
        assert_eq!(ssn_in("SSN: 530622859", 5), Some("530622859"));
        assert_eq!(
            ssn_in("530622859 is my social security number", 0),
            Some("530622859")
        );
        assert_eq!(ssn_in("SSN: 123.45.6789", 5), Some("123.45.6789"));
        for (text, at) in [
            ("social_security_number: 530622859", 24),
            ("\"socialSecurityNumber\": \"530622859\"", 25),
            ("SOCIAL_SECURITY_NUMBER=123.45.6789", 23),
            ("social-security-number=530622859", 23),
            ("<SocialSecurityNumber>530622859</SocialSecurityNumber>", 22),
        ] {
            assert!(ssn_in(text, at).is_some(), "{text}");
        }
    }

    #[test]
    fn invalid_ranges_and_look_alikes_stay() {
        for (text, at) in [
            ("000-12-3456", 0),
            ("666-12-3456", 0),
            ("912-12-3456", 0),
            ("123-00-4567", 0),
            ("123-45-0000", 0),
            ("123-45 6789", 0),
            ("530622859", 0),
            ("12345-6789", 0),
            ("123-45-6789-12", 0),
            // Dots: only near a word for an SSN, and one separator throughout.
            ("123.45.6789", 0),
            ("part 123.45.6789", 5),
            ("SSN 123.45-6789", 4),
            ("SSN 123.45.6789.12", 4),
        ] {
            assert_eq!(ssn_in(text, at), None, "{text}");
        }
    }
}
