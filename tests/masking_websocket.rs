//! Masking WebSocket messages on every engine: a recording endpoint shows each message
//! exactly as it arrives, the client reads exactly what Junction sends. Covered: text
//! and JSON messages masked whole (fragments joined), pseudonyms restored on the way
//! back, binary, blocked and oversized messages closing the socket, no compression
//! negotiated, findings counted, and a handshake the endpoint refuses answered masked.
//! Also any tunnel's record (masked or not): its access log line written when it
//! closes, and the tunnel in flight to its endpoint (limits, least connections).

use crate::support;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use support::proxy::RunningProxy;
use support::raw_http::within;
use support::travel::{self, Extra, Travel};

const EMAIL: &str = "jane.doe@example.org";
const CARD: &str = "4111 1111 1111 1111";

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the endpoint saw, in order, over all its connections.
#[derive(Debug)]
enum AtEndpoint {
    /// The upgrade request's headers, names lower-cased.
    Handshake(Vec<(String, String)>),
    Text(String),
    Binary(Vec<u8>),
    /// The connection ended (a Close, end of stream or an error).
    Ended,
}

/// A WebSocket endpoint that reports every handshake, text and binary message and the
/// end of each connection on a channel, and echoes each text and binary message.
struct RecordingEndpoint {
    url: String,
    seen: mpsc::UnboundedReceiver<AtEndpoint>,
}

impl RecordingEndpoint {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (report, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let report = report.clone();
                tokio::spawn(async move {
                    let handshake = report.clone();
                    // The error type is tungstenite's `Callback` signature, not ours.
                    #[allow(clippy::result_large_err)]
                    let capture_headers = move |request: &Request, response: Response| {
                        let headers = request
                            .headers()
                            .iter()
                            .map(|(name, value)| {
                                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                                (name.as_str().to_ascii_lowercase(), value)
                            })
                            .collect();
                        let _ = handshake.send(AtEndpoint::Handshake(headers));
                        Ok(response)
                    };
                    let Ok(mut socket) =
                        tokio_tungstenite::accept_hdr_async(stream, capture_headers).await
                    else {
                        let _ = report.send(AtEndpoint::Ended);
                        return;
                    };
                    while let Some(Ok(message)) = socket.next().await {
                        let echo = match &message {
                            Message::Text(text) => AtEndpoint::Text(text.clone()),
                            Message::Binary(bytes) => AtEndpoint::Binary(bytes.clone()),
                            _ => continue,
                        };
                        let _ = report.send(echo);
                        if socket.send(message).await.is_err() {
                            break;
                        }
                    }
                    let _ = report.send(AtEndpoint::Ended);
                });
            }
        });
        RecordingEndpoint { url, seen }
    }

    async fn next(&mut self) -> AtEndpoint {
        within("the endpoint", self.seen.recv())
            .await
            .expect("the endpoint is running")
    }

    /// The headers of the next upgrade request the endpoint accepted.
    async fn handshake_headers(&mut self) -> Vec<(String, String)> {
        match self.next().await {
            AtEndpoint::Handshake(headers) => headers,
            other => panic!("expected a handshake at the endpoint, got {other:?}"),
        }
    }

    /// The next text message the endpoint received (handshakes skipped).
    async fn next_text(&mut self) -> String {
        loop {
            match self.next().await {
                AtEndpoint::Handshake(_) => continue,
                AtEndpoint::Text(text) => return text,
                other => panic!("expected a text message at the endpoint, got {other:?}"),
            }
        }
    }

    /// The next binary message the endpoint received (handshakes skipped).
    async fn next_binary(&mut self) -> Vec<u8> {
        loop {
            match self.next().await {
                AtEndpoint::Handshake(_) => continue,
                AtEndpoint::Binary(bytes) => return bytes,
                other => panic!("expected a binary message at the endpoint, got {other:?}"),
            }
        }
    }

    /// Waits for the endpoint's connection to end and fails if any message reached it
    /// before.
    async fn ended_without_a_message(&mut self, travel: Travel) {
        loop {
            match self.next().await {
                AtEndpoint::Handshake(_) => continue,
                AtEndpoint::Ended => return,
                message => panic!("{travel:?}: the endpoint received {message:?}"),
            }
        }
    }
}

