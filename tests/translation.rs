//! OpenAI ⇄ Anthropic translation through the proxy (issue #15 part 4): a pool with
//! `api = "anthropic"` served to a real OpenAI-speaking client by a real upstream on
//! 127.0.0.1 that speaks Anthropic Messages, and the other way round, on every way a
//! request travels. The recorded pairs are tests/translation/*.

use crate::support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use support::sse::{ChannelBody, SseReader, event_stream};
use support::travel::{Extra, Travel, start};
use support::upstream::{RunningUpstream, UpstreamReply, reply};
use support::{TestUpstream, client};
use tokio::sync::mpsc;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/translation/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).expect("fixture JSON")
}

/// What the upstream received: path, the headers the tests look at, and the body.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// An upstream that records each request and answers with `status` and `body` (JSON).
async fn answering(
    status: u16,
    body: String,
    content_type: &'static str,
) -> (RunningUpstream, Log) {
    let log: Log = Arc::default();
    let record = log.clone();
    let upstream = TestUpstream::named("provider")
        .handler(move |request: http::Request<hyper::body::Incoming>| {
            let (record, body) = (record.clone(), body.clone());
            async move {
                let seen = read(request).await;
                record.lock().unwrap().push(seen);
                let mut response = reply(status, body);
                response
                    .headers_mut()
                    .insert("content-type", content_type.parse().unwrap());
                response
            }
        })
        .start()
        .await;
    (upstream, log)
}

