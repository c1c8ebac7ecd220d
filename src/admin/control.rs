//! Runtime control of splits and canaries: `/api/routes/{name}/split` (GET, PUT),
//! `/api/routes/{name}/promote`, `/rollback`, `/canary` (GET), and `/canary/pause`,
//! `/canary/resume`. Changing calls need the admin bearer token (`auth`);
//! every change is logged and saved to the state file, and applies without a reload.

use std::collections::BTreeMap;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::json_response;
use crate::canary::{CanaryPhase, RouteControl};
use crate::pipeline::{ProxyBody, json_error};
use crate::server::Gateway;

/// Largest body of a PUT.
const MAX_BODY: usize = 64 * 1024;

pub async fn handle(
    request: Request<Incoming>,
    gateway: &Gateway,
    route: &str,
    action: &str,
) -> Response<ProxyBody> {
    // Changing calls were authorised by `auth` before they got here.
    let method = request.method().clone();
    let Some(control) = gateway.controls.get(route) else {
        let exists = gateway.plan().route(route).is_some();
        let message = if exists {
            format!("route {route:?} has a single pool: there is no split to control")
        } else {
            format!("no route is named {route:?}")
        };
        return json_error(StatusCode::NOT_FOUND, "not_found", &message);
    };
    match (method, action) {
        (Method::GET, "split") => json_response(StatusCode::OK, &split_view(&control)),
        (Method::PUT, "split") => put_split(request, gateway, &control).await,
        (Method::POST, "promote") => end_canary(gateway, &control, true),
        (Method::POST, "rollback") => end_canary(gateway, &control, false),
        (Method::POST, "canary/pause") => hold_canary(gateway, &control, true),
        (Method::POST, "canary/resume") => hold_canary(gateway, &control, false),
        (Method::GET, "canary") => match canary_view(&control) {
            Some(view) => json_response(StatusCode::OK, &view),
            None => json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("route {:?} has no canary", control.route),
            ),
        },
        (_, "split" | "promote" | "rollback" | "canary" | "canary/pause" | "canary/resume") => {
            json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this path",
            )
        }
        _ => json_error(StatusCode::NOT_FOUND, "not_found", "unknown route action"),
    }
}

fn weights_object(control: &RouteControl) -> BTreeMap<String, u32> {
    control
        .weights_by_pool()
        .into_iter()
        .map(|(pool, weight)| (pool.to_string(), weight))
        .collect()
}

/// What `GET .../canary` answers, when the route has a canary.
pub(super) fn canary_view(control: &RouteControl) -> Option<Value> {
    let canary = control.canary.as_ref()?;
    Some(json!({
        "route": &*control.route,
        "candidate": &*control.pools[canary.policy.candidate],
        "stable": &*control.pools[canary.policy.stable],
        "phase": canary.phase(),
        "weights": weights_object(control),
        "steps": canary.policy.steps,
        "interval_ms": canary.policy.interval.as_millis() as u64,
        "min_requests": canary.policy.min_requests,
        "max_error_rate": canary.policy.max_error_rate,
        "max_latency_ratio": canary.policy.max_latency_ratio,
        "max_ttft_ratio": canary.policy.max_ttft_ratio,
        "last_interval": canary.last_figures(),
        "transitions": canary.history(),
    }))
}

pub(super) fn split_view(control: &RouteControl) -> Value {
    let configured: BTreeMap<String, u32> = control
        .pools
        .iter()
        .map(|p| p.to_string())
        .zip(control.configured.iter().copied())
        .collect();
    json!({ "route": &*control.route, "weights": weights_object(control), "configured": configured })
}

