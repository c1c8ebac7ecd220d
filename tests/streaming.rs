//! Streaming end to end: SSE events and request bodies pass through chunk by chunk,
//! never buffered whole; the demo model server streams a chat completion to `[DONE]`;
//! WebSocket upgrades are spliced through in both directions.

use crate::support;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use junction::demo::mock::{MockModelServer, MockOptions};
use support::sse::{ChannelBody, SseReader, event_stream};
use support::{TestProxy, TestUpstream, client, listeners_toml};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// How long any single step may take before the test calls it a hang.
const STEP: Duration = Duration::from_secs(5);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

/// One pool with one endpoint at `url`, one catch-all route.
fn config_to(url: &str) -> String {
    format!(
        r#"{}
[[pools]]
name = "p"
endpoints = [{{ url = "{url}" }}]

[[routes]]
name = "all"
pool = "p"
"#,
        listeners_toml()
    )
}

/// An upstream whose one request is answered with an event stream fed from `events`.
async fn sse_upstream(events: mpsc::Receiver<Bytes>) -> support::upstream::RunningUpstream {
    let events = Arc::new(Mutex::new(Some(events)));
    TestUpstream::named("sse")
        .handler(move |_request| {
            let events = events.clone();
            async move {
                let events = events.lock().unwrap().take().expect("one request only");
                event_stream(ChannelBody(events))
            }
        })
        .start()
        .await
}

#[tokio::test]
async fn each_sse_event_reaches_the_client_before_the_next_is_sent() {
    let (events, receiver) = mpsc::channel(1);
    let upstream = sse_upstream(receiver).await;
    let proxy = TestProxy::from_toml(&config_to(&upstream.url()))
        .start()
        .await;

    let response = within("response head", client().get(proxy.url("/events")).send())
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut reader = SseReader::new(response.bytes_stream());
    // Lock step: event n+1 is only produced once the client holds event n, so any
    // buffering between the two (proxy or otherwise) shows up as a timeout here.
    for n in 0..10 {
        events
            .send(Bytes::from(format!("data: {n}\n\n")))
            .await
            .expect("upstream body is open");
        let event = within(&format!("event {n}"), reader.next_event()).await;
        assert_eq!(event.as_deref(), Some(format!("data: {n}").as_str()));
    }
    drop(events);
    assert_eq!(within("end of stream", reader.next_event()).await, None);
}

