//! Validation and compilation of a [`ConfigSpec`] into a [`Plan`]: names resolve,
//! addresses and durations parse, regexes compile, files load. Every problem is
//! collected with its key path; nothing here panics on bad input.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

use super::CompileContext;
use super::plan::{ListenerPlan, Plan};
use super::spec::{
    AccessLogSpec, BalanceSpec, ConfigSpec, HeaderRulesSpec, HealthSpec, LimitsSpec, MatchSpec,
    MetricsSpec, OutlierSpec, PoolSpec, RetrySpec, RouteSpec, SizeSpec,
};
use super::units::{parse_byte_size, parse_duration};
use crate::balance::Balancer;
use crate::pipeline::{Filter, FilterChain, HeaderRules};
use crate::routing::{Glob, HeaderMatch, Matcher, PathMatch, Route, RouteTable, Timeouts};
use crate::routing::{RetryBudget, RetryPolicy};
use crate::telemetry::{
    AccessLogSettings, Buckets, DEFAULT_LATENCY_BUCKETS, DEFAULT_TOKEN_BUCKETS, Destination, Field,
    RouteTelemetry, check_buckets,
};
use crate::upstream::health::parse_status_ranges;
use crate::upstream::{
    Endpoint, HashKey, HealthCheck, Limits, OutlierDetection, Pool, UpstreamClient, UpstreamUrl,
};

const DEFAULT_MODEL_BODY_LIMIT: u64 = 1 << 20;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const MAX_WEIGHT: u32 = 1000;

/// Errors as (key path, message).
type Errors = Vec<(String, String)>;

pub fn compile(
    spec: ConfigSpec,
    base: &Path,
    context: &CompileContext<'_>,
) -> Result<Plan, Errors> {
    let mut errors = Errors::new();

    let admin_bind = parse_addr(&spec.admin.bind, "admin.bind", &mut errors);
    let shutdown_grace = spec
        .server
        .shutdown_grace
        .as_deref()
        .and_then(|text| {
            parse_duration(text)
                .map_err(|e| errors.push(("server.shutdown_grace".into(), e)))
                .ok()
        })
        .unwrap_or(DEFAULT_SHUTDOWN_GRACE);

    let buckets = compile_buckets(&spec.metrics, &mut errors);
    let access_log = compile_access_log(spec.access_log.as_ref(), base, &mut errors);
    let pools = compile_pools(&spec.pools, base, context, &mut errors);
    let mut listeners = compile_listeners(&spec, base, &mut errors);
    compile_routes(
        &spec,
        &pools,
        &mut listeners,
        context,
        &buckets,
        &mut errors,
    );

    if spec.listeners.is_empty() {
        errors.push((
            "listeners".into(),
            "at least one [[listeners]] entry is needed".into(),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Plan {
        metrics_enabled: spec.metrics.enabled,
        access_log,
        admin_bind: admin_bind.expect("no errors means the admin bind parsed"),
        shutdown_grace,
        listeners: listeners
            .into_iter()
            .map(|(listener, routes)| ListenerPlan {
                routes: RouteTable::new(routes),
                ..listener
            })
            .collect(),
        pools: pools.into_iter().map(|(_, pool)| pool).collect(),
        spec,
    })
}

fn compile_buckets(spec: &MetricsSpec, errors: &mut Errors) -> Buckets {
    let mut read = |bounds: &Option<Vec<f64>>, key: &str, default: &[f64]| -> Arc<[f64]> {
        match bounds {
            Some(bounds) => match check_buckets(bounds) {
                Ok(()) => Arc::from(bounds.as_slice()),
                Err(e) => {
                    errors.push((format!("metrics.{key}"), e));
                    Arc::from(default)
                }
            },
            None => Arc::from(default),
        }
    };
    Buckets {
        latency: read(
            &spec.latency_buckets,
            "latency_buckets",
            DEFAULT_LATENCY_BUCKETS,
        ),
        token: read(&spec.token_buckets, "token_buckets", DEFAULT_TOKEN_BUCKETS),
    }
}

const DEFAULT_ACCESS_LOG_QUEUE: usize = 8192;

fn compile_access_log(
    spec: Option<&AccessLogSpec>,
    base: &Path,
    errors: &mut Errors,
) -> Option<AccessLogSettings> {
    let spec = spec.filter(|s| s.enabled)?;
    let destination = match spec.path.as_deref() {
        None | Some("stdout") | Some("-") => Destination::Stdout,
        Some(path) => Destination::File(resolve(base, path).into()),
    };
    let fields = match &spec.fields {
        None => Field::ALL.to_vec(),
        Some(names) => names
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                Field::parse(name)
                    .ok_or_else(|| {
                        let known: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
                        errors.push((
                            format!("access_log.fields[{i}]"),
                            format!("unknown field {name:?}; known: {}", known.join(", ")),
                        ))
                    })
                    .ok()
            })
            .collect(),
    };
    if spec.queue == Some(0) {
        errors.push(("access_log.queue".into(), "must be at least 1".into()));
    }
    Some(AccessLogSettings {
        destination,
        fields,
        queue: spec.queue.unwrap_or(DEFAULT_ACCESS_LOG_QUEUE),
    })
}

