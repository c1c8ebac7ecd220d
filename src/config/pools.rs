//! Compiling `[[pools]]`: endpoints, balancing, TLS, health checks, outlier detection,
//! limits and fallbacks.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::CompileContext;
use super::checks::{Errors, check_unique, duration_or, policy, protocol, resolve};
use super::spec::{BalanceSpec, HealthSpec, LimitsSpec, OutlierSpec, PoolSpec};
use crate::balance::Balancer;
use crate::upstream::health::parse_status_ranges;
use crate::upstream::{
    Endpoint, EndpointKey, EndpointState, HashKey, HealthCheck, Limits, OutlierDetection, Pool,
    UpstreamClient, UpstreamUrl,
};

const MAX_WEIGHT: u32 = 1000;

pub(super) fn compile_pools(
    pools: &[PoolSpec],
    base: &Path,
    context: &CompileContext<'_>,
    errors: &mut Errors,
) -> Vec<(String, Arc<Pool>)> {
    check_unique(pools.iter().map(|p| p.name.as_str()), "pools", errors);
    let mut states: HashMap<EndpointKey, Arc<EndpointState>> = HashMap::new();
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
        let protocol = protocol(spec.protocol);
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
                    // The registry is only read: a new endpoint's state is registered
                    // when the plan is swapped in. An endpoint named twice shares one.
                    let key = (spec.name.clone(), endpoint.url.clone(), protocol);
                    let state = states
                        .entry(key)
                        .or_insert_with_key(|key| context.registry.kept(key).unwrap_or_default())
                        .clone();
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
            crate::upstream::client_config(ca_file.as_deref(), protocol)
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
            balancer: Balancer::new(policy(spec.balance), &weights, context.rng.clone()),
            hash_key,
            endpoints,
            protocol,
            rewrite_host: spec.rewrite_host,
            client: UpstreamClient::new(protocol, tls, spec.max_idle_per_endpoint, &limits),
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

pub(super) fn parse_hash_key(text: &str) -> Result<HashKey, String> {
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
