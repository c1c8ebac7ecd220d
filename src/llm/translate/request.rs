//! Request bodies: OpenAI chat completions → Anthropic Messages and back. Messages,
//! system prompts, content parts, tools and tool calls, sampling and stop settings; a
//! field the other API has no counterpart for is dropped (listed in docs/ai-routing.md).

use serde_json::{Map, Value, json};

use super::{Api, Translation};

/// `max_tokens` sent to Anthropic when an OpenAI client set none (Anthropic requires
/// it): 4096, the output limit of the smallest current Claude models.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The `anthropic-version` header sent when the client sent none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Why a client's body cannot be translated: answered with 400 in the client's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

fn bad(message: impl Into<String>) -> RequestError {
    RequestError(message.into())
}

/// A translated request body and what its answer's translation needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslatedRequest {
    pub body: Vec<u8>,
    /// The client asked for an event stream.
    pub stream: bool,
    /// An OpenAI client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// The client's `model`, echoed in the answer.
    pub model: Option<String>,
}

/// Translates a request body from the client's API to the provider's.
pub fn translate_request(
    translation: Translation,
    body: &[u8],
) -> Result<TranslatedRequest, RequestError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| bad(format!("the request body is not JSON: {error}")))?;
    let Value::Object(request) = value else {
        return Err(bad("the request body is not a JSON object"));
    };
    let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = request
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let out = match (translation.client, translation.provider) {
        (Api::OpenAi, Api::Anthropic) => openai_to_anthropic(&request)?,
        (Api::Anthropic, Api::OpenAi) => anthropic_to_openai(&request)?,
        _ => Value::Object(request),
    };
    Ok(TranslatedRequest {
        body: serde_json::to_vec(&out).unwrap_or_default(),
        stream,
        include_usage,
        model,
    })
}

// === OpenAI → Anthropic ===

fn openai_to_anthropic(request: &Map<String, Value>) -> Result<Value, RequestError> {
    let mut out = Map::new();
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`model` is required"))?;
    out.insert("model".into(), json!(model));
    if request
        .get("n")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 1)
    {
        return Err(bad("`n` > 1 is not supported by this pool's provider"));
    }
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`messages` must be an array"))?;
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("messages[{i}].role is missing")))?;
        let content = message.get("content").unwrap_or(&Value::Null);
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.push(plain_text(content, i)?);
                continue;
            }
            "user" => ("user", content_blocks(content, i)?),
            "assistant" => ("assistant", assistant_blocks(message, content, i)?),
            "tool" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("messages[{i}].tool_call_id is missing")))?;
                let result = json!({
                    "type": "tool_result",
                    "tool_use_id": id,
                    "content": plain_text(content, i)?,
                });
                ("user", vec![result])
            }
            other => {
                return Err(bad(format!(
                    "messages[{i}].role {other:?} is not supported by this pool's provider"
                )));
            }
        };
        if blocks.is_empty() {
            continue;
        }
        // Anthropic alternates turns: consecutive messages of one role (tool results
        // after each other, or before a user message) become one turn.
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role.to_string(), blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, blocks)| json!({ "role": role, "content": compact(blocks) }))
        .collect();
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
    }
    out.insert("messages".into(), Value::Array(messages));
    let max_tokens = request
        .get("max_completion_tokens")
        .or_else(|| request.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max_tokens));
    for key in ["temperature", "top_p"] {
        if let Some(value) = request.get(key).filter(|v| v.is_number()) {
            out.insert(key.into(), value.clone());
        }
    }
    match request.get("stop") {
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) if !stops.is_empty() => {
            out.insert("stop_sequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
    }
    if let Some(user) = request.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    if let Some(tools) = request.get("tools").and_then(Value::as_array) {
        let tools = tools
            .iter()
            .enumerate()
            .map(|(i, tool)| openai_tool(tool, i))
            .collect::<Result<Vec<_>, _>>()?;
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    let parallel = request.get("parallel_tool_calls").and_then(Value::as_bool);
    if let Some(choice) = openai_tool_choice(request.get("tool_choice"), parallel)? {
        out.insert("tool_choice".into(), choice);
    }
    Ok(Value::Object(out))
}

/// A message's text: a string, or the text parts of a list joined.
fn plain_text(content: &Value, i: usize) -> Result<String, RequestError> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")),
        _ => Err(bad(format!(
            "messages[{i}].content must be a string or a list"
        ))),
    }
}

