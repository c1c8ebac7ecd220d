//! An endpoint's response head as the fast path relays it: parsed (plain heads in one
//! pass, others by `httparse`), its body framing worked out (RFC 9112 6.3), and written
//! for the client in the same pass with hop-by-hop headers out and Junction's own
//! (`x-request-id`, `x-junction-version`, `date` when missing) in.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;

use super::known_name::names::{
    CLOSE, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, DATE, KEEP_ALIVE,
    LOAD_METRICS, PROXY_CONNECTION, RETRY_AFTER, TE, TRAILERS, TRANSFER_ENCODING, UPGRADE,
    X_JUNCTION_VERSION, X_REQUEST_ID,
};
use super::plain_head;
use super::request::{put_header, put_line};
use crate::decimal::Digits;
use crate::llm::ReplyKind;
pub use crate::normalize::response::Framing;
use crate::normalize::response::{self as response_head, ContentLength};
use crate::pipeline::HeaderEdits;

const MAX_HEADERS: usize = 100;

/// A parsed response head; the client's head is in the `out` it was parsed with.
#[derive(Debug)]
pub struct Reply {
    /// Bytes of the endpoint's head.
    pub len: usize,
    pub status: u16,
    pub framing: Framing,
    /// The endpoint will take another request on this connection.
    pub reusable: bool,
    /// The client's connection closes after this response.
    pub close_client: bool,
    pub kind: ReplyKind,
    /// `Retry-After`, as sent.
    pub retry_after: Option<(usize, usize)>,
    /// ORCA `endpoint-load-metrics`, as sent (for `least_queue`).
    pub load_report: Option<(usize, usize)>,
    /// `Content-Type` and `Content-Encoding` (first lines), for the body phase.
    pub content_type: Option<(usize, usize)>,
    pub content_encoding: Option<(usize, usize)>,
    /// The lengths of the names of the client head's lines, for [`apply_edits`].
    pub names: NameLengths,
}

/// The lengths of the names of the lines written into a client head, one bit each
/// (bit 63 for 63 bytes and more). The response policies' edits mostly set names an
/// endpoint does not send (`x-ratelimit-*`): when no edited name has the length of a
/// written one, [`apply_edits`] knows without reading the head that no line goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameLengths(u64);

impl NameLengths {
    fn bit(name: &[u8]) -> u64 {
        1 << name.len().min(63)
    }

    pub fn add(&mut self, name: &[u8]) {
        self.0 |= Self::bit(name);
    }

    /// Whether a line named `name` may be among those written.
    pub fn may_hold(self, name: &[u8]) -> bool {
        self.0 & Self::bit(name) != 0
    }

    /// Any name may be there (a head written by hand in a test).
    #[cfg(test)]
    pub const ANY: NameLengths = NameLengths(u64::MAX);
}

impl Reply {
    /// 1xx other than 101: skipped, as hyper's client does.
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// What the client's head needs from the request.
pub struct ClientHead<'a> {
    pub head_request: bool,
    pub version_header: Option<&'a [u8]>,
    pub request_id: &'a [u8],
    /// The client asked to close its connection after this response.
    pub close: bool,
    /// Shutdown has begun: the client's connection closes after this response. Read
    /// when the head is written, since a drain may begin while the endpoint works.
    pub draining: &'a AtomicBool,
}

