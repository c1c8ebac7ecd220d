//! Real exit proxies for the egress tests, all on 127.0.0.1 with OS-chosen ports:
//!
//! - [`HttpExit`]: an HTTP/1.1 forward proxy (absolute-form requests forwarded to the
//!   origin in origin form, `CONNECT` answered 200 and spliced), with optional required
//!   credentials and switchable misbehaviour ([`ExitMode`]);
//! - [`Socks5Exit`]: an RFC 1928 SOCKS5 server (no-auth, or RFC 1929 user/password),
//!   `CONNECT` only, IPv4, domain-name and IPv6 targets;
//! - [`TlsOrigin`]: an https site with a self-signed certificate (for `localhost` and
//!   127.0.0.1) that the test's client can trust, answering `secure <name> <path>`.
//!
//! Every server stops when dropped: its accept loop is aborted and every connection and
//! tunnel it still serves is closed.
//!
//! ```ignore
//! let a = HttpExit::start("a").await;
//! let b = HttpExit::builder("b").with_auth("user", "pass").start().await;
//! let c = Socks5Exit::start("c").await;
//! let site = TlsOrigin::start("site").await;
//! a.set_mode(ExitMode::RefuseConnect);
//! assert_eq!(b.plain_count(), 10);
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The body of the captcha page an [`HttpExit`] serves in the captcha modes.
pub const CAPTCHA_BODY: &str = "<html>Please solve this captcha</html>";

/// `Basic base64(user:pass)`, the `Proxy-Authorization` value for these credentials.
pub fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

// ---------------------------------------------------------------------------------------
// Shared plumbing: an accept loop whose connections all end when the server is dropped.

/// A running accept loop; dropping it stops the loop and ends every connection.
struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.task.abort();
    }
}

/// Resolves once the server is stopped (or dropped).
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Binds 127.0.0.1:0 and runs `on_connection` for every accepted stream, each in its
/// own task that ends when the server stops.
async fn serve<F, Fut>(on_connection: F) -> Server
where
    F: Fn(TcpStream, watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let connection = on_connection(stream, stop_rx.clone());
            let stop_rx = stop_rx.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = connection => {}
                    _ = stopped(stop_rx) => {}
                }
            });
        }
    });
    Server { addr, stop, task }
}

/// Copies both ways until either side closes or the server stops.
async fn splice<A, B>(mut a: A, mut b: B, stop: watch::Receiver<bool>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
        _ = stopped(stop) => {}
    }
}

// ---------------------------------------------------------------------------------------
// HttpExit

type ExitBody = BoxBody<Bytes, hyper::Error>;

fn full(text: impl Into<Bytes>) -> ExitBody {
    Full::new(text.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn empty() -> ExitBody {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn answer(status: u16, body: impl Into<Bytes>) -> Response<ExitBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    response
}

/// How an [`HttpExit`] behaves; switch with [`HttpExit::set_mode`] at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitMode {
    /// Forwards plain requests and opens tunnels.
    Normal = 0,
    /// Plain requests get `403` with [`CAPTCHA_BODY`] (nothing forwarded); CONNECT works.
    Captcha = 1,
    /// Plain requests get `200` with [`CAPTCHA_BODY`] (nothing forwarded); CONNECT works.
    Captcha200 = 2,
    /// CONNECT is answered `403` and the connection closed; plain requests are normal.
    RefuseConnect = 3,
}

impl ExitMode {
    fn from_u8(value: u8) -> ExitMode {
        match value {
            1 => ExitMode::Captcha,
            2 => ExitMode::Captcha200,
            3 => ExitMode::RefuseConnect,
            _ => ExitMode::Normal,
        }
    }
}

/// One request as it arrived at an [`HttpExit`], whatever the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `true` for CONNECT.
    pub connect: bool,
    /// The request target: the absolute URI of a plain request, `host:port` of a CONNECT.
    pub target: String,
    /// Its `Proxy-Authorization` header, if any.
    pub authorization: Option<String>,
}

