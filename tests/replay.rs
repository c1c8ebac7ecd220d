//! `junction replay`: captured flows sent again to mock model servers, by URL and by a
//! config's pool, each reply measured beside its original (status, TTFT, tokens,
//! answer); a flow whose body the capture cut short is skipped; setup errors exit 1.

use crate::support;

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use junction::demo::mock::{MockModelServer, MockOptions};
use junction::inspect::flow::{
    FORMAT, Flow, FlowBody, FlowRequest, FlowResponse, SseEventRecord, SseRecord, Timings, Tokens,
    stored_header,
};
use junction::inspect::ring::{Ring, RingConfig};
use serde_json::{Value, json};
use support::TestUpstream;
use support::upstream::reply;

async fn mock(version: &str) -> MockModelServer {
    let mut options = MockOptions::new(version);
    options.token_interval = Duration::from_millis(5);
    MockModelServer::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .expect("the mock starts")
}

fn body(text: &str) -> FlowBody {
    FlowBody::kept(text.as_bytes().to_vec(), text.len() as u64)
}

fn headers(lines: &[(&str, &str)]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|(name, value)| stored_header(name.as_bytes(), value.as_bytes()))
        .collect()
}

fn request(method: &str, url: &str, lines: &[(&str, &str)], body: FlowBody) -> FlowRequest {
    FlowRequest {
        method: method.into(),
        url: url.into(),
        http_version: "HTTP/1.1".into(),
        host: Some("gateway.example".into()),
        scheme: None,
        headers: headers(lines),
        body,
    }
}

fn json_response(text: &str) -> Option<FlowResponse> {
    Some(FlowResponse {
        status: 200,
        headers: headers(&[("content-type", "application/json")]),
        body: body(text),
    })
}

