//! A text stream masked and restored as it arrives, with a bounded look-behind: the
//! last `masker.look_behind()` bytes are held back so that a value split across two
//! pieces is still found whole, and a vault token split across pieces is still
//! restored (held from its `<` while it can still match, at most the longest token).
//!
//! What is held, exactly: the text after the last char boundary at or before
//! `len - look_behind`, or from the start of a found value that reaches into that tail
//! (it might still grow), so at most look-behind plus one value. `finish` (the end of
//! the stream, or of an SSE content block) flushes it. A restored token is a boundary:
//! the text before it is flushed, and the client's own value is never masked.

use super::edit::find_spans;
use super::error::BodyError;
use super::restore::{Piece, Pieces, unfinished_token};
use super::{Findings, Span, TextMasker, Vault};
use crate::json_text::encode_string;

/// Bytes of already emitted text kept before the held text, so detectors that look at
/// what comes before a value (`api_key=`, a word boundary) still see it.
const LEFT_CONTEXT: usize = 64;

pub struct TextStream {
    masker: Option<std::sync::Arc<dyn TextMasker>>,
    restore: bool,
    /// The text is JSON (streamed tool-call arguments): restored values are escaped,
    /// and a value masked outside a string (a number) is written as a string.
    json_escaped: bool,
    /// Where the emitted text of a JSON stream ends: inside a string or not.
    json_lex: JsonLex,
    look_behind: usize,
    /// Text not yet emitted, after `context` bytes of emitted text.
    pending: String,
    context: usize,
    /// Text held for a token that may still be completed (restore only).
    unrestored: String,
    /// The bytes of a UTF-8 char cut by the end of the last piece.
    partial_char: Vec<u8>,
    /// Bytes taken in so far, for the offset of invalid UTF-8.
    received: usize,
    spans: Vec<Span>,
}

impl std::fmt::Debug for TextStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the held text.
        f.debug_struct("TextStream")
            .field(
                "held",
                &(self.pending.len() - self.context + self.unrestored.len()),
            )
            .finish()
    }
}

impl TextStream {
    /// A stream masked with `masker` (if any) and, when `restore`, with the vault's
    /// tokens restored.
    pub fn new(masker: Option<std::sync::Arc<dyn TextMasker>>, restore: bool) -> Self {
        let look_behind = masker.as_ref().map_or(0, |m| m.look_behind());
        TextStream {
            masker,
            restore,
            json_escaped: false,
            json_lex: JsonLex::default(),
            look_behind,
            pending: String::new(),
            context: 0,
            unrestored: String::new(),
            partial_char: Vec::new(),
            received: 0,
            spans: Vec::new(),
        }
    }

    /// For a text that is JSON written piece by piece (tool-call arguments): a restored
    /// value goes in escaped as inside a JSON string, where its token was, and a value
    /// masked where no string is open (`{"card": 4111111111111111}`) is replaced by a
    /// string (`{"card": "[CREDIT_CARD]"}`), as in arguments masked whole.
    pub fn restoring_into_json(mut self, json: bool) -> Self {
        self.json_escaped = json;
        self
    }

    /// Bytes of text held back now.
    pub fn held(&self) -> usize {
        self.pending.len() - self.context + self.unrestored.len() + self.partial_char.len()
    }

