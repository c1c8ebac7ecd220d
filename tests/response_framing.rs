//! Responses from endpoints, and the request-head limits, on all three ways a request
//! travels: the HTTP/1.1 fast path, hyper (`fast_path = false`) and a hand-off (a
//! route with `retries`, which the fast path gives to hyper). Both sides of the proxy
//! are raw TCP (tests/support/raw_http.rs): scripted upstreams send exactly the bytes
//! under test, and the client parses the answer strictly.
//!
//! Each case was found where one engine or both differed from RFC 9112 or from the
//! other engine (issue #20, items 4, 7 and 9).

use crate::support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::proxy::RunningProxy;
use support::raw_http::*;
use support::travel::{self, Extra, Travel};

async fn start(path: Travel, upstream: &Upstream, listener: &str) -> RunningProxy {
    let extra = Extra {
        listener,
        ..Extra::default()
    };
    travel::start(path, &[upstream.url()], &extra).await
}

/// An upstream that answers every request with `reply`.
async fn answering(reply: &'static [u8]) -> Upstream {
    Upstream::start(move |_| vec![Step::Write(reply.to_vec())]).await
}

/// Asserts that `reply` from the endpoint is answered 502 `upstream_protocol_error`;
/// returns the upstream and the proxy for further checks.
async fn refused_as_invalid(path: Travel, reply: &'static [u8]) -> (Upstream, RunningProxy) {
    let upstream = answering(reply).await;
    let proxy = start(path, &upstream, "").await;
    let response = RawClient::connect(&proxy).await.get("/").await;
    assert_eq!(response.status, 502, "{path:?}: {}", response.head.raw);
    assert_eq!(response.error_type(), "upstream_protocol_error", "{path:?}");
    (upstream, proxy)
}

