//! The request handler: the one place that fixes the order of the phases. Everything
//! a phase does lives elsewhere (routing, filters, balancing, the upstream client).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::affinity::request_key;
use super::attempts::{self, Forwarded};
use super::body_phase;
use super::response_head;
use super::versioning;

use super::body::{AheadError, ClientBody, UpstreamStream};
use super::exchange::{BytesIn, Exchange, LogFacts, TunnelStart};
use super::forwarding::{self, is_upgrade_request};
use super::{Downstream, Flow, ProxyBody, ProxyError};
use crate::llm::ReplyKind;
use crate::normalize::Refusal;
use crate::routing::GatewayListener;
use crate::routing::Route;
use crate::security::X_JUNCTION_TAG;
use crate::telemetry::access_log::LogPath;
use crate::telemetry::trace::{self, X_REQUEST_ID};
use crate::upstream::{Pool, UpstreamBody};

/// Serves one downstream request. Never fails: every error becomes a response.
pub async fn handle(
    request: Request<Incoming>,
    downstream: Arc<Downstream>,
) -> Result<Response<ProxyBody>, Infallible> {
    let gateway = &downstream.gateway;
    let listener = downstream.current_listener();
    let log = gateway
        .telemetry()
        .access_log
        .enabled()
        .then(|| log_facts(&request, &downstream, &listener));
    let mut exchange = Box::new(Exchange::new(gateway.telemetry().clone(), log));
    let result = proxy(request, &downstream, &listener, &mut exchange).await;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            match error.blame() {
                super::Blame::Downstream => tracing::debug!(%error, "request refused"),
                _ => tracing::warn!(%error, "request failed"),
            }
            exchange.error = Some(error.kind());
            error.to_response()
        }
    };
    exchange.status = response.status().as_u16();
    if let Some(id) = &exchange.request_id {
        response
            .headers_mut()
            .insert(X_REQUEST_ID.clone(), id.to_header());
    }
    if exchange.recording.is_some() {
        let headers = response.headers();
        let event_stream = ReplyKind::of(headers) == ReplyKind::EventStream;
        let lines = headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
        exchange.record_response_head(response.status().as_u16(), lines, event_stream);
    }
    // A tunnel keeps the record to the connection's end.
    if let Some(tunnel) = exchange.tunnel.take() {
        exchange.switched_at = Some(tokio::time::Instant::now());
        tokio::spawn(tunnel(exchange));
        return Ok(response);
    }
    // The record rides with a streamed body to its end; for a local answer it reports now.
    match response.body_mut() {
        ProxyBody::Upstream(stream) => stream.exchange = Some(exchange),
        ProxyBody::Full(Some(bytes)) => {
            exchange.bytes_out = bytes.len() as u64;
            exchange.record_own_body(bytes);
        }
        _ => {}
    }
    Ok(response)
}

/// The key authorization for a `GET` (or `HEAD`) of a pending HTTP-01 token.
fn acme_answer(
    answers: &crate::acme::Http01Answers,
    head: &http::request::Parts,
) -> Option<Response<ProxyBody>> {
    if head.method != Method::GET && head.method != Method::HEAD {
        return None;
    }
    let key_authorization = answers.answer(head.uri.path())?;
    let mut response = Response::new(ProxyBody::full(Bytes::copy_from_slice(
        key_authorization.as_bytes(),
    )));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    Some(response)
}

fn log_facts(
    request: &Request<Incoming>,
    downstream: &Downstream,
    listener: &GatewayListener,
) -> LogFacts {
    let trusted = &listener.trusted_proxies;
    LogFacts {
        client_ip: super::client_ip(request.headers(), downstream.peer.ip(), trusted),
        method: request.method().clone(),
        path: LogPath::Uri(request.uri().clone()),
        path_masked: false,
        protocol: protocol_name(request.version()),
        user_agent: request.headers().get(header::USER_AGENT).cloned(),
    }
}

/// A request's protocol as logs and records name it.
pub fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

