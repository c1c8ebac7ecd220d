//! The generated text of a model's reply: of a parsed JSON reply (OpenAI chat or
//! completions, Anthropic messages, the Responses API), or of one stream event. Shared
//! by the answer reader (flows, detectors) and the usage scanner (estimates).

use serde_json::Value;

/// The UTF-8 length of a parsed JSON reply's generated text, if it has some.
pub(super) fn text_of_json(value: &Value) -> Option<usize> {
    answer_of_value(value).map(|text| text.len())
}

/// The generated text of a parsed JSON reply, if it is one of the shapes read here.
pub(super) fn answer_of_value(value: &Value) -> Option<String> {
    let mut text = String::new();
    let mut found = false;
    if let Some(choices) = value.get("choices").and_then(Value::as_array) {
        for choice in choices {
            for content in [choice.pointer("/message/content"), choice.get("text")] {
                if let Some(part) = content.and_then(Value::as_str) {
                    text.push_str(part);
                    found = true;
                }
            }
        }
    }
    // Anthropic messages: `content` blocks; the Responses API: `output[].content[]`.
    let blocks = value
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            value
                .get("output")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|item| item.get("content").and_then(Value::as_array))
                .flatten(),
        );
    for block in blocks {
        if let Some(part) = block.get("text").and_then(Value::as_str) {
            text.push_str(part);
            found = true;
        }
    }
    found.then_some(text)
}

pub(super) fn delta_text(value: &Value) -> Option<&str> {
    if let Some(choices) = value.get("choices").and_then(Value::as_array) {
        let choice = choices.first()?;
        return choice
            .pointer("/delta/content")
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str);
    }
    // Anthropic `content_block_delta` (`delta.text`); the Responses API
    // `response.output_text.delta` (`delta` is the text).
    match value.get("delta")? {
        Value::String(text) => Some(text),
        delta => delta.get("text").and_then(Value::as_str),
    }
}

/// The UTF-8 length of a stream event's generated text, found without parsing the
/// event: the string after its first `"content"`, `"text"` or `"delta"` key (an escape
/// counts as one byte). Good enough for an estimate, and a parse per event costs more
/// than relaying it.
pub(super) fn delta_text_len(data: &str) -> Option<usize> {
    let data = data.as_bytes();
    ["\"content\"", "\"text\"", "\"delta\""]
        .iter()
        .find_map(|key| string_after(data, key.as_bytes()))
}

/// The length of the JSON string value after the first `key` in `data`.
fn string_after(data: &[u8], key: &[u8]) -> Option<usize> {
    let at = memchr::memmem::find(data, key)? + key.len();
    let rest = &data[at..];
    let colon = rest.iter().position(|&b| !b.is_ascii_whitespace())?;
    if rest[colon] != b':' {
        return None;
    }
    let rest = &rest[colon + 1..];
    let quote = rest.iter().position(|&b| !b.is_ascii_whitespace())?;
    if rest[quote] != b'"' {
        return None;
    }
    let mut text = &rest[quote + 1..];
    let mut len = 0;
    loop {
        let at = memchr::memchr2(b'"', b'\\', text)?;
        len += at;
        if text[at] == b'"' {
            return Some(len);
        }
        // An escape: one byte of text for `\n`, `\"`, ... and `\uXXXX` alike.
        let skip = if text.get(at + 1) == Some(&b'u') {
            6
        } else {
            2
        };
        len += 1;
        text = text.get(at + skip..)?;
    }
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    #[test]
    fn the_scanned_length_matches_the_parsed_one() {
        for data in [
            r#"{"choices":[{"index":0,"delta":{"content":"Hello, wörld"}}]}"#,
            r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"abc def"}}"#,
            r#"{"type":"response.output_text.delta","delta":"xyz"}"#,
            r#"{"choices":[{"text":"plain completion"}]}"#,
        ] {
            let value: serde_json::Value = serde_json::from_str(data).unwrap();
            let parsed = delta_text(&value).map(str::len);
            assert_eq!(delta_text_len(data), parsed, "{data}");
        }
        // Escapes count one byte each.
        let data = r#"{"choices":[{"delta":{"content":"a\nb\"c\u00e9"}}]}"#;
        assert_eq!(delta_text_len(data), Some(6));
        // No text, or a broken event: nothing.
        assert_eq!(delta_text_len(r#"{"choices":[{"delta":{}}]}"#), None);
        assert_eq!(
            delta_text_len(r#"{"choices":[{"delta":{"content":"open"#),
            None
        );
        assert_eq!(delta_text_len(r#"{"content": 3}"#), None);
    }
}
