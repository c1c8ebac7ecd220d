//! `junction flows`: a capture directory's flows exported for other tools, as a HAR 1.2
//! document (browsers' dev tools, HAR viewers, mitmproxy) or as the stored JSON lines.
//! The HAR mapping is a pure function of the flows; docs/inspection.md describes it.

use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};

use super::filter::Filter;
use super::flow::{Flow, FlowBody, REDACTED, Tokens};
use super::ring::newest_flows;

/// What `junction flows --export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One HAR 1.2 document.
    Har,
    /// Each flow's stored line, unchanged.
    Jsonl,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<ExportFormat, String> {
        match text {
            "har" => Ok(ExportFormat::Har),
            "jsonl" => Ok(ExportFormat::Jsonl),
            _ => Err(format!("unknown export format {text:?}: `har` or `jsonl`")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: ExportFormat,
    pub filter: Option<Filter>,
    /// The newest this many of the flows the filter matches; `None`: all of them.
    pub limit: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: no such directory", .0.display())]
    NoDirectory(PathBuf),
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: {source}", dir.display())]
    Read { dir: PathBuf, source: io::Error },
    #[error("writing {to}: {source}")]
    Write { to: String, source: io::Error },
}

/// Exports the flows of capture directory `dir` to `out` (stdout when `None`), oldest
/// first, and says how many. Nothing is written, and no file created, when the
/// directory cannot be read.
pub fn export_dir(
    dir: &Path,
    options: &ExportOptions,
    out: Option<&Path>,
) -> Result<usize, ExportError> {
    let (document, count) = render(dir, options)?;
    let to = out.map_or_else(|| "stdout".to_owned(), |path| path.display().to_string());
    let written = match out {
        Some(path) => fs::write(path, &document),
        None => {
            let mut stdout = io::stdout().lock();
            stdout.write_all(&document).and_then(|()| stdout.flush())
        }
    };
    written.map_err(|source| ExportError::Write { to, source })?;
    Ok(count)
}

/// The export of `dir` as bytes, and the number of flows in it.
pub fn render(dir: &Path, options: &ExportOptions) -> Result<(Vec<u8>, usize), ExportError> {
    let filter = options.filter.as_ref();
    match options.format {
        ExportFormat::Jsonl => {
            let lines = matching_flows(dir, filter, options.limit, |line, _| line.to_vec())?;
            let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
            for line in &lines {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
            Ok((out, lines.len()))
        }
        ExportFormat::Har => {
            let flows = matching_flows(dir, filter, options.limit, |_, flow| flow)?;
            let mut out = serde_json::to_vec_pretty(&har(&flows))
                .expect("a serde_json::Value always serialises");
            out.push(b'\n');
            Ok((out, flows.len()))
        }
    }
}

/// The newest `limit` flows of `dir` that `filter` matches, oldest first, each as `keep`
/// makes it of its stored line and its parsed flow.
fn matching_flows<T>(
    dir: &Path,
    filter: Option<&Filter>,
    limit: Option<usize>,
    keep: impl Fn(&[u8], Flow) -> T,
) -> Result<Vec<T>, ExportError> {
    // The ring reads a missing directory as an empty one; asked for by name, it is an
    // error (a mistyped path must not export nothing and succeed).
    match fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(ExportError::NotADirectory(dir.to_path_buf())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(ExportError::NoDirectory(dir.to_path_buf()));
        }
        Err(source) => {
            return Err(ExportError::Read {
                dir: dir.to_path_buf(),
                source,
            });
        }
    }
    let mut flows = newest_flows(dir, limit.unwrap_or(usize::MAX), |line| {
        let flow = Flow::from_line(line).ok()?;
        filter
            .is_none_or(|f| f.matches(&flow))
            .then(|| keep(line, flow))
    })
    .map_err(|source| ExportError::Read {
        dir: dir.to_path_buf(),
        source,
    })?;
    flows.reverse();
    Ok(flows)
}

/// A HAR 1.2 document of `flows`, in their order.
pub fn har(flows: &[Flow]) -> Value {
    json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "junction", "version": env!("CARGO_PKG_VERSION") },
            "entries": flows.iter().map(har_entry).collect::<Vec<_>>(),
        }
    })
}

/// What HAR has no field for, under the `_junction` custom field.
#[derive(Serialize)]
struct JunctionFields<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "no_tokens")]
    tokens: &'a Tokens,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttft_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    masked: Option<&'a str>,
}

fn no_tokens(tokens: &&Tokens) -> bool {
    tokens.prompt.is_none() && tokens.completion.is_none()
}