fn parse_addr(text: &str, path: &str, errors: &mut Errors) -> Option<SocketAddr> {
    text.parse::<SocketAddr>()
        .map_err(|_| {
            errors.push((
                path.into(),
                format!("{text:?} is not an IP:port address, e.g. \"127.0.0.1:8080\""),
            ))
        })
        .ok()
}

fn check_unique<'a>(names: impl Iterator<Item = &'a str>, what: &str, errors: &mut Errors) {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        if name.is_empty() {
            errors.push((format!("{what}[{i}].name"), "name must not be empty".into()));
        } else if !seen.insert(name) {
            errors.push((
                format!("{what}[{i}].name"),
                format!("duplicate name {name:?}"),
            ));
        }
    }
}

fn compile_listeners(
    spec: &ConfigSpec,
    base: &Path,
    errors: &mut Errors,
) -> Vec<(ListenerPlan, Vec<Arc<Route>>)> {
    check_unique(
        spec.listeners.iter().map(|l| l.name.as_str()),
        "listeners",
        errors,
    );
    let mut binds = HashSet::new();
    let mut out = Vec::new();
    for (i, listener) in spec.listeners.iter().enumerate() {
        let path = format!("listeners[{i}]");
        let bind = parse_addr(&listener.bind, &format!("{path}.bind"), errors);
        // Port 0 asks the OS for a free port, so it never clashes.
        if let Some(bind) = bind.filter(|b| b.port() != 0) {
            if !binds.insert(bind) {
                errors.push((
                    format!("{path}.bind"),
                    format!("{bind} is already bound by another listener"),
                ));
            }
            if Some(bind) == spec.admin.bind.parse().ok() {
                errors.push((
                    format!("{path}.bind"),
                    format!("{bind} is the admin listener's address"),
                ));
            }
        }
        let tls = listener.tls.as_ref().and_then(|tls| {
            let cert = resolve(base, &tls.cert);
            let key = resolve(base, &tls.key);
            crate::server::tls::server_config(&cert, &key)
                .map_err(|(key, message)| errors.push((format!("{path}.tls.{key}"), message)))
                .ok()
        });
        let trusted_proxies = parse_cidrs(
            &listener.trusted_proxies,
            &format!("{path}.trusted_proxies"),
            errors,
        );
        let model_body_limit = match &listener.model_body_limit {
            None => DEFAULT_MODEL_BODY_LIMIT,
            Some(SizeSpec::Bytes(bytes)) => *bytes,
            Some(SizeSpec::Text(text)) => parse_byte_size(text)
                .map_err(|e| errors.push((format!("{path}.model_body_limit"), e)))
                .unwrap_or(DEFAULT_MODEL_BODY_LIMIT),
        };
        if let Some(bind) = bind {
            let plan = ListenerPlan {
                name: listener.name.as_str().into(),
                bind,
                tls,
                trusted_proxies,
                model_body_limit,
                routes: RouteTable::default(),
            };
            out.push((plan, Vec::new()));
        }
    }
    out
}

