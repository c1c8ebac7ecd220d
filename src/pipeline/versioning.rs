//! Which side of a route's split serves a request (a forced version from a trusted
//! client, the sticky key, or the split's rotation), and shadow copies of requests to a
//! mirror pool, sent on the side so they never delay or fail the real request.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, request};
use tokio::time::Instant;

use std::net::IpAddr;

use super::affinity::affinity_of;
use super::{Downstream, RequestView, forwarding};
use crate::balance::{SplitMix, stable_hash};
use crate::routing::GatewayListener;
use crate::routing::Route;
use crate::upstream::UpstreamBody;

pub static X_JUNCTION_VERSION: HeaderName = HeaderName::from_static("x-junction-version");
pub static X_JUNCTION_ADMIN_TOKEN: HeaderName = HeaderName::from_static("x-junction-admin-token");

/// The chosen target and, for a new sticky browser, the cookie to set.
pub struct Choice {
    pub target: usize,
    pub set_cookie: Option<HeaderValue>,
}

/// Chooses the route's target. `x-junction-version` is honoured from clients in the
/// route's `override_from`, or with the admin token in `x-junction-admin-token`; both
/// headers are Junction's own and never reach an endpoint (each engine drops them).
pub fn choose_target(
    route: &Route,
    head: &dyn RequestView,
    client_ip: IpAddr,
    is_admin_token: &dyn Fn(&[u8]) -> bool,
    rng: &SplitMix,
) -> Choice {
    let mut choice = Choice {
        target: 0,
        set_cookie: None,
    };
    let Some(control) = &route.control else {
        return choice;
    };

    if let Some(version) = head.first(&X_JUNCTION_VERSION) {
        let trusted = route
            .override_from
            .iter()
            .any(|net| net.contains(&client_ip));
        let admin = head
            .first(&X_JUNCTION_ADMIN_TOKEN)
            .is_some_and(is_admin_token);
        if trusted || admin {
            if let Some(i) = route
                .targets
                .iter()
                .position(|t| t.pool.version.as_deref().map(str::as_bytes) == Some(version))
            {
                choice.target = i;
                return choice;
            }
        } else {
            tracing::debug!(route = %route.name, client = %client_ip, "x-junction-version ignored: client not trusted");
        }
    }

    let mut key = route
        .sticky
        .as_ref()
        .and_then(|sticky| affinity_of(sticky, head, || client_ip));
    if key.is_none()
        && let Some(cookie) = &route.set_cookie
    {
        // A new browser: give it an id to keep from now on.
        let id = format!("{:016x}", rng.next_u64());
        key = Some(stable_hash(id.as_bytes()));
        choice.set_cookie =
            HeaderValue::from_str(&format!("{cookie}={id}; Path=/; HttpOnly; SameSite=Lax")).ok();
    }
    choice.target = control.split.pick(key).unwrap_or(0);
    choice
}

/// Whether this request is one the route copies to its mirror pool, and if so the
/// largest body copied (a larger one is not copied). Counts the request either way.
pub fn mirror_body_limit(route: &Route) -> Option<u64> {
    let mirror = route.mirror.as_ref()?;
    mirror.takes_next().then(|| route.mirror_body_limit())
}

/// Sends a copy of the request to the route's mirror pool on its own task; its answer
/// is read and dropped, its status and latency recorded as shadow metrics.
pub fn send_shadow(
    route: &Arc<Route>,
    head: &request::Parts,
    body: Bytes,
    downstream: &Downstream,
    listener: &GatewayListener,
) {
    let Some(mirror) = &route.mirror else { return };
    let pool = &mirror.pool;
    let skip = |i: usize| !pool.endpoints[i].state.health.is_available() || !pool.has_room(i);
    let Some(index) = pool.balancer.pick(&pool.endpoints, None, &skip) else {
        return;
    };
    let endpoint = pool.endpoints[index].clone();
    let mut copy = Request::new(()).into_parts().0;
    copy.method = head.method.clone();
    copy.uri = head.uri.clone();
    copy.version = head.version;
    copy.headers = head.headers.clone();
    // The mirror pool's `model_map`, as for any pool a request goes to.
    let body = match super::model_map::mapped_body(pool, &body) {
        Some(mapped) => {
            copy.headers
                .insert(http::header::CONTENT_LENGTH, mapped.len().into());
            mapped
        }
        None => body,
    };
    // And its `api`: a copy that cannot be translated is not sent.
    let body = match super::translation::mirror_copy(pool, &mut copy, &body) {
        Some(Ok(translated)) => translated,
        Some(Err(_)) => return,
        None => body,
    };
    forwarding::prepare_request(&mut copy, downstream, listener, pool, &endpoint, false);
    let route = route.clone();
    let timeouts = route.timeouts;
    tokio::spawn(async move {
        let Some(mirror) = &route.mirror else { return };
        let in_flight = endpoint.state.begin();
        let started = Instant::now();
        let request = Request::from_parts(copy, crate::upstream::RequestBody::full(body));
        let sent = tokio::time::timeout(
            timeouts.response_headers,
            mirror
                .pool
                .client
                .send(&endpoint, request, timeouts.connect),
        )
        .await;
        let status = match sent {
            Ok(Ok(sent)) => {
                let status = sent.response.status().as_u16();
                let (_, body) = UpstreamBody::new(sent);
                // Read to the end (within the total timeout) so the connection is reused.
                let limit = timeouts.total.unwrap_or(timeouts.response_headers);
                let _ = tokio::time::timeout(limit, body.collect()).await;
                status
            }
            Ok(Err(_)) => 502,
            Err(_) => 504,
        };
        drop(in_flight);
        let telemetry = &mirror.telemetry;
        telemetry.endpoint_counts(&endpoint).add(status);
        telemetry.metrics.duration.observe(started.elapsed());
        telemetry
            .metrics
            .window
            .record(started.elapsed(), status >= 500);
    });
}