fn har_entry(flow: &Flow) -> Value {
    let total = non_negative(flow.timings.total_ms);
    // Clamped to the total, so that the timings add up to `time` as HAR asks.
    let wait = non_negative(flow.timings.ttfb_ms.unwrap_or(0.0)).min(total);
    let junction = JunctionFields {
        id: &flow.id,
        route: flow.route.as_deref(),
        pool: flow.pool.as_deref(),
        version: flow.version.as_deref(),
        endpoint: flow.endpoint.as_deref(),
        request_id: flow.request_id.as_deref(),
        key: flow.key.as_deref(),
        client: flow.client,
        model: flow.model.as_deref(),
        tokens: &flow.tokens,
        ttft_ms: flow.timings.ttft_ms,
        answer: flow.answer(),
        error: flow.error.as_deref(),
        masked: flow.masked.as_deref(),
    };
    json!({
        "startedDateTime": flow.started,
        "time": total,
        "request": har_request(flow),
        "response": har_response(flow),
        "cache": {},
        "timings": {
            "blocked": -1, "dns": -1, "connect": -1, "ssl": -1,
            "send": 0,
            "wait": wait,
            "receive": to_microseconds(total - wait),
        },
        "_junction": junction,
    })
}

fn har_request(flow: &Flow) -> Value {
    let request = &flow.request;
    let url = flow.absolute_url();
    let mut har = json!({
        "method": request.method,
        "url": url,
        "httpVersion": request.http_version,
        "cookies": request_cookies(&request.headers),
        "headers": har_headers(&request.headers),
        "queryString": query_string(&url),
        "headersSize": -1,
        "bodySize": request.body.size,
    });
    let body = &request.body;
    if body.size > 0 || !body.data.is_empty() {
        let mut post = json!({
            "mimeType": header(&request.headers, "content-type").unwrap_or(""),
            "text": String::from_utf8_lossy(&body.data),
        });
        // postData has no `encoding`: bytes that are not UTF-8 can only be shown lossily.
        let lossy = body.text().is_none().then_some(
            "not UTF-8: shown with U+FFFD for invalid bytes; the jsonl export keeps them",
        );
        if let Some(comment) = body_comment(body, lossy) {
            post["comment"] = comment.into();
        }
        har["postData"] = post;
    }
    har
}

fn har_response(flow: &Flow) -> Value {
    let Some(response) = &flow.response else {
        // As browsers export a request that got no answer: status 0, nothing received.
        return json!({
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": { "size": 0, "mimeType": "" },
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
            "comment": "no response: the client went away, or no answer came, before a response head",
        });
    };
    let body = &response.body;
    let mut content = json!({
        "size": body.size,
        "mimeType": header(&response.headers, "content-type").unwrap_or(""),
    });
    if !body.data.is_empty() {
        match body.text() {
            Some(text) => content["text"] = text.into(),
            None => {
                content["text"] = base64::engine::general_purpose::STANDARD
                    .encode(&body.data)
                    .into();
                content["encoding"] = "base64".into();
            }
        }
    }
    if let Some(comment) = body_comment(body, None) {
        content["comment"] = comment.into();
    }
    let reason = http::StatusCode::from_u16(response.status)
        .ok()
        .and_then(|status| status.canonical_reason());
    json!({
        "status": response.status,
        "statusText": reason.unwrap_or(""),
        // The response the client got came over its own connection, in its version.
        "httpVersion": flow.request.http_version,
        "cookies": response_cookies(&response.headers),
        "headers": har_headers(&response.headers),
        "content": content,
        "redirectURL": header(&response.headers, "location").unwrap_or(""),
        "headersSize": -1,
        "bodySize": body.size,
    })
}

/// What a reader of the HAR must know about a body that is not whole as stored.
fn body_comment(body: &FlowBody, note: Option<&str>) -> Option<String> {
    let truncated = body.truncated.then(|| {
        format!(
            "truncated: the first {} of {} bytes kept",
            body.data.len(),
            body.size
        )
    });
    match (truncated, note) {
        (Some(truncated), Some(note)) => Some(format!("{truncated}; {note}")),
        (truncated, note) => truncated.or_else(|| note.map(str::to_owned)),
    }
}

