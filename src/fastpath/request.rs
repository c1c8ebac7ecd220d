//! A client's request head as the fast path sees it: parsed (plain heads in one pass,
//! others by `httparse`) into offsets of the receive buffer (no header map, no copies),
//! each line sorted once by what the proxy does with it, then written out for the
//! endpoint with the proxy's changes made on the way (hop-by-hop headers out,
//! `X-Forwarded-*`, `Via`, request id, trace).

use std::borrow::Cow;

use http::{HeaderName, HeaderValue, Method};

use super::known_name::KnownName;
use super::known_name::names::{
    CHUNKED, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, FORWARDED, HOST, KEEP_ALIVE,
    PROXY_CONNECTION, TE, TRACEPARENT, TRAILERS, TRANSFER_ENCODING, UPGRADE, USER_AGENT, VIA,
    X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_JUNCTION_ADMIN_TOKEN, X_JUNCTION_TAG,
    X_JUNCTION_VERSION, X_REAL_IP, X_REQUEST_ID,
};
use super::plain_head;
use crate::decimal::{Digits, parse_length};
use crate::normalize::{self, ConnectionTokens};
use crate::pipeline::{HeaderEdits, RequestView};
use crate::routing::RouteInput;

/// Header lines parsed; a request with more goes to hyper (which allows 100).
const MAX_HEADERS: usize = 64;
/// Longest request target taken (`http::Uri` refuses longer ones).
const MAX_TARGET: usize = u16::MAX as usize - 1;

/// What the proxy does with a header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Passed on unchanged.
    Pass,
    /// Not passed on: hop-by-hop, or Junction's own control headers.
    Drop,
    Host,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    Via,
    RequestId,
    Traceparent,
    /// `x-junction-tag`: dropped, and hidden from routing (a client must not set it).
    Tag,
    /// `Forwarded`, `X-Real-IP`: passed on from trusted proxies only.
    ForwardedClaim,
    /// `x-junction-version`, `x-junction-admin-token`: read by the split, never forwarded.
    Control,
}

#[derive(Debug, Clone, Copy)]
pub struct Line {
    pub name: (usize, usize),
    pub value: (usize, usize),
    pub kind: Kind,
}

/// Offsets are into the receive buffer's unused bytes, which start with this head.
pub struct RequestHead {
    /// Bytes of the head, blank line included.
    pub len: usize,
    pub method: Method,
    target: (usize, usize),
    path_end: usize,
    pub lines: Vec<Line>,
    /// The body's length: its `Content-Length`, or for a chunked body the length of its
    /// data once read ([`RequestHead::set_chunked_body`]).
    pub content_length: u64,
    /// `Transfer-Encoding: chunked`: the body is read whole and its data sent on with
    /// its length, without the client's chunk extensions or trailer fields, as the
    /// full path sends a body it buffered.
    pub chunked: bool,
    /// Bytes of the body on the wire, framing included, that are in the receive buffer
    /// once the request is done.
    pub wire_body_len: usize,
    /// The body was not read before routing (it is longer than this engine holds): it
    /// streams to the endpoint, or the connection goes to hyper.
    pub unread_body: bool,
    /// The client asked to close the connection after this exchange.
    pub close: bool,
    host: Option<usize>,
    request_id: Option<usize>,
    traceparent: Option<usize>,
    content_type: Option<usize>,
    user_agent: Option<usize>,
    has_forwarded_proto: bool,
    has_forwarded_host: bool,
}

pub enum Parsed {
    Complete,
    /// More bytes are needed.
    Partial,
    /// Not for the fast path (or not valid): hyper takes the connection from here.
    HandOff,
}

impl Default for RequestHead {
    fn default() -> Self {
        RequestHead {
            lines: Vec::with_capacity(16),
            ..RequestHead::EMPTY
        }
    }
}