pub enum Parsed {
    Complete(Reply),
    Partial,
    Invalid(&'static str),
}

/// Parses the response head at the start of `buf`; for a final response, writes the
/// client's head into `out`. A plain head ([`plain_head::read_response`]) is read in
/// one pass; any other is httparse's, which reads the plain ones the same.
pub fn parse(buf: &[u8], client: &ClientHead<'_>, out: &mut Vec<u8>) -> Parsed {
    let mut lines = plain_head::Lines::new();
    let status_line = match plain_head::read_response(buf, &mut lines) {
        Some(head) => StatusLine {
            len: head.len,
            version: head.version,
            status: head.status,
            reason: buf.get(head.reason.0..head.reason.1).unwrap_or_default(),
        },
        None => {
            // Uninitialised: zeroing 100 headers (3 KiB) per response cost more than
            // parsing.
            let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut response,
                buf,
                &mut headers,
            );
            let len = match parsed {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Parsed::Partial,
                Err(httparse::Error::TooManyHeaders) => {
                    return Parsed::Invalid("too many headers");
                }
                Err(_) => return Parsed::Invalid("malformed response head"),
            };
            let (Some(version), Some(status)) = (response.version, response.code) else {
                return Parsed::Invalid("malformed response head");
            };
            // Rare (a head that is not plain): a long one may take the heap here.
            lines.clear();
            lines.extend(
                response
                    .headers
                    .iter()
                    .map(|header| (header.name.as_bytes(), header.value)),
            );
            StatusLine {
                len,
                version,
                status,
                reason: response.reason.unwrap_or_default().as_bytes(),
            }
        }
    };
    finish(buf, status_line, &lines, client, out)
}

/// A response head's first line, however it was read.
struct StatusLine<'b> {
    /// Bytes of the whole head.
    len: usize,
    version: u8,
    status: u16,
    reason: &'b [u8],
}

/// The rest of [`parse`], from the head's lines as names and values: the reply's
/// framing and facts, and the client's head.
fn finish(
    buf: &[u8],
    head: StatusLine<'_>,
    lines: &[(&[u8], &[u8])],
    client: &ClientHead<'_>,
    out: &mut Vec<u8>,
) -> Parsed {
    let StatusLine {
        len,
        version,
        status,
        reason,
    } = head;
    // The fast path takes no upgrade request.
    if let Err(reason) = response_head::check_status(status, false) {
        return Parsed::Invalid(reason);
    }
    let mut reply = Reply {
        len,
        status,
        framing: Framing::Empty,
        reusable: version == 1,
        close_client: client.close || client.draining.load(Ordering::Relaxed),
        kind: ReplyKind::Other,
        retry_after: None,
        load_report: None,
        content_type: None,
        content_encoding: None,
        names: NameLengths::default(),
    };
    if reply.is_informational() {
        return Parsed::Complete(reply);
    }

    // First pass: framing, connection options, and what Junction sets itself.
    let mut content_length = ContentLength::default();
    let mut transfer_encoding = None;
    let mut has_date = false;
    let mut content_type = None;
    let mut tokens: Vec<&[u8]> = Vec::new();
    for &(name, value) in lines {
        // One word compare per line, after a dispatch on the name's length: these names'
        // lengths differ, so a line is compared with one of them at most.
        match name.len() {
            14 if CONTENT_LENGTH.matches_same_length(name) => {
                if let Err(reason) = content_length.add(value) {
                    return Parsed::Invalid(reason);
                }
            }
            17 if TRANSFER_ENCODING.matches_same_length(name) => {
                transfer_encoding = Some(value);
            }
            10 if CONNECTION.matches_same_length(name) => {
                for token in value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if CLOSE.matches(token) {
                        reply.reusable = false;
                    } else if !token.is_empty() && !KEEP_ALIVE.matches(token) {
                        // `keep-alive` (what most endpoints send) names a header dropped
                        // anyway; skipping it keeps the common case free of allocation.
                        tokens.push(token);
                    }
                }
            }
            4 if DATE.matches_same_length(name) => has_date = true,
            // The first line counts, as `HeaderMap::get` reads it on the full path.
            12 if CONTENT_TYPE.matches_same_length(name) && content_type.is_none() => {
                content_type = Some(value);
            }
            11 if RETRY_AFTER.matches_same_length(name) && reply.retry_after.is_none() => {
                reply.retry_after = Some(offsets(buf, value));
            }
            21 if LOAD_METRICS.matches_same_length(name) && reply.load_report.is_none() => {
                reply.load_report = Some(offsets(buf, value));
            }
            16 if CONTENT_ENCODING.matches_same_length(name)
                && reply.content_encoding.is_none() =>
            {
                reply.content_encoding = Some(offsets(buf, value));
            }
            _ => {}
        }
    }
    if let Some(value) = content_type {
        reply.kind = ReplyKind::of_content_type(value);
        reply.content_type = Some(offsets(buf, value));
    }
    let content_length = content_length.get();
    let no_body = client.head_request || status == 204 || status == 304;
    let (framing, reusable) = response_head::framing(no_body, transfer_encoding, content_length);
    reply.framing = framing;
    reply.reusable &= reusable;

    // Second pass: the client's head.
    out.extend_from_slice(b"HTTP/1.1 ");
    let code = StatusCode::from_u16(status).map_err(|_| ());
    let Ok(code) = code else {
        return Parsed::Invalid("invalid status code");
    };
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(b' ');
    match reason {
        [] => out.extend_from_slice(code.canonical_reason().unwrap_or("").as_bytes()),
        reason => out.extend_from_slice(reason),
    }
    out.extend_from_slice(b"\r\n");
    let mut names = NameLengths::default();
    for &(name, value) in lines {
        if drops(name, value, client, &tokens) {
            continue;
        }
        names.add(name);
        put_line(out, buf, name, value);
    }
    let mut put = |out: &mut Vec<u8>, name: &[u8], value: &[u8]| {
        names.add(name);
        put_header(out, name, value);
    };
    match reply.framing {
        Framing::Chunked | Framing::UntilClose => {
            put(out, b"transfer-encoding", b"chunked");
        }
        // HEAD, 204 and 304 keep the length they announce.
        Framing::Length(_) | Framing::Empty => {
            if let Some(length) = content_length.filter(|_| transfer_encoding.is_none()) {
                put(out, b"content-length", Digits::of(length).as_bytes());
            }
        }
    }
    if !has_date {
        with_http_date(|date| put(out, b"date", date));
    }
    if let Some(version) = client.version_header {
        put(out, b"x-junction-version", version);
    }
    put(out, b"x-request-id", client.request_id);
    if reply.close_client {
        put(out, b"connection", b"close");
    }
    reply.names = names;
    out.extend_from_slice(b"\r\n");
    Parsed::Complete(reply)
}

