//! One captured flow as it is stored, one JSON line each: the request and response
//! heads and bodies (masked first where the route masks, credentials redacted), a
//! stream's events and answer, timings, and what the proxy decided. Read back by the
//! admin flow API, `junction flows` and `junction replay`, and matched by filters.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::filter::FlowFacts;
use super::ring::Line;

/// The record format's version, written into every flow (`"v"`).
pub const FORMAT: u32 = 1;

/// Header values never stored: credentials. The name stays, with this as its value
/// (after the scheme for `authorization`), so a reader sees that one was sent.
pub const REDACTED: &str = "[redacted]";

/// Headers whose values are credentials.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "x-junction-admin-token",
];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Flow {
    #[serde(default)]
    pub v: u32,
    /// Unique, and in time order as text: 12 hex digits of Unix milliseconds, then 6
    /// of a counter.
    pub id: String,
    /// When the request's head was read (RFC 3339, UTC, milliseconds).
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The name (never the key) of the API key that authenticated the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub request: FlowRequest,
    /// `None`: the client went away, or no answer came, before a response head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<FlowResponse>,
    /// An event stream's events and the answer they carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<SseRecord>,
    #[serde(default)]
    pub timings: Timings,
    #[serde(default)]
    pub tokens: Tokens,
    /// Junction's error type, when the proxy answered with an error or the answer broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What masking found (types and counts, as in the access log's `masked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FlowRequest {
    pub method: String,
    /// The target as the client sent it (`/v1/chat/completions?x=1`), or the absolute
    /// URL on egress.
    pub url: String,
    /// `HTTP/1.1`, `HTTP/2`...
    pub http_version: String,
    /// Host, for a URL that has none (a reverse proxy's origin-form target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `https` when the client came over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: FlowBody,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FlowResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: FlowBody,
}

/// A body as stored: the first `max_body` bytes of it, as text when they are UTF-8,
/// else as base64.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowBody {
    /// The bytes kept.
    pub data: Vec<u8>,
    /// The whole body's length as it passed (masked form), kept or not.
    pub size: u64,
    /// Some of it was not kept (`data` is its start, possibly empty).
    pub truncated: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredBody {
    size: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
}

impl Serialize for FlowBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (text, base64) = match std::str::from_utf8(&self.data) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&self.data)),
            ),
        };
        StoredBody {
            size: self.size,
            truncated: self.truncated,
            text: text.filter(|t| !t.is_empty()),
            base64,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for FlowBody {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = StoredBody::deserialize(deserializer)?;
        let data = match (stored.text, stored.base64) {
            (Some(text), _) => text.into_bytes(),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(serde::de::Error::custom)?,
            (None, None) => Vec::new(),
        };
        Ok(FlowBody {
            data,
            size: stored.size,
            truncated: stored.truncated,
        })
    }
}

impl FlowBody {
    /// The kept part of a body of `size` bytes.
    pub fn kept(data: Vec<u8>, size: u64) -> FlowBody {
        let truncated = (data.len() as u64) < size;
        FlowBody {
            data,
            size,
            truncated,
        }
    }

    /// The body as text, if what was kept is UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SseRecord {
    /// The events, in order, as many as `max_body` bytes of data hold.
    pub events: Vec<SseEventRecord>,
    /// More events came than were kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The generated text the events carry, joined (OpenAI, Anthropic, Responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SseEventRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    pub data: String,
}

/// Milliseconds, with microseconds as the fraction.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    /// From sending the request upstream to the response head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<f64>,
    /// From sending the request upstream to the first generated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// From the request's head to the response's end.
    pub total_ms: f64,
}

