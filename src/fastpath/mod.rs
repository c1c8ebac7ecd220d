//! The hand-written HTTP/1.1 engine: HTTP/1.1 requests (over TCP or TLS) relayed by
//! hand on `httparse`, with no hyper dispatcher, header map, body channel or connection
//! task per request. Every decision (route, policies, split, mirror, pick / send / judge /
//! retry, body phase, errors, the record) is the core's; this engine parses and renders.
//! What it does not speak (HTTP/2, upgrades, streamed chunked bodies, HTTP/2 pools)
//! is handed to the hyper pipeline with the bytes read so far, and hyper keeps the
//! connection.

mod buffer;
mod chunked;
mod deadline;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod known_name;
mod plain_head;
mod relay;
mod reply;
mod request;
mod upstream;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use buffer::ReceiveBuffer;
pub use buffer::Rewind;
use chunked::ChunkedScanner;
use deadline::Deadline;
use relay::{BodyRelay, LAST_CHUNK, Relayed, client_gone, put_chunk};
use reply::{ClientHead, Framing};
use request::{Forwarding, Parsed, RequestHead, SentBody};
use upstream::{ReadingHead, Upload, send, send_streamed};

use crate::decimal::Digits;
use crate::llm::ReplyKind;
use crate::pipeline::affinity::{chain_keys, request_key};
use crate::pipeline::attempts::{Attempts, HeadSignals};
use crate::pipeline::body::interrupted_event;
use crate::pipeline::body_phase;
use crate::pipeline::exchange::BytesIn;
use crate::pipeline::forwarding::{add_pool_credential, client_ip_of};
use crate::pipeline::model_map;
use crate::pipeline::request_filters;
use crate::pipeline::response_head;
use crate::pipeline::translation;
use crate::pipeline::versioning::{choose_target, mirror_body_limit, send_shadow};
use crate::pipeline::{Downstream, Exchange, Flow, HeaderEdits, LogFacts, ProxyBody, ProxyError};
use crate::routing::BodyTimeouts;
use crate::routing::{BodyUse, HTTP1_BODY_LIMIT, route_host};
use crate::telemetry::access_log::LogPath;
use crate::telemetry::trace::{self, RequestId, TRACEPARENT};

/// Largest request head the fast path reads; a longer one goes to hyper, which applies
/// the listener's own `max_request_head_bytes`.
const HEAD_LIMIT: usize = 64 * 1024;
/// A client connection's receive buffer to start with: many connections sit idle, and
/// heads (or bodies) grow it as needed.
const RECEIVE_BUFFER: usize = 4 * 1024;
/// Bodies up to this long are copied behind the head, to go out in one write; longer
/// ones are written on their own.
const BODY_COPY_LIMIT: usize = 16 * 1024;
/// Most bytes of chunks read for a chunked body held whole: its data may be at most
/// `HTTP1_BODY_LIMIT`, and the chunks' framing is bounded too (tiny chunks).
const CHUNKED_WIRE_LIMIT: usize = 2 * HTTP1_BODY_LIMIT as usize;
/// Largest response head accepted from an endpoint.
pub(crate) const REPLY_HEAD_LIMIT: usize = 64 * 1024;

/// How the fast path left a connection.
pub enum Ended {
    Closed,
    /// Hyper serves the rest, starting with these bytes.
    HandOff(Bytes),
}

/// What a connection's listener asks of it.
pub struct Settings {
    pub header_read_timeout: Duration,
    pub body_timeouts: BodyTimeouts,
    pub max_head: usize,
}

/// A client connection the fast path can serve: TCP, or TLS over TCP.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> ClientStream for S {}

/// Serves requests on `client` until it closes or a request needs the full pipeline.
pub async fn serve<C: ClientStream>(
    client: &mut C,
    downstream: &Downstream,
    drained: &mut watch::Receiver<bool>,
    settings: &Settings,
) -> Ended {
    let mut connection = Connection {
        received: ReceiveBuffer::new(RECEIVE_BUFFER),
        replied: ReceiveBuffer::new(8 * 1024),
        head: RequestHead::default(),
        decoded: Vec::new(),
        upstream_request: Vec::with_capacity(1024),
        client_reply: Vec::with_capacity(1024),
        head_deadline: Deadline::new(),
        answer_deadline: Deadline::new(),
    };
    loop {
        let hand_off = |connection: &mut Connection, reason: HandOff| {
            let metrics = &downstream.gateway.telemetry().metrics;
            metrics.count_handoff(&downstream.listener, reason.label());
            Ended::HandOff(connection.received.take())
        };
        match connection
            .next_request(client, drained, settings, downstream)
            .await
        {
            Next::Ready => {}
            Next::Closed => return Ended::Closed,
            Next::HandOff(reason) => return hand_off(&mut connection, reason),
            Next::BodyTimeout(after) => {
                if let Some(reason) = connection.body_timed_out(client, downstream, after).await {
                    return hand_off(&mut connection, reason);
                }
                let _ = client.shutdown().await;
                return Ended::Closed;
            }
        }
        let close = loop {
            match connection.relay(client, downstream, settings).await {
                Step::KeepAlive => break false,
                Step::Close => break true,
                Step::HandOff(reason) => return hand_off(&mut connection, reason),
                // The route holds the body: read, then decided again.
                Step::ReadWhole => match connection.read_whole_body(client, settings).await {
                    Next::Ready => {}
                    Next::BodyTimeout(after) => {
                        if let Some(reason) =
                            connection.body_timed_out(client, downstream, after).await
                        {
                            return hand_off(&mut connection, reason);
                        }
                        let _ = client.shutdown().await;
                        return Ended::Closed;
                    }
                    Next::Closed | Next::HandOff(_) => return Ended::Closed,
                },
            }
        };
        connection
            .received
            .consume(connection.head.len + connection.head.wire_body_len);
        connection.received.shrink_when_empty(RECEIVE_BUFFER);
        if connection.decoded.capacity() > BODY_COPY_LIMIT {
            connection.decoded = Vec::new();
        }
        if close {
            let _ = client.shutdown().await;
            return Ended::Closed;
        }
    }
}

