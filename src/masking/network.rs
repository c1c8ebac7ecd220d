//! Network identifiers: IPv4 addresses (four octets, not part of a longer dotted number
//! or a version), IPv6 addresses (parsed by the standard library), and the password in
//! `scheme://user:password@host`.

use std::net::Ipv6Addr;

use super::bounds;

/// The IPv4 address matched at `start..end` (four dotted numbers).
pub fn ipv4(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    if !bounds::number_may_start(text, start) || bounds::before(text, start) == Some('.') {
        return None;
    }
    if !bounds::number_may_end(text, end) {
        return None;
    }
    // Octets read as bytes: `split` and `parse` cost more to set up than the few
    // digits take to read.
    for octet in text.as_bytes()[start..end].split(|&b| b == b'.') {
        if octet.is_empty() || (octet.len() > 1 && octet[0] == b'0') {
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
    let candidate = &text[start..end];
    candidate.parse::<Ipv6Addr>().ok()?;
    // `::1`, `a::b`: too little to be anyone's address, and common in code (`std::io`).
    let groups = candidate.split(':').filter(|g| !g.is_empty()).count()
        + usize::from(candidate.contains('.'));
    if groups < 3 {
        return None;
    }
    if bounds::after(text, end).is_some_and(|c| bounds::is_word(c) || c == ':') {
        return None;
    }
    Some((start, end))
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

    #[test]
    fn url_passwords() {
        let text = "postgres://admin:s3cr@t!@db.internal:5432/app";
        let end = text.find("@db").unwrap() + 1;
        let (s, e) = url_password(text, 0, end).unwrap();
        assert_eq!(&text[s..e], "s3cr@t!");
        assert_eq!(url_password("https://user:@host", 0, 13), None);
    }
}
