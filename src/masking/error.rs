//! Why a body could not be masked. The proxy fails closed on every one of these (the
//! body is refused unless the route says `on_error = "pass"`), so each names a cause
//! and a byte offset at most: never a value of the body.

use super::Blocked;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not valid JSON (at byte {offset})")]
    NotJson { offset: usize },
    #[error("the body's JSON nests deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("the body is not UTF-8 text (at byte {offset})")]
    NotText { offset: usize },
    #[error("the body is larger than the {limit} bytes that can be masked")]
    TooLarge { limit: usize },
    #[error("the body is not valid multipart/form-data (at byte {offset})")]
    NotMultipart { offset: usize },
    #[error("a body of this content type cannot be masked")]
    NotMaskable,
    #[error(transparent)]
    Blocked(#[from] Blocked),
}

impl BodyError {
    /// The error of a piece of a body (a JSON line, a form's part) that starts at byte
    /// `start` of the whole: its offset counted in the whole body.
    pub(crate) fn after(self, start: usize) -> BodyError {
        match self {
            BodyError::NotJson { offset } => BodyError::NotJson {
                offset: start + offset,
            },
            BodyError::NotText { offset } => BodyError::NotText {
                offset: start + offset,
            },
            BodyError::NotMultipart { offset } => BodyError::NotMultipart {
                offset: start + offset,
            },
            other => other,
        }
    }
}