async fn read(request: http::Request<hyper::body::Incoming>) -> Seen {
    let (head, body) = request.into_parts();
    let headers = head
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Seen {
        path: head.uri.path().to_string(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

/// The pool "p" speaks Anthropic, with its own key in `x-api-key`.
fn anthropic_pool(key_file: &std::path::Path) -> String {
    format!("api = \"anthropic\"\nauth = {{ value_file = {key_file:?} }}")
}

fn key_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let file = dir.path().join("anthropic.key");
    std::fs::write(&file, "sk-ant-pool").unwrap();
    file
}

/// `created` is the proxy's clock: compared for its presence, not its value.
fn without_created(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut()
        && let Some(created) = object.remove("created")
    {
        assert!(created.is_u64(), "created: {created}");
    }
    value
}

#[tokio::test]
async fn an_openai_client_gets_an_anthropic_answer_in_its_own_shape() {
    let dir = tempfile::tempdir().unwrap();
    let request = fixture_json("request_openai_basic.json");
    let answer = fixture_json("response_anthropic_text.json");
    for travel in Travel::ALL {
        let (upstream, seen) =
            answering(200, answer["input"].to_string(), "application/json").await;
        let pool = anthropic_pool(&key_file(&dir));
        let extra = Extra {
            pool: &pool,
            ..Extra::default()
        };
        let proxy = start(travel, &[upstream.url()], &extra).await;
        let response = client()
            .post(proxy.url("/v1/chat/completions"))
            .header("authorization", "Bearer sk-client-openai")
            .json(&request["input"])
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{travel:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{travel:?}"
        );
        let body: Value = response.json().await.expect("JSON answer");
        assert_eq!(
            without_created(body),
            without_created(answer["expected"].clone()),
            "{travel:?}"
        );
        let seen = seen.lock().unwrap()[0].clone();
        assert_eq!(seen.path, "/v1/messages", "{travel:?}");
        assert_eq!(seen.body, request["expected"], "{travel:?}");
        assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(seen.header("x-api-key"), Some("sk-ant-pool"));
        // The client's key never reaches a provider that does not own it.
        assert_eq!(seen.header("authorization"), None, "{travel:?}");
        assert_eq!(seen.header("content-type"), Some("application/json"));
    }
}

/// Token usage is still read on a translated answer: the client's shape carries it.
#[tokio::test]
async fn usage_is_counted_on_translated_answers() {
    let dir = tempfile::tempdir().unwrap();
    let answer = fixture_json("response_anthropic_text.json");
    let (upstream, _) = answering(200, answer["input"].to_string(), "application/json").await;
    let pool = anthropic_pool(&key_file(&dir));
    let extra = Extra {
        pool: &pool,
        ..Extra::default()
    };
    let proxy = start(Travel::Fast, &[upstream.url()], &extra).await;
    let response = client()
        .post(proxy.url("/v1/chat/completions"))
        .json(
            &json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    // input 12 + cache read 100, output 7 (tests/translation/response_anthropic_text.json).
    assert_eq!(tokens(&proxy).await, (112.0, 7.0));
}

/// Prompt and completion tokens the proxy counted, once it counted any completion
/// tokens: the record reports when the answer's body is done, so it is waited for,
/// briefly.
async fn tokens(proxy: &support::proxy::RunningProxy) -> (f64, f64) {
    let mut tokens = (0.0, 0.0);
    for _ in 0..200 {
        let metrics = support::parse_metrics(&proxy.metrics_text().await);
        let sum = |kind: &str| {
            metrics
                .iter()
                .filter(|(name, _)| {
                    name.starts_with("junction_llm_tokens_total{")
                        && name.contains(&format!("kind=\"{kind}\""))
                })
                .map(|(_, value)| *value)
                .sum::<f64>()
        };
        tokens = (sum("prompt"), sum("completion"));
        if tokens.1 > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokens
}

/// A stream through the proxy: the upstream sends the events of `input` one by one as
/// the test lets it, and the client must read its first translated event before the
/// upstream has sent the rest (its last among them): no buffering. Returns the client's
/// events, what the upstream received, and the proxy.
async fn stream_through(
    travel: Travel,
    pool: &str,
    path: &str,
    request: &Value,
    input: &str,
) -> (Vec<Value>, Seen, support::proxy::RunningProxy) {
    let extra = Extra {
        pool,
        ..Extra::default()
    };
    stream_through_with(travel, &extra, path, request, input).await
}

async fn stream_through_with(
    travel: Travel,
    extra: &Extra<'_>,
    path: &str,
    request: &Value,
    input: &str,
) -> (Vec<Value>, Seen, support::proxy::RunningProxy) {
    let upstream_events: Vec<String> = input.split_inclusive("\n\n").map(str::to_string).collect();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let seen: Log = Arc::default();
    let record = seen.clone();
    let upstream = TestUpstream::named("provider")
        .handler(move |request: http::Request<hyper::body::Incoming>| {
            let (rx, record) = (rx.clone(), record.clone());
            async move {
                let seen = read(request).await;
                record.lock().unwrap().push(seen);
                let rx = rx.lock().unwrap().take().expect("one request");
                event_stream(ChannelBody(rx)) as UpstreamReply
            }
        })
        .start()
        .await;
    let proxy = start(travel, &[upstream.url()], extra).await;
    let pending = client().post(proxy.url(path)).json(request).send();
    // The first event goes before the answer's head is awaited.
    tx.send(Bytes::from(upstream_events[0].clone()))
        .await
        .unwrap();
    let response = pending.await.expect("response");
    assert_eq!(response.status(), 200, "{travel:?}");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut reader = SseReader::new(response.bytes_stream().boxed());
    let first = reader.next_event().await.expect("first event");
    let mut got = vec![sse_event(&first)];
    // Only now the rest of the upstream's events, the last among them.
    for event in &upstream_events[1..] {
        tx.send(Bytes::from(event.clone())).await.unwrap();
    }
    drop(tx);
    while let Some(event) = reader.next_event().await {
        got.push(sse_event(&event));
    }
    let seen = seen.lock().unwrap()[0].clone();
    drop(upstream);
    (got, seen, proxy)
}

#[tokio::test]
async fn a_stream_is_translated_event_by_event() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("stream_anthropic_text.in.sse");
    let expected: Vec<Value> = sse_events(&fixture("stream_anthropic_text.out.sse"))
        .into_iter()
        .map(without_created)
        .collect();
    let request = json!({
        "model": "claude-sonnet-4-5",
        "stream": true,
        "messages": [{"role": "user", "content": "Hello"}],
    });
    for travel in Travel::ALL {
        let pool = anthropic_pool(&key_file(&dir));
        let (got, seen, proxy) =
            stream_through(travel, &pool, "/v1/chat/completions", &request, &input).await;
        let got: Vec<Value> = got.into_iter().map(without_created).collect();
        assert_eq!(got, expected, "{travel:?}");
        assert_eq!(seen.body["stream"], true);
        assert_eq!(seen.body["max_tokens"], 4096);
        // Usage rode on the finish chunk (the client asked for no usage chunk), where
        // the proxy read it: input 25, output 15.
        assert_eq!(tokens(&proxy).await, (25.0, 15.0), "{travel:?}");
    }
}

/// A route's `include_usage` in front of a translating pool: the usage is counted, and
/// the client, which did not ask for it, gets no usage chunk (the translated stream's
/// usage chunk is dropped after translation, as an OpenAI endpoint's would be).
#[tokio::test]
async fn include_usage_on_a_translated_stream_counts_usage_and_sends_no_usage_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("stream_anthropic_text.in.sse");
    let without_usage = |mut event: Value| {
        if let Some(event) = event.as_object_mut() {
            event.remove("usage");
            event.remove("created");
        }
        event
    };
    let expected: Vec<Value> = sse_events(&fixture("stream_anthropic_text.out.sse"))
        .into_iter()
        .map(without_usage)
        .collect();
    let request = json!({
        "model": "claude-sonnet-4-5",
        "stream": true,
        "messages": [{"role": "user", "content": "Hello"}],
    });
    for travel in Travel::ALL {
        let pool = anthropic_pool(&key_file(&dir));
        let extra = Extra {
            pool: &pool,
            route: "include_usage = true",
            ..Extra::default()
        };
        let (got, _, proxy) =
            stream_through_with(travel, &extra, "/v1/chat/completions", &request, &input).await;
        assert!(
            !got.iter().any(|e| e["choices"] == json!([])),
            "{travel:?}: a usage chunk reached the client: {got:?}"
        );
        // Junction asked for the usage chunk (not the finish chunk) to carry it.
        assert!(
            !got.iter()
                .any(|e| e.get("usage").is_some_and(|u| !u.is_null())),
            "{travel:?}: usage reached the client: {got:?}"
        );
        let got: Vec<Value> = got.into_iter().map(without_usage).collect();
        assert_eq!(got, expected, "{travel:?}");
        assert_eq!(tokens(&proxy).await, (25.0, 15.0), "{travel:?}");
    }
}

/// The other way round: an OpenAI stream to an Anthropic client, event by event.
#[tokio::test]
async fn an_openai_stream_is_translated_event_by_event() {
    let input = fixture("stream_openai_tools.in.sse");
    let expected = sse_events(&fixture("stream_openai_tools.out.sse"));
    let request = fixture_json("request_anthropic_tools.json")["input"].clone();
    for travel in Travel::ALL {
        let (got, seen, proxy) =
            stream_through(travel, "api = \"openai\"", "/v1/messages", &request, &input).await;
        assert_eq!(got, expected, "{travel:?}");
        assert_eq!(seen.path, "/v1/chat/completions");
        assert_eq!(seen.body["stream_options"], json!({"include_usage": true}));
        assert_eq!(tokens(&proxy).await, (80.0, 31.0), "{travel:?}");
    }
}

fn sse_event(event: &str) -> Value {
    let data: String = event
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    serde_json::from_str(&data).unwrap_or(Value::String(data))
}

fn sse_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(sse_event)
        .collect()
}

#[tokio::test]
async fn provider_errors_reach_the_client_in_its_format() {
    let dir = tempfile::tempdir().unwrap();
    for (name, travel) in Travel::ALL.into_iter().flat_map(|travel| {
        [
            "error_anthropic_rate_limit.json",
            "error_anthropic_overloaded.json",
            "error_anthropic_not_json.json",
        ]
        .map(|name| (name, travel))
    }) {
        let case = fixture_json(name);
        let body = match &case["input"] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let content_type = if case["input"].is_string() {
            "text/html"
        } else {
            "application/json"
        };
        let status = case["status"].as_u64().unwrap() as u16;
        let (upstream, _) = answering(status, body, content_type).await;
        let pool = anthropic_pool(&key_file(&dir));
        let extra = Extra {
            pool: &pool,
            ..Extra::default()
        };
        let proxy = start(travel, &[upstream.url()], &extra).await;
        let response = client()
            .post(proxy.url("/v1/chat/completions"))
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]}))
            .send()
            .await
            .expect("request");
        assert_eq!(
            u64::from(response.status().as_u16()),
            case["expected_status"],
            "{name} {travel:?}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{name} {travel:?}"
        );
        let got: Value = response.json().await.expect("JSON error");
        assert_eq!(got, case["expected"], "{name} {travel:?}");
    }
}

