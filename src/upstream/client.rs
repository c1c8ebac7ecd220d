//! The upstream HTTP client: connects (TCP, TLS, HTTP/1.1 or HTTP/2), keeps idle
//! HTTP/1.1 connections per endpoint for reuse and one shared HTTP/2 connection.
//! Written on hyper's low-level `client::conn` rather than hyper-util's pooled client:
//! a per-endpoint stack of idle connections needs no global map, hashing or pool task,
//! and an HTTP/1.1 connection is driven by the request using it (no task of its own).

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::{Endpoint, EndpointState};
use crate::config::spec::ProtocolSpec;
use crate::pipeline::ProxyBody;

type H1Sender = http1::SendRequest<ProxyBody>;
type H1Connection = http1::Connection<TokioIo<Stream>, ProxyBody>;
type H2Sender = http2::SendRequest<ProxyBody>;

const DEFAULT_MAX_IDLE: usize = 256;

/// Why a request could not be sent or answered by an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connect to {endpoint} failed: {source}")]
    Connect {
        endpoint: Arc<str>,
        source: std::io::Error,
    },
    #[error("connect to {endpoint} timed out after {after:?}")]
    ConnectTimeout { endpoint: Arc<str>, after: Duration },
    #[error("TLS handshake with {endpoint} failed: {source}")]
    Tls {
        endpoint: Arc<str>,
        source: std::io::Error,
    },
    #[error("HTTP handshake with {endpoint} failed: {source}")]
    Handshake {
        endpoint: Arc<str>,
        source: hyper::Error,
    },
    #[error("{endpoint} is at its connection limit")]
    Saturated { endpoint: Arc<str> },
    #[error("{endpoint} failed the request: {source}")]
    Exchange {
        endpoint: Arc<str>,
        source: hyper::Error,
    },
}

/// The bytes of a connection: TCP, or TLS over TCP.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Counts a connection in its endpoint's `open` total until dropped.
struct OpenSlot(Arc<EndpointState>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.connections.closed();
    }
}

/// An HTTP/1.1 connection and its sender, driven by whichever request uses it: the
/// request's own task polls the connection while it waits for the response head, and
/// the response body polls it while it streams. No task of its own means no channel
/// hop and no second task wake-up per request (as Pingora does it).
struct Http1 {
    sender: H1Sender,
    connection: Pin<Box<H1Connection>>,
    /// The connection future has ended (closed or failed).
    finished: bool,
    open: OpenSlot,
}

