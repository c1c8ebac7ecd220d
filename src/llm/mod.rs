//! Reading the AI API shapes Junction understands (OpenAI chat/completions/responses,
//! Anthropic messages): the `model` and prompt prefix of a request, from a response, as
//! its bytes pass, the token `usage` and the first token, and model servers' load reports.
//! Never buffers a stream; JSON replies are copied (not held back) up to a cap.

mod answer;
mod content_coding;
mod generated;
mod load_report;
mod prompt_prefix;
mod sse;
pub mod translate;
mod usage;
mod usage_chunk;

pub use answer::{AnswerReader, answer_of_events, answer_of_json, answer_piece};
pub use content_coding::{Coding, MAX_DECODED, Unread};
pub use load_report::{LoadSample, parse_orca_header, parse_prometheus_text};
pub use prompt_prefix::prompt_prefix_hash;
pub use sse::{SseEvent, SseSplitter};
pub use usage::{ReplyKind, Usage, UsageScanner};
pub use usage_chunk::UsageChunkFilter;

/// Bytes a token is taken to be when a count is estimated: about four, the usual rule
/// of thumb for English text and JSON.
pub const BYTES_PER_TOKEN: u64 = 4;

/// Tokens estimated for what an answer's usage did not report (`None` where it did):
/// prompt = ⌈request body bytes / 4⌉ (the JSON of the request, as rate limits reserve
/// it), completion = ⌈bytes of generated text / 4⌉ (the UTF-8 text of the answer's
/// message or stream deltas, without the JSON or SSE around it).
pub fn estimate_tokens(reported: Usage, request_bytes: u64, text_bytes: u64) -> Usage {
    Usage {
        prompt: reported
            .prompt
            .is_none()
            .then(|| request_bytes.div_ceil(BYTES_PER_TOKEN)),
        completion: reported
            .completion
            .is_none()
            .then(|| text_bytes.div_ceil(BYTES_PER_TOKEN)),
    }
}

/// What a JSON request body says about its cost: the model, `max_tokens`, and a prompt
/// token estimate (about four bytes a token, the usual rule of thumb for English text
/// and JSON; used for reservations that are settled against the real usage later).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    pub model: Option<String>,
    pub max_tokens: Option<u64>,
    pub prompt_estimate: u64,
}

pub fn request_facts(body: &[u8]) -> RequestFacts {
    #[derive(serde::Deserialize)]
    struct Fields<'a> {
        #[serde(borrow, default)]
        model: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        max_tokens: Option<u64>,
        #[serde(default)]
        max_completion_tokens: Option<u64>,
    }
    let prompt_estimate = (body.len() as u64).div_ceil(BYTES_PER_TOKEN);
    match serde_json::from_slice::<Fields<'_>>(body) {
        Ok(fields) => RequestFacts {
            model: fields.model.map(|m| m.into_owned()),
            max_tokens: fields.max_tokens.or(fields.max_completion_tokens),
            prompt_estimate,
        },
        Err(_) => RequestFacts {
            prompt_estimate,
            ..RequestFacts::default()
        },
    }
}

/// The top-level `model` string of a JSON request body; `None` for anything else.
pub fn model_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ModelField<'a> {
        #[serde(borrow, default)]
        model: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<ModelField<'_>>(body)
        .ok()?
        .model
        .map(|m| m.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_field() {
        assert_eq!(
            model_of(br#"{"messages": [], "model": "llama-3"}"#).as_deref(),
            Some("llama-3")
        );
        assert_eq!(
            model_of(br#"{"model": "esc\"aped"}"#).as_deref(),
            Some("esc\"aped")
        );
        assert_eq!(model_of(br#"{"model": 5}"#), None);
        assert_eq!(model_of(b"not json"), None);
        assert_eq!(model_of(br#"[1,2]"#), None);
    }
}