enum Next {
    /// A head and its whole body are in the receive buffer (or as much of a body as
    /// came with the head, when it is longer than this engine holds).
    Ready,
    Closed,
    /// The client was too slow with the body: a 408 and the connection closes.
    BodyTimeout(Duration),
    HandOff(HandOff),
}

enum Step {
    KeepAlive,
    Close,
    HandOff(HandOff),
    /// The request's route holds its body, which is not all read yet: read it, and
    /// decide again (nothing was done for the request yet).
    ReadWhole,
}

/// Why a connection went to the full pipeline (the `reason` label of
/// `junction_fast_path_handoffs_total`).
#[derive(Debug, Clone, Copy)]
enum HandOff {
    /// Not a plain HTTP/1.1 request head: HTTP/1.0 or HTTP/2, an upgrade, `Expect`,
    /// a coding other than one `chunked`, an absolute-form target, or a head hyper must
    /// judge; invalid chunks, or a chunked body still arriving on a listener with a
    /// route that streams bodies.
    Request,
    /// A head or chunked body larger than the fast path reads whole, or a body to read
    /// before routing by `model` over `model_body_limit`.
    Size,
    /// No route matches (hyper answers 404), an ACME HTTP-01 token is asked for (the
    /// core answers it before routing), or the route needs what only hyper does
    /// (`Engines::of`: a pool speaking HTTP/2, `fast_path = false`; a body the route
    /// holds beyond `HTTP1_BODY_LIMIT`).
    Route,
}

impl HandOff {
    fn label(self) -> &'static str {
        match self {
            HandOff::Request => "request",
            HandOff::Size => "size",
            HandOff::Route => "route",
        }
    }
}

struct Connection {
    received: ReceiveBuffer,
    /// The endpoint's response, as it arrives.
    replied: ReceiveBuffer,
    head: RequestHead,
    /// A chunked request body's data.
    decoded: Vec<u8>,
    upstream_request: Vec<u8>,
    client_reply: Vec<u8>,
    /// The header read timeout of the request head being read.
    head_deadline: Deadline,
    /// The response head timeout of the attempt in flight.
    answer_deadline: Deadline,
}

impl Connection {
    async fn next_request<C: ClientStream>(
        &mut self,
        client: &mut C,
        drained: &mut watch::Receiver<bool>,
        settings: &Settings,
        downstream: &Downstream,
    ) -> Next {
        let limit = settings.max_head.min(HEAD_LIMIT);
        let mut deadline_set = false;
        loop {
            if !self.received.is_empty() {
                match self.head.parse(self.received.filled()) {
                    Parsed::Complete => break,
                    Parsed::HandOff => return Next::HandOff(HandOff::Request),
                    Parsed::Partial => {}
                }
            } else if *drained.borrow() {
                return Next::Closed;
            }
            if self.received.make_room(limit).is_err() {
                return Next::HandOff(HandOff::Size);
            }
            if !deadline_set {
                let due = Instant::now() + settings.header_read_timeout;
                self.head_deadline.set(due);
                deadline_set = true;
            }
            let idle = self.received.is_empty();
            let read = tokio::select! {
                biased;
                read = self.received.read_from(client, limit) => Ok(read),
                () = self.head_deadline.elapsed() => Err(()),
                _ = drained.changed(), if idle => return Next::Closed,
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => return Next::Closed,
                Ok(Ok(_)) => {}
                Err(_) => {
                    if !self.received.is_empty() {
                        let farewell = client.write_all(REQUEST_TIMEOUT);
                        let _ = tokio::time::timeout(FAREWELL, farewell).await;
                    }
                    return Next::Closed;
                }
            }
        }
        if self.head.chunked {
            return self.read_chunked_body(client, settings, downstream).await;
        }
        // Longer than this engine holds, or still on its way to a listener with a route
        // that streams bodies: the route decides (`Step::ReadWhole` when it holds it).
        let whole = self.head.len + self.head.content_length as usize;
        let longer = self.head.content_length > HTTP1_BODY_LIMIT;
        if longer || (self.received.len() < whole && streams_bodies(downstream)) {
            self.head.unread_body = true;
            let arrived = self.received.len() - self.head.len;
            self.head.wire_body_len = arrived.min(self.head.content_length as usize);
            return Next::Ready;
        }
        self.read_whole_body(client, settings).await
    }

