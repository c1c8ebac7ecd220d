//! The body maskers of issue #13 through their public API, with a small regex masker of
//! the test's own (`SECRET-<digits>`, `<letters>@example.org`): masking never makes
//! invalid JSON nor changes a byte outside the strings it changes (property tests over
//! generated JSON, escapes and spacing included), values split across SSE chunks, events
//! and content parts are found, pseudonyms are restored in streams at every split
//! point, and bad input is refused without a panic.

use std::sync::Arc;

use junction::masking::{
    Action, Api, Blocked, BodyError, BodyShape, Findings, Kind, ResponseMasker, Span, TextMasker,
    Vault, mask_request_body, mask_text,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use regex::Regex;
use serde_json::Value;

struct TestMasker {
    pattern: Regex,
    action: Action,
}

impl TestMasker {
    fn new(action: Action) -> Self {
        TestMasker {
            pattern: Regex::new(r"SECRET-[0-9]+|[a-z]{1,8}@example\.org").unwrap(),
            action,
        }
    }
}

impl TextMasker for TestMasker {
    fn find(&self, text: &str, spans: &mut Vec<Span>) {
        for found in self.pattern.find_iter(text) {
            let kind = if found.as_str().starts_with("SECRET") {
                "SECRET"
            } else {
                "EMAIL_ADDRESS"
            };
            spans.push(Span {
                start: found.start(),
                end: found.end(),
                kind: Kind(kind.into()),
                by_context: false,
            });
        }
    }

    fn replace(
        &self,
        span: &Span,
        value: &str,
        vault: &mut Vault,
        out: &mut String,
        findings: &mut Findings,
    ) -> Result<(), Blocked> {
        findings.add(&span.kind, self.action);
        match self.action {
            Action::Block => Err(Blocked {
                kind: span.kind.clone(),
            }),
            Action::Pseudonymize => {
                out.push_str(vault.pseudonym(&span.kind, value));
                Ok(())
            }
            _ => {
                out.push_str(&format!("[{}]", span.kind.name()));
                Ok(())
            }
        }
    }

    fn look_behind(&self) -> usize {
        32
    }
}

fn redact(text: &str) -> String {
    let mut out = String::new();
    mask_text(
        &TestMasker::new(Action::Redact),
        text,
        &mut Vault::default(),
        &mut out,
        &mut Findings::default(),
    )
    .unwrap();
    out
}

// ---- Generated JSON, written with varied spacing, escapes and number spellings ----

#[derive(Clone, Debug)]
enum Node {
    Null,
    Bool(bool),
    Number(&'static str),
    Text(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z ]{0,10}",
        "SECRET-[0-9]{1,5}",
        "[a-z]{1,5}@example\\.org",
        proptest::sample::select(
            &[
                "\"", "\\", "\u{1}", "\n", "\t", "é", "€", "😀", "/", "<", "\u{2028}"
            ][..]
        )
        .prop_map(str::to_string),
    ];
    proptest::collection::vec(piece, 0..5).prop_map(|pieces| pieces.concat())
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        Just(Node::Null),
        any::<bool>().prop_map(Node::Bool),
        proptest::sample::select(
            &["0", "-0", "12", "1.50e+2", "-3.25", "1E9", "0.000", "7e-3"][..]
        )
        .prop_map(Node::Number),
        text().prop_map(Node::Text),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        // No "text" key: the parts of a content array are masked together (tested apart).
        let key = proptest::sample::select(&["a", "b", "content", "x y", "é", "k\"q", "n/~"][..])
            .prop_map(str::to_string);
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Node::List),
            proptest::collection::vec((key, inner), 0..5).prop_map(Node::Map),
        ]
    })
}

/// Choices (spacing, escapes) drawn from a seed, the same for the input and the
/// expected output.
struct Writer {
    seed: u64,
}