async fn start(travel: Travel, endpoint: &RecordingEndpoint, route: &str) -> RunningProxy {
    let extra = Extra {
        route,
        ..Extra::default()
    };
    travel::start(travel, std::slice::from_ref(&endpoint.url), &extra).await
}

fn realtime_url(proxy: &RunningProxy) -> String {
    format!("ws://{}/v1/realtime", proxy.addr("public"))
}

async fn connect(proxy: &RunningProxy) -> Client {
    let (client, response) = within(
        "handshake",
        tokio_tungstenite::connect_async(realtime_url(proxy)),
    )
    .await
    .expect("the WebSocket handshake through the proxy");
    assert_eq!(response.status(), 101);
    client
}

/// The next message Junction sends the client, pings and pongs included.
async fn next_from_proxy(client: &mut Client) -> Message {
    within("a message from the proxy", client.next())
        .await
        .expect("the proxy kept the WebSocket open")
        .expect("a readable message from the proxy")
}

/// The next text message Junction sends the client (pings and pongs skipped).
async fn next_text_from_proxy(client: &mut Client, travel: Travel) -> String {
    loop {
        match next_from_proxy(client).await {
            Message::Text(text) => return text,
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("{travel:?}: expected a text message, got {other:?}"),
        }
    }
}

/// The Close frame Junction sends the client; any data message before it fails.
async fn close_from_proxy(client: &mut Client, travel: Travel) -> CloseFrame<'static> {
    loop {
        let message = within("a Close frame from the proxy", client.next()).await;
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return frame,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => panic!("{travel:?}: expected a Close frame, got {other:?}"),
            Some(Err(error)) => panic!("{travel:?}: expected a Close frame, got {error}"),
            None => panic!("{travel:?}: the WebSocket ended without a Close frame"),
        }
    }
}

/// The value of the series `series` (`name{labels}`). The relay counts a message
/// before it sends it on, so once the endpoint has it the count is there.
async fn metric(proxy: &RunningProxy, series: &str) -> f64 {
    let text = proxy.metrics_text().await;
    *support::parse_metrics(&text)
        .get(series)
        .unwrap_or_else(|| panic!("{series} not in {text}"))
}

fn realtime_event(text: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{ "type": "input_text", "text": text }],
        },
    })
}

/// With `EMAIL_ADDRESS = "pseudonymize"`: a plain text message reaches the endpoint
/// with the address as `<EMAIL_ADDRESS_1>` and the endpoint's echo reaches the client
/// with the address restored. A Realtime JSON event on the same connection reaches the
/// endpoint as valid JSON with only its string masked: the card redacted, the same
/// address as the same pseudonym; its echo comes back restored.
async fn text_messages_are_masked_and_pseudonyms_restored(travel: Travel) {
    let mut endpoint = RecordingEndpoint::start().await;
    let proxy = start(
        travel,
        &endpoint,
        r#"mask = { types = { EMAIL_ADDRESS = "pseudonymize" } }"#,
    )
    .await;
    let mut client = connect(&proxy).await;

    let plain = format!("mail {EMAIL} now");
    client.send(Message::Text(plain.clone())).await.unwrap();
    assert_eq!(
        endpoint.next_text().await,
        "mail <EMAIL_ADDRESS_1> now",
        "{travel:?}"
    );
    assert_eq!(
        next_text_from_proxy(&mut client, travel).await,
        plain,
        "{travel:?}"
    );

    let event = realtime_event(&format!("card {CARD} and {EMAIL}"));
    client.send(Message::Text(event.to_string())).await.unwrap();
    let received = endpoint.next_text().await;
    let received: serde_json::Value = serde_json::from_str(&received).unwrap_or_else(|error| {
        panic!("{travel:?}: not JSON at the endpoint ({error}): {received}")
    });
    assert_eq!(
        received,
        realtime_event("card [CREDIT_CARD] and <EMAIL_ADDRESS_1>"),
        "{travel:?}"
    );
    let echoed = next_text_from_proxy(&mut client, travel).await;
    let echoed: serde_json::Value = serde_json::from_str(&echoed)
        .unwrap_or_else(|error| panic!("{travel:?}: not JSON at the client ({error}): {echoed}"));
    assert_eq!(
        echoed,
        realtime_event(&format!("card [CREDIT_CARD] and {EMAIL}")),
        "{travel:?}"
    );
}