async fn proxy(
    request: Request<Incoming>,
    downstream: &Downstream,
    listener: &GatewayListener,
    exchange: &mut Exchange,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut head, body) = request.into_parts();
    let (size, limit) = (head_size(&head), listener.max_request_head());
    if size > limit {
        return Err(ProxyError::HeadTooLarge { size, limit });
    }
    let body = ClientBody::new(body, listener.body_timeouts);
    let answered = body.answered();
    let gateway = &downstream.gateway;
    // Phase: make the request unambiguous, before anything reads or adds to it.
    let trusted = forwarding::is_trusted(&listener.trusted_proxies, downstream.peer.ip());
    let entry = super::entry::normalise(&mut head, trusted).inspect_err(|error| {
        if let ProxyError::Invalid(refusal) = error {
            let metrics = &gateway.telemetry().metrics;
            metrics.count_decision(refusal.rule(), "deny");
        }
    })?;
    let client_sent_id = head.headers.contains_key(&X_REQUEST_ID);
    exchange.request_id = Some(trace::ensure_request_id(&mut head.headers, gateway.rng()));
    exchange.trace = trace::continue_trace(&mut head.headers, gateway.rng());
    // Tags are Junction's word to the endpoint: a client must not be able to set them.
    head.headers.remove(&X_JUNCTION_TAG);

    // Phase: an ACME server checking one of our HTTP-01 tokens is answered before routing.
    if let Some(answer) = acme_answer(gateway.acme_answers(), &head) {
        return Ok(answer);
    }

    // Phase: read the body only when routing needs the `model` field.
    let (body, facts) = if listener.routes.needs_body && wants_model_lookup(&head) {
        let bytes = read_body(body, &head, listener.model_body_limit).await?;
        exchange.bytes_in = BytesIn::Known(bytes.len() as u64);
        let facts = crate::llm::request_facts(&bytes);
        (ProxyBody::full(bytes), Some(facts))
    } else {
        (streamed_body(body, &head, exchange), None)
    };
    let model = facts.as_ref().and_then(|f| f.model.clone());

    // Phase: route.
    let route = listener
        .routes
        .find(&head, model.as_deref())
        .ok_or_else(|| ProxyError::NoRoute {
            method: head.method.clone(),
            path: head.uri.path().to_string(),
        })?
        .clone();
    exchange.route = Some(route.clone());
    if entry.encoded_slash && !route.allow_encoded_slashes {
        let refusal = Refusal::EncodedSlash;
        gateway
            .telemetry()
            .metrics
            .count_decision(refusal.rule(), "deny");
        return Err(refusal.into());
    }
    let body = match route.max_body_bytes {
        Some(limit) => cap_body(body, &head, limit)?,
        None => body,
    };

    // The client behind trusted proxies, once: no policy can edit `X-Forwarded-For`.
    let client_ip = super::client_ip(
        &head.headers,
        downstream.peer.ip(),
        &listener.trusted_proxies,
    );

    exchange.client_ip = Some(client_ip);
    exchange.client_identity = downstream.client_identity.clone();
    // Phase: start recording the flow, for a route that captures a sample of them.
    if route.capture.is_some() {
        let view = super::head::PartsView {
            head: &head,
            added_request_id: !client_sent_id,
        };
        let host = head
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| head.uri.authority().map(|a| a.as_str()));
        let client = body_phase::ClientFacts {
            client_ip,
            http_version: protocol_name(head.version),
            host,
            tls: downstream.tls,
        };
        let draw = gateway.rng().next_u64();
        body_phase::begin_capture(&route, &view, client, draw, exchange);
    }

    // Phase: request filters.
    if !route.filters.is_empty() {
        // Header limits judge the client's headers, without the request id added above.
        let view = super::head::PartsView {
            head: &head,
            added_request_id: !client_sent_id,
        };
        let mut edits = super::HeaderEdits::default();
        let flow = super::request_filters::on_request(
            &route,
            exchange,
            client_ip,
            facts.as_ref(),
            &view,
            &mut edits,
        )
        .await;
        edits.apply(&mut head.headers);
        if let Flow::Respond(response) = flow {
            return Ok((*response).into());
        }
    }

    // Phase: the anomaly detectors: the client's rate, and a cool-down set earlier.
    let mut edits = super::HeaderEdits::default();
    super::detection::on_request(&route, exchange, &mut edits)?;
    super::forwarding::client_identity_edits(downstream, &mut edits);
    edits.apply(&mut head.headers);

    // Phase: read the body whole before an endpoint is chosen or a connection taken, so a
    // slow client holds neither (nginx's `proxy_request_buffering`); larger bodies stream.
    let mut body = body;
    if route.request_buffering {
        let limit = route.request_buffer_bytes;
        body = attempts::keep_for_replay(body, &head, limit, exchange)
            .await?
            .0;
    }

    // Phase: the request body phase (masking), on the whole body.
    let mut edits = super::HeaderEdits::default();
    body_phase::request_edits(&route, &mut edits);
    if let Some(limit) = body_phase::request_body_limit(&route, exchange) {
        let (kept, whole) = attempts::keep_for_replay(body, &head, limit as u64, exchange).await?;
        body = kept;
        let view = super::head::PartsView {
            head: &head,
            added_request_id: false,
        };
        let whole = whole.as_deref();
        let audit = gateway.audit();
        let masked =
            body_phase::on_request_body(&route, &view, whole, &mut edits, exchange, audit)?;
        if let Some(masked) = masked {
            head.headers.remove(header::TRANSFER_ENCODING);
            head.headers.insert(
                header::CONTENT_LENGTH,
                header::HeaderValue::from(masked.len()),
            );
            body = ProxyBody::full(masked);
        }
    }
    edits.apply(&mut head.headers);

    // Phase: choose the split's side, copy to the mirror.
    let view = super::head::PartsView {
        head: &head,
        added_request_id: false,
    };
    let choice = versioning::choose_target(
        &route,
        &view,
        client_ip,
        &|token| downstream.is_admin_token(token),
        gateway.rng(),
    );
    // Junction's own: never sent to an endpoint, whatever the choice.
    forwarding::remove_each(
        &mut head.headers,
        &[
            &versioning::X_JUNCTION_VERSION,
            &versioning::X_JUNCTION_ADMIN_TOKEN,
        ],
    );
    exchange.target = choice.target;
    let pool = route.targets[choice.target].pool.clone();
    if let Some(limit) = versioning::mirror_body_limit(&route) {
        let (kept, copy) = attempts::keep_for_replay(body, &head, limit, exchange).await?;
        body = kept;
        if let Some(copy) = copy {
            versioning::send_shadow(&route, &head, copy, downstream, listener);
        }
    }

    // Phase: pick an endpoint and forward (retrying elsewhere as the route allows).
    let view = super::head::PartsView {
        head: &head,
        added_request_id: false,
    };
    let held = attempts::held_body(&body);
    let affinity = request_key(&pool, &view, || client_ip, held.as_deref());
    let chain_keys = super::affinity::chain_keys(&route, &view, client_ip, held.as_deref());
    let head_request = head.method == Method::HEAD;
    // The body phase reads the answer by the API the request asked (its path).
    let request_path = route.mask.as_ref().map(|_| head.uri.path().to_owned());
    let forwarded = if is_upgrade_request(&head) {
        let upgrade = head.headers.get(header::UPGRADE).map(|v| v.as_bytes());
        let masked = body_phase::on_upgrade(&route, upgrade, exchange)?;
        let masking = (masked == body_phase::UpgradeMasking::Messages).then(|| {
            // Compressed messages could not be read: no extension is offered.
            head.headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
            super::websocket::MessageMasking {
                route: route.clone(),
                partition: crate::masking::Partition::of(exchange.client_id()),
                telemetry: downstream.gateway.telemetry().clone(),
                audit: downstream.gateway.audit().clone(),
                request_id: exchange
                    .request_id
                    .as_ref()
                    .and_then(|id| id.as_str())
                    .map(str::to_owned),
                client_ip: exchange.log.as_ref().map(|l| l.client_ip),
                close_key: (downstream.gateway.rng().next_u64() as u32).to_le_bytes(),
            }
        });
        // Picked as every request is, limits included; the tunnel is in flight to its
        // endpoint while it is open, which least-connections balancing counts.
        let endpoint = attempts::pick(&pool, affinity, &[])?;
        exchange.in_flight = Some(endpoint.state.begin());
        exchange.endpoint = Some(endpoint.clone());
        forwarding::prepare_request(&mut head, downstream, listener, &pool, &endpoint, true);
        match forward_upgrade(head, body, &route, pool, endpoint, masking).await? {
            Upgrade::Switched(response, tunnel) => {
                exchange.tunnel = tunnel;
                return Ok(response);
            }
            // Any other answer is an answer like all others: its body phase, header rules.
            Upgrade::Declined(forwarded) => forwarded,
        }
    } else {
        let destination = attempts::Destination {
            route: &route,
            pool,
            affinity,
            chain_keys,
        };
        attempts::forward(head, body, destination, downstream, listener, exchange).await?
    };
    answered.store(true, std::sync::atomic::Ordering::Relaxed);

    // Phase: response filters, then stream the body back.
    let Forwarded {
        pool,
        endpoint,
        head: mut response_head,
        body,
        first,
    } = forwarded;
    forwarding::prepare_response(&mut response_head, &pool, false);
    // The endpoint's kind of answer, as the HTTP/1.1 engine reads it (before any edit).
    let reply_kind = ReplyKind::of(&response_head.headers);
    // Usage is read through the endpoint's coding, before the body phase may drop it.
    let content_encoding = response_head.headers.get(header::CONTENT_ENCODING).cloned();
    let event_stream = reply_kind == ReplyKind::EventStream;
    // Phase: the response body phase (masking, restoring pseudonyms), set up on the head.
    let headers = &response_head.headers;
    let status = response_head.status;
    let has_body = !(head_request
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0"));
    let mut edits = super::HeaderEdits::default();
    let transforms = body_phase::on_response_head(
        &route,
        request_path.as_deref().unwrap_or("").as_bytes(),
        headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()),
        has_body,
        &mut edits,
        exchange,
        downstream.gateway.audit(),
    )?;
    if transforms {
        response_head.headers.remove(header::CONTENT_LENGTH);
        edits.apply(&mut response_head.headers);
    }
    // The pool's `api`: the answer translated back to the client's API, before masking.
    let translated = super::translation::on_response_head(&mut response_head, has_body, exchange);
    let transforms = transforms || translated.is_some();
    exchange.start_reading(reply_kind, content_encoding.as_ref().map(|v| v.as_bytes()));
    let mut edits = super::HeaderEdits::default();
    let status = Some(response_head.status);
    super::request_filters::on_response(&route, exchange, &endpoint.url, status, &mut edits);
    edits.apply(&mut response_head.headers);
    let timeouts = route.timeouts;
    let deadline = timeouts.total.map(|total| exchange.started() + total);
    let mut stream = UpstreamStream::new(body, first, event_stream, timeouts.idle, deadline);
    if transforms && response_head::holds_head(reply_kind) {
        stream
            .transform_ahead(exchange)
            .await
            .map_err(|error| match error {
                AheadError::Upstream(reason) => response_head::unanswered(&endpoint, reason, false),
                AheadError::Transform(reason) => body_phase::refused_response(reason),
            })?;
    }
    if let Some(settled) = &translated {
        settled.apply(&mut response_head);
    }
    if let Some(cookie) = choice.set_cookie {
        response_head.headers.append(header::SET_COOKIE, cookie);
    }
    Ok(Response::from_parts(
        response_head,
        ProxyBody::Upstream(Box::new(stream)),
    ))
}

