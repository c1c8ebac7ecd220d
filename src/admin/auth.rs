//! The admin token: which calls need it (every changing one, and a captured flow's
//! bodies; the read-only ones too with `read_requires_token`; never the probes) and the
//! check of `Authorization: Bearer`.

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use crate::config::Plan;
use crate::pipeline::{ProxyBody, json_error};
use crate::server::Gateway;

/// Whether a call to `path` (with `query`) with `method` must present the admin token.
pub fn needed(method: &Method, path: &str, query: Option<&str>, plan: &Plan) -> bool {
    if matches!(path, "/healthz" | "/readyz") {
        // Load balancers and orchestrators probe without secrets.
        return false;
    }
    // One flow whole holds its bodies: what the proxy saw of prompts and answers. A
    // list filtered on bodies (`~b`) tells as much, a guess at a time: a count of
    // matches answers yes or no.
    let bodies = path
        .strip_prefix("/api/flows/")
        .is_some_and(|id| !id.is_empty() && id != "tail")
        || (matches!(path, "/api/flows" | "/api/flows/tail") && filters_bodies(query));
    let reads = method == Method::GET || method == Method::HEAD;
    !reads || bodies || plan.admin_read_requires_token
}

/// Whether the `filter` parameter of a flow listing reads bodies (one that does not
/// parse is refused by the listing itself).
fn filters_bodies(query: Option<&str>) -> bool {
    let params = super::flows::query_params(query);
    super::flows::param(&params, "filter")
        .and_then(|text| crate::inspect::filter::Filter::parse(text).ok())
        .is_some_and(|filter| filter.reads_bodies())
}

/// Refuses a call without the admin token: 403 when none is configured (nothing can
/// authorise it), 401 when it is missing or wrong. Refusals go to the audit log.
pub fn authorise(
    request: &Request<Incoming>,
    gateway: &Gateway,
) -> Result<(), Box<http::Response<ProxyBody>>> {
    let plan = gateway.plan();
    let path = request.uri().path();
    let Some(expected) = plan.admin_token.as_deref() else {
        tracing::warn!(target: "audit", %path, "admin call refused: no admin token is configured");
        gateway.audit.record(
            "admin_refused",
            serde_json::json!({ "path": path, "method": request.method().as_str(), "rule": "admin_token_not_set" }),
        );
        return Err(Box::new(json_error(
            StatusCode::FORBIDDEN,
            "admin_token_not_set",
            "this call needs the admin token; set it in [admin] token_file, or in the environment variable named by [admin] token_env (JUNCTION_ADMIN_TOKEN)",
        )));
    };
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let matches = presented.is_some_and(|token| {
        crate::security::constant_time_eq(token.as_bytes(), expected.as_bytes())
    });
    if matches {
        return Ok(());
    }
    tracing::warn!(target: "audit", %path, "admin call refused: missing or wrong bearer token");
    gateway.audit.record(
        "admin_refused",
        serde_json::json!({ "path": path, "method": request.method().as_str(), "rule": "bearer_token" }),
    );
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid `Authorization: Bearer <admin token>` header is required",
    );
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    Err(Box::new(response))
}
