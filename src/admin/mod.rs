//! The admin API, on its own listener (loopback by default): liveness and readiness
//! probes, the running config with secrets redacted, pool state, and reload. Only for
//! its own `Host`, changes only from its own origin (`guard`) and with the admin token
//! (`auth`).

mod auth;
mod control;
mod dashboard;
mod egress;
mod flows;
mod guard;
mod limits;
mod metrics;
mod tls;

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::config::spec::ConfigSpec;
use crate::pipeline::{ProxyBody, json_error};
use crate::server::{AdminApi, Gateway, ReloadError};

/// The admin listener (served by `server`) answers with [`handle`].
impl AdminApi for Gateway {
    fn handle_admin(
        self: Arc<Self>,
        request: Request<Incoming>,
        local: std::net::SocketAddr,
    ) -> impl std::future::Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static
    {
        handle(request, self, local)
    }
}

pub async fn handle(
    request: Request<Incoming>,
    gateway: Arc<Gateway>,
    local: std::net::SocketAddr,
) -> Result<Response<ProxyBody>, Infallible> {
    if let Err(refusal) = guard::check(&request, &gateway, local) {
        return Ok(*refusal);
    }
    let path = request.uri().path().to_string();
    // The dashboard's files hold no data, and a browser opening the page cannot send a
    // token: they are served even with `read_requires_token`; the page asks for it.
    if matches!(*request.method(), Method::GET | Method::HEAD)
        && let Some(page) = dashboard::page(&path)
    {
        return Ok(page);
    }
    if auth::needed(
        request.method(),
        &path,
        request.uri().query(),
        &gateway.plan(),
    ) && let Err(refusal) = auth::authorise(&request, &gateway)
    {
        return Ok(*refusal);
    }
    if let Some((route, action)) = path
        .strip_prefix("/api/routes/")
        .and_then(|rest| rest.split_once('/'))
    {
        return Ok(control::handle(request, &gateway, route, action).await);
    }
    if let Some((name, action)) = path
        .strip_prefix("/api/egress/")
        .and_then(|rest| rest.split_once('/'))
    {
        return Ok(egress::handle_action(request, &gateway, name, action).await);
    }
    if let Some(rest) = path.strip_prefix("/api/flows") {
        let query = request.uri().query();
        let plan = gateway.plan();
        let response = match (request.method(), rest) {
            (&Method::GET, "" | "/") => flows::list(&plan, query),
            (&Method::GET, "/tail") => flows::tail(&plan, query),
            (&Method::GET, id) if id.len() > 1 => flows::one(&plan, &id[1..]),
            _ => json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this path",
            ),
        };
        return Ok(response);
    }
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({ "status": "ok" })),
        (&Method::GET, "/readyz") => {
            if gateway.is_draining() {
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({ "status": "draining" }),
                )
            } else {
                json_response(StatusCode::OK, &json!({ "status": "ready" }))
            }
        }
        (&Method::GET, "/api/config") => {
            let plan = gateway.plan();
            let mut config = redacted(&plan.spec);
            tls::annotate_config(&mut config, &plan);
            json_response(StatusCode::OK, &config)
        }
        (&Method::GET, "/api/pools") => json_response(StatusCode::OK, &pools(&gateway)),
        (&Method::GET, "/api/stats") => json_response(StatusCode::OK, &stats(&gateway)),
        (&Method::GET, "/api/dashboard") => dashboard::snapshot(&gateway),
        (&Method::GET, "/api/limits") => limits::handle(&gateway.plan(), request.uri().query()),
        (&Method::GET, "/api/egress") => egress::handle(&gateway.plan(), request.uri().query()),
        (&Method::GET, "/metrics") => {
            let text = metrics::render(&gateway.telemetry, &gateway.plan());
            let mut response = Response::new(ProxyBody::full(text));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        // `Gateway::reload` writes the audit record, as for SIGHUP.
        (&Method::POST, "/api/reload") => match gateway.reload().await {
            Ok(()) => json_response(StatusCode::OK, &json!({ "status": "reloaded" })),
            Err(ReloadError::Invalid(errors)) => json_response(
                StatusCode::BAD_REQUEST,
                &json!({ "type": "error", "error": { "type": "invalid_config", "message": "the new config was refused; the previous one keeps serving", "errors": errors } }),
            ),
            Err(error) => json_error(StatusCode::CONFLICT, "reload_failed", &error.to_string()),
        },
        (
            _,
            "/healthz" | "/readyz" | "/metrics" | "/api/config" | "/api/pools" | "/api/stats"
            | "/api/dashboard" | "/api/reload" | "/api/limits" | "/api/egress",
        ) => json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this path",
        ),
        (_, path) => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no admin endpoint at {path}"),
        ),
    };
    Ok(response)
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn pools(gateway: &Gateway) -> Value {
    let plan = gateway.plan();
    let pools: Vec<Value> = plan
        .pools
        .iter()
        .map(|pool| {
            let max_age = pool.balancer.load_max_age();
            let endpoints: Vec<Value> = pool
                .endpoints
                .iter()
                .map(|e| {
                    let mut entry = json!({
                        "url": &*e.url,
                        "weight": e.weight,
                        "up": e.state.health.is_available(),
                        "health_check": if e.state.health.is_active_up() { "up" } else { "down" },
                        "ejected_for_ms": e.state.health.ejected_for().map(|d| d.as_millis() as u64),
                        "ejections": e.state.health.ejections_total.load(std::sync::atomic::Ordering::Relaxed),
                        "in_flight": e.state.in_flight(),
                        "requests": e.state.requests(),
                        "idle_connections": e.state.connections.idle_count(),
                        "latency_ewma_ms": e.state.latency.estimate_nanos() / 1e6,
                    });
                    if let Some(max_age) = max_age {
                        entry["load"] = load_report(&e.state.load, max_age);
                    }
                    entry
                })
                .collect();
            let spec = plan.spec.pools.iter().find(|p| *p.name == *pool.name);
            json!({
                "name": &*pool.name,
                "version": pool.version.as_deref(),
                "balance": spec.map(|s| s.balance),
                "protocol": pool.protocol.as_str(),
                "load_max_age_seconds": max_age.map(|age| age.as_secs_f64()),
                "endpoints": endpoints,
            })
        })
        .collect();
    json!({ "pools": pools })
}

