//! Drops the extra usage chunk of an OpenAI stream (the event whose chunk has
//! `"choices": []` and a `usage` object, sent for `stream_options.include_usage`) from
//! the bytes a client gets. Event by event: every other event passes byte for byte as
//! soon as its blank line has come, however the bytes were split.

use serde_json::Value;

/// The longest event held back while waiting for its end; a longer one is no usage
/// chunk (those are a few hundred bytes), and passes on as it comes.
const MAX_HELD: usize = 64 * 1024;

#[derive(Default)]
pub struct UsageChunkFilter {
    /// The raw bytes of the event being read, up to its blank line.
    event: Vec<u8>,
    /// Bytes of the current line so far, its line end left out.
    line_len: usize,
    /// The last byte seen was a `\r`: a `\n` right after it ends the same line.
    after_cr: bool,
    /// A blank line ended the event, but it ended with `\r` and its `\n` may follow.
    ended: bool,
    /// The event grew past [`MAX_HELD`]: the rest of it passes as it comes.
    passing: bool,
    /// Usage chunks dropped.
    pub dropped: u32,
}

impl UsageChunkFilter {
    /// Appends to `out` what of the stream so far goes to the client: every complete
    /// event but a usage chunk; an event not yet complete is held.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while !data.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if data[0] == b'\n' {
                    self.take(&data[..1], out);
                    data = &data[1..];
                }
                if self.ended {
                    self.dispatch(out);
                }
                continue;
            }
            let Some(at) = memchr::memchr2(b'\n', b'\r', data) else {
                self.take(data, out);
                self.line_len += data.len();
                return;
            };
            self.take(&data[..=at], out);
            let blank = self.line_len + at == 0;
            self.line_len = 0;
            self.ended = blank;
            if data[at] == b'\r' {
                self.after_cr = true;
            } else if blank {
                self.dispatch(out);
            }
            data = &data[at + 1..];
        }
    }

    /// The stream ended: what is held goes on (an event cut short is passed as it is).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            self.dispatch(out);
        }
        out.append(&mut self.event);
        self.after_cr = false;
    }

    fn take(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.passing {
            out.extend_from_slice(bytes);
            return;
        }
        self.event.extend_from_slice(bytes);
        if self.event.len() > MAX_HELD {
            self.passing = true;
            out.append(&mut self.event);
        }
    }

    fn dispatch(&mut self, out: &mut Vec<u8>) {
        self.ended = false;
        if std::mem::take(&mut self.passing) {
            return;
        }
        if is_usage_chunk(&self.event) {
            self.dropped += 1;
            self.event.clear();
        } else {
            out.append(&mut self.event);
        }
    }
}

/// Whether an event's raw bytes are a chunk with no choices and a `usage` object.
fn is_usage_chunk(event: &[u8]) -> bool {
    // Cheap first: most events are content chunks without either word.
    if memchr::memmem::find(event, b"\"usage\"").is_none() {
        return false;
    }
    let mut data = Vec::new();
    for line in event.split(|b| *b == b'\n' || *b == b'\r') {
        if let Some(value) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
        } else if line.starts_with(b"event:") {
            // A named event is another API's (the Responses API, Anthropic): kept.
            return false;
        }
    }
    let Ok(value) = serde_json::from_slice::<Value>(&data) else {
        return false;
    };
    let no_choices = value
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty);
    no_choices && value.get("usage").is_some_and(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTENT: &str = "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hé\"}}],\"usage\":null}\n\n";
    const USAGE: &str = "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn filtered(chunks: &[&[u8]]) -> (Vec<u8>, u32) {
        let mut filter = UsageChunkFilter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            filter.push(chunk, &mut out);
        }
        filter.finish(&mut out);
        (out, filter.dropped)
    }

    #[test]
    fn drops_only_the_usage_chunk_whatever_the_split() {
        let stream = format!("{CONTENT}{CONTENT}{USAGE}{DONE}");
        let expected = format!("{CONTENT}{CONTENT}{DONE}");
        let bytes = stream.as_bytes();
        assert_eq!(filtered(&[bytes]), (expected.clone().into_bytes(), 1));
        for cut in 0..bytes.len() {
            assert_eq!(
                filtered(&[&bytes[..cut], &bytes[cut..]]),
                (expected.clone().into_bytes(), 1),
                "cut at {cut}"
            );
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(filtered(&bytewise), (expected.into_bytes(), 1));
    }

    #[test]
    fn crlf_events_are_kept_byte_for_byte() {
        let crlf = |s: &str| s.replace('\n', "\r\n");
        let stream = format!("{}{}{}", crlf(CONTENT), crlf(USAGE), crlf(DONE));
        let expected = format!("{}{}", crlf(CONTENT), crlf(DONE));
        let bytes = stream.as_bytes();
        for cut in 0..bytes.len() {
            for cut2 in cut..bytes.len() {
                let (out, dropped) = filtered(&[&bytes[..cut], &bytes[cut..cut2], &bytes[cut2..]]);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    expected,
                    "cuts at {cut}, {cut2}"
                );
                assert_eq!(dropped, 1);
            }
        }
        // Bare `\r` line ends too.
        let cr = USAGE.replace('\n', "\r");
        assert_eq!(filtered(&[cr.as_bytes()]), (Vec::new(), 1));
    }

    #[test]
    fn other_events_pass() {
        // Usage on the last content chunk (some servers): content, so kept.
        let last = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":1}}\n\n";
        // A named event of another API, a comment, a split data line.
        let named = "event: response.completed\ndata: {\"choices\":[],\"usage\":{}}\n\n";
        let comment = ": keep-alive\n\n";
        let split = "data: {\"choices\":[],\ndata: \"usage\":{\"prompt_tokens\":1}}\n\n";
        let stream = format!("{last}{named}{comment}{split}");
        let (out, dropped) = filtered(&[stream.as_bytes()]);
        assert_eq!(dropped, 1, "the data lines joined are a usage chunk");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{last}{named}{comment}")
        );
        // A cut-off end passes as it is; a long event passes as it comes.
        let (out, _) = filtered(&[b"data: {\"choices\":[],\"usage\":{}}"]);
        assert_eq!(out, b"data: {\"choices\":[],\"usage\":{}}");
        let long = format!("data: \"{}\"\n\n", "x".repeat(MAX_HELD * 2));
        let mut filter = UsageChunkFilter::default();
        let mut out = Vec::new();
        filter.push(&long.as_bytes()[..MAX_HELD + 10], &mut out);
        assert_eq!(out.len(), MAX_HELD + 10, "not held past the cap");
        filter.push(&long.as_bytes()[MAX_HELD + 10..], &mut out);
        filter.finish(&mut out);
        assert_eq!(out, long.as_bytes());
    }
}
