//! `GET /api/limits`: each route's rate limits with, per key (an API key's name, a
//! client address, or the route), the budget spent, what is left and when it is whole
//! again; the most spent keys first, at most `?limit=` per limit. Never a key's value.

use std::time::Duration;

use http::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::flows::{param, query_params};
use super::json_response;
use crate::config::Plan;
use crate::pipeline::{ProxyBody, json_error};
use crate::security::limit_usage::key_kind;
use crate::security::rate_limit::Spent;

/// Keys listed per limit unless `?limit=` says otherwise, and at most.
pub(super) const DEFAULT_TOP: usize = 50;
const MAX_TOP: usize = 1000;

/// `?limit=N` of a bounded list: N from 1 to 1000, `default` without it, else a 400.
pub(super) fn top_of(
    query: Option<&str>,
    default: usize,
) -> Result<usize, Box<Response<ProxyBody>>> {
    let params = query_params(query);
    match param(&params, "limit").map(str::parse::<usize>) {
        None => Ok(default),
        Some(Ok(top)) if (1..=MAX_TOP).contains(&top) => Ok(top),
        Some(_) => Err(Box::new(json_error(
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            &format!("limit is a number of entries from 1 to {MAX_TOP}"),
        ))),
    }
}

pub fn handle(plan: &Plan, query: Option<&str>) -> Response<ProxyBody> {
    match top_of(query, DEFAULT_TOP) {
        Ok(top) => json_response(StatusCode::OK, &view(plan, top)),
        Err(refusal) => *refusal,
    }
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

fn spent(spent: Option<Spent>) -> Value {
    match spent {
        Some(s) => json!({
            "used": s.used,
            "limit": s.limit,
            "remaining": s.limit.saturating_sub(s.used),
            "refill_ms": millis(s.refill),
        }),
        None => Value::Null,
    }
}

/// Every route with rate limits, each limit with its `top` most spent keys.
pub(super) fn view(plan: &Plan, top: usize) -> Value {
    let now = Instant::now();
    let routes: Vec<Value> = plan
        .rate_limits
        .iter()
        .map(|route| {
            let limits: Vec<Value> = route
                .limits
                .iter()
                .map(|limit| {
                    let (requests, tokens, period) = limit.budgets_snapshot();
                    let (keys, in_use) = limit.usage_snapshot(now, top);
                    let keys: Vec<Value> = keys
                        .into_iter()
                        .map(|(stored, requests, tokens)| {
                            let (kind, name) = key_kind(&stored);
                            json!({ "kind": kind, "key": name, "requests": spent(requests), "tokens": spent(tokens) })
                        })
                        .collect();
                    let mut entry = json!({
                        "scope": limit.scope,
                        "keyed_by": limit.key.as_str(),
                        "period_ms": millis(period),
                        "requests": requests,
                        "tokens": tokens,
                        "backend": if limit.shared.is_some() { "redis" } else { "local" },
                        "usage_here": limit.shared.is_none(),
                        "keys_in_use": in_use,
                        "keys": keys,
                    });
                    if limit.shared.is_some() {
                        entry["note"] = json!("the budgets are kept in Redis for every instance; this instance holds no per-key usage of its own");
                    }
                    entry
                })
                .collect();
            json!({ "route": &*route.route, "limits": limits })
        })
        .collect();
    json!({ "limit": top, "routes": routes })
}
