//! The compiled, immutable form of a config: what the running server reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::spec::ConfigSpec;
use crate::canary::RouteControl;
use crate::routing::RouteTable;
use crate::telemetry::{AccessLogSettings, RouteMetrics};
use crate::upstream::{EndpointKey, EndpointState, Pool};

pub struct Plan {
    /// The config as written, for `/api/config`.
    pub spec: ConfigSpec,
    pub metrics_enabled: bool,
    /// The admin token, read from the environment when the plan was built.
    pub admin_token: Option<Arc<str>>,
    /// `[admin] read_requires_token`: the read-only endpoints (probes excepted) need
    /// the token too.
    pub admin_read_requires_token: bool,
    pub state_file: Option<std::path::PathBuf>,
    /// The tamper-evident audit log, if configured.
    pub audit: Option<crate::security::audit::AuditSettings>,
    pub access_log: Option<AccessLogSettings>,
    pub admin_bind: SocketAddr,
    /// `[admin] hosts`, lower-cased: `Host` values the admin API accepts besides its address.
    pub admin_hosts: Vec<Arc<str>>,
    pub shutdown_grace: Duration,
    pub listeners: Vec<ListenerPlan>,
    pub pools: Vec<Arc<Pool>>,
    /// Each route's rate limits (routes without any are left out), for the admin API.
    pub rate_limits: Vec<crate::security::limit_usage::RouteLimits>,
}

/// Largest request head (request line and header lines) a listener takes when
/// `max_request_head_bytes` is not set.
pub const DEFAULT_MAX_REQUEST_HEAD: usize = 400 * 1024;

pub struct ListenerPlan {
    pub name: Arc<str>,
    pub bind: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub trusted_proxies: Vec<IpNet>,
    pub model_body_limit: u64,
    pub header_read_timeout: Duration,
    pub body_timeouts: BodyTimeouts,
    pub max_request_head_bytes: Option<usize>,
    pub max_connections_per_client: Option<u32>,
    /// Plain cleartext HTTP/1.1 requests take the hand-written fast path.
    pub fast_path: bool,
    pub routes: RouteTable,
    /// Set for `[[egress]]` listeners: a forward proxy instead of routes.
    pub egress: Option<Arc<crate::egress::EgressPlan>>,
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

impl ListenerPlan {
    /// The request head limit in force: `max_request_head_bytes` or the default.
    pub fn max_request_head(&self) -> usize {
        self.max_request_head_bytes
            .unwrap_or(DEFAULT_MAX_REQUEST_HEAD)
    }
}

/// What the warning says when [`Plan::admin_exposed_without_token`].
pub const ADMIN_EXPOSED: &str = "the admin API listens beyond loopback without an admin token: anyone who reaches it can read the config, and only the Host and origin checks stand between them and its changes; set [admin] token_file or token_env, or bind it to 127.0.0.1";

impl Plan {
    /// The admin API is reachable beyond this machine and nothing guards its changes
    /// but the `Host` and origin checks: `junction check` and the start warn.
    pub fn admin_exposed_without_token(&self) -> bool {
        !self.admin_bind.ip().is_loopback() && self.admin_token.is_none()
    }

    pub fn listener(&self, name: &str) -> Option<&ListenerPlan> {
        self.listeners
            .iter()
            .find(|listener| &*listener.name == name)
    }

    /// The metric state of every route (each target and the mirror).
    pub fn route_metrics(&self) -> Vec<Arc<RouteMetrics>> {
        let routes = self.listeners.iter().flat_map(|l| l.routes.routes.iter());
        routes
            .flat_map(|r| {
                let hops = r.chain.iter().map(|h| &h.target);
                let targets = r.targets.iter().chain(hops);
                let targets = targets.map(|t| t.telemetry.metrics.clone());
                targets.chain(r.mirror.iter().map(|m| m.telemetry.metrics.clone()))
            })
            .collect()
    }

    /// The runtime controls (split weights, canaries) of every route that has one.
    pub fn route_controls(&self) -> Vec<Arc<RouteControl>> {
        let routes = self.listeners.iter().flat_map(|l| l.routes.routes.iter());
        routes.filter_map(|r| r.control.clone()).collect()
    }

    pub fn route(&self, name: &str) -> Option<&Arc<crate::routing::Route>> {
        self.listeners
            .iter()
            .flat_map(|l| l.routes.routes.iter())
            .find(|r| &*r.name == name)
    }

    /// Every endpoint's key and the state this plan holds for it: what the registry
    /// adopts when the plan is swapped in.
    pub fn endpoint_states(&self) -> Vec<(EndpointKey, Arc<EndpointState>)> {
        self.pools
            .iter()
            .flat_map(|pool| {
                pool.endpoints.iter().map(|e| {
                    let key = (pool.name.to_string(), e.url.to_string(), pool.protocol);
                    (key, e.state.clone())
                })
            })
            .collect()
    }
}