    /// Reads the rest of a body with a length (at most `HTTP1_BODY_LIMIT`) into the
    /// receive buffer, under the listener's body timeouts.
    async fn read_whole_body<C: ClientStream>(
        &mut self,
        client: &mut C,
        settings: &Settings,
    ) -> Next {
        let whole = self.head.len + self.head.content_length as usize;
        if self.received.len() < whole {
            // Timed only when the body did not all come with the head.
            let body_wait = BodyWait::new(settings.body_timeouts);
            while self.received.len() < whole {
                if let Err(next) = body_wait.read(client, &mut self.received, whole).await {
                    return next;
                }
            }
        }
        self.head.unread_body = false;
        self.head.wire_body_len = self.head.content_length as usize;
        Next::Ready
    }

    /// Reads a chunked body whole, its data into `decoded` (as the full path holds a
    /// buffered body: no chunk extensions, no trailer fields), under the same limits
    /// and timeouts as a body with a length. The chunks stay in the receive buffer
    /// until the request is done, so a hand-off gives hyper every byte: a body too
    /// large to hold, one still on its way to a listener that streams bodies, and
    /// invalid chunks (which hyper refuses its own way).
    async fn read_chunked_body<C: ClientStream>(
        &mut self,
        client: &mut C,
        settings: &Settings,
        downstream: &Downstream,
    ) -> Next {
        let mut scanner = ChunkedScanner::default();
        let mut scanned = 0;
        self.decoded.clear();
        let body_wait = BodyWait::new(settings.body_timeouts);
        let wire_limit = self.head.len + CHUNKED_WIRE_LIMIT;
        loop {
            let chunks = &self.received.filled()[self.head.len + scanned..];
            let decoded = &mut self.decoded;
            match scanner.scan(chunks, &mut |data| decoded.extend_from_slice(data)) {
                Ok(n) => scanned += n,
                Err(_) => return Next::HandOff(HandOff::Request),
            }
            if scanner.is_done() {
                break;
            }
            if self.decoded.len() as u64 > HTTP1_BODY_LIMIT || scanned >= CHUNKED_WIRE_LIMIT {
                return Next::HandOff(HandOff::Size);
            }
            if streams_bodies(downstream) {
                return Next::HandOff(HandOff::Request);
            }
            if let Err(next) = body_wait.read(client, &mut self.received, wire_limit).await {
                return next;
            }
        }
        self.head.set_chunked_body(self.decoded.len(), scanned);
        Next::Ready
    }

    /// Answers a request whose body did not arrive in time with the full path's 408 (no
    /// endpoint was asked), recorded under the route the full path would have chosen;
    /// the connection then closes. A request the full path would answer otherwise (no
    /// route, filters...) goes there, with the bytes that did arrive.
    async fn body_timed_out<C: ClientStream>(
        &mut self,
        client: &mut C,
        downstream: &Downstream,
        after: Duration,
    ) -> Option<HandOff> {
        let telemetry = downstream.gateway.telemetry();
        let listener = downstream.current_listener();
        let head = &self.head;
        let buf = self.received.filled();
        // The full path reads a JSON body before routing when routes match on `model`:
        // it times out there, before any route is chosen.
        let reads_body_first = listener.routes.needs_body
            && head.method == Method::POST
            && head
                .content_type(buf)
                .is_some_and(|t| ReplyKind::of_content_type(t) == ReplyKind::Json);
        let peer = downstream.peer.ip();
        let trusted = crate::pipeline::forwarding::is_trusted(&listener.trusted_proxies, peer);
        let route = if reads_body_first {
            None
        } else {
            let host = head
                .host(buf)
                .and_then(|h| std::str::from_utf8(h).ok())
                .map(route_host);
            match listener
                .routes
                .find_with_host(&head.route_input(buf, trusted), host, None)
            {
                Some(route)
                    if route.engines.http1_takes(head.content_length) == Some(BodyUse::Held) =>
                {
                    Some(route.clone())
                }
                _ => return Some(HandOff::Route),
            }
        };
        let log = telemetry.access_log.enabled().then(|| {
            let view = head.route_input(buf, trusted);
            log_facts(
                head,
                buf,
                client_ip_of(&view, peer, &listener.trusted_proxies),
            )
        });
        let mut exchange = Exchange::new(telemetry.clone(), log);
        exchange.route = route;
        exchange.request_id = Some(
            head.request_id(buf)
                .and_then(RequestId::given)
                .unwrap_or_else(|| RequestId::new(downstream.gateway.rng())),
        );
        let answer = AnswerTo {
            head_request: head.method == Method::HEAD,
            close: true,
        };
        let error = ProxyError::BodyTimeout { after };
        answer
            .error(client, &mut self.client_reply, &mut exchange, error)
            .await;
        None
    }

