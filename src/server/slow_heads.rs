//! The `408 Request Timeout` hyper's HTTP/1.1 connections owe a client that began a
//! request head and did not finish it in time, as the fast path sends it: hyper's
//! `header_read_timeout` only closes. An idle connection still closes without a word,
//! a new one too: hyper-util's protocol detection has no timer of its own.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Duration, Sleep};

use crate::fastpath::{FAREWELL, REQUEST_TIMEOUT};

/// A client stream that remembers whether bytes came in after the last response bytes
/// went out (a head under way). When hyper gave up on a head ([`HeadWatch::timed_out`]
/// set) and such bytes are there, the 408 is written as the stream is let go.
pub struct HeadWatch<S: AsyncWrite + Unpin + Send + 'static> {
    stream: Option<S>,
    pending: bool,
    timed_out: Arc<AtomicBool>,
    /// Until the first byte: a connection that sends none in time ends (as if closed).
    first_byte: Option<Pin<Box<Sleep>>>,
}

impl<S: AsyncWrite + Unpin + Send + 'static> HeadWatch<S> {
    pub fn new(stream: S, header_read_timeout: Duration) -> (Self, Arc<AtomicBool>) {
        let timed_out = Arc::new(AtomicBool::new(false));
        let watch = HeadWatch {
            stream: Some(stream),
            pending: false,
            timed_out: timed_out.clone(),
            first_byte: Some(Box::pin(tokio::time::sleep(header_read_timeout))),
        };
        (watch, timed_out)
    }

    fn stream(&mut self) -> &mut S {
        self.stream.as_mut().expect("taken only on drop")
    }
}

/// Whether hyper ended a connection for a request head that took too long.
pub fn is_header_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_timeout)
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for HeadWatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(self.stream()).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.pending = true;
            self.first_byte = None;
        } else if polled.is_pending() {
            let expired = self
                .first_byte
                .as_mut()
                .is_some_and(|t| t.as_mut().poll(cx).is_ready());
            if expired {
                // Read as the end of the stream: hyper closes without answering.
                self.first_byte = None;
                return Poll::Ready(Ok(()));
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin + Send + 'static> AsyncWrite for HeadWatch<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(self.stream()).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.pending = false;
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(self.stream()).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.pending = false;
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_shutdown(cx)
    }
}

impl<S: AsyncWrite + Unpin + Send + 'static> Drop for HeadWatch<S> {
    fn drop(&mut self) {
        if !(self.pending && self.timed_out.load(Ordering::Relaxed)) {
            return;
        }
        let (Some(mut stream), Ok(runtime)) =
            (self.stream.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        // Bounded: a client that stopped reading must not keep this task and its socket.
        runtime.spawn(tokio::time::timeout(FAREWELL, async move {
            if stream.write_all(REQUEST_TIMEOUT).await.is_ok() {
                let _ = stream.shutdown().await;
            }
        }));
    }
}
