//! The body phase the proxy core calls: [`mask_request_body`] masks a whole request body
//! by its [`BodyShape`] (filling the request's vault), and a [`ResponseMasker`], given
//! that vault, restores its pseudonyms and masks the response as it streams: SSE and
//! text piece by piece with a bounded look-behind, a whole JSON body once it is all in.
//!
//! Every error fails the body closed ([`BodyError`]): the caller refuses the request
//! (or ends the response) unless the route says `on_error = "pass"`.

use std::borrow::Cow;
use std::sync::Arc;

use super::edit::{Located, TextEditor};
use super::error::BodyError;
use super::form::{self, Written};
use super::json::{self, Selection};
use super::shape::{BodyShape, Boundary};
use super::sse::SseMasker;
use super::stream::TextStream;
use super::{Findings, Partition, TextMasker, Vault};

/// The largest response body a [`ResponseMasker`] buffers (a whole JSON body) or one
/// SSE event it reads, unless told otherwise.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;

/// Masks a whole request body: the contents of an AI API's JSON, every string of other
/// JSON, all of a text body. Pseudonyms go to `vault`, counts to `findings`. The body
/// comes back borrowed when nothing in it changed. Texts read before are looked up
/// among every caller's ([`Partition::SHARED`]): for one party's data, as `junction
/// mask` reads it.
pub fn mask_request_body<'b>(
    masker: &dyn TextMasker,
    shape: BodyShape,
    body: &'b [u8],
    vault: &mut Vault,
    findings: &mut Findings,
) -> Result<Cow<'b, [u8]>, BodyError> {
    mask_client_request_body(masker, shape, body, vault, findings, Partition::SHARED)
}

/// [`mask_request_body`] for a request sent by the client of `partition`: its texts
/// are looked up among that client's only (unless the masker's route shares them).
pub fn mask_client_request_body<'b>(
    masker: &dyn TextMasker,
    shape: BodyShape,
    body: &'b [u8],
    vault: &mut Vault,
    findings: &mut Findings,
    partition: Partition,
) -> Result<Cow<'b, [u8]>, BodyError> {
    mask_request(masker, shape, body, vault, findings, None, partition)
}

/// [`mask_request_body`], also listing where each value was found (`junction mask
/// --report`): type, JSON pointer, byte offsets in the decoded string; no values.
pub fn mask_request_body_located<'b>(
    masker: &dyn TextMasker,
    shape: BodyShape,
    body: &'b [u8],
    vault: &mut Vault,
    findings: &mut Findings,
    located: &mut Vec<Located>,
) -> Result<Cow<'b, [u8]>, BodyError> {
    mask_request(
        masker,
        shape,
        body,
        vault,
        findings,
        Some(located),
        Partition::SHARED,
    )
}

fn mask_request<'b>(
    masker: &dyn TextMasker,
    shape: BodyShape,
    body: &'b [u8],
    vault: &mut Vault,
    findings: &mut Findings,
    mut located: Option<&mut Vec<Located>>,
    partition: Partition,
) -> Result<Cow<'b, [u8]>, BodyError> {
    // A value told by its context in one string may stand in an earlier one without
    // it: the body is masked again, knowing the value from the start. Only from a
    // clean start (a request's vault and findings begin empty), so that the first
    // pass's pseudonyms, counts and places can be dropped.
    let clean = vault.is_empty() && findings.is_empty();
    vault.number_past_tokens_in(body);
    let listed = located.as_deref().map_or(0, Vec::len);
    let mut editor = TextEditor::new(Some(masker), false, vault, findings, located.as_deref_mut())
        .of_a_request(partition);
    let identifiers = masker.reads_identifiers();
    let masked = mask_request_with(&mut editor, shape, identifiers, body)?;
    let recurring = editor.into_recurring();
    if !clean || recurring.is_empty() || !recurring.missed_in(body) {
        return Ok(masked);
    }
    drop(masked);
    *vault = Vault::default();
    vault.number_past_tokens_in(body);
    *findings = Findings::default();
    if let Some(located) = located.as_deref_mut() {
        located.truncate(listed);
    }
    let mut editor = TextEditor::new(Some(masker), false, vault, findings, located)
        .of_a_request(partition)
        .knowing(recurring.known());
    mask_request_with(&mut editor, shape, identifiers, body)
}