    /// Runs the request in the receive buffer through the core's decisions (route,
    /// policies, split, pick / send / judge / retry, response policies) and relays the
    /// answer; only the parsing and rendering are this engine's own.
    async fn relay<C: ClientStream>(
        &mut self,
        client: &mut C,
        downstream: &Downstream,
        settings: &Settings,
    ) -> Step {
        let gateway = &downstream.gateway;
        let listener = downstream.current_listener();
        let head = &self.head;
        let buf = self.received.filled();
        // The body as far as it is here: all of it, unless it streams.
        let body: &[u8] = if head.chunked {
            &self.decoded
        } else {
            &buf[head.len..head.len + head.wire_body_len]
        };
        let whole_body = (!head.unread_body).then_some(body);
        let peer = downstream.peer.ip();
        let trusted = crate::pipeline::forwarding::is_trusted(&listener.trusted_proxies, peer);

        // An ACME server fetching a pending HTTP-01 token: the full pipeline answers it.
        if gateway.acme_answers().wants(head.target(buf)) {
            return Step::HandOff(HandOff::Route);
        }
        // Routing, as the full path does it; what this engine cannot do for the route
        // (decided when the plan was compiled) goes there.
        let facts = (listener.routes.needs_body
            && head.method == Method::POST
            && head
                .content_type(buf)
                .is_some_and(|t| ReplyKind::of_content_type(t) == ReplyKind::Json))
        .then(|| whole_body.map(crate::llm::request_facts));
        // Routing by `model` reads the body first, as the full path does.
        let Some(facts) = facts.map_or(Some(None), |facts| facts.map(Some)) else {
            let limit = listener.model_body_limit.min(HTTP1_BODY_LIMIT);
            if head.content_length <= limit {
                return Step::ReadWhole;
            }
            return Step::HandOff(HandOff::Size);
        };
        if facts.is_some() && head.content_length > listener.model_body_limit {
            return Step::HandOff(HandOff::Size);
        }
        let model = facts.as_ref().and_then(|f| f.model.as_deref());
        let host = head
            .host(buf)
            .and_then(|h| std::str::from_utf8(h).ok())
            .map(route_host);
        let view = head.route_input(buf, trusted);
        let Some(route) = listener.routes.find_with_host(&view, host, model) else {
            return Step::HandOff(HandOff::Route);
        };
        let Some(body_use) = route.engines.http1_takes(head.content_length) else {
            return Step::HandOff(HandOff::Route);
        };
        if body_use == BodyUse::Held && head.unread_body {
            return Step::ReadWhole;
        }

        // From here on the request is ours to answer.
        let client_ip = client_ip_of(&view, peer, &listener.trusted_proxies);
        let telemetry = gateway.telemetry();
        let log = telemetry
            .access_log
            .enabled()
            .then(|| log_facts(head, buf, client_ip));
        let mut exchange = Exchange::new(telemetry.clone(), log);
        let request_id = head
            .request_id(buf)
            .and_then(RequestId::given)
            .unwrap_or_else(|| RequestId::new(gateway.rng()));
        let made_id = request_id.is_made();
        let traceparent = head.traceparent(buf).and_then(|value| {
            let mut headers = HeaderMap::new();
            headers.insert(TRACEPARENT.clone(), HeaderValue::from_bytes(value).ok()?);
            exchange.trace = trace::continue_trace(&mut headers, gateway.rng());
            headers.remove(&TRACEPARENT)
        });
        exchange.route = Some(route.clone());
        exchange.bytes_in = BytesIn::Known(head.content_length);
        exchange.request_id = Some(request_id.clone());
        exchange.client_ip = Some(client_ip);
        exchange.client_identity = downstream.client_identity.clone();
        if route.capture.is_some() {
            let client = body_phase::ClientFacts {
                client_ip,
                http_version: "HTTP/1.1",
                host: head.host(buf).and_then(|h| std::str::from_utf8(h).ok()),
                tls: downstream.tls,
            };
            let draw = gateway.rng().next_u64();
            body_phase::begin_capture(route, &view, client, draw, &mut exchange);
        }
        let head_request = head.method == Method::HEAD;
        // Junction's own answer to a request whose body is not all read ends the
        // connection: the rest of the body is still on it.
        let answer = AnswerTo {
            head_request,
            close: head.close || gateway.is_draining() || head.unread_body,
        };
        if let Some(limit) = route.max_body_bytes.filter(|&l| head.content_length > l) {
            let error = ProxyError::BodyTooLarge { limit };
            return answer
                .error(client, &mut self.client_reply, &mut exchange, error)
                .await;
        }

        // The route's policies, then the split's side: the core's decisions.
        let mut edits = HeaderEdits::new();
        let flow = request_filters::on_request(
            route,
            &mut exchange,
            client_ip,
            facts.as_ref(),
            &view,
            &mut edits,
        )
        .await;
        if let Flow::Respond(response) = flow {
            return answer
                .respond(
                    client,
                    &mut self.client_reply,
                    &mut exchange,
                    (*response).into(),
                )
                .await;
        }
        // The anomaly detectors: the client's rate, and a cool-down set earlier.
        if let Err(error) = crate::pipeline::detection::on_request(route, &mut exchange, &mut edits)
        {
            return answer
                .error(client, &mut self.client_reply, &mut exchange, error)
                .await;
        }
        crate::pipeline::forwarding::client_identity_edits(downstream, &mut edits);
        // The body phase (masking) on the whole body, held in the receive buffer.
        body_phase::request_edits(route, &mut edits);
        let mut masked_body = None;
        if body_phase::request_body_limit(route, &exchange).is_some() {
            let audit = gateway.audit();
            let whole = whole_body;
            match body_phase::on_request_body(route, &view, whole, &mut edits, &mut exchange, audit)
            {
                Ok(masked) => masked_body = masked,
                Err(error) => {
                    return answer
                        .error(client, &mut self.client_reply, &mut exchange, error)
                        .await;
                }
            }
        }
        let choice = choose_target(
            route,
            &view,
            client_ip,
            &|token| downstream.is_admin_token(token),
            gateway.rng(),
        );
        exchange.target = choice.target;
        if let Some(limit) = mirror_body_limit(route) {
            let body = masked_body.as_deref().unwrap_or(body);
            if whole_body.is_some() && body.len() as u64 <= limit {
                let parts = head.shadow_parts(
                    buf,
                    trusted,
                    &request_id,
                    traceparent.as_ref(),
                    &edits,
                    body.len(),
                );
                if let Some(parts) = parts {
                    let body = Bytes::copy_from_slice(body);
                    send_shadow(route, &parts, body, downstream, &listener);
                }
            }
        }
        // A large body goes out from a copy of its own, as the receive buffer takes the
        // client's next bytes while the answer is awaited; a chunked body goes on whole,
        // with its length, as the full path sends a buffered body.
        let outgoing_body = match &masked_body {
            Some(masked) => Some(masked.clone()),
            None if head.unread_body => None,
            None if head.chunked || body.len() > BODY_COPY_LIMIT => {
                Some(Bytes::copy_from_slice(body))
            }
            None => None,
        };
        let pool = &route.targets[choice.target].pool;
        let held = whole_body.map(|body| masked_body.as_deref().unwrap_or(body));
        let affinity = request_key(pool, &view, || client_ip, held);
        let chain_keys = chain_keys(route, &view, client_ip, held);
        let idempotent = crate::routing::retry::is_idempotent(&head.method);
        let timeouts = route.timeouts;
        // A held body can be sent again; one the route streams only goes once, even
        // when it all came with the head.
        let held = body_use == BodyUse::Held;
        let mut attempts = Attempts::new(
            route,
            pool.clone(),
            affinity,
            &head.method,
            held,
            exchange.started(),
        )
        .with_chain_keys(chain_keys);
        // The body timeouts of a streamed body, timed from its first read.
        let mut body_wait = None;
        let sent_body = match &masked_body {
            Some(masked) => SentBody::Length(masked.len() as u64),
            None if head.chunked && head.content_length == 0 => SentBody::Empty,
            None if head.chunked => SentBody::Length(head.content_length),
            None => SentBody::AsReceived,
        };

        let (mut upstream, reply, endpoint) = loop {
            let endpoint = match attempts.next_endpoint(&mut exchange) {
                Ok(endpoint) => endpoint,
                Err(error) => {
                    return answer
                        .error(client, &mut self.client_reply, &mut exchange, error)
                        .await;
                }
            };
            let pool = attempts.pool();
            exchange.endpoint = Some(endpoint.clone());
            exchange.in_flight = Some(endpoint.state.begin());
            // Read again each time: waiting for the answer may read the client's next bytes.
            let buf = self.received.filled();
            // The pool's `model_map`, for this attempt's pool; a body that streams is
            // sent as it comes.
            let mut mapped = match &outgoing_body {
                _ if head.unread_body => None,
                Some(held) => model_map::mapped_body(pool, held),
                None => model_map::mapped_body(
                    pool,
                    &buf[head.len..head.len + head.content_length as usize],
                ),
            };
            // A pool with its own credential or `api`: the route's edits plus what the
            // pool needs, made for this attempt (the next one may go to another pool).
            let with_pool;
            let mut translated = None;
            let edits = if pool.credential.is_some() || pool.api.is_some() {
                let mut edits = edits.clone();
                // The pool's `api`: the request in its provider's API, from the body
                // as it would go (renamed), held whole.
                let held = match (&mapped, &outgoing_body) {
                    _ if head.unread_body => None,
                    (Some(mapped), _) | (None, Some(mapped)) => Some(&mapped[..]),
                    (None, None) => Some(&buf[head.len..head.len + head.content_length as usize]),
                };
                let view = head.route_input(buf, trusted);
                match translation::for_attempt(pool, &view, held, &mut edits, &mut exchange) {
                    Ok(Some(request)) => {
                        mapped = Some(request.body);
                        translated = Some(request.target);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        return answer
                            .error(client, &mut self.client_reply, &mut exchange, error)
                            .await;
                    }
                }
                if let Some(credential) = &pool.credential {
                    add_pool_credential(&mut edits, credential);
                }
                with_pool = edits;
                &with_pool
            } else {
                &edits
            };
            let forwarding = Forwarding {
                peer: downstream.peer_header.as_bytes(),
                proto: if downstream.tls { b"https" } else { b"http" },
                trusted,
                host_override: pool.rewrite_host.then(|| endpoint.host_header.as_bytes()),
                new_request_id: made_id.then(|| request_id.as_bytes()),
                traceparent: traceparent.as_ref().map(HeaderValue::as_bytes),
                edits,
                body: match &mapped {
                    Some(mapped) => SentBody::Length(mapped.len() as u64),
                    None => sent_body,
                },
                target: translated.as_deref().map(str::as_bytes),
            };
            let client_head = ClientHead {
                head_request,
                version_header: pool.version_header.as_ref().map(HeaderValue::as_bytes),
                request_id: request_id.as_bytes(),
                close: head.close,
                draining: gateway.draining_flag(),
            };
            self.upstream_request.clear();
            head.write_upstream(buf, &forwarding, &mut self.upstream_request);
            let sent_at = Instant::now();
            exchange.sent_at = Some(sent_at);
            exchange.head_at = None;
            let reading = ReadingHead {
                endpoint: &endpoint,
                replied: &mut self.replied,
                client_head: &client_head,
                client_reply: &mut self.client_reply,
            };
            let sent = if head.unread_body {
                // The client is read for the body: its leaving shows there.
                let prefix = &buf[head.len..head.len + head.wire_body_len];
                let upload = Upload {
                    client: &mut *client,
                    prefix,
                    remaining: head.content_length - prefix.len() as u64,
                    wait: body_wait.get_or_insert_with(|| BodyWait::new(settings.body_timeouts)),
                };
                // Boxed: the common path's future stays small.
                let sent = Box::pin(send_streamed(
                    &pool.client,
                    &self.upstream_request,
                    upload,
                    reading,
                    timeouts.connect,
                ));
                tokio::time::timeout(timeouts.response_headers, sent)
                    .await
                    .map_err(|_| ())
            } else {
                let body: &[u8] = match mapped.as_ref().or(outgoing_body.as_ref()) {
                    Some(body) if body.len() > BODY_COPY_LIMIT => body,
                    Some(body) => {
                        self.upstream_request.extend_from_slice(body);
                        &[]
                    }
                    None => {
                        let body = &buf[head.len..head.len + head.content_length as usize];
                        self.upstream_request.extend_from_slice(body);
                        &[]
                    }
                };
                let sent = send(
                    &pool.client,
                    &self.upstream_request,
                    body,
                    reading,
                    idempotent,
                    timeouts.connect,
                );
                self.answer_deadline
                    .set(sent_at + timeouts.response_headers);
                tokio::select! {
                    biased;
                    sent = sent => Ok(sent),
                    () = self.answer_deadline.elapsed() => Err(()),
                    // Gone before the answer: the exchange records 499 and leaves the
                    // endpoint's in-flight count now, as on the full path.
                    () = client_gone(client, &mut self.received) => return Step::Close,
                }
            };
            let next = match sent {
                Ok(Ok((mut upstream, reply))) => {
                    let retry_after = reply
                        .retry_after
                        .map(|(start, end)| &self.replied.filled()[start..end]);
                    let load_report = reply
                        .load_report
                        .map(|(start, end)| &self.replied.filled()[start..end]);
                    let status = reply.status;
                    let signals = HeadSignals {
                        retry_after,
                        load_report,
                    };
                    if attempts.after_head(&endpoint, &mut exchange, sent_at, status, signals) {
                        // Another endpoint answers instead: this answer is left unread,
                        // and its connection closed.
                        Ok(())
                    } else {
                        let wait = timeouts.first_token;
                        match first_token(&mut self.replied, &mut upstream, &reply, wait).await {
                            FirstToken::Came => break (upstream, reply, endpoint),
                            // Nothing has reached the client: another endpoint may
                            // answer in time.
                            FirstToken::Late(wait) => {
                                attempts.after_first_token_timeout(&endpoint, &mut exchange, wait)
                            }
                        }
                    }
                }
                // The client failed its streamed body: no endpoint is to blame.
                Ok(Err(
                    error @ (ProxyError::BodyTimeout { .. } | ProxyError::BadRequestBody { .. }),
                )) => Err(error),
                Ok(Err(error)) => attempts.after_send_error(&endpoint, &mut exchange, error),
                Err(_) => {
                    let after = timeouts.response_headers;
                    attempts.after_head_timeout(&endpoint, &mut exchange, after)
                }
            };
            if let Err(error) = next {
                return answer
                    .error(client, &mut self.client_reply, &mut exchange, error)
                    .await;
            }
        };
        let pool = attempts.pool().clone();

        exchange.status = reply.status;
        // The response policies and the split's cookie, rendered into the client's head.
        let mut response_edits = HeaderEdits::new();
        let status = http::StatusCode::from_u16(reply.status).ok();
        request_filters::on_response(
            route,
            &mut exchange,
            &endpoint.url,
            status,
            &mut response_edits,
        );
        if let Some(cookie) = choice.set_cookie {
            response_edits.append(&http::header::SET_COOKIE, cookie);
        }
        // The body phase, set up on the head: a transformed body goes out in chunks.
        let replied = self.replied.filled();
        let value = |at: Option<(usize, usize)>| at.map(|(start, end)| &replied[start..end]);
        let has_body = !matches!(reply.framing, Framing::Empty | Framing::Length(0));
        let transform = match body_phase::on_response_head(
            route,
            head.target(self.received.filled()),
            value(reply.content_type),
            value(reply.content_encoding),
            has_body,
            &mut response_edits,
            &mut exchange,
            gateway.audit(),
        ) {
            Ok(transform) => transform,
            Err(error) => {
                return answer
                    .error(client, &mut self.client_reply, &mut exchange, error)
                    .await;
            }
        };
        // The pool's `api`: the answer translated back, before the body phase's own.
        let settled = translation::on_answer(
            reply.status,
            value(reply.content_type),
            has_body,
            &mut response_edits,
            &mut exchange,
        );
        let transform = transform || settled.is_some();
        if transform && reply.framing != Framing::Chunked && reply.framing != Framing::UntilClose {
            response_edits.remove(&http::header::CONTENT_LENGTH);
            let chunked = HeaderValue::from_static("chunked");
            response_edits.append(&http::header::TRANSFER_ENCODING, chunked);
        }
        if !response_edits.is_empty() {
            reply::apply_edits(&mut self.client_reply, &response_edits, reply.names);
        }
        let event_stream = reply.kind == ReplyKind::EventStream;
        reply::record_head(&mut exchange, &self.client_reply, event_stream);
        exchange.start_reading(reply.kind, value(reply.content_encoding));
        self.replied.consume(reply.len);
        let deadline = timeouts.total.map(|total| exchange.started() + total);
        let body = BodyRelay {
            upstream: &mut upstream,
            replied: &mut self.replied,
            client,
            received: &mut self.received,
            head: &mut self.client_reply,
            exchange: &mut exchange,
            idle: timeouts.idle,
            deadline,
            hold_head: response_head::holds_head(reply.kind),
            transform,
            settled,
        };
        let relayed = body.run(reply.framing).await;
        match relayed {
            Relayed::Complete => {
                if reply.reusable && self.replied.is_empty() {
                    endpoint
                        .state
                        .connections
                        .push_stream(upstream, pool.client.max_idle());
                }
                if reply.close_client {
                    Step::Close
                } else {
                    Step::KeepAlive
                }
            }
            Relayed::ClientGone => Step::Close,
            Relayed::Refused { reason } => {
                let error = body_phase::refused_response(reason);
                answer
                    .error(client, &mut self.client_reply, &mut exchange, error)
                    .await
            }
            Relayed::Unanswered { reason, malformed } => {
                attempts.after_broken_answer(&endpoint);
                let error = response_head::unanswered(&endpoint, reason, malformed);
                answer
                    .error(client, &mut self.client_reply, &mut exchange, error)
                    .await
            }
            Relayed::UpstreamBroke {
                reason,
                at_boundary,
            } => {
                tracing::warn!(endpoint = %endpoint.url, %reason, "response broke off");
                exchange.failed = true;
                // An event stream ends with an error event the client can read, as on
                // the full path; any other body is cut, so it is never taken as whole.
                if at_boundary && reply.kind == ReplyKind::EventStream {
                    let event = interrupted_event(&reason);
                    exchange.on_response_data(&event);
                    let mut tail = Vec::with_capacity(event.len() + 16);
                    put_chunk(&mut tail, &event);
                    tail.extend_from_slice(LAST_CHUNK);
                    if client.write_all(&tail).await.is_ok() && !reply.close_client {
                        return Step::KeepAlive;
                    }
                }
                Step::Close
            }
        }
    }
}

