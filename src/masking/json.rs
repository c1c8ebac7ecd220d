//! A strict (RFC 8259), depth-bounded JSON scanner that rewrites chosen string values
//! in place: every byte outside a changed string is copied as it was (whitespace, key
//! order, number spellings, the escapes of other strings), and a string is re-encoded
//! only when its editor changed it, its unchanged stretches copied as written where
//! that is what the encoder writes.
//!
//! Decisions: the body must be UTF-8; an escaped lone surrogate (`\ud800`) is valid
//! syntax and decodes to U+FFFD for the detectors, but the string keeps its bytes
//! unless a value in it is replaced; nesting deeper than [`MAX_DEPTH`] is refused
//! (an explicit stack: `[[[[...` never overflows the thread's stack).

use super::error::BodyError;
use crate::json_text::{encode_str, encode_string, plain_run};

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 128;

/// Which string values are handed to the editor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The message contents of an AI API request: strings under the top-level
    /// `messages`, `system`, `input`, `prompt`, `suffix`, `instructions` and
    /// `prediction`, at a content key (see [`CONTENT_KEYS`]).
    RequestContents,
    /// [`RequestContents`](Self::RequestContents), and the request's end-user
    /// identifiers: every string under the top-level keys of [`IDENTIFIER_ROOTS`].
    RequestContentsAndIdentifiers,
    /// The contents of an AI API response or stream event: strings at a content key,
    /// anywhere.
    ResponseContents,
    /// Every string value (not the keys).
    AllStrings,
    /// The JSON inside a tool call's `arguments` string: every string value, and every
    /// number whose value is a whole number of seven to nineteen digits, which may be a
    /// card's or a phone's (`{"card_number": 4111111111111111}`, or `-4111111111111111`,
    /// `4111111111111111.0`) and is handed to
    /// [`StringEdit::edit_number`]. The arguments are one string of the body, so a
    /// number masked there becomes a string (`"[CREDIT_CARD]"`) in JSON still valid.
    /// The body's own numbers are read only inside a tool's input object
    /// ([`WHOLE_OBJECT_KEYS`]), the same data as arguments.
    ArgumentsJson,
    /// The top-level `model` string of a request, alone (a pool's `model_map`).
    TopLevelModel,
}

/// Keys whose string value (or array of strings) is text a person or a model wrote.
/// Everything else (ids, roles, names, models, urls, base64 `data`, `type`, a thinking
/// block's text, which its signature covers) is never handed to the editor.
pub const CONTENT_KEYS: &[&str] = &[
    "content",
    "text",
    "arguments",
    "input",
    "prompt",
    "suffix",
    "system",
    "instructions",
    "output",
    "refusal",
    "delta",
    "partial_json",
    "response",
    // A reasoning model's thoughts as DeepSeek's and vLLM's APIs (`reasoning_content`)
    // and OpenRouter's (`reasoning`) give them: they restate the prompt.
    "reasoning_content",
    "reasoning",
    // A document block's `title` and `context` (Anthropic), a search result's `title`,
    // an attached file's `filename` (chat `file`, Responses `input_file`).
    "title",
    "context",
    "filename",
    "variables",
    // What a Responses request sends back of the model's built-in tools: the code
    // interpreter's `code` and `logs`, a shell call's `stdout` and `stderr`.
    "code",
    "logs",
    "stdout",
    "stderr",
    // A file search's queries, a generated image's revised prompt (Responses), an
    // audio answer's transcript (chat `message.audio.transcript`), a citation's
    // quoted text (Anthropic `citations[].cited_text`), an Ollama prompt template.
    "queries",
    "revised_prompt",
    "transcript",
    "cited_text",
    "template",
    // An error's text (`error.message`): providers quote the input there.
    "message",
];

/// A key whose string is content except in an Anthropic content block, where it is a
/// thinking block's text that its `signature` covers (a changed one is refused by the
/// API): Ollama's `thinking` (a message's, or a generate answer's) is a reasoning
/// model's thoughts, and restates the prompt. An Anthropic block is told by its place:
/// an object in the array of a `content` key.
#[cfg_attr(not(test), allow(dead_code))] // `key_class_of` matches it (tested)
const THINKING_KEY: &str = "thinking";

/// Top-level keys of a request that hold contents; the rest of a request (tools,
/// schemas, metadata, the model) is passed byte for byte without a look.
#[cfg_attr(not(test), allow(dead_code))] // `key_class_of` matches it (tested)
const REQUEST_ROOTS: &[&str] = &[
    "messages",
    "system",
    "input",
    "prompt",
    "suffix",
    "instructions",
    "prediction",
    "template",
];

/// Top-level keys of a request that say who its end user is: OpenAI's `user`,
/// `safety_identifier` and `prompt_cache_key` (its two replacements for `user`), and
/// `metadata` (OpenAI's stored tags, Anthropic's
/// `metadata.user_id`). Read only when a route asks (`identifiers = true`): apps often
/// put an e-mail address there, but a request's fields other than its contents are
/// otherwise kept byte for byte.
#[cfg_attr(not(test), allow(dead_code))] // `key_class_of` matches it (tested)
const IDENTIFIER_ROOTS: &[&str] = &["user", "safety_identifier", "prompt_cache_key", "metadata"];

/// A key whose string holds JSON (tool-call arguments): its editor may mask the inner
/// JSON's strings so the arguments stay parseable. As an object (Ollama sends them so)
/// it is a tool's input, read as [`WHOLE_OBJECT_KEYS`] are.
#[cfg_attr(not(test), allow(dead_code))] // `key_class_of` matches it (tested)
const ARGUMENTS_KEY: &str = "arguments";

/// Keys whose object value is content throughout, every string in it and every whole
/// number of seven to nineteen digits ([`StringEdit::edit_number`]): a tool call's
/// input (Anthropic `tool_use`), a stored prompt's variables (Responses API
/// `prompt.variables`, filled into the prompt the model reads), the action of a
/// Responses built-in tool call (`local_shell_call` and `shell_call` commands and
/// environment, a web search's query, a computer call's typed text) and an
/// `apply_patch_call`'s operation (its path and diff). A tool's input is free-form
/// JSON: a number there is the tool's data, as it is in OpenAI's `arguments` string.
#[cfg_attr(not(test), allow(dead_code))] // `key_class_of` matches it (tested)
const WHOLE_OBJECT_KEYS: &[&str] = &["input", "variables", "action", "operation", "arguments"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// No string below is edited.
    Skip,
    /// The top level of a request: only [`REQUEST_ROOTS`] are looked into.
    RequestRoot,
    /// As `RequestRoot`, and every string under [`IDENTIFIER_ROOTS`].
    IdentifiedRequestRoot,
    /// Strings at a content key are edited.
    Contents,
    /// Every string below is edited.
    Everything,
    /// Every string below is edited, and every whole number of seven to nineteen
    /// digits is handed to [`StringEdit::edit_number`]: a tool call's free-form input
    /// (see [`WHOLE_OBJECT_KEYS`]), the same data OpenAI's APIs send as `arguments`.
    EverythingAndNumbers,
    /// The top level of a request: only its `model` string is edited.
    ModelRoot,
}

/// One open array or object.
#[derive(Clone, Debug)]
struct Frame {
    array: bool,
    /// Arrays: the index of the current element.
    index: usize,
    /// Objects: the raw bytes (between the quotes) of the current member's key.
    key: (usize, usize),
    /// Objects: which of the key lists the current member's key is in (`KEY_*` bits),
    /// read once per key where the reach looks at keys.
    key_class: u8,
    reach: Reach,
    /// Arrays: their string elements are edited (a list of texts, e.g. `prompt`).
    strings_edited: bool,
}

/// One step of the path to a string: an object key (raw, as written, escapes
/// included) or an array index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a [u8]),
    Index(usize),
}

/// Where a string value is: its path, and whether its key says it holds JSON.
pub struct Site<'a> {
    body: &'a [u8],
    stack: &'a [Frame],
    /// The string is the value of an `arguments` key (tool-call arguments as JSON).
    pub arguments: bool,
}

impl Site<'_> {
    /// The path from the root, one step per open container.
    pub fn steps(&self) -> impl Iterator<Item = Step<'_>> + '_ {
        self.stack.iter().map(|frame| {
            if frame.array {
                Step::Index(frame.index)
            } else {
                Step::Key(&self.body[frame.key.0..frame.key.1])
            }
        })
    }

    /// The key (raw, as written) of the member whose value the string is; None for an
    /// array's element and for a message's contents (`content`, `text`...: where the
    /// walk has read the key as one, none of them names a secret, and a request's long
    /// texts are not tested for it).
    pub fn member_key(&self) -> Option<&[u8]> {
        self.stack
            .last()
            .filter(|frame| !frame.array && frame.key_class & KEY_CONTENT == 0)
            .map(|frame| &self.body[frame.key.0..frame.key.1])
    }

    /// The RFC 6901 JSON pointer of the string (`/messages/1/content`).
    pub fn pointer(&self) -> String {
        let mut pointer = String::new();
        for step in self.steps() {
            pointer.push('/');
            match step {
                Step::Index(index) => pointer.push_str(&index.to_string()),
                Step::Key(raw) => {
                    let mut key = String::new();
                    decode_into(raw, &mut key);
                    if key.contains(['~', '/']) {
                        key = key.replace('~', "~0").replace('/', "~1");
                    }
                    pointer.push_str(&key);
                }
            }
        }
        pointer
    }
}

