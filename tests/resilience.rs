use crate::support;

// Fault injection: endpoints that die mid-run, hang, answer 503, refuse connections,
// cut or stall their streams, or are read slowly; retries absorb what is safe to send
// again, within their budget, and every failure reaches the client in a defined shape.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{Response, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use support::parse_metrics;
use support::sse::{ChannelBody, SseReader, event_stream};
use support::travel::Travel;
use support::upstream::{RunningUpstream, reply};
use support::{JunctionProcess, TestProxy, TestUpstream, client, listeners_toml};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, mpsc, oneshot};

/// How long any single step may take before the test calls it a hang.
const STEP: Duration = Duration::from_secs(5);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

// ---------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------

/// All events up to the end of the stream (each within `STEP`).
async fn all_events<S>(reader: &mut SseReader<S>) -> Vec<String>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    let mut events = Vec::new();
    while let Some(event) = within("next event", reader.next_event()).await {
        events.push(event);
    }
    events
}

/// The JSON of an `event: error` SSE event, or a panic saying what came instead.
fn error_event(event: &str) -> serde_json::Value {
    let data = event
        .strip_prefix("event: error\ndata: ")
        .unwrap_or_else(|| panic!("expected an `event: error`, got {event:?}"));
    serde_json::from_str(data).expect("JSON data in the error event")
}

/// `junction_retries_total` of one route (its series, whatever the other labels).
async fn retries_metric(admin: String, route: &str) -> u64 {
    let text = client()
        .get(admin)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let prefix = format!("junction_retries_total{{route=\"{route}\"");
    let values: Vec<f64> = parse_metrics(&text)
        .into_iter()
        // A mirror's copies have series of their own (shadow="true").
        .filter(|(series, _)| series.starts_with(&prefix) && !series.contains("shadow=\"true\""))
        .map(|(_, value)| value)
        .collect();
    assert_eq!(
        values.len(),
        1,
        "one junction_retries_total series for route {route}:\n{text}"
    );
    values[0] as u64
}