/// Makes a parsed reply close the client's connection after it (an answer that came
/// before the client's body ended, whose rest is never read): `connection: close` goes
/// into the client's head `out` as [`parse`] writes it for a closing client.
pub fn close_client_after(reply: &mut Reply, out: &mut Vec<u8>) {
    if reply.close_client {
        return;
    }
    reply.close_client = true;
    reply.names.add(b"connection");
    // `out` ends with the empty line; the header goes before it.
    out.truncate(out.len().saturating_sub(2));
    put_header(out, b"connection", b"close");
    out.extend_from_slice(b"\r\n");
}

/// Applies the response policies' header changes to a client head this module wrote
/// (`HTTP/1.1 ... \r\n`, header lines, the empty line): lines the edits remove or
/// replace go, the lines they add come before the empty line. Header rules cannot touch
/// the lines Junction owns (framing, `connection`, `x-request-id`; refused when the
/// config is compiled), so this never changes how the body is framed.
pub fn apply_edits(out: &mut Vec<u8>, edits: &HeaderEdits, names: NameLengths) {
    // The common case (lines only added, or set where the endpoint sent none of that
    // name): the added lines go in before the empty line, in place.
    let body_of_head = &out[..out.len().saturating_sub(2)];
    let drops_a_line = edits.replaces_any(|name| names.may_hold(name))
        && line_names(body_of_head).any(|n| !edits.keeps(n));
    if !drops_a_line {
        out.truncate(out.len().saturating_sub(2));
        edits.write_added(out);
        out.extend_from_slice(b"\r\n");
        return;
    }
    let mut edited = Vec::with_capacity(out.len() + 128);
    let mut lines = out.split(|&b| b == b'\n');
    if let Some(status) = lines.next() {
        edited.extend_from_slice(status);
        edited.push(b'\n');
    }
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            // The empty line, or what follows it: nothing else has been written yet.
            continue;
        };
        if edits.keeps(&line[..colon]) {
            edited.extend_from_slice(line);
            edited.push(b'\n');
        }
    }
    edits.write_added(&mut edited);
    edited.extend_from_slice(b"\r\n");
    *out = edited;
}