impl RequestHead {
    /// A head with no lines and nothing allocated: what each request on a connection
    /// starts from, keeping the lines' vector of the one before.
    const EMPTY: RequestHead = RequestHead {
        len: 0,
        method: Method::GET,
        target: (0, 0),
        path_end: 0,
        lines: Vec::new(),
        content_length: 0,
        chunked: false,
        wire_body_len: 0,
        unread_body: false,
        close: false,
        host: None,
        request_id: None,
        traceparent: None,
        content_type: None,
        user_agent: None,
        has_forwarded_proto: false,
        has_forwarded_host: false,
    };
}

/// What the proxy adds to a request on its way to an endpoint.
pub struct Forwarding<'a> {
    /// The client's address.
    pub peer: &'a [u8],
    /// `X-Forwarded-Proto`: how the client reached Junction (`http` or `https`).
    pub proto: &'a [u8],
    /// The client is a trusted proxy: its `X-Forwarded-*` are kept and extended.
    pub trusted: bool,
    /// `Host` to send instead of the client's (`rewrite_host`).
    pub host_override: Option<&'a [u8]>,
    /// A request id made by the proxy (the client sent no usable one).
    pub new_request_id: Option<&'a [u8]>,
    /// The `traceparent` to send, when the client sent a valid one.
    pub traceparent: Option<&'a [u8]>,
    /// What the route's policies change.
    pub edits: &'a HeaderEdits,
    /// How the body sent is framed.
    pub body: SentBody,
    /// The request target to send instead of the client's (a pool's `api`
    /// translation: `/v1/chat/completions` as `/v1/messages`).
    pub target: Option<&'a [u8]>,
}

/// The framing of the body sent to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentBody {
    /// The client's `Content-Length` (or none), as it came.
    AsReceived,
    /// A body held whole and sent anew (masked, or read from chunks): its length, and
    /// none of the client's framing lines.
    Length(u64),
    /// An empty body read from chunks: no framing line at all, as hyper's client sends
    /// an empty body.
    Empty,
}

fn offsets(buf: &[u8], part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    (start, start + part.len())
}

fn slice(buf: &[u8], (start, end): (usize, usize)) -> &[u8] {
    &buf[start..end]
}

/// A line that frames the body (`Content-Length`, `Transfer-Encoding`): the client's go
/// where the body is sent with a framing of its own.
fn is_framing(name: &[u8]) -> bool {
    CONTENT_LENGTH.matches(name) || TRANSFER_ENCODING.matches(name)
}

fn classify(name: &[u8]) -> Kind {
    // After a dispatch on the length, one compare of words per name (`KnownName`).
    let is = |known: KnownName| known.matches_same_length(name);
    match name.len() {
        2 if is(TE) => Kind::Drop, // re-checked for `trailers` below
        3 if is(VIA) => Kind::Via,
        4 if is(HOST) => Kind::Host,
        9 if is(FORWARDED) || is(X_REAL_IP) => Kind::ForwardedClaim,
        10 if is(KEEP_ALIVE) || is(CONNECTION) => Kind::Drop,
        11 if is(TRACEPARENT) => Kind::Traceparent,
        12 if is(X_REQUEST_ID) => Kind::RequestId,
        14 if is(X_JUNCTION_TAG) => Kind::Tag,
        15 if is(X_FORWARDED_FOR) => Kind::XForwardedFor,
        16 if is(PROXY_CONNECTION) => Kind::Drop,
        16 if is(X_FORWARDED_HOST) => Kind::XForwardedHost,
        17 if is(X_FORWARDED_PROTO) => Kind::XForwardedProto,
        18 if is(X_JUNCTION_VERSION) => Kind::Control,
        22 if is(X_JUNCTION_ADMIN_TOKEN) => Kind::Control,
        _ => Kind::Pass,
    }
}

