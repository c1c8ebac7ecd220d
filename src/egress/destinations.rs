//! Which destinations an egress listener may reach. Decided before any connection is
//! opened, on the host name and on every address it resolves to: loopback, link-local
//! (cloud metadata included), private and other special ranges are refused unless an
//! `allow` entry names them, so the proxy cannot be turned against its own network.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::cidr::Cidr;
use crate::routing::Glob;

/// One `allow` / `deny` entry: a host glob or a CIDR.
#[derive(Debug, Clone)]
pub enum Rule {
    Host(Glob),
    Net(Cidr),
}

impl Rule {
    pub fn parse(text: &str) -> Rule {
        match text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        {
            Ok(net) => Rule::Net(Cidr::from(net)),
            Err(_) => Rule::Host(Glob::new(text, true)),
        }
    }

    fn matches_host(&self, host: &str) -> bool {
        matches!(self, Rule::Host(glob) if glob.matches(host))
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        matches!(self, Rule::Net(net) if net.contains(ip))
    }
}

/// Ranges refused unless allowed explicitly.
pub const SPECIAL_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An explicit `deny` entry.
    Denied(String),
    /// Not in a non-empty `allow` list.
    NotAllowed,
    /// A special range (loopback, private, link-local...) not allowed explicitly.
    SpecialRange(IpAddr),
}

pub struct Destinations {
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    special: Vec<Cidr>,
}

impl Destinations {
    pub fn new(allow: Vec<Rule>, deny: Vec<Rule>) -> Self {
        let special = SPECIAL_RANGES
            .iter()
            .map(|r| r.parse().expect("built-in ranges are valid"))
            .collect();
        Destinations {
            allow,
            deny,
            special,
        }
    }

    /// The verdict on a host name (before resolving it).
    pub fn check_host(&self, host: &str) -> Result<(), Refusal> {
        if let Some(rule) = self.deny.iter().find(|r| r.matches_host(host)) {
            return Err(Refusal::Denied(format!("{rule:?}")));
        }
        let named = self.allow.iter().any(|r| r.matches_host(host));
        let has_host_rules = self.allow.iter().any(|r| matches!(r, Rule::Host(_)));
        if has_host_rules && !named && host.parse::<IpAddr>().is_err() {
            return Err(Refusal::NotAllowed);
        }
        Ok(())
    }

    /// The verdict on an address the host resolved to (or an IP literal).
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        let ip = ip.to_canonical();
        if let Some(rule) = self.deny.iter().find(|r| r.matches_ip(ip)) {
            return Err(Refusal::Denied(format!("{rule:?}")));
        }
        let allowed_by_net = self.allow.iter().any(|r| r.matches_ip(ip));
        let allowed_by_name = self.allow.iter().any(|r| r.matches_host(host));
        if self.special.iter().any(|net| net.contains(ip)) && !allowed_by_net {
            return Err(Refusal::SpecialRange(ip));
        }
        let has_net_rules = self.allow.iter().any(|r| matches!(r, Rule::Net(_)));
        if !self.allow.is_empty()
            && !allowed_by_net
            && !(allowed_by_name)
            && (has_net_rules || host.parse::<IpAddr>().is_ok())
        {
            return Err(Refusal::NotAllowed);
        }
        Ok(())
    }
}

