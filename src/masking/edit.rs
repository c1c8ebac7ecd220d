//! Masking and restoring one whole text: a JSON string value, or a complete text body.
//! Tokens the request's vault gave are restored first (they are the client's own
//! values) and the rest is masked; each replaced value can be reported by type, JSON
//! pointer and byte offsets, never by value.

use super::error::BodyError;
use super::json::{self, Change, Edited, Part, Selection, Site, StringEdit};
use super::recurring::Recurring;
use super::restore::{Piece, Pieces};
use super::{Findings, Kind, Partition, Span, TextMasker, Vault};

/// Where a value was found: its type, the JSON pointer of the string holding it (empty
/// for a text body) and its byte range in that string's decoded text. For tool-call
/// arguments the pointer continues into the arguments' own JSON
/// (`/messages/1/tool_calls/0/function/arguments/city`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub kind: Kind,
    pub pointer: String,
    pub start: usize,
    pub end: usize,
}

/// The values `masker` finds in `text`, made safe to slice by whatever the masker
/// returned: in order, on char boundaries (widened to them), within the text, and
/// overlapping ones merged. A masker that breaks its contract masks more, never less,
/// and never makes the proxy panic. `whole`: a request's whole text, sent by the
/// client of that partition, which the masker may have read before
/// ([`TextMasker::find_whole`]).
pub(crate) fn find_spans(
    masker: &dyn TextMasker,
    text: &str,
    whole: Option<Partition>,
    spans: &mut Vec<Span>,
) {
    match whole {
        Some(partition) => masker.find_whole(text, partition, spans),
        None => masker.find(text, spans),
    }
    let tidy = spans.windows(2).all(|pair| pair[0].end <= pair[1].start)
        && spans.iter().all(|span| {
            span.start < span.end
                && span.end <= text.len()
                && text.is_char_boundary(span.start)
                && text.is_char_boundary(span.end)
        });
    if tidy {
        return;
    }
    for span in spans.iter_mut() {
        span.end = span.end.min(text.len());
        span.start = span.start.min(span.end);
        while !text.is_char_boundary(span.start) {
            span.start -= 1;
        }
        while !text.is_char_boundary(span.end) {
            span.end += 1;
        }
    }
    spans.retain(|span| span.start < span.end);
    spans.sort_by_key(|span| span.start);
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans.drain(..) {
        match merged.last_mut() {
            Some(last) if span.start < last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    *spans = merged;
}

/// Where a text is, for the report.
#[derive(Clone, Copy)]
enum Place<'s, 'b> {
    Site(&'s Site<'b>),
    Pointer(&'s str),
    /// A form field's value, by the field's (decoded) name.
    Field(&'s [u8]),
    Body,
}

/// Edits whole texts: restores the vault's tokens when `restore`, masks with `masker`
/// when there is one.
pub struct TextEditor<'a> {
    masker: Option<&'a dyn TextMasker>,
    restore: bool,
    vault: &'a mut Vault,
    findings: &'a mut Findings,
    report: Option<&'a mut Vec<Located>>,
    spans: Vec<Span>,
    /// While the JSON inside an `arguments` string is edited: that string's pointer.
    outer_pointer: Option<String>,
    /// Values found by their context, looked for again in every text after.
    recurring: Recurring,
    /// The texts are a request's, which the next request of a chat sends again: the
    /// masker may answer them from what it found before in the same client's
    /// ([`TextMasker::find_whole`]).
    requests: Option<Partition>,
}

impl<'a> TextEditor<'a> {
    pub fn new(
        masker: Option<&'a dyn TextMasker>,
        restore: bool,
        vault: &'a mut Vault,
        findings: &'a mut Findings,
        report: Option<&'a mut Vec<Located>>,
    ) -> Self {
        TextEditor {
            masker,
            restore,
            vault,
            findings,
            report,
            spans: Vec::new(),
            outer_pointer: None,
            recurring: Recurring::default(),
            requests: None,
        }
    }

    /// An editor of the texts of a request sent by the client of `partition` (see
    /// `requests`).
    pub(crate) fn of_a_request(mut self, partition: Partition) -> Self {
        self.requests = Some(partition);
        self
    }

    /// An editor that knows `recurring`'s values from its first text on.
    pub(crate) fn knowing(mut self, recurring: Recurring) -> Self {
        self.recurring = recurring;
        self
    }

    /// The values found by their context so far, and how often each was replaced.
    pub(crate) fn into_recurring(self) -> Recurring {
        self.recurring
    }

    /// Appends the edited `text` (a JSON string at `site`, or a whole text body) to
    /// `out`; returns false (and `out` is to be ignored) when nothing changed.
    pub fn edit_text(
        &mut self,
        text: &str,
        site: Option<&Site<'_>>,
        out: &mut String,
    ) -> Result<bool, BodyError> {
        let place = match site {
            Some(site) => Place::Site(site),
            None => Place::Body,
        };
        self.edit_text_at(text, place, out)
    }

    /// [`TextEditor::edit_text`] for the value of the form field `name`: a name that
    /// says the field holds a secret (`password`, `api_key`) has its whole value masked,
    /// as a JSON member of that name.
    pub fn edit_field(
        &mut self,
        name: &[u8],
        text: &str,
        out: &mut String,
    ) -> Result<bool, BodyError> {
        self.edit_text_at(text, Place::Field(name), out)
    }

    fn edit_text_at(
        &mut self,
        text: &str,
        site: Place<'_, '_>,
        out: &mut String,
    ) -> Result<bool, BodyError> {
        if !(self.restore && !self.vault.is_empty() && text.contains('<')) {
            return self.mask_run(text, 0, true, site, out, None);
        }
        let mut changed = false;
        // The vault is only read while the pieces are listed.
        let pieces: Vec<(bool, usize, usize, String)> = Pieces::new(text, self.vault)
            .map(|piece| match piece {
                Piece::Plain { text, at } => (false, at, at + text.len(), String::new()),
                Piece::Original { value, at, len } => (true, at, at + len, value.to_string()),
            })
            .collect();
        for (original, start, end, value) in pieces {
            if original {
                out.push_str(&value);
                changed = true;
            } else {
                let mut masked = String::new();
                if self.mask_run(&text[start..end], start, false, site, &mut masked, None)? {
                    out.push_str(&masked);
                    changed = true;
                } else {
                    out.push_str(&text[start..end]);
                }
            }
        }
        Ok(changed)
    }

    /// Masks `text` (which starts at byte `offset` of the string at `site`, and is all
    /// of it when `whole`). With `changes`, only the replacements go to `out`, each
    /// listed in `changes`.
    fn mask_run(
        &mut self,
        text: &str,
        offset: usize,
        whole: bool,
        site: Place<'_, '_>,
        out: &mut String,
        mut changes: Option<&mut Vec<Change>>,
    ) -> Result<bool, BodyError> {
        let Some(masker) = self.masker else {
            return Ok(false);
        };
        let mut spans = std::mem::take(&mut self.spans);
        spans.clear();
        // A request's string may come again in the next request (a conversation's
        // earlier turns); an answer's or a piece's rarely does.
        find_spans(masker, text, self.requests.filter(|_| whole), &mut spans);
        // A member whose key names a secret: its whole string is the value.
        let key = match site {
            Place::Site(site) => site.member_key(),
            Place::Field(name) => Some(name),
            Place::Pointer(_) | Place::Body => None,
        };
        if whole
            && let Some(key) = key
            && let Some(span) = masker.find_named(key, text)
        {
            spans.clear();
            spans.push(span);
        }
        self.recurring.extend(text, &mut spans);
        let mut result = Ok(!spans.is_empty());
        let mut at = 0;
        // Every value of one string has the same pointer: built once, not per value.
        let mut pointer: Option<String> = None;
        for span in &spans {
            let new = out.len();
            if changes.is_none() {
                out.push_str(&text[at..span.start]);
            }
            if let Err(blocked) = masker.replace(
                span,
                &text[span.start..span.end],
                self.vault,
                out,
                self.findings,
            ) {
                result = Err(BodyError::Blocked(blocked));
                break;
            }
            if self.report.is_some() {
                let pointer = pointer.get_or_insert_with(|| self.pointer(site)).clone();
                if let Some(report) = self.report.as_deref_mut() {
                    report.push(Located {
                        kind: span.kind.clone(),
                        pointer,
                        start: offset + span.start,
                        end: offset + span.end,
                    });
                }
            }
            if let Some(changes) = changes.as_deref_mut() {
                changes.push(Change {
                    start: span.start,
                    end: span.end,
                    new: new..out.len(),
                });
            }
            at = span.end;
        }
        if result.is_ok() && changes.is_none() {
            out.push_str(&text[at..]);
        }
        self.spans = spans;
        result
    }

    /// Masks the texts of adjacent content parts as one text, so that a value split
    /// between two parts is found: a value is replaced in the part where it starts, and
    /// the parts it reaches into lose what it covers there. With pseudonyms to restore
    /// (a response), each part is edited on its own.
    pub fn mask_parts(
        &mut self,
        parts: &[Part<'_>],
        outs: &mut [String],
    ) -> Result<Vec<bool>, BodyError> {
        let restoring = self.restore && !self.vault.is_empty();
        let Some(masker) = self.masker.filter(|_| parts.len() > 1 && !restoring) else {
            let mut changed = Vec::with_capacity(parts.len());
            for (part, out) in parts.iter().zip(outs.iter_mut()) {
                changed.push(self.edit_part_alone(part, out)?);
            }
            return Ok(changed);
        };
        let mut joined = String::new();
        let mut bounds = Vec::with_capacity(parts.len());
        for part in parts {
            let start = joined.len();
            joined.push_str(part.text);
            bounds.push((start, joined.len()));
        }
        let mut spans = std::mem::take(&mut self.spans);
        spans.clear();
        find_spans(masker, &joined, self.requests, &mut spans);
        self.recurring.extend(&joined, &mut spans);
        let mut changed = vec![false; parts.len()];
        let copy = |outs: &mut [String], from: usize, to: usize| {
            for (out, (start, end)) in outs.iter_mut().zip(&bounds) {
                if from.max(*start) < to.min(*end) {
                    out.push_str(&joined[from.max(*start)..to.min(*end)]);
                }
            }
        };
        let mut at = 0;
        let mut result = Ok(());
        for span in &spans {
            copy(outs, at, span.start);
            let part = bounds
                .iter()
                .position(|(start, end)| span.start >= *start && span.start < *end)
                .unwrap_or(0);
            if let Err(blocked) = masker.replace(
                span,
                &joined[span.start..span.end],
                self.vault,
                &mut outs[part],
                self.findings,
            ) {
                result = Err(BodyError::Blocked(blocked));
                break;
            }
            for (changed, (start, end)) in changed.iter_mut().zip(&bounds) {
                *changed |= span.start < *end && span.end > *start;
            }
            let (part_start, part_end) = bounds[part];
            if let Some(report) = self.report.as_deref_mut() {
                report.push(Located {
                    kind: span.kind.clone(),
                    pointer: format!(
                        "{}{}",
                        self.outer_pointer.as_deref().unwrap_or(""),
                        parts[part].pointer
                    ),
                    start: span.start - part_start,
                    end: span.end.min(part_end) - part_start,
                });
            }
            at = span.end;
        }
        if result.is_ok() {
            copy(outs, at, joined.len());
        }
        self.spans = spans;
        result.map(|()| changed)
    }

    pub fn edit_part_alone(
        &mut self,
        part: &Part<'_>,
        out: &mut String,
    ) -> Result<bool, BodyError> {
        self.edit_text_at(part.text, Place::Pointer(part.pointer), out)
    }

    fn pointer(&self, place: Place<'_, '_>) -> String {
        let inner = match place {
            Place::Site(site) => site.pointer(),
            Place::Pointer(pointer) => pointer.to_string(),
            Place::Field(_) | Place::Body => String::new(),
        };
        match &self.outer_pointer {
            Some(outer) => format!("{outer}{inner}"),
            None => inner,
        }
    }
}

impl StringEdit for TextEditor<'_> {
    fn edit(&mut self, site: &Site<'_>, text: &str, out: &mut String) -> Result<bool, BodyError> {
        // Tool-call arguments are JSON in a string: their strings are edited so that
        // they stay parseable (a restored value may hold quotes). Arguments that are
        // not JSON are edited as text.
        if site.arguments && self.outer_pointer.is_none() && json::is_valid(text.as_bytes()) {
            self.outer_pointer = Some(if self.report.is_some() {
                site.pointer()
            } else {
                String::new()
            });
            let mut inner = Vec::new();
            let result = json::rewrite(text.as_bytes(), Selection::ArgumentsJson, self, &mut inner);
            self.outer_pointer = None;
            let changed = result?;
            if changed {
                // Valid UTF-8: the input was, and the encoder writes UTF-8.
                out.push_str(&String::from_utf8_lossy(&inner));
            }
            return Ok(changed);
        }
        self.edit_text(text, Some(site), out)
    }

    fn edit_parts(
        &mut self,
        parts: &[Part<'_>],
        outs: &mut [String],
    ) -> Result<Vec<bool>, BodyError> {
        self.mask_parts(parts, outs)
    }

    fn needs_pointers(&self) -> bool {
        self.report.is_some()
    }

    /// A number in tool-call arguments, read as a form writes it: `key: number`, so
    /// that the key tells its type as a label does (`"ssn": 123456789`, `"phone":
    /// 4155552671`); taken when a value is the whole number.
    fn edit_number(
        &mut self,
        site: &Site<'_>,
        digits: &str,
        out: &mut String,
    ) -> Result<bool, BodyError> {
        let Some(masker) = self.masker else {
            return Ok(false);
        };
        let mut text = String::with_capacity(digits.len() + 32);
        if let Some(key) = site.member_key() {
            json::decode_into(key, &mut text);
            text.push_str(": ");
        }
        let offset = text.len();
        text.push_str(digits);
        let mut spans = std::mem::take(&mut self.spans);
        spans.clear();
        find_spans(masker, &text, None, &mut spans);
        let whole = spans
            .iter()
            .find(|span| span.start == offset && span.end == text.len())
            .map(|span| Span {
                start: 0,
                end: digits.len(),
                ..span.clone()
            });
        self.spans = spans;
        let Some(span) = whole else {
            return Ok(false);
        };
        let from = out.len();
        masker
            .replace(&span, digits, self.vault, out, self.findings)
            .map_err(BodyError::Blocked)?;
        if self.report.is_some() {
            let pointer = self.pointer(Place::Site(site));
            if let Some(report) = self.report.as_deref_mut() {
                report.push(Located {
                    kind: span.kind,
                    pointer,
                    start: 0,
                    end: digits.len(),
                });
            }
        }
        // `log` counts the value and writes it as it was: the number stays a number.
        Ok(&out[from..] != digits)
    }

    fn edit_changes(
        &mut self,
        site: &Site<'_>,
        text: &str,
        out: &mut String,
        changes: &mut Vec<Change>,
    ) -> Result<Edited, BodyError> {
        // Arguments and restored pseudonyms are edited whole; a plain mask is told as
        // the values it replaced.
        let whole = (site.arguments && self.outer_pointer.is_none())
            || (self.restore && !self.vault.is_empty() && text.contains('<'));
        if whole {
            return Ok(if self.edit(site, text, out)? {
                Edited::Whole
            } else {
                Edited::Kept
            });
        }
        Ok(
            if self.mask_run(text, 0, true, Place::Site(site), out, Some(changes))? {
                Edited::Changes
            } else {
                Edited::Kept
            },
        )
    }
}
