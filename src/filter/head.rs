//! Engine-neutral request and response heads for the policies: a read-only view of the
//! request as the client sent it (after entry normalisation), and the header changes a
//! policy asks for, which each engine applies when it renders the head it sends.

use http::{HeaderMap, HeaderName, HeaderValue, Method, request};
use smallvec::SmallVec;

use crate::telemetry::trace::X_REQUEST_ID;

/// What routing reads of a request: hyper's parsed head, or the HTTP/1.1 fast path's
/// view of its receive buffer (which builds no header map).
pub trait RouteInput {
    fn method(&self) -> &Method;
    fn path(&self) -> &str;
    fn has_header(&self, name: &HeaderName) -> bool;
    /// Whether some line of header `name` has exactly `value`.
    fn header_equals(&self, name: &HeaderName, value: &HeaderValue) -> bool;
}

impl RouteInput for request::Parts {
    fn method(&self) -> &Method {
        &self.method
    }

    fn path(&self) -> &str {
        self.uri.path()
    }

    fn has_header(&self, name: &HeaderName) -> bool {
        self.headers.contains_key(name)
    }

    fn header_equals(&self, name: &HeaderName, value: &HeaderValue) -> bool {
        self.headers.get_all(name).iter().any(|v| v == value)
    }
}

/// What a policy may read of a request head, whatever engine parsed it. Junction's own
/// control headers (`x-junction-tag`) and hop-by-hop headers are not part of it.
/// Its method and path come from [`RouteInput`], what routing reads.
pub trait RequestView: RouteInput {
    /// The first line of header `name`.
    fn first(&self, name: &HeaderName) -> Option<&[u8]>;
    /// Calls `found` with each line of header `name`, in order, until it returns true;
    /// returns whether it did.
    fn any_value<'s>(&'s self, name: &HeaderName, found: &mut dyn FnMut(&'s [u8]) -> bool) -> bool;
    /// Header lines the client sent.
    fn header_count(&self) -> usize;
    /// Bytes of the client's header lines, counted as `name: value\r\n` plus two.
    fn header_bytes(&self) -> usize;
    /// The request target: path and query.
    fn target(&self) -> &[u8];
    /// Calls `each` with every header line the client sent, in order (for records).
    fn each_header(&self, each: &mut dyn FnMut(&[u8], &[u8]));
}

/// A header value readable as text, as `HeaderValue::to_str` has it (visible ASCII and
/// tabs), for policies that read a value as a string on either engine.
pub fn header_text(value: &[u8]) -> Option<&str> {
    let readable = value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    readable.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// Hyper's view: the head after entry normalisation (hop-by-hop and `x-junction-tag`
/// lines are already gone). The request id the proxy may have
/// added is not the client's and is not counted.
pub struct PartsView<'a> {
    pub head: &'a request::Parts,
    /// The proxy added `x-request-id` (the client sent none).
    pub added_request_id: bool,
}

impl PartsView<'_> {
    fn counts(&self, name: &HeaderName) -> bool {
        !(self.added_request_id && name == X_REQUEST_ID)
    }
}

impl RouteInput for PartsView<'_> {
    fn method(&self) -> &Method {
        &self.head.method
    }

    fn path(&self) -> &str {
        self.head.uri.path()
    }

    fn has_header(&self, name: &HeaderName) -> bool {
        self.first(name).is_some()
    }

    fn header_equals(&self, name: &HeaderName, value: &HeaderValue) -> bool {
        self.any_value(name, &mut |v| v == value.as_bytes())
    }
}

impl RequestView for PartsView<'_> {
    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.counts(name)
            .then(|| self.head.headers.get(name).map(HeaderValue::as_bytes))
            .flatten()
    }

    fn any_value<'s>(&'s self, name: &HeaderName, found: &mut dyn FnMut(&'s [u8]) -> bool) -> bool {
        self.counts(name)
            && self
                .head
                .headers
                .get_all(name)
                .iter()
                .any(|value| found(value.as_bytes()))
    }

    fn header_count(&self) -> usize {
        self.head
            .headers
            .iter()
            .filter(|(name, _)| self.counts(name))
            .count()
    }

    fn header_bytes(&self) -> usize {
        self.head
            .headers
            .iter()
            .filter(|(name, _)| self.counts(name))
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum()
    }

    fn target(&self) -> &[u8] {
        let uri = &self.head.uri;
        uri.path_and_query()
            .map_or(uri.path(), |pq| pq.as_str())
            .as_bytes()
    }

    fn each_header(&self, each: &mut dyn FnMut(&[u8], &[u8])) {
        for (name, value) in &self.head.headers {
            if self.counts(name) {
                each(name.as_str().as_bytes(), value.as_bytes());
            }
        }
    }
}

