//! Reading the AI API shapes Junction understands (OpenAI chat/completions/responses,
//! Anthropic messages): the `model` of a request, and from a response, as its bytes
//! pass, the token `usage` and the moment the first token arrived. Never buffers a
//! stream; JSON replies are copied (not held back) up to a cap to be read at the end.

mod sse;
mod usage;

pub use sse::SseSplitter;
pub use usage::{ReplyKind, Usage, UsageScanner};

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
