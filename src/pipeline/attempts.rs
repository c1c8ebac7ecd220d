//! Sending a request to a pool: pick an endpoint that is up and has room, send, judge
//! the answer, and try another endpoint when that is safe and the retry budget allows.
//! Each outcome also feeds passive outlier detection and `Retry-After` holds.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, request};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::time::Instant;

use super::body::{Held, read_up_to};
use super::exchange::{BytesIn, Exchange, HopRecord};
use super::forwarding;
use super::response_head;
use super::{Downstream, ProxyBody, ProxyError};
use crate::routing::retry::{RetryPolicy, is_idempotent};
use crate::routing::{GatewayListener, Hop, Route, Trigger};
use crate::upstream::health::{self, Outcome};
use crate::upstream::{Endpoint, Pool, SendError, UpstreamBody};

/// Longest `Retry-After` honoured as a hold on an endpoint.
const MAX_RETRY_AFTER_HOLD: Duration = Duration::from_secs(300);

/// An endpoint's answer, ready to stream back.
pub struct Forwarded {
    pub pool: Arc<Pool>,
    pub endpoint: Arc<Endpoint>,
    pub head: http::response::Parts,
    pub body: UpstreamBody,
    /// The first chunk, when it was awaited (first-token timeout).
    pub first: Option<hyper::body::Frame<Bytes>>,
}

/// What a response head tells about its endpoint, as sent.
#[derive(Clone, Copy, Default)]
pub(crate) struct HeadSignals<'a> {
    pub retry_after: Option<&'a [u8]>,
    /// ORCA `endpoint-load-metrics`: the model server's load (`least_queue`).
    pub load_report: Option<&'a [u8]>,
}

const ENDPOINT_LOAD_METRICS: &str = "endpoint-load-metrics";

/// Where a request goes: its route, the pool chosen for it (a split's side), and its
/// affinity key for `hash` balancing (and those of the chain's pools).
pub struct Destination<'a> {
    pub route: &'a Arc<Route>,
    pub pool: Arc<Pool>,
    pub affinity: Option<u64>,
    pub chain_keys: Vec<Option<u64>>,
}

/// The pick / send / judge / retry decisions for one request, made once for both
/// engines: which endpoint next (the fallback pool when the pool has none), whether a
/// failure or an answer sends the request elsewhere within the route's retries, its
/// retry budget and the connect failovers, whether it goes on to the next target of the
/// route's fallback chain, and what each outcome tells passive health. The engines only
/// send and read.
///
/// Retries and hops compose as Envoy's priority levels do: the route's `retries` first
/// try other endpoints of the current target's pool (`attempts` counted per target);
/// when they decline, the outcome is matched against the next target's `on`. Every
/// retry and every hop takes one from the route's retry budget, and only a body held
/// whole goes again.
pub(crate) struct Attempts<'r> {
    policy: Option<&'r RetryPolicy>,
    /// The route's chain after its first target.
    chain: &'r [Hop],
    /// Where in the chain: 0 the chosen target, n the chain's n-th hop.
    hop: usize,
    pool: Arc<Pool>,
    affinity: Option<u64>,
    /// The balancer's key for each chain target's pool (`affinity::chain_keys`).
    chain_keys: Vec<Option<u64>>,
    on_fallback: bool,
    tried: smallvec::SmallVec<[Arc<Endpoint>; 2]>,
    /// How many of `tried` were tried at earlier targets of the chain.
    tried_before: usize,
    max_attempts: u32,
    failovers: u32,
    /// The body is held whole: it can be sent again, to another endpoint or pool.
    replayable: bool,
    method: Method,
    last_error: Option<ProxyError>,
}

impl<'r> Attempts<'r> {
    /// `replayable`: the request's body is held whole and can be sent again; `started`:
    /// when the request began (the retry budget's clock).
    pub(crate) fn new(
        route: &'r Route,
        pool: Arc<Pool>,
        affinity: Option<u64>,
        method: &Method,
        replayable: bool,
        started: Instant,
    ) -> Self {
        let policy = route.retries.as_ref();
        if let Some(policy) = policy {
            policy.budget.deposit_at(started);
        }
        Attempts {
            policy,
            chain: &route.chain,
            hop: 0,
            pool,
            affinity,
            chain_keys: Vec::new(),
            on_fallback: false,
            tried: smallvec::SmallVec::new(),
            tried_before: 0,
            max_attempts: if replayable {
                policy.map_or(0, |p| p.attempts)
            } else {
                0
            },
            failovers: if replayable && route.retry_connect_errors {
                MAX_FAILOVERS
            } else {
                0
            },
            replayable,
            method: method.clone(),
            last_error: None,
        }
    }