/// `x-junction-tag`: Junction's word to the endpoint (header rules' `tag`); a client's own
/// is never passed on.
pub static X_JUNCTION_TAG: HeaderName = HeaderName::from_static("x-junction-tag");

/// One of the program's own header names (the rate limits' `x-ratelimit-*`), in a
/// `static` with its line's start (`name: `) made at compile time: an edit under it
/// costs no clone and no drop of the name, and the HTTP/1.1 engine writes its line's
/// start as one copy of fixed size.
#[derive(Debug)]
pub struct StaticName {
    name: HeaderName,
    opening: [u8; StaticName::SIZE],
    len: usize,
}

impl StaticName {
    const SIZE: usize = 48;

    /// Fails to compile for a name that is not a valid lowercase header name, or one
    /// longer than `SIZE - 2` bytes.
    pub const fn new(name: &'static str) -> StaticName {
        let text = name.as_bytes();
        assert!(text.len() + 2 <= StaticName::SIZE);
        let mut opening = [b' '; StaticName::SIZE];
        let mut at = 0;
        while at < text.len() {
            opening[at] = text[at];
            at += 1;
        }
        opening[at] = b':';
        StaticName {
            name: HeaderName::from_static(name),
            opening,
            len: text.len() + 2,
        }
    }

    pub fn name(&self) -> &HeaderName {
        &self.name
    }
}

/// The name of an edited header: one of the program's own, or any other.
#[derive(Debug, Clone)]
enum EditName {
    Static(&'static StaticName),
    Owned(HeaderName),
}

impl std::ops::Deref for EditName {
    type Target = HeaderName;

    fn deref(&self) -> &HeaderName {
        match self {
            EditName::Static(name) => &name.name,
            EditName::Owned(name) => name,
        }
    }
}

/// One change to a head.
#[derive(Debug, Clone)]
enum Edit {
    Remove,
    Set(EditValue),
    Append(EditValue),
}

/// A value to set: a `HeaderValue`, or a short one kept inline, which costs no
/// allocation on the HTTP/1.1 engine (the rate limits' three headers on every answer).
#[derive(Debug, Clone)]
enum EditValue {
    Header(HeaderValue),
    Inline { len: u8, bytes: [u8; INLINE] },
}

/// Longest inline value: a `u64`'s 20 digits and a few more (the size of a
/// `HeaderValue`, so that inline values do not make an edit larger).
const INLINE: usize = 32;

impl EditValue {
    fn as_bytes(&self) -> &[u8] {
        match self {
            EditValue::Header(value) => value.as_bytes(),
            EditValue::Inline { len, bytes } => &bytes[..usize::from(*len)],
        }
    }

    /// A value of at most `INLINE` visible ASCII bytes (or tabs), copied into a block
    /// padded with spaces and checked whole: a test over a block of fixed size compiles
    /// to a few vector compares, where a loop over the value's bytes cost ten
    /// instructions a byte (three such values on every answer of a rate-limited route).
    fn inline(value: &[u8]) -> Option<EditValue> {
        if value.len() > INLINE {
            return None;
        }
        let mut bytes = [b' '; INLINE];
        bytes[..value.len()].copy_from_slice(value);
        let refused = bytes.iter().fold(0u8, |any, &byte| {
            any | u8::from(byte != b'\t' && !(b' '..=b'~').contains(&byte))
        });
        (refused == 0).then_some(EditValue::Inline {
            len: value.len() as u8,
            bytes,
        })
    }

    fn short(value: ShortValue) -> EditValue {
        EditValue::Inline {
            len: value.len,
            bytes: value.bytes,
        }
    }

