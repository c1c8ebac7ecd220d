//! A route's `include_usage`: a streamed OpenAI chat/completions request that does not
//! ask for usage gets `"stream_options": {"include_usage": true}` (every other byte of
//! its body kept), and the usage chunk this brings is dropped from the client's stream.

use bytes::Bytes;
use http::{HeaderValue, header};

use super::body_record::ResponseTransform;
use super::{Exchange, HeaderEdits, RequestView};
use crate::llm::{ReplyKind, UsageChunkFilter};
use crate::masking::Findings;
use crate::masking::json::{self, Member};
use crate::routing::Route;

/// What a request body says about usage on its stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    /// Not a streamed request (or not one read here): nothing to add.
    NotStreamed,
    /// The client asked for usage itself: its stream goes to it whole.
    ByClient,
    /// The body with `include_usage` added or set to `true`.
    Added(Vec<u8>),
}

/// The request body to send instead (`None`: unchanged), when the route adds
/// `include_usage` to this request: an OpenAI (chat) completions path, a body not
/// content-encoded. The answer is then asked for uncompressed, so its usage chunk can
/// be found and dropped as the stream passes.
pub(crate) fn on_request(
    route: &Route,
    view: &dyn RequestView,
    body: Option<&[u8]>,
    edits: &mut HeaderEdits,
    exchange: &mut Exchange,
) -> Option<Bytes> {
    if !route.include_usage || !view.path().ends_with("/completions") {
        return None;
    }
    let encoded = view
        .first(&header::CONTENT_ENCODING)
        .is_some_and(|v| !v.trim_ascii().is_empty() && !v.eq_ignore_ascii_case(b"identity"));
    if encoded {
        return None;
    }
    let body = body?;
    match with_include_usage(body) {
        Asked::Added(body) => {
            exchange.body.strip_usage = true;
            edits.set(
                &header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
            Some(Bytes::from(body))
        }
        Asked::ByClient | Asked::NotStreamed => None,
    }
}

/// Whether the answer's usage chunk is dropped: Junction asked for it, and the answer
/// is an uncompressed event stream (a compressed one passes whole: finding the chunk
/// would mean decoding and re-encoding the stream).
pub(crate) fn strips(
    exchange: &Exchange,
    content_type: Option<&[u8]>,
    content_encoding: Option<&[u8]>,
    has_body: bool,
) -> bool {
    let identity = content_encoding
        .map(<[u8]>::trim_ascii)
        .is_none_or(|v| v.is_empty() || v.eq_ignore_ascii_case(b"identity"));
    exchange.body.strip_usage
        && has_body
        && identity
        && content_type.is_some_and(|t| ReplyKind::of_content_type(t) == ReplyKind::EventStream)
}

/// Decides, on a request body, whether usage is asked for and adds it if not.
///
/// - `"stream": true` is required (the last `stream` member, as JSON parsers read it);
///   a body with two `stream` or two `stream_options` members is left alone.
/// - No `stream_options`: `,"stream_options":{"include_usage":true}` goes after the
///   last member; `"stream_options": null` becomes that object.
/// - `stream_options` an object without `include_usage`: `"include_usage":true` is
///   added as its last member (its other members kept); with `include_usage` `false`
///   or anything but `true`, that value becomes `true`. Either way the client did not
///   ask, and does not get the usage chunk.
/// - `include_usage: true` already: the client asked, and gets its chunk.
pub fn with_include_usage(body: &[u8]) -> Asked {
    if !json::is_valid(body) {
        return Asked::NotStreamed;
    }
    let Some((members, close)) = json::object_members(body, 0) else {
        return Asked::NotStreamed;
    };
    let named =
        |name: &str| -> Vec<&Member> { members.iter().filter(|m| m.is(body, name)).collect() };
    let (stream, options) = (named("stream"), named("stream_options"));
    let value = |m: &Member| &body[m.value.0..m.value.1];
    match stream.as_slice() {
        [stream] if value(stream) == b"true" => {}
        _ => return Asked::NotStreamed,
    }
    const OPTIONS: &[u8] = br#"{"include_usage":true}"#;
    let mut out = Vec::with_capacity(body.len() + 40);
    match options.as_slice() {
        [] => {
            // After the last member's value: whitespace before `}` stays where it was.
            let after = members.last().map_or(close, |m| m.value.1);
            out.extend_from_slice(&body[..after]);
            out.extend_from_slice(br#","stream_options":"#);
            out.extend_from_slice(OPTIONS);
            out.extend_from_slice(&body[after..]);
        }
        [options] if value(options) == b"null" => {
            out.extend_from_slice(&body[..options.value.0]);
            out.extend_from_slice(OPTIONS);
            out.extend_from_slice(&body[options.value.1..]);
        }
        [options] => {
            let Some((inner, inner_close)) = json::object_members(body, options.value.0) else {
                return Asked::NotStreamed;
            };
            let flags: Vec<&Member> = inner
                .iter()
                .filter(|m| m.is(body, "include_usage"))
                .collect();
            match flags.as_slice() {
                [flag] if value(flag) == b"true" => return Asked::ByClient,
                [flag] => {
                    out.extend_from_slice(&body[..flag.value.0]);
                    out.extend_from_slice(b"true");
                    out.extend_from_slice(&body[flag.value.1..]);
                }
                [] => {
                    let (after, member): (usize, &[u8]) = match inner.last() {
                        Some(last) => (last.value.1, br#","include_usage":true"#),
                        None => (inner_close, br#""include_usage":true"#),
                    };
                    out.extend_from_slice(&body[..after]);
                    out.extend_from_slice(member);
                    out.extend_from_slice(&body[after..]);
                }
                _ => return Asked::NotStreamed,
            }
        }
        _ => return Asked::NotStreamed,
    }
    Asked::Added(out)
}

/// The response transform that drops the usage chunk, before the route's own
/// transform (masking) if it has one.
pub(crate) struct StripUsage {
    pub(crate) filter: UsageChunkFilter,
    pub(crate) next: Option<Box<dyn ResponseTransform>>,
}

impl ResponseTransform for StripUsage {
    fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        match self.next.as_mut() {
            None => {
                self.filter.push(data, out);
                Ok(())
            }
            Some(next) => {
                let mut kept = Vec::with_capacity(data.len());
                self.filter.push(data, &mut kept);
                next.on_data(&kept, out)
            }
        }
    }

    fn on_end(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        match self.next.as_mut() {
            None => {
                self.filter.finish(out);
                Ok(())
            }
            Some(next) => {
                let mut kept = Vec::new();
                self.filter.finish(&mut kept);
                next.on_data(&kept, out)?;
                next.on_end(out)
            }
        }
    }

    fn findings(&self) -> Option<&Findings> {
        self.next.as_ref().and_then(|next| next.findings())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(body: &str) -> String {
        match with_include_usage(body.as_bytes()) {
            Asked::Added(out) => String::from_utf8(out).unwrap(),
            other => panic!("{other:?} for {body}"),
        }
    }

    #[test]
    fn the_field_is_added_and_every_other_byte_kept() {
        let body = "{ \"model\" : \"gpt-4o\",\n \"messages\": [{\"role\":\"user\",\"content\":\"stream_options\"}],\n \"stream\" :true }\n";
        assert_eq!(
            added(body),
            "{ \"model\" : \"gpt-4o\",\n \"messages\": [{\"role\":\"user\",\"content\":\"stream_options\"}],\n \"stream\" :true,\"stream_options\":{\"include_usage\":true} }\n"
        );
        assert_eq!(
            added(r#"{"stream":true,"stream_options":null,"n":1}"#),
            r#"{"stream":true,"stream_options":{"include_usage":true},"n":1}"#
        );
        assert_eq!(
            added(r#"{"stream":true,"stream_options":{"continuous_usage_stats": true }}"#),
            r#"{"stream":true,"stream_options":{"continuous_usage_stats": true,"include_usage":true }}"#
        );
        assert_eq!(
            added(r#"{"stream":true,"stream_options":{ }}"#),
            r#"{"stream":true,"stream_options":{ "include_usage":true}}"#
        );
        assert_eq!(
            added(r#"{"stream":true,"stream_options":{"include_usage" : false}}"#),
            r#"{"stream":true,"stream_options":{"include_usage" : true}}"#
        );
        // An escaped key is the same key.
        assert_eq!(
            added(r#"{"str\u0065am":true,"x":[1,{"a":"}"}]}"#),
            r#"{"str\u0065am":true,"x":[1,{"a":"}"}],"stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn bodies_left_alone() {
        let same = |body: &str| with_include_usage(body.as_bytes());
        assert_eq!(
            same(r#"{"stream":true,"stream_options":{"include_usage":true}}"#),
            Asked::ByClient
        );
        for body in [
            r#"{"stream":false}"#,
            r#"{"messages":[{"stream":true}]}"#,
            r#"{"stream":"true"}"#,
            r#"{"stream":true,"stream":true}"#,
            r#"{"stream":true,"stream_options":1}"#,
            r#"{"stream":true,"stream_options":{},"stream_options":{}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":1,"include_usage":2}}"#,
            r#"{"stream":true"#,
            r#"[{"stream":true}]"#,
            "not json",
            "",
        ] {
            assert_eq!(same(body), Asked::NotStreamed, "{body}");
        }
    }
    /// The route's own transform after the strip: upper-cases what it is given.
    struct Upper;

    impl ResponseTransform for Upper {
        fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
            out.extend(data.iter().map(u8::to_ascii_uppercase));
            Ok(())
        }

        fn on_end(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
            out.extend_from_slice(b"END");
            Ok(())
        }

        fn findings(&self) -> Option<&Findings> {
            None
        }
    }

    #[test]
    fn the_strip_runs_before_the_routes_own_transform() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\ndata: [DONE]\n\n";
        for next in [None, Some(Box::new(Upper) as Box<dyn ResponseTransform>)] {
            let upper = next.is_some();
            let mut strip = StripUsage {
                filter: UsageChunkFilter::default(),
                next,
            };
            let mut out = Vec::new();
            let (a, b) = stream.split_at(70);
            strip.on_data(a.as_bytes(), &mut out).unwrap();
            strip.on_data(b.as_bytes(), &mut out).unwrap();
            strip.on_end(&mut out).unwrap();
            let kept = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n";
            let expected = match upper {
                true => format!("{}END", kept.to_ascii_uppercase()),
                false => kept.to_string(),
            };
            assert_eq!(String::from_utf8(out).unwrap(), expected);
            assert_eq!(strip.filter.dropped, 1);
        }
    }
}
