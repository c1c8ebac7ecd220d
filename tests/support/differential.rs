//! What the engine differential test (tests/engine_differential.rs) generates and
//! compares: client requests (method, target, headers from a pool, a Content-Length
//! body), the scripted upstream's answers (status, headers from a pool, body framing),
//! and the outcome of one request on one engine, as the upstream and the client saw it,
//! with the few values that may not be compared (each says why) taken out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

use crate::support::raw_http::{
    Framing as WireFraming, HOST, LAST_CHUNK, RawClient, STEP, Seen, Step, chunk,
};

// === Requests ===

pub const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"];

/// Path prefixes, one per route of the test config (`/other` falls to the catch-all).
pub const PREFIXES: &[&str] = &["/api", "/plain", "/limited", "/private", "/other"];

/// Path segments in normal form (the fast path serves them itself).
const SEGMENTS: &[&str] = &[
    "v1",
    "chat",
    "completions",
    "x.json",
    "~user",
    "a;b",
    "A-Z_0.9",
    "@:!$&'()*+,=",
];

/// Segments the entry rules rewrite or refuse (empty, dot, percent-encoded): the fast
/// path hands those requests to hyper, where the core normalises them.
const ODD_SEGMENTS: &[&str] = &["", ".", "..", "%2F", "%2e", "%41", "a%20b", "caf%C3%A9"];

const QUERIES: &[&str] = &["", "?q=1", "?a=b&c=d", "?x=%2F", "?", "?q=a%20b", "?e=%zz"];

/// The sticky split's key: always sent, so the split's choice is the same on both.
pub const USERS: &[&str] = &["alice", "bob", "carol", "dave", "erin", "frank"];

/// Optional client headers: 0 to 6 of them, in any order.
pub const REQUEST_HEADERS: &[&str] = &[
    "Accept: application/json",
    "Accept: text/event-stream",
    "User-Agent: curl/8.5.0",
    "User-Agent: sqlmap/1.7.2#stable",
    "User-Agent: Mozilla/5.0 (compatible; Nikto/2.5)",
    "User-Agent: python-requests/2.31",
    "X-Secret: hunter2",
    "Cookie: session=abc; theme=dark",
    "Cookie: extra=1",
    "X-Forwarded-For: 203.0.113.9",
    "X-Forwarded-Proto: https",
    "X-Forwarded-Host: elsewhere.example",
    "Forwarded: for=198.51.100.7;proto=https",
    "Via: 1.0 client-proxy",
    "X-Junction-Version: v2",
    "X-Junction-Tag: forged",
    "TE: trailers",
    "Connection: close",
    "Connection: keep-alive",
    "Keep-Alive: timeout=5",
    "X-Gateway: from-client",
    "Accept-Encoding: gzip, br",
    "Content-Type: application/json",
    "Authorization: Bearer sk-test",
    "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "X-Custom: one",
    "x-custom: two",
    "Cache-Control: no-cache",
];

#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    pub target: String,
    pub user: &'static str,
    pub headers: Vec<&'static str>,
    /// A body with Content-Length, of this many bytes.
    pub body: Option<usize>,
}

impl Request {
    /// The request's bytes for case `id`: its `x-request-id` and `x-case` name the case.
    pub fn bytes(&self, id: u64) -> Vec<u8> {
        let mut text = format!(
            "{} {} HTTP/1.1\r\nHost: {HOST}\r\nX-Request-Id: diff-{id}\r\nX-Case: {id}\r\nX-User: {}\r\n",
            self.method, self.target, self.user
        );
        for line in &self.headers {
            text.push_str(line);
            text.push_str("\r\n");
        }
        if let Some(length) = self.body {
            text.push_str(&format!("Content-Length: {length}\r\n"));
        }
        text.push_str("\r\n");
        let mut bytes = text.into_bytes();
        bytes.extend(pattern(self.body.unwrap_or(0), 3));
        bytes
    }

    /// The prefix the target starts with (its route).
    pub fn prefix(&self) -> &'static str {
        PREFIXES
            .iter()
            .find(|p| self.target.starts_with(*p))
            .copied()
            .unwrap_or("")
    }
}