impl Http1 {
    /// Lets the connection read and write what it can.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.finished && self.connection.as_mut().poll(cx).is_ready() {
            self.finished = true;
        }
    }

    fn is_usable(&self) -> bool {
        !self.finished && !self.sender.is_closed()
    }

    async fn ready(&mut self) -> bool {
        std::future::poll_fn(|cx| {
            self.drive(cx);
            self.sender.poll_ready(cx)
        })
        .await
        .is_ok()
    }

    async fn send(
        &mut self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<ProxyBody>>> {
        let response = self.sender.try_send_request(request);
        let mut response = std::pin::pin!(response);
        std::future::poll_fn(|cx| {
            self.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

/// Idle connections of one endpoint.
#[derive(Default)]
pub struct ConnectionCache {
    idle_http1: Mutex<Vec<Http1>>,
    shared_h2: Mutex<Option<H2Sender>>,
    /// Held while the shared HTTP/2 connection is being made, so that concurrent
    /// first requests wait for it instead of each opening their own.
    h2_connecting: tokio::sync::Mutex<()>,
    /// Open HTTP/1.1 connections (idle and busy), for `max_connections`.
    open: AtomicU32,
    /// Requests waiting for a connection to come back (`max_pending`).
    waiting: AtomicU32,
    /// A connection went back to the idle stack or closed.
    returned: Notify,
}

impl ConnectionCache {
    fn pop_http1(&self) -> Option<Http1> {
        let mut idle = self.idle_http1.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(connection) = idle.pop() {
            if connection.is_usable() {
                return Some(connection);
            }
        }
        None
    }

    fn push_http1(&self, connection: Http1, max_idle: usize) {
        if !connection.is_usable() {
            return;
        }
        {
            let mut idle = self.idle_http1.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() >= max_idle {
                return;
            }
            idle.push(connection);
        }
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.returned.notify_one();
        }
    }

    /// A connection ended (or never came up).
    fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.returned.notify_one();
        }
    }

    pub fn open_count(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn idle_count(&self) -> usize {
        self.idle_http1.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    fn h2(&self) -> Option<H2Sender> {
        let shared = self.shared_h2.lock().unwrap_or_else(|p| p.into_inner());
        shared.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    fn set_h2(&self, sender: H2Sender) {
        *self.shared_h2.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender);
    }
}

/// Opens the TCP stream to an endpoint some other way than connecting to it: through a
/// SOCKS5 exit of the egress proxy, whose connections are then cached like any other.
pub trait Dialer: Send + Sync {
    fn dial<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<TcpStream, SendError>> + Send + 'a>>;
}

/// The client of one pool: protocol, TLS settings and limits shared by its endpoints.
pub struct UpstreamClient {
    pub protocol: ProtocolSpec,
    tls: Option<tokio_rustls::TlsConnector>,
    dialer: Option<Arc<dyn Dialer>>,
    max_idle: usize,
    max_connections: Option<u32>,
    max_pending: u32,
}

/// A response from an endpoint, with the connection to give back once its body ends.
pub struct Sent {
    pub response: Response<Incoming>,
    reuse: Option<Reuse>,
}

/// The HTTP/1.1 connection a response came on: driven while the body streams, and
/// given back to its endpoint when the body ends, if it may be reused.
struct Reuse {
    connection: Http1,
    reusable: bool,
    max_idle: usize,
}

impl UpstreamClient {
    pub fn new(
        protocol: ProtocolSpec,
        tls: Option<Arc<rustls::ClientConfig>>,
        max_idle: Option<usize>,
        limits: &super::Limits,
    ) -> Self {
        UpstreamClient {
            protocol,
            tls: tls.map(tokio_rustls::TlsConnector::from),
            dialer: None,
            max_idle: max_idle.unwrap_or(DEFAULT_MAX_IDLE),
            max_connections: limits.max_connections,
            max_pending: limits.max_pending.unwrap_or(0),
        }
    }

    /// Streams to endpoints come from `dialer` instead of a TCP connect.
    pub fn with_dialer(mut self, dialer: Arc<dyn Dialer>) -> Self {
        self.dialer = Some(dialer);
        self
    }

    async fn open_tcp(
        &self,
        endpoint: &Endpoint,
        connect_timeout: Duration,
    ) -> Result<TcpStream, SendError> {
        match &self.dialer {
            Some(dialer) => dialer.dial(endpoint, connect_timeout).await,
            None => connect_tcp(endpoint, connect_timeout).await,
        }
    }

    /// The TLS settings of this pool's https endpoints (health checks use them too).
    pub fn tls_connector(&self) -> Option<tokio_rustls::TlsConnector> {
        self.tls.clone()
    }

    /// Sends `request` to `endpoint`, reusing an idle connection when there is one.
    /// A request that a reused connection could not even start sending (it closed
    /// meanwhile) is sent again on a fresh connection, whatever its method.
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        request: Request<ProxyBody>,
        connect_timeout: Duration,
    ) -> Result<Sent, SendError> {
        match self.protocol {
            ProtocolSpec::Http1 => self.send_http1(endpoint, request, connect_timeout).await,
            ProtocolSpec::H2 => self.send_h2(endpoint, request, connect_timeout).await,
        }
    }

    async fn send_http1(
        &self,
        endpoint: &Endpoint,
        mut request: Request<ProxyBody>,
        connect_timeout: Duration,
    ) -> Result<Sent, SendError> {
        let cache = &endpoint.state.connections;
        loop {
            while let Some(mut connection) = cache.pop_http1() {
                if !connection.ready().await {
                    continue;
                }
                match connection.send(request).await {
                    Ok(response) => return Ok(self.sent_http1(response, connection)),
                    Err(mut error) => match error.take_message() {
                        Some(unsent) => request = unsent,
                        None => {
                            return Err(SendError::Exchange {
                                endpoint: endpoint.url.clone(),
                                source: error.into_error(),
                            });
                        }
                    },
                }
            }
            let Some(max) = self.max_connections else {
                break;
            };
            if cache.open.load(Ordering::Relaxed) < max {
                break;
            }
            // At the connection cap: wait for one to come back, if the queue has room.
            let saturated = || SendError::Saturated {
                endpoint: endpoint.url.clone(),
            };
            if cache.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_pending {
                cache.waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(saturated());
            }
            let waited = tokio::time::timeout(connect_timeout, cache.returned.notified()).await;
            cache.waiting.fetch_sub(1, Ordering::Relaxed);
            if waited.is_err() {
                return Err(saturated());
            }
        }
        let mut connection = self.connect_http1(endpoint, connect_timeout).await?;
        let response = connection
            .send(request)
            .await
            .map_err(|error| SendError::Exchange {
                endpoint: endpoint.url.clone(),
                source: error.into_error(),
            })?;
        Ok(self.sent_http1(response, connection))
    }

    fn sent_http1(&self, response: Response<Incoming>, connection: Http1) -> Sent {
        let reuse = Reuse {
            connection,
            reusable: !response_closes_connection(&response),
            max_idle: self.max_idle,
        };
        Sent {
            response,
            reuse: Some(reuse),
        }
    }

    async fn send_h2(
        &self,
        endpoint: &Endpoint,
        request: Request<ProxyBody>,
        connect_timeout: Duration,
    ) -> Result<Sent, SendError> {
        let cache = &endpoint.state.connections;
        let mut sender = match cache.h2() {
            Some(sender) => sender,
            None => {
                let _connecting = cache.h2_connecting.lock().await;
                match cache.h2() {
                    // Another request made the connection while this one waited.
                    Some(sender) => sender,
                    None => {
                        let sender = self.connect_h2(endpoint, connect_timeout).await?;
                        cache.set_h2(sender.clone());
                        sender
                    }
                }
            }
        };
        let response =
            sender
                .send_request(request)
                .await
                .map_err(|source| SendError::Exchange {
                    endpoint: endpoint.url.clone(),
                    source,
                })?;
        Ok(Sent {
            response,
            reuse: None,
        })
    }

    /// Sends an `Upgrade` request on a fresh, unpooled HTTP/1.1 connection that can be
    /// taken over after a `101 Switching Protocols`.
    pub async fn send_upgrade(
        &self,
        endpoint: &Endpoint,
        request: Request<ProxyBody>,
        connect_timeout: Duration,
    ) -> Result<Response<Incoming>, SendError> {
        let (mut sender, connection, open) =
            self.handshake_http1(endpoint, connect_timeout).await?;
        // Taken over after a 101, so it runs as a task of its own.
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
            drop(open);
        });
        sender
            .send_request(request)
            .await
            .map_err(|source| SendError::Exchange {
                endpoint: endpoint.url.clone(),
                source,
            })
    }

    /// A new pooled HTTP/1.1 connection, driven by its users.
    async fn connect_http1(
        &self,
        endpoint: &Endpoint,
        connect_timeout: Duration,
    ) -> Result<Http1, SendError> {
        let (sender, connection, open) = self.handshake_http1(endpoint, connect_timeout).await?;
        Ok(Http1 {
            sender,
            connection: Box::pin(connection),
            finished: false,
            open,
        })
    }

    /// Connects and shakes hands; the connection counts as open until `OpenSlot` drops.
    async fn handshake_http1(
        &self,
        endpoint: &Endpoint,
        connect_timeout: Duration,
    ) -> Result<(H1Sender, H1Connection, OpenSlot), SendError> {
        endpoint
            .state
            .connections
            .open
            .fetch_add(1, Ordering::Relaxed);
        // From here on, an early return closes the slot again.
        let open = OpenSlot(endpoint.state.clone());
        let tcp = self.open_tcp(endpoint, connect_timeout).await?;
        let stream = if endpoint.target.is_https() {
            let tls = self.tls_connect(endpoint, tcp, connect_timeout).await?;
            Stream::Tls(Box::new(tls))
        } else {
            Stream::Tcp(tcp)
        };
        let (sender, connection) =
            http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|source| SendError::Handshake {
                    endpoint: endpoint.url.clone(),
                    source,
                })?;
        Ok((sender, connection, open))
    }

    async fn connect_h2(
        &self,
        endpoint: &Endpoint,
        connect_timeout: Duration,
    ) -> Result<H2Sender, SendError> {
        let url = &endpoint.url;
        let handshake = |source| SendError::Handshake {
            endpoint: url.clone(),
            source,
        };
        let tcp = self.open_tcp(endpoint, connect_timeout).await?;
        macro_rules! drive {
            ($io:expr) => {{
                let (sender, connection) = http2::handshake(TokioExecutor::new(), $io)
                    .await
                    .map_err(handshake)?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                sender
            }};
        }
        Ok(if endpoint.target.is_https() {
            let tls = self.tls_connect(endpoint, tcp, connect_timeout).await?;
            drive!(TokioIo::new(tls))
        } else {
            drive!(TokioIo::new(tcp))
        })
    }

    async fn tls_connect(
        &self,
        endpoint: &Endpoint,
        tcp: TcpStream,
        connect_timeout: Duration,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SendError> {
        let url = &endpoint.url;
        let tls_error = |source| SendError::Tls {
            endpoint: url.clone(),
            source,
        };
        let connector = self
            .tls
            .as_ref()
            .ok_or_else(|| tls_error(std::io::Error::other("no TLS settings for this pool")))?;
        let server_name = rustls::pki_types::ServerName::try_from(endpoint.target.host.clone())
            .map_err(|e| tls_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        match tokio::time::timeout(connect_timeout, connector.connect(server_name, tcp)).await {
            Ok(result) => result.map_err(tls_error),
            Err(_) => Err(SendError::ConnectTimeout {
                endpoint: url.clone(),
                after: connect_timeout,
            }),
        }
    }
}

async fn connect_tcp(
    endpoint: &Endpoint,
    connect_timeout: Duration,
) -> Result<TcpStream, SendError> {
    let target = (endpoint.target.host.as_str(), endpoint.target.port);
    match tokio::time::timeout(connect_timeout, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => {
            // Small writes (SSE events, request heads) must leave at once.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(source)) => Err(SendError::Connect {
            endpoint: endpoint.url.clone(),
            source,
        }),
        Err(_) => Err(SendError::ConnectTimeout {
            endpoint: endpoint.url.clone(),
            after: connect_timeout,
        }),
    }
}