/// Holds a request body to its route's `max_body_bytes`: a declared or already read
/// size over it is refused at once; a streamed one is cut where it crosses the limit.
fn cap_body(
    body: ProxyBody,
    head: &http::request::Parts,
    limit: u64,
) -> Result<ProxyBody, ProxyError> {
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let known = match &body {
        ProxyBody::Full(Some(bytes)) => Some(bytes.len() as u64),
        _ => declared,
    };
    match known {
        Some(size) if size > limit => Err(ProxyError::BodyTooLarge { limit }),
        Some(_) => Ok(body),
        None => Ok(ProxyBody::Capped(Box::new(body), limit, limit)),
    }
}

/// The request body to stream upstream, with its size known from `content-length` or
/// counted as it passes.
fn streamed_body(
    body: ClientBody,
    head: &http::request::Parts,
    exchange: &mut Exchange,
) -> ProxyBody {
    use hyper::body::Body as _;
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) => {
            exchange.bytes_in = BytesIn::Known(length);
            ProxyBody::Incoming(body)
        }
        None if body.is_end_stream() => ProxyBody::Incoming(body),
        None => {
            let counter = Arc::new(AtomicU64::new(0));
            exchange.bytes_in = BytesIn::Counted(counter.clone());
            ProxyBody::Counted(body, counter)
        }
    }
}