/// One pass of [`mask_request`] over `body`. `identifiers`: an AI API request's
/// end-user identifiers are read too ([`TextMasker::reads_identifiers`]).
fn mask_request_with<'b>(
    editor: &mut TextEditor<'_>,
    shape: BodyShape,
    identifiers: bool,
    body: &'b [u8],
) -> Result<Cow<'b, [u8]>, BodyError> {
    // An API's contents are members of an object: another JSON value on its path (a
    // bare string, an array) is no body of that API, and every string of it is read.
    let an_object = || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let selection = match shape {
        BodyShape::ApiJson(_) if !an_object() => Selection::AllStrings,
        BodyShape::ApiJson(_) if identifiers => Selection::RequestContentsAndIdentifiers,
        BodyShape::ApiJson(_) => Selection::RequestContents,
        BodyShape::OtherJson => Selection::AllStrings,
        BodyShape::Text | BodyShape::EventStream(_) => {
            let text = std::str::from_utf8(body).map_err(|error| BodyError::NotText {
                offset: error.valid_up_to(),
            })?;
            let mut masked = String::new();
            return Ok(if editor.edit_text(text, None, &mut masked)? {
                Cow::Owned(masked.into_bytes())
            } else {
                Cow::Borrowed(body)
            });
        }
        BodyShape::JsonLines(_) => return mask_json_lines(body, editor),
        BodyShape::Multipart(boundary) => return mask_multipart(body, boundary, editor),
        BodyShape::UrlEncodedForm => return mask_url_encoded(body, editor),
        BodyShape::Binary => return Err(BodyError::NotMaskable),
    };
    let mut out = Vec::new();
    if json::rewrite(body, selection, editor, &mut out)? {
        Ok(Cow::Owned(out))
    } else {
        Ok(Cow::Borrowed(body))
    }
}

/// Each part of a `multipart/form-data` body masked by its own shape; the framing (the
/// delimiters, each part's headers) copied as it is. A part that cannot be masked (audio,
/// an image, a base64 part) fails the whole body: it is refused, or passed as it is
/// with `on_error = "pass"`, never sent with its text parts masked and the rest unread
/// in silence.
fn mask_multipart<'b>(
    body: &'b [u8],
    boundary: Boundary,
    editor: &mut TextEditor<'_>,
) -> Result<Cow<'b, [u8]>, BodyError> {
    let mut spliced = Spliced::new(body);
    for piece in form::multipart_pieces(body, boundary)? {
        let content = &body[piece.range.clone()];
        if piece.written != Written::AsIs {
            if let Some(masked) = mask_parameter(content, piece.written, editor)
                .map_err(|error| error.after(piece.range.start))?
            {
                spliced.replace(piece.range, |out| out.extend_from_slice(&masked));
            }
            continue;
        }
        let masked = match (piece.shape, &piece.field) {
            (BodyShape::Text, Some(name)) => {
                let text = std::str::from_utf8(content).map_err(|error| BodyError::NotText {
                    offset: piece.range.start + error.valid_up_to(),
                })?;
                let mut masked = String::new();
                if editor.edit_field(name, text, &mut masked)? {
                    Cow::Owned(masked.into_bytes())
                } else {
                    Cow::Borrowed(content)
                }
            }
            (shape, _) => mask_request_with(editor, shape, false, content)
                .map_err(|error| error.after(piece.range.start))?,
        };
        let Cow::Owned(masked) = masked else {
            continue;
        };
        // A value's replacement never holds a line end, so it cannot make a delimiter;
        // checked all the same, as a changed framing would change what the server reads.
        if form::would_delimit(&masked, boundary) {
            return Err(BodyError::NotMultipart {
                offset: piece.range.start,
            });
        }
        spliced.replace(piece.range, |out| out.extend_from_slice(&masked));
    }
    Ok(spliced.finish())
}

/// A part header's parameter value (a field's or a file's name) masked as text and
/// written back as it was written (a bare token that changed is quoted); `None` when
/// nothing changed. Errors' offsets are in `raw`.
fn mask_parameter(
    raw: &[u8],
    written: Written,
    editor: &mut TextEditor<'_>,
) -> Result<Option<Vec<u8>>, BodyError> {
    let extended;
    let text = match written {
        Written::Extended => {
            extended = form::extended_value(raw).ok_or(BodyError::NotMultipart { offset: 0 })?;
            extended.as_str()
        }
        _ => std::str::from_utf8(raw).map_err(|error| BodyError::NotText {
            offset: error.valid_up_to(),
        })?,
    };
    let mut masked = String::new();
    if !editor.edit_text(text, None, &mut masked)? {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(masked.len() + 8);
    match written {
        Written::Extended => form::write_extended_value(&masked, &mut out),
        Written::Token => form::write_quoted(&masked, &mut out),
        // The masked text of a quoted string's inside (its escapes as written): a
        // replacement holds no quote, backslash or line end, but it is checked, as a
        // broken quote would change what the server reads.
        _ if form::is_quoted_content(masked.as_bytes()) => out = masked.into_bytes(),
        _ => return Err(BodyError::NotMultipart { offset: 0 }),
    }
    Ok(Some(out))
}

/// Every field of a URL-encoded form, decoded, masked as text (by its name, which may
/// say it holds a secret) and encoded again when it changed; names and unchanged values
/// stay byte for byte.
fn mask_url_encoded<'b>(
    body: &'b [u8],
    editor: &mut TextEditor<'_>,
) -> Result<Cow<'b, [u8]>, BodyError> {
    let mut spliced = Spliced::new(body);
    let (mut name, mut value, mut masked) = (Vec::new(), Vec::new(), String::new());
    for field in form::url_encoded_fields(body) {
        name.clear();
        value.clear();
        form::url_decode(&body[field.name.clone()], &mut name);
        form::url_decode(&body[field.value.clone()], &mut value);
        // The name is read too: a field without `=` is all name (`?token`), and a
        // value may be sent as one.
        for (range, decoded, as_value) in [(field.name, &name, false), (field.value, &value, true)]
        {
            if decoded.is_empty() {
                continue;
            }
            let text = std::str::from_utf8(decoded).map_err(|_| BodyError::NotText {
                offset: range.start,
            })?;
            masked.clear();
            let changed = if as_value {
                editor.edit_field(&name, text, &mut masked)?
            } else {
                editor.edit_text(text, None, &mut masked)?
            };
            if changed {
                spliced.replace(range, |out| form::url_encode(&masked, out));
            }
        }
    }
    Ok(spliced.finish())
}