/// A user message's content as Anthropic blocks: text and images.
fn content_blocks(content: &Value, i: usize) -> Result<Vec<Value>, RequestError> {
    match content {
        Value::String(text) => Ok(vec![json!({ "type": "text", "text": text })]),
        Value::Null => Ok(Vec::new()),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| content_part(part, i, j))
            .collect(),
        _ => Err(bad(format!(
            "messages[{i}].content must be a string or a list"
        ))),
    }
}

fn content_part(part: &Value, i: usize, j: usize) -> Result<Value, RequestError> {
    let at = || format!("messages[{i}].content[{j}]");
    match part.get("type").and_then(Value::as_str) {
        Some("text") => {
            let text = part
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{}.text is missing", at())))?;
            Ok(json!({ "type": "text", "text": text }))
        }
        Some("image_url") => {
            let url = part
                .get("image_url")
                .and_then(|u| u.get("url").or(Some(u)))
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{}.image_url.url is missing", at())))?;
            Ok(image_source(url))
        }
        other => Err(bad(format!(
            "{} has type {:?}, which this pool's provider does not take",
            at(),
            other.unwrap_or("none")
        ))),
    }
}

/// An image URL as an Anthropic image block: a `data:` URL inline, any other by URL.
fn image_source(url: &str) -> Value {
    let inline = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"));
    match inline {
        Some((media_type, data)) => json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": data },
        }),
        None => json!({ "type": "image", "source": { "type": "url", "url": url } }),
    }
}

fn assistant_blocks(
    message: &Value,
    content: &Value,
    i: usize,
) -> Result<Vec<Value>, RequestError> {
    let mut blocks: Vec<Value> = match content {
        // An assistant's empty text is not a block Anthropic accepts.
        Value::String(text) if text.is_empty() => Vec::new(),
        other => content_blocks(other, i)?,
    };
    let calls = message.get("tool_calls").and_then(Value::as_array);
    for (j, call) in calls.into_iter().flatten().enumerate() {
        let at = format!("messages[{i}].tool_calls[{j}]");
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("{at}.id is missing")))?;
        let function = call
            .get("function")
            .ok_or_else(|| bad(format!("{at}.function is missing")))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("{at}.function.name is missing")))?;
        let arguments = function
            .get("arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let input: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments)
                .map_err(|_| bad(format!("{at}.function.arguments is not JSON")))?
        };
        blocks.push(json!({ "type": "tool_use", "id": id, "name": name, "input": input }));
    }
    Ok(blocks)
}

/// One text block alone is sent as a plain string, as clients write it.
fn compact(blocks: Vec<Value>) -> Value {
    if let [block] = blocks.as_slice()
        && block.get("type").and_then(Value::as_str) == Some("text")
        && let Some(text) = block.get("text")
    {
        return text.clone();
    }
    Value::Array(blocks)
}

fn openai_tool(tool: &Value, i: usize) -> Result<Value, RequestError> {
    let function = tool
        .get("function")
        .ok_or_else(|| bad(format!("tools[{i}].function is missing")))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("tools[{i}].function.name is missing")))?;
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    if let Some(description) = function.get("description").and_then(Value::as_str) {
        out.insert("description".into(), json!(description));
    }
    let schema = function
        .get("parameters")
        .cloned()
        .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
    out.insert("input_schema".into(), schema);
    Ok(Value::Object(out))
}

fn openai_tool_choice(
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Result<Option<Value>, RequestError> {
    let mut out = match choice {
        None | Some(Value::Null) => match parallel {
            Some(false) => json!({ "type": "auto" }),
            _ => return Ok(None),
        },
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => json!({ "type": "auto" }),
            "none" => json!({ "type": "none" }),
            "required" => json!({ "type": "any" }),
            other => return Err(bad(format!("tool_choice {other:?} is not known"))),
        },
        Some(object) => {
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad("tool_choice.function.name is missing"))?;
            json!({ "type": "tool", "name": name })
        }
    };
    if parallel == Some(false) && out["type"] != "none" {
        out["disable_parallel_tool_use"] = json!(true);
    }
    Ok(Some(out))
}

// === Anthropic → OpenAI ===