/// `length` bytes of printable text, different for each `seed`.
pub fn pattern(length: usize, seed: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..length)
        .map(|i| {
            if i % 64 == 63 {
                b'\n'
            } else {
                ALPHABET[(i * 7 + seed) % ALPHABET.len()]
            }
        })
        .collect()
}

fn target() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        5 => Just(PREFIXES[0]),
        2 => Just(PREFIXES[1]),
        1 => Just(PREFIXES[2]),
        1 => Just(PREFIXES[3]),
        1 => Just(PREFIXES[4]),
    ];
    let segment = prop_oneof![
        12 => proptest::sample::select(SEGMENTS),
        1 => proptest::sample::select(ODD_SEGMENTS),
    ];
    let segments = proptest::collection::vec(segment, 0..=3);
    let query = prop_oneof![
        4 => Just(""),
        3 => proptest::sample::select(QUERIES),
    ];
    (prefix, segments, query).prop_map(|(prefix, segments, query)| {
        let mut target = prefix.to_string();
        for segment in segments {
            target.push('/');
            target.push_str(segment);
        }
        target.push_str(query);
        target
    })
}

pub fn request() -> impl Strategy<Value = Request> {
    let headers = proptest::sample::subsequence(REQUEST_HEADERS, 0..=6).prop_shuffle();
    let body = prop_oneof![
        4 => Just(None),
        1 => Just(Some(0)),
        2 => (0..=64usize).prop_map(Some),
        2 => (0..=2048usize).prop_map(Some),
    ];
    (
        proptest::sample::select(METHODS),
        target(),
        proptest::sample::select(USERS),
        headers,
        body,
    )
        .prop_map(|(method, target, user, headers, body)| Request {
            method,
            target,
            user,
            headers,
            body,
        })
}

// === The upstream's answers ===

pub const STATUSES: &[(u16, &str)] = &[
    (200, "OK"),
    (201, "Created"),
    (204, "No Content"),
    (304, "Not Modified"),
    (404, "Not Found"),
    (429, "Too Many Requests"),
    (500, "Internal Server Error"),
    (503, "Service Unavailable"),
];

pub const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "text/event-stream",
    "text/plain; charset=utf-8",
];