/// A body rebuilt with some of its ranges (in order, apart) replaced, the bytes between
/// them copied; the body itself when none was.
struct Spliced<'b> {
    body: &'b [u8],
    out: Vec<u8>,
    copied: usize,
    changed: bool,
}

impl<'b> Spliced<'b> {
    fn new(body: &'b [u8]) -> Self {
        Spliced {
            body,
            out: Vec::new(),
            copied: 0,
            changed: false,
        }
    }

    /// `range`'s bytes give way to what `write` appends.
    fn replace(&mut self, range: std::ops::Range<usize>, write: impl FnOnce(&mut Vec<u8>)) {
        self.out
            .extend_from_slice(&self.body[self.copied..range.start]);
        write(&mut self.out);
        self.copied = range.end;
        self.changed = true;
    }

    fn finish(mut self) -> Cow<'b, [u8]> {
        if !self.changed {
            return Cow::Borrowed(self.body);
        }
        self.out.extend_from_slice(&self.body[self.copied..]);
        Cow::Owned(self.out)
    }
}

/// Every string of each line of a JSON-lines body; blank lines and line endings kept.
fn mask_json_lines<'b>(
    body: &'b [u8],
    editor: &mut TextEditor<'_>,
) -> Result<Cow<'b, [u8]>, BodyError> {
    let mut out = Vec::with_capacity(body.len());
    let mut changed = false;
    let mut line_start = 0;
    for line in body.split_inclusive(|b| *b == b'\n') {
        let content_end = line.len()
            - line
                .iter()
                .rev()
                .take_while(|b| matches!(b, b'\n' | b'\r'))
                .count();
        let (content, ending) = line.split_at(content_end);
        if content.trim_ascii().is_empty() {
            out.extend_from_slice(line);
        } else {
            changed |= json::rewrite(content, Selection::AllStrings, editor, &mut out)
                .map_err(|error| error.after(line_start))?;
            out.extend_from_slice(ending);
        }
        line_start += line.len();
    }
    Ok(if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(body)
    })
}

enum Phase {
    /// Nothing to mask or restore: bytes pass as they are.
    Passing,
    /// A whole JSON body, edited once it is all in.
    Buffering(Vec<u8>, Selection),
    Text(TextStream),
    Events(SseMasker),
    /// The body cannot be masked: the first piece fails.
    Refused,
}

/// Masks and restores one response body as it streams. Owns the request's vault: the
/// pseudonyms in the response are replaced by the client's values (never masked
/// again), and the rest is masked with `masker` when the route masks responses.
pub struct ResponseMasker {
    masker: Option<Arc<dyn TextMasker>>,
    restore: bool,
    vault: Vault,
    max_body: usize,
    phase: Phase,
}

impl std::fmt::Debug for ResponseMasker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseMasker")
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

impl ResponseMasker {
    /// `masker`: `None` when the route does not mask responses (only restores).
    pub fn new(masker: Option<Arc<dyn TextMasker>>, vault: Vault, shape: BodyShape) -> Self {
        Self::with_max_body(masker, vault, shape, DEFAULT_MAX_BODY)
    }

