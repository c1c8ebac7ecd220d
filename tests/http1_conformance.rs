//! HTTP/1.1 conformance on the wire. Both sides of the proxy are raw TCP
//! (tests/support/raw_http.rs): a client that writes literal request bytes and parses
//! exactly one response at a time, and scripted upstreams that answer with literal bytes chosen by each test and record
//! every request (head and body, as the proxy sent them) and every connection. Unlike
//! the tests with reqwest and hyper, nothing here forgives a framing mistake, so any
//! HTTP/1.1 engine behind the listener (hyper's or a hand-written fast path) is held
//! to the same observable behaviour: message framing in both directions, keep-alive
//! and connection reuse, hop-by-hop and forwarding headers, interim responses,
//! pipelining, streaming and the proxy's own error answers.

use crate::support;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use support::proxy::RunningProxy;
use support::raw_http::*;
use support::travel::{Extra, Travel, start};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Deterministic, non-repeating-at-short-range bytes: a shifted or dropped slice shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn assert_same_bytes(what: &str, got: &[u8], expected: &[u8]) {
    if got != expected {
        let first_difference = got
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "{what}: {} bytes instead of {}, first difference at byte {first_difference}",
            got.len(),
            expected.len()
        );
    }
}

// ---------------------------------------------------------------------------------
// The proxy: one listener, one pool with the upstream, one catch-all route.
// ---------------------------------------------------------------------------------

/// Every case runs on both engines: `Travel::Hyper` and `Travel::Fast` (which hands
/// what it does not handle itself to hyper).
async fn proxy_to(path: Travel, upstream: &Upstream) -> RunningProxy {
    start(path, &[upstream.url()], &Extra::default()).await
}

// ---------------------------------------------------------------------------------
// Response framing.
// ---------------------------------------------------------------------------------