struct HttpState {
    name: String,
    /// The `Proxy-Authorization` value required, if any.
    required: Option<String>,
    mode: AtomicU8,
    plain: AtomicUsize,
    connects: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

/// How an [`HttpExit`] is built: `HttpExit::builder("b").with_auth("u", "p").start()`.
pub struct HttpExitBuilder {
    name: String,
    required: Option<String>,
    tls: bool,
}

impl HttpExitBuilder {
    /// Requires `Proxy-Authorization: Basic base64(user:pass)`; others get `407`.
    pub fn with_auth(mut self, user: &str, pass: &str) -> Self {
        self.required = Some(basic(user, pass));
        self
    }

    /// Serves the proxy itself over TLS (an `https://` exit), with a self-signed
    /// certificate for `localhost` and 127.0.0.1 (see [`HttpExit::ca_pem`]).
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    pub async fn start(self) -> HttpExit {
        let tls = self.tls.then(|| self_signed(vec![b"http/1.1".to_vec()]));
        let acceptor = tls
            .as_ref()
            .map(|(config, _)| tokio_rustls::TlsAcceptor::from(config.clone()));
        let ca_pem = tls.map(|(_, pem)| pem);
        let state = Arc::new(HttpState {
            name: self.name,
            required: self.required,
            mode: AtomicU8::new(ExitMode::Normal as u8),
            plain: AtomicUsize::new(0),
            connects: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let server = serve(move |stream, stop| {
            let state = shared.clone();
            let acceptor = acceptor.clone();
            async move {
                let service = service_fn(move |request| {
                    http_exit_handle(state.clone(), stop.clone(), request)
                });
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let _ = http
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                    }
                    None => {
                        let _ = http
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                    }
                }
            }
        })
        .await;
        HttpExit {
            state,
            server,
            ca_pem,
        }
    }
}

/// An HTTP/1.1 forward proxy on 127.0.0.1 (see the module docs).
pub struct HttpExit {
    state: Arc<HttpState>,
    server: Server,
    /// Set for TLS exits: the certificate to trust.
    ca_pem: Option<String>,
}

impl HttpExit {
    pub fn builder(name: &str) -> HttpExitBuilder {
        HttpExitBuilder {
            name: name.into(),
            required: None,
            tls: false,
        }
    }

    /// An exit without required credentials.
    pub async fn start(name: &str) -> HttpExit {
        HttpExit::builder(name).start().await
    }

    /// An exit that requires `Proxy-Authorization: Basic base64(user:pass)`.
    pub async fn start_with_auth(name: &str, user: &str, pass: &str) -> HttpExit {
        HttpExit::builder(name).with_auth(user, pass).start().await
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    fn scheme(&self) -> &'static str {
        if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `http://127.0.0.1:PORT` (`https://` for a TLS exit)
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.server.addr)
    }

    /// `http://user:pass@127.0.0.1:PORT` (`https://` for a TLS exit)
    pub fn url_with(&self, user: &str, pass: &str) -> String {
        format!("{}://{user}:{pass}@{}", self.scheme(), self.server.addr)
    }

    /// The certificate of a TLS exit (PEM), for `exits_ca_file`.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn set_mode(&self, mode: ExitMode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn mode(&self) -> ExitMode {
        ExitMode::from_u8(self.state.mode.load(Ordering::SeqCst))
    }

    /// Plain (absolute-form) requests accepted (right credentials, if any are required),
    /// whatever the mode made of them.
    pub fn plain_count(&self) -> usize {
        self.state.plain.load(Ordering::SeqCst)
    }

    /// CONNECT requests accepted (right credentials, if any are required), refused by
    /// [`ExitMode::RefuseConnect`] or not.
    pub fn connect_count(&self) -> usize {
        self.state.connects.load(Ordering::SeqCst)
    }

    /// Every request that arrived, in order, accepted or not.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The `Proxy-Authorization` of the last request that arrived (`None`: the last one
    /// had none, or nothing arrived yet).
    pub fn last_authorization(&self) -> Option<String> {
        self.state
            .seen
            .lock()
            .unwrap()
            .last()
            .and_then(|seen| seen.authorization.clone())
    }

    /// Stops the exit now (the port refuses from now on, open tunnels are closed).
    pub fn kill(&self) {
        self.server.stop.send_replace(true);
        self.server.task.abort();
    }
}

