//! The fast path's response head parser (src/fastpath/reply.rs: `parse`) with the body
//! framing both engines share (src/normalize/response.rs: `ContentLength`, `framing`),
//! and the head it writes for the client.
//!
//! Properties, for any bytes, answering a GET and a HEAD:
//! - a head that parses `Complete` has `len <= input length`, ends with its blank line,
//!   parses the same from its own bytes alone, and every strict prefix of it is
//!   `Partial`;
//! - `Content-Length` lines that do not all agree, or are not plain digits, and a
//!   `101` nobody asked for, are refused;
//! - the framing follows RFC 9112 6.3 (no body for HEAD, 204 and 304; a final
//!   `chunked` coding; else the length; else until close), and the connection is
//!   reused only for HTTP/1.1 without `close`, with a known end, and never when a
//!   length came beside `Transfer-Encoding`;
//! - a head the plain reader takes (src/fastpath/plain_head.rs) httparse reads the
//!   same: length, version, status, reason, and every line's name and value;
//! - a 1xx writes nothing; for a final response the client's head is one complete
//!   HTTP/1.1 head with the same status that frames the body as it is relayed (one
//!   `transfer-encoding: chunked` and no length when re-chunked; exactly the length
//!   when length-framed), with Junction's `x-request-id`, no hop-by-hop header, and no
//!   header the endpoint's `Connection` named but those Junction writes itself.

#![no_main]

use std::sync::atomic::AtomicBool;

use junction::fuzzing::{
    ClientHead, Framing, Reply, ReplyParsed, assert_plain_response_agrees, parse_reply,
};
use libfuzzer_sys::fuzz_target;

static NOT_DRAINING: AtomicBool = AtomicBool::new(false);
static DRAINING: AtomicBool = AtomicBool::new(true);

fn get() -> ClientHead<'static> {
    ClientHead {
        head_request: false,
        version_header: Some(b"v1"),
        request_id: b"rid-1",
        close: false,
        draining: &NOT_DRAINING,
    }
}

fn head_while_draining() -> ClientHead<'static> {
    ClientHead {
        head_request: true,
        version_header: None,
        request_id: b"rid-2",
        close: true,
        draining: &DRAINING,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Complete {
        len: usize,
        status: u16,
        framing: Framing,
        reusable: bool,
        close_client: bool,
        retry_after: Option<(usize, usize)>,
        out: Vec<u8>,
    },
    Partial,
    Invalid,
}

fn parse(buf: &[u8], client: &ClientHead<'_>) -> Outcome {
    let mut out = Vec::new();
    match parse_reply(buf, client, &mut out) {
        ReplyParsed::Partial => Outcome::Partial,
        ReplyParsed::Invalid(_) => Outcome::Invalid,
        ReplyParsed::Complete(Reply {
            len,
            status,
            framing,
            reusable,
            close_client,
            retry_after,
            ..
        }) => {
            // The date Junction adds changes each second: compare heads without it.
            let out = String::from_utf8_lossy(&out)
                .split("\r\n")
                .filter(|line| !line.starts_with("date: "))
                .collect::<Vec<_>>()
                .join("\r\n")
                .into_bytes();
            Outcome::Complete {
                len,
                status,
                framing,
                reusable,
                close_client,
                retry_after,
                out,
            }
        }
    }
}

/// A `Content-Length` item: digits only, at most 19, white space around.
fn length_item(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The one length all `Content-Length` lines (each a list) agree on: `Err` if they
/// do not, or one is not a length.
fn agreed_length<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Result<Option<u64>, ()> {
    let mut agreed = None;
    for line in lines {
        for item in line.split(|&b| b == b',') {
            let length = length_item(item).ok_or(())?;
            if agreed.is_some_and(|seen| seen != length) {
                return Err(());
            }
            agreed = Some(length);
        }
    }
    Ok(agreed)
}

fn values<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect()
}