/// A chunked answer streamed in several writes (with its framing split across them)
/// reaches the client as valid chunked framing with the exact body, and the client
/// connection is ready for the next request afterwards.
async fn chunked_upstream_response_reaches_the_client_as_valid_chunks(path: Travel) {
    let upstream = Upstream::start(|seen| {
        if seen.path != "/chunked" {
            return echo_path(seen);
        }
        vec![
            Step::Write(chunked_head("text/plain")),
            Step::Yield,
            Step::Write(chunk(b"first, ")),
            Step::Yield,
            // A 0x16-byte chunk split between its size digits, inside its data and
            // between the CR and LF that end it.
            Step::Write(b"1".to_vec()),
            Step::Yield,
            Step::Write(b"6\r\nsecond, lon".to_vec()),
            Step::Yield,
            Step::Write(b"ger chunk, \r".to_vec()),
            Step::Yield,
            Step::Write(b"\n".to_vec()),
            Step::Yield,
            Step::Write(chunk(b"third")),
            Step::Yield,
            Step::Write(LAST_CHUNK.to_vec()),
        ]
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    let response = client.get("/chunked").await;
    assert_eq!(response.status, 200, "{}", response.head.raw);
    assert_eq!(
        response.framing,
        Framing::Chunked,
        "a streamed body of unknown length is sent chunked: {}",
        response.head.raw
    );
    assert_eq!(response.text(), "first, second, longer chunk, third");
    assert!(response.raw_body.ends_with(LAST_CHUNK), "{response:?}");

    let next = client.get("/after-chunked").await;
    assert_eq!(next.status, 200);
    assert_eq!(next.text(), "/after-chunked");
}

/// An answer without Content-Length or Transfer-Encoding ends when the upstream
/// closes. The client must get all of it, re-framed or close-delimited, and the
/// response must end.
async fn close_delimited_upstream_response_arrives_whole(path: Travel) {
    let upstream = Upstream::start(|seen| {
        if seen.path != "/until-close" {
            return echo_path(seen);
        }
        vec![
            Step::Write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec()),
            Step::Yield,
            Step::Write(b"read until ".to_vec()),
            Step::Yield,
            Step::Write(b"the upstream closes".to_vec()),
            Step::Close,
        ]
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    let response = client.get("/until-close").await;
    assert_eq!(response.status, 200, "{}", response.head.raw);
    assert_eq!(response.text(), "read until the upstream closes");

    // Re-framed and not closing: the connection must still work.
    let closing = response.head.tokens("connection").contains(&"close".into());
    if response.framing != Framing::Close && !closing {
        let next = client.get("/after-close-delimited").await;
        assert_eq!(next.status, 200);
        assert_eq!(next.text(), "/after-close-delimited");
    }
}

/// A HEAD answer declares a length but has no body: neither the client connection nor
/// the upstream connection may wait for those 1234 bytes.
async fn head_response_has_no_body_and_the_connection_stays_in_step(path: Travel) {
    let upstream = Upstream::start(|seen| {
        if seen.method != "HEAD" {
            return echo_path(seen);
        }
        vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n".to_vec(),
        )]
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    client
        .send(format!("HEAD /head HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await;
    let (_, head) = client.final_response("HEAD").await;
    assert_eq!(head.status, 200, "{}", head.head.raw);
    assert!(head.body.is_empty());
    if let Some(length) = head.head.content_length() {
        assert_eq!(
            length, 1234,
            "the length a GET would have: {}",
            head.head.raw
        );
    }

    let next = client.get("/after-head").await;
    assert_eq!(next.status, 200, "{}", next.head.raw);
    assert_eq!(next.text(), "/after-head");
    // An upstream connection still waiting for a body would not have been reused.
    assert_eq!(upstream.connections(), 1, "{:#?}", upstream.seen());
}

/// 204 and 304 never have a body: each is followed by a request on the same client
/// connection (and the same upstream connection), answered correctly.
async fn no_content_and_not_modified_have_no_body(path: Travel) {
    let upstream = Upstream::start(|seen| match seen.path.as_str() {
        "/no-content" => vec![Step::Write(
            b"HTTP/1.1 204 No Content\r\nX-Kind: empty\r\n\r\n".to_vec(),
        )],
        "/not-modified" => vec![Step::Write(
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_vec(),
        )],
        _ => echo_path(seen),
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    let no_content = client.get("/no-content").await;
    assert_eq!(no_content.status, 204, "{}", no_content.head.raw);
    assert_eq!(no_content.head.get("x-kind"), Some("empty"));
    let next = client.get("/after-204").await;
    assert_eq!(
        (next.status, next.text().as_str()),
        (200, "/after-204"),
        "{}",
        next.head.raw
    );

    client
        .send(
            format!("GET /not-modified HTTP/1.1\r\nHost: {HOST}\r\nIf-None-Match: \"v1\"\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let (_, not_modified) = client.final_response("GET").await;
    assert_eq!(not_modified.status, 304, "{}", not_modified.head.raw);
    assert_eq!(not_modified.head.get("etag"), Some("\"v1\""));
    assert!(
        !not_modified.head.has("transfer-encoding"),
        "a 304 has no body to encode: {}",
        not_modified.head.raw
    );
    let next = client.get("/after-304").await;
    assert_eq!(
        (next.status, next.text().as_str()),
        (200, "/after-304"),
        "{}",
        next.head.raw
    );
    assert_eq!(upstream.connections(), 1, "{:#?}", upstream.seen());
}

/// Two requests in one write are answered in order.
async fn pipelined_requests_are_answered_in_order(path: Travel) {
    let upstream = Upstream::start(echo_path).await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    client
        .send(format!("{}{}", get("/first"), get("/second")).as_bytes())
        .await;
    let first = client.response("GET").await;
    let second = client.response("GET").await;
    assert_eq!((first.status, first.text().as_str()), (200, "/first"));
    assert_eq!((second.status, second.text().as_str()), (200, "/second"));
    let paths: Vec<String> = upstream.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/first", "/second"]);
}

// ---------------------------------------------------------------------------------
// Request bodies.
// ---------------------------------------------------------------------------------

fn body_length_reply(seen: &Seen) -> Vec<Step> {
    vec![Step::Write(ok(format!("{} bytes", seen.body.len())))]
}

/// Content-Length bodies reach the upstream byte for byte, however the client's
/// writes split them, small or large.
async fn content_length_request_bodies_arrive_intact(path: Travel) {
    let upstream = Upstream::start(body_length_reply).await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    client
        .send(
            format!(
                "POST /parts HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/octet-stream\r\nContent-Length: 19\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    for part in [&b"alpha-"[..], b"bravo-", b"charlie"] {
        tokio::task::yield_now().await;
        client.send(part).await;
    }
    let (_, response) = client.final_response("POST").await;
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "19 bytes")
    );
    assert_eq!(upstream.only_request().body, b"alpha-bravo-charlie");

    let large = pattern(200 * 1024);
    let mut request = format!(
        "POST /large HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        large.len()
    )
    .into_bytes();
    request.extend_from_slice(&large);
    client.send(&request).await;
    let (_, response) = client.final_response("POST").await;
    assert_eq!(
        (response.status, response.text()),
        (200, format!("{} bytes", large.len()))
    );
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].path, "/large");
    assert_same_bytes("the 200 KiB body at the upstream", &seen[1].body, &large);
}

/// A chunked request body (with a chunk extension) reaches the upstream as the same
/// bytes; the proxy may frame it as it likes, as long as the framing is valid.
async fn chunked_request_body_arrives_dechunked(path: Travel) {
    let upstream = Upstream::start(body_length_reply).await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    client
        .send(
            format!("POST /chunked-in HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
                .as_bytes(),
        )
        .await;
    for part in [
        &b"4\r\nWiki\r\n"[..],
        b"5;note=ext\r\npedia\r\n",
        b"E\r\n in\r\n\r\nchunks.\r\n",
        b"0\r\n\r\n",
    ] {
        tokio::task::yield_now().await;
        client.send(part).await;
    }
    let (_, response) = client.final_response("POST").await;
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "23 bytes"),
        "{}",
        response.head.raw
    );
    let seen = upstream.only_request();
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        "Wikipedia in\r\n\r\nchunks."
    );
}

// ---------------------------------------------------------------------------------
// Connection management towards the client.
// ---------------------------------------------------------------------------------

/// `Connection: close` from the client: the response, then the end of the connection.
async fn client_connection_close_gets_the_response_then_eof(path: Travel) {
    let upstream = Upstream::start(echo_path).await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    client
        .send(format!("GET /bye HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes())
        .await;
    let (_, response) = client.final_response("GET").await;
    assert_eq!((response.status, response.text().as_str()), (200, "/bye"));
    client.assert_closed("a Connection: close request").await;
}

/// An HTTP/1.0 request without keep-alive is answered and the connection closed; the
/// answer is never chunked (HTTP/1.0 does not know the chunked coding), even when the
/// upstream's was.
async fn http10_request_is_answered_then_closed(path: Travel) {
    let upstream = Upstream::start(|seen| {
        if seen.path != "/old-chunked" {
            return echo_path(seen);
        }
        vec![
            Step::Write(chunked_head("text/plain")),
            Step::Write(chunk(b"streamed to ")),
            Step::Yield,
            Step::Write(chunk(b"an old client")),
            Step::Write(LAST_CHUNK.to_vec()),
        ]
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;

    for (path, expected) in [
        ("/old", "/old"),
        ("/old-chunked", "streamed to an old client"),
    ] {
        let mut client = RawClient::connect(&proxy).await;
        client
            .send(format!("GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n").as_bytes())
            .await;
        let (_, response) = client.final_response("GET").await;
        assert_eq!(response.status, 200, "{path}: {}", response.head.raw);
        assert!(
            !response.head.has("transfer-encoding"),
            "{path}: Transfer-Encoding sent to an HTTP/1.0 client (RFC 9112 6.1): {}",
            response.head.raw
        );
        assert_eq!(response.text(), expected, "{path}");
        client.assert_closed(&format!("HTTP/1.0 {path}")).await;
    }
}

/// A request the proxy cannot parse gets a 4xx and never reaches the upstream; the
/// proxy goes on serving.
async fn malformed_request_gets_4xx_and_the_proxy_keeps_serving(path: Travel) {
    let upstream = Upstream::start(echo_path).await;
    let proxy = proxy_to(path, &upstream).await;

    let mut client = RawClient::connect(&proxy).await;
    client
        .send(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nbad header line\r\n\r\n").as_bytes())
        .await;
    let response = client.response("GET").await;
    assert!(
        (400..500).contains(&response.status),
        "a malformed request answered {}: {}",
        response.status,
        response.head.raw
    );

    let mut fresh = RawClient::connect(&proxy).await;
    let next = fresh.get("/fine").await;
    assert_eq!((next.status, next.text().as_str()), (200, "/fine"));
    assert_eq!(upstream.only_request().path, "/fine");
}

// ---------------------------------------------------------------------------------
// Hop-by-hop and forwarding headers.
// ---------------------------------------------------------------------------------

/// Hop-by-hop headers (and those `Connection` names) stop at the proxy both ways;
/// end-to-end headers and `TE: trailers` pass.
async fn hop_by_hop_headers_are_removed_both_ways(path: Travel) {
    let upstream = Upstream::start(|_seen| {
        vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nConnection: x-up\r\nx-up: 1\r\nKeep-Alive: timeout=5\r\nX-End: kept\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        )]
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    client
        .send(
            format!(
                "GET /hop HTTP/1.1\r\nHost: {HOST}\r\nConnection: keep-alive, x-secret\r\nx-secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\nX-Kept: yes\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    let (_, response) = client.final_response("GET").await;
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    let seen = upstream.only_request();
    for name in ["x-secret", "keep-alive", "proxy-connection", "te"] {
        assert!(
            !seen.head.has(name),
            "the upstream saw `{name}`:\n{}",
            seen.head.raw
        );
    }
    // The proxy may say what it wants about its own hop, but not pass the client's
    // connection options on.
    assert!(
        !seen.head.tokens("connection").contains(&"x-secret".into()),
        "the client's Connection options reached the upstream:\n{}",
        seen.head.raw
    );
    assert_eq!(seen.head.get("x-kept"), Some("yes"), "{}", seen.head.raw);
    for name in ["x-up", "keep-alive"] {
        assert!(
            !response.head.has(name),
            "the client saw `{name}`:\n{}",
            response.head.raw
        );
    }
    assert!(
        !response.head.tokens("connection").contains(&"x-up".into()),
        "the upstream's Connection options reached the client:\n{}",
        response.head.raw
    );
    assert_eq!(response.head.get("x-end"), Some("kept"));

    client
        .send(format!("GET /trailers HTTP/1.1\r\nHost: {HOST}\r\nTE: trailers\r\n\r\n").as_bytes())
        .await;
    let (_, response) = client.final_response("GET").await;
    assert_eq!(response.status, 200);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].head.get("te"),
        Some("trailers"),
        "`TE: trailers` is kept:\n{}",
        seen[1].head.raw
    );
}

/// X-Forwarded-*, Via, Host and the request id, as the upstream and the client see
/// them.
async fn forwarding_headers_and_request_id(path: Travel) {
    let upstream = Upstream::start(echo_path).await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    // From an untrusted peer (no trusted_proxies): X-Forwarded-For is replaced.
    client
        .send(
            format!(
                "GET /forwarded HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: 1.2.3.4\r\nVia: 1.0 other\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    let (_, response) = client.final_response("GET").await;
    assert_eq!(response.status, 200);
    let seen = upstream.only_request();
    let head = &seen.head;
    assert_eq!(head.all("x-forwarded-for"), ["127.0.0.1"], "{}", head.raw);
    assert_eq!(head.all("x-forwarded-proto"), ["http"], "{}", head.raw);
    assert_eq!(head.all("x-forwarded-host"), [HOST], "{}", head.raw);
    assert_eq!(
        head.joined("via").as_deref(),
        Some("1.0 other, 1.1 junction"),
        "{}",
        head.raw
    );
    assert_eq!(
        head.all("host"),
        [HOST],
        "the Host is unchanged: {}",
        head.raw
    );
    let ids = head.all("x-request-id");
    assert_eq!(ids.len(), 1, "one request id upstream: {}", head.raw);
    assert!(!ids[0].is_empty());
    assert_eq!(
        response.head.all("x-request-id"),
        ids,
        "the client gets the id the upstream saw: {}",
        response.head.raw
    );

    let response = client.get("/no-via").await;
    assert_eq!(response.status, 200);
    let seen = upstream.seen();
    let via = seen[1].head.joined("via").unwrap_or_default();
    assert!(via.contains("1.1 junction"), "{}", seen[1].head.raw);

    client
        .send(
            format!("GET /with-id HTTP/1.1\r\nHost: {HOST}\r\nX-Request-Id: abc-123\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let (_, response) = client.final_response("GET").await;
    assert_eq!(response.status, 200);
    let seen = upstream.seen();
    assert_eq!(
        seen[2].head.all("x-request-id"),
        ["abc-123"],
        "{}",
        seen[2].head.raw
    );
    assert_eq!(
        response.head.all("x-request-id"),
        ["abc-123"],
        "{}",
        response.head.raw
    );
}

// ---------------------------------------------------------------------------------
// Upstream connections.
// ---------------------------------------------------------------------------------

/// An upstream that closes each connection right after answering on it (keep-alive
/// as far as the headers go): every later request finds its idle connection stale
/// and must still be answered, on a fresh one.
async fn stale_upstream_connection_is_replaced(path: Travel) {
    let mut upstream = Upstream::start(|seen| {
        let mut steps = echo_path(seen);
        steps.push(Step::Close);
        steps
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    for round in 1..=3 {
        let path = format!("/round-{round}");
        let response = client.get(&path).await;
        assert_eq!(
            (response.status, response.text()),
            (200, path.clone()),
            "{}",
            response.head.raw
        );
        // The connection the proxy would reuse is closed before the next request.
        assert_eq!(upstream.next_end().await, Ended::ByScript(round));
    }
    assert_eq!(upstream.connections(), 3);
    let connections: Vec<usize> = upstream.seen().iter().map(|s| s.connection).collect();
    assert_eq!(connections, [1, 2, 3]);
}

/// An upstream answer with `Connection: close` ends that upstream connection (the
/// proxy closes it, even though the upstream leaves it open) and the next request
/// goes on a new one; the client's connection is not affected.
async fn upstream_connection_close_is_honoured_without_closing_the_client(path: Travel) {
    let mut upstream = Upstream::start(|seen| {
        let body = seen.path.as_bytes();
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(body);
        // Deliberately left open: only the header says the connection is done.
        vec![Step::Write(reply)]
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    for round in 1..=3 {
        let path = format!("/close-{round}");
        let response = client.get(&path).await;
        assert_eq!(
            (response.status, response.text()),
            (200, path.clone()),
            "{}",
            response.head.raw
        );
        // RFC 9112 9.6: a client that receives `close` must stop using the
        // connection and close it.
        assert_eq!(upstream.next_end().await, Ended::ByProxy(round));
    }
    assert_eq!(upstream.connections(), 3);
    let connections: Vec<usize> = upstream.seen().iter().map(|s| s.connection).collect();
    assert_eq!(connections, [1, 2, 3]);
}

/// Sequential requests on one client connection share one upstream connection.
async fn sequential_requests_reuse_one_upstream_connection(path: Travel) {
    let upstream = Upstream::start(echo_path).await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    for n in 0..20 {
        let path = format!("/seq/{n}");
        let response = client.get(&path).await;
        assert_eq!((response.status, response.text()), (200, path));
    }
    assert_eq!(upstream.seen().len(), 20);
    assert_eq!(
        upstream.connections(),
        1,
        "20 sequential requests over one kept-alive upstream connection"
    );
}

// ---------------------------------------------------------------------------------
// Upstream failures.
// ---------------------------------------------------------------------------------

/// An answer that is not HTTP gets the client a JSON 502, and the proxy goes on
/// serving.
async fn malformed_upstream_response_is_502_json(path: Travel) {
    let upstream = Upstream::start(|seen| match seen.path.as_str() {
        "/bad-status" => vec![Step::Write(b"HTTP/1.1 abc\r\n\r\n".to_vec()), Step::Close],
        "/garbage" => vec![
            Step::Write(b"\x00\x01\x02 this is not HTTP at all\r\n\r\n".to_vec()),
            Step::Close,
        ],
        _ => echo_path(seen),
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;

    for path in ["/bad-status", "/garbage"] {
        let mut client = RawClient::connect(&proxy).await;
        let response = client.get(path).await;
        assert_eq!(response.status, 502, "{path}: {}", response.head.raw);
        let kind = response.error_type();
        assert!(kind.starts_with("upstream_"), "{path}: error type {kind:?}");

        let mut fresh = RawClient::connect(&proxy).await;
        let next = fresh.get("/fine").await;
        assert_eq!(
            (next.status, next.text().as_str()),
            (200, "/fine"),
            "after {path}"
        );
    }
}

/// Nothing listening: 502 `upstream_connect_failed`. Listening but never answering,
/// past `timeouts.response_headers`: 504 `upstream_timeout`.
async fn connect_failure_is_502_and_a_silent_upstream_is_504(path: Travel) {
    let dead_port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().unwrap().port()
    };
    let proxy = start(
        path,
        &[format!("http://127.0.0.1:{dead_port}")],
        &Extra::default(),
    )
    .await;
    let mut client = RawClient::connect(&proxy).await;
    let response = client.get("/unreachable").await;
    assert_eq!(response.status, 502, "{}", response.head.raw);
    assert_eq!(response.error_type(), "upstream_connect_failed");

    let silent = Upstream::start(|_seen| vec![Step::Hang]).await;
    let extra = Extra {
        route: r#"timeouts = { response_headers = "300ms" }"#,
        ..Extra::default()
    };
    let proxy = start(path, &[silent.url()], &extra).await;
    let mut client = RawClient::connect(&proxy).await;
    let response = client.get("/silent").await;
    assert_eq!(response.status, 504, "{}", response.head.raw);
    assert_eq!(response.error_type(), "upstream_timeout");
    assert_eq!(
        silent.only_request().path,
        "/silent",
        "the request was sent"
    );
}

// ---------------------------------------------------------------------------------
// Interim responses.
// ---------------------------------------------------------------------------------

/// `103 Early Hints` before the answer: the client ends up with the final response and
/// its body (whether or not the 103 is passed on), and the connection stays in step.
async fn early_hints_then_the_final_response(path: Travel) {
    let upstream = Upstream::start(|seen| {
        if seen.path != "/hints" {
            return echo_path(seen);
        }
        vec![
            Step::Write(
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n".to_vec(),
            ),
            Step::Yield,
            Step::Write(ok("the final answer")),
        ]
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    let response = {
        client.send(get("/hints").as_bytes()).await;
        let (interim, response) = client.final_response("GET").await;
        for hint in &interim {
            assert_eq!(hint.status, 103, "{}", hint.head.raw);
        }
        response
    };
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "the final answer"),
        "{}",
        response.head.raw
    );
    let next = client.get("/after-hints").await;
    assert_eq!((next.status, next.text().as_str()), (200, "/after-hints"));
}

/// `Expect: 100-continue`: the client waits a moment for `100 Continue` (curl waits
/// 1 s) and then sends its body either way; it gets the 200, the upstream the body.
async fn expect_100_continue_post_is_forwarded(path: Travel) {
    let upstream = Upstream::start(|seen| {
        vec![Step::Write(ok(format!(
            "got {}",
            String::from_utf8_lossy(&seen.body)
        )))]
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    client
        .send(
            format!(
                "POST /expect HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    // Only a head is awaited here, which a timeout cannot cut in half: its bytes stay
    // buffered.
    let early = tokio::time::timeout(Duration::from_secs(1), client.read_head("POST")).await;
    if let Ok((status, head, _)) = early {
        assert_eq!(
            status, 100,
            "a final answer before the body was sent: {}",
            head.raw
        );
    }
    client.send(b"hello").await;
    let (interim, response) = client.final_response("POST").await;
    for continued in &interim {
        assert_eq!(continued.status, 100, "{}", continued.head.raw);
    }
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "got hello"),
        "{}",
        response.head.raw
    );
    assert_eq!(upstream.only_request().body, b"hello");
}

// ---------------------------------------------------------------------------------
// Large and streamed bodies.
// ---------------------------------------------------------------------------------

/// 1 MiB answers arrive byte for byte, with a Content-Length and chunked.
async fn one_mebibyte_responses_arrive_intact(path: Travel) {
    const SIZE: usize = 1 << 20;
    let upstream = Upstream::start(|seen| {
        let body = pattern(SIZE);
        match seen.path.as_str() {
            "/big-length" => vec![Step::Write(ok(&body))],
            "/big-chunked" => {
                let mut steps = vec![Step::Write(chunked_head("application/octet-stream"))];
                // Chunks of uneven sizes, a few per write.
                let sizes = [1, 100, 4096, 16_384, 65_536, 7, 30_000];
                let (mut at, mut n) = (0, 0);
                while at < body.len() {
                    let mut write = Vec::new();
                    for _ in 0..3 {
                        let size = sizes[n % sizes.len()].min(body.len() - at);
                        n += 1;
                        if size > 0 {
                            write.extend_from_slice(&chunk(&body[at..at + size]));
                            at += size;
                        }
                    }
                    steps.push(Step::Write(write));
                }
                steps.push(Step::Write(LAST_CHUNK.to_vec()));
                steps
            }
            _ => echo_path(seen),
        }
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;
    let expected = pattern(SIZE);

    for path in ["/big-length", "/big-chunked"] {
        let response = client.get(path).await;
        assert_eq!(response.status, 200, "{path}: {}", response.head.raw);
        assert_same_bytes(path, &response.body, &expected);
    }
}

/// An event stream is passed on event by event: the first event reaches the client
/// while the upstream is still holding the second.
async fn sse_events_are_not_buffered(path: Travel) {
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let upstream = Upstream::start(move |_seen| {
        vec![
            Step::Write(chunked_head("text/event-stream")),
            Step::Write(chunk(b"data: one\n\n")),
            Step::Wait(held.clone()),
            Step::Write(chunk(b"data: two\n\n")),
            Step::Write(LAST_CHUNK.to_vec()),
        ]
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;
    let mut client = RawClient::connect(&proxy).await;

    client
        .send(
            format!("GET /events HTTP/1.1\r\nHost: {HOST}\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let (status, head, framing) = within("the event stream's head", client.read_head("GET")).await;
    assert_eq!(status, 200, "{}", head.raw);
    assert_eq!(head.get("content-type"), Some("text/event-stream"));
    assert!(
        matches!(framing, Framing::Chunked | Framing::Close),
        "an open-ended stream: {}",
        head.raw
    );

    let mut received = Vec::new();
    let mut raw = Vec::new();
    within("the first event, while the second is held", async {
        while find(&received, b"\n\n").is_none() {
            match framing {
                Framing::Chunked => {
                    let data = client.wire.read_chunk(&mut raw).await.expect("a chunk");
                    received.extend(data.expect("the stream ended before its first event"));
                }
                _ => {
                    assert!(client.wire.fill().await.expect("read") > 0, "ended early");
                    received.append(&mut client.wire.buffer);
                }
            }
        }
    })
    .await;
    assert_eq!(String::from_utf8_lossy(&received), "data: one\n\n");

    release.notify_one();
    within("the rest of the stream", async {
        match framing {
            Framing::Chunked => {
                let (rest, _) = client.wire.read_chunked().await.expect("the rest");
                received.extend(rest);
            }
            _ => received.extend(client.wire.read_to_eof().await.expect("the rest")),
        }
    })
    .await;
    assert_eq!(
        String::from_utf8_lossy(&received),
        "data: one\n\ndata: two\n\n"
    );
}

/// An upstream whose chunked framing is invalid (a bare LF where RFC 9112 7.1 wants
/// CRLF) must not have those bytes passed on as they are: a client or cache that
/// reads chunk boundaries differently from the proxy is how responses get
/// desynchronised. The proxy may answer 502, close without answering, cut the body
/// short (close before the last chunk) or re-frame what it understood, but
/// everything the client gets must be valid chunked framing.
async fn invalid_upstream_chunk_framing_is_not_passed_on(path: Travel) {
    let upstream = Upstream::start(|seen| {
        let body: &[u8] = match seen.path.as_str() {
            "/bare-lf-after-data" => b"5\r\nhello\n5\r\nworld\r\n0\r\n\r\n",
            "/bare-lf-after-size" => b"5\nhello\r\n5\r\nworld\r\n0\r\n\r\n",
            _ => return echo_path(seen),
        };
        vec![
            Step::Write(chunked_head("text/plain")),
            Step::Write(body.to_vec()),
            // Closed, so that a proxy that waits for more ends too.
            Step::Close,
        ]
    })
    .await;
    let proxy = proxy_to(path, &upstream).await;

    for target in ["/bare-lf-after-data", "/bare-lf-after-size"] {
        let mut client = RawClient::connect(&proxy).await;
        client.send(get(target).as_bytes()).await;
        // Nothing at all (the head was never flushed before the body broke) is a
        // clean refusal too.
        let raw_head = within(target, client.wire.read_head()).await;
        let Some(raw_head) = raw_head.unwrap_or_else(|e| panic!("{target}: {e}")) else {
            continue;
        };
        let head = Head::parse(&raw_head);
        let status = parse_status(&head);
        check_response_head(status, &head);
        if status == 502 {
            continue;
        }
        let framing = response_framing("GET", status, &head);
        assert_eq!(status, 200, "{target}: {}", head.raw);
        // Bytes passed on must frame the same for every parser after the proxy: a bare
        // LF in chunk framing is refused, not relayed (both paths close the connection).
        let mut raw = Vec::new();
        let read = within(target, async {
            match framing {
                Framing::Chunked => loop {
                    match client.wire.read_chunk(&mut raw).await {
                        Ok(Some(_)) => {}
                        Ok(None) => return Ok(()),
                        Err(error) => return Err(error),
                    }
                },
                _ => client.wire.read_to_eof().await.map(drop),
            }
        })
        .await;
        if let Err(error) = read {
            assert!(
                error.kind() != io::ErrorKind::InvalidData,
                "{target}: the client got invalid chunked framing ({error}): {:?}",
                String::from_utf8_lossy(&raw)
            );
        }
    }
    let mut fresh = RawClient::connect(&proxy).await;
    let next = fresh.get("/fine").await;
    assert_eq!((next.status, next.text().as_str()), (200, "/fine"));
}

// ---------------------------------------------------------------------------------
// Headers the proxy adds to every response.
// ---------------------------------------------------------------------------------

/// IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 5.6.7).
fn is_imf_fixdate(value: &str) -> bool {
    let bytes = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    value.len() == 29
        && ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&&value[..3])
        && &value[3..5] == ", "
        && digits(5..7)
        && [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .contains(&&value[8..11])
        && digits(12..16)
        && digits(17..19)
        && digits(20..22)
        && digits(23..25)
        && value.ends_with(" GMT")
}

/// Every response has one valid `Date` (the upstream's when it sent one), and
/// every answer from the pool carries its `x-junction-version`.
async fn every_response_has_a_date_and_the_pool_version(path: Travel) {
    let upstream = Upstream::start(|seen| match seen.path.as_str() {
        "/dated" => vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        )],
        "/empty" => vec![Step::Write(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())],
        "/stream" => vec![
            Step::Write(chunked_head("text/plain")),
            Step::Write(chunk(b"streamed")),
            Step::Write(LAST_CHUNK.to_vec()),
        ],
        "/broken" => vec![Step::Write(b"not http\r\n\r\n".to_vec()), Step::Close],
        _ => echo_path(seen),
    })
    .await;
    let extra = Extra {
        pool: r#"version = "v1""#,
        ..Extra::default()
    };
    let proxy = start(path, &[upstream.url()], &extra).await;
    let mut client = RawClient::connect(&proxy).await;

    let mut responses = Vec::new();
    for path in ["/plain", "/dated", "/empty", "/stream"] {
        responses.push((format!("GET {path}"), client.get(path).await));
    }
    client
        .send(format!("HEAD /plain HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await;
    responses.push(("HEAD /plain".into(), client.final_response("HEAD").await.1));
    for (what, response) in &responses {
        let dates = response.head.all("date");
        assert_eq!(dates.len(), 1, "{what}: one Date: {}", response.head.raw);
        assert!(is_imf_fixdate(dates[0]), "{what}: {:?}", dates[0]);
        assert_eq!(
            response.head.all("x-junction-version"),
            ["v1"],
            "{what}: {}",
            response.head.raw
        );
    }
    assert_eq!(
        responses[1].1.head.get("date"),
        Some("Sun, 06 Nov 1994 08:49:37 GMT"),
        "the origin's Date is passed on unchanged"
    );

    // The proxy's own answers have a Date too.
    let mut fresh = RawClient::connect(&proxy).await;
    let broken = fresh.get("/broken").await;
    assert_eq!(broken.status, 502, "{}", broken.head.raw);
    let dates = broken.head.all("date");
    assert_eq!(
        dates.len(),
        1,
        "a proxy-made 502 has a Date: {}",
        broken.head.raw
    );
    assert!(is_imf_fixdate(dates[0]), "{:?}", dates[0]);
}

// ---------------------------------------------------------------------------------
// Every case on both engines: `CASE::hyper_path` and `CASE::fast_path`.
// ---------------------------------------------------------------------------------

on_both_engines!(
    chunked_upstream_response_reaches_the_client_as_valid_chunks,
    close_delimited_upstream_response_arrives_whole,
    head_response_has_no_body_and_the_connection_stays_in_step,
    no_content_and_not_modified_have_no_body,
    pipelined_requests_are_answered_in_order,
    content_length_request_bodies_arrive_intact,
    chunked_request_body_arrives_dechunked,
    client_connection_close_gets_the_response_then_eof,
    http10_request_is_answered_then_closed,
    malformed_request_gets_4xx_and_the_proxy_keeps_serving,
    hop_by_hop_headers_are_removed_both_ways,
    forwarding_headers_and_request_id,
    stale_upstream_connection_is_replaced,
    upstream_connection_close_is_honoured_without_closing_the_client,
    sequential_requests_reuse_one_upstream_connection,
    malformed_upstream_response_is_502_json,
    connect_failure_is_502_and_a_silent_upstream_is_504,
    early_hints_then_the_final_response,
    expect_100_continue_post_is_forwarded,
    one_mebibyte_responses_arrive_intact,
    sse_events_are_not_buffered,
    every_response_has_a_date_and_the_pool_version,
    invalid_upstream_chunk_framing_is_not_passed_on,
);
