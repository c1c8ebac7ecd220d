//! Failure paths: unreachable, hanging-up and slow upstreams get JSON errors with the
//! right status and type; malformed downstream input gets a 4xx or a closed
//! connection, never a hang or a dead proxy.

use crate::support;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use Refusal::{GoAway, Status};
use http_body_util::BodyExt;
use support::upstream::{RunningUpstream, reply};
use support::{TestProxy, TestUpstream, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How long any single step may take before the test calls it a hang.
const STEP: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

/// A port on 127.0.0.1 that nobody listens on (bound, noted, released).
async fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().unwrap().port()
}

/// A TCP server that accepts connections and closes them at once, unanswered.
async fn hang_up_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    addr
}

/// The proxy under test with one route per failure, plus a healthy `/ok` route and a
/// `model`-matched chat route to the healthy upstream.
struct Fixture {
    proxy: support::proxy::RunningProxy,
    /// Path and body of every request the healthy upstream received.
    seen: Arc<Mutex<Vec<(String, String)>>>,
    healthy: RunningUpstream,
    slow: RunningUpstream,
    /// Lets the slow upstream's held requests go.
    release: Arc<Notify>,
    dead: String,
}

impl Fixture {
    async fn start() -> Fixture {
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let log = seen.clone();
        let healthy = TestUpstream::named("healthy")
            .handler(move |request| {
                let log = log.clone();
                async move {
                    let path = request.uri().path().to_string();
                    let body = match request.into_body().collect().await {
                        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
                        Err(error) => format!("<body error: {error}>"),
                    };
                    log.lock().unwrap().push((path, body.clone()));
                    reply(200, body)
                }
            })
            .start()
            .await;
        let release = Arc::new(Notify::new());
        let held = release.clone();
        let slow = TestUpstream::named("slow")
            .handler(move |_request| {
                let held = held.clone();
                async move {
                    held.notified().await;
                    reply(200, "too late")
                }
            })
            .start()
            .await;
        let dead = format!("http://127.0.0.1:{}", dead_port().await);
        let hang_up = hang_up_server().await;
        let config = format!(
            r#"
[admin]
bind = "127.0.0.1:0"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"
model_body_limit = 1024

[[pools]]
name = "healthy"
endpoints = [{{ url = "{healthy}" }}]

[[pools]]
name = "dead"
endpoints = [{{ url = "{dead}" }}]

[[pools]]
name = "slow"
endpoints = [{{ url = "{slow}" }}]

[[pools]]
name = "hang-up"
endpoints = [{{ url = "http://{hang_up}" }}]

[[pools]]
name = "not-tls"
endpoints = [{{ url = "https://{healthy_addr}" }}]

[[routes]]
name = "chat"
match = {{ path = "/v1/chat/completions", model = "m-*" }}
pool = "healthy"

[[routes]]
name = "dead"
match = {{ path_prefix = "/dead" }}
pool = "dead"

[[routes]]
name = "slow"
match = {{ path_prefix = "/slow" }}
pool = "slow"
timeouts = {{ response_headers = "200ms" }}

[[routes]]
name = "hang-up"
match = {{ path_prefix = "/hang-up" }}
pool = "hang-up"

[[routes]]
name = "not-tls"
match = {{ path_prefix = "/not-tls" }}
pool = "not-tls"

[[routes]]
name = "ok"
match = {{ path_prefix = "/ok" }}
pool = "healthy"
"#,
            healthy = healthy.url(),
            healthy_addr = healthy.addr,
            slow = slow.url(),
        );
        let proxy = TestProxy::from_toml(&config).start().await;
        Fixture {
            proxy,
            seen,
            healthy,
            slow,
            release,
            dead,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.proxy.addr("public")
    }

    /// A normal request on a fresh connection goes through.
    async fn assert_still_serving(&self, after: &str) {
        let response = within(
            &format!("normal request after {after}"),
            client()
                .post(self.proxy.url("/ok/alive"))
                .body("ping")
                .send(),
        )
        .await
        .unwrap_or_else(|e| panic!("proxy stopped serving after {after}: {e}"));
        assert_eq!(response.status(), 200, "after {after}");
        assert_eq!(response.text().await.unwrap(), "ping", "after {after}");
    }
}

/// Checks the shape every proxy-made error has, and returns its `type`.
fn error_type(status: u16, content_type: Option<&str>, body: &[u8]) -> String {
    assert_eq!(
        content_type,
        Some("application/json"),
        "a {status} error is JSON"
    );
    let json: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{status} body is not JSON ({e}): {body:?}"));
    let object = json.as_object().expect("a JSON object");
    // Anthropic's envelope, which OpenAI's clients read too (`error.type`, `.message`).
    assert_eq!(object.len(), 2, "`type` and `error` members only: {json}");
    assert_eq!(json["type"], "error", "{json}");
    let error = json["error"].as_object().expect("`error` is an object");
    let kind = error["type"].as_str().expect("`type` is a string");
    let message = error["message"].as_str().expect("`message` is a string");
    assert!(!kind.is_empty() && !message.is_empty(), "{json}");
    kind.to_string()
}

async fn json_error(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.bytes().await.expect("error body");
    (status, error_type(status, content_type.as_deref(), &body))
}

#[tokio::test]
async fn unreachable_endpoint_is_502_upstream_connect_failed() {
    let fixture = Fixture::start().await;
    let started = Instant::now();
    let response = within(
        "response",
        client().get(fixture.proxy.url("/dead/x")).send(),
    )
    .await
    .expect("request");
    assert_eq!(
        json_error(response).await,
        (502, "upstream_connect_failed".into())
    );
    // Refused at once: the 5 s connect timeout did not run out.
    assert!(started.elapsed() < Duration::from_secs(4));
    let response = client().get(fixture.proxy.url("/dead/x")).send().await;
    let text = response.unwrap().text().await.unwrap();
    assert!(
        text.contains(fixture.dead.as_str()),
        "the message names the endpoint: {text}"
    );
}

#[tokio::test]
async fn slow_upstream_is_504_upstream_timeout() {
    let fixture = Fixture::start().await;
    let started = Instant::now();
    let response = within(
        "response",
        client().get(fixture.proxy.url("/slow/x")).send(),
    )
    .await
    .expect("request");
    let waited = started.elapsed();
    assert_eq!(json_error(response).await, (504, "upstream_timeout".into()));
    assert_eq!(fixture.slow.requests(), 1, "the upstream was asked");
    assert!(
        waited >= Duration::from_millis(200),
        "gave up after {waited:?}, before the 200ms timeout"
    );
    assert!(
        waited < Duration::from_secs(3),
        "gave up only after {waited:?}"
    );
    fixture.release.notify_waiters();
    fixture.assert_still_serving("a timeout").await;
}

#[tokio::test]
async fn upstream_hanging_up_is_502_upstream_request_failed() {
    let fixture = Fixture::start().await;
    let response = within(
        "response",
        client().get(fixture.proxy.url("/hang-up")).send(),
    )
    .await
    .expect("request");
    assert_eq!(
        json_error(response).await,
        (502, "upstream_request_failed".into())
    );
}

/// What came back on a raw connection: a parsed HTTP/1.1 response (the connection
/// read to its end), or nothing before the connection closed.
#[derive(Debug)]
enum Outcome {
    Answered {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
        /// Bytes after the body (with a Content-Length): a second response, if any.
        trailing: Vec<u8>,
    },
    Closed,
    /// Bytes that are not an HTTP/1.x response (an HTTP/2 connection's frames).
    Other(Vec<u8>),
}

/// Writes `request` on a new connection (half-closing it with `half_close`), then
/// reads until the proxy closes it. A connection that stays open past [`STEP`]
/// fails the test: that is a hang.
async fn raw_exchange(addr: SocketAddr, request: &[u8], half_close: bool) -> Outcome {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The proxy may answer and close before reading all of a huge request.
    let written = stream.write_all(request).await;
    if half_close && written.is_ok() {
        let _ = stream.shutdown().await;
    }
    let mut received = Vec::new();
    within("the proxy answering or closing", async {
        let mut buffer = [0u8; 8192];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    if received.is_empty() {
        return Outcome::Closed;
    }
    parse_response(&received)
}

fn parse_response(received: &[u8]) -> Outcome {
    if !received.starts_with(b"HTTP/1.") {
        return Outcome::Other(received.to_vec());
    }
    let text = String::from_utf8_lossy(received);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap();
    assert!(
        status_line.starts_with("HTTP/1.1 "),
        "not an HTTP/1.1 status line: {status_line:?}"
    );
    let status = status_line[9..12].parse().expect("status code");
    let mut content_type = None;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':').expect("a header line");
        match name.to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value.trim().to_string()),
            "content-length" => length = value.trim().parse::<usize>().ok(),
            _ => {}
        }
    }
    let mut body = body.as_bytes().to_vec();
    let trailing = match length {
        Some(length) if length <= body.len() => body.split_off(length),
        _ => Vec::new(),
    };
    Outcome::Answered {
        status,
        content_type,
        body,
        trailing,
    }
}

