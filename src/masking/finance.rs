//! Payment data: card numbers (Luhn and the issuer ranges of every network, plain or
//! grouped) and IBANs (per-country length and the mod-97 check, compact or in fours).

use super::bounds;
use super::digit_run::DigitRun;

/// The card number at the head of `run`: the most groups that form a Luhn-valid number
/// of a known network, joined by one separator kind. Returns its end.
pub fn card(text: &str, run: &DigitRun, digits: &mut Vec<u8>) -> Option<usize> {
    if run.plus || text.as_bytes()[run.start] == b'(' {
        return None;
    }
    for k in (1..=run.groups().len()).rev() {
        if !(13..=19).contains(&run.digit_count(k)) {
            continue;
        }
        // Dots join groups too, in fours only (`4111.1111.1111.1111`, as some European
        // forms print them): dotted runs of other shapes are versions and OIDs.
        // Two blanks between groups too: text taken from a PDF or a print (`4242  4242 ...`).
        let grouped = run.one_separator(text, k, &[" ", "-", "  "])
            || (k == 4 && run.shape(k).all(|g| g == 4) && run.one_separator(text, k, &["."]));
        if !grouped {
            continue;
        }
        run.digits(text, k, digits);
        if network_length_fits(digits) && luhn(digits) {
            return Some(run.end_of(k));
        }
    }
    None
}

/// The Luhn check over ASCII digits (other bytes are skipped).
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut count = 0;
    for (i, d) in digits
        .iter()
        .rev()
        .filter(|b| b.is_ascii_digit())
        .enumerate()
    {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
        count += 1;
    }
    count >= 2 && sum.is_multiple_of(10)
}

/// True when the number's first digits name a card network that issues numbers of this
/// length (Visa, Mastercard incl. the 2-series, Amex, Diners, Discover, JCB, UnionPay,
/// Maestro, Mir).
fn network_length_fits(d: &[u8]) -> bool {
    let len = d.len();
    let prefix = |n: usize| super::digit_run::value_of(&d[..n.min(len)]);
    let p2 = prefix(2);
    let p3 = prefix(3);
    let p4 = prefix(4);
    let p6 = prefix(6);
    match d[0] {
        b'4' => matches!(len, 13 | 16 | 19),
        b'5' if (51..=55).contains(&p2) => len == 16,
        b'2' if (2221..=2720).contains(&p4) => len == 16,
        b'2' if (2200..=2204).contains(&p4) => (16..=19).contains(&len),
        b'3' if p2 == 34 || p2 == 37 => len == 15,
        b'3' if (300..=305).contains(&p3) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39 => {
            (14..=19).contains(&len)
        }
        // JCB is 3528-3589; issuers' test ranges and generators use all of 35xx.
        b'3' if p2 == 35 => (16..=19).contains(&len),
        // JCB's older fifteen-digit numbers, issued by its partners (2131, 1800).
        b'1' | b'2' if p4 == 1800 || p4 == 2131 => len == 15,
        b'6' if p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) => (16..=19).contains(&len),
        b'6' if (622126..=622925).contains(&p6) || p2 == 62 => (16..=19).contains(&len),
        b'5' | b'6' if p2 == 50 || (56..=69).contains(&p2) => (13..=19).contains(&len),
        // Troy (Turkey) and RuPay's 81-82 (India).
        b'9' if p4 == 9792 => len == 16,
        b'8' if p2 == 81 || p2 == 82 => len == 16,
        _ => false,
    }
}

