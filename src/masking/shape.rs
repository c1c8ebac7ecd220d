//! What a body is, from the request path and the content type: the JSON of a known AI
//! API (whose message contents are masked), other JSON (every string), text, an event
//! stream, or bytes that cannot be masked.

use std::ops::Range;

/// The AI APIs whose bodies Junction reads field by field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI `/v1/chat/completions` (also vLLM, TGI, SGLang, Ollama, LiteLLM).
    OpenAiChat,
    /// OpenAI `/v1/completions`.
    OpenAiCompletions,
    /// OpenAI `/v1/responses`.
    OpenAiResponses,
    /// OpenAI `/v1/embeddings`.
    OpenAiEmbeddings,
    /// Anthropic `/v1/messages`.
    AnthropicMessages,
    /// Ollama's own `/api/chat`.
    OllamaChat,
    /// Ollama's own `/api/generate`.
    OllamaGenerate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodyShape {
    /// JSON of a known API: only the message contents are masked.
    ApiJson(Api),
    /// Any other JSON: every string value (not the keys).
    OtherJson,
    /// `text/*`: all of the text.
    Text,
    /// `text/event-stream`, of a known API when the path names one.
    EventStream(Option<Api>),
    /// JSON lines (`application/x-ndjson`, as Ollama streams), of a known API when the
    /// path names one.
    JsonLines(Option<Api>),
    /// `multipart/form-data` (file uploads, the Batch API's JSONL, audio with its
    /// form fields): each part masked by its own type. A request's shape only.
    Multipart(Boundary),
    /// `application/x-www-form-urlencoded`: every field's value (not the names). A
    /// request's shape only.
    UrlEncodedForm,
    /// Anything else (images, audio, compressed or unknown types).
    Binary,
}

/// A `multipart/form-data` body's boundary, as RFC 2046 allows it: 1 to 70 of its
/// characters, not ending in a blank. Held inline so that a [`BodyShape`] stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Boundary {
    len: u8,
    bytes: [u8; Boundary::MAX],
}

impl Boundary {
    pub const MAX: usize = 70;

    /// The boundary, if `value` is one RFC 2046 allows.
    pub fn new(value: &[u8]) -> Option<Boundary> {
        let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(b);
        if value.is_empty()
            || value.len() > Self::MAX
            || value.ends_with(b" ")
            || !value.iter().all(allowed)
        {
            return None;
        }
        let mut bytes = [0; Self::MAX];
        bytes[..value.len()].copy_from_slice(value);
        Some(Boundary {
            len: value.len() as u8,
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Boundary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Boundary({:?})",
            String::from_utf8_lossy(self.as_bytes())
        )
    }
}

impl BodyShape {
    pub fn is_maskable(self) -> bool {
        self != BodyShape::Binary
    }

