//! What the engine differential test (tests/engine_differential.rs) generates: client
//! requests (method, target, headers from a pool, a Content-Length body) and the
//! scripted upstream's answers (status, headers from a pool, body framing: length,
//! chunked, close-delimited, and two odd ones; a trailer field, a `103 Early Hints`
//! first), one of each per case and one for a retry. Optional header names come in
//! random case on both sides.

use proptest::prelude::*;

use crate::support::raw_http::{HOST, LAST_CHUNK, Step, chunk};

// === Requests ===

pub const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"];

/// Path prefixes, one per route of the test config (`/other` falls to the catch-all).
pub const PREFIXES: &[&str] = &[
    "/api",
    "/plain",
    "/limited",
    "/private",
    "/masked",
    "/chain",
    "/other",
    "/translated",
];

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
    "Content-Type: text/plain; charset=utf-8",
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
    /// A body of this many bytes, with Content-Length unless `chunked` says otherwise.
    pub body: Option<usize>,
    /// The body sent chunked instead (no body: just the last chunk).
    pub chunked: Option<Chunking>,
    /// Which letters of the optional headers' names are upper case.
    pub name_case: u64,
}

/// How a chunked request body is cut and decorated.
#[derive(Debug, Clone, Copy)]
pub struct Chunking {
    /// Bytes per chunk (the last one shorter).
    pub size: usize,
    /// Each chunk size line carries an extension (`;ext=1`), which nobody passes on.
    pub extension: bool,
    /// A trailer field after the last chunk.
    pub trailer: bool,
}

