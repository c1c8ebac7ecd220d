//! The one body type that flows through the proxy in both directions: an enum rather
//! than a boxed trait object, so the common cases (pass-through, small local replies)
//! cost no allocation and no dynamic dispatch. An endpoint's response streams through
//! [`UpstreamStream`], which watches the idle and total timeouts and ends a broken event
//! stream with an SSE `error` event rather than leaving the client to guess.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::Exchange;
use crate::routing::BodyTimeouts;
use crate::upstream::UpstreamBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body went past its route's `max_body_bytes` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {limit} bytes")]
pub struct BodyLimitExceeded {
    pub limit: u64,
}

/// A client was too slow with its request body (the listener's `body_read_timeout` or
/// `body_total_timeout`).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time ({after:?} without data or in all)")]
pub struct BodyTimedOut {
    pub after: Duration,
}

/// A client's request body under the listener's body timeouts: a client that stops
/// sending (or trickles) gets a [`BodyTimedOut`] error instead of holding the request,
/// and whatever waits on it, open forever.
pub struct ClientBody {
    body: Incoming,
    timeouts: Option<BodyTimeouts>,
    deadline: Instant,
    /// Created only when the client keeps the body waiting.
    timer: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
    /// Set once the endpoint's response head has come: from then on the body may stay
    /// open as long as the exchange does (gRPC and other full-duplex streams), under the
    /// route's response timeouts instead of these.
    answered: Arc<AtomicBool>,
}

impl ClientBody {
    pub fn new(body: Incoming, timeouts: BodyTimeouts) -> Self {
        ClientBody {
            body,
            deadline: Instant::now() + timeouts.total,
            timeouts: Some(timeouts),
            timer: None,
            timed_out: false,
            answered: Arc::default(),
        }
    }

    /// A body with no deadline (the egress forward proxy's).
    pub fn untimed(body: Incoming) -> Self {
        ClientBody {
            body,
            timeouts: None,
            deadline: Instant::now(),
            timer: None,
            timed_out: false,
            answered: Arc::default(),
        }
    }

    /// The switch that lifts the timeouts once the response head has come.
    pub fn answered(&self) -> Arc<AtomicBool> {
        self.answered.clone()
    }

    fn next_wake(&self, timeouts: &BodyTimeouts) -> Instant {
        (Instant::now() + timeouts.idle).min(self.deadline)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        if this.timeouts.is_some() && this.answered.load(Ordering::Relaxed) {
            this.timeouts = None;
            this.timer = None;
        }
        let Some(timeouts) = this.timeouts else {
            return Pin::new(&mut this.body).poll_frame(cx).map_err(Into::into);
        };
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending => {}
            Poll::Ready(ready) => {
                if let Some(timer) = this.timer.as_mut() {
                    let wake = (Instant::now() + timeouts.idle).min(this.deadline);
                    timer.as_mut().reset(wake);
                }
                return Poll::Ready(ready.map(|r| r.map_err(Into::into)));
            }
        }
        let wake = this.next_wake(&timeouts);
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wake)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.timed_out = true;
        let after = if Instant::now() >= this.deadline {
            timeouts.total
        } else {
            timeouts.idle
        };
        Poll::Ready(Some(Err(Box::new(BodyTimedOut { after }))))
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Finds a [`BodyTimedOut`] in an error's chain (hyper reports a body's error as the
/// cause of its own).
pub(crate) fn body_timed_out(error: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(timed_out) = current.downcast_ref::<BodyTimedOut>() {
            return Some(timed_out.after);
        }
        cause = current.source();
    }
    None
}

pub enum ProxyBody {
    Empty,
    Full(Option<Bytes>),
    /// A downstream request body, streamed to the endpoint as it arrives.
    Incoming(ClientBody),
    /// A downstream request body without a declared length, counted as it streams.
    Counted(ClientBody, Arc<AtomicU64>),
    /// The start of a request body read ahead (to keep it for retries, within a limit),
    /// then the rest as it arrives.
    Prefixed(Option<Bytes>, ClientBody),
    /// A request body under a route's `max_body_bytes`: bytes still allowed, the limit.
    Capped(Box<ProxyBody>, u64, u64),
    /// An endpoint's response on its way to the client.
    Upstream(Box<UpstreamStream>),
    /// A body a filter transformed.
    Boxed(BoxBody<Bytes, BoxError>),
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(bytes.into()))
    }
}

/// A request body read ahead ([`read_up_to`]).
pub enum Held {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// Longer than the limit (or declared so, and not read): what was read, then the
    /// rest as it arrives.
    Over(ProxyBody),
}

