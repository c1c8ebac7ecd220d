//! Masking as the proxy core's body phase (issue #13), on every engine: the fast
//! HTTP/1.1 engine, hyper, and the hand-off between them. A recording upstream shows
//! exactly what an endpoint receives; the client reads exactly what Junction sends.
//! Covered: request bodies masked with the JSON kept valid and framed anew, pseudonyms
//! restored in a streamed answer split mid-token, `block`, fail-closed refusals and
//! `on_error = "pass"`, compressed answers, values told by their context masked where
//! they recur, and no value in any log, metric or error.

use crate::support;

use support::proxy::RunningProxy;
use support::raw_http::*;
use support::travel::{self, Extra, Travel};

const EMAIL: &str = "jane.doe@example.org";
const CARD: &str = "4111 1111 1111 1111";

async fn start(travel: Travel, upstream: &Upstream, route: &str, top: &str) -> RunningProxy {
    let extra = Extra {
        route,
        top,
        ..Extra::default()
    };
    travel::start(travel, &[upstream.url()], &extra).await
}

fn chat(content: &str) -> String {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "temperature": 0.25,
        "messages": [
            { "role": "system", "content": "You are terse." },
            { "role": "user", "content": content },
        ],
    })
    .to_string()
}

fn post(path: &str, content_type: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn json_reply(body: &str) -> Vec<Step> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    vec![Step::Write((head + body).into_bytes())]
}

fn chunk(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

/// An OpenAI chat stream whose answer text is `pieces`, one event each.
fn sse_chunks(pieces: &[&str]) -> Vec<String> {
    let mut events: Vec<String> = pieces
        .iter()
        .map(|piece| {
            let event = serde_json::json!({
                "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "choices": [{ "index": 0, "delta": { "content": piece }, "finish_reason": null }],
            });
            format!("data: {event}\n\n")
        })
        .collect();
    events.push("data: [DONE]\n\n".into());
    events
}

/// The answer text of an OpenAI chat stream.
fn sse_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut answer = String::new();
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            continue;
        }
        let event: serde_json::Value =
            serde_json::from_str(data).unwrap_or_else(|e| panic!("event {data:?}: {e}"));
        if let Some(piece) = event["choices"][0]["delta"]["content"].as_str() {
            answer.push_str(piece);
        }
    }
    answer
}

fn seen_json(seen: &Seen) -> serde_json::Value {
    serde_json::from_slice(&seen.body).unwrap_or_else(|e| {
        panic!(
            "the endpoint got invalid JSON ({e}): {:?}",
            String::from_utf8_lossy(&seen.body)
        )
    })
}

/// POSTs a chat body through the proxy, which must answer 200: what the endpoint got,
/// and its body as text.
async fn chat_through(
    travel: Travel,
    proxy: &RunningProxy,
    upstream: &Upstream,
    body: &str,
) -> (Seen, String) {
    let mut client = RawClient::connect(proxy).await;
    let response = client
        .request(
            "POST",
            &post("/v1/chat/completions", "application/json", body),
        )
        .await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    let seen = upstream.only_request();
    let sent = String::from_utf8_lossy(&seen.body).into_owned();
    (seen, sent)
}