    /// With the balancer's keys of the chain's pools (`affinity::chain_keys`).
    pub(crate) fn with_chain_keys(mut self, keys: Vec<Option<u64>>) -> Self {
        self.chain_keys = keys;
        self
    }

    /// The pool the last endpoint came from.
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The endpoint to try next; when none is left, the last failure (or why none).
    pub(crate) fn next_endpoint(
        &mut self,
        exchange: &mut Exchange,
    ) -> Result<Arc<Endpoint>, ProxyError> {
        loop {
            match pick(&self.pool, self.affinity, &self.tried) {
                Ok(endpoint) => {
                    self.tried.push(endpoint.clone());
                    return Ok(endpoint);
                }
                Err(unavailable) => {
                    if let Some(fallback) = self.pool.fallback().filter(|_| !self.on_fallback) {
                        tracing::debug!(pool = %self.pool.name, fallback = %fallback.name, "no endpoint available; using the fallback pool");
                        exchange.hops.push(HopRecord {
                            from: self.pool.name.clone(),
                            to: fallback.name.clone(),
                            reason: Trigger::Unavailable.name().into(),
                        });
                        self.pool = fallback;
                        self.on_fallback = true;
                        continue;
                    }
                    let status = unavailable.status().as_u16();
                    if self.hop_on(exchange, &[Trigger::Unavailable], Some(status)) {
                        continue;
                    }
                    return Err(self.last_error.take().unwrap_or(unavailable));
                }
            }
        }
    }

    /// Tries at the current target after its first.
    fn attempt(&self) -> u32 {
        (self.tried.len() - self.tried_before).saturating_sub(1) as u32
    }

    fn may_retry(&self, exchange: &mut Exchange) -> bool {
        let allowed = self.attempt() < self.max_attempts
            && can_try_again(&self.pool, &self.tried, self.on_fallback)
            && self.policy.is_some_and(|p| p.budget.withdraw());
        if allowed {
            exchange.retries += 1;
        }
        allowed
    }

    /// Without (or beyond) the route's `retries`: a request that reached no endpoint.
    fn may_fail_over(&self, exchange: &mut Exchange, error: &ProxyError) -> bool {
        let allowed = self.attempt() < self.failovers
            && fails_over(error, &self.method)
            && can_try_again(&self.pool, &self.tried, self.on_fallback);
        if allowed {
            exchange.retries += 1;
        }
        allowed
    }

    /// Goes on to the next target of the chain when what happened matches its `on`,
    /// the body can go again, some pool down the chain has an endpoint to take it, and
    /// the budget allows. What happened is `kinds` (most specific first), then `status`:
    /// the endpoint's answer, or the one Junction makes for the failure (503 for no
    /// endpoint, 502 for a connect error or reset, 504 for a timeout), as Envoy's `5xx`
    /// covers resets and timeouts. The method does not matter: `on` is the operator's
    /// say that the request may go again (chat completions are POSTs).
    fn hop_on(&mut self, exchange: &mut Exchange, kinds: &[Trigger], status: Option<u16>) -> bool {
        let Some(next) = self.chain.get(self.hop) else {
            return false;
        };
        let by_status = status.map(Trigger::Status).filter(|s| next.on.contains(*s));
        let Some(reason) = next.on.first_match(kinds).or(by_status) else {
            return false;
        };
        if !self.replayable {
            tracing::debug!(pool = %self.pool.name, "not held whole: no hop to the next target");
            return false;
        }
        if !reachable(&self.chain[self.hop..], &self.tried) {
            return false;
        }
        if !self.policy.is_some_and(|p| p.budget.withdraw()) {
            tracing::debug!(pool = %self.pool.name, "retry budget spent: no hop to the next target");
            return false;
        }
        let to = next.target.pool.clone();
        tracing::debug!(from = %self.pool.name, to = %to.name, reason = %reason.name(), "hop to the next target");
        exchange.hops.push(HopRecord {
            from: self.pool.name.clone(),
            to: to.name.clone(),
            reason: reason.name().into(),
        });
        self.affinity = self.chain_keys.get(self.hop).copied().flatten();
        self.hop += 1;
        exchange.hop = self.hop;
        self.pool = to;
        self.on_fallback = false;
        self.tried_before = self.tried.len();
        true
    }

