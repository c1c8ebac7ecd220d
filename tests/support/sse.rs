//! Event streams in tests: an upstream body fed from a channel (one chunk per message,
//! sent when it arrives) and a client-side reader that yields whole SSE events however
//! the bytes were split.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{Response, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

use super::UpstreamReply;

/// A response body fed from a channel: every message is one chunk, sent when it arrives.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

pub fn event_stream(body: ChannelBody) -> UpstreamReply {
    let mut response = Response::new(body.boxed());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// Reads SSE events (the text between blank lines) from a response, however the
/// bytes happen to be split into chunks on the way.
pub struct SseReader<S> {
    chunks: S,
    buffer: String,
}

impl<S> SseReader<S>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    pub fn new(chunks: S) -> Self {
        SseReader {
            chunks,
            buffer: String::new(),
        }
    }

    /// The next complete event, or `None` when the stream ended.
    pub async fn next_event(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event = self.buffer[..end].to_string();
                self.buffer.drain(..end + 2);
                return Some(event);
            }
            match self.chunks.next().await {
                Some(chunk) => {
                    let chunk = chunk.expect("response body chunk");
                    self.buffer
                        .push_str(std::str::from_utf8(&chunk).expect("utf-8 event"));
                }
                None => {
                    assert!(
                        self.buffer.is_empty(),
                        "stream ended inside an event: {:?}",
                        self.buffer
                    );
                    return None;
                }
            }
        }
    }
}