/// One of the adjacent content parts of an array (`"text"` of its objects).
pub struct Part<'a> {
    pub text: &'a str,
    pub pointer: &'a str,
}

/// One replaced stretch of a string's decoded text: `start..end` became the editor's
/// output at `new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub start: usize,
    pub end: usize,
    pub new: std::ops::Range<usize>,
}

/// What [`StringEdit::edit_changes`] did with a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edited {
    /// Nothing changed.
    Kept,
    /// The editor's output is the whole new text.
    Whole,
    /// The changes list every replaced stretch, in order, their new texts in the
    /// editor's output; the rest of the text stays.
    Changes,
}

/// What is done to each selected string.
pub trait StringEdit {
    /// Appends the new text of the string at `site` (decoded: `text`) to `out` and
    /// returns true, or returns false to keep the string as it was (then `out` is
    /// ignored).
    fn edit(&mut self, site: &Site<'_>, text: &str, out: &mut String) -> Result<bool, BodyError>;

    /// The texts of the content parts of one array (the `"text"` of its objects, in
    /// order), edited together so that a value split between two parts is found: the
    /// new text of each part goes to its `outs` entry (cleared, as many as `parts`) and
    /// whether it changed to the returned list.
    fn edit_parts(
        &mut self,
        parts: &[Part<'_>],
        outs: &mut [String],
    ) -> Result<Vec<bool>, BodyError>;

    /// The new text of the whole number `digits` at `site` (under
    /// [`Selection::ArgumentsJson`], or inside a tool's input object), appended to `out` with true, written as a
    /// JSON string in the number's place; false keeps the number.
    fn edit_number(
        &mut self,
        _site: &Site<'_>,
        _digits: &str,
        _out: &mut String,
    ) -> Result<bool, BodyError> {
        Ok(false)
    }

    /// Whether [`Part::pointer`] is needed (building it costs an allocation a part).
    fn needs_pointers(&self) -> bool {
        true
    }

    /// [`StringEdit::edit`], or the same edit told as changes to `text` (`changes`
    /// cleared by the caller): then the string's unchanged stretches can be copied from
    /// the body as they were written instead of decoded and encoded again.
    fn edit_changes(
        &mut self,
        site: &Site<'_>,
        text: &str,
        out: &mut String,
        _changes: &mut Vec<Change>,
    ) -> Result<Edited, BodyError> {
        Ok(if self.edit(site, text, out)? {
            Edited::Whole
        } else {
            Edited::Kept
        })
    }
}

/// A content part met but not yet edited: its string's offsets and pointer.
struct PendingPart {
    start: usize,
    end: usize,
    escaped: bool,
    pointer: String,
}

/// Appends `body` to `out` with the strings `selection` picks edited by `edit`, every
/// other byte as it was. Returns whether any string changed. Invalid JSON, nesting
/// deeper than [`MAX_DEPTH`], or an editor's error fails the whole body (`out` then
/// holds a part of it, to be thrown away).
pub fn rewrite(
    body: &[u8],
    selection: Selection,
    edit: &mut dyn StringEdit,
    out: &mut Vec<u8>,
) -> Result<bool, BodyError> {
    let text = std::str::from_utf8(body).map_err(|error| BodyError::NotJson {
        offset: error.valid_up_to(),
    })?;
    // The thread's buffers, reused: a body costs no allocation for its strings' texts
    // once the thread has seen one as long (a nested rewrite, of tool-call arguments,
    // finds them taken and starts its own).
    let Buffers {
        stack,
        decoded,
        replacement,
        marks,
        changes,
    } = BUFFERS.take();
    let mut scanner = Scanner {
        body,
        text,
        stack,
        copied: 0,
        changed: false,
        decoded,
        replacement,
        marks,
        changes,
        parts: Vec::new(),
        parts_depth: 0,
    };
    let result = scanner.run(selection, edit, out);
    let Scanner {
        mut stack,
        decoded,
        replacement,
        marks,
        changes,
        copied,
        changed,
        ..
    } = scanner;
    // A rare huge body's buffers are let go rather than kept for the thread's life.
    if decoded.capacity() + replacement.capacity() + marks.capacity() * 16 <= KEPT_BUFFERS {
        stack.clear();
        BUFFERS.set(Buffers {
            stack,
            decoded,
            replacement,
            marks,
            changes,
        });
    }
    result?;
    out.extend_from_slice(&body[copied..]);
    Ok(changed)
}

/// The most buffer bytes a thread keeps between bodies.
const KEPT_BUFFERS: usize = 1 << 20;

/// A rewrite's working buffers, kept per thread between bodies.
#[derive(Default)]
struct Buffers {
    stack: Vec<Frame>,
    decoded: String,
    replacement: String,
    marks: Vec<(usize, usize)>,
    changes: Vec<Change>,
}

thread_local! {
    static BUFFERS: std::cell::Cell<Buffers> = const {
        std::cell::Cell::new(Buffers {
            stack: Vec::new(),
            decoded: String::new(),
            replacement: String::new(),
            marks: Vec::new(),
            changes: Vec::new(),
        })
    };
}

/// Whether `body` is one valid JSON text (the same strict rules as [`rewrite`]).
pub fn is_valid(body: &[u8]) -> bool {
    struct Keep;
    impl StringEdit for Keep {
        fn edit(&mut self, _: &Site<'_>, _: &str, _: &mut String) -> Result<bool, BodyError> {
            Ok(false)
        }

        fn edit_parts(
            &mut self,
            parts: &[Part<'_>],
            _: &mut [String],
        ) -> Result<Vec<bool>, BodyError> {
            Ok(vec![false; parts.len()])
        }
    }
    rewrite(body, Selection::RequestContents, &mut Keep, &mut Vec::new()).is_ok()
}

/// One member of an object: its key's raw bytes (between the quotes, escapes as
/// written) and its value's offsets, in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub key: (usize, usize),
    pub value: (usize, usize),
}

impl Member {
    /// Whether its key (escapes decoded) is `name`.
    pub fn is(&self, body: &[u8], name: &str) -> bool {
        key_is(&body[self.key.0..self.key.1], &[name])
    }
}

/// The members of the object starting at `at` (after any whitespace) in `body`, which
/// must be one valid JSON text ([`is_valid`]), and the offset of its closing `}`.
/// `None` when there is no object at `at`. For edits that add or replace a member
/// while every other byte is kept (a route's `include_usage`).
pub fn object_members(body: &[u8], at: usize) -> Option<(Vec<Member>, usize)> {
    let mut at = skip_whitespace(body, at);
    if body.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    let mut members = Vec::new();
    loop {
        at = skip_whitespace(body, at);
        match body.get(at)? {
            b'}' => return Some((members, at)),
            b',' => at += 1,
            b'"' => {
                let (end, _) = scan_string(body, at).ok()?;
                let colon = skip_whitespace(body, end);
                if body.get(colon) != Some(&b':') {
                    return None;
                }
                let start = skip_whitespace(body, colon + 1);
                let value_end = value_end(body, start)?;
                members.push(Member {
                    key: (at + 1, end - 1),
                    value: (start, value_end),
                });
                at = value_end;
            }
            _ => return None,
        }
    }
}

/// The offset after the value starting at `at` in a body known to be valid JSON.
fn value_end(body: &[u8], mut at: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match body.get(at)? {
            b'"' => at = scan_string(body, at).ok()?.0,
            b'{' | b'[' => {
                depth += 1;
                at += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                at += 1;
            }
            // Inside a container: separators and whitespace.
            b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' if depth > 0 => at += 1,
            // A literal or a number: up to the next delimiter.
            _ => {
                while body.get(at).is_some_and(|b| {
                    !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                }) {
                    at += 1;
                }
            }
        }
        if depth == 0 {
            return Some(at);
        }
    }
}

struct Scanner<'a> {
    body: &'a [u8],
    text: &'a str,
    stack: Vec<Frame>,
    /// Bytes of `body` up to here are in `out`.
    copied: usize,
    changed: bool,
    decoded: String,
    replacement: String,
    /// Where the decoded text and the string as written line up (see [`decode_marked`]).
    marks: Vec<(usize, usize)>,
    changes: Vec<Change>,
    /// Content parts of the array at this depth, edited when it closes.
    parts: Vec<PendingPart>,
    parts_depth: usize,
}

fn not_json(offset: usize) -> BodyError {
    BodyError::NotJson { offset }
}

fn skip_whitespace(body: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = body.get(at) {
        at += 1;
    }
    at
}

fn key_is(raw: &[u8], names: &[&str]) -> bool {
    if raw.contains(&b'\\') {
        let mut key = String::new();
        decode_into(raw, &mut key);
        names.contains(&key.as_str())
    } else {
        names.iter().any(|name| name.as_bytes() == raw)
    }
}