fn response_closes_connection(response: &Response<Incoming>) -> bool {
    response
        .headers()
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|value| value.as_bytes().eq_ignore_ascii_case(b"close"))
}

/// An endpoint's response body on its way to the client. It drives its HTTP/1.1
/// connection while it streams; read to the end, the connection goes back to the
/// endpoint's idle stack; a body dropped early takes its connection down with it (its
/// state is unknown).
pub struct UpstreamBody {
    body: Incoming,
    reuse: Option<Reuse>,
    ended: bool,
}

impl UpstreamBody {
    pub fn new(sent: Sent) -> (http::response::Parts, UpstreamBody) {
        let (parts, body) = sent.response.into_parts();
        let ended = body.is_end_stream();
        (
            parts,
            UpstreamBody {
                body,
                reuse: sent.reuse,
                ended,
            },
        )
    }

    pub fn from_incoming(body: Incoming) -> UpstreamBody {
        UpstreamBody {
            ended: body.is_end_stream(),
            body,
            reuse: None,
        }
    }

    /// Reads the whole body (for callers that must see it all, within their limit).
    pub async fn collect(self) -> Result<Bytes, hyper::Error> {
        Ok(BodyExt::collect(self).await?.to_bytes())
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let mut polled = Pin::new(&mut this.body).poll_frame(cx);
        if polled.is_pending() {
            // Nothing buffered: let the connection read (and write what is left of
            // the request), then look again.
            if let Some(reuse) = this.reuse.as_mut() {
                reuse.connection.drive(cx);
                polled = Pin::new(&mut this.body).poll_frame(cx);
            }
        }
        match &polled {
            Poll::Ready(None) => this.ended = true,
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.ended = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.ended || self.body.is_end_stream() {
            if let Some(reuse) = self.reuse.take().filter(|r| r.reusable) {
                let state = reuse.connection.open.0.clone();
                state
                    .connections
                    .push_http1(reuse.connection, reuse.max_idle);
            }
        }
    }
}
