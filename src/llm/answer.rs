//! The answer text of a model's reply, for flow records and replay reports: the
//! generated text of an OpenAI chat/completions or Responses reply, or an Anthropic
//! message, whole (JSON) or reassembled from its stream events (SSE).

use serde_json::Value;

use super::generated::{answer_of_value, delta_text};
use super::sse::{SseEvent, SseSplitter};
use super::usage::ReplyKind;

/// The generated text of a JSON reply, if it is one of the shapes read here.
pub fn answer_of_json(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    answer_of_value(&value)
}

/// The generated text a stream's events carry, in order; `None` when no event is of a
/// shape read here.
pub fn answer_of_events<'a>(events: impl IntoIterator<Item = &'a SseEvent>) -> Option<String> {
    let mut text = String::new();
    let mut found = false;
    for event in events {
        if event.data == "[DONE]" {
            continue;
        }
        let Ok(value) = serde_json::from_str::<Value>(&event.data) else {
            continue;
        };
        if let Some(part) = delta_text(&value) {
            text.push_str(part);
            found = true;
        }
    }
    found.then_some(text)
}

/// The generated text one stream event carries, if any (for reading a stream as it
/// passes; see [`answer_of_events`]).
pub fn answer_piece(event: &SseEvent) -> Option<String> {
    if event.data == "[DONE]" || !event.data.starts_with('{') {
        return None;
    }
    let value = serde_json::from_str::<Value>(&event.data).ok()?;
    delta_text(&value).map(str::to_owned)
}

/// Reads a reply's answer text as its bytes pass, up to a cap: a JSON reply is copied
/// and read at the end, a stream's events are read as they complete.
pub struct AnswerReader {
    kind: ReplyKind,
    json: Vec<u8>,
    sse: SseSplitter,
    text: String,
    cap: usize,
    overflowed: bool,
}

impl AnswerReader {
    /// A reader for a reply of this kind; `None` when it has no answer to read.
    pub fn for_reply(kind: ReplyKind, cap: usize) -> Option<AnswerReader> {
        (kind != ReplyKind::Other).then(|| AnswerReader {
            kind,
            json: Vec::new(),
            sse: SseSplitter::default(),
            text: String::new(),
            cap,
            overflowed: false,
        })
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        match self.kind {
            ReplyKind::Json if !self.overflowed => {
                if self.json.len() + bytes.len() > self.cap {
                    // Too long to read whole: its start is read instead.
                    self.overflowed = true;
                }
                let room = self.cap.saturating_sub(self.json.len());
                self.json.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            ReplyKind::EventStream => {
                let (text, cap) = (&mut self.text, self.cap);
                self.sse.feed(bytes, &mut |event| {
                    if text.len() < cap
                        && let Some(piece) = answer_piece(event)
                    {
                        text.push_str(&piece);
                    }
                });
            }
            _ => {}
        }
    }

    /// The answer text read: a JSON reply's (or, cut short, its raw start, which still
    /// holds what a scan looks for), a stream's joined pieces.
    pub fn finish(self) -> String {
        match self.kind {
            ReplyKind::Json if !self.overflowed => answer_of_json(&self.json)
                .unwrap_or_else(|| String::from_utf8_lossy(&self.json).into_owned()),
            ReplyKind::Json => String::from_utf8_lossy(&self.json).into_owned(),
            _ => self.text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.to_owned(),
        }
    }

    #[test]
    fn json_answers_of_each_api() {
        let chat = br#"{"choices":[{"message":{"role":"assistant","content":"Hello there"}}]}"#;
        assert_eq!(answer_of_json(chat).as_deref(), Some("Hello there"));
        let completion = br#"{"choices":[{"text":"abc"}]}"#;
        assert_eq!(answer_of_json(completion).as_deref(), Some("abc"));
        let anthropic = br#"{"content":[{"type":"text","text":"Hi"},{"type":"text","text":"!"}]}"#;
        assert_eq!(answer_of_json(anthropic).as_deref(), Some("Hi!"));
        let responses =
            br#"{"output":[{"type":"message","content":[{"type":"output_text","text":"ok"}]}]}"#;
        assert_eq!(answer_of_json(responses).as_deref(), Some("ok"));
        assert_eq!(answer_of_json(br#"{"error":"x"}"#), None);
        assert_eq!(answer_of_json(b"not json"), None);
    }

    #[test]
    fn a_reader_reads_answers_as_they_pass() {
        let mut json = AnswerReader::for_reply(ReplyKind::Json, 1024).unwrap();
        let body = br#"{"choices":[{"message":{"content":"AKIA is here"}}]}"#;
        json.feed(&body[..10]);
        json.feed(&body[10..]);
        assert_eq!(json.finish(), "AKIA is here");
        let mut stream = AnswerReader::for_reply(ReplyKind::EventStream, 1024).unwrap();
        stream.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choi");
        stream.feed(b"ces\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n");
        assert_eq!(stream.finish(), "Hello");
        assert!(AnswerReader::for_reply(ReplyKind::Other, 1024).is_none());
    }

    #[test]
    fn stream_answers_of_each_api() {
        let chat = [
            event(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#),
            event(r#"{"choices":[{"delta":{"content":"Hel"}}]}"#),
            event(r#"{"choices":[{"delta":{"content":"lo"}}]}"#),
            event("[DONE]"),
        ];
        assert_eq!(answer_of_events(&chat).as_deref(), Some("Hello"));
        let anthropic = [
            event(r#"{"type":"message_start","message":{"usage":{"input_tokens":3}}}"#),
            event(r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}"#),
        ];
        assert_eq!(answer_of_events(&anthropic).as_deref(), Some("Hi"));
        let responses = [event(
            r#"{"type":"response.output_text.delta","delta":"ok"}"#,
        )];
        assert_eq!(answer_of_events(&responses).as_deref(), Some("ok"));
        assert_eq!(answer_of_events(&[event("ping")]), None);
    }
}
