//! Raw HTTP/1.1 on both sides of the proxy, for the wire-level suites
//! (tests/http1_conformance.rs, tests/fast_path_parity.rs, tests/smuggling.rs): a client
//! that writes literal request bytes and parses exactly one response at a time,
//! strictly, and scripted upstreams that answer with literal bytes and record every
//! request and connection. Nothing here forgives a framing mistake.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::proxy::RunningProxy;

/// How long any single step may take before the test calls it a hang.
pub const STEP: Duration = Duration::from_secs(10);

/// The Host every test request carries (routing only looks at the path).
pub const HOST: &str = "raw.test";

/// The last chunk of a chunked body, with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

// ---------------------------------------------------------------------------------
// Bytes on a socket: heads, lines, chunked bodies. Shared by the client and the
// scripted upstreams. Bytes read stay in `buffer` until a whole head, line or body
// is taken, so an abandoned `read_head` (a timeout) loses nothing.
// ---------------------------------------------------------------------------------

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A JSON POST to `path` whose body goes as two chunks, cut at `cut`.
pub fn chunked_json_post(path: &str, body: &str, cut: usize) -> String {
    let (first, rest) = body.split_at(cut);
    format!(
        "POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{rest}\r\n0\r\n\r\n",
        first.len(),
        rest.len()
    )
}

pub fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

pub struct Wire {
    pub stream: TcpStream,
    pub buffer: Vec<u8>,
}

impl Wire {
    pub fn new(stream: TcpStream) -> Self {
        Wire {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Reads what is available into the buffer; `Ok(0)` at the end of the stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    pub fn take(&mut self, n: usize) -> Vec<u8> {
        self.buffer.drain(..n).collect()
    }

    /// A message head up to and including its empty line; `None` when the peer closed
    /// before sending a single byte of it.
    pub async fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                return Ok(Some(self.take(end + 4)));
            }
            if self.fill().await? == 0 {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                return Err(invalid(format!(
                    "the connection ended inside a head: {:?}",
                    String::from_utf8_lossy(&self.buffer)
                )));
            }
        }
    }

    /// One line including its CRLF.
    pub async fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n") {
                return Ok(self.take(end + 2));
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the connection ended inside a line: {:?}",
                        String::from_utf8_lossy(&self.buffer)
                    ),
                ));
            }
        }
    }

    pub async fn read_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buffer.len() < n {
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the connection ended after {} of {n} body bytes",
                        self.buffer.len()
                    ),
                ));
            }
        }
        Ok(self.take(n))
    }

    /// One chunk of a chunked body (RFC 9112 7.1): its data, or `None` for the last
    /// chunk, whose trailer section is read too. Every byte read is added to `raw`.
    /// Anything that is not valid chunked framing is an error.
    pub async fn read_chunk(&mut self, raw: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        let line = self.read_line().await?;
        raw.extend_from_slice(&line);
        let text = std::str::from_utf8(&line[..line.len() - 2])
            .map_err(|_| invalid(format!("chunk size line is not text: {line:?}")))?;
        // chunk-size [ BWS ";" chunk-ext ]
        let size_text = text
            .split(';')
            .next()
            .unwrap_or_default()
            .trim_end_matches([' ', '\t']);
        let size = Some(size_text)
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| invalid(format!("invalid chunk size line {text:?}")))?;
        if size == 0 {
            loop {
                let trailer = self.read_line().await?;
                raw.extend_from_slice(&trailer);
                if trailer == b"\r\n" {
                    return Ok(None);
                }
            }
        }
        let data = self.read_exact(size + 2).await?;
        raw.extend_from_slice(&data);
        if &data[size..] != b"\r\n" {
            return Err(invalid(format!(
                "chunk data of size {size} is not followed by CRLF: {:?}",
                String::from_utf8_lossy(&data[size..])
            )));
        }
        Ok(Some(data[..size].to_vec()))
    }

    /// A whole chunked body: the data, and the bytes as they were on the wire.
    pub async fn read_chunked(&mut self) -> io::Result<(Vec<u8>, Vec<u8>)> {
        let mut data = Vec::new();
        let mut raw = Vec::new();
        while let Some(chunk) = self.read_chunk(&mut raw).await? {
            data.extend_from_slice(&chunk);
        }
        Ok((data, raw))
    }

    pub async fn read_to_eof(&mut self) -> io::Result<Vec<u8>> {
        while self.fill().await? > 0 {}
        Ok(std::mem::take(&mut self.buffer))
    }
}

