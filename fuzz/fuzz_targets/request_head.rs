//! The fast path's request head parser (src/fastpath/request.rs: `RequestHead::parse`)
//! and the head it writes for the endpoint (`write_upstream`).
//!
//! Properties, for any bytes:
//! - a head the plain reader takes (src/fastpath/plain_head.rs) httparse reads the
//!   same: length, version, method, target, and every line's name and value;
//! - a head that parses `Complete` has `len <= input length`, ends with its blank line,
//!   and parses the same from its own bytes alone; every strict prefix of it is
//!   `Partial` (the parse never reads past the head);
//! - a `RequestHead` reused from an earlier request parses exactly as a fresh one;
//! - what the fast path takes is what it may take: HTTP/1.1, an origin-form target in
//!   normal form, no CONNECT, exactly one valid `Host`, no `Upgrade` or `Expect`, either
//!   `Content-Length` lines that all agree or one `Transfer-Encoding: chunked` (never
//!   both, never another coding), a `Connection` list
//!   of connection options only; every header line is kept, in order, with the offsets
//!   `httparse` gives, sorted as the table below says;
//! - the head written for the endpoint is one complete HTTP/1.1 head that frames the
//!   body the same (one `Content-Length` equal to the parsed one, or for a chunked body
//!   the length of its data, or none when it is 0 and none was sent; never
//!   `Transfer-Encoding`), has one `Host`, one
//!   `X-Forwarded-For` ending in the peer, one `Via` ending in Junction's, and no
//!   hop-by-hop or Junction control header.

#![no_main]

use junction::fuzzing::{
    Forwarding, HeaderEdits, Kind, RequestHead, RequestParsed, SentBody,
    assert_plain_request_agrees,
};
use junction::routing::RouteInput;
use libfuzzer_sys::fuzz_target;

/// A line's name and value offsets, and its kind.
type LineFacts = ((usize, usize), (usize, usize), Kind);

/// Everything a parse tells, for comparing two parses.
#[derive(Debug, PartialEq, Eq)]
struct Facts {
    len: usize,
    method: String,
    target: Vec<u8>,
    lines: Vec<LineFacts>,
    content_length: u64,
    chunked: bool,
    close: bool,
    host: Option<Vec<u8>>,
    content_type: Option<Vec<u8>>,
    user_agent: Option<Vec<u8>>,
    request_id: Option<Vec<u8>>,
    traceparent: Option<Vec<u8>>,
    upstream: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Complete(Box<Facts>),
    Partial,
    HandOff,
}

static NO_EDITS: HeaderEdits = HeaderEdits::new();

fn untrusted(head: &RequestHead) -> Forwarding<'static> {
    Forwarding {
        peer: b"10.0.0.9",
        proto: b"http",
        trusted: false,
        host_override: None,
        new_request_id: Some(b"new-id"),
        traceparent: None,
        edits: &NO_EDITS,
        target: None,
        // As the engine sends it (the body phase's new length is not fuzzed here:
        // tests/masking_proxy.rs covers it).
        body: sent_body(head),
    }
}

fn trusted(head: &RequestHead) -> Forwarding<'static> {
    Forwarding {
        peer: b"[2001:db8::1]",
        proto: b"https",
        trusted: true,
        host_override: Some(b"endpoint:8000"),
        new_request_id: None,
        traceparent: Some(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        edits: &NO_EDITS,
        target: None,
        // As the engine sends it (the body phase's new length is not fuzzed here:
        // tests/masking_proxy.rs covers it).
        body: sent_body(head),
    }
}

/// How the engine frames the body it sends: a chunked one is sent whole with the length
/// of its data (none when empty).
fn sent_body(head: &RequestHead) -> SentBody {
    match (head.chunked, head.content_length) {
        (false, _) => SentBody::AsReceived,
        (true, 0) => SentBody::Empty,
        (true, length) => SentBody::Length(length),
    }
}

fn owned(value: Option<&[u8]>) -> Option<Vec<u8>> {
    value.map(<[u8]>::to_vec)
}

fn parse(head: &mut RequestHead, buf: &[u8]) -> Outcome {
    match head.parse(buf) {
        RequestParsed::Partial => Outcome::Partial,
        RequestParsed::HandOff => Outcome::HandOff,
        RequestParsed::Complete => {
            let mut upstream = Vec::new();
            head.write_upstream(buf, &untrusted(head), &mut upstream);
            Outcome::Complete(Box::new(Facts {
                len: head.len,
                method: head.method.as_str().to_string(),
                target: head.target(buf).to_vec(),
                lines: head
                    .lines
                    .iter()
                    .map(|l| (l.name, l.value, l.kind))
                    .collect(),
                content_length: head.content_length,
                chunked: head.chunked,
                close: head.close,
                host: owned(head.host(buf)),
                content_type: owned(head.content_type(buf)),
                user_agent: owned(head.user_agent(buf)),
                request_id: owned(head.request_id(buf)),
                traceparent: owned(head.traceparent(buf)),
                upstream,
            }))
        }
    }
}

