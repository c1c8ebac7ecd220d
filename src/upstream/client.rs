//! The upstream HTTP client: connects (TCP, TLS, HTTP/1.1 or HTTP/2), keeps idle
//! HTTP/1.1 connections per endpoint for reuse and one shared HTTP/2 connection.
//! Written on hyper's low-level `client::conn` rather than hyper-util's pooled client:
//! a per-endpoint stack of idle senders needs no global map, hashing or pool task.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

use super::Protocol;
use super::connections::{EndpointStream, H2Sender, Http1, OpenSlot};
use super::request_body::RequestBody;
use super::{Endpoint, EndpointState};
use crate::normalize::is_idempotent;
use crate::normalize::response as response_head;

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
    /// From the HTTP/1.1 fast path, which reads responses without hyper.
    #[error("{endpoint} sent an invalid response: {reason}")]
    Protocol {
        endpoint: Arc<str>,
        reason: &'static str,
    },
    #[error("{endpoint} closed the connection before it answered: {reason}")]
    Closed { endpoint: Arc<str>, reason: String },
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

/// Whether a new connection to an endpoint may be opened.
pub enum Room {
    /// Under the pool's `max_connections` (or it has none).
    Free,
    /// A connection came back idle or closed: the idle stack may have one to take.
    Returned,
}

