//! The compiled, immutable form of a config: what the running server reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::spec::{ConfigSpec, ProtocolSpec};
use crate::routing::RouteTable;
use crate::telemetry::{AccessLogSettings, RouteMetrics};
use crate::upstream::Pool;

pub struct Plan {
    /// The config as written, for `/api/config`.
    pub spec: ConfigSpec,
    pub metrics_enabled: bool,
    pub access_log: Option<AccessLogSettings>,
    pub admin_bind: SocketAddr,
    pub shutdown_grace: Duration,
    pub listeners: Vec<ListenerPlan>,
    pub pools: Vec<Arc<Pool>>,
}

pub struct ListenerPlan {
    pub name: Arc<str>,
    pub bind: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub trusted_proxies: Vec<IpNet>,
    pub model_body_limit: u64,
    pub routes: RouteTable,
}

impl Plan {
    pub fn listener(&self, name: &str) -> Option<&ListenerPlan> {
        self.listeners
            .iter()
            .find(|listener| &*listener.name == name)
    }

    /// The metric state of every route.
    pub fn route_metrics(&self) -> Vec<Arc<RouteMetrics>> {
        self.listeners
            .iter()
            .flat_map(|l| l.routes.routes.iter().map(|r| r.telemetry.metrics.clone()))
            .collect()
    }

    /// The (pool, url, protocol) of every endpoint: the endpoint state to keep.
    pub fn endpoint_keys(&self) -> Vec<(String, String, ProtocolSpec)> {
        self.pools
            .iter()
            .flat_map(|pool| {
                pool.endpoints
                    .iter()
                    .map(|e| (pool.name.to_string(), e.url.to_string(), pool.protocol))
            })
            .collect()
    }
}
