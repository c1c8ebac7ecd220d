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
    /// State shared by the instances of a fleet (canary weights and phases).
    #[serde(default)]
    pub fleet: FleetSpec,
    #[serde(default)]
    pub metrics: MetricsSpec,
    #[serde(default)]
    pub audit: AuditSpec,
    /// Present (and not `enabled = false`): one JSON line per request.
    pub access_log: Option<AccessLogSpec>,
    #[serde(default)]
    pub listeners: Vec<ListenerSpec>,
    /// Forward (egress) proxy listeners.
    #[serde(default)]
    pub egress: Vec<EgressSpec>,
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
    /// Environment variable holding the bearer token that the admin API's changing
    /// calls require (default JUNCTION_ADMIN_TOKEN); unset: those calls are refused.
    pub token_env: Option<String>,
    /// A file holding the admin token instead (a mounted secret); surrounding white
    /// space is not part of it.
    pub token_file: Option<String>,
    /// The read-only endpoints need the token too (`/healthz` and `/readyz` never do).
    #[serde(default)]
    pub read_requires_token: bool,
    /// Extra `Host` values the admin API answers to (names it is reached by), besides
    /// its bind address; any other `Host` is refused (DNS rebinding).
    #[serde(default)]
    pub hosts: Vec<String>,
}

impl Default for AdminSpec {
    fn default() -> Self {
        AdminSpec {
            bind: default_admin_bind(),
            token_env: None,
            token_file: None,
            read_requires_token: false,
            hosts: Vec::new(),
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
    /// Where runtime split weights and canary state are saved, to survive restarts.
    pub state_file: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// `redis://host:port/db`: canary state shared by every instance, one analysis
    /// leader at a time.
    pub backend: Option<String>,
    /// How long the analysis leader's lease lasts without renewal (default "10s").
    pub lease: Option<String>,
    /// Prefix of the Redis keys (default "junction"): fleets sharing a Redis differ here.
    pub key_prefix: Option<String>,
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
    /// Time a client has to send a complete request head (default "30s"): slowloris.
    pub header_read_timeout: Option<String>,
    /// Largest HTTP/1.1 request head buffered (default "400KiB"; at least "8KiB").
    pub max_request_head_bytes: Option<SizeSpec>,
    /// Longest silence between two pieces of a request body (default "30s"): 408 beyond.
    pub body_read_timeout: Option<String>,
    /// Time a client has to send a whole request body (default "5m"): 408 beyond.
    pub body_total_timeout: Option<String>,
    /// Open connections allowed per client address (default: unlimited).
    pub max_connections_per_client: Option<u32>,
    /// Relay plain HTTP/1.1 requests on the hand-written fast path (default true).
    pub fast_path: Option<bool>,
    // Security rules for every route of this listener (checked before the route's own).
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub allow_file: Option<String>,
    pub deny_file: Option<String>,
    pub rules: Option<Vec<HeaderRuleSpec>>,
    pub require_headers: Option<Vec<String>>,
    pub block_scanners: Option<bool>,
    pub max_header_count: Option<usize>,
    pub max_header_bytes: Option<SizeSpec>,
    pub auth: Option<AuthSpec>,
    pub rate_limit: Option<RateLimitSpec>,
    /// Flow capture of every route of this listener without its own (docs/inspection.md).
    pub capture: Option<CaptureSpec>,
}

/// The security keys a listener and a route both take, seen together. (Serde's
/// `flatten` cannot be combined with `deny_unknown_fields`, so the keys are spelled out
/// in both tables and gathered here.)
pub struct SecuritySpec<'a> {
    pub allow: &'a [String],
    pub deny: &'a [String],
    pub allow_file: Option<&'a str>,
    pub deny_file: Option<&'a str>,
    pub rules: &'a [HeaderRuleSpec],
    pub require_headers: &'a [String],
    pub block_scanners: bool,
    pub max_header_count: Option<usize>,
    pub max_header_bytes: Option<&'a SizeSpec>,
    pub auth: Option<&'a AuthSpec>,
    pub rate_limit: Option<&'a RateLimitSpec>,
}

macro_rules! security_view {
    ($spec:ident) => {
        impl $spec {
            pub fn security(&self) -> SecuritySpec<'_> {
                SecuritySpec {
                    allow: self.allow.as_deref().unwrap_or_default(),
                    deny: self.deny.as_deref().unwrap_or_default(),
                    allow_file: self.allow_file.as_deref(),
                    deny_file: self.deny_file.as_deref(),
                    rules: self.rules.as_deref().unwrap_or_default(),
                    require_headers: self.require_headers.as_deref().unwrap_or_default(),
                    block_scanners: self.block_scanners.unwrap_or(false),
                    max_header_count: self.max_header_count,
                    max_header_bytes: self.max_header_bytes.as_ref(),
                    auth: self.auth.as_ref(),
                    rate_limit: self.rate_limit.as_ref(),
                }
            }
        }
    };
}
security_view!(ListenerSpec);
security_view!(RouteSpec);

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRuleSpec {
    /// Name in metrics and logs (default: the header and pattern).
    pub name: Option<String>,
    pub header: String,
    /// Regular expression on the header's value.
    pub matches: String,
    #[serde(default = "default_rule_action")]
    pub action: String,
}

