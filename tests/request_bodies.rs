//! Slow request bodies (issue #20, item 6): request buffering keeps a slow client away
//! from the endpoints, and the listener's `body_read_timeout` / `body_total_timeout`
//! end a body that stalls or trickles with a 408, on both HTTP/1.1 engines. Both sides
//! are raw TCP (tests/support/raw_http.rs); the upstream counts its connections.

use crate::support;

use std::time::{Duration, Instant};

use support::proxy::RunningProxy;
use support::raw_http::*;
use support::travel::{self, Extra, Travel};

/// Pace of a slow client: one piece of body every this long.
const PACE: Duration = Duration::from_millis(200);

async fn start(travel: Travel, upstream: &Upstream, listener: &str, route: &str) -> RunningProxy {
    let extra = Extra {
        listener,
        route,
        ..Extra::default()
    };
    travel::start(travel, &[upstream.url()], &extra).await
}

fn post_head(length: usize) -> String {
    format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {length}\r\n\r\n")
}

/// The upstream answers with the size of the body it read.
async fn counting_upstream() -> Upstream {
    Upstream::start(|seen| vec![Step::Write(ok(seen.body.len().to_string()))]).await
}

/// Many clients trickle a body in `pieces`: the endpoint sees no connection until
/// every body is whole, then each request exactly once, whole.
async fn slow_bodies_reach_the_endpoint_only_when_whole(travel: Travel, size: usize) {
    const CLIENTS: usize = 20;
    let pieces = 10;
    let upstream = counting_upstream().await;
    let proxy = start(travel, &upstream, r#"body_read_timeout = "5s""#, "").await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = RawClient::connect(&proxy).await;
        client.send(post_head(size).as_bytes()).await;
        clients.push(client);
    }
    let piece = vec![b'x'; size / pieces];
    for round in 0..pieces {
        for client in &mut clients {
            client.send(&piece).await;
        }
        if round + 1 < pieces {
            tokio::time::sleep(PACE).await;
            assert_eq!(
                upstream.connections(),
                0,
                "the endpoint was connected to during round {round} of a slow body"
            );
        }
    }
    for client in &mut clients {
        let response = client.response("POST").await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.text(), size.to_string());
    }
    assert_eq!(upstream.seen().len(), CLIENTS);
}