    /// Takes raw bytes (a UTF-8 char may be split between pieces); appends what is safe
    /// to emit to `out`. Invalid UTF-8 is [`BodyError::NotText`].
    pub fn push_bytes(
        &mut self,
        mut data: &[u8],
        vault: &mut Vault,
        out: &mut String,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        let start = self.received;
        self.received += data.len();
        if !self.partial_char.is_empty() {
            let mut char_bytes = std::mem::take(&mut self.partial_char);
            // Complete the cut char first: at most 3 more bytes.
            while !data.is_empty()
                && std::str::from_utf8(&char_bytes).is_err()
                && char_bytes.len() < 4
            {
                char_bytes.push(data[0]);
                data = &data[1..];
                if let Err(error) = std::str::from_utf8(&char_bytes)
                    && error.error_len().is_some()
                {
                    return Err(BodyError::NotText { offset: start });
                }
            }
            match std::str::from_utf8(&char_bytes) {
                Ok(text) => self.push_str(text, vault, out, findings)?,
                Err(_) if data.is_empty() => {
                    self.partial_char = char_bytes;
                    return Ok(());
                }
                Err(_) => return Err(BodyError::NotText { offset: start }),
            }
        }
        let (text, rest) = match std::str::from_utf8(data) {
            Ok(text) => (text, &[][..]),
            Err(error) if error.error_len().is_none() => {
                let (valid, rest) = data.split_at(error.valid_up_to());
                // Valid by construction.
                (std::str::from_utf8(valid).unwrap_or_default(), rest)
            }
            Err(error) => {
                return Err(BodyError::NotText {
                    offset: self.received - data.len() + error.valid_up_to(),
                });
            }
        };
        self.partial_char.extend_from_slice(rest);
        self.push_str(text, vault, out, findings)
    }

    /// Takes text; appends what is safe to emit to `out`.
    pub fn push_str(
        &mut self,
        text: &str,
        vault: &mut Vault,
        out: &mut String,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        if !self.restore || vault.is_empty() {
            return self.mask_push(text, vault, out, findings);
        }
        let mut buffer = std::mem::take(&mut self.unrestored);
        buffer.push_str(text);
        let held_from = unfinished_token(&buffer, vault.longest_token()).unwrap_or(buffer.len());
        let result = self.restore_run(&buffer[..held_from], vault, out, findings);
        buffer.drain(..held_from);
        self.unrestored = buffer;
        result
    }

    /// Restores the tokens of `text` (which holds no unfinished token), masking the
    /// plain runs between them.
    fn restore_run(
        &mut self,
        text: &str,
        vault: &mut Vault,
        out: &mut String,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        if !text.contains('<') {
            return self.mask_push(text, vault, out, findings);
        }
        let pieces: Vec<(bool, usize, usize, String)> = Pieces::new(text, vault)
            .map(|piece| match piece {
                Piece::Plain { text, at } => (false, at, at + text.len(), String::new()),
                Piece::Original { value, at, len } => (true, at, at + len, value.to_string()),
            })
            .collect();
        for (original, start, end, value) in pieces {
            if original {
                self.mask_flush(vault, out, findings)?;
                // A value that could be masked is not in the left context of the next.
                self.pending.clear();
                self.context = 0;
                if self.json_escaped {
                    let mut quoted = Vec::with_capacity(value.len() + 2);
                    encode_string(&value, &mut quoted);
                    // Without its quotes: the token was inside a string already.
                    out.push_str(&String::from_utf8_lossy(&quoted[1..quoted.len() - 1]));
                } else {
                    out.push_str(&value);
                }
            } else {
                self.mask_push(&text[start..end], vault, out, findings)?;
            }
        }
        Ok(())
    }

    fn mask_push(
        &mut self,
        text: &str,
        vault: &mut Vault,
        out: &mut String,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        let Some(masker) = self.masker.clone() else {
            out.push_str(text);
            return Ok(());
        };
        self.pending.push_str(text);
        if self.pending.len() - self.context <= self.look_behind {
            // Nothing can be emitted yet: all of it is within the look-behind.
            return Ok(());
        }
        let mut spans = std::mem::take(&mut self.spans);
        spans.clear();
        find_spans(masker.as_ref(), &self.pending, None, &mut spans);
        let mut cut = self
            .pending
            .floor_char_boundary(self.pending.len() - self.look_behind)
            .max(self.context);
        for span in &spans {
            let start = span.start.max(self.context);
            if start < cut && span.end > cut && span.end - start <= self.look_behind {
                // It might still grow: held from its start.
                cut = start;
                break;
            }
        }
        let result = self.emit(masker.as_ref(), &spans, cut, vault, out, findings);
        self.spans = spans;
        result
    }