/// How a malformed request may legitimately be turned away (besides a plain close).
enum Refusal {
    /// An HTTP/1.1 answer with one of these statuses.
    Status(&'static [u16]),
    /// HTTP/2 frames ending in a GOAWAY.
    GoAway,
}

/// Whether a sequence of HTTP/2 frames holds a GOAWAY (frame type 7).
fn has_goaway(mut frames: &[u8]) -> bool {
    while frames.len() >= 9 {
        let length = u32::from_be_bytes([0, frames[0], frames[1], frames[2]]) as usize;
        if frames[3] == 7 {
            return true;
        }
        frames = &frames[(9 + length).min(frames.len())..];
    }
    false
}

#[tokio::test]
async fn malformed_requests_get_4xx_or_a_closed_connection_and_the_proxy_keeps_serving() {
    let fixture = Fixture::start().await;
    let huge_header = format!(
        "GET /ok/huge HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many_headers = format!(
        "GET /ok/many HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..500)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let mut garbage = vec![0u8, 255, 13, 10, 7, 128, 0, 1];
    garbage.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    garbage.extend_from_slice(b"\r\n\r\n");
    let mut bad_h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bad_h2.extend_from_slice(&[0xff; 64]);

    // (what, bytes, half-close after writing, how it may be refused)
    let cases: Vec<(&str, Vec<u8>, bool, Refusal)> = vec![
        ("garbage bytes", garbage, false, Status(&[400])),
        (
            "a control character in the target",
            b"GET /ok/a\x01b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
            Status(&[400]),
        ),
        (
            "an invalid character in the method",
            b"G@T /ok HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
            Status(&[400]),
        ),
        (
            "a space inside the target",
            b"GET /ok/a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
            Status(&[400]),
        ),
        (
            "a space in a header name",
            b"GET /ok HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n".to_vec(),
            false,
            Status(&[400]),
        ),
        (
            "an unknown HTTP version",
            b"GET /ok HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
            false,
            Status(&[400, 505]),
        ),
        (
            "a 1 MiB header",
            huge_header.into_bytes(),
            false,
            Status(&[400, 431]),
        ),
        (
            "500 headers",
            many_headers.into_bytes(),
            false,
            Status(&[400, 431]),
        ),
        (
            "a truncated head",
            b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Cut".to_vec(),
            true,
            Status(&[400]),
        ),
        (
            "a negative Content-Length",
            b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
            false,
            Status(&[400]),
        ),
        (
            "two different Content-Lengths",
            b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
                .to_vec(),
            false,
            Status(&[400]),
        ),
        (
            "a non-chunked Transfer-Encoding",
            b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            false,
            Status(&[400]),
        ),
        (
            "an invalid chunk size on a model route",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
                .to_vec(),
            false,
            Status(&[400]),
        ),
        (
            "a truncated body on a model route",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\": \"m-1\""
                .to_vec(),
            true,
            Status(&[400]),
        ),
        (
            "invalid JSON on a model route",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{\"model\": \"m-1\",,"
                .to_vec(),
            false,
            Status(&[404]),
        ),
        (
            "an oversized body on a model route",
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n{}",
                " ".repeat(4096)
            )
            .into_bytes(),
            false,
            Status(&[413]),
        ),
        (
            "a truncated body on a streamed route",
            b"POST /ok/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten!!".to_vec(),
            true,
            Status(&[400]),
        ),
        (
            "an invalid chunk on a streamed route",
            b"POST /ok/cut HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n".to_vec(),
            false,
            Status(&[400]),
        ),
        ("a broken HTTP/2 connection preface", bad_h2, false, GoAway),
    ];

    let checks = cases.len();
    for (what, request, half_close, refusal) in cases {
        let outcome = raw_exchange(fixture.addr(), &request, half_close).await;
        match (outcome, refusal) {
            (Outcome::Closed, _) => {}
            (
                Outcome::Answered {
                    status,
                    content_type,
                    body,
                    ..
                },
                Status(refusals),
            ) => {
                assert!(
                    refusals.contains(&status),
                    "{what}: answered {status}, expected one of {refusals:?} or a close: {}",
                    String::from_utf8_lossy(&body)
                );
                // Answers the proxy itself made (rather than the HTTP parser) are JSON errors.
                if content_type.is_some() {
                    error_type(status, content_type.as_deref(), &body);
                }
            }
            (Outcome::Other(frames), GoAway) => {
                assert!(
                    has_goaway(&frames),
                    "{what}: no GOAWAY before the close: {frames:?}"
                );
            }
            (outcome, _) => panic!("{what}: unexpected answer {outcome:?}"),
        }
        fixture.assert_still_serving(what).await;
    }

    // Nothing malformed reached the upstream as a request. Streamed bodies leave
    // before they are known to be broken, so `/ok/cut` arrives, but its body fails
    // at the upstream too instead of ending as if it were complete.
    let seen = fixture.seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|(path, _)| path == "/ok/alive").count(),
        checks
    );
    for (path, body) in &seen {
        match path.as_str() {
            "/ok/alive" => assert_eq!(body, "ping"),
            "/ok/cut" => assert!(body.starts_with("<body error"), "{body:?}"),
            _ => panic!("malformed input reached the upstream: {path} {body:?}"),
        }
    }
}

