//! Compiling `[[routes]]`: matchers, targets (one pool or a split), stickiness,
//! shadow traffic, canary analysis, timeouts, retries and filters.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::CompileContext;
use super::checks::{
    Errors, OWNED_REQUEST_HEADERS, OWNED_RESPONSE_HEADERS, bytes_of, check_unique, duration_or,
    owned, parse_cidrs,
};
use super::plan::ListenerPlan;
use super::pools::parse_hash_key;
use super::security::compile_security;
use super::spec::{
    CanarySpec, ChainTargetSpec, ConfigSpec, HeaderRulesSpec, MatchSpec, RetrySpec, RouteSpec,
    TriggerSpec,
};
use crate::canary::CanaryPolicy;
use crate::pipeline::{Filter, FilterChain, HeaderRules};
use crate::routing::chain::TRIGGER_NAMES;
use crate::routing::{
    Engines, Glob, HeaderMatch, Hop, Matcher, Mirror, PathMatch, RetryBudget, RetryPolicy, Route,
    Target, Timeouts, Trigger, Triggers,
};
use crate::security::Recorder;
use crate::security::limit_usage::RouteLimits;
use crate::security::rate_limit::RateLimit;
use crate::telemetry::{Buckets, RouteTelemetry};
use crate::upstream::Pool;

const DEFAULT_RETRY_BODY_LIMIT: u64 = 1 << 20;
/// Bodies up to this size are read whole before an endpoint is chosen: a whole chat
/// request with a long prompt fits, and a slow client then holds no upstream connection.
const DEFAULT_REQUEST_BUFFER_BYTES: u64 = 1 << 20;

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
        Some(size) => bytes_of(size, &format!("{path}.body_limit"), errors).unwrap_or(0),
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

