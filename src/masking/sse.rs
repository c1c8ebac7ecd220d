//! Server-Sent Events masked and restored across chunk and event boundaries. Events
//! are read whatever the chunking; the delta texts of one choice or content block
//! (OpenAI chat and completions chunks, Responses `*.delta` events, Anthropic
//! `content_block_delta`) are one [`TextStream`], so a value split over events is found.
//!
//! A delta event is sent on at once carrying the masked text that is safe to emit
//! (less or more than it came with); one whose text is all held back is held, and its
//! text rides on the next event of its block. The end of a block (a `finish_reason`,
//! `content_block_stop`, `*.done`), any other event and the end of the stream flush the
//! held text first, in an event built like the block's last one; events that carry no
//! delta and end nothing (an annotation, a content filter's verdict, a role alone) pass
//! at once without flushing it. Events without text
//! (usage, `[DONE]`, pings) pass byte for byte, in order; lines other than `data:`
//! (comments, ids, unknown fields) are masked as texts of their own; every other field
//! of an event stays as it was, and its JSON stays valid.
//!
//! Only `data:` lines are restored: in `id:`, `event:`, `retry:`, comments and unknown
//! fields a pseudonym stays a pseudonym. A browser's `EventSource` keeps the last `id:`
//! and sends it back as the `Last-Event-ID` header when it reconnects, and request
//! headers are not masked: a value restored into an id would go to the endpoint in
//! clear.

use std::sync::Arc;

use serde_json::Value;

use super::edit::TextEditor;
use super::error::BodyError;
use super::json::{self, Part, Selection, Site, StringEdit};
use super::stream::TextStream;
use super::{Findings, TextMasker, Vault};

/// The Responses API events whose `delta` is text (not audio or other bytes), and the
/// Realtime API's (over a WebSocket, read as JSON lines: its GA names, then the beta's).
const RESPONSES_TEXT_EVENTS: &[&str] = &[
    "response.output_text",
    "response.refusal",
    "response.function_call_arguments",
    "response.reasoning_summary_text",
    "response.reasoning_text",
    "response.audio.transcript",
    "response.output_audio_transcript",
    "response.text",
    "response.audio_transcript",
];

/// The texts of an Ollama line (JSON pointers), as [`classify_ollama`] reads them.
const OLLAMA_TEXTS: [&str; 4] = [
    "/message/content",
    "/message/thinking",
    "/response",
    "/thinking",
];

/// Events whose `delta` is audio (base64): nothing to mask, and no reason to send a
/// text stream's held text before them (the Realtime API interleaves them with the
/// transcript's deltas).
const AUDIO_DELTA_EVENTS: &[&str] = &["response.audio.delta", "response.output_audio.delta"];

/// One line of an event, without its ending.
struct Line {
    text: String,
    ending: &'static [u8],
}

/// A delta text in an event: which stream it belongs to and where it is.
struct Delta {
    /// The stream: `chat/{choice}/content`, `anthropic/{index}/text`, ...
    key: String,
    /// The JSON pointer of the text in the event's data.
    pointer: String,
    text: String,
}

enum EventKind {
    /// Carries nothing to mask (pings, thinking deltas): passed at once.
    Neutral,
    /// Delta texts, and the streams it ends (key prefixes).
    Deltas {
        deltas: Vec<Delta>,
        ends: Vec<String>,
        /// Nothing but one delta text: it may be held while its text is.
        pure: bool,
    },
    /// Ends the streams with these key prefixes, then passes (edited as a whole).
    Ends(Vec<String>),
    /// Carries no delta text and ends no stream, but may hold other contents (a
    /// citation's annotation, a content filter's verdict, a chunk with only a role or
    /// an empty delta, `response.in_progress`): edited as a whole and passed at once,
    /// the streams' held text staying held. Flushing it there would send a value split
    /// around such an event in two halves that no detector reads.
    Aside,
    /// Anything else: every stream is flushed before it, its contents edited whole.
    Other,
}

/// How to build an event that carries a block's held text.
struct Template {
    event: Option<String>,
    data: Value,
    pointer: String,
}

/// The block's last delta event, kept as it came (building a [`Template`] from it is
/// left to the end of the block, when there is held text to send).
struct LastDelta {
    event: Option<String>,
    data: String,
    pointer: String,
}

struct BlockStream {
    key: String,
    text: TextStream,
    last: Option<LastDelta>,
    /// The `id:` line of an event of this block that was held (dropped, its text
    /// riding on a later event): written on the event that carries its text, so that
    /// a client's `Last-Event-ID` still reaches it.
    held_id: Option<String>,
}

pub struct SseMasker {
    masker: Option<Arc<dyn TextMasker>>,
    restore: bool,
    max_line: usize,
    /// JSON lines, not SSE: every line is the data of one event.
    json_lines: bool,
    line: Vec<u8>,
    /// The last piece ended in `\r`: a `\n` first in the next one ends the same line.
    pending_cr: bool,
    lines: Vec<Line>,
    /// Bytes of `lines`, for the limit.
    event_bytes: usize,
    /// The line ending the stream uses, for the events built here.
    newline: &'static [u8],
    blocks: Vec<BlockStream>,
}

impl std::fmt::Debug for SseMasker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseMasker")
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

