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
pub(crate) mod include_usage;
pub(crate) mod model_map;
pub(crate) mod request_filters;
pub(crate) mod response_head;
pub(crate) mod translation;
mod tunnel;
pub(crate) mod versioning;
pub(crate) mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

use crate::acme::Http01Answers;
use crate::balance::SplitMix;
use crate::routing::GatewayListener;
use crate::security::audit::AuditLog;
use crate::telemetry::Telemetry;

/// What the engines use of the running gateway: its telemetry, audit log and random
/// numbers, whether it is draining, and the listeners of the plan in force. The server's
/// `Gateway` is one; the engines know it only by this, so they sit below the server.
pub trait GatewayState: Send + Sync {
    fn telemetry(&self) -> &Arc<Telemetry>;
    fn audit(&self) -> &Arc<AuditLog>;
    fn rng(&self) -> &SplitMix;
    /// Set once shutdown has begun; read where a response head is written.
    fn draining_flag(&self) -> &AtomicBool;
    fn is_draining(&self) -> bool {
        self.draining_flag().load(Ordering::Relaxed)
    }
    /// The gateway part of listener `name` in the plan in force.
    fn listener(&self, name: &str) -> Option<Arc<GatewayListener>>;
    /// Whether `token` is the plan's admin token (`x-junction-admin-token`).
    fn is_admin_token(&self, token: &[u8]) -> bool;
    /// The HTTP-01 tokens of ACME orders in flight, answered before routing.
    fn acme_answers(&self) -> &Http01Answers;
}

/// Per-connection context shared by every request on a downstream connection.
pub struct Downstream {
    pub gateway: Arc<dyn GatewayState>,
    pub peer: SocketAddr,
    /// The listener's name: how a request finds its listener in the plan.
    pub listener: Arc<str>,
    pub tls: bool,
    /// The listener when the connection was accepted; used if a reload removed it.
    pub accepted_on: Arc<GatewayListener>,
    /// The peer's address as a header value, formatted once per connection.
    pub peer_header: HeaderValue,
    /// The identity of the client's verified certificate (mTLS), if it sent one.
    pub client_identity: Option<Arc<crate::tls::ClientIdentity>>,
}

impl Downstream {
    pub fn new(
        gateway: Arc<dyn GatewayState>,
        accepted_on: Arc<GatewayListener>,
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
            accepted_on,
            peer_header,
            client_identity: None,
        }
    }

    /// The connection's client certificate identity (mTLS).
    pub fn with_identity(mut self, identity: Option<crate::tls::ClientIdentity>) -> Self {
        self.client_identity = identity.map(Arc::new);
        self
    }

    /// Whether `token` is the running plan's admin token (`x-junction-admin-token`).
    pub fn is_admin_token(&self, token: &[u8]) -> bool {
        self.gateway.is_admin_token(token)
    }

    /// The listener this connection's requests run on: as in the current plan, or, when
    /// a reload removed it, as it was when the connection was accepted (to finish on).
    pub fn current_listener(&self) -> Arc<GatewayListener> {
        self.gateway
            .listener(&self.listener)
            .unwrap_or_else(|| self.accepted_on.clone())
    }
}
