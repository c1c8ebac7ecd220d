//! Security filters: client address allow/deny lists, header inspection (rules, required
//! headers, size limits, a built-in scanner list) and API keys stored as SHA-256 hashes.
//! Every refusal is a JSON error, counted by rule in metrics and written to the audit log.

pub mod audit;
pub mod client_slots;
mod headers;
mod ip_lists;
mod keys;
pub mod limit_usage;
pub mod rate_limit;
pub mod shared_limits;

use std::sync::Arc;

use http::StatusCode;
use serde_json::json;

pub use headers::{HeaderAction, HeaderInspection, HeaderRule, SCANNER_SIGNATURES, X_JUNCTION_TAG};
pub use ip_lists::AccessList;
pub use keys::{ApiKey, ApiKeys, hash_key};

use crate::filter::{Flow, LocalReply, RequestCtx};
use crate::telemetry::Telemetry;

/// Compares secrets without stopping at the first differing byte, so the time taken
/// does not tell an attacker how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What security filters need besides the request: where to count and record decisions.
#[derive(Clone)]
pub struct Recorder {
    pub telemetry: Arc<Telemetry>,
    pub audit: Arc<audit::AuditLog>,
}

impl Recorder {
    /// Counts a decision of `rule` and, for refusals, writes it to the audit log.
    fn decide(
        &self,
        ctx: &RequestCtx,
        rule: &str,
        action: &'static str,
        detail: serde_json::Value,
    ) {
        self.telemetry.metrics.count_decision(rule, action);
        if action == "deny" || action == "unauthorized" {
            self.audit.record(
                action,
                json!({ "rule": rule, "route": &*ctx.route, "client_ip": ctx.client_ip.to_string(), "detail": detail }),
            );
        }
    }

    fn refuse(
        &self,
        ctx: &RequestCtx,
        rule: &str,
        status: StatusCode,
        kind: &str,
        message: &str,
    ) -> Flow {
        let action = if status == StatusCode::UNAUTHORIZED {
            "unauthorized"
        } else {
            "deny"
        };
        self.decide(ctx, rule, action, json!(message));
        Flow::Respond(Box::new(LocalReply::json_error(status, kind, message)))
    }
}