/// How a header line is to be sorted, from its name (and for `TE`, its value).
fn expected_kind(name: &str, value: &[u8]) -> Kind {
    match name.to_ascii_lowercase().as_str() {
        "te" if value.eq_ignore_ascii_case(b"trailers") => Kind::Pass,
        "te" | "connection" | "keep-alive" | "proxy-connection" => Kind::Drop,
        "x-junction-version" | "x-junction-admin-token" => Kind::Control,
        "host" => Kind::Host,
        "via" => Kind::Via,
        "forwarded" | "x-real-ip" => Kind::ForwardedClaim,
        "traceparent" => Kind::Traceparent,
        "x-request-id" => Kind::RequestId,
        "x-junction-tag" => Kind::Tag,
        "x-forwarded-for" => Kind::XForwardedFor,
        "x-forwarded-proto" => Kind::XForwardedProto,
        "x-forwarded-host" => Kind::XForwardedHost,
        _ => Kind::Pass,
    }
}

/// A `Content-Length` value: digits only, at most 19 (RFC 9110 8.6), white space around.
fn content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn offset(buf: &[u8], part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    (start, start + part.len())
}

/// What the fast path took is what it may take.
fn check_taken(buf: &[u8], head: &RequestHead, facts: &Facts) {
    assert!(
        facts.len <= buf.len(),
        "head of {} in {}",
        facts.len,
        buf.len()
    );
    assert!(
        buf[..facts.len].ends_with(b"\n"),
        "no blank line at the end"
    );

    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    assert_eq!(
        request.parse(buf).ok(),
        Some(httparse::Status::Complete(facts.len))
    );
    assert_eq!(request.version, Some(1));
    assert_eq!(request.method, Some(facts.method.as_str()));
    assert_ne!(facts.method, "CONNECT");
    assert_eq!(request.path.map(str::as_bytes), Some(&facts.target[..]));

    let target = std::str::from_utf8(&facts.target).expect("an ASCII target");
    assert!(target.starts_with('/'));
    assert!(!target.contains('#'));
    let path = target.split('?').next().unwrap();
    let normal = junction::fuzzing::normalize_path(path).expect("a normal path");
    assert_eq!(normal.path, path, "a path the core would rewrite");
    assert!(!normal.encoded_slash);
    let view = head.route_input(buf, false);
    assert_eq!(view.path(), path);
    assert_eq!(view.method().as_str(), facts.method);

    assert_eq!(
        facts.lines.len(),
        request.headers.len(),
        "a header line lost"
    );
    let mut length = None;
    let mut chunked = false;
    let mut hosts = Vec::new();
    let mut close = false;
    let first = |wanted: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(wanted))
            .map(|h| h.value.to_vec())
    };
    assert_eq!(facts.content_type, first("content-type"));
    assert_eq!(facts.user_agent, first("user-agent"));
    assert_eq!(facts.traceparent, first("traceparent"));
    let id = first("x-request-id").filter(|id| !id.is_empty() && id.len() <= 200);
    assert_eq!(facts.request_id, id);
    for (header, &(name, value, kind)) in request.headers.iter().zip(&facts.lines) {
        assert_eq!(name, offset(buf, header.name.as_bytes()));
        assert_eq!(value, offset(buf, header.value));
        let lower = header.name.to_ascii_lowercase();
        let mut expected = expected_kind(&lower, header.value);
        match lower.as_str() {
            "upgrade" | "expect" => panic!("{lower} taken"),
            "transfer-encoding" => {
                assert!(
                    header.value.eq_ignore_ascii_case(b"chunked"),
                    "a coding taken"
                );
                assert!(!chunked, "transfer-encoding twice");
                chunked = true;
            }
            "content-length" => {
                let value = content_length(header.value).expect("a valid content-length");
                match length {
                    None => length = Some(value),
                    Some(seen) => {
                        assert_eq!(seen, value, "conflicting lengths taken");
                        // Sent on once.
                        expected = Kind::Drop;
                    }
                }
            }
            "host" => hosts.push(header.value),
            "connection" => {
                for token in header.value.split(|&b| b == b',') {
                    let token = token.trim_ascii().to_ascii_lowercase();
                    match &token[..] {
                        b"close" => close = true,
                        b"" | b"keep-alive" | b"upgrade" => {}
                        other => panic!("Connection names {:?}", String::from_utf8_lossy(other)),
                    }
                }
            }
            _ => {}
        }
        assert_eq!(kind, expected, "{lower}");
        // Routing sees what the full path has after its entry phase: no hop-by-hop
        // lines, no tag, no `Forwarded` / `X-Real-IP` from an untrusted client.
        if let (false, Ok(name)) = (
            matches!(kind, Kind::Tag | Kind::Drop | Kind::ForwardedClaim),
            http::HeaderName::from_bytes(header.name.as_bytes()),
        ) {
            assert!(view.has_header(&name), "{name} hidden from routing");
        }
    }
    assert_eq!(facts.chunked, chunked);
    assert!(!(chunked && length.is_some()), "chunked with a length");
    assert_eq!(facts.content_length, length.unwrap_or(0));
    assert_eq!(facts.close, close);
    assert_eq!(hosts.len(), 1, "Host lines");
    assert!(junction::normalize::host::is_valid_authority(hosts[0]));
    assert_eq!(facts.host.as_deref(), Some(hosts[0]));
}