/// What a gateway in front of a `v1` mock captured: a chat completion, a streamed one,
/// one whose body was larger than `max_body`, and a model list.
fn captured_flows() -> Vec<Flow> {
    let chat = json!({ "model": "demo-llama", "messages": [{ "role": "user", "content": "what is a canary" }] }).to_string();
    let chat_answer = "Hello from the v1 model! You said: what is a canary";
    let chat_reply = json!({ "id": "chatcmpl-mock-v1", "object": "chat.completion", "model": "demo-llama",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": chat_answer }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 4, "completion_tokens": 11, "total_tokens": 15 } })
    .to_string();
    let streamed =
        json!({ "model": "demo-llama", "stream": true, "stream_options": { "include_usage": true },
        "messages": [{ "role": "user", "content": "stream please" }] })
        .to_string();
    let pieces = [
        "Hello ", "from ", "the ", "v1 ", "model! ", "You ", "said: ", "stream ", "please",
    ];
    let events: Vec<SseEventRecord> = pieces
        .iter()
        .map(|piece| SseEventRecord {
            event: None,
            data: json!({ "choices": [{ "index": 0, "delta": { "content": piece } }] }).to_string(),
        })
        .collect();
    let stream_text: String = events
        .iter()
        .map(|event| format!("data: {}\n\n", event.data))
        .collect();
    let chat_headers = [
        ("Host", "gateway.example"),
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer sk-live-never-stored"),
        ("Content-Length", "999"),
        ("Connection", "keep-alive"),
    ];
    let flow = |id: &str, request: FlowRequest| Flow {
        v: FORMAT,
        id: id.into(),
        started: "2026-12-03T17:00:00.000Z".into(),
        route: Some("chat".into()),
        model: Some("demo-llama".into()),
        request,
        ..Flow::default()
    };
    vec![
        Flow {
            response: json_response(&chat_reply),
            timings: Timings {
                ttfb_ms: Some(170.0),
                ttft_ms: None,
                total_ms: 180.0,
            },
            tokens: Tokens {
                prompt: Some(4),
                completion: Some(11),
            },
            ..flow(
                "018f00000000000001",
                request("POST", "/v1/chat/completions", &chat_headers, body(&chat)),
            )
        },
        Flow {
            response: Some(FlowResponse {
                status: 200,
                headers: headers(&[("content-type", "text/event-stream")]),
                body: body(&stream_text),
            }),
            sse: Some(SseRecord {
                events,
                truncated: false,
                answer: Some(pieces.concat()),
            }),
            timings: Timings {
                ttfb_ms: Some(20.0),
                ttft_ms: Some(60.0),
                total_ms: 400.0,
            },
            tokens: Tokens {
                prompt: Some(2),
                completion: Some(9),
            },
            ..flow(
                "018f00000000000002",
                request(
                    "POST",
                    "/v1/chat/completions",
                    &chat_headers,
                    body(&streamed),
                ),
            )
        },
        Flow {
            response: json_response(&chat_reply),
            timings: Timings {
                total_ms: 900.0,
                ..Timings::default()
            },
            ..flow(
                "018f00000000000003",
                request(
                    "POST",
                    "/v1/chat/completions",
                    &chat_headers,
                    FlowBody {
                        data: chat.as_bytes()[..20].to_vec(),
                        size: 50_000,
                        truncated: true,
                    },
                ),
            )
        },
        Flow {
            response: json_response(
                r#"{"object":"list","data":[{"id":"demo-llama","object":"model"}]}"#,
            ),
            timings: Timings {
                total_ms: 3.0,
                ..Timings::default()
            },
            model: None,
            ..flow(
                "018f00000000000004",
                request(
                    "GET",
                    "/v1/models",
                    &[("Accept", "application/json")],
                    body(""),
                ),
            )
        },
    ]
}

/// A capture directory holding `flows`, written by the capture's own ring.
fn capture_dir(flows: Vec<Flow>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ring = Ring::open(RingConfig {
        dir: dir.path().to_path_buf(),
        max_disk: 1 << 20,
        queue: 64,
        queue_bytes: 1 << 20,
    })
    .unwrap();
    for flow in flows {
        assert!(ring.offer(flow));
    }
    ring.close();
    dir
}

async fn replay(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_junction"))
        .arg("replay")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("junction runs")
}

fn read_rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_sent_to_a_url_are_measured_beside_their_originals() {
    let server = mock("v2").await;
    let dir = capture_dir(captured_flows());
    let out = dir.path().join("replay.jsonl");
    let to = format!("http://{}", server.addr);
    let output = replay(&[
        dir.path().to_str().unwrap(),
        "--to",
        &to,
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    let rows = read_rows(&out);
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "018f00000000000001",
            "018f00000000000002",
            "018f00000000000003",
            "018f00000000000004"
        ],
        "one row per flow, oldest first"
    );
    let (chat, streamed, truncated, models) = (&rows[0], &rows[1], &rows[2], &rows[3]);
    for row in [chat, streamed, models] {
        assert_eq!(row["replay"]["status"], 200, "{row}");
        assert_eq!(row["original"]["status"], 200, "{row}");
        assert!(row["replay"]["latency_ms"].as_f64().unwrap() > 0.0, "{row}");
        assert_eq!(row["endpoint"], to.as_str(), "{row}");
        assert!(row.get("error").is_none(), "{row}");
    }
    for row in [chat, streamed] {
        assert!(
            row["replay"]["completion_tokens"].as_u64().unwrap() > 0,
            "{row}"
        );
        assert!(row["replay"]["answer_chars"].as_u64().unwrap() > 0, "{row}");
        // The stored header was a redacted credential: left out, and said so.
        assert_eq!(
            row["credentials_left_out"],
            json!(["authorization"]),
            "{row}"
        );
    }
    // The mock answers "Hello from the v2 model! You said: <the prompt>", a word a token.
    assert_eq!(chat["replay"]["answer_chars"], 51);
    assert_eq!(chat["original"]["answer_chars"], 51);
    assert_eq!(chat["replay"]["completion_tokens"], 11);
    assert_eq!(chat["original"]["completion_tokens"], 11);
    assert!(
        chat["replay"]["ttft_ms"].is_null(),
        "a JSON reply has no TTFT"
    );
    assert!(
        streamed["replay"]["ttft_ms"].as_f64().unwrap() > 0.0,
        "{streamed}"
    );
    assert_eq!(streamed["original"]["ttft_ms"], 60.0);
    assert_eq!(streamed["replay"]["completion_tokens"], 9);
    assert_eq!(streamed["replay"]["answer_chars"], 48);
    assert_eq!(truncated["skipped"], "body truncated");
    assert!(truncated.get("replay").is_none(), "{truncated}");
    assert_eq!(models["url"], "/v1/models");
    assert!(models["replay"]["completion_tokens"].is_null());

    assert!(
        stdout.contains(&format!("4 flows from {} to {to}", dir.path().display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 replayed, 1 skipped, 0 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("1: body truncated"), "{stdout}");
    assert!(stdout.contains("3 of 3 (100%)"), "{stdout}");
    for label in [
        "latency median ms",
        "latency p95 ms",
        "TTFT median ms",
        "output tokens",
        "mean answer chars",
    ] {
        assert!(stdout.contains(label), "{label}: {stdout}");
    }
    assert!(
        stdout.contains("2 flows were sent without authorization"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_a_config_takes_the_flows_round_robin_and_a_filter_picks_them() {
    let (first, second) = (mock("v2").await, mock("v3").await);
    let dir = capture_dir(captured_flows());
    let config = dir.path().join("junction.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "candidate"
endpoints = [{{ url = "http://{}" }}, {{ url = "http://{}" }}]

[[routes]]
name = "chat"
pool = "candidate"
"#,
            first.addr, second.addr
        ),
    )
    .unwrap();
    let out = dir.path().join("pool.jsonl");
    let output = replay(&[
        dir.path().to_str().unwrap(),
        "--pool",
        "candidate",
        "--config",
        config.to_str().unwrap(),
        "--header",
        "Authorization: Bearer sk-test",
        "--concurrency",
        "1",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    let rows = read_rows(&out);
    let endpoints: Vec<&str> = rows.iter().filter_map(|r| r["endpoint"].as_str()).collect();
    let (first_url, second_url) = (
        format!("http://{}", first.addr),
        format!("http://{}", second.addr),
    );
    assert_eq!(
        endpoints,
        [&first_url, &second_url, &first_url],
        "round robin"
    );
    // Each candidate's own answer: "v3" is as long as "v2".
    assert_eq!(rows[1]["replay"]["status"], 200);
    assert_eq!(rows[1]["replay"]["answer_chars"], 48);
    assert!(
        rows.iter().all(|r| r.get("credentials_left_out").is_none()),
        "given with --header"
    );
    assert!(stdout.contains("pool candidate ("), "{stdout}");
    assert!(!stdout.contains("were sent without"), "{stdout}");

    let only_get = dir.path().join("get.jsonl");
    let output = replay(&[
        dir.path().to_str().unwrap(),
        "--to",
        &first_url,
        "--filter",
        "~m GET",
        "--out",
        only_get.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let rows = read_rows(&only_get);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["method"], "GET");
    assert_eq!(rows[0]["replay"]["status"], 200);
    assert!(text(&output.stdout).contains("1 replayed, 0 skipped, 0 failed"));

    // --limit: the newest flows only (the truncated one and the GET).
    let output = replay(&[
        dir.path().to_str().unwrap(),
        "--to",
        &first_url,
        "--limit",
        "2",
    ])
    .await;
    assert!(
        text(&output.stdout).contains("1 replayed, 1 skipped, 0 failed"),
        "{}",
        text(&output.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_get_no_answer_are_failures_and_exit_3() {
    // A port the OS gave and nobody listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = capture_dir(captured_flows());
    let out = dir.path().join("failed.jsonl");
    let output = replay(&[
        dir.path().to_str().unwrap(),
        "--to",
        &format!("http://127.0.0.1:{port}"),
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("0 replayed, 1 skipped, 3 failed"),
        "{stdout}"
    );
    let rows = read_rows(&out);
    assert!(
        rows[0]["error"].as_str().unwrap().contains("connect to"),
        "{}",
        rows[0]
    );
    assert!(rows[0].get("replay").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_errors_say_what_is_wrong_and_exit_1() {
    let dir = capture_dir(captured_flows());
    let path = dir.path().to_str().unwrap();
    let to = "http://127.0.0.1:9";
    let bad_filter = replay(&[path, "--to", to, "--filter", "~m GET & ~x 1"]).await;
    assert_eq!(bad_filter.status.code(), Some(1));
    assert!(
        text(&bad_filter.stderr).contains("filter, at byte 9: unknown filter `~x`"),
        "{}",
        text(&bad_filter.stderr)
    );
    let missing = dir.path().join("nowhere");
    let output = replay(&[missing.to_str().unwrap(), "--to", to]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains(missing.to_str().unwrap()),
        "{}",
        text(&output.stderr)
    );
    let empty = tempfile::tempdir().unwrap();
    let output = replay(&[empty.path().to_str().unwrap(), "--to", to]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("no captured flows"),
        "{}",
        text(&output.stderr)
    );

    // The config is read as `junction check` reads it: its errors name their keys.
    let pool = "[[pools]]\nname = \"stable\"\nendpoints = [{ url = \"http://127.0.0.1:9\" }]\n";
    let config = dir.path().join("junction.toml");
    std::fs::write(&config, pool).unwrap();
    let config = config.to_str().unwrap();
    let output = replay(&[path, "--pool", "candidate", "--config", config]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("invalid config:\nlisteners (line 1): at least one"),
        "{}",
        text(&output.stderr)
    );
    let listener = "[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n";
    std::fs::write(config, format!("{listener}{pool}")).unwrap();
    let output = replay(&[path, "--pool", "candidate", "--config", config]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("no pool is named \"candidate\" (its pools: stable)"),
        "{}",
        text(&output.stderr)
    );
    let output = replay(&[path, "--to", to, "--header", "no colon"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("expected 'Name: value'"));
    // Nothing was sent: no output file either way, and no summary.
    assert!(text(&output.stdout).is_empty());
}

/// What a recording upstream received: its credential headers and its body.
type Received = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_with_its_own_key_and_model_map_gets_them_not_the_captured_key() {
    use http_body_util::BodyExt;
    let received: Received = Arc::default();
    let record = received.clone();
    let upstream = TestUpstream::named("azure")
        .handler(move |request: http::Request<hyper::body::Incoming>| {
            let record = record.clone();
            async move {
                let credentials = ["authorization", "x-api-key", "api-key", "x-goog-api-key"]
                    .iter()
                    .flat_map(|name| {
                        request.headers().get_all(*name).iter().map(|value| {
                            (name.to_string(), value.to_str().unwrap_or("").to_string())
                        })
                    })
                    .collect();
                let length = request.headers().get("content-length").cloned();
                let body = request.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(
                    length.and_then(|l| l.to_str().ok()?.parse::<usize>().ok()),
                    Some(body.len()),
                    "Content-Length is the mapped body's"
                );
                record
                    .lock()
                    .unwrap()
                    .push((credentials, String::from_utf8_lossy(&body).into_owned()));
                reply(200, r#"{"choices":[{"message":{"content":"ok"}}]}"#)
            }
        })
        .start()
        .await;
    // A capture written before credentials were redacted, or by a client sending its key
    // in a header the capture does not know as one: the key is stored as it came.
    let chat = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"gpt-4o?"}]}"#;
    let flow = Flow {
        v: FORMAT,
        id: "018f00000000000011".into(),
        started: "2026-12-03T17:00:00.000Z".into(),
        request: FlowRequest {
            method: "POST".into(),
            url: "/v1/chat/completions".into(),
            http_version: "HTTP/1.1".into(),
            host: Some("gateway.example".into()),
            scheme: None,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("authorization".into(), "Bearer [redacted]".into()),
                ("x-api-key".into(), "sk-captured".into()),
            ],
            body: body(chat),
        },
        response: json_response("{}"),
        ..Flow::default()
    };
    let dir = capture_dir(vec![flow]);
    let config = dir.path().join("junction.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "azure"
endpoints = [{{ url = "http://{}" }}]
auth = {{ header = "api-key", value_env = "JUNCTION_REPLAY_TEST_KEY" }}
model_map = {{ "gpt-4o" = "my-deployment" }}

[[routes]]
name = "chat"
pool = "azure"
"#,
            upstream.addr
        ),
    )
    .unwrap();
    let out = dir.path().join("azure.jsonl");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_junction"))
        .arg("replay")
        .arg(dir.path())
        .args(["--pool", "azure", "--config"])
        .arg(&config)
        .args(["--header", "Authorization: Bearer sk-given", "--out"])
        .arg(&out)
        .env("JUNCTION_REPLAY_TEST_KEY", "sk-pool-azure")
        .kill_on_drop(true)
        .output()
        .await
        .expect("junction runs");
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{stdout}");
    let (credentials, body) = &received[0];
    assert_eq!(
        credentials,
        &[("api-key".to_string(), "sk-pool-azure".to_string())],
        "the pool's key only: neither the captured nor the given one"
    );
    assert_eq!(
        body,
        r#"{"model":"my-deployment","messages":[{"role":"user","content":"gpt-4o?"}]}"#
    );
    let rows = read_rows(&out);
    assert_eq!(rows[0]["replay"]["status"], 200);
    assert!(
        rows[0].get("credentials_left_out").is_none(),
        "the pool's key stands in: {}",
        rows[0]
    );
    assert!(!stdout.contains("were sent without"), "{stdout}");
}