#[tokio::test]
async fn text_messages_are_masked_and_pseudonyms_restored_on_every_engine() {
    for travel in Travel::ALL {
        text_messages_are_masked_and_pseudonyms_restored(travel).await;
    }
}

/// One frame of a fragmented text message: the first fragment is a Text frame, the
/// rest are Continuation frames. tungstenite masks a client's frames itself.
fn text_fragment(bytes: &str, first: bool, last: bool) -> Message {
    let opcode = if first {
        OpCode::Data(Data::Text)
    } else {
        OpCode::Data(Data::Continue)
    };
    Message::Frame(Frame::message(bytes.as_bytes().to_vec(), opcode, last))
}

/// A text message sent in fragments, the address split across them, is masked as one
/// message: the endpoint gets one text message with `[EMAIL_ADDRESS]`. A ping sent
/// between two fragments is answered and does not break the message.
async fn fragmented_text_is_masked_whole(travel: Travel) {
    let mut endpoint = RecordingEndpoint::start().await;
    let proxy = start(travel, &endpoint, "mask = {}").await;
    let mut client = connect(&proxy).await;

    client
        .send(text_fragment("mail jane.do", true, false))
        .await
        .unwrap();
    client
        .send(text_fragment("e@example.org now", false, true))
        .await
        .unwrap();
    assert_eq!(
        endpoint.next_text().await,
        "mail [EMAIL_ADDRESS] now",
        "{travel:?}"
    );
    assert_eq!(
        next_text_from_proxy(&mut client, travel).await,
        "mail [EMAIL_ADDRESS] now",
        "{travel:?}"
    );

    client
        .send(text_fragment("to jane", true, false))
        .await
        .unwrap();
    client
        .send(Message::Ping(b"between".to_vec()))
        .await
        .unwrap();
    client
        .send(text_fragment(".doe@exam", false, false))
        .await
        .unwrap();
    client
        .send(text_fragment("ple.org", false, true))
        .await
        .unwrap();
    assert_eq!(
        endpoint.next_text().await,
        "to [EMAIL_ADDRESS]",
        "{travel:?}"
    );
    let mut ponged = false;
    loop {
        match next_from_proxy(&mut client).await {
            Message::Pong(payload) => {
                assert_eq!(payload, b"between", "{travel:?}");
                ponged = true;
            }
            Message::Ping(_) => continue,
            Message::Text(text) => {
                assert_eq!(text, "to [EMAIL_ADDRESS]", "{travel:?}");
                break;
            }
            other => panic!("{travel:?}: expected a pong and a text message, got {other:?}"),
        }
    }
    assert!(ponged, "{travel:?}: no pong before the echo");
}

#[tokio::test]
async fn fragmented_text_is_masked_whole_on_every_engine() {
    for travel in Travel::ALL {
        fragmented_text_is_masked_whole(travel).await;
    }
}