/// CIDRs or bare addresses (taken as /32 or /128).
pub fn parse_cidrs(items: &[String], path: &str, errors: &mut Errors) -> Vec<IpNet> {
    items
        .iter()
        .enumerate()
        .filter_map(|(i, text)| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    errors.push((
                        format!("{path}[{i}]"),
                        format!("{text:?} is not a CIDR (\"10.0.0.0/8\") or IP address"),
                    ))
                })
                .ok()
        })
        .collect()
}

fn resolve(base: &Path, file: &str) -> String {
    let path = Path::new(file);
    if path.is_absolute() {
        file.to_string()
    } else {
        base.join(path).to_string_lossy().into_owned()
    }
}

fn compile_pools(
    pools: &[PoolSpec],
    base: &Path,
    context: &CompileContext<'_>,
    errors: &mut Errors,
) -> Vec<(String, Arc<Pool>)> {
    check_unique(pools.iter().map(|p| p.name.as_str()), "pools", errors);
    let mut out = Vec::new();
    for (i, spec) in pools.iter().enumerate() {
        let path = format!("pools[{i}]");
        let before = errors.len();
        if spec.endpoints.is_empty() {
            errors.push((
                format!("{path}.endpoints"),
                "a pool needs at least one endpoint".into(),
            ));
        }
        let version_header = spec.version.as_deref().and_then(|version| {
            HeaderValue::from_str(version)
                .map_err(|_| {
                    errors.push((
                        format!("{path}.version"),
                        format!("{version:?} is not a valid header value"),
                    ))
                })
                .ok()
        });
        let hash_key = match (spec.balance, spec.hash_key.as_deref()) {
            (BalanceSpec::Hash, None) => {
                errors.push((format!("{path}.hash_key"), "balance = \"hash\" needs hash_key = \"header:NAME\" | \"cookie:NAME\" | \"ip\"".into()));
                None
            }
            (BalanceSpec::Hash, Some(text)) => parse_hash_key(text)
                .map_err(|e| errors.push((format!("{path}.hash_key"), e)))
                .ok(),
            (_, Some(_)) => {
                errors.push((
                    format!("{path}.hash_key"),
                    "hash_key is only used with balance = \"hash\"".into(),
                ));
                None
            }
            (_, None) => None,
        };
        let mut endpoints = Vec::new();
        for (j, endpoint) in spec.endpoints.iter().enumerate() {
            let endpoint_path = format!("{path}.endpoints[{j}]");
            if endpoint.weight == 0 || endpoint.weight > MAX_WEIGHT {
                errors.push((
                    format!("{endpoint_path}.weight"),
                    format!(
                        "weight must be between 1 and {MAX_WEIGHT}, got {}",
                        endpoint.weight
                    ),
                ));
            }
            match UpstreamUrl::parse(&endpoint.url) {
                Ok(target) => {
                    let state =
                        context
                            .registry
                            .state_for(&spec.name, &endpoint.url, spec.protocol);
                    endpoints.push(Arc::new(Endpoint::new(
                        &endpoint.url,
                        target,
                        endpoint.weight,
                        state,
                    )));
                }
                Err(message) => errors.push((format!("{endpoint_path}.url"), message)),
            }
        }
        let needs_tls = endpoints.iter().any(|e| e.target.is_https());
        if spec.ca_file.is_some() && !needs_tls {
            errors.push((
                format!("{path}.ca_file"),
                "ca_file is only used with https endpoints".into(),
            ));
        }
        let tls = if needs_tls {
            let ca_file = spec.ca_file.as_deref().map(|file| resolve(base, file));
            crate::upstream::client_config(ca_file.as_deref(), spec.protocol)
                .map_err(|e| errors.push((format!("{path}.ca_file"), e)))
                .ok()
        } else {
            None
        };
        let health = spec
            .health
            .as_ref()
            .and_then(|h| compile_health(h, &format!("{path}.health"), errors));
        let outlier = spec
            .outlier
            .as_ref()
            .and_then(|o| compile_outlier(o, &format!("{path}.outlier"), errors));
        let limits = compile_limits(&spec.limits, &format!("{path}.limits"), errors);
        if let Some(fallback) = &spec.fallback {
            if fallback == &spec.name {
                errors.push((
                    format!("{path}.fallback"),
                    "a pool cannot be its own fallback".into(),
                ));
            } else if !pools.iter().any(|p| &p.name == fallback) {
                errors.push((
                    format!("{path}.fallback"),
                    format!("no pool is named {fallback:?}"),
                ));
            }
        }
        if errors.len() > before {
            continue;
        }
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        let pool = Pool {
            name: spec.name.as_str().into(),
            version: spec.version.as_deref().map(Into::into),
            version_header,
            balancer: Balancer::new(spec.balance, &weights, context.rng.clone()),
            hash_key,
            endpoints,
            protocol: spec.protocol,
            rewrite_host: spec.rewrite_host,
            client: UpstreamClient::new(spec.protocol, tls, spec.max_idle_per_endpoint, &limits),
            health,
            outlier,
            fallback: OnceLock::new(),
            limits,
        };
        out.push((spec.name.clone(), Arc::new(pool)));
    }
    // Fallbacks point at pools compiled above; weak links, so a cycle leaks nothing.
    for spec in pools {
        let (Some(fallback), Some((_, pool))) =
            (&spec.fallback, out.iter().find(|(n, _)| *n == spec.name))
        else {
            continue;
        };
        if let Some((_, target)) = out.iter().find(|(n, _)| n == fallback) {
            let _ = pool.fallback.set(Arc::downgrade(target));
        }
    }
    out
}

