//! Token usage and first-token time from a model server's reply, read as it streams by.
//! Understands OpenAI chat/completions chunks (`choices[].delta.content`, `usage`),
//! the Responses API (`response.output_text.delta`, `response.completed`) and
//! Anthropic messages (`content_block_delta`, `message_start`/`message_delta` usage).

use http::HeaderMap;
use serde_json::Value;
use tokio::time::Instant;

use super::SseSplitter;
use super::content_coding::{Coding, Decoder, MAX_DECODED, Unread};

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
        if let Some(prompt) = read(&["prompt_tokens"]) {
            self.prompt = Some(prompt);
        } else if let Some(input) = read(&["input_tokens"]) {
            // Anthropic counts cached prompt tokens apart; OpenAI's `prompt_tokens`
            // include them, and so does the prompt counted here.
            let cached: u64 = ["cache_creation_input_tokens", "cache_read_input_tokens"]
                .iter()
                .filter_map(|k| usage.get(*k).and_then(Value::as_u64))
                .sum();
            self.prompt = Some(input.saturating_add(cached));
        }
        if let Some(completion) = read(&["completion_tokens", "output_tokens"]) {
            self.completion = Some(completion);
        }
    }
}

/// What is read of an answer's (decoded) bytes.
struct Reading {
    kind: ReplyKind,
    json: Vec<u8>,
    json_overflowed: bool,
    sse: SseSplitter,
    usage: Usage,
    first_event_at: Option<Instant>,
    first_token_at: Option<Instant>,
    /// UTF-8 bytes of generated text seen (for an estimate when no usage comes).
    text_bytes: u64,
    /// The answer is one of the shapes read here (it had generated text or usage).
    recognised: bool,
}

impl std::io::Write for Reading {
    /// The decoded bytes of a compressed answer.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.feed(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Reading {
    fn feed(&mut self, bytes: &[u8]) {
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
                    text_bytes,
                    recognised,
                    ..
                } = self;
                sse.feed(bytes, &mut |event| {
                    let now = Instant::now();
                    first_event_at.get_or_insert(now);
                    let data = event.data.as_str();
                    if data == "[DONE]" || !data.starts_with('{') {
                        return;
                    }
                    // Once the first token is seen only usage and the text's size
                    // matter: an event that cannot hold usage is measured, not parsed.
                    if first_token_at.is_some() && !data.contains("tokens") {
                        if let Some(len) = super::generated::delta_text_len(data) {
                            *text_bytes += len as u64;
                        }
                        return;
                    }
                    let Ok(value) = serde_json::from_str::<Value>(data) else {
                        return;
                    };
                    if let Some(piece) = super::generated::delta_text(&value) {
                        *text_bytes += piece.len() as u64;
                        *recognised = true;
                        if first_token_at.is_none() && !piece.is_empty() {
                            *first_token_at = Some(now);
                        }
                    }
                    if first_token_at.is_none() && carries_text(&value) {
                        *first_token_at = Some(now);
                    }
                    for usage_object in usage_objects(&value) {
                        usage.merge(usage_object);
                        *recognised = true;
                    }
                });
            }
            ReplyKind::Other => {}
        }
    }

    fn finish(&mut self) {
        if self.kind == ReplyKind::Json && !self.json_overflowed {
            if let Ok(value) = serde_json::from_slice::<Value>(&self.json) {
                for usage_object in usage_objects(&value) {
                    self.usage.merge(usage_object);
                    self.recognised = true;
                }
                if let Some(text) = super::generated::text_of_json(&value) {
                    self.text_bytes += text as u64;
                    self.recognised = true;
                }
            }
            self.json = Vec::new();
        }
    }
}

enum Input {
    Plain(Reading),
    /// A compressed answer, decoded on its way to the reading.
    Coded(Box<Decoder<Reading>>),
    /// Not read: its coding is not one read here.
    Unreadable(Reading),
}

/// Reads an answer's usage, first token and generated text as its bytes pass; a
/// compressed answer is decoded (up to [`MAX_DECODED`] bytes) on the way.
pub struct UsageScanner {
    input: Input,
}

