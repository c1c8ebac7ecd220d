//! Load-balancing policies: given a pool's endpoints, pick one. Each policy honours
//! endpoint weights and can skip endpoints the caller rules out (down, already tried).
//! Policies read live per-endpoint counters (in-flight, latency) but never lock.

mod hashing;
mod least_conn;
mod p2c_ewma;
mod random;
mod rendezvous;
mod rng;
mod round_robin;

use std::sync::Arc;

pub use hashing::{mix64, stable_hash};
pub use p2c_ewma::PeakEwma;
pub use rng::SplitMix;

use crate::upstream::Endpoint;

/// The policies a pool can name in `balance = "..."`.
pub enum Balancer {
    RoundRobin(round_robin::SmoothWeighted),
    LeastConn(least_conn::LeastConn),
    P2cEwma(p2c_ewma::PowerOfTwo),
    Hash(rendezvous::Rendezvous),
    Random(random::WeightedRandom),
}

impl Balancer {
    pub fn new(
        spec: crate::config::spec::BalanceSpec,
        weights: &[u32],
        rng: Arc<SplitMix>,
    ) -> Self {
        use crate::config::spec::BalanceSpec;
        match spec {
            BalanceSpec::RoundRobin => {
                Balancer::RoundRobin(round_robin::SmoothWeighted::new(weights))
            }
            BalanceSpec::LeastConn => Balancer::LeastConn(least_conn::LeastConn::default()),
            BalanceSpec::P2cEwma => Balancer::P2cEwma(p2c_ewma::PowerOfTwo::new(rng)),
            BalanceSpec::Hash => Balancer::Hash(rendezvous::Rendezvous::new(
                random::WeightedRandom::new(rng),
            )),
            BalanceSpec::Random => Balancer::Random(random::WeightedRandom::new(rng)),
        }
    }

    /// Picks an endpoint index. `request_key` is the hash of the request's affinity key
    /// (only `hash` uses it); `skip(i)` rules endpoint `i` out. `None` when every
    /// endpoint is ruled out.
    pub fn pick(
        &self,
        endpoints: &[Arc<Endpoint>],
        request_key: Option<u64>,
        skip: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        if endpoints.is_empty() {
            return None;
        }
        match self {
            Balancer::RoundRobin(policy) => policy.pick(endpoints.len(), skip),
            Balancer::LeastConn(policy) => policy.pick(endpoints, skip),
            Balancer::P2cEwma(policy) => policy.pick(endpoints, skip),
            Balancer::Hash(policy) => policy.pick(endpoints, request_key, skip),
            Balancer::Random(policy) => policy.pick(endpoints, skip),
        }
    }
}