async fn put_split(
    request: Request<Incoming>,
    gateway: &Gateway,
    control: &RouteControl,
) -> Response<ProxyBody> {
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "unreadable body (at most 64 KiB)",
            );
        }
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewSplit {
        weights: BTreeMap<String, u32>,
    }
    let new: NewSplit = match serde_json::from_slice(&body) {
        Ok(new) => new,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("expected {{\"weights\": {{\"POOL\": WEIGHT, ...}}}}: {e}"),
            );
        }
    };
    let mut weights = control.split.weights();
    for (pool, weight) in &new.weights {
        match control.index_of(pool) {
            Some(i) if *weight <= 1000 => weights[i] = *weight,
            Some(_) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "weights are between 0 and 1000",
                );
            }
            None => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!(
                        "pool {pool:?} is not in the split of route {:?}",
                        control.route
                    ),
                );
            }
        }
    }
    if weights.iter().all(|w| *w == 0) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "at least one weight must be above 0",
        );
    }
    let before = weights_object(control);
    control.split.set_weights(weights);
    tracing::info!(target: "audit", route = %control.route, ?before, after = ?weights_object(control), "split weights changed through the admin API");
    gateway.audit.record("admin", json!({ "action": "set_split", "route": &*control.route, "before": before, "after": weights_object(control) }));
    gateway.controls.save();
    json_response(StatusCode::OK, &split_view(control))
}

/// Promote: the candidate takes all traffic. Rollback: the stable pool does. Without a
/// canary the candidate is the split's last pool and the stable one its first.
fn end_canary(gateway: &Gateway, control: &RouteControl, promote: bool) -> Response<ProxyBody> {
    let targets = control.pools.len();
    let (stable, candidate) = match &control.canary {
        Some(canary) => (canary.policy.stable, canary.policy.candidate),
        None => (0, targets - 1),
    };
    let mut weights = vec![0; targets];
    weights[if promote { candidate } else { stable }] = 100;
    control.split.set_weights(weights);
    if let Some(canary) = &control.canary {
        let phase = if promote {
            CanaryPhase::Promoted
        } else {
            CanaryPhase::Failed {
                reason: "rolled back through the admin API".into(),
            }
        };
        canary.set_phase(phase);
    }
    let action = if promote { "promoted" } else { "rolled back" };
    tracing::info!(target: "audit", route = %control.route, weights = ?weights_object(control), "route {action} through the admin API");
    let name = if promote { "promote" } else { "rollback" };
    gateway.audit.record(
        "admin",
        json!({ "action": name, "route": &*control.route, "weights": weights_object(control) }),
    );
    gateway.controls.save();
    json_response(StatusCode::OK, &split_view(control))
}

/// Pause: the canary holds its weights and steps no further (a regression still rolls it
/// back). Resume: it steps again from there. Answers the canary as `GET .../canary` does;
/// 409 once the analysis has ended, 404 for a split without a canary.
fn hold_canary(gateway: &Gateway, control: &RouteControl, pause: bool) -> Response<ProxyBody> {
    let Some(canary) = &control.canary else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("route {:?} has no canary to pause or resume", control.route),
        );
    };
    let (verb, result) = if pause {
        ("pause", canary.pause())
    } else {
        ("resume", canary.resume())
    };
    let changed = match result {
        Ok(changed) => changed,
        Err(ended) => {
            let state = match ended {
                CanaryPhase::Promoted => "promoted",
                CanaryPhase::Failed { .. } => "failed",
                // `pause` and `resume` refuse only an ended analysis.
                CanaryPhase::Progressing { .. } | CanaryPhase::Paused { .. } => "analysing",
            };
            return json_error(
                StatusCode::CONFLICT,
                "canary_ended",
                &format!(
                    "the canary of route {:?} has ended ({state}); there is nothing to {verb}",
                    control.route
                ),
            );
        }
    };
    tracing::info!(target: "audit", route = %control.route, changed, weights = ?weights_object(control), "canary {verb} through the admin API");
    gateway.audit.record(
        "admin",
        json!({ "action": format!("canary_{verb}"), "route": &*control.route, "changed": changed, "phase": canary.phase(), "weights": weights_object(control) }),
    );
    if changed {
        gateway.controls.save();
    }
    json_response(StatusCode::OK, &canary_view(control).unwrap_or(Value::Null))
}
