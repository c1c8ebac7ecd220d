//! The config file as written: plain serde types mirroring the TOML, with no logic.
//! Every table denies unknown keys so a typo is an error, not a silent default.
//! Validation and compilation into a [`Plan`](super::Plan) happen in `compile.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    #[serde(default)]
    pub admin: AdminSpec,
    #[serde(default)]
    pub server: ServerSpec,
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// Present (and not `enabled = false`): one JSON line per request.
    pub access_log: Option<AccessLogSpec>,
    #[serde(default)]
    pub listeners: Vec<ListenerSpec>,
    #[serde(default)]
    pub pools: Vec<PoolSpec>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    #[serde(default = "default_admin_bind")]
    pub bind: String,
}

impl Default for AdminSpec {
    fn default() -> Self {
        AdminSpec {
            bind: default_admin_bind(),
        }
    }
}

fn default_admin_bind() -> String {
    "127.0.0.1:9901".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Bucket upper bounds (seconds) of the latency histograms: request duration,
    /// time to first byte, time to first token.
    pub latency_buckets: Option<Vec<f64>>,
    /// Bucket upper bounds (seconds) of the time-per-output-token histogram.
    pub token_buckets: Option<Vec<f64>>,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        MetricsSpec {
            enabled: true,
            latency_buckets: None,
            token_buckets: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `"stdout"` (default) or a file path (appended to; reopened on SIGUSR1).
    pub path: Option<String>,
    /// Fields to write, in order (default: all).
    pub fields: Option<Vec<String>>,
    /// Lines waiting for the writer before new ones are dropped (default 8192).
    pub queue: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// How long SIGTERM waits for in-flight requests before exiting.
    pub shutdown_grace: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSpec {
    pub name: String,
    pub bind: String,
    pub tls: Option<TlsSpec>,
    /// Peers whose `X-Forwarded-For` is believed (CIDRs).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Largest request body read to find the `model` field (413 beyond).
    pub model_body_limit: Option<SizeSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SizeSpec {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub name: String,
    pub version: Option<String>,
    #[serde(default)]
    pub balance: BalanceSpec,
    /// For `balance = "hash"`: `header:NAME`, `cookie:NAME` or `ip`.
    pub hash_key: Option<String>,
    pub endpoints: Vec<EndpointSpec>,
    #[serde(default)]
    pub protocol: ProtocolSpec,
    /// Send the endpoint's host as `Host` instead of the client's.
    #[serde(default)]
    pub rewrite_host: bool,
    /// PEM file of CA certificates for https endpoints (default: the system roots).
    pub ca_file: Option<String>,
    /// Idle upstream connections kept per endpoint.
    pub max_idle_per_endpoint: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceSpec {
    #[default]
    RoundRobin,
    LeastConn,
    P2cEwma,
    Hash,
    Random,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolSpec {
    #[default]
    Http1,
    H2,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub url: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub name: String,
    /// Listener the route serves; may be omitted when there is exactly one listener.
    pub listener: Option<String>,
    #[serde(default, rename = "match")]
    pub matcher: MatchSpec,
    pub pool: String,
    #[serde(default)]
    pub timeouts: TimeoutsSpec,
    /// Headers set or removed on the way to the endpoint.
    pub request_headers: Option<HeaderRulesSpec>,
    /// Headers set or removed on the way back to the client.
    pub response_headers: Option<HeaderRulesSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRulesSpec {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    /// Exact host or `*.example.com`; the port is ignored.
    pub host: Option<String>,
    pub method: Option<OneOrMany>,
    /// Header name to exact value, or `*` for "present".
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Exact name or glob (`llama-*`) of the `model` field in a JSON body.
    pub model: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(one) => vec![one.as_str()],
            OneOrMany::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSpec {
    /// TCP connect plus TLS and HTTP/2 handshakes to an endpoint.
    pub connect: Option<String>,
    /// From sending the request to receiving the response head.
    pub response_headers: Option<String>,
}