/// The key lists a key is in, as bits.
const KEY_ROOT: u8 = 1;
const KEY_CONTENT: u8 = 2;
const KEY_WHOLE_OBJECT: u8 = 4;
const KEY_ARGUMENTS: u8 = 8;
const KEY_TEXT: u8 = 16;
const KEY_MODEL: u8 = 32;
const KEY_IDENTIFIER: u8 = 64;
const KEY_THINKING: u8 = 128;

/// Which lists a key (raw, as written) is in: [`REQUEST_ROOTS`], [`CONTENT_KEYS`],
/// [`WHOLE_OBJECT_KEYS`], [`ARGUMENTS_KEY`], `text`, `model`, [`IDENTIFIER_ROOTS`] (one
/// `match`, not a scan of the lists per value; a test holds it to the lists). `escaped`: whether the key has
/// an escape, as [`scan_string`] found it (not searched for again).
fn key_class(raw: &[u8], escaped: bool) -> u8 {
    if escaped {
        let mut key = String::new();
        decode_into(raw, &mut key);
        return key_class_of(key.as_bytes());
    }
    key_class_of(raw)
}

fn key_class_of(key: &[u8]) -> u8 {
    match key {
        b"messages" | b"prediction" => KEY_ROOT,
        b"system" | b"prompt" | b"suffix" | b"instructions" | b"template" => KEY_ROOT | KEY_CONTENT,
        b"input" => KEY_ROOT | KEY_CONTENT | KEY_WHOLE_OBJECT,
        b"variables" => KEY_CONTENT | KEY_WHOLE_OBJECT,
        b"action" | b"operation" => KEY_WHOLE_OBJECT,
        b"content" | b"output" | b"refusal" | b"delta" | b"partial_json" | b"response"
        | b"reasoning_content" | b"reasoning" | b"title" | b"context" | b"filename" | b"code"
        | b"logs" | b"stdout" | b"stderr" | b"queries" | b"revised_prompt" | b"transcript"
        | b"cited_text" | b"message" => KEY_CONTENT,
        b"thinking" => KEY_THINKING,
        b"text" => KEY_CONTENT | KEY_TEXT,
        // An object (Ollama's arguments) is a tool's input; a string, JSON to read.
        b"arguments" => KEY_CONTENT | KEY_ARGUMENTS | KEY_WHOLE_OBJECT,
        b"model" => KEY_MODEL,
        b"user" | b"safety_identifier" | b"prompt_cache_key" | b"metadata" => KEY_IDENTIFIER,
        _ => 0,
    }
}