    /// Appends the text of `pending` up to `cut` (from the end of the context) with the
    /// values in `spans` replaced; a value that starts before `cut` is replaced whole
    /// (only one longer than the look-behind reaches past it). Keeps the rest.
    fn emit(
        &mut self,
        masker: &dyn TextMasker,
        spans: &[Span],
        mut cut: usize,
        vault: &mut Vault,
        out: &mut String,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        let mut at = self.context;
        let mut lex = self.json_lex;
        for span in spans {
            if span.end <= at {
                continue;
            }
            let start = span.start.max(at);
            if start >= cut {
                break;
            }
            out.push_str(&self.pending[at..start]);
            let value_span = Span {
                start,
                end: span.end,
                kind: span.kind.clone(),
                by_context: span.by_context,
            };
            let value = &self.pending[start..span.end];
            let from = out.len();
            masker.replace(&value_span, value, vault, out, findings)?;
            if self.json_escaped {
                lex.advance(&self.pending[at..start]);
                if !lex.in_string && out[from..] != *value {
                    // A number of the JSON: its replacement is a string.
                    let mut quoted = Vec::with_capacity(out.len() - from + 2);
                    encode_string(&out[from..], &mut quoted);
                    out.truncate(from);
                    out.push_str(&String::from_utf8_lossy(&quoted));
                }
                lex.advance(value);
            }
            at = span.end;
            cut = cut.max(at);
        }
        if at < cut {
            out.push_str(&self.pending[at..cut]);
            if self.json_escaped {
                lex.advance(&self.pending[at..cut]);
            }
        }
        self.json_lex = lex;
        let keep = self
            .pending
            .floor_char_boundary(cut.saturating_sub(LEFT_CONTEXT));
        self.pending.drain(..keep);
        self.context = cut - keep;
        Ok(())
    }

    fn mask_flush(
        &mut self,
        vault: &mut Vault,
        out: &mut String,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        let Some(masker) = self.masker.clone() else {
            return Ok(());
        };
        if self.pending.len() == self.context {
            return Ok(());
        }
        let mut spans = std::mem::take(&mut self.spans);
        spans.clear();
        find_spans(masker.as_ref(), &self.pending, None, &mut spans);
        let end = self.pending.len();
        let result = self.emit(masker.as_ref(), &spans, end, vault, out, findings);
        self.spans = spans;
        result
    }

    /// Emits everything held: the end of the stream (or of a content block).
    pub fn finish(
        &mut self,
        vault: &mut Vault,
        out: &mut String,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        if !self.partial_char.is_empty() {
            return Err(BodyError::NotText {
                offset: self.received - self.partial_char.len(),
            });
        }
        let unrestored = std::mem::take(&mut self.unrestored);
        self.restore_run(&unrestored, vault, out, findings)?;
        self.mask_flush(vault, out, findings)
    }
}

/// Whether a JSON text read so far ends inside a string: enough to tell a number from
/// a string's contents where a value is replaced.
#[derive(Clone, Copy, Debug, Default)]
struct JsonLex {
    in_string: bool,
    escaped: bool,
}