    /// As [`ResponseMasker::new`], buffering at most `max_body` bytes of a JSON body
    /// (and of one SSE event) before failing with [`BodyError::TooLarge`].
    pub fn with_max_body(
        masker: Option<Arc<dyn TextMasker>>,
        vault: Vault,
        shape: BodyShape,
        max_body: usize,
    ) -> Self {
        let restore = !vault.is_empty();
        let phase = if masker.is_none() && !restore {
            Phase::Passing
        } else {
            match shape {
                BodyShape::ApiJson(_) => Phase::Buffering(Vec::new(), Selection::ResponseContents),
                BodyShape::OtherJson => Phase::Buffering(Vec::new(), Selection::AllStrings),
                BodyShape::Text => Phase::Text(TextStream::new(masker.clone(), restore)),
                BodyShape::EventStream(_) => {
                    Phase::Events(SseMasker::new(masker.clone(), restore, max_body))
                }
                BodyShape::JsonLines(_) => {
                    Phase::Events(SseMasker::json_lines(masker.clone(), restore, max_body))
                }
                // Pseudonyms cannot be found in bytes that are not text: left as they are.
                // Forms are a request's shapes; an answer in one is as opaque as bytes.
                BodyShape::Binary | BodyShape::Multipart(_) | BodyShape::UrlEncodedForm
                    if masker.is_none() =>
                {
                    Phase::Passing
                }
                BodyShape::Binary | BodyShape::Multipart(_) | BodyShape::UrlEncodedForm => {
                    Phase::Refused
                }
            }
        };
        ResponseMasker {
            masker,
            restore,
            vault,
            max_body,
            phase,
        }
    }

    /// Whether the body passes untouched (no masking, nothing to restore).
    pub fn is_passing(&self) -> bool {
        matches!(self.phase, Phase::Passing)
    }

    /// Whether the whole body is kept until [`ResponseMasker::finish`] (JSON): the
    /// caller can then send a `Content-Length` of the output. Any other masked body
    /// changes length as it streams: its `Content-Length` must go.
    pub fn is_buffering(&self) -> bool {
        matches!(self.phase, Phase::Buffering(..))
    }

    /// How many bytes of a whole JSON body it holds for [`ResponseMasker::finish`].
    pub fn held(&self) -> usize {
        match &self.phase {
            Phase::Buffering(held, _) => held.len(),
            _ => 0,
        }
    }

    /// Takes the next piece of the body; appends what can be sent now to `out`.
    pub fn push(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        findings: &mut Findings,
    ) -> Result<(), BodyError> {
        match &mut self.phase {
            Phase::Passing => out.extend_from_slice(data),
            Phase::Buffering(body, _) => {
                if body.len() + data.len() > self.max_body {
                    return Err(BodyError::TooLarge {
                        limit: self.max_body,
                    });
                }
                body.extend_from_slice(data);
            }
            Phase::Text(stream) => {
                let mut text = String::new();
                stream.push_bytes(data, &mut self.vault, &mut text, findings)?;
                out.extend_from_slice(text.as_bytes());
            }
            Phase::Events(events) => events.push(data, &mut self.vault, out, findings)?,
            Phase::Refused => return Err(BodyError::NotMaskable),
        }
        Ok(())
    }

