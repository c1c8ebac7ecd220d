//! The conformance suite's recorded pairs (tests/translation/) run against the pure
//! translation: requests, replies, errors, and streams fed in pieces of every size.

use std::path::PathBuf;

use serde_json::Value;

use super::*;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/translation")
}

/// The fixtures whose names start with `prefix` and end in `.json`, with their contents.
fn cases(prefix: &str) -> Vec<(String, Value)> {
    let mut cases: Vec<(String, Value)> = std::fs::read_dir(dir())
        .expect("tests/translation")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let stem = name
                .strip_prefix(prefix)?
                .strip_suffix(".json")?
                .to_string();
            let text = std::fs::read_to_string(dir().join(&name)).ok()?;
            let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            Some((stem, value))
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!cases.is_empty(), "no {prefix}*.json fixtures");
    cases
}

fn api(value: &Value) -> Api {
    match value.as_str() {
        Some("openai") => Api::OpenAi,
        Some("anthropic") => Api::Anthropic,
        other => panic!("unknown api {other:?}"),
    }
}

fn translation(case: &Value) -> Translation {
    Translation {
        client: api(&case["client"]),
        provider: api(&case["provider"]),
    }
}

#[test]
fn requests() {
    for (name, case) in cases("request_") {
        let body = serde_json::to_vec(&case["input"]).unwrap();
        let result = translate_request(translation(&case), &body);
        match case.get("expected_error").and_then(Value::as_str) {
            Some(expected) => {
                let error = result.expect_err(&name);
                assert!(error.0.contains(expected), "{name}: {error}");
            }
            None => {
                let translated = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let got: Value = serde_json::from_slice(&translated.body).unwrap();
                assert_eq!(got, case["expected"], "{name}");
            }
        }
    }
}

#[test]
fn responses() {
    for (name, case) in cases("response_") {
        let body = serde_json::to_vec(&case["input"]).unwrap();
        let model = case["model"].as_str();
        let created = case["created"].as_u64().unwrap();
        let out = translate_response(translation(&case), &body, model, created)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, case["expected"], "{name}");
    }
}

#[test]
fn errors() {
    for (name, case) in cases("error_") {
        let body = match &case["input"] {
            Value::String(text) => text.clone().into_bytes(),
            other => serde_json::to_vec(other).unwrap(),
        };
        let status = case["status"].as_u64().unwrap() as u16;
        let (got_status, out) = translate_error(translation(&case), status, &body);
        assert_eq!(u64::from(got_status), case["expected_status"], "{name}");
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, case["expected"], "{name}");
    }
}

/// An event stream's events: the `event:` name and the data, as JSON when it is.
fn events(text: &str) -> Vec<(Option<String>, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|event| {
            let mut name = None;
            let mut data = String::new();
            for line in event.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
            (name, data)
        })
        .collect()
}

#[test]
fn streams_in_pieces_of_every_size() {
    for (name, case) in cases("stream_") {
        let input = std::fs::read(dir().join(format!("stream_{name}.in.sse"))).unwrap();
        let expected =
            std::fs::read_to_string(dir().join(format!("stream_{name}.out.sse"))).unwrap();
        let expected = events(&expected);
        // Every split size, so events, lines and UTF-8 characters are cut everywhere.
        for size in (1..=input.len()).step_by(1).take(300) {
            let mut translator = StreamTranslator::new(
                translation(&case),
                case["model"].as_str().map(str::to_owned),
                case["include_usage"].as_bool().unwrap_or(false),
                case["created"].as_u64().unwrap(),
            );
            let mut out = Vec::new();
            for piece in input.chunks(size) {
                translator.push(piece, &mut out);
            }
            translator.finish(&mut out);
            let got = events(std::str::from_utf8(&out).unwrap());
            assert_eq!(got, expected, "{name}, pieces of {size} bytes");
        }
    }
}

