//! An endpoint's connections: each a byte stream (TCP, or TLS over TCP) that holds its
//! place under the pool's `max_connections` until it closes, and the cache of the idle
//! ones (bare streams for the HTTP/1.1 fast engine, hyper senders, the shared HTTP/2
//! connection). Either engine's idle stream serves the other. It knows nothing of the
//! endpoint that owns it, so an endpoint's state can hold it without a circle.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use hyper::client::conn::{http1, http2};
use tokio::sync::Notify;

use super::request_body::RequestBody;

type H1Sender = http1::SendRequest<RequestBody>;
pub(super) type H2Sender = http2::SendRequest<RequestBody>;

/// One open connection to an endpoint.
pub struct EndpointStream {
    io: Io,
    /// Dropped with the stream: the endpoint's open count goes down then.
    _slot: OpenSlot,
}

enum Io {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl EndpointStream {
    pub(crate) fn tcp(stream: TcpStream, slot: OpenSlot) -> Self {
        EndpointStream {
            io: Io::Tcp(stream),
            _slot: slot,
        }
    }

    pub(crate) fn tls(stream: TlsStream<TcpStream>, slot: OpenSlot) -> Self {
        EndpointStream {
            io: Io::Tls(Box::new(stream)),
            _slot: slot,
        }
    }

    /// Whether an idle stream can carry a request: the endpoint has sent nothing (no
    /// close, no stray bytes). Tokio clears a socket's read readiness after a short
    /// read, so a healthy idle TCP stream reads as not ready and costs no syscall here;
    /// a ready one (or a `probe`, for requests that must not be sent twice) is checked
    /// with a non-blocking read. TLS is always read through: a session ticket the
    /// endpoint sent after the handshake makes the socket ready without ending anything.
    pub(crate) fn is_usable(&mut self, probe: bool) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match &mut self.io {
            Io::Tcp(stream) => {
                let ready = stream.poll_read_ready(&mut cx).is_ready();
                if !ready && !probe {
                    return true;
                }
                let mut byte = [0u8; 1];
                matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Io::Tls(stream) => {
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                Pin::new(stream.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }
}

/// A place under an endpoint's connection count, given back when dropped.
pub(crate) struct OpenSlot(Arc<ConnectionCache>);

impl OpenSlot {
    pub(crate) fn take(cache: &Arc<ConnectionCache>) -> Self {
        cache.open.fetch_add(1, Ordering::Relaxed);
        OpenSlot(cache.clone())
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.closed();
    }
}

/// An HTTP/1.1 connection driven by hyper, with the bytes it has read so far: a request
/// whose connection failed with no new byte read was not answered at all.
pub(super) struct Http1 {
    pub(super) sender: H1Sender,
    pub(super) read: Arc<AtomicU64>,
}

/// Idle connections of one endpoint.
#[derive(Default)]
pub struct ConnectionCache {
    idle_http1: Mutex<Vec<Http1>>,
    /// Idle connections of the HTTP/1.1 fast path: bare streams, no hyper connection
    /// task. A closed one is noticed when it is taken ([`ConnectionCache::pop_stream`]).
    idle_streams: Mutex<Vec<EndpointStream>>,
    shared_h2: Mutex<Option<H2Sender>>,
    /// Held while the shared HTTP/2 connection is being made, so that concurrent
    /// first requests wait for it instead of each opening their own.
    pub(super) h2_connecting: tokio::sync::Mutex<()>,
    /// Open HTTP/1.1 connections (idle and busy), for `max_connections`; each holds
    /// an [`OpenSlot`].
    pub(super) open: AtomicU32,
    /// Requests waiting for a connection to come back (`max_pending`).
    pub(super) waiting: AtomicU32,
    /// A connection went back to the idle stack or closed.
    pub(super) returned: Notify,
}

impl ConnectionCache {
    pub(super) fn pop_http1(&self) -> Option<Http1> {
        let mut idle = self.idle_http1.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(connection) = idle.pop() {
            if !connection.sender.is_closed() {
                return Some(connection);
            }
        }
        None
    }

    pub(super) fn push_http1(&self, sender: Http1, max_idle: usize) {
        if sender.sender.is_closed() {
            return;
        }
        self.push_idle(&self.idle_http1, sender, max_idle);
    }

    /// A connection ended (or never came up): its [`OpenSlot`] dropped.
    pub(super) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.returned.notify_one();
        }
    }

    /// An idle stream that has not been closed by the endpoint as far as can be told
    /// without waiting ([`EndpointStream::is_usable`]).
    pub fn pop_stream(&self, probe: bool) -> Option<EndpointStream> {
        loop {
            let mut stream = self
                .idle_streams
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()?;
            if stream.is_usable(probe) {
                return Some(stream);
            }
        }
    }

    pub fn push_stream(&self, stream: EndpointStream, max_idle: usize) {
        self.push_idle(&self.idle_streams, stream, max_idle);
    }

    /// Puts a connection on its idle stack, unless `max_idle` are idle already, and
    /// wakes a request waiting for one.
    fn push_idle<T>(&self, idle: &Mutex<Vec<T>>, connection: T, max_idle: usize) {
        {
            let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() >= max_idle {
                return;
            }
            idle.push(connection);
        }
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.returned.notify_one();
        }
    }

    pub fn open_count(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn idle_count(&self) -> usize {
        let streams = self.idle_streams.lock().map(|idle| idle.len()).unwrap_or(0);
        self.idle_http1.lock().map(|idle| idle.len()).unwrap_or(0) + streams
    }

    pub(super) fn h2(&self) -> Option<H2Sender> {
        let shared = self.shared_h2.lock().unwrap_or_else(|p| p.into_inner());
        shared.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    pub(super) fn set_h2(&self, sender: H2Sender) {
        *self.shared_h2.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender);
    }
}

impl AsyncRead for EndpointStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for EndpointStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Tcp(stream) => stream.is_write_vectored(),
            Io::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
