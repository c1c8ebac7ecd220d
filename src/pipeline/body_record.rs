//! The body phase's part of a request's record and its vocabulary: what masking found,
//! the response's transform, and why a body was refused. Kept apart from the phase
//! itself so the record and the errors need not import the phase's decisions.

use std::sync::Arc;

use http::StatusCode;

use crate::llm::translate::{self, Api, Translation};
use crate::masking::{self, Findings, Vault};
use crate::telemetry::MetricsRegistry;

/// A response body transform, fed the body's bytes as they come (framing removed).
/// It lives in the request's [`Exchange`], which reports what it found at the end.
pub trait ResponseTransform: Send + Sync {
    /// Appends what may go to the client so far to `out` (it may hold some back).
    fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String>;
    /// The body ended: appends what was held back.
    fn on_end(&mut self, out: &mut Vec<u8>) -> Result<(), String>;
    /// What masking found in the response so far.
    fn findings(&self) -> Option<&Findings>;
}

/// Why the body phase refused a request or a response. Messages name types and
/// reasons, never a value from the body.
#[derive(Debug, thiserror::Error)]
pub enum BodyRefusal {
    #[error("{0}")]
    Blocked(masking::Blocked),
    #[error("the {direction} body could not be masked: {reason}")]
    Unreadable {
        direction: Direction,
        reason: String,
    },
    #[error("the {direction} body is larger than the {limit} bytes masking reads")]
    TooLarge { direction: Direction, limit: usize },
    #[error(
        "the {direction} body is compressed ({encoding}) and this route does not pass bodies it cannot read"
    )]
    Compressed {
        direction: Direction,
        encoding: String,
    },
}