impl Writer {
    fn next(&mut self, n: u64) -> u64 {
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.seed >> 33) % n
    }

    fn space(&mut self, out: &mut String) {
        out.push_str(["", "", " ", "\n  ", "\t", " \r\n"][self.next(6) as usize]);
    }

    /// The string as the input spells it: some characters as `\u` escapes (surrogate
    /// pairs beyond the BMP), some escapes short, some long.
    fn string(&mut self, text: &str, out: &mut String) {
        out.push('"');
        for c in text.chars() {
            let escape = self.next(10) < 2;
            match c {
                '"' => out.push_str(if escape { "\\u0022" } else { "\\\"" }),
                '\\' => out.push_str("\\\\"),
                '\n' if !escape => out.push_str("\\n"),
                '\t' if !escape => out.push_str("\\t"),
                '/' if escape => out.push_str("\\/"),
                c if (c as u32) < 0x20 || escape => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{:04X}", unit));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    /// Writes `node`; a string that `change` changes is written as serde_json writes
    /// the changed text (the seed still advances as for the original).
    fn node(&mut self, node: &Node, change: &dyn Fn(&str) -> Option<String>, out: &mut String) {
        self.space(out);
        match node {
            Node::Null => out.push_str("null"),
            Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Node::Number(n) => out.push_str(n),
            Node::Text(text) => {
                let mut original = String::new();
                self.string(text, &mut original);
                match change(text) {
                    Some(new) => out.push_str(&serde_json::to_string(&new).unwrap()),
                    None => out.push_str(&original),
                }
            }
            Node::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.node(item, change, out);
                }
                self.space(out);
                out.push(']');
            }
            Node::Map(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.space(out);
                    self.string(key, out);
                    self.space(out);
                    out.push(':');
                    self.node(value, change, out);
                }
                self.space(out);
                out.push('}');
            }
        }
        self.space(out);
    }
}

fn written(node: &Node, seed: u64, change: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    Writer { seed }.node(node, change, &mut out);
    out
}

#[test]
fn other_json_keeps_every_byte_outside_the_strings_it_changes() {
    let masker = TestMasker::new(Action::Redact);
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(node(), any::<u64>()), |(node, seed)| {
            let input = written(&node, seed, &|_| None);
            let expected = written(&node, seed, &|text| {
                let masked = redact(text);
                (masked != text).then_some(masked)
            });
            let mut findings = Findings::default();
            let masked = mask_request_body(
                &masker,
                BodyShape::OtherJson,
                input.as_bytes(),
                &mut Vault::default(),
                &mut findings,
            )
            .expect("valid JSON is masked");
            let masked = std::str::from_utf8(&masked).unwrap();
            prop_assert_eq!(masked, expected.as_str());
            let before: Value = serde_json::from_str(&input).unwrap();
            let after: Value = serde_json::from_str(masked).expect("the output is JSON");
            prop_assert_eq!(structure(&before), structure(&after));
            prop_assert!(!masked.contains("SECRET-"));
            Ok(())
        })
        .unwrap();
}