/// The client of one pool: protocol, TLS settings and limits shared by its endpoints.
pub struct UpstreamClient {
    pub protocol: Protocol,
    tls: Option<super::tls::UpstreamTls>,
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

impl Sent {
    /// A response on a connection the caller keeps (no pool to give it back to).
    pub fn unpooled(response: Response<Incoming>) -> Sent {
        Sent {
            response,
            reuse: None,
        }
    }
}

struct Reuse {
    sender: Http1,
    state: Arc<EndpointState>,
    max_idle: usize,
}

/// hyper's HTTP/1.1 client sends a GET or HEAD body of unknown length as no
/// body at all; a client's chunked GET body would be lost. Asking for chunking keeps it.
fn keep_unsized_body(request: &mut Request<RequestBody>) {
    let body = request.body();
    let length_unknown = !body.is_end_stream() && body.size_hint().exact().is_none();
    if length_unknown
        && matches!(*request.method(), http::Method::GET | http::Method::HEAD)
        && !request.headers().contains_key(http::header::CONTENT_LENGTH)
    {
        request.headers_mut().insert(
            http::header::TRANSFER_ENCODING,
            http::HeaderValue::from_static("chunked"),
        );
    }
}

impl UpstreamClient {
    pub fn new(
        protocol: Protocol,
        tls: Option<Arc<rustls::ClientConfig>>,
        max_idle: Option<usize>,
        limits: &super::Limits,
    ) -> Self {
        UpstreamClient {
            protocol,
            tls: tls.map(|config| super::tls::UpstreamTls::new(config, None)),
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

    /// Idle connections kept per endpoint.
    pub fn max_idle(&self) -> usize {
        self.max_idle
    }

    /// Whether endpoints are spoken to in HTTP/1.1, which the fast engine writes itself
    /// (over any stream [`UpstreamClient::connect_stream`] opens).
    pub fn speaks_http1(&self) -> bool {
        self.protocol == Protocol::Http1
    }

    /// The name asked for and verified in TLS instead of each endpoint URL's host.
    pub fn with_server_name(mut self, name: rustls::pki_types::ServerName<'static>) -> Self {
        if let Some(tls) = self.tls.take() {
            self.tls = Some(tls.with_server_name(name));
        }
        self
    }

    /// The TLS settings of this pool's https endpoints (health checks use them too).
    pub fn tls(&self) -> Option<super::tls::UpstreamTls> {
        self.tls.clone()
    }

    /// Sends `request` to `endpoint`, reusing an idle connection when there is one.
    /// A request that a reused connection could not even start sending (it closed
    /// meanwhile) is sent again on a fresh connection, whatever its method; one it took
    /// and closed on before a byte of answer is sent again once if it is idempotent and
    /// its body is in hand.
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        request: Request<RequestBody>,
        connect_timeout: Duration,
    ) -> Result<Sent, SendError> {
        match self.protocol {
            Protocol::Http1 => {
                let mut request = request;
                keep_unsized_body(&mut request);
                self.send_http1(endpoint, request, connect_timeout).await
            }
            Protocol::H2 => self.send_h2(endpoint, request, connect_timeout).await,
        }
    }

    async fn send_http1(
        &self,
        endpoint: &Endpoint,
        mut request: Request<RequestBody>,
        connect_timeout: Duration,
    ) -> Result<Sent, SendError> {
        let cache = &endpoint.state.connections;
        // After a reused connection closed on a request it took, only a new one will do.
        let mut fresh_only = false;
        let idle = loop {
            while let Some(mut idle) = (!fresh_only).then(|| cache.pop_http1()).flatten() {
                if idle.sender.ready().await.is_err() {
                    continue;
                }
                // The endpoint may close an idle connection just as a request is sent
                // on it (its keep-alive timeout): an idempotent request it closed on
                // before answering a byte is sent again on a new connection, as the
                // fast path does.
                let spare = replayable_copy(&request);
                let read_before = idle.read.load(Ordering::Relaxed);
                match idle.sender.try_send_request(request).await {
                    Ok(response) => return self.sent_http1(response, idle, endpoint),
                    Err(mut error) => match error.take_message() {
                        Some(unsent) => request = unsent,
                        None => {
                            let error = error.into_error();
                            let unanswered = idle.read.load(Ordering::Relaxed) == read_before
                                && closed_early(&error);
                            match spare.filter(|_| unanswered) {
                                Some(copy) => {
                                    tracing::debug!(endpoint = %endpoint.url, %error, "reused connection closed before answering; sending again on a new one");
                                    request = copy;
                                    fresh_only = true;
                                }
                                None => {
                                    return Err(SendError::Exchange {
                                        endpoint: endpoint.url.clone(),
                                        source: error,
                                    });
                                }
                            }
                        }
                    },
                }
            }
            // An idle stream the fast engine left is as good as a new connection.
            if let Some(stream) = cache.pop_stream(true) {
                break Some(stream);
            }
            match self.await_room(endpoint, connect_timeout).await? {
                Room::Free => break None,
                Room::Returned => {}
            }
        };
        let mut connection = self
            .connect_http1(endpoint, idle, connect_timeout, false)
            .await?;
        let response = connection
            .sender
            .send_request(request)
            .await
            .map_err(|source| SendError::Exchange {
                endpoint: endpoint.url.clone(),
                source,
            })?;
        self.sent_http1(response, connection, endpoint)
    }

    fn sent_http1(
        &self,
        mut response: Response<Incoming>,
        connection: Http1,
        endpoint: &Endpoint,
    ) -> Result<Sent, SendError> {
        let reusable = settle(&mut response, endpoint)? && !response_closes_connection(&response);
        let reuse = reusable.then(|| Reuse {
            sender: connection,
            state: endpoint.state.clone(),
            max_idle: self.max_idle,
        });
        Ok(Sent { response, reuse })
    }

    async fn send_h2(
        &self,
        endpoint: &Endpoint,
        request: Request<RequestBody>,
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
                        // Boxed: the handshake's state is most of this future's size
                        // (6.5 KB of 7.3), and every request's future carries that size
                        // though only a connection's first request connects.
                        let sender = Box::pin(self.connect_h2(endpoint, connect_timeout)).await?;
                        cache.set_h2(sender.clone());
                        sender
                    }
                }
            }
        };
        let mut response =
            sender
                .send_request(request)
                .await
                .map_err(|source| SendError::Exchange {
                    endpoint: endpoint.url.clone(),
                    source,
                })?;
        settle(&mut response, endpoint)?;
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
        request: Request<RequestBody>,
        connect_timeout: Duration,
    ) -> Result<Response<Incoming>, SendError> {
        let idle = endpoint.state.connections.pop_stream(true);
        let mut connection = self
            .connect_http1(endpoint, idle, connect_timeout, true)
            .await?;
        let mut response = connection
            .sender
            .send_request(request)
            .await
            .map_err(|source| SendError::Exchange {
                endpoint: endpoint.url.clone(),
                source,
            })?;
        // The connection is not reused, so only the head's own rules apply.
        response_head::settle_length(response.headers_mut()).map_err(|reason| {
            SendError::Protocol {
                endpoint: endpoint.url.clone(),
                reason,
            }
        })?;
        Ok(response)
    }

    /// Starts hyper's HTTP/1.1 client on `idle`, or on a new connection.
    async fn connect_http1(
        &self,
        endpoint: &Endpoint,
        idle: Option<EndpointStream>,
        connect_timeout: Duration,
        upgrades: bool,
    ) -> Result<Http1, SendError> {
        let stream = match idle {
            Some(stream) => stream,
            None => self.connect_stream(endpoint, connect_timeout).await?,
        };
        let read = Arc::new(AtomicU64::new(0));
        let io = TokioIo::new(ReadCount::new(stream, read.clone()));
        let (sender, connection) =
            http1::handshake(io)
                .await
                .map_err(|source| SendError::Handshake {
                    endpoint: endpoint.url.clone(),
                    source,
                })?;
        // The stream (and its place under `max_connections`) goes with the connection
        // task, or with the upgraded connection after a `101`.
        tokio::spawn(async move {
            if upgrades {
                let _ = connection.with_upgrades().await;
            } else {
                let _ = connection.await;
            }
        });
        Ok(Http1 { sender, read })
    }

    /// Waits, when the pool limits connections and this endpoint is at the limit, for
    /// one to come back idle or close, if the pool's queue (`max_pending`) has room.
    pub async fn await_room(
        &self,
        endpoint: &Endpoint,
        connect_timeout: Duration,
    ) -> Result<Room, SendError> {
        let Some(max) = self.max_connections else {
            return Ok(Room::Free);
        };
        let cache = &endpoint.state.connections;
        if cache.open.load(Ordering::Relaxed) < max {
            return Ok(Room::Free);
        }
        let saturated = || SendError::Saturated {
            endpoint: endpoint.url.clone(),
        };
        let notified = cache.returned.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // The fast engine cannot use an idle connection of hyper's: one is closed to
        // make room, and its slot, given back, ends this wait (whatever `max_pending`
        // says: the wait is for a connection already closing).
        let evicted = cache.pop_http1();
        let queued = cache.waiting.fetch_add(1, Ordering::Relaxed);
        if evicted.is_none() && queued >= self.max_pending {
            cache.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(saturated());
        }
        drop(evicted);
        let waited = tokio::time::timeout(connect_timeout, notified).await;
        cache.waiting.fetch_sub(1, Ordering::Relaxed);
        match waited {
            Ok(()) => Ok(Room::Returned),
            Err(_) => Err(saturated()),
        }
    }

    /// Opens a new HTTP/1.1 connection to `endpoint`: TCP (or this pool's dialer), then
    /// TLS for an https endpoint. It counts against `max_connections` from the start,
    /// so a caller that must respect the limit asks [`UpstreamClient::await_room`] first.
    pub async fn connect_stream(
        &self,
        endpoint: &Endpoint,
        connect_timeout: Duration,
    ) -> Result<EndpointStream, SendError> {
        let slot = OpenSlot::take(&endpoint.state.connections);
        let tcp = self.open_tcp(endpoint, connect_timeout).await?;
        if endpoint.target.is_https() {
            let tls = self.tls_connect(endpoint, tcp, connect_timeout).await?;
            Ok(EndpointStream::tls(tls, slot))
        } else {
            Ok(EndpointStream::tcp(tcp, slot))
        }
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
        let handshake = connector.connect(&endpoint.target.host, tcp);
        match tokio::time::timeout(connect_timeout, handshake).await {
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

/// Applies the shared rules on response heads (see `normalize::response`) to one
/// from hyper's client; returns whether its connection may be reused.
fn settle(response: &mut Response<Incoming>, endpoint: &Endpoint) -> Result<bool, SendError> {
    let protocol = |reason| SendError::Protocol {
        endpoint: endpoint.url.clone(),
        reason,
    };
    response_head::check_status(response.status().as_u16(), false).map_err(protocol)?;
    response_head::settle_length(response.headers_mut()).map_err(protocol)
}

/// A copy of an idempotent request whose body can be sent again (none, or bytes in
/// hand), for a reused connection that closes before it answers.
fn replayable_copy(request: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    if !is_idempotent(request.method()) {
        return None;
    }
    let body = request.body().replay()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// The connection ended under the request (closed or reset), rather than the endpoint
/// sending something hyper refused.
fn closed_early(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() || error.is_canceled() {
        return true;
    }
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        if current.is::<std::io::Error>() {
            return true;
        }
        cause = current.source();
    }
    false
}

/// A stream that counts the bytes read from it (an endpoint's connection; a tunnel's
/// two sides).
pub(crate) struct ReadCount<T> {
    io: T,
    read: Arc<AtomicU64>,
}

impl<T> ReadCount<T> {
    pub(crate) fn new(io: T, read: Arc<AtomicU64>) -> Self {
        ReadCount { io, read }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadCount<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.read.fetch_add(read as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadCount<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn response_closes_connection(response: &Response<Incoming>) -> bool {
    response
        .headers()
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|value| value.as_bytes().eq_ignore_ascii_case(b"close"))
}

/// An endpoint's response body on its way to the client. When it has been read to
/// the end, its HTTP/1.1 connection goes back to the endpoint's idle stack; a body
/// dropped early takes its connection down with it (its state is unknown).
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
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.ended = true,
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
        if (self.ended || self.body.is_end_stream())
            && let Some(reuse) = self.reuse.take()
        {
            reuse
                .state
                .connections
                .push_http1(reuse.sender, reuse.max_idle);
        }
    }
}