#[test]
fn each_event_is_translated_as_it_completes() {
    let input = std::fs::read(dir().join("stream_anthropic_text.in.sse")).unwrap();
    let translation = Translation {
        client: Api::OpenAi,
        provider: Api::Anthropic,
    };
    let mut translator = StreamTranslator::new(translation, None, false, 0);
    let first_event_end = input.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    let mut out = Vec::new();
    translator.push(&input[..first_event_end], &mut out);
    // message_start alone already gives the client its first chunk.
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("data: {") && text.ends_with("\n\n"),
        "{text}"
    );
    assert!(text.contains("\"role\":\"assistant\""), "{text}");
}

#[test]
fn a_stream_cut_before_its_end_ends_with_an_error_event() {
    let translation = Translation {
        client: Api::OpenAi,
        provider: Api::Anthropic,
    };
    let mut translator = StreamTranslator::new(translation, None, false, 0);
    let mut out = Vec::new();
    translator.push(
        b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n",
        &mut out,
    );
    translator.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("ended before message_stop"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[test]
fn malformed_events_and_replies_never_panic() {
    let both = [
        Translation {
            client: Api::OpenAi,
            provider: Api::Anthropic,
        },
        Translation {
            client: Api::Anthropic,
            provider: Api::OpenAi,
        },
    ];
    let junk: [&[u8]; 6] = [
        b"",
        b"null",
        b"[1,2]",
        b"{\"type\":\"message\",\"content\":5}",
        b"{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{\"arguments\":7}}]}}]}",
        b"\xff\xfe",
    ];
    for translation in both {
        for body in junk {
            let _ = translate_request(translation, body);
            let _ = translate_response(translation, body, None, 0);
            let (status, error) = translate_error(translation, 500, body);
            assert_eq!(status, 500);
            assert!(serde_json::from_slice::<Value>(&error).is_ok());
            let mut stream = StreamTranslator::new(translation, None, true, 0);
            let mut out = Vec::new();
            stream.push(b"data: ", &mut out);
            stream.push(body, &mut out);
            stream.push(b"\n\n", &mut out);
            stream.finish(&mut out);
            assert!(!out.is_empty());
        }
    }
    let not_json = translate_response(both[0], b"<html>", None, 0).unwrap_err();
    assert!(not_json.contains("not JSON"), "{not_json}");
}

#[test]
fn stop_reasons_map_both_ways() {
    use super::response::{finish_reason, stop_reason};
    for (anthropic, openai) in [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        assert_eq!(finish_reason(anthropic), openai);
        assert_eq!(stop_reason(openai), anthropic);
    }
    assert_eq!(finish_reason("stop_sequence"), "stop");
    assert_eq!(finish_reason("pause_turn"), "stop");
}

proptest::proptest! {
    /// Whatever a provider sends, cut wherever, the stream translation never panics and
    /// always ends the client's stream.
    #[test]
    fn any_bytes_in_any_pieces_end_the_stream(
        events in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::string::string_regex("(event: [a-z_]{0,20}\n)?data: \\{\"type\":\"(message_start|content_block_start|content_block_delta|message_delta|message_stop|error)\"[^\n]{0,40}\\}\n\n").unwrap(),
                proptest::string::string_regex("data: [^\n]{0,60}\n\n").unwrap(),
                proptest::string::string_regex(".{0,30}").unwrap(),
            ],
            0..12,
        ),
        cut in 1usize..40,
        to_openai: bool,
    ) {
        let translation = if to_openai {
            Translation { client: Api::OpenAi, provider: Api::Anthropic }
        } else {
            Translation { client: Api::Anthropic, provider: Api::OpenAi }
        };
        let input = events.concat().into_bytes();
        let mut stream = StreamTranslator::new(translation, None, cut % 2 == 0, 0);
        let mut out = Vec::new();
        for piece in input.chunks(cut) {
            stream.push(piece, &mut out);
        }
        stream.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        let ends = text.ends_with("data: [DONE]\n\n")
            || text.ends_with("{\"type\":\"message_stop\"}\n\n")
            || text.contains("event: error\n");
        proptest::prop_assert!(ends, "{}", text);
    }
}