/// RFC 9112 6.3: Transfer-Encoding overrides Content-Length, and an intermediary must
/// remove the length. Relaying `content-length: 3` cut the body to 3 bytes on a
/// connection kept alive (hyper).
#[tokio::test]
async fn a_length_beside_chunking_is_removed() {
    for path in Travel::ALL {
        let upstream = answering(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        let proxy = start(path, &upstream, "").await;
        let mut client = RawClient::connect(&proxy).await;
        for _ in 0..2 {
            let response = client.get("/").await;
            assert_eq!(response.status, 200, "{path:?}: {}", response.head.raw);
            assert!(
                !response.head.has("content-length"),
                "{path:?}: {}",
                response.head.raw
            );
            assert_eq!(response.framing, Framing::Chunked, "{path:?}");
            assert_eq!(response.text(), "hello", "{path:?}");
        }
        // A length beside chunking hints at smuggling: the connection is not reused.
        assert_eq!(upstream.connections(), 2, "{path:?}");
    }
}

/// `Content-Length: 5, 5` and two equal lines are one length, sent once; different
/// values are an invalid response.
#[tokio::test]
async fn repeated_lengths_are_sent_once_and_conflicting_ones_refused() {
    let same: [&'static [u8]; 2] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    ];
    for path in Travel::ALL {
        for reply in same {
            let upstream = answering(reply).await;
            let proxy = start(path, &upstream, "").await;
            let mut client = RawClient::connect(&proxy).await;
            let response = client.get("/").await;
            assert_eq!(response.status, 200, "{path:?}: {}", response.head.raw);
            assert_eq!(
                response.head.all("content-length"),
                vec!["5"],
                "{path:?}: {}",
                response.head.raw
            );
            assert_eq!(response.text(), "hello");
        }
        refused_as_invalid(
            path,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        )
        .await;
    }
}

/// A `101` to a request that asked for no upgrade would hand the client's connection
/// to a protocol nobody agreed on.
#[tokio::test]
async fn switching_protocols_without_an_upgrade_request_is_a_502() {
    for path in Travel::ALL {
        refused_as_invalid(
            path,
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await;
    }
}

/// A head that does not parse is the same fault on both engines.
#[tokio::test]
async fn a_garbage_head_is_a_protocol_error_on_every_path() {
    for path in Travel::ALL {
        let (_upstream, proxy) = refused_as_invalid(path, b"garbage\r\n\r\n").await;
        // The metrics say the same.
        let metrics = within("GET /metrics", proxy.metrics_text()).await;
        let counted: f64 = support::parse_metrics(&metrics)
            .iter()
            .filter(|(series, _)| {
                series.starts_with("junction_errors_total{")
                    && series.contains("type=\"upstream_protocol_error\"")
            })
            .map(|(_, value)| value)
            .sum();
        assert_eq!(counted, 1.0, "{path:?}: {metrics}");
    }
}

/// A body whose first chunk size is not one, whether it comes with the head or after
/// it: nothing has reached the client, so it gets a 502 rather than an empty reply.
#[tokio::test]
async fn a_body_that_breaks_before_its_first_byte_is_a_502() {
    for path in Travel::ALL {
        for apart in [false, true] {
            let upstream = Upstream::start(move |_| {
                let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                let bad = b"zz\r\n".to_vec();
                if apart {
                    vec![Step::Write(head), Step::Yield, Step::Write(bad), Step::Hang]
                } else {
                    vec![Step::Write([head, bad].concat()), Step::Hang]
                }
            })
            .await;
            let proxy = start(path, &upstream, "").await;
            let response = RawClient::connect(&proxy).await.get("/").await;
            assert_eq!(
                response.status, 502,
                "{path:?} apart={apart}: {}",
                response.head.raw
            );
            assert_eq!(
                response.error_type(),
                "upstream_protocol_error",
                "{path:?} apart={apart}"
            );
        }
        // Closed before the first byte of a length-framed body: a 502 as well.
        let upstream = Upstream::start(|_| {
            vec![
                Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec()),
                Step::Close,
            ]
        })
        .await;
        let proxy = start(path, &upstream, "").await;
        let response = RawClient::connect(&proxy).await.get("/").await;
        assert_eq!(response.status, 502, "{path:?}: {}", response.head.raw);
        assert_eq!(response.error_type(), "upstream_request_failed", "{path:?}");
    }
}

/// An endpoint that closes a reused connection after reading a request, before any
/// byte of answer (its keep-alive timeout, racing the request): an idempotent request
/// is sent again on a new connection, on every path.
#[tokio::test]
async fn a_reused_connection_closed_before_answering_is_replaced() {
    for path in Travel::ALL {
        // Requests seen per connection; the first second request on a connection (a
        // reused one) is read and the connection closed.
        let per_connection = Arc::new(Mutex::new(HashMap::<usize, usize>::new()));
        let closed_once = Arc::new(AtomicBool::new(false));
        let (counts, closed) = (per_connection.clone(), closed_once.clone());
        let upstream = Upstream::start(move |seen| {
            let mut counts = counts.lock().unwrap();
            let count = counts.entry(seen.connection).or_default();
            *count += 1;
            if *count == 2 && !closed.swap(true, Ordering::SeqCst) {
                vec![Step::Close]
            } else {
                echo_path(seen)
            }
        })
        .await;
        let proxy = start(path, &upstream, "").await;
        let mut client = RawClient::connect(&proxy).await;
        for n in 0..4 {
            let response = client.get(&format!("/{n}")).await;
            assert_eq!(
                response.status,
                200,
                "{path:?} request {n}: {}",
                response.text()
            );
            assert_eq!(response.text(), format!("/{n}"), "{path:?}");
        }
        assert!(
            closed_once.load(Ordering::SeqCst),
            "{path:?}: no connection was reused"
        );
        let seen = upstream.seen();
        assert_eq!(seen.len(), 5, "{path:?}: {seen:#?}");
        // The request the endpoint closed on went again, on a connection of its own.
        let again: Vec<_> = seen
            .iter()
            .filter(|s| s.path == seen_twice(&seen))
            .collect();
        assert_eq!(again.len(), 2, "{path:?}: {seen:#?}");
        assert_ne!(again[0].connection, again[1].connection, "{path:?}");
    }
}

/// The one path among `seen` that reached the endpoint twice.
fn seen_twice(seen: &[Seen]) -> String {
    let mut paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    paths.sort_unstable();
    paths
        .windows(2)
        .find(|pair| pair[0] == pair[1])
        .map(|pair| pair[0].to_string())
        .unwrap_or_default()
}

/// A request head as a client writes it, padded with one header to exactly `size`
/// bytes.
fn head_of_size(size: usize) -> String {
    let bare = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nx-pad: \r\n\r\n");
    format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nx-pad: {}\r\n\r\n",
        "a".repeat(size - bare.len())
    )
}

/// The request head limit holds to the byte on every path, with the default limit
/// (where hyper's own buffer limit let heads of 440 KiB and more through) and a set one.
#[tokio::test]
async fn the_request_head_limit_is_exact() {
    for (listener, limit) in [
        ("", 400 * 1024),
        (r#"max_request_head_bytes = "16KiB""#, 16 * 1024),
    ] {
        for path in Travel::ALL {
            let upstream = Upstream::start(echo_path).await;
            let proxy = start(path, &upstream, listener).await;
            let mut client = RawClient::connect(&proxy).await;
            let response = client.request("GET", &head_of_size(limit)).await;
            assert_eq!(
                response.status,
                200,
                "{path:?} {limit}: {}",
                response.text()
            );
            let mut client = RawClient::connect(&proxy).await;
            let response = client.request("GET", &head_of_size(limit + 1)).await;
            assert_eq!(
                response.status, 431,
                "{path:?} {limit}: {}",
                response.head.raw
            );
            assert_eq!(response.error_type(), "head_too_large", "{path:?}");
        }
    }
}

/// A client that begins a head and stalls gets `408` and the connection closes, on
/// both engines; one that sends nothing is closed without a word.
#[tokio::test]
async fn a_slow_head_gets_408_and_an_idle_connection_just_closes() {
    for path in [Travel::Fast, Travel::Hyper] {
        let upstream = Upstream::start(echo_path).await;
        let proxy = start(path, &upstream, r#"header_read_timeout = "300ms""#).await;

        let mut client = RawClient::connect(&proxy).await;
        client
            .send(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n").as_bytes())
            .await;
        let response = client.response("GET").await;
        assert_eq!(response.status, 408, "{path:?}: {}", response.head.raw);
        assert_eq!(response.head.get("connection"), Some("close"), "{path:?}");
        client.assert_closed("a 408").await;

        let mut idle = RawClient::connect(&proxy).await;
        assert_eq!(
            idle.closes_within(Duration::from_secs(5)).await,
            Ok(()),
            "{path:?}"
        );
        assert_eq!(upstream.connections(), 0, "{path:?}");

        // The same after a request on the connection.
        let mut client = RawClient::connect(&proxy).await;
        assert_eq!(client.get("/a").await.status, 200, "{path:?}");
        client
            .send(format!("GET /b HTTP/1.1\r\nHost: {HOST}\r\n").as_bytes())
            .await;
        let response = client.response("GET").await;
        assert_eq!(response.status, 408, "{path:?}: {}", response.head.raw);
        client.assert_closed("a 408 after a request").await;

        let mut idle = RawClient::connect(&proxy).await;
        assert_eq!(idle.get("/c").await.status, 200, "{path:?}");
        assert_eq!(
            idle.closes_within(Duration::from_secs(5)).await,
            Ok(()),
            "{path:?} after a request"
        );
    }
}
