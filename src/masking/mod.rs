//! Sensitive-data masking: detectors find values in text in one pass (candidates
//! confirmed by validators), actions replace them, and the body maskers apply that to
//! JSON, text and SSE bodies as they stream. Pure: no I/O and no engine types; the
//! proxy core runs it as a body phase, `junction mask` runs it offline.

pub mod body;
mod bounds;
mod command_flags;
mod contact;
pub mod custom;
pub mod detect;
mod digit_run;
pub mod edit;
pub mod error;
pub mod finance;
mod folded;
mod form;
mod found_cache;
pub mod json;
pub mod keep;
pub mod kinds;
mod literals;
pub mod masker;
mod names;
mod national_id;
pub(crate) mod network;
mod phone_plan;
pub mod policy;
mod recurring;
pub mod restore;
#[cfg(test)]
mod sample_masker;
mod secrets;
pub mod shape;
mod shapes;
mod spelled_email;
pub mod sse;
pub mod stream;
mod triggers;
pub mod vault;
pub mod websocket;

use std::sync::Arc;

pub use body::{
    ResponseMasker, mask_client_request_body, mask_request_body, mask_request_body_located,
};
pub use edit::Located;
pub use error::BodyError;
pub use found_cache::MAX_ENTRIES as MAX_CACHE_ENTRIES;
pub use found_cache::{CacheScope, Partition};
pub use kinds::Builtin;
pub use masker::{DEFAULT_CACHE_ENTRIES, LOOK_BEHIND, Masker, MaskerBuilder, MaskerError};
pub use policy::{Compressed, OnError, Policy};
pub use shape::{Api, BodyShape, Boundary, request_shape, response_shape};
pub use vault::{Concealer, Vault};

/// A type of sensitive value, named as metrics and the access log name it
/// (`EMAIL_ADDRESS`, `CREDIT_CARD`, or a custom detector's name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(pub Arc<str>);

impl Kind {
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// What is done with a value of a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Replaced by `[TYPE]`.
    Redact,
    /// Replaced by a keyed HMAC of the value, the same for the same value.
    Hash,
    /// All but the last 4 characters replaced.
    Partial,
    /// Replaced by `<TYPE_N>`, restored in the response from the request's vault.
    Pseudonymize,
    /// The request is refused, naming the type (never the value).
    Block,
    /// Counted only: the value is kept.
    Log,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Redact => "redact",
            Action::Hash => "hash",
            Action::Partial => "partial",
            Action::Pseudonymize => "pseudonymize",
            Action::Block => "block",
            Action::Log => "log",
        }
    }
}

/// One sensitive value found in a text: its byte range and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
    /// Told by the words around it (a bare SSN after `SSN:`, a key after `api key`), not
    /// by its form alone: the value is looked for again in the rest of the body, where
    /// a repeat (a reply quoting it) lacks those words.
    pub by_context: bool,
}

/// A value whose type's action is `block` was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the request holds a value of type {} that this route does not let through", .kind.name())]
pub struct Blocked {
    pub kind: Kind,
}

/// What masking found in one body: counts per type and action, never values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    counts: Vec<(Kind, Action, u32)>,
}

impl Findings {
    pub fn add(&mut self, kind: &Kind, action: Action) {
        match self
            .counts
            .iter_mut()
            // Values of one detector share its name's allocation: compared by address
            // first, by text only when that differs.
            .find(|(k, a, _)| *a == action && (Arc::ptr_eq(&k.0, &kind.0) || k == kind))
        {
            Some((_, _, count)) => *count += 1,
            None => self.counts.push((kind.clone(), action, 1)),
        }
    }