#[tokio::test]
async fn paced_sse_events_arrive_spread_out_not_at_the_end() {
    const EVENTS: usize = 10;
    const INTERVAL: Duration = Duration::from_millis(100);
    let sent_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let sent_log = sent_at.clone();
    let upstream = TestUpstream::named("paced")
        .handler(move |_request| {
            let sent_log = sent_log.clone();
            async move {
                let (events, receiver) = mpsc::channel(EVENTS);
                tokio::spawn(async move {
                    for n in 0..EVENTS {
                        if n > 0 {
                            tokio::time::sleep(INTERVAL).await;
                        }
                        sent_log.lock().unwrap().push(Instant::now());
                        if events
                            .send(Bytes::from(format!("data: {n}\n\n")))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
                event_stream(ChannelBody(receiver))
            }
        })
        .start()
        .await;
    let proxy = TestProxy::from_toml(&config_to(&upstream.url()))
        .start()
        .await;

    let requested = Instant::now();
    let response = within("response head", client().get(proxy.url("/paced")).send())
        .await
        .expect("request");
    let mut reader = SseReader::new(response.bytes_stream());
    let mut arrived = Vec::new();
    while let Some(event) = within("next event", reader.next_event()).await {
        assert_eq!(event, format!("data: {}", arrived.len()));
        arrived.push(Instant::now());
    }
    assert_eq!(arrived.len(), EVENTS);
    let sent = sent_at.lock().unwrap().clone();
    assert_eq!(sent.len(), EVENTS);
    let first = arrived[0] - requested;
    assert!(
        first < Duration::from_millis(500),
        "first event took {first:?}"
    );
    assert!(
        arrived[0] < sent[EVENTS - 1],
        "the first event arrived only after the upstream sent the last one"
    );
    let spread = arrived[EVENTS - 1] - arrived[0];
    assert!(
        spread >= INTERVAL * 6,
        "events arrived bunched together within {spread:?}"
    );
}

#[tokio::test]
async fn a_streamed_request_body_reaches_the_upstream_chunk_by_chunk() {
    // Upstream side: every body chunk it reads is reported on `seen`.
    let (seen_sender, mut seen) = mpsc::unbounded_channel::<Bytes>();
    let upstream = TestUpstream::named("sink")
        .handler(move |request| {
            let seen_sender = seen_sender.clone();
            async move {
                let mut body = request.into_body();
                let mut total = 0;
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame.expect("request body frame").into_data() {
                        total += data.len();
                        let _ = seen_sender.send(data);
                    }
                }
                support::upstream::reply(200, format!("received {total} bytes"))
            }
        })
        .start()
        .await;
    // Bodies are buffered by default (`request_buffering`): this route asks for streaming.
    let config = config_to(&upstream.url()) + "request_buffering = false\n";
    let proxy = TestProxy::from_toml(&config).start().await;

    // Client side: the request body is fed from `chunks`.
    let (chunks, chunk_receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let stream = futures_util::stream::unfold(chunk_receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let request = tokio::spawn(
        client()
            .post(proxy.url("/upload"))
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    );

    let mut expected = String::new();
    let mut received = String::new();
    for part in ["first chunk;", "second chunk;", "third chunk"] {
        chunks
            .send(Ok(Bytes::from(part)))
            .await
            .expect("client body is open");
        expected.push_str(part);
        // The next chunk is only produced once the upstream has read this one.
        while received.len() < expected.len() {
            let data = within(&format!("upstream reading {part:?}"), seen.recv())
                .await
                .expect("upstream is reading");
            received.push_str(std::str::from_utf8(&data).unwrap());
        }
        assert_eq!(received, expected);
    }
    drop(chunks);
    let response = within("response", request)
        .await
        .expect("request task")
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        format!("received {} bytes", expected.len())
    );
}

#[tokio::test]
async fn the_demo_model_server_streams_a_chat_completion_to_done() {
    let mut options = MockOptions::new("v1");
    options.token_interval = Duration::from_millis(5);
    let mock = MockModelServer::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .expect("mock server");
    let proxy = TestProxy::from_toml(&config_to(&format!("http://{}", mock.addr)))
        .start()
        .await;

    let response = within(
        "response head",
        client()
            .post(proxy.url("/v1/chat/completions"))
            .json(&serde_json::json!({
                "model": "demo-llama",
                "stream": true,
                "stream_options": { "include_usage": true },
                "messages": [{ "role": "user", "content": "stream please" }],
            }))
            .send(),
    )
    .await
    .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-mock-version"], "v1");

    let mut reader = SseReader::new(response.bytes_stream());
    let mut events = Vec::new();
    while let Some(event) = within("next event", reader.next_event()).await {
        events.push(event);
    }
    assert_eq!(events.last().map(String::as_str), Some("data: [DONE]"));
    let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
        .iter()
        .map(|event| {
            let data = event.strip_prefix("data: ").expect("a data line");
            serde_json::from_str(data).expect("a JSON chunk")
        })
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|chunk| chunk.pointer("/choices/0/delta/content")?.as_str())
        .collect();
    assert_eq!(content, "Hello from the v1 model! You said: stream please");
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|chunk| chunk.pointer("/choices/0/finish_reason")?.as_str())
        .collect();
    assert_eq!(finish, ["stop"]);
    let usage = chunks.last().unwrap()["usage"].clone();
    assert_eq!(usage["completion_tokens"], 9);
    assert_eq!(usage["prompt_tokens"], 2);
}

/// A WebSocket server that echoes text and binary messages on each connection, and
/// reports on `closed` when a client finished the closing handshake.
async fn websocket_echo() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (closed_sender, closed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let closed_sender = closed_sender.clone();
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let mut saw_close = false;
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_close() {
                        saw_close = true;
                    } else if (message.is_text() || message.is_binary())
                        && socket.send(message).await.is_err()
                    {
                        return;
                    }
                }
                if saw_close {
                    let _ = closed_sender.send(());
                }
            });
        }
    });
    (addr, closed)
}

#[tokio::test]
async fn websocket_messages_are_echoed_through_the_proxy() {
    let (echo, mut closed) = websocket_echo().await;
    let proxy = TestProxy::from_toml(&config_to(&format!("http://{echo}")))
        .start()
        .await;

    let url = format!("ws://{}/socket", proxy.addr("public"));
    let (mut socket, response) =
        within("WebSocket handshake", tokio_tungstenite::connect_async(url))
            .await
            .expect("WebSocket handshake through the proxy");
    assert_eq!(response.status(), 101);

    let large: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let messages = [
        Message::Text("hello through junction".into()),
        Message::Binary(vec![0, 1, 2, 254, 255]),
        Message::Text("ünïcödé ✓".into()),
        Message::Binary(large),
    ];
    for message in messages {
        socket.send(message.clone()).await.expect("send");
        let echoed = within("echo", socket.next())
            .await
            .expect("socket open")
            .expect("message");
        assert_eq!(echoed, message);
    }

    socket.close(None).await.expect("send close");
    loop {
        match within("closing handshake", socket.next()).await {
            None => break,
            Some(Ok(Message::Close(_))) => {}
            Some(other) => panic!("unexpected after close: {other:?}"),
        }
    }
    within("upstream sees the close", closed.recv())
        .await
        .expect("echo server reports");
}