/// Whether an event stream's first bytes came within the route's first-token wait.
enum FirstToken {
    /// They came, or there is no wait (not an event stream, no body, no timeout).
    Came,
    /// Nothing came within this wait, or the stream broke before anything came.
    Late(Duration),
}

/// Waits, after the head of an event stream, up to `wait` for its first bytes, as the
/// hyper engine waits for its first frame (`attempts::forward`). Bytes that came with
/// the head count; the end of the stream is the relay's to report.
async fn first_token(
    replied: &mut ReceiveBuffer,
    upstream: &mut crate::upstream::EndpointStream,
    reply: &reply::Reply,
    wait: Option<Duration>,
) -> FirstToken {
    let Some(wait) = wait else {
        return FirstToken::Came;
    };
    let has_body = !matches!(reply.framing, Framing::Empty | Framing::Length(0));
    if reply.kind != ReplyKind::EventStream || !has_body || replied.len() > reply.len {
        return FirstToken::Came;
    }
    match tokio::time::timeout(wait, replied.read_from(upstream, REPLY_HEAD_LIMIT)).await {
        Ok(Ok(_)) => FirstToken::Came,
        Ok(Err(_)) | Err(_) => FirstToken::Late(wait),
    }
}

/// The listener's body timeouts, as the full path applies them (`ClientBody`): each
/// read within `idle`, the whole body within `total`.
struct BodyWait {
    timeouts: BodyTimeouts,
    deadline: Instant,
}