impl RequestHead {
    /// Parses the head at the start of `buf`.
    pub fn parse(&mut self, buf: &[u8]) -> Parsed {
        // A plain head in one pass; any other is httparse's, which reads the plain
        // ones the same (`plain_head`'s tests and the `request_head` fuzz target).
        let mut headers = plain_head::Lines::new();
        let head = match plain_head::read_request(buf, &mut headers) {
            Some(head) => HeadStart {
                len: head.len,
                version: head.version,
                method: &buf[head.method.0..head.method.1],
                target: &buf[head.target.0..head.target.1],
            },
            None => match httparse_head(buf, &mut headers) {
                Ok(head) => head,
                Err(parsed) => return parsed,
            },
        };
        let HeadStart {
            len,
            version,
            method,
            target,
        } = head;
        // HTTP/1.0 (keep-alive rules, no chunking) is left to hyper.
        if version != 1 {
            return Parsed::HandOff;
        }
        if !is_plain_target(target) || method == b"CONNECT" {
            return Parsed::HandOff;
        }
        // ASCII: `is_plain_target` took it.
        let Ok(target) = std::str::from_utf8(target) else {
            return Parsed::HandOff;
        };
        let Ok(method) = Method::from_bytes(method) else {
            return Parsed::HandOff;
        };
        // Paths the core would rewrite or refuse are hyper's (where the core does it).
        let path = &target[..target.find('?').unwrap_or(target.len())];
        match normalize::path::normalize(path) {
            Ok(normal) if matches!(normal.path, Cow::Borrowed(_)) && !normal.encoded_slash => {}
            _ => return Parsed::HandOff,
        }
        // Not `..RequestHead::default()`: that would allocate a vector of lines on
        // every request, only to drop it for the one kept.
        *self = RequestHead {
            lines: std::mem::take(&mut self.lines),
            ..RequestHead::EMPTY
        };
        self.lines.clear();
        self.len = len;
        self.method = method;
        self.target = offsets(buf, target.as_bytes());
        self.path_end = self.target.0 + path.len();

        let mut content_length = None;
        for &(name, value) in headers.iter() {
            let mut kind = classify(name);
            let is = |known: KnownName| known.matches(name);
            match kind {
                Kind::Pass if is(CONTENT_LENGTH) => {
                    let Some(length) = parse_length(value) else {
                        return Parsed::HandOff;
                    };
                    match content_length {
                        Some(seen) if seen != length => return Parsed::HandOff,
                        // A repeat of the same length is sent on as one line, so no
                        // parser after us can read the framing differently.
                        Some(_) => kind = Kind::Drop,
                        None => content_length = Some(length),
                    }
                }
                // Only a single `chunked` coding is read here; any other coding, or
                // one repeated, is the core's to judge, on hyper.
                Kind::Pass if is(TRANSFER_ENCODING) => {
                    if self.chunked || !CHUNKED.matches(value) {
                        return Parsed::HandOff;
                    }
                    self.chunked = true;
                }
                // Protocol switches and 100-continue: hyper.
                Kind::Pass if is(UPGRADE) || is(EXPECT) => {
                    return Parsed::HandOff;
                }
                // The first line counts, as `HeaderMap::get` reads it on the full path.
                Kind::Pass if is(CONTENT_TYPE) => {
                    self.content_type.get_or_insert(self.lines.len());
                }
                Kind::Pass if is(USER_AGENT) => {
                    self.user_agent.get_or_insert(self.lines.len());
                }
                Kind::Drop if is(TE) && TRAILERS.matches(value) => {
                    // gRPC and others need `TE: trailers` end to end.
                    kind = Kind::Pass;
                }
                // Only the connection options are taken here: a list that names headers
                // (removed on entry, before the proxy adds its own) or is refused is
                // the core's to handle, on hyper.
                Kind::Drop if is(CONNECTION) => match ConnectionTokens::read([value]) {
                    Ok(tokens) if !tokens.names_headers => self.close |= tokens.close,
                    _ => return Parsed::HandOff,
                },
                Kind::Host => {
                    // Repeated or malformed: refused by the core, on hyper.
                    if self.host.is_some() || !normalize::host::is_valid_authority(value) {
                        return Parsed::HandOff;
                    }
                    self.host = Some(self.lines.len());
                }
                Kind::RequestId if self.request_id.is_none() => {
                    self.request_id = Some(self.lines.len())
                }
                Kind::Traceparent if self.traceparent.is_none() => {
                    self.traceparent = Some(self.lines.len())
                }
                Kind::XForwardedProto => self.has_forwarded_proto = true,
                Kind::XForwardedHost => self.has_forwarded_host = true,
                _ => {}
            }
            self.lines.push(Line {
                name: offsets(buf, name),
                value: offsets(buf, value),
                kind,
            });
        }
        // HTTP/1.1 without a Host is refused by the core, on hyper.
        if self.host.is_none() {
            return Parsed::HandOff;
        }
        // Both framings: which one wins is the core's rule (RFC 9112 6.3), on hyper.
        if self.chunked && content_length.is_some() {
            return Parsed::HandOff;
        }
        self.content_length = content_length.unwrap_or(0);
        self.wire_body_len = self.content_length as usize;
        Parsed::Complete
    }