async fn http_exit_handle(
    state: Arc<HttpState>,
    stop: watch::Receiver<bool>,
    request: Request<Incoming>,
) -> Result<Response<ExitBody>, Infallible> {
    let connect = request.method() == Method::CONNECT;
    let authorization = request
        .headers()
        .get(header::PROXY_AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let target = if connect {
        request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default()
    } else {
        request.uri().to_string()
    };
    state.seen.lock().unwrap().push(Seen {
        connect,
        target,
        authorization: authorization.clone(),
    });
    if let Some(required) = &state.required
        && authorization.as_deref() != Some(required.as_str())
    {
        let mut response = answer(407, "proxy authentication required");
        response.headers_mut().insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"exit\""),
        );
        return Ok(response);
    }
    let mode = ExitMode::from_u8(state.mode.load(Ordering::SeqCst));
    if connect {
        state.connects.fetch_add(1, Ordering::SeqCst);
        return Ok(http_exit_connect(mode, stop, request).await);
    }
    state.plain.fetch_add(1, Ordering::SeqCst);
    let mut response = match mode {
        ExitMode::Captcha | ExitMode::Captcha200 => {
            let status = if mode == ExitMode::Captcha { 403 } else { 200 };
            let mut response = answer(status, CAPTCHA_BODY);
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            response
        }
        ExitMode::Normal | ExitMode::RefuseConnect => http_exit_forward(request).await,
    };
    response.headers_mut().insert(
        "x-exit",
        HeaderValue::from_str(&state.name).expect("exit name is a header value"),
    );
    Ok(response)
}

/// Forwards an absolute-form request to its origin in origin form, and streams the reply.
async fn http_exit_forward(request: Request<Incoming>) -> Response<ExitBody> {
    let uri = request.uri().clone();
    if uri.scheme_str() != Some("http") {
        return answer(400, "the exit takes absolute http:// URIs and CONNECT only");
    }
    let Some(host) = uri.host() else {
        return answer(400, "no host in the request URI");
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = match TcpStream::connect((host.as_str(), port)).await {
        Ok(stream) => stream,
        Err(error) => return answer(502, format!("exit could not reach {host}:{port}: {error}")),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(error) => return answer(502, format!("exit handshake failed: {error}")),
        };
    tokio::spawn(connection);

    let (mut parts, body) = request.into_parts();
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    parts.uri = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .expect("origin form");
    parts.version = http::Version::HTTP_11;
    parts.headers.remove(header::PROXY_AUTHORIZATION);
    parts.headers.remove("proxy-connection");
    if !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(
            header::HOST,
            HeaderValue::from_str(&authority).expect("authority is a header value"),
        );
    }
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(|body| body.boxed()),
        Err(error) => answer(502, format!("exit got no answer from the origin: {error}")),
    }
}

/// Opens the tunnel (connects to the target first; 502 if it cannot), answers 200 and
/// splices once hyper hands over the connection.
async fn http_exit_connect(
    mode: ExitMode,
    stop: watch::Receiver<bool>,
    request: Request<Incoming>,
) -> Response<ExitBody> {
    if mode == ExitMode::RefuseConnect {
        let mut response = answer(403, "tunnels are refused here");
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let Some(authority) = request.uri().authority().map(|a| a.to_string()) else {
        return answer(400, "CONNECT needs host:port");
    };
    let upstream = match TcpStream::connect(authority.as_str()).await {
        Ok(stream) => stream,
        Err(error) => return answer(502, format!("exit could not reach {authority}: {error}")),
    };
    let _ = upstream.set_nodelay(true);
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(request).await {
            splice(TokioIo::new(upgraded), upstream, stop).await;
        }
    });
    Response::new(empty())
}

// ---------------------------------------------------------------------------------------
// Socks5Exit

struct SocksState {
    name: String,
    credentials: Option<(String, String)>,
    connects: AtomicUsize,
    auth_failures: AtomicUsize,
    targets: Mutex<Vec<String>>,
}

/// How a [`Socks5Exit`] is built: `Socks5Exit::builder("c").with_auth("u", "p").start()`.
pub struct Socks5ExitBuilder {
    name: String,
    credentials: Option<(String, String)>,
}

