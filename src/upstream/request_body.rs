//! The body of a request the upstream client sends: none, bytes in hand (which a
//! request can be sent again with), or a stream from whoever called the client. The
//! client needs nothing more of it, so it owns this type instead of the pipeline's.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, SizeHint};

/// Errors of a streamed request body, passed through to the caller's error chain.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

pub enum RequestBody {
    Empty,
    /// Sent whole; can be sent again.
    Full(Option<Bytes>),
    Stream(UnsyncBoxBody<Bytes, BodyError>),
}

impl RequestBody {
    pub fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            RequestBody::Empty
        } else {
            RequestBody::Full(Some(bytes))
        }
    }

    pub fn stream<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = BodyError> + Send + 'static,
    {
        RequestBody::Stream(UnsyncBoxBody::new(body))
    }

    /// The same body again, when it is in hand (or there is none).
    pub fn replay(&self) -> Option<RequestBody> {
        match self {
            RequestBody::Full(Some(bytes)) => Some(RequestBody::Full(Some(bytes.clone()))),
            body if body.is_end_stream() => Some(RequestBody::Empty),
            _ => None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Stream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty | RequestBody::Full(None) => true,
            RequestBody::Full(Some(_)) => false,
            RequestBody::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty | RequestBody::Full(None) => SizeHint::with_exact(0),
            RequestBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            RequestBody::Stream(body) => body.size_hint(),
        }
    }
}