fn field_of(line: &str) -> (&str, &str) {
    match line.split_once(':') {
        Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
        None => (line, ""),
    }
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The delta texts and stream ends of an event's JSON.
fn classify(data: &Value) -> EventKind {
    if let Some(choices) = data.get("choices").and_then(Value::as_array) {
        return classify_choices(data, choices);
    }
    if let Some(done) = data.get("done").and_then(Value::as_bool) {
        return classify_ollama(data, done);
    }
    let Some(kind) = data.get("type").and_then(Value::as_str) else {
        return EventKind::Other;
    };
    let index = |name: &str| data.get(name).and_then(Value::as_u64).unwrap_or(0);
    match kind {
        "ping" => EventKind::Neutral,
        "response.completed" | "response.incomplete" | "response.failed" => EventKind::Other,
        audio if AUDIO_DELTA_EVENTS.contains(&audio) => EventKind::Neutral,
        "content_block_delta" => {
            let block = index("index");
            let delta = data.get("delta");
            let (field, name) = match delta.and_then(|d| d.get("type")).and_then(Value::as_str) {
                Some("text_delta") => ("text", "text"),
                Some("input_json_delta") => ("partial_json", "json"),
                // A citation quotes its document (`citation.cited_text`): masked
                // whole, the block's text held.
                Some("citations_delta") => return EventKind::Aside,
                // Thinking text is covered by its signature: not touched.
                _ => return EventKind::Neutral,
            };
            match delta.and_then(|d| d.get(field)).and_then(Value::as_str) {
                Some(text) => EventKind::Deltas {
                    deltas: vec![Delta {
                        key: format!("anthropic/{block}/{name}"),
                        pointer: format!("/delta/{field}"),
                        text: text.to_string(),
                    }],
                    ends: Vec::new(),
                    pure: true,
                },
                None => EventKind::Other,
            }
        }
        "content_block_stop" => EventKind::Ends(vec![format!("anthropic/{}/", index("index"))]),
        _ => {
            let (stem, suffix) = kind.rsplit_once('.').unwrap_or((kind, ""));
            if !RESPONSES_TEXT_EVENTS.contains(&stem) {
                // An item or a part ending (`*.done`) ends what is held in it.
                return if kind.starts_with("response.") && suffix != "done" {
                    EventKind::Aside
                } else {
                    EventKind::Other
                };
            }
            // Ends in `/`: it is also the prefix its `.done` event ends.
            let key = format!(
                "responses/{stem}/{}/{}/",
                index("output_index"),
                index("content_index")
            );
            match (suffix, data.get("delta").and_then(Value::as_str)) {
                ("delta", Some(text)) => EventKind::Deltas {
                    deltas: vec![Delta {
                        key,
                        pointer: "/delta".to_string(),
                        text: text.to_string(),
                    }],
                    ends: Vec::new(),
                    pure: true,
                },
                ("done", _) => EventKind::Ends(vec![key]),
                _ => EventKind::Other,
            }
        }
    }
}

/// Ollama's own API: `message.content` and `message.thinking` (chat), `response` and
/// `thinking` (generate), each a text of its own; `done` last.
fn classify_ollama(data: &Value, done: bool) -> EventKind {
    let deltas: Vec<Delta> = OLLAMA_TEXTS
        .iter()
        .filter_map(|&pointer| {
            let text = data.pointer(pointer)?.as_str()?;
            Some(Delta {
                key: format!("ollama/{pointer}"),
                pointer: pointer.to_string(),
                text: text.to_string(),
            })
        })
        .collect();
    let ends = if done {
        vec!["ollama/".to_string()]
    } else {
        Vec::new()
    };
    if deltas.is_empty() {
        return if done {
            EventKind::Ends(ends)
        } else {
            EventKind::Other
        };
    }
    let message_is_text = data
        .get("message")
        .and_then(Value::as_object)
        .is_none_or(|message| {
            message
                .keys()
                .all(|k| matches!(k.as_str(), "role" | "content" | "thinking"))
        });
    // A line may be held when at most one of its texts says anything (a thinking
    // line's `content` is empty).
    let texts = deltas.iter().filter(|delta| !delta.text.is_empty()).count();
    EventKind::Deltas {
        deltas,
        ends,
        pure: !done && message_is_text && texts <= 1,
    }
}

fn classify_choices(data: &Value, choices: &[Value]) -> EventKind {
    let mut deltas = Vec::new();
    let mut ends = Vec::new();
    let mut pure = choices.len() == 1 && data.get("usage").is_none_or(Value::is_null);
    for (position, choice) in choices.iter().enumerate() {
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let at = format!("/choices/{position}");
        if !choice.get("finish_reason").is_none_or(Value::is_null) {
            ends.push(format!("chat/{index}/"));
            pure = false;
        }
        if !choice.get("logprobs").is_none_or(Value::is_null) {
            pure = false;
        }
        if let Some(text) = choice.get("text").and_then(Value::as_str) {
            deltas.push(Delta {
                key: format!("chat/{index}/text"),
                pointer: format!("{at}/text"),
                text: text.to_string(),
            });
        }
        let Some(delta) = choice.get("delta").and_then(Value::as_object) else {
            continue;
        };
        for (field, value) in delta {
            match (field.as_str(), value) {
                // A reasoning model's thoughts (DeepSeek's and vLLM's
                // `reasoning_content`, OpenRouter's `reasoning`) are a stream of their own.
                (
                    "content" | "refusal" | "reasoning_content" | "reasoning",
                    Value::String(text),
                ) => deltas.push(Delta {
                    key: format!("chat/{index}/{field}"),
                    pointer: format!("{at}/delta/{field}"),
                    text: text.clone(),
                }),
                ("tool_calls", Value::Array(calls)) => {
                    for (call_position, call) in calls.iter().enumerate() {
                        let call_index = call
                            .get("index")
                            .and_then(Value::as_u64)
                            .unwrap_or(call_position as u64);
                        let function = call.get("function");
                        if let Some(text) = function
                            .and_then(|f| f.get("arguments"))
                            .and_then(Value::as_str)
                        {
                            deltas.push(Delta {
                                key: format!("chat/{index}/tool/{call_index}"),
                                pointer: format!(
                                    "{at}/delta/tool_calls/{call_position}/function/arguments"
                                ),
                                text: text.to_string(),
                            });
                        }
                        // The first delta of a call names it: never held.
                        let only_arguments = call
                            .as_object()
                            .is_some_and(|c| c.keys().all(|k| k == "index" || k == "function"))
                            && function
                                .and_then(Value::as_object)
                                .is_some_and(|f| f.len() == 1);
                        pure &= calls.len() == 1 && only_arguments;
                    }
                }
                (
                    "content" | "refusal" | "role" | "reasoning_content" | "reasoning",
                    Value::Null,
                ) => {}
                _ => pure = false,
            }
        }
        if delta.contains_key("role") {
            pure = false;
        }
    }
    if deltas.is_empty() && ends.is_empty() {
        return EventKind::Aside;
    }
    if deltas.is_empty() {
        return EventKind::Ends(ends);
    }
    pure &= deltas.len() == 1;
    EventKind::Deltas { deltas, ends, pure }
}

/// Whether the text of the stream `key` (as [`classify`] names them) is JSON written
/// piece by piece: tool-call arguments. A value restored into it is escaped as in a
/// JSON string, so that a quote in it cannot break the arguments.
fn holds_json(key: &str) -> bool {
    key.contains("/tool/")
        || key.ends_with("/json")
        || key.starts_with("responses/response.function_call_arguments/")
}

/// A Responses event that repeats text its deltas carried (`*.done`, the finished
/// response): masked all the same, but its values are not counted a second time.
fn echoes_deltas(data: &Value) -> bool {
    data.get("type")
        .and_then(Value::as_str)
        .is_some_and(|kind| {
            kind.starts_with("response.")
                && (kind.ends_with(".done")
                    || matches!(
                        kind,
                        "response.completed" | "response.incomplete" | "response.failed"
                    ))
        })
}

/// A copy of a delta event with nothing but its one text (set later): the events that
/// carry held text must not repeat a role, a tool call's name or a finish reason.
fn template_of(last: &LastDelta) -> Option<Template> {
    let mut data: Value = serde_json::from_str(&last.data).ok()?;
    let mut pointer = last.pointer.clone();
    if let Some(choices) = data.get_mut("choices").and_then(Value::as_array_mut) {
        let position: usize = last
            .pointer
            .split('/')
            .nth(2)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let mut choice = choices.get(position).cloned().unwrap_or(Value::Null);
        if let Some(choice) = choice.as_object_mut() {
            choice.remove("logprobs");
            if choice.contains_key("finish_reason") {
                choice.insert("finish_reason".into(), Value::Null);
            }
            if let Some(delta_object) = choice.get_mut("delta").and_then(Value::as_object_mut) {
                let call = delta_object
                    .get("tool_calls")
                    .and_then(|calls| calls.as_array())
                    .and_then(|calls| {
                        let position: usize = last.pointer.split('/').nth(5)?.parse().ok()?;
                        calls.get(position).cloned()
                    });
                delta_object.clear();
                if let Some(call) = call {
                    let index = call.get("index").cloned().unwrap_or(Value::from(0));
                    delta_object.insert(
                        "tool_calls".into(),
                        serde_json::json!([{"index": index, "function": {"arguments": ""}}]),
                    );
                    pointer = "/choices/0/delta/tool_calls/0/function/arguments".into();
                } else {
                    let field = last.pointer.rsplit('/').next().unwrap_or("content");
                    delta_object.insert(field.to_string(), Value::from(""));
                    pointer = format!("/choices/0/delta/{}", pointer_escape(field));
                }
            } else {
                pointer = "/choices/0/text".into();
            }
        }
        *choices = vec![choice];
    }
    let ollama = data.get("done").is_some_and(Value::is_boolean);
    if let Some(message) = data
        .get_mut("message")
        .and_then(Value::as_object_mut)
        .filter(|_| ollama)
    {
        // Ollama: the message's role and this one text; a tool call is never repeated.
        let field = last
            .pointer
            .rsplit('/')
            .next()
            .unwrap_or("content")
            .to_string();
        let role = message.remove("role");
        message.clear();
        if let Some(role) = role {
            message.insert("role".into(), role);
        }
        message.insert("content".into(), Value::from(""));
        message.insert(field, Value::from(""));
    }
    if let Some(object) = data.as_object_mut().filter(|_| ollama) {
        // Ollama's generate: the other text of the line is not repeated either.
        for pointer in OLLAMA_TEXTS.iter().filter(|p| !p.starts_with("/message/")) {
            let key = &pointer[1..];
            if last.pointer != *pointer && object.contains_key(key) {
                object.insert(key.into(), Value::from(""));
            }
        }
    }
    if let Some(object) = data.as_object_mut() {
        object.remove("usage");
    }
    Some(Template {
        event: last.event.clone(),
        data,
        pointer,
    })
}

/// Edits an event's JSON: the delta texts become the text safe to emit, other
/// contents are masked and restored whole.
struct EventEdit<'e, 'a> {
    replacements: &'e [(String, String)],
    editor: TextEditor<'a>,
}

impl StringEdit for EventEdit<'_, '_> {
    fn edit(&mut self, site: &Site<'_>, text: &str, out: &mut String) -> Result<bool, BodyError> {
        if !self.replacements.is_empty() {
            let pointer = site.pointer();
            if let Some((_, replacement)) = self.replacements.iter().find(|(p, _)| *p == pointer) {
                out.push_str(replacement);
                return Ok(replacement != text);
            }
        }
        self.editor.edit(site, text, out)
    }

    fn edit_parts(
        &mut self,
        parts: &[Part<'_>],
        outs: &mut [String],
    ) -> Result<Vec<bool>, BodyError> {
        let replaced = |part: &Part<'_>| {
            self.replacements
                .iter()
                .find(|(pointer, _)| pointer == part.pointer)
                .map(|(_, text)| text)
        };
        if !parts.iter().any(|part| replaced(part).is_some()) {
            return self.editor.mask_parts(parts, outs);
        }
        let mut changed = Vec::with_capacity(parts.len());
        for (part, out) in parts.iter().zip(outs.iter_mut()) {
            changed.push(match replaced(part) {
                Some(text) => {
                    out.push_str(text);
                    text != part.text
                }
                None => self.editor.edit_part_alone(part, out)?,
            });
        }
        Ok(changed)
    }

    fn needs_pointers(&self) -> bool {
        !self.replacements.is_empty() || self.editor.needs_pointers()
    }
}

impl SseMasker {
    pub fn new(masker: Option<Arc<dyn TextMasker>>, restore: bool, max_line: usize) -> Self {
        SseMasker {
            masker,
            restore,
            max_line,
            json_lines: false,
            line: Vec::new(),
            pending_cr: false,
            lines: Vec::new(),
            event_bytes: 0,
            newline: b"\n",
            blocks: Vec::new(),
        }
    }

    /// A stream of JSON lines (NDJSON, as Ollama streams): each line is an event's data.
    pub fn json_lines(masker: Option<Arc<dyn TextMasker>>, restore: bool, max_line: usize) -> Self {
        SseMasker {
            json_lines: true,
            ..Self::new(masker, restore, max_line)
        }
    }

    /// Takes the next bytes of the stream; appends the events that can be sent to `out`.
    pub fn push(
        &mut self,
        mut data: &[u8],
        vault: &mut Vault,
        out: &mut Vec<u8>,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        if std::mem::take(&mut self.pending_cr) {
            let ending: &'static [u8] = match data.strip_prefix(b"\n") {
                Some(rest) => {
                    data = rest;
                    b"\r\n"
                }
                None => b"\r",
            };
            self.end_line(ending, vault, out, findings)?;
        }
        while let Some(end) = data.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.take_partial(&data[..end])?;
            let ending: &'static [u8] = match (data[end], data.get(end + 1)) {
                (b'\r', Some(b'\n')) => b"\r\n",
                (b'\r', None) => {
                    // Whether a `\n` follows is known with the next piece.
                    self.pending_cr = true;
                    return Ok(());
                }
                (b'\r', Some(_)) => b"\r",
                _ => b"\n",
            };
            data = &data[end + ending.len()..];
            self.end_line(ending, vault, out, findings)?;
        }
        self.take_partial(data)
    }

    fn end_line(
        &mut self,
        ending: &'static [u8],
        vault: &mut Vault,
        out: &mut Vec<u8>,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        let line = std::mem::take(&mut self.line);
        let text = String::from_utf8(line).map_err(|error| BodyError::NotText {
            offset: error.utf8_error().valid_up_to(),
        })?;
        if self.json_lines && !text.trim_ascii().is_empty() {
            self.newline = ending;
            return self.event(vec![Line { text, ending }], b"", vault, out, findings);
        }
        if text.is_empty() || self.json_lines {
            self.newline = ending;
            self.event_bytes = 0;
            let lines = std::mem::take(&mut self.lines);
            if !lines.is_empty() {
                return self.event(lines, ending, vault, out, findings);
            }
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(ending);
        } else {
            self.event_bytes += text.len() + ending.len();
            self.lines.push(Line { text, ending });
        }
        Ok(())
    }

    fn take_partial(&mut self, bytes: &[u8]) -> Result<(), BodyError> {
        if self.event_bytes + self.line.len() + bytes.len() > self.max_line {
            return Err(BodyError::TooLarge {
                limit: self.max_line,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// The end of the stream: an event left without its blank line, then every held
    /// text.
    pub fn finish(
        &mut self,
        vault: &mut Vault,
        out: &mut Vec<u8>,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        if std::mem::take(&mut self.pending_cr) {
            self.end_line(b"\r", vault, out, findings)?;
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            let text = String::from_utf8(line).map_err(|error| BodyError::NotText {
                offset: error.utf8_error().valid_up_to(),
            })?;
            self.lines.push(Line { text, ending: b"" });
        }
        if !self.lines.is_empty() {
            let lines = std::mem::take(&mut self.lines);
            self.event(lines, b"", vault, out, findings)?;
        }
        self.flush_blocks("", vault, out, findings)
    }

    /// Masks every line of an event but its `data:` lines, each as a text of its own:
    /// comments, `event:`, `id:` and lines a client ignores still reach it. Never
    /// restored (the module's doc says why).
    fn mask_other_lines(
        &self,
        lines: &mut [Line],
        vault: &mut Vault,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        let Some(masker) = self.masker.as_deref() else {
            return Ok(());
        };
        for line in lines {
            if field_of(&line.text).0 == "data" {
                continue;
            }
            let mut edited = String::new();
            let mut editor = TextEditor::new(Some(masker), false, vault, findings, None);
            if editor.edit_text(&line.text, None, &mut edited)? && !edited.contains(['\r', '\n']) {
                line.text = edited;
            }
        }
        Ok(())
    }

    fn event(
        &mut self,
        mut lines: Vec<Line>,
        blank: &[u8],
        vault: &mut Vault,
        out: &mut Vec<u8>,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        let mut name = None;
        let mut data: Option<String> = None;
        let fields = if self.json_lines {
            data = lines.first().map(|line| line.text.clone());
            &[][..]
        } else {
            self.mask_other_lines(&mut lines, vault, findings)?;
            &lines[..]
        };
        for line in fields {
            match field_of(&line.text) {
                ("event", value) => name = Some(value.to_string()),
                ("data", value) => match &mut data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                },
                _ => {}
            }
        }
        let Some(data) = data else {
            // Comments, ids, retry: masked above, line by line.
            write_raw(&lines, blank, out);
            return Ok(());
        };
        if data == "[DONE]" {
            self.flush_blocks("", vault, out, findings)?;
            write_raw(&lines, blank, out);
            return Ok(());
        }
        let Ok(parsed) = serde_json::from_str::<Value>(&data) else {
            // Not JSON: its text is masked and restored as a whole.
            self.flush_blocks("", vault, out, findings)?;
            let mut edited = String::new();
            let mut editor =
                TextEditor::new(self.masker.as_deref(), self.restore, vault, findings, None);
            if editor.edit_text(&data, None, &mut edited)? {
                self.write_event(&lines, &edited, blank, out);
            } else {
                write_raw(&lines, blank, out);
            }
            return Ok(());
        };
        match classify(&parsed) {
            EventKind::Neutral => {
                write_raw(&lines, blank, out);
                Ok(())
            }
            EventKind::Aside => self.write_edited(&lines, &data, &[], blank, vault, out, findings),
            EventKind::Other => {
                self.flush_blocks("", vault, out, findings)?;
                let mut echoed = Findings::default();
                let counted = if echoes_deltas(&parsed) {
                    &mut echoed
                } else {
                    findings
                };
                self.write_edited(&lines, &data, &[], blank, vault, out, counted)
            }
            EventKind::Ends(ends) => {
                for end in &ends {
                    self.flush_blocks(end, vault, out, findings)?;
                }
                let mut echoed = Findings::default();
                let counted = if echoes_deltas(&parsed) {
                    &mut echoed
                } else {
                    findings
                };
                self.write_edited(&lines, &data, &[], blank, vault, out, counted)
            }
            EventKind::Deltas { deltas, ends, pure } => {
                let mut replacements = Vec::with_capacity(deltas.len());
                for delta in &deltas {
                    let block = self.block(&delta.key);
                    let mut emitted = String::new();
                    block
                        .text
                        .push_str(&delta.text, vault, &mut emitted, findings)?;
                    block.last = Some(LastDelta {
                        event: name.clone(),
                        data: data.clone(),
                        pointer: delta.pointer.clone(),
                    });
                    replacements.push((delta.pointer.clone(), emitted));
                }
                // Only an event that ends nothing is held.
                let held = pure
                    && replacements.iter().all(|(_, emitted)| emitted.is_empty())
                    && deltas.iter().any(|delta| !delta.text.is_empty());
                let id = lines
                    .iter()
                    .find(|line| field_of(&line.text).0 == "id")
                    .map(|line| line.text.clone());
                let mut carried = None;
                for delta in &deltas {
                    if let Some(block) = self.blocks.iter_mut().find(|b| b.key == delta.key) {
                        if held {
                            block.held_id = id.clone().or(block.held_id.take());
                        } else if let Some(held_id) = block.held_id.take() {
                            carried = carried.or(Some(held_id));
                        }
                    }
                }
                if let Some(held_id) = carried.filter(|_| id.is_none() && !self.json_lines) {
                    lines.insert(
                        0,
                        Line {
                            text: held_id,
                            ending: self.newline,
                        },
                    );
                }
                for end in &ends {
                    // A block this event ends gets its held text in this event.
                    for (delta, (_, emitted)) in deltas.iter().zip(replacements.iter_mut()) {
                        if delta.key.starts_with(end.as_str())
                            && let Some(at) = self.blocks.iter().position(|b| b.key == delta.key)
                        {
                            let mut block = self.blocks.remove(at);
                            block.text.finish(vault, emitted, findings)?;
                        }
                    }
                    self.flush_blocks(end, vault, out, findings)?;
                }
                if held {
                    return Ok(());
                }
                self.write_edited(&lines, &data, &replacements, blank, vault, out, findings)
            }
        }
    }

    fn write_event(&self, lines: &[Line], data: &str, blank: &[u8], out: &mut Vec<u8>) {
        if self.json_lines {
            // The JSON writer escapes newlines: the data is still one line.
            out.extend_from_slice(data.as_bytes());
            out.extend_from_slice(lines.first().map_or(&b"\n"[..], |line| line.ending));
            return;
        }
        write_sse_event(lines, data, blank, out);
    }

    fn block(&mut self, key: &str) -> &mut BlockStream {
        let at = match self.blocks.iter().position(|b| b.key == key) {
            Some(at) => at,
            None => {
                self.blocks.push(BlockStream {
                    key: key.to_string(),
                    text: TextStream::new(self.masker.clone(), self.restore)
                        .restoring_into_json(holds_json(key)),
                    last: None,
                    held_id: None,
                });
                self.blocks.len() - 1
            }
        };
        &mut self.blocks[at]
    }

    /// Ends the blocks whose key starts with `prefix`: their held text is sent in an
    /// event built from the block's last one.
    fn flush_blocks(
        &mut self,
        prefix: &str,
        vault: &mut Vault,
        out: &mut Vec<u8>,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        let mut at = 0;
        while at < self.blocks.len() {
            if !self.blocks[at].key.starts_with(prefix) {
                at += 1;
                continue;
            }
            let mut block = self.blocks.remove(at);
            let mut text = String::new();
            block.text.finish(vault, &mut text, findings)?;
            if text.is_empty() {
                continue;
            }
            let Some(mut template) = block.last.as_ref().and_then(template_of) else {
                continue;
            };
            if let Some(slot) = template.data.pointer_mut(&template.pointer) {
                *slot = Value::String(text);
            }
            if self.json_lines {
                out.extend_from_slice(template.data.to_string().as_bytes());
                out.extend_from_slice(self.newline);
                continue;
            }
            if let Some(event) = &template.event {
                out.extend_from_slice(b"event: ");
                out.extend_from_slice(event.as_bytes());
                out.extend_from_slice(self.newline);
            }
            if let Some(id) = &block.held_id {
                out.extend_from_slice(id.as_bytes());
                out.extend_from_slice(self.newline);
            }
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(template.data.to_string().as_bytes());
            out.extend_from_slice(self.newline);
            out.extend_from_slice(self.newline);
        }
        Ok(())
    }

    /// Writes the event with its delta texts replaced and its other contents edited;
    /// byte for byte when nothing changed.
    #[allow(clippy::too_many_arguments)]
    fn write_edited(
        &mut self,
        lines: &[Line],
        data: &str,
        replacements: &[(String, String)],
        blank: &[u8],
        vault: &mut Vault,
        out: &mut Vec<u8>,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        let mut edit = EventEdit {
            replacements,
            editor: TextEditor::new(self.masker.as_deref(), self.restore, vault, findings, None),
        };
        let mut edited = Vec::with_capacity(data.len());
        if json::rewrite(
            data.as_bytes(),
            Selection::ResponseContents,
            &mut edit,
            &mut edited,
        )? {
            self.write_event(lines, &String::from_utf8_lossy(&edited), blank, out);
        } else {
            write_raw(lines, blank, out);
        }
        Ok(())
    }
}

fn write_raw(lines: &[Line], blank: &[u8], out: &mut Vec<u8>) {
    for line in lines {
        out.extend_from_slice(line.text.as_bytes());
        out.extend_from_slice(line.ending);
    }
    out.extend_from_slice(blank);
}

/// Writes the event's lines with its data replaced by `data` (one `data:` line per
/// line of it, where the first data line was).
fn write_sse_event(lines: &[Line], data: &str, blank: &[u8], out: &mut Vec<u8>) {
    let mut written = false;
    for line in lines {
        let (field, _) = field_of(&line.text);
        if field != "data" {
            out.extend_from_slice(line.text.as_bytes());
            out.extend_from_slice(line.ending);
            continue;
        }
        if std::mem::replace(&mut written, true) {
            continue;
        }
        let prefix: &[u8] = if line.text.starts_with("data: ") {
            b"data: "
        } else {
            b"data:"
        };
        let ending: &[u8] = if line.ending.is_empty() {
            b"\n"
        } else {
            line.ending
        };
        for part in data.split('\n') {
            out.extend_from_slice(prefix);
            out.extend_from_slice(part.as_bytes());
            out.extend_from_slice(ending);
        }
    }
    out.extend_from_slice(blank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::sample_masker::shared as masker;
    use crate::masking::{Action, Kind};

    fn run(
        masker: Option<Arc<dyn TextMasker>>,
        vault: &mut Vault,
        pieces: &[&[u8]],
    ) -> Result<String, BodyError> {
        let restore = !vault.is_empty();
        let mut sse = SseMasker::new(masker, restore, 1 << 20);
        let mut findings = Findings::default();
        let mut out = Vec::new();
        for piece in pieces {
            sse.push(piece, vault, &mut out, &mut findings)?;
        }
        sse.finish(vault, &mut out, &mut findings)?;
        Ok(String::from_utf8(out).unwrap())
    }

    /// The events of a stream: (event name, data).
    fn events(stream: &str) -> Vec<(Option<String>, String)> {
        stream
            .replace("\r\n", "\n")
            .split("\n\n")
            .filter(|event| !event.trim().is_empty())
            .map(|event| {
                let mut name = None;
                let mut data = Vec::new();
                for line in event.lines() {
                    match field_of(line) {
                        ("event", value) => name = Some(value.to_string()),
                        ("data", value) => data.push(value),
                        _ => {}
                    }
                }
                (name, data.join("\n"))
            })
            .collect()
    }

    /// The text of the events' deltas at `pointer`, joined; every data but `[DONE]`
    /// is valid JSON.
    fn joined(stream: &str, pointer: &str) -> String {
        let mut text = String::new();
        for (_, data) in events(stream) {
            if data == "[DONE]" || data.is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(&data).expect("valid JSON");
            if let Some(delta) = value.pointer(pointer).and_then(Value::as_str) {
                text.push_str(delta);
            }
        }
        text
    }

    fn chat_chunk(content: &str) -> String {
        format!(
            "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
            serde_json::to_string(content).unwrap()
        )
    }

    fn chat_stream(pieces: &[&str]) -> String {
        let mut stream = String::from(
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n: keep-alive\n\n",
        );
        for piece in pieces {
            stream.push_str(&chat_chunk(piece));
        }
        stream.push_str("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
        stream.push_str("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\ndata: [DONE]\n\n");
        stream
    }

    #[test]
    fn a_secret_split_across_events_and_chunks_is_masked_at_every_split_point() {
        let stream = chat_stream(&[
            "Your key is SEC",
            "RET-12",
            "34, mail bob@exa",
            "mple.org. Bye",
        ]);
        let expected = "Your key is [SECRET], mail [EMAIL_ADDRESS]. Bye";
        for split in 0..=stream.len() {
            let (a, b) = stream.as_bytes().split_at(split);
            let out = run(masker(Action::Redact), &mut Vault::default(), &[a, b]).unwrap();
            assert_eq!(
                joined(&out, "/choices/0/delta/content"),
                expected,
                "split {split}"
            );
            assert!(
                !out.contains("RET-12") && !out.contains("bob@"),
                "split {split}"
            );
            // Events without text pass byte for byte, in order, [DONE] last.
            assert!(out.contains(": keep-alive\n\n"));
            assert!(out.contains(
                "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\n"
            ));
            assert!(out.ends_with("data: [DONE]\n\n"));
            let stop = out.find("\"finish_reason\":\"stop\"").unwrap();
            assert!(
                out[stop..].find("Bye").is_none(),
                "text after the stop chunk"
            );
        }
    }

    #[test]
    fn an_unmasked_stream_passes_byte_for_byte_and_text_is_not_held_longer_than_the_look_behind() {
        let stream = chat_stream(&[
            "Hello",
            " there, nothing to hide here at all, really nothing",
        ]);
        let out = run(
            masker(Action::Redact),
            &mut Vault::default(),
            &[stream.as_bytes()],
        )
        .unwrap();
        assert_eq!(
            joined(&out, "/choices/0/delta/content"),
            "Hello there, nothing to hide here at all, really nothing"
        );
        // Text beyond the look-behind flows before the stream ends.
        let mut sse = SseMasker::new(masker(Action::Redact), false, 1 << 20);
        let mut out = Vec::new();
        let (mut vault, mut findings) = (Vault::default(), Findings::default());
        sse.push(
            chat_chunk(&"a".repeat(100)).as_bytes(),
            &mut vault,
            &mut out,
            &mut findings,
        )
        .unwrap();
        let sent = joined(&String::from_utf8(out).unwrap(), "/choices/0/delta/content");
        assert!(sent.len() >= 100 - 32, "only {} bytes sent", sent.len());
    }

    #[test]
    fn anthropic_blocks_are_masked_and_flushed_before_their_stop() {
        let deltas = ["Mail ann@exam", "ple.org or SECRET-9", "9 now"];
        let mut stream = String::from(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":3}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        );
        for delta in deltas {
            stream.push_str(&format!(
                "event: content_block_delta\r\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}\r\n\r\nevent: ping\ndata: {{\"type\":\"ping\"}}\n\n",
                serde_json::to_string(delta).unwrap()
            ));
        }
        stream.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        for split in 0..=stream.len() {
            let (a, b) = stream.as_bytes().split_at(split);
            let out = run(masker(Action::Redact), &mut Vault::default(), &[a, b]).unwrap();
            assert_eq!(
                joined(&out, "/delta/text"),
                "Mail [EMAIL_ADDRESS] or [SECRET] now",
                "split {split}"
            );
            let stop = out.find("content_block_stop").unwrap();
            assert!(!out[stop..].contains("text_delta"));
            for (name, data) in events(&out) {
                let value: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(name.as_deref(), value["type"].as_str());
            }
        }
    }

    #[test]
    fn pseudonyms_split_across_events_are_restored_at_every_split_point() {
        let mut vault = Vault::default();
        vault.pseudonym(&Kind("EMAIL_ADDRESS".into()), "ann@example.org");
        vault.pseudonym(&Kind("SECRET".into()), "SECRET-42");
        let events_in = [
            ("response.output_text.delta", "Write to <EMAIL_ADD"),
            ("response.output_text.delta", "RESS_1> with <SEC"),
            (
                "response.output_text.delta",
                "RET_1>; keep <EMAIL_ADDRESS_7> and SECRET-5",
            ),
        ];
        let mut stream = String::new();
        for (name, delta) in events_in {
            stream.push_str(&format!(
                "event: {name}\ndata: {{\"type\":\"{name}\",\"output_index\":0,\"content_index\":0,\"delta\":{}}}\n\n",
                serde_json::to_string(delta).unwrap()
            ));
        }
        stream.push_str("event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"output_index\":0,\"content_index\":0,\"text\":\"Write to <EMAIL_ADDRESS_1> with <SECRET_1>; keep <EMAIL_ADDRESS_7> and SECRET-5\"}\n\n");
        for (masking, last) in [(None, "SECRET-5"), (masker(Action::Redact), "[SECRET]")] {
            let expected = format!(
                "Write to ann@example.org with SECRET-42; keep <EMAIL_ADDRESS_7> and {last}"
            );
            for split in 0..=stream.len() {
                let (a, b) = stream.as_bytes().split_at(split);
                let out = run(masking.clone(), &mut vault, &[a, b]).unwrap();
                assert_eq!(joined(&out, "/delta"), expected, "split {split}");
                assert_eq!(joined(&out, "/text"), expected, "split {split}");
            }
        }
    }

    #[test]
    fn tool_call_arguments_are_masked_and_their_names_never_repeated() {
        let stream = "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"send\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"to\\\":\\\"bob@ex\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ample.org\\\"}\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n";
        let out = run(
            masker(Action::Redact),
            &mut Vault::default(),
            &[stream.as_bytes()],
        )
        .unwrap();
        assert_eq!(
            joined(&out, "/choices/0/delta/tool_calls/0/function/arguments"),
            "{\"to\":\"[EMAIL_ADDRESS]\"}"
        );
        assert_eq!(out.matches("\"name\"").count(), 1);
        assert!(out.find("tool_calls\"}").unwrap() > out.rfind("arguments").unwrap());
    }

    /// A reasoning model streams its thoughts beside its answer (`reasoning_content`,
    /// `reasoning`): each is a text of its own, masked across events.
    #[test]
    fn reasoning_deltas_are_masked_across_events_at_every_split_point() {
        let chunk = |field: &str, text: &str| {
            format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"{field}\":{}}},\"finish_reason\":null}}]}}\n\n",
                serde_json::to_string(text).unwrap()
            )
        };
        let mut stream = String::new();
        for (field, text) in [
            ("reasoning_content", "The user's key is SEC"),
            ("reasoning_content", "RET-12"),
            ("reasoning", "34; mail bob@exa"),
            ("reasoning", "mple.org"),
            ("content", "Done."),
        ] {
            stream.push_str(&chunk(field, text));
        }
        stream.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
        for split in 0..=stream.len() {
            let (a, b) = stream.as_bytes().split_at(split);
            let out = run(masker(Action::Redact), &mut Vault::default(), &[a, b]).unwrap();
            assert_eq!(
                joined(&out, "/choices/0/delta/reasoning_content"),
                "The user's key is [SECRET]",
                "split {split}"
            );
            assert_eq!(
                joined(&out, "/choices/0/delta/reasoning"),
                "34; mail [EMAIL_ADDRESS]",
                "split {split}"
            );
            assert!(
                !out.contains("RET-12") && !out.contains("bob@"),
                "split {split}"
            );
        }
    }

    #[test]
    fn other_events_and_text_data_are_masked_whole_and_cr_endings_kept() {
        let stream = "event: note\rdata: plain SECRET-1 text\r\rdata: {\"deep\":{\"content\":\"SECRET-2\",\"id\":\"SECRET-3\"}}\r\r";
        for split in 0..=stream.len() {
            let (a, b) = stream.as_bytes().split_at(split);
            let out = run(masker(Action::Redact), &mut Vault::default(), &[a, b]).unwrap();
            assert_eq!(
                out,
                "event: note\rdata: plain [SECRET] text\r\rdata: {\"deep\":{\"content\":\"[SECRET]\",\"id\":\"SECRET-3\"}}\r\r",
                "split {split}"
            );
        }
    }

    /// Lines a client ignores still reach it: comments, ids and unknown fields are
    /// masked too. Only `data:` lines are restored: a browser sends the last `id:` back
    /// upstream as `Last-Event-ID`, a request header that is not masked.
    #[test]
    fn other_lines_are_masked_and_only_data_lines_restored() {
        let stream = ": note SECRET-1
id: SECRET-2
mail SECRET-3 here

: SECRET-4
data: [DONE]

";
        for split in 0..=stream.len() {
            let (a, b) = stream.as_bytes().split_at(split);
            let out = run(masker(Action::Redact), &mut Vault::default(), &[a, b]).unwrap();
            assert_eq!(
                out,
                ": note [SECRET]\nid: [SECRET]\nmail [SECRET] here\n\n: [SECRET]\ndata: [DONE]\n\n",
                "split {split}"
            );
        }
        let mut vault = Vault::default();
        let email = vault
            .pseudonym(&Kind("EMAIL_ADDRESS".into()), "ann@example.org")
            .to_string();
        let stream = format!(
            ": to {email}\nid: {email}\nevent: {email}\nretry: {email}\n{}",
            chat_chunk(&format!("write to {email}"))
        );
        for split in 0..=stream.len() {
            let (a, b) = stream.as_bytes().split_at(split);
            let out = run(None, &mut vault, &[a, b]).unwrap();
            assert!(
                out.starts_with(&format!(
                    ": to {email}\nid: {email}\nevent: {email}\nretry: {email}\ndata: "
                )),
                "split {split}: {out}"
            );
            assert_eq!(
                joined(&out, "/choices/0/delta/content"),
                "write to ann@example.org",
                "split {split}"
            );
        }
    }

    /// An event whose text is all held is dropped, but not its `id:`: the event that
    /// later carries its text carries its id too (unless it has one of its own), so a
    /// client's `Last-Event-ID` is never left behind the text it got.
    #[test]
    fn the_id_of_a_held_event_rides_with_its_text() {
        let chunk = |id: &str, text: &str| format!("id: {id}\n{}", chat_chunk(text));
        let finish =
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        // Held to the end of the block: the event built there has the id.
        let out = run(
            masker(Action::Redact),
            &mut Vault::default(),
            &[format!("{}{finish}", chunk("7", "card SECRET-1")).as_bytes()],
        )
        .unwrap();
        let at = out.find("id: 7\n").expect("the id reaches the client");
        assert!(
            out[at..].starts_with("id: 7\ndata: ") && out[at..].contains("[SECRET]"),
            "{out}"
        );
        // Held, then carried by a later event without an id of its own.
        let later = chat_chunk(&format!(
            "{} and more text after it, long enough",
            "x".repeat(40)
        ));
        let out = run(
            masker(Action::Redact),
            &mut Vault::default(),
            &[format!("{}{later}{finish}", chunk("8", "card SECRET-2")).as_bytes()],
        )
        .unwrap();
        let at = out.find("id: 8\n").expect("the id reaches the client");
        assert!(out[at..].contains("[SECRET]"), "{out}");
        assert_eq!(out.matches("id: 8").count(), 1, "{out}");
    }

    #[test]
    fn text_a_responses_stream_repeats_is_masked_but_counted_once() {
        let stream = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"content_index\":0,\"delta\":\"a SECRET-1\"}\n\n\
event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"output_index\":0,\"content_index\":0,\"text\":\"a SECRET-1\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"output\":[{\"content\":[{\"type\":\"output_text\",\"text\":\"a SECRET-1\"}]}]}}\n\n";
        let mut sse = SseMasker::new(masker(Action::Redact), false, 1 << 20);
        let (mut vault, mut findings, mut out) =
            (Vault::default(), Findings::default(), Vec::new());
        sse.push(stream.as_bytes(), &mut vault, &mut out, &mut findings)
            .unwrap();
        sse.finish(&mut vault, &mut out, &mut findings).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.matches("a [SECRET]").count(), 3, "{out}");
        assert!(!out.contains("SECRET-1"));
        assert_eq!(findings.total(), 1);
    }

    #[test]
    fn ollama_json_lines_are_masked_and_restored_across_lines_at_every_split_point() {
        let mut vault = Vault::default();
        vault.pseudonym(&Kind("EMAIL_ADDRESS".into()), "ann@example.org");
        let mut stream = String::new();
        for delta in ["Hi <EMAIL_", "ADDRESS_1>, key SEC", "RET-77 ", "end"] {
            stream.push_str(&format!(
                "{{\"model\":\"m\",\"message\":{{\"role\":\"assistant\",\"content\":{}}},\"done\":false}}\n",
                serde_json::to_string(delta).unwrap()
            ));
        }
        stream.push_str("{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"eval_count\":9}\n");
        for split in 0..=stream.len() {
            let (a, b) = stream.as_bytes().split_at(split);
            let mut sse = SseMasker::json_lines(masker(Action::Redact), true, 1 << 20);
            let (mut findings, mut out) = (Findings::default(), Vec::new());
            sse.push(a, &mut vault, &mut out, &mut findings).unwrap();
            sse.push(b, &mut vault, &mut out, &mut findings).unwrap();
            sse.finish(&mut vault, &mut out, &mut findings).unwrap();
            let out = String::from_utf8(out).unwrap();
            let mut text = String::new();
            for line in out.lines() {
                let value: Value = serde_json::from_str(line).expect("each line is JSON");
                text.push_str(value["message"]["content"].as_str().unwrap());
            }
            assert_eq!(
                text, "Hi ann@example.org, key [SECRET] end",
                "split {split}"
            );
            assert!(out.ends_with("\"done\":true,\"eval_count\":9}\n"));
        }
    }

    /// An Anthropic citation quotes its document: the `citations_delta` event's
    /// `cited_text` is masked whole, and the block's text held around it is still one.
    #[test]
    fn anthropic_citation_deltas_are_masked_and_hold_the_text() {
        let text_delta = |text: &str| {
            format!(
                "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}\n\n",
                serde_json::to_string(text).unwrap()
            )
        };
        let stream = format!(
            "{}event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"citations_delta\",\"citation\":{{\"type\":\"char_location\",\"cited_text\":\"mail bob@example.org\",\"document_index\":0}}}}}}\n\n{}event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n",
            text_delta("write to ann@exa"),
            text_delta("mple.org today")
        );
        let out = run(
            masker(Action::Redact),
            &mut Vault::default(),
            &[stream.as_bytes()],
        )
        .unwrap();
        assert_eq!(
            joined(&out, "/delta/text"),
            "write to [EMAIL_ADDRESS] today"
        );
        assert_eq!(
            joined(&out, "/delta/citation/cited_text"),
            "mail [EMAIL_ADDRESS]"
        );
    }

    /// Ollama's `thinking` is a text of its own beside `content` (chat) and `response`
    /// (generate), masked across lines; a line with both is never dropped, and the
    /// line that carries held text repeats no tool call.
    #[test]
    fn ollama_thinking_is_masked_across_lines_and_tool_calls_are_never_repeated() {
        let chat =
            |message: &str| format!("{{\"model\":\"m\",\"message\":{message},\"done\":false}}\n");
        let mut stream = String::new();
        for piece in ["the user is bob@exa", "mple.org, card SECRET-12", "34"] {
            stream.push_str(&chat(&format!(
                "{{\"role\":\"assistant\",\"content\":\"\",\"thinking\":{}}}",
                serde_json::to_string(piece).unwrap()
            )));
        }
        stream.push_str(&chat(
            r#"{"role":"assistant","content":"Sending to ann@exa"}"#,
        ));
        stream.push_str(&chat(
            r#"{"role":"assistant","content":"","tool_calls":[{"function":{"name":"send_money","arguments":{"amount":100}}}]}"#,
        ));
        stream.push_str("{\"model\":\"m\",\"done\":true,\"done_reason\":\"stop\"}\n");
        let generate = "{\"response\":\"\",\"thinking\":\"mail ann@exa\",\"done\":false}\n\
{\"response\":\" there\",\"thinking\":\"mple.org now\",\"done\":false}\n\
{\"response\":\"\",\"done\":true}\n";
        for split in 0..=stream.len() {
            let (a, b) = stream.as_bytes().split_at(split);
            let mut sse = SseMasker::json_lines(masker(Action::Redact), false, 1 << 20);
            let (mut findings, mut out, mut vault) =
                (Findings::default(), Vec::new(), Vault::default());
            sse.push(a, &mut vault, &mut out, &mut findings).unwrap();
            sse.push(b, &mut vault, &mut out, &mut findings).unwrap();
            sse.finish(&mut vault, &mut out, &mut findings).unwrap();
            let out = String::from_utf8(out).unwrap();
            let (mut thinking, mut content) = (String::new(), String::new());
            for line in out.lines() {
                let value: Value = serde_json::from_str(line).expect("each line is JSON");
                if let Some(text) = value.pointer("/message/thinking").and_then(Value::as_str) {
                    thinking.push_str(text);
                }
                if let Some(text) = value.pointer("/message/content").and_then(Value::as_str) {
                    content.push_str(text);
                }
            }
            assert_eq!(
                thinking, "the user is [EMAIL_ADDRESS], card [SECRET]",
                "split {split}: {out}"
            );
            assert_eq!(content, "Sending to ann@exa", "split {split}: {out}");
            assert_eq!(out.matches("send_money").count(), 1, "split {split}: {out}");
        }
        let mut sse = SseMasker::json_lines(masker(Action::Redact), false, 1 << 20);
        let (mut findings, mut out, mut vault) =
            (Findings::default(), Vec::new(), Vault::default());
        sse.push(generate.as_bytes(), &mut vault, &mut out, &mut findings)
            .unwrap();
        sse.finish(&mut vault, &mut out, &mut findings).unwrap();
        let out = String::from_utf8(out).unwrap();
        let (mut thinking, mut response) = (String::new(), String::new());
        for line in out.lines() {
            let value: Value = serde_json::from_str(line).expect("each line is JSON");
            thinking.push_str(value["thinking"].as_str().unwrap_or_default());
            response.push_str(value["response"].as_str().unwrap_or_default());
        }
        assert_eq!(thinking, "mail [EMAIL_ADDRESS] now", "{out}");
        assert_eq!(response, " there", "{out}");
    }

    /// An event that carries no delta text (a citation's annotation, a content filter's
    /// verdict, a role alone, an empty delta, `response.in_progress`) does not flush the
    /// held text: a value split around it is still masked whole, a pseudonym still
    /// restored, at every split point; the event itself passes.
    #[test]
    fn values_split_around_events_without_text_are_masked_whole() {
        let text = "card SECRET-12345678 mail bob@example.org, dear <EMAIL_ADDRESS_1> end";
        let expected = "card [SECRET] mail [EMAIL_ADDRESS], dear ann@example.org end";
        let chat_asides = [
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":null},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"finish_reason":null,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"logprobs":{"content":[]},"finish_reason":null}]}"#,
            r#"{"choices":[],"usage":null}"#,
        ];
        let responses_delta = |piece: &str| {
            format!(
                "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"output_index\":0,\"content_index\":0,\"delta\":{}}}\n\n",
                serde_json::to_string(piece).unwrap()
            )
        };
        let responses_asides = [
            r#"{"type":"response.output_text.annotation.added","output_index":0,"content_index":0,"annotation_index":0,"annotation":{"type":"url_citation","url":"https://example.com/"}}"#,
            r#"{"type":"response.in_progress","response":{"id":"r1","status":"in_progress"}}"#,
        ];
        for split in 0..=text.len() {
            let (a, b) = text.split_at(split);
            let mut streams = Vec::new();
            for aside in chat_asides {
                let mut stream = chat_chunk(a);
                stream.push_str(&format!("data: {aside}\n\n"));
                stream.push_str(&chat_chunk(b));
                stream.push_str(
                    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
                );
                streams.push((stream, "/choices/0/delta/content"));
            }
            for aside in responses_asides {
                let stream = format!(
                    "{}event: x\ndata: {aside}\n\n{}event: response.output_text.done\ndata: {{\"type\":\"response.output_text.done\",\"output_index\":0,\"content_index\":0,\"text\":\"\"}}\n\n",
                    responses_delta(a),
                    responses_delta(b)
                );
                streams.push((stream, "/delta"));
            }
            for (stream, pointer) in streams {
                let mut vault = Vault::default();
                vault.pseudonym(&Kind("EMAIL_ADDRESS".into()), "ann@example.org");
                let out = run(masker(Action::Redact), &mut vault, &[stream.as_bytes()]).unwrap();
                assert_eq!(joined(&out, pointer), expected, "split {split}: {out}");
            }
        }
    }

    /// A card written as a JSON number in streamed tool-call arguments is replaced by a
    /// string, as in arguments masked whole, wherever the stream splits it: the joined
    /// arguments stay JSON. A card inside a string stays in its string.
    #[test]
    fn numbers_in_streamed_arguments_become_strings_at_every_split_point() {
        use crate::masking::{Builtin, Masker};
        let memo = "a long note to push the card past the look-behind ".repeat(8);
        let arguments = format!(
            r#"{{"memo": "{memo}", "card_number": 4111111111111111, "note": "card 4111111111111111", "amount": 1000}}"#
        );
        let event = |piece: &str| {
            format!(
                "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":{}}}}}\n\n",
                serde_json::to_string(piece).unwrap()
            )
        };
        let redacting: Arc<dyn TextMasker> = Arc::new(Masker::default());
        let pseudonymizing: Arc<dyn TextMasker> = Arc::new(
            Masker::builder()
                .action(Builtin::CreditCard, Action::Pseudonymize)
                .build()
                .unwrap(),
        );
        for split in 0..=arguments.len() {
            let (a, b) = arguments.split_at(split);
            let stream = format!(
                "{}{}event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":1}}\n\n",
                event(a),
                event(b)
            );
            let out = run(
                Some(redacting.clone()),
                &mut Vault::default(),
                &[stream.as_bytes()],
            )
            .unwrap();
            let masked: Value = serde_json::from_str(&joined(&out, "/delta/partial_json"))
                .unwrap_or_else(|error| panic!("split {split}: {error}: {out}"));
            assert_eq!(masked["card_number"], "[CREDIT_CARD]", "split {split}");
            assert_eq!(masked["note"], "card [CREDIT_CARD]", "split {split}");
            assert_eq!(masked["amount"], 1000, "split {split}");
            let out = run(
                Some(pseudonymizing.clone()),
                &mut Vault::default(),
                &[stream.as_bytes()],
            )
            .unwrap();
            let pseudonymized: Value = serde_json::from_str(&joined(&out, "/delta/partial_json"))
                .unwrap_or_else(|error| panic!("split {split}: {error}: {out}"));
            assert!(
                pseudonymized["card_number"]
                    .as_str()
                    .is_some_and(|token| token.starts_with("<CREDIT_CARD_")),
                "split {split}: {pseudonymized}"
            );
        }
    }

    #[test]
    fn a_value_restored_into_streamed_tool_arguments_keeps_them_json() {
        let mut vault = Vault::default();
        vault.pseudonym(&Kind("PASSWORD".into()), "p\"s\\s");
        let mut stream = String::new();
        for piece in ["{\"pw\":\"<PASS", "WORD_1>\"}"] {
            stream.push_str(&format!(
                "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":{}}}}}\n\n",
                serde_json::to_string(piece).unwrap()
            ));
        }
        stream.push_str(
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        );
        let out = run(None, &mut vault, &[stream.as_bytes()]).unwrap();
        let arguments: Value = serde_json::from_str(&joined(&out, "/delta/partial_json")).unwrap();
        assert_eq!(arguments["pw"], "p\"s\\s");
    }

    #[test]
    fn blocked_values_and_oversized_events_fail_the_stream() {
        let stream = chat_stream(&["a SECRET-1 b"]);
        assert!(matches!(
            run(
                masker(Action::Block),
                &mut Vault::default(),
                &[stream.as_bytes()]
            ),
            Err(BodyError::Blocked(_))
        ));
        let mut sse = SseMasker::new(masker(Action::Redact), false, 64);
        let result = sse.push(
            &[b'x'; 100],
            &mut Vault::default(),
            &mut Vec::new(),
            &mut Findings::default(),
        );
        assert_eq!(result, Err(BodyError::TooLarge { limit: 64 }));
    }
}