impl Socks5ExitBuilder {
    /// Offers only method 0x02 (RFC 1929 user/password) and requires these credentials.
    pub fn with_auth(mut self, user: &str, pass: &str) -> Self {
        self.credentials = Some((user.into(), pass.into()));
        self
    }

    pub async fn start(self) -> Socks5Exit {
        let state = Arc::new(SocksState {
            name: self.name,
            credentials: self.credentials,
            connects: AtomicUsize::new(0),
            auth_failures: AtomicUsize::new(0),
            targets: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let server = serve(move |stream, stop| {
            let state = shared.clone();
            async move {
                let _ = socks_connection(state, stream, stop).await;
            }
        })
        .await;
        Socks5Exit { state, server }
    }
}

/// A SOCKS5 server on 127.0.0.1 (see the module docs).
pub struct Socks5Exit {
    state: Arc<SocksState>,
    server: Server,
}

impl Socks5Exit {
    pub fn builder(name: &str) -> Socks5ExitBuilder {
        Socks5ExitBuilder {
            name: name.into(),
            credentials: None,
        }
    }

    /// An exit offering method 0x00 (no authentication).
    pub async fn start(name: &str) -> Socks5Exit {
        Socks5Exit::builder(name).start().await
    }

    /// An exit requiring user/password (RFC 1929).
    pub async fn start_with_auth(name: &str, user: &str, pass: &str) -> Socks5Exit {
        Socks5Exit::builder(name)
            .with_auth(user, pass)
            .start()
            .await
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `socks5://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("socks5://{}", self.server.addr)
    }

    /// `socks5://user:pass@127.0.0.1:PORT`
    pub fn url_with(&self, user: &str, pass: &str) -> String {
        format!("socks5://{user}:{pass}@{}", self.server.addr)
    }

    /// CONNECT commands received after a successful greeting (and authentication),
    /// whether the target could be reached or not. One per connection to the exit.
    pub fn connect_count(&self) -> usize {
        self.state.connects.load(Ordering::SeqCst)
    }

    /// Authentications refused (wrong user or password, or no acceptable method).
    pub fn auth_failures(&self) -> usize {
        self.state.auth_failures.load(Ordering::SeqCst)
    }

    /// The last CONNECT target as requested: `host:port` (a domain name as given),
    /// `1.2.3.4:port` or `[::1]:port`.
    pub fn last_target(&self) -> Option<String> {
        self.state.targets.lock().unwrap().last().cloned()
    }

    /// Every CONNECT target, in order.
    pub fn targets(&self) -> Vec<String> {
        self.state.targets.lock().unwrap().clone()
    }

    /// Stops the exit now (the port refuses from now on, open tunnels are closed).
    pub fn kill(&self) {
        self.server.stop.send_replace(true);
        self.server.task.abort();
    }
}

/// SOCKS5 reply codes (RFC 1928 section 6).
const SOCKS_SUCCEEDED: u8 = 0x00;
const SOCKS_HOST_UNREACHABLE: u8 = 0x04;
const SOCKS_CONNECTION_REFUSED: u8 = 0x05;
const SOCKS_COMMAND_NOT_SUPPORTED: u8 = 0x07;
const SOCKS_ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;

async fn socks_reply(
    stream: &mut TcpStream,
    code: u8,
    bound: Option<SocketAddr>,
) -> std::io::Result<()> {
    let mut reply = vec![5, code, 0];
    match bound {
        Some(SocketAddr::V6(addr)) => {
            reply.push(4);
            reply.extend_from_slice(&addr.ip().octets());
            reply.extend_from_slice(&addr.port().to_be_bytes());
        }
        Some(SocketAddr::V4(addr)) => {
            reply.push(1);
            reply.extend_from_slice(&addr.ip().octets());
            reply.extend_from_slice(&addr.port().to_be_bytes());
        }
        None => reply.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0]),
    }
    stream.write_all(&reply).await
}

async fn socks_connection(
    state: Arc<SocksState>,
    mut stream: TcpStream,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // Greeting: VER NMETHODS METHODS...
    let version = stream.read_u8().await?;
    if version != 5 {
        return Ok(());
    }
    let count = stream.read_u8().await?;
    let mut methods = vec![0u8; count as usize];
    stream.read_exact(&mut methods).await?;
    let wanted = if state.credentials.is_some() {
        0x02
    } else {
        0x00
    };
    if !methods.contains(&wanted) {
        state.auth_failures.fetch_add(1, Ordering::SeqCst);
        stream.write_all(&[5, 0xff]).await?;
        return Ok(());
    }
    stream.write_all(&[5, wanted]).await?;

    // RFC 1929: VER ULEN UNAME PLEN PASSWD → VER STATUS.
    if let Some((user, pass)) = &state.credentials {
        let version = stream.read_u8().await?;
        let length = stream.read_u8().await?;
        let mut given_user = vec![0u8; length as usize];
        stream.read_exact(&mut given_user).await?;
        let length = stream.read_u8().await?;
        let mut given_pass = vec![0u8; length as usize];
        stream.read_exact(&mut given_pass).await?;
        let ok = version == 1 && given_user == user.as_bytes() && given_pass == pass.as_bytes();
        stream.write_all(&[1, if ok { 0 } else { 1 }]).await?;
        if !ok {
            state.auth_failures.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
    }

    // Request: VER CMD RSV ATYP DST.ADDR DST.PORT
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Ok(());
    }
    let (host, ipv6) = match head[3] {
        1 => {
            let mut octets = [0u8; 4];
            stream.read_exact(&mut octets).await?;
            (Ipv4Addr::from(octets).to_string(), false)
        }
        3 => {
            let length = stream.read_u8().await?;
            let mut name = vec![0u8; length as usize];
            stream.read_exact(&mut name).await?;
            (String::from_utf8_lossy(&name).into_owned(), false)
        }
        4 => {
            let mut octets = [0u8; 16];
            stream.read_exact(&mut octets).await?;
            (Ipv6Addr::from(octets).to_string(), true)
        }
        _ => {
            socks_reply(&mut stream, SOCKS_ADDRESS_TYPE_NOT_SUPPORTED, None).await?;
            return Ok(());
        }
    };
    let port = stream.read_u16().await?;
    if head[1] != 1 {
        socks_reply(&mut stream, SOCKS_COMMAND_NOT_SUPPORTED, None).await?;
        return Ok(());
    }
    let target = if ipv6 {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    state.connects.fetch_add(1, Ordering::SeqCst);
    state.targets.lock().unwrap().push(target);

    let upstream = match TcpStream::connect((host.as_str(), port)).await {
        Ok(upstream) => upstream,
        Err(error) => {
            let code = if error.kind() == std::io::ErrorKind::ConnectionRefused {
                SOCKS_CONNECTION_REFUSED
            } else {
                SOCKS_HOST_UNREACHABLE
            };
            socks_reply(&mut stream, code, None).await?;
            return Ok(());
        }
    };
    let _ = upstream.set_nodelay(true);
    socks_reply(&mut stream, SOCKS_SUCCEEDED, upstream.local_addr().ok()).await?;
    splice(stream, upstream, stop).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// TlsOrigin

/// An https site on 127.0.0.1 with a self-signed certificate for `localhost` and
/// 127.0.0.1 (ALPN h2 and http/1.1); every request gets `200` and `secure <name> <path>`,
/// but the first request for a path starting `/ban-first` gets [`CAPTCHA_BODY`]
/// (`text/html`), as a site banning the first exit that asks, and `/robots.txt`
/// disallows `/private` to every agent. `/echo` answers with the request's body and
/// `content-type`, and keeps the body ([`TlsOrigin::bodies`]).
pub struct TlsOrigin {
    name: String,
    ca_pem: String,
    requests: Arc<AtomicUsize>,
    /// The bodies `/echo` received, in order.
    bodies: Arc<Mutex<Vec<Bytes>>>,
    /// The HTTP version of each request, in order.
    versions: Arc<Mutex<Vec<http::Version>>>,
    server: Server,
}

/// A server TLS config with a fresh self-signed certificate for `localhost` and
/// 127.0.0.1, and that certificate as PEM.
fn self_signed(alpn: Vec<Vec<u8>>) -> (Arc<rustls::ServerConfig>, String) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("generate certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(certified.cert.der().to_vec())],
        key,
    )
    .expect("server certificate");
    config.alpn_protocols = alpn;
    (Arc::new(config), certified.cert.pem())
}

impl TlsOrigin {
    pub async fn start(name: &str) -> TlsOrigin {
        let (config, ca_pem) = self_signed(vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);

        let requests = Arc::new(AtomicUsize::new(0));
        let versions = Arc::new(Mutex::new(Vec::new()));
        let captchas = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (counter, label) = (requests.clone(), name.to_string());
        let (seen_versions, seen_bodies) = (versions.clone(), bodies.clone());
        let server = serve(move |stream, _stop| {
            let (acceptor, counter, label) = (acceptor.clone(), counter.clone(), label.clone());
            let (versions, captchas) = (seen_versions.clone(), captchas.clone());
            let bodies = seen_bodies.clone();
            async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |request: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    versions.lock().unwrap().push(request.version());
                    let path = request.uri().path().to_string();
                    if path == "/echo" {
                        let bodies = bodies.clone();
                        return Box::pin(async move {
                            let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
                            let body = request.into_body().collect().await.map(|b| b.to_bytes());
                            let body = body.unwrap_or_default();
                            bodies.lock().unwrap().push(body.clone());
                            let mut response = Response::new(Full::new(body));
                            if let Some(content_type) = content_type {
                                response
                                    .headers_mut()
                                    .insert(header::CONTENT_TYPE, content_type);
                            }
                            Ok::<_, Infallible>(response)
                        })
                            as std::pin::Pin<Box<dyn Future<Output = _> + Send>>;
                    }
                    let captcha = path.starts_with("/ban-first")
                        && captchas.lock().unwrap().insert(path.clone());
                    let response = if path == "/robots.txt" {
                        Response::new(Full::new(Bytes::from(
                            "User-agent: *\nDisallow: /private\n",
                        )))
                    } else if captcha {
                        Response::builder()
                            .header(header::CONTENT_TYPE, "text/html")
                            .body(Full::new(Bytes::from(CAPTCHA_BODY)))
                            .unwrap()
                    } else {
                        let body = format!("secure {label} {path}");
                        Response::new(Full::new(Bytes::from(body)))
                    };
                    Box::pin(async move { Ok::<_, Infallible>(response) })
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        })
        .await;
        TlsOrigin {
            name: name.into(),
            ca_pem,
            requests,
            bodies,
            versions,
            server,
        }
    }

    /// The bodies `/echo` received, in order.
    pub fn bodies(&self) -> Vec<Bytes> {
        self.bodies.lock().unwrap().clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.server.addr)
    }

    /// `https://localhost:PORT` (the certificate names `localhost` too).
    pub fn localhost_url(&self) -> String {
        format!("https://localhost:{}", self.server.addr.port())
    }

    /// The self-signed certificate, PEM: the CA to trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The certificate for `reqwest::ClientBuilder::add_root_certificate`.
    pub fn certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("certificate")
    }