    fn to_header(&self) -> HeaderValue {
        match self {
            EditValue::Header(value) => value.clone(),
            // Checked visible ASCII when made, so this cannot fail.
            EditValue::Inline { .. } => HeaderValue::from_bytes(self.as_bytes())
                .unwrap_or_else(|_| HeaderValue::from_static("")),
        }
    }
}

/// A short header value made on the request path from digits and fixed text (the rate
/// limits' `x-ratelimit-*` values on every answer): valid by construction, so an edit
/// keeps it inline with no check and no allocation. Text past [`INLINE`] bytes is cut.
#[derive(Debug, Clone, Copy)]
pub struct ShortValue {
    bytes: [u8; INLINE],
    len: u8,
}

impl Default for ShortValue {
    fn default() -> Self {
        ShortValue::new()
    }
}

impl ShortValue {
    pub const fn new() -> Self {
        ShortValue {
            bytes: [b' '; INLINE],
            len: 0,
        }
    }

    /// Appends the decimal digits of `value`.
    #[inline]
    pub fn number(&mut self, value: u64) {
        let (digits, len) = crate::decimal::Digits::block(value);
        let at = usize::from(self.len);
        match self.bytes.get_mut(at..at + digits.len()) {
            // A copy of fixed size; the bytes past `len` are not part of the value.
            Some(room) => {
                room.copy_from_slice(&digits);
                self.len = (at + len) as u8;
            }
            None => self.push(&digits[..len]),
        }
    }

    /// Appends fixed text; anything but visible ASCII is left out, as a header value
    /// could not carry it.
    pub fn text(&mut self, part: &'static str) {
        if part.bytes().all(|byte| (b' '..=b'~').contains(&byte)) {
            self.push(part.as_bytes());
        }
    }