/// A body that stops arriving is answered 408 (JSON error) after `body_read_timeout`,
/// and the endpoint never hears of it.
async fn a_stalled_body_is_408_and_never_reaches_the_endpoint(travel: Travel, size: usize) {
    let upstream = counting_upstream().await;
    let proxy = start(travel, &upstream, r#"body_read_timeout = "400ms""#, "").await;
    let mut client = RawClient::connect(&proxy).await;
    let started = Instant::now();
    client.send(post_head(size).as_bytes()).await;
    client.send(&vec![b'x'; size / 2]).await;
    let response = client.response("POST").await;
    let waited = started.elapsed();
    assert_eq!(response.status, 408, "{}", response.text());
    assert_eq!(response.error_type(), "body_timeout");
    assert!(
        waited >= Duration::from_millis(400),
        "answered after {waited:?}"
    );
    assert!(response.head.has("x-request-id"), "{}", response.head.raw);
    client.assert_closed("a 408").await;
    assert_eq!(upstream.connections(), 0);
    // Recorded as the full path records it: under the route, as Junction's own answer.
    let metrics = support::parse_metrics(&proxy.metrics_text().await);
    let errors = metrics
        .iter()
        .filter(|(series, _)| series.starts_with("junction_errors_total"))
        .collect::<Vec<_>>();
    assert_eq!(
        errors,
        [(
            &r#"junction_errors_total{route="all",type="body_timeout"}"#.to_string(),
            &1.0
        )],
    );
}

/// A body that trickles (never idle long enough for `body_read_timeout`) is cut by
/// `body_total_timeout`.
async fn a_trickling_body_is_408_after_the_total_timeout(travel: Travel) {
    let upstream = counting_upstream().await;
    let listener = "body_read_timeout = \"5s\"\nbody_total_timeout = \"1s\"";
    let proxy = start(travel, &upstream, listener, "").await;
    let mut client = RawClient::connect(&proxy).await;
    let started = Instant::now();
    client.send(post_head(100).as_bytes()).await;
    let mut answered = false;
    // One byte per PACE of 100: far longer than the total timeout, unless cut.
    for _ in 0..100 {
        client.send(b"x").await;
        if let Ok(read) = tokio::time::timeout(PACE, client.wire.fill()).await {
            answered = read.is_ok_and(|n| n > 0);
            break;
        }
    }
    let waited = started.elapsed();
    assert!(answered, "no answer to a trickling body after {waited:?}");
    let response = client.response("POST").await;
    assert!(
        waited >= Duration::from_secs(1),
        "answered after {waited:?}"
    );
    assert_eq!(response.status, 408, "{}", response.text());
    assert_eq!(response.error_type(), "body_timeout");
    assert_eq!(upstream.connections(), 0);
}

/// `request_buffering = false`: the body streams to the endpoint as it arrives. When
/// it then stalls, the client gets 408 and the endpoint's connection is broken off, so
/// it never takes the part it got for a whole request.
async fn an_unbuffered_body_streams_and_a_stall_aborts_the_upstream(travel: Travel) {
    let mut upstream = counting_upstream().await;
    let proxy = start(
        travel,
        &upstream,
        r#"body_read_timeout = "600ms""#,
        "request_buffering = false",
    )
    .await;
    let mut client = RawClient::connect(&proxy).await;
    client.send(post_head(10).as_bytes()).await;
    client.send(b"abc").await;
    within("the endpoint being connected to mid-body", async {
        while upstream.connections() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let response = client.response("POST").await;
    assert_eq!(response.status, 408, "{}", response.text());
    assert_eq!(upstream.next_end().await, Ended::ByProxy(1));
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    // The HTTP/1.1 engine streams the body itself.
    let metrics = proxy.metrics_text().await;
    assert!(
        !metrics.contains("junction_fast_path_handoffs_total{"),
        "{travel:?}"
    );

    // A body that comes whole streams the same, and is answered.
    let mut client = RawClient::connect(&proxy).await;
    client.send(post_head(10).as_bytes()).await;
    client.send(b"0123456789").await;
    let response = client.response("POST").await;
    assert_eq!((response.status, response.text()), (200, "10".into()));
    let metrics = proxy.metrics_text().await;
    assert!(
        !metrics.contains("junction_fast_path_handoffs_total{"),
        "{travel:?}"
    );
}

/// A body longer than any engine holds (3 MiB) streams to the endpoint on a buffering
/// route, exactly: a request pipelined right behind it on the same connection is read
/// as the next request, not as more body. Then a client that leaves mid-body breaks
/// the endpoint's connection off, so no part of a body is taken for a whole request.
async fn a_long_body_streams_exactly_and_a_client_leaving_breaks_it_off(travel: Travel) {
    const LONG: usize = 3 << 20;
    let upstream = Upstream::start(|seen| {
        let body = &seen.body;
        let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
        vec![Step::Write(ok(format!("{} {sum}", body.len())))]
    })
    .await;
    let proxy = start(travel, &upstream, "", "").await;
    let mut client = RawClient::connect(&proxy).await;
    let body: Vec<u8> = (0..LONG).map(|i| (i % 251) as u8).collect();
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    let mut bytes = post_head(LONG).into_bytes();
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(post_head(3).as_bytes());
    bytes.extend_from_slice(b"xyz");
    client.send(&bytes).await;
    let first = client.response("POST").await;
    assert_eq!((first.status, first.text()), (200, format!("{LONG} {sum}")));
    let second = client.response("POST").await;
    let small: u64 = b"xyz".iter().map(|&b| u64::from(b)).sum();
    assert_eq!((second.status, second.text()), (200, format!("3 {small}")));
    assert_eq!(upstream.seen().len(), 2);
    let metrics = proxy.metrics_text().await;
    assert!(
        !metrics.contains("junction_fast_path_handoffs_total{"),
        "{travel:?}"
    );

    // Half of a long body, then the client leaves (a fresh proxy and endpoint, so that
    // the endpoint's first connection is this body's).
    let mut upstream = counting_upstream().await;
    let proxy = start(travel, &upstream, "", "").await;
    let mut client = RawClient::connect(&proxy).await;
    client.send(post_head(LONG).as_bytes()).await;
    client.send(&body[..LONG / 2]).await;
    within("the endpoint being connected to mid-body", async {
        while upstream.connections() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(client);
    assert_eq!(upstream.next_end().await, Ended::ByProxy(1));
    assert!(upstream.seen().is_empty(), "a cut body taken for a request");
}

/// A chunked GET body, buffered or streamed, reaches the endpoint whole: hyper's client
/// would send a GET body of unknown length as none at all.
async fn a_chunked_get_body_is_never_dropped(travel: Travel) {
    for route in ["", "request_buffering = false"] {
        let upstream = counting_upstream().await;
        let proxy = start(travel, &upstream, "", route).await;
        let mut client = RawClient::connect(&proxy).await;
        let head =
            format!("GET /search HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n");
        client.send(head.as_bytes()).await;
        client.send(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").await;
        let response = client.response("GET").await;
        assert_eq!(response.status, 200, "{route:?}: {}", response.text());
        assert_eq!(
            response.text(),
            "11",
            "{route:?}: the body the endpoint read"
        );
        let seen = upstream.seen();
        assert_eq!(seen.len(), 1, "{route:?}");
        assert_eq!(seen[0].body, b"hello world", "{route:?}");
    }
}

/// Full duplex: once the endpoint has answered, the client's body may pause longer
/// than `body_read_timeout` (a gRPC or other bidirectional stream): the exchange goes
/// on under the route's response timeouts instead of being cut with a 408.
async fn an_answered_exchange_outlives_the_body_timeouts(travel: Travel) {
    use tokio::io::AsyncWriteExt;

    // An endpoint that streams the request body back as it arrives.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let echo = hyper::service::service_fn(
                    |request: hyper::Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(request.into_body()))
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, echo)
                    .await;
            });
        }
    });
    let extra = Extra {
        listener: r#"body_read_timeout = "300ms""#,
        route: "request_buffering = false",
        ..Extra::default()
    };
    let proxy = travel::start(travel, &[endpoint], &extra).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr("public"))
        .await
        .unwrap();
    let head = format!(
        "POST /duplex HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    within(
        "the first piece echoed",
        read_until(&mut stream, &mut seen, b"hello"),
    )
    .await;
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    // The pause under test: more than twice the body timeout, with the answer under way.
    tokio::time::sleep(Duration::from_millis(700)).await;
    stream.write_all(b"5\r\nworld\r\n0\r\n\r\n").await.unwrap();
    within(
        "the second piece echoed",
        read_until(&mut stream, &mut seen, b"world"),
    )
    .await;
    within(
        "the end of the answer",
        read_until(&mut stream, &mut seen, b"0\r\n\r\n"),
    )
    .await;
}