    /// Requests answered (inside the TLS sessions).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The HTTP version of each request answered, in order.
    pub fn versions(&self) -> Vec<http::Version> {
        self.versions.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------
// Raw CONNECT, for what an HTTP client library hides (the 200's headers, refusals)

/// How long a raw exchange with a proxy may take before the test calls it a hang.
const RAW_STEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends `CONNECT target` (plus `headers`, each ending in \r\n) on a new connection to
/// `proxy` and returns the answer's head and the stream (positioned after the head).
pub async fn raw_connect(proxy: SocketAddr, target: &str, headers: &str) -> (String, TcpStream) {
    let mut stream = tokio::time::timeout(RAW_STEP, TcpStream::connect(proxy))
        .await
        .expect("connect to the proxy: nothing within 5 s")
        .expect("connect to the proxy");
    stream
        .write_all(
            format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{headers}\r\n").as_bytes(),
        )
        .await
        .expect("send CONNECT");
    let head = tokio::time::timeout(RAW_STEP, read_head(&mut stream))
        .await
        .expect("CONNECT answer: nothing within 5 s");
    (head, stream)
}

/// Reads up to and including the blank line ending a response head.
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read the head");
        assert!(
            n > 0,
            "closed before the end of the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("a UTF-8 head")
}

/// A header's value in a raw response head (name case-insensitive).
pub fn head_header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

// ---------------------------------------------------------------------------------------
// Replies through a proxy, read whole

/// A reply read whole: status, headers, body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("a text header").to_string())
    }

