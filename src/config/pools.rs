//! Compiling `[[pools]]`: endpoints, balancing (with `least_queue`'s load metrics and
//! prefix affinity), TLS, health checks, outlier detection, limits, fallbacks, and a
//! provider's credential and model names.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::CompileContext;
use super::checks::{Errors, check_unique, duration_or, policy, protocol, resolve};
use super::spec::{
    AffinitySpec, ApiSpec, BalanceSpec, HealthSpec, LimitsSpec, LoadMetricsSpec, OutlierSpec,
    PoolAuthSpec, PoolSpec,
};
use crate::balance::{Balancer, PrefixAffinity};
use crate::llm::translate::Api;
use crate::upstream::health::parse_status_ranges;
use crate::upstream::{
    Endpoint, EndpointKey, EndpointState, HashKey, HealthCheck, Limits, LoadMetrics,
    OutlierDetection, Pool, PoolCredential, UpstreamClient, UpstreamUrl,
};

const MAX_WEIGHT: u32 = 1000;
/// `least_queue`'s defaults: read every half second, trust a report for four reads.
const DEFAULT_LOAD_INTERVAL: Duration = Duration::from_millis(500);
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(2);
const DEFAULT_AFFINITY_SLACK: f64 = 2.0;

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
        let tls = super::tls::compile_pool_tls(spec, protocol, needs_tls, base, &path, errors);
        let health = spec
            .health
            .as_ref()
            .and_then(|h| compile_health(h, &format!("{path}.health"), errors));
        let outlier = spec
            .outlier
            .as_ref()
            .and_then(|o| compile_outlier(o, &format!("{path}.outlier"), errors));
        let limits = compile_limits(&spec.limits, &format!("{path}.limits"), errors);
        let queue = compile_least_queue(spec, &path, errors);
        let credential = compile_credential(spec, &path, base, errors);
        let model_map = compile_model_map(spec, &path, errors);
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
            balancer: Balancer::new(
                policy(spec.balance, queue.max_age, queue.affinity),
                &weights,
                context.rng.clone(),
            ),
            hash_key,
            prefix_affinity: queue.affinity.is_some(),
            load_metrics: queue.load_metrics,
            endpoints,
            protocol,
            rewrite_host: spec.rewrite_host,
            client: {
                let (config, server_name) = tls.unzip();
                let client =
                    UpstreamClient::new(protocol, config, spec.max_idle_per_endpoint, &limits);
                match server_name.flatten() {
                    Some(name) => client.with_server_name(name),
                    None => client,
                }
            },
            health,
            outlier,
            fallback: OnceLock::new(),
            limits,
            credential,
            model_map,
            api: spec.api.map(|api| match api {
                ApiSpec::Openai => Api::OpenAi,
                ApiSpec::Anthropic => Api::Anthropic,
            }),
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

fn compile_model_map(spec: &PoolSpec, path: &str, errors: &mut Errors) -> HashMap<String, String> {
    for (from, to) in &spec.model_map {
        if to.is_empty() {
            errors.push((
                format!("{path}.model_map.{from}"),
                "the model name to send cannot be empty".into(),
            ));
        }
    }
    spec.model_map.clone().into_iter().collect()
}