/// Optional answer headers: 0 to 5 of them, in any order.
pub const REPLY_HEADERS: &[&str] = &[
    "Server: upstream/1.0",
    "X-Secret: s3cr3t",
    "Set-Cookie: sid=1; Path=/",
    "Set-Cookie: theme=dark; HttpOnly",
    "X-Custom: one",
    "X-Custom: two",
    "Cache-Control: no-store",
    "Connection: close",
    "Keep-Alive: timeout=5",
    "X-Gateway: from-upstream",
    "Vary: Accept",
    "ETag: \"v1\"",
    "X-Request-Id: from-upstream",
    "Via: 1.1 upstream-cache",
    "X-Junction-Version: forged",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length,
    /// Chunks of this many bytes (the last one shorter).
    Chunked(usize),
    /// No length: the body ends when the upstream closes the connection.
    Close,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: (u16, &'static str),
    pub content_type: Option<&'static str>,
    pub headers: Vec<&'static str>,
    pub framing: Framing,
    pub body_len: usize,
    /// A 503 says `Retry-After: 0` (a 429 always does).
    pub retry_after: bool,
}

impl Reply {
    /// The steps of the answer to a request with `method`.
    pub fn steps(&self, method: &str) -> Vec<Step> {
        let (code, reason) = self.status;
        let mut head = format!("HTTP/1.1 {code} {reason}\r\n");
        if let Some(content_type) = self.content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        for line in &self.headers {
            head.push_str(line);
            head.push_str("\r\n");
        }
        // `Retry-After: 0`: a number of seconds holds the endpoint back that long
        // (pipeline::attempts::hold_for_retry_after), and whether the next case then
        // finds it held would depend on how fast each engine ran. Zero holds nothing.
        if code == 429 || (code == 503 && self.retry_after) {
            head.push_str("Retry-After: 0\r\n");
        }
        let bodiless_status = code == 204 || code == 304;
        let body = pattern(self.body_len, code as usize);
        match self.framing {
            _ if bodiless_status => {}
            Framing::Length => head.push_str(&format!("Content-Length: {}\r\n", body.len())),
            Framing::Chunked(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
            Framing::Close => {}
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if method != "HEAD" && !bodiless_status {
            match self.framing {
                Framing::Length | Framing::Close => bytes.extend_from_slice(&body),
                Framing::Chunked(size) => {
                    for piece in body.chunks(size) {
                        bytes.extend(chunk(piece));
                    }
                    bytes.extend_from_slice(LAST_CHUNK);
                }
            }
        }
        let mut steps = vec![Step::Write(bytes)];
        if self.framing == Framing::Close || self.headers.contains(&"Connection: close") {
            steps.push(Step::Close);
        }
        steps
    }
}

pub fn reply() -> impl Strategy<Value = Reply> {
    let status = prop_oneof![
        6 => Just(STATUSES[0]),
        1 => proptest::sample::select(&STATUSES[1..]),
        1 => Just(STATUSES[7]),
    ];
    let framing = prop_oneof![
        Just(Framing::Length),
        (1..=1500usize).prop_map(Framing::Chunked),
        Just(Framing::Close),
    ];
    let body_len = prop_oneof![1 => Just(0), 4 => 0..=64usize, 2 => 0..=4096usize];
    (
        status,
        proptest::option::of(proptest::sample::select(CONTENT_TYPES)),
        proptest::sample::subsequence(REPLY_HEADERS, 0..=5).prop_shuffle(),
        framing,
        body_len,
        any::<bool>(),
    )
        .prop_map(
            |(status, content_type, headers, framing, body_len, retry_after)| Reply {
                status,
                content_type,
                headers,
                framing,
                body_len,
                retry_after,
            },
        )
}

/// One case: a request, the upstream's first answer, and its answer to a retry.
#[derive(Debug, Clone)]
pub struct Case {
    pub request: Request,
    pub replies: [Reply; 2],
}

pub fn case() -> impl Strategy<Value = Case> {
    (request(), reply(), reply()).prop_map(|(request, first, retry)| Case {
        request,
        replies: [first, retry],
    })
}

// === What each side saw ===

/// A request as the upstream parsed it. Which upstream connection carried it is not
/// compared: each engine keeps its own idle connections, and reuses them its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The endpoint that got it (`blue-1`: pool blue, its second endpoint).
    pub endpoint: String,
    pub request_line: String,
    /// Lowercased names, trimmed values, sorted: the order of lines is the engines' own.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Forwarded {
    pub fn of(endpoint: &str, seen: &Seen) -> Forwarded {
        let headers = seen
            .head
            .headers
            .iter()
            .map(|(name, value)| {
                let value = match name.as_str() {
                    // The proxy hop's span id is random by design (W3C trace context,
                    // telemetry/trace.rs): only the trace id and flags are compared.
                    "traceparent" => without_parent_id(value),
                    _ => value.clone(),
                };
                (name.clone(), value)
            })
            .collect();
        Forwarded {
            endpoint: endpoint.to_string(),
            request_line: seen.head.start_line.clone(),
            headers: sorted(headers),
            body: seen.body.clone(),
        }
    }
}

fn without_parent_id(traceparent: &str) -> String {
    let mut parts: Vec<&str> = traceparent.split('-').collect();
    if parts.len() == 4 {
        parts[2] = "<span>";
    }
    parts.join("-")
}

pub fn sorted(mut headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers.sort();
    headers
}

/// Whether the client's connection was still usable after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// A second request on it got this status.
    Open(u16),
    /// The proxy closed it (EOF or reset), or the body was delimited by the close.
    Closed,
}

/// The answer as the client parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Lowercased names, trimmed values, sorted, without `date` (the wall clock).
    pub headers: Vec<(String, String)>,
    /// De-chunked.
    pub body: Vec<u8>,
    pub after: After,
}

/// One request on one engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// In the order the upstream got them (a retry is the second).
    pub upstream: Vec<Forwarded>,
    /// The answer, or what went wrong reading it (no answer, a framing error).
    pub client: Result<Answer, String>,
}

