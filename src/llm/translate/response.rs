//! Whole JSON replies: an Anthropic message as an OpenAI `chat.completion` and back,
//! with content, tool calls, the stop reason and usage; also the stop-reason and usage
//! mappings the stream translation shares.

use serde_json::{Map, Value, json};

use super::{Api, Translation};

/// Translates a successful reply body from the provider's API to the client's. `model`:
/// the client's, used when the reply names none; `created`: Unix seconds for OpenAI's
/// `created`. `Err` says why the body is not a reply of the provider's API.
pub fn translate_response(
    translation: Translation,
    body: &[u8],
    model: Option<&str>,
    created: u64,
) -> Result<Vec<u8>, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| format!("the provider's reply is not JSON: {error}"))?;
    let out = match (translation.provider, translation.client) {
        (Api::Anthropic, Api::OpenAi) => anthropic_to_openai(&value, model, created)?,
        (Api::OpenAi, Api::Anthropic) => openai_to_anthropic(&value, model)?,
        _ => value,
    };
    Ok(serde_json::to_vec(&out).unwrap_or_default())
}

/// An Anthropic `stop_reason` as an OpenAI `finish_reason`.
pub(super) fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and any later one.
        _ => "stop",
    }
}

/// An OpenAI `finish_reason` as an Anthropic `stop_reason`.
pub(super) fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic usage as OpenAI's: prompt tokens include the cached ones (as OpenAI counts
/// them), reported apart in `prompt_tokens_details.cached_tokens`.
pub(super) fn openai_usage(usage: &Value) -> Value {
    let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    let cached = count("cache_read_input_tokens");
    let prompt = count("input_tokens") + count("cache_creation_input_tokens") + cached;
    let completion = count("output_tokens");
    let mut out = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    if cached > 0 {
        out["prompt_tokens_details"] = json!({ "cached_tokens": cached });
    }
    out
}

/// OpenAI usage as Anthropic's: cached prompt tokens apart, as Anthropic counts them.
pub(super) fn anthropic_usage(usage: &Value) -> Value {
    let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    let cached = usage
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut out = json!({
        "input_tokens": count("prompt_tokens").saturating_sub(cached),
        "output_tokens": count("completion_tokens"),
    });
    if cached > 0 {
        out["cache_read_input_tokens"] = json!(cached);
    }
    out
}

fn anthropic_to_openai(reply: &Value, model: Option<&str>, created: u64) -> Result<Value, String> {
    if reply.get("type").and_then(Value::as_str) != Some("message") {
        return Err("the provider's reply is not an Anthropic message".into());
    }
    let blocks = reply
        .get("content")
        .and_then(Value::as_array)
        .ok_or("the provider's reply has no content list")?;
    let message = assistant_message(blocks);
    let finish = reply
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(finish_reason)
        .unwrap_or("stop");
    Ok(json!({
        "id": reply.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": created,
        "model": reply.get("model").and_then(Value::as_str).or(model),
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish,
            "logprobs": null,
        }],
        "usage": openai_usage(reply.get("usage").unwrap_or(&Value::Null)),
    }))
}

fn openai_to_anthropic(reply: &Value, model: Option<&str>) -> Result<Value, String> {
    let choice = reply
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or("the provider's reply has no choices")?;
    let message = choice
        .get("message")
        .ok_or("the provider's reply has no message")?;
    let mut content = Vec::new();
    if let Some(text) = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({ "type": "text", "text": text }));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let function = call.get("function").unwrap_or(&Value::Null);
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or(Value::Null),
            "name": function.get("name").cloned().unwrap_or(Value::Null),
            "input": tool_input(function.get("arguments")),
        }));
    }
    let stop = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(stop_reason)
        .unwrap_or("end_turn");
    Ok(json!({
        "id": reply.get("id").cloned().unwrap_or(Value::Null),
        "type": "message",
        "role": "assistant",
        "model": reply.get("model").and_then(Value::as_str).or(model),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": anthropic_usage(reply.get("usage").unwrap_or(&Value::Null)),
    }))
}

/// A tool call's `arguments` (a JSON text) as Anthropic's `input` object; text that is
/// not a JSON object is kept whole under `"arguments"` rather than lost.
pub(super) fn tool_input(arguments: Option<&Value>) -> Value {
    let text = arguments.and_then(Value::as_str).unwrap_or("");
    if text.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(text) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({ "arguments": text }),
    }
}

/// An OpenAI assistant message of Anthropic content blocks: the text blocks' text, and
/// the `tool_use` blocks as `tool_calls` (a reply's, or an earlier turn in a request).
pub(super) fn assistant_message(blocks: &[Value]) -> Map<String, Value> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => {
                let arguments = block
                    .get("input")
                    .map(Value::to_string)
                    .unwrap_or_else(|| "{}".into());
                calls.push(json!({
                    "id": block.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": block.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": arguments,
                    },
                }));
            }
            // Thinking blocks and the like have no OpenAI counterpart.
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        json!(text)
    };
    message.insert("content".into(), content);
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    message
}