fn har_headers(headers: &[(String, String)]) -> Vec<Value> {
    headers
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect()
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// `Cookie` pairs. Stored flows redact cookies, which leaves none to list.
fn request_cookies(headers: &[(String, String)]) -> Vec<Value> {
    headers
        .iter()
        .filter(|(name, value)| name.eq_ignore_ascii_case("cookie") && value != REDACTED)
        .flat_map(|(_, value)| value.split(';'))
        .filter_map(cookie_pair)
        .collect()
}

/// Each `Set-Cookie`'s name and value (its attributes are in the headers).
fn response_cookies(headers: &[(String, String)]) -> Vec<Value> {
    headers
        .iter()
        .filter(|(name, value)| name.eq_ignore_ascii_case("set-cookie") && value != REDACTED)
        .filter_map(|(_, value)| cookie_pair(value.split(';').next()?))
        .collect()
}

fn cookie_pair(pair: &str) -> Option<Value> {
    let (name, value) = pair.split_once('=')?;
    let name = name.trim();
    (!name.is_empty()).then(|| json!({ "name": name, "value": value.trim() }))
}

/// The URL's query as name and value pairs, percent-decoded.
fn query_string(url: &str) -> Vec<Value> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split_once('#').map_or(query, |(query, _)| query);
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            json!({ "name": percent_decode(name), "value": percent_decode(value) })
        })
        .collect()
}

