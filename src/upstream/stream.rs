//! A connection to an endpoint as a byte stream (TCP, or TLS over TCP) that holds its
//! place under the pool's `max_connections` until it closes. The HTTP/1.1 fast engine
//! writes and reads it by hand; hyper's client drives the same kind of stream, so an
//! idle one left by either engine serves the other.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::EndpointState;

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
pub(crate) struct OpenSlot(Arc<EndpointState>);

impl OpenSlot {
    pub(crate) fn take(state: &Arc<EndpointState>) -> Self {
        state.connections.open.fetch_add(1, Ordering::Relaxed);
        OpenSlot(state.clone())
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.connections.closed();
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