/// The address a host names, in any spelling a resolver accepts: standard IPv4 and
/// IPv6, and the legacy IPv4 forms of `inet_aton` (`2852039166`, `0xa9fea9fe`,
/// `0251.0376.0251.0376`, `127.1`) that `getaddrinfo` on an exit would turn into an
/// address. `Err` for a host whose last label is a number but no valid address (the
/// WHATWG URL rule): it is neither a name nor an address, so it is refused.
pub fn host_address(host: &str) -> Result<Option<IpAddr>, ()> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Some(ip));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or(host);
    let numeric = |label: &str| {
        let digits = label
            .strip_prefix("0x")
            .or_else(|| label.strip_prefix("0X"));
        match digits {
            Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
            None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
        }
    };
    if !numeric(last) {
        return Ok(None);
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return Err(());
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        let value = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            if hex.is_empty() {
                0
            } else {
                u64::from_str_radix(hex, 16).map_err(|_| ())?
            }
        } else if part.len() > 1 && part.starts_with('0') {
            u64::from_str_radix(&part[1..], 8).map_err(|_| ())?
        } else {
            part.parse::<u64>().map_err(|_| ())?
        };
        values.push(value);
    }
    let (last_value, leading) = values.split_last().ok_or(())?;
    if leading.iter().any(|v| *v > 255) {
        return Err(());
    }
    let remaining_bits = 8 * (4 - leading.len() as u32);
    if *last_value >= 1u64 << remaining_bits {
        return Err(());
    }
    let mut address = *last_value as u32;
    for (i, value) in leading.iter().enumerate() {
        address |= (*value as u32) << (24 - 8 * i as u32);
    }
    Ok(Some(IpAddr::V4(std::net::Ipv4Addr::from(address))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_ipv4_spellings_are_addresses() {
        let metadata = Some("169.254.169.254".parse::<IpAddr>().unwrap());
        for spelling in [
            "2852039166",
            "0xa9fea9fe",
            "0251.0376.0251.0376",
            "169.254.43518",
            "169.254.169.254.",
        ] {
            assert_eq!(host_address(spelling), Ok(metadata), "{spelling}");
        }
        assert_eq!(
            host_address("127.1"),
            Ok(Some("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(host_address("::1"), Ok(Some("::1".parse().unwrap())));
        assert_eq!(host_address("www.example.org"), Ok(None));
        assert_eq!(host_address("1.example"), Ok(None));
        for bad in [
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.256",
            "99999999999",
            "08.1.1.1",
        ] {
            assert_eq!(host_address(bad), Err(()), "{bad}");
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn special_ranges_are_refused_by_default() {
        let open = Destinations::new(Vec::new(), Vec::new());
        for bad in [
            "169.254.169.254",
            "10.1.2.3",
            "127.0.0.1",
            "192.168.1.1",
            "172.20.0.1",
            "::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(
                matches!(open.check_ip("x", ip(bad)), Err(Refusal::SpecialRange(_))),
                "{bad}"
            );
        }
        assert_eq!(open.check_ip("example.org", ip("203.0.113.7")), Ok(()));
    }

    #[test]
    fn allow_and_deny_lists() {
        let rules = Destinations::new(
            vec![
                Rule::parse("*.example.org"),
                Rule::parse("203.0.113.0/24"),
                Rule::parse("127.0.0.1/32"),
            ],
            vec![Rule::parse("bad.example.org"), Rule::parse("203.0.113.66")],
        );
        assert_eq!(rules.check_host("www.example.org"), Ok(()));
        assert!(matches!(
            rules.check_host("bad.example.org"),
            Err(Refusal::Denied(_))
        ));
        assert_eq!(rules.check_host("other.net"), Err(Refusal::NotAllowed));
        assert_eq!(rules.check_ip("203.0.113.5", ip("203.0.113.5")), Ok(()));
        assert!(matches!(
            rules.check_ip("203.0.113.66", ip("203.0.113.66")),
            Err(Refusal::Denied(_))
        ));
        assert_eq!(
            rules.check_ip("127.0.0.1", ip("127.0.0.1")),
            Ok(()),
            "allowed explicitly"
        );
        assert!(matches!(
            rules.check_ip("127.0.0.2", ip("127.0.0.2")),
            Err(Refusal::SpecialRange(_))
        ));
        // A name that is allowed but resolves into a private range is still refused.
        assert!(matches!(
            rules.check_ip("www.example.org", ip("10.0.0.5")),
            Err(Refusal::SpecialRange(_))
        ));
        assert_eq!(
            rules.check_ip("www.example.org", ip("198.51.100.1")),
            Ok(())
        );
    }
}