/// `%XX` escapes decoded, and `+` read as a space as forms encode it (what HAR viewers
/// and mitmproxy show); a `%` not followed by two hex digits stays as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[at], escaped) {
            (_, Some(byte)) => {
                decoded.push(byte);
                at += 3;
            }
            (b'+', None) => {
                decoded.push(b' ');
                at += 1;
            }
            (byte, None) => {
                decoded.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// A duration in milliseconds as HAR takes it: a hand-edited or broken record's
/// negative or non-finite value counts as none.
fn non_negative(ms: f64) -> f64 {
    if ms.is_finite() && ms > 0.0 { ms } else { 0.0 }
}

/// Milliseconds rounded to the microseconds the flow's timings carry, so that a
/// difference of two does not print as `2998.7500000000005`.
fn to_microseconds(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::flow::{FlowResponse, SseRecord, stored_header};

    fn flow() -> Flow {
        let mut flow = crate::inspect::flow::example();
        flow.pool = Some("openai".into());
        flow.request.url = "/v1/chat/completions?user=a%20b&flag&q=x+y#frag".into();
        flow.request.scheme = Some("https".into());
        flow.request.headers = vec![
            ("content-type".into(), "application/json".into()),
            stored_header(b"authorization", b"Bearer sk-secret"),
            stored_header(b"cookie", b"session=abc"),
        ];
        if let Some(response) = flow.response.as_mut() {
            response.headers = vec![("content-type".into(), "application/octet-stream".into())];
        }
        flow
    }

    fn entry(flow: &Flow) -> Value {
        har(std::slice::from_ref(flow))["log"]["entries"][0].clone()
    }

    #[test]
    fn the_document_says_what_made_it() {
        let document = har(&[flow(), flow()]);
        assert_eq!(document["log"]["version"], "1.2");
        assert_eq!(document["log"]["creator"]["name"], "junction");
        assert_eq!(
            document["log"]["creator"]["version"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(document["log"]["entries"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_request_maps_with_its_query_body_and_redacted_headers() {
        let entry = entry(&flow());
        assert_eq!(entry["startedDateTime"], "2026-12-03T17:00:00.000Z");
        let request = &entry["request"];
        assert_eq!(
            request["url"],
            "https://api.example/v1/chat/completions?user=a%20b&flag&q=x+y#frag"
        );
        assert_eq!(
            request["queryString"],
            json!([
                { "name": "user", "value": "a b" },
                { "name": "flag", "value": "" },
                { "name": "q", "value": "x y" },
            ])
        );
        assert_eq!(
            request["headers"][1],
            json!({ "name": "authorization", "value": "Bearer [redacted]" })
        );
        assert_eq!(
            request["cookies"],
            json!([]),
            "a redacted cookie lists none"
        );
        assert_eq!(
            request["postData"],
            json!({ "mimeType": "application/json", "text": r#"{"model":"gpt-4o"}"# })
        );
        assert_eq!(request["bodySize"], 18);
        assert_eq!(request["headersSize"], -1);
    }

    #[test]
    fn a_body_that_is_not_utf8_is_base64_in_content_and_lossy_in_post_data() {
        let mut flow = flow();
        flow.request.body = FlowBody::kept(vec![b'a', 0xff, b'b'], 3);
        let entry = entry(&flow);
        let content = &entry["response"]["content"];
        assert_eq!(content["text"], "/wBB");
        assert_eq!(content["encoding"], "base64");
        assert_eq!(content["size"], 10);
        assert_eq!(
            content["comment"],
            "truncated: the first 3 of 10 bytes kept"
        );
        assert_eq!(content["mimeType"], "application/octet-stream");
        let post = &entry["request"]["postData"];
        assert_eq!(post["text"], "a\u{fffd}b");
        assert!(post.get("encoding").is_none());
        assert!(post["comment"].as_str().unwrap().contains("not UTF-8"));
    }

    #[test]
    fn a_flow_without_a_response_gets_status_0_and_empty_content() {
        let mut flow = flow();
        flow.response = None;
        flow.timings.ttfb_ms = None;
        flow.error = Some("client_closed".into());
        let entry = entry(&flow);
        let response = &entry["response"];
        assert_eq!(response["status"], 0);
        assert_eq!(response["statusText"], "");
        assert_eq!(response["content"], json!({ "size": 0, "mimeType": "" }));
        assert_eq!(response["redirectURL"], "");
        assert_eq!(entry["timings"]["wait"], 0.0);
        assert_eq!(entry["timings"]["receive"], 3000.25);
        assert_eq!(entry["_junction"]["error"], "client_closed");
    }

    #[test]
    fn timings_add_up_and_are_never_negative() {
        for (ttfb, total) in [
            (Some(1.5), 3000.25),
            (None, 12.0),
            (Some(50.0), 20.0),
            (Some(-3.0), 10.0),
            (Some(5.0), -1.0),
            (Some(f64::NAN), f64::INFINITY),
        ] {
            let mut flow = flow();
            flow.timings.ttfb_ms = ttfb;
            flow.timings.total_ms = total;
            let entry = entry(&flow);
            let timings = &entry["timings"];
            let (send, wait, receive) = (
                timings["send"].as_f64().unwrap(),
                timings["wait"].as_f64().unwrap(),
                timings["receive"].as_f64().unwrap(),
            );
            let time = entry["time"].as_f64().unwrap();
            assert!(
                send >= 0.0 && wait >= 0.0 && receive >= 0.0 && time >= 0.0,
                "{ttfb:?} {total}: {timings}"
            );
            assert!(
                (send + wait + receive - time).abs() < 1e-9,
                "{ttfb:?} {total}: {timings}"
            );
        }
        let entry = entry(&flow());
        assert_eq!(entry["timings"]["wait"], 1.5);
        assert_eq!(entry["timings"]["receive"], 2998.75);
        assert_eq!(entry["timings"]["dns"], -1);
    }

    #[test]
    fn the_response_has_its_reason_redirect_and_cookies() {
        let mut flow = flow();
        flow.response = Some(FlowResponse {
            status: 302,
            headers: vec![
                ("Location".into(), "https://elsewhere.example/".into()),
                ("set-cookie".into(), "id=7; Path=/; HttpOnly".into()),
                stored_header(b"set-cookie", b"secret=1"),
            ],
            body: FlowBody::default(),
        });
        let response = entry(&flow)["response"].clone();
        assert_eq!(response["statusText"], "Found");
        assert_eq!(response["httpVersion"], "HTTP/1.1");
        assert_eq!(response["redirectURL"], "https://elsewhere.example/");
        assert_eq!(response["cookies"], json!([{ "name": "id", "value": "7" }]));
        assert_eq!(response["content"], json!({ "size": 0, "mimeType": "" }));
        flow.response.as_mut().unwrap().status = 499;
        assert_eq!(entry(&flow)["response"]["statusText"], "");
    }

    #[test]
    fn junction_facts_go_in_the_custom_field() {
        let mut flow = flow();
        flow.sse = Some(SseRecord {
            answer: Some("Hello".into()),
            ..SseRecord::default()
        });
        let junction = entry(&flow)["_junction"].clone();
        assert_eq!(
            junction,
            json!({
                "id": "018c0a1b2c3d000001",
                "route": "chat",
                "pool": "openai",
                "client": "10.0.0.7",
                "model": "gpt-4o",
                "tokens": { "prompt": 10, "completion": 5 },
                "ttft_ms": 2500.0,
                "answer": "Hello",
            })
        );
    }

    #[test]
    fn percent_decoding_leaves_broken_escapes_alone() {
        // `%+1` is no escape (`from_str_radix` alone would take `+1`); its `+` is a space.
        assert_eq!(percent_decode("a%2Fb%zz%+1%4"), "a/b%zz% 1%4");
        assert_eq!(percent_decode("%E2%82%AC+%ff"), "\u{20ac} \u{fffd}");
        assert_eq!(query_string("/path"), Vec::<Value>::new());
        assert_eq!(query_string("/path?&&"), Vec::<Value>::new());
    }

    #[test]
    fn export_formats_are_named() {
        assert_eq!("har".parse(), Ok(ExportFormat::Har));
        assert_eq!("jsonl".parse(), Ok(ExportFormat::Jsonl));
        let refused = "xml".parse::<ExportFormat>().unwrap_err();
        assert!(refused.contains("`har` or `jsonl`"), "{refused}");
    }
}
