//! The route's filters around one request, run the same way by both engines: the
//! request phase on the head, the response phase on the answer's head. Their context
//! lives in the exchange from the start, so `on_done` settles what they reserved however
//! the request ends.

use std::net::IpAddr;

use super::{Exchange, Flow, HeaderEdits, RequestCtx, RequestView};
use crate::llm::RequestFacts;
use crate::routing::Route;

/// The route's request filters on the head (`edits` collects their header changes).
///
/// Their context goes into the exchange before they run, not once an answer came, so
/// `on_done` sees every end of the request: a token budget reserved here is settled
/// also when a later filter refuses the request, when it fails before any answer, and
/// when its client leaves first (each limit decides what such an end costs).
pub(crate) async fn on_request(
    route: &Route,
    exchange: &mut Exchange,
    client_ip: IpAddr,
    facts: Option<&RequestFacts>,
    head: &(dyn RequestView + Sync),
    edits: &mut HeaderEdits,
) -> Flow {
    if route.filters.is_empty() {
        return Flow::Continue;
    }
    let started = exchange.started();
    let client_identity = exchange.client_identity.clone();
    // Made in place: the context is a few hundred bytes, and it stays where it is.
    let ctx = exchange
        .done
        .insert(RequestCtx::new(route.name.clone(), client_ip, started));
    ctx.set_facts(facts);
    ctx.client_identity = client_identity;
    let flow = route.filters.run_request(ctx, head, edits).await;
    exchange.key_name = ctx.key_name.clone();
    flow
}

/// The filters' response phase on the answer's head from `endpoint` (`edits` collects
/// their header changes).
pub(crate) fn on_response(
    route: &Route,
    exchange: &mut Exchange,
    endpoint: &std::sync::Arc<str>,
    status: Option<http::StatusCode>,
    edits: &mut HeaderEdits,
) {
    if let Some(ctx) = exchange.done.as_mut() {
        ctx.endpoint = Some(endpoint.clone());
        ctx.status = status;
        if route.filters.edits_responses {
            route.filters.on_response(ctx, edits);
        }
    }
}