impl BodyWait {
    fn new(timeouts: BodyTimeouts) -> Self {
        BodyWait {
            timeouts,
            deadline: Instant::now() + timeouts.total,
        }
    }

    /// Reads more of the body into `received` (grown up to `limit`); `Err` says how the
    /// connection goes on when none came: closed, or a `408`.
    async fn read<C: ClientStream>(
        &self,
        client: &mut C,
        received: &mut ReceiveBuffer,
        limit: usize,
    ) -> Result<(), Next> {
        let read = received.read_from(client, limit);
        match self.within(read).await {
            Ok(_) => Ok(()),
            Err(BodyReadError::Closed) => Err(Next::Closed),
            Err(BodyReadError::TimedOut(after)) => Err(Next::BodyTimeout(after)),
        }
    }

    /// Reads more of the body into `piece`.
    async fn read_into<C: ClientStream>(
        &self,
        client: &mut C,
        piece: &mut [u8],
    ) -> Result<usize, BodyReadError> {
        self.within(client.read(piece)).await
    }

    async fn within(
        &self,
        read: impl std::future::Future<Output = std::io::Result<usize>>,
    ) -> Result<usize, BodyReadError> {
        let wake = (Instant::now() + self.timeouts.idle).min(self.deadline);
        match tokio::time::timeout_at(wake, read).await {
            Ok(Ok(n)) if n > 0 => Ok(n),
            Ok(_) => Err(BodyReadError::Closed),
            Err(_) => Err(BodyReadError::TimedOut(
                if Instant::now() >= self.deadline {
                    self.timeouts.total
                } else {
                    self.timeouts.idle
                },
            )),
        }
    }
}