    /// The shape of the body as it is on the wire with `content_encoding`: a body
    /// encoded other than `identity` is `Binary` (refused when masked, never passed on
    /// unmasked) unless the caller decodes it first and keeps the shape.
    pub fn as_encoded(self, content_encoding: Option<&[u8]>) -> BodyShape {
        match content_encoding.map(<[u8]>::trim_ascii) {
            None | Some(b"") => self,
            Some(coding) if coding.eq_ignore_ascii_case(b"identity") => self,
            Some(_) => BodyShape::Binary,
        }
    }
}

/// The API a request path names, by its last segments (so `/v1/...`, Azure's
/// `/openai/deployments/x/...` and gateways' prefixes all match); the query is ignored.
pub fn api_of_path(path: &[u8]) -> Option<Api> {
    let path = match path.iter().position(|b| *b == b'?' || *b == b'#') {
        Some(end) => &path[..end],
        None => path,
    };
    let mut path = path;
    while let [rest @ .., b'/'] = path {
        path = rest;
    }
    if path.ends_with(b"/chat/completions") {
        Some(Api::OpenAiChat)
    } else if path.ends_with(b"/completions") {
        Some(Api::OpenAiCompletions)
    } else if path.ends_with(b"/responses") {
        Some(Api::OpenAiResponses)
    } else if path.ends_with(b"/embeddings") {
        Some(Api::OpenAiEmbeddings)
    } else if path.ends_with(b"/messages") {
        Some(Api::AnthropicMessages)
    } else if path.ends_with(b"/api/chat") {
        Some(Api::OllamaChat)
    } else if path.ends_with(b"/api/generate") {
        Some(Api::OllamaGenerate)
    } else {
        None
    }
}

/// The media type of a `Content-Type` value, without parameters (compared whatever its
/// case: no lower-cased copy is made on every masked request).
fn media_type(content_type: &[u8]) -> &[u8] {
    let end = content_type
        .iter()
        .position(|b| *b == b';')
        .unwrap_or(content_type.len());
    content_type[..end].trim_ascii()
}

/// The value of the parameter `name` of a `Content-Type` value (`boundary=x`,
/// `boundary="x y"`), unquoted. `None` when it is missing, given twice, or the
/// parameters cannot be read: a body whose framing is in doubt is not guessed at.
pub(crate) fn parameter(content_type: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut found = None;
    for span in parameter_spans(content_type)? {
        if content_type[span.key.clone()].eq_ignore_ascii_case(name.as_bytes()) {
            if found.is_some() {
                return None;
            }
            found = Some(span.unquoted(content_type));
        }
    }
    found
}

/// Where one parameter of a header value (`; name="x"`) lies in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParameterSpan {
    pub key: Range<usize>,
    /// The value as written: inside the quotes of a quoted string, escapes included.
    pub value: Range<usize>,
    pub quoted: bool,
}

impl ParameterSpan {
    /// The value with a quoted string's escapes undone.
    pub fn unquoted(&self, header: &[u8]) -> Vec<u8> {
        let raw = &header[self.value.clone()];
        if !self.quoted {
            return raw.to_vec();
        }
        let mut value = Vec::with_capacity(raw.len());
        let mut escaped = false;
        for &b in raw {
            if b == b'\\' && !escaped {
                escaped = true;
                continue;
            }
            escaped = false;
            value.push(b);
        }
        value
    }
}

/// The parameters after a header value's first `;` (none without one), in order, or
/// `None` when they cannot be read: a key that is not a token, an unclosed quote, text
/// after a value.
pub(crate) fn parameter_spans(header: &[u8]) -> Option<Vec<ParameterSpan>> {
    let blank = |b: &&u8| matches!(b, b' ' | b'\t');
    let Some(mut at) = header.iter().position(|b| *b == b';') else {
        return Some(Vec::new());
    };
    let mut spans = Vec::new();
    loop {
        at += header[at..].iter().take_while(blank).count();
        match header.get(at) {
            None => return Some(spans),
            Some(b';') => {
                at += 1;
                continue;
            }
            Some(_) => {}
        }
        let equals = at + header[at..].iter().position(|b| *b == b'=')?;
        let key = at..equals - header[at..equals].iter().rev().take_while(blank).count();
        if key.is_empty()
            || header[key.clone()]
                .iter()
                .any(|b| matches!(b, b';' | b'"' | b' ' | b'\t'))
        {
            return None;
        }
        at = equals + 1;
        let (value, quoted) = if header.get(at) == Some(&b'"') {
            let start = at + 1;
            let mut end = start;
            loop {
                match header.get(end)? {
                    b'"' => break,
                    b'\\' => {
                        header.get(end + 1)?;
                        end += 2;
                    }
                    _ => end += 1,
                }
            }
            at = end + 1;
            (start..end, true)
        } else {
            let end = header[at..]
                .iter()
                .position(|b| *b == b';')
                .map_or(header.len(), |found| at + found);
            let leading = header[at..end].iter().take_while(blank).count();
            let trailing = header[at + leading..end]
                .iter()
                .rev()
                .take_while(blank)
                .count();
            let value = at + leading..end - trailing;
            at = end;
            (value, false)
        };
        // Only blanks may stand between a value and the next `;`.
        at += header[at..].iter().take_while(blank).count();
        if !matches!(header.get(at), None | Some(b';')) {
            return None;
        }
        spans.push(ParameterSpan { key, value, quoted });
    }
}