    pub fn merge(&mut self, other: &Findings) {
        for (kind, action, count) in &other.counts {
            for _ in 0..*count {
                self.add(kind, *action);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// (type, action, count), in the order first found.
    pub fn iter(&self) -> impl Iterator<Item = (&Kind, Action, u32)> {
        self.counts.iter().map(|(k, a, c)| (k, *a, *c))
    }

    pub fn total(&self) -> u32 {
        self.counts.iter().map(|(_, _, c)| c).sum()
    }

    /// Whether a value was let through as it was (`log`): the body holds it.
    pub fn logged(&self) -> bool {
        self.counts.iter().any(|(_, a, _)| *a == Action::Log)
    }
}

/// What the body maskers need from a set of detectors and their actions: find the
/// values in a text, and write each one's replacement. Implemented by the configured
/// masker; the JSON, text and SSE maskers are written against this trait only.
pub trait TextMasker: Send + Sync {
    /// Appends the values found in `text` to `spans`: in order, not overlapping, each
    /// on `char` boundaries.
    fn find(&self, text: &str, spans: &mut Vec<Span>);

    /// As [`find`](Self::find), for a text that may come back whole in later requests:
    /// a request's JSON string or text body (a system prompt, a conversation's earlier
    /// turns), sent by the client of `partition`. A masker may answer from what it
    /// found in the same text before, in the same partition.
    fn find_whole(&self, text: &str, _partition: Partition, spans: &mut Vec<Span>) {
        self.find(text, spans);
    }

    /// Whether an AI API request's end-user identifiers (`user`, `safety_identifier`,
    /// `metadata`) are read as well as its contents (a route's `identifiers = true`).
    fn reads_identifiers(&self) -> bool {
        false
    }

    /// The whole of `text` as one value, when it is the string of a JSON member whose
    /// key (`key`, raw) tells by itself that it holds a secret (`"password"`,
    /// `"api_key"`): the string's quotes bound the value, where in free text the words
    /// after a name do not (`{"password": "correct horse battery staple"}`).
    fn find_named(&self, _key: &[u8], _text: &str) -> Option<Span> {
        None
    }

    /// Appends the replacement of `value` (the text of `span`) to `out` and counts it
    /// in `findings`; a pseudonym is taken from (or added to) `vault`. `Err` when the
    /// type's action is `block` (counted too).
    fn replace(
        &self,
        span: &Span,
        value: &str,
        vault: &mut Vault,
        out: &mut String,
        findings: &mut Findings,
    ) -> Result<(), Blocked>;

    /// How many bytes of text a streaming masker holds back, so that a value split
    /// over two pieces is still found whole: the longest value it must catch.
    fn look_behind(&self) -> usize;
}

/// `text` as a log may show it: every value `masker` finds written as its type's name
/// in brackets (`[EMAIL_ADDRESS]`), whatever the action (`log` and `pseudonymize`
/// too: a log keeps no value, and no vault outlives its request). For what a masking
/// route logs of a request besides its body, its path and query. Borrowed when nothing
/// is found.
pub fn redacted_for_log<'t>(masker: &dyn TextMasker, text: &'t str) -> std::borrow::Cow<'t, str> {
    let mut spans = Vec::new();
    edit::find_spans(masker, text, None, &mut spans);
    if spans.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for span in &spans {
        out.push_str(&text[at..span.start]);
        out.push('[');
        out.push_str(span.kind.name());
        out.push(']');
        at = span.end;
    }
    out.push_str(&text[at..]);
    std::borrow::Cow::Owned(out)
}

/// Appends `text` to `out` with every value `masker` finds replaced.
pub fn mask_text(
    masker: &dyn TextMasker,
    text: &str,
    vault: &mut Vault,
    out: &mut String,
    findings: &mut Findings,
) -> Result<(), Blocked> {
    let mut spans = Vec::new();
    masker.find(text, &mut spans);
    let mut at = 0;
    for span in &spans {
        out.push_str(&text[at..span.start]);
        masker.replace(span, &text[span.start..span.end], vault, out, findings)?;
        at = span.end;
    }
    out.push_str(&text[at..]);
    Ok(())
}