    fn again(&mut self, error: ProxyError) -> Result<(), ProxyError> {
        self.last_error = Some(error);
        Ok(())
    }

    /// Sending failed before any response head: `Ok` to try the next endpoint.
    pub(crate) fn after_send_error(
        &mut self,
        endpoint: &Endpoint,
        exchange: &mut Exchange,
        error: ProxyError,
    ) -> Result<(), ProxyError> {
        // A full endpoint is not a failing one.
        if !matches!(error, ProxyError::Upstream(SendError::Saturated { .. })) {
            judge(&self.pool, endpoint, Outcome::Failure);
        }
        // Nothing came back: safe to send again whatever the method.
        if self.may_retry(exchange) || self.may_fail_over(exchange, &error) {
            tracing::debug!(endpoint = %endpoint.url, %error, "retrying on another endpoint");
            return self.again(error);
        }
        let kinds = send_failure(&error);
        // Only an endpoint's failure hops, never the client's (a body too large).
        let status = (!kinds.is_empty()).then(|| error.status().as_u16());
        if self.hop_on(exchange, kinds, status) {
            return self.again(error);
        }
        Err(error)
    }

    /// No response head in time: `Ok` to try the next endpoint.
    pub(crate) fn after_head_timeout(
        &mut self,
        endpoint: &Endpoint,
        exchange: &mut Exchange,
        after: Duration,
    ) -> Result<(), ProxyError> {
        let error = ProxyError::ResponseHeadersTimeout {
            endpoint: endpoint.url.to_string(),
            after,
        };
        judge(&self.pool, endpoint, Outcome::Failure);
        // The endpoint may be working on it: only idempotent requests go again.
        let safe =
            is_idempotent(&self.method) || self.policy.is_some_and(|p| p.retry_non_idempotent);
        let status = Some(error.status().as_u16());
        if (safe && self.may_retry(exchange)) || self.hop_on(exchange, &[Trigger::Timeout], status)
        {
            return self.again(error);
        }
        Err(error)
    }

    /// A response head arrived (`sent_at`: when the request went): latency, a
    /// `Retry-After` hold, an ORCA load report and passive health are recorded. True
    /// when the route's retries or its chain send the request elsewhere instead of
    /// passing this answer on.
    pub(crate) fn after_head(
        &mut self,
        endpoint: &Endpoint,
        exchange: &mut Exchange,
        sent_at: Instant,
        status: u16,
        signals: HeadSignals<'_>,
    ) -> bool {
        let head_at = Instant::now();
        exchange.head_at = Some(head_at);
        endpoint
            .state
            .latency
            .record_at(head_at, head_at.duration_since(sent_at));
        if let Some(value) = signals.retry_after {
            hold_for_retry_after(endpoint, status, value);
        }
        if let Some(report) = signals.load_report.and_then(crate::llm::parse_orca_header) {
            let state = &endpoint.state;
            state.load.merge(&report, state.in_flight());
        }
        let outcome = if status >= 500 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        judge(&self.pool, endpoint, outcome);
        let retry = self
            .policy
            .is_some_and(|p| p.retries_status(&self.method, status))
            && self.may_retry(exchange);
        if retry {
            tracing::debug!(endpoint = %endpoint.url, status, "retrying on another endpoint");
            return true;
        }
        // A 429 hops whatever its headers say: the rate limit is the provider's.
        self.hop_on(exchange, &[], Some(status))
    }

    /// A stream's first event did not come in time: `Ok` to try the next endpoint
    /// (nothing has reached the client).
    pub(crate) fn after_first_token_timeout(
        &mut self,
        endpoint: &Endpoint,
        exchange: &mut Exchange,
        after: Duration,
    ) -> Result<(), ProxyError> {
        judge(&self.pool, endpoint, Outcome::Failure);
        let error = ProxyError::FirstTokenTimeout {
            endpoint: endpoint.url.to_string(),
            after,
        };
        if self.may_retry(exchange) {
            tracing::debug!(endpoint = %endpoint.url, "no first event in time; retrying on another endpoint");
            return self.again(error);
        }
        let status = Some(error.status().as_u16());
        if self.hop_on(exchange, &[Trigger::FirstTokenTimeout], status) {
            return self.again(error);
        }
        Err(error)
    }

