//! The one body type that flows through the proxy in both directions: an enum rather
//! than a boxed trait object, so the common cases (pass-through, small local replies)
//! cost no allocation and no dynamic dispatch.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Exchange;
use crate::upstream::UpstreamBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub enum ProxyBody {
    Empty,
    Full(Option<Bytes>),
    /// A downstream request body, streamed to the endpoint as it arrives.
    Incoming(Incoming),
    /// A downstream request body without a declared length, counted as it streams.
    Counted(Incoming, Arc<AtomicU64>),
    /// An endpoint's response, streamed to the client with the request's record, which
    /// reads the bytes as they pass and reports the exchange when it drops.
    Upstream(UpstreamBody, Option<Box<Exchange>>),
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
            ProxyBody::Counted(body, counter) => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    if let Some(data) = frame.data_ref() {
                        counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                }
                polled.map_err(Into::into)
            }
            ProxyBody::Upstream(body, exchange) => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Some(exchange) = exchange.as_mut() {
                    match &polled {
                        Poll::Ready(Some(Ok(frame))) => {
                            if let Some(data) = frame.data_ref() {
                                exchange.on_response_data(data);
                            }
                        }
                        Poll::Ready(Some(Err(_))) => exchange.failed = true,
                        _ => {}
                    }
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
            ProxyBody::Incoming(body) | ProxyBody::Counted(body, _) => body.is_end_stream(),
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
            ProxyBody::Incoming(body) | ProxyBody::Counted(body, _) => body.size_hint(),
            ProxyBody::Upstream(body, _) => body.size_hint(),
            ProxyBody::Boxed(body) => body.size_hint(),
        }
    }
}