impl JsonLex {
    fn advance(&mut self, text: &str) {
        for &b in text.as_bytes() {
            if !self.in_string {
                self.in_string = b == b'"';
            } else if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::sample_masker::shared as masker;
    use crate::masking::{Action, Kind};

    /// Streams `pieces`; returns the output and the most ever held.
    fn run(
        stream: &mut TextStream,
        pieces: &[&[u8]],
        vault: &mut Vault,
    ) -> Result<(String, usize), BodyError> {
        let mut findings = Findings::default();
        let mut out = String::new();
        let mut most_held = 0;
        for piece in pieces {
            stream.push_bytes(piece, vault, &mut out, &mut findings)?;
            most_held = most_held.max(stream.held());
        }
        stream.finish(vault, &mut out, &mut findings)?;
        Ok((out, most_held))
    }

    #[test]
    fn a_value_split_at_any_point_is_found_and_the_hold_is_bounded() {
        let text = "before SECRET-1234 and bob@example.org then a longer tail of text é€ done";
        let expected = "before [SECRET] and [EMAIL_ADDRESS] then a longer tail of text é€ done";
        for split in 0..=text.len() {
            let (a, b) = text.as_bytes().split_at(split);
            let mut stream = TextStream::new(masker(Action::Redact), false);
            let (out, held) = run(&mut stream, &[a, b], &mut Vault::default()).unwrap();
            assert_eq!(out, expected, "split at {split}");
            assert!(held <= 2 * 32, "held {held} at split {split}");
        }
        // Byte by byte: still found, and text flows out as it comes.
        let mut stream = TextStream::new(masker(Action::Redact), false);
        let mut vault = Vault::default();
        let mut findings = Findings::default();
        let mut out = String::new();
        for byte in text.as_bytes() {
            stream
                .push_bytes(&[*byte], &mut vault, &mut out, &mut findings)
                .unwrap();
            assert!(stream.held() <= 2 * 32);
        }
        assert!(!out.is_empty());
        stream.finish(&mut vault, &mut out, &mut findings).unwrap();
        assert_eq!(out, expected);
        assert_eq!(findings.total(), 2);
    }

    #[test]
    fn a_value_that_may_still_grow_is_not_emitted_in_part() {
        let mut stream = TextStream::new(masker(Action::Redact), false);
        let mut vault = Vault::default();
        let mut findings = Findings::default();
        let mut out = String::new();
        let filler = "x".repeat(40);
        stream
            .push_str(
                &format!("{filler}SECRET-12"),
                &mut vault,
                &mut out,
                &mut findings,
            )
            .unwrap();
        assert!(!out.contains("SECRET"));
        stream
            .push_str(&format!("34{filler}"), &mut vault, &mut out, &mut findings)
            .unwrap();
        stream.finish(&mut vault, &mut out, &mut findings).unwrap();
        assert_eq!(out, format!("{filler}[SECRET]{filler}"));
    }

    #[test]
    fn a_utf8_char_split_across_pieces_passes_whole_and_bad_utf8_is_refused() {
        let text = "aé€😀b".as_bytes();
        for split in 0..=text.len() {
            let (a, b) = text.split_at(split);
            let mut stream = TextStream::new(masker(Action::Redact), false);
            let (out, _) = run(&mut stream, &[a, b], &mut Vault::default()).unwrap();
            assert_eq!(out, "aé€😀b");
        }
        let mut stream = TextStream::new(masker(Action::Redact), false);
        assert!(matches!(
            run(&mut stream, &[b"ok \xff"], &mut Vault::default()),
            Err(BodyError::NotText { offset: 3 })
        ));
        let mut stream = TextStream::new(None, true);
        assert!(run(&mut stream, &[b"ok \xe2\x82"], &mut Vault::default()).is_err());
    }

    #[test]
    fn pseudonyms_split_at_any_point_are_restored_and_never_masked_again() {
        let mut vault = Vault::default();
        let email = Kind("EMAIL_ADDRESS".into());
        vault.pseudonym(&email, "ann@example.org");
        let text = "Dear <EMAIL_ADDRESS_1>, your key SECRET-77 <EMAIL_ADDRESS_9> <x>";
        for masking in [None, masker(Action::Redact)] {
            let expected = if masking.is_some() {
                "Dear ann@example.org, your key [SECRET] <EMAIL_ADDRESS_9> <x>"
            } else {
                "Dear ann@example.org, your key SECRET-77 <EMAIL_ADDRESS_9> <x>"
            };
            for split in 0..=text.len() {
                let (a, b) = text.as_bytes().split_at(split);
                let mut stream = TextStream::new(masking.clone(), true);
                let (out, _) = run(&mut stream, &[a, b], &mut vault).unwrap();
                assert_eq!(out, expected, "split at {split}");
            }
        }
    }

    #[test]
    fn a_block_action_fails_the_stream() {
        let mut stream = TextStream::new(masker(Action::Block), false);
        assert!(matches!(
            run(&mut stream, &[b"a SECRET-1 b"], &mut Vault::default()),
            Err(BodyError::Blocked(_))
        ));
    }
}