/// IBAN length per country (ISO 13616 registry, SWIFT's release of 2025: Libya,
/// Sudan, Burundi, Djibouti, Russia, Somalia, Nicaragua, Mongolia, the Falklands,
/// Oman, Yemen and Honduras joined from 2020).
fn iban_length(country: &[u8]) -> Option<usize> {
    Some(match country {
        b"AD" => 24,
        b"AE" => 23,
        b"AL" => 28,
        b"AT" => 20,
        b"AZ" => 28,
        b"BA" => 20,
        b"BE" => 16,
        b"BG" => 22,
        b"BH" => 22,
        b"BI" => 27,
        b"BR" => 29,
        b"BY" => 28,
        b"CH" => 21,
        b"CR" => 22,
        b"CY" => 28,
        b"CZ" => 24,
        b"DE" => 22,
        b"DJ" => 27,
        b"DK" => 18,
        b"DO" => 28,
        b"EE" => 20,
        b"EG" => 29,
        b"ES" => 24,
        b"FI" => 18,
        b"FK" => 18,
        b"FO" => 18,
        b"FR" => 27,
        b"GB" => 22,
        b"GE" => 22,
        b"GI" => 23,
        b"GL" => 18,
        b"GR" => 27,
        b"GT" => 28,
        b"HN" => 28,
        b"HR" => 21,
        b"HU" => 28,
        b"IE" => 22,
        b"IL" => 23,
        b"IQ" => 23,
        b"IS" => 26,
        b"IT" => 27,
        b"JO" => 30,
        b"KW" => 30,
        b"KZ" => 20,
        b"LB" => 28,
        b"LC" => 32,
        b"LI" => 21,
        b"LT" => 20,
        b"LU" => 20,
        b"LV" => 21,
        b"LY" => 25,
        b"MC" => 27,
        b"MD" => 24,
        b"ME" => 22,
        b"MK" => 19,
        b"MN" => 20,
        b"MR" => 27,
        b"MT" => 31,
        b"MU" => 30,
        b"NI" => 28,
        b"NL" => 18,
        b"NO" => 15,
        b"OM" => 23,
        b"PK" => 24,
        b"PL" => 28,
        b"PS" => 29,
        b"PT" => 25,
        b"QA" => 29,
        b"RO" => 24,
        b"RS" => 22,
        b"RU" => 33,
        b"SA" => 24,
        b"SC" => 31,
        b"SD" => 18,
        b"SE" => 24,
        b"SI" => 19,
        b"SK" => 24,
        b"SM" => 27,
        b"SO" => 23,
        b"ST" => 25,
        b"SV" => 28,
        b"TL" => 23,
        b"TN" => 24,
        b"TR" => 26,
        b"UA" => 29,
        b"VA" => 22,
        b"VG" => 24,
        b"XK" => 20,
        b"YE" => 30,
        _ => return None,
    })
}

/// The IBAN starting at `start` (two letters, two digits): as many characters as its
/// country's IBAN has, compact or grouped in fours by single spaces or hyphens (one
/// of the two throughout: `DE89-3704-0044-0532-0130-00`), passing mod 97. Returns its
/// end.
pub fn iban(text: &str, start: usize) -> Option<usize> {
    if !bounds::token_may_start(text, start) && !bounds::after_sign_or_path(text.as_bytes(), start)
    {
        return None;
    }
    let bytes = text.as_bytes();
    let country = bytes.get(start..start + 2)?;
    let len = iban_length(&[
        country[0].to_ascii_uppercase(),
        country[1].to_ascii_uppercase(),
    ])?;
    let mut compact = [0u8; 34];
    let mut n = 0;
    let mut at = start;
    let mut separator = None;
    while n < len {
        let b = *bytes.get(at)?;
        if b.is_ascii_alphanumeric() {
            compact[n] = b.to_ascii_uppercase();
            n += 1;
            at += 1;
        } else if matches!(b, b' ' | b'-')
            && *separator.get_or_insert(b) == b
            && n % 4 == 0
            && n > 0
            && bytes.get(at + 1)?.is_ascii_alphanumeric()
        {
            at += 1;
        } else {
            return None;
        }
    }
    if !bounds::token_may_end(text, at) || !mod97(&compact[..len]) {
        return None;
    }
    Some(at)
}

