//! The request pipeline: a route's policies are small [`Filter`]s, each with phases,
//! built once into a [`FilterChain`] when the plan is compiled. The order of phases is
//! written in one place, [`handler`]:
//!
//! ```text
//! read head ─▶ route match ─▶ on_request (each filter, in order; any may answer)
//!          ─▶ request body phase (masking, whole body) ─▶ pick endpoint ─▶ forward
//!          ─▶ on_response (each filter) ─▶ response body phase (streaming) ─▶ on_done (each filter, when the response body has ended or was dropped)
//! ```

pub(crate) mod affinity;
pub(crate) mod attempts;
pub(crate) mod body;
pub mod body_phase;
pub mod body_record;
pub mod detection;
pub(crate) mod entry;
mod error;
pub(crate) mod exchange;
pub(crate) mod forwarding;
pub mod handler;
mod header_rules;
pub(crate) mod model_map;
pub(crate) mod response_head;
pub(crate) mod versioning;

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;

pub use crate::filter::{
    BudgetHold, BudgetKey, Filter, FilterChain, FilterFuture, Flow, HeaderEdits, LocalReply,
    RequestCtx, RequestView, Standing, budget, head,
};
pub use body::{BoxError, ProxyBody, UpstreamStream};
pub use error::{Blame, ProxyError, json_error};
pub use exchange::{Exchange, LogFacts};
pub use forwarding::client_ip;
pub use header_rules::HeaderRules;

use crate::config::Plan;
use crate::server::Gateway;

/// Per-connection context shared by every request on a downstream connection.
pub struct Downstream {
    pub gateway: Arc<Gateway>,
    pub peer: SocketAddr,
    /// The listener's name: how a request finds its listener in the plan.
    pub listener: Arc<str>,
    pub tls: bool,
    /// The plan when the connection was accepted; used if a reload removed the listener.
    pub accepted_under: Arc<Plan>,
    /// The peer's address as a header value, formatted once per connection.
    pub peer_header: HeaderValue,
}

impl Downstream {
    pub fn new(
        gateway: Arc<Gateway>,
        accepted_under: Arc<Plan>,
        peer: SocketAddr,
        listener: Arc<str>,
        tls: bool,
    ) -> Self {
        let peer_header = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        Downstream {
            gateway,
            peer,
            listener,
            tls,
            accepted_under,
            peer_header,
        }
    }

    /// Whether `token` is the running plan's admin token (`x-junction-admin-token`).
    pub fn is_admin_token(&self, token: &[u8]) -> bool {
        let plan = self.gateway.plan();
        plan.admin_token
            .as_deref()
            .is_some_and(|expected| crate::security::constant_time_eq(expected.as_bytes(), token))
    }

    /// The plan this connection's requests run on: the current one, or, when a reload
    /// removed the connection's listener, the plan it was accepted under (to finish on).
    pub fn plan(&self) -> Arc<Plan> {
        let current = self.gateway.plan();
        if current.listener(&self.listener).is_some() {
            current
        } else {
            self.accepted_under.clone()
        }
    }
}
