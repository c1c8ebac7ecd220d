//! `GET /api/egress`: per egress listener, its exits with their state and the sites
//! that banned them (bans in a row, rest left), and the sessions pinned to an exit; each
//! list bounded by `?limit=` (most resting, most recent first) beside its full count.

use http::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::json_response;
use super::limits::{DEFAULT_TOP, top_of};
use crate::config::Plan;
use crate::egress::EgressPlan;
use crate::egress::exits::{Exit, ExitUrl};
use crate::pipeline::ProxyBody;

pub fn handle(plan: &Plan, query: Option<&str>) -> Response<ProxyBody> {
    match top_of(query, DEFAULT_TOP) {
        Ok(top) => json_response(StatusCode::OK, &view(plan, top)),
        Err(refusal) => *refusal,
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

fn exit_view(exit: &Exit, now: Instant, top: usize) -> Value {
    let (bans, remembered) = exit.bans_snapshot(now, top);
    let sites: Vec<Value> = bans
        .into_iter()
        .map(|ban| {
            json!({
                "host": ban.host,
                "bans_in_a_row": ban.strikes,
                "resting_ms": millis(ban.resting_for),
            })
        })
        .collect();
    json!({
        "name": &*exit.name,
        "region": exit.region.as_deref(),
        // Without its password: the URL as `/api/config` shows it.
        "url": ExitUrl::parse(&exit.source.url).map(|u| u.redacted()).unwrap_or_default(),
        "state": if exit.is_up() { "up" } else { "probing" },
        "in_use": exit.in_use(),
        "bans": exit.counters.bans.load(std::sync::atomic::Ordering::Relaxed),
        "resting_sites": exit.cooling_hosts(now),
        "sites_total": remembered,
        "sites": sites,
    })
}

fn egress_view(egress: &EgressPlan, now: Instant, top: usize) -> Value {
    let exits: Vec<Value> = egress
        .exits()
        .iter()
        .map(|exit| exit_view(exit, now, top))
        .collect();
    let (sessions, live) = egress.sessions_snapshot(top);
    let sessions: Vec<Value> = sessions
        .into_iter()
        .map(|s| {
            json!({
                "session": s.session,
                "region": (!s.region.is_empty()).then_some(s.region),
                "exit": &*s.exit,
                "idle_ms": millis(s.idle),
                "expires_in_ms": millis(s.expires_in),
            })
        })
        .collect();
    json!({
        "name": &*egress.name,
        "open_tunnels": egress.open_tunnels(),
        "exits": exits,
        "sessions_total": live,
        "sessions": sessions,
    })
}

/// Every egress listener of the plan, in config order.
pub(super) fn view(plan: &Plan, top: usize) -> Value {
    let now = Instant::now();
    let egress: Vec<Value> = plan
        .listeners
        .iter()
        .filter_map(|l| l.egress.as_ref())
        .map(|egress| egress_view(egress, now, top))
        .collect();
    json!({ "limit": top, "egress": egress })
}