/// The ISO 7064 mod-97 check of an IBAN (spaces skipped; letters count 10..35).
pub fn mod97(iban: &[u8]) -> bool {
    // An IBAN has at most 34 characters; a longer input is checked in a heap copy.
    let mut stack = [0u8; 64];
    let mut heap = Vec::new();
    let mut n = 0;
    for b in iban.iter().filter(|b| b.is_ascii_alphanumeric()) {
        if n < stack.len() {
            stack[n] = b.to_ascii_uppercase();
        } else {
            if heap.is_empty() {
                heap.extend_from_slice(&stack);
            }
            heap.push(b.to_ascii_uppercase());
        }
        n += 1;
    }
    let chars = if heap.is_empty() {
        &stack[..n]
    } else {
        &heap[..]
    };
    if chars.len() < 5 || !chars[..2].iter().all(u8::is_ascii_alphabetic) {
        return false;
    }
    let mut rem = 0u32;
    for &b in chars[4..].iter().chain(&chars[..4]) {
        if b.is_ascii_digit() {
            rem = (rem * 10 + u32::from(b - b'0')) % 97;
        } else {
            rem = (rem * 100 + u32::from(b - b'A' + 10)) % 97;
        }
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card_in(text: &str) -> Option<&str> {
        let run = DigitRun::read(text, 0, text.len());
        card(text, &run, &mut Vec::new()).map(|end| &text[..end])
    }

    #[test]
    fn cards_of_every_network_plain_or_grouped() {
        for number in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4111.1111.1111.1111",
            "5555555555554444",
            "2223003122003222",
            "2720 9900 0000 0007",
            "378282246310005",
            "3782 822463 10005",
            "30569309025904",
            "3056 930902 5904",
            "6011111111111117",
            "3530111333300000",
            "6221260000000000",
            "180076749440162",
            "2131 3096 5472 119",
            "4242  4242  4242  4242",
            "9792 0300 0000 0000",
            "8100000000000002",
        ] {
            assert_eq!(card_in(number), Some(number), "{number}");
        }
    }

    #[test]
    fn look_alikes_are_not_cards() {
        for text in [
            "4111111111111112",
            "5500354633134648",
            "1234567812345670",
            "4242  4242 4242 4242",
            "4111 1111-1111 1111",
            "4111.1111 1111 1111",
            "378.282246.310005",
            "9780306406157",
            "+4111111111111111",
        ] {
            assert_eq!(card_in(text), None, "{text}");
        }
    }

    #[test]
    fn a_card_followed_by_another_number_is_still_found() {
        assert_eq!(
            card_in("4111 1111 1111 1111 2"),
            Some("4111 1111 1111 1111")
        );
    }

    #[test]
    fn ibans_compact_and_grouped() {
        for iban_text in [
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB82 WEST 1234 5698 7654 32",
            "NO9386011117947",
            "FR1420041010050500013M02606",
            "gb82 west 1234 5698 7654 32",
            "de89370400440532013000",
            "DE89-3704-0044-0532-0130-00",
            "gb82-west-1234-5698-7654-32",
            // The registry's newer countries.
            "BI3244232322183406290421476",
            "DJ0624537896565159478927782",
            "FK38PR285457494629",
            "HN81QWVE52167606032774264535",
            "LY41937390990599524328132",
            "MN17IS98807518024164",
            "NI10NVGI50055278887334068224",
            "OM08AUYJ394635605671109",
            "RU9237786504862201523449640521577",
            "RU92 3778 6504 8622 0152 3449 6405 2157 7",
            "SD9899605842052820",
            "SO903217515430338739690",
            "YE48FTVW2858642844150020184156",
        ] {
            assert_eq!(iban(iban_text, 0), Some(iban_text.len()), "{iban_text}");
        }
        assert_eq!(iban("DE89 3704 0044 0532 0130 00. Next", 0), Some(27));
        assert_eq!(iban("DE89-3704-0044-0532-0130-00, next", 0), Some(27));
        // One separator throughout, and only between groups of four.
        assert_eq!(iban("DE89-3704 0044-0532-0130-00", 0), None);
        assert_eq!(iban("DE89-37040-044-0532-0130-00", 0), None);
        assert_eq!(iban("DE89--3704-0044-0532-0130-00", 0), None);
    }

    #[test]
    fn ibans_failing_the_check_or_the_length_are_not_found() {
        for text in [
            "DE89370400440532013001",
            "DE8937040044053201300",
            "DE893704004405320130001",
            "XX89370400440532013000",
        ] {
            assert_eq!(iban(text, 0), None, "{text}");
        }
        // Glued to a word before it: not an IBAN.
        assert_eq!(iban("ABDE89370400440532013000", 2), None);
        assert!(mod97(b"GB82WEST12345698765432"));
        assert!(!mod97(b"GB83WEST12345698765432"));
    }
}
