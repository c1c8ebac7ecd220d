//! Which host a request is for (RFC 9112 3.2, RFC 9113 8.3.1): the target's authority
//! when it has one (absolute form, HTTP/2 `:authority`), else the one `Host` header. A
//! `Host` that contradicts the authority, a repeated or malformed one, or none at all in
//! HTTP/1.1 is refused, so the host routed on is the host the endpoint sees.

use super::Refusal;

/// The request's host (with port, as sent): `authority` is the target's, if any;
/// `hosts` every `Host` line; `required` for HTTP/1.1.
pub fn request_host<'a>(
    authority: Option<&'a [u8]>,
    hosts: impl IntoIterator<Item = &'a [u8]>,
    required: bool,
) -> Result<Option<&'a [u8]>, Refusal> {
    let mut hosts = hosts.into_iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::DuplicateHost);
    }
    if let Some(host) = host
        && !is_valid_authority(host)
    {
        return Err(Refusal::InvalidHost);
    }
    match (authority, host) {
        (Some(authority), _) if authority.contains(&b'@') => Err(Refusal::Userinfo),
        (Some(authority), Some(host)) if !authority.eq_ignore_ascii_case(host) => {
            Err(Refusal::HostMismatch)
        }
        (Some(authority), _) => Ok(Some(authority)),
        (None, None) if required => Err(Refusal::MissingHost),
        (None, host) => Ok(host),
    }
}

/// `uri-host [":" port]` (RFC 3986 3.2.2): a registered name, IPv4 address or bracketed
/// IP literal, then digits for a port. An empty host or port is refused: no endpoint
/// reads them alike.
pub fn is_valid_authority(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match &value[end + 1..] {
            [] => return true,
            [b':', port @ ..] => (&value[..=end], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(at) => (&value[..at], Some(&value[at + 1..])),
            None => (value, None),
        }
    };
    let name_ok = host.first() == Some(&b'[')
        || (!host.is_empty() && host.iter().all(|&b| is_reg_name_byte(b)));
    let port_ok = port.is_none_or(|port| {
        !port.is_empty() && port.len() <= 5 && port.iter().all(u8::is_ascii_digit)
    });
    name_ok && port_ok
}

/// unreserved / sub-delims (RFC 3986 2.2, 2.3); `%` is left out: no host needs it, and
/// an encoded name is read differently by different servers.
/// Splits `name[:port]` or `[v6][:port]`; `None` if it is not a plain host (a scheme,
/// path, user info, space or bare IPv6 address in it).
pub fn parse_host(text: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if text.starts_with('[') {
        let end = text.find(']')?;
        let (name, rest) = text.split_at(end + 1);
        name[1..end].parse::<std::net::Ipv6Addr>().ok()?;
        match rest {
            "" => (name, None),
            rest => (name, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        }
    };
    let valid_name = name.starts_with('[')
        || (!name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !valid_name {
        return None;
    }
    let port = match port {
        None => None,
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            Some(port.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((name, port))
}

/// RFC 3986 `reg-name` bytes other than escapes: unreserved and sub-delims.
pub fn is_reg_name_byte(b: u8) -> bool {
    REG_NAME[usize::from(b)]
}

/// [`is_reg_name_byte`] as a table: every request's `Host` is checked byte by byte.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=";
    let mut at = 0;
    while at < others.len() {
        table[others[at] as usize] = true;
        at += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reg_name_bytes_are_unreserved_and_sub_delims() {
        for b in 0..=255u8 {
            // RFC 3986 2.3 unreserved and 2.2 sub-delims, as the grammar lists them.
            let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
            let sub_delim = matches!(
                b,
                b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            );
            let expected = unreserved || sub_delim;
            assert_eq!(is_reg_name_byte(b), expected, "{b:#x}");
        }
        assert!(!is_reg_name_byte(b'%') && !is_reg_name_byte(b':') && !is_reg_name_byte(b'@'));
    }

    fn host<'a>(
        authority: Option<&'a str>,
        hosts: &[&'a str],
        required: bool,
    ) -> Result<Option<&'a str>, Refusal> {
        request_host(
            authority.map(str::as_bytes),
            hosts.iter().map(|h| h.as_bytes()),
            required,
        )
        .map(|h| h.map(|h| std::str::from_utf8(h).unwrap()))
    }

    #[test]
    fn the_authority_wins_and_must_agree() {
        assert_eq!(host(None, &["a:8080"], true), Ok(Some("a:8080")));
        assert_eq!(host(Some("a"), &["A"], true), Ok(Some("a")));
        assert_eq!(host(Some("a"), &[], false), Ok(Some("a")));
        assert_eq!(host(Some("a"), &["b"], true), Err(Refusal::HostMismatch));
        assert_eq!(host(Some("u@a"), &[], false), Err(Refusal::Userinfo));
        assert_eq!(host(None, &["a", "a"], true), Err(Refusal::DuplicateHost));
        assert_eq!(host(None, &[], true), Err(Refusal::MissingHost));
        assert_eq!(host(None, &[], false), Ok(None));
    }

    #[test]
    fn authorities() {
        for ok in [
            "a",
            "a.example:80",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:8080",
            "x_y-z",
        ] {
            assert!(is_valid_authority(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "a b", "a/b", "u@a", "a:", ":80", "a:x", "a:123456", "[::1", "[]", "[::1]x",
            "a%41", "a\tb",
        ] {
            assert!(!is_valid_authority(bad.as_bytes()), "{bad}");
        }
    }
}