#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_request() {
    let fixture = Fixture::start().await;
    // A front end trusting Content-Length would see one request with a 4-byte body;
    // one trusting the chunked encoding sees the body "hello" and then a second
    // request. The proxy must either refuse it, or take the chunked reading, answer
    // once, and close the connection (RFC 9112 6.1) so the rest is never a request.
    let request = b"POST /ok/cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /ok/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    match raw_exchange(fixture.addr(), request, false).await {
        Outcome::Closed => {}
        Outcome::Answered {
            status: 200,
            body,
            trailing,
            ..
        } => {
            // The echo of the chunked body, then the end of the connection: no
            // second response.
            assert_eq!(String::from_utf8_lossy(&body), "hello");
            assert_eq!(String::from_utf8_lossy(&trailing), "");
        }
        Outcome::Answered { status, .. } => {
            assert_eq!(status, 400, "CL+TE answered {status}");
        }
        Outcome::Other(bytes) => panic!("not an HTTP/1.1 answer: {bytes:?}"),
    }
    fixture.assert_still_serving("CL+TE").await;
    let seen = fixture.seen.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|(path, _)| path.contains("smuggled")),
        "a smuggled request reached the upstream: {seen:?}"
    );
    for (path, body) in &seen {
        if path == "/ok/cl-te" {
            assert_eq!(body, "hello", "the upstream saw the chunked body");
        }
    }
}