pub fn millis(duration: Duration) -> f64 {
    (duration.as_micros() as f64) / 1000.0
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Tokens {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<u64>,
}

/// A header line as stored: the value lossily as text, a credential's redacted.
pub fn stored_header(name: &[u8], value: &[u8]) -> (String, String) {
    let name = String::from_utf8_lossy(name).into_owned();
    let credential = CREDENTIAL_HEADERS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(&name));
    let value = if !credential {
        String::from_utf8_lossy(value).into_owned()
    } else if name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization")
    {
        // The scheme says what kind of credential it was; the rest is the secret.
        match value.iter().position(|b| *b == b' ') {
            Some(space) => format!("{} {REDACTED}", String::from_utf8_lossy(&value[..space])),
            None => REDACTED.to_owned(),
        }
    } else {
        REDACTED.to_owned()
    };
    (name, value)
}

impl Flow {
    /// Parses a stored line.
    pub fn from_line(line: &[u8]) -> Result<Flow, serde_json::Error> {
        serde_json::from_slice(line)
    }

    /// The flow's id, read from a stored line without parsing the rest (ids are hex).
    pub fn id_of_line(line: &[u8]) -> Option<&str> {
        let start = memchr::memmem::find(line, b"\"id\":\"")? + 6;
        let length = line[start..].iter().position(|b| *b == b'"')?;
        std::str::from_utf8(&line[start..start + length]).ok()
    }

    /// The absolute URL, for exports: the target when it is one, else built from the
    /// scheme and `host`.
    pub fn absolute_url(&self) -> String {
        let url = &self.request.url;
        if url.contains("://") {
            return url.clone();
        }
        let scheme = self.request.scheme.as_deref().unwrap_or("http");
        let host = self.request.host.as_deref().unwrap_or("localhost");
        format!("{scheme}://{host}{url}")
    }

    /// The answer text: a stream's, else the JSON response's.
    pub fn answer(&self) -> Option<String> {
        if let Some(sse) = &self.sse {
            return sse.answer.clone();
        }
        let response = self.response.as_ref()?;
        crate::llm::answer_of_json(&response.body.data)
    }

    /// A short form for lists: everything but the bodies and events.
    pub fn summary(&self) -> Flow {
        let mut summary = Flow {
            request: FlowRequest {
                body: FlowBody {
                    data: Vec::new(),
                    ..self.request.body.clone()
                },
                headers: Vec::new(),
                ..self.request.clone()
            },
            response: self.response.as_ref().map(|response| FlowResponse {
                status: response.status,
                headers: Vec::new(),
                body: FlowBody {
                    data: Vec::new(),
                    ..response.body.clone()
                },
            }),
            sse: None,
            ..self.clone()
        };
        summary.request.body.truncated = false;
        if let Some(response) = summary.response.as_mut() {
            response.body.truncated = false;
        }
        summary
    }
}

impl Line for Flow {
    fn weight(&self) -> usize {
        let response = self.response.as_ref().map_or(0, |r| r.body.data.len());
        let events = self.sse.as_ref().map_or(0, |sse| {
            sse.events.iter().map(|e| e.data.len()).sum::<usize>()
                + sse.answer.as_ref().map_or(0, String::len)
        });
        // Heads and the rest: about a kilobyte.
        1024 + self.request.body.data.len() + response + events
    }

    fn write_line(&self, out: &mut Vec<u8>) {
        // Writing into a Vec fails only if serialising fails, which these types do not.
        let _ = serde_json::to_writer(out, self);
    }
}

impl FlowFacts for Flow {
    fn url(&self) -> &str {
        &self.request.url
    }

    fn method(&self) -> &str {
        &self.request.method
    }

    fn status(&self) -> Option<u16> {
        self.response.as_ref().map(|r| r.status)
    }

    fn headers(&self) -> Vec<(&str, &[u8])> {
        let response = self.response.iter().flat_map(|r| &r.headers);
        self.request
            .headers
            .iter()
            .chain(response)
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect()
    }