fn anthropic_to_openai(request: &Map<String, Value>) -> Result<Value, RequestError> {
    let mut out = Map::new();
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`model` is required"))?;
    out.insert("model".into(), json!(model));
    let mut messages = Vec::new();
    match request.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(json!({ "role": "system", "content": text })),
        Some(Value::Array(blocks)) => {
            let text = blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n\n");
            messages.push(json!({ "role": "system", "content": text }));
        }
        Some(_) => return Err(bad("`system` must be a string or a list of text blocks")),
    }
    let input = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`messages` must be an array"))?;
    for (i, message) in input.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        let content = message.get("content").unwrap_or(&Value::Null);
        match role {
            Some("user") => user_messages(content, i, &mut messages)?,
            Some("assistant") => messages.push(assistant_message(content, i)?),
            _ => {
                return Err(bad(format!(
                    "messages[{i}].role must be \"user\" or \"assistant\""
                )));
            }
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    let max_tokens = request
        .get("max_tokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("`max_tokens` is required"))?;
    out.insert("max_tokens".into(), json!(max_tokens));
    for key in ["temperature", "top_p"] {
        if let Some(value) = request.get(key).filter(|v| v.is_number()) {
            out.insert(key.into(), value.clone());
        }
    }
    if let Some(stops) = request.get("stop_sequences").and_then(Value::as_array)
        && !stops.is_empty()
    {
        out.insert("stop".into(), Value::Array(stops.clone()));
    }
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
        // Anthropic's stream always reports usage; an OpenAI stream only when asked.
        out.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    if let Some(user) = request
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), json!(user));
    }
    if let Some(tools) = request.get("tools").and_then(Value::as_array) {
        let tools = tools
            .iter()
            .enumerate()
            .map(|(i, tool)| anthropic_tool(tool, i))
            .collect::<Result<Vec<_>, _>>()?;
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = request.get("tool_choice").filter(|c| !c.is_null()) {
        let mode = choice.get("type").and_then(Value::as_str);
        let mapped = match mode {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                let name = choice
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("tool_choice.name is missing"))?;
                json!({ "type": "function", "function": { "name": name } })
            }
            _ => return Err(bad("tool_choice.type is not known")),
        };
        out.insert("tool_choice".into(), mapped);
        if choice
            .get("disable_parallel_tool_use")
            .and_then(Value::as_bool)
            == Some(true)
        {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    Ok(Value::Object(out))
}

/// A user turn: its tool results become `tool` messages (first, as they answer the
/// previous assistant turn), the rest one user message.
fn user_messages(content: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), RequestError> {
    let blocks = match content {
        Value::String(text) => {
            out.push(json!({ "role": "user", "content": text }));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(bad(format!(
                "messages[{i}].content must be a string or a list"
            )));
        }
    };
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                parts.push(json!({ "type": "text", "text": text }));
            }
            Some("image") => parts.push(image_part(block, &at)?),
            Some("tool_result") => {
                let id = block
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("{at}.tool_use_id is missing")))?;
                let text = match block.get("content") {
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Array(inner)) => inner
                        .iter()
                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => String::new(),
                };
                out.push(json!({ "role": "tool", "tool_call_id": id, "content": text }));
            }
            other => {
                return Err(bad(format!(
                    "{at} has type {:?}, which this pool's provider does not take",
                    other.unwrap_or("none")
                )));
            }
        }
    }
    if !parts.is_empty() {
        let all_text = parts.iter().all(|p| p["type"] == "text");
        let content = if all_text && parts.len() == 1 {
            parts[0]["text"].clone()
        } else {
            Value::Array(parts)
        };
        out.push(json!({ "role": "user", "content": content }));
    }
    Ok(())
}

fn image_part(block: &Value, at: &str) -> Result<Value, RequestError> {
    let source = block
        .get("source")
        .ok_or_else(|| bad(format!("{at}.source is missing")))?;
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("");
            let data = source.get("data").and_then(Value::as_str).unwrap_or("");
            format!("data:{media};base64,{data}")
        }
        Some("url") => source
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        _ => return Err(bad(format!("{at}.source.type is not known"))),
    };
    Ok(json!({ "type": "image_url", "image_url": { "url": url } }))
}

fn assistant_message(content: &Value, i: usize) -> Result<Value, RequestError> {
    let blocks = match content {
        Value::String(text) => return Ok(json!({ "role": "assistant", "content": text })),
        Value::Array(blocks) => blocks,
        _ => {
            return Err(bad(format!(
                "messages[{i}].content must be a string or a list"
            )));
        }
    };
    let message = Value::Object(super::response::assistant_message(blocks));
    Ok(message)
}

fn anthropic_tool(tool: &Value, i: usize) -> Result<Value, RequestError> {
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("tools[{i}].name is missing")))?;
    let mut function = Map::new();
    function.insert("name".into(), json!(name));
    if let Some(description) = tool.get("description").and_then(Value::as_str) {
        function.insert("description".into(), json!(description));
    }
    let schema = tool
        .get("input_schema")
        .cloned()
        .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
    function.insert("parameters".into(), schema);
    Ok(json!({ "type": "function", "function": function }))
}