#[tokio::test]
async fn a_malformed_provider_answer_is_a_502_in_the_clients_format() {
    let dir = tempfile::tempdir().unwrap();
    for travel in Travel::ALL {
        let (upstream, _) =
            answering(200, "{\"type\":\"message\",".into(), "application/json").await;
        let pool = anthropic_pool(&key_file(&dir));
        let extra = Extra {
            pool: &pool,
            ..Extra::default()
        };
        let proxy = start(travel, &[upstream.url()], &extra).await;
        let response = client()
            .post(proxy.url("/v1/chat/completions"))
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 502, "{travel:?}");
        let got: Value = response.json().await.expect("JSON error");
        assert_eq!(got["error"]["type"], "server_error", "{got}");
        let message = got["error"]["message"].as_str().unwrap();
        assert!(message.contains("not JSON"), "{message}");
    }
}

#[tokio::test]
async fn a_request_that_cannot_be_translated_is_a_400_in_the_clients_format() {
    let dir = tempfile::tempdir().unwrap();
    for travel in Travel::ALL {
        let (upstream, seen) = answering(200, "{}".into(), "application/json").await;
        let pool = anthropic_pool(&key_file(&dir));
        let extra = Extra {
            pool: &pool,
            ..Extra::default()
        };
        let proxy = start(travel, &[upstream.url()], &extra).await;
        for body in ["{\"model\": \"m\"}", "not json", "[1]"] {
            let response = client()
                .post(proxy.url("/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), 400, "{body} {travel:?}");
            let got: Value = response.json().await.expect("JSON error");
            assert_eq!(got["error"]["type"], "invalid_request_error", "{got}");
            assert!(got["error"]["message"].is_string(), "{got}");
        }
        assert!(
            seen.lock().unwrap().is_empty(),
            "nothing reaches the provider"
        );
    }
}

/// A body too large to hold whole cannot be translated: 413, and nothing is sent.
#[tokio::test]
async fn a_body_too_large_to_translate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for travel in Travel::ALL {
        let (upstream, seen) = answering(200, "{}".into(), "application/json").await;
        let pool = anthropic_pool(&key_file(&dir));
        let extra = Extra {
            pool: &pool,
            route: "request_buffering = false",
            ..Extra::default()
        };
        let proxy = start(travel, &[upstream.url()], &extra).await;
        let long = "x".repeat(1 << 20);
        let body = json!({"model": "m", "messages": [{"role": "user", "content": long}]});
        let response = client()
            .post(proxy.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 413, "{travel:?}");
        assert!(seen.lock().unwrap().is_empty(), "{travel:?}");
    }
}

/// Paths that are neither API's go to the pool as they came.
#[tokio::test]
async fn other_paths_are_not_translated() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, seen) = answering(200, "{\"data\":[]}".into(), "application/json").await;
    let pool = anthropic_pool(&key_file(&dir));
    let extra = Extra {
        pool: &pool,
        ..Extra::default()
    };
    let proxy = start(Travel::Fast, &[upstream.url()], &extra).await;
    let response = client().get(proxy.url("/v1/models")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "{\"data\":[]}");
    assert_eq!(seen.lock().unwrap()[0].path, "/v1/models");
    // OpenAI's Assistants messages are not Anthropic's, whatever the pool speaks.
    let (upstream, seen) = answering(200, "{\"id\":\"m1\"}".into(), "application/json").await;
    let extra = Extra {
        pool: "api = \"openai\"",
        ..Extra::default()
    };
    let proxy = start(Travel::Fast, &[upstream.url()], &extra).await;
    let response = client()
        .post(proxy.url("/v1/threads/t1/messages"))
        .json(&json!({"role": "user", "content": "Hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "{\"id\":\"m1\"}");
    let seen = seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/v1/threads/t1/messages");
    assert_eq!(seen.body, json!({"role": "user", "content": "Hi"}));
}

// === An Anthropic client, an OpenAI pool ===

#[tokio::test]
async fn an_anthropic_client_gets_an_openai_answer_in_its_own_shape() {
    let request = fixture_json("request_anthropic_tools.json");
    let answer = fixture_json("response_openai_tool_calls.json");
    for travel in Travel::ALL {
        let (upstream, seen) =
            answering(200, answer["input"].to_string(), "application/json").await;
        let extra = Extra {
            pool: "api = \"openai\"",
            ..Extra::default()
        };
        let proxy = start(travel, &[upstream.url()], &extra).await;
        // Not streamed here: the answer is the whole reply.
        let mut input = request["input"].clone();
        input["stream"] = json!(false);
        let response = client()
            .post(proxy.url("/v1/messages"))
            .header("x-api-key", "sk-client")
            .header("anthropic-version", "2023-06-01")
            .json(&input)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{travel:?}");
        let body: Value = response.json().await.expect("JSON answer");
        assert_eq!(body, answer["expected"], "{travel:?}");
        let seen = seen.lock().unwrap()[0].clone();
        assert_eq!(seen.path, "/v1/chat/completions");
        let mut expected = request["expected"].clone();
        let object = expected.as_object_mut().unwrap();
        object.remove("stream");
        object.remove("stream_options");
        assert_eq!(seen.body, expected, "{travel:?}");
        // Without a pool key, the client's own goes where OpenAI reads it.
        assert_eq!(seen.header("authorization"), Some("Bearer sk-client"));
        assert_eq!(seen.header("anthropic-version"), None);
    }
}

#[tokio::test]
async fn an_openai_stream_reaches_an_anthropic_client_as_named_events() {
    let input = fixture("stream_openai_tools.in.sse");
    let (upstream, _) = answering(200, input, "text/event-stream").await;
    let extra = Extra {
        pool: "api = \"openai\"",
        ..Extra::default()
    };
    let proxy = start(Travel::Fast, &[upstream.url()], &extra).await;
    let request = fixture_json("request_anthropic_tools.json");
    let response = client()
        .post(proxy.url("/v1/messages"))
        .json(&request["input"])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let names = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .map(str::to_string)
            .collect()
    };
    let expected = fixture("stream_openai_tools.out.sse");
    assert_eq!(names(&text), names(&expected));
    assert_eq!(sse_events(&text), sse_events(&expected));
}

/// A retry to a fallback pool of the other API: each attempt is translated (or not)
/// for its own pool.
#[tokio::test]
async fn a_fallback_to_an_anthropic_pool_translates_that_attempt_only() {
    let dir = tempfile::tempdir().unwrap();
    let answer = fixture_json("response_anthropic_text.json");
    for travel in Travel::ALL {
        let (primary, primary_seen) = answering(503, "{}".into(), "application/json").await;
        let (claude, claude_seen) =
            answering(200, answer["input"].to_string(), "application/json").await;
        let before = format!(
            "[[pools]]\nname = \"claude\"\nendpoints = [{{ url = \"{}\" }}]\n{}\n",
            claude.url(),
            anthropic_pool(&key_file(&dir))
        );
        let extra = Extra {
            pool: "fallback = \"claude\"",
            before: &before,
            route: "retries = { attempts = 1, on = [503], retry_non_idempotent = true }",
            ..Extra::default()
        };
        let proxy = start(travel, &[primary.url()], &extra).await;
        let request = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]});
        let response = client()
            .post(proxy.url("/v1/chat/completions"))
            .json(&request)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{travel:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion", "{travel:?}");
        assert_eq!(body["usage"]["total_tokens"], 119, "{travel:?}");
        // The OpenAI pool got the client's request as it came; the Anthropic one, its own.
        let primary_seen = primary_seen.lock().unwrap()[0].clone();
        assert_eq!(primary_seen.path, "/v1/chat/completions");
        assert_eq!(primary_seen.body, request);
        let claude_seen = claude_seen.lock().unwrap()[0].clone();
        assert_eq!(claude_seen.path, "/v1/messages");
        assert_eq!(claude_seen.body["max_tokens"], 4096);
        assert_eq!(claude_seen.header("x-api-key"), Some("sk-ant-pool"));
    }
}