#[allow(clippy::too_many_arguments)]
pub(super) fn compile_routes(
    spec: &ConfigSpec,
    base: &Path,
    pools: &[(String, Arc<Pool>)],
    listeners: &mut [(ListenerPlan, Vec<Arc<Route>>)],
    context: &CompileContext<'_>,
    buckets: &Buckets,
    rate_limits: &mut Vec<RouteLimits>,
    errors: &mut Errors,
) {
    check_unique(
        spec.routes.iter().map(|r| r.name.as_str()),
        "routes",
        errors,
    );
    // A listener's policies, compiled once and shared by its routes: one budget for all
    // of them, and its errors reported once.
    let recorder = Recorder {
        telemetry: context.telemetry.clone(),
        audit: context.audit.clone(),
    };
    let listener_policies: Vec<ListenerPolicies> = spec
        .listeners
        .iter()
        .enumerate()
        .map(|(i, listener)| {
            let mut limits = Vec::new();
            let filters = compile_security(
                listener.security(),
                &format!("listener:{}", listener.name),
                &format!("listeners[{i}]"),
                base,
                &recorder,
                &mut limits,
                errors,
            );
            ListenerPolicies {
                filters: filters.into_iter().map(Arc::from).collect(),
                limits,
            }
        })
        .collect();
    // A listener's capture, shared by its routes without their own.
    let listener_captures: Vec<_> = spec
        .listeners
        .iter()
        .enumerate()
        .map(|(i, listener)| {
            let path = format!("listeners[{i}].capture");
            listener
                .capture
                .as_ref()
                .and_then(|c| super::capture::compile_capture(c, &path, base, errors))
        })
        .collect();
    for (i, route) in spec.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        let before = errors.len();
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
        let find_pool = |name: &str, key: String, errors: &mut Errors| {
            let found = pools
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.clone());
            if found.is_none() && !spec.pools.iter().any(|p| p.name == name) {
                errors.push((key, format!("no pool is named {name:?}")));
            }
            found
        };
        // Targets: one pool, the sides of a split, or the first of a chain.
        let wanted: Vec<(String, u32, String)> = match (&route.pool, &route.split, &route.targets) {
            (Some(pool), None, None) => vec![(pool.clone(), 100, format!("{path}.pool"))],
            (None, Some(split), None) if !split.is_empty() => split
                .iter()
                .enumerate()
                .map(|(j, t)| (t.pool.clone(), t.weight, format!("{path}.split[{j}]")))
                .collect(),
            (None, None, Some(chain)) => match chain.first() {
                Some(first) => vec![(first.pool.clone(), 100, format!("{path}.targets[0].pool"))],
                None => {
                    errors.push((
                        format!("{path}.targets"),
                        "a chain needs at least one target".into(),
                    ));
                    Vec::new()
                }
            },
            (None, None, None) | (None, Some(_), None) => {
                errors.push((
                    format!("{path}.pool"),
                    "a route needs a pool, a split between pools, or a chain of targets".into(),
                ));
                Vec::new()
            }
            (_, Some(_), Some(_)) | (Some(_), _, Some(_)) => {
                errors.push((
                    format!("{path}.targets"),
                    "use pool, split or targets, only one of them".into(),
                ));
                Vec::new()
            }
            (Some(_), Some(_), None) => {
                errors.push((
                    format!("{path}.split"),
                    "use pool or split, not both".into(),
                ));
                Vec::new()
            }
        };
        let chain = route.targets.as_deref().unwrap_or_default();
        let hops = compile_chain(chain, &format!("{path}.targets"), &find_pool, errors);
        let mut targets = Vec::new();
        for (j, (name, weight, key)) in wanted.iter().enumerate() {
            if wanted[..j].iter().any(|(other, _, _)| other == name) {
                errors.push((
                    format!("{key}.pool"),
                    format!("pool {name:?} is in the split twice"),
                ));
            }
            if route.split.is_some() && *weight > 1000 {
                errors.push((
                    format!("{key}.weight"),
                    "weight must be between 0 and 1000".into(),
                ));
            }
            let key = if route.split.is_some() {
                format!("{key}.pool")
            } else {
                key.clone()
            };
            if let Some(pool) = find_pool(name, key, errors) {
                targets.push((pool, *weight));
            }
        }
        if route.split.is_some() && !wanted.is_empty() && wanted.iter().all(|(_, w, _)| *w == 0) {
            errors.push((
                format!("{path}.split"),
                "at least one weight must be above 0".into(),
            ));
        }
        let sticky = route.sticky.as_deref().and_then(|text| {
            parse_hash_key(text)
                .map_err(|e| errors.push((format!("{path}.sticky"), e)))
                .ok()
        });
        let set_cookie = match (&sticky, route.set_cookie) {
            (Some(crate::upstream::HashKey::Cookie(name)), true) => Some(name.clone()),
            (_, true) => {
                errors.push((
                    format!("{path}.set_cookie"),
                    "set_cookie needs sticky = \"cookie:NAME\"".into(),
                ));
                None
            }
            _ => None,
        };
        let override_from = parse_cidrs(
            &route.version_override_from,
            &format!("{path}.version_override_from"),
            errors,
        );
        let mirror = route.mirror.as_ref().and_then(|mirror| {
            if mirror.percent > 100 {
                errors.push((
                    format!("{path}.mirror.percent"),
                    "must be between 0 and 100".into(),
                ));
            }
            find_pool(&mirror.pool, format!("{path}.mirror.pool"), errors)
                .map(|pool| (pool, mirror.percent))
        });
        let canary = route
            .canary
            .as_ref()
            .and_then(|c| compile_canary(c, route, &format!("{path}.canary"), errors));
        let mask = route.mask.as_ref().and_then(|spec| {
            super::masking::compile_mask(spec, &format!("{path}.mask"), errors).map(Arc::new)
        });
        let capture = match &route.capture {
            Some(spec) => {
                super::capture::compile_capture(spec, &format!("{path}.capture"), base, errors)
            }
            None => listener_index.and_then(|l| listener_captures[l].clone()),
        };
        let anomalies = route.anomalies.as_ref().and_then(|spec| {
            let audit = Some(context.audit.clone());
            let key = format!("{path}.anomalies");
            super::anomalies::compile_anomalies(spec, &key, &route.name, audit, errors)
        });
        let matcher = compile_matcher(&route.matcher, &format!("{path}.match"), errors);
        let timeouts = compile_timeouts(route, &path, errors);
        // A chain's hops draw on the route's retry budget; without `retries` the chain
        // has the default budget and no retries within a pool (`attempts = 0`).
        let chain_only = RetrySpec {
            attempts: Some(0),
            ..RetrySpec::default()
        };
        let retry_spec = route
            .retries
            .as_ref()
            .or((chain.len() > 1).then_some(&chain_only));
        let retries =
            retry_spec.and_then(|r| compile_retries(r, &format!("{path}.retries"), errors));
        let filters = listener_index.and_then(|i| {
            compile_filters(route, &listener_policies[i], &path, base, &recorder, errors)
        });
        let (Some(listener_index), Some(matcher), Some(timeouts), Some((filters, limits))) =
            (listener_index, matcher, timeouts, filters)
        else {
            continue;
        };
        // A pool that failed to compile (its error is already reported) leaves the
        // split short: positions no longer line up with the canary's or the weights'.
        if errors.len() > before || targets.is_empty() || targets.len() < wanted.len() {
            continue;
        }
        let telemetry_for = |pool: &Arc<Pool>, shadow: bool| {
            let version = pool.version.as_deref().unwrap_or("");
            let metrics =
                context
                    .telemetry
                    .metrics
                    .route(&route.name, &pool.name, version, shadow, buckets);
            let urls: Vec<Arc<str>> = pool.endpoints.iter().map(|e| e.url.clone()).collect();
            RouteTelemetry::new(metrics, &urls)
        };
        let control = (targets.len() > 1 || canary.is_some()).then(|| {
            let names = targets.iter().map(|(pool, _)| pool.name.clone()).collect();
            let weights = targets.iter().map(|(_, weight)| *weight).collect();
            context.controls.route(&route.name, names, weights, canary)
        });
        let limits_tokens =
            |l: Option<&super::spec::RateLimitSpec>| l.is_some_and(|l| l.tokens.is_some());
        let reads_request_facts = limits_tokens(route.rate_limit.as_ref())
            || limits_tokens(spec.listeners[listener_index].rate_limit.as_ref());
        let max_body_bytes = route
            .max_body_bytes
            .as_ref()
            .and_then(|size| bytes_of(size, &format!("{path}.max_body_bytes"), errors));
        let request_buffer_bytes = match &route.request_buffer_bytes {
            None => DEFAULT_REQUEST_BUFFER_BYTES,
            Some(size) => {
                bytes_of(size, &format!("{path}.request_buffer_bytes"), errors).unwrap_or(0)
            }
        };
        let mut compiled = Route {
            engines: Engines::default(),
            reads_request_facts,
            max_body_bytes,
            allow_encoded_slashes: route.allow_encoded_slashes,
            request_buffering: route.request_buffering.unwrap_or(true),
            request_buffer_bytes,
            retry_connect_errors: route.retry_connect_errors.unwrap_or(true),
            mask,
            capture,
            anomalies,
            name: route.name.as_str().into(),
            matcher,
            targets: targets
                .iter()
                .map(|(pool, _)| Target {
                    pool: pool.clone(),
                    telemetry: telemetry_for(pool, false),
                })
                .collect(),
            chain: hops
                .into_iter()
                .map(|(pool, on)| Hop {
                    target: Target {
                        telemetry: telemetry_for(&pool, false),
                        pool,
                    },
                    on,
                })
                .collect(),
            control,
            sticky,
            set_cookie,
            override_from,
            mirror: mirror.map(|(pool, percent)| Mirror {
                telemetry: telemetry_for(&pool, true),
                pool,
                percent,
                seen: Default::default(),
            }),
            timeouts,
            retries,
            filters,
        };
        compiled.engines = match route.fast_path {
            Some(false) => Engines::HyperOnly("fast_path = false"),
            _ => Engines::of(&compiled),
        };
        // Listener specs and compiled listeners line up unless a bind failed to parse.
        let listener_name = spec.listeners[listener_index].name.as_str();
        if !limits.is_empty() {
            rate_limits.push(RouteLimits {
                route: compiled.name.clone(),
                limits,
            });
        }
        if let Some((_, routes)) = listeners
            .iter_mut()
            .find(|(l, _)| &*l.name == listener_name)
        {
            routes.push(Arc::new(compiled));
        }
    }
}

