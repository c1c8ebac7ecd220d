//! Network identifiers: IPv4 addresses (four octets, not part of a longer dotted number
//! or a version), IPv6 addresses (the text `std::net::Ipv6Addr` parses), and the
//! password in `scheme://user:password@host`.

use super::bounds;

/// The IPv4 address matched at `start..end` (four dotted numbers).
pub fn ipv4(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    if !ipv4_may_start(text, start) || !ipv4_may_end(text, end) {
        return None;
    }
    let address = &text.as_bytes()[start..end];
    // Every octet written in three digits (`192.168.001.010`, as some devices and
    // logs pad them) is an address too; a leading zero elsewhere is some other
    // number's (`1.02.3.4`).
    let padded = address.len() == 15;
    // Octets read as bytes: `split` and `parse` cost more to set up than the few
    // digits take to read.
    for octet in address.split(|&b| b == b'.') {
        if octet.is_empty() || (octet.len() > 1 && octet[0] == b'0' && !padded) {
            return None;
        }
        let mut value = 0u32;
        for &digit in octet {
            if !digit.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(digit - b'0');
            if value > 255 {
                return None;
            }
        }
    }
    Some((start, end))
}

/// Where a number may start, and also as a URL's host (`http://10.0.0.1`), after a
/// user (`root@10.0.0.1`) or a UNC path's `\\`, or as a range's second address
/// (`10.0.0.5-10.0.0.9`); never after a dot (`1.10.0.0.1`).
fn ipv4_may_start(text: &str, start: usize) -> bool {
    match bounds::before(text, start) {
        Some('/' | '@' | '\\') => true,
        Some('.') => false,
        // `ip #203.0.113.9`: a `#` of its own.
        Some('#') if bounds::after_sign_or_path(text.as_bytes(), start) => true,
        Some(dash @ ('-' | '–')) => {
            range_first_before(text.as_bytes(), start - dash.len_utf8())
                || bounds::number_may_start(text, start)
        }
        _ => bounds::number_may_start(text, start),
    }
}

/// Whether four dotted octets end at `dash` and start a word: a range's first address.
fn range_first_before(bytes: &[u8], dash: usize) -> bool {
    let first = bytes[..dash]
        .iter()
        .rposition(|b| !(b.is_ascii_digit() || *b == b'.'))
        .map_or(0, |at| at + 1);
    dash - first >= 7
        && !bytes[..first]
            .last()
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'.')
        && ipv4_at(bytes, first) == Some(dash)
}

/// Whether a dash and four dotted octets follow `end`: a range goes on to its second
/// address (`10.0.0.5-10.0.0.9`, `10.0.0.5–10.0.0.9`).
fn range_second_after(text: &str, end: usize) -> bool {
    let rest = &text[end..];
    let after = if rest.starts_with('-') {
        1
    } else if rest.starts_with('–') {
        '–'.len_utf8()
    } else {
        return false;
    };
    ipv4_at(text.as_bytes(), end + after).is_some()
}

