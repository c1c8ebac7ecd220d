//! Errors the proxy itself answers with. Each knows who is to blame and its status;
//! one exhaustive match turns it into a response with a JSON body
//! `{"type": "error", "error": {"type": ..., "message": ...}}`.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode};

use super::ProxyBody;
use super::body_record::{BodyRefusal, TranslationRefusal};
use crate::filter::LocalReply;
use crate::normalize::Refusal;
use crate::upstream::SendError;

/// Who caused a failure: decides logging level and, later, retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Downstream,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches {method} {path}")]
    NoRoute { method: http::Method, path: String },
    #[error("request head is {size} bytes, more than the limit of {limit}")]
    HeadTooLarge { size: usize, limit: usize },
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("could not read the request body: {reason}")]
    BadRequestBody { reason: String },
    #[error("the request body did not arrive in time (no data for {after:?}, or too slow in all)")]
    BodyTimeout { after: Duration },
    #[error("pool {pool} has no endpoint available")]
    NoEndpoint { pool: String },
    #[error("pool {pool} is at its limits")]
    Overloaded { pool: String },
    #[error("the endpoint sent no event within {after:?}")]
    FirstTokenTimeout { endpoint: String, after: Duration },
    #[error("upstream did not answer with response headers within {after:?}")]
    ResponseHeadersTimeout { endpoint: String, after: Duration },
    #[error(transparent)]
    Upstream(#[from] SendError),
    /// Ambiguous: refused rather than read one way here and another by the endpoint.
    #[error("invalid request: {0}")]
    Invalid(#[from] Refusal),
    /// The body phase (masking) refused the request or the endpoint's response.
    #[error(transparent)]
    Body(#[from] BodyRefusal),
    /// An anomaly detector blocks this client for a while.
    #[error(
        "requests from this client are refused for a while: the {detector} detector found an anomaly"
    )]
    Anomaly { detector: &'static str, status: u16 },
    /// A request the pool's API translation cannot carry (400), or an answer it cannot
    /// read (502): answered in the client's API format.
    #[error(transparent)]
    Translation(#[from] TranslationRefusal),
}

impl ProxyError {
    /// A client body error: its own timeout, or what hyper reported.
    pub fn from_body_error(error: &(dyn std::error::Error + 'static)) -> Self {
        match super::body::body_timed_out(error) {
            Some(after) => ProxyError::BodyTimeout { after },
            None => ProxyError::BadRequestBody {
                reason: error.to_string(),
            },
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadRequestBody { .. } | ProxyError::Invalid(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Body(refusal) => refusal.status(),
            ProxyError::Translation(refusal) => refusal.status,
            ProxyError::Anomaly { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::FORBIDDEN)
            }
            ProxyError::NoEndpoint { .. } | ProxyError::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::FirstTokenTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ResponseHeadersTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(error) => match error {
                SendError::ConnectTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                SendError::Saturated { .. } => StatusCode::SERVICE_UNAVAILABLE,
                SendError::Connect { .. }
                | SendError::Tls { .. }
                | SendError::Handshake { .. }
                | SendError::Exchange { .. }
                | SendError::Protocol { .. }
                | SendError::Closed { .. } => StatusCode::BAD_GATEWAY,
            },
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => "no_route",
            ProxyError::HeadTooLarge { .. } => "head_too_large",
            ProxyError::BodyTooLarge { .. } => "body_too_large",
            ProxyError::BadRequestBody { .. } => "bad_request_body",
            ProxyError::Invalid(_) => "invalid_request",
            ProxyError::Body(refusal) => refusal.kind(),
            ProxyError::Translation(_) => "translation_refused",
            ProxyError::Anomaly { .. } => "anomaly_blocked",
            ProxyError::BodyTimeout { .. } => "body_timeout",
            ProxyError::NoEndpoint { .. } => "no_endpoint",
            ProxyError::Overloaded { .. } => "overloaded",
            ProxyError::FirstTokenTimeout { .. } => "first_token_timeout",
            ProxyError::ResponseHeadersTimeout { .. } => "upstream_timeout",
            ProxyError::Upstream(error) => match error {
                SendError::Connect { .. } => "upstream_connect_failed",
                SendError::Saturated { .. } => "overloaded",
                SendError::ConnectTimeout { .. } => "upstream_connect_timeout",
                SendError::Tls { .. } => "upstream_tls_failed",
                SendError::Handshake { .. } | SendError::Protocol { .. } => {
                    "upstream_protocol_error"
                }
                // A head hyper could not parse is the same fault the fast path reports
                // as `Protocol`.
                SendError::Exchange { source, .. } if source.is_parse() => {
                    "upstream_protocol_error"
                }
                SendError::Exchange { .. } | SendError::Closed { .. } => "upstream_request_failed",
            },
        }
    }

    pub fn blame(&self) -> Blame {
        match self {
            ProxyError::NoRoute { .. }
            | ProxyError::HeadTooLarge { .. }
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::BadRequestBody { .. }
            | ProxyError::Invalid(_)
            | ProxyError::Anomaly { .. }
            | ProxyError::BodyTimeout { .. } => Blame::Downstream,
            ProxyError::NoEndpoint { .. }
            | ProxyError::Overloaded { .. }
            | ProxyError::FirstTokenTimeout { .. }
            | ProxyError::ResponseHeadersTimeout { .. }
            | ProxyError::Upstream(_) => Blame::Upstream,
            ProxyError::Body(refusal) if refusal.status().is_server_error() => Blame::Upstream,
            ProxyError::Body(_) => Blame::Downstream,
            ProxyError::Translation(refusal) if refusal.status.is_server_error() => Blame::Upstream,
            ProxyError::Translation(_) => Blame::Downstream,
        }
    }

    pub fn to_response(&self) -> Response<ProxyBody> {
        if let ProxyError::Translation(refusal) = self {
            // The client's own API format, which its SDK parses.
            let mut response = Response::new(ProxyBody::full(refusal.body()));
            *response.status_mut() = refusal.status;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return response;
        }
        let mut response = json_error(self.status(), self.kind(), &self.to_string());
        if matches!(
            self,
            ProxyError::NoEndpoint { .. }
                | ProxyError::Overloaded { .. }
                | ProxyError::Upstream(SendError::Saturated { .. })
        ) {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ProxyError::Invalid(_) = self {
            // What else the client sent on this connection cannot be trusted either.
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A JSON error response in the shape every Junction error uses.
pub fn json_error(status: StatusCode, kind: &str, message: &str) -> Response<ProxyBody> {
    LocalReply::json_error(status, kind, message).into()
}

/// How the hyper engine (and the fast engine's writer of proxy-made replies) renders a
/// filter's reply.
impl From<LocalReply> for Response<ProxyBody> {
    fn from(reply: LocalReply) -> Self {
        let mut response = Response::new(ProxyBody::full(reply.body));
        *response.status_mut() = reply.status;
        *response.headers_mut() = reply.headers;
        response
    }
}
