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
    /// The HTTP/1.1 engine serves the route: it holds a body of at most `hold_up_to`
    /// bytes whole, as the full path does (to buffer it, to mask it, to copy it to the
    /// mirror), and streams a longer one.
    Http1 { hold_up_to: u64 },
    /// Hyper serves every request of the route, for this reason.
    HyperOnly(&'static str),
}

/// How the HTTP/1.1 engine takes a request's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyUse {
    /// Read whole before an endpoint is asked (and so sent again if need be).
    Held,
    /// Sent to the endpoint as it arrives, once.
    Streamed,
}

impl Default for Engines {
    fn default() -> Self {
        Engines::HyperOnly("not classified")
    }
}

/// The largest request body read for prompt-injection markers; a longer one is not
/// read (and not judged).
pub const PROMPT_READ_LIMIT: usize = 1 << 20;

/// The largest request body read to add `stream_options.include_usage`
/// (`include_usage = true`); a longer one goes on as it came.
pub const STREAM_OPTIONS_READ_LIMIT: usize = 1 << 20;

impl Engines {
    /// How the HTTP/1.1 engine takes a request with this much body, if it does: the
    /// route's hold, when the engine can hold that much, or a stream.
    pub fn http1_takes(&self, content_length: u64) -> Option<BodyUse> {
        match *self {
            Engines::Http1 { hold_up_to } if content_length <= hold_up_to => {
                (content_length <= HTTP1_BODY_LIMIT).then_some(BodyUse::Held)
            }
            Engines::Http1 { .. } => Some(BodyUse::Streamed),
            Engines::HyperOnly(_) => None,
        }
    }

    /// Works out what the route needs. Every field of `Route` is named here (no `..`),
    /// so a new field does not compile until someone decides whether the HTTP/1.1
    /// engine can serve it.
    pub fn of(route: &Route) -> Engines {
        let Route {
            name: _,
            matcher: _,
            targets,
            // The core's `Attempts` walks the chain on both engines, with the body held
            // whole; each hop's pool must be one this engine can send to.
            chain,
            // Splits, sticky keys, the cookie and overrides: the core's `choose_target`.
            control: _,
            sticky: _,
            set_cookie: _,
            override_from: _,
            // The core's `mirror_body_limit` and `send_shadow` (hyper's client sends
            // the copy on its own task, whichever engine served the request); a body
            // copied is held.
            mirror,
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
            // The core's body phase on both engines: the request body held whole (up
            // to `STREAM_OPTIONS_READ_LIMIT`) gets the field, the response's usage
            // chunk is dropped by the response transform both engines run.
            include_usage,
            request_buffering,
            request_buffer_bytes,
            retry_connect_errors: _,
            // The core's body phase; both engines hold request bodies whole (up to
            // `max_body`) and run response bodies through it piece by piece.
            mask,
            // The core's body phase records flows on both engines; a request body it
            // keeps is held whole, up to `max_body`, as masking holds it.
            capture,
            // The core's detection hooks; prompts are read from the body held whole.
            anomalies,
            engines: _,
        } = route;
        // A pool's `api` translates the body held whole (`pipeline::translation`, on
        // both engines): the route holds what the HTTP/1.1 engine can. The chain's
        // hops are pools a request may go to as well.
        let mut translated = 0;
        for target in targets.iter().chain(chain.iter().map(|hop| &hop.target)) {
            let fallback = target.pool.fallback();
            let pools = std::iter::once(&target.pool).chain(fallback.as_ref());
            for pool in pools {
                if let Some(reason) = pool_needs_hyper(pool) {
                    return Engines::HyperOnly(reason);
                }
                if pool.api.is_some() {
                    translated = HTTP1_BODY_LIMIT;
                }
            }
        }
        // The largest body the full path reads whole for this route; a longer one it
        // streams (as does the HTTP/1.1 engine).
        let buffered = if *request_buffering {
            *request_buffer_bytes
        } else {
            0
        };
        // The full path holds a mirrored route's body only for the requests it
        // copies; this engine holds it for all (it decides before the split).
        let masked = mask
            .as_ref()
            .filter(|m| m.request)
            .map_or(0, |m| m.max_body);
        let mirrored = mirror.as_ref().map_or(0, |_| route.mirror_body_limit());
        let captured = capture.as_ref().map_or(0, |c| c.max_body);
        let prompts = anomalies
            .as_ref()
            .filter(|a| a.reads_prompts())
            .map_or(0, |_| PROMPT_READ_LIMIT);
        let usage = if *include_usage {
            STREAM_OPTIONS_READ_LIMIT
        } else {
            0
        };
        Engines::Http1 {
            hold_up_to: buffered
                .max(masked.max(captured).max(prompts).max(usage) as u64)
                .max(mirrored)
                .max(translated),
        }
    }
}

/// Why a pool's endpoints need the hyper client, if they do: the fast engine writes
/// HTTP/1.1 only, over TCP, TLS, a dialer's stream, within connection limits.
fn pool_needs_hyper(pool: &Pool) -> Option<&'static str> {
    (!pool.client.speaks_http1()).then_some("pool protocol")
}