    fn bodies(&self) -> Vec<&[u8]> {
        let response = self.response.iter().map(|r| r.body.data.as_slice());
        std::iter::once(self.request.body.data.as_slice())
            .chain(response)
            .collect()
    }

    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn tokens(&self) -> Option<u64> {
        match (self.tokens.prompt, self.tokens.completion) {
            (None, None) => None,
            (prompt, completion) => Some(prompt.unwrap_or(0) + completion.unwrap_or(0)),
        }
    }

    fn time_to_first_token(&self) -> Option<Duration> {
        self.timings
            .ttft_ms
            .map(|ms| Duration::from_micros((ms * 1000.0) as u64))
    }

    fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    fn client(&self) -> Option<IpAddr> {
        self.client
    }
}

/// A chat flow for tests: POST with a JSON body, a 200 with a body that is not UTF-8,
/// tokens and timings.
#[cfg(test)]
pub(crate) fn example() -> Flow {
    Flow {
        v: FORMAT,
        id: "018c0a1b2c3d000001".into(),
        started: "2026-12-03T17:00:00.000Z".into(),
        client: Some("10.0.0.7".parse().unwrap()),
        route: Some("chat".into()),
        model: Some("gpt-4o".into()),
        request: FlowRequest {
            method: "POST".into(),
            url: "/v1/chat/completions".into(),
            http_version: "HTTP/1.1".into(),
            host: Some("api.example".into()),
            scheme: None,
            headers: vec![stored_header(b"authorization", b"Bearer sk-secret")],
            body: FlowBody::kept(br#"{"model":"gpt-4o"}"#.to_vec(), 18),
        },
        response: Some(FlowResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: FlowBody::kept(vec![0xff, 0x00, 0x41], 10),
        }),
        tokens: Tokens {
            prompt: Some(10),
            completion: Some(5),
        },
        timings: Timings {
            ttfb_ms: Some(1.5),
            ttft_ms: Some(2500.0),
            total_ms: 3000.25,
        },
        ..Flow::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::Filter;

    fn flow() -> Flow {
        example()
    }

    #[test]
    fn a_flow_survives_its_line_bodies_and_all() {
        let flow = flow();
        let mut line = Vec::new();
        flow.write_line(&mut line);
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(
            text.contains(r#""text":"{\"model\":\"gpt-4o\"}""#),
            "{text}"
        );
        assert!(text.contains(r#""base64":"/wBB""#), "{text}");
        assert!(text.contains(r#""truncated":true"#), "{text}");
        assert_eq!(Flow::from_line(&line).unwrap(), flow);
        assert_eq!(Flow::id_of_line(&line), Some("018c0a1b2c3d000001"));
    }

    #[test]
    fn credentials_are_redacted_but_named() {
        assert_eq!(
            stored_header(b"Authorization", b"Bearer sk-secret"),
            ("Authorization".into(), "Bearer [redacted]".into())
        );
        assert_eq!(
            stored_header(b"x-api-key", b"sk-ant-1").1,
            REDACTED.to_owned()
        );
        assert_eq!(stored_header(b"accept", b"*/*").1, "*/*");
    }

    #[test]
    fn filters_read_a_stored_flow() {
        let flow = flow();
        for (expression, expected) in [
            ("~m POST & ~c 2..", true),
            ("~tokens >10", true),
            ("~ttft >2s", true),
            ("~ttft >3s", false),
            ("~model gpt-4*", true),
            ("~client 10.0.0.0/8", true),
            ("~b gpt-4o", true),
            ("~h authorization:sk-secret", false),
            ("~route chat & !~version v2", true),
        ] {
            let filter = Filter::parse(expression).unwrap();
            assert_eq!(filter.matches(&flow), expected, "{expression}");
        }
    }

    #[test]
    fn urls_are_made_absolute_for_exports() {
        let mut flow = flow();
        assert_eq!(
            flow.absolute_url(),
            "http://api.example/v1/chat/completions"
        );
        flow.request.url = "http://site.example/a".into();
        assert_eq!(flow.absolute_url(), "http://site.example/a");
    }
}