async fn the_endpoint_sees_the_request_masked(travel: Travel) {
    let upstream = Upstream::start(|_| json_reply(r#"{"ok":true}"#)).await;
    let proxy = start(travel, &upstream, "mask = { directions = \"request\" }", "").await;
    let body = chat(&format!("Mail {EMAIL} and charge {CARD}, thanks."));
    let (seen, sent) = chat_through(travel, &proxy, &upstream, &body).await;
    assert!(
        !sent.contains(EMAIL) && !sent.contains(CARD),
        "{travel:?}: {sent}"
    );
    let json = seen_json(&seen);
    assert_eq!(
        json["messages"][1]["content"], "Mail [EMAIL_ADDRESS] and charge [CREDIT_CARD], thanks.",
        "{travel:?}"
    );
    // Every other field as it was; the new length is the one announced.
    let original: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["model"], original["model"]);
    assert_eq!(json["temperature"], original["temperature"]);
    assert_eq!(json["messages"][0], original["messages"][0]);
    assert_eq!(
        seen.head.content_length(),
        Some(seen.body.len()),
        "{travel:?}"
    );
    assert_eq!(
        seen.head.get("accept-encoding"),
        Some("identity"),
        "{travel:?}"
    );
    // Masking is no reason to leave the HTTP/1.1 engine.
    let handed_off = proxy
        .metrics_text()
        .await
        .contains("junction_fast_path_handoffs_total{");
    assert_eq!(handed_off, travel == Travel::HandOff, "{travel:?}");
}

#[tokio::test]
async fn the_endpoint_sees_the_request_masked_on_every_engine() {
    for travel in Travel::ALL {
        the_endpoint_sees_the_request_masked(travel).await;
    }
}

/// Passwords holding `\\`, quotes, `,;`, a backtick or letters beyond ASCII reach the
/// endpoint masked whole, no tail of them left (the masker reads the JSON string's
/// decoded text, `\\"` in the body being a `"` there).
async fn passwords_of_any_character_are_masked_whole(travel: Travel) {
    let upstream = Upstream::start(|_| json_reply(r#"{"ok":true}"#)).await;
    let proxy = start(travel, &upstream, "mask = { directions = \"request\" }", "").await;
    let lines = [
        r"DB_PASSWORD=Pa$$w0rd\xyz123",
        r#"DB_PASSWORD=abc"def12345"#,
        "DB_PASSWORD=it'sMyPass99",
        "DB_PASSWORD=abc;def123456",
        "SMTP_PASS=p@ss`w0rd99",
        r#"DB_PASSWORD="quote\"inside99""#,
        "password: Pässwörd9!",
        "password: 密码Secret123",
        r"my password is S3cr\et!",
    ];
    let body = chat(&lines.join("\n"));
    let (seen, _) = chat_through(travel, &proxy, &upstream, &body).await;
    assert_eq!(
        seen_json(&seen)["messages"][1]["content"],
        [
            "DB_PASSWORD=[PASSWORD]",
            "DB_PASSWORD=[PASSWORD]",
            "DB_PASSWORD=[PASSWORD]",
            "DB_PASSWORD=[PASSWORD]",
            "SMTP_PASS=[PASSWORD]",
            "DB_PASSWORD=\"[PASSWORD]\"",
            "password: [PASSWORD]",
            "password: [PASSWORD]",
            "my password is [PASSWORD]",
        ]
        .join("\n"),
        "{travel:?}"
    );
}

#[tokio::test]
async fn passwords_of_any_character_are_masked_whole_on_every_engine() {
    for travel in Travel::ALL {
        passwords_of_any_character_are_masked_whole(travel).await;
    }
}

/// Values told by their context in one message (a bare SSN after "SSN", a password in
/// prose, a password after mysql's `-p`) and quoted without it in another, before and
/// after, are masked everywhere; so are a key known by its prefix and a Discord token.
/// What the endpoint parses is checked, not the log.
async fn values_told_by_their_context_are_masked_where_they_recur(travel: Travel) {
    const SSN: &str = "815518385";
    const PASSWORD: &str = "Tr0ub4dor&3";
    const KEY: &str = "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";
    // Told by the flag it follows; and a token told by its form alone.
    const DB_PASSWORD: &str = "hX7rQ2pL";
    const DISCORD: &str = "MTA0NjE4NTYzMjQ1NjE3MjQ5.GZ4v8k.aBcD3fGh1jKlMn0pQrStUvWxYz9";
    let upstream = Upstream::start(|_| json_reply(r#"{"ok":true}"#)).await;
    let proxy = start(travel, &upstream, "mask = { directions = \"request\" }", "").await;
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [
            { "role": "system", "content": format!("Earlier notes: {SSN} / {PASSWORD} / {DB_PASSWORD}") },
            { "role": "user", "content": format!("My SSN is {SSN} and my password is {PASSWORD}.") },
            { "role": "assistant", "content": format!("Noted {SSN}; I will not repeat {PASSWORD}.") },
            { "role": "user", "content": format!(
                "Also trace with {KEY}, thanks. The bot runs `mysql -uroot -p{DB_PASSWORD} shop` as {DISCORD}."
            ) },
        ],
    })
    .to_string();
    let (seen, sent) = chat_through(travel, &proxy, &upstream, &body).await;
    for value in [SSN, PASSWORD, KEY, DB_PASSWORD, DISCORD] {
        assert!(!sent.contains(value), "{travel:?}: {value} in {sent}");
    }
    let json = seen_json(&seen);
    let contents: Vec<&str> = (0..4)
        .map(|i| json["messages"][i]["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "Earlier notes: [US_SSN] / [PASSWORD] / [PASSWORD]",
            "My SSN is [US_SSN] and my password is [PASSWORD].",
            "Noted [US_SSN]; I will not repeat [PASSWORD].",
            "Also trace with [API_KEY], thanks. The bot runs `mysql -uroot -p[PASSWORD] shop` as [API_KEY].",
        ],
        "{travel:?}"
    );
    assert_eq!(
        seen.head.content_length(),
        Some(seen.body.len()),
        "{travel:?}"
    );
}

#[tokio::test]
async fn values_told_by_their_context_are_masked_where_they_recur_on_every_engine() {
    for travel in Travel::ALL {
        values_told_by_their_context_are_masked_where_they_recur(travel).await;
    }
}

/// A chat with [`EMAIL`] through a route that pseudonymizes it in requests (and
/// restores answers): the client's 200 answer.
async fn asked_with_a_pseudonym(travel: Travel, upstream: &Upstream) -> RawResponse {
    let route = r#"mask = { directions = "request", types = { EMAIL_ADDRESS = "pseudonymize" } }"#;
    let proxy = start(travel, upstream, route, "").await;
    let mut client = RawClient::connect(&proxy).await;
    let body = chat(&format!("Reply to {EMAIL} please"));
    let response = client
        .request(
            "POST",
            &post("/v1/chat/completions", "application/json", &body),
        )
        .await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    response
}

/// The endpoint answers with the pseudonym it got, split across two events and, within
/// the second write, across two chunks: the client reads the original back.
async fn pseudonyms_are_restored_in_a_streamed_answer(travel: Travel) {
    let upstream = Upstream::start(|_| {
        let events = sse_chunks(&["Writing to <EMAIL_", "ADDRESS_1> now", "."]);
        let mut steps = vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
        )];
        for event in &events {
            // Each event in two chunks, cut in its middle.
            let (a, b) = event.split_at(event.len() / 2);
            steps.push(Step::Write(chunk(a)));
            steps.push(Step::Yield);
            steps.push(Step::Write(chunk(b)));
            steps.push(Step::Yield);
        }
        steps.push(Step::Write(LAST_CHUNK.to_vec()));
        steps
    })
    .await;
    let response = asked_with_a_pseudonym(travel, &upstream).await;
    let seen = upstream.only_request();
    assert_eq!(
        seen_json(&seen)["messages"][1]["content"],
        "Reply to <EMAIL_ADDRESS_1> please",
        "{travel:?}"
    );
    assert_eq!(
        sse_text(&response.body),
        format!("Writing to {EMAIL} now."),
        "{travel:?}: {}",
        response.text()
    );
    assert!(response.text().ends_with("data: [DONE]\n\n"), "{travel:?}");
}

#[tokio::test]
async fn pseudonyms_are_restored_in_a_streamed_answer_on_every_engine() {
    for travel in Travel::ALL {
        pseudonyms_are_restored_in_a_streamed_answer(travel).await;
    }
}

/// A pseudonym in a streamed answer's `id:`, `event:` and comment lines reaches the
/// client as the endpoint sent it; only the data is restored. A browser sends the last
/// `id:` back as `Last-Event-ID`, a request header that is not masked.
async fn only_a_streams_data_is_restored(travel: Travel) {
    let upstream = Upstream::start(|_| {
        let mut steps = vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
        )];
        let mut events = sse_chunks(&["Writing to <EMAIL_ADDRESS_1> now."]);
        events[0] = format!(
            ": for <EMAIL_ADDRESS_1>\nid: <EMAIL_ADDRESS_1>\nevent: <EMAIL_ADDRESS_1>\n{}",
            events[0]
        );
        for event in &events {
            steps.push(Step::Write(chunk(event)));
            steps.push(Step::Yield);
        }
        steps.push(Step::Write(LAST_CHUNK.to_vec()));
        steps
    })
    .await;
    let response = asked_with_a_pseudonym(travel, &upstream).await;
    assert_eq!(
        seen_json(&upstream.only_request())["messages"][1]["content"],
        "Reply to <EMAIL_ADDRESS_1> please",
        "{travel:?}"
    );
    let text = response.text();
    assert!(
        text.starts_with(
            ": for <EMAIL_ADDRESS_1>\nid: <EMAIL_ADDRESS_1>\nevent: <EMAIL_ADDRESS_1>\ndata: "
        ),
        "{travel:?}: {text}"
    );
    assert!(
        !text.contains(&format!("id: {EMAIL}")),
        "{travel:?}: {text}"
    );
    assert_eq!(
        sse_text(&response.body),
        format!("Writing to {EMAIL} now."),
        "{travel:?}: {text}"
    );
}

#[tokio::test]
async fn only_a_streams_data_is_restored_on_every_engine() {
    for travel in Travel::ALL {
        only_a_streams_data_is_restored(travel).await;
    }
}

/// A pseudonym the client sends back (an earlier answer's, the model's own value that
/// the answer masked) is not given again to a new value: the new one is numbered past
/// it, and the model's mention of the old one is not restored as the new value.
async fn pseudonyms_in_the_history_are_not_given_again(travel: Travel) {
    let answer = serde_json::json!({
        "id": "r1", "object": "chat.completion",
        "choices": [{ "index": 0, "message": { "role": "assistant",
            "content": "Old: <EMAIL_ADDRESS_1>, new: <EMAIL_ADDRESS_2>." } }],
    })
    .to_string();
    let upstream = Upstream::start(move |_| json_reply(&answer)).await;
    let route = r#"mask = { types = { EMAIL_ADDRESS = "pseudonymize" } }"#;
    let proxy = start(travel, &upstream, route, "").await;
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [
            { "role": "assistant", "content": "Billing writes from <EMAIL_ADDRESS_1>." },
            { "role": "user", "content": "Forward it to ann.lee@example.org" },
        ],
    })
    .to_string();
    let mut client = RawClient::connect(&proxy).await;
    let response = client
        .request(
            "POST",
            &post("/v1/chat/completions", "application/json", &body),
        )
        .await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    let sent = String::from_utf8(upstream.only_request().body).unwrap();
    assert!(
        sent.contains("<EMAIL_ADDRESS_1>.") && sent.contains("to <EMAIL_ADDRESS_2>"),
        "{travel:?}: {sent}"
    );
    let json: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON answer");
    assert_eq!(
        json["choices"][0]["message"]["content"],
        "Old: <EMAIL_ADDRESS_1>, new: ann.lee@example.org.",
        "{travel:?}"
    );
}

#[tokio::test]
async fn pseudonyms_in_the_history_are_not_given_again_on_every_engine() {
    for travel in Travel::ALL {
        pseudonyms_in_the_history_are_not_given_again(travel).await;
    }
}