/// Looks a pool up by name, reporting an unknown one at the key given.
type FindPool<'a> = dyn Fn(&str, String, &mut Errors) -> Option<Arc<Pool>> + 'a;

/// The targets of a chain after the first, with their triggers. Unknown pools, a pool
/// twice, `on` on the first target (it is always tried) and an empty `on` (a target
/// never tried) are refused.
fn compile_chain(
    chain: &[ChainTargetSpec],
    path: &str,
    find_pool: &FindPool<'_>,
    errors: &mut Errors,
) -> Vec<(Arc<Pool>, Triggers)> {
    let mut hops = Vec::new();
    for (j, target) in chain.iter().enumerate() {
        let key = format!("{path}[{j}]");
        if chain[..j].iter().any(|other| other.pool == target.pool) {
            errors.push((
                format!("{key}.pool"),
                format!("pool {:?} is in the chain twice", target.pool),
            ));
        }
        if j == 0 {
            if target.on.is_some() {
                errors.push((
                    format!("{key}.on"),
                    "the first target is always tried; `on` belongs to the targets after it".into(),
                ));
            }
            // The first target is the route's pool, looked up with the others.
            continue;
        }
        let on = match &target.on {
            None => Some(Triggers::default_chain()),
            Some(on) if on.is_empty() => {
                errors.push((
                    format!("{key}.on"),
                    "an empty `on` means this target is never tried; leave `on` out for the \
                     default triggers"
                        .into(),
                ));
                None
            }
            Some(on) => compile_triggers(on, &format!("{key}.on"), errors),
        };
        let pool = find_pool(&target.pool, format!("{key}.pool"), errors);
        if let (Some(pool), Some(on)) = (pool, on) {
            hops.push((pool, on));
        }
    }
    hops
}