    /// The exit Junction used (`x-junction-exit`); panics when missing.
    pub fn exit(&self) -> String {
        self.header("x-junction-exit")
            .unwrap_or_else(|| panic!("no x-junction-exit: {self:?}"))
    }

    /// Asserts an error Junction made: `status`, `Proxy-Status` with `error`, the JSON
    /// body of that type, and `x-junction-reason`.
    pub fn assert_junction_error(&self, status: u16, error: &str, reason: &str) {
        assert_eq!(self.status, status, "{self:?}");
        let proxy_status = self
            .header("proxy-status")
            .unwrap_or_else(|| panic!("no Proxy-Status: {self:?}"));
        assert!(
            proxy_status.starts_with(&format!("junction; error={error}")),
            "{proxy_status}"
        );
        let json: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not a JSON body ({e}): {}", self.body));
        assert_eq!(json["error"]["type"], error, "{json}");
        assert!(json["error"]["message"].is_string(), "{json}");
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            self.header("x-junction-reason").as_deref(),
            Some(reason),
            "{self:?}"
        );
    }
}

/// Sends `request` and reads the whole reply (each step within 5 s).
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let reply = tokio::time::timeout(RAW_STEP, request.send())
        .await
        .expect("request through junction: nothing within 5 s")
        .expect("request through junction");
    let status = reply.status().as_u16();
    let headers = reply.headers().clone();
    let body = tokio::time::timeout(RAW_STEP, reply.text())
        .await
        .expect("reply body: nothing within 5 s")
        .expect("body");
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get(client: &reqwest::Client, url: &str) -> Reply {
    send(client.get(url)).await
}