    /// The answer broke before its first byte reached anyone.
    pub(crate) fn after_broken_answer(&self, endpoint: &Endpoint) {
        judge(&self.pool, endpoint, Outcome::Failure);
    }
}

/// What a failure to send counts as for a chain's `on`, most specific first.
fn send_failure(error: &ProxyError) -> &'static [Trigger] {
    match error {
        ProxyError::Upstream(SendError::ConnectTimeout { .. }) => {
            &[Trigger::Timeout, Trigger::ConnectError]
        }
        ProxyError::Upstream(
            SendError::Connect { .. } | SendError::Tls { .. } | SendError::Handshake { .. },
        ) => &[Trigger::ConnectError],
        ProxyError::Upstream(SendError::Saturated { .. }) => &[Trigger::Unavailable],
        ProxyError::Upstream(
            SendError::Closed { .. } | SendError::Exchange { .. } | SendError::Protocol { .. },
        ) => &[Trigger::Reset],
        _ => &[],
    }
}

/// Whether the first of `hops` (or, when it has nothing to send to, one after it that
/// its being unavailable would reach) has an endpoint that is up, untried and has room.
/// A hop that cannot be served would only spend the budget and replace an endpoint's
/// own answer (its 429, say) with a made-up `no_endpoint` or `overloaded`.
fn reachable(hops: &[Hop], tried: &[Arc<Endpoint>]) -> bool {
    for (i, hop) in hops.iter().enumerate() {
        if i > 0 && !hop.on.contains(Trigger::Unavailable) {
            return false;
        }
        let pool = &hop.target.pool;
        if can_take(pool, tried) || pool.fallback().is_some_and(|f| can_take(&f, tried)) {
            return true;
        }
    }
    false
}

/// What `pick` would find in `pool`: an endpoint up, untried and with room.
fn can_take(pool: &Pool, tried: &[Arc<Endpoint>]) -> bool {
    pool.pool_has_room()
        && pool.endpoints.iter().enumerate().any(|(i, e)| {
            e.state.health.is_available()
                && pool.has_room(i)
                && !tried.iter().any(|t| Arc::ptr_eq(t, e))
        })
}

