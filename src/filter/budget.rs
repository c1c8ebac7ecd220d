//! What a rate limit holds for a request until it ends: whose budget (an address, an
//! API key's name, the route) and what was reserved. A typed field of the request's
//! context, because every limited request has one and an `Extensions` entry cost four
//! allocations per request on the policy route.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Whose budget a request spends, as a value: hashing an address needs no string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum BudgetKey {
    Ip(IpAddr),
    /// An API key's name.
    Key(Arc<str>),
    /// The route's one budget.
    Route,
}

impl Hash for BudgetKey {
    /// An address in one `write`: the limits hash a key per request with the map's
    /// keyed SipHash (kept: clients choose these keys), whose cost is mostly per call,
    /// and the derived hash made four (two discriminants, a length, the octets).
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            BudgetKey::Ip(IpAddr::V4(ip)) => state.write_u64(u64::from(ip.to_bits())),
            BudgetKey::Ip(IpAddr::V6(ip)) => {
                let mut bytes = [6u8; 17];
                bytes[1..].copy_from_slice(&ip.octets());
                state.write(&bytes);
            }
            BudgetKey::Key(name) => {
                state.write_u8(b'k');
                name.hash(state);
            }
            BudgetKey::Route => state.write_u8(b'r'),
        }
    }
}

impl fmt::Display for BudgetKey {
    /// The key as the shared (Redis) limits and the admin API name it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetKey::Ip(ip) => write!(f, "{ip}"),
            BudgetKey::Key(name) => write!(f, "key:{name}"),
            BudgetKey::Route => Ok(()),
        }
    }
}

/// The state of one key after a decision, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    pub limit: u64,
    pub remaining: u64,
    /// Until the budget is whole again.
    pub reset: Duration,
}

/// What one limit reserved for this request.
#[derive(Debug, Clone)]
pub struct BudgetHold {
    /// Which limit: its address, unique while the plan that holds it lives (the request
    /// holds that plan).
    pub limit: usize,
    pub key: BudgetKey,
    /// Tokens reserved, settled against the real usage when the response ends.
    pub tokens: u64,
    pub requests: Option<Standing>,
    pub token_standing: Option<Standing>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Equal keys find their entry and distinct ones (an IPv4 address and its IPv6
    /// mapping among them) keep their own, with the hand-written hash.
    #[test]
    fn budget_keys_hash_as_they_compare() {
        let v4 = IpAddr::from([10, 0, 0, 1]);
        let keys = [
            BudgetKey::Ip(v4),
            BudgetKey::Ip(IpAddr::from(
                std::net::Ipv4Addr::from([10, 0, 0, 1]).to_ipv6_mapped(),
            )),
            BudgetKey::Ip(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
            BudgetKey::Key(Arc::from("team-a")),
            BudgetKey::Key(Arc::from("")),
            BudgetKey::Route,
        ];
        let map: HashMap<BudgetKey, usize> = keys
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect();
        assert_eq!(map.len(), keys.len());
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(map.get(&key.clone()), Some(&i), "{key:?}");
        }
        assert_eq!(map.get(&BudgetKey::Key(Arc::from("team-a"))), Some(&3));
    }
}
