//! The fast path's receive buffer, and the stream that hands a connection to hyper with
//! the bytes already read put back in front.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Bytes read from a socket and not yet used: `data[start..end]`. Kept initialised so
/// reads go straight into it; grown only while a head does not fit.
pub struct ReceiveBuffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

/// Buffers larger than this (grown for a large body) are shrunk once empty.
const SHRINK_ABOVE: usize = 64 * 1024;

/// The buffer is at its size limit and still holds no complete head.
#[derive(Debug)]
pub struct Full;

impl ReceiveBuffer {
    pub fn new(size: usize) -> Self {
        ReceiveBuffer {
            data: vec![0; size],
            start: 0,
            end: 0,
        }
    }

    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Reads once from `stream` (0 at end of stream), making room first: unused space
    /// at the front is reclaimed, and the buffer doubles up to `limit` bytes.
    pub async fn read_from<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        limit: usize,
    ) -> io::Result<usize> {
        self.make_room(limit)
            .map_err(|Full| io::Error::other("receive buffer full"))?;
        let n = stream.read(&mut self.data[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Whether another read has room (false: the buffer is full at `limit`).
    pub fn make_room(&mut self, limit: usize) -> Result<(), Full> {
        if self.end < self.data.len() {
            return Ok(());
        }
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return Ok(());
        }
        if self.data.len() >= limit {
            return Err(Full);
        }
        let size = (self.data.len() * 2).clamp(1024, limit);
        self.data.resize(size, 0);
        Ok(())
    }

    /// Gives back the memory a large body needed once the buffer is empty again, so
    /// that a kept-alive connection holds `size` bytes, not its largest request.
    pub fn shrink_when_empty(&mut self, size: usize) {
        if self.is_empty() && self.data.len() > size.max(SHRINK_ABOVE) {
            self.data = vec![0; size];
        }
    }

    /// Free space after the unused bytes, without moving or growing anything (so
    /// offsets into a head being served stay valid).
    pub fn spare(&mut self) -> Option<&mut [u8]> {
        (self.end < self.data.len()).then(|| &mut self.data[self.end..])
    }

    /// Counts `n` bytes written into [`ReceiveBuffer::spare`] as received.
    pub fn extend(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// Everything unused, for a hand-off; the buffer is left empty.
    pub fn take(&mut self) -> Bytes {
        let bytes = Bytes::copy_from_slice(self.filled());
        self.clear();
        bytes
    }
}

/// A client connection handed to hyper: first the bytes the fast path had read, then
/// the socket.
pub struct Rewind<S> {
    prefix: Bytes,
    stream: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Bytes, stream: S) -> Self {
        Rewind { prefix, stream }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_reclaimed_then_grown_to_the_limit() {
        let mut buffer = ReceiveBuffer::new(1024);
        buffer.end = 1024;
        buffer.consume(1000);
        assert!(buffer.make_room(2048).is_ok());
        assert_eq!((buffer.start, buffer.end), (0, 24));
        buffer.end = 1024;
        assert!(buffer.make_room(2048).is_ok());
        assert_eq!(buffer.data.len(), 2048);
        buffer.end = 2048;
        assert!(buffer.make_room(2048).is_err());
    }

    #[test]
    fn a_buffer_grown_for_a_large_body_shrinks_once_empty() {
        let mut buffer = ReceiveBuffer::new(4096);
        buffer.data.resize(1 << 20, 0);
        buffer.end = 10;
        buffer.shrink_when_empty(4096);
        assert_eq!(buffer.data.len(), 1 << 20, "still holding bytes");
        buffer.consume(10);
        buffer.shrink_when_empty(4096);
        assert_eq!(buffer.data.len(), 4096);
        buffer.data.resize(32 * 1024, 0);
        buffer.shrink_when_empty(4096);
        assert_eq!(buffer.data.len(), 32 * 1024, "small growth is kept");
    }
}