/// `auth` or `api_key_env`: the secret is read now (at load, and at every reload), so a
/// missing or empty one is a config error naming its key rather than a 401 later.
fn compile_credential(
    spec: &PoolSpec,
    path: &str,
    base: &Path,
    errors: &mut Errors,
) -> Option<PoolCredential> {
    let shorthand;
    let (auth, auth_path) = match (&spec.auth, &spec.api_key_env) {
        (None, None) => return None,
        (Some(_), Some(_)) => {
            errors.push((
                format!("{path}.api_key_env"),
                "set auth or api_key_env, not both".into(),
            ));
            return None;
        }
        (Some(auth), None) => (auth, format!("{path}.auth")),
        (None, Some(env)) => {
            shorthand = PoolAuthSpec {
                value_env: Some(env.clone()),
                ..PoolAuthSpec::default()
            };
            (&shorthand, format!("{path}.api_key_env"))
        }
    };
    // Anthropic takes its key in `x-api-key`, without a prefix.
    let default_header = match spec.api {
        Some(ApiSpec::Anthropic) => "x-api-key",
        _ => "authorization",
    };
    let header_text = auth.header.as_deref().unwrap_or(default_header);
    let header = HeaderName::from_bytes(header_text.as_bytes())
        .map_err(|_| {
            errors.push((
                format!("{auth_path}.header"),
                format!("{header_text:?} is not a valid header name"),
            ))
        })
        .ok()?;
    if let Some(why) = super::checks::owned_request_header(&header) {
        errors.push((format!("{auth_path}.header"), why));
        return None;
    }
    let secret = match (&auth.value_file, &auth.value_env) {
        (Some(_), Some(_)) => {
            errors.push((
                format!("{auth_path}.value_env"),
                "set value_file or value_env, not both".into(),
            ));
            return None;
        }
        (None, None) => {
            errors.push((auth_path, "set value_file or value_env".into()));
            return None;
        }
        (Some(file), None) => {
            let file = resolve(base, file);
            match std::fs::read_to_string(&file) {
                Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
                Ok(_) => {
                    errors.push((
                        format!("{auth_path}.value_file"),
                        format!("{file} is empty"),
                    ));
                    return None;
                }
                Err(error) => {
                    errors.push((
                        format!("{auth_path}.value_file"),
                        format!("cannot read {file}: {error}"),
                    ));
                    return None;
                }
            }
        }
        (None, Some(var)) => match std::env::var(var) {
            Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
            _ => {
                // The key named is `api_key_env` itself for the shorthand.
                let key = if spec.auth.is_some() {
                    format!("{auth_path}.value_env")
                } else {
                    auth_path
                };
                errors.push((key, format!("environment variable {var} is unset or empty")));
                return None;
            }
        },
    };
    let default_prefix = if header == http::header::AUTHORIZATION {
        "Bearer "
    } else {
        ""
    };
    let prefix = auth.prefix.as_deref().unwrap_or(default_prefix);
    // The error names the key, never the secret.
    let Ok(mut value) = HeaderValue::from_str(&format!("{prefix}{secret}")) else {
        errors.push((
            auth_path,
            "the prefix and secret are not a valid header value (control characters?)".into(),
        ));
        return None;
    };
    value.set_sensitive(true);
    Some(PoolCredential { header, value })
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

/// `least_queue`'s settings of a pool, checked; the defaults for other policies.
struct LeastQueueSettings {
    max_age: Duration,
    affinity: Option<PrefixAffinity>,
    load_metrics: Option<LoadMetrics>,
}

fn compile_least_queue(spec: &PoolSpec, path: &str, errors: &mut Errors) -> LeastQueueSettings {
    let least_queue = spec.balance == BalanceSpec::LeastQueue;
    let only_with_least_queue = |key: &str, errors: &mut Errors| {
        errors.push((
            format!("{path}.{key}"),
            format!("{key} is only used with balance = \"least_queue\""),
        ))
    };
    if !least_queue {
        for (key, set) in [
            ("load_metrics", spec.load_metrics.is_some()),
            ("affinity", spec.affinity.is_some()),
        ] {
            if set {
                only_with_least_queue(key, errors);
            }
        }
    }
    let slack = match (spec.affinity, spec.affinity_slack) {
        (None, Some(_)) => {
            errors.push((
                format!("{path}.affinity_slack"),
                "affinity_slack is only used with affinity = \"prefix\"".into(),
            ));
            DEFAULT_AFFINITY_SLACK
        }
        (_, Some(slack)) if !(slack.is_finite() && slack >= 0.0) => {
            errors.push((
                format!("{path}.affinity_slack"),
                format!("must be a number of requests, 0 or more, got {slack}"),
            ));
            DEFAULT_AFFINITY_SLACK
        }
        (_, slack) => slack.unwrap_or(DEFAULT_AFFINITY_SLACK),
    };
    let affinity = match spec.affinity {
        Some(AffinitySpec::Prefix) if least_queue => Some(PrefixAffinity { slack }),
        _ => None,
    };
    let (max_age, load_metrics) = match &spec.load_metrics {
        Some(metrics) if least_queue => {
            compile_load_metrics(metrics, &format!("{path}.load_metrics"), errors)
        }
        _ => (DEFAULT_MAX_AGE, None),
    };
    LeastQueueSettings {
        max_age,
        affinity,
        load_metrics,
    }
}

fn compile_load_metrics(
    spec: &LoadMetricsSpec,
    path: &str,
    errors: &mut Errors,
) -> (Duration, Option<LoadMetrics>) {
    let before = errors.len();
    let metrics_path = spec.path.clone().unwrap_or_else(|| "/metrics".into());
    if !metrics_path.starts_with('/') || metrics_path.parse::<http::uri::PathAndQuery>().is_err() {
        errors.push((
            format!("{path}.path"),
            format!("{metrics_path:?} must be a path starting with '/'"),
        ));
    }
    let interval = duration_or(
        &spec.interval,
        DEFAULT_LOAD_INTERVAL,
        &format!("{path}.interval"),
        errors,
    );
    let max_age = duration_or(
        &spec.max_age,
        DEFAULT_MAX_AGE.max(interval * 2),
        &format!("{path}.max_age"),
        errors,
    );
    if max_age < interval {
        errors.push((
            format!("{path}.max_age"),
            format!(
                "must be at least the interval ({interval:?}): every report would be too old before the next"
            ),
        ));
    }
    let timeout = duration_or(&spec.timeout, interval, &format!("{path}.timeout"), errors);
    let metrics = (errors.len() == before).then_some(LoadMetrics {
        path: metrics_path,
        interval,
        timeout,
    });
    (max_age, metrics)
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
    if let Some(name) = text.strip_prefix("cookie:")
        && !name.is_empty()
    {
        return Ok(HashKey::Cookie(name.to_string()));
    }
    Err(format!(
        "{text:?}: expected \"header:NAME\", \"cookie:NAME\" or \"ip\""
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ConfigErrors, checking, load_str};

    fn load_pool(pool_keys: &str) -> Result<crate::config::Plan, ConfigErrors> {
        let text = format!(
            "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\n[[pools]]\nname = \"p\"\nendpoints = [{{ url = \"http://127.0.0.1:1\" }}]\n{pool_keys}\n"
        );
        checking(|context| load_str(&text, Path::new("."), context))
    }

    fn credential_of(plan: &crate::config::Plan) -> Option<crate::upstream::PoolCredential> {
        plan.pools[0].credential.clone()
    }

    fn only_error(pool_keys: &str) -> (String, Option<usize>, String) {
        let Err(errors) = load_pool(pool_keys) else {
            panic!("{pool_keys} loaded");
        };
        assert_eq!(errors.0.len(), 1, "{errors}");
        let error = &errors.0[0];
        (error.path.clone(), error.line, error.message.clone())
    }

    #[test]
    fn api_names_the_providers_shape() {
        let plan = load_pool("api = \"anthropic\"").unwrap();
        assert_eq!(
            plan.pools[0].api,
            Some(crate::llm::translate::Api::Anthropic)
        );
        let plan = load_pool("api = \"openai\"").unwrap();
        assert_eq!(plan.pools[0].api, Some(crate::llm::translate::Api::OpenAi));
        assert_eq!(load_pool("").unwrap().pools[0].api, None);
    }

    /// Both engines translate: a route to a translating pool stays on the HTTP/1.1
    /// engine, which holds its bodies whole (decided once, at load).
    #[test]
    fn a_route_to_a_translating_pool_holds_its_bodies() {
        use crate::routing::Engines;
        let engines = |pool: &str, route: &str| {
            let route = format!(
                "\n[[routes]]\nname = \"r\"\nmatch = {{ path_prefix = \"/\" }}\npool = \"p\"\n{route}\n"
            );
            let plan = load_pool(&format!("{pool}\n{route}")).unwrap();
            plan.listeners[0].routes.routes[0].engines
        };
        let hold = crate::routing::HTTP1_BODY_LIMIT;
        let streams = "request_buffering = false";
        assert_eq!(
            engines("api = \"anthropic\"", streams),
            Engines::Http1 { hold_up_to: hold }
        );
        assert_eq!(engines("", streams), Engines::Http1 { hold_up_to: 0 });
    }

    #[test]
    fn an_unknown_api_names_its_key_and_line() {
        let (path, line, message) = only_error("api = \"gemini\"");
        assert_eq!(path, "pools[0].api");
        assert_eq!(line, Some(8));
        assert!(
            message.contains("openai") && message.contains("anthropic"),
            "{message}"
        );
    }

    /// Anthropic takes its key in `x-api-key`: without a `header`, it goes there, bare
    /// (`api_key_env` takes the same default).
    #[test]
    fn an_anthropic_pools_key_goes_in_x_api_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "sk-ant-1").unwrap();
        let keys = format!("api = \"anthropic\"\nauth = {{ value_file = {file:?} }}");
        let credential = credential_of(&load_pool(&keys).unwrap()).unwrap();
        assert_eq!(credential.header, "x-api-key");
        assert_eq!(credential.value, "sk-ant-1");
    }

    #[test]
    fn credential_from_a_file_with_the_bearer_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "sk-pool\n").unwrap();
        let plan = load_pool(&format!("auth = {{ value_file = {:?} }}", file)).unwrap();
        let credential = credential_of(&plan).unwrap();
        assert_eq!(credential.header, "authorization");
        assert_eq!(credential.value, "Bearer sk-pool");
        assert!(credential.value.is_sensitive());
        assert!(!format!("{credential:?}").contains("sk-pool"));
    }

    #[test]
    fn another_header_has_no_default_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "sk-ant").unwrap();
        let keys = format!("auth = {{ header = \"x-api-key\", value_file = {file:?} }}");
        let credential = credential_of(&load_pool(&keys).unwrap());
        assert_eq!(credential.unwrap().value, "sk-ant");
    }

    #[test]
    fn a_missing_or_empty_secret_names_its_key_and_line() {
        let (path, line, message) =
            only_error("auth = { value_file = \"/nonexistent/junction-key\" }");
        assert_eq!(path, "pools[0].auth.value_file");
        assert_eq!(line, Some(8));
        assert!(message.contains("cannot read"), "{message}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("empty");
        std::fs::write(&file, " \n").unwrap();
        let (path, _, message) = only_error(&format!("auth = {{ value_file = {file:?} }}"));
        assert_eq!(path, "pools[0].auth.value_file");
        assert!(message.ends_with("is empty"), "{message}");

        let (path, line, message) = only_error("api_key_env = \"JUNCTION_TEST_UNSET_POOL_KEY\"");
        assert_eq!(path, "pools[0].api_key_env");
        assert_eq!(line, Some(8));
        assert!(
            message.contains("JUNCTION_TEST_UNSET_POOL_KEY"),
            "{message}"
        );
    }

    #[test]
    fn a_model_map_to_an_empty_name_is_refused() {
        let (path, line, _) = only_error("model_map = { \"gpt-4o\" = \"\" }");
        assert_eq!(path, "pools[0].model_map.gpt-4o");
        assert_eq!(line, Some(8));
        let plan = load_pool("model_map = { \"gpt-4o\" = \"my-deployment\" }").unwrap();
        assert_eq!(plan.pools[0].model_map["gpt-4o"], "my-deployment");
    }

    #[test]
    fn conflicting_or_proxy_owned_keys_are_refused() {
        let (path, _, _) = only_error("auth = { value_env = \"A\", value_file = \"b\" }");
        assert_eq!(path, "pools[0].auth.value_env");
        let (path, _, _) = only_error("auth = {}");
        assert_eq!(path, "pools[0].auth");
        let (path, _, _) = only_error("auth = { value_env = \"A\" }\napi_key_env = \"B\"");
        assert_eq!(path, "pools[0].api_key_env");
        let (path, _, message) = only_error("auth = { header = \"host\", value_env = \"A\" }");
        assert_eq!(path, "pools[0].auth.header");
        assert!(message.contains("host"), "{message}");
    }
}