/// A parsed message head. Header names are lowercased; values are trimmed.
#[derive(Debug, Clone)]
pub struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
    pub raw: String,
}

impl Head {
    pub fn parse(raw: &[u8]) -> Head {
        let text = String::from_utf8_lossy(raw).into_owned();
        let without_end = text
            .strip_suffix("\r\n\r\n")
            .unwrap_or_else(|| panic!("a head ends with an empty line: {text:?}"));
        let mut lines = without_end.split("\r\n");
        let start_line = lines.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        for line in lines {
            assert!(
                !line.contains(['\r', '\n']),
                "a bare CR or LF in a head line {line:?} of {text:?}"
            );
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("not a header line {line:?} in {text:?}"));
            assert!(
                !name.is_empty() && !name.contains([' ', '\t']),
                "invalid header name {name:?} in {text:?}"
            );
            headers.push((
                name.to_ascii_lowercase(),
                value.trim_matches([' ', '\t']).to_string(),
            ));
        }
        Head {
            start_line,
            headers,
            raw: text,
        }
    }

    /// Every value of a header, one per line.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }

    pub fn has(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }

    /// The comma-separated list a header forms over all its lines, lowercased.
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// All lines of a header joined as one list value (RFC 9110 5.3).
    pub fn joined(&self, name: &str) -> Option<String> {
        let all = self.all(name);
        (!all.is_empty()).then(|| all.join(", "))
    }

    /// A single, valid Content-Length (repeats of one value are allowed).
    pub fn content_length(&self) -> Option<usize> {
        let values: Vec<&str> = self
            .all("content-length")
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let first = *values.first()?;
        assert!(
            values.iter().all(|v| *v == first),
            "conflicting Content-Length values: {}",
            self.raw
        );
        Some(
            first
                .parse()
                .unwrap_or_else(|_| panic!("invalid Content-Length {first:?}: {}", self.raw)),
        )
    }
}

// ---------------------------------------------------------------------------------
// The raw client.
// ---------------------------------------------------------------------------------

/// How a response body was delimited on the wire (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// HEAD, 1xx, 204 and 304: no body whatever the headers say.
    NoBody,
    Length(usize),
    Chunked,
    /// Read until the proxy closed the connection.
    Close,
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: Head,
    pub framing: Framing,
    /// The body as the application sees it (de-chunked).
    pub body: Vec<u8>,
    /// The body bytes as they were on the wire.
    pub raw_body: Vec<u8>,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `type` of a proxy-made JSON error, after checking its shape.
    pub fn error_type(&self) -> String {
        assert_eq!(
            self.head.get("content-type"),
            Some("application/json"),
            "a proxy error is JSON: {}",
            self.head.raw
        );
        let json: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {:?}", self.text()));
        json["error"]["type"]
            .as_str()
            .unwrap_or_else(|| panic!("no string error.type in {json}"))
            .to_string()
    }
}

pub fn parse_status(head: &Head) -> u16 {
    let line = &head.start_line;
    let rest = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))
        .unwrap_or_else(|| panic!("not an HTTP/1.x status line: {line:?}"));
    let code = rest
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()));
    let code = code.unwrap_or_else(|| panic!("no three-digit status in {line:?}"));
    // status-line = HTTP-version SP status-code SP [ reason-phrase ]
    assert_eq!(
        rest.as_bytes().get(3),
        Some(&b' '),
        "no SP after the status code: {line:?}"
    );
    code.parse().expect("digits")
}

/// Rules every response head must keep, whatever the test.
pub fn check_response_head(status: u16, head: &Head) {
    if (100..200).contains(&status) || status == 204 {
        // RFC 9110 8.6 and RFC 9112 6.1.
        assert!(
            !head.has("content-length") && !head.has("transfer-encoding"),
            "a {status} response must carry neither Content-Length nor Transfer-Encoding: {}",
            head.raw
        );
    }
    if head.has("transfer-encoding") {
        // RFC 9112 6.1: a sender must not send both.
        assert!(
            !head.has("content-length"),
            "Transfer-Encoding together with Content-Length: {}",
            head.raw
        );
    }
}

