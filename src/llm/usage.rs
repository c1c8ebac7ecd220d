//! Token usage and first-token time from a model server's reply, read as it streams by.
//! Understands OpenAI chat/completions chunks (`choices[].delta.content`, `usage`),
//! the Responses API (`response.output_text.delta`, `response.completed`) and
//! Anthropic messages (`content_block_delta`, `message_start`/`message_delta` usage).

use http::HeaderMap;
use serde_json::Value;
use tokio::time::Instant;

use super::SseSplitter;

/// Largest JSON reply copied for reading `usage` at its end; larger ones are passed on
/// unread.
const MAX_JSON_COPY: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Json,
    EventStream,
    Other,
}

impl ReplyKind {
    pub fn of(headers: &HeaderMap) -> Self {
        match headers.get(http::header::CONTENT_TYPE) {
            Some(value) => Self::of_content_type(value.as_bytes()),
            None => ReplyKind::Other,
        }
    }

    /// From a `content-type` value.
    pub fn of_content_type(value: &[u8]) -> Self {
        // Bytes, not `str`: this runs on every answer, and the essence is ASCII or nothing.
        let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
        let essence = value[..end].trim_ascii();
        if essence.eq_ignore_ascii_case(b"text/event-stream") {
            ReplyKind::EventStream
        } else if essence.eq_ignore_ascii_case(b"application/json") || essence.ends_with(b"+json") {
            ReplyKind::Json
        } else {
            ReplyKind::Other
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Prompt (input) tokens, as the server reported them.
    pub prompt: Option<u64>,
    /// Completion (output) tokens, as the server reported them.
    pub completion: Option<u64>,
}

impl Usage {
    /// Takes what a `usage` object says (OpenAI or Anthropic field names); later
    /// reports overwrite earlier ones, as streams send cumulative counts.
    fn merge(&mut self, usage: &Value) {
        let read = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| usage.get(*k).and_then(Value::as_u64))
        };
        if let Some(prompt) = read(&["prompt_tokens", "input_tokens"]) {
            self.prompt = Some(prompt);
        }
        if let Some(completion) = read(&["completion_tokens", "output_tokens"]) {
            self.completion = Some(completion);
        }
    }
}

pub struct UsageScanner {
    kind: ReplyKind,
    json: Vec<u8>,
    json_overflowed: bool,
    sse: SseSplitter,
    pub usage: Usage,
    /// When the first SSE event arrived.
    pub first_event_at: Option<Instant>,
    /// When the first event carrying generated text arrived.
    pub first_token_at: Option<Instant>,
}

impl UsageScanner {
    /// A scanner for a reply of this kind; `None` when there is nothing to read.
    pub fn for_reply(kind: ReplyKind) -> Option<Self> {
        (kind != ReplyKind::Other).then(|| UsageScanner {
            kind,
            json: Vec::new(),
            json_overflowed: false,
            sse: SseSplitter::default(),
            usage: Usage::default(),
            first_event_at: None,
            first_token_at: None,
        })
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        match self.kind {
            ReplyKind::Json => {
                if self.json.len() + bytes.len() > MAX_JSON_COPY {
                    self.json_overflowed = true;
                    self.json = Vec::new();
                } else if !self.json_overflowed {
                    self.json.extend_from_slice(bytes);
                }
            }
            ReplyKind::EventStream => {
                let Self {
                    sse,
                    usage,
                    first_event_at,
                    first_token_at,
                    ..
                } = self;
                sse.feed(bytes, &mut |event| {
                    let now = Instant::now();
                    first_event_at.get_or_insert(now);
                    let data = event.data.as_str();
                    if data == "[DONE]" {
                        return;
                    }
                    // Once the first token is seen only usage matters: skip parsing
                    // events that cannot hold it.
                    if first_token_at.is_some() && !data.contains("tokens") {
                        return;
                    }
                    let Ok(value) = serde_json::from_str::<Value>(data) else {
                        return;
                    };
                    if first_token_at.is_none() && carries_text(&value) {
                        *first_token_at = Some(now);
                    }
                    for usage_object in usage_objects(&value) {
                        usage.merge(usage_object);
                    }
                });
            }
            ReplyKind::Other => {}
        }
    }

    /// Reads what only the end of a reply can tell (a JSON reply's `usage`).
    pub fn finish(&mut self) {
        if self.kind == ReplyKind::Json && !self.json_overflowed {
            if let Ok(value) = serde_json::from_slice::<Value>(&self.json) {
                for usage_object in usage_objects(&value) {
                    self.usage.merge(usage_object);
                }
            }
            self.json = Vec::new();
        }
    }
}

/// `usage` objects where the supported APIs put them.
fn usage_objects(value: &Value) -> impl Iterator<Item = &Value> {
    [
        value.get("usage"),
        value.pointer("/response/usage"),
        value.pointer("/message/usage"),
    ]
    .into_iter()
    .flatten()
    .filter(|usage| usage.is_object())
}

fn non_empty_str(value: Option<&Value>) -> bool {
    value.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

/// Whether a stream event carries generated text.
fn carries_text(value: &Value) -> bool {
    let in_choices = value
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|choices| {
            choices.iter().any(|choice| {
                non_empty_str(choice.pointer("/delta/content")) || non_empty_str(choice.get("text"))
            })
        });
    // Responses API `response.output_text.delta` and Anthropic `content_block_delta`.
    in_choices || non_empty_str(value.get("delta")) || non_empty_str(value.pointer("/delta/text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(kind: ReplyKind, chunks: &[&str]) -> UsageScanner {
        let mut scanner = UsageScanner::for_reply(kind).unwrap();
        for chunk in chunks {
            scanner.feed(chunk.as_bytes());
        }
        scanner.finish();
        scanner
    }

    #[test]
    fn openai_json_reply() {
        let reply = r#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
        let (a, b) = reply.split_at(40);
        let scanner = scan(ReplyKind::Json, &[a, b]);
        assert_eq!(
            scanner.usage,
            Usage {
                prompt: Some(12),
                completion: Some(3)
            }
        );
    }

    #[test]
    fn openai_stream_with_usage_chunk() {
        let stream = [
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel",
            "lo\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
        ];
        let scanner = scan(ReplyKind::EventStream, &stream);
        assert!(scanner.first_event_at.is_some());
        assert!(scanner.first_token_at.is_some());
        assert_eq!(
            scanner.usage,
            Usage {
                prompt: Some(5),
                completion: Some(2)
            }
        );
    }

    #[test]
    fn role_only_chunk_is_not_a_token() {
        let scanner = scan(
            ReplyKind::EventStream,
            &["data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"],
        );
        assert!(scanner.first_event_at.is_some());
        assert!(scanner.first_token_at.is_none());
    }

    #[test]
    fn anthropic_stream() {
        let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
            event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n\
            event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let scanner = scan(ReplyKind::EventStream, &[stream]);
        assert!(scanner.first_token_at.is_some());
        assert_eq!(
            scanner.usage,
            Usage {
                prompt: Some(25),
                completion: Some(15)
            }
        );
    }

    #[test]
    fn responses_api_stream() {
        let stream = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n\
            event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":9,\"total_tokens\":16}}}\n\n";
        let scanner = scan(ReplyKind::EventStream, &[stream]);
        assert!(scanner.first_token_at.is_some());
        assert_eq!(
            scanner.usage,
            Usage {
                prompt: Some(7),
                completion: Some(9)
            }
        );
    }
}