/// The names of a head's field lines (the status line skipped), found with `memchr`:
/// this runs on every answer of a route whose policies set response headers.
fn line_names(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = memchr::memchr(b'\n', head).map_or(&[][..], |end| &head[end + 1..]);
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            let line = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or_default();
            if let Some(colon) = memchr::memchr(b':', line) {
                return Some(&line[..colon]);
            }
        }
        None
    })
}

/// Records a client head this module wrote (`HTTP/1.1 ...`, its lines) in a captured
/// flow; `event_stream`: the body that follows is an event stream.
pub fn record_head(exchange: &mut crate::pipeline::Exchange, head: &[u8], event_stream: bool) {
    if exchange.recording.is_none() {
        return;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    if response.parse(head).is_err() {
        return;
    }
    let status = response.code.unwrap_or(0);
    let lines = response
        .headers
        .iter()
        .map(|h| (h.name.as_bytes(), h.value));
    exchange.record_response_head(status, lines, event_stream);
}

/// Where `part` (a slice of `buf`) lies in it.
fn offsets(buf: &[u8], part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    (start, start + part.len())
}

/// Whether a response header stays behind: hop-by-hop ones, those `Connection` names,
/// framing (written by Junction), and those Junction sets itself.
fn drops(name: &[u8], value: &[u8], client: &ClientHead<'_>, tokens: &[&[u8]]) -> bool {
    match name.len() {
        // `TE: trailers` is the one value kept, unless `Connection` named `TE` itself.
        2 if TE.matches_same_length(name) => {
            !TRAILERS.matches(value) || tokens.iter().any(|token| token.eq_ignore_ascii_case(name))
        }
        7 if UPGRADE.matches_same_length(name) => true,
        10 if CONNECTION.matches_same_length(name) || KEEP_ALIVE.matches_same_length(name) => true,
        12 if X_REQUEST_ID.matches_same_length(name) => true,
        14 if CONTENT_LENGTH.matches_same_length(name) => true,
        16 if PROXY_CONNECTION.matches_same_length(name) => true,
        17 if TRANSFER_ENCODING.matches_same_length(name) => true,
        18 if X_JUNCTION_VERSION.matches_same_length(name) => client.version_header.is_some(),
        _ => tokens.iter().any(|token| token.eq_ignore_ascii_case(name)),
    }
}

/// The current time as an HTTP date, formatted once a second per thread.
pub fn with_http_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    DATE.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            *cached = (second, httpdate::fmt_http_date(now));
        }
        f(cached.1.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_change_only_the_lines_they_name() {
        let mut out = b"HTTP/1.1 200 OK\r\nserver: nginx\r\nx-a: 1\r\ncontent-length: 2\r\nx-request-id: r\r\n\r\n".to_vec();
        let mut edits = HeaderEdits::new();
        edits.remove(&http::HeaderName::from_static("server"));
        edits.set(
            &http::HeaderName::from_static("x-a"),
            http::HeaderValue::from_static("2"),
        );
        edits.append(
            &http::header::SET_COOKIE,
            http::HeaderValue::from_static("s=1"),
        );
        apply_edits(&mut out, &edits, NameLengths::ANY);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: r\r\nx-a: 2\r\nset-cookie: s=1\r\n\r\n"
        );
    }

    static NOT_DRAINING: AtomicBool = AtomicBool::new(false);

    fn client() -> ClientHead<'static> {
        ClientHead {
            head_request: false,
            version_header: Some(b"v1"),
            request_id: b"rid",
            close: false,
            draining: &NOT_DRAINING,
        }
    }

    fn parse_ok(text: &str, client: &ClientHead<'_>) -> (Reply, String) {
        let mut out = Vec::new();
        match parse(text.as_bytes(), client, &mut out) {
            Parsed::Complete(reply) => (reply, String::from_utf8(out).unwrap()),
            Parsed::Partial => panic!("partial"),
            Parsed::Invalid(why) => panic!("invalid: {why}"),
        }
    }

    /// The names' lengths let the edits skip reading the head only when no edited
    /// name can be among the written lines: an endpoint's line of an edited name goes,
    /// whatever its case, and one the close adds counts too.
    #[test]
    fn edits_replace_the_lines_parse_wrote() {
        let text = "HTTP/1.1 200 OK\r\nX-Limit: 9\r\nserver: s\r\ncontent-length: 0\r\n\r\n";
        let (reply, head) = parse_ok(text, &client());
        let mut out = head.into_bytes();
        let limit = http::HeaderName::from_static("x-limit");
        assert!(reply.names.may_hold(b"x-limit"));
        assert!(!reply.names.may_hold(b"x-ratelimit-remaining"));
        let mut edits = HeaderEdits::new();
        edits.set_bytes(&limit, b"5");
        edits.set_bytes(
            &http::HeaderName::from_static("x-ratelimit-remaining"),
            b"4",
        );
        apply_edits(&mut out, &edits, reply.names);
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("X-Limit: 9"), "{out}");
        assert!(
            out.ends_with("x-limit: 5\r\nx-ratelimit-remaining: 4\r\n\r\n"),
            "{out}"
        );

        let mut out = Vec::new();
        let Parsed::Complete(mut closing) =
            parse(b"HTTP/1.1 204 No Content\r\n\r\n", &client(), &mut out)
        else {
            panic!("not parsed");
        };
        assert!(!closing.names.may_hold(b"connection"));
        close_client_after(&mut closing, &mut out);
        assert!(closing.names.may_hold(b"connection"));
    }

    #[test]
    fn length_framed_reply_is_rewritten_for_the_client() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, x-up\r\n\
                    x-up: 1\r\nKeep-Alive: timeout=5\r\nx-request-id: theirs\r\n\
                    Date: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: application/json\r\n\r\nhello";
        let (reply, head) = parse_ok(text, &client());
        assert_eq!(reply.framing, Framing::Length(5));
        assert!(reply.reusable);
        assert!(!reply.close_client);
        assert_eq!(reply.kind, ReplyKind::Json);
        assert_eq!(reply.len, text.len() - 5);
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\
             Content-Type: application/json\r\ncontent-length: 5\r\nx-junction-version: v1\r\n\
             x-request-id: rid\r\n\r\n"
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let framing = |text: &str, head_request: bool| {
            let client = ClientHead {
                head_request,
                ..client()
            };
            parse_ok(text, &client).0
        };
        let chunked = framing(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        );
        assert_eq!(chunked.framing, Framing::Chunked);
        let close = framing("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!(close.framing, Framing::UntilClose);
        assert!(!close.reusable && !close.close_client);
        let head = framing("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true);
        assert_eq!(head.framing, Framing::Empty);
        let not_modified = framing("HTTP/1.1 304 Not Modified\r\n\r\n", false);
        assert_eq!(not_modified.framing, Framing::Empty);
        let old = framing("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false);
        assert!(!old.reusable);
        let closing = framing(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
            false,
        );
        assert!(!closing.reusable && !closing.close_client);
        assert!(framing("HTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\n", false).is_informational());
    }

    #[test]
    fn bad_heads_are_invalid() {
        for text in [
            "HTTP/1.1 abc\r\n\r\n",
            "garbage\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            let mut out = Vec::new();
            assert!(
                matches!(
                    parse(text.as_bytes(), &client(), &mut out),
                    Parsed::Invalid(_)
                ),
                "{text:?}"
            );
        }
    }

    /// Found by the response head fuzzer: a `TE: trailers` that `Connection` names goes,
    /// as every other header it names does (and as hyper's engine drops it).
    #[test]
    fn te_is_kept_only_as_trailers_and_only_when_not_named() {
        let kept = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTE: trailers\r\nte: gzip\r\n\r\n";
        let (_, head) = parse_ok(kept, &client());
        assert!(head.contains("\r\nTE: trailers\r\n"), "{head}");
        assert!(!head.contains("gzip"), "{head}");
        let named = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: da,te\r\n\
                     TE: trailers\r\n\r\n";
        let (_, head) = parse_ok(named, &client());
        assert!(!head.to_ascii_lowercase().contains("\r\nte:"), "{head}");
    }

    /// The framing names are found whatever their case, and a near miss (a byte more
    /// or less, one byte changed) is an ordinary line, relayed as sent: a slip in the
    /// names' dispatch would be a framing (smuggling) bug.
    #[test]
    fn framing_names_are_found_in_any_case_and_near_misses_are_not() {
        let mixed = |name: &str| -> String {
            name.chars()
                .enumerate()
                .map(|(at, c)| {
                    if at % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect()
        };
        for name in ["content-length", "transfer-encoding", "connection"] {
            for name in [name.to_string(), name.to_ascii_uppercase(), mixed(name)] {
                let value = match name.len() {
                    14 => "5",
                    17 => "chunked",
                    _ => "close",
                };
                let text = format!("HTTP/1.1 200 OK\r\n{name}: {value}\r\n\r\n");
                let (reply, head) = parse_ok(&text, &client());
                // The endpoint's line goes; Junction writes its own framing line.
                let lower = head.to_ascii_lowercase();
                let line = format!("\r\n{}:", name.to_ascii_lowercase());
                let lines = lower.matches(&line).count();
                assert_eq!(lines, usize::from(name.len() != 10), "{head}");
                match name.len() {
                    14 => assert_eq!(reply.framing, Framing::Length(5), "{name}"),
                    17 => assert_eq!(reply.framing, Framing::Chunked, "{name}"),
                    _ => assert!(!reply.reusable, "{name}"),
                }
            }
        }
        for name in [
            "content-lengthx",
            "content-lengt",
            "xcontent-length",
            "content_length",
            "Content-Lengtg",
            "transfer-encodin",
            "transfer-encodingx",
            "transfer_encoding",
            "connectionx",
            "connectio",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\n{name}: 5\r\n\r\n");
            let (reply, head) = parse_ok(&text, &client());
            assert_eq!(reply.framing, Framing::UntilClose, "{name}");
            assert!(reply.framing != Framing::Length(5));
            assert!(
                head.contains(&format!("\r\n{name}: 5\r\n")),
                "{name}: {head}"
            );
        }
        for (name, value) in [
            ("Keep-Alive", "timeout=5"),
            ("PROXY-CONNECTION", "close"),
            ("Upgrade", "h2c"),
            ("X-Request-ID", "theirs"),
            ("X-JUNCTION-VERSION", "theirs"),
            ("te", "gzip"),
        ] {
            let text = format!("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n{name}: {value}\r\n\r\n");
            let (_, head) = parse_ok(&text, &client());
            assert!(!head.contains(value), "{name}: {head}");
        }
        let (_, head) = parse_ok(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nKeep-Alivex: 1\r\n\r\n",
            &client(),
        );
        assert!(head.contains("\r\nKeep-Alivex: 1\r\n"), "{head}");
        let twice = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nCONTENT-LENGTH: 2\r\n\r\n";
        let mut out = Vec::new();
        assert!(matches!(
            parse(twice.as_bytes(), &client(), &mut out),
            Parsed::Invalid(_)
        ));
        let (reply, _) = parse_ok(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: KEEP-ALIVE, Close\r\n\r\n",
            &client(),
        );
        assert!(!reply.reusable);
    }

    #[test]
    fn a_date_is_added_when_missing() {
        let (_, head) = parse_ok("HTTP/1.1 204 No Content\r\n\r\n", &client());
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(head.ends_with(" GMT\r\nx-junction-version: v1\r\nx-request-id: rid\r\n\r\n"));
    }
}