fn check(buf: &[u8], client: &ClientHead<'_>) {
    let mut out = Vec::new();
    let parsed = parse_reply(buf, client, &mut out);
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut response = httparse::Response::new(&mut headers);
    let status = response.parse(buf);
    let reply = match parsed {
        ReplyParsed::Partial => {
            assert_eq!(status.ok(), Some(httparse::Status::Partial));
            assert!(out.is_empty());
            return;
        }
        ReplyParsed::Invalid(_) => {
            // The cases that make it invalid are checked from the other side below.
            return;
        }
        ReplyParsed::Complete(reply) => reply,
    };
    assert!(
        reply.len <= buf.len(),
        "head of {} in {}",
        reply.len,
        buf.len()
    );
    assert!(
        buf[..reply.len].ends_with(b"\n"),
        "no blank line at the end"
    );
    assert_eq!(status.ok(), Some(httparse::Status::Complete(reply.len)));
    assert_eq!(response.code, Some(reply.status));
    assert_ne!(reply.status, 101, "a 101 nobody asked for");
    if reply.is_informational() {
        assert!(out.is_empty(), "a 1xx wrote a client head");
        return;
    }
    let upstream = response.headers;
    let length = agreed_length(values(upstream, "content-length").into_iter())
        .expect("conflicting or invalid content-length taken");
    if let Some((start, end)) = reply.retry_after {
        assert!(start <= end && end <= reply.len);
        assert_eq!(
            Some(&buf[start..end]),
            values(upstream, "retry-after").first().copied()
        );
    }

    // RFC 9112 6.3, with several Transfer-Encoding lines read as one list.
    let coding = values(upstream, "transfer-encoding").last().copied();
    let no_body = client.head_request || reply.status == 204 || reply.status == 304;
    let final_chunked = coding.is_some_and(|coding| {
        let last = coding.rsplit(|&b| b == b',').next().unwrap();
        last.trim_ascii().eq_ignore_ascii_case(b"chunked")
    });
    let expected = match (coding, length) {
        _ if no_body => Framing::Empty,
        (Some(_), _) if final_chunked => Framing::Chunked,
        (Some(_), _) => Framing::UntilClose,
        (None, Some(length)) => Framing::Length(length),
        (None, None) => Framing::UntilClose,
    };
    assert_eq!(reply.framing, expected);

    let mut tokens = Vec::new();
    for line in values(upstream, "connection") {
        for token in line.split(|&b| b == b',') {
            tokens.push(token.trim_ascii().to_ascii_lowercase());
        }
    }
    if reply.reusable {
        assert_eq!(response.version, Some(1), "HTTP/1.0 connection reused");
        assert!(!tokens.iter().any(|t| t == b"close"), "reused after close");
        assert_ne!(reply.framing, Framing::UntilClose, "reused with no end");
        assert!(
            !(coding.is_some() && length.is_some()),
            "reused after CL+TE"
        );
    }
    assert_eq!(
        reply.close_client,
        client.close || client.draining.load(std::sync::atomic::Ordering::Relaxed)
    );

    // The client's head.
    let mut client_headers = [httparse::EMPTY_HEADER; 128];
    let mut written = httparse::Response::new(&mut client_headers);
    assert_eq!(
        written.parse(&out).ok(),
        Some(httparse::Status::Complete(out.len())),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(written.version, Some(1));
    assert_eq!(written.code, Some(reply.status));
    let sent = written.headers;
    let codings = values(sent, "transfer-encoding");
    let lengths = values(sent, "content-length");
    match reply.framing {
        Framing::Chunked | Framing::UntilClose => {
            assert_eq!(codings, vec![b"chunked"]);
            assert!(lengths.is_empty(), "a length beside re-chunking");
        }
        Framing::Length(n) => {
            assert!(codings.is_empty());
            assert_eq!(lengths.len(), 1);
            assert_eq!(length_item(lengths[0]), Some(n));
        }
        Framing::Empty => {
            assert!(codings.is_empty());
            assert!(lengths.len() <= 1);
            if let Some(line) = lengths.first() {
                assert_eq!(length_item(line), length);
            }
        }
    }
    assert_eq!(values(sent, "x-request-id"), vec![client.request_id]);
    if let Some(version) = client.version_header {
        assert_eq!(values(sent, "x-junction-version"), vec![version]);
    }
    if reply.close_client {
        assert_eq!(values(sent, "connection"), vec![b"close"]);
    } else {
        assert!(values(sent, "connection").is_empty());
    }
    for gone in ["keep-alive", "proxy-connection", "upgrade"] {
        assert!(values(sent, gone).is_empty(), "{gone} relayed");
    }
    for te in values(sent, "te") {
        assert!(te.eq_ignore_ascii_case(b"trailers"));
    }
    assert!(!values(sent, "date").is_empty() || tokens.iter().any(|t| t == b"date"));
    let own = [
        "transfer-encoding",
        "content-length",
        "date",
        "x-junction-version",
        "x-request-id",
        "connection",
    ];
    for token in &tokens {
        let Ok(token) = std::str::from_utf8(token) else {
            continue;
        };
        if !token.is_empty() && !own.contains(&token) {
            assert!(
                values(sent, token).is_empty(),
                "{token} named by Connection, relayed"
            );
        }
    }
}

fuzz_target!(|buf: &[u8]| {
    assert_plain_response_agrees(buf);
    for client in [get(), head_while_draining()] {
        check(buf, &client);
        let outcome = parse(buf, &client);
        let Outcome::Complete { len, .. } = outcome else {
            continue;
        };
        // The head alone parses the same; any less of it is not a head yet.
        assert_eq!(parse(&buf[..len], &client), outcome, "head alone");
        for cut in [len - 1, len / 2, buf[0] as usize % len] {
            assert_eq!(
                parse(&buf[..cut], &client),
                Outcome::Partial,
                "cut at {cut}"
            );
        }
    }
});
