//! Which destinations an egress listener may reach. Decided before any connection is
//! opened, on the host name and on every address it resolves to: loopback, link-local
//! (cloud metadata included), private and other special ranges are refused unless an
//! `allow` entry names them, so the proxy cannot be turned against its own network.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::routing::Glob;

/// One `allow` / `deny` entry: a host glob or a CIDR.
#[derive(Debug, Clone)]
pub enum Rule {
    Host(Glob),
    Net(IpNet),
}

impl Rule {
    pub fn parse(text: &str) -> Rule {
        match text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        {
            Ok(net) => Rule::Net(net),
            Err(_) => Rule::Host(Glob::new(text, true)),
        }
    }

    fn matches_host(&self, host: &str) -> bool {
        matches!(self, Rule::Host(glob) if glob.matches(host))
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        matches!(self, Rule::Net(net) if net.contains(&ip))
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
    special: Vec<IpNet>,
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
        if self.special.iter().any(|net| net.contains(&ip)) && !allowed_by_net {
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

#[cfg(test)]
mod tests {
    use super::*;

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