impl UsageScanner {
    /// A scanner for an uncompressed reply of this kind; `None` when there is nothing
    /// to read.
    pub fn for_reply(kind: ReplyKind) -> Option<Self> {
        Self::for_answer(kind, None)
    }

    /// A scanner for a reply of this kind sent with this `content-encoding`.
    pub fn for_answer(kind: ReplyKind, content_encoding: Option<&[u8]>) -> Option<Self> {
        if kind == ReplyKind::Other {
            return None;
        }
        let reading = Reading {
            kind,
            json: Vec::new(),
            json_overflowed: false,
            sse: SseSplitter::default(),
            usage: Usage::default(),
            first_event_at: None,
            first_token_at: None,
            text_bytes: 0,
            recognised: false,
        };
        let input = match Coding::of(content_encoding) {
            Ok(None) => Input::Plain(reading),
            Ok(Some(coding)) => Input::Coded(Box::new(Decoder::new(coding, reading, MAX_DECODED))),
            Err(_) => Input::Unreadable(reading),
        };
        Some(UsageScanner { input })
    }

    fn reading(&self) -> &Reading {
        match &self.input {
            Input::Plain(reading) | Input::Unreadable(reading) => reading,
            Input::Coded(decoder) => decoder.sink(),
        }
    }

    /// The answer's bytes as they came from the endpoint.
    pub fn feed(&mut self, bytes: &[u8]) {
        match &mut self.input {
            Input::Plain(reading) => reading.feed(bytes),
            Input::Coded(decoder) => decoder.push(bytes),
            Input::Unreadable(_) => {}
        }
    }

    /// Reads what only the end of a reply can tell (a JSON reply's `usage`).
    pub fn finish(&mut self) {
        match &mut self.input {
            Input::Plain(reading) => reading.finish(),
            Input::Coded(decoder) => {
                decoder.finish();
                // What decoded before a stop is read all the same.
                decoder.sink_mut().finish();
            }
            Input::Unreadable(_) => {}
        }
    }

    /// The usage the server reported.
    pub fn usage(&self) -> Usage {
        self.reading().usage
    }

    /// When the first SSE event arrived.
    pub fn first_event_at(&self) -> Option<Instant> {
        self.reading().first_event_at
    }

    /// When the first event carrying generated text arrived.
    pub fn first_token_at(&self) -> Option<Instant> {
        self.reading().first_token_at
    }

    /// UTF-8 bytes of generated text read, and whether the answer was of a shape read
    /// here at all (generated text or a `usage` object): the ground of an estimate.
    pub fn answer_text(&self) -> (u64, bool) {
        let reading = self.reading();
        (reading.text_bytes, reading.recognised)
    }