    fn push(&mut self, part: &[u8]) {
        let at = usize::from(self.len);
        let end = (at + part.len()).min(INLINE);
        self.bytes[at..end].copy_from_slice(&part[..end - at]);
        self.len = end as u8;
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Header changes the policies ask for, in the order they asked. Both engines apply
/// them with the same meaning: a header's lines from the source stay unless it was
/// removed or set; then the values set or appended follow, in order.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    /// Inline for the common few (a rate limit sets three response headers).
    edits: SmallVec<[(EditName, Edit); 3]>,
}

impl HeaderEdits {
    pub const fn new() -> Self {
        HeaderEdits {
            edits: SmallVec::new_const(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    pub fn remove(&mut self, name: &HeaderName) {
        self.edits
            .push((EditName::Owned(name.clone()), Edit::Remove));
    }

    pub fn set(&mut self, name: &HeaderName, value: HeaderValue) {
        self.edits.push((
            EditName::Owned(name.clone()),
            Edit::Set(EditValue::Header(value)),
        ));
    }

    /// `set`, for a short value made on the request path (digits, a duration): kept
    /// inline when it fits, so that it costs no allocation. A value with bytes a header
    /// may not carry is refused, as `HeaderValue::from_bytes` refuses it.
    pub fn set_bytes(&mut self, name: &HeaderName, value: &[u8]) {
        let edit = match EditValue::inline(value) {
            Some(inline) => inline,
            None => match HeaderValue::from_bytes(value) {
                Ok(value) => EditValue::Header(value),
                Err(_) => return,
            },
        };
        self.edits
            .push((EditName::Owned(name.clone()), Edit::Set(edit)));
    }

    /// `set`, for one of the program's own header names and a value made from digits
    /// and fixed text: no clone of the name, no check of the value.
    pub fn set_short(&mut self, name: &'static StaticName, value: ShortValue) {
        self.edits
            .push((EditName::Static(name), Edit::Set(EditValue::short(value))));
    }

    pub fn append(&mut self, name: &HeaderName, value: HeaderValue) {
        self.edits.push((
            EditName::Owned(name.clone()),
            Edit::Append(EditValue::Header(value)),
        ));
    }

    /// Whether the source's lines named `name` (any case) stay.
    pub fn keeps(&self, name: &[u8]) -> bool {
        let mut keeps = true;
        for (edited, edit) in &self.edits {
            if edited.as_str().as_bytes().eq_ignore_ascii_case(name) {
                keeps &= matches!(edit, Edit::Append(_));
            }
        }
        keeps
    }

    /// Whether edit `at` still stands: no later edit removes or sets its name.
    fn stands(&self, at: usize) -> bool {
        let name = &self.edits[at].0;
        !self.edits[at + 1..]
            .iter()
            .any(|(later, edit)| **later == **name && !matches!(edit, Edit::Append(_)))
    }

    /// The values the edits add that still stand, in the order asked.
    fn added(&self) -> impl Iterator<Item = (&EditName, &EditValue)> {
        self.edits
            .iter()
            .enumerate()
            .filter_map(|(at, (name, edit))| match edit {
                Edit::Set(value) | Edit::Append(value) if self.stands(at) => Some((name, value)),
                _ => None,
            })
    }

    /// Applies the edits to a header map, in order (the hyper engine's rendering).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, edit) in &self.edits {
            match edit {
                Edit::Remove => {
                    headers.remove(&**name);
                }
                Edit::Set(value) => {
                    headers.insert((**name).clone(), value.to_header());
                }
                Edit::Append(value) => {
                    headers.append((**name).clone(), value.to_header());
                }
            }
        }
    }

    /// Writes the lines the edits add, as `name: value\r\n` (the HTTP/1.1 engine's
    /// rendering; it leaves out the source lines `keeps` refuses). Together they mean
    /// what `apply` does.
    pub fn write_added(&self, out: &mut Vec<u8>) {
        for (name, value) in self.added() {
            match name {
                // `name: ` as one copy of fixed size, of which `len` bytes stay.
                EditName::Static(name) => {
                    let end = out.len() + name.len;
                    out.extend_from_slice(&name.opening);
                    out.truncate(end);
                }
                EditName::Owned(name) => {
                    out.extend_from_slice(name.as_str().as_bytes());
                    out.extend_from_slice(b": ");
                }
            }
            match value {
                // `value\r\n` as one copy of fixed size, of which `len + 2` bytes stay.
                EditValue::Inline { len, bytes } => {
                    let len = usize::from(*len).min(INLINE);
                    let mut line = [0u8; INLINE + 2];
                    line[..INLINE].copy_from_slice(bytes);
                    line[len..len + 2].copy_from_slice(b"\r\n");
                    let end = out.len() + len + 2;
                    out.extend_from_slice(&line);
                    out.truncate(end);
                }
                EditValue::Header(value) => {
                    out.extend_from_slice(value.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }

    /// Whether the edits remove or replace any header (rather than only add lines)
    /// whose name `may_be_there` allows.
    pub fn replaces_any(&self, may_be_there: impl Fn(&[u8]) -> bool) -> bool {
        self.edits.iter().any(|(name, edit)| {
            !matches!(edit, Edit::Append(_)) && may_be_there(name.as_str().as_bytes())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_hold_digits_and_text() {
        let mut value = ShortValue::new();
        value.number(u64::MAX);
        value.text("m");
        value.number(0);
        value.text("s");
        assert_eq!(value.as_bytes(), b"18446744073709551615m0s");
        value.number(u64::MAX);
        assert_eq!(value.as_bytes().len(), INLINE, "cut at its size");
        assert!(
            value
                .as_bytes()
                .starts_with(b"18446744073709551615m0s184467440")
        );
    }

    fn name(text: &'static str) -> HeaderName {
        HeaderName::from_static(text)
    }

    /// `write_added`, with its copies of fixed size, against the lines written one by
    /// one in the order `added` gives them: many static lines in a row, and an owned
    /// one between them.
    #[test]
    fn added_lines_come_out_in_order_however_many() {
        static NAMES: [StaticName; 8] = [
            StaticName::new("x-ratelimit-limit-requests-long-name-0"),
            StaticName::new("x-ratelimit-limit-requests-long-name-1"),
            StaticName::new("x-ratelimit-limit-requests-long-name-2"),
            StaticName::new("x-ratelimit-limit-requests-long-name-3"),
            StaticName::new("x-ratelimit-limit-requests-long-name-4"),
            StaticName::new("x-ratelimit-limit-requests-long-name-5"),
            StaticName::new("x-ratelimit-limit-requests-long-name-6"),
            StaticName::new("x-ratelimit-limit-requests-long-name-7"),
        ];
        let mut edits = HeaderEdits::default();
        for (at, static_name) in NAMES.iter().enumerate() {
            let mut value = ShortValue::new();
            value.number(u64::MAX - at as u64);
            value.text("ms");
            edits.set_short(static_name, value);
        }
        edits.append(&name("x-between"), HeaderValue::from_static("b"));
        edits.set_short(&NAMES[0], ShortValue::new());
        let mut expected = Vec::new();
        for (name, value) in edits.added() {
            expected.extend_from_slice(name.as_str().as_bytes());
            expected.extend_from_slice(b": ");
            expected.extend_from_slice(value.as_bytes());
            expected.extend_from_slice(b"\r\n");
        }
        assert!(
            expected.len() > 500,
            "lines enough to outgrow any buffer of a few"
        );
        let mut written = b"HTTP/1.1 200 OK\r\n".to_vec();
        edits.write_added(&mut written);
        assert_eq!(
            String::from_utf8_lossy(&written[17..]),
            String::from_utf8_lossy(&expected)
        );
        let text = String::from_utf8_lossy(&expected).into_owned();
        let names: Vec<&str> = text.lines().map(|l| l.split(':').next().unwrap()).collect();
        let mut order: Vec<String> = (1..8)
            .map(|n| format!("x-ratelimit-limit-requests-long-name-{n}"))
            .collect();
        order.push("x-between".into());
        order.push("x-ratelimit-limit-requests-long-name-0".into());
        assert_eq!(names, order, "{text}");
    }

    #[test]
    fn both_renderings_agree() {
        let mut edits = HeaderEdits::default();
        edits.append(&name("x-tag"), HeaderValue::from_static("a"));
        edits.set(&name("x-set"), HeaderValue::from_static("s"));
        edits.remove(&name("x-gone"));
        edits.append(&name("x-tag"), HeaderValue::from_static("b"));
        edits.remove(&name("x-late"));
        edits.append(&name("x-late"), HeaderValue::from_static("l"));
        edits.set_bytes(&name("x-inline"), b"42");
        edits.set_bytes(&name("x-long"), &[b'7'; 40]);
        edits.set_bytes(&name("x-bad"), b"a\nb");
        static SHORT: StaticName = StaticName::new("x-short");
        let mut short = ShortValue::new();
        short.number(12);
        short.text(".5s");
        short.text("\n");
        edits.set_short(&SHORT, short);

        let mut map = HeaderMap::new();
        for (k, v) in [
            ("x-tag", "client"),
            ("x-set", "old"),
            ("x-gone", "1"),
            ("x-late", "old"),
            ("other", "o"),
        ] {
            map.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let mut lines = Vec::new();
        for (k, v) in &map {
            if edits.keeps(k.as_str().as_bytes()) {
                lines.push(format!("{k}: {}", v.to_str().unwrap()));
            }
        }
        let mut added = Vec::new();
        edits.write_added(&mut added);
        lines.extend(
            String::from_utf8(added)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
        edits.apply(&mut map);
        let mut from_map: Vec<String> = map
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        lines.sort();
        from_map.sort();
        assert_eq!(lines, from_map);
        assert!(lines.contains(&"x-tag: client".to_string()));
        assert!(lines.contains(&"x-tag: b".to_string()));
        assert!(lines.contains(&"x-set: s".to_string()));
        assert!(!lines.iter().any(|l| l.starts_with("x-gone")));
        assert!(lines.contains(&"x-late: l".to_string()));
        assert!(lines.contains(&"x-inline: 42".to_string()));
        assert!(lines.contains(&"x-short: 12.5s".to_string()));
        assert!(lines.contains(&format!("x-long: {}", "7".repeat(40))));
        assert!(
            !lines.iter().any(|l| l.starts_with("x-bad")),
            "refused, as HeaderValue refuses it"
        );
        assert!(!lines.contains(&"x-late: old".to_string()));
        assert!(edits.keeps(b"X-TAG") && !edits.keeps(b"X-Set"));
    }
}
