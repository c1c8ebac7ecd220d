//! The one body type that flows through the proxy in both directions: an enum rather
//! than a boxed trait object, so the common cases (pass-through, small local replies)
//! cost no allocation and no dynamic dispatch.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::Completion;
use crate::upstream::UpstreamBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub enum ProxyBody {
    Empty,
    Full(Option<Bytes>),
    /// A downstream request body, streamed to the endpoint as it arrives.
    Incoming(Incoming),
    /// An endpoint's response, streamed to the client; `Completion` runs the
    /// end-of-exchange work (in-flight counts, `on_done` filters) when it drops.
    Upstream(UpstreamBody, Option<Completion>),
    /// A body a filter transformed.
    Boxed(BoxBody<Bytes, BoxError>),
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(bytes.into()))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Incoming(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ProxyBody::Upstream(body, completion) => {
                let polled = Pin::new(body).poll_frame(cx);
                if let (Poll::Ready(Some(Err(_))), Some(completion)) =
                    (&polled, completion.as_mut())
                {
                    completion.failed = true;
                }
                polled.map_err(Into::into)
            }
            ProxyBody::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Incoming(body) => body.is_end_stream(),
            ProxyBody::Upstream(body, _) => body.is_end_stream(),
            ProxyBody::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ProxyBody::Incoming(body) => body.size_hint(),
            ProxyBody::Upstream(body, _) => body.size_hint(),
            ProxyBody::Boxed(body) => body.size_hint(),
        }
    }
}
