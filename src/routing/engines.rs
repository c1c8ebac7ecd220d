//! Which engine serves a route, decided once when the plan is compiled from what the
//! route needs, not from a hand-kept list at request time. Every policy runs on both
//! engines (the core makes the decisions); what remains the hyper engine's alone is
//! what the hand-written HTTP/1.1 engine does not speak.

use super::Route;
use crate::upstream::Pool;

/// Largest request body the HTTP/1.1 engine holds whole (it is read before the request
/// is sent, so it can be sent again and its `model` read): the default
/// `request_buffer_bytes`, which holds a chat request with a long prompt.
pub const HTTP1_BODY_LIMIT: u64 = 1 << 20;

/// What the HTTP/1.1 engine can do for a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engines {
    /// Requests whose body (held whole) is at most this long.
    Http1 { body_limit: u64 },
    /// Hyper serves every request of the route, for this reason.
    HyperOnly(&'static str),
}

impl Default for Engines {
    fn default() -> Self {
        Engines::HyperOnly("not classified")
    }
}

impl Engines {
    /// Whether the HTTP/1.1 engine takes a request with this much body.
    pub fn http1_takes(&self, content_length: u64) -> bool {
        matches!(*self, Engines::Http1 { body_limit } if content_length <= body_limit)
    }

    /// Works out what the route needs. Every field of `Route` is named here (no `..`),
    /// so a new field does not compile until someone decides whether the HTTP/1.1
    /// engine can serve it.
    pub fn of(route: &Route) -> Engines {
        let Route {
            name: _,
            matcher: _,
            targets,
            // Splits, sticky keys, the cookie and overrides: the core's `choose_target`.
            control: _,
            sticky: _,
            set_cookie: _,
            override_from: _,
            // The core's `mirror_body_limit` and `send_shadow` (hyper's client sends
            // the copy on its own task, whichever engine served the request).
            mirror: _,
            // Connect, head, idle and total on both; the first-token wait on the
            // HTTP/1.1 engine is `Connection::first_token`.
            timeouts: _,
            // The core's `Attempts`, with the body held whole.
            retries: _,
            // Every filter reads a `RequestView` and writes `HeaderEdits`.
            filters: _,
            reads_request_facts: _,
            // Answered with 413 by either engine.
            max_body_bytes: _,
            // Paths with encoded slashes are handed to hyper per request.
            allow_encoded_slashes: _,
            request_buffering,
            request_buffer_bytes,
            retry_connect_errors: _,
            // The core's body phase; both engines hold request bodies whole and run
            // response bodies through it piece by piece.
            mask: _,
            engines: _,
        } = route;
        for target in targets {
            let fallback = target.pool.fallback();
            let pools = std::iter::once(&target.pool).chain(fallback.as_ref());
            if let Some(reason) = pools.filter_map(|pool| pool_needs_hyper(pool)).next() {
                return Engines::HyperOnly(reason);
            }
        }
        // Without buffering, a body streams as it comes: the hyper engine does that.
        let body_limit = if *request_buffering {
            (*request_buffer_bytes).min(HTTP1_BODY_LIMIT)
        } else {
            0
        };
        Engines::Http1 { body_limit }
    }
}

/// Why a pool's endpoints need the hyper client, if they do: the fast engine writes
/// HTTP/1.1 only, over TCP, TLS, a dialer's stream, within connection limits.
fn pool_needs_hyper(pool: &Pool) -> Option<&'static str> {
    (!pool.client.speaks_http1()).then_some("pool protocol")
}
