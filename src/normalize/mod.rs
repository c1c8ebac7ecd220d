//! Message normalisation: the one place that decides what an ambiguous message means,
//! for every engine alike: a request's `Connection` list, `Host` and path (made
//! unambiguous before routing and filters see it, or refused), a response's framing.

pub mod connection;
pub mod host;
pub mod path;
pub mod response;

pub use connection::ConnectionTokens;
pub use path::NormalPath;

/// Whether a request with this method may be sent again with the same effect (RFC 9110
/// 9.2.2): a retry, a replay on a fresh connection, a failover may repeat it.
pub fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Why a request was refused as ambiguous (answered 400, connection closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the Connection header names {0}, which the request cannot do without (framing or routing)"
    )]
    ConnectionNamesEssential(&'static str),
    #[error("an HTTP/1.1 request must carry a Host header")]
    MissingHost,
    #[error("the request carries more than one Host header")]
    DuplicateHost,
    #[error("the Host header is not a valid host[:port]")]
    InvalidHost,
    #[error("the request target names another host than the Host header")]
    HostMismatch,
    #[error("the request target carries user information")]
    Userinfo,
    #[error("the path has a malformed percent-encoding")]
    BadPercentEncoding,
    #[error("the path encodes a NUL byte")]
    EncodedNul,
    #[error("the path has a percent-encoded dot segment")]
    EncodedDotSegment,
    #[error("the path has an encoded '/' or '\\' (the route does not allow them)")]
    EncodedSlash,
}

impl Refusal {
    /// The `rule` label of `junction_security_decisions_total` for this refusal.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::ConnectionNamesEssential(_) => "normalize connection",
            Refusal::MissingHost
            | Refusal::DuplicateHost
            | Refusal::InvalidHost
            | Refusal::HostMismatch
            | Refusal::Userinfo => "normalize host",
            Refusal::BadPercentEncoding
            | Refusal::EncodedNul
            | Refusal::EncodedDotSegment
            | Refusal::EncodedSlash => "normalize path",
        }
    }
}