    /// A chunked body was read: `data` bytes of data in `wire` bytes of chunks.
    pub fn set_chunked_body(&mut self, data: usize, wire: usize) {
        self.content_length = data as u64;
        self.wire_body_len = wire;
    }

    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        slice(buf, self.target)
    }

    fn value_of<'b>(&self, buf: &'b [u8], line: Option<usize>) -> Option<&'b [u8]> {
        line.map(|i| slice(buf, self.lines[i].value))
    }

    pub fn host<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.value_of(buf, self.host)
    }

    pub fn content_type<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.value_of(buf, self.content_type)
    }

    pub fn user_agent<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.value_of(buf, self.user_agent)
    }

    /// The client's `x-request-id` when it is usable (as the full path's rule).
    pub fn request_id<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.value_of(buf, self.request_id)
            .filter(|id| crate::telemetry::trace::RequestId::is_usable(id))
    }

    pub fn traceparent<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.value_of(buf, self.traceparent)
    }

    /// Routing's and the policies' view of this head; `trusted`: the client is a
    /// trusted proxy (its `Forwarded` and `X-Real-IP` are part of the request).
    pub fn route_input<'b>(&'b self, buf: &'b [u8], trusted: bool) -> RouteView<'b> {
        RouteView {
            head: self,
            buf,
            trusted,
        }
    }

    /// Writes the head to send to the endpoint into `out`.
    pub fn write_upstream(&self, buf: &[u8], forwarding: &Forwarding<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(forwarding.target.unwrap_or_else(|| self.target(buf)));
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut forwarded_for: Vec<&[u8]> = Vec::new();
        let mut via: Vec<&[u8]> = Vec::new();
        for line in &self.lines {
            let value = slice(buf, line.value);
            let keep = match line.kind {
                // A body sent anew with its own length: the client's framing goes.
                Kind::Pass
                    if forwarding.body != SentBody::AsReceived
                        && is_framing(slice(buf, line.name)) =>
                {
                    false
                }
                Kind::Pass => forwarding.edits.keeps(slice(buf, line.name)),
                Kind::Drop | Kind::Tag | Kind::Traceparent | Kind::Control => false,
                Kind::Host => {
                    if let Some(host) = forwarding.host_override {
                        put_header(out, b"host", host);
                        continue;
                    }
                    true
                }
                Kind::XForwardedFor => {
                    if forwarding.trusted {
                        forwarded_for.push(value);
                    }
                    false
                }
                Kind::XForwardedProto | Kind::XForwardedHost => forwarding.trusted,
                Kind::ForwardedClaim => {
                    forwarding.trusted && forwarding.edits.keeps(slice(buf, line.name))
                }
                Kind::Via => {
                    via.push(value);
                    false
                }
                Kind::RequestId => forwarding.new_request_id.is_none(),
            };
            if keep {
                put_line(out, buf, slice(buf, line.name), value);
            }
        }
        forwarding.edits.write_added(out);
        if let SentBody::Length(length) = forwarding.body {
            put_header(out, b"content-length", Digits::of(length).as_bytes());
        }
        out.extend_from_slice(b"x-forwarded-for: ");
        for earlier in forwarded_for {
            out.extend_from_slice(earlier);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(forwarding.peer);
        out.extend_from_slice(b"\r\n");
        if !(forwarding.trusted && self.has_forwarded_proto) {
            put_header(out, b"x-forwarded-proto", forwarding.proto);
        }
        if !(forwarding.trusted && self.has_forwarded_host)
            && let Some(host) = self.host(buf)
        {
            put_header(out, b"x-forwarded-host", host);
        }
        out.extend_from_slice(b"via: ");
        for earlier in via {
            out.extend_from_slice(earlier);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(b"1.1 junction\r\n");
        if let Some(id) = forwarding.new_request_id {
            put_header(out, b"x-request-id", id);
        }
        if let Some(traceparent) = forwarding.traceparent {
            put_header(out, b"traceparent", traceparent);
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl RequestHead {
    /// The head as `http` types, as the full pipeline holds it when it copies a request
    /// to the route's mirror (`versioning::send_shadow`, which hyper's client sends on
    /// its own task): the lines the endpoint would get, the policies' `edits` made,
    /// Junction's control headers gone, the body (held whole) with its `length`. `None` for a head that
    /// `http` does not take (the mirror then gets no copy).
    pub fn shadow_parts(
        &self,
        buf: &[u8],
        trusted: bool,
        request_id: &crate::telemetry::trace::RequestId,
        traceparent: Option<&HeaderValue>,
        edits: &HeaderEdits,
        length: usize,
    ) -> Option<http::request::Parts> {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = self.method.clone();
        parts.uri = http::Uri::try_from(self.target(buf)).ok()?;
        let headers = &mut parts.headers;
        for line in &self.lines {
            let keep = match line.kind {
                Kind::Pass | Kind::Host | Kind::Via | Kind::XForwardedFor => true,
                Kind::XForwardedProto | Kind::XForwardedHost | Kind::ForwardedClaim => trusted,
                Kind::Drop | Kind::Tag | Kind::Control | Kind::Traceparent | Kind::RequestId => {
                    false
                }
            };
            let name = slice(buf, line.name);
            if keep && !is_framing(name) {
                let name = HeaderName::from_bytes(name).ok()?;
                let value = HeaderValue::from_bytes(slice(buf, line.value)).ok()?;
                headers.append(name, value);
            }
        }
        edits.apply(headers);
        // An empty body read from chunks has no length line (see `SentBody::Empty`).
        if !(self.chunked && length == 0) {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        headers.insert(
            crate::telemetry::trace::X_REQUEST_ID.clone(),
            request_id.to_header(),
        );
        if let Some(traceparent) = traceparent {
            headers.insert(
                crate::telemetry::trace::TRACEPARENT.clone(),
                traceparent.clone(),
            );
        }
        Some(parts)
    }
}

/// The start of a request head: its length, version, method and target.
struct HeadStart<'b> {
    len: usize,
    version: u8,
    method: &'b [u8],
    target: &'b [u8],
}

/// A head that is not plain, read by httparse, its lines into `lines`; `Err` with what
/// to do when it is not a whole valid head.
fn httparse_head<'b>(
    buf: &'b [u8],
    lines: &mut plain_head::Lines<'b>,
) -> Result<HeadStart<'b>, Parsed> {
    // Uninitialised: zeroing 64 headers (2 KiB) per request cost more than parsing.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err(Parsed::Partial),
        Err(_) => return Err(Parsed::HandOff),
    };
    let (Some(version), Some(method), Some(target)) =
        (request.version, request.method, request.path)
    else {
        return Err(Parsed::HandOff);
    };
    lines.clear();
    // Rare (a head that is not plain): a long one may take the heap here.
    lines.extend(
        request
            .headers
            .iter()
            .map(|header| (header.name.as_bytes(), header.value)),
    );
    Ok(HeadStart {
        len,
        version,
        method: method.as_bytes(),
        target: target.as_bytes(),
    })
}

/// An origin-form target (`/path?query`) in exactly the ASCII characters `http::Uri`
/// accepts (its path and query tables), so that the fast path forwards what the full
/// path would and nothing it refuses with 400. Anything else (fragments, bytes above
/// 0x7f, `*`, other forms) is left to hyper.
fn is_plain_target(target: &[u8]) -> bool {
    let path_char = |b: u8| {
        matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E)
            || matches!(b, b'"' | b'{' | b'}')
    };
    let query_char = |b: u8| matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E);
    if target.len() > MAX_TARGET || target.first() != Some(&b'/') {
        return false;
    }
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(at) => (&target[..at], &target[at + 1..]),
        None => (target, &[][..]),
    };
    path.iter().all(|&b| path_char(b)) && query.iter().all(|&b| query_char(b))
}