/// Sends the request, retrying on other endpoints as the route allows.
pub async fn forward(
    head: request::Parts,
    body: ProxyBody,
    destination: Destination<'_>,
    downstream: &Downstream,
    listener: &GatewayListener,
    exchange: &mut Exchange,
) -> Result<Forwarded, ProxyError> {
    let Destination {
        route,
        pool,
        affinity,
        chain_keys,
    } = destination;
    let (body, replay) = match &route.retries {
        Some(policy) => keep_for_replay(body, &head, policy.body_limit, exchange).await?,
        // A body already held (buffered, or none) can go to another endpoint for free.
        None => {
            let held = held_body(&body);
            (body, held)
        }
    };
    let mut attempts = Attempts::new(
        route,
        pool,
        affinity,
        &head.method,
        replay.is_some(),
        exchange.started(),
    )
    .with_chain_keys(chain_keys);
    // Further tries need the head again and a body that can be sent again.
    let spare_head = replay.as_ref().map(|_| copy_head(&head));
    let mut first_try = Some((head, body));
    let timeouts = route.timeouts;

    loop {
        let endpoint = attempts.next_endpoint(exchange)?;
        let (mut head, body) = match first_try.take() {
            Some(first) => first,
            None => (
                copy_head(spare_head.as_ref().expect("retries only with a kept head")),
                ProxyBody::full(replay.clone().unwrap_or_default()),
            ),
        };
        let pool = attempts.pool().clone();
        // The pool's `model_map`, for this attempt's pool: a retry or fallback to another
        // pool renames the held body for that one.
        let mapped = replay
            .as_deref()
            .and_then(|held| super::model_map::mapped_body(&pool, held));
        let body = match &mapped {
            Some(mapped) => {
                head.headers
                    .insert(http::header::CONTENT_LENGTH, mapped.len().into());
                ProxyBody::full(mapped.clone())
            }
            None => body,
        };
        // The pool's `api`, for this attempt's pool: the request in its provider's API,
        // from the body held whole (read here if nothing held it).
        let mut held = mapped.or_else(|| replay.clone());
        let mut body = body;
        if held.is_none() && super::translation::translates(&pool, head.uri.path()) {
            let limit = super::translation::TRANSLATE_BODY_LIMIT;
            if let (kept, Some(whole)) = keep_for_replay(body, &head, limit, exchange).await? {
                held = Some(super::model_map::mapped_body(&pool, &whole).unwrap_or(whole));
                body = kept;
            } else {
                return Err(ProxyError::BodyTooLarge { limit });
            }
        }
        let body = super::translation::request_for_attempt(
            &pool,
            &mut head,
            body,
            held.as_deref(),
            exchange,
        )?;
        forwarding::prepare_request(&mut head, downstream, listener, &pool, &endpoint, false);
        exchange.endpoint = Some(endpoint.clone());
        exchange.in_flight = Some(endpoint.state.begin());
        let sent_at = Instant::now();
        exchange.sent_at = Some(sent_at);
        exchange.head_at = None;

        let sent = tokio::time::timeout(
            timeouts.response_headers,
            pool.client.send(
                &endpoint,
                Request::from_parts(head, body.into_request_body()),
                timeouts.connect,
            ),
        )
        .await;
        let sent = match sent {
            Ok(Ok(sent)) => sent,
            Ok(Err(error)) => {
                let error = blame_request_body(error);
                if let ProxyError::BodyTimeout { after } = &error {
                    // The endpoint had the start of a body it will never see whole: the
                    // connection is dropped, so it cannot take what it got as complete.
                    tracing::warn!(endpoint = %endpoint.url, ?after, "request body timed out mid-stream; upstream request aborted");
                    return Err(error);
                }
                if matches!(error, ProxyError::BadRequestBody { .. }) {
                    return Err(error);
                }
                attempts.after_send_error(&endpoint, exchange, error)?;
                continue;
            }
            Err(_) => {
                let after = timeouts.response_headers;
                attempts.after_head_timeout(&endpoint, exchange, after)?;
                continue;
            }
        };
        let status = sent.response.status().as_u16();
        let headers = sent.response.headers();
        let signals = HeadSignals {
            retry_after: headers
                .get(http::header::RETRY_AFTER)
                .map(HeaderValue::as_bytes),
            load_report: headers
                .get(ENDPOINT_LOAD_METRICS)
                .map(HeaderValue::as_bytes),
        };
        if attempts.after_head(&endpoint, exchange, sent_at, status, signals) {
            continue;
        }

        let (head, mut body) = UpstreamBody::new(sent);
        let mut first = None;
        if let (Some(wait), true) = (timeouts.first_token, is_event_stream(&head.headers)) {
            match tokio::time::timeout(wait, body.frame()).await {
                Ok(Some(Ok(frame))) => first = Some(frame),
                Ok(None) => {}
                Ok(Some(Err(_))) | Err(_) => {
                    // Nothing has reached the client: another endpoint may answer in time.
                    attempts.after_first_token_timeout(&endpoint, exchange, wait)?;
                    continue;
                }
            }
        } else if response_head::holds_head(crate::llm::ReplyKind::of(&head.headers))
            && !body.is_end_stream()
        {
            // The head waits for the first byte of the body, as on the fast path, so a
            // body that breaks at once is a 502 and not a cut reply.
            let until = first_byte_deadline(timeouts.idle, timeouts.total, exchange.started());
            let frame = match until {
                Some(until) => tokio::time::timeout_at(until, body.frame()).await,
                None => Ok(body.frame().await),
            };
            match frame {
                Ok(Some(Ok(frame))) => first = Some(frame),
                Ok(None) => {}
                Ok(Some(Err(error))) => {
                    attempts.after_broken_answer(&endpoint);
                    let malformed = response_head::is_malformed(&error);
                    let reason = format!("the endpoint's response broke off: {error}");
                    return Err(response_head::unanswered(&endpoint, reason, malformed));
                }
                Err(_) => {
                    attempts.after_broken_answer(&endpoint);
                    let reason = "no data from the endpoint in time".to_string();
                    return Err(response_head::unanswered(&endpoint, reason, false));
                }
            }
        }
        return Ok(Forwarded {
            pool,
            endpoint,
            head,
            body,
            first,
        });
    }
}