/// An endpoint's last load report as `least_queue` sees it: the gauges, how old they
/// are, and whether they are past `max_age` (the balancer then counts in-flight
/// requests instead). Without a report (none yet, or forgotten after failed polls),
/// every field is null and the endpoint counts as stale.
fn load_report(load: &crate::balance::EndpointLoad, max_age: std::time::Duration) -> Value {
    let Some(age) = load.age() else {
        return json!({
            "waiting": null, "running": null, "kv_cache_usage": null,
            "age_seconds": null, "stale": true, "source": null,
        });
    };
    let gauges = load.gauges();
    json!({
        "waiting": gauges.waiting,
        "running": gauges.running,
        "kv_cache_usage": gauges.kv_usage,
        "age_seconds": age.as_secs_f64(),
        // A report naming KV use alone is not read for a pick either.
        "stale": age > max_age || load.reading().is_none(),
        "source": load.source().map(crate::balance::LoadSource::as_str),
    })
}

/// Requests per second, error rate and latency quantiles over the last minute, per
/// route and version, and per version over all routes.
fn stats(gateway: &Gateway) -> Value {
    use std::collections::BTreeMap;
    let routes = gateway.telemetry.metrics.all_routes();
    let mut by_route: BTreeMap<(&str, &str), Vec<&crate::telemetry::Window>> = BTreeMap::new();
    let mut by_version: BTreeMap<&str, Vec<&crate::telemetry::Window>> = BTreeMap::new();
    for metrics in &routes {
        by_route
            .entry((&metrics.route, &metrics.version))
            .or_default()
            .push(&metrics.window);
        by_version
            .entry(&metrics.version)
            .or_default()
            .push(&metrics.window);
    }
    let routes: Vec<Value> = by_route
        .into_iter()
        .map(|((route, version), windows)| {
            let mut entry = json!(crate::telemetry::merged_stats(&windows));
            entry["route"] = json!(route);
            entry["version"] = json!(version);
            entry
        })
        .collect();
    let versions: Vec<Value> = by_version
        .into_iter()
        .map(|(version, windows)| {
            let mut entry = json!(crate::telemetry::merged_stats(&windows));
            entry["version"] = json!(version);
            entry
        })
        .collect();
    json!({ "window_seconds": 60, "routes": routes, "versions": versions })
}

/// The config as JSON with secrets hidden. Endpoint URLs carry no credentials (the
/// config refuses them); this is the one place future secret-bearing keys
/// (API keys, tokens, proxy passwords) must be masked.
pub fn redacted(spec: &ConfigSpec) -> Value {
    let mut value = serde_json::to_value(spec).unwrap_or(Value::Null);
    redact_in_place(&mut value);
    value
}

/// Keys whose values are hidden. `words`: masking's custom word lists are the very
/// names (project code names...) a route keeps from leaving.
const SECRET_KEYS: &[&str] = &[
    "password", "token", "secret", "api_key", "key_hash", "sha256", "words",
];

fn redact_in_place(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                // A flag or a number under a secret-sounding name (`read_requires_token`)
                // is a setting, not a secret.
                let setting = child.is_null() || child.is_boolean() || child.is_number();
                if SECRET_KEYS.iter().any(|secret| key.contains(secret)) && !setting {
                    *child = Value::String("***".into());
                } else {
                    redact_in_place(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_in_place),
        Value::String(text) => {
            // URLs with credentials (user:pass@host): keep the user, hide the password.
            if let Some((scheme, rest)) = text.split_once("://") {
                // The last `@` ends the user info: a raw `@` in a password stays hidden.
                if let Some((userinfo, host)) = rest.rsplit_once('@') {
                    let user = userinfo.split(':').next().unwrap_or("");
                    *text = format!("{scheme}://{user}:***@{host}");
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        let mut value = json!({ "url": "http://bob:hunter2@proxy:8000", "exits": [{ "url": "socks5://u:p@ss@h:1" }], "token": "abc", "nested": [{ "password": "x" }], "name": "ok", "mask": { "custom": [{ "name": "CODENAME", "words": ["bluebird"] }] }, "read_requires_token": true });
        redact_in_place(&mut value);
        assert_eq!(
            value,
            json!({ "url": "http://bob:***@proxy:8000", "exits": [{ "url": "socks5://u:***@h:1" }], "token": "***", "nested": [{ "password": "***" }], "name": "ok", "mask": { "custom": [{ "name": "CODENAME", "words": "***" }] }, "read_requires_token": true })
        );
    }
}
