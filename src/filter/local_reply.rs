//! The reply a filter gives instead of forwarding (a denial, a 401, a 429): a status,
//! headers and a small body held whole. No engine's body type appears in it; each engine
//! renders it the way it renders its own error replies.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

pub struct LocalReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl LocalReply {
    /// A JSON error in the shape every Junction error uses:
    /// `{"type": "error", "error": {"type": kind, "message": message}}`. That is
    /// Anthropic's error envelope, and OpenAI's (`error.type`, `error.message`) with one
    /// more top-level key its clients pass over, so either API's SDK reads Junction's own
    /// refusals as it reads its provider's.
    pub fn json_error(status: StatusCode, kind: &str, message: &str) -> Self {
        let body = serde_json::json!({
            "type": "error",
            "error": { "type": kind, "message": message },
        });
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        LocalReply {
            status,
            headers,
            body: Bytes::from(body.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_error_names_its_kind_and_message() {
        let reply = LocalReply::json_error(StatusCode::FORBIDDEN, "denied", "no \"entry\"");
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(
            reply.headers[http::header::CONTENT_TYPE],
            "application/json"
        );
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "denied");
        assert_eq!(body["error"]["message"], "no \"entry\"");
    }
}