/// A request head's size as HTTP/1.1 writes it (request line, `name: value` lines, the
/// empty line): what `max_request_head_bytes` limits, whatever engine read the head.
fn head_size(head: &http::request::Parts) -> usize {
    let uri = &head.uri;
    let target = match (uri.scheme_str(), uri.authority(), uri.path_and_query()) {
        (Some(scheme), Some(authority), path) => {
            scheme.len() + 3 + authority.as_str().len() + path.map_or(0, |p| p.as_str().len())
        }
        (None, Some(authority), None) => authority.as_str().len(),
        (_, _, path) => path.map_or(1, |p| p.as_str().len()),
    };
    let request_line = head.method.as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let lines: usize = head
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    request_line + lines + 2
}

fn wants_model_lookup(head: &http::request::Parts) -> bool {
    head.method == Method::POST && ReplyKind::of(&head.headers) == ReplyKind::Json
}

async fn read_body(
    body: ClientBody,
    head: &http::request::Parts,
    limit: u64,
) -> Result<Bytes, ProxyError> {
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    match Limited::new(body, limit as usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ProxyError::BodyTooLarge { limit })
        }
        Err(error) => Err(ProxyError::from_body_error(&*error)),
    }
}

/// How an endpoint answered an upgrade request.
enum Upgrade {
    /// `101 Switching Protocols`, and the tunnel to start once it is out (none when the
    /// client's connection cannot be upgraded).
    Switched(Response<ProxyBody>, Option<TunnelStart>),
    /// Any other answer, which goes back as every answer does.
    Declined(Forwarded),
}

