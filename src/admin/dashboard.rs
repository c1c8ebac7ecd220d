//! The dashboard: a hand-written page (HTML, CSS, JS embedded from `dashboard/`) at `/`,
//! and `GET /api/dashboard`, everything the page shows in one answer so that an open page
//! costs one request a second. Built from what the other admin endpoints already answer.

use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use super::json_response;
use crate::pipeline::ProxyBody;
use crate::server::Gateway;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_CSS: &str = include_str!("dashboard/app.css");
const APP_JS: &str = include_str!("dashboard/app.js");
const ICON_SVG: &str = include_str!("dashboard/icon.svg");

/// No inline script or style, nothing from elsewhere, never inside a frame: a page that
/// holds the admin token in its storage must not run anyone else's code.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// The page's file at `path`, with its content type.
fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some((INDEX_HTML, "text/html; charset=utf-8")),
        "/assets/app.css" => Some((APP_CSS, "text/css; charset=utf-8")),
        "/assets/app.js" => Some((APP_JS, "text/javascript; charset=utf-8")),
        "/assets/icon.svg" | "/favicon.ico" => Some((ICON_SVG, "image/svg+xml")),
        _ => None,
    }
}

/// The page's file at `path` with its security headers, if `path` is one.
pub fn page(path: &str) -> Option<Response<ProxyBody>> {
    let (body, content_type) = asset(path)?;
    let mut response = Response::new(ProxyBody::full(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new binary brings new files under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(response)
}

/// Metric families the page shows as tables: there is no JSON API for them, and
/// reading them off `/metrics` keeps one definition of each figure.
const TABLE_FAMILIES: &[&str] = &[
    "junction_errors_total",
    "junction_fallback_hops_total",
    "junction_security_decisions_total",
    "junction_masking_findings_total",
    "junction_masking_passed_total",
    "junction_masking_cache_lookups_total",
    "junction_anomalies_total",
    "junction_anomaly_clients",
    "junction_capture_flows_total",
    "junction_egress_requests_total",
    "junction_egress_open_tunnels",
];

/// Keys per rate limit, sites per exit and sessions per egress listener the page lists
/// (the most spent, resting longest, most recent): a table an operator reads at a glance.
const PAGE_TOP: usize = 10;

/// `GET /api/dashboard`: `/api/stats`, `/api/pools`, every split and canary, cumulative
/// counts with the TTFT histogram per route and version (the page takes differences
/// between polls), the tabled metric families, and `/api/limits` and `/api/egress` with
/// shorter lists.
pub fn snapshot(gateway: &Arc<Gateway>) -> Response<ProxyBody> {
    let plan = gateway.plan();
    let splits: Vec<Value> = plan
        .route_controls()
        .iter()
        .map(|control| {
            let mut view = super::control::split_view(control);
            view["canary"] = super::control::canary_view(control).unwrap_or(Value::Null);
            view
        })
        .collect();
    let text = super::metrics::render(&gateway.telemetry, &plan);
    let generated_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json_response(
        StatusCode::OK,
        &json!({
            "generated_at_ms": generated_at_ms,
            "stats": super::stats(gateway),
            "totals": totals(gateway),
            "pools": super::pools(gateway)["pools"].take(),
            "splits": splits,
            "tables": tables(&text),
            "limits": super::limits::view(&plan, PAGE_TOP)["routes"].take(),
            "egress": super::egress::view(&plan, PAGE_TOP)["egress"].take(),
        }),
    )
}

/// Requests so far and the TTFT histogram (non-cumulative buckets, upper bounds in
/// seconds, `null` for +Inf), per route and version, summed over the version's pools.
fn totals(gateway: &Gateway) -> Vec<Value> {
    use std::collections::BTreeMap;
    struct Sum {
        requests: u64,
        ttft_count: u64,
        ttft: Vec<(f64, u64)>,
    }
    let routes = gateway.telemetry.metrics.all_routes();
    let mut sums: BTreeMap<(&str, &str), Sum> = BTreeMap::new();
    for metrics in routes.iter().filter(|m| !m.shadow) {
        let (_, requests, _) = metrics.duration.snapshot();
        let (_, ttft_count, ttft) = metrics.time_to_first_token.snapshot();
        let sum = sums
            .entry((&metrics.route, &metrics.version))
            .or_insert(Sum {
                requests: 0,
                ttft_count: 0,
                ttft: ttft.iter().map(|(bound, _)| (*bound, 0)).collect(),
            });
        sum.requests += requests;
        sum.ttft_count += ttft_count;
        // Every route shares the configured buckets; a reload that changed them leaves
        // the old series' counts out rather than misplacing them.
        if sum.ttft.len() == ttft.len() {
            for (total, (_, count)) in sum.ttft.iter_mut().zip(ttft) {
                total.1 += count;
            }
        }
    }
    sums.into_iter()
        .map(|((route, version), sum)| {
            let buckets: Vec<Value> = sum
                .ttft
                .iter()
                .map(|(bound, count)| json!([bound.is_finite().then_some(*bound), count]))
                .collect();
            json!({
                "route": route,
                "version": version,
                "requests": sum.requests,
                "ttft_count": sum.ttft_count,
                "ttft_buckets": buckets,
            })
        })
        .collect()
}

/// The samples of `TABLE_FAMILIES` in the Prometheus text: `{family: [{labels, value}]}`.
fn tables(text: &str) -> Value {
    let mut families = serde_json::Map::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        if !TABLE_FAMILIES.contains(&name) {
            continue;
        }
        let rows = families
            .entry(name.to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(rows) = rows {
            rows.push(json!({ "labels": labels, "value": value }));
        }
    }
    Value::Object(families)
}

/// One sample line: `name{label="value",...} number`.
fn sample(line: &str) -> Option<(&str, serde_json::Map<String, Value>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, mut rest) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let mut labels = serde_json::Map::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        // The value ends at the first quote not escaped by a backslash.
        let mut text = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()? {
                    (_, 'n') => text.push('\n'),
                    (_, other) => text.push(other),
                },
                (i, '"') => break i,
                (_, other) => text.push(other),
            }
        };
        labels.insert(key.trim_start_matches(',').to_string(), Value::String(text));
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_escaped_labels() {
        let (name, labels, value) =
            sample(r#"junction_errors_total{route="a \"b\"",kind="x\\y"} 3"#).unwrap();
        assert_eq!(name, "junction_errors_total");
        assert_eq!(labels["route"], "a \"b\"");
        assert_eq!(labels["kind"], "x\\y");
        assert_eq!(value, 3.0);
        let (name, labels, value) = sample("junction_egress_open_tunnels 0").unwrap();
        assert_eq!(
            (name, labels.len(), value),
            ("junction_egress_open_tunnels", 0, 0.0)
        );
        assert!(sample("garbage").is_none());
    }

    #[test]
    fn the_page_and_its_files_are_served_with_the_policy() {
        for path in ["/", "/index.html", "/assets/app.css", "/assets/app.js"] {
            let response = page(path).unwrap();
            assert_eq!(
                response.headers()[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(
                response.headers()[header::X_CONTENT_TYPE_OPTIONS],
                "nosniff"
            );
        }
        assert!(page("/api/stats").is_none());
        let total = INDEX_HTML.len() + APP_CSS.len() + APP_JS.len() + ICON_SVG.len();
        assert!(total < 200 * 1024, "the page's files are {total} bytes");
    }
}
