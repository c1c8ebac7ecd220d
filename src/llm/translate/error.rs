//! Error bodies in the client's format: a provider's error (any status from 400 on)
//! rewritten, and Junction's own errors about a translation (a request it cannot
//! translate, a reply it cannot read) written in the shape the client parses.

use serde_json::{Value, json};

use super::{Api, Translation};

/// Longest piece of a provider's unreadable error body quoted in the message.
const QUOTED: usize = 200;

/// An error body in `api`'s format. OpenAI: `{"error":{"message","type","param",
/// "code"}}`; Anthropic: `{"type":"error","error":{"type","message"}}`.
pub fn error_body(api: Api, status: u16, error_type: &str, message: &str) -> Vec<u8> {
    let body = match api {
        Api::OpenAi => json!({
            "error": {
                "message": message,
                "type": error_type,
                "param": null,
                "code": openai_code(status),
            }
        }),
        Api::Anthropic => json!({
            "type": "error",
            "error": { "type": error_type, "message": message },
        }),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A provider's error answer (status from 400 on) for the client: its status (Anthropic's
/// 529 "overloaded" is 503 for OpenAI clients, which know no 529) and its body in the
/// client's format. A body that is not the provider's error shape is quoted in the
/// message.
pub fn translate_error(translation: Translation, status: u16, body: &[u8]) -> (u16, Vec<u8>) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let (provider_type, message) = match parsed.as_ref().and_then(read_error) {
        Some((kind, message)) => (kind, message),
        None => {
            let text = String::from_utf8_lossy(&body[..body.len().min(QUOTED)]);
            let message = format!("the provider answered {status}: {}", text.trim());
            (None, message)
        }
    };
    match translation.client {
        Api::OpenAi => {
            let status = if status == 529 { 503 } else { status };
            let kind = match provider_type.as_deref() {
                Some("api_error") | Some("overloaded_error") => "server_error".to_string(),
                Some("not_found_error") | Some("request_too_large") => {
                    "invalid_request_error".to_string()
                }
                Some(other) => other.to_string(),
                None => openai_type(status).to_string(),
            };
            (status, error_body(Api::OpenAi, status, &kind, &message))
        }
        Api::Anthropic => {
            let kind = anthropic_type(status);
            (status, error_body(Api::Anthropic, status, kind, &message))
        }
    }
}

/// The type and message of either API's error body (also vLLM's flat
/// `{"object":"error","message","type"}`).
fn read_error(value: &Value) -> Option<(Option<String>, String)> {
    let error = match value.get("error") {
        Some(error @ Value::Object(_)) => error,
        Some(Value::String(message)) => return Some((None, message.clone())),
        _ => value,
    };
    let message = error.get("message").and_then(Value::as_str)?;
    let kind = error.get("type").and_then(Value::as_str).map(str::to_owned);
    Some((kind, message.to_string()))
}

fn openai_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        500.. => "server_error",
        _ => "invalid_request_error",
    }
}

/// OpenAI's `code` for the common statuses, as its SDKs and clients look for them.
fn openai_code(status: u16) -> Value {
    match status {
        401 => json!("invalid_api_key"),
        429 => json!("rate_limit_exceeded"),
        503 | 529 => json!("server_overloaded"),
        _ => Value::Null,
    }
}

/// Anthropic's error type for a status, as its API documents them.
fn anthropic_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    }
}