    /// The end of the body: appends everything still held to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>, findings: &mut Findings) -> Result<(), BodyError> {
        match &mut self.phase {
            Phase::Passing => {}
            Phase::Buffering(body, selection) => {
                let body = std::mem::take(body);
                if body.is_empty() {
                    return Ok(());
                }
                let mut editor = TextEditor::new(
                    self.masker.as_deref(),
                    self.restore,
                    &mut self.vault,
                    findings,
                    None,
                );
                let start = out.len();
                match json::rewrite(&body, *selection, &mut editor, out) {
                    Ok(true) => {}
                    Ok(false) => {
                        out.truncate(start);
                        out.extend_from_slice(&body);
                    }
                    Err(error) => {
                        out.truncate(start);
                        return Err(error);
                    }
                }
            }
            Phase::Text(stream) => {
                let mut text = String::new();
                stream.finish(&mut self.vault, &mut text, findings)?;
                out.extend_from_slice(text.as_bytes());
            }
            Phase::Events(events) => events.finish(&mut self.vault, out, findings)?,
            Phase::Refused => return Err(BodyError::NotMaskable),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::sample_masker::SampleMasker;
    use crate::masking::shape::Api;
    use crate::masking::{Action, Kind, Span};

    #[test]
    fn a_request_is_masked_and_its_response_restored() {
        let masker = SampleMasker::new(Action::Pseudonymize);
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"mail ann@example.org, key SECRET-1"}],"user":"ann@example.org"}"#;
        let mut vault = Vault::default();
        let mut findings = Findings::default();
        let mut located = Vec::new();
        let masked = mask_request_body_located(
            &masker,
            BodyShape::ApiJson(Api::OpenAiChat),
            body,
            &mut vault,
            &mut findings,
            &mut located,
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&masked).unwrap(),
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"mail <EMAIL_ADDRESS_1>, key <SECRET_1>"}],"user":"ann@example.org"}"#
        );
        assert_eq!(findings.total(), 2);
        assert_eq!(
            located,
            [
                Located {
                    kind: Kind("EMAIL_ADDRESS".into()),
                    pointer: "/messages/0/content".into(),
                    start: 5,
                    end: 20
                },
                Located {
                    kind: Kind("SECRET".into()),
                    pointer: "/messages/0/content".into(),
                    start: 26,
                    end: 34
                }
            ]
        );

        let reply = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Sent to <EMAIL_ADDRESS_1>; <SECRET_2> unknown"}}],"usage":{"total_tokens":3}}"#;
        let mut response = ResponseMasker::new(None, vault, BodyShape::ApiJson(Api::OpenAiChat));
        let mut out = Vec::new();
        for piece in reply.chunks(7) {
            response.push(piece, &mut out, &mut findings).unwrap();
        }
        assert!(out.is_empty(), "a JSON body is sent once whole");
        response.finish(&mut out, &mut findings).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Sent to ann@example.org; <SECRET_2> unknown"}}],"usage":{"total_tokens":3}}"#
        );
    }

    /// A chat completions request `body` through `mask_request_body_located`.
    fn masked_chat(masker: &dyn TextMasker, body: &str) -> (String, Findings, Vec<Located>) {
        let (mut vault, mut findings, mut located) =
            (Vault::default(), Findings::default(), Vec::new());
        let masked = mask_request_body_located(
            masker,
            BodyShape::ApiJson(Api::OpenAiChat),
            body.as_bytes(),
            &mut vault,
            &mut findings,
            &mut located,
        )
        .unwrap();
        (
            String::from_utf8(masked.into_owned()).unwrap(),
            findings,
            located,
        )
    }

    /// With the real masker, SSNs pseudonymized.
    fn masked_with_report(body: &str) -> (String, Findings, Vec<Located>) {
        let masker = crate::masking::Masker::builder()
            .action(crate::masking::Builtin::UsSsn, Action::Pseudonymize)
            .build()
            .unwrap();
        masked_chat(&masker, body)
    }

    #[test]
    fn a_value_told_by_its_context_is_masked_where_it_recurs_before_or_after() {
        let chat = |first: &str, second: &str, third: &str| {
            format!(
                r#"{{"messages":[{{"role":"user","content":"{first}"}},{{"role":"assistant","content":"{second}"}},{{"role":"user","content":[{{"type":"text","text":"{third}"}}]}}],"user":"536221234"}}"#
            )
        };
        // Told in the first string: quoted in the next ones, without the word.
        let (masked, findings, located) = masked_with_report(&chat(
            "my SSN is 536221234",
            "I see you mentioned 536221234.",
            "yes, 536221234 (not ref536221234)",
        ));
        assert_eq!(
            masked,
            chat(
                "my SSN is <US_SSN_1>",
                "I see you mentioned <US_SSN_1>.",
                "yes, <US_SSN_1> (not ref536221234)"
            )
            .replace(r#""user":"<US_SSN_1>""#, r#""user":"536221234""#)
        );
        assert_eq!(findings.total(), 3);
        assert_eq!(
            located
                .iter()
                .map(|l| l.pointer.as_str())
                .collect::<Vec<_>>(),
            [
                "/messages/0/content",
                "/messages/1/content",
                "/messages/2/content/0/text"
            ]
        );

        // Told only in the last string: the earlier ones are masked too, and the first
        // pass's pseudonyms, counts and places are not left behind.
        let (masked, findings, located) = masked_with_report(&chat(
            "check 536221234 please",
            "Done: 536221234 is fine",
            "that was my SSN: 536221234",
        ));
        assert_eq!(
            masked,
            chat(
                "check <US_SSN_1> please",
                "Done: <US_SSN_1> is fine",
                "that was my SSN: <US_SSN_1>"
            )
            .replace(r#""user":"<US_SSN_1>""#, r#""user":"536221234""#)
        );
        assert_eq!(findings.total(), 3);
        assert_eq!(located.len(), 3);
        assert_eq!((located[0].start, located[0].end), (6, 15));

        // Nine digits with no word anywhere stay: the repeat needs a first finding.
        let plain = chat("order 536221234", "order 536221234 shipped", "thanks");
        assert_eq!(masked_with_report(&plain).0, plain);
    }

    /// A member whose key names a password or a key has its whole string masked, blanks
    /// and all, in tool-call arguments and in other JSON; references, placeholders and
    /// values that are no key stay, and so does everything under other keys.
    #[test]
    fn members_named_as_secrets_are_masked_whole() {
        let masker = crate::masking::Masker::default();
        let arguments = r#"{\"user\":\"bob\",\"password\":\"correct horse battery staple\",\"api_key\":\"abcd1234efgh5678ijkl\",\"db_password\":\"${DB_PASSWORD}\",\"token_type\":\"Bearer\",\"new_password\":\"required\",\"note\":\"correct horse\"}"#;
        let chat = |arguments: &str| {
            format!(
                r#"{{"messages":[{{"role":"assistant","content":null,"tool_calls":[{{"id":"c1","type":"function","function":{{"name":"login","arguments":"{arguments}"}}}}]}}]}}"#
            )
        };
        let (masked, findings, located) = masked_chat(&masker, &chat(arguments));
        let expected = arguments
            .replace("correct horse battery staple", "[PASSWORD]")
            .replace("abcd1234efgh5678ijkl", "[API_KEY]");
        assert_eq!(masked, chat(&expected));
        assert_eq!(findings.total(), 2);
        assert_eq!(
            located
                .iter()
                .map(|l| (l.pointer.as_str(), l.start, l.end))
                .collect::<Vec<_>>(),
            [
                (
                    "/messages/0/tool_calls/0/function/arguments/password",
                    0,
                    28
                ),
                ("/messages/0/tool_calls/0/function/arguments/api_key", 0, 20),
            ]
        );

        let other = r#"{"login":{"username":"bob","passwd":"hunter2 x","list":["correct horse battery staple"]},"content":"correct horse battery staple"}"#;
        let (mut vault, mut findings) = (Vault::default(), Findings::default());
        let masked = mask_request_body(
            &masker,
            BodyShape::OtherJson,
            other.as_bytes(),
            &mut vault,
            &mut findings,
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&masked).unwrap(),
            other.replace("hunter2 x", "[PASSWORD]")
        );
    }

    #[test]
    fn a_value_split_across_two_content_parts_is_found() {
        let masker = SampleMasker::new(Action::Redact);
        let body = r#"{"messages":[{"role":"user","content":[{"type":"text","text":"my key is SEC"},{"type":"image_url","image_url":{"url":"https://x/SECRET-1"}},{"type":"text","text":"RET-12\u0033 ok"}]}]}"#;
        let (masked, findings, located) = masked_chat(&masker, body);
        assert_eq!(
            masked,
            body.replace("my key is SEC", "my key is [SECRET]")
                .replace("RET-12\\u0033 ok", " ok")
        );
        assert_eq!(
            located,
            [Located {
                kind: Kind("SECRET".into()),
                pointer: "/messages/0/content/0/text".into(),
                start: 10,
                end: 13
            }]
        );
        assert_eq!(findings.total(), 1);
    }

    #[test]
    fn unchanged_bodies_come_back_borrowed_and_errors_name_no_value() {
        let masker = SampleMasker::new(Action::Redact);
        let mut vault = Vault::default();
        let mut findings = Findings::default();
        let body = br#"{"messages":[{"role":"user","content":"nothing here"}]}"#;
        let shape = BodyShape::ApiJson(Api::AnthropicMessages);
        assert!(matches!(
            mask_request_body(&masker, shape, body, &mut vault, &mut findings),
            Ok(Cow::Borrowed(_))
        ));
        let bad = br#"{"messages":[{"content":"SECRET-123"},]}"#;
        let error = mask_request_body(&masker, shape, bad, &mut vault, &mut findings).unwrap_err();
        assert_eq!(error, BodyError::NotJson { offset: 38 });
        let blocking = SampleMasker::new(Action::Block);
        let error = mask_request_body(
            &blocking,
            BodyShape::Text,
            b"key SECRET-123",
            &mut vault,
            &mut findings,
        )
        .unwrap_err();
        assert!(!format!("{error} {error:?}").contains("123"));
        assert!(format!("{error}").contains("SECRET"));
        assert_eq!(
            mask_request_body(&masker, BodyShape::Binary, b"x", &mut vault, &mut findings),
            Err(BodyError::NotMaskable)
        );
    }

    #[test]
    fn a_response_is_refused_past_its_limit_and_binary_is_refused_when_masked() {
        let masker: Arc<dyn TextMasker> = Arc::new(SampleMasker::new(Action::Redact));
        let mut response = ResponseMasker::with_max_body(
            Some(masker.clone()),
            Vault::default(),
            BodyShape::OtherJson,
            10,
        );
        let mut findings = Findings::default();
        assert_eq!(
            response.push(&[b' '; 11], &mut Vec::new(), &mut findings),
            Err(BodyError::TooLarge { limit: 10 })
        );
        let mut response = ResponseMasker::new(Some(masker), Vault::default(), BodyShape::Binary);
        assert_eq!(
            response.push(b"x", &mut Vec::new(), &mut findings),
            Err(BodyError::NotMaskable)
        );
        let response = ResponseMasker::new(None, Vault::default(), BodyShape::Binary);
        assert!(response.is_passing());
    }

    #[test]
    fn a_json_lines_request_has_every_line_masked() {
        let masker = SampleMasker::new(Action::Redact);
        let body = b"{\"a\":\"SECRET-1\"}\r\n\n{\"b\":[1,\"x SECRET-2\"]}";
        let masked = mask_request_body(
            &masker,
            BodyShape::JsonLines(None),
            body,
            &mut Vault::default(),
            &mut Findings::default(),
        )
        .unwrap();
        assert_eq!(
            &masked[..],
            b"{\"a\":\"[SECRET]\"}\r\n\n{\"b\":[1,\"x [SECRET]\"]}"
        );
        let error = mask_request_body(
            &masker,
            BodyShape::JsonLines(None),
            b"{}\n{,}\n",
            &mut Vault::default(),
            &mut Findings::default(),
        );
        assert_eq!(error, Err(BodyError::NotJson { offset: 4 }));
    }

    fn masked_form(shape: BodyShape, body: &[u8]) -> (Result<String, BodyError>, Findings) {
        let masker = crate::masking::Masker::default();
        let mut findings = Findings::default();
        let masked = mask_request_body(&masker, shape, body, &mut Vault::default(), &mut findings)
            .map(|masked| String::from_utf8(masked.into_owned()).unwrap());
        (masked, findings)
    }

    /// A bare string or an array sent to an API's path holds no contents by that API's
    /// shape: every string of it is masked.
    #[test]
    fn an_api_body_that_is_no_object_has_every_string_masked() {
        let shape =
            crate::masking::request_shape(b"/v1/chat/completions", Some(b"application/json"));
        for (body, expected) in [
            (" \"ann.lee@example.org\"", " \"[EMAIL_ADDRESS]\""),
            (
                "[\"hi\", {\"to\": \"ann.lee@example.org\"}]",
                "[\"hi\", {\"to\": \"[EMAIL_ADDRESS]\"}]",
            ),
        ] {
            let (masked, _) = masked_form(shape, body.as_bytes());
            assert_eq!(masked.as_deref(), Ok(expected), "{body}");
        }
        // An object keeps the API's shape: its other fields are not read.
        let object = r#"{"model":"ann.lee@example.org","messages":[]}"#;
        assert_eq!(
            masked_form(shape, object.as_bytes()).0.as_deref(),
            Ok(object)
        );
    }

    #[test]
    fn each_part_of_a_multipart_form_is_masked_by_its_own_type() {
        let shape = crate::masking::request_shape(
            b"/v1/files",
            Some(b"multipart/form-data; boundary=\"----Bound: ary\""),
        );
        let part = |headers: &str, content: &str| {
            format!("------Bound: ary\r\n{headers}\r\n\r\n{content}\r\n")
        };
        let body = |note: &str, line: &str, password: &str| {
            [
                part(r#"Content-Disposition: form-data; name="purpose""#, "batch"),
                part(
                    "Content-Disposition: form-data; name=\"file\"; filename=\"batch.jsonl\"\r\nContent-Type: application/octet-stream",
                    &format!("{{\"custom_id\":\"1\",\"body\":{{\"messages\":[{{\"content\":\"{line}\"}}]}}}}\n"),
                ),
                part(r#"Content-Disposition: form-data; name="note""#, note),
                part(r#"Content-Disposition: form-data; name="db_password""#, password),
                "------Bound: ary--\r\n".to_string(),
            ]
            .concat()
        };
        let sent = body(
            "call +44 20 7946 0958",
            "mail ann.lee@example.org",
            "correct horse",
        );
        let (masked, findings) = masked_form(shape, sent.as_bytes());
        assert_eq!(
            masked.unwrap(),
            body("call [PHONE_NUMBER]", "mail [EMAIL_ADDRESS]", "[PASSWORD]")
        );
        assert_eq!(findings.total(), 3);

        // Nothing found: the body comes back as it was.
        let clean = body("hello", "hi", "");
        assert_eq!(masked_form(shape, clean.as_bytes()).0.unwrap(), clean);

        // Audio cannot be masked: the whole body fails closed.
        let audio = [
            part(r#"Content-Disposition: form-data; name="model""#, "whisper-1"),
            part(
                "Content-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\nContent-Type: audio/mpeg",
                "ID3",
            ),
            "------Bound: ary--".to_string(),
        ]
        .concat();
        assert_eq!(
            masked_form(shape, audio.as_bytes()).0,
            Err(BodyError::NotMaskable)
        );
        // A text part that is not UTF-8, and JSON that is not JSON, are named by their
        // place in the whole body.
        let latin1 = [&b"------Bound: ary\r\nContent-Disposition: form-data; name=n\r\n\r\nJos\xe9\r\n------Bound: ary--"[..]].concat();
        assert_eq!(
            masked_form(shape, &latin1).0,
            Err(BodyError::NotText { offset: 63 })
        );
        assert_eq!(
            masked_form(
                BodyShape::Multipart(Boundary::new(b"b").unwrap()),
                b"--b\r\nContent-Type: application/json\r\n\r\n{]\r\n--b--"
            )
            .0,
            Err(BodyError::NotJson { offset: 40 })
        );
    }

    #[test]
    fn field_and_file_names_are_masked_as_they_are_written() {
        let shape = BodyShape::Multipart(Boundary::new(b"b").unwrap());
        let sent = "--b\r\nContent-Disposition: form-data; name=\"to ann.lee@example.org\"\r\n\r\nhi\r\n\
            --b\r\nContent-Disposition: form-data; name=f; filename=ann.lee@example.org.txt\r\n\r\nx\r\n\
            --b\r\nContent-Disposition: form-data; name=g; filename*=UTF-8''ann.lee%40example.org%20%C3%A9.jsonl\r\n\r\n{}\r\n--b--";
        let (masked, findings) = masked_form(shape, sent.as_bytes());
        assert_eq!(
            masked.unwrap(),
            "--b\r\nContent-Disposition: form-data; name=\"to [EMAIL_ADDRESS]\"\r\n\r\nhi\r\n\
            --b\r\nContent-Disposition: form-data; name=f; filename=\"[EMAIL_ADDRESS].txt\"\r\n\r\nx\r\n\
            --b\r\nContent-Disposition: form-data; name=g; filename*=UTF-8''%5BEMAIL_ADDRESS%5D%20%C3%A9.jsonl\r\n\r\n{}\r\n--b--"
        );
        // (`.txt` is a file's extension, no top-level domain: the name keeps it.)
        assert_eq!(findings.total(), 3);
        // A name in a charset masking cannot read fails the form closed.
        let koi8 = "--b\r\nContent-Disposition: form-data; name=g; filename*=koi8-r''%C1\r\n\r\nx\r\n--b--";
        assert_eq!(
            masked_form(shape, koi8.as_bytes()).0,
            Err(BodyError::NotMultipart { offset: 55 })
        );
    }

    #[test]
    fn a_url_encoded_form_has_its_fields_masked_and_encoded_again() {
        let shape =
            crate::masking::request_shape(b"/login", Some(b"application/x-www-form-urlencoded"));
        assert_eq!(shape, BodyShape::UrlEncodedForm);
        let (masked, findings) = masked_form(
            shape,
            b"user=ann&email=ann.lee%40example.org&password=correct+horse&note=call+%2B1+415+555+0132+now&a%20b=%zz",
        );
        assert_eq!(
            masked.unwrap(),
            "user=ann&email=%5BEMAIL_ADDRESS%5D&password=%5BPASSWORD%5D&note=call+%5BPHONE_NUMBER%5D+now&a%20b=%zz"
        );
        assert_eq!(findings.total(), 3);
        // A value with no `=` is read as well.
        let (masked, _) = masked_form(shape, b"x=1&ann.lee@example.org");
        assert_eq!(masked.unwrap(), "x=1&%5BEMAIL_ADDRESS%5D");
        let (masked, _) = masked_form(shape, b"note=%ff");
        assert_eq!(masked, Err(BodyError::NotText { offset: 5 }));
    }

    /// Finds overlapping, unordered spans off char boundaries.
    struct CarelessMasker;

    impl TextMasker for CarelessMasker {
        fn find(&self, text: &str, spans: &mut Vec<Span>) {
            let kind = Kind("X".into());
            for (start, end) in [(5, 9), (1, 3), (2, 4), (8, 100)] {
                spans.push(Span {
                    start: start.min(text.len()),
                    end,
                    kind: kind.clone(),
                    by_context: false,
                });
            }
        }

        fn replace(
            &self,
            span: &Span,
            _: &str,
            _: &mut Vault,
            out: &mut String,
            _: &mut Findings,
        ) -> Result<(), crate::masking::Blocked> {
            out.push_str(&format!("[{}]", span.kind.name()));
            Ok(())
        }

        fn look_behind(&self) -> usize {
            4
        }
    }

    #[test]
    fn a_masker_breaking_its_contract_masks_more_and_never_panics() {
        let masked = mask_request_body(
            &CarelessMasker,
            BodyShape::Text,
            "aé€😀bcdef".as_bytes(),
            &mut Vault::default(),
            &mut Findings::default(),
        )
        .unwrap();
        // (1,3), (1,6), (3,10) and (6,15) once widened: one value.
        assert_eq!(std::str::from_utf8(&masked).unwrap(), "a[X]");
        let masker: Arc<dyn TextMasker> = Arc::new(CarelessMasker);
        for body in ["", "é", "aé€😀bcdef and more text é€😀"] {
            let mut response =
                ResponseMasker::new(Some(masker.clone()), Vault::default(), BodyShape::Text);
            let mut out = Vec::new();
            for piece in body.as_bytes().chunks(3) {
                response
                    .push(piece, &mut out, &mut Findings::default())
                    .unwrap();
            }
            response.finish(&mut out, &mut Findings::default()).unwrap();
            assert!(std::str::from_utf8(&out).is_ok());
        }
    }

    #[test]
    fn a_text_response_streams_masked() {
        let masker: Arc<dyn TextMasker> = Arc::new(SampleMasker::new(Action::Redact));
        let mut response = ResponseMasker::new(Some(masker), Vault::default(), BodyShape::Text);
        let mut findings = Findings::default();
        let mut out = Vec::new();
        for piece in "write to bob@example.org now é".as_bytes().chunks(3) {
            response.push(piece, &mut out, &mut findings).unwrap();
        }
        response.finish(&mut out, &mut findings).unwrap();
        assert_eq!(out, "write to [EMAIL_ADDRESS] now é".as_bytes());
    }
}