/// The head written for the endpoint.
fn check_upstream(head: &RequestHead, buf: &[u8], forwarding: &Forwarding<'_>) {
    let mut out = Vec::new();
    head.write_upstream(buf, forwarding, &mut out);
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut headers);
    assert_eq!(
        request.parse(&out).ok(),
        Some(httparse::Status::Complete(out.len())),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(request.version, Some(1));
    assert_eq!(request.method, Some(head.method.as_str()));
    assert_eq!(request.path.map(str::as_bytes), Some(head.target(buf)));
    let all = |name: &str| -> Vec<&[u8]> {
        request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    };
    for gone in [
        "transfer-encoding",
        "upgrade",
        "expect",
        "connection",
        "keep-alive",
        "proxy-connection",
        "x-junction-tag",
        "x-junction-version",
        "x-junction-admin-token",
    ] {
        assert!(all(gone).is_empty(), "{gone} sent on");
    }
    for te in all("te") {
        assert!(te.eq_ignore_ascii_case(b"trailers"));
    }
    // The endpoint frames the body as the fast path does.
    let lengths = all("content-length");
    assert!(lengths.len() <= 1, "{} content-length lines", lengths.len());
    match lengths.first() {
        Some(value) => assert_eq!(content_length(value), Some(head.content_length)),
        None => assert_eq!(head.content_length, 0),
    }
    let host = forwarding.host_override.or(head.host(buf));
    assert_eq!(all("host"), vec![host.unwrap()]);
    let forwarded_for = all("x-forwarded-for");
    assert_eq!(forwarded_for.len(), 1);
    assert!(forwarded_for[0].ends_with(forwarding.peer));
    let via = all("via");
    assert_eq!(via.len(), 1);
    assert!(via[0].ends_with(b"1.1 junction"));
    match forwarding.traceparent {
        Some(traceparent) => assert_eq!(all("traceparent"), vec![traceparent]),
        None => assert!(all("traceparent").is_empty()),
    }
    if let Some(id) = forwarding.new_request_id {
        assert_eq!(all("x-request-id"), vec![id]);
    }
    if !forwarding.trusted {
        assert_eq!(forwarded_for[0], forwarding.peer);
        assert_eq!(all("x-forwarded-proto"), vec![forwarding.proto]);
        assert_eq!(all("x-forwarded-host"), vec![head.host(buf).unwrap()]);
        assert!(all("forwarded").is_empty() && all("x-real-ip").is_empty());
    }
}

/// A head parsed before, whose state a later parse must not keep.
const EARLIER: &[u8] = b"POST /earlier?q=1 HTTP/1.1\r\nHost: earlier:1\r\nContent-Length: 5\r\n\
    Connection: close\r\nx-request-id: old\r\ntraceparent: t\r\ncontent-type: a/b\r\n\
    user-agent: u\r\nx-forwarded-proto: https\r\nx-forwarded-host: h\r\n\r\nhello";

fuzz_target!(|buf: &[u8]| {
    assert_plain_request_agrees(buf);
    let mut fresh = RequestHead::default();
    let outcome = parse(&mut fresh, buf);

    // A head reused from an earlier request, or from this one, parses the same.
    let mut reused = RequestHead::default();
    assert!(matches!(parse(&mut reused, EARLIER), Outcome::Complete(_)));
    assert_eq!(parse(&mut reused, buf), outcome, "after another head");
    assert_eq!(parse(&mut reused, buf), outcome, "parsed twice");

    let Outcome::Complete(facts) = &outcome else {
        return;
    };
    check_taken(buf, &fresh, facts);
    check_upstream(&fresh, buf, &untrusted(&fresh));
    check_upstream(&fresh, buf, &trusted(&fresh));
    if fresh.chunked {
        // Its data read: the endpoint gets that length.
        let mut read = RequestHead::default();
        let _ = read.parse(buf);
        let data = buf.len() % 5;
        read.set_chunked_body(data, data * 2 + 5);
        check_upstream(&read, buf, &untrusted(&read));
        check_upstream(&read, buf, &trusted(&read));
    }

    // The head alone parses the same; any less of it is not a head yet.
    let mut alone = RequestHead::default();
    assert_eq!(parse(&mut alone, &buf[..facts.len]), outcome, "head alone");
    for cut in [facts.len - 1, facts.len / 2, buf[0] as usize % facts.len] {
        let mut prefix = RequestHead::default();
        assert_eq!(
            parse(&mut prefix, &buf[..cut]),
            Outcome::Partial,
            "cut at {cut}"
        );
    }
});