/// A value with every string blanked: what masking must never change.
fn structure(value: &Value) -> Value {
    match value {
        Value::String(_) => Value::String(String::new()),
        Value::Array(items) => Value::Array(items.iter().map(structure).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), structure(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn map_strings(value: &Value, change: &dyn Fn(&str) -> String) -> Value {
    match value {
        Value::String(text) => Value::String(change(text)),
        Value::Array(items) => Value::Array(items.iter().map(|v| map_strings(v, change)).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), map_strings(v, change)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[derive(Clone, Debug)]
enum Content {
    Text(String),
    Parts(Vec<Option<String>>),
}

fn chat_request() -> impl Strategy<Value = (Vec<(Content, Option<Node>)>, Node, String)> {
    let content = prop_oneof![
        text().prop_map(Content::Text),
        proptest::collection::vec(proptest::option::weighted(0.8, text()), 1..4)
            .prop_map(Content::Parts),
    ];
    (
        proptest::collection::vec((content, proptest::option::weighted(0.3, node())), 1..4),
        node(),
        text(),
    )
}

fn chat_json(messages: &[(Content, Option<Node>)], extra: &Node, user: &str) -> Value {
    let messages: Vec<Value> = messages
        .iter()
        .map(|(content, arguments)| {
            let content = match content {
                Content::Text(text) => Value::from(text.as_str()),
                Content::Parts(parts) => Value::Array(
                    parts
                        .iter()
                        .map(|part| match part {
                            Some(text) => serde_json::json!({"type": "text", "text": text}),
                            None => serde_json::json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,SECRET-1"}}),
                        })
                        .collect(),
                ),
            };
            let mut message = serde_json::json!({"role": "user", "name": "bob@example.org", "content": content});
            if let Some(arguments) = arguments {
                message["tool_calls"] = serde_json::json!([{"id": "SECRET-7", "type": "function",
                    "function": {"name": "f", "arguments": written(arguments, 7, &|_| None)}}]);
            }
            message
        })
        .collect();
    serde_json::json!({"model": "SECRET-0", "messages": messages, "user": user, "metadata": written(extra, 3, &|_| None)})
}

#[test]
fn an_api_request_has_only_its_contents_changed_and_stays_valid() {
    let masker = TestMasker::new(Action::Redact);
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(chat_request(), any::<bool>()),
            |((messages, extra, user), pretty)| {
                let request = chat_json(&messages, &extra, &user);
                let input = if pretty {
                    serde_json::to_string_pretty(&request).unwrap()
                } else {
                    serde_json::to_string(&request).unwrap()
                };
                let masked = mask_request_body(
                    &masker,
                    BodyShape::ApiJson(Api::OpenAiChat),
                    input.as_bytes(),
                    &mut Vault::default(),
                    &mut Findings::default(),
                )
                .expect("valid JSON is masked");
                let mut output: Value =
                    serde_json::from_slice(&masked).expect("the output is JSON");
                for (i, (content, arguments)) in messages.iter().enumerate() {
                    let message = &mut output["messages"][i];
                    match content {
                        Content::Text(text) => {
                            prop_assert_eq!(&message["content"], &Value::from(redact(text)))
                        }
                        Content::Parts(parts) => {
                            // The parts are masked as one text.
                            let joined: String =
                                parts.iter().flatten().map(String::as_str).collect();
                            let masked_joined: String = message["content"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .filter_map(|part| part["text"].as_str())
                                .collect();
                            prop_assert_eq!(masked_joined, redact(&joined));
                        }
                    }
                    message["content"] = request["messages"][i]["content"].clone();
                    if let Some(arguments) = arguments {
                        let pointer = "/tool_calls/0/function/arguments";
                        let masked_arguments: Value = serde_json::from_str(
                            message.pointer(pointer).unwrap().as_str().unwrap(),
                        )
                        .expect("the arguments stay JSON");
                        let original: Value =
                            serde_json::from_str(&written(arguments, 7, &|_| None)).unwrap();
                        prop_assert_eq!(masked_arguments, map_strings(&original, &redact));
                        *message.pointer_mut(pointer).unwrap() =
                            request["messages"][i]["tool_calls"][0]["function"]["arguments"]
                                .clone();
                    }
                }
                // With the contents put back, nothing else differs.
                prop_assert_eq!(output, request);
                Ok(())
            },
        )
        .unwrap();
}

/// A card, an SSN or a phone written as a number in tool-call arguments (the
/// arguments are a string of the body, JSON inside) is masked, and becomes a string
/// there: the arguments stay JSON, the body's own numbers stay as they were, and a
/// `block` type refuses the request.
#[test]
fn numbers_in_tool_call_arguments_are_masked_as_strings() {
    let arguments = r#"{"card_number": 4111111111111111, "amount": 1000, "ssn": 123456789, "phone": 4155552671, "order_id": 123456789, "ids": [4242424242424242, 7]}"#;
    let request = serde_json::json!({
        "model": "m",
        "max_tokens": 4111111111111111u64,
        "messages": [{"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "charge", "arguments": arguments}}
        ]}]
    });
    let body = serde_json::to_vec(&request).unwrap();
    use junction::masking::{Builtin, Masker};
    let mask = |masker: &Masker, findings: &mut Findings| {
        mask_request_body(
            masker,
            BodyShape::ApiJson(Api::OpenAiChat),
            &body,
            &mut Vault::default(),
            findings,
        )
    };
    let masked = mask(&Masker::default(), &mut Findings::default()).expect("masked");
    let output: Value = serde_json::from_slice(&masked).expect("the body stays JSON");
    let pointer = "/messages/0/tool_calls/0/function/arguments";
    let masked_arguments: Value =
        serde_json::from_str(output.pointer(pointer).unwrap().as_str().unwrap())
            .expect("the arguments stay JSON");
    assert_eq!(
        masked_arguments,
        serde_json::json!({"card_number": "[CREDIT_CARD]", "amount": 1000, "ssn": "[US_SSN]",
            "phone": "[PHONE_NUMBER]", "order_id": 123456789, "ids": ["[CREDIT_CARD]", 7]})
    );
    // The body's own number (a field, not contents) is not read.
    assert_eq!(output["max_tokens"], request["max_tokens"]);
    let blocking = Masker::builder()
        .action(Builtin::CreditCard, Action::Block)
        .build()
        .unwrap();
    let refused = mask(&blocking, &mut Findings::default());
    assert!(matches!(refused, Err(BodyError::Blocked(_))), "{refused:?}");
    // `log` counts the values and changes nothing: the numbers stay numbers.
    let logging = Masker::builder()
        .action(Builtin::CreditCard, Action::Log)
        .action(Builtin::PhoneNumber, Action::Log)
        .action(Builtin::UsSsn, Action::Log)
        .build()
        .unwrap();
    let mut findings = Findings::default();
    let logged = mask(&logging, &mut findings).expect("passed");
    assert_eq!(&*logged, &body[..]);
    assert_eq!(findings.total(), 4, "the values are counted");
}

/// Anthropic sends a tool call's input as an object of the body, not as a string: a
/// card or a phone written there as a number is masked the same way as in OpenAI's
/// arguments (a string in its place), in the request and in the answer, `block`
/// refuses it, and a pseudonym comes back restored as a string. The body's other
/// numbers stay as they were written.
#[test]
fn numbers_in_a_tool_use_input_are_masked_as_strings() {
    use junction::masking::{Builtin, Masker};
    let body = br#"{"model":"m","max_tokens":4111111111111111,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"charge","input":{"card_number":4111111111111111,"amount":1000,"customer":{"phone":4155552671,"ids":[4242424242424242,7]},"order_id":123456789}}]}]}"#;
    let shape = BodyShape::ApiJson(Api::AnthropicMessages);
    let mask = |masker: &Masker, vault: &mut Vault, findings: &mut Findings| {
        mask_request_body(masker, shape, body, vault, findings)
    };
    let masked = mask(
        &Masker::default(),
        &mut Vault::default(),
        &mut Findings::default(),
    )
    .expect("masked");
    let output: Value = serde_json::from_slice(&masked).expect("the body stays JSON");
    assert_eq!(
        output["messages"][0]["content"][0]["input"],
        serde_json::json!({"card_number": "[CREDIT_CARD]", "amount": 1000,
            "customer": {"phone": "[PHONE_NUMBER]", "ids": ["[CREDIT_CARD]", 7]},
            "order_id": 123456789})
    );
    // Outside the tool's input, a number is a field of the API: never read.
    let masked_text = String::from_utf8(masked.to_vec()).unwrap();
    assert!(
        masked_text.contains(r#""max_tokens":4111111111111111,"#),
        "{masked_text}"
    );

    let blocking = Masker::builder()
        .action(Builtin::CreditCard, Action::Block)
        .build()
        .unwrap();
    let refused = mask(&blocking, &mut Vault::default(), &mut Findings::default());
    assert!(matches!(refused, Err(BodyError::Blocked(_))), "{refused:?}");

    let logging = Masker::builder()
        .action(Builtin::CreditCard, Action::Log)
        .action(Builtin::PhoneNumber, Action::Log)
        .build()
        .unwrap();
    let mut findings = Findings::default();
    let logged = mask(&logging, &mut Vault::default(), &mut findings).expect("passed");
    assert_eq!(&*logged, &body[..], "`log` changes nothing");
    assert_eq!(findings.total(), 3, "the values are counted");

    // Pseudonyms: the request's card goes out as a token, and the answer's tool call
    // that quotes it gets the card back (as a string); a card number of the answer's
    // own tool input is masked.
    let pseudonymizing = Masker::builder()
        .action(Builtin::CreditCard, Action::Pseudonymize)
        .build()
        .unwrap();
    let mut vault = Vault::default();
    let masked = mask(&pseudonymizing, &mut vault, &mut Findings::default()).expect("masked");
    let output: Value = serde_json::from_slice(&masked).unwrap();
    let token = output["messages"][0]["content"][0]["input"]["card_number"]
        .as_str()
        .expect("the number became a token")
        .to_string();
    assert!(token.starts_with("<CREDIT_CARD_"), "{token}");
    let answer = serde_json::to_vec(&serde_json::json!({"type": "message", "role": "assistant",
        "content": [{"type": "tool_use", "id": "t2", "name": "refund",
            "input": {"card": token, "other_card": 5555555555554444u64}}],
        "usage": {"input_tokens": 4111111111111111u64}}))
    .unwrap();
    let masker: Arc<dyn TextMasker> = Arc::new(pseudonymizing);
    let mut response = ResponseMasker::new(Some(masker), vault, shape);
    let mut findings = Findings::default();
    let mut out = Vec::new();
    response.push(&answer, &mut out, &mut findings).unwrap();
    response.finish(&mut out, &mut findings).unwrap();
    let restored: Value = serde_json::from_slice(&out).expect("the answer stays JSON");
    let input = &restored["content"][0]["input"];
    assert_eq!(input["card"], "4111111111111111", "{restored}");
    assert!(
        input["other_card"]
            .as_str()
            .is_some_and(|token| token.starts_with("<CREDIT_CARD_")),
        "{restored}"
    );
    assert_eq!(restored["usage"]["input_tokens"], 4111111111111111u64);
}

#[test]
fn invalid_json_is_refused_and_deep_nesting_fails_without_overflow() {
    let masker = TestMasker::new(Action::Redact);
    let shape = BodyShape::ApiJson(Api::AnthropicMessages);
    for bad in [
        &b"{\"messages\":[],}"[..],
        b"{\"messages\":[{\"content\":\"a\nb\"}]}",
        b"{\"messages\":\"\\q\"}",
        b"{\"a\":1} {}",
        b"{\"a\":\"\xc3\"}",
        b"",
    ] {
        let result = mask_request_body(
            &masker,
            shape,
            bad,
            &mut Vault::default(),
            &mut Findings::default(),
        );
        assert!(matches!(result, Err(BodyError::NotJson { .. })), "{bad:?}");
    }
    let deep = format!("{{\"messages\":{}", "[{\"content\":".repeat(200_000));
    let result = mask_request_body(
        &masker,
        shape,
        deep.as_bytes(),
        &mut Vault::default(),
        &mut Findings::default(),
    );
    assert!(matches!(result, Err(BodyError::TooDeep { .. })));
    // Arguments nested deep are masked as text, not refused: they are a string.
    let arguments = serde_json::to_string(&format!("{}SECRET-5", "[".repeat(10_000))).unwrap();
    let body = format!(
        "{{\"messages\":[{{\"role\":\"assistant\",\"tool_calls\":[{{\"function\":{{\"arguments\":{arguments}}}}}]}}]}}"
    );
    let masked = mask_request_body(
        &masker,
        BodyShape::ApiJson(Api::OpenAiChat),
        body.as_bytes(),
        &mut Vault::default(),
        &mut Findings::default(),
    )
    .unwrap();
    assert!(
        std::str::from_utf8(&masked)
            .unwrap()
            .ends_with("[SECRET]\"}}]}]}")
    );
}

#[test]
fn random_bytes_never_panic() {
    let masker = TestMasker::new(Action::Redact);
    let mut runner = TestRunner::new(Config {
        cases: 500,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &proptest::collection::vec(
                proptest::sample::select(&b"{}[]\",:\\u0aeE.-+ tfnrl\xc3\xa9"[..]),
                0..60,
            ),
            |bytes| {
                for shape in [
                    BodyShape::OtherJson,
                    BodyShape::ApiJson(Api::OpenAiChat),
                    BodyShape::Text,
                ] {
                    let _ = mask_request_body(
                        &masker,
                        shape,
                        &bytes,
                        &mut Vault::default(),
                        &mut Findings::default(),
                    );
                    let masker: Arc<dyn TextMasker> = Arc::new(TestMasker::new(Action::Redact));
                    let mut response = ResponseMasker::new(
                        Some(masker),
                        Vault::default(),
                        BodyShape::EventStream(None),
                    );
                    let mut findings = Findings::default();
                    let mut out = Vec::new();
                    let _ = response.push(&bytes, &mut out, &mut findings);
                    let _ = response.finish(&mut out, &mut findings);
                }
                Ok(())
            },
        )
        .unwrap();
}

// ---- Streams ----

/// The text of an OpenAI chat stream's deltas, joined; every event's data is JSON.
fn chat_text(stream: &[u8]) -> String {
    let stream = std::str::from_utf8(stream).unwrap();
    let mut text = String::new();
    for event in stream.split("\n\n") {
        let Some(data) = event.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            continue;
        }
        let value: Value = serde_json::from_str(data).expect("each event is JSON");
        if let Some(delta) = value
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            text.push_str(delta);
        }
    }
    text
}

fn chat_stream(deltas: &[String]) -> String {
    let mut stream = String::new();
    for delta in deltas {
        stream.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
            serde_json::to_string(delta).unwrap()
        ));
    }
    stream.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    stream
}

fn stream_through(
    masker: Option<Arc<dyn TextMasker>>,
    vault: Vault,
    pieces: &[&[u8]],
) -> Result<Vec<u8>, BodyError> {
    let mut response =
        ResponseMasker::new(masker, vault, BodyShape::EventStream(Some(Api::OpenAiChat)));
    let mut findings = Findings::default();
    let mut out = Vec::new();
    for piece in pieces {
        response.push(piece, &mut out, &mut findings)?;
    }
    response.finish(&mut out, &mut findings)?;
    Ok(out)
}

fn test_vault() -> Vault {
    let mut vault = Vault::default();
    vault.pseudonym(&Kind("EMAIL_ADDRESS".into()), "ann@example.org");
    vault.pseudonym(&Kind("SECRET".into()), "SECRET-42");
    vault
}

#[test]
fn a_secret_split_across_two_sse_chunks_is_masked_at_every_split_point() {
    let stream = chat_stream(&[
        "The key: SECR".into(),
        "ET-9".into(),
        "876 is yours é".into(),
    ]);
    let masker: Arc<dyn TextMasker> = Arc::new(TestMasker::new(Action::Redact));
    for split in 0..=stream.len() {
        let (a, b) = stream.as_bytes().split_at(split);
        let out = stream_through(Some(masker.clone()), Vault::default(), &[a, b]).unwrap();
        assert_eq!(
            chat_text(&out),
            "The key: [SECRET] is yours é",
            "split at {split}"
        );
        assert!(
            std::str::from_utf8(&out)
                .unwrap()
                .ends_with("\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
        );
    }
}

/// A kept address is kept, and one that only starts like it is masked, wherever the
/// stream is cut: a value is judged whole, never by the piece a window holds.
#[test]
fn kept_addresses_in_a_stream_are_judged_whole_at_every_split_point() {
    let stream = chat_stream(&[
        "Write to help@ac".into(),
        "me.com or help@acme.com.".into(),
        "evil.net today".into(),
    ]);
    let keep = junction::masking::keep::KeepList::new(&["@acme.com".to_string()]).unwrap();
    let masker: Arc<dyn TextMasker> = Arc::new(
        junction::masking::Masker::builder()
            .keep(keep)
            .build()
            .unwrap(),
    );
    for split in 0..=stream.len() {
        let (a, b) = stream.as_bytes().split_at(split);
        let out = stream_through(Some(masker.clone()), Vault::default(), &[a, b]).unwrap();
        assert_eq!(
            chat_text(&out),
            "Write to help@acme.com or [EMAIL_ADDRESS] today",
            "split at {split}"
        );
    }
}

/// An address followed by a file's extension, or cut inside a word by a digit, ends
/// where it would in the whole text, and a spelled one (`cal [at] example [dot] org`)
/// is found whole, wherever the stream is split.
#[test]
fn an_address_before_a_file_s_extension_ends_there_at_every_split_point() {
    let stream = chat_stream(&[
        "Files: ann@example.org.c".into(),
        "sv and bob@example.com.m".into(),
        "p3 here, from cal [at] exam".into(),
        "ple [dot] org".into(),
    ]);
    let masker: Arc<dyn TextMasker> =
        Arc::new(junction::masking::Masker::builder().build().unwrap());
    for split in 0..=stream.len() {
        let (a, b) = stream.as_bytes().split_at(split);
        let out = stream_through(Some(masker.clone()), Vault::default(), &[a, b]).unwrap();
        assert_eq!(
            chat_text(&out),
            "Files: [EMAIL_ADDRESS].csv and [EMAIL_ADDRESS].mp3 here, from [EMAIL_ADDRESS]",
            "split at {split}"
        );
    }
}

#[test]
fn pseudonyms_are_restored_in_a_streamed_response_at_every_split_point() {
    let stream = chat_stream(&[
        "Mail <EMAIL_ADDR".into(),
        "ESS_1> the <SEC".into(),
        "RET_1>; bob@example.org stays?".into(),
    ]);
    let masker: Arc<dyn TextMasker> = Arc::new(TestMasker::new(Action::Redact));
    for split in 0..=stream.len() {
        let (a, b) = stream.as_bytes().split_at(split);
        let restored = stream_through(None, test_vault(), &[a, b]).unwrap();
        assert_eq!(
            chat_text(&restored),
            "Mail ann@example.org the SECRET-42; bob@example.org stays?",
            "split at {split}"
        );
        let both = stream_through(Some(masker.clone()), test_vault(), &[a, b]).unwrap();
        assert_eq!(
            chat_text(&both),
            "Mail ann@example.org the SECRET-42; [EMAIL_ADDRESS] stays?",
            "split at {split}"
        );
    }
}

/// Streamed text, restored and masked, equals the same done to the whole text, for
/// any deltas and any chunking of the stream.
#[test]
fn any_chunking_of_a_stream_gives_the_whole_text_masked_and_restored() {
    let masker: Arc<dyn TextMasker> = Arc::new(TestMasker::new(Action::Redact));
    let word = prop_oneof![
        "[a-z]{1,8}",
        "SECRET-[0-9]{1,6}",
        "[a-z]{1,5}@example\\.org",
        proptest::sample::select(
            &[
                "é€",
                "😀",
                "<EMAIL_ADDRESS_1>",
                "<SECRET_1>",
                "<SECRET_9>",
                "<",
                "<b>",
                "\"q\"",
                "\n"
            ][..]
        )
        .prop_map(str::to_string),
    ];
    let case = (
        proptest::collection::vec(word, 0..20),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    );
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case, |(words, delta_cuts, chunk_cuts)| {
            let text = words.join(" ");
            let mut cuts: Vec<usize> = delta_cuts
                .iter()
                .map(|i| i.index(text.len() + 1))
                .filter(|at| text.is_char_boundary(*at))
                .collect();
            cuts.sort();
            let mut deltas = Vec::new();
            let mut at = 0;
            for cut in cuts.into_iter().chain([text.len()]) {
                deltas.push(text[at..cut].to_string());
                at = cut;
            }
            let stream = chat_stream(&deltas);
            let mut cuts: Vec<usize> = chunk_cuts
                .iter()
                .map(|i| i.index(stream.len() + 1))
                .collect();
            cuts.sort();
            let mut pieces = Vec::new();
            let mut at = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                pieces.push(&stream.as_bytes()[at..cut]);
                at = cut;
            }
            let out = stream_through(Some(masker.clone()), test_vault(), &pieces).unwrap();
            // Events are read whole: the chunking never changes a byte of the output.
            let whole =
                stream_through(Some(masker.clone()), test_vault(), &[stream.as_bytes()]).unwrap();
            prop_assert_eq!(&out, &whole);
            // The reference: tokens restored, the text between them masked.
            let mut expected = String::new();
            let mut rest = text.as_str();
            loop {
                let next = [
                    ("<EMAIL_ADDRESS_1>", "ann@example.org"),
                    ("<SECRET_1>", "SECRET-42"),
                ]
                .iter()
                .filter_map(|(token, value)| rest.find(token).map(|at| (at, *token, *value)))
                .min();
                match next {
                    Some((at, token, value)) => {
                        expected.push_str(&redact(&rest[..at]));
                        expected.push_str(value);
                        rest = &rest[at + token.len()..];
                    }
                    None => {
                        expected.push_str(&redact(rest));
                        break;
                    }
                }
            }
            prop_assert_eq!(chat_text(&out), expected);
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_utf8_char_split_across_chunks_of_a_text_body_passes_whole() {
    let masker: Arc<dyn TextMasker> = Arc::new(TestMasker::new(Action::Redact));
    let body = "né 😀 SECRET-12 €".as_bytes();
    for split in 0..=body.len() {
        let mut response =
            ResponseMasker::new(Some(masker.clone()), Vault::default(), BodyShape::Text);
        let mut findings = Findings::default();
        let mut out = Vec::new();
        response
            .push(&body[..split], &mut out, &mut findings)
            .unwrap();
        response
            .push(&body[split..], &mut out, &mut findings)
            .unwrap();
        response.finish(&mut out, &mut findings).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), "né 😀 [SECRET] €");
        assert_eq!(findings.total(), 1);
    }
}

#[test]
fn errors_and_debug_output_never_hold_a_value() {
    let masker = TestMasker::new(Action::Block);
    let mut vault = test_vault();
    let error = mask_request_body(
        &masker,
        BodyShape::ApiJson(Api::OpenAiChat),
        br#"{"messages":[{"role":"user","content":"SECRET-31337"}]}"#,
        &mut vault,
        &mut Findings::default(),
    )
    .unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("31337"), "{shown}");
    let response = ResponseMasker::new(None, vault, BodyShape::Text);
    let shown = format!("{response:?}");
    assert!(
        !shown.contains("ann@") && !shown.contains("SECRET-42"),
        "{shown}"
    );
}