#[tokio::test]
async fn every_proxy_made_error_is_json_with_type_and_message() {
    let fixture = Fixture::start().await;
    let http = client();
    let url = |path: &str| fixture.proxy.url(path);
    let chat = |body: String| {
        http.post(url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
    };
    let cases = [
        (http.get(url("/nowhere")), 404, "no_route"),
        (
            chat(format!(
                r#"{{"model": "m-1", "pad": "{}"}}"#,
                "x".repeat(2048)
            )),
            413,
            "body_too_large",
        ),
        (chat(r#"{"model": "unknown"}"#.into()), 404, "no_route"),
        (http.get(url("/dead")), 502, "upstream_connect_failed"),
        (http.get(url("/hang-up")), 502, "upstream_request_failed"),
        (http.get(url("/not-tls")), 502, "upstream_tls_failed"),
        (http.get(url("/slow")), 504, "upstream_timeout"),
    ];
    for (request, status, kind) in cases {
        let response = within(kind, request.send()).await.expect("request");
        assert_eq!(json_error(response).await, (status, kind.to_string()));
    }
    fixture.release.notify_waiters();

    // A body that breaks while the proxy reads it for the `model` field.
    let outcome = raw_exchange(
        fixture.addr(),
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\n{\"mo\r\nnot-hex\r\n",
        false,
    )
    .await;
    let Outcome::Answered {
        status,
        content_type,
        body,
        ..
    } = outcome
    else {
        panic!("a broken request body was not answered");
    };
    assert_eq!(
        (
            status,
            error_type(status, content_type.as_deref(), &body).as_str()
        ),
        (400, "bad_request_body")
    );

    // The healthy path is untouched by all of it.
    let healthy = chat(r#"{"model": "m-1"}"#.into())
        .send()
        .await
        .expect("chat");
    assert_eq!(healthy.status(), 200);
    assert_eq!(healthy.headers()["x-upstream"], "healthy");
    assert_eq!(fixture.healthy.requests(), 1);
}
