//! The compiled, immutable form of a config: what the running server reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::spec::ConfigSpec;
use crate::canary::RouteControl;
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
    /// `[fleet]`: canary state shared through Redis.
    pub fleet: Option<crate::canary::FleetSettings>,
    /// The tamper-evident audit log, if configured.
    pub audit: Option<crate::security::audit::AuditSettings>,
    pub access_log: Option<AccessLogSettings>,
    pub admin_bind: SocketAddr,
    /// `[admin] hosts`, lower-cased: `Host` values the admin API accepts besides its address.
    pub admin_hosts: Vec<Arc<str>>,
    pub shutdown_grace: Duration,
    pub listeners: Vec<ListenerPlan>,
    pub pools: Vec<Arc<Pool>>,
    /// What `junction check` and the start warn of (expiring certificates, route hosts
    /// no certificate serves); valid, but worth a look.
    pub warnings: Vec<super::ConfigError>,
    /// Each route's rate limits (routes without any are left out), for the admin API.
    pub rate_limits: Vec<crate::security::limit_usage::RouteLimits>,
}

pub use crate::routing::{BodyTimeouts, DEFAULT_MAX_REQUEST_HEAD, GatewayListener};

/// A listener as the server runs it: where it binds and its TLS, and either the gateway
/// part the engines read (`gateway`; reads of its fields go through `Deref`) or, for an
/// `[[egress]]` listener, the forward proxy.
pub struct ListenerPlan {
    pub bind: SocketAddr,
    pub tls: Option<Arc<crate::tls::ListenerTls>>,
    /// The listener's `tls.acme` section: the gateway keeps its issuer across reloads
    /// and plugs it into `tls.certs`.
    pub acme: Option<crate::acme::AcmeSettings>,
    pub max_connections_per_client: Option<u32>,
    pub gateway: Arc<GatewayListener>,
    /// Set for `[[egress]]` listeners: a forward proxy instead of routes.
    pub egress: Option<Arc<crate::egress::EgressPlan>>,
}

/// The engines take the gateway part; the server's code reads its fields through the
/// listener as before.
impl std::ops::Deref for ListenerPlan {
    type Target = GatewayListener;

    fn deref(&self) -> &GatewayListener {
        &self.gateway
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

    /// Per masking route (an egress listener by its name): texts its masker answered
    /// from its cache and texts it read (`junction_masking_cache_lookups_total`).
    pub fn masking_cache_lookups(&self) -> Vec<(Arc<str>, u64, u64)> {
        let mut all = Vec::new();
        for listener in &self.listeners {
            let routes = listener.routes.routes.iter();
            let masks = routes.filter_map(|r| Some((r.name.clone(), r.mask.as_ref()?)));
            let egress = listener
                .egress
                .as_ref()
                .and_then(|e| Some((e.name.clone(), e.mask_policy()?)));
            for (name, policy) in masks.chain(egress) {
                if let Some((hits, misses)) = policy.masker.cache_lookups() {
                    all.push((name, hits, misses));
                }
            }
        }
        all
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