/// A body that streams to the proxy (`request_buffering = false`, chunked) is read whole
/// for the translation.
#[tokio::test]
async fn a_streamed_request_body_is_read_whole_to_be_translated() {
    use support::raw_http::{RawClient, chunked_json_post};
    let dir = tempfile::tempdir().unwrap();
    let answer = fixture_json("response_anthropic_text.json");
    for travel in Travel::ALL {
        let (upstream, seen) =
            answering(200, answer["input"].to_string(), "application/json").await;
        let pool = anthropic_pool(&key_file(&dir));
        let extra = Extra {
            pool: &pool,
            route: "request_buffering = false",
            ..Extra::default()
        };
        let proxy = start(travel, &[upstream.url()], &extra).await;
        let body =
            r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Hello"}]}"#;
        let request = chunked_json_post("/v1/chat/completions", body, 20);
        let mut raw = RawClient::connect(&proxy).await;
        raw.send(request.as_bytes()).await;
        assert_eq!(raw.response("POST").await.status, 200, "{travel:?}");
        let seen = seen.lock().unwrap()[0].clone();
        assert_eq!(seen.body["messages"][0]["content"], "Hello");
        let length = serde_json::to_vec(&seen.body).unwrap().len().to_string();
        assert_eq!(
            seen.header("content-length"),
            Some(length.as_str()),
            "{travel:?}"
        );
        assert_eq!(seen.header("transfer-encoding"), None, "{travel:?}");
    }
}