/// `directions = "both"`: a JSON answer is masked too, and its length is what the
/// client reads.
async fn answers_are_masked_both_ways(travel: Travel) {
    let answer = serde_json::json!({
        "id": "r1", "object": "chat.completion",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": format!("Card on file: {CARD}") } }],
        "usage": { "prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9 },
    })
    .to_string();
    let upstream = Upstream::start(move |_| json_reply(&answer)).await;
    let proxy = start(travel, &upstream, "mask = { directions = \"both\" }", "").await;
    let mut client = RawClient::connect(&proxy).await;
    let response = client
        .request(
            "POST",
            &post("/v1/chat/completions", "application/json", &chat("hi")),
        )
        .await;
    assert_eq!(response.status, 200, "{travel:?}");
    let json: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON answer");
    assert_eq!(
        json["choices"][0]["message"]["content"], "Card on file: [CREDIT_CARD]",
        "{travel:?}"
    );
    assert_eq!(json["usage"]["total_tokens"], 9);
    // The client keeps its connection: the re-framed answer ended where it said.
    let again = client.get("/again").await;
    assert_eq!(again.status, 200, "{travel:?}");
}

#[tokio::test]
async fn answers_are_masked_both_ways_on_every_engine() {
    for travel in Travel::ALL {
        answers_are_masked_both_ways(travel).await;
    }
}

/// POSTs `body` to `path` through a route whose masking blocks a card: refused with
/// 400 and the block's error type, the endpoint never asked. Returns the answer's text.
async fn refused_for_a_card(travel: Travel, path: &str, body: &str) -> String {
    let upstream = Upstream::start(|_| json_reply("{}")).await;
    let route = r#"mask = { types = { CREDIT_CARD = "block" } }"#;
    let proxy = start(travel, &upstream, route, "").await;
    let mut client = RawClient::connect(&proxy).await;
    let response = client
        .request("POST", &post(path, "application/json", body))
        .await;
    assert_eq!(response.status, 400, "{travel:?}: {}", response.text());
    assert_eq!(response.error_type(), "sensitive_data_blocked");
    assert!(
        upstream.seen().is_empty(),
        "{travel:?}: the endpoint was asked"
    );
    response.text()
}

async fn a_blocked_type_is_refused_by_name(travel: Travel) {
    let chat = chat(&format!("charge {CARD}"));
    let text = refused_for_a_card(travel, "/v1/chat/completions", &chat).await;
    assert!(text.contains("CREDIT_CARD"), "{text}");
    assert!(!text.contains("4111"), "{text}");
}

#[tokio::test]
async fn a_blocked_type_is_refused_by_name_on_every_engine() {
    for travel in Travel::ALL {
        a_blocked_type_is_refused_by_name(travel).await;
    }
}

/// A card and a phone written as numbers in tool-call arguments (OpenAI's string, or
/// Anthropic's `tool_use.input` object) reach the endpoint as masked strings, the
/// arguments still JSON; with `block`, the request is refused. A reasoning model's
/// `reasoning_content` in the answer is masked like its content.
async fn numbers_in_arguments_and_reasoning_are_masked(travel: Travel) {
    let answer = serde_json::json!({
        "id": "r1", "object": "chat.completion",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": "ok",
            "reasoning_content": format!("The user wrote {EMAIL}.") } }],
    })
    .to_string();
    let upstream = Upstream::start(move |_| json_reply(&answer)).await;
    let proxy = start(travel, &upstream, "mask = { directions = \"both\" }", "").await;
    let arguments = r#"{"card_number": 4111111111111111, "phone": 4155552671, "amount": 1000}"#;
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{ "role": "assistant", "content": null, "tool_calls": [{ "id": "c1",
            "type": "function", "function": { "name": "charge", "arguments": arguments } }] }],
    })
    .to_string();
    let mut client = RawClient::connect(&proxy).await;
    let response = client
        .request(
            "POST",
            &post("/v1/chat/completions", "application/json", &body),
        )
        .await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    let answer: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON");
    assert_eq!(
        answer["choices"][0]["message"]["reasoning_content"], "The user wrote [EMAIL_ADDRESS].",
        "{travel:?}"
    );
    let seen = seen_json(&upstream.only_request());
    let sent: serde_json::Value = serde_json::from_str(
        seen["messages"][0]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .expect("the arguments stay JSON");
    assert_eq!(
        sent,
        serde_json::json!({"card_number": "[CREDIT_CARD]", "phone": "[PHONE_NUMBER]", "amount": 1000}),
        "{travel:?}"
    );
    let text = refused_for_a_card(travel, "/v1/chat/completions", &body).await;
    assert!(!text.contains("4111"), "{text}");

    let upstream = Upstream::start(|_| json_reply(r#"{"type":"message"}"#)).await;
    let proxy = start(travel, &upstream, "mask = {}", "").await;
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5", "max_tokens": 1024,
        "messages": [{ "role": "assistant", "content": [{ "type": "tool_use", "id": "t1",
            "name": "charge", "input": { "card_number": 4111111111111111u64,
                "phone": 4155552671u64, "amount": 1000 } }] }],
    })
    .to_string();
    let mut client = RawClient::connect(&proxy).await;
    let response = client
        .request("POST", &post("/v1/messages", "application/json", &body))
        .await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    let seen = seen_json(&upstream.only_request());
    assert_eq!(
        seen["messages"][0]["content"][0]["input"],
        serde_json::json!({"card_number": "[CREDIT_CARD]", "phone": "[PHONE_NUMBER]", "amount": 1000}),
        "{travel:?}"
    );
    assert_eq!(seen["max_tokens"], 1024, "{travel:?}");
    let text = refused_for_a_card(travel, "/v1/messages", &body).await;
    assert!(!text.contains("4111"), "{text}");
}