impl Request {
    /// The request's bytes for case `id`: its `x-request-id` and `x-case` name the case.
    pub fn bytes(&self, id: u64) -> Vec<u8> {
        let mut text = format!(
            "{} {} HTTP/1.1\r\nHost: {HOST}\r\nX-Request-Id: diff-{id}\r\nX-Case: {id}\r\nX-User: {}\r\n",
            self.method, self.target, self.user
        );
        for (i, line) in self.headers.iter().enumerate() {
            text.push_str(&recased(line, self.name_case.rotate_left(i as u32 * 11)));
            text.push_str("\r\n");
        }
        let body = pattern(self.body.unwrap_or(0), 3);
        let Some(chunking) = self.chunked else {
            if let Some(length) = self.body {
                text.push_str(&format!("Content-Length: {length}\r\n"));
            }
            text.push_str("\r\n");
            let mut bytes = text.into_bytes();
            bytes.extend(body);
            return bytes;
        };
        text.push_str("Transfer-Encoding: chunked\r\n\r\n");
        let mut bytes = text.into_bytes();
        let extension = if chunking.extension { ";ext=1" } else { "" };
        for piece in body.chunks(chunking.size.max(1)) {
            bytes.extend(format!("{:x}{extension}\r\n", piece.len()).into_bytes());
            bytes.extend(piece);
            bytes.extend(b"\r\n");
        }
        bytes.extend(b"0\r\n");
        if chunking.trailer {
            bytes.extend(b"X-Trailer: t\r\n");
        }
        bytes.extend(b"\r\n");
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

/// `line` with the letters of its header name in upper or lower case as `flips` says.
pub fn recased(line: &str, flips: u64) -> String {
    let (name, rest) = line.split_once(':').unwrap_or((line, ""));
    let name: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| match flips >> (i % 64) & 1 {
            1 => c.to_ascii_uppercase(),
            _ => c.to_ascii_lowercase(),
        })
        .collect();
    format!("{name}:{rest}")
}

/// `length` bytes of printable text, different for each `seed`: lines of letters and
/// digits, and lines with values the masking route masks (an e-mail address, a card
/// number, an API key, an address), which chunk boundaries and the length cut anywhere.
pub fn pattern(length: usize, seed: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const SENSITIVE: &[u8] = b"mail jane.doe@example.com, card 4111 1111 1111 1111, ip 10.0.0.1";
    (0..length)
        .map(|i| {
            if i % 64 == 63 {
                b'\n'
            } else if (i / 64 + seed) % 2 == 1 {
                SENSITIVE.get(i % 64).copied().unwrap_or(b' ')
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
        2 => Just(PREFIXES[4]),
        1 => Just(PREFIXES[5]),
        2 => Just(PREFIXES[7]),
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
        // The translating route's own API path, often enough to be translated.
        if prefix == "/translated" && segments.is_empty() {
            target.push_str("/v1/chat/completions");
        }
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
    let chunked = prop_oneof![
        4 => Just(None),
        1 => (1..=700usize, any::<bool>(), any::<bool>()).prop_map(|(size, extension, trailer)| {
            Some(Chunking {
                size,
                extension,
                trailer,
            })
        }),
    ];
    (
        proptest::sample::select(METHODS),
        target(),
        proptest::sample::select(USERS),
        headers,
        (body, chunked),
        any::<u64>(),
    )
        .prop_map(
            |(method, target, user, mut headers, (body, chunked), name_case)| {
                // The masking route's bodies are mostly text it reads (a JSON type on a
                // body that is not JSON is refused, alike, which the pool covers too).
                let typed = headers.iter().any(|h| h.starts_with("Content-Type"));
                if target.starts_with("/masked") && body.is_some() && !typed {
                    headers.push("Content-Type: text/plain; charset=utf-8");
                }
                Request {
                    method,
                    target,
                    user,
                    headers,
                    body,
                    chunked,
                    name_case,
                }
            },
        )
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
    /// `Content-Length` twice, with the same value.
    LengthTwice,
    /// Chunked, and a `Content-Length` that is not the body's (RFC 9112 6.3: the
    /// chunking wins, and the length must not be passed on).
    ChunkedAndLength(usize),
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
    /// A chunked body ends with a trailer field.
    pub trailer: bool,
    /// A `103 Early Hints` comes first.
    pub early_hints: bool,
    /// Which letters of the optional headers' names are upper case.
    pub name_case: u64,
}

impl Reply {
    /// The steps of the answer to a request with `method`.
    pub fn steps(&self, method: &str) -> Vec<Step> {
        let (code, reason) = self.status;
        let mut head = String::new();
        if self.early_hints {
            head.push_str("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n");
        }
        head.push_str(&format!("HTTP/1.1 {code} {reason}\r\n"));
        if let Some(content_type) = self.content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        for (i, line) in self.headers.iter().enumerate() {
            head.push_str(&recased(line, self.name_case.rotate_left(i as u32 * 11)));
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
        let length = format!("Content-Length: {}\r\n", body.len());
        match self.framing {
            // A 304 may say the length of what it did not send (RFC 9110 8.6).
            Framing::Length | Framing::LengthTwice if code == 304 => head.push_str(&length),
            _ if bodiless_status => {}
            Framing::Length => head.push_str(&length),
            Framing::LengthTwice => {
                head.push_str(&length);
                head.push_str(&length);
            }
            Framing::Chunked(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
            Framing::ChunkedAndLength(_) => {
                head.push_str("Transfer-Encoding: chunked\r\nContent-Length: 7\r\n")
            }
            Framing::Close => {}
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if method != "HEAD" && !bodiless_status {
            match self.framing {
                Framing::Length | Framing::LengthTwice | Framing::Close => {
                    bytes.extend_from_slice(&body)
                }
                Framing::Chunked(size) | Framing::ChunkedAndLength(size) => {
                    for piece in body.chunks(size) {
                        bytes.extend(chunk(piece));
                    }
                    if self.trailer {
                        bytes.extend_from_slice(b"0\r\nX-Checksum: abc\r\n\r\n");
                    } else {
                        bytes.extend_from_slice(LAST_CHUNK);
                    }
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
        4 => Just(Framing::Length),
        4 => (1..=1500usize).prop_map(Framing::Chunked),
        4 => Just(Framing::Close),
        1 => Just(Framing::LengthTwice),
        1 => (1..=1500usize).prop_map(Framing::ChunkedAndLength),
    ];
    let body_len = prop_oneof![1 => Just(0), 4 => 0..=64usize, 2 => 0..=4096usize];
    (
        status,
        proptest::option::of(proptest::sample::select(CONTENT_TYPES)),
        proptest::sample::subsequence(REPLY_HEADERS, 0..=5).prop_shuffle(),
        framing,
        body_len,
        any::<bool>(),
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.1),
        any::<u64>(),
    )
        .prop_map(
            |(
                status,
                content_type,
                headers,
                framing,
                body_len,
                retry_after,
                trailer,
                early_hints,
                name_case,
            )| Reply {
                status,
                content_type,
                headers,
                framing,
                body_len,
                retry_after,
                trailer,
                early_hints,
                name_case,
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