/// Further endpoints a request that reached none may go to by default (the route's
/// `retry_connect_errors`), as nginx's `proxy_next_upstream error timeout` does.
pub(crate) const MAX_FAILOVERS: u32 = 2;

/// Whether a failure to send may go to another endpoint without a `retries` policy.
/// Any method when the endpoint cannot have seen the request (connect refused or timed
/// out, TLS or HTTP handshake failed); idempotent methods also when the connection
/// broke before any byte of response. One decision for both engines.
pub(crate) fn fails_over(error: &ProxyError, method: &http::Method) -> bool {
    match error {
        ProxyError::Upstream(
            SendError::Connect { .. }
            | SendError::ConnectTimeout { .. }
            | SendError::Tls { .. }
            | SendError::Handshake { .. },
        ) => true,
        ProxyError::Upstream(SendError::Closed { .. } | SendError::Exchange { .. }) => {
            is_idempotent(method)
        }
        _ => false,
    }
}

/// The body to send again, when it is already held whole: no read ahead here.
pub(super) fn held_body(body: &ProxyBody) -> Option<Bytes> {
    match body {
        ProxyBody::Full(Some(bytes)) => Some(bytes.clone()),
        ProxyBody::Full(None) | ProxyBody::Empty => Some(Bytes::new()),
        ProxyBody::Incoming(incoming) if incoming.is_end_stream() => Some(Bytes::new()),
        _ => None,
    }
}

/// An endpoint that is up, not ejected or held, not tried yet, and has room.
// Inlined into the retry loop as before the upgrade path shared it (a call there cost
// the policy route about 25 instructions a request; `#[inline]` alone did not).
#[inline(always)]
pub(crate) fn pick(
    pool: &Arc<Pool>,
    affinity: Option<u64>,
    tried: &[Arc<Endpoint>],
) -> Result<Arc<Endpoint>, ProxyError> {
    let was_tried = |endpoint: &Arc<Endpoint>| tried.iter().any(|t| Arc::ptr_eq(t, endpoint));
    if !pool.pool_has_room() {
        return Err(ProxyError::Overloaded {
            pool: pool.name.to_string(),
        });
    }
    let endpoints = &pool.endpoints;
    let skip = |i: usize| {
        let endpoint = &endpoints[i];
        !endpoint.state.health.is_available() || was_tried(endpoint) || !pool.has_room(i)
    };
    if let Some(i) = pool.balancer.pick(endpoints, affinity, &skip) {
        return Ok(endpoints[i].clone());
    }
    // Say why: full (circuit breaking) or nobody up.
    let any_up_but_full = (0..endpoints.len()).any(|i| {
        endpoints[i].state.health.is_available() && !was_tried(&endpoints[i]) && !pool.has_room(i)
    });
    if any_up_but_full {
        Err(ProxyError::Overloaded {
            pool: pool.name.to_string(),
        })
    } else {
        Err(ProxyError::NoEndpoint {
            pool: pool.name.to_string(),
        })
    }
}

/// Whether a retry has somewhere to go: an untried endpoint that is up, or the fallback
/// pool. Without one it would only spend the budget, count a retry that never happens
/// and replace the endpoint's own answer with a made-up `no_endpoint`.
fn can_try_again(pool: &Pool, tried: &[Arc<Endpoint>], on_fallback: bool) -> bool {
    untried_up(pool, tried)
        || (!on_fallback && pool.fallback().is_some_and(|f| untried_up(&f, tried)))
}

fn untried_up(pool: &Pool, tried: &[Arc<Endpoint>]) -> bool {
    pool.endpoints
        .iter()
        .any(|e| e.state.health.is_available() && !tried.iter().any(|t| Arc::ptr_eq(t, e)))
}

pub(crate) fn judge(pool: &Pool, endpoint: &Endpoint, outcome: Outcome) {
    if let Some(policy) = &pool.outlier {
        health::record_outcome(endpoint, &pool.endpoints, policy, outcome);
    }
}