/// A binary message cannot be masked: the client gets Close 1003
/// `masking_unreadable_body` and the endpoint's connection ends without it. With
/// `on_error = "pass"` it is echoed unchanged and counted as passed.
async fn binary_messages_fail_closed_or_pass(travel: Travel) {
    let mut binary = vec![0x00, 0xff, 0xfe, 0x01];
    binary.extend_from_slice(EMAIL.as_bytes());

    let mut endpoint = RecordingEndpoint::start().await;
    let proxy = start(travel, &endpoint, "mask = {}").await;
    let mut client = connect(&proxy).await;
    endpoint.handshake_headers().await;
    client.send(Message::Binary(binary.clone())).await.unwrap();
    let close = close_from_proxy(&mut client, travel).await;
    assert_eq!(close.code, CloseCode::Unsupported, "{travel:?}: {close:?}");
    assert_eq!(close.reason, "masking_unreadable_body", "{travel:?}");
    // The client stays connected: Junction itself ends the endpoint's side.
    endpoint.ended_without_a_message(travel).await;
    drop(client);

    let mut endpoint = RecordingEndpoint::start().await;
    let proxy = start(travel, &endpoint, r#"mask = { on_error = "pass" }"#).await;
    let mut client = connect(&proxy).await;
    client.send(Message::Binary(binary.clone())).await.unwrap();
    assert_eq!(endpoint.next_binary().await, binary, "{travel:?}");
    match next_from_proxy(&mut client).await {
        Message::Binary(echoed) => assert_eq!(echoed, binary, "{travel:?}"),
        other => panic!("{travel:?}: expected the binary echo, got {other:?}"),
    }
    let passed = metric(
        &proxy,
        r#"junction_masking_passed_total{route="all",direction="request"}"#,
    )
    .await;
    assert!(passed >= 1.0, "{travel:?}: passed {passed}");
}

#[tokio::test]
async fn binary_messages_fail_closed_or_pass_on_every_engine() {
    for travel in Travel::ALL {
        binary_messages_fail_closed_or_pass(travel).await;
    }
}

/// A message holding a type whose action is `block` closes the socket with 1008 and a
/// reason naming the type, never the value; the message never reaches the endpoint.
async fn blocked_values_close_the_socket_by_type(travel: Travel) {
    let mut endpoint = RecordingEndpoint::start().await;
    let proxy = start(
        travel,
        &endpoint,
        r#"mask = { types = { CREDIT_CARD = "block" } }"#,
    )
    .await;
    let mut client = connect(&proxy).await;
    client
        .send(Message::Text(format!("pay with {CARD} please")))
        .await
        .unwrap();
    let close = close_from_proxy(&mut client, travel).await;
    assert_eq!(close.code, CloseCode::Policy, "{travel:?}: {close:?}");
    assert!(
        close.reason.starts_with("sensitive_data_blocked"),
        "{travel:?}: {close:?}"
    );
    assert!(
        close.reason.contains("CREDIT_CARD"),
        "{travel:?}: {close:?}"
    );
    assert!(!close.reason.contains("4111"), "{travel:?}: {close:?}");
    drop(client);
    endpoint.ended_without_a_message(travel).await;
}

#[tokio::test]
async fn blocked_values_close_the_socket_by_type_on_every_engine() {
    for travel in Travel::ALL {
        blocked_values_close_the_socket_by_type(travel).await;
    }
}

/// A text message longer than the route's `max_body` closes the socket with 1009
/// `masking_body_too_large`; nothing reaches the endpoint.
async fn oversized_messages_are_refused(travel: Travel) {
    let mut endpoint = RecordingEndpoint::start().await;
    let proxy = start(travel, &endpoint, r#"mask = { max_body = "1KiB" }"#).await;
    let mut client = connect(&proxy).await;
    client.send(Message::Text("a".repeat(2000))).await.unwrap();
    let close = close_from_proxy(&mut client, travel).await;
    assert_eq!(close.code, CloseCode::Size, "{travel:?}: {close:?}");
    assert_eq!(close.reason, "masking_body_too_large", "{travel:?}");
    drop(client);
    endpoint.ended_without_a_message(travel).await;
}

#[tokio::test]
async fn oversized_messages_are_refused_on_every_engine() {
    for travel in Travel::ALL {
        oversized_messages_are_refused(travel).await;
    }
}

/// The client's `Sec-WebSocket-Extensions` (permessage-deflate) is not forwarded, so
/// no compression is negotiated and messages stay readable: a text message still
/// reaches the endpoint masked.
async fn compression_is_not_negotiated(travel: Travel) {
    let mut endpoint = RecordingEndpoint::start().await;
    let proxy = start(travel, &endpoint, "mask = {}").await;
    let mut request = realtime_url(&proxy).into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
    let (mut client, response) =
        match within("handshake", tokio_tungstenite::connect_async(request)).await {
            Ok(connected) => connected,
            Err(Error::Http(response)) => panic!("{travel:?}: handshake refused: {response:?}"),
            Err(error) => panic!("{travel:?}: handshake failed: {error}"),
        };
    assert_eq!(response.status(), 101, "{travel:?}");
    assert!(
        !response.headers().contains_key("sec-websocket-extensions"),
        "{travel:?}: {response:?}"
    );
    let headers = endpoint.handshake_headers().await;
    assert!(
        headers
            .iter()
            .all(|(name, _)| name != "sec-websocket-extensions"),
        "{travel:?}: the endpoint saw {headers:?}"
    );

    client
        .send(Message::Text(format!("mail {EMAIL}")))
        .await
        .unwrap();
    assert_eq!(
        endpoint.next_text().await,
        "mail [EMAIL_ADDRESS]",
        "{travel:?}"
    );
    assert_eq!(
        next_text_from_proxy(&mut client, travel).await,
        "mail [EMAIL_ADDRESS]",
        "{travel:?}"
    );
}

#[tokio::test]
async fn compression_is_not_negotiated_on_every_engine() {
    for travel in Travel::ALL {
        compression_is_not_negotiated(travel).await;
    }
}

/// A message with one address counts one finding of its type, action and direction.
async fn findings_are_counted(travel: Travel) {
    let mut endpoint = RecordingEndpoint::start().await;
    let proxy = start(travel, &endpoint, "mask = {}").await;
    let mut client = connect(&proxy).await;
    client
        .send(Message::Text(format!("mail {EMAIL}")))
        .await
        .unwrap();
    assert_eq!(
        endpoint.next_text().await,
        "mail [EMAIL_ADDRESS]",
        "{travel:?}"
    );
    let findings = metric(
        &proxy,
        r#"junction_masking_findings_total{route="all",type="EMAIL_ADDRESS",action="redact",direction="request"}"#,
    )
    .await;
    assert_eq!(findings, 1.0, "{travel:?}");
    let metrics = proxy.metrics_text().await;
    assert!(!metrics.contains(EMAIL), "{travel:?}: {metrics}");
}

#[tokio::test]
async fn findings_are_counted_on_every_engine() {
    for travel in Travel::ALL {
        findings_are_counted(travel).await;
    }
}

/// A route that masks answers only (`directions = "response"`): the client's messages
/// go on as they are, binary ones and long ones too (they are not read, so not held
/// to `max_body`), and the endpoint's text messages are masked.
async fn answers_only_are_read_when_the_route_masks_answers_only(travel: Travel) {
    let mut endpoint = RecordingEndpoint::start().await;
    let route = r#"mask = { directions = "response", max_body = "1KiB" }"#;
    let proxy = start(travel, &endpoint, route).await;
    let mut client = connect(&proxy).await;
    let binary = vec![0xff; 3000];
    client.send(Message::Binary(binary.clone())).await.unwrap();
    assert_eq!(endpoint.next_binary().await, binary, "{travel:?}");
    // Answers are read: the echo, past `max_body`, closes the socket.
    let close = close_from_proxy(&mut client, travel).await;
    assert_eq!(close.code, CloseCode::Size, "{travel:?}: {close:?}");

    let mut endpoint = RecordingEndpoint::start().await;
    let proxy = start(travel, &endpoint, route).await;
    let mut client = connect(&proxy).await;
    client
        .send(Message::Text(format!("mail {EMAIL}")))
        .await
        .unwrap();
    assert_eq!(
        endpoint.next_text().await,
        format!("mail {EMAIL}"),
        "{travel:?}"
    );
    assert_eq!(
        next_text_from_proxy(&mut client, travel).await,
        "mail [EMAIL_ADDRESS]",
        "{travel:?}"
    );
}

#[tokio::test]
async fn answers_only_are_read_when_the_route_masks_answers_only_on_every_engine() {
    for travel in Travel::ALL {
        answers_only_are_read_when_the_route_masks_answers_only(travel).await;
    }
}

/// The Realtime API streams an answer in delta events, one message each, and a
/// pseudonym the model repeats is cut between two of them: the endpoint's messages are
/// read as one stream, so it is restored whole (the held text riding on the next
/// delta, or on the `.done` event), and the deltas' texts add up to the answer.
async fn a_pseudonym_split_between_two_deltas_is_restored(travel: Travel) {
    let mut endpoint = RecordingEndpoint::start().await;
    let route = r#"mask = { types = { EMAIL_ADDRESS = "pseudonymize" } }"#;
    let proxy = start(travel, &endpoint, route).await;
    let mut client = connect(&proxy).await;
    client
        .send(Message::Text(format!("write to {EMAIL}")))
        .await
        .unwrap();
    assert_eq!(
        endpoint.next_text().await,
        "write to <EMAIL_ADDRESS_1>",
        "{travel:?}"
    );
    assert_eq!(
        next_text_from_proxy(&mut client, travel).await,
        format!("write to {EMAIL}"),
        "{travel:?}"
    );
    // The echoing endpoint sends back what the client sends: the model's deltas.
    let event = |kind: &str, field: &str, text: &str| {
        serde_json::json!({ "type": kind, "item_id": "i1", "output_index": 0, "content_index": 0, field: text })
            .to_string()
    };
    for piece in ["Sent to <EMAIL_", "ADDRESS_1>, done."] {
        let delta = event("response.output_text.delta", "delta", piece);
        client.send(Message::Text(delta)).await.unwrap();
    }
    let done = event(
        "response.output_text.done",
        "text",
        "Sent to <EMAIL_ADDRESS_1>, done.",
    );
    client.send(Message::Text(done)).await.unwrap();
    let mut answer = String::new();
    loop {
        let message = next_text_from_proxy(&mut client, travel).await;
        let message: serde_json::Value = serde_json::from_str(&message).unwrap();
        match message["type"].as_str() {
            Some("response.output_text.delta") => {
                answer.push_str(message["delta"].as_str().unwrap());
            }
            Some("response.output_text.done") => {
                assert_eq!(message["text"], format!("Sent to {EMAIL}, done."));
                break;
            }
            other => panic!("{travel:?}: {other:?}"),
        }
    }
    assert_eq!(answer, format!("Sent to {EMAIL}, done."), "{travel:?}");
}

#[tokio::test]
async fn a_pseudonym_split_between_two_deltas_is_restored_on_every_engine() {
    for travel in Travel::ALL {
        a_pseudonym_split_between_two_deltas_is_restored(travel).await;
    }
}

/// An endpoint that answers the first text message with one delta event ending in the
/// start of a pseudonym, then closes the socket.
async fn endpoint_closing_after_a_cut_delta() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() {
                        let delta = serde_json::json!({
                            "type": "response.output_text.delta", "output_index": 0,
                            "content_index": 0, "delta": "Sent to <EMAIL_",
                        });
                        let _ = socket.send(Message::Text(delta.to_string())).await;
                        let _ = socket.close(None).await;
                    }
                }
            });
        }
    });
    url
}