impl Outcome {
    /// One line per fact, for a side-by-side report.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (i, forwarded) in self.upstream.iter().enumerate() {
            lines.push(format!(
                "upstream #{} at {}: {}",
                i + 1,
                forwarded.endpoint,
                forwarded.request_line
            ));
            for (name, value) in &forwarded.headers {
                lines.push(format!("  > {name}: {value}"));
            }
            lines.push(format!("  > body {}", describe(&forwarded.body)));
        }
        if self.upstream.is_empty() {
            lines.push("upstream: nothing".into());
        }
        match &self.client {
            Ok(answer) => {
                lines.push(format!("client: {}", answer.status));
                for (name, value) in &answer.headers {
                    lines.push(format!("  < {name}: {value}"));
                }
                lines.push(format!("  < body {}", describe(&answer.body)));
                lines.push(format!("  connection after: {:?}", answer.after));
            }
            Err(error) => lines.push(format!("client: {error}")),
        }
        lines
    }
}

/// A body's length, a checksum and its start, on one line.
pub fn describe(body: &[u8]) -> String {
    let sum = body.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    let start: String = String::from_utf8_lossy(&body[..body.len().min(48)])
        .escape_debug()
        .to_string();
    format!("{} bytes, fnv {sum:016x}: \"{start}\"", body.len())
}

/// Both outcomes side by side, lines aligned by a longest common subsequence; lines
/// that are on one side only are marked with `!`.
pub fn side_by_side(left: (&str, &Outcome), right: (&str, &Outcome)) -> String {
    let (a, b) = (left.1.lines(), right.1.lines());
    // common[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let width = a.iter().map(String::len).max().unwrap_or(0).clamp(20, 90);
    let mut report = format!("  {:width$} | {}\n", left.0, right.0);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(report, "  {:width$} | {}", a[i], b[j]);
            (i, j) = (i + 1, j + 1);
        } else if j == b.len() || (i < a.len() && common[i + 1][j] >= common[i][j + 1]) {
            let _ = writeln!(report, "! {:width$} |", a[i]);
            i += 1;
        } else {
            let _ = writeln!(report, "! {:width$} | {}", "", b[j]);
            j += 1;
        }
    }
    report
}

// === The client's side ===

/// Sends a case's request on a connection of its own and reads the answer, then
/// probes the connection.
pub async fn exchange(
    addr: SocketAddr,
    bytes: Vec<u8>,
    method: &'static str,
) -> Result<Answer, String> {
    let mut client = RawClient::connect_addr(addr).await;
    client.send(&bytes).await;
    let Some(response) = client.try_final_response(method).await else {
        return Err("no answer: the proxy closed the connection".into());
    };
    let after = if response.framing == WireFraming::Close {
        After::Closed
    } else {
        probe(&mut client).await
    };
    let headers = response
        .head
        .headers
        .iter()
        .filter(|(name, _)| name != "date")
        .cloned()
        .collect();
    Ok(Answer {
        status: response.status,
        headers: sorted(headers),
        body: response.body,
        after,
    })
}

/// Whether the connection still serves a request after the answer.
async fn probe(client: &mut RawClient) -> After {
    let request = format!("GET /probe HTTP/1.1\r\nHost: {HOST}\r\nX-Request-Id: probe\r\n\r\n");
    let written =
        tokio::time::timeout(STEP, client.wire.stream.write_all(request.as_bytes())).await;
    if !matches!(written, Ok(Ok(()))) {
        return After::Closed;
    }
    match client.try_final_response("GET").await {
        Some(response) => After::Open(response.status),
        None => After::Closed,
    }
}

/// Replaces every run of digits in `text` with `#`.
pub fn without_digits(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Counts of `name{labels}` series, for the hand-off report.
pub fn series_with(metrics: &str, name: &str) -> BTreeMap<String, f64> {
    crate::support::parse_metrics(metrics)
        .into_iter()
        .filter(|(series, value)| series.split('{').next() == Some(name) && *value != 0.0)
        .collect()
}