/// The Python `openai` SDK (installed by scripts/test) as the client: a reply with a
/// tool call, a stream with its usage chunk, and a provider's 429 as the SDK's own
/// `RateLimitError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_talks_to_an_anthropic_pool() {
    let dir = tempfile::tempdir().unwrap();
    let reply_body = fixture_json("response_anthropic_tool_use.json")["input"].to_string();
    let stream_body = fixture("stream_anthropic_tools.in.sse");
    let limited = fixture_json("error_anthropic_rate_limit.json")["input"].to_string();
    let upstream = TestUpstream::named("provider")
        .handler(move |request: http::Request<hyper::body::Incoming>| {
            let (reply_body, stream_body, limited) =
                (reply_body.clone(), stream_body.clone(), limited.clone());
            async move {
                let seen = read(request).await;
                let (status, body, content_type) = if seen.body["model"] == "limited" {
                    (429, limited, "application/json")
                } else if seen.body["stream"] == true {
                    (200, stream_body, "text/event-stream")
                } else {
                    (200, reply_body, "application/json")
                };
                let mut response = reply(status, body);
                response
                    .headers_mut()
                    .insert("content-type", content_type.parse().unwrap());
                response
            }
        })
        .start()
        .await;
    let pool = anthropic_pool(&key_file(&dir));
    let extra = Extra {
        pool: &pool,
        ..Extra::default()
    };
    let proxy = start(Travel::Fast, &[upstream.url()], &extra).await;
    let script = r#"