/// A request body that broke while it was streamed to the endpoint (truncated, bad
/// chunking) is the client's failure, not the endpoint's.
fn blame_request_body(error: SendError) -> ProxyError {
    if let Some(after) = super::body::body_timed_out(&error) {
        return ProxyError::BodyTimeout { after };
    }
    // Our own cap on the body, reported through hyper's error chain.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(current) = cause {
        if let Some(exceeded) = current.downcast_ref::<super::body::BodyLimitExceeded>() {
            return ProxyError::BodyTooLarge {
                limit: exceeded.limit,
            };
        }
        cause = current.source();
    }
    if let SendError::Exchange { source, .. } = &error {
        let cause = std::error::Error::source(source);
        if let Some(cause) = cause.filter(|c| source.is_user() && c.is::<hyper::Error>()) {
            return ProxyError::BadRequestBody {
                reason: cause.to_string(),
            };
        }
    }
    ProxyError::Upstream(error)
}

/// How long the first byte of a body may take: the route's idle timeout, within its
/// total one.
fn first_byte_deadline(
    idle: Option<Duration>,
    total: Option<Duration>,
    started: Instant,
) -> Option<Instant> {
    let idle = idle.map(|idle| Instant::now() + idle);
    let total = total.map(|total| started + total);
    match (idle, total) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    crate::llm::ReplyKind::of(headers) == crate::llm::ReplyKind::EventStream
}

/// A 429 or 503 with `Retry-After` (in seconds; the HTTP-date form is not used by model
/// APIs) holds the endpoint back for that long, up to a cap.
pub(crate) fn hold_for_retry_after(endpoint: &Endpoint, status: u16, retry_after: &[u8]) {
    if status != 429 && status != 503 {
        return;
    }
    let seconds = std::str::from_utf8(retry_after)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    if let Some(seconds) = seconds {
        let wait = Duration::from_secs(seconds);
        endpoint.state.health.hold(wait.min(MAX_RETRY_AFTER_HOLD));
    }
}

/// A copy of a request's head for another attempt (`request::Parts` is not `Clone`).
pub(crate) fn copy_head(head: &request::Parts) -> request::Parts {
    let mut copy = Request::new(()).into_parts().0;
    copy.method = head.method.clone();
    copy.uri = head.uri.clone();
    copy.version = head.version;
    copy.headers = head.headers.clone();
    copy
}

/// Reads the request body ahead, up to `limit`, so it can be sent again (and so a slow
/// client is waited for before any endpoint is). A longer body goes on streaming (what
/// was read first, then the rest) and is not retried. The client's body timeouts hold.
pub(super) async fn keep_for_replay(
    body: ProxyBody,
    head: &request::Parts,
    limit: u64,
    exchange: &mut Exchange,
) -> Result<(ProxyBody, Option<Bytes>), ProxyError> {
    let (prefix, incoming) = match body {
        ProxyBody::Full(Some(bytes)) => {
            return Ok((ProxyBody::Full(Some(bytes.clone())), Some(bytes)));
        }
        ProxyBody::Full(None) | ProxyBody::Empty => {
            return Ok((ProxyBody::Empty, Some(Bytes::new())));
        }
        ProxyBody::Incoming(incoming) | ProxyBody::Counted(incoming, _) => (None, incoming),
        ProxyBody::Prefixed(prefix, incoming) => (prefix, incoming),
        // Under `max_body_bytes`: read no further than the cap allows, then judge.
        ProxyBody::Capped(inner, remaining, cap) => {
            let read = Box::pin(keep_for_replay(
                *inner,
                head,
                limit.min(remaining),
                exchange,
            ));
            return match read.await? {
                (_, Some(kept)) if kept.len() as u64 > remaining => {
                    Err(ProxyError::BodyTooLarge { limit: cap })
                }
                (body, Some(kept)) => Ok((body, Some(kept))),
                // Read past what the cap allows: refused before any endpoint is asked.
                (_, None) if remaining <= limit => Err(ProxyError::BodyTooLarge { limit: cap }),
                (body, None) => Ok((ProxyBody::Capped(Box::new(body), remaining, cap), None)),
            };
        }
        other => return Ok((other, None)),
    };
    if prefix.is_none() && incoming.is_end_stream() {
        return Ok((ProxyBody::Empty, Some(Bytes::new())));
    }
    let declared = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let held = read_up_to(prefix, incoming, declared, limit)
        .await
        .map_err(|e| ProxyError::from_body_error(&*e))?;
    match held {
        Held::Whole(kept) => {
            exchange.bytes_in = BytesIn::Known(kept.len() as u64);
            Ok((ProxyBody::Full(Some(kept.clone())), Some(kept)))
        }
        Held::Over(body) => Ok((body, None)),
    }
}