/// A card and an SSN of a tool's input written in another spelling of their value
/// (`4111111111111111.0`, `-815518385`, `4.111111111111111e15`) are read as the plain
/// number is: `block` refuses the request, and redacted they reach the endpoint as
/// strings; in OpenAI's `arguments` string too.
async fn numbers_in_other_spellings_are_masked_and_blocked(travel: Travel) {
    let anthropic = r#"{"model":"claude","max_tokens":10,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"card_number": 4111111111111111.0, "ssn": -815518385, "card2": 4.111111111111111e15, "amount": 12.50}}]}]}"#;
    let arguments = r#"{"card_number": -4111111111111111, "card2": 4111111111111111E0}"#;
    let openai = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{ "role": "assistant", "content": null, "tool_calls": [{ "id": "c1",
            "type": "function", "function": { "name": "charge", "arguments": arguments } }] }],
    })
    .to_string();
    for (path, body) in [
        ("/v1/messages", anthropic.to_string()),
        ("/v1/chat/completions", openai.clone()),
    ] {
        let upstream = Upstream::start(|_| json_reply("{}")).await;
        let route = r#"mask = { types = { CREDIT_CARD = "block", US_SSN = "block" } }"#;
        let proxy = start(travel, &upstream, route, "").await;
        let mut client = RawClient::connect(&proxy).await;
        let response = client
            .request("POST", &post(path, "application/json", &body))
            .await;
        assert_eq!(
            response.status,
            400,
            "{travel:?} {path}: {}",
            response.text()
        );
        assert_eq!(response.error_type(), "sensitive_data_blocked");
        assert!(
            upstream.seen().is_empty(),
            "{travel:?} {path}: the endpoint was asked"
        );
    }

    let upstream = Upstream::start(|_| json_reply(r#"{"type":"message"}"#)).await;
    let proxy = start(travel, &upstream, "mask = {}", "").await;
    let mut client = RawClient::connect(&proxy).await;
    let response = client
        .request("POST", &post("/v1/messages", "application/json", anthropic))
        .await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    let seen = seen_json(&upstream.only_request());
    assert_eq!(
        seen["messages"][0]["content"][0]["input"],
        serde_json::json!({"card_number": "[CREDIT_CARD]", "ssn": "[US_SSN]",
            "card2": "[CREDIT_CARD]", "amount": 12.5}),
        "{travel:?}"
    );

    let upstream = Upstream::start(|_| json_reply(r#"{"object":"chat.completion"}"#)).await;
    let proxy = start(travel, &upstream, "mask = {}", "").await;
    let mut client = RawClient::connect(&proxy).await;
    let response = client
        .request(
            "POST",
            &post("/v1/chat/completions", "application/json", &openai),
        )
        .await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    let seen = seen_json(&upstream.only_request());
    let sent: serde_json::Value = serde_json::from_str(
        seen["messages"][0]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .expect("the arguments stay JSON");
    assert_eq!(
        sent,
        serde_json::json!({"card_number": "[CREDIT_CARD]", "card2": "[CREDIT_CARD]"}),
        "{travel:?}"
    );
}

#[tokio::test]
async fn numbers_in_other_spellings_are_masked_and_blocked_on_every_engine() {
    for travel in Travel::ALL {
        numbers_in_other_spellings_are_masked_and_blocked(travel).await;
    }
}

/// Ollama sends a tool call's arguments as an object and a reasoning model's thoughts
/// as `thinking`: both reach the endpoint masked (a card as a number becomes a string),
/// and `block` refuses a card in them; an Anthropic citation's quoted text is masked.
async fn ollama_arguments_thinking_and_citations_are_masked(travel: Travel) {
    let upstream = Upstream::start(|_| json_reply(r#"{"done":true}"#)).await;
    let proxy = start(travel, &upstream, "mask = {}", "").await;
    let body = serde_json::json!({
        "model": "qwen3", "stream": false,
        "messages": [{ "role": "assistant", "content": "",
            "thinking": format!("The user is {EMAIL}."),
            "tool_calls": [{ "function": { "name": "pay", "arguments": {
                "card": "4111 1111 1111 1111", "number": 4111111111111111u64, "amount": 100 } } }] }],
    })
    .to_string();
    let mut client = RawClient::connect(&proxy).await;
    let response = client
        .request("POST", &post("/api/chat", "application/json", &body))
        .await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    let seen = seen_json(&upstream.only_request());
    let message = &seen["messages"][0];
    assert_eq!(
        message["thinking"], "The user is [EMAIL_ADDRESS].",
        "{travel:?}"
    );
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        serde_json::json!({"card": "[CREDIT_CARD]", "number": "[CREDIT_CARD]", "amount": 100}),
        "{travel:?}"
    );
    let text = refused_for_a_card(travel, "/api/chat", &body).await;
    assert!(!text.contains("4111"), "{text}");

    let upstream = Upstream::start(|_| json_reply(r#"{"type":"message"}"#)).await;
    let proxy = start(travel, &upstream, "mask = {}", "").await;
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5", "max_tokens": 64,
        "messages": [{ "role": "assistant", "content": [{ "type": "text", "text": "As cited.",
            "citations": [{ "type": "char_location", "cited_text": format!("mail {EMAIL}"),
                "document_index": 0, "start_char_index": 0, "end_char_index": 9 }] }] }],
    })
    .to_string();
    let mut client = RawClient::connect(&proxy).await;
    let response = client
        .request("POST", &post("/v1/messages", "application/json", &body))
        .await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    let seen = seen_json(&upstream.only_request());
    assert_eq!(
        seen["messages"][0]["content"][0]["citations"][0]["cited_text"], "mail [EMAIL_ADDRESS]",
        "{travel:?}"
    );
}

#[tokio::test]
async fn ollama_arguments_thinking_and_citations_are_masked_on_every_engine() {
    for travel in Travel::ALL {
        ollama_arguments_thinking_and_citations_are_masked(travel).await;
    }
}

#[tokio::test]
async fn numbers_in_arguments_and_reasoning_are_masked_on_every_engine() {
    for travel in Travel::ALL {
        numbers_in_arguments_and_reasoning_are_masked(travel).await;
    }
}

/// A chat's next request resends its earlier turns: a text read before is answered
/// from the route's cache and masked the same (a pseudonym still numbered in its own
/// request), every value counted again; the lookups are in the metrics. Texts under
/// 64 bytes (the system prompt here) are not looked up; `cache_entries = 0` reads all.
async fn texts_sent_again_are_answered_from_the_cache(travel: Travel) {
    let upstream = Upstream::start(|_| json_reply(r#"{"ok":true}"#)).await;
    let mask = r#"mask = { types = { EMAIL_ADDRESS = "pseudonymize" } }"#;
    let proxy = start(travel, &upstream, mask, "").await;
    let body = chat(&format!(
        "Please write to {EMAIL} about the card {CARD}; keep it short and polite."
    ));
    for _ in 0..2 {
        let mut client = RawClient::connect(&proxy).await;
        let request = post("/v1/chat/completions", "application/json", &body);
        let response = client.request("POST", &request).await;
        assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "{travel:?}");
    assert_eq!(seen[0].body, seen[1].body, "{travel:?}");
    let sent = seen_json(&seen[1]);
    assert_eq!(
        sent["messages"][1]["content"],
        "Please write to <EMAIL_ADDRESS_1> about the card [CREDIT_CARD]; keep it short and polite.",
        "{travel:?}"
    );
    let metrics = proxy.metrics_text().await;
    for line in [
        r#"junction_masking_cache_lookups_total{route="all",result="hit"} 1"#,
        r#"junction_masking_cache_lookups_total{route="all",result="miss"} 1"#,
        r#"junction_masking_findings_total{route="all",type="EMAIL_ADDRESS",action="pseudonymize",direction="request"} 2"#,
        r#"junction_masking_findings_total{route="all",type="CREDIT_CARD",action="redact",direction="request"} 2"#,
    ] {
        assert!(
            metrics.contains(line),
            "{travel:?}: {line} not in {metrics}"
        );
    }

    let upstream = Upstream::start(|_| json_reply(r#"{"ok":true}"#)).await;
    let proxy = start(travel, &upstream, "mask = { cache_entries = 0 }", "").await;
    let mut client = RawClient::connect(&proxy).await;
    let request = post("/v1/chat/completions", "application/json", &body);
    assert_eq!(client.request("POST", &request).await.status, 200);
    let metrics = proxy.metrics_text().await;
    assert!(
        !metrics.contains("junction_masking_cache_lookups_total{"),
        "{travel:?}: {metrics}"
    );
}

#[tokio::test]
async fn texts_sent_again_are_answered_from_the_cache_on_every_engine() {
    for travel in Travel::ALL {
        texts_sent_again_are_answered_from_the_cache(travel).await;
    }
}

/// Each client's texts are its own: the same chat sent under two API keys is read
/// twice, so that no client can tell by timing that another sent a text before; with
/// `cache_scope = "route"` the second is answered from the first. Either way both are
/// masked the same.
async fn texts_of_one_client_are_not_answered_for_another(travel: Travel) {
    let (alice, bob) = (
        junction::security::hash_key("sk-alice"),
        junction::security::hash_key("sk-bob"),
    );
    let body = chat(&format!(
        "Please write to {EMAIL} about the card {CARD}; keep it short and polite."
    ));
    for (scope, hits, misses) in [("client", 0, 2), ("route", 1, 1)] {
        let upstream = Upstream::start(|_| json_reply(r#"{"ok":true}"#)).await;
        let route = format!(
            "auth = {{ keys = [{{ name = \"alice\", sha256 = \"{alice}\" }}, \
             {{ name = \"bob\", sha256 = \"{bob}\" }}] }}\n\
             mask = {{ cache_scope = \"{scope}\" }}"
        );
        let proxy = start(travel, &upstream, &route, "").await;
        for key in ["sk-alice", "sk-bob"] {
            let request = post("/v1/chat/completions", "application/json", &body).replacen(
                "\r\n",
                &format!("\r\nAuthorization: Bearer {key}\r\n"),
                1,
            );
            let response = RawClient::connect(&proxy)
                .await
                .request("POST", &request)
                .await;
            assert_eq!(
                response.status,
                200,
                "{travel:?} {scope}: {}",
                response.text()
            );
        }
        let seen = upstream.seen();
        assert_eq!(seen.len(), 2, "{travel:?} {scope}");
        assert_eq!(seen[0].body, seen[1].body, "{travel:?} {scope}");
        assert_eq!(
            seen_json(&seen[1])["messages"][1]["content"],
            "Please write to [EMAIL_ADDRESS] about the card [CREDIT_CARD]; keep it short and polite.",
            "{travel:?} {scope}"
        );
        let metrics = proxy.metrics_text().await;
        for line in [
            format!(r#"junction_masking_cache_lookups_total{{route="all",result="hit"}} {hits}"#),
            format!(
                r#"junction_masking_cache_lookups_total{{route="all",result="miss"}} {misses}"#
            ),
        ] {
            assert!(
                metrics.contains(&line),
                "{travel:?} {scope}: {line} not in {metrics}"
            );
        }
    }
}

#[tokio::test]
async fn texts_of_one_client_are_not_answered_for_another_on_every_engine() {
    for travel in Travel::ALL {
        texts_of_one_client_are_not_answered_for_another(travel).await;
    }
}

/// An OpenAI request's `user` and `metadata` pass byte for byte unless the route asks
/// for its identifiers to be masked too (`identifiers = true`), on every engine.
async fn identifiers_are_masked_when_the_route_asks(travel: Travel) {
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "user": EMAIL,
        "metadata": { "customer": EMAIL, "tier": "gold" },
        "messages": [{ "role": "user", "content": format!("card {CARD}") }],
    })
    .to_string();
    for (mask, user, customer) in [
        ("mask = {}", EMAIL, EMAIL),
        (
            "mask = { identifiers = true }",
            "[EMAIL_ADDRESS]",
            "[EMAIL_ADDRESS]",
        ),
    ] {
        let upstream = Upstream::start(|_| json_reply(r#"{"ok":true}"#)).await;
        let proxy = start(travel, &upstream, mask, "").await;
        let request = post("/v1/chat/completions", "application/json", &body);
        let response = RawClient::connect(&proxy)
            .await
            .request("POST", &request)
            .await;
        assert_eq!(
            response.status,
            200,
            "{travel:?} {mask}: {}",
            response.text()
        );
        let sent = seen_json(&upstream.only_request());
        assert_eq!(sent["user"], user, "{travel:?} {mask}");
        assert_eq!(sent["metadata"]["customer"], customer, "{travel:?} {mask}");
        assert_eq!(sent["metadata"]["tier"], "gold", "{travel:?} {mask}");
        assert_eq!(
            sent["messages"][0]["content"], "card [CREDIT_CARD]",
            "{travel:?} {mask}"
        );
    }
}

#[tokio::test]
async fn identifiers_are_masked_when_the_route_asks_on_every_engine() {
    for travel in Travel::ALL {
        identifiers_are_masked_when_the_route_asks(travel).await;
    }
}

/// A route's own addresses (`keep = ["@acme.com"]`) reach the model as they are while
/// others are masked, on every engine; a kept value is no finding.
async fn kept_values_pass_and_others_are_masked(travel: Travel) {
    let upstream = Upstream::start(|_| json_reply(r#"{"ok":true}"#)).await;
    let route = r#"mask = { keep = ["@acme.com", "support@partner.example"] }"#;
    let proxy = start(travel, &upstream, route, "").await;
    let body = chat(&format!(
        "Forward it to help@acme.com, Support@Partner.example and {EMAIL}."
    ));
    let request = post("/v1/chat/completions", "application/json", &body);
    let response = RawClient::connect(&proxy)
        .await
        .request("POST", &request)
        .await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    assert_eq!(
        seen_json(&upstream.only_request())["messages"][1]["content"],
        "Forward it to help@acme.com, Support@Partner.example and [EMAIL_ADDRESS].",
        "{travel:?}"
    );
    let metrics = proxy.metrics_text().await;
    let line = r#"junction_masking_findings_total{route="all",type="EMAIL_ADDRESS",action="redact",direction="request"} 1"#;
    assert!(
        metrics.contains(line),
        "{travel:?}: {line} not in {metrics}"
    );
}

#[tokio::test]
async fn kept_values_pass_and_others_are_masked_on_every_engine() {
    for travel in Travel::ALL {
        kept_values_pass_and_others_are_masked(travel).await;
    }
}

/// Fail closed: a JSON body that is not JSON is refused; `on_error = "pass"` lets it
/// through, counted.
async fn unreadable_bodies_fail_closed(travel: Travel) {
    let upstream = Upstream::start(|_| json_reply("{}")).await;
    let proxy = start(travel, &upstream, "mask = {}", "").await;
    let mut client = RawClient::connect(&proxy).await;
    let broken = format!(r#"{{"messages": [{{"content": "{EMAIL}"}}"#);
    let request = post("/v1/chat/completions", "application/json", &broken);
    let response = client.request("POST", &request).await;
    assert_eq!(response.status, 400, "{travel:?}: {}", response.text());
    assert_eq!(response.error_type(), "masking_unreadable_body");
    assert!(!response.text().contains(EMAIL));
    assert!(upstream.seen().is_empty(), "{travel:?}");

    let passing = start(travel, &upstream, "mask = { on_error = \"pass\" }", "").await;
    let mut client = RawClient::connect(&passing).await;
    let response = client.request("POST", &request).await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    assert_eq!(upstream.only_request().body, broken.as_bytes());
    let metrics = passing.metrics_text().await;
    assert!(
        metrics.contains(r#"junction_masking_passed_total{route="all",direction="request"} 1"#),
        "{travel:?}: {metrics}"
    );
    // The e-mail read before the JSON broke went out as it was: not counted as masked.
    assert!(
        !metrics.contains("junction_masking_findings_total{"),
        "{travel:?}: {metrics}"
    );
}

#[tokio::test]
async fn unreadable_bodies_fail_closed_on_every_engine() {
    for travel in Travel::ALL {
        unreadable_bodies_fail_closed(travel).await;
    }
}

/// An answer the endpoint compressed although it was asked not to: refused before its
/// head reaches the client, never passed on unread.
async fn compressed_answers_are_refused(travel: Travel) {
    let upstream = Upstream::start(|_| {
        vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd"
                .to_vec(),
        )]
    })
    .await;
    let proxy = start(travel, &upstream, "mask = { directions = \"both\" }", "").await;
    let mut client = RawClient::connect(&proxy).await;
    let response = client
        .request(
            "POST",
            &post("/v1/chat/completions", "application/json", &chat("hi")),
        )
        .await;
    assert_eq!(response.status, 502, "{travel:?}: {}", response.text());
    assert_eq!(response.error_type(), "masking_compressed_body");
}

#[tokio::test]
async fn compressed_answers_are_refused_on_every_engine() {
    for travel in Travel::ALL {
        compressed_answers_are_refused(travel).await;
    }
}

/// An answer in a type masking cannot read (not text or JSON): refused before its head
/// reaches the client, or passed whole with `on_error = "pass"` and counted.
async fn binary_answers_are_refused_or_passed(travel: Travel) {
    let upstream = Upstream::start(|_| {
        vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\nabcd"
                .to_vec(),
        )]
    })
    .await;
    let ask = post("/v1/chat/completions", "application/json", &chat("hi"));
    let proxy = start(travel, &upstream, "mask = { directions = \"both\" }", "").await;
    let response = RawClient::connect(&proxy).await.request("POST", &ask).await;
    assert_eq!(response.status, 502, "{travel:?}: {}", response.text());
    assert_eq!(response.error_type(), "masking_unreadable_body");

    let route = "mask = { directions = \"both\", on_error = \"pass\" }";
    let proxy = start(travel, &upstream, route, "").await;
    let response = RawClient::connect(&proxy).await.request("POST", &ask).await;
    assert_eq!(response.status, 200, "{travel:?}");
    assert_eq!(response.text(), "abcd", "{travel:?}");
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains(r#"junction_masking_passed_total{route="all",direction="response"} 1"#),
        "{travel:?}: {metrics}"
    );
}

#[tokio::test]
async fn binary_answers_are_refused_or_passed_on_every_engine() {
    for travel in Travel::ALL {
        binary_answers_are_refused_or_passed(travel).await;
    }
}

/// A `block` found in the answer refuses it (502) and goes to the audit log as one
/// found in a request does: the route, the type, never the value; the client's error
/// names the answer, not the request.
async fn a_block_in_an_answer_is_audited(travel: Travel) {
    let answer = serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant",
        "content": format!("charge {CARD}")}}]})
    .to_string();
    let upstream = Upstream::start(move |_| json_reply(&answer)).await;
    let dir = tempfile::TempDir::new().unwrap();
    let audit = dir.path().join("audit.log");
    let top = format!("[audit]\npath = {:?}\n", audit.display().to_string());
    let route = r#"mask = { directions = "response", types = { CREDIT_CARD = "block" } }"#;
    let proxy = start(travel, &upstream, route, &top).await;
    let mut client = RawClient::connect(&proxy).await;
    let response = client
        .request(
            "POST",
            &post("/v1/chat/completions", "application/json", &chat("hi")),
        )
        .await;
    assert_eq!(response.status, 502, "{travel:?}: {}", response.text());
    let text = response.text();
    assert!(
        text.contains("the response holds a value of type CREDIT_CARD"),
        "{travel:?}: {text}"
    );
    assert!(!text.contains("4111"), "{travel:?}: {text}");
    let logged = wait_for_lines(&audit, 1, "mask_block").await;
    assert!(logged.contains("CREDIT_CARD"), "{travel:?}: {logged}");
    assert!(logged.contains(r#""route":"all""#), "{travel:?}: {logged}");
    assert!(!logged.contains("4111"), "{travel:?}: {logged}");
}

#[tokio::test]
async fn a_block_in_an_answer_is_audited_on_every_engine() {
    for travel in Travel::ALL {
        a_block_in_an_answer_is_audited(travel).await;
    }
}

/// The client's own key, sent as a pseudonym and restored in the answer, is not a
/// secret the answer gave away: the detector reads the answer as the flow keeps it
/// (pseudonyms), so it neither counts nor blocks the client.
async fn restored_values_are_no_secrets_the_answer_gave_away(travel: Travel) {
    let upstream = Upstream::start(|seen| {
        let request: serde_json::Value = serde_json::from_slice(&seen.body).unwrap_or_default();
        let said = request["messages"]
            .as_array()
            .and_then(|messages| messages.last())
            .and_then(|message| message["content"].as_str())
            .unwrap_or("")
            .to_string();
        let answer = serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant",
            "content": format!("You said: {said}")}}]});
        json_reply(&answer.to_string())
    })
    .await;
    let route = "mask = { types = { AWS_ACCESS_KEY = \"pseudonymize\" } }\n\
                 anomalies = { response_secrets = { types = [\"AWS_ACCESS_KEY\"], action = \"block\" } }";
    let proxy = start(travel, &upstream, route, "").await;
    for _ in 0..2 {
        let mut client = RawClient::connect(&proxy).await;
        let response = client
            .request(
                "POST",
                &post(
                    "/v1/chat/completions",
                    "application/json",
                    &chat("my key AKIAIOSFODNN7EXAMPLE"),
                ),
            )
            .await;
        assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
        assert!(
            response.text().contains("AKIAIOSFODNN7EXAMPLE"),
            "{travel:?}: restored"
        );
    }
    let metrics = proxy.metrics_text().await;
    assert!(
        !metrics.contains("junction_anomalies_total{"),
        "{travel:?}: {metrics}"
    );
}

#[tokio::test]
async fn restored_values_are_no_secrets_the_answer_gave_away_on_every_engine() {
    for travel in Travel::ALL {
        restored_values_are_no_secrets_the_answer_gave_away(travel).await;
    }
}

/// Polls `path` until it holds `count` lines and `needle` (the log writers are threads
/// of their own, with no signal to wait on), for at most 5 s.
async fn wait_for_lines(path: &std::path::Path, count: usize, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let there = text.lines().count() >= count && text.contains(needle);
        if there || tokio::time::Instant::now() > deadline {
            assert!(
                there,
                "{} lines and {needle:?} in {}:\n{text}",
                count,
                path.display()
            );
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// No value, in any form a log could hold, reaches the access log, the audit log, the
/// metrics or an error body; the findings are counted by type and direction. The
/// access log's path shows a query's values masked too.
#[tokio::test]
async fn no_value_reaches_a_log_a_metric_or_an_error() {
    const KEY: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ4";
    let values = [
        EMAIL,
        CARD,
        "4111111111111111",
        "+1 415 555 0132",
        "AKIAIOSFODNN7EXAMPLE",
        "ops@answers.example",
        "jane.doe%40example.org",
        KEY,
    ];
    // The answer carries a value of its own: masked on the way back, counted as such.
    let answer = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"write to ops@answers.example"}}]}"#;
    let upstream = Upstream::start(move |_| json_reply(answer)).await;
    for travel in Travel::ALL {
        let dir = tempfile::TempDir::new().unwrap();
        let access = dir.path().join("access.log");
        let audit = dir.path().join("audit.log");
        let top = format!(
            "[access_log]\npath = {:?}\n[audit]\npath = {:?}\n",
            access.display().to_string(),
            audit.display().to_string()
        );
        let route = r#"mask = { directions = "both", types = { AWS_ACCESS_KEY = "block", EMAIL_ADDRESS = "partial" } }"#;
        let proxy = start(travel, &upstream, route, &top).await;
        let mut client = RawClient::connect(&proxy).await;
        let mut errors = String::new();
        let content = format!("{EMAIL} {CARD} call +1 415 555 0132");
        let chat_post =
            |content: &str| post("/v1/chat/completions", "application/json", &chat(content));
        let query = format!("/v1/chat/completions?user=jane.doe%40example.org&key={KEY}");
        let response = client
            .request("POST", &post(&query, "application/json", &chat(&content)))
            .await;
        assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
        let blocked = client
            .request("POST", &chat_post("key AKIAIOSFODNN7EXAMPLE"))
            .await;
        assert_eq!(blocked.status, 400, "{travel:?}");
        errors.push_str(&blocked.text());
        let broken = format!("{{{EMAIL}");
        let broken = client
            .request(
                "POST",
                &post("/v1/chat/completions", "application/json", &broken),
            )
            .await;
        assert_eq!(broken.status, 400, "{travel:?}");
        errors.push_str(&broken.text());
        let metrics = proxy.metrics_text().await;
        for value in values {
            assert!(
                !metrics.contains(value),
                "{travel:?}: {value} in the metrics"
            );
        }
        assert!(
            metrics.contains(r#"junction_masking_findings_total{route="all",type="CREDIT_CARD",action="redact",direction="request"} 1"#),
            "{travel:?}: {metrics}"
        );
        assert!(
            metrics.contains(r#"junction_masking_findings_total{route="all",type="AWS_ACCESS_KEY",action="block",direction="request"} 1"#),
            "{travel:?}: one block, counted once: {metrics}"
        );
        assert!(
            metrics.contains(r#"junction_masking_findings_total{route="all",type="EMAIL_ADDRESS",action="partial",direction="response"} 1"#),
            "{travel:?}: {metrics}"
        );
        let access_log = wait_for_lines(&access, 3, "CREDIT_CARD:redact=1").await;
        assert!(
            access_log.contains("response.EMAIL_ADDRESS:partial=1"),
            "{travel:?}: {access_log}"
        );
        assert!(
            access_log
                .contains(r#""path":"/v1/chat/completions?user=[EMAIL_ADDRESS]&key=[API_KEY]""#),
            "{travel:?}: {access_log}"
        );
        let audit_log = wait_for_lines(&audit, 1, "mask_block").await;
        for value in values {
            for (name, text) in [
                ("access log", &access_log),
                ("audit log", &audit_log),
                ("errors", &errors),
            ] {
                assert!(
                    !text.contains(value),
                    "{travel:?}: {value} in the {name}: {text}"
                );
            }
        }
    }
}

/// The `openai` Python SDK through a masking route, plain and streamed: the endpoint
/// gets pseudonyms, the program gets its own values back. scripts/test installs the
/// SDK; the test fails when it is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_gets_its_values_back_through_a_masking_route() {
    // A model that repeats the user's last message.
    let upstream = Upstream::start(|seen| {
        let request: serde_json::Value = serde_json::from_slice(&seen.body).unwrap_or_default();
        let said = request["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let reply = format!("You said: {said}");
        if request["stream"] == true {
            let (a, b) = reply.split_at(reply.len() / 2);
            let body: String = sse_chunks(&[a, b]).concat();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            return vec![Step::Write((head + &body).into_bytes())];
        }
        let answer = serde_json::json!({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{ "index": 0, "finish_reason": "stop",
                          "message": { "role": "assistant", "content": reply } }],
            "usage": { "prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10 },
        });
        json_reply(&answer.to_string())
    })
    .await;
    let route =
        r#"mask = { types = { EMAIL_ADDRESS = "pseudonymize", CREDIT_CARD = "pseudonymize" } }"#;
    for travel in Travel::ALL {
        let proxy = start(travel, &upstream, route, "").await;
        let script = format!(
            r#"
import openai
client = openai.OpenAI(base_url="{base}", api_key="sk-test", max_retries=0)
said = "mail {EMAIL}, card {CARD}"
plain = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": said}}])
print(plain.choices[0].message.content)
stream = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": said}}], stream=True)
print("".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices))
"#,
            base = proxy.url("/v1"),
        );
        let output = within(
            "python3",
            tokio::process::Command::new("python3")
                .arg("-c")
                .arg(&script)
                .output(),
        )
        .await
        .expect("python3 runs (scripts/test installs it and `openai`)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{travel:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let expected = format!("You said: mail {EMAIL}, card {CARD}");
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            [expected.as_str(), expected.as_str()],
            "{travel:?}"
        );
        for seen in upstream.take_seen() {
            let body = String::from_utf8_lossy(&seen.body);
            assert!(
                !body.contains(EMAIL) && !body.contains("4111"),
                "{travel:?}: {body}"
            );
            assert!(body.contains("<EMAIL_ADDRESS_1>"), "{travel:?}: {body}");
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, data).unwrap();
    encoder.finish().unwrap()
}

/// `compressed = "decode"`: a gzip request body is decoded, masked and sent plain; a gzip
/// answer is decoded, masked and sent plain. Without it, a gzip request body is refused
/// with 415.
async fn compressed_bodies_are_decoded_or_refused(travel: Travel) {
    let answer = serde_json::json!({
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": format!("Card {CARD}") } }],
    })
    .to_string();
    let compressed_answer = gzip(answer.as_bytes());
    let upstream = Upstream::start(move |_| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            compressed_answer.len()
        );
        let mut reply = head.into_bytes();
        reply.extend_from_slice(&compressed_answer);
        vec![Step::Write(reply)]
    })
    .await;
    let body = gzip(chat(&format!("mail {EMAIL}")).as_bytes());
    let mut request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);

    let route = r#"mask = { directions = "both", compressed = "decode" }"#;
    let proxy = start(travel, &upstream, route, "").await;
    let mut client = RawClient::connect(&proxy).await;
    client.send(&request).await;
    let response = client.final_response("POST").await.1;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    assert!(!response.head.has("content-encoding"), "{travel:?}");
    let json: serde_json::Value = serde_json::from_slice(&response.body).expect("plain JSON");
    assert_eq!(
        json["choices"][0]["message"]["content"],
        "Card [CREDIT_CARD]"
    );
    let seen = upstream.only_request();
    assert!(!seen.head.has("content-encoding"), "{travel:?}");
    assert_eq!(
        seen_json(&seen)["messages"][1]["content"],
        "mail [EMAIL_ADDRESS]",
        "{travel:?}"
    );
    upstream.take_seen();

    let refusing = start(travel, &upstream, "mask = {}", "").await;
    let mut client = RawClient::connect(&refusing).await;
    client.send(&request).await;
    let response = client.final_response("POST").await.1;
    assert_eq!(response.status, 415, "{travel:?}: {}", response.text());
    assert_eq!(response.error_type(), "masking_compressed_body");
    assert!(upstream.seen().is_empty(), "{travel:?}");
}

#[tokio::test]
async fn compressed_bodies_are_decoded_or_refused_on_every_engine() {
    for travel in Travel::ALL {
        compressed_bodies_are_decoded_or_refused(travel).await;
    }
}

/// `curl` with `args` against the proxy's `path`: its status and body.
async fn curl_form(proxy: &RunningProxy, path: &str, args: &[&str]) -> (u16, String) {
    let output = within(
        "curl",
        tokio::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "5"])
            .args(["--write-out", "\n%{http_code}"])
            .args(args)
            .arg(proxy.url(path))
            .output(),
    )
    .await
    .expect("curl runs (scripts/test installs it)");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_string())
}

