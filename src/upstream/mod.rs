//! Upstreams: pools of endpoints, their live state (in-flight counts, latency,
//! idle connections), and the HTTP client that sends requests to them.
//! Endpoint state lives in a [`Registry`] keyed by pool and URL, so it survives reloads.

mod client;
mod endpoint;
mod tls;

use std::sync::Arc;

use http::HeaderValue;

pub use client::{SendError, Sent, UpstreamBody, UpstreamClient};
pub use endpoint::{Endpoint, EndpointState, InFlight, Registry, UpstreamUrl};
pub use tls::client_config;

use crate::balance::Balancer;
use crate::config::spec::ProtocolSpec;

/// A compiled `[[pools]]` entry.
pub struct Pool {
    pub name: Arc<str>,
    pub version: Option<Arc<str>>,
    /// `x-junction-version` value, built once.
    pub version_header: Option<HeaderValue>,
    pub balancer: Balancer,
    pub hash_key: Option<HashKey>,
    pub endpoints: Vec<Arc<Endpoint>>,
    pub protocol: ProtocolSpec,
    pub rewrite_host: bool,
    pub client: UpstreamClient,
}

/// What `balance = "hash"` hashes.
#[derive(Debug, Clone)]
pub enum HashKey {
    Header(http::HeaderName),
    Cookie(String),
    ClientIp,
}
