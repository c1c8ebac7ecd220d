//! An incremental Server-Sent Events splitter: bytes in, complete events out, whatever
//! the chunking (a line, or a UTF-8 character, may be split across reads). Events end
//! at a blank line (`\n\n`, `\r\n\r\n`, or `\r\r`).

/// One event's `event:` name and joined `data:` lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Longest partial line kept while waiting for its end; a longer one is dropped (the
/// stream still passes through untouched, only its reading stops).
const MAX_LINE: usize = 1 << 20;

#[derive(Default)]
pub struct SseSplitter {
    line: Vec<u8>,
    current: SseEvent,
    has_data: bool,
    /// The previous chunk ended in `\r`: a following `\n` belongs to that line end.
    after_cr: bool,
    overflowed: bool,
}

impl SseSplitter {
    /// Feeds bytes; calls `on_event` for each event completed by them.
    pub fn feed(&mut self, mut bytes: &[u8], on_event: &mut dyn FnMut(&SseEvent)) {
        if self.after_cr {
            if bytes.first() == Some(&b'\n') {
                bytes = &bytes[1..];
            }
            self.after_cr = false;
        }
        while !bytes.is_empty() {
            let Some(end) = bytes.iter().position(|b| *b == b'\n' || *b == b'\r') else {
                self.push_partial(bytes);
                return;
            };
            self.push_partial(&bytes[..end]);
            let line = std::mem::take(&mut self.line);
            if !std::mem::take(&mut self.overflowed) {
                self.end_line(&line, on_event);
            }
            self.line = line;
            self.line.clear();
            let crlf = bytes[end] == b'\r';
            bytes = &bytes[end + 1..];
            if crlf {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
        }
    }

    fn push_partial(&mut self, bytes: &[u8]) {
        if self.line.len() + bytes.len() > MAX_LINE {
            self.overflowed = true;
            self.line.clear();
        } else if !self.overflowed {
            self.line.extend_from_slice(bytes);
        }
    }

    fn end_line(&mut self, line: &[u8], on_event: &mut dyn FnMut(&SseEvent)) {
        if line.is_empty() {
            if self.has_data || self.current.event.is_some() {
                on_event(&self.current);
            }
            self.current = SseEvent::default();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return; // comment
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.current.event = Some(value.into_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_of(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut splitter = SseSplitter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, &mut |e| out.push(e.clone()));
        }
        out
    }

    #[test]
    fn splits_whatever_the_chunking() {
        let stream = "event: a\ndata: {\"x\": \"é\"}\n\ndata: 1\ndata: 2\n\r\n: comment\n\ndata: [DONE]\r\n\r\n".as_bytes();
        let whole = events_of(&[stream]);
        assert_eq!(whole.len(), 3);
        assert_eq!(
            whole[0],
            SseEvent {
                event: Some("a".into()),
                data: "{\"x\": \"é\"}".into()
            }
        );
        assert_eq!(whole[1].data, "1\n2");
        assert_eq!(whole[2].data, "[DONE]");
        // Every split point, including inside the two-byte é and between \r and \n.
        for cut in 0..stream.len() {
            assert_eq!(
                events_of(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(events_of(&bytewise), whole);
    }
}