/// A header line of `buf` (`name` and `value` are slices of it) as it came, when it
/// came as `name: value\r\n` (nearly every line): one copy of the whole line rather
/// than two of its parts. Otherwise written as [`put_header`] writes it.
pub fn put_line(out: &mut Vec<u8>, buf: &[u8], name: &[u8], value: &[u8]) {
    let base = buf.as_ptr() as usize;
    let start = (name.as_ptr() as usize).wrapping_sub(base);
    let value_end = (value.as_ptr() as usize)
        .wrapping_sub(base)
        .wrapping_add(value.len());
    // The line's length says the value starts right after `name: `.
    let line = buf
        .get(start..value_end.wrapping_add(2))
        .filter(|line| line.len() == name.len() + value.len() + 4);
    match line {
        Some(line) if line[name.len()..].starts_with(b": ") && line.ends_with(b"\r\n") => {
            out.extend_from_slice(line)
        }
        _ => put_header(out, name, value),
    }
}

pub fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Routing's and the policies' view of a fast-path head: the same request the full path
/// has after its entry phase (no hop-by-hop lines, no `x-junction-tag`, no `Forwarded`
/// or `X-Real-IP` from untrusted clients).
pub struct RouteView<'b> {
    head: &'b RequestHead,
    buf: &'b [u8],
    trusted: bool,
}