/// Reads from `stream` into `seen` until `what` is in it.
/// An endpoint that answers as soon as it has read a request's head, before its body
/// (a 413 for an upload too large, say), then reads and drops what still comes, as
/// nginx's lingering close does: the client gets that answer while its body is still
/// being sent, and its connection closes after it, since the rest of the body was never
/// read. The proxy stops sending the body and never reuses that endpoint connection.
async fn an_answer_before_the_body_ends_reaches_the_client(travel: Travel) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LONG: usize = 3 << 20;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (ended, mut ended_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let ended = ended.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                read_until(&mut stream, &mut seen, b"\r\n\r\n").await;
                let answer = b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: text/plain\r\n\
                               content-length: 8\r\nconnection: close\r\n\r\ntoo long";
                stream.write_all(answer).await.unwrap();
                stream.shutdown().await.unwrap();
                // Lingering close: whatever still comes is read and dropped.
                let mut body = seen.len() - find(&seen, b"\r\n\r\n").unwrap() - 4;
                let mut buf = vec![0; 64 << 10];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    body += n;
                }
                let _ = ended.send(body);
            });
        }
    });
    let proxy = travel::start(travel, &[url], &Extra::default()).await;
    let mut client = RawClient::connect(&proxy).await;
    client.send(post_head(LONG).as_bytes()).await;
    // A first part of the body; the rest is never sent.
    client.send(&vec![b'x'; 64 << 10]).await;
    let response = client.response("POST").await;
    assert_eq!(
        (response.status, response.text()),
        (413, "too long".to_string()),
        "{travel:?}"
    );
    assert_eq!(response.head.get("connection"), Some("close"), "{travel:?}");
    client
        .assert_closed("an answer given before the body ended")
        .await;
    let forwarded = within("the endpoint's connection ending", ended_rx.recv())
        .await
        .unwrap();
    assert!(
        forwarded < LONG,
        "{travel:?}: {forwarded} bytes of body forwarded"
    );
    let metrics = proxy.metrics_text().await;
    assert!(
        !metrics.contains("junction_fast_path_handoffs_total{"),
        "{travel:?}"
    );
}

async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut Vec<u8>, what: &[u8]) {
    use tokio::io::AsyncReadExt;
    while find(seen, what).is_none() {
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(seen);
        assert!(
            n > 0,
            "closed before {:?}: {text}",
            String::from_utf8_lossy(what)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

on_both_engines!(
    small_slow_bodies_are_buffered => slow_bodies_reach_the_endpoint_only_when_whole(1_000);
    large_slow_bodies_are_buffered => slow_bodies_reach_the_endpoint_only_when_whole(100_000);
    a_stalled_small_body_is_408 => a_stalled_body_is_408_and_never_reaches_the_endpoint(1_000);
    a_stalled_large_body_is_408 => a_stalled_body_is_408_and_never_reaches_the_endpoint(100_000);
    a_trickling_body_is_408 => a_trickling_body_is_408_after_the_total_timeout();
    unbuffered_bodies_stream => an_unbuffered_body_streams_and_a_stall_aborts_the_upstream();
    an_answer_before_the_body_ends => an_answer_before_the_body_ends_reaches_the_client();
    long_bodies_stream_exactly => a_long_body_streams_exactly_and_a_client_leaving_breaks_it_off();
    chunked_get_bodies_arrive => a_chunked_get_body_is_never_dropped();
    full_duplex_outlives_body_timeouts => an_answered_exchange_outlives_the_body_timeouts();
);