impl Scanner<'_> {
    /// The reach and edit status of a value about to start in the innermost container.
    /// Returns (reach for a container value, whether a string value is edited,
    /// whether it is tool-call arguments).
    fn value_site(&self, selection: Selection, is_object: bool) -> (Reach, bool, bool) {
        let Some(frame) = self.stack.last() else {
            return match selection {
                Selection::RequestContents => (Reach::RequestRoot, false, false),
                Selection::RequestContentsAndIdentifiers => {
                    (Reach::IdentifiedRequestRoot, false, false)
                }
                Selection::ResponseContents => (Reach::Contents, false, false),
                Selection::AllStrings => (Reach::Everything, true, false),
                // The arguments are a tool's input, as an input object is.
                Selection::ArgumentsJson => (Reach::EverythingAndNumbers, true, false),
                Selection::TopLevelModel => (Reach::ModelRoot, false, false),
            };
        };
        if frame.array {
            return match frame.reach {
                Reach::Skip | Reach::ModelRoot => (Reach::Skip, false, false),
                Reach::Everything => (Reach::Everything, true, false),
                Reach::EverythingAndNumbers => (Reach::EverythingAndNumbers, true, false),
                Reach::RequestRoot | Reach::IdentifiedRequestRoot | Reach::Contents => {
                    (Reach::Contents, frame.strings_edited, false)
                }
            };
        }
        let class = frame.key_class;
        match frame.reach {
            Reach::Skip => (Reach::Skip, false, false),
            Reach::Everything => (Reach::Everything, true, false),
            Reach::EverythingAndNumbers => (Reach::EverythingAndNumbers, true, false),
            Reach::ModelRoot => (Reach::Skip, class & KEY_MODEL != 0, false),
            Reach::IdentifiedRequestRoot if class & KEY_IDENTIFIER != 0 => {
                (Reach::Everything, true, false)
            }
            Reach::RequestRoot | Reach::IdentifiedRequestRoot if class & KEY_ROOT == 0 => {
                (Reach::Skip, false, false)
            }
            Reach::RequestRoot | Reach::IdentifiedRequestRoot | Reach::Contents => {
                let content = class & KEY_CONTENT != 0
                    || (class & KEY_THINKING != 0 && !self.in_a_content_block());
                let reach = if is_object && class & KEY_WHOLE_OBJECT != 0 {
                    Reach::EverythingAndNumbers
                } else {
                    Reach::Contents
                };
                (reach, content, content && class & KEY_ARGUMENTS != 0)
            }
        }
    }

    /// Whether the innermost object is an element of the array of a `content` key (an
    /// Anthropic content block).
    fn in_a_content_block(&self) -> bool {
        match self.stack.as_slice() {
            [.., holder, array, object] => {
                array.array
                    && !object.array
                    && !holder.array
                    && &self.body[holder.key.0..holder.key.1] == b"content"
            }
            _ => false,
        }
    }

    fn open(&mut self, array: bool, selection: Selection) -> Result<(), BodyError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(BodyError::TooDeep { max: MAX_DEPTH });
        }
        let (reach, strings, _) = self.value_site(selection, !array);
        self.stack.push(Frame {
            array,
            index: 0,
            key: (0, 0),
            key_class: 0,
            reach,
            strings_edited: array
                && (strings || matches!(reach, Reach::Everything | Reach::EverythingAndNumbers)),
        });
        Ok(())
    }

    /// Reads `"key" :` at `at`; returns the offset after the colon.
    fn member_key(&mut self, at: usize) -> Result<usize, BodyError> {
        let at = skip_whitespace(self.body, at);
        if self.body.get(at) != Some(&b'"') {
            return Err(not_json(at));
        }
        let (end, escaped) = scan_string(self.body, at)?;
        if let Some(frame) = self.stack.last_mut() {
            frame.key = (at + 1, end - 1);
            frame.key_class = match frame.reach {
                Reach::Skip | Reach::Everything | Reach::EverythingAndNumbers => 0,
                _ => key_class(&self.body[at + 1..end - 1], escaped),
            };
        }
        let colon = skip_whitespace(self.body, end);
        if self.body.get(colon) != Some(&b':') {
            return Err(not_json(colon));
        }
        Ok(colon + 1)
    }

    fn run(
        &mut self,
        selection: Selection,
        edit: &mut dyn StringEdit,
        out: &mut Vec<u8>,
    ) -> Result<(), BodyError> {
        let body = self.body;
        let mut at = 0;
        'value: loop {
            at = skip_whitespace(body, at);
            match body.get(at) {
                Some(b'{') => {
                    self.open(false, selection)?;
                    at = skip_whitespace(body, at + 1);
                    if body.get(at) == Some(&b'}') {
                        self.stack.pop();
                        at += 1;
                    } else {
                        at = self.member_key(at)?;
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.open(true, selection)?;
                    at = skip_whitespace(body, at + 1);
                    if body.get(at) == Some(&b']') {
                        self.close(edit, out)?;
                        at += 1;
                    } else {
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    let (_, edited, arguments) = self.value_site(selection, false);
                    if edited && !self.is_part(body) {
                        // A string to edit is decoded as it is scanned: one pass.
                        let scanned =
                            scan_decoded(self.text, at, &mut self.decoded, &mut self.marks)?;
                        self.edit_parts(edit, out)?;
                        self.edit_string(at, scanned, arguments, edit, out)?;
                        at = scanned.end;
                    } else {
                        at = self.scan_other_string(at, edited, edit, out)?;
                    }
                }
                Some(b't') => at = literal(body, at, b"true")?,
                Some(b'f') => at = literal(body, at, b"false")?,
                Some(b'n') => at = literal(body, at, b"null")?,
                Some(b'-' | b'0'..=b'9') => {
                    let end = number(body, at)?;
                    let numbers = match self.stack.last() {
                        Some(frame) => frame.reach == Reach::EverythingAndNumbers,
                        // The arguments may be a number alone.
                        None => selection == Selection::ArgumentsJson,
                    };
                    if numbers {
                        self.edit_number(at, end, edit, out)?;
                    }
                    at = end;
                }
                _ => return Err(not_json(at)),
            }
            // After a value: a separator, the end of containers, or the end of the body.
            loop {
                at = skip_whitespace(body, at);
                let Some(frame) = self.stack.last_mut() else {
                    if at != body.len() {
                        return Err(not_json(at));
                    }
                    return Ok(());
                };
                match body.get(at) {
                    Some(b',') if frame.array => {
                        frame.index += 1;
                        at += 1;
                        continue 'value;
                    }
                    Some(b',') => {
                        at = self.member_key(at + 1)?;
                        continue 'value;
                    }
                    Some(b']') if frame.array => {
                        self.close(edit, out)?;
                        at += 1;
                    }
                    Some(b'}') if !frame.array => {
                        self.stack.pop();
                        at += 1;
                    }
                    _ => return Err(not_json(at)),
                }
            }
        }
    }

    /// Scans the string at `at` that is not edited on its own: skipped, or (`edited`) a
    /// content part, edited with the others of its array. Returns where it ends.
    fn scan_other_string(
        &mut self,
        at: usize,
        edited: bool,
        edit: &mut dyn StringEdit,
        out: &mut Vec<u8>,
    ) -> Result<usize, BodyError> {
        let body = self.body;
        let (end, escaped) = scan_string(body, at)?;
        if edited {
            let depth = self.stack.len() - 2;
            if self.parts_depth != depth {
                self.edit_parts(edit, out)?;
                self.parts_depth = depth;
            }
            let pointer = if edit.needs_pointers() {
                self.site(false).pointer()
            } else {
                String::new()
            };
            self.parts.push(PendingPart {
                start: at,
                end,
                escaped,
                pointer,
            });
        }
        Ok(end)
    }

    fn site(&self, arguments: bool) -> Site<'_> {
        Site {
            body: self.body,
            stack: &self.stack,
            arguments,
        }
    }

    /// A string that is the `"text"` of an object in an array: a content part.
    fn is_part(&self, body: &[u8]) -> bool {
        match self.stack.as_slice() {
            [.., parent, object] => {
                parent.array
                    && !object.array
                    && match object.reach {
                        Reach::Skip | Reach::Everything | Reach::EverythingAndNumbers => {
                            key_is(&body[object.key.0..object.key.1], &["text"])
                        }
                        _ => object.key_class & KEY_TEXT != 0,
                    }
            }
            _ => false,
        }
    }

    /// Closes the innermost array or object; the content parts of an array are edited
    /// once it closes.
    fn close(&mut self, edit: &mut dyn StringEdit, out: &mut Vec<u8>) -> Result<(), BodyError> {
        if !self.parts.is_empty() && self.parts_depth + 1 == self.stack.len() {
            self.edit_parts(edit, out)?;
        }
        self.stack.pop();
        Ok(())
    }

    fn edit_parts(
        &mut self,
        edit: &mut dyn StringEdit,
        out: &mut Vec<u8>,
    ) -> Result<(), BodyError> {
        if self.parts.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.parts);
        let texts: Vec<std::borrow::Cow<'_, str>> = pending
            .iter()
            .map(|part| {
                if part.escaped {
                    let mut text = String::new();
                    decode_str_into(&self.text[part.start + 1..part.end - 1], &mut text);
                    std::borrow::Cow::Owned(text)
                } else {
                    std::borrow::Cow::Borrowed(&self.text[part.start + 1..part.end - 1])
                }
            })
            .collect();
        let parts: Vec<Part<'_>> = texts
            .iter()
            .zip(&pending)
            .map(|(text, part)| Part {
                text,
                pointer: &part.pointer,
            })
            .collect();
        let mut outs = vec![String::new(); parts.len()];
        let changed = edit.edit_parts(&parts, &mut outs)?;
        for ((part, new), changed) in pending.iter().zip(&outs).zip(changed) {
            if changed {
                self.put_string(part.start, part.end, new, out);
            }
        }
        Ok(())
    }

    /// Writes the body up to `start`, then `new` as a JSON string in place of the value
    /// at `start..end`.
    fn put_string(&mut self, start: usize, end: usize, new: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.body[self.copied..start]);
        encode_string(new, out);
        self.copied = end;
        self.changed = true;
    }

    /// A whole number of the arguments' JSON or of a tool's input object: a string in
    /// its place when the editor masks it (see [`Selection::ArgumentsJson`]). It is
    /// read by its value, however written ([`whole_number_digits`]).
    fn edit_number(
        &mut self,
        start: usize,
        end: usize,
        edit: &mut dyn StringEdit,
        out: &mut Vec<u8>,
    ) -> Result<(), BodyError> {
        let written = &self.text[start..end];
        let mut value = String::new();
        let digits = if written.bytes().all(|b| b.is_ascii_digit()) {
            written
        } else if whole_number_digits(written, &mut value) {
            value.as_str()
        } else {
            return Ok(());
        };
        if !(7..=19).contains(&digits.len()) {
            return Ok(());
        }
        let site = Site {
            body: self.body,
            stack: &self.stack,
            arguments: false,
        };
        let mut replacement = String::new();
        if edit.edit_number(&site, digits, &mut replacement)? {
            self.put_string(start, end, &replacement, out);
        }
        Ok(())
    }

    fn edit_string(
        &mut self,
        start: usize,
        Scanned {
            end,
            escaped,
            canonical,
        }: Scanned,
        arguments: bool,
        edit: &mut dyn StringEdit,
        out: &mut Vec<u8>,
    ) -> Result<(), BodyError> {
        // `scan_decoded` left the text in `decoded` (when escaped) and `marks`.
        let decoded = std::mem::take(&mut self.decoded);
        let mut replacement = std::mem::take(&mut self.replacement);
        let mut changes = std::mem::take(&mut self.changes);
        replacement.clear();
        changes.clear();
        // Quotes are ASCII, so these are char boundaries of the validated text.
        let raw = &self.text[start + 1..end - 1];
        let text = if escaped { decoded.as_str() } else { raw };
        let site = Site {
            body: self.body,
            stack: &self.stack,
            arguments,
        };
        // A masked text is about as long as the text: one allocation per body.
        replacement.reserve(text.len() + 64);
        let result = edit.edit_changes(&site, text, &mut replacement, &mut changes);
        let edited = *result.as_ref().unwrap_or(&Edited::Kept);
        if edited != Edited::Kept {
            if !self.changed {
                // The first change: the rest of the body follows.
                out.reserve(self.body.len() + replacement.len());
            }
            out.extend_from_slice(&self.body[self.copied..start]);
            match edited {
                Edited::Changes if canonical => {
                    out.push(b'"');
                    let raw = raw.as_bytes();
                    // The unchanged stretches as written, the new texts encoded.
                    let mut marks = Marks::new(&self.marks);
                    // The new texts lie end to end in `replacement`: one scan tells
                    // whether any needs an escape (a `[TYPE]` never does).
                    let plain = plain_run(replacement.as_bytes()) == replacement.len();
                    let mut from = 0;
                    for change in &changes {
                        out.extend_from_slice(&raw[from..marks.raw(change.start)]);
                        let new = &replacement[change.new.clone()];
                        if plain {
                            out.extend_from_slice(new.as_bytes());
                        } else {
                            encode_str(new, out);
                        }
                        from = marks.raw(change.end);
                    }
                    out.extend_from_slice(&raw[from..]);
                    out.push(b'"');
                }
                Edited::Changes => {
                    let mut whole = String::with_capacity(text.len() + replacement.len());
                    let mut from = 0;
                    for change in &changes {
                        whole.push_str(&text[from..change.start]);
                        whole.push_str(&replacement[change.new.clone()]);
                        from = change.end;
                    }
                    whole.push_str(&text[from..]);
                    encode_string(&whole, out);
                }
                _ => encode_string(&replacement, out),
            }
            self.copied = end;
            self.changed = true;
        }
        self.decoded = decoded;
        self.replacement = replacement;
        self.changes = changes;
        result.map(|_| ())
    }
}

/// Decoded offsets of a string's text mapped to offsets in the string as written, read
/// in increasing order.
struct Marks<'m> {
    /// (decoded, written) at the start of each run after an escape.
    marks: &'m [(usize, usize)],
    next: usize,
    last: (usize, usize),
}

impl<'m> Marks<'m> {
    fn new(marks: &'m [(usize, usize)]) -> Self {
        Marks {
            marks,
            next: 0,
            last: (0, 0),
        }
    }

    /// The written offset of decoded offset `at` (a char boundary, never inside what
    /// one escape decodes to); `at` never decreases between calls.
    fn raw(&mut self, at: usize) -> usize {
        while let Some(&mark) = self.marks.get(self.next)
            && mark.0 <= at
        {
            self.last = mark;
            self.next += 1;
        }
        self.last.1 + (at - self.last.0)
    }
}

fn literal(body: &[u8], at: usize, word: &[u8]) -> Result<usize, BodyError> {
    if body[at..].starts_with(word) {
        Ok(at + word.len())
    } else {
        Err(not_json(at))
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; returns the offset after it.
fn number(body: &[u8], mut at: usize) -> Result<usize, BodyError> {
    let digits = |body: &[u8], mut at: usize| -> Result<usize, BodyError> {
        let start = at;
        while body.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            Err(not_json(at))
        } else {
            Ok(at)
        }
    };
    if body.get(at) == Some(&b'-') {
        at += 1;
    }
    match body.get(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => at = digits(body, at)?,
        _ => return Err(not_json(at)),
    }
    if body.get(at) == Some(&b'.') {
        at = digits(body, at + 1)?;
    }
    if let Some(b'e' | b'E') = body.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = body.get(at) {
            at += 1;
        }
        at = digits(body, at)?;
    }
    Ok(at)
}