/// `Upgrade` requests (WebSocket and others): forwarded on a dedicated connection;
/// after `101 Switching Protocols` both sides are spliced together byte for byte, or
/// message by message on a masking route.
async fn forward_upgrade(
    mut head: http::request::Parts,
    body: ProxyBody,
    route: &Arc<Route>,
    pool: Arc<Pool>,
    endpoint: Arc<crate::upstream::Endpoint>,
    masking: Option<super::websocket::MessageMasking>,
) -> Result<Upgrade, ProxyError> {
    let downstream_upgrade = head.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let request = Request::from_parts(head, body.into_request_body());
    let timeouts = route.timeouts;
    let mut response = match tokio::time::timeout(
        timeouts.response_headers,
        pool.client
            .send_upgrade(&endpoint, request, timeouts.connect),
    )
    .await
    {
        Ok(result) => result?,
        Err(_) => {
            return Err(ProxyError::ResponseHeadersTimeout {
                endpoint: endpoint.url.to_string(),
                after: timeouts.response_headers,
            });
        }
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (head, body) = response.into_parts();
        return Ok(Upgrade::Declined(Forwarded {
            pool,
            endpoint,
            head,
            body: UpstreamBody::from_incoming(body),
            first: None,
        }));
    }
    if masking.is_some()
        && response
            .headers()
            .contains_key(header::SEC_WEBSOCKET_EXTENSIONS)
    {
        // An extension none offered (compression): its messages could not be read.
        return Err(body_phase::refused_response(
            "the endpoint chose a WebSocket extension that was not offered".into(),
        ));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let tunnel =
        downstream_upgrade.map(|client| super::tunnel::start(client, upstream_upgrade, masking));
    let (mut response_head, _) = response.into_parts();
    forwarding::prepare_response(&mut response_head, &pool, true);
    let response = Response::from_parts(response_head, ProxyBody::Empty);
    Ok(Upgrade::Switched(response, tunnel))
}
