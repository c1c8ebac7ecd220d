//! What the pipeline makes of an endpoint's response on the way to the client, for both
//! engines: when the client's head waits for the first byte of the body, and the 502
//! for a body that broke before it. The head's own rules are `normalize::response`'s.

use super::ProxyError;
use crate::llm::ReplyKind;
use crate::upstream::{Endpoint, SendError};

/// Whether the client's head waits for the first byte of the body (or its end), so that
/// a body that breaks at once is answered with a 502 rather than a cut reply. Event
/// streams send their head at once: clients wait on it while the model starts.
pub fn holds_head(kind: ReplyKind) -> bool {
    kind != ReplyKind::EventStream
}

/// The answer to a body that failed before the client's head was written: a 502 that
/// says whether the endpoint sent a malformed body or cut it (or stalled).
pub fn unanswered(endpoint: &Endpoint, reason: String, malformed: bool) -> ProxyError {
    ProxyError::Upstream(if malformed {
        SendError::Protocol {
            endpoint: endpoint.url.clone(),
            reason: "invalid response body framing",
        }
    } else {
        SendError::Closed {
            endpoint: endpoint.url.clone(),
            reason,
        }
    })
}

/// Whether hyper's error on a response body is bad framing (a chunk size that is not
/// one, say) rather than a cut: hyper reports those as invalid-input I/O errors.
pub fn is_malformed(error: &hyper::Error) -> bool {
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            );
        }
        cause = current.source();
    }
    false
}
