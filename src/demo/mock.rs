//! A mock OpenAI-compatible model server: `/v1/models`, `/v1/chat/completions` (JSON,
//! or SSE with `"stream": true`, `usage` in both), `/health`. Deterministic replies, so
//! tests can predict every byte and token count; or, with [`InferenceOptions`], an
//! inference server's slots, queue, speed and caches, with vLLM's `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use super::inference::InferenceOptions;
use super::inference::{Demand, InferenceServer};

#[derive(Clone, Debug)]
pub struct MockOptions {
    pub version: String,
    pub model: String,
    /// Pause between streamed tokens.
    pub token_interval: Duration,
    /// Share (percent) of chat completions answered with a 500, to show a canary
    /// rollback; changed at run time with `PUT /mock/failure_rate?percent=N`.
    pub failure_percent: Arc<AtomicU64>,
    completions: Arc<AtomicU64>,
    /// Simulate an inference server (slots, queue, speed, caches, `/metrics`).
    pub inference: Option<Arc<InferenceServer>>,
}

impl MockOptions {
    /// Whether this completion is one of the `failure_percent` that fail: every n-th,
    /// so the share is exact.
    fn fails_next(&self) -> bool {
        let percent = self.failure_percent.load(Ordering::Relaxed);
        if percent == 0 {
            return false;
        }
        let n = self.completions.fetch_add(1, Ordering::Relaxed);
        (n + 1) * percent / 100 > n * percent / 100
    }

    pub fn new(version: &str) -> Self {
        MockOptions {
            version: version.into(),
            model: "demo-llama".into(),
            token_interval: Duration::from_millis(40),
            failure_percent: Arc::default(),
            completions: Arc::default(),
            inference: None,
        }
    }

    /// Serve chat completions as the simulated inference server `options` describes.
    pub fn simulate(mut self, options: InferenceOptions) -> Self {
        self.inference = Some(Arc::new(InferenceServer::new(options)));
        self
    }
}

/// A running mock server; stops when dropped.
pub struct MockModelServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockModelServer {
    pub async fn start(addr: SocketAddr, options: MockOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let options = Arc::new(options);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let options = options.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| serve(request, options.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(MockModelServer { addr, task })
    }
}

/// A response body fed from a channel: each message is sent as its own chunk.
pub struct ChannelBody {
    receiver: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.receiver
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

type MockBody = http_body_util::Either<http_body_util::Full<Bytes>, ChannelBody>;

async fn serve(
    request: Request<Incoming>,
    options: Arc<MockOptions>,
) -> Result<Response<MockBody>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/health") => json_reply(
            StatusCode::OK,
            json!({ "status": "ok", "version": options.version }),
        ),
        (&Method::GET, "/v1/models") => json_reply(
            StatusCode::OK,
            json!({ "object": "list", "data": [{ "id": options.model, "object": "model", "owned_by": "junction-demo", "version": options.version }] }),
        ),
        (&Method::PUT, "/mock/failure_rate") => {
            let percent = request
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("percent=")))
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|p| *p <= 100);
            match percent {
                Some(percent) => {
                    options.failure_percent.store(percent, Ordering::Relaxed);
                    json_reply(StatusCode::OK, json!({ "failure_percent": percent }))
                }
                None => error_reply(
                    StatusCode::BAD_REQUEST,
                    "use ?percent=N with N from 0 to 100",
                ),
            }
        }
        (&Method::POST, "/v1/chat/completions") if options.fails_next() => error_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "mock failure (see PUT /mock/failure_rate)",
        ),
        (&Method::GET, "/metrics") if options.inference.is_some() => {
            let server = options.inference.as_ref().expect("checked");
            let mut response = Response::new(http_body_util::Either::Left(
                http_body_util::Full::new(Bytes::from(server.metrics_text(&options.model))),
            ));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        (&Method::POST, "/v1/chat/completions") => {
            let body = match request.into_body().collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => {
                    return Ok(error_reply(
                        StatusCode::BAD_REQUEST,
                        "could not read the body",
                    ));
                }
            };
            match (serde_json::from_slice::<Value>(&body), &options.inference) {
                (Ok(json), Some(server)) => {
                    simulated_completion(&body, &json, &options, server.clone()).await
                }
                (Ok(json), None) => chat_completion(&json, &options),
                (Err(e), _) => error_reply(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
            }
        }
        _ => error_reply(
            StatusCode::NOT_FOUND,
            "no such endpoint on the mock model server",
        ),
    };
    let mut response = response;
    if let Ok(value) = header::HeaderValue::from_str(&options.version) {
        response.headers_mut().insert("x-mock-version", value);
    }
    if let Some(server) = options.inference.as_ref().filter(|s| s.options.orca)
        && let Ok(value) = header::HeaderValue::from_str(&server.orca_header())
    {
        response
            .headers_mut()
            .insert("endpoint-load-metrics", value);
    }
    Ok(response)
}

/// The words of the reply to `messages`; one word is one token for the mock.
pub fn reply_words(version: &str, last_user_message: &str) -> Vec<String> {
    let mut words: Vec<String> = format!("Hello from the {version} model! You said:")
        .split_whitespace()
        .map(String::from)
        .collect();
    words.extend(last_user_message.split_whitespace().map(String::from));
    words
}

/// Prompt tokens as the mock counts them: whitespace-separated words of every message.
pub fn prompt_tokens(messages: &[Value]) -> usize {
    messages
        .iter()
        .map(|m| message_text(m).split_whitespace().count())
        .sum()
}

fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn chat_completion(body: &Value, options: &MockOptions) -> Response<MockBody> {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return error_reply(StatusCode::BAD_REQUEST, "`messages` must be an array");
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(&options.model)
        .to_string();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(message_text)
        .unwrap_or_default();
    let mut words = reply_words(&options.version, &last_user);
    let limit = body
        .get("max_tokens")
        .or_else(|| body.get("max_completion_tokens"))
        .and_then(Value::as_u64);
    let finish_reason = match limit {
        Some(limit) if (limit as usize) < words.len() => {
            words.truncate(limit as usize);
            "length"
        }
        _ => "stop",
    };
    let prompt = prompt_tokens(messages);
    let usage = json!({ "prompt_tokens": prompt, "completion_tokens": words.len(), "total_tokens": prompt + words.len() });
    let id = format!("chatcmpl-mock-{}", options.version);
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        return stream_reply(
            id,
            model,
            words,
            finish_reason,
            include_usage.then_some(usage),
            options.token_interval,
        );
    }
    json_reply(
        StatusCode::OK,
        json!({
            "id": id,
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": words.join(" ") }, "finish_reason": finish_reason }],
            "usage": usage,
        }),
    )
}

fn stream_reply(
    id: String,
    model: String,
    words: Vec<String>,
    finish_reason: &'static str,
    usage: Option<Value>,
    interval: Duration,
) -> Response<MockBody> {
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        let chunk = |delta: Value, finish: Option<&str>| {
            json!({ "id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
                    "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
        };
        let mut events = vec![chunk(json!({ "role": "assistant", "content": "" }), None)];
        let count = words.len();
        for (i, word) in words.into_iter().enumerate() {
            let text = if i + 1 < count {
                format!("{word} ")
            } else {
                word
            };
            events.push(chunk(json!({ "content": text }), None));
        }
        events.push(chunk(json!({}), Some(finish_reason)));
        if let Some(usage) = usage {
            events.push(json!({ "id": id, "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [], "usage": usage }));
        }
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            if sender
                .send(Bytes::from(format!("data: {event}\n\n")))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = sender.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    let mut response = Response::new(http_body_util::Either::Right(ChannelBody { receiver }));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    response
}

fn json_reply(status: StatusCode, body: Value) -> Response<MockBody> {
    let mut response = Response::new(http_body_util::Either::Left(http_body_util::Full::new(
        Bytes::from(body.to_string()),
    )));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error_reply(status: StatusCode, message: &str) -> Response<MockBody> {
    json_reply(
        status,
        json!({ "error": { "type": "invalid_request_error", "message": message } }),
    )
}

/// Prompt tokens of the prefix a prefix cache would reuse: the leading system messages
/// and the first message after them (as `llm::prompt_prefix_hash` reads it).
fn prefix_tokens(messages: &[Value]) -> u64 {
    let mut tokens = 0;
    for message in messages {
        tokens += message_text(message).split_whitespace().count() as u64;
        let role = message.get("role").and_then(Value::as_str);
        if !matches!(role, Some("system" | "developer")) {
            break;
        }
    }
    tokens
}

/// A chat completion from the simulated inference server: queued for a slot, prefilled
/// (less a cached prefix), then one token per interval, all at the server's speed.
async fn simulated_completion(
    bytes: &[u8],
    body: &Value,
    options: &MockOptions,
    server: Arc<InferenceServer>,
) -> Response<MockBody> {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return error_reply(StatusCode::BAD_REQUEST, "`messages` must be an array");
    };
    let max_tokens = body
        .get("max_tokens")
        .or_else(|| body.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(server.options.output_tokens)
        .max(1);
    let prefix = crate::llm::prompt_prefix_hash(bytes, crate::balance::stable_hash)
        .map(|hash| (hash, prefix_tokens(messages)));
    let demand = Demand {
        prompt_tokens: prompt_tokens(messages) as u64,
        max_tokens,
        prefix,
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(&options.model)
        .to_string();
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let interval = server.options.scaled(options.token_interval);
    let usage = json!({ "prompt_tokens": demand.prompt_tokens, "completion_tokens": max_tokens, "total_tokens": demand.prompt_tokens + max_tokens });
    let id = format!("chatcmpl-mock-{}", options.version);
    if !stream {
        let admission = server.admit(demand).await;
        tokio::time::sleep(server.prefill_time(&admission) + interval * max_tokens as u32).await;
        drop(admission);
        let content = vec!["token"; max_tokens as usize].join(" ");
        return json_reply(
            StatusCode::OK,
            json!({ "id": id, "object": "chat.completion", "created": 0, "model": model,
                    "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "length" }],
                    "usage": usage }),
        );
    }
    // The head goes at once, as vLLM's does; the events follow the simulation.
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        let admission = server.admit(demand).await;
        tokio::time::sleep(server.prefill_time(&admission)).await;
        let chunk = |delta: Value, finish: Option<&str>| {
            let event = json!({ "id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
                                "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
            Bytes::from(format!("data: {event}\n\n"))
        };
        let first = chunk(json!({ "role": "assistant", "content": "token " }), None);
        if sender.send(first).await.is_err() {
            return;
        }
        for _ in 1..max_tokens {
            tokio::time::sleep(interval).await;
            if sender
                .send(chunk(json!({ "content": "token " }), None))
                .await
                .is_err()
            {
                return;
            }
        }
        drop(admission);
        let _ = sender.send(chunk(json!({}), Some("length"))).await;
        if include_usage {
            let event = json!({ "id": id, "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [], "usage": usage });
            let _ = sender.send(Bytes::from(format!("data: {event}\n\n"))).await;
        }
        let _ = sender.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    let mut response = Response::new(http_body_util::Either::Right(ChannelBody { receiver }));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    response
}
