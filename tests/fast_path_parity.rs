//! Fast path parity: scenarios run on both HTTP/1.1 engines (`fast_path = true` and
//! `false`) that tests/http1_conformance.rs does not cover: what the proxy records
//! (metrics, access log, in-flight counts), how it answers on its own (error answers to
//! HEAD and `Connection: close` requests, invalid request targets), client disconnects,
//! broken event streams, slow request bodies, draining, request ids and trace context,
//! body limits and passive health. Both sides of the proxy are raw TCP, as in the
//! conformance tests (tests/support/raw_http.rs): a client that writes literal bytes
//! and scripted upstreams.
//!
//! Each case was written against a difference the fast path had (from the full
//! pipeline or from RFC 9110/9112), and asserts the behaviour the full pipeline has.

use crate::support;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::proxy::RunningProxy;
use support::raw_http::*;
use support::travel::{Extra, Travel, config, start};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How long a gauge or counter may take to settle after the event that moves it.
const SETTLE: Duration = Duration::from_secs(3);

/// Polls `probe` until `done` holds or `limit` passes; returns the last value seen.
async fn eventually<T, F, Fut>(limit: Duration, mut probe: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let value = probe().await;
        if done(&value) || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn post_json(path: &str, body: &str, extra_headers: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

/// A port nothing listens on.
async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    format!("http://{}", listener.local_addr().unwrap())
}

// ---------------------------------------------------------------------------------
// Metrics.
// ---------------------------------------------------------------------------------

struct Metrics(HashMap<String, f64>);

impl Metrics {
    async fn of(proxy: &RunningProxy) -> Metrics {
        let text = within("GET /metrics", proxy.metrics_text()).await;
        Metrics(support::parse_metrics(&text))
    }

    /// Sum of the series of `name` whose labels include every pair of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                let (series_name, rest) = series.split_once('{').unwrap_or((series, "}"));
                series_name == name
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// Every series of `name` with a non-zero value (for failure messages).
    fn nonzero(&self, name: &str) -> Vec<String> {
        let mut all: Vec<String> = self
            .0
            .iter()
            .filter(|(series, value)| series.split('{').next() == Some(name) && **value != 0.0)
            .map(|(series, value)| format!("{series} {value}"))
            .collect();
        all.sort();
        all
    }
}

async fn in_flight(proxy: &RunningProxy) -> f64 {
    Metrics::of(proxy)
        .await
        .sum("junction_inflight_requests", &[])
}

/// On the fast path, that no connection was handed to hyper: the case really ran on
/// the fast path.
async fn assert_stayed_on_the_fast_path(proxy: &RunningProxy, path: Travel) {
    if path == Travel::Fast {
        let handoffs = Metrics::of(proxy)
            .await
            .nonzero("junction_fast_path_handoffs_total");
        assert!(handoffs.is_empty(), "hand-offs: {handoffs:?}");
    }
}

/// Requests recorded in `junction_requests_total`, all routes and codes.
async fn recorded(proxy: &RunningProxy) -> f64 {
    Metrics::of(proxy).await.sum("junction_requests_total", &[])
}

// ---------------------------------------------------------------------------------
// The proxy's own answers.
// ---------------------------------------------------------------------------------

/// A `HEAD` whose endpoint cannot be reached gets Junction's own 502. RFC 9110 9.3.2:
/// no content in a response to HEAD, so the next request on the connection is answered
/// in step.
async fn head_answered_by_the_proxy_has_no_body(path: Travel) {
    let proxy = start(path, &[dead_url().await], &Extra::default()).await;
    let mut client = RawClient::connect(&proxy).await;
    let head = client
        .request(
            "HEAD",
            &format!("HEAD /head HTTP/1.1\r\nHost: {HOST}\r\n\r\n"),
        )
        .await;
    assert_eq!(head.status, 502, "{}", head.head.raw);

    client.send(get("/after-head").as_bytes()).await;
    let raw = within("the response after the HEAD", client.wire.read_head())
        .await
        .expect("read")
        .expect("a response after the HEAD");
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 502 "),
        "the response after a HEAD 502 does not start with its status line \
         (the HEAD answer had a body): {text:?}"
    );
}

