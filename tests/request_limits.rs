//! Request limits: slow request heads (slowloris) do not stop normal requests and are
//! cut at the header deadline; connections per client address are capped; bodies over a
//! route's limit get 413, declared or streamed; oversized request heads get 431.

use crate::support;

use std::time::Duration;

use support::travel::{self, Extra, Travel};
use support::{TestProxy, TestUpstream, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The one-route config on the fast path (the default listener).
fn config(upstream: &str, listener: &str, route: &str) -> String {
    let extra = Extra {
        listener,
        route,
        ..Extra::default()
    };
    travel::config(Travel::Fast, &[upstream.to_string()], &extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_slow_heads_do_not_stop_normal_requests() {
    let upstream = TestUpstream::named("a").start().await;
    let proxy = TestProxy::from_toml(&config(&upstream.url(), "header_read_timeout = \"1s\"", ""))
        .start()
        .await;
    let addr = proxy.addr("public");
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    let http = client();
    let started = tokio::time::Instant::now();
    for _ in 0..20 {
        let reply = http.get(proxy.url("/ok")).send().await.unwrap();
        assert_eq!(reply.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "normal requests were held up: {:?}",
        started.elapsed()
    );
    // The slow ones are cut at the header deadline: each read ends (408 or EOF) in time.
    let mut first = slow.remove(0);
    let mut buffer = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buffer))
        .await
        .expect("cut by the header deadline");
    let text = String::from_utf8_lossy(&buffer[..read.unwrap_or(0)]).to_string();
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn connections_per_client_address_are_capped() {
    let upstream = TestUpstream::named("a").start().await;
    let proxy = TestProxy::from_toml(&config(
        &upstream.url(),
        "max_connections_per_client = 3",
        "",
    ))
    .start()
    .await;
    let addr = proxy.addr("public");
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 512];
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
        open.push(stream);
    }
    // The fourth is closed at once, without an answer.
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    let _ = fourth.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buffer = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buffer))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the fourth connection must be closed");
    // Closing one frees a slot.
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = TcpStream::connect(addr).await.unwrap();
        again
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let n = again.read(&mut buffer).await.unwrap_or(0);
        if n > 0 {
            assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a slot never came free"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bodies_over_the_route_limit_get_413() {
    let upstream = TestUpstream::named("a").start().await;
    let proxy = TestProxy::from_toml(&config(&upstream.url(), "", "max_body_bytes = \"1KiB\""))
        .start()
        .await;
    let http = client();
    let fits = http
        .post(proxy.url("/x"))
        .body(vec![b'a'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 200);
    let declared = http
        .post(proxy.url("/x"))
        .body(vec![b'a'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    let error: serde_json::Value = declared.json().await.unwrap();
    assert_eq!(error["error"]["type"], "body_too_large");
    let before = upstream.requests();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'b'; 512])).collect();
    let streamed = http
        .post(proxy.url("/x"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    // The endpoint may have seen the start, never a complete over-limit body answered 200.
    assert!(upstream.requests() <= before + 1);
}

#[tokio::test]
async fn an_oversized_request_head_gets_431() {
    let upstream = TestUpstream::named("a").start().await;
    let proxy = TestProxy::from_toml(&config(
        &upstream.url(),
        "max_request_head_bytes = \"8KiB\"",
        "",
    ))
    .start()
    .await;
    let mut stream = TcpStream::connect(proxy.addr("public")).await.unwrap();
    let big = "a".repeat(20_000);
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buffer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .unwrap()
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buffer[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    // Normal requests still work.
    assert_eq!(
        client().get(proxy.url("/")).send().await.unwrap().status(),
        200
    );
}

/// The header deadline is for heads: a small body slower to arrive than it is still
/// taken whole (the fast path hands such a request to the full pipeline, which puts no
/// deadline on bodies).
#[tokio::test]
async fn a_body_slower_than_the_header_deadline_still_arrives() {
    let upstream = TestUpstream::named("a").start().await;
    let proxy = TestProxy::from_toml(&config(&upstream.url(), "header_read_timeout = \"1s\"", ""))
        .start()
        .await;
    let mut stream = TcpStream::connect(proxy.addr("public")).await.unwrap();
    stream
        .write_all(b"POST /slow-body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nConnection: close\r\n\r\n01234")
        .await
        .unwrap();
    // The deadline itself is what is tested here, so the test has to outwait it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(b"56789").await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
        .await
        .expect("answered")
        .unwrap();
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"body_len\":10"), "{text}");
}