pub fn response_framing(method: &str, status: u16, head: &Head) -> Framing {
    if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
        return Framing::NoBody;
    }
    let codings = head.tokens("transfer-encoding");
    if let Some(last) = codings.last() {
        return if last == "chunked" {
            Framing::Chunked
        } else {
            Framing::Close
        };
    }
    match head.content_length() {
        Some(length) => Framing::Length(length),
        None => Framing::Close,
    }
}

pub struct RawClient {
    pub wire: Wire,
}

impl RawClient {
    /// Connects to the listener at `addr`.
    pub async fn connect_addr(addr: SocketAddr) -> RawClient {
        let stream = within("connect to the proxy", TcpStream::connect(addr))
            .await
            .expect("connect to the proxy");
        RawClient {
            wire: Wire::new(stream),
        }
    }

    /// The final response (interim ones skipped), or `None` when the proxy closed the
    /// connection (or reset it) before sending a byte of one.
    pub async fn try_final_response(&mut self, method: &str) -> Option<RawResponse> {
        loop {
            if self.wire.buffer.is_empty() {
                match within("a response from the proxy", self.wire.fill()).await {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return None,
                    Err(e) => panic!("reading a response: {e}"),
                }
            }
            let response = self.response(method).await;
            if !(100..200).contains(&response.status) {
                return Some(response);
            }
        }
    }

    pub async fn connect(proxy: &RunningProxy) -> RawClient {
        RawClient::connect_to(proxy.addr("public")).await
    }