fn duration_or(
    text: &Option<String>,
    default: Duration,
    path: &str,
    errors: &mut Errors,
) -> Duration {
    match text.as_deref().map(parse_duration) {
        None => default,
        Some(Ok(duration)) if !duration.is_zero() => duration,
        Some(Ok(_)) => {
            errors.push((path.into(), "must be greater than zero".into()));
            default
        }
        Some(Err(e)) => {
            errors.push((path.into(), e));
            default
        }
    }
}

fn compile_health(spec: &HealthSpec, path: &str, errors: &mut Errors) -> Option<HealthCheck> {
    let before = errors.len();
    match (&spec.path, spec.tcp) {
        (Some(_), true) => errors.push((
            path.into(),
            "use either path (HTTP check) or tcp = true, not both".into(),
        )),
        (None, false) => errors.push((
            path.into(),
            "set path = \"/health\" for an HTTP check, or tcp = true".into(),
        )),
        (Some(p), false) if !p.starts_with('/') => {
            errors.push((format!("{path}.path"), format!("{p:?} must start with '/'")))
        }
        _ => {}
    }
    let interval = duration_or(
        &spec.interval,
        Duration::from_secs(2),
        &format!("{path}.interval"),
        errors,
    );
    let timeout = duration_or(
        &spec.timeout,
        Duration::from_secs(1),
        &format!("{path}.timeout"),
        errors,
    );
    let rise = spec.rise.unwrap_or(2);
    let fall = spec.fall.unwrap_or(3);
    if rise == 0 {
        errors.push((format!("{path}.rise"), "must be at least 1".into()));
    }
    if fall == 0 {
        errors.push((format!("{path}.fall"), "must be at least 1".into()));
    }
    let expect = match spec.expect_status.as_deref() {
        None => vec![(200, 399)],
        Some(text) => parse_status_ranges(text).unwrap_or_else(|e| {
            errors.push((format!("{path}.expect_status"), e));
            Vec::new()
        }),
    };
    (errors.len() == before).then(|| HealthCheck {
        path: spec.path.clone(),
        interval,
        timeout,
        rise,
        fall,
        expect,
    })
}