/// The digits of the whole number a JSON number stands for, its sign left out, to
/// `out`; false when its value is no whole number (or is zero). Every parser reads
/// `4111111111111111.0`, `4111111111111111e0` and `4.111111111111111e15` as
/// 4111111111111111, and the digits of `-4111111111111111` are the card's: a value
/// read only in its plain spelling would go out, past `block`, in any other.
fn whole_number_digits(number: &str, out: &mut String) -> bool {
    let number = number.strip_prefix('-').unwrap_or(number);
    let (mantissa, exponent) = match number.find(['e', 'E']) {
        Some(at) => (&number[..at], &number[at + 1..]),
        None => (number, ""),
    };
    // Saturating: an exponent past any length of digits reads the same as a huge one.
    let (negative, magnitude) = match exponent.as_bytes().first() {
        Some(b'-') => (true, &exponent[1..]),
        Some(b'+') => (false, &exponent[1..]),
        _ => (false, exponent),
    };
    let magnitude = magnitude.bytes().fold(0i64, |value, digit| {
        value
            .saturating_mul(10)
            .saturating_add(i64::from(digit - b'0'))
    });
    let exponent = if negative { -magnitude } else { magnitude };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    out.clear();
    out.push_str(whole);
    out.push_str(fraction);
    // The value is `out` × 10^scale; its trailing zeros go into the scale.
    let Some(first) = out.bytes().position(|b| b != b'0') else {
        return false;
    };
    let last = out.bytes().rposition(|b| b != b'0').unwrap_or(first);
    let fraction_len = i64::try_from(fraction.len()).unwrap_or(i64::MAX);
    let trailing_zeros = (out.len() - 1 - last) as i64;
    let scale = exponent
        .saturating_sub(fraction_len)
        .saturating_add(trailing_zeros);
    // Longer than any number read: no need to write its zeros out.
    if !(0..=19).contains(&scale) {
        return false;
    }
    out.truncate(last + 1);
    out.drain(..first);
    out.extend(std::iter::repeat_n('0', scale as usize));
    true
}

/// Checks the string starting at the quote `at`; returns the offset after its closing
/// quote and whether it has escapes. The body is already known to be UTF-8.
pub(crate) fn scan_string(body: &[u8], at: usize) -> Result<(usize, bool), BodyError> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        // The common run of plain bytes: one table look-up per byte.
        i += plain_run(&body[i.min(body.len())..]);
        match body.get(i) {
            Some(b'"') => return Ok((i + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                match body.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') => {
                        let hex = body.get(i + 2..i + 6).ok_or(not_json(i))?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(not_json(i));
                        }
                        i += 6;
                    }
                    _ => return Err(not_json(i)),
                }
            }
            // A raw control character, or the body ended inside the string.
            _ => return Err(not_json(i)),
        }
    }
}

fn hex4(raw: &[u8]) -> u32 {
    raw.iter().fold(0, |value, digit| {
        value * 16 + (*digit as char).to_digit(16).unwrap_or(0)
    })
}

/// Appends the text of a string's raw bytes (between the quotes, already checked by
/// [`scan_string`]) to `out`. A lone surrogate becomes U+FFFD.
pub(crate) fn decode_into(raw: &[u8], out: &mut String) {
    match std::str::from_utf8(raw) {
        Ok(raw) => decode_str_into(raw, out),
        Err(_) => decode_str_into(&String::from_utf8_lossy(raw), out),
    }
}

/// [`decode_into`] for raw text already known to be UTF-8 (a slice of a validated
/// body): its plain runs are copied without checking them again.
pub(crate) fn decode_str_into(text: &str, out: &mut String) {
    let raw = text.as_bytes();
    // The decoded text is never longer than its escaped form: one allocation.
    out.reserve(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let run = memchr::memchr(b'\\', &raw[i..]).unwrap_or(raw.len() - i);
        // A run starts after an ASCII escape and ends at a `\\`: char boundaries, unless
        // the escapes were never checked (then the run is taken byte-wise, never a panic).
        match text.get(i..i + run) {
            Some(plain) => out.push_str(plain),
            None => out.push_str(&String::from_utf8_lossy(&raw[i..i + run])),
        }
        i += run;
        if i >= raw.len() {
            break;
        }
        let escape = raw.get(i + 1).copied().unwrap_or(b'\\');
        i += 2;
        let decoded = match escape {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' if i + 4 <= raw.len() => {
                let unit = hex4(&raw[i..i + 4]);
                i += 4;
                if (0xD800..0xDC00).contains(&unit)
                    && raw.get(i..i + 2) == Some(b"\\u")
                    && i + 6 <= raw.len()
                    && (0xDC00..0xE000).contains(&hex4(&raw[i + 2..i + 6]))
                {
                    let low = hex4(&raw[i + 2..i + 6]);
                    i += 6;
                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                        .unwrap_or(char::REPLACEMENT_CHARACTER)
                } else {
                    char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER)
                }
            }
            other => other as char,
        };
        out.push(decoded);
    }
}

/// A string [`scan_decoded`] read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scanned {
    /// The offset after its closing quote.
    pub end: usize,
    /// Whether it has escapes (then its text is in the decoded buffer).
    pub escaped: bool,
    /// Whether every escape is the one [`encode_string`] writes for its character.
    pub canonical: bool,
}

