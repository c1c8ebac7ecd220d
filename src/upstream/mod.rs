//! Upstreams: pools of endpoints, their live state (in-flight counts, latency, idle
//! connections, load reports), the HTTP client that sends requests to them, health
//! checks and load polls. Endpoint state lives in a [`Registry`], so it survives reloads.

mod client;
mod connections;
mod endpoint;
pub mod health;
mod health_verdict;
pub mod load_poll;
mod request_body;
mod tls;

use std::sync::{Arc, OnceLock, Weak};

use http::{HeaderName, HeaderValue};

pub(crate) use client::ReadCount;
pub use client::{Dialer, Room, SendError, Sent, UpstreamBody, UpstreamClient};
pub use connections::EndpointStream;
pub use endpoint::{Endpoint, EndpointKey, EndpointState, InFlight, Registry, UpstreamUrl};
pub use health::{HealthCheck, OutlierDetection};
pub use load_poll::LoadMetrics;
pub use request_body::{BodyError, RequestBody};

pub use tls::{TlsOptions, TlsSetupError, UpstreamTls, client_config, client_config_with};

use crate::balance::Balancer;

/// The protocol a pool speaks to its endpoints: the run-time form of the config's
/// `protocol = "..."`, converted once when the plan is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Http1,
    H2,
}

impl Protocol {
    /// As the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2 => "h2",
        }
    }
}

/// A compiled `[[pools]]` entry.
pub struct Pool {
    pub name: Arc<str>,
    pub version: Option<Arc<str>>,
    /// `x-junction-version` value, built once.
    pub version_header: Option<HeaderValue>,
    pub balancer: Balancer,
    pub hash_key: Option<HashKey>,
    /// `affinity = "prefix"`: the balancer is given the hash of a chat request's prompt
    /// prefix (`least_queue` only).
    pub prefix_affinity: bool,
    /// Polls of the endpoints' `/metrics` (`least_queue`).
    pub load_metrics: Option<LoadMetrics>,
    pub endpoints: Vec<Arc<Endpoint>>,
    pub protocol: Protocol,
    pub rewrite_host: bool,
    pub client: UpstreamClient,
    pub health: Option<HealthCheck>,
    pub outlier: Option<OutlierDetection>,
    /// Set once all pools of the plan exist; weak, so pools naming each other leak nothing.
    pub fallback: OnceLock<Weak<Pool>>,
    pub limits: Limits,
    /// The pool's own upstream credential (`auth`, `api_key_env`).
    pub credential: Option<PoolCredential>,
    /// `model_map`: a request's top-level `model` → the name this pool's provider knows.
    pub model_map: std::collections::HashMap<String, String>,
    /// `api`: the API the provider speaks; requests in the other one are translated
    /// (`None`: sent as they came).
    pub api: Option<crate::llm::translate::Api>,
}

/// A pool's upstream credential: sent in place of whatever credential the client sent,
/// so that a client's key never reaches a provider that does not own it.
#[derive(Debug, Clone)]
pub struct PoolCredential {
    pub header: HeaderName,
    /// Prefix and secret, marked sensitive (never printed by `Debug`, never indexed by
    /// HPACK).
    pub value: HeaderValue,
}

/// Circuit breaking of a pool (`limits = { ... }`); `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: Option<u32>,
    pub max_pending: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub pool_max_in_flight: Option<u32>,
}

impl Pool {
    /// Whether endpoint `i` may take another request under the pool's limits.
    pub fn has_room(&self, i: usize) -> bool {
        self.limits
            .max_in_flight
            .is_none_or(|max| self.endpoints[i].state.in_flight() < u64::from(max))
    }

    /// Whether the pool as a whole may take another request.
    pub fn pool_has_room(&self) -> bool {
        self.limits.pool_max_in_flight.is_none_or(|max| {
            self.endpoints
                .iter()
                .map(|e| e.state.in_flight())
                .sum::<u64>()
                < u64::from(max)
        })
    }

    pub fn fallback(&self) -> Option<Arc<Pool>> {
        self.fallback.get().and_then(Weak::upgrade)
    }
}

/// What `balance = "hash"` hashes.
#[derive(Debug, Clone)]
pub enum HashKey {
    Header(http::HeaderName),
    Cookie(String),
    ClientIp,
}