impl<'b> RouteView<'b> {
    fn visible(&self) -> impl Iterator<Item = &'b Line> + use<'b> {
        let trusted = self.trusted;
        self.head.lines.iter().filter(move |line| match line.kind {
            Kind::Drop | Kind::Tag => false,
            Kind::ForwardedClaim => trusted,
            _ => true,
        })
    }

    /// Every line of header `name`, in order. The name's text is read once, not per
    /// line (a standard name's is a table lookup), and not cloned (a custom name's
    /// clone and drop are two calls).
    pub fn lines_named<'n>(
        &self,
        name: &'n HeaderName,
    ) -> impl Iterator<Item = &'b [u8]> + use<'b, 'n> {
        let (buf, name) = (self.buf, name.as_str().as_bytes());
        self.visible()
            .filter(move |line| slice(buf, line.name).eq_ignore_ascii_case(name))
            .map(move |line| slice(buf, line.value))
    }
}

impl RequestView for RouteView<'_> {
    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.lines_named(name).next()
    }

    fn any_value<'s>(&'s self, name: &HeaderName, found: &mut dyn FnMut(&'s [u8]) -> bool) -> bool {
        self.lines_named(name).any(found)
    }

    fn header_count(&self) -> usize {
        self.visible().count()
    }

    fn header_bytes(&self) -> usize {
        self.visible()
            .map(|line| line.name.1 - line.name.0 + line.value.1 - line.value.0 + 4)
            .sum()
    }

    fn target(&self) -> &[u8] {
        self.head.target(self.buf)
    }

    fn each_header(&self, each: &mut dyn FnMut(&[u8], &[u8])) {
        for line in self.visible() {
            each(slice(self.buf, line.name), slice(self.buf, line.value));
        }
    }
}