/// Reads a client body ahead (after `prefix`, already read) until it ends or passes
/// `limit` bytes. A body whose declared length is over `limit` is not read at all.
pub async fn read_up_to(
    prefix: Option<Bytes>,
    mut incoming: ClientBody,
    declared: Option<u64>,
    limit: u64,
) -> Result<Held, BoxError> {
    use http_body_util::BodyExt;
    if declared.is_some_and(|length| length > limit) {
        return Ok(Held::Over(ProxyBody::Prefixed(prefix, incoming)));
    }
    let mut kept = bytes::BytesMut::new();
    if let Some(prefix) = prefix {
        kept.extend_from_slice(&prefix);
    }
    while kept.len() as u64 <= limit {
        let Some(frame) = incoming.frame().await else {
            return Ok(Held::Whole(kept.freeze()));
        };
        if let Ok(data) = frame?.into_data() {
            kept.extend_from_slice(&data);
        }
    }
    Ok(Held::Over(ProxyBody::Prefixed(
        Some(kept.freeze()),
        incoming,
    )))
}

/// The last event of an event stream the endpoint broke off, so the client learns why.
pub(crate) fn interrupted_event(reason: &str) -> Bytes {
    let error = serde_json::json!({ "type": "error", "error": { "type": "upstream_stream_interrupted", "message": reason } });
    Bytes::from(format!("event: error\ndata: {error}\n\n"))
}

/// Why a body could not be transformed before the response head went out.
pub enum AheadError {
    /// The endpoint's body broke off.
    Upstream(String),
    /// The transform refused it.
    Transform(String),
}

/// An endpoint's response body with the request's record, which reads the bytes as they
/// pass and reports the exchange when it drops.
pub struct UpstreamStream {
    body: UpstreamBody,
    pub exchange: Option<Box<Exchange>>,
    /// A frame read ahead (the first token, or the first byte before the head went
    /// out), sent before the rest: data, or trailers when the body had no data.
    first: Option<Frame<Bytes>>,
    /// An event stream: a cut ends with an SSE error event.
    event_stream: bool,
    idle: Option<Duration>,
    deadline: Option<Instant>,
    /// Created only when the endpoint keeps the body waiting: most bodies never need it.
    timer: Option<Pin<Box<Sleep>>>,
    ended: bool,
    /// The body phase's transform has had the end of the body.
    flushed: bool,
    /// Output of the transform made before the head went out (`transform_ahead`).
    transformed: Option<Bytes>,
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("no data from the endpoint for {0:?}")]
    Idle(Duration),
    #[error("the exchange took longer than its total timeout")]
    Total,
}

impl UpstreamStream {
    pub fn new(
        body: UpstreamBody,
        first: Option<Frame<Bytes>>,
        event_stream: bool,
        idle: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Self {
        UpstreamStream {
            body,
            exchange: None,
            first,
            event_stream,
            idle,
            deadline,
            timer: None,
            ended: false,
            flushed: false,
            transformed: None,
        }
    }

    fn record(&mut self, data: &Bytes) {
        if let Some(exchange) = self.exchange.as_mut() {
            exchange.on_response_data(data);
        }
    }

    fn transforms(&self) -> bool {
        self.exchange
            .as_ref()
            .is_some_and(|e| e.transforms_response())
    }

    /// Runs the body through the body phase's transform until it lets something
    /// through or the body ends, before the response head is sent: as the HTTP/1.1
    /// engine holds a JSON answer's head until its first byte, so a body the transform
    /// refuses becomes an error answer on both engines. `exchange` is the request's
    /// record, not yet given to the stream.
    pub async fn transform_ahead(&mut self, exchange: &mut Exchange) -> Result<(), AheadError> {
        let mut out = Vec::new();
        while out.is_empty() && !self.flushed {
            let polled = std::future::poll_fn(|cx| self.poll_endpoint(cx)).await;
            let (data, end) = match polled {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => (data, false),
                    Err(trailers) => {
                        self.first = Some(trailers);
                        (Bytes::new(), true)
                    }
                },
                None => (Bytes::new(), true),
                Some(Err(error)) => return Err(AheadError::Upstream(error.to_string())),
            };
            self.flushed |= end;
            exchange
                .transform_response(&data, end, &mut out)
                .map_err(AheadError::Transform)?;
        }
        self.transformed = Some(Bytes::from(out));
        Ok(())
    }

