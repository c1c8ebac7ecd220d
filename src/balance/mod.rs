//! Load-balancing policies: given a pool's endpoints, pick one. Each policy honours
//! endpoint weights and can skip endpoints the caller rules out (down, already tried).
//! Policies read live per-endpoint counters (in-flight, latency, load reports) but
//! never lock. They know an endpoint only as a [`Candidate`]: this module sits below
//! `upstream`.

mod endpoint_load;
mod hashing;
mod least_conn;
mod least_queue;
mod p2c_ewma;
mod random;
mod rendezvous;
mod rng;
mod round_robin;

use std::sync::Arc;
use std::time::Duration;

pub use endpoint_load::{EndpointLoad, LoadReading, LoadSource};
pub use hashing::{mix64, stable_hash};
pub use least_queue::PrefixAffinity;
pub use p2c_ewma::PeakEwma;
pub use rng::SplitMix;

/// The policies a pool can name in `balance = "..."`: the run-time form of the
/// config's `BalanceSpec`, converted once when the plan is compiled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    RoundRobin,
    LeastConn,
    P2cEwma,
    Hash,
    Random,
    /// Model-server queues and KV-cache use; reports older than `max_age` are ignored.
    LeastQueue {
        max_age: Duration,
        affinity: Option<PrefixAffinity>,
    },
}

/// What a policy reads of an endpoint. `upstream::Endpoint` is one; the policies are
/// generic over it, so a pick costs no dynamic dispatch.
pub trait Candidate {
    /// Relative share of requests, at least 1 in a compiled pool.
    fn weight(&self) -> u32;
    /// Requests sent and not yet finished.
    fn in_flight(&self) -> u64;
    /// Peak-EWMA latency estimate ([`PeakEwma::estimate_nanos`]).
    fn latency_nanos(&self) -> f64;
    /// Stable across instances: the endpoint's identity in consistent hashing.
    fn identity_hash(&self) -> u64;
    /// The model server's last load report (`least_queue`); `None` when there is none.
    fn load(&self) -> Option<LoadReading> {
        None
    }
}

impl<T: Candidate + ?Sized> Candidate for Arc<T> {
    fn weight(&self) -> u32 {
        (**self).weight()
    }
    fn in_flight(&self) -> u64 {
        (**self).in_flight()
    }
    fn latency_nanos(&self) -> f64 {
        (**self).latency_nanos()
    }
    fn identity_hash(&self) -> u64 {
        (**self).identity_hash()
    }
    fn load(&self) -> Option<LoadReading> {
        (**self).load()
    }
}

/// A pool's balancer: a [`Policy`] with its state (rotation, random source).
pub enum Balancer {
    RoundRobin(round_robin::SmoothWeighted),
    LeastConn(least_conn::LeastConn),
    P2cEwma(p2c_ewma::PowerOfTwo),
    Hash(rendezvous::Rendezvous),
    Random(random::WeightedRandom),
    LeastQueue(least_queue::LeastQueue),
}

impl Balancer {
    pub fn new(policy: Policy, weights: &[u32], rng: Arc<SplitMix>) -> Self {
        match policy {
            Policy::RoundRobin => Balancer::RoundRobin(round_robin::SmoothWeighted::new(weights)),
            Policy::LeastConn => Balancer::LeastConn(least_conn::LeastConn::default()),
            Policy::P2cEwma => Balancer::P2cEwma(p2c_ewma::PowerOfTwo::new(rng)),
            Policy::Hash => Balancer::Hash(rendezvous::Rendezvous::new(
                random::WeightedRandom::new(rng),
            )),
            Policy::Random => Balancer::Random(random::WeightedRandom::new(rng)),
            Policy::LeastQueue { max_age, affinity } => {
                Balancer::LeastQueue(least_queue::LeastQueue::new(max_age, affinity))
            }
        }
    }

    /// The age past which a load report is ignored, for a `least_queue` pool: shown
    /// beside each report so that an operator sees whether the balancer reads it.
    pub fn load_max_age(&self) -> Option<Duration> {
        match self {
            Balancer::LeastQueue(policy) => Some(policy.max_age()),
            _ => None,
        }
    }

    /// Picks an endpoint index. `request_key` is the hash of the request's affinity key:
    /// its hash key for `hash`, its prompt prefix for `least_queue` with prefix affinity;
    /// `skip(i)` rules endpoint `i` out. `None` when every endpoint is ruled out.
    pub fn pick<E: Candidate>(
        &self,
        endpoints: &[E],
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
            Balancer::LeastQueue(policy) => policy.pick(endpoints, request_key, skip),
        }
    }
}