    /// A connection to any listener (the admin one, say).
    pub async fn connect_to(addr: std::net::SocketAddr) -> RawClient {
        let stream = within("connect to the proxy", TcpStream::connect(addr))
            .await
            .expect("connect to the proxy");
        RawClient {
            wire: Wire::new(stream),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        within("write to the proxy", async {
            self.wire.stream.write_all(bytes).await?;
            self.wire.stream.flush().await
        })
        .await
        .expect("write to the proxy");
    }

    /// Reads one response head (interim or final) and says how its body is framed.
    pub async fn read_head(&mut self, method: &str) -> (u16, Head, Framing) {
        let raw = self
            .wire
            .read_head()
            .await
            .unwrap_or_else(|e| panic!("reading a response head: {e}"))
            .unwrap_or_else(|| panic!("the proxy closed the connection instead of answering"));
        let head = Head::parse(&raw);
        let status = parse_status(&head);
        check_response_head(status, &head);
        let framing = response_framing(method, status, &head);
        (status, head, framing)
    }

    pub async fn read_response(&mut self, method: &str) -> RawResponse {
        let (status, head, framing) = self.read_head(method).await;
        fn or_panic<T>(read: io::Result<T>, head: &Head) -> T {
            read.unwrap_or_else(|e| panic!("reading the body of {}: {e}", head.raw))
        }
        let (body, raw_body) = match framing {
            Framing::NoBody => (Vec::new(), Vec::new()),
            Framing::Length(n) => {
                let body = or_panic(self.wire.read_exact(n).await, &head);
                (body.clone(), body)
            }
            Framing::Chunked => or_panic(self.wire.read_chunked().await, &head),
            Framing::Close => {
                let body = or_panic(self.wire.read_to_eof().await, &head);
                (body.clone(), body)
            }
        };
        RawResponse {
            status,
            head,
            framing,
            body,
            raw_body,
        }
    }

    /// Exactly one response, interim (1xx) or final, to a request with `method`.
    pub async fn response(&mut self, method: &str) -> RawResponse {
        within("a response from the proxy", self.read_response(method)).await
    }

    /// Interim responses, if any, then the final response.
    pub async fn final_response(&mut self, method: &str) -> (Vec<RawResponse>, RawResponse) {
        let mut interim = Vec::new();
        loop {
            let response = self.response(method).await;
            if (100..200).contains(&response.status) {
                interim.push(response);
            } else {
                return (interim, response);
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> RawResponse {
        self.send(get(path).as_bytes()).await;
        self.final_response("GET").await.1
    }

    /// Sends `text` and reads the final response (interim ones skipped).
    pub async fn request(&mut self, method: &str, text: &str) -> RawResponse {
        self.send(text.as_bytes()).await;
        self.final_response(method).await.1
    }

    /// Whether the proxy closes the connection (EOF or reset) within `limit`, with
    /// nothing more to say; `Err` carries what it sent instead, or "still open".
    pub async fn closes_within(&mut self, limit: Duration) -> Result<(), String> {
        match tokio::time::timeout(limit, self.wire.read_to_eof()).await {
            Ok(Ok(rest)) if rest.is_empty() => Ok(()),
            Ok(Ok(rest)) => Err(format!(
                "bytes after the response: {:?}",
                String::from_utf8_lossy(&rest)
            )),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
            Ok(Err(e)) => Err(format!("read error {e}")),
            Err(_) => Err(format!("still open after {limit:?}")),
        }
    }

    /// The proxy closes the connection with nothing more to say. A reset counts as a
    /// close too (a server may reset when it closes with unread input).
    pub async fn assert_closed(&mut self, after: &str) {
        let rest = within(
            &format!("the proxy closing the connection after {after}"),
            async {
                match self.wire.read_to_eof().await {
                    Ok(rest) => rest,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                        std::mem::take(&mut self.wire.buffer)
                    }
                    Err(e) => panic!("reading until the close after {after}: {e}"),
                }
            },
        )
        .await;
        assert!(
            rest.is_empty(),
            "bytes after the last response ({after}): {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// A minimal GET.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n")
}

// ---------------------------------------------------------------------------------
// Scripted upstreams.
// ---------------------------------------------------------------------------------

/// What a scripted upstream does after reading a request.
pub enum Step {
    Write(Vec<u8>),
    /// Lets the other tasks run (the proxy reading what was written) before the next
    /// step, so consecutive writes tend to arrive as separate reads. Nothing depends
    /// on it: it only makes coalescing less likely.
    Yield,
    /// Waits until the test calls `notify_one`.
    Wait(Arc<Notify>),
    /// Closes the connection.
    Close,
    /// Never answers (the connection stays open until the test ends).
    Hang,
}

/// A request as the proxy sent it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// 1 for the first connection accepted, 2 for the next…
    pub connection: usize,
    pub method: String,
    pub path: String,
    pub head: Head,
    /// The body as the application sees it (de-chunked).
    pub body: Vec<u8>,
}

/// How an upstream connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The proxy closed it (or broke it off mid-request).
    ByProxy(usize),
    /// The script closed it.
    ByScript(usize),
}

pub type Script = Arc<dyn Fn(&Seen) -> Vec<Step> + Send + Sync>;

pub struct Upstream {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub ended: mpsc::UnboundedReceiver<Ended>,
    /// Connections ended so far, and a signal at each end (for `settle`).
    pub ends: Arc<AtomicUsize>,
    pub end_signal: Arc<Notify>,
    pub task: JoinHandle<()>,
}

/// Reports each end of an upstream connection: on the channel, and by count.
#[derive(Clone)]
pub struct EndReport {
    tx: mpsc::UnboundedSender<Ended>,
    count: Arc<AtomicUsize>,
    signal: Arc<Notify>,
}

impl EndReport {
    pub fn send(&self, end: Ended) {
        let _ = self.tx.send(end);
        self.count.fetch_add(1, Ordering::SeqCst);
        self.signal.notify_waiters();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Accepts connections on 127.0.0.1:0 and answers every request on them with
    /// the steps `script` chooses for it.
    pub async fn start(script: impl Fn(&Seen) -> Vec<Step> + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (tx, ended) = mpsc::unbounded_channel();
        let (ends, end_signal) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        let ended_tx = EndReport {
            tx,
            count: ends.clone(),
            signal: end_signal.clone(),
        };
        let script: Script = Arc::new(script);
        let task = {
            let (connections, seen) = (connections.clone(), seen.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let number = connections.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::spawn(serve_scripted(
                        Wire::new(stream),
                        number,
                        script.clone(),
                        seen.clone(),
                        ended_tx.clone(),
                    ));
                }
            })
        };
        Upstream {
            addr,
            connections,
            seen,
            ended,
            ends,
            end_signal,
            task,
        }
    }

    /// Waits until every connection accepted so far has ended, so everything the
    /// proxy sent on them has been parsed (and recorded). Useful with a script whose
    /// answers say `Connection: close`: the proxy then closes each connection after
    /// its response, and whatever it sent after the request (a smuggled one) is read
    /// first.
    pub async fn settle(&self) {
        within("every upstream connection to end", async {
            loop {
                let signal = self.end_signal.notified();
                if self.ends.load(Ordering::SeqCst) >= self.connections() {
                    return;
                }
                signal.await;
            }
        })
        .await
    }

    /// Every request received so far, which are forgotten.
    pub fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The only request received so far.
    pub fn only_request(&self) -> Seen {
        let seen = self.seen();
        assert_eq!(seen.len(), 1, "requests at the upstream: {seen:#?}");
        seen[0].clone()
    }

    /// The latest request received.
    pub fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("a request reached the upstream")
    }