/// [`scan_string`] that also decodes the string's text into `decoded` as it goes (left
/// empty when the string has no escape) and records, after each escape, where the
/// decoded text and the written one line up (decoded offset, offset in the string as
/// written) in `marks`. When every escape is canonical, the string as written is the
/// encoding of its text, stretch by stretch. Errors are [`scan_string`]'s, at the same
/// offsets.
pub(crate) fn scan_decoded(
    text: &str,
    at: usize,
    decoded: &mut String,
    marks: &mut Vec<(usize, usize)>,
) -> Result<Scanned, BodyError> {
    let body = text.as_bytes();
    decoded.clear();
    marks.clear();
    let content = at + 1;
    let mut i = content;
    let mut escaped = false;
    let mut canonical = true;
    // Bytes of the string before here are in `decoded` (once it has an escape).
    let mut copied = content;
    loop {
        i += plain_run(&body[i.min(body.len())..]);
        match body.get(i) {
            Some(b'"') => {
                if escaped {
                    // Runs start after an escape and end at a quote or a backslash:
                    // char boundaries of the validated text.
                    decoded.push_str(&text[copied..i]);
                }
                return Ok(Scanned {
                    end: i + 1,
                    escaped,
                    canonical,
                });
            }
            Some(b'\\') => {
                let escape = match body.get(i + 1) {
                    Some(&b @ (b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't')) => b,
                    Some(b'u') => {
                        let hex = body.get(i + 2..i + 6).ok_or(not_json(i))?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(not_json(i));
                        }
                        b'u'
                    }
                    _ => return Err(not_json(i)),
                };
                // The thread's buffer, reused: it has grown to the strings it has seen.
                escaped = true;
                decoded.push_str(&text[copied..i]);
                let char = match escape {
                    b'"' | b'\\' => escape as char,
                    b'/' => {
                        canonical = false;
                        '/'
                    }
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    _ => {
                        let digits = &body[i + 2..i + 6];
                        let unit = hex4(digits);
                        // The encoder writes `\u00xx`, lower case, for the control
                        // characters that have no short escape, and nothing else.
                        canonical &= unit < 0x20
                            && !matches!(unit, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d)
                            && digits.iter().all(|d| !d.is_ascii_uppercase());
                        // A high surrogate takes a low one written right after it; a
                        // following escape that is not one is scanned on its own.
                        let low = body
                            .get(i + 6..i + 12)
                            .filter(|next| {
                                next.starts_with(b"\\u")
                                    && next[2..].iter().all(u8::is_ascii_hexdigit)
                            })
                            .map(|next| hex4(&next[2..]))
                            .filter(|low| (0xDC00..0xE000).contains(low));
                        match low {
                            Some(low) if (0xD800..0xDC00).contains(&unit) => {
                                i += 6;
                                char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                                    .unwrap_or(char::REPLACEMENT_CHARACTER)
                            }
                            _ => char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER),
                        }
                    }
                };
                i += if escape == b'u' { 6 } else { 2 };
                decoded.push(char);
                copied = i;
                marks.push((decoded.len(), i - content));
            }
            // A raw control character, or the body ended inside the string.
            _ => return Err(not_json(i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `key_class` gives each key the lists it is in, and nothing to other keys.
    #[test]
    fn key_class_agrees_with_the_lists() {
        let lists: [(&[&str], u8); 8] = [
            (REQUEST_ROOTS, KEY_ROOT),
            (CONTENT_KEYS, KEY_CONTENT),
            (WHOLE_OBJECT_KEYS, KEY_WHOLE_OBJECT),
            (&[ARGUMENTS_KEY], KEY_ARGUMENTS),
            (&["text"], KEY_TEXT),
            (&["model"], KEY_MODEL),
            (IDENTIFIER_ROOTS, KEY_IDENTIFIER),
            (&[THINKING_KEY], KEY_THINKING),
        ];
        let keys = lists.iter().flat_map(|(names, _)| names.iter().copied());
        for key in keys.chain(["role", "Content", "messages2", "", "tool_calls"]) {
            let expected = lists
                .iter()
                .filter(|(names, _)| names.contains(&key))
                .fold(0, |class, (_, bit)| class | bit);
            assert_eq!(key_class(key.as_bytes(), false), expected, "{key}");
        }
        assert_eq!(key_class(br"con\u0074ent", true), KEY_CONTENT);
    }

    /// Upper-cases every selected string and records its pointer.
    #[derive(Default)]
    struct Upper {
        pointers: Vec<String>,
    }

    impl StringEdit for Upper {
        fn edit(
            &mut self,
            site: &Site<'_>,
            text: &str,
            out: &mut String,
        ) -> Result<bool, BodyError> {
            self.pointers.push(site.pointer());
            out.push_str(&text.to_uppercase());
            Ok(text.to_uppercase() != text)
        }

        fn edit_parts(
            &mut self,
            parts: &[Part<'_>],
            outs: &mut [String],
        ) -> Result<Vec<bool>, BodyError> {
            self.pointers
                .extend(parts.iter().map(|part| part.pointer.to_string()));
            Ok(parts
                .iter()
                .zip(outs)
                .map(|(part, out)| {
                    out.push_str(&part.text.to_uppercase());
                    part.text.to_uppercase() != part.text
                })
                .collect())
        }

        /// Told as `#pointer`, kept.
        fn edit_number(
            &mut self,
            site: &Site<'_>,
            _digits: &str,
            _out: &mut String,
        ) -> Result<bool, BodyError> {
            self.pointers.push(format!("#{}", site.pointer()));
            Ok(false)
        }
    }

    /// Replaces each `x` of the selected strings by `<"x">` (or `[X]` when `plain`),
    /// told as changes or as the whole text.
    struct Xs {
        as_changes: bool,
        plain: bool,
    }

    impl Xs {
        fn new_text(&self) -> &'static str {
            if self.plain { "[X]" } else { "<\"x\">" }
        }
    }

    impl StringEdit for Xs {
        fn edit(&mut self, _: &Site<'_>, text: &str, out: &mut String) -> Result<bool, BodyError> {
            out.push_str(&text.replace('x', self.new_text()));
            Ok(text.contains('x'))
        }

        fn edit_parts(&mut self, _: &[Part<'_>], _: &mut [String]) -> Result<Vec<bool>, BodyError> {
            unreachable!("no content parts in these bodies")
        }

        fn edit_changes(
            &mut self,
            site: &Site<'_>,
            text: &str,
            out: &mut String,
            changes: &mut Vec<Change>,
        ) -> Result<Edited, BodyError> {
            if !self.as_changes {
                return Ok(if self.edit(site, text, out)? {
                    Edited::Whole
                } else {
                    Edited::Kept
                });
            }
            for (at, _) in text.match_indices('x') {
                let new = out.len();
                out.push_str(self.new_text());
                changes.push(Change {
                    start: at,
                    end: at + 1,
                    new: new..out.len(),
                });
            }
            Ok(if changes.is_empty() {
                Edited::Kept
            } else {
                Edited::Changes
            })
        }
    }

    /// A string edited as changes keeps its unchanged stretches as written where that is
    /// what the encoder would write, and comes out exactly as a whole re-encoding
    /// otherwise (`\/`, `\u0041`, upper-case hex, surrogate pairs).
    #[test]
    fn changes_keep_the_written_stretches_and_equal_a_whole_encoding() {
        for raw in [
            r#"ax\n\"b\\x\u001fc\tx"#,
            r#"x\u00e9x\ud83d\ude00x"#,
            r#"x\/x"#,
            r#"\u0041x\u001Fx"#,
            r#"plain x text"#,
            r#"no change \n here"#,
            r#"x"#,
            r#"\u00e9x\u00e9"#,
        ] {
            let body = format!(r#"{{"a":"{raw}","b":1}}"#);
            let run = |as_changes| {
                let mut out = Vec::new();
                rewrite(
                    body.as_bytes(),
                    Selection::AllStrings,
                    &mut Xs {
                        as_changes,
                        plain: false,
                    },
                    &mut out,
                )
                .unwrap();
                String::from_utf8(out).unwrap()
            };
            let (changes, whole) = (run(true), run(false));
            assert_eq!(changes, whole, "{raw}");
            let value: serde_json::Value = serde_json::from_str(&changes).unwrap();
            let expected: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                value["a"],
                expected["a"].as_str().unwrap().replace('x', "<\"x\">")
            );
        }
        // Where the text is written as the encoder writes it, the bytes are kept.
        let mut out = Vec::new();
        let body = r#"{"a":"\u00e9 x"}"#;
        rewrite(
            body.as_bytes(),
            Selection::AllStrings,
            &mut Xs {
                as_changes: true,
                plain: false,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":"é <\"x\">"}"#);
    }

    proptest::proptest! {
        /// Scanning and decoding in one pass gives what scanning, then decoding, gives:
        /// the same end or the same error offset, the same text, and marks that map
        /// each decoded offset after an escape to where it is written.
        #[test]
        fn scanning_while_decoding_agrees_with_scanning_then_decoding(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "a", "é", "😀", " ", "\\n", "\\\"", "\\\\", "\\/", "\\u0041", "\\u001f",
                "\\u001F", "\\ud83d", "\\ude00", "\\ud83d\\ude00", "\\u12", "\\x", "\"",
                "\u{1}",
            ]), 0..12),
        ) {
            let body = format!("\"{}\"", pieces.concat());
            let mut decoded = String::new();
            let mut marks = Vec::new();
            let fused = scan_decoded(&body, 0, &mut decoded, &mut marks);
            let scanned = scan_string(body.as_bytes(), 0);
            match (fused, scanned) {
                (Ok(Scanned { end, escaped, .. }), Ok((end2, escaped2))) => {
                    proptest::prop_assert_eq!((end, escaped), (end2, escaped2));
                    let mut text = String::new();
                    decode_str_into(&body[1..end - 1], &mut text);
                    if escaped {
                        proptest::prop_assert_eq!(&decoded, &text);
                    }
                    for &(at, raw) in &marks {
                        let mut rest = String::new();
                        decode_str_into(&body[1 + raw..end - 1], &mut rest);
                        proptest::prop_assert_eq!(&text[at..], rest.as_str());
                    }
                }
                (Err(BodyError::NotJson { offset }), Err(BodyError::NotJson { offset: offset2 })) => {
                    proptest::prop_assert_eq!(offset, offset2);
                }
                (fused, scanned) => proptest::prop_assert!(false, "{fused:?} against {scanned:?}"),
            }
        }
    }

    proptest::proptest! {
        /// Told as changes or whole, an edit gives the same bytes, whatever the escapes.
        #[test]
        fn changes_and_whole_edits_give_the_same_bytes(
            text in "[ax\"\\\\\n\t\u{1}\u{1f}é😀/]{0,24}",
            plain: bool,
        ) {
            let body = serde_json::to_string(&serde_json::json!({ "a": text })).unwrap();
            let run = |as_changes| {
                let mut out = Vec::new();
                rewrite(body.as_bytes(), Selection::AllStrings, &mut Xs { as_changes, plain }, &mut out)
                    .unwrap();
                out
            };
            proptest::prop_assert_eq!(run(true), run(false));
        }
    }

    fn upper(body: &str, selection: Selection) -> (String, Vec<String>) {
        let mut edit = Upper::default();
        let mut out = Vec::new();
        rewrite(body.as_bytes(), selection, &mut edit, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), edit.pointers)
    }

    #[test]
    fn only_contents_of_a_request_change_and_every_other_byte_stays() {
        let body = r#"{ "model" : "gpt-4o", "messages":[{"role":"user","content":"hi \u00e9\n","name":"bob"},
            {"role":"assistant","content":[{"type":"text","text":"ok"},{"type":"image_url","image_url":{"url":"data:x"}}],
             "tool_calls":[{"id":"c1","function":{"name":"f","arguments":"{\"q\":1}"}}]}],
            "tools":[{"function":{"description":"text"}}], "n": 1.50e+2, "user":"u" }"#;
        let (out, pointers) = upper(body, Selection::RequestContents);
        let expected = body
            .replace(r#""hi \u00e9\n""#, r#""HI É\n""#)
            .replace(r#""text":"ok""#, r#""text":"OK""#)
            .replace(r#""{\"q\":1}""#, r#""{\"Q\":1}""#);
        assert_eq!(out, expected);
        assert_eq!(
            pointers,
            [
                "/messages/0/content",
                "/messages/1/content/0/text",
                "/messages/1/tool_calls/0/function/arguments"
            ]
        );
    }

    /// With the identifiers, every string under the top-level `user`,
    /// `safety_identifier` and `metadata` is edited too (nested ones included); such keys
    /// deeper down, numbers and the rest stay as they are.
    #[test]
    fn a_request_s_identifiers_are_edited_only_when_asked() {
        let body = r#"{"model":"m","user":"ann@example.com","safety_identifier":"s1",
            "metadata":{"user_id":"u-7","tags":["a",{"k":"b"}],"n":3},
            "messages":[{"role":"user","content":"hi","metadata":{"x":"keep"},"user":"keep"}],
            "store":true}"#;
        let (out, pointers) = upper(body, Selection::RequestContentsAndIdentifiers);
        let expected = body
            .replace("ann@example.com", "ANN@EXAMPLE.COM")
            .replace(r#""s1""#, r#""S1""#)
            .replace("u-7", "U-7")
            .replace(r#"["a",{"k":"b"}]"#, r#"["A",{"k":"B"}]"#)
            .replace(r#""hi""#, r#""HI""#);
        assert_eq!(out, expected);
        assert_eq!(
            pointers,
            [
                "/user",
                "/safety_identifier",
                "/metadata/user_id",
                "/metadata/tags/0",
                "/metadata/tags/1/k",
                "/messages/0/content"
            ]
        );
        let (out, pointers) = upper(body, Selection::RequestContents);
        assert_eq!(out, body.replace(r#""hi""#, r#""HI""#));
        assert_eq!(pointers, ["/messages/0/content"]);
    }

    /// A key written with escapes is the key it decodes to, and one that only looks
    /// like a content key as written is not.
    #[test]
    fn escaped_keys_are_read_as_what_they_decode_to() {
        let body = r#"{"m\u0065ssages":[{"role":"user","con\u0074ent":"hi","co\\ntent":"no"}]}"#;
        let (out, pointers) = upper(body, Selection::RequestContents);
        assert_eq!(out, body.replace(r#""hi""#, r#""HI""#));
        assert_eq!(pointers, ["/messages/0/content"]);
    }

    #[test]
    fn other_json_has_every_string_value_edited_but_not_keys() {
        let (out, pointers) = upper(
            r#"{"a/b~":["x",{"k":"y"}],"n":null}"#,
            Selection::AllStrings,
        );
        assert_eq!(out, r#"{"a/b~":["X",{"k":"Y"}],"n":null}"#);
        assert_eq!(pointers, ["/a~1b~0/0", "/a~1b~0/1/k"]);
    }

    #[test]
    fn anthropic_tool_input_and_system_blocks_are_contents() {
        let body = r#"{"system":[{"type":"text","text":"s"}],"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"n","input":{"city":"paris","n":[1,"x"]}}]}]}"#;
        let (out, _) = upper(body, Selection::RequestContents);
        assert_eq!(
            out,
            body.replace("\"s\"", "\"S\"")
                .replace("paris", "PARIS")
                .replace("\"x\"", "\"X\"")
        );
    }

    #[test]
    fn lists_of_texts_are_contents() {
        let (out, _) = upper(
            r#"{"prompt":["a","b"],"input":[[1,2]],"model":"m"}"#,
            Selection::RequestContents,
        );
        assert_eq!(out, r#"{"prompt":["A","B"],"input":[[1,2]],"model":"m"}"#);
    }

    #[test]
    fn responses_requests_and_api_responses_have_their_contents_edited() {
        let request = r#"{"model":"m","instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"hi"},{"type":"input_image","image_url":"data:x"}]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"done"}],"metadata":{"text":"m"}}"#;
        let (out, pointers) = upper(request, Selection::RequestContents);
        assert_eq!(
            out,
            request
                .replace("be brief", "BE BRIEF")
                .replace("\"hi\"", "\"HI\"")
                .replace("\"done\"", "\"DONE\"")
        );
        assert_eq!(
            pointers,
            [
                "/instructions",
                "/input/0/content/0/text",
                "/input/1/arguments",
                "/input/2/output"
            ]
        );
        let chat = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok","tool_calls":[{"id":"t","function":{"name":"n","arguments":"a"}}]},"finish_reason":"stop"}],"usage":{"total_tokens":1}}"#;
        let (out, _) = upper(chat, Selection::ResponseContents);
        assert_eq!(
            out,
            chat.replace("\"ok\"", "\"OK\"")
                .replace("\"arguments\":\"a\"", "\"arguments\":\"A\"")
        );
        let anthropic = r#"{"id":"msg","type":"message","role":"assistant","content":[{"type":"text","text":"yes"},{"type":"tool_use","id":"t","name":"n","input":{"q":"v"}}],"stop_reason":"end_turn"}"#;
        let (out, _) = upper(anthropic, Selection::ResponseContents);
        assert_eq!(
            out,
            anthropic
                .replace("\"yes\"", "\"YES\"")
                .replace("\"v\"", "\"V\"")
        );
    }

    /// Fields a model reads beside the messages' text: a stored prompt's variables,
    /// a document's title and context, a file's name, a reasoning model's thoughts.
    #[test]
    fn prompt_variables_document_titles_file_names_and_reasoning_are_contents() {
        let request = r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"f","filename":"cv"}]}],"prompt":{"id":"pmpt","version":"2","variables":{"email":"a","card":{"type":"input_text","text":"b"}}},"reasoning":{"effort":"low"}}"#;
        let (out, pointers) = upper(request, Selection::RequestContents);
        assert_eq!(
            pointers,
            [
                "/input/0/content/0/filename",
                "/prompt/variables/email",
                "/prompt/variables/card/type",
                "/prompt/variables/card/text"
            ]
        );
        assert!(out.contains(r#""id":"pmpt","version":"2""#), "{out}");
        assert!(out.contains(r#""effort":"low""#), "{out}");
        let anthropic = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"d"},"title":"t","context":"c"}]}]}"#;
        let (_, pointers) = upper(anthropic, Selection::RequestContents);
        assert_eq!(
            pointers,
            [
                "/messages/0/content/0/title",
                "/messages/0/content/0/context"
            ]
        );
        let answer = r#"{"choices":[{"message":{"role":"assistant","content":"x","reasoning_content":"r"},"delta":{"reasoning":"s"}}]}"#;
        let (out, _) = upper(answer, Selection::ResponseContents);
        assert_eq!(
            out,
            answer
                .replace("\"x\"", "\"X\"")
                .replace("\"r\"", "\"R\"")
                .replace("\"s\"", "\"S\"")
        );
    }

    /// What a Responses request sends back of the built-in tools' calls is contents: a
    /// shell call's command and environment and its output, the code interpreter's code
    /// and logs, a patch's path and diff. Inside a tool's input object, whole numbers
    /// of 7 to 19 digits are read too (and nowhere else in the body).
    #[test]
    fn built_in_tool_calls_and_the_numbers_of_a_tools_input_are_contents() {
        let request = r#"{"model":"m","max_output_tokens":1234567,"input":[
            {"type":"local_shell_call","id":"ls","call_id":"c1","action":{"type":"exec","command":["curl","-u","a:b"],"env":{"TOKEN":"t"},"timeout_ms":1234567},"status":"completed"},
            {"type":"shell_call_output","call_id":"c2","output":[{"stdout":"o","stderr":"e","outcome":{"type":"exit","exit_code":0}}]},
            {"type":"code_interpreter_call","id":"ci","code":"p","container_id":"k","outputs":[{"type":"logs","logs":"l"}]},
            {"type":"apply_patch_call","call_id":"c3","operation":{"type":"update_file","path":"a.py","diff":"d"},"status":"completed"}]}"#;
        let (out, pointers) = upper(request, Selection::RequestContents);
        assert_eq!(
            pointers,
            [
                "/input/0/action/type",
                "/input/0/action/command/0",
                "/input/0/action/command/1",
                "/input/0/action/command/2",
                "/input/0/action/env/TOKEN",
                "#/input/0/action/timeout_ms",
                "/input/1/output/0/stdout",
                "/input/1/output/0/stderr",
                "/input/2/code",
                "/input/2/outputs/0/logs",
                "/input/3/operation/type",
                "/input/3/operation/path",
                "/input/3/operation/diff",
            ]
        );
        for kept in [
            r#""call_id":"c1""#,
            r#""container_id":"k""#,
            r#""exit_code":0"#,
        ] {
            assert!(out.contains(kept), "{out}");
        }
        let anthropic = r#"{"model":"m","max_tokens":1234567,"metadata":{"n":1234567},"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"charge","input":{"card":4111111111111111,"ids":[5555555555554444,7],"amount":12.5,"at":{"n":1234567}}}]}]}"#;
        let (_, pointers) = upper(anthropic, Selection::RequestContents);
        assert_eq!(
            pointers,
            [
                "#/messages/0/content/0/input/card",
                "#/messages/0/content/0/input/ids/0",
                "#/messages/0/content/0/input/at/n"
            ]
        );
        let answer = r#"{"content":[{"type":"tool_use","id":"t","name":"n","input":{"phone":4155552671}}],"usage":{"input_tokens":1234567}}"#;
        let (_, pointers) = upper(answer, Selection::ResponseContents);
        assert_eq!(pointers, ["#/content/0/input/phone"]);
        // Other JSON bodies' numbers are fields: never read.
        let (_, pointers) = upper(r#"{"card":4111111111111111}"#, Selection::AllStrings);
        assert!(pointers.is_empty(), "{pointers:?}");
    }

    /// A JSON number's value as a whole number's digits, sign left out, however it is
    /// spelled; none for a fraction or zero.
    #[test]
    fn whole_number_digits_read_a_number_by_its_value() {
        for (number, digits) in [
            ("4111111111111111", Some("4111111111111111")),
            ("4111111111111111.0", Some("4111111111111111")),
            ("4111111111111111.000", Some("4111111111111111")),
            ("-4111111111111111", Some("4111111111111111")),
            ("-4111111111111111.0e0", Some("4111111111111111")),
            ("4111111111111111e0", Some("4111111111111111")),
            ("4111111111111111E0", Some("4111111111111111")),
            ("4111111111111111E+0", Some("4111111111111111")),
            ("4111111111111111e-0", Some("4111111111111111")),
            ("4111111111111111e-00", Some("4111111111111111")),
            ("4.111111111111111e15", Some("4111111111111111")),
            ("4.111111111111111E+15", Some("4111111111111111")),
            ("0.4111111111111111e16", Some("4111111111111111")),
            ("41111111111111110e-1", Some("4111111111111111")),
            ("411111111111111.1e1", Some("4111111111111111")),
            ("-815518385", Some("815518385")),
            ("4111111111111110", Some("4111111111111110")),
            ("1e6", Some("1000000")),
            ("1.5e2", Some("150")),
            ("4111111111111111.5", None),
            ("4111111111111111e-1", None),
            ("4.1111e3", None),
            ("0", None),
            ("-0.0e5", None),
            ("1e-99999999999999999999999", None),
            ("1e99999999999999999999999", None),
            ("1e20", None),
        ] {
            let mut out = String::from("stale");
            let read = whole_number_digits(number, &mut out);
            assert_eq!(read.then_some(out.as_str()), digits, "{number}");
        }
    }

    /// Card and SSN numbers of a tool's input and of `arguments` in every spelling of
    /// their value are masked as the plain number is (a string in their place), and
    /// `block` refuses them; a fraction, and numbers outside a tool's input, stay byte
    /// for byte.
    #[test]
    fn numbers_of_a_tools_input_in_other_spellings_are_masked_and_blocked() {
        use crate::masking::body::mask_request_body;
        use crate::masking::shape::{Api, BodyShape};
        use crate::masking::{Action, Builtin, Findings, Masker, Vault};
        let blocking = Masker::builder()
            .action(Builtin::CreditCard, Action::Block)
            .action(Builtin::UsSsn, Action::Block)
            .build()
            .unwrap();
        let mask = |masker: &Masker, api: Api, body: &str| {
            mask_request_body(
                masker,
                BodyShape::ApiJson(api),
                body.as_bytes(),
                &mut Vault::default(),
                &mut Findings::default(),
            )
            .map(|out| String::from_utf8(out.into_owned()).unwrap())
        };
        for card in [
            "4111111111111111.0",
            "-4111111111111111",
            "4111111111111111e0",
            "4111111111111111E0",
            "4111111111111111E+0",
            "4111111111111111e-0",
            "4.111111111111111e15",
        ] {
            for ssn in ["-815518385", "815518385.0", "8.15518385e8"] {
                let anthropic = format!(
                    r#"{{"model":"claude","max_tokens":10,"messages":[{{"role":"assistant","content":[{{"type":"tool_use","id":"t","name":"f","input":{{"card_number": {card}, "ssn": {ssn}, "amount": 12.50}}}}]}}]}}"#
                );
                let masked = mask(&Masker::default(), Api::AnthropicMessages, &anthropic).unwrap();
                assert_eq!(
                    masked,
                    anthropic
                        .replace(card, r#""[CREDIT_CARD]""#)
                        .replace(ssn, r#""[US_SSN]""#),
                    "{card} {ssn}"
                );
                let refused = mask(&blocking, Api::AnthropicMessages, &anthropic);
                assert!(
                    matches!(refused, Err(BodyError::Blocked(_))),
                    "{card} {ssn}: {refused:?}"
                );
            }
            let arguments = format!(r#"{{\"card_number\": {card}}}"#);
            let openai = format!(
                r#"{{"model":"m","messages":[{{"role":"assistant","tool_calls":[{{"id":"c","type":"function","function":{{"name":"f","arguments":"{arguments}"}}}}]}}]}}"#
            );
            let masked = mask(&Masker::default(), Api::OpenAiChat, &openai).unwrap();
            assert!(
                masked.contains(r#""arguments":"{\"card_number\": \"[CREDIT_CARD]\"}""#),
                "{card}: {masked}"
            );
            let refused = mask(&blocking, Api::OpenAiChat, &openai);
            assert!(
                matches!(refused, Err(BodyError::Blocked(_))),
                "{card}: {refused:?}"
            );
        }
        // A value that is no whole number is no card; the API's own numbers are not
        // read in any spelling.
        let kept = r#"{"model":"claude","max_tokens":4111111111111111.0,"metadata":{"n":-4111111111111111},"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"card_number": 4111111111111111.5, "n": 4111111111111111e-1}}]}]}"#;
        assert_eq!(mask(&blocking, Api::AnthropicMessages, kept).unwrap(), kept);
    }

    /// Ollama's `thinking` and object `arguments`, its `template`, a citation's quoted
    /// text, an audio answer's transcript, a file search's queries, a generated image's
    /// revised prompt and an error's message are contents; an Anthropic thinking block's text is not
    /// (its signature covers it); `prompt_cache_key` is an end-user identifier.
    #[test]
    fn thinking_citations_transcripts_and_ollama_arguments_are_contents() {
        let sorted = |(_, mut pointers): (String, Vec<String>)| {
            pointers.sort();
            pointers
        };
        let ollama = r#"{"model":"m","think":true,"template":"tpl","prompt_cache_key":"k","messages":[{"role":"assistant","content":"c","thinking":"t","tool_calls":[{"function":{"name":"pay","arguments":{"card":"x","n":4111111111111111}}}]}]}"#;
        let expected = [
            "#/messages/0/tool_calls/0/function/arguments/n",
            "/messages/0/content",
            "/messages/0/thinking",
            "/messages/0/tool_calls/0/function/arguments/card",
            "/template",
        ];
        assert_eq!(sorted(upper(ollama, Selection::RequestContents)), expected);
        let identified = sorted(upper(ollama, Selection::RequestContentsAndIdentifiers));
        assert!(
            identified.contains(&"/prompt_cache_key".to_string()),
            "{identified:?}"
        );
        let anthropic = r#"{"messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":"a","citations":[{"type":"char_location","cited_text":"q","document_index":0}]}]}],"thinking":{"type":"enabled","budget_tokens":1024}}"#;
        assert_eq!(
            sorted(upper(anthropic, Selection::RequestContents)),
            [
                "/messages/0/content/1/citations/0/cited_text",
                "/messages/0/content/1/text"
            ]
        );
        let answers = [
            (
                r#"{"message":{"role":"assistant","content":"c","thinking":"t"},"done":true}"#,
                vec!["/message/content", "/message/thinking"],
            ),
            (
                r#"{"response":"r","thinking":"t","done":false}"#,
                vec!["/response", "/thinking"],
            ),
            (
                r#"{"content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":"x","citations":[{"cited_text":"q"}]}]}"#,
                vec!["/content/1/citations/0/cited_text", "/content/1/text"],
            ),
            (
                r#"{"choices":[{"message":{"role":"assistant","audio":{"id":"a","data":"AAAA","transcript":"tr"}}}]}"#,
                vec!["/choices/0/message/audio/transcript"],
            ),
            (
                r#"{"output":[{"type":"file_search_call","queries":["q1"]},{"type":"image_generation_call","revised_prompt":"rp","result":"AAAA"}]}"#,
                vec!["/output/0/queries/0", "/output/1/revised_prompt"],
            ),
            (
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"m"}}"#,
                vec!["/error/message"],
            ),
        ];
        for (answer, expected) in answers {
            assert_eq!(
                sorted(upper(answer, Selection::ResponseContents)),
                expected,
                "{answer}"
            );
        }
    }

    #[test]
    fn invalid_json_is_refused_with_its_offset() {
        for bad in [
            "",
            " ",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "[01]",
            "[1.]",
            "[-]",
            "[1e]",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\nb\"",
            "[1] 2",
            "{'a':1}",
            "[tru]",
            "nul",
            "[\"a\"",
            "{\"a\":}",
            "[,1]",
            "\u{feff}{}",
        ] {
            assert!(!is_valid(bad.as_bytes()), "{bad:?} was accepted");
        }
        for good in [
            "0",
            "-0.5e-3",
            "\"\\ud800\"",
            "[]",
            "{}",
            " [ {\"a\" : [ ] } ] ",
            "\"\\/\"",
        ] {
            assert!(is_valid(good.as_bytes()), "{good:?} was refused");
        }
        assert!(!is_valid(b"[\"\xff\"]"));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = "[".repeat(1_000_000);
        let mut out = Vec::new();
        assert_eq!(
            rewrite(
                deep.as_bytes(),
                Selection::AllStrings,
                &mut Upper::default(),
                &mut out
            ),
            Err(BodyError::TooDeep { max: MAX_DEPTH })
        );
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(is_valid(ok.as_bytes()));
    }

    #[test]
    fn escapes_decode_and_encode() {
        let mut text = String::new();
        decode_into(br#"a\"\\\/\b\f\n\r\t\u0041\ud83d\ude00\udc00z"#, &mut text);
        assert_eq!(text, "a\"\\/\u{8}\u{c}\n\r\tA😀\u{fffd}z");
    }
}
