//! What the engines read of a gateway listener: its routes, the proxies it trusts to
//! name the client, and the limits and timeouts of its requests. `config::ListenerPlan`
//! holds it beside the parts only the server reads (address, TLS, egress).

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::RouteTable;

/// Largest request head (request line and header lines) a listener takes when
/// `max_request_head_bytes` is not set.
pub const DEFAULT_MAX_REQUEST_HEAD: usize = 400 * 1024;

pub struct GatewayListener {
    pub name: Arc<str>,
    /// With `tls.client_auth`: the header the client's identity goes upstream in (a
    /// client's own is removed first).
    pub identity_header: Option<http::HeaderName>,
    pub trusted_proxies: Vec<IpNet>,
    pub model_body_limit: u64,
    pub header_read_timeout: Duration,
    pub body_timeouts: BodyTimeouts,
    pub max_request_head_bytes: Option<usize>,
    /// Plain cleartext HTTP/1.1 requests take the hand-written fast path.
    pub fast_path: bool,
    pub routes: RouteTable,
}

impl GatewayListener {
    /// The request head limit in force: `max_request_head_bytes` or the default.
    pub fn max_request_head(&self) -> usize {
        self.max_request_head_bytes
            .unwrap_or(DEFAULT_MAX_REQUEST_HEAD)
    }
}

/// How long a client may take over a request body: between two reads, and in all.
/// Both engines answer 408 when either runs out.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeouts {
    pub idle: Duration,
    pub total: Duration,
}

impl Default for BodyTimeouts {
    fn default() -> Self {
        BodyTimeouts {
            idle: Duration::from_secs(30),
            total: Duration::from_secs(300),
        }
    }
}