/// Why no more of a body came.
enum BodyReadError {
    /// The client closed (or broke) the connection.
    Closed,
    /// Nothing within the idle timeout, or the whole body not within the total one.
    TimedOut(Duration),
}

/// Whether a route of the connection's listener takes bodies unbuffered.
fn streams_bodies(downstream: &Downstream) -> bool {
    downstream.current_listener().routes.streams_bodies
}

/// Time a `408` has to reach a client before the connection is dropped without it: a
/// client that stopped reading must not hold a task and a socket.
pub(crate) const FAREWELL: Duration = Duration::from_secs(2);

/// A `408` for a client that did not finish its request head in time.
pub(crate) const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

fn log_facts(head: &RequestHead, buf: &[u8], client_ip: std::net::IpAddr) -> LogFacts {
    LogFacts {
        client_ip,
        method: head.method.clone(),
        path: LogPath::of_target(head.target(buf)),
        path_masked: false,
        protocol: "HTTP/1.1",
        user_agent: head
            .user_agent(buf)
            .and_then(|v| HeaderValue::from_bytes(v).ok()),
    }
}

/// How the proxy's own answer to a request must look.
struct AnswerTo {
    /// No body after the head (the length is still given).
    head_request: bool,
    /// The client asked to close, or shutdown has begun.
    close: bool,
}