    /// The next upstream connection to end.
    pub async fn next_end(&mut self) -> Ended {
        within("an upstream connection ending", self.ended.recv())
            .await
            .expect("the upstream is running")
    }
}

/// Reads a request body the way an HTTP/1.1 server must (RFC 9112 6.3).
pub async fn read_request_body(wire: &mut Wire, head: &Head) -> io::Result<Vec<u8>> {
    if head.has("transfer-encoding") {
        if head.has("content-length") {
            return Err(invalid(format!(
                "request with Transfer-Encoding and Content-Length: {}",
                head.raw
            )));
        }
        if head.tokens("transfer-encoding").last().map(String::as_str) != Some("chunked") {
            return Err(invalid(format!("request not chunked last: {}", head.raw)));
        }
        return Ok(wire.read_chunked().await?.0);
    }
    match head.content_length() {
        Some(length) => wire.read_exact(length).await,
        None => Ok(Vec::new()),
    }
}

pub async fn serve_scripted(
    mut wire: Wire,
    connection: usize,
    script: Script,
    seen: Arc<Mutex<Vec<Seen>>>,
    ended: EndReport,
) {
    loop {
        let raw = match wire.read_head().await {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                ended.send(Ended::ByProxy(connection));
                return;
            }
            Err(error) => {
                eprintln!("upstream connection {connection}: {error}");
                ended.send(Ended::ByProxy(connection));
                return;
            }
        };
        let head = Head::parse(&raw);
        let mut request_line = head.start_line.split(' ');
        let method = request_line.next().unwrap_or_default().to_string();
        let path = request_line.next().unwrap_or_default().to_string();
        if head.tokens("expect").iter().any(|t| t == "100-continue") {
            // As a real server does before reading the body (RFC 9110 10.1.1).
            if wire
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
            {
                ended.send(Ended::ByProxy(connection));
                return;
            }
        }
        let body = match read_request_body(&mut wire, &head).await {
            Ok(body) => body,
            Err(error) => {
                eprintln!("upstream connection {connection}: request body: {error}");
                ended.send(Ended::ByProxy(connection));
                return;
            }
        };
        let request = Seen {
            connection,
            method,
            path,
            head,
            body,
        };
        let steps = script(&request);
        seen.lock().unwrap().push(request);
        for step in steps {
            match step {
                Step::Write(bytes) => {
                    if wire.stream.write_all(&bytes).await.is_err() {
                        ended.send(Ended::ByProxy(connection));
                        return;
                    }
                }
                Step::Yield => {
                    for _ in 0..3 {
                        tokio::task::yield_now().await;
                    }
                }
                Step::Wait(signal) => signal.notified().await,
                Step::Close => {
                    drop(wire);
                    ended.send(Ended::ByScript(connection));
                    return;
                }
                Step::Hang => std::future::pending::<()>().await,
            }
        }
    }
}

/// A response with `status` (e.g. `"503 Service Unavailable"`) and a Content-Length body.
pub fn reply(status: &str, content_type: &str, body: impl AsRef<[u8]>) -> Vec<u8> {
    let body = body.as_ref();
    let mut bytes = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `200 OK` with a Content-Length body.
pub fn ok(body: impl AsRef<[u8]>) -> Vec<u8> {
    reply("200 OK", "text/plain", body)
}

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{:x}\r\n", data.len()).into_bytes();
    bytes.extend_from_slice(data);
    bytes.extend_from_slice(b"\r\n");
    bytes
}

pub fn chunked_head(content_type: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n")
        .into_bytes()
}

/// The default answer: 200 with the request path as the body (headers only for HEAD).
pub fn echo_path(seen: &Seen) -> Vec<Step> {
    let mut reply = ok(&seen.path);
    if seen.method == "HEAD" {
        let end = find(&reply, b"\r\n\r\n").expect("a head") + 4;
        reply.truncate(end);
    }
    vec![Step::Write(reply)]
}
