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
