//! `GET /api/egress`: per egress listener, its exits with their state and the sites
//! that banned them (bans in a row, rest left), and the sessions pinned to an exit; each
//! list bounded by `?limit=` (most resting, most recent first) beside its full count.
//! `POST /api/egress/{name}/bans`: a client's report that a site banned an exit.

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::json_response;
use super::limits::{DEFAULT_TOP, top_of};
use crate::config::Plan;
use crate::egress::EgressPlan;
use crate::egress::exits::{Exit, ExitUrl};
use crate::egress::reports::{BanReport, ReportError, SessionKey, report_host};
use crate::pipeline::{ProxyBody, json_error};
use crate::server::Gateway;

/// Largest body of a ban report.
const MAX_BODY: usize = 16 * 1024;

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
        "verification": verification_view(exit, now),
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

/// What the echo-URL probes found: `state` (`unchecked`, `verified`, `changed`,
/// `failed`), the first and the last address seen, counts and the last error.
fn verification_view(exit: &Exit, now: Instant) -> Value {
    let verification = exit
        .verification
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let error = match &verification.verdict {
        crate::egress::verify::Verdict::Failed(why) => Some(why.clone()),
        _ => None,
    };
    json!({
        "state": verification.verdict.label(),
        "address": verification.address.map(|a| a.to_string()),
        "first_address": verification.first_address.map(|a| a.to_string()),
        "changes": verification.changes,
        "failures": verification.failures,
        "checked_ms_ago": verification.checked.map(|at| millis(now.saturating_duration_since(at))),
        "error": error,
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

/// `/api/egress/{name}/{action}`: `POST .../bans` only. Authorised by `auth` (a
/// changing call) before it gets here; written to the audit log.
pub async fn handle_action(
    request: Request<Incoming>,
    gateway: &Gateway,
    name: &str,
    action: &str,
) -> Response<ProxyBody> {
    if action != "bans" {
        return json_error(StatusCode::NOT_FOUND, "not_found", "unknown egress action");
    }
    if request.method() != Method::POST {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this path",
        );
    }
    let plan = gateway.plan();
    let Some(egress) = plan
        .listeners
        .iter()
        .filter_map(|l| l.egress.as_ref())
        .find(|e| &*e.name == name)
    else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no egress listener is named {name:?}"),
        );
    };
    let report = match read_report(request).await {
        Ok(report) => report,
        Err(why) => return json_error(StatusCode::BAD_REQUEST, "bad_request", &why),
    };
    match egress.report_ban(&report) {
        Ok(banned) => {
            let view = json!({
                "egress": name,
                "exit": &*banned.exit,
                "host": banned.host,
                "resting_ms": millis(banned.resting_for),
            });
            gateway.audit.record(
                "admin",
                json!({ "action": "egress_ban", "egress": name, "exit": &*banned.exit, "host": &banned.host, "resting_ms": millis(banned.resting_for) }),
            );
            json_response(StatusCode::OK, &view)
        }
        Err(error) => {
            let kind = match error {
                ReportError::UnknownExit(_) => "unknown_exit",
                ReportError::UnknownSession { .. } => "unknown_session",
                ReportError::UnknownHost(_) => "unknown_host",
            };
            json_error(StatusCode::NOT_FOUND, kind, &error.to_string())
        }
    }
}

/// `{"host": ..., "exit"?: ..., "session"?: ..., "cooldown"?: "10m"}`.
async fn read_report(request: Request<Incoming>) -> Result<BanReport, String> {
    let body = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| "unreadable body (at most 16 KiB)".to_string())?
        .to_bytes();
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Report {
        host: String,
        exit: Option<String>,
        session: Option<String>,
        cooldown: Option<String>,
    }
    let shape = r#"expected {"host": "site.example", "exit"?: "NAME", "session"?: "ID", "cooldown"?: "10m"}"#;
    let report: Report = serde_json::from_slice(&body).map_err(|e| format!("{shape}: {e}"))?;
    let host = report_host(&report.host)
        .ok_or_else(|| format!("host {:?} is not a host name or address", report.host))?;
    let cooldown = match report.cooldown.as_deref() {
        None => None,
        Some(text) => {
            let rest = crate::units::parse_duration(text)
                .map_err(|e| format!("cooldown {text:?}: {e}"))?;
            if rest.is_zero() {
                return Err("cooldown must be above 0".into());
            }
            Some(rest)
        }
    };
    Ok(BanReport {
        exit: report.exit,
        session: report.session.map(SessionKey::Session),
        host,
        cooldown,
    })
}