fn default_rule_action() -> String {
    "deny".into()
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Requests allowed per `per`.
    pub requests: Option<u64>,
    /// The period (default "1m").
    pub per: Option<String>,
    /// Whose budget: "ip" (default), "api_key" or "route".
    pub key: Option<String>,
    /// LLM tokens (prompt + completion) allowed per `per`.
    pub tokens: Option<u64>,
    /// Completion tokens reserved for a request that names no `max_tokens` (default 1024).
    pub default_max_tokens: Option<u64>,
    /// "local" (default), or "redis://host:port" to share the budgets with every
    /// instance that names the same Redis.
    pub backend: Option<String>,
    /// With Redis: when it cannot be reached, "allow" (default) or "deny" (503).
    pub on_backend_error: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    #[serde(default)]
    pub keys: Vec<ApiKeySpec>,
    /// TOML file with `[[keys]]` entries of the same shape.
    pub keys_file: Option<String>,
    /// Client certificate identities (mTLS) admitted without a key: globs matched
    /// against the certificate's URI SANs (SPIFFE ID), DNS SANs and `CN=...`.
    #[serde(default)]
    pub identities: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySpec {
    pub name: String,
    /// SHA-256 of the key, hex (`junction key hash KEY` prints it).
    pub sha256: String,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub models: Vec<String>,
    /// This key's own budget (`{ requests, per, tokens, ... }` as for routes).
    pub rate_limit: Option<RateLimitSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFileSpec {
    #[serde(default)]
    pub keys: Vec<ApiKeySpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    /// File of the tamper-evident audit log.
    pub path: Option<String>,
    /// Longest time between a line written and the anchor that covers it.
    pub checkpoint_interval: Option<String>,
    /// Lines written before an anchor, at most.
    pub checkpoint_records: Option<u64>,
    /// Environment variable holding the key that signs the anchor (HMAC-SHA256).
    pub key_env: Option<String>,
    /// File holding that key instead.
    pub key_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// One certificate chain (PEM): the short form of `certs = [{ cert, key }]`.
    pub cert: Option<String>,
    pub key: Option<String>,
    /// Certificates picked by the client's SNI (an ECDSA and an RSA one may share names).
    #[serde(default)]
    pub certs: Vec<CertSpec>,
    /// The name whose certificate answers clients that send no name or an unknown one
    /// (default: the first certificate).
    pub default: Option<String>,
    /// How often the certificate files are looked at for changes (default "10s"; "off").
    pub watch: Option<String>,
    /// Client certificates (mTLS), verified against a CA.
    pub client_auth: Option<ClientAuthSpec>,
    /// A certificate obtained by ACME for its domains (docs/acme.md), with or
    /// without `cert`/`certs` for other names.
    pub acme: Option<AcmeSpec>,
}

/// `acme = { directory, email, domains, challenge, storage, ca }` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSpec {
    /// The ACME directory URL, `https://...`.
    pub directory: String,
    pub email: Option<String>,
    pub domains: Vec<String>,
    /// `"http-01"` (default) or `"tls-alpn-01"`.
    pub challenge: Option<String>,
    /// Directory for the account key, certificate chain and key (relative to the config
    /// file's directory).
    pub storage: String,
    /// A PEM root for the directory's HTTPS instead of the system roots (a private CA).
    pub ca: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthSpec {
    /// PEM file of the CAs that issue client certificates.
    pub ca: String,
    /// Refuse the handshake without a client certificate (default true).
    #[serde(default = "yes")]
    pub required: bool,
    /// Header that carries the client's identity upstream (default
    /// `x-junction-client-identity`); a client's own is always removed.
    pub header: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolTlsSpec {
    /// Client certificate chain (PEM) shown to endpoints that ask (mTLS); needs `key`.
    pub cert: Option<String>,
    pub key: Option<String>,
    /// PEM file of CAs trusted for the endpoints (as `ca_file`; default: system roots).
    pub ca: Option<String>,
    /// Name sent as SNI and verified, instead of each endpoint URL's host.
    pub server_name: Option<String>,
    /// `false`: endpoints' certificates are not verified (`junction check` warns).
    #[serde(default = "yes")]
    pub verify: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertSpec {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum SizeSpec {
    Bytes(u64),
    Text(String),
}

/// By hand rather than `untagged`, whose error ("did not match any variant of untagged
/// enum SizeSpec") does not tell the user what a size looks like.
impl<'de> Deserialize<'de> for SizeSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Size;
        impl serde::de::Visitor<'_> for Size {
            type Value = SizeSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"a size like "64KiB", "10MB" or a number of bytes"#)
            }
            fn visit_u64<E: serde::de::Error>(self, bytes: u64) -> Result<SizeSpec, E> {
                Ok(SizeSpec::Bytes(bytes))
            }
            fn visit_i64<E: serde::de::Error>(self, bytes: i64) -> Result<SizeSpec, E> {
                u64::try_from(bytes)
                    .map(SizeSpec::Bytes)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(bytes), &self))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SizeSpec, E> {
                Ok(SizeSpec::Text(text.to_string()))
            }
        }
        deserializer.deserialize_any(Size)
    }
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
    /// TLS to https endpoints: a client certificate, CA, name, verification.
    pub tls: Option<PoolTlsSpec>,
    /// Idle upstream connections kept per endpoint.
    pub max_idle_per_endpoint: Option<usize>,
    /// Active health checks.
    pub health: Option<HealthSpec>,
    /// Passive outlier detection: ejection after consecutive failures of real traffic.
    pub outlier: Option<OutlierSpec>,
    /// Pool to use when this one has no endpoint available.
    pub fallback: Option<String>,
    /// Circuit breaking: beyond these, a fast 503 instead of a queue.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// For `balance = "least_queue"`: where and how often to read the endpoints' load
    /// gauges (Prometheus text), and how old a report may be.
    pub load_metrics: Option<LoadMetricsSpec>,
    /// For `balance = "least_queue"`: `"prefix"` sends chat requests that share a
    /// prompt prefix to one endpoint, for its prefix cache.
    pub affinity: Option<AffinitySpec>,
    /// With `affinity`: how many requests longer than the shortest the prefix's own
    /// endpoint's queue may be and still get the request (default 2).
    pub affinity_slack: Option<f64>,
    /// The pool's own upstream credential: the client's credential headers are
    /// removed and this one is sent instead.
    pub auth: Option<PoolAuthSpec>,
    /// Shorthand for `auth = { value_env = "..." }`: `Authorization: Bearer <$VAR>`.
    pub api_key_env: Option<String>,
    /// Renames a request's top-level `model` for this pool (`"gpt-4o" = "my-deployment"`),
    /// every other byte of the body kept.
    #[serde(default)]
    pub model_map: BTreeMap<String, String>,
    /// The API the pool's provider speaks, when Junction translates to it: a chat
    /// completions request to an `"anthropic"` pool goes as a Messages request, a
    /// Messages request to an `"openai"` pool as chat completions (answers translated
    /// back). Unset: requests go as they came.
    pub api: Option<ApiSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiSpec {
    Openai,
    Anthropic,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolAuthSpec {
    /// Header the credential goes in (default "authorization").
    pub header: Option<String>,
    /// Put before the secret (default "Bearer " for `authorization`, else nothing).
    pub prefix: Option<String>,
    /// File holding the secret, read at load and reload (surrounding whitespace trimmed).
    pub value_file: Option<String>,
    /// Environment variable holding the secret, read at load.
    pub value_env: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadMetricsSpec {
    /// Path of the Prometheus text (default "/metrics").
    pub path: Option<String>,
    /// How often each endpoint is read (default "500ms").
    pub interval: Option<String>,
    /// Older reports are not used: the pool balances by in-flight counts (default "2s").
    pub max_age: Option<String>,
    /// How long one read may take (default: the interval).
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AffinitySpec {
    Prefix,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// HTTP path to GET; omit (with `tcp = true`) for a TCP connect check.
    pub path: Option<String>,
    #[serde(default)]
    pub tcp: bool,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    /// Statuses that pass, e.g. "200-399" (default) or "200,204".
    pub expect_status: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierSpec {
    pub consecutive_failures: Option<u32>,
    pub base_ejection: Option<String>,
    pub max_ejection: Option<String>,
    pub max_ejection_percent: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Open connections per endpoint (HTTP/1.1).
    pub max_connections: Option<u32>,
    /// Requests waiting for a connection of an endpoint at `max_connections`.
    pub max_pending: Option<u32>,
    /// Requests in flight per endpoint.
    pub max_in_flight: Option<u32>,
    /// Requests in flight over the whole pool.
    pub pool_max_in_flight: Option<u32>,
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
    LeastQueue,
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
    /// The pool that serves the route; or `split` between several.
    pub pool: Option<String>,
    /// Weighted split between pools, e.g. stable 95 / candidate 5.
    pub split: Option<Vec<SplitTargetSpec>>,
    /// A fallback chain: the first pool serves, each next one when the outcome of the
    /// one before matches its `on` triggers (instead of `pool` or `split`).
    pub targets: Option<Vec<ChainTargetSpec>>,
    /// Keep a client on one side of the split: `header:NAME`, `cookie:NAME` or `ip`.
    pub sticky: Option<String>,
    /// With `sticky = "cookie:NAME"`: give clients without the cookie one, to pin browsers.
    #[serde(default)]
    pub set_cookie: bool,
    /// Client addresses whose `x-junction-version` header is honoured (CIDRs); the admin
    /// token (`x-junction-admin-token`) is honoured from anywhere.
    #[serde(default)]
    pub version_override_from: Vec<String>,
    /// Copy a share of requests to another pool and discard its answers.
    pub mirror: Option<MirrorSpec>,
    /// Automatic progressive delivery of the split's candidate.
    pub canary: Option<CanarySpec>,
    /// Largest request body accepted (413 beyond), whatever its content type.
    pub max_body_bytes: Option<SizeSpec>,
    /// Paths with an encoded `/` or `\` (`%2F`, `%5C`) are forwarded (still encoded)
    /// instead of refused with 400.
    #[serde(default)]
    pub allow_encoded_slashes: bool,
    /// Streamed OpenAI chat/completions requests that do not ask for usage get
    /// `stream_options.include_usage = true`, and the usage chunk they then receive is
    /// read and kept from the client (docs/ai-routing.md).
    #[serde(default)]
    pub include_usage: bool,
    /// Read a request body whole before an endpoint is chosen and a connection taken
    /// (default true), up to `request_buffer_bytes`; larger bodies stream.
    pub request_buffering: Option<bool>,
    /// Largest request body buffered (default "1MiB").
    pub request_buffer_bytes: Option<SizeSpec>,
    /// Send a request that could not reach an endpoint (connect refused or timed out,
    /// TLS or HTTP handshake failed) to another one, whatever its method (default true).
    pub retry_connect_errors: Option<bool>,
    /// Sensitive-data masking of the route's bodies (docs/masking.md).
    pub mask: Option<MaskSpec>,
    /// Flow capture of the route (docs/inspection.md); the listener's when absent.
    pub capture: Option<CaptureSpec>,
    /// Anomaly and exfiltration detectors of the route (docs/inspection.md).
    pub anomalies: Option<AnomaliesSpec>,
    /// `false` serves this route's requests with the full (hyper) pipeline even where
    /// the listener's HTTP/1.1 fast path reads them: an escape hatch, as the listener's
    /// own `fast_path = false` is (default true).
    pub fast_path: Option<bool>,
    // Security rules of this route (after the listener's).
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub allow_file: Option<String>,
    pub deny_file: Option<String>,
    pub rules: Option<Vec<HeaderRuleSpec>>,
    pub require_headers: Option<Vec<String>>,
    pub block_scanners: Option<bool>,
    pub max_header_count: Option<usize>,
    pub max_header_bytes: Option<SizeSpec>,
    pub auth: Option<AuthSpec>,
    pub rate_limit: Option<RateLimitSpec>,
    #[serde(default)]
    pub timeouts: TimeoutsSpec,
    /// Sending again to another endpoint after a failure.
    pub retries: Option<RetrySpec>,
    /// Headers set or removed on the way to the endpoint.
    pub request_headers: Option<HeaderRulesSpec>,
    /// Headers set or removed on the way back to the client.
    pub response_headers: Option<HeaderRulesSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SplitTargetSpec {
    pub pool: String,
    pub weight: u32,
}

/// One target of a fallback chain.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainTargetSpec {
    pub pool: String,
    /// What sends a request on to this target from the one before: statuses (an
    /// endpoint's, or Junction's own for a failure without one) and
    /// `"timeout"`, `"first_token_timeout"`, `"connect_error"`, `"reset"`,
    /// `"unavailable"` (default: all of them and 429, 500, 502, 503, 504).
    pub on: Option<Vec<TriggerSpec>>,
}

/// A chain trigger as written: a status code or a name.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TriggerSpec {
    Status(i64),
    Name(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorSpec {
    pub pool: String,
    /// Share of requests copied, 0 to 100.
    pub percent: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySpec {
    /// The split's pool under analysis; the other is the stable one.
    pub candidate: String,
    /// Candidate weights (percent) to walk through, e.g. [5, 25, 50, 100].
    pub steps: Vec<u32>,
    pub interval: Option<String>,
    pub min_requests: Option<u64>,
    pub max_error_rate: Option<f64>,
    /// Candidate p99 latency over stable p99 latency.
    pub max_latency_ratio: Option<f64>,
    /// Candidate p99 time to first token over stable's.
    pub max_ttft_ratio: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Further tries after the first (default 2).
    pub attempts: Option<u32>,
    /// Response statuses that are retried (default [502, 503, 504]).
    pub on: Option<Vec<u16>>,
    /// Also retry POST and other non-idempotent methods on those statuses.
    #[serde(default)]
    pub retry_non_idempotent: bool,
    /// Largest request body kept to be sent again (default 1MiB); larger bodies are
    /// streamed and not retried.
    pub body_limit: Option<SizeSpec>,
    /// Retries allowed beyond `min_per_second`, as a share of requests (default 0.2).
    pub budget_ratio: Option<f64>,
    /// Retries always allowed per second (default 3).
    pub budget_min_per_second: Option<u32>,
    /// Window over which the budget is counted (default "10s").
    pub budget_window: Option<String>,
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
    /// Longest silence between two body chunks from the endpoint.
    pub idle: Option<String>,
    /// The whole exchange, body included (default: none).
    pub total: Option<String>,
    /// For event streams: longest wait for the first event; on expiry the request is
    /// sent to another endpoint (nothing has reached the client yet).
    pub first_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSpec {
    pub name: String,
    pub bind: String,
    /// What clients speak: `http` (forward proxy and CONNECT, default) or `socks5`.
    pub protocol: Option<String>,
    /// Flow capture of plain HTTP requests and tunnels (docs/inspection.md).
    pub capture: Option<CaptureSpec>,
    /// The detector of large outbound volume per client and site (docs/inspection.md).
    pub outbound_volume: Option<OutboundVolumeSpec>,
    /// Where requests leave from: `direct`, `http://[user:pass@]host:port`,
    /// `https://...` (TLS to the exit proxy) or `socks5://[user:pass@]host:port`.
    #[serde(default)]
    pub exits: Vec<ExitSpec>,
    /// More exits, one URL per line with optional `region=xx` and `name=yy`; re-read
    /// when the file changes.
    pub exits_file: Option<String>,
    /// How often `exits_file` is checked for changes (default 2s).
    pub exits_file_poll: Option<String>,
    /// CA certificates (PEM) trusted for `https://` exit proxies, instead of the system roots.
    pub exits_ca_file: Option<String>,
    /// round_robin | random | least_used | sticky_host | sticky_session.
    pub rotation: Option<String>,
    /// A session unused this long forgets its exit (default 10m).
    pub session_idle: Option<String>,
    /// Destinations allowed: host globs (`*.example.org`) and CIDRs. Loopback, private
    /// and link-local ranges are refused unless listed here.
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    /// Clients that may use the proxy (`Proxy-Authorization: Basic`); empty: anyone.
    #[serde(default)]
    pub users: Vec<EgressUserSpec>,
    /// Requests per target host, e.g. `"2/s"`, `"30/m"`, `"1/5s"`.
    pub per_host_rate: Option<String>,
    /// Requests (and tunnels) open at once per target host.
    pub per_host_concurrency: Option<u32>,
    /// Requests that may wait for their turn per host (default 64); beyond, 503.
    pub per_host_queue: Option<usize>,
    /// Longest wait for a turn (default 30s); a request that would wait longer gets 503.
    pub per_host_wait: Option<String>,
    /// Per-host overrides of the rate and concurrency, first matching glob wins.
    #[serde(default)]
    pub hosts: Vec<EgressHostSpec>,
    /// Honour `Retry-After` on 429/503 and `RateLimit-*` from sites (default true).
    pub honour_retry_after: Option<bool>,
    /// The longest hold a site's answer may impose (default 10m).
    pub max_retry_after: Option<String>,
    /// AutoThrottle per host, from the site's latency.
    pub per_host: Option<PerHostSpec>,
    /// Exit verification through an echo URL answering the caller's address.
    pub verify: Option<VerifySpec>,
    /// TLS interception of tunnels to listed hosts (docs/egress.md#tls-interception).
    pub intercept: Option<InterceptSpec>,
    /// Sensitive-data masking of plain and intercepted requests' bodies, as a route's
    /// `mask` (docs/egress.md#masking).
    pub mask: Option<MaskSpec>,
    /// Where rests after bans are kept: `{ backend = "redis://..." }` shares them with
    /// the fleet (default: this instance only).
    pub state: Option<EgressStateSpec>,
    /// Fetch and obey robots.txt for plain-HTTP requests.
    #[serde(default)]
    pub respect_robots: bool,
    /// The product token matched against robots.txt groups (default "junction").
    pub robots_user_agent: Option<String>,
    /// Space requests to a site by its robots.txt `Crawl-delay` (with `respect_robots`).
    #[serde(default)]
    pub robots_crawl_delay: bool,
    pub ban: Option<BanSpec>,
    /// Exits tried per request, the first included (default 3).
    pub attempts: Option<u32>,
    /// CONNECT tunnels one client address may hold open (default 256).
    pub max_tunnels_per_client: Option<u32>,
    /// A tunnel or kept-alive client connection idle this long is closed (default 5m).
    pub idle_timeout: Option<String>,
    /// Connecting to an exit or a site, handshakes included (default 10s).
    pub connect_timeout: Option<String>,
    /// How often an unreachable exit is probed until it answers again (default 5s).
    pub probe_interval: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExitSpec {
    pub url: String,
    pub region: Option<String>,
    /// The exit's name in metrics and logs (default: host:port, or "direct").
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EgressUserSpec {
    pub name: String,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// `sha256:<hex>` of the password (`junction key hash`).
    pub password_hash: Option<String>,
}

/// `state = { backend = "redis://host:6379" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EgressStateSpec {
    /// `"local"` (default) or a `redis://` / `rediss://` URL.
    pub backend: String,
}

/// `intercept = { hosts = ["*.example.org"], ca = { cert = "ca.pem", key = "ca.key" } }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterceptSpec {
    /// Host globs whose tunnels are intercepted; other hosts tunnel end to end.
    pub hosts: Vec<String>,
    /// The CA that signs the leaf certificates clients are shown (`junction ca init`).
    pub ca: InterceptCaSpec,
    /// PEM file of CAs trusted for sites' certificates, instead of the system roots.
    pub upstream_ca: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterceptCaSpec {
    pub cert: String,
    pub key: String,
}

/// `verify = { url = "http://echo.example/ip", interval = "5m", timeout = "10s" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// An `http://` URL that answers the address it sees the request from.
    pub url: String,
    /// How often every exit is probed (default 5m).
    pub interval: Option<String>,
    /// Longest probe (default 10s).
    pub timeout: Option<String>,
}

/// `per_host = { target_concurrency = 2.0, min_delay = "0s", max_delay = "60s" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PerHostSpec {
    /// Requests the site should have in flight on average (default 2.0).
    pub target_concurrency: Option<f64>,
    /// Shortest delay between two requests to a host (default 0s).
    pub min_delay: Option<String>,
    /// Longest delay (default 60s).
    pub max_delay: Option<String>,
    /// Delay before the first answer is seen (default 1s).
    pub start_delay: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EgressHostSpec {
    /// Host glob, e.g. `"*.example.org"`.
    pub host: String,
    pub rate: Option<String>,
    pub concurrency: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BanSpec {
    /// Response statuses that mean the exit is banned by the site.
    #[serde(default)]
    pub status: Vec<u16>,
    /// Case-insensitive text in the start of a response body that means the same.
    #[serde(default)]
    pub body: Vec<String>,
    /// First cooldown of an exit for a host (default 60s); doubles with each ban.
    pub cooldown: Option<String>,
    /// Longest cooldown (default 1h).
    pub max_cooldown: Option<String>,
    /// Response body bytes scanned for `body` patterns (default 64KiB).
    pub scan_bytes: Option<String>,
}

/// A route's `anomalies` table (compiled by `config::anomalies`; docs/inspection.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnomaliesSpec {
    /// How long a client flagged by `tag` or `block` stays flagged (default "5m").
    pub cooldown: Option<String>,
    /// Clients whose state is kept at most (default 10000).
    pub max_clients: Option<usize>,
    pub rate: Option<BaselineSpec>,
    pub tokens: Option<BaselineSpec>,
    pub response_size: Option<BaselineSpec>,
    pub error_rate: Option<ErrorRateSpec>,
    pub response_secrets: Option<ResponseSecretsSpec>,
    pub prompt_injection: Option<PromptInjectionSpec>,
    pub auth_failures: Option<AuthFailuresSpec>,
}

/// A per-client baseline detector (`rate`, `tokens`, `response_size`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineSpec {
    /// "log" (default), "tag" or "block".
    pub action: Option<String>,
    pub z: Option<f64>,
    pub warmup: Option<u32>,
    pub floor: Option<f64>,
    pub min_ratio: Option<f64>,
    /// `rate` only: the window requests are counted over (default "10s").
    pub window: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRateSpec {
    pub action: Option<String>,
    pub z: Option<f64>,
    pub min_share: Option<f64>,
    pub min_requests: Option<u32>,
    pub warmup: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSecretsSpec {
    pub action: Option<String>,
    /// Built-in masking types looked for (default: all).
    pub types: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PromptInjectionSpec {
    pub action: Option<String>,
    /// Keep the built-in rules (default true).
    pub builtin: Option<bool>,
    #[serde(default)]
    pub rules: Vec<InjectionRuleSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InjectionRuleSpec {
    /// The role whose messages it reads ("user", "tool", "assistant"; default: all but system).
    pub role: Option<String>,
    pub regex: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFailuresSpec {
    pub action: Option<String>,
    pub max: Option<u32>,
    pub window: Option<String>,
}

/// An egress listener's `outbound_volume` detector.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundVolumeSpec {
    /// "log" (default), "tag" is not offered (nothing goes to a site from Junction), or "block".
    pub action: Option<String>,
    /// The window bytes are counted over (default "1m").
    pub window: Option<String>,
    pub z: Option<f64>,
    pub warmup: Option<u32>,
    pub floor: Option<SizeSpec>,
    pub min_ratio: Option<f64>,
    /// Bytes in one window that are anomalous whatever the baseline (default: none).
    pub max_bytes: Option<SizeSpec>,
    /// How long a blocked client stays blocked for that site (default "10m").
    pub cooldown: Option<String>,
    /// (client, site) pairs whose state is kept at most (default 10000).
    pub max_pairs: Option<usize>,
}

/// A route's or a listener's `capture` table (compiled by `config::capture`;
/// docs/inspection.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSpec {
    /// Share of requests recorded, 0 to 1 (default 1).
    pub sample: Option<f64>,
    /// A filter expression: only the flows it matches are kept.
    pub filter: Option<String>,
    /// Bytes kept of each body (default "64KiB").
    pub max_body: Option<SizeSpec>,
    /// Directory of the flow ring (relative to the config file's directory).
    pub dir: String,
    /// Disk the directory's segment files may fill (default "1GiB").
    pub max_disk: Option<SizeSpec>,
}

/// A route's `mask` table (compiled by `config::masking`; docs/masking.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaskSpec {
    /// Bodies masked: "request" (default), "response" or "both".
    pub directions: Option<DirectionsSpec>,
    /// A body that cannot be masked (not parseable, too large): "refuse" (default) or
    /// "pass". Counted either way.
    pub on_error: Option<OnErrorSpec>,
    /// Largest body masked (default "1MiB"); a larger one is an error (`on_error`).
    pub max_body: Option<SizeSpec>,
    /// A compressed body: "refuse" (default) or "decode".
    pub compressed: Option<CompressedSpec>,
    /// The environment variable holding the key of the `hash` action's HMAC; required
    /// when a type uses `hash`.
    pub hash_key_env: Option<String>,
    /// Turns on the optional PERSON and STREET_ADDRESS detectors (redact unless `types`
    /// says otherwise).
    #[serde(default)]
    pub names: bool,
    /// Action per type, built-in or custom: "redact" (the default of every built-in
    /// type), "hash", "partial", "pseudonymize", "block", "log", or "off".
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    #[serde(default)]
    pub custom: Vec<CustomDetectorSpec>,
    /// How many request texts' answers the masker keeps, by a keyed hash of the text,
    /// so that a text sent again (a system prompt, a conversation's earlier turns) is
    /// not read again (default 8192; 0 turns it off).
    pub cache_entries: Option<usize>,
    /// Whose texts the cache answers from: each client's own ("client", the default),
    /// or every client's of the route ("route").
    #[serde(default)]
    pub cache_scope: CacheScopeSpec,
    /// Also mask an AI API request's end-user identifiers: `user`, `safety_identifier`,
    /// `prompt_cache_key` and every string of `metadata` (off: they pass byte for byte, as other fields).
    #[serde(default)]
    pub identifiers: bool,
    /// Values never masked: exact values (`"support@acme.com"`, `"203.0.113.7"`), or
    /// `"@acme.com"` for every e-mail address at that domain and below it.
    #[serde(default)]
    pub keep: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheScopeSpec {
    #[default]
    Client,
    Route,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectionsSpec {
    #[default]
    Request,
    Response,
    Both,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnErrorSpec {
    #[default]
    Refuse,
    Pass,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompressedSpec {
    #[default]
    Refuse,
    Decode,
}

/// A custom detector: a regex (with an optional `luhn` / `mod97` validator) or a list of
/// words (whole words; ignoring case unless `ignore_case = false`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetectorSpec {
    /// The type name: upper-case letters, digits and `_`.
    pub name: String,
    pub regex: Option<String>,
    pub validator: Option<String>,
    pub words: Option<Vec<String>>,
    pub ignore_case: Option<bool>,
    /// Its action (default "redact"); `types` may set it too.
    pub action: Option<String>,
}