impl RouteInput for RouteView<'_> {
    fn method(&self) -> &Method {
        &self.head.method
    }

    fn path(&self) -> &str {
        // Checked to be printable ASCII when parsed.
        std::str::from_utf8(&self.buf[self.head.target.0..self.head.path_end]).unwrap_or("")
    }

    fn has_header(&self, name: &HeaderName) -> bool {
        self.lines_named(name).next().is_some()
    }

    fn header_equals(&self, name: &HeaderName, value: &HeaderValue) -> bool {
        self.lines_named(name).any(|v| v == value.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole lines are copied only when they read `name: value\r\n`; any other form
    /// is written anew, the same bytes `put_header` writes.
    #[test]
    fn lines_are_copied_whole_only_as_written() {
        let buf = b"a: 1\r\nb:2\r\nc:  3 \r\nd: \r\n";
        let at = |from: usize, to: usize| &buf[from..to];
        let cases: [(&[u8], &[u8], &[u8]); 5] = [
            (at(0, 1), at(3, 4), b"a: 1\r\n"),
            (at(6, 7), at(8, 9), b"b: 2\r\n"),
            (at(11, 12), at(15, 16), b"c: 3\r\n"),
            (at(19, 20), at(22, 22), b"d: \r\n"),
            (b"x", b"y", b"x: y\r\n"),
        ];
        for (name, value, expected) in cases {
            let mut out = Vec::new();
            put_line(&mut out, buf, name, value);
            assert_eq!(out, expected, "{:?}", String::from_utf8_lossy(name));
        }
    }

    fn parsed(text: &str) -> RequestHead {
        let mut head = RequestHead::default();
        assert!(matches!(head.parse(text.as_bytes()), Parsed::Complete));
        head
    }

    fn upstream(text: &str, forwarding: &Forwarding<'_>) -> String {
        let head = parsed(text);
        let mut out = Vec::new();
        head.write_upstream(text.as_bytes(), forwarding, &mut out);
        String::from_utf8(out).unwrap()
    }

    static NO_EDITS: HeaderEdits = HeaderEdits::new();

    fn plain() -> Forwarding<'static> {
        Forwarding {
            peer: b"10.0.0.9",
            proto: b"http",
            trusted: false,
            host_override: None,
            new_request_id: Some(b"id1"),
            traceparent: None,
            edits: &NO_EDITS,
            body: SentBody::AsReceived,
            target: None,
        }
    }

    #[test]
    fn hop_by_hop_and_named_headers_are_dropped() {
        let text = "GET /a?b HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\
                    Keep-Alive: 5\r\nTE: gzip\r\nProxy-Connection: x\r\n\
                    x-junction-tag: t\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n\
                    Accept: */*\r\n\r\n";
        let sent = upstream(text, &plain());
        assert_eq!(
            sent,
            "GET /a?b HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nx-forwarded-for: 10.0.0.9\r\n\
             x-forwarded-proto: http\r\nx-forwarded-host: h\r\nvia: 1.1 junction\r\n\
             x-request-id: id1\r\n\r\n"
        );
    }

    #[test]
    fn forwarding_headers_from_a_trusted_proxy_are_extended() {
        let text = "GET / HTTP/1.1\r\nhost: h\r\nx-forwarded-for: 1.1.1.1\r\n\
                    X-Forwarded-For: 2.2.2.2\r\nx-forwarded-proto: https\r\nvia: 1.0 a\r\n\
                    x-request-id: abc\r\nte: trailers\r\n\r\n";
        let forwarding = Forwarding {
            trusted: true,
            new_request_id: None,
            ..plain()
        };
        let sent = upstream(text, &forwarding);
        assert!(sent.contains("x-forwarded-for: 1.1.1.1, 2.2.2.2, 10.0.0.9\r\n"));
        assert!(sent.contains("x-forwarded-proto: https\r\n"));
        assert!(!sent.contains("x-forwarded-proto: http\r\n"));
        assert!(sent.contains("via: 1.0 a, 1.1 junction\r\n"));
        assert!(sent.contains("x-request-id: abc\r\n"));
        assert!(sent.contains("te: trailers\r\n"));
        // Untrusted: replaced.
        let sent = upstream(text, &plain());
        assert!(sent.contains("x-forwarded-for: 10.0.0.9\r\n"));
        assert!(sent.contains("x-forwarded-proto: http\r\n"));
        assert!(!sent.contains("abc"));
    }

    #[test]
    fn a_repeated_content_length_goes_on_once() {
        let text = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nab";
        let sent = upstream(text, &plain());
        assert_eq!(sent.matches("ontent-").count(), 1, "{sent}");
        assert!(sent.contains("Content-Length: 2\r\n"));
    }

    #[test]
    fn host_is_rewritten_or_supplied() {
        let forwarding = Forwarding {
            host_override: Some(b"ep:1"),
            ..plain()
        };
        let sent = upstream("GET / HTTP/1.1\r\nHost: h\r\n\r\n", &forwarding);
        assert!(sent.starts_with("GET / HTTP/1.1\r\nhost: ep:1\r\n"));
        assert!(sent.contains("x-forwarded-host: h\r\n"));
    }

    #[test]
    fn unusual_requests_go_to_hyper() {
        for text in [
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\n\r\n",
            // Framings other than one `chunked` coding, or chunked with a length.
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET /a#b HTTP/1.1\r\n\r\n",
            "GET /a<b> HTTP/1.1\r\n\r\n",
            "GET /x`y HTTP/1.1\r\n\r\n",
            "GET /q?x=\"y\" HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nbad line\r\n\r\n",
            // What the core refuses or rewrites on entry (on hyper): no or a bad
            // Host, a Connection list naming headers, paths not in normal form.
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-secret\r\n\r\n",
            "GET /%61dmin HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a/../b HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET //a HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            let mut head = RequestHead::default();
            assert!(
                matches!(head.parse(text.as_bytes()), Parsed::HandOff),
                "{text:?}"
            );
        }
        let mut head = RequestHead::default();
        assert!(matches!(
            head.parse(b"GET / HTTP/1.1\r\nHost: a"),
            Parsed::Partial
        ));
        // One `chunked` coding, in any case, is read here.
        let text = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n";
        assert!(matches!(head.parse(text), Parsed::Complete));
        assert!(head.chunked);
    }

    #[test]
    fn targets_are_those_http_uri_takes() {
        for ok in [
            "/",
            "/a/b?c=d&e",
            "/json/{\"a\":1}",
            "/q?x=`y`&z=/?",
            "/~user|x",
        ] {
            assert!(is_plain_target(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "*", "a", "/a b", "/a<b", "/a`b", "/a>b", "/q?x=<", "/\u{e9}",
        ] {
            assert!(!is_plain_target(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn the_first_content_type_and_user_agent_count() {
        let text = "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Type: application/json\r\n\
                    User-Agent: first/1\r\nUser-Agent: second/2\r\nContent-Length: 0\r\n\r\n";
        let head = parsed(text);
        assert_eq!(head.content_type(text.as_bytes()), Some(&b"text/plain"[..]));
        assert_eq!(head.user_agent(text.as_bytes()), Some(&b"first/1"[..]));
    }

    #[test]
    fn routing_sees_path_method_and_headers() {
        let text = "POST /v1/chat?x=1 HTTP/1.1\r\nHost: a\r\nX-Team: a\r\nx-junction-tag: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let head = parsed(text);
        assert!(head.close);
        let view = head.route_input(text.as_bytes(), false);
        assert_eq!(view.path(), "/v1/chat");
        assert_eq!(view.method(), Method::POST);
        assert!(view.has_header(&HeaderName::from_static("x-team")));
        assert!(view.header_equals(
            &HeaderName::from_static("x-team"),
            &HeaderValue::from_static("a")
        ));
        assert!(!view.has_header(&HeaderName::from_static("x-junction-tag")));
    }
}