fn compile_outlier(
    spec: &OutlierSpec,
    path: &str,
    errors: &mut Errors,
) -> Option<OutlierDetection> {
    let before = errors.len();
    let consecutive_failures = spec.consecutive_failures.unwrap_or(5);
    if consecutive_failures == 0 {
        errors.push((
            format!("{path}.consecutive_failures"),
            "must be at least 1".into(),
        ));
    }
    let base_ejection = duration_or(
        &spec.base_ejection,
        Duration::from_secs(30),
        &format!("{path}.base_ejection"),
        errors,
    );
    let max_ejection = duration_or(
        &spec.max_ejection,
        Duration::from_secs(300),
        &format!("{path}.max_ejection"),
        errors,
    );
    if max_ejection < base_ejection {
        errors.push((
            format!("{path}.max_ejection"),
            "must not be shorter than base_ejection".into(),
        ));
    }
    let max_ejection_percent = spec.max_ejection_percent.unwrap_or(50);
    if max_ejection_percent > 100 {
        errors.push((
            format!("{path}.max_ejection_percent"),
            "must be between 0 and 100".into(),
        ));
    }
    (errors.len() == before).then_some(OutlierDetection {
        consecutive_failures,
        base_ejection,
        max_ejection,
        max_ejection_percent,
    })
}

fn compile_limits(spec: &LimitsSpec, path: &str, errors: &mut Errors) -> Limits {
    for (key, value) in [
        ("max_connections", spec.max_connections),
        ("max_in_flight", spec.max_in_flight),
        ("pool_max_in_flight", spec.pool_max_in_flight),
    ] {
        if value == Some(0) {
            errors.push((
                format!("{path}.{key}"),
                "must be at least 1 (omit it for no limit)".into(),
            ));
        }
    }
    Limits {
        max_connections: spec.max_connections,
        max_pending: spec.max_pending,
        max_in_flight: spec.max_in_flight,
        pool_max_in_flight: spec.pool_max_in_flight,
    }
}

const DEFAULT_RETRY_BODY_LIMIT: u64 = 1 << 20;

fn compile_retries(spec: &RetrySpec, path: &str, errors: &mut Errors) -> Option<RetryPolicy> {
    let before = errors.len();
    let on_status = spec.on.clone().unwrap_or_else(|| vec![502, 503, 504]);
    for (i, status) in on_status.iter().enumerate() {
        if !(100..=599).contains(status) {
            errors.push((
                format!("{path}.on[{i}]"),
                format!("{status} is not an HTTP status"),
            ));
        }
    }
    let body_limit = match &spec.body_limit {
        None => DEFAULT_RETRY_BODY_LIMIT,
        Some(SizeSpec::Bytes(bytes)) => *bytes,
        Some(SizeSpec::Text(text)) => parse_byte_size(text).unwrap_or_else(|e| {
            errors.push((format!("{path}.body_limit"), e));
            0
        }),
    };
    let ratio = spec.budget_ratio.unwrap_or(0.2);
    if !(0.0..=10.0).contains(&ratio) {
        errors.push((
            format!("{path}.budget_ratio"),
            "must be between 0 and 10".into(),
        ));
    }
    let window = duration_or(
        &spec.budget_window,
        Duration::from_secs(10),
        &format!("{path}.budget_window"),
        errors,
    );
    (errors.len() == before).then(|| RetryPolicy {
        attempts: spec.attempts.unwrap_or(2),
        on_status,
        retry_non_idempotent: spec.retry_non_idempotent,
        body_limit,
        budget: RetryBudget::new(ratio, spec.budget_min_per_second.unwrap_or(3), window),
    })
}

fn parse_hash_key(text: &str) -> Result<HashKey, String> {
    if text == "ip" {
        return Ok(HashKey::ClientIp);
    }
    if let Some(name) = text.strip_prefix("header:") {
        return HeaderName::from_bytes(name.as_bytes())
            .map(HashKey::Header)
            .map_err(|_| format!("{name:?} is not a valid header name"));
    }
    if let Some(name) = text.strip_prefix("cookie:") {
        if !name.is_empty() {
            return Ok(HashKey::Cookie(name.to_string()));
        }
    }
    Err(format!(
        "{text:?}: expected \"header:NAME\", \"cookie:NAME\" or \"ip\""
    ))
}

