//! Header inspection: ordered rules (`{ header, matches, action = deny | tag | log }`),
//! required headers, limits on header count and size, and a built-in list of scanner
//! and bad-bot signatures turned on with `block_scanners = true`.

use http::{HeaderName, HeaderValue, StatusCode};
use regex::Regex;
use serde_json::json;

use super::Recorder;
pub use crate::filter::head::X_JUNCTION_TAG;
use crate::filter::{Filter, Flow, HeaderEdits, RequestCtx, RequestView};

/// User agents of vulnerability scanners and abusive crawlers (case-insensitive). Kept
/// short and specific so that real clients never match.
pub const SCANNER_SIGNATURES: &str = r"(?i)sqlmap|nikto|nmap|masscan|zgrab|nuclei|acunetix|netsparker|wpscan|dirbuster|gobuster|feroxbuster|whatweb|openvas|nessus|w3af|havij|commix|jaeles|fimap";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderAction {
    Deny,
    /// Adds `x-junction-tag: NAME` to the request sent upstream.
    Tag,
    Log,
}

pub struct HeaderRule {
    pub name: String,
    pub header: HeaderName,
    pub matches: Regex,
    pub action: HeaderAction,
}

pub struct HeaderInspection {
    pub rules: Vec<HeaderRule>,
    pub require: Vec<HeaderName>,
    pub max_count: Option<usize>,
    pub max_bytes: Option<usize>,
    pub recorder: Recorder,
}

impl Filter for HeaderInspection {
    fn name(&self) -> &'static str {
        "header_inspection"
    }

    fn on_request(
        &self,
        ctx: &mut RequestCtx,
        head: &dyn RequestView,
        edits: &mut HeaderEdits,
    ) -> Flow {
        if let Some(max) = self.max_count.filter(|&max| head.header_count() > max) {
            let message = format!("too many headers ({} > {max})", head.header_count());
            return self.recorder.refuse(
                ctx,
                "max_header_count",
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                &message,
            );
        }
        if let Some(max) = self.max_bytes {
            let size = head.header_bytes();
            if size > max {
                let message = format!("request headers are {size} bytes, more than {max}");
                return self.recorder.refuse(
                    ctx,
                    "max_header_bytes",
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "headers_too_large",
                    &message,
                );
            }
        }
        for name in &self.require {
            if head.first(name).is_none() {
                let message = format!("the {name} header is required");
                return self.recorder.refuse(
                    ctx,
                    &format!("require {name}"),
                    StatusCode::BAD_REQUEST,
                    "missing_header",
                    &message,
                );
            }
        }
        for rule in &self.rules {
            let hit = head.any_value(&rule.header, &mut |v| {
                rule.matches.is_match(&String::from_utf8_lossy(v))
            });
            if !hit {
                continue;
            }
            match rule.action {
                HeaderAction::Deny => {
                    let message = format!("refused by header rule {:?}", rule.name);
                    return self.recorder.refuse(
                        ctx,
                        &rule.name,
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        &message,
                    );
                }
                HeaderAction::Tag => {
                    self.recorder
                        .decide(ctx, &rule.name, "tag", json!(rule.header.as_str()));
                    if let Ok(value) = HeaderValue::from_str(&rule.name) {
                        edits.append(&X_JUNCTION_TAG, value);
                    }
                }
                HeaderAction::Log => {
                    self.recorder
                        .decide(ctx, &rule.name, "log", json!(rule.header.as_str()));
                    tracing::info!(rule = %rule.name, route = %ctx.route, client = %ctx.client_ip, "header rule matched");
                }
            }
        }
        Flow::Continue
    }
}