import json, sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-client", max_retries=0)
tools = [{"type": "function", "function": {"name": "get_weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
messages = [{"role": "user", "content": "Weather in Paris?"}]
r = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=tools)
choice = r.choices[0]
out = {"finish": choice.finish_reason, "content": choice.message.content,
       "call": choice.message.tool_calls[0].function.arguments, "total": r.usage.total_tokens}
text, calls, finish, total = "", "", None, None
for chunk in client.chat.completions.create(model="claude-sonnet-4-5", messages=messages,
        tools=tools, stream=True, stream_options={"include_usage": True}):
    if chunk.usage:
        total = chunk.usage.total_tokens
    for c in chunk.choices:
        text += c.delta.content or ""
        for call in c.delta.tool_calls or []:
            calls += call.function.arguments or ""
        finish = c.finish_reason or finish
out["stream"] = {"text": text, "calls": calls, "finish": finish, "total": total}
try:
    client.chat.completions.create(model="limited", messages=messages)
except openai.RateLimitError as error:
    out["error"] = {"status": error.status_code, "message": error.body["message"]}
print(json.dumps(out))
"#;
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(proxy.url("/v1"))
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_slice(&output.stdout).expect("the script's JSON");
    assert_eq!(
        got,
        json!({
            "finish": "tool_calls",
            "content": "Checking.",
            "call": "{\"city\":\"Paris\"}",
            "total": 70,
            "stream": {"text": "Checking.", "calls": "{\"city\": \"Paris\"}", "finish": "tool_calls", "total": 561},
            "error": {"status": 429, "message": "Number of request tokens has exceeded your per-minute rate limit"},
        })
    );
}

/// A route's mirror pool that speaks Anthropic gets its copy translated (and its key).
#[tokio::test]
async fn the_mirror_gets_its_copy_in_its_pools_api() {
    let dir = tempfile::tempdir().unwrap();
    let (primary, primary_seen) = answering(200, "{}".into(), "application/json").await;
    // The copy arrives after the client's answer: the test waits for it on a channel.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shadow = TestUpstream::named("shadow")
        .handler(move |request: http::Request<hyper::body::Incoming>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(read(request).await);
                reply(200, "{}")
            }
        })
        .start()
        .await;
    let before = format!(
        "[[pools]]\nname = \"shadow\"\nendpoints = [{{ url = \"{}\" }}]\n{}\n",
        shadow.url(),
        anthropic_pool(&key_file(&dir))
    );
    let extra = Extra {
        before: &before,
        route: "mirror = { pool = \"shadow\", percent = 100 }",
        ..Extra::default()
    };
    let proxy = start(Travel::Fast, &[primary.url()], &extra).await;
    let request = json!({"model": "m", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]});
    let response = client()
        .post(proxy.url("/v1/chat/completions"))
        .json(&request)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let copy = rx.recv().await.expect("the mirror's copy");
    assert_eq!(copy.path, "/v1/messages");
    assert_eq!(copy.body["system"], "Be brief.");
    assert_eq!(
        copy.body["messages"],
        json!([{"role": "user", "content": "Hi"}])
    );
    assert_eq!(copy.header("x-api-key"), Some("sk-ant-pool"));
    assert_eq!(primary_seen.lock().unwrap()[0].body, request);
}

