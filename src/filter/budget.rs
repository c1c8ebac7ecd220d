//! What a rate limit holds for a request until it ends: whose budget (an address, an
//! API key's name, the route) and what was reserved. A typed field of the request's
//! context, because every limited request has one and an `Extensions` entry cost four
//! allocations per request on the policy route.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Whose budget a request spends, as a value: hashing an address needs no string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BudgetKey {
    Ip(IpAddr),
    /// An API key's name.
    Key(Arc<str>),
    /// The route's one budget.
    Route,
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