    /// Why the answer was not read to its end, if it was not.
    pub fn unread(&self) -> Option<Unread> {
        match &self.input {
            Input::Plain(_) => None,
            Input::Coded(decoder) => decoder.stopped(),
            Input::Unreadable(_) => Some(Unread::Coding),
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
            scanner.usage(),
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
        assert!(scanner.first_event_at().is_some());
        assert!(scanner.first_token_at().is_some());
        assert_eq!(
            scanner.usage(),
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
        assert!(scanner.first_event_at().is_some());
        assert!(scanner.first_token_at().is_none());
    }

    #[test]
    fn anthropic_stream() {
        let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
            event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n\
            event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let scanner = scan(ReplyKind::EventStream, &[stream]);
        assert!(scanner.first_token_at().is_some());
        assert_eq!(
            scanner.usage(),
            Usage {
                prompt: Some(25),
                completion: Some(15)
            }
        );
    }

    #[test]
    fn anthropic_cached_prompt_tokens_count_in_the_prompt() {
        let reply = r#"{"type":"message","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":12,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":7}}"#;
        let scanner = scan(ReplyKind::Json, &[reply]);
        assert_eq!(
            scanner.usage(),
            Usage {
                prompt: Some(117),
                completion: Some(7)
            }
        );
    }

    #[test]
    fn responses_api_stream() {
        let stream = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n\
            event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":9,\"total_tokens\":16}}}\n\n";
        let scanner = scan(ReplyKind::EventStream, &[stream]);
        assert!(scanner.first_token_at().is_some());
        assert_eq!(
            scanner.usage(),
            Usage {
                prompt: Some(7),
                completion: Some(9)
            }
        );
    }
    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// A brotli stream, by the reference encoder.
    fn brotli(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            std::io::Write::write_all(&mut writer, bytes).unwrap();
        }
        out
    }

    const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n\
        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
    const JSON: &str = r#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":3}}"#;

    fn scan_coded(kind: ReplyKind, coding: &str, chunks: &[&[u8]]) -> UsageScanner {
        let mut scanner = UsageScanner::for_answer(kind, Some(coding.as_bytes())).unwrap();
        for chunk in chunks {
            scanner.feed(chunk);
        }
        scanner.finish();
        scanner
    }

    #[test]
    fn usage_of_compressed_answers() {
        let both = |prompt, completion| Usage {
            prompt: Some(prompt),
            completion: Some(completion),
        };
        let zstd = |bytes: &str| zstd::encode_all(bytes.as_bytes(), 3).unwrap();
        for (coding, encode) in [
            (
                "gzip",
                &(|b: &str| gzip(b.as_bytes())) as &dyn Fn(&str) -> Vec<u8>,
            ),
            ("br", &|b: &str| brotli(b.as_bytes())),
            ("zstd", &zstd),
        ] {
            let stream = encode(STREAM);
            // Split at every point: the decoder takes whatever the reads bring.
            for cut in 0..stream.len() {
                let (a, b) = stream.split_at(cut);
                let scanner = scan_coded(ReplyKind::EventStream, coding, &[a, b]);
                assert_eq!(scanner.usage(), both(5, 2), "{coding} cut at {cut}");
                assert!(scanner.first_token_at().is_some());
                assert_eq!(scanner.unread(), None);
            }
            let json = encode(JSON);
            let scanner = scan_coded(ReplyKind::Json, coding, &[&json]);
            assert_eq!(scanner.usage(), both(12, 3), "{coding}");
            assert_eq!(scanner.answer_text(), (2, true));
        }
    }

    #[test]
    fn a_bomb_stops_at_the_cap_and_bad_codings_are_named() {
        // 80 MiB of spaces inside a JSON reply: about 80 KiB of gzip.
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        {
            use std::io::Write;
            bomb.write_all(b"{\"usage\":{\"prompt_tokens\":1},\"x\":\"")
                .unwrap();
            let spaces = vec![b' '; 1 << 20];
            for _ in 0..80 {
                bomb.write_all(&spaces).unwrap();
            }
            bomb.write_all(b"\"}").unwrap();
        }
        let bomb = bomb.finish().unwrap();
        let scanner = scan_coded(ReplyKind::Json, "gzip", &[&bomb]);
        assert_eq!(scanner.unread(), Some(Unread::Limit));
        assert_eq!(scanner.usage(), Usage::default());
        let scanner = scan_coded(ReplyKind::Json, "gzip", &[b"not gzip at all"]);
        assert_eq!(scanner.unread(), Some(Unread::Corrupt));
        let scanner = scan_coded(ReplyKind::Json, "compress", &[b"whatever"]);
        assert_eq!(scanner.unread(), Some(Unread::Coding));
        let scanner = scan_coded(ReplyKind::Json, "identity", &[JSON.as_bytes()]);
        assert_eq!(scanner.unread(), None);
        assert_eq!(scanner.usage().prompt, Some(12));
    }

    #[test]
    fn estimates_fill_only_what_was_not_reported() {
        let reported = Usage {
            prompt: Some(7),
            completion: None,
        };
        assert_eq!(
            super::super::estimate_tokens(reported, 1000, 9),
            Usage {
                prompt: None,
                completion: Some(3)
            }
        );
        let scanner = scan(
            ReplyKind::EventStream,
            &["data: {\"choices\":[{\"delta\":{\"content\":\"Héllo\"}}]}\n\ndata: [DONE]\n\n"],
        );
        assert_eq!(scanner.answer_text(), (6, true));
        assert_eq!(scanner.usage(), Usage::default());
    }
}