/// Where a number may end, and also before a port (`10.0.0.1:8080`, then the end of
/// the number) or a prefix length or path (`10.0.0.0/8`, `10.0.0.1/health`).
fn ipv4_may_end(text: &str, end: usize) -> bool {
    let bytes = text.as_bytes();
    match bytes.get(end) {
        Some(b'/') => true,
        Some(b':') if bytes.get(end + 1).is_some_and(u8::is_ascii_digit) => {
            let port = bytes[end + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            // After the port, a path (`:8080/health`) or where a number may end
            // (`10.0.0.1:80.5`, `1.2.3.4:5:6` are something else).
            let after = end + 1 + port;
            port <= 5 && (bytes.get(after) == Some(&b'/') || bounds::number_may_end(text, after))
        }
        _ => bounds::number_may_end(text, end) || range_second_after(text, end),
    }
}

/// The IPv6 address matched at `start..end` (hex groups and colons), with a dotted IPv4
/// tail (`::ffff:10.0.0.1`) taken in when one follows.
pub fn ipv6(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    if bounds::before(text, start).is_some_and(|c| bounds::is_word(c) || c == ':' || c == '.') {
        return None;
    }
    let bytes = text.as_bytes();
    let mut end = end;
    // A trailing single colon is punctuation (`at fe80::1: ...`), not part of the address.
    if bytes[end - 1] == b':' && bytes[end - 2] != b':' {
        end -= 1;
    }
    if bytes.get(end) == Some(&b'.') {
        let mut tail = end;
        while tail < bytes.len() && (bytes[tail].is_ascii_digit() || bytes[tail] == b'.') {
            tail += 1;
        }
        while bytes[tail - 1] == b'.' {
            tail -= 1;
        }
        end = tail;
    }
    // `::1`, `a::b`: too little to be anyone's address, and common in code (`std::io`).
    let groups = ipv6_groups(&bytes[start..end])?;
    if groups < 3 {
        return None;
    }
    if bounds::after(text, end).is_some_and(|c| bounds::is_word(c) || c == ':') {
        return None;
    }
    Some((start, end))
}

/// The groups written out in `text` (a dotted IPv4 tail counts as two) when it is an
/// IPv6 address: exactly the texts `std::net::Ipv6Addr`'s parser takes, 8 groups or
/// fewer around one `::`, 1-4 hex digits each, an IPv4 tail only at the end. Read here
/// without making the address: the standard parser was a thousand instructions per
/// request on the masking bench, whose prompts hold many hex-and-colon strings.
pub(crate) fn ipv6_groups(text: &[u8]) -> Option<usize> {
    let (head, at, head_ipv4) = ipv6_read_groups(text, 0, 8);
    if head == 8 {
        return (at == text.len()).then_some(8);
    }
    // An IPv4 tail before `::` is no address; `::` stands for at least one group.
    if head_ipv4 || text.get(at..at + 2) != Some(b"::".as_slice()) {
        return None;
    }
    let (tail, at, _) = ipv6_read_groups(text, at + 2, 8 - (head + 1));
    (at == text.len()).then_some(head + tail)
}

/// Up to `limit` groups from `at`, separated by single colons: how many, where they end,
/// and whether the last was a dotted IPv4 address (tried first wherever two groups
/// still fit, as the standard parser does). A colon not followed by a group is left.
fn ipv6_read_groups(text: &[u8], mut at: usize, limit: usize) -> (usize, usize, bool) {
    for group in 0..limit {
        let start = match group {
            0 => at,
            _ if text.get(at) == Some(&b':') => at + 1,
            _ => return (group, at, false),
        };
        // Hex digits, one past the four a group may have; and where the decimal ones end.
        let mut end = start;
        let mut decimal_end = None;
        while let Some(&byte) = text.get(end).filter(|b| b.is_ascii_hexdigit()) {
            if decimal_end.is_none() && !byte.is_ascii_digit() {
                decimal_end = Some(end);
            }
            end += 1;
            if end - start > 4 {
                break;
            }
        }
        // An IPv4 address can only start here if a dot follows the decimal digits.
        let decimal_end = decimal_end.unwrap_or(end);
        if group + 1 < limit
            && text.get(decimal_end) == Some(&b'.')
            && let Some(end) = ipv4_at(text, start)
        {
            return (group + 2, end, true);
        }
        if !(1..=4).contains(&(end - start)) {
            return (group, at, false);
        }
        at = end;
    }
    (limit, at, false)
}

/// The end of the four dotted octets at `at` (each 0-255, no leading zero), if there
/// are four; what follows them is not looked at.
fn ipv4_at(text: &[u8], mut at: usize) -> Option<usize> {
    for octet in 0..4 {
        if octet > 0 {
            if text.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let digits = text[at.min(text.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        // The length first: a long run of digits would overflow the value.
        if !(1..=3).contains(&digits) {
            return None;
        }
        let number = &text[at..at + digits];
        let value = super::digit_run::value_of(number);
        if (digits > 1 && number[0] == b'0') || value > 255 {
            return None;
        }
        at += digits;
    }
    Some(at)
}

/// The password in a URL's user info, matched as `scheme://user:password@` at
/// `start..end`.
pub fn url_password(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let matched = &text[start..end];
    let authority = matched.find("://")? + 3;
    let colon = authority + matched[authority..].find(':')?;
    let at = matched.rfind('@')?;
    (at > colon + 1).then_some((start + colon + 1, start + at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(text: &str) -> Option<&str> {
        let start = text.find(|c: char| c.is_ascii_digit())?;
        let end = start
            + text[start..]
                .split(|c: char| !c.is_ascii_digit() && c != '.')
                .next()?
                .len();
        let end = start + text[start..end].trim_end_matches('.').len();
        // The regex takes four dotted numbers: mimic it.
        let dotted: Vec<&str> = text[start..end].split('.').collect();
        if dotted.len() < 4 {
            return None;
        }
        let four = dotted[..4].join(".").len();
        ipv4(text, start, start + four).map(|(s, e)| &text[s..e])
    }

    #[test]
    fn ipv4_addresses_whole_only() {
        assert_eq!(v4("from 10.38.166.149 - -"), Some("10.38.166.149"));
        assert_eq!(v4("ip=8.8.8.8."), Some("8.8.8.8"));
        assert_eq!(v4("1.2.3.4.5"), None);
        assert_eq!(v4("v1.2.3.4"), None);
        assert_eq!(v4("256.1.1.1"), None);
        assert_eq!(v4("a 1.2.3"), None);
        // Every octet padded to three digits; a leading zero elsewhere is no address.
        assert_eq!(v4("gw 192.168.001.010 up"), Some("192.168.001.010"));
        assert_eq!(v4("gw 010.000.000.001"), Some("010.000.000.001"));
        assert_eq!(v4("1.02.3.4"), None);
        assert_eq!(v4("192.168.01.010"), None);
        assert_eq!(v4("192.168.001.256"), None);
    }

    /// Hosts as prompts about servers write them: in URLs, after a user, in UNC paths,
    /// with a port, a prefix length or a path; the address alone is taken.
    #[test]
    fn both_addresses_of_a_range_are_taken() {
        for text in ["192.168.1.100-192.168.1.200", "10.0.0.5–10.0.0.9 here"] {
            let dash = text.find(['-', '–']).unwrap();
            let second = dash + text[dash..].chars().next().unwrap().len_utf8();
            let end = second + text[second..].find(' ').unwrap_or(text.len() - second);
            assert_eq!(ipv4(text, 0, dash), Some((0, dash)), "{text}");
            assert_eq!(ipv4(text, second, end), Some((second, end)), "{text}");
        }
        // Not a range: a version's part, a word before, octets out of range.
        for (text, start) in [("v1.2.3.4-10.0.0.9", 9), ("a1.2.3.4-10.0.0.9", 9)] {
            assert_eq!(ipv4(text, start, text.len()), None, "{text}");
        }
        assert_eq!(ipv4("10.0.0.5-1.2.3", 0, 8), None);
    }

    #[test]
    fn ipv4_addresses_as_hosts() {
        for (text, address) in [
            ("ssh root@10.0.0.5 now", "10.0.0.5"),
            ("curl http://192.168.1.20/health", "192.168.1.20"),
            ("curl http://192.168.1.20:8080/health", "192.168.1.20"),
            ("\\\\10.0.0.7\\share", "10.0.0.7"),
            ("server 10.0.0.1:8080 down", "10.0.0.1"),
            ("at 10.0.0.1:443.", "10.0.0.1"),
            ("at 10.0.0.1:443, then", "10.0.0.1"),
            ("net 10.12.0.0/16 blocked", "10.12.0.0"),
            ("at 10.0.0.1: the server", "10.0.0.1"),
            ("服务器10.0.0.5:8080端口", "10.0.0.5"),
            // Ranges, both ends.
            ("--src-range 192.168.1.100-192.168.1.200", "192.168.1.100"),
            ("range 10.0.0.5–10.0.0.9", "10.0.0.5"),
        ] {
            assert_eq!(v4(text), Some(address), "{text}");
        }
        for text in [
            "port 10.0.0.1:123456",
            "10.0.0.1:80a",
            "10.0.0.1:80.5",
            "1.2.3.4:5:6",
            "10.0.0.1:x",
            "10.0.0.1.5/8",
            "$1.2.3.4",
        ] {
            assert_eq!(v4(text), None, "{text}");
        }
    }

    #[test]
    fn ipv6_addresses() {
        for addr in [
            "2001:db8::7d18:b77:ca4c:f701",
            "b0dc:0961:cd82:e3c8:6743:e0ac:bf8e:40b6",
            "fe80::1:2",
            "::ffff:10.0.0.1",
        ] {
            let text = format!("addr {addr}, ok");
            let end = 5 + addr.find('.').unwrap_or(addr.len());
            assert_eq!(ipv6(&text, 5, end), Some((5, 5 + addr.len())), "{addr}");
        }
        assert_eq!(ipv6("12:38:31 ", 0, 8), None);
        assert_eq!(ipv6("std::io::x", 0, 8), None);
        assert_eq!(ipv6("00:1a:2b:3c:4d:5e", 0, 17), None);
    }

    /// What the standard parser says of `text`: its written-out groups when it is an
    /// address.
    fn std_groups(text: &str) -> Option<usize> {
        text.parse::<std::net::Ipv6Addr>().ok()?;
        Some(text.split(':').filter(|g| !g.is_empty()).count() + usize::from(text.contains('.')))
    }

    #[test]
    fn ipv6_groups_as_the_standard_parser_reads_them() {
        for text in [
            "",
            ":",
            "::",
            ":::",
            "::1",
            "1::",
            "1::2",
            "1:2",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8::",
            "1::2::3",
            "12345::1",
            "0000:0:00:000::",
            "::ffff:1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "1.2.3.4::",
            "::1.2.3.4",
            "::1.2.3.4:5",
            "::1.2.3",
            "::1.2.3.4.5",
            "::01.2.3.4",
            "::256.1.1.1",
            "::0.0.0.0",
            "fe80::1%eth0",
            "FE80::AbCd",
            "g::1",
            "1:2:3:4:5:6:7:8.",
            "::1.2.3.4a",
            "::12345678901234567890.1.1.1",
            "1:2:3:4:5:6:1.2.3.99999999999",
            "1:2:3:4:5::1.2.3.4",
            "1:2:3:4:5:6::1.2.3.4",
            "::ffff:1.2.3.4::",
        ] {
            assert_eq!(ipv6_groups(text.as_bytes()), std_groups(text), "{text:?}");
        }
    }

    /// Addresses as people write them (compressed or not, leading zeros, IPv4 tails),
    /// with one byte changed, dropped or added somewhere.
    fn near_addresses() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let address =
            (any::<[u16; 8]>(), 0..4usize, any::<bool>()).prop_map(|(groups, style, ipv4_tail)| {
                let address = std::net::Ipv6Addr::from(groups);
                let mut text = match style {
                    0 => address.to_string(),
                    1 => groups.map(|g| format!("{g:04x}")).join(":"),
                    2 => groups.map(|g| format!("{g:X}")).join(":"),
                    _ => format!("{}::{:x}", groups[0], groups[7]),
                };
                if ipv4_tail {
                    let cut = text.rfind(':').unwrap_or(0);
                    let [a, b, c, d] =
                        (u32::from(groups[6]) << 16 | u32::from(groups[7])).to_be_bytes();
                    text = format!("{}:{a}.{b}.{c}.{d}", &text[..cut]);
                }
                text
            });
        let change = (
            0..3u8,
            any::<prop::sample::Index>(),
            prop::sample::select(b":.0a9F:g .".to_vec()),
        );
        (address, proptest::option::of(change)).prop_map(|(text, change)| {
            let mut bytes = text.into_bytes();
            if let Some((kind, at, byte)) = change {
                let at = at.index(bytes.len() + 1);
                match kind {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, byte),
                }
            }
            String::from_utf8(bytes).unwrap()
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        #[test]
        fn ipv6_groups_agree_with_std_near_addresses(text in near_addresses()) {
            proptest::prop_assert_eq!(ipv6_groups(text.as_bytes()), std_groups(&text), "{:?}", text);
        }

        #[test]
        fn ipv6_groups_agree_with_std_on_any_hex_and_colons(text in "[0-9a-fA-F:.g]{0,46}") {
            proptest::prop_assert_eq!(ipv6_groups(text.as_bytes()), std_groups(&text), "{:?}", text);
        }
    }

    #[test]
    fn url_passwords() {
        let text = "postgres://admin:s3cr@t!@db.internal:5432/app";
        let end = text.find("@db").unwrap() + 1;
        let (s, e) = url_password(text, 0, end).unwrap();
        assert_eq!(&text[s..e], "s3cr@t!");
        assert_eq!(url_password("https://user:@host", 0, 13), None);
    }
}