impl AnswerTo {
    /// Answers the client with Junction's own error response (the endpoint gave none).
    async fn error<C: ClientStream>(
        &self,
        client: &mut C,
        out: &mut Vec<u8>,
        exchange: &mut Exchange,
        error: ProxyError,
    ) -> Step {
        match error.blame() {
            crate::pipeline::Blame::Downstream => tracing::debug!(%error, "request refused"),
            _ => tracing::warn!(%error, "request failed"),
        }
        exchange.error = Some(error.kind());
        self.respond(client, out, exchange, error.to_response())
            .await
    }

    /// Answers the client with a response the proxy made (an error, or a policy's
    /// refusal), rendered as the full path renders it.
    async fn respond<C: ClientStream>(
        &self,
        client: &mut C,
        out: &mut Vec<u8>,
        exchange: &mut Exchange,
        response: http::Response<ProxyBody>,
    ) -> Step {
        let status = response.status();
        exchange.status = status.as_u16();
        let full = match response.body() {
            ProxyBody::Full(Some(bytes)) => bytes.clone(),
            _ => Bytes::new(),
        };
        let length = full.len() as u64;
        // HEAD: the length the body would have, and no body (RFC 9110 9.3.2).
        let body = if self.head_request {
            Bytes::new()
        } else {
            full
        };
        exchange.bytes_out = body.len() as u64;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in response.headers() {
            request::put_header(out, name.as_str().as_bytes(), value.as_bytes());
        }
        request::put_header(out, b"content-length", Digits::of(length).as_bytes());
        reply::with_http_date(|date| request::put_header(out, b"date", date));
        if let Some(id) = &exchange.request_id {
            request::put_header(out, b"x-request-id", id.as_bytes());
        }
        if self.close {
            request::put_header(out, b"connection", b"close");
        }
        out.extend_from_slice(b"\r\n");
        reply::record_head(exchange, out, false);
        exchange.record_own_body(&body);
        out.extend_from_slice(&body);
        match client.write_all(out).await {
            Ok(()) if !self.close => Step::KeepAlive,
            _ => Step::Close,
        }
    }
}