    /// The next frame for the client: the endpoint's, or, when the body phase transforms
    /// the body, what its transform lets through (data it holds back is not a frame).
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.transforms() {
            return self.poll_endpoint(cx);
        }
        if let Some(ready) = self.transformed.take().filter(|r| !r.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(ready))));
        }
        loop {
            let (data, end, trailers) = match self.poll_endpoint(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => (data, false, None),
                    // Trailers end the body: what is held back goes first.
                    Err(trailers) => (Bytes::new(), true, Some(trailers)),
                },
                Poll::Ready(None) if !self.flushed => (Bytes::new(), true, None),
                // Trailers kept by `transform_ahead`, after the flushed body.
                Poll::Ready(None) => return Poll::Ready(self.first.take().map(Ok)),
                other => return other,
            };
            self.flushed |= end;
            let mut out = Vec::new();
            let exchange = self.exchange.as_mut().expect("checked by transforms()");
            if let Err(reason) = exchange.transform_response(&data, end, &mut out) {
                self.flushed = true;
                return self.fail(format!("the response could not be masked: {reason}"));
            }
            if let Some(trailers) = trailers {
                self.first = Some(trailers);
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
            if let Some(trailers) = self.first.take() {
                return Poll::Ready(Some(Ok(trailers)));
            }
            if end {
                return Poll::Ready(None);
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let idle = self.idle.map(|idle| Instant::now() + idle);
        match (idle, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The stream broke: an event stream gets a last `event: error` and ends cleanly;
    /// anything else ends with an error, which aborts the client's connection or stream
    /// so a truncated body is never taken for a complete one.
    fn fail(&mut self, reason: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.ended = true;
        if let Some(exchange) = self.exchange.as_mut() {
            exchange.failed = true;
        }
        if self.event_stream {
            let event = interrupted_event(&reason);
            self.record(&event);
            return Poll::Ready(Some(Ok(Frame::data(event))));
        }
        Poll::Ready(Some(Err(reason.into())))
    }

    /// The endpoint's next frame, under the timeouts, recorded unless the body phase
    /// transforms it (it records what it lets through).
    fn poll_endpoint(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let records = !self.transforms();
        if let Some(first) = self.first.take() {
            if let Some(data) = first.data_ref().filter(|_| records) {
                self.record(data);
            }
            return Poll::Ready(Some(Ok(first)));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref().filter(|_| records) {
                    let data = data.clone();
                    self.record(&data);
                }
                if let (Some(wake), Some(timer)) = (self.next_wake(), self.timer.as_mut()) {
                    timer.as_mut().reset(wake);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                self.fail(format!("the endpoint's response broke off: {error}"))
            }
            Poll::Pending => {
                if self.timer.is_none() {
                    match self.next_wake() {
                        Some(wake) => self.timer = Some(Box::pin(tokio::time::sleep_until(wake))),
                        None => return Poll::Pending,
                    }
                }
                let timer = self.timer.as_mut().expect("set above");
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let reason = if self.deadline.is_some_and(|d| Instant::now() >= d) {
                    StreamError::Total
                } else {
                    StreamError::Idle(self.idle.unwrap_or_default())
                };
                self.fail(reason.to_string())
            }
        }
    }
}

impl ProxyBody {
    /// The body as the upstream client takes it: bytes in hand stay in hand (so a
    /// request can be sent again), anything else streams.
    pub fn into_request_body(self) -> crate::upstream::RequestBody {
        use crate::upstream::RequestBody;
        match self {
            ProxyBody::Full(Some(bytes)) => RequestBody::full(bytes),
            ProxyBody::Full(None) | ProxyBody::Empty => RequestBody::Empty,
            streamed => RequestBody::stream(streamed),
        }
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
            ProxyBody::Incoming(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Counted(body, counter) => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled
                    && let Some(data) = frame.data_ref()
                {
                    counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                polled
            }
            ProxyBody::Prefixed(prefix, body) => match prefix.take() {
                Some(prefix) => Poll::Ready(Some(Ok(Frame::data(prefix)))),
                None => Pin::new(body).poll_frame(cx),
            },
            ProxyBody::Capped(body, remaining, limit) => {
                let polled = Pin::new(body.as_mut()).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    let size = frame.data_ref().map_or(0, |d| d.len() as u64);
                    if size > *remaining {
                        return Poll::Ready(Some(Err(Box::new(BodyLimitExceeded {
                            limit: *limit,
                        }))));
                    }
                    *remaining -= size;
                }
                polled
            }
            ProxyBody::Upstream(stream) => stream.poll_next(cx),
            ProxyBody::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Incoming(body) | ProxyBody::Counted(body, _) => body.is_end_stream(),
            ProxyBody::Prefixed(prefix, body) => prefix.is_none() && body.is_end_stream(),
            ProxyBody::Capped(body, _, _) => body.is_end_stream(),
            ProxyBody::Upstream(stream) => {
                stream.first.is_none()
                    && stream.transformed.as_ref().is_none_or(|t| t.is_empty())
                    && (stream.ended || stream.body.is_end_stream())
                    && (stream.flushed || !stream.transforms())
            }
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
            ProxyBody::Prefixed(prefix, body) => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = body.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
            ProxyBody::Capped(body, _, _) => body.size_hint(),
            // An event stream may end with an added error event: its length is open.
            ProxyBody::Upstream(stream) if stream.event_stream || stream.transforms() => {
                SizeHint::default()
            }
            ProxyBody::Upstream(stream) => {
                let hint = stream.body.size_hint();
                match stream.first.as_ref().and_then(Frame::data_ref) {
                    Some(first) => {
                        let mut shifted = SizeHint::new();
                        shifted.set_lower(hint.lower() + first.len() as u64);
                        if let Some(upper) = hint.upper() {
                            shifted.set_upper(upper + first.len() as u64);
                        }
                        shifted
                    }
                    None => hint,
                }
            }
            ProxyBody::Boxed(body) => body.size_hint(),
        }
    }
}