/// GET that must succeed; returns the reply.
pub async fn get_ok(client: &reqwest::Client, url: &str) -> Reply {
    let reply = get(client, url).await;
    assert_eq!(reply.status, 200, "GET {url}: {reply:?}");
    reply
}

// ---------------------------------------------------------------------------------------
// A SOCKS5 client, by hand

/// A minimal SOCKS5 client: greeting with `methods`, optional RFC 1929 credentials, then
/// a request with command `command` for the raw address bytes `address` (ATYP first).
/// Returns the stream and every reply byte read.
pub async fn socks_handshake(
    exit: SocketAddr,
    methods: &[u8],
    credentials: Option<(&str, &str)>,
    command: u8,
    address: &[u8],
    port: u16,
) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(exit).await.unwrap();
    let mut greeting = vec![5, methods.len() as u8];
    greeting.extend_from_slice(methods);
    stream.write_all(&greeting).await.unwrap();
    let mut replies = vec![0u8; 2];
    stream.read_exact(&mut replies).await.unwrap();
    if replies[1] == 0xff {
        return (stream, replies);
    }
    if let Some((user, pass)) = credentials {
        let mut auth = vec![1, user.len() as u8];
        auth.extend_from_slice(user.as_bytes());
        auth.push(pass.len() as u8);
        auth.extend_from_slice(pass.as_bytes());
        stream.write_all(&auth).await.unwrap();
        let mut status = [0u8; 2];
        stream.read_exact(&mut status).await.unwrap();
        replies.extend_from_slice(&status);
        if status[1] != 0 {
            return (stream, replies);
        }
    }
    let mut request = vec![5, command, 0];
    request.extend_from_slice(address);
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await.unwrap();
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await.unwrap();
    let rest = match reply[3] {
        1 => 6,
        4 => 18,
        other => panic!("unexpected bound address type {other}"),
    };
    let mut bound = vec![0u8; rest];
    stream.read_exact(&mut bound).await.unwrap();
    replies.extend_from_slice(&reply);
    (stream, replies)
}

pub fn domain(name: &str) -> Vec<u8> {
    let mut address = vec![3, name.len() as u8];
    address.extend_from_slice(name.as_bytes());
    address
}