/// A fallback chain across providers: an OpenAI pool's 429 hops to an Anthropic pool,
/// whose stream reaches the client as chat completion chunks.
#[tokio::test]
async fn a_chain_hop_to_an_anthropic_pool_is_translated() {
    let dir = tempfile::tempdir().unwrap();
    let stream = fixture("stream_anthropic_text.in.sse");
    let expected: Vec<Value> = sse_events(&fixture("stream_anthropic_text.out.sse"))
        .into_iter()
        .map(without_created)
        .collect();
    for travel in Travel::ALL {
        let (primary, primary_seen) = answering(
            429,
            "{\"error\":{\"message\":\"slow down\",\"type\":\"requests\"}}".into(),
            "application/json",
        )
        .await;
        let (claude, claude_seen) = answering(200, stream.clone(), "text/event-stream").await;
        let before = format!(
            "[[pools]]\nname = \"claude\"\nendpoints = [{{ url = \"{}\" }}]\n{}\n\n\
             [[routes]]\nname = \"chain\"\nmatch = {{ path = \"/v1/chat/completions\" }}\n\
             targets = [{{ pool = \"p\" }}, {{ pool = \"claude\", on = [429] }}]\n{}\n",
            claude.url(),
            anthropic_pool(&key_file(&dir)),
            travel.route_keys(),
        );
        let extra = Extra {
            before: &before,
            ..Extra::default()
        };
        let proxy = start(travel, &[primary.url()], &extra).await;
        let request = json!({
            "model": "claude-sonnet-4-5",
            "stream": true,
            "messages": [{"role": "user", "content": "Hello"}],
        });
        let response = client()
            .post(proxy.url("/v1/chat/completions"))
            .json(&request)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{travel:?}");
        let got: Vec<Value> = sse_events(&response.text().await.unwrap())
            .into_iter()
            .map(without_created)
            .collect();
        assert_eq!(got, expected, "{travel:?}");
        assert_eq!(primary_seen.lock().unwrap()[0].body, request, "{travel:?}");
        let claude_seen = claude_seen.lock().unwrap()[0].clone();
        assert_eq!(claude_seen.path, "/v1/messages", "{travel:?}");
        assert_eq!(claude_seen.header("x-api-key"), Some("sk-ant-pool"));
    }
}