impl BodyRefusal {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyRefusal::Blocked(_) => StatusCode::BAD_REQUEST,
            BodyRefusal::Unreadable { direction, .. } if direction.is_request() => {
                StatusCode::BAD_REQUEST
            }
            BodyRefusal::TooLarge { direction, .. } if direction.is_request() => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            BodyRefusal::Compressed { direction, .. } if direction.is_request() => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            // The endpoint's answer could not be masked: the client gets none of it.
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            BodyRefusal::Blocked(_) => "sensitive_data_blocked",
            BodyRefusal::Unreadable { .. } => "masking_unreadable_body",
            BodyRefusal::TooLarge { .. } => "masking_body_too_large",
            BodyRefusal::Compressed { .. } => "masking_compressed_body",
        }
    }

    pub fn direction(&self) -> Direction {
        match self {
            BodyRefusal::Blocked(_) => Direction::Request,
            BodyRefusal::Unreadable { direction, .. }
            | BodyRefusal::TooLarge { direction, .. }
            | BodyRefusal::Compressed { direction, .. } => *direction,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }

    fn is_request(self) -> bool {
        self == Direction::Request
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The body phase's part of a request's record: what was found, the pseudonyms the
/// response restores, the response's transform.
#[derive(Default)]
pub struct BodyRecord {
    pub request: Findings,
    /// A body that could not be masked and was passed on (`on_error = "pass"`).
    pub passed: Option<Direction>,
    pub(crate) vault: Option<Vault>,
    pub(crate) response: Option<Box<dyn ResponseTransform>>,
    /// The response restores pseudonyms: they are put back in what a captured flow
    /// keeps of it, so no value the request's masking took out is stored.
    pub(crate) concealer: Option<Box<masking::Concealer>>,
    /// The request's `model`, read from its body for a captured flow.
    pub model: Option<String>,
    /// Junction added `stream_options.include_usage` the client did not ask for: the
    /// usage chunk of the answer's stream is dropped (route `include_usage`).
    pub strip_usage: bool,
    /// The pool's `api` translation of the attempt under way (its answer's).
    pub(crate) translation: Option<AttemptTranslation>,
    /// What a WebSocket's endpoint messages held (a tunnel has no response transform).
    pub(crate) message_answers: Findings,
    /// The findings were counted in the metrics as they were found (a WebSocket's, one
    /// message at a time): here they are for the access log only.
    pub(crate) counted: bool,
}

/// What the answer to a translated attempt needs (`pipeline::translation`): the
/// translation and what the client asked for.
#[derive(Debug, Clone)]
pub(crate) struct AttemptTranslation {
    pub(crate) translation: Translation,
    pub(crate) include_usage: bool,
    pub(crate) model: Option<String>,
}

/// Why a pool's `api` translation refused a request (400) or a provider's answer
/// (502): answered in the client's API format.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TranslationRefusal {
    pub client: Api,
    pub status: StatusCode,
    pub message: String,
}

impl TranslationRefusal {
    /// The error body in the client's API format.
    pub fn body(&self) -> Vec<u8> {
        let kind = if self.status.is_server_error() {
            match self.client {
                Api::OpenAi => "server_error",
                Api::Anthropic => "api_error",
            }
        } else {
            "invalid_request_error"
        };
        translate::error_body(self.client, self.status.as_u16(), kind, &self.message)
    }
}

impl BodyRecord {
    /// Runs a piece of the response body through the transform, appending what goes
    /// to the client to `out` (all of `data` when there is none). `end`: the body is
    /// over, `data` is its last piece (possibly empty).
    pub fn transform(&mut self, data: &[u8], end: bool, out: &mut Vec<u8>) -> Result<(), String> {
        let Some(transform) = self.response.as_mut() else {
            out.extend_from_slice(data);
            return Ok(());
        };
        transform.on_data(data, out)?;
        if end {
            transform.on_end(out)?;
        }
        Ok(())
    }

    /// What a captured flow keeps of a piece of the response the client gets: the
    /// piece with the restored values concealed again (some bytes may be held back
    /// until the next piece or [`BodyRecord::recorded_rest`]).
    pub fn recorded<'d>(&mut self, data: &'d [u8]) -> std::borrow::Cow<'d, [u8]> {
        match self.concealer.as_mut() {
            Some(concealer) => {
                let mut out = Vec::with_capacity(data.len());
                concealer.push(data, &mut out);
                std::borrow::Cow::Owned(out)
            }
            None => std::borrow::Cow::Borrowed(data),
        }
    }

    /// The response ended: what [`BodyRecord::recorded`] held back.
    pub fn recorded_rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(concealer) = self.concealer.as_mut() {
            concealer.finish(&mut out);
        }
        out
    }

    /// The findings and passes into the metrics, under `scope` (a route's name, or an
    /// egress listener's).
    pub fn report_masking(&self, scope: &Arc<str>, metrics: &MetricsRegistry) {
        if self.counted {
            return;
        }
        for (direction, kind, action, count) in self.findings() {
            let key = (
                scope.clone(),
                kind.0.clone(),
                action.name(),
                direction.name(),
            );
            metrics.count_masking(key, u64::from(count));
        }
        if let Some(direction) = self.passed {
            metrics.count_masking_passed(scope, direction.name());
        }
    }

    /// The access log's `masked` field: `TYPE:action=count` per finding, response ones
    /// prefixed with `response.`, and `DIRECTION:passed_unmasked` for a body passed
    /// on; types and counts, never values.
    pub fn masked_field(&self) -> Option<String> {
        use std::fmt::Write;
        // Most requests pass no masking: no text to start, no iterators to chain.
        if self.request.is_empty()
            && self.passed.is_none()
            && self.response_findings().is_none_or(Findings::is_empty)
            && self.message_answers.is_empty()
        {
            return None;
        }
        let mut text = String::new();
        for (direction, kind, action, count) in self.findings() {
            if !text.is_empty() {
                text.push(',');
            }
            let prefix = if direction == Direction::Response {
                "response."
            } else {
                ""
            };
            let _ = write!(text, "{prefix}{}:{}={count}", kind.name(), action.name());
        }
        if let Some(direction) = self.passed {
            if !text.is_empty() {
                text.push(',');
            }
            let _ = write!(text, "{direction}:passed_unmasked");
        }
        (!text.is_empty()).then_some(text)
    }

    /// Whether a captured flow keeps the request body by its size only: it was passed
    /// on unmasked (`on_error = "pass"`), or holds a value `log` let through.
    pub fn withholds_request(&self) -> bool {
        self.passed == Some(Direction::Request) || self.request.logged()
    }

    /// Whether a captured flow keeps the answer by its size only: it was passed on
    /// unmasked (`on_error = "pass"`), or holds a value `log` let through.
    pub fn withholds_response(&self) -> bool {
        self.passed == Some(Direction::Response)
            || self.response_findings().is_some_and(Findings::logged)
    }

    /// What the response's transform found.
    pub fn response_findings(&self) -> Option<&Findings> {
        self.response.as_ref().and_then(|t| t.findings())
    }

    /// Every finding of both directions, request ones first: type, action and count.
    /// The metrics and the access log both report from it.
    pub fn findings(
        &self,
    ) -> impl Iterator<Item = (Direction, &masking::Kind, masking::Action, u32)> {
        let request = self.request.iter().map(|f| (Direction::Request, f));
        let response = self
            .response_findings()
            .into_iter()
            .chain(Some(&self.message_answers))
            .flat_map(Findings::iter)
            .map(|f| (Direction::Response, f));
        request
            .chain(response)
            .map(|(direction, (kind, action, count))| (direction, kind, action, count))
    }
}