fn shape_of(api: Option<Api>, content_type: Option<&[u8]>) -> BodyShape {
    let Some(content_type) = content_type else {
        // Clients of the AI APIs sometimes leave the type out; anything else unlabelled
        // cannot be read safely.
        return api.map_or(BodyShape::Binary, BodyShape::ApiJson);
    };
    let media = media_type(content_type);
    let is = |name: &str| media.eq_ignore_ascii_case(name.as_bytes());
    let ends_with = |tail: &[u8]| {
        media.len() >= tail.len() && media[media.len() - tail.len()..].eq_ignore_ascii_case(tail)
    };
    if is("text/event-stream") {
        BodyShape::EventStream(api)
    } else if is("application/x-ndjson")
        || is("application/ndjson")
        || is("application/jsonl")
        || is("application/x-jsonlines")
    {
        BodyShape::JsonLines(api)
    } else if is("application/json") || ends_with(b"+json") {
        api.map_or(BodyShape::OtherJson, BodyShape::ApiJson)
    } else if is("multipart/form-data") {
        parameter(content_type, "boundary")
            .and_then(|boundary| Boundary::new(&boundary))
            .map_or(BodyShape::Binary, BodyShape::Multipart)
    } else if is("application/x-www-form-urlencoded") {
        BodyShape::UrlEncodedForm
    } else if media
        .get(..5)
        .is_some_and(|head| head.eq_ignore_ascii_case(b"text/"))
    {
        BodyShape::Text
    } else {
        BodyShape::Binary
    }
}

/// The shape of a request body sent to `path` with `content_type`.
pub fn request_shape(path: &[u8], content_type: Option<&[u8]>) -> BodyShape {
    shape_of(api_of_path(path), content_type)
}

/// The shape of the response to a request for `request_path`, from the response's
/// `content_type`.
pub fn response_shape(request_path: &[u8], content_type: Option<&[u8]>) -> BodyShape {
    let api = api_of_path(request_path);
    match content_type {
        // A response without a type is not guessed at, even on an API path.
        None => BodyShape::Binary,
        Some(_) => match shape_of(api, content_type) {
            // Forms are what clients send; an answer in one is not read.
            BodyShape::Multipart(_) | BodyShape::UrlEncodedForm => BodyShape::Binary,
            shape => shape,
        },
    }
}