/// The parts of a multipart body as a server splits them on the boundary of its
/// `Content-Type`: each part's headers and content.
fn form_parts(seen: &Seen) -> Vec<(String, String)> {
    let content_type = seen.head.get("content-type").expect("a content type");
    let boundary = content_type
        .split_once("boundary=")
        .expect("a boundary")
        .1
        .trim_matches('"');
    let body = String::from_utf8(seen.body.clone()).expect("UTF-8 parts");
    let body = body
        .strip_prefix(&format!("--{boundary}\r\n"))
        .expect("the first delimiter");
    let (parts, rest) = body
        .split_once(&format!("\r\n--{boundary}--"))
        .expect("the close delimiter");
    assert!(matches!(rest, "" | "\r\n"), "an epilogue: {rest:?}");
    parts
        .split(&format!("\r\n--{boundary}\r\n"))
        .map(|part| {
            let (headers, content) = part.split_once("\r\n\r\n").expect("headers end");
            (headers.to_string(), content.to_string())
        })
        .collect()
}

/// Forms a client sends (`curl -F`, `curl --data-urlencode`): each multipart part is
/// masked by its own type (a `.jsonl` batch file as JSON lines, form fields as text, a
/// field named as a password whole), a file's name in its part's headers too, the
/// framing and every other byte kept; a part that
/// cannot be read (audio) fails the body closed; URL-encoded fields are decoded,
/// masked and encoded again.
async fn forms_are_masked_part_by_part(travel: Travel) {
    let upstream = Upstream::start(|_| json_reply(r#"{"ok":true}"#)).await;
    let proxy = start(travel, &upstream, "mask = {}", "").await;
    let files = tempfile::tempdir().unwrap();
    let batch = files.path().join("batch.jsonl");
    let line = |content: &str| {
        serde_json::json!({
            "custom_id": "r1", "method": "POST", "url": "/v1/chat/completions",
            "body": { "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": content }] },
        })
        .to_string()
    };
    std::fs::write(
        &batch,
        format!("{}\n{}\n", line(&format!("Mail {EMAIL}")), line("Hello")),
    )
    .unwrap();
    let file = format!("file=@{}", batch.display());
    let (status, body) = curl_form(
        &proxy,
        "/v1/files",
        &[
            "-F",
            "purpose=batch",
            "-F",
            &file,
            "-F",
            &format!("note=card {CARD}"),
            "-F",
            "db_password=correct horse",
        ],
    )
    .await;
    assert_eq!(status, 200, "{travel:?}: {body}");
    let seen = upstream.only_request();
    assert_eq!(
        seen.head.content_length(),
        Some(seen.body.len()),
        "{travel:?}"
    );
    let parts = form_parts(&seen);
    let contents: Vec<&str> = parts.iter().map(|(_, content)| content.as_str()).collect();
    assert_eq!(
        contents,
        [
            "batch".to_string(),
            format!("{}\n{}\n", line("Mail [EMAIL_ADDRESS]"), line("Hello")),
            "card [CREDIT_CARD]".to_string(),
            "[PASSWORD]".to_string(),
        ],
        "{travel:?}"
    );
    assert!(
        parts[1].0.contains(r#"filename="batch.jsonl""#),
        "{travel:?}"
    );

    // A file's name is masked in its part's headers, the quotes kept.
    let notes = files.path().join("notes.txt");
    std::fs::write(&notes, "hello").unwrap();
    let named = format!("file=@{};filename={EMAIL} notes.txt", notes.display());
    let (status, body) = curl_form(
        &proxy,
        "/v1/files",
        &["-F", "purpose=assistants", "-F", &named],
    )
    .await;
    assert_eq!(status, 200, "{travel:?}: {body}");
    let seen = upstream.seen().pop().unwrap();
    let parts = form_parts(&seen);
    assert!(
        parts[1]
            .0
            .contains(r#"filename="[EMAIL_ADDRESS] notes.txt""#),
        "{travel:?}: {}",
        parts[1].0
    );
    assert_eq!(parts[1].1, "hello", "{travel:?}");

    // Audio cannot be masked: refused, nothing sent on.
    let audio = files.path().join("speech.mp3");
    std::fs::write(&audio, b"ID3\x04\x00\x00\x00\x00\x00\x00").unwrap();
    let audio = format!("file=@{};type=audio/mpeg", audio.display());
    let (status, body) = curl_form(
        &proxy,
        "/v1/audio/transcriptions",
        &["-F", "model=whisper-1", "-F", &audio],
    )
    .await;
    assert_eq!(status, 400, "{travel:?}: {body}");
    assert!(
        body.contains("masking_unreadable_body"),
        "{travel:?}: {body}"
    );
    assert_eq!(upstream.seen().len(), 2, "{travel:?}");

    // A URL-encoded form: values decoded, masked, encoded again; names kept.
    let (status, body) = curl_form(
        &proxy,
        "/login",
        &[
            "--data-urlencode",
            &format!("user={EMAIL}"),
            "--data-urlencode",
            "password=correct horse",
            "--data-urlencode",
            "next=/home",
        ],
    )
    .await;
    assert_eq!(status, 200, "{travel:?}: {body}");
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        "user=%5BEMAIL_ADDRESS%5D&password=%5BPASSWORD%5D&next=%2Fhome",
        "{travel:?}"
    );
    assert_eq!(
        seen.head.content_length(),
        Some(seen.body.len()),
        "{travel:?}"
    );
}

#[tokio::test]
async fn forms_are_masked_part_by_part_on_every_engine() {
    for travel in Travel::ALL {
        forms_are_masked_part_by_part(travel).await;
    }
}

/// An upgrade to a protocol masking cannot read (anything but a WebSocket, whose
/// messages `tests/masking_websocket.rs` covers) is refused on a masking route before
/// the endpoint is asked, or with `on_error = "pass"` let through and counted as passed
/// unmasked. Never spliced through in silence.
async fn upgrades_fail_closed(travel: Travel) {
    let upstream = Upstream::start(|_| json_reply(r#"{"ok":true}"#)).await;
    let upgrade = format!(
        "GET /v1/stream HTTP/1.1\r\nHost: {HOST}\r\nConnection: upgrade\r\nUpgrade: example/1\r\n\r\n"
    );
    let proxy = start(travel, &upstream, "mask = {}", "").await;
    let response = RawClient::connect(&proxy)
        .await
        .request("GET", &upgrade)
        .await;
    assert_eq!(response.status, 400, "{travel:?}: {}", response.text());
    assert_eq!(
        response.error_type(),
        "masking_unreadable_body",
        "{travel:?}"
    );
    assert!(upstream.seen().is_empty(), "{travel:?}");

    let passing = start(travel, &upstream, "mask = { on_error = \"pass\" }", "").await;
    let response = RawClient::connect(&passing)
        .await
        .request("GET", &upgrade)
        .await;
    assert_eq!(response.status, 200, "{travel:?}: {}", response.text());
    assert_eq!(upstream.seen().len(), 1, "{travel:?}");
    let metrics = passing.metrics_text().await;
    assert!(
        metrics.contains(r#"junction_masking_passed_total{route="all",direction="request"} 1"#),
        "{travel:?}: {metrics}"
    );
}

#[tokio::test]
async fn upgrades_fail_closed_on_every_engine() {
    for travel in Travel::ALL {
        upgrades_fail_closed(travel).await;
    }
}

/// The `openai` SDK uploads a Batch API file (`client.files.create`, a multipart form
/// with the `.jsonl` labelled as httpx labels it) through a masking route: the
/// endpoint gets every prompt of the file masked, and the SDK reads the answer.
#[tokio::test]
async fn the_openai_sdk_uploads_a_batch_file_masked() {
    let upstream = Upstream::start(|seen| {
        let answer = serde_json::json!({
            "id": "file-1", "object": "file", "bytes": seen.body.len(), "created_at": 1,
            "filename": "batch.jsonl", "purpose": "batch",
        });
        json_reply(&answer.to_string())
    })
    .await;
    let line = |content: &str| {
        serde_json::json!({
            "custom_id": "r1", "method": "POST", "url": "/v1/chat/completions",
            "body": { "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": content }] },
        })
        .to_string()
    };
    let file = format!(
        "{}\n{}\n",
        line(&format!("Mail {EMAIL}")),
        line(&format!("Card {CARD}"))
    );
    for travel in Travel::ALL {
        let proxy = start(travel, &upstream, "mask = {}", "").await;
        let script = format!(
            r#"
import openai, sys
client = openai.OpenAI(base_url="{base}", api_key="sk-test", max_retries=0)
uploaded = client.files.create(file=("batch.jsonl", sys.stdin.buffer.read()), purpose="batch")
print(uploaded.id, uploaded.purpose)
"#,
            base = proxy.url("/v1"),
        );
        let mut child = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs (scripts/test installs it and `openai`)");
        {
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(file.as_bytes()).await.unwrap();
        }
        let output = within("python3", child.wait_with_output()).await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{travel:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(stdout.trim(), "file-1 batch", "{travel:?}");
        let seen = upstream
            .take_seen()
            .pop()
            .expect("the upload reached the endpoint");
        let parts = form_parts(&seen);
        let uploaded = parts
            .iter()
            .find(|(headers, _)| headers.contains(r#"filename="batch.jsonl""#))
            .unwrap_or_else(|| panic!("{travel:?}: no file part in {parts:?}"));
        assert_eq!(
            uploaded.1,
            format!(
                "{}\n{}\n",
                line("Mail [EMAIL_ADDRESS]"),
                line("Card [CREDIT_CARD]")
            ),
            "{travel:?}: {}",
            uploaded.0
        );
        assert!(
            parts.iter().any(|(_, content)| content == "batch"),
            "{travel:?}"
        );
    }
}