fn compile_triggers(on: &[TriggerSpec], path: &str, errors: &mut Errors) -> Option<Triggers> {
    let before = errors.len();
    let mut triggers = Vec::new();
    for (i, trigger) in on.iter().enumerate() {
        let key = format!("{path}[{i}]");
        match trigger {
            TriggerSpec::Status(status) => match u16::try_from(*status) {
                Ok(status) if (400..=599).contains(&status) => {
                    triggers.push(Trigger::Status(status))
                }
                _ => errors.push((key, format!("{status} is not an error status (400 to 599)"))),
            },
            TriggerSpec::Name(name) => match Trigger::parse(name) {
                Some(trigger) => triggers.push(trigger),
                None => errors.push((
                    key,
                    format!(
                        "unknown trigger {name:?}: a status code or one of {}",
                        TRIGGER_NAMES.map(|n| format!("{n:?}")).join(", ")
                    ),
                )),
            },
        }
    }
    (errors.len() == before).then(|| Triggers::new(triggers))
}

fn compile_canary(
    spec: &CanarySpec,
    route: &RouteSpec,
    path: &str,
    errors: &mut Errors,
) -> Option<CanaryPolicy> {
    let before = errors.len();
    let Some(split) = route.split.as_ref().filter(|s| s.len() == 2) else {
        errors.push((
            path.into(),
            "a canary needs a split of exactly two pools: the stable one and the candidate".into(),
        ));
        return None;
    };
    let Some(candidate) = split.iter().position(|t| t.pool == spec.candidate) else {
        errors.push((
            format!("{path}.candidate"),
            format!("{:?} is not one of the split's pools", spec.candidate),
        ));
        return None;
    };
    if spec.steps.is_empty() {
        errors.push((
            format!("{path}.steps"),
            "at least one step is needed, e.g. [5, 25, 50, 100]".into(),
        ));
    }
    if spec.steps.iter().any(|s| *s == 0 || *s > 100) || spec.steps.windows(2).any(|w| w[0] >= w[1])
    {
        errors.push((
            format!("{path}.steps"),
            "steps are increasing percentages between 1 and 100".into(),
        ));
    }
    let ratio = |value: Option<f64>, key: &str, default: f64, errors: &mut Errors| {
        let value = value.unwrap_or(default);
        if !(value.is_finite() && value > 0.0) {
            errors.push((format!("{path}.{key}"), "must be a positive number".into()));
        }
        value
    };
    let max_error_rate = ratio(spec.max_error_rate, "max_error_rate", 0.05, errors);
    if max_error_rate > 1.0 {
        errors.push((
            format!("{path}.max_error_rate"),
            "is a share between 0 and 1".into(),
        ));
    }
    let policy = CanaryPolicy {
        stable: 1 - candidate,
        candidate,
        steps: spec.steps.clone(),
        interval: duration_or(
            &spec.interval,
            Duration::from_secs(60),
            &format!("{path}.interval"),
            errors,
        ),
        min_requests: spec.min_requests.unwrap_or(100),
        max_error_rate,
        max_latency_ratio: ratio(spec.max_latency_ratio, "max_latency_ratio", 1.5, errors),
        max_ttft_ratio: ratio(spec.max_ttft_ratio, "max_ttft_ratio", 1.5, errors),
    };
    (errors.len() == before).then_some(policy)
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

/// A listener's security filters and rate limits, shared by every route on it.
struct ListenerPolicies {
    filters: Vec<Arc<dyn Filter>>,
    limits: Vec<Arc<RateLimit>>,
}

fn compile_filters(
    route: &RouteSpec,
    listener: &ListenerPolicies,
    path: &str,
    base: &Path,
    recorder: &Recorder,
    errors: &mut Errors,
) -> Option<(FilterChain, Vec<Arc<RateLimit>>)> {
    let before = errors.len();
    // The listener's policies first, the same filters for each of its routes.
    let mut filters: Vec<Box<dyn Filter>> = listener
        .filters
        .iter()
        .map(|filter| Box::new(filter.clone()) as Box<dyn Filter>)
        .collect();
    let mut limits = listener.limits.clone();
    filters.extend(compile_security(
        route.security(),
        &format!("route:{}", route.name),
        path,
        base,
        recorder,
        &mut limits,
        errors,
    ));
    if route.request_headers.is_some() || route.response_headers.is_some() {
        let empty = HeaderRulesSpec::default();
        let request = route.request_headers.as_ref().unwrap_or(&empty);
        let response = route.response_headers.as_ref().unwrap_or(&empty);
        let (request_set, request_remove) = compile_header_rules(
            request,
            &format!("{path}.request_headers"),
            OWNED_REQUEST_HEADERS,
            errors,
        );
        let (response_set, response_remove) = compile_header_rules(
            response,
            &format!("{path}.response_headers"),
            OWNED_RESPONSE_HEADERS,
            errors,
        );
        filters.push(Box::new(HeaderRules {
            request_set,
            request_remove,
            response_set,
            response_remove,
        }));
    }
    (errors.len() == before).then(|| (FilterChain::new(filters), limits))
}

type HeaderEdits = (Vec<(HeaderName, HeaderValue)>, Vec<HeaderName>);

fn compile_header_rules(
    spec: &HeaderRulesSpec,
    path: &str,
    owned_names: &[&str],
    errors: &mut Errors,
) -> HeaderEdits {
    let mut set = Vec::new();
    for (name, value) in &spec.set {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(header), _) if owned(&header, owned_names).is_some() => errors.push((
                format!("{path}.set.{name}"),
                owned(&header, owned_names).unwrap_or_default(),
            )),
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
            Ok(header) if owned(&header, owned_names).is_some() => errors.push((
                format!("{path}.remove[{i}]"),
                owned(&header, owned_names).unwrap_or_default(),
            )),
            Ok(name) => remove.push(name),
            Err(_) => errors.push((
                format!("{path}.remove[{i}]"),
                format!("{name:?} is not a valid header name"),
            )),
        }
    }
    (set, remove)
}
