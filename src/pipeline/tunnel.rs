//! The connection after a `101 Switching Protocols`: spliced byte for byte, or relayed
//! message by message on a masking route. It keeps the request's record to its end, so
//! the access log's line covers the connection (its bytes, what masking found) and the
//! endpoint's in-flight count holds while it is open.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::exchange::{BytesIn, Exchange, TunnelStart};
use super::websocket::{self, MessageMasking};

/// The tunnel between the client's and the endpoint's upgraded connections, to start
/// with the request's record once the `101` is out.
pub fn start(
    client: OnUpgrade,
    endpoint: OnUpgrade,
    masking: Option<MessageMasking>,
) -> TunnelStart {
    Box::new(move |mut exchange: Box<Exchange>| {
        Box::pin(async move {
            let (Ok(client), Ok(endpoint)) = (client.await, endpoint.await) else {
                return;
            };
            let (sent, answered) = (Arc::default(), Arc::default());
            let mut client = Counted::new(TokioIo::new(client), &sent);
            let mut endpoint = Counted::new(TokioIo::new(endpoint), &answered);
            match masking {
                Some(masking) => {
                    let found = websocket::relay(client, endpoint, masking).await;
                    let body = &mut exchange.body;
                    body.counted = true;
                    body.request.merge(&found.client);
                    body.message_answers.merge(&found.endpoint);
                    body.passed = body.passed.or(found.passed);
                }
                None => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut endpoint).await;
                }
            }
            exchange.bytes_in = BytesIn::Known(sent.load(Ordering::Relaxed));
            exchange.bytes_out = answered.load(Ordering::Relaxed);
        })
    })
}

/// A connection whose bytes read are counted: those the client sent, or the endpoint.
struct Counted<T> {
    io: T,
    read: Arc<AtomicU64>,
}

impl<T> Counted<T> {
    fn new(io: T, read: &Arc<AtomicU64>) -> Self {
        Counted {
            io,
            read: read.clone(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            self.read.fetch_add(read, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
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