/// The shape of one part of a `multipart/form-data` body, from its own `Content-Type`
/// and file name: a form field without a type is text; a file sent as
/// `application/octet-stream` or without a type (as HTTP clients label a `.jsonl` they
/// do not know) is read by its extension when that names text or JSON. Parts are never
/// read as an AI API's JSON: a JSON part has every string masked.
pub fn part_shape(content_type: Option<&[u8]>, filename: Option<&[u8]>) -> BodyShape {
    let by_name = || {
        let name = filename?;
        let dot = name.iter().rposition(|b| *b == b'.')?;
        let extension = &name[dot + 1..];
        let is = |e: &str| extension.eq_ignore_ascii_case(e.as_bytes());
        Some(if is("jsonl") || is("ndjson") {
            BodyShape::JsonLines(None)
        } else if is("json") {
            BodyShape::OtherJson
        } else if is("txt") || is("md") || is("csv") || is("tsv") || is("log") {
            BodyShape::Text
        } else {
            return None;
        })
    };
    let shape = match content_type {
        None if filename.is_none() => BodyShape::Text,
        None => by_name().unwrap_or(BodyShape::Binary),
        Some(content_type)
            if media_type(content_type).eq_ignore_ascii_case(b"application/octet-stream") =>
        {
            by_name().unwrap_or(BodyShape::Binary)
        }
        Some(_) => shape_of(None, content_type),
    };
    match shape {
        // A form inside a form is not read.
        BodyShape::Multipart(_) | BodyShape::UrlEncodedForm => BodyShape::Binary,
        shape => shape,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_types_give_shapes() {
        let json = Some(&b"application/json; charset=utf-8"[..]);
        assert_eq!(
            request_shape(b"/v1/chat/completions", json),
            BodyShape::ApiJson(Api::OpenAiChat)
        );
        assert_eq!(
            request_shape(
                b"/openai/deployments/gpt/chat/completions?api-version=2024-10-21",
                json
            ),
            BodyShape::ApiJson(Api::OpenAiChat)
        );
        assert_eq!(
            request_shape(b"/v1/completions", json),
            BodyShape::ApiJson(Api::OpenAiCompletions)
        );
        assert_eq!(
            request_shape(b"/v1/responses/", None),
            BodyShape::ApiJson(Api::OpenAiResponses)
        );
        assert_eq!(
            request_shape(b"/v1/embeddings", json),
            BodyShape::ApiJson(Api::OpenAiEmbeddings)
        );
        assert_eq!(
            request_shape(b"/v1/messages", Some(b"Application/JSON")),
            BodyShape::ApiJson(Api::AnthropicMessages)
        );
        assert_eq!(request_shape(b"/api/x", json), BodyShape::OtherJson);
        assert_eq!(
            request_shape(b"/api/x", Some(b"application/vnd.api+json")),
            BodyShape::OtherJson
        );
        assert_eq!(
            request_shape(b"/api/x", Some(b"text/plain")),
            BodyShape::Text
        );
        assert_eq!(request_shape(b"/api/x", None), BodyShape::Binary);
        assert_eq!(BodyShape::Text.as_encoded(Some(b"gzip")), BodyShape::Binary);
        assert_eq!(
            BodyShape::Text.as_encoded(Some(b" Identity")),
            BodyShape::Text
        );
        assert_eq!(BodyShape::Text.as_encoded(None), BodyShape::Text);
        assert_eq!(
            request_shape(b"/upload", Some(b"image/png")),
            BodyShape::Binary
        );
        assert_eq!(
            response_shape(b"/v1/messages", Some(b"text/event-stream")),
            BodyShape::EventStream(Some(Api::AnthropicMessages))
        );
        assert_eq!(
            response_shape(b"/v1/chat/completions", None),
            BodyShape::Binary
        );
        assert_eq!(
            request_shape(b"/api/chat", json),
            BodyShape::ApiJson(Api::OllamaChat)
        );
        assert_eq!(
            response_shape(b"/api/generate", Some(b"application/x-ndjson")),
            BodyShape::JsonLines(Some(Api::OllamaGenerate))
        );
    }

    #[test]
    fn a_form_s_boundary_is_read_or_the_form_is_not() {
        let form = |content_type: &str| request_shape(b"/v1/files", Some(content_type.as_bytes()));
        let boundary = |value: &str| BodyShape::Multipart(Boundary::new(value.as_bytes()).unwrap());
        assert_eq!(
            form("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxk"),
            boundary("----WebKitFormBoundary7MA4YWxk")
        );
        assert_eq!(
            form(r#"Multipart/Form-Data;charset=utf-8 ; BOUNDARY="a b:c=d\'e" "#),
            boundary("a b:c=d'e")
        );
        assert_eq!(
            form(&format!("multipart/form-data; boundary={}", "x".repeat(70))),
            boundary(&"x".repeat(70))
        );
        for unreadable in [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=a;boundary=b",
            "multipart/form-data; boundary=a<b",
            "multipart/form-data; boundary=\"a \"",
            "multipart/form-data; boundary=\"ab",
            "multipart/form-data; boundary=\"ab\"c",
            "multipart/mixed; boundary=ab",
        ] {
            assert_eq!(form(unreadable), BodyShape::Binary, "{unreadable}");
        }
        assert_eq!(
            form(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            BodyShape::Binary
        );
        assert_eq!(
            form("application/x-www-form-urlencoded; charset=UTF-8"),
            BodyShape::UrlEncodedForm
        );
        // Answers in forms are not read.
        assert_eq!(
            response_shape(b"/x", Some(b"application/x-www-form-urlencoded")),
            BodyShape::Binary
        );
        assert_eq!(
            response_shape(b"/x", Some(b"multipart/form-data; boundary=a")),
            BodyShape::Binary
        );
    }

    #[test]
    fn a_part_is_typed_by_its_header_then_its_file_name() {
        assert_eq!(part_shape(None, None), BodyShape::Text);
        assert_eq!(
            part_shape(None, Some(b"a.JSONL")),
            BodyShape::JsonLines(None)
        );
        assert_eq!(
            part_shape(Some(b"application/octet-stream"), Some(b"x.json")),
            BodyShape::OtherJson
        );
        assert_eq!(
            part_shape(Some(b"application/octet-stream"), None),
            BodyShape::Binary
        );
        assert_eq!(part_shape(None, Some(b"photo.png")), BodyShape::Binary);
        assert_eq!(part_shape(None, Some(b"README")), BodyShape::Binary);
        assert_eq!(
            part_shape(Some(b"image/png"), Some(b"a.txt")),
            BodyShape::Binary
        );
        assert_eq!(
            part_shape(Some(b"application/json"), None),
            BodyShape::OtherJson
        );
        assert_eq!(
            part_shape(Some(b"multipart/form-data; boundary=b"), None),
            BodyShape::Binary
        );
    }

    /// What `shape_of` did with a lower-cased copy of the media type.
    fn shape_of_lowered(api: Option<Api>, content_type: &[u8]) -> BodyShape {
        let end = content_type
            .iter()
            .position(|b| *b == b';')
            .unwrap_or(content_type.len());
        let media = String::from_utf8_lossy(content_type[..end].trim_ascii()).to_ascii_lowercase();
        if media == "text/event-stream" {
            BodyShape::EventStream(api)
        } else if matches!(
            media.as_str(),
            "application/x-ndjson"
                | "application/ndjson"
                | "application/jsonl"
                | "application/x-jsonlines"
        ) {
            BodyShape::JsonLines(api)
        } else if media == "application/json" || media.ends_with("+json") {
            api.map_or(BodyShape::OtherJson, BodyShape::ApiJson)
        } else if media.starts_with("text/") {
            BodyShape::Text
        } else {
            BodyShape::Binary
        }
    }

    proptest::proptest! {
        /// Types compared whatever their case, without a lower-cased copy, give the
        /// shapes the copy gave: any case, parameters, blanks and bytes.
        #[test]
        fn media_types_are_read_as_a_lower_cased_copy_read_them(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "text/", "TEXT/", "Text/", "event-stream", "Event-Stream", "plain",
                    "application/", "APPLICATION/", "json", "JSON", "+json", "+JSON",
                    "x-ndjson", "ndjson", "jsonl", "x-jsonlines", "vnd.api", " ", "\t",
                    "; charset=utf-8", ";", "\u{e9}", "\u{fffd}", "x",
                ]),
                0..5,
            ),
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..3),
            api in proptest::option::of(proptest::sample::select(vec![Api::OpenAiChat, Api::AnthropicMessages])),
        ) {
            let mut content_type = pieces.concat().into_bytes();
            content_type.extend_from_slice(&raw);
            proptest::prop_assert_eq!(
                shape_of(api, Some(&content_type)),
                shape_of_lowered(api, &content_type)
            );
            content_type.splice(0..0, raw.iter().copied());
            proptest::prop_assert_eq!(
                shape_of(api, Some(&content_type)),
                shape_of_lowered(api, &content_type)
            );
        }
    }
}