fn compile_routes(
    spec: &ConfigSpec,
    pools: &[(String, Arc<Pool>)],
    listeners: &mut [(ListenerPlan, Vec<Arc<Route>>)],
    context: &CompileContext<'_>,
    buckets: &Buckets,
    errors: &mut Errors,
) {
    check_unique(
        spec.routes.iter().map(|r| r.name.as_str()),
        "routes",
        errors,
    );
    for (i, route) in spec.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        let listener_index = match &route.listener {
            Some(name) => {
                let found = spec.listeners.iter().position(|l| &l.name == name);
                if found.is_none() {
                    errors.push((
                        format!("{path}.listener"),
                        format!("no listener is named {name:?}"),
                    ));
                }
                found
            }
            None if spec.listeners.len() == 1 => Some(0),
            None => {
                errors.push((
                    format!("{path}.listener"),
                    "name the listener this route serves (there is more than one)".into(),
                ));
                None
            }
        };
        let pool = pools
            .iter()
            .find(|(name, _)| *name == route.pool)
            .map(|(_, pool)| pool.clone());
        if pool.is_none() && !spec.pools.iter().any(|p| p.name == route.pool) {
            errors.push((
                format!("{path}.pool"),
                format!("no pool is named {:?}", route.pool),
            ));
        }
        let matcher = compile_matcher(&route.matcher, &format!("{path}.match"), errors);
        let timeouts = compile_timeouts(route, &path, errors);
        let retries_before = errors.len();
        let retries = route
            .retries
            .as_ref()
            .and_then(|r| compile_retries(r, &format!("{path}.retries"), errors));
        let filters = compile_filters(route, &path, errors);
        let (Some(listener_index), Some(pool), Some(matcher), Some(timeouts), Some(filters)) =
            (listener_index, pool, matcher, timeouts, filters)
        else {
            continue;
        };
        if errors.len() > retries_before {
            continue;
        };
        let version = pool.version.as_deref().unwrap_or("");
        let metrics = context
            .telemetry
            .metrics
            .route(&route.name, &pool.name, version, buckets);
        let endpoint_urls: Vec<Arc<str>> = pool.endpoints.iter().map(|e| e.url.clone()).collect();
        let compiled = Route {
            name: route.name.as_str().into(),
            matcher,
            telemetry: RouteTelemetry::new(metrics, &endpoint_urls),
            pool,
            timeouts,
            retries,
            filters,
        };
        // Listener specs and compiled listeners line up unless a bind failed to parse.
        let listener_name = spec.listeners[listener_index].name.as_str();
        if let Some((_, routes)) = listeners
            .iter_mut()
            .find(|(l, _)| &*l.name == listener_name)
        {
            routes.push(Arc::new(compiled));
        }
    }
}

fn compile_matcher(spec: &MatchSpec, path: &str, errors: &mut Errors) -> Option<Matcher> {
    let before = errors.len();
    let path_kinds = [
        spec.path.is_some(),
        spec.path_prefix.is_some(),
        spec.path_regex.is_some(),
    ];
    if path_kinds.iter().filter(|set| **set).count() > 1 {
        errors.push((
            path.into(),
            "use only one of path, path_prefix and path_regex".into(),
        ));
    }
    let path_match = if let Some(exact) = &spec.path {
        check_path(exact, &format!("{path}.path"), errors);
        Some(PathMatch::Exact(exact.clone()))
    } else if let Some(prefix) = &spec.path_prefix {
        check_path(prefix, &format!("{path}.path_prefix"), errors);
        Some(PathMatch::Prefix(prefix.clone()))
    } else if let Some(pattern) = &spec.path_regex {
        regex::Regex::new(pattern)
            .map(PathMatch::Regex)
            .map_err(|e| errors.push((format!("{path}.path_regex"), format!("invalid regex: {e}"))))
            .ok()
    } else {
        None
    };
    let methods = spec
        .method
        .as_ref()
        .map(|m| m.items())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|text| {
            Method::from_bytes(text.to_ascii_uppercase().as_bytes())
                .map_err(|_| {
                    errors.push((
                        format!("{path}.method"),
                        format!("{text:?} is not an HTTP method"),
                    ))
                })
                .ok()
        })
        .collect();
    let headers = spec
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let header_path = format!("{path}.headers.{name}");
            let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else {
                errors.push((header_path, format!("{name:?} is not a valid header name")));
                return None;
            };
            let expected = if value == "*" {
                HeaderMatch::Present
            } else {
                match HeaderValue::from_str(value) {
                    Ok(value) => HeaderMatch::Exact(value),
                    Err(_) => {
                        errors.push((
                            header_path,
                            format!("{value:?} is not a valid header value"),
                        ));
                        return None;
                    }
                }
            };
            Some((header_name, expected))
        })
        .collect();
    if errors.len() > before {
        return None;
    }
    Some(Matcher {
        path: path_match,
        host: spec.host.as_deref().map(|host| Glob::new(host, true)),
        methods,
        headers,
        model: spec.model.as_deref().map(|model| Glob::new(model, false)),
    })
}