/// Text an answer's delta held back (a pseudonym may be starting) reaches the client
/// before the endpoint's Close frame: no data follows a Close.
async fn held_text_goes_before_the_endpoint_s_close(travel: Travel) {
    let url = endpoint_closing_after_a_cut_delta().await;
    let extra = Extra {
        route: r#"mask = { types = { EMAIL_ADDRESS = "pseudonymize" } }"#,
        ..Extra::default()
    };
    let proxy = travel::start(travel, &[url], &extra).await;
    let mut client = connect(&proxy).await;
    client
        .send(Message::Text(format!("write to {EMAIL}")))
        .await
        .unwrap();
    let mut answer = String::new();
    loop {
        match next_from_proxy(&mut client).await {
            Message::Text(text) => {
                let event: serde_json::Value = serde_json::from_str(&text).unwrap();
                answer.push_str(event["delta"].as_str().unwrap());
            }
            Message::Close(_) => break,
            other => panic!("{travel:?}: {other:?}"),
        }
    }
    assert_eq!(answer, "Sent to <EMAIL_", "{travel:?}");
}

#[tokio::test]
async fn held_text_goes_before_the_endpoint_s_close_on_every_engine() {
    for travel in Travel::ALL {
        held_text_goes_before_the_endpoint_s_close(travel).await;
    }
}

