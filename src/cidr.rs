//! CIDR blocks as requests are tested against them: the network and mask worked out
//! once, when the config is compiled, so a test is one mask and one compare, where
//! `ipnet`'s `contains` works both out again on every call. `ipnet` still parses and
//! prints them.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// A CIDR block with its network and mask as integers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpNet,
    bits: Bits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bits {
    V4 { network: u32, mask: u32 },
    V6 { network: u128, mask: u128 },
}

impl Cidr {
    /// Whether `ip` is in the block; an address of the other family never is (as
    /// `ipnet` has it: map an IPv4-mapped IPv6 address to IPv4 first).
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.bits, ip) {
            (Bits::V4 { network, mask }, IpAddr::V4(ip)) => u32::from(ip) & mask == network,
            (Bits::V6 { network, mask }, IpAddr::V6(ip)) => u128::from(ip) & mask == network,
            _ => false,
        }
    }

    /// The block as `ipnet` holds it.
    pub fn net(&self) -> IpNet {
        self.net
    }
}

impl From<IpNet> for Cidr {
    fn from(net: IpNet) -> Self {
        let bits = match net {
            IpNet::V4(v4) => Bits::V4 {
                network: u32::from(v4.network()),
                mask: u32::from(v4.netmask()),
            },
            IpNet::V6(v6) => Bits::V6 {
                network: u128::from(v6.network()),
                mask: u128::from(v6.netmask()),
            },
        };
        Cidr { net, bits }
    }
}

impl std::str::FromStr for Cidr {
    type Err = ipnet::AddrParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse::<IpNet>().map(Cidr::from)
    }
}

/// As the `IpNet` (`10.0.0.0/8`).
impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.net, f)
    }
}

/// As the `IpNet` (`V4(10.0.0.0/8)`): refusals name a rule by it.
impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.net, f)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use ipnet::{Ipv4Net, Ipv6Net};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn blocks_hold_their_addresses_only() {
        let private: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(private.contains("10.255.0.1".parse().unwrap()));
        assert!(!private.contains("11.0.0.1".parse().unwrap()));
        assert!(!private.contains("::ffff:10.0.0.1".parse().unwrap()));
        let host: Cidr = "10.1.2.3/32".parse().unwrap();
        assert!(host.contains("10.1.2.3".parse().unwrap()));
        assert!(!host.contains("10.1.2.4".parse().unwrap()));
        let everything: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("203.0.113.9".parse().unwrap()));
        assert!(!everything.contains("::1".parse().unwrap()));
        let link_local: Cidr = "fe80::/10".parse().unwrap();
        assert!(link_local.contains("febf::1".parse().unwrap()));
        assert!(!link_local.contains("fec0::1".parse().unwrap()));
        // Host bits in the written block are ignored, as ipnet ignores them.
        let loose: Cidr = "192.168.1.77/24".parse().unwrap();
        assert!(loose.contains("192.168.1.1".parse().unwrap()));
        assert_eq!(loose.to_string(), "192.168.1.77/24");
        assert_eq!(format!("{loose:?}"), format!("{:?}", loose.net()));
    }

    fn address_near(network: IpAddr, noise: u128, keep: u32) -> IpAddr {
        // Half the cases share the block's leading bits, so both answers are tried.
        match network {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - keep.min(32)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(
                    (u32::from(v4) & mask) | (noise as u32 & !mask),
                ))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - keep.min(128)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from((u128::from(v6) & mask) | (noise & !mask)))
            }
        }
    }

    proptest! {
        #[test]
        fn contains_answers_as_ipnet_does(
            v4 in any::<u32>(),
            v6 in any::<u128>(),
            prefix in 0u8..=128,
            noise in any::<u128>(),
            keep in 0u32..=128,
            family_v4 in any::<bool>(),
            other_family in any::<bool>(),
        ) {
            let net = if family_v4 {
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(v4), prefix % 33).unwrap())
            } else {
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(v6), prefix).unwrap())
            };
            let cidr = Cidr::from(net);
            let near = address_near(net.addr(), noise, keep);
            let ip = match (other_family, near) {
                (true, IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
                (true, IpAddr::V6(v6)) => IpAddr::V4(Ipv4Addr::from(u128::from(v6) as u32)),
                (false, ip) => ip,
            };
            prop_assert_eq!(cidr.contains(ip), net.contains(&ip), "{} in {}", ip, net);
        }
    }
}