fn check_path(text: &str, path: &str, errors: &mut Errors) {
    if !text.starts_with('/') {
        errors.push((path.into(), format!("{text:?} must start with '/'")));
    }
}

fn compile_timeouts(route: &RouteSpec, path: &str, errors: &mut Errors) -> Option<Timeouts> {
    let before = errors.len();
    let defaults = Timeouts::default();
    let spec = &route.timeouts;
    let key = |name: &str| format!("{path}.timeouts.{name}");
    let optional = |text: &Option<String>, name: &str, errors: &mut Errors| {
        text.as_ref()
            .map(|_| duration_or(text, Duration::ZERO, &key(name), errors))
    };
    let timeouts = Timeouts {
        connect: duration_or(&spec.connect, defaults.connect, &key("connect"), errors),
        response_headers: duration_or(
            &spec.response_headers,
            defaults.response_headers,
            &key("response_headers"),
            errors,
        ),
        idle: optional(&spec.idle, "idle", errors).or(defaults.idle),
        total: optional(&spec.total, "total", errors),
        first_token: optional(&spec.first_token, "first_token", errors),
    };
    (errors.len() == before).then_some(timeouts)
}

fn compile_filters(route: &RouteSpec, path: &str, errors: &mut Errors) -> Option<FilterChain> {
    let before = errors.len();
    let mut filters: Vec<Box<dyn Filter>> = Vec::new();
    if route.request_headers.is_some() || route.response_headers.is_some() {
        let empty = HeaderRulesSpec::default();
        let request = route.request_headers.as_ref().unwrap_or(&empty);
        let response = route.response_headers.as_ref().unwrap_or(&empty);
        let (request_set, request_remove) =
            compile_header_rules(request, &format!("{path}.request_headers"), errors);
        let (response_set, response_remove) =
            compile_header_rules(response, &format!("{path}.response_headers"), errors);
        filters.push(Box::new(HeaderRules {
            request_set,
            request_remove,
            response_set,
            response_remove,
        }));
    }
    (errors.len() == before).then(|| FilterChain::new(filters))
}

type HeaderEdits = (Vec<(HeaderName, HeaderValue)>, Vec<HeaderName>);

fn compile_header_rules(spec: &HeaderRulesSpec, path: &str, errors: &mut Errors) -> HeaderEdits {
    let mut set = Vec::new();
    for (name, value) in &spec.set {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => set.push((name, value)),
            (Err(_), _) => errors.push((
                format!("{path}.set.{name}"),
                format!("{name:?} is not a valid header name"),
            )),
            (_, Err(_)) => errors.push((
                format!("{path}.set.{name}"),
                format!("{value:?} is not a valid header value"),
            )),
        }
    }
    let mut remove = Vec::new();
    for (i, name) in spec.remove.iter().enumerate() {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => remove.push(name),
            Err(_) => errors.push((
                format!("{path}.remove[{i}]"),
                format!("{name:?} is not a valid header name"),
            )),
        }
    }
    (set, remove)
}