/// An endpoint that refuses every upgrade with a `403` whose JSON body names `EMAIL`.
async fn endpoint_refusing_upgrades() -> String {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut wire = support::raw_http::Wire::new(stream);
                if let Ok(Some(_)) = wire.read_head().await {
                    let body = format!(r#"{{"error":{{"message":"{EMAIL} may not connect"}}}}"#);
                    let answer = format!(
                        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = wire.stream.write_all(answer.as_bytes()).await;
                }
            });
        }
    });
    url
}

/// An endpoint that answers a WebSocket handshake with anything but `101` answers as
/// any endpoint does: on a route that masks answers, the body the client gets is
/// masked (it went back unread before).
async fn a_refused_handshake_s_answer_is_masked(travel: Travel) {
    let url = endpoint_refusing_upgrades().await;
    let extra = Extra {
        route: r#"mask = { directions = "both" }"#,
        ..Extra::default()
    };
    let proxy = travel::start(travel, &[url], &extra).await;
    let mut client = support::raw_http::RawClient::connect(&proxy).await;
    client
        .send(
            b"GET /v1/realtime HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\n\
              upgrade: websocket\r\nsec-websocket-version: 13\r\n\
              sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await;
    let response = client.read_response("GET").await;
    assert_eq!(response.status, 403, "{travel:?}: {}", response.text());
    assert_eq!(
        response.text(),
        r#"{"error":{"message":"[EMAIL_ADDRESS] may not connect"}}"#,
        "{travel:?}"
    );
}

#[tokio::test]
async fn a_refused_handshake_s_answer_is_masked_on_every_engine() {
    for travel in Travel::ALL {
        a_refused_handshake_s_answer_is_masked(travel).await;
    }
}

/// A WebSocket's access log line is written when the connection ends, not at its
/// `101`: with the bytes each side sent through the tunnel, and on a masking route
/// what masking found in its messages (the metrics counted each message at once).
/// Relayed message by message (`mask`) and spliced byte for byte (no `mask`).
async fn the_access_log_line_covers_the_whole_connection(travel: Travel) {
    for route in ["mask = {}", ""] {
        let mut endpoint = RecordingEndpoint::start().await;
        let dir = tempfile::TempDir::new().unwrap();
        let access = dir.path().join("access.log");
        let top = format!("[access_log]\npath = {:?}\n", access.display().to_string());
        let extra = Extra {
            top: &top,
            route,
            ..Extra::default()
        };
        let proxy = travel::start(travel, std::slice::from_ref(&endpoint.url), &extra).await;
        let mut client = connect(&proxy).await;
        let sent = format!("card {CARD}");
        client.send(Message::Text(sent.clone())).await.unwrap();
        let masked = if route.is_empty() {
            sent.clone()
        } else {
            "card [CREDIT_CARD]".to_string()
        };
        assert_eq!(endpoint.next_text().await, masked, "{travel:?} {route}");
        assert_eq!(
            next_text_from_proxy(&mut client, travel).await,
            masked,
            "{travel:?} {route}"
        );
        // A request answered after the 101 has its line; the connection has none yet.
        let mut other = support::raw_http::RawClient::connect(&proxy).await;
        other.get("/after").await;
        let lines = support::wait_for_lines(&access, 1).await;
        assert!(
            lines[0].contains(r#""path":"/after""#),
            "{travel:?} {route}: logged before the connection ended: {lines:?}"
        );
        // The open tunnel is in flight to its endpoint (least-connections counts it).
        let in_flight = format!(
            r#"junction_inflight_requests{{pool="p",endpoint="{}"}}"#,
            endpoint.url
        );
        assert_eq!(metric(&proxy, &in_flight).await, 1.0, "{travel:?} {route}");

        // The client's Close, then its end of the connection (as a client does once the
        // endpoint's Close is in; this one does not wait to read it).
        client.close(None).await.unwrap();
        drop(client);
        let lines = support::wait_for_lines(&access, 2).await;
        let line: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(
            line["path"], "/v1/realtime",
            "{travel:?} {route}: {lines:?}"
        );
        assert_eq!(line["status"], 101, "{travel:?} {route}: {line}");
        // The text frame (6 bytes of header, masked) and the Close frame (6 bytes).
        let frames = (sent.len() + 6 + 6) as u64;
        assert_eq!(line["bytes_in"], frames, "{travel:?} {route}: {line}");
        // The echo (2 bytes of header, not masked), and the endpoint's Close.
        let echo = (masked.len() + 2) as u64;
        let bytes_out = line["bytes_out"].as_u64().unwrap();
        assert!(
            (echo..=echo + 4).contains(&bytes_out),
            "{travel:?} {route}: {line}"
        );
        // Released as the record ends (right after its line is queued for the log).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while metric(&proxy, &in_flight).await != 0.0 {
            assert!(tokio::time::Instant::now() < deadline, "{travel:?} {route}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if route.is_empty() {
            assert!(line["masked"].is_null(), "{travel:?}: {line}");
        } else {
            assert_eq!(line["masked"], "CREDIT_CARD:redact=1", "{travel:?}: {line}");
            // Counted once: by the message, not again by the line.
            assert_eq!(
                metric(
                    &proxy,
                    r#"junction_masking_findings_total{route="all",type="CREDIT_CARD",action="redact",direction="request"}"#
                )
                .await,
                1.0,
                "{travel:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_access_log_line_covers_the_whole_connection_on_every_engine() {
    for travel in Travel::ALL {
        the_access_log_line_covers_the_whole_connection(travel).await;
    }
}

/// An open WebSocket is in flight to its endpoint: with `max_in_flight = 1` a second
/// handshake finds the endpoint full (`503 upstream_overloaded`, as any request would),
/// and once the first connection has closed the endpoint takes one again.
async fn an_open_websocket_counts_against_the_endpoint_s_limit(travel: Travel) {
    let mut endpoint = RecordingEndpoint::start().await;
    let extra = Extra {
        pool: "limits = { max_in_flight = 1 }",
        ..Extra::default()
    };
    let proxy = travel::start(travel, std::slice::from_ref(&endpoint.url), &extra).await;
    let mut first = connect(&proxy).await;
    first.send(Message::Text("hi".into())).await.unwrap();
    assert_eq!(endpoint.next_text().await, "hi", "{travel:?}");
    match tokio_tungstenite::connect_async(realtime_url(&proxy)).await {
        Err(Error::Http(response)) => {
            assert_eq!(response.status(), 503, "{travel:?}: {response:?}")
        }
        other => panic!("{travel:?}: a second WebSocket to a full endpoint: {other:?}"),
    }
    first.close(None).await.unwrap();
    drop(first);
    // Released when the first connection's record ends; no signal reaches the client.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match tokio_tungstenite::connect_async(realtime_url(&proxy)).await {
            Ok(_) => break,
            Err(Error::Http(response)) if response.status() == 503 => {
                assert!(tokio::time::Instant::now() < deadline, "{travel:?}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(error) => panic!("{travel:?}: {error}"),
        }
    }
}

#[tokio::test]
async fn an_open_websocket_counts_against_the_endpoint_s_limit_on_every_engine() {
    for travel in Travel::ALL {
        an_open_websocket_counts_against_the_endpoint_s_limit(travel).await;
    }
}