/// `Connection: close` from the client is honoured also when Junction answers itself
/// (RFC 9112 9.6): the 502 says `connection: close` and the connection ends.
async fn connection_close_is_honoured_on_the_proxys_own_answers(path: Travel) {
    let proxy = start(path, &[dead_url().await], &Extra::default()).await;
    let mut client = RawClient::connect(&proxy).await;
    let response = client
        .request(
            "GET",
            &format!("GET /close HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        )
        .await;
    assert_eq!(response.status, 502, "{}", response.head.raw);
    assert_eq!(response.error_type(), "upstream_connect_failed");
    let closed = client.closes_within(SETTLE).await;
    assert!(
        response.head.tokens("connection").contains(&"close".into()) && closed.is_ok(),
        "after a 502 to a `Connection: close` request: header {:?}, connection: {closed:?}",
        response.head.get("connection")
    );
}

/// A request target that is not a valid URI (`<`, `>`, a backtick, `"` in the query)
/// is refused with 400 and never reaches the endpoint (RFC 9112 3.2, 3.3).
async fn invalid_request_targets_are_refused_with_400(path: Travel) {
    let upstream = Upstream::start(echo_path).await;
    let proxy = start(path, &[upstream.url()], &Extra::default()).await;
    let mut answers = Vec::new();
    for target in ["/a<b>", "/x`y", "/q?x=\"y\""] {
        let mut client = RawClient::connect(&proxy).await;
        let response = client.get(target).await;
        answers.push((target, response.status));
    }
    let seen: Vec<String> = upstream.seen().iter().map(|s| s.path.clone()).collect();
    assert!(
        answers.iter().all(|(_, status)| *status == 400) && seen.is_empty(),
        "statuses {answers:?}; targets the endpoint saw: {seen:?}"
    );
}

// ---------------------------------------------------------------------------------
// Clients that go away.
// ---------------------------------------------------------------------------------

/// A client that closes its connection while the endpoint has not answered yet: the
/// request is recorded at once as `499`, and it is no longer in flight (the count
/// `least_conn` and `p2c_ewma` balance on).
async fn client_gone_before_the_response_head_is_499_and_not_in_flight(path: Travel) {
    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let upstream = {
        let (arrived, release) = (arrived.clone(), release.clone());
        Upstream::start(move |_seen| {
            arrived.notify_one();
            vec![Step::Wait(release.clone()), Step::Write(ok("late"))]
        })
        .await
    };
    let proxy = start(path, &[upstream.url()], &Extra::default()).await;
    let mut client = RawClient::connect(&proxy).await;
    client.send(get("/gone").as_bytes()).await;
    within("the request reaching the endpoint", arrived.notified()).await;
    assert_eq!(in_flight(&proxy).await, 1.0);
    drop(client);

    let left_in_flight = eventually(SETTLE, || in_flight(&proxy), |n| *n == 0.0).await;
    release.notify_one();
    eventually(SETTLE, || recorded(&proxy), |n| *n >= 1.0).await;
    let metrics = Metrics::of(&proxy).await;
    let requests = metrics.nonzero("junction_requests_total");
    assert!(
        left_in_flight == 0.0
            && metrics.sum("junction_requests_total", &[("code", "499")]) == 1.0
            && metrics.sum("junction_requests_total", &[]) == 1.0,
        "in flight {SETTLE:?} after the client left: {left_in_flight}; recorded: {requests:?}"
    );
}

/// A client that goes away in the middle of an event stream, while the endpoint is
/// quiet: the request is recorded and no longer in flight.
async fn client_gone_mid_stream_is_recorded_and_not_in_flight(path: Travel) {
    let release = Arc::new(Notify::new());
    let upstream = {
        let release = release.clone();
        Upstream::start(move |_seen| {
            vec![
                Step::Write(chunked_head("text/event-stream")),
                Step::Write(chunk(b"data: one\n\n")),
                Step::Wait(release.clone()),
                Step::Write(chunk(b"data: two\n\n")),
                Step::Write(LAST_CHUNK.to_vec()),
            ]
        })
        .await
    };
    let proxy = start(path, &[upstream.url()], &Extra::default()).await;
    let mut client = RawClient::connect(&proxy).await;
    client.send(get("/stream").as_bytes()).await;
    let (status, _, framing) = client.read_head("GET").await;
    assert_eq!((status, framing), (200, Framing::Chunked));
    let first = within("the first event", client.wire.read_chunk(&mut Vec::new()))
        .await
        .expect("a chunk")
        .expect("data");
    assert_eq!(first, b"data: one\n\n");
    assert_eq!(in_flight(&proxy).await, 1.0);
    drop(client);

    let left_in_flight = eventually(SETTLE, || in_flight(&proxy), |n| *n == 0.0).await;
    let metrics = Metrics::of(&proxy).await;
    release.notify_one();
    assert!(
        left_in_flight == 0.0 && metrics.sum("junction_requests_total", &[("code", "200")]) == 1.0,
        "in flight {SETTLE:?} after the client left: {left_in_flight}; recorded: {:?}",
        metrics.nonzero("junction_requests_total")
    );
}

// ---------------------------------------------------------------------------------
// Broken event streams.
// ---------------------------------------------------------------------------------

/// An event stream the endpoint delimits by closing (no length, not chunked) that goes
/// quiet past `timeouts.idle` ends with the `event: error` event (configuration.md,
/// "A response cut after it started"), so the client can tell it from a complete one.
async fn close_delimited_event_stream_cut_by_idle_timeout_ends_with_an_error_event(path: Travel) {
    let upstream = Upstream::start(|_seen| {
        vec![
            Step::Write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n".to_vec()),
            Step::Write(b"data: one\n\n".to_vec()),
            Step::Hang,
        ]
    })
    .await;
    let extra = Extra {
        route: r#"timeouts = { idle = "300ms" }"#,
        ..Extra::default()
    };
    let proxy = start(path, &[upstream.url()], &extra).await;
    let mut client = RawClient::connect(&proxy).await;
    let response = client.get("/quiet").await;
    assert_eq!(response.status, 200);
    let text = response.text();
    assert!(text.starts_with("data: one\n\n"), "{text:?}");
    assert!(
        text.contains("event: error\n") && text.contains("upstream_stream_interrupted"),
        "framing {:?}, body {text:?}",
        response.framing
    );
    let metrics = eventually(
        SETTLE,
        || Metrics::of(&proxy),
        |m| m.sum("junction_requests_total", &[]) == 1.0,
    )
    .await;
    assert_eq!(metrics.sum("junction_inflight_requests", &[]), 0.0);
}

/// A chunked event stream cut between chunks by the total timeout ends with the error
/// event, and the client's connection stays usable (passes on both paths; the other
/// tests cut streams with the idle timeout or the endpoint closing, not `total`).
async fn chunked_event_stream_cut_by_total_timeout_ends_with_an_error_event(path: Travel) {
    let upstream = Upstream::start(|seen| {
        if seen.path == "/next" {
            return echo_path(seen);
        }
        vec![
            Step::Write(chunked_head("text/event-stream")),
            Step::Write(chunk(b"data: one\n\n")),
            Step::Hang,
        ]
    })
    .await;
    let extra = Extra {
        route: r#"timeouts = { total = "400ms" }"#,
        ..Extra::default()
    };
    let proxy = start(path, &[upstream.url()], &extra).await;
    let mut client = RawClient::connect(&proxy).await;
    let response = client.get("/total").await;
    let text = response.text();
    assert!(text.starts_with("data: one\n\nevent: error\n"), "{text:?}");
    assert!(text.contains("total timeout"), "{text:?}");
    assert_stayed_on_the_fast_path(&proxy, path).await;
    let next = client.get("/next").await;
    assert_eq!((next.status, next.text().as_str()), (200, "/next"));
}

// ---------------------------------------------------------------------------------
// Slow request bodies.
// ---------------------------------------------------------------------------------

/// `header_read_timeout` limits the request *head* (configuration.md: "Time a client
/// has to send a complete HTTP/1.1 request head"); a small body that arrives after it
/// is still forwarded. (The fast path used to read the body under the head's deadline
/// and close the connection without an answer; it now hands such a body to hyper.)
async fn a_body_slower_than_header_read_timeout_is_still_forwarded(path: Travel) {
    let upstream = Upstream::start(|seen| vec![Step::Write(ok(&seen.body))]).await;
    let extra = Extra {
        listener: r#"header_read_timeout = "500ms""#,
        ..Extra::default()
    };
    let proxy = start(path, &[upstream.url()], &extra).await;
    let mut client = RawClient::connect(&proxy).await;
    client
        .send(
            format!("POST /slow-body HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\n\r\n")
                .as_bytes(),
        )
        .await;
    // The scenario itself: a client slower with its body than the head timeout.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = client.wire.stream.write_all(b"hello").await;
    let raw = within("an answer to the slow body", client.wire.read_head()).await;
    let status = match &raw {
        Ok(Some(raw)) => parse_status(&Head::parse(raw)),
        _ => 0,
    };
    assert_eq!(
        status,
        200,
        "answer to a body sent 1 s after the head: {raw:?}; the endpoint saw {:?}",
        upstream
            .seen()
            .iter()
            .map(|s| s.path.clone())
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------
// Draining.
// ---------------------------------------------------------------------------------

/// A response still waiting for its endpoint when the drain starts is delivered, with
/// `connection: close` (the client learns not to send another request on it), and
/// the connection then ends. An idle connection is closed at once.
async fn a_response_in_flight_during_drain_says_connection_close(path: Travel) {
    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let upstream = {
        let (arrived, release) = (arrived.clone(), release.clone());
        Upstream::start(move |seen| {
            if seen.path == "/idle" {
                return echo_path(seen);
            }
            arrived.notify_one();
            vec![Step::Wait(release.clone()), Step::Write(ok("done"))]
        })
        .await
    };
    let extra = Extra {
        top: "[server]\nshutdown_grace = \"5s\"",
        ..Extra::default()
    };
    let proxy = start(path, &[upstream.url()], &extra).await;
    let mut idle = RawClient::connect(&proxy).await;
    assert_eq!(idle.get("/idle").await.status, 200);
    let mut busy = RawClient::connect(&proxy).await;
    busy.send(get("/busy").as_bytes()).await;
    within("the request reaching the endpoint", arrived.notified()).await;

    let gateway = proxy.gateway.clone();
    let shutdown = tokio::spawn(async move { gateway.shutdown().await });
    // The idle connection closing shows the drain has begun.
    idle.closes_within(STEP)
        .await
        .expect("an idle connection closes at the drain");
    release.notify_one();
    let response = busy.final_response("GET").await.1;
    assert_eq!((response.status, response.text().as_str()), (200, "done"));
    let closed = busy.closes_within(STEP).await;
    within("the shutdown", shutdown).await.expect("shutdown");
    assert!(
        response.head.tokens("connection").contains(&"close".into()) && closed.is_ok(),
        "response during drain: connection header {:?}, then {closed:?}\n{}",
        response.head.get("connection"),
        response.head.raw
    );
}

// ---------------------------------------------------------------------------------
// What is recorded: metrics and the access log.
// ---------------------------------------------------------------------------------

const JSON_REPLY: &str = r#"{"id":"c1","choices":[{"message":{"role":"assistant","content":"Hi there"}}],"usage":{"prompt_tokens":11,"completion_tokens":5,"total_tokens":16}}"#;

const SSE_EVENTS: [&str; 4] = [
    "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\ndata: [DONE]\n\n",
];

/// An OpenAI-style model server: `/json` answers JSON with `usage`, `/sse` streams
/// deltas with `usage` in the last event, `/slow...` never answers, anything else
/// echoes the path.
async fn model_server() -> Upstream {
    Upstream::start(|seen| {
        if seen.path.starts_with("/json") {
            vec![Step::Write(reply("200 OK", "application/json", JSON_REPLY))]
        } else if seen.path.starts_with("/sse") {
            let mut steps = vec![Step::Write(chunked_head("text/event-stream"))];
            for event in SSE_EVENTS {
                steps.push(Step::Write(chunk(event.as_bytes())));
            }
            steps.push(Step::Write(LAST_CHUNK.to_vec()));
            steps
        } else if seen.path.starts_with("/slow") {
            vec![Step::Hang]
        } else {
            echo_path(seen)
        }
    })
    .await
}

/// Requests, bytes, tokens, time to first token, Junction's own errors and the
/// in-flight gauge count the same on both paths, exactly.
async fn metrics_count_requests_bytes_tokens_and_errors_exactly(path: Travel) {
    let upstream = model_server().await;
    let dead = dead_url().await;
    let before = format!(
        r#"
[[pools]]
name = "gone"
endpoints = [{{ url = "{dead}" }}]

[[routes]]
name = "dead"
match = {{ path_prefix = "/dead" }}
pool = "gone"

[[routes]]
name = "slow"
match = {{ path_prefix = "/slow" }}
pool = "p"
timeouts = {{ response_headers = "300ms" }}
"#
    );
    let extra = Extra {
        pool: "version = \"v1\"",
        before: &before,
        ..Extra::default()
    };
    let proxy = start(path, &[upstream.url()], &extra).await;
    let mut client = RawClient::connect(&proxy).await;
    let request_body = r#"{"model":"m","messages":[]}"#;
    let json = client
        .request("POST", &post_json("/json", request_body, ""))
        .await;
    assert_eq!((json.status, json.text().as_str()), (200, JSON_REPLY));
    let sse = client.get("/sse").await;
    assert_eq!(sse.text(), SSE_EVENTS.concat());
    let dead_answer = client.get("/dead").await;
    assert_eq!(dead_answer.status, 502);
    let slow = client.get("/slow").await;
    assert_eq!(slow.status, 504);

    let metrics = eventually(
        SETTLE,
        || Metrics::of(&proxy),
        |m| m.sum("junction_requests_total", &[]) == 4.0,
    )
    .await;
    let all = [("route", "all"), ("pool", "p"), ("version", "v1")];
    let endpoint = upstream.url();
    let expected: Vec<Expected> = vec![
        (
            "junction_requests_total",
            vec![("route", "all"), ("endpoint", &endpoint), ("code", "200")],
            2.0,
        ),
        (
            "junction_requests_total",
            vec![("route", "dead"), ("endpoint", &dead), ("code", "502")],
            1.0,
        ),
        (
            "junction_requests_total",
            vec![("route", "slow"), ("endpoint", &endpoint), ("code", "504")],
            1.0,
        ),
        (
            "junction_request_bytes_total",
            all.to_vec(),
            request_body.len() as f64,
        ),
        (
            "junction_response_bytes_total",
            all.to_vec(),
            (JSON_REPLY.len() + SSE_EVENTS.concat().len()) as f64,
        ),
        (
            "junction_response_bytes_total",
            vec![("route", "dead")],
            dead_answer.body.len() as f64,
        ),
        (
            "junction_response_bytes_total",
            vec![("route", "slow")],
            slow.body.len() as f64,
        ),
        (
            "junction_llm_tokens_total",
            [&all[..], &[("kind", "prompt"), ("source", "reported")]].concat(),
            18.0,
        ),
        (
            "junction_llm_tokens_total",
            [&all[..], &[("kind", "completion"), ("source", "reported")]].concat(),
            8.0,
        ),
        (
            "junction_llm_time_to_first_token_seconds_count",
            all.to_vec(),
            1.0,
        ),
        (
            "junction_llm_time_per_output_token_seconds_count",
            all.to_vec(),
            1.0,
        ),
        (
            "junction_upstream_time_to_first_byte_seconds_count",
            all.to_vec(),
            2.0,
        ),
        (
            "junction_request_duration_seconds_count",
            vec![("route", "slow")],
            1.0,
        ),
        (
            "junction_errors_total",
            vec![("route", "dead"), ("type", "upstream_connect_failed")],
            1.0,
        ),
        (
            "junction_errors_total",
            vec![("route", "slow"), ("type", "upstream_timeout")],
            1.0,
        ),
        ("junction_errors_total", vec![], 2.0),
        ("junction_inflight_requests", vec![], 0.0),
    ];
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(name, labels, value)| metrics.sum(name, labels) != *value)
        .map(|(name, labels, value)| {
            format!(
                "{name}{labels:?}: {} instead of {value}",
                metrics.sum(name, labels)
            )
        })
        .collect();
    assert_stayed_on_the_fast_path(&proxy, path).await;
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A metric, the labels its series must have, and the sum expected over them.
type Expected<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

async fn access_log_lines(file: &std::path::Path, count: usize) -> Vec<serde_json::Value> {
    let read = || async {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON access log line"))
            .collect::<Vec<serde_json::Value>>()
    };
    eventually(STEP, read, |lines| lines.len() >= count).await
}

/// The access log has the same fields and values on both paths for a GET (behind
/// trusted proxies, with a trace), a POST with a JSON answer and a 502.
async fn access_log_fields_are_the_same_for_get_post_and_502(path: Travel) {
    let upstream = model_server().await;
    let dead = dead_url().await;
    let log = tempfile::NamedTempFile::new().expect("temp file");
    let top = format!(
        "[access_log]\npath = \"{}\"",
        log.path().display().to_string().replace('\\', "/")
    );
    let before = format!(
        r#"
[[pools]]
name = "gone"
endpoints = [{{ url = "{dead}" }}]

[[routes]]
name = "dead"
match = {{ path_prefix = "/dead" }}
pool = "gone"
"#
    );
    let extra = Extra {
        top: &top,
        listener: r#"trusted_proxies = ["127.0.0.0/8", "10.0.0.0/8"]"#,
        pool: "version = \"v1\"",
        before: &before,
        ..Extra::default()
    };
    let proxy = start(path, &[upstream.url()], &extra).await;
    let mut client = RawClient::connect(&proxy).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let got = client
        .request(
            "GET",
            &format!(
                "GET /get?q=1&r=%20 HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: parity-agent/1.0\r\n\
                 X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 10.0.0.1\r\nX-Request-Id: log-get\r\n\
                 traceparent: 00-{trace}-00f067aa0ba902b7-01\r\n\r\n"
            ),
        )
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        upstream.last().head.all("x-forwarded-for").join(", "),
        "203.0.113.9, 10.0.0.1, 127.0.0.1"
    );
    let request_body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let posted = client
        .request(
            "POST",
            &post_json("/json", request_body, "X-Request-Id: log-post\r\n"),
        )
        .await;
    assert_eq!(posted.status, 200);
    let failed = client
        .request(
            "GET",
            &format!("GET /dead HTTP/1.1\r\nHost: {HOST}\r\nX-Request-Id: log-dead\r\n\r\n"),
        )
        .await;
    assert_eq!(failed.status, 502);

    let lines = access_log_lines(log.path(), 3).await;
    let line = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no access log line for {id}: {lines:#?}"))
    };
    let endpoint = upstream.url();
    let expected = [
        (
            "log-get",
            serde_json::json!({
                "trace_id": trace, "client_ip": "203.0.113.9", "method": "GET",
                "path": "/get?q=1&r=%20", "protocol": "HTTP/1.1", "route": "all", "pool": "p",
                "version": "v1", "endpoint": endpoint, "status": 200, "error": null,
                "bytes_in": 0, "bytes_out": got.body.len(), "ttft_ms": null, "prompt_tokens": null,
                "completion_tokens": null, "retries": 0, "user_agent": "parity-agent/1.0",
            }),
        ),
        (
            "log-post",
            serde_json::json!({
                "trace_id": null, "client_ip": "127.0.0.1", "method": "POST", "path": "/json",
                "protocol": "HTTP/1.1", "route": "all", "pool": "p", "version": "v1",
                "endpoint": endpoint, "status": 200, "error": null,
                "bytes_in": request_body.len(), "bytes_out": JSON_REPLY.len(), "ttft_ms": null,
                "prompt_tokens": 11, "completion_tokens": 5, "retries": 0, "user_agent": null,
            }),
        ),
        (
            "log-dead",
            serde_json::json!({
                "trace_id": null, "client_ip": "127.0.0.1", "method": "GET", "path": "/dead",
                "protocol": "HTTP/1.1", "route": "dead", "pool": "gone", "version": null,
                "endpoint": dead, "status": 502, "error": "upstream_connect_failed",
                "bytes_in": 0, "bytes_out": failed.body.len(), "ttfb_ms": null, "ttft_ms": null,
                "prompt_tokens": null, "completion_tokens": null, "retries": 0,
                "user_agent": null,
            }),
        ),
    ];
    let mut wrong = Vec::new();
    for (id, fields) in &expected {
        let actual = line(id);
        for (name, value) in fields.as_object().expect("object") {
            if &actual[name] != value {
                wrong.push(format!("{id}.{name}: {} instead of {value}", actual[name]));
            }
        }
        for name in ["time", "duration_ms"] {
            if actual[name].is_null() {
                wrong.push(format!("{id}.{name} is null"));
            }
        }
    }
    for id in ["log-get", "log-post"] {
        if !line(id)["ttfb_ms"].is_number() {
            wrong.push(format!("{id}.ttfb_ms is {}", line(id)["ttfb_ms"]));
        }
    }
    assert_stayed_on_the_fast_path(&proxy, path).await;
    assert!(wrong.is_empty(), "{wrong:#?}\n{lines:#?}");
}

// ---------------------------------------------------------------------------------
// Request ids and trace context.
// ---------------------------------------------------------------------------------

fn is_made_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `x-request-id`: empty or over 200 bytes is replaced by a made id, 200 bytes is kept;
/// the endpoint and the client see the same one id. `traceparent`: a valid one gets a
/// new span id, an invalid one is removed, another version is forwarded as `00`.
async fn request_id_and_traceparent_edge_cases(path: Travel) {
    let upstream = Upstream::start(echo_path).await;
    let proxy = start(path, &[upstream.url()], &Extra::default()).await;
    let mut client = RawClient::connect(&proxy).await;
    let long_200 = "a".repeat(200);
    let long_201 = "b".repeat(201);
    for (sent, kept) in [("", false), (long_200.as_str(), true), (&long_201, false)] {
        let response = client
            .request(
                "GET",
                &format!("GET /id HTTP/1.1\r\nHost: {HOST}\r\nX-Request-Id: {sent}\r\n\r\n"),
            )
            .await;
        let seen = upstream.last();
        let upstream_ids = seen.head.all("x-request-id");
        let client_ids = response.head.all("x-request-id");
        assert_eq!(upstream_ids, client_ids, "{} bytes sent", sent.len());
        assert_eq!(client_ids.len(), 1, "{}", response.head.raw);
        if kept {
            assert_eq!(client_ids[0], sent);
        } else {
            assert!(is_made_id(client_ids[0]), "{:?}", client_ids[0]);
        }
    }

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let cases = [
        (format!("00-{trace}-00f067aa0ba902b7-01"), Some("01")),
        (format!("01-{trace}-00f067aa0ba902b7-00-extra"), Some("00")),
        (
            format!("00-{}-00f067aa0ba902b7-01", trace.to_uppercase()),
            None,
        ),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01".into(),
            None,
        ),
        (format!("00-{trace}-00f067aa0ba902b7-01-extra"), None),
    ];
    for (sent, flags) in cases {
        let response = client
            .request(
                "GET",
                &format!("GET /trace HTTP/1.1\r\nHost: {HOST}\r\ntraceparent: {sent}\r\n\r\n"),
            )
            .await;
        assert_eq!(response.status, 200);
        let seen = upstream.last();
        let forwarded = seen.head.all("traceparent");
        match flags {
            Some(flags) => {
                assert_eq!(forwarded.len(), 1, "{sent}: {}", seen.head.raw);
                let parts: Vec<&str> = forwarded[0].split('-').collect();
                assert_eq!(parts.len(), 4, "{sent} -> {}", forwarded[0]);
                assert_eq!((parts[0], parts[1], parts[3]), ("00", trace, flags));
                assert_ne!(parts[2], "00f067aa0ba902b7", "a new span id");
                assert_eq!(parts[2].len(), 16);
            }
            None => assert!(forwarded.is_empty(), "{sent} -> {forwarded:?}"),
        }
    }
    assert_stayed_on_the_fast_path(&proxy, path).await;
}

// ---------------------------------------------------------------------------------
// Bodies at their limits.
// ---------------------------------------------------------------------------------

/// Pads a JSON body with a `model` to exactly `len` bytes.
fn model_body(model: &str, len: usize) -> String {
    let start = format!(r#"{{"model":"{model}","pad":""#);
    let end = r#""}"#;
    let pad = len - start.len() - end.len();
    format!("{start}{}{end}", "x".repeat(pad))
}

/// `model` routing reads bodies up to `model_body_limit` exactly (one byte more is
/// 413), and a route's `max_body_bytes` lets its limit through and refuses one more.
async fn model_routing_and_body_limits_at_the_edge(path: Travel) {
    let llama =
        Upstream::start(|seen| vec![Step::Write(ok(format!("llama {}", seen.body.len())))]).await;
    let other =
        Upstream::start(|seen| vec![Step::Write(ok(format!("other {}", seen.body.len())))]).await;
    let before = format!(
        r#"
[[pools]]
name = "llama"
endpoints = [{{ url = "{}" }}]

[[routes]]
name = "capped"
match = {{ path_prefix = "/capped" }}
pool = "p"
max_body_bytes = 100

[[routes]]
name = "llama"
match = {{ model = "llama-*" }}
pool = "llama"
"#,
        llama.url()
    );
    let extra = Extra {
        listener: r#"model_body_limit = "2KiB""#,
        before: &before,
        ..Extra::default()
    };
    let proxy = start(path, &[other.url()], &extra).await;
    let mut client = RawClient::connect(&proxy).await;
    let at_limit = client
        .request(
            "POST",
            &post_json("/v1/chat", &model_body("llama-3", 2048), ""),
        )
        .await;
    assert_eq!(
        (at_limit.status, at_limit.text().as_str()),
        (200, "llama 2048")
    );
    let not_llama = client
        .request(
            "POST",
            &post_json("/v1/chat", &model_body("gpt-4", 2048), ""),
        )
        .await;
    assert_eq!(not_llama.text(), "other 2048");
    let over = client
        .request(
            "POST",
            &post_json("/v1/chat", &model_body("llama-3", 2049), ""),
        )
        .await;
    assert_eq!(over.status, 413, "{}", over.text());
    assert_eq!(over.error_type(), "body_too_large");

    let mut client = RawClient::connect(&proxy).await;
    let hundred = "y".repeat(100);
    let capped = client
        .request(
            "POST",
            &format!(
                "POST /capped HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100\r\n\r\n{hundred}"
            ),
        )
        .await;
    assert_eq!((capped.status, capped.text().as_str()), (200, "other 100"));
    let mut client = RawClient::connect(&proxy).await;
    let too_big = client
        .request(
            "POST",
            &format!(
                "POST /capped HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 101\r\n\r\n{hundred}y"
            ),
        )
        .await;
    assert_eq!(too_big.status, 413);
    assert_eq!(too_big.error_type(), "body_too_large");
}

// ---------------------------------------------------------------------------------
// Passive health and Retry-After.
// ---------------------------------------------------------------------------------

/// A `503` with `Retry-After` holds its endpoint (the next requests go to the other
/// one and `junction_endpoint_up` is 0), and `5xx` answers in a row eject an endpoint
/// by outlier detection, counted in `junction_ejections_total`.
async fn retry_after_holds_and_5xx_answers_eject(path: Travel) {
    let busy = Upstream::start(|_seen| {
        let mut answer = reply("503 Service Unavailable", "text/plain", "busy");
        let end = find(&answer, b"\r\n\r\n").expect("a head");
        answer.splice(end..end, b"\r\nRetry-After: 60".iter().copied());
        vec![Step::Write(answer)]
    })
    .await;
    let failing = Upstream::start(|_seen| {
        vec![Step::Write(reply(
            "500 Internal Server Error",
            "text/plain",
            "no",
        ))]
    })
    .await;
    let good = Upstream::start(echo_path).await;
    let extra = Extra {
        pool: r#"outlier = { consecutive_failures = 2, base_ejection = "60s", max_ejection_percent = 100 }"#,
        ..Extra::default()
    };
    let proxy = start(path, &[busy.url(), failing.url(), good.url()], &extra).await;
    let mut client = RawClient::connect(&proxy).await;
    let mut statuses = Vec::new();
    for n in 0..9 {
        statuses.push(client.get(&format!("/r{n}")).await.status);
    }
    // Round robin: busy (503, held), failing (500), good, failing (500, ejected),
    // then only good.
    assert_eq!(statuses, [503, 500, 200, 500, 200, 200, 200, 200, 200]);
    assert_eq!(busy.seen().len(), 1);
    assert_eq!(failing.seen().len(), 2);
    let metrics = Metrics::of(&proxy).await;
    let up = |url: &str| metrics.sum("junction_endpoint_up", &[("endpoint", url)]);
    assert_eq!(
        (up(&busy.url()), up(&failing.url()), up(&good.url())),
        (0.0, 0.0, 1.0)
    );
    assert_eq!(
        metrics.sum("junction_ejections_total", &[("endpoint", &failing.url())]),
        1.0
    );
    assert_stayed_on_the_fast_path(&proxy, path).await;
    assert_eq!(busy.connections.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------
// Repeated singleton headers.
// ---------------------------------------------------------------------------------

/// A request with two `Content-Type` lines and two `User-Agent` lines: the full
/// pipeline reads the first of each (`HeaderMap::get`), for `model` routing and for the
/// access log; the fast path must read the same line.
async fn repeated_content_type_and_user_agent_are_read_as_the_first_line(path: Travel) {
    let llama = Upstream::start(|_seen| vec![Step::Write(ok("llama"))]).await;
    let other = Upstream::start(|_seen| vec![Step::Write(ok("other"))]).await;
    let log = tempfile::NamedTempFile::new().expect("temp file");
    let top = format!(
        "[access_log]\npath = \"{}\"\nfields = [\"request_id\", \"route\", \"user_agent\"]",
        log.path().display().to_string().replace('\\', "/")
    );
    let before = format!(
        r#"
[[pools]]
name = "llama"
endpoints = [{{ url = "{}" }}]

[[routes]]
name = "llama"
match = {{ model = "llama-*" }}
pool = "llama"
"#,
        llama.url()
    );
    let extra = Extra {
        top: &top,
        before: &before,
        ..Extra::default()
    };
    let proxy = start(path, &[other.url()], &extra).await;
    let mut client = RawClient::connect(&proxy).await;
    let body = r#"{"model":"llama-3"}"#;
    let response = client
        .request(
            "POST",
            &format!(
                "POST /v1/chat HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/plain\r\n\
                 Content-Type: application/json\r\nUser-Agent: first/1\r\nUser-Agent: second/2\r\n\
                 X-Request-Id: twice\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .await;
    let lines = access_log_lines(log.path(), 1).await;
    assert_eq!(
        (
            response.text().as_str(),
            lines[0]["route"].as_str(),
            lines[0]["user_agent"].as_str()
        ),
        ("other", Some("all"), Some("first/1")),
        "answer, then the access log line {}",
        lines[0]
    );
}

// ---------------------------------------------------------------------------------
// Reload with connections open.
// ---------------------------------------------------------------------------------

/// A reload while a client connection is open (and a request on it is in flight):
/// the request in flight finishes on its old endpoint, and the next request on the
/// same connection follows the new config.
async fn a_reload_applies_to_the_next_request_on_an_open_connection(path: Travel) {
    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let old = {
        let (arrived, release) = (arrived.clone(), release.clone());
        Upstream::start(move |seen| {
            if seen.path == "/held" {
                arrived.notify_one();
                return vec![Step::Wait(release.clone()), Step::Write(ok("old held"))];
            }
            vec![Step::Write(ok("old"))]
        })
        .await
    };
    let new = Upstream::start(|_seen| vec![Step::Write(ok("new"))]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("junction.toml");
    std::fs::write(&file, config(path, &[old.url()], &Extra::default())).expect("write");
    let gateway = junction::server::Gateway::from_file(
        file.clone(),
        Arc::new(junction::balance::SplitMix::with_seed(7)),
    )
    .expect("valid config");
    gateway.start().await.expect("start");
    let proxy = RunningProxy { gateway };

    let mut held = RawClient::connect(&proxy).await;
    let mut client = RawClient::connect(&proxy).await;
    assert_eq!(client.get("/before").await.text(), "old");
    held.send(get("/held").as_bytes()).await;
    within("the held request arriving", arrived.notified()).await;

    std::fs::write(&file, config(path, &[new.url()], &Extra::default())).expect("rewrite");
    within("the reload", proxy.gateway.reload())
        .await
        .expect("reload");
    assert_eq!(client.get("/after").await.text(), "new");
    release.notify_one();
    let answer = held.final_response("GET").await.1;
    assert_eq!((answer.status, answer.text().as_str()), (200, "old held"));
    assert_eq!(held.get("/after-held").await.text(), "new");
    assert_stayed_on_the_fast_path(&proxy, path).await;
    let metrics = eventually(
        SETTLE,
        || Metrics::of(&proxy),
        |m| m.sum("junction_inflight_requests", &[]) == 0.0,
    )
    .await;
    assert_eq!(metrics.sum("junction_inflight_requests", &[]), 0.0);
}

// ---------------------------------------------------------------------------------
// Every case on both engines: `CASE::hyper_path` and `CASE::fast_path`.
// ---------------------------------------------------------------------------------

on_both_engines!(
    head_answered_by_the_proxy_has_no_body,
    connection_close_is_honoured_on_the_proxys_own_answers,
    invalid_request_targets_are_refused_with_400,
    client_gone_before_the_response_head_is_499_and_not_in_flight,
    client_gone_mid_stream_is_recorded_and_not_in_flight,
    close_delimited_event_stream_cut_by_idle_timeout_ends_with_an_error_event,
    chunked_event_stream_cut_by_total_timeout_ends_with_an_error_event,
    a_body_slower_than_header_read_timeout_is_still_forwarded,
    a_response_in_flight_during_drain_says_connection_close,
    metrics_count_requests_bytes_tokens_and_errors_exactly,
    access_log_fields_are_the_same_for_get_post_and_502,
    request_id_and_traceparent_edge_cases,
    model_routing_and_body_limits_at_the_edge,
    retry_after_holds_and_5xx_answers_eject,
    repeated_content_type_and_user_agent_are_read_as_the_first_line,
    a_reload_applies_to_the_next_request_on_an_open_connection,
);
