//! A route's masking settings at run time: the masker, the directions it applies to,
//! and what happens to a body it cannot read (fail closed unless told otherwise).

use std::sync::Arc;

use super::Masker;

/// Largest body masked by default; a larger one is an error (`on_error`).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// What happens to a body that cannot be masked: not parseable, over `max_body`, or
/// compressed in a way that is refused. Counted either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// Refuse the request (or end the response): fail closed.
    #[default]
    Refuse,
    /// Pass the body on unmasked.
    Pass,
}

/// What happens to a compressed body (`Content-Encoding`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compressed {
    /// Refuse it: never passed on unmasked in silence.
    #[default]
    Refuse,
    /// Decode it, mask, and send it on decoded.
    Decode,
}

/// The masking settings of one route.
#[derive(Clone, Debug)]
pub struct Policy {
    pub masker: Arc<Masker>,
    /// Mask request bodies (before they go upstream).
    pub request: bool,
    /// Mask response bodies (and restore pseudonyms in them).
    pub response: bool,
    pub on_error: OnError,
    /// Largest body masked, in bytes.
    pub max_body: usize,
    pub compressed: Compressed,
}

impl Policy {
    /// Request bodies masked with every built-in type redacted; fail closed.
    pub fn new(masker: Arc<Masker>) -> Policy {
        Policy {
            masker,
            request: true,
            response: false,
            on_error: OnError::Refuse,
            max_body: DEFAULT_MAX_BODY,
            compressed: Compressed::Refuse,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(Arc::new(Masker::default()))
    }
}