/// The access log's JSON lines, once there are `count` of them (10 s at most: the
/// writer drains on a tick, and nothing signals when it did).
async fn access_log(path: &Path, count: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= count || tokio::time::Instant::now() > deadline {
            assert_eq!(lines.len(), count, "access log lines:\n{text}");
            return lines
                .iter()
                .map(|line| serde_json::from_str(line).expect("a JSON line"))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A URL nobody listens on: the port was bound and released.
async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

/// An upstream that answers every request with `status` and a JSON error body.
async fn answering(name: &str, status: u16) -> RunningUpstream {
    let body = format!(r#"{{"error":{{"type":"from_{name}"}}}}"#);
    TestUpstream::named(name)
        .handler(move |_request| {
            let body = body.clone();
            async move { reply(status, body) }
        })
        .start()
        .await
}

fn urls(upstreams: &[&str]) -> String {
    upstreams
        .iter()
        .map(|url| format!("{{ url = \"{url}\" }}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `junction mock` model server in its own process.
struct MockProcess {
    child: Child,
    addr: SocketAddr,
}

async fn spawn_mock(version: &str) -> MockProcess {
    let mut child = Command::new(support::process::binary())
        .args(["mock", "--bind", "127.0.0.1:0", "--version", version])
        .args(["--token-interval-ms", "1"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn junction mock");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = within("mock model server listening", async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("mock stderr")
                .expect("junction mock exited before listening");
            if line.contains("mock model server listening") {
                let addr = line.split("addr=").nth(1).expect("addr=");
                return addr
                    .split_whitespace()
                    .next()
                    .expect("address")
                    .parse::<SocketAddr>()
                    .expect("a socket address");
            }
        }
    })
    .await;
    // Keep reading, so a chatty child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    MockProcess { child, addr }
}

// ---------------------------------------------------------------------------------
// An endpoint's process dies mid-run
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_endpoint_process_mid_run_fails_at_most_one_percent() {
    const REQUESTS: usize = 2000;
    const KILL_AFTER: usize = 500;
    const CONCURRENCY: usize = 16;
    let mut mocks = [
        spawn_mock("v1").await,
        spawn_mock("v2").await,
        spawn_mock("v3").await,
    ];
    let endpoints: Vec<String> = mocks.iter().map(|m| format!("http://{}", m.addr)).collect();
    let config = format!(
        r#"{}
[[pools]]
name = "models"
endpoints = [{}]
health = {{ path = "/health", interval = "100ms", timeout = "200ms", rise = 1, fall = 1 }}
outlier = {{ consecutive_failures = 3, base_ejection = "30s" }}

[[routes]]
name = "models"
pool = "models"
retries = {{ attempts = 2, on = [502, 503] }}
timeouts = {{ connect = "500ms", response_headers = "2s" }}
"#,
        listeners_toml(),
        urls(&endpoints.iter().map(String::as_str).collect::<Vec<_>>())
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let victim = proxy.gateway.plan().pools[0].endpoints[1].clone();
    assert_eq!(&*victim.url, endpoints[1].trim_end_matches('/'));

    let http = client();
    let url = proxy.url("/v1/models");
    let started = Arc::new(AtomicUsize::new(0));
    let requests = futures_util::stream::iter(0..REQUESTS)
        .map(|_| {
            let index = started.fetch_add(1, Ordering::SeqCst);
            let request = http.get(&url).send();
            async move {
                let outcome = match tokio::time::timeout(STEP, request).await {
                    Err(_) => Err("no answer within 5 s".to_string()),
                    Ok(Err(error)) => Err(error.to_string()),
                    Ok(Ok(response)) if response.status() == 200 => {
                        let version = response.headers()["x-mock-version"]
                            .to_str()
                            .unwrap()
                            .to_string();
                        match response.bytes().await {
                            Ok(_) => Ok(version),
                            Err(error) => Err(format!("body: {error}")),
                        }
                    }
                    Ok(Ok(response)) => Err(format!(
                        "{} {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    )),
                };
                (index, outcome)
            }
        })
        .buffer_unordered(CONCURRENCY);
    tokio::pin!(requests);

    let mut completed = 0;
    let mut failures: Vec<(usize, String)> = Vec::new();
    let mut served: Vec<(usize, String)> = Vec::new();
    // Index of the first request started after the victim was seen down.
    let down_mark = Arc::new(AtomicUsize::new(usize::MAX));
    let mut watcher = None;
    let run = Instant::now();
    while let Some((index, outcome)) = requests.next().await {
        completed += 1;
        match outcome {
            Ok(version) => served.push((index, version)),
            Err(error) => failures.push((index, error)),
        }
        if completed == KILL_AFTER {
            mocks[1].child.kill().await.expect("kill the v2 mock");
            let (victim, started, down_mark) = (victim.clone(), started.clone(), down_mark.clone());
            watcher = Some(tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while victim.state.health.is_available() {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "the killed endpoint was never marked down"
                    );
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                down_mark.store(started.load(Ordering::SeqCst), Ordering::SeqCst);
            }));
        }
    }
    let elapsed = run.elapsed();
    within("the endpoint is marked down", watcher.expect("killed"))
        .await
        .expect("watcher");
    let down_mark = down_mark.load(Ordering::SeqCst);
    let retries = retries_metric(proxy.admin_url("/metrics"), "models").await;
    eprintln!(
        "kill test: {REQUESTS} requests in {elapsed:?}, {} failed, {retries} retried, victim down from request {down_mark}: {failures:?}",
        failures.len()
    );

    assert_eq!(served.len() + failures.len(), REQUESTS);
    assert!(
        failures.len() * 100 <= REQUESTS,
        "more than 1% failed: {failures:?}"
    );
    // Retries absorb what the kill costs (refused or reset tries). They may be zero when
    // no request reached the victim between the kill and its ejection; the bounds above
    // and below are what must hold either way.
    let late: Vec<_> = failures.iter().filter(|(i, _)| *i >= down_mark).collect();
    assert!(
        late.is_empty(),
        "requests failed after the endpoint was marked down (from #{down_mark}): {late:?}"
    );
    let in_last_half: Vec<_> = failures
        .iter()
        .filter(|(i, _)| *i >= REQUESTS / 2)
        .collect();
    assert!(in_last_half.is_empty(), "{in_last_half:?}");
    assert!(
        down_mark < REQUESTS / 2,
        "marked down only at request {down_mark}"
    );
    // All three served before the kill; only the survivors after the mark.
    for version in ["v1", "v2", "v3"] {
        assert!(
            served
                .iter()
                .any(|(i, v)| *i < KILL_AFTER / 2 && v == version),
            "{version} served nothing before the kill"
        );
    }
    assert!(
        !served.iter().any(|(i, v)| *i >= down_mark && v == "v2"),
        "the killed endpoint answered after it was marked down"
    );
}

// ---------------------------------------------------------------------------------
// An endpoint that never answers
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_hanging_endpoint_costs_one_timeout_then_another_endpoint_answers() {
    // The hanging endpoint's handlers wait for this, released only at the end.
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let hang = TestUpstream::named("hang")
        .handler(move |_request| {
            let held = held.clone();
            async move {
                held.notified().await;
                reply(200, "too late")
            }
        })
        .start()
        .await;
    let ok = TestUpstream::named("ok").start().await;
    let config = format!(
        r#"{}
[[pools]]
name = "both"
endpoints = [{}]

[[pools]]
name = "alone"
endpoints = [{}]

[[routes]]
name = "retried"
match = {{ path_prefix = "/retried/" }}
pool = "both"
retries = {{ attempts = 2, on = [503] }}
timeouts = {{ response_headers = "300ms" }}

[[routes]]
name = "single"
match = {{ path_prefix = "/single/" }}
pool = "alone"
timeouts = {{ response_headers = "300ms" }}
"#,
        listeners_toml(),
        urls(&[&hang.url(), &ok.url()]),
        urls(&[&hang.url()]),
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    // GET: the hanging endpoint gets at most one try per request, the other answers.
    const GETS: usize = 4;
    let mut slow = 0;
    for i in 0..GETS {
        let sent = Instant::now();
        let response = within("GET", http.get(proxy.url(&format!("/retried/{i}"))).send())
            .await
            .expect("response");
        let took = sent.elapsed();
        assert_eq!(response.status(), 200, "GET {i}");
        assert_eq!(response.headers()["x-upstream"], "ok");
        if took >= Duration::from_millis(250) {
            slow += 1;
        }
    }
    let hang_tries = hang.requests();
    assert_eq!(ok.requests(), GETS);
    assert!(
        (1..=GETS).contains(&hang_tries),
        "the hanging endpoint got {hang_tries} tries for {GETS} requests"
    );
    assert_eq!(
        slow, hang_tries,
        "each try on the hanging endpoint costs one timeout"
    );
    assert_eq!(
        retries_metric(proxy.admin_url("/metrics"), "retried").await,
        hang_tries as u64
    );

    // POST: it may have been processed, so a timeout is not sent again.
    let mut timed_out = 0;
    for i in 0..4 {
        let (hang_before, ok_before) = (hang.requests(), ok.requests());
        let response = within(
            "POST",
            http.post(proxy.url(&format!("/retried/post/{i}")))
                .body("once")
                .send(),
        )
        .await
        .expect("response");
        match response.status().as_u16() {
            200 => {
                assert_eq!(response.headers()["x-upstream"], "ok");
                assert_eq!(
                    (hang.requests(), ok.requests()),
                    (hang_before, ok_before + 1)
                );
            }
            504 => {
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["error"]["type"], "upstream_timeout");
                assert_eq!(
                    (hang.requests(), ok.requests()),
                    (hang_before + 1, ok_before)
                );
                timed_out += 1;
            }
            other => panic!("POST {i}: unexpected {other}"),
        }
    }
    assert!(timed_out >= 1, "no POST ever went to the hanging endpoint");

    // Without retries: 504 after the response-header timeout.
    let sent = Instant::now();
    let response = within(
        "GET without retries",
        http.get(proxy.url("/single/x")).send(),
    )
    .await
    .expect("response");
    let took = sent.elapsed();
    assert_eq!(response.status(), 504);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "upstream_timeout");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    release.notify_waiters();
}

// ---------------------------------------------------------------------------------
// 503, dead ports and the retry rules per method
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_503_is_retried_for_get_and_for_post_only_when_allowed() {
    let busy = answering("busy", 503).await;
    let ok = TestUpstream::named("ok").start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let config = format!(
        r#"{}
[access_log]
path = "{}"

[[pools]]
name = "mixed"
endpoints = [{}]

[[routes]]
name = "strict"
match = {{ path_prefix = "/strict/" }}
pool = "mixed"
retries = {{ attempts = 2, on = [503] }}

[[routes]]
name = "lenient"
match = {{ path_prefix = "/lenient/" }}
pool = "mixed"
retries = {{ attempts = 2, on = [503], retry_non_idempotent = true }}
"#,
        listeners_toml(),
        log.display(),
        urls(&[&busy.url(), &ok.url()]),
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();
    const EACH: usize = 6;

    // GET on the strict route: every 503 is sent again, to the other endpoint.
    for i in 0..EACH {
        let response = within("GET", http.get(proxy.url(&format!("/strict/{i}"))).send())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-upstream"], "ok");
    }
    let get_retries = busy.requests();
    assert!(get_retries >= 1, "no GET went to the busy endpoint first");
    assert_eq!(ok.requests(), EACH);

    // POST on the strict route: the 503 goes back to the client as it came.
    let (busy_before, ok_before) = (busy.requests(), ok.requests());
    let mut refused = 0;
    for i in 0..EACH {
        let response = within(
            "POST",
            http.post(proxy.url(&format!("/strict/post/{i}")))
                .body("x")
                .send(),
        )
        .await
        .unwrap();
        match response.status().as_u16() {
            200 => assert_eq!(response.headers()["x-upstream"], "ok"),
            503 => {
                assert_eq!(response.headers()["x-upstream"], "busy");
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["error"]["type"], "from_busy");
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused >= 1, "no POST went to the busy endpoint");
    assert_eq!(busy.requests() - busy_before, refused, "a POST was retried");
    assert_eq!(ok.requests() - ok_before, EACH - refused);

    // POST where retry_non_idempotent = true: retried like a GET.
    let (busy_before, ok_before) = (busy.requests(), ok.requests());
    for i in 0..EACH {
        let response = within(
            "POST",
            http.post(proxy.url(&format!("/lenient/{i}")))
                .body("x")
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-upstream"], "ok");
        let echo: serde_json::Value = response.json().await.unwrap();
        assert_eq!(echo["body"], "x", "the retried request carries its body");
    }
    let lenient_retries = busy.requests() - busy_before;
    assert!(
        lenient_retries >= 1,
        "no POST went to the busy endpoint first"
    );
    assert_eq!(ok.requests() - ok_before, EACH);

    // Counted in the metrics and in the access log.
    let admin = proxy.admin_url("/metrics");
    assert_eq!(
        retries_metric(admin.clone(), "strict").await,
        get_retries as u64
    );
    assert_eq!(
        retries_metric(admin, "lenient").await,
        lenient_retries as u64
    );
    let entries = access_log(&log, 3 * EACH).await;
    let retries_of = |route: &str, method: &str| -> u64 {
        entries
            .iter()
            .filter(|e| e["route"] == route && e["method"] == method)
            .map(|e| e["retries"].as_u64().expect("retries field"))
            .sum()
    };
    assert_eq!(retries_of("strict", "GET"), get_retries as u64);
    assert_eq!(retries_of("strict", "POST"), 0);
    assert_eq!(retries_of("lenient", "POST"), lenient_retries as u64);
}

#[tokio::test]
async fn when_every_endpoint_answers_503_the_client_gets_the_last_answer() {
    let first = answering("first", 503).await;
    let second = answering("second", 503).await;
    let config = format!(
        r#"{}
[[pools]]
name = "down"
endpoints = [{}]

[[routes]]
name = "r"
pool = "down"
retries = {{ attempts = 5, on = [503] }}
"#,
        listeners_toml(),
        urls(&[&first.url(), &second.url()]),
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let response = within("GET", client().get(proxy.url("/x")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    // Both were tried once; what the client sees is the second endpoint's own answer,
    // not a "no endpoint" made up after the tries ran out.
    assert_eq!((first.requests(), second.requests()), (1, 1));
    let from = response
        .headers()
        .get("x-upstream")
        .map(|v| v.to_str().unwrap().to_string());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(from.as_deref(), Some("second"), "body: {body}");
    assert_eq!(body["error"]["type"], "from_second");
    assert_eq!(
        retries_metric(proxy.admin_url("/metrics"), "r").await,
        1,
        "one request was sent again, once"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_even_for_post() {
    let dead = dead_url().await;
    let ok = TestUpstream::named("ok").start().await;
    let config = format!(
        r#"{}
[[pools]]
name = "p"
endpoints = [{}]

[[pools]]
name = "only_dead"
endpoints = [{}]

[[routes]]
name = "r"
match = {{ path_prefix = "/retried/" }}
pool = "p"
retries = {{ attempts = 2, on = [503], retry_non_idempotent = false }}

[[routes]]
name = "plain"
match = {{ path_prefix = "/plain/" }}
pool = "only_dead"
"#,
        listeners_toml(),
        urls(&[&dead, &ok.url()]),
        urls(&[&dead]),
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();
    const POSTS: usize = 4;
    for i in 0..POSTS {
        let body = format!(r#"{{"n":{i}}}"#);
        let response = within(
            "POST",
            http.post(proxy.url(&format!("/retried/{i}")))
                .header("content-type", "application/json")
                .body(body.clone())
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200, "POST {i}");
        assert_eq!(response.headers()["x-upstream"], "ok");
        let echo: serde_json::Value = response.json().await.unwrap();
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["body"], body);
    }
    assert_eq!(ok.requests(), POSTS);
    let retries = retries_metric(proxy.admin_url("/metrics"), "r").await;
    assert!(
        (1..=POSTS as u64).contains(&retries),
        "{retries} retries for {POSTS} POSTs"
    );

    // The control: the same dead port without retries is a 502 for the client.
    let response = within("POST", http.post(proxy.url("/plain/x")).body("x").send())
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "upstream_connect_failed");
}

// ---------------------------------------------------------------------------------
// Event streams that break, stall, or never start
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_an_error_event() {
    // A raw HTTP/1.1 upstream: three chunked events, then the connection closes without
    // the last chunk, once the test says so.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (cut, cut_signal) = oneshot::channel::<()>();
    let upstream = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buffer = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = socket.read(&mut buffer).await.unwrap();
            assert!(read > 0, "the proxy closed before sending a request");
            head.extend_from_slice(&buffer[..read]);
        }
        let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for n in 0..3 {
            let event = format!("data: {n}\n\n");
            out.extend_from_slice(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
        }
        socket.write_all(&out).await.unwrap();
        socket.flush().await.unwrap();
        let _ = cut_signal.await;
        drop(socket);
    });
    let config = format!(
        r#"{}
[[pools]]
name = "p"
endpoints = [{{ url = "http://{addr}" }}]

[[routes]]
name = "r"
pool = "p"
"#,
        listeners_toml()
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let response = within("response head", client().get(proxy.url("/events")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut reader = SseReader::new(response.bytes_stream());
    for n in 0..3 {
        let event = within("event", reader.next_event()).await;
        assert_eq!(event.as_deref(), Some(format!("data: {n}").as_str()));
    }
    cut.send(()).unwrap();
    let event = within("error event", reader.next_event())
        .await
        .expect("an error event before the end");
    let error = error_event(&event);
    assert_eq!(error["error"]["type"], "upstream_stream_interrupted");
    assert!(error["error"]["message"].is_string());
    assert_eq!(within("end of stream", reader.next_event()).await, None);
    upstream.await.unwrap();
}

#[tokio::test]
async fn a_silent_stream_is_cut_after_the_idle_timeout_but_a_steady_one_is_not() {
    // Senders of the silent streams, kept open (never dropped) until the test ends.
    let silent: Arc<Mutex<Vec<mpsc::Sender<Bytes>>>> = Arc::default();
    let keep = silent.clone();
    let upstream = TestUpstream::named("sse")
        .handler(move |request| {
            let keep = keep.clone();
            async move {
                let (events, receiver) = mpsc::channel(32);
                if request.uri().path() == "/silent" {
                    events.send(Bytes::from("data: first\n\n")).await.unwrap();
                    keep.lock().unwrap().push(events);
                } else {
                    tokio::spawn(async move {
                        let mut ticks = tokio::time::interval(Duration::from_millis(50));
                        for n in 0..24 {
                            ticks.tick().await;
                            if events
                                .send(Bytes::from(format!("data: {n}\n\n")))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    });
                }
                event_stream(ChannelBody(receiver))
            }
        })
        .start()
        .await;
    let config = format!(
        r#"{}
[[pools]]
name = "p"
endpoints = [{{ url = "{}" }}]

[[routes]]
name = "r"
pool = "p"
timeouts = {{ idle = "200ms" }}
"#,
        listeners_toml(),
        upstream.url()
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    let silent_run = async {
        let response = within("silent head", http.get(proxy.url("/silent")).send())
            .await
            .unwrap();
        let mut reader = SseReader::new(response.bytes_stream());
        let first = within("first event", reader.next_event()).await;
        assert_eq!(first.as_deref(), Some("data: first"));
        let quiet_since = Instant::now();
        let event = within("idle error event", reader.next_event())
            .await
            .expect("an error event");
        let waited = quiet_since.elapsed();
        let error = error_event(&event);
        assert_eq!(error["error"]["type"], "upstream_stream_interrupted");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no data"),
            "{error}"
        );
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_secs(2),
            "cut after {waited:?} of silence (idle = 200ms)"
        );
        assert_eq!(within("end of stream", reader.next_event()).await, None);
    };
    let steady_run = async {
        let started = Instant::now();
        let response = within("steady head", http.get(proxy.url("/steady")).send())
            .await
            .unwrap();
        let events = all_events(&mut SseReader::new(response.bytes_stream())).await;
        let expected: Vec<String> = (0..24).map(|n| format!("data: {n}")).collect();
        assert_eq!(events, expected, "the steady stream was cut");
        assert!(started.elapsed() >= Duration::from_secs(1));
    };
    tokio::join!(silent_run, steady_run);
    assert_eq!(silent.lock().unwrap().len(), 1);
}

/// A on every engine: the first-token wait is the core's `Attempts`, timed by each
/// engine as it reads (hyper: the first frame; HTTP/1.1: the first bytes).
#[tokio::test]
async fn a_stream_without_a_first_event_is_retried_before_the_client_sees_it() {
    for travel in Travel::ALL {
        a_stream_without_a_first_event_is_retried(travel).await;
    }
}

async fn a_stream_without_a_first_event_is_retried(travel: Travel) {
    // A answers with event-stream headers and then nothing; its senders stay open.
    let held: Arc<Mutex<Vec<mpsc::Sender<Bytes>>>> = Arc::default();
    let keep = held.clone();
    let mute = TestUpstream::named("a")
        .handler(move |_request| {
            let keep = keep.clone();
            async move {
                let (events, receiver) = mpsc::channel(1);
                keep.lock().unwrap().push(events);
                event_stream(ChannelBody(receiver))
            }
        })
        .start()
        .await;
    let talking = TestUpstream::named("b")
        .handler(|_request| async {
            let (events, receiver) = mpsc::channel(8);
            for event in [
                "data: b0\n\n",
                "data: b1\n\n",
                "data: b2\n\n",
                "data: [DONE]\n\n",
            ] {
                events.send(Bytes::from(event)).await.unwrap();
            }
            event_stream(ChannelBody(receiver))
        })
        .start()
        .await;
    let config = format!(
        r#"{}
[[pools]]
name = "p"
endpoints = [{}]

[[routes]]
name = "chat"
pool = "p"
retries = {{ attempts = 2 }}
timeouts = {{ first_token = "200ms" }}
{}
"#,
        support::travel::listeners(travel, ""),
        urls(&[&mute.url(), &talking.url()]),
        travel.route_keys(),
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();
    const STREAMS: usize = 3;
    for i in 0..STREAMS {
        let response = within(
            "stream head",
            http.post(proxy.url("/v1/chat/completions"))
                .json(&serde_json::json!({ "model": "m", "stream": true, "n": i }))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-upstream"], "b");
        let events = all_events(&mut SseReader::new(response.bytes_stream())).await;
        assert_eq!(
            events,
            ["data: b0", "data: b1", "data: b2", "data: [DONE]"],
            "stream {i}"
        );
    }
    let tries_on_a = mute.requests();
    assert!(
        (1..=STREAMS).contains(&tries_on_a),
        "A was tried {tries_on_a} times"
    );
    assert_eq!(talking.requests(), STREAMS);
    assert_eq!(
        retries_metric(proxy.admin_url("/metrics"), "chat").await,
        tries_on_a as u64
    );
    assert_eq!(held.lock().unwrap().len(), tries_on_a);
    // A first-token wait is no reason to leave the HTTP/1.1 engine.
    let handed_off = proxy
        .metrics_text()
        .await
        .contains("junction_fast_path_handoffs_total{");
    assert_eq!(handed_off, travel == Travel::HandOff, "{travel:?}");
}

// ---------------------------------------------------------------------------------
// A slow reader of a huge response
// ---------------------------------------------------------------------------------

/// A body of `remaining` bytes made on the fly in 64 KiB chunks, counting what hyper
/// took from it (what the upstream managed to send).
struct Generated {
    remaining: u64,
    chunk: Bytes,
    produced: Arc<AtomicU64>,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let take = self.remaining.min(self.chunk.len() as u64);
        self.remaining -= take;
        self.produced.fetch_add(take, Ordering::SeqCst);
        let chunk = self.chunk.slice(..take as usize);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A line of /proc/PID/status in bytes (`VmRSS`, `VmHWM`).
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|line| line.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

/// The largest size (bytes) the kernel lets a TCP socket buffer grow to:
/// the third field of /proc/sys/net/ipv4/tcp_rmem or tcp_wmem.
fn tcp_buffer_max(name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .ok()
        .and_then(|text| text.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(6 * MIB)
}

/// Reads `body` until `read` reaches `limit`, pausing 20 ms every `pause_every` bytes
/// (the slow reader), and sampling the proxy's RSS into `peak` every 4 MiB.
async fn read_until<S>(
    body: &mut S,
    pid: u32,
    limit: u64,
    pause_every: Option<u64>,
    read: &mut u64,
    peak: &mut u64,
) where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    let mut next_pause = pause_every.map(|every| *read + every);
    while *read < limit {
        let chunk = within("body chunk", body.next())
            .await
            .expect("body continues")
            .expect("body chunk");
        let before = *read;
        *read += chunk.len() as u64;
        if before / (4 * MIB) != *read / (4 * MIB) {
            *peak = (*peak).max(proc_status_bytes(pid, "VmRSS"));
        }
        if let (Some(at), Some(every)) = (next_pause, pause_every)
            && *read >= at
        {
            // A pause that lets every buffer on the way fill up.
            tokio::time::sleep(Duration::from_millis(20)).await;
            next_pause = Some(at + every);
        }
    }
}

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_a_huge_stream_keeps_the_proxy_memory_bounded() {
    const TOTAL: u64 = 1 << 30;
    const FIRST_READ: u64 = 64 * MIB;
    const SECOND_READ: u64 = 64 * MIB;
    const RSS_LIMIT: u64 = 100 * MIB;
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let upstream = TestUpstream::named("big")
        .handler(move |_request| {
            let body = Generated {
                remaining: TOTAL,
                chunk: chunk.clone(),
                produced: counter.clone(),
            };
            async move {
                let mut response = Response::new(body.boxed());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/octet-stream"),
                );
                response
            }
        })
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("junction.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"{}
[[pools]]
name = "p"
endpoints = [{{ url = "{}" }}]

[[routes]]
name = "r"
pool = "p"
"#,
            listeners_toml(),
            upstream.url()
        ),
    )
    .unwrap();
    let junction = JunctionProcess::start(&config_path, &["public"]).await;
    let pid = junction.child.id().expect("junction runs");
    let baseline = proc_status_bytes(pid, "VmRSS");

    let response = within(
        "response head",
        client().get(junction.url("public", "/huge")).send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(TOTAL));
    let mut body = response.bytes_stream();
    let mut read = 0u64;
    let mut peak = baseline;
    let started = Instant::now();
    read_until(&mut body, pid, FIRST_READ, None, &mut read, &mut peak).await;

    // Stall: the upstream may fill the buffers on the way, then must stop.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = produced.load(Ordering::SeqCst);
    let mut unchanged = 0;
    while unchanged < 4 {
        assert!(
            Instant::now() < deadline,
            "the upstream never stopped sending while the client stalled ({} MiB sent, {} MiB read)",
            produced.load(Ordering::SeqCst) / MIB,
            read / MIB
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = produced.load(Ordering::SeqCst);
        unchanged = if now == last { unchanged + 1 } else { 0 };
        last = now;
    }
    let ahead_while_stalled = last - read;
    peak = peak.max(proc_status_bytes(pid, "VmRSS"));

    // Slow reading, with pauses.
    read_until(
        &mut body,
        pid,
        FIRST_READ + SECOND_READ,
        Some(8 * MIB),
        &mut read,
        &mut peak,
    )
    .await;
    let took = started.elapsed();
    drop(body);
    let sent = produced.load(Ordering::SeqCst);
    let high_water = proc_status_bytes(pid, "VmHWM");
    eprintln!(
        "slow reader: read {} MiB in {took:?}; upstream {} MiB ahead while stalled, {} MiB sent in all; \
         junction RSS baseline {} MiB, sampled peak {} MiB, VmHWM {} MiB",
        read / MIB,
        ahead_while_stalled / MIB,
        sent / MIB,
        baseline / MIB,
        peak / MIB,
        high_water / MIB
    );
    // What may be in flight besides the proxy: the kernel buffers of two connections
    // (upstream to proxy, proxy to client) at their largest, and a little in user space.
    let allowed_ahead = 2 * (tcp_buffer_max("tcp_rmem") + tcp_buffer_max("tcp_wmem")) + 16 * MIB;
    assert!(
        ahead_while_stalled < allowed_ahead,
        "the upstream got {} MiB ahead of a stalled client (at most {} MiB fit in socket buffers)",
        ahead_while_stalled / MIB,
        allowed_ahead / MIB
    );
    assert!(sent < TOTAL, "the whole body was sent to a slow reader");
    assert!(
        sent - read < allowed_ahead,
        "upstream {} MiB ahead",
        (sent - read) / MIB
    );
    assert!(peak < RSS_LIMIT, "junction RSS reached {} MiB", peak / MIB);
    assert!(
        high_water < RSS_LIMIT,
        "junction peak RSS (VmHWM) {} MiB",
        high_water / MIB
    );
}

// ---------------------------------------------------------------------------------
// The retry budget during a full outage
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn the_retry_budget_caps_extra_load_during_a_full_outage() {
    const REQUESTS: usize = 300;
    const RATIO: f64 = 0.2;
    let down = [
        answering("d0", 503).await,
        answering("d1", 503).await,
        answering("d2", 503).await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let config = format!(
        r#"{}
[access_log]
path = "{}"
fields = ["status", "retries"]

[[pools]]
name = "down"
endpoints = [{}]

[[routes]]
name = "r"
pool = "down"
retries = {{ attempts = 3, on = [503], budget_ratio = {RATIO}, budget_min_per_second = 0, budget_window = "10s" }}
"#,
        listeners_toml(),
        log.display(),
        urls(&[&down[0].url(), &down[1].url(), &down[2].url()]),
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();
    let url = proxy.url("/v1/models");
    let statuses: Vec<u16> = futures_util::stream::iter(0..REQUESTS)
        .map(|_| {
            let request = http.get(&url).send();
            async move { within("GET", request).await.unwrap().status().as_u16() }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");

    let seen: usize = down.iter().map(RunningUpstream::requests).sum();
    let retries = seen - REQUESTS;
    eprintln!(
        "budget: {REQUESTS} requests, upstreams saw {seen} ({retries} retries; without a budget up to {})",
        REQUESTS * 3
    );
    assert!(
        seen as f64 <= REQUESTS as f64 * (1.0 + RATIO) + 1.0,
        "{seen} upstream requests for {REQUESTS} client requests"
    );
    assert!(retries >= 1, "the budget allowed no retry at all");
    assert_eq!(
        retries_metric(proxy.admin_url("/metrics"), "r").await,
        retries as u64
    );
    let entries = access_log(&log, REQUESTS).await;
    let logged: u64 = entries
        .iter()
        .map(|e| e["retries"].as_u64().expect("retries"))
        .sum();
    assert_eq!(logged, retries as u64);
}
