//! Plain-HTTP requests through an exit: sent in origin form (direct, SOCKS5) or
//! absolute form (HTTP proxy exits, with their credentials), checked for bans, and
//! sent again through another exit when the exit is banned or fails and the request
//! can be replayed (idempotent, no body). Intercepted `https://` requests (see
//! `intercept`) go through the same steps; only how an attempt reaches the site differs
//! ([`Origin`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Instant;

use super::bans::{ReadAhead, Verdict};
use super::client_auth::{X_JUNCTION_REGION, X_JUNCTION_SESSION};
use super::dial::dial_failure;
use super::dial::{ExitKind, authority};
use super::exits::{Exit, site_key};
use super::mask::{self, Outgoing};
use super::politeness::HostPermit;
use super::record::Record;
use super::reports::{SessionKey, X_JUNCTION_BAN};
use super::robots::RobotsFetch;
use super::rotation::Ask;
use super::{
    Admitted, EgressPlan, ProxyStatus, X_JUNCTION_EXIT, admit, client_session, no_exit,
    polite_turn, resolve_checked,
};
use crate::normalize::is_idempotent;
use crate::pipeline::ProxyBody;
use crate::pipeline::attempts::copy_head;
use crate::pipeline::body::{BoxError, ClientBody};
use crate::pipeline::entry::framing_and_host;
use crate::pipeline::forwarding::{remove_each, strip_hop_by_hop};
use crate::telemetry::EgressOutcome;
use crate::upstream::{SendError, UpstreamBody};

/// robots.txt bodies are read up to this size (RFC 9309's parsing limit).
const ROBOTS_MAX_BYTES: usize = 500 * 1024;

/// What went wrong with one attempt, and whether another exit may help.
pub(super) struct Failed {
    /// None: the request itself is refused (a destination rule, a site certificate that
    /// does not verify), whatever the exit.
    pub(super) outcome: Option<EgressOutcome>,
    pub(super) status: ProxyStatus,
}

/// How an attempt reaches the site through its exit: plain HTTP by the exit's client,
/// or TLS to the site through a tunnel the exit opens (an intercepted `CONNECT`).
pub(super) enum Origin<'a> {
    Plain,
    /// The tunnel's connections to the site, and its client's session key (the same for
    /// every request in the tunnel: made once, not per request).
    Tls(&'a dyn TlsSite, &'a SessionKey),
}

/// Sends attempts to a site over TLS through an exit (`intercept`'s connections).
pub(super) trait TlsSite: Send + Sync {
    fn send<'a>(
        &'a self,
        plan: &'a EgressPlan,
        exit: &'a Arc<Exit>,
        host: &'a str,
        port: u16,
        request: Request<ProxyBody>,
    ) -> Pin<Box<dyn Future<Output = Result<crate::upstream::Sent, Failed>> + Send + 'a>>;
}

impl Origin<'_> {
    fn scheme(&self) -> &'static str {
        match self {
            Origin::Plain => "http",
            Origin::Tls(..) => "https",
        }
    }

    async fn send(
        &self,
        plan: &EgressPlan,
        exit: &Arc<Exit>,
        host: &str,
        port: u16,
        request: Request<ProxyBody>,
    ) -> Result<crate::upstream::Sent, Failed> {
        match self {
            Origin::Plain => send_via(plan, exit, host, port, request).await,
            Origin::Tls(sites, _) => sites.send(plan, exit, host, port, request).await,
        }
    }
}

/// The gateway's entry rules that a forward proxy shares: a `Connection` list may not
/// name the framing or `Host`, and a `Host` must agree with the target's authority, the
/// site that admission, politeness and robots.txt judged.
pub(super) fn unambiguous(request: &Request<Incoming>) -> Result<(), ProxyStatus> {
    framing_and_host(request.uri(), request.headers(), false).map_err(|refusal| {
        ProxyStatus::new(
            StatusCode::BAD_REQUEST,
            "http_request_error",
            "invalid_request",
            format!("invalid request: {refusal}"),
        )
    })
}

pub(super) async fn forward(
    request: Request<Incoming>,
    plan: &Arc<EgressPlan>,
    record: &mut Record,
) -> Result<Response<ProxyBody>, ProxyStatus> {
    unambiguous(&request)?;
    let admitted = admit(plan, &request, false, record)?;
    forward_admitted(request, admitted, plan, record, Origin::Plain).await
}

/// Sends an admitted request to its site: robots.txt, the host's politeness turn,
/// exits in rotation, ban detection and the retry through another exit.
pub(super) async fn forward_admitted(
    request: Request<Incoming>,
    admitted: Admitted,
    plan: &Arc<EgressPlan>,
    record: &mut Record,
    origin: Origin<'_>,
) -> Result<Response<ProxyBody>, ProxyStatus> {
    let Admitted { choice, host, port } = admitted;
    let (mut head, body) = request.into_parts();
    // Masked first: a refused body costs the site nothing, and a slow upload holds no
    // politeness turn.
    let mut outgoing = match &plan.mask {
        Some(mask) => {
            record.masking = Some(plan.telemetry.clone());
            record.redact_path(&*mask.policy.masker);
            let idle = plan.limits.idle_timeout;
            mask::mask_request(mask, &mut head, body, idle, record).await?
        }
        None if body.is_end_stream() => Outgoing::Streamed(ProxyBody::Empty),
        None => Outgoing::Streamed(ProxyBody::Incoming(ClientBody::untimed(body))),
    };
    let session = client_session(plan, record.client(), &choice);
    let mut ask = Ask {
        host: &host,
        region: choice.region.as_deref(),
        session: choice.session.as_deref(),
        client_session: &session,
        fleet_exit: None,
    };
    let fleet_exit = plan.fleet_session(&ask).await;
    ask.fleet_exit = fleet_exit.as_deref();
    if let Some(robots) = &plan.robots {
        let path = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let site = format!("{}://{host}:{port}", origin.scheme());
        // Boxed: fetching robots.txt is most of this future's size (9.4 KB of 11), and
        // the future of every request through the listener carries that size.
        let (allowed, crawl_delay) = Box::pin(robots.check(&site, path, || {
            fetch_robots(plan, &host, port, &ask, &origin)
        }))
        .await;
        plan.politeness.crawl_delay(&host, crawl_delay);
        if !allowed {
            return Err(ProxyStatus::new(
                StatusCode::FORBIDDEN,
                "http_request_denied",
                "robots",
                format!("{host}'s robots.txt disallows {path}"),
            ));
        }
    }
    let mut permit = polite_turn(plan, &host).await?;

    strip_hop_by_hop(&mut head.headers, false);
    remove_each(
        &mut head.headers,
        &[
            &header::PROXY_AUTHORIZATION,
            &X_JUNCTION_REGION,
            &X_JUNCTION_SESSION,
            &X_JUNCTION_BAN,
        ],
    );
    // The site is the target's authority (`unambiguous` made sure a Host agrees).
    if let Some(value) = head
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        head.headers.insert(header::HOST, value);
    }
    head.version = http::Version::HTTP_11;
    // A body held whole (by masking) is sent again as it is; a streamed one only once.
    let replayable = is_idempotent(&head.method)
        && matches!(
            outgoing,
            Outgoing::Held(_) | Outgoing::Streamed(ProxyBody::Empty)
        );

    let exits = plan.exits();
    let mut tried: Vec<Arc<Exit>> = Vec::new();
    let mut next = plan.rotator.pick(&exits, &ask, &tried, Instant::now());
    let mut last_error: Option<String> = None;
    while let Some(exit) = next.take() {
        if !tried.is_empty() {
            // Each attempt is a request to the site: it waits for a turn of its own.
            drop(permit.take());
            permit = polite_turn(plan, &host).await?;
        }
        tried.push(exit.clone());
        record.attempt(&exit);
        let request_body = match &mut outgoing {
            Outgoing::Held(bytes) => ProxyBody::full(bytes.clone()),
            Outgoing::Streamed(body) => std::mem::replace(body, ProxyBody::Empty),
        };
        let attempt = Request::from_parts(copy_head(&head), request_body);
        let may_retry = |tried: &Vec<Arc<Exit>>| {
            if replayable && tried.len() < plan.limits.attempts as usize {
                plan.rotator.pick(&exits, &ask, tried, Instant::now())
            } else {
                None
            }
        };
        let in_use = exit.use_guard();
        let sent_at = Instant::now();
        let sent = match origin.send(plan, &exit, &host, port, attempt).await {
            Ok(sent) => sent,
            Err(failed) => {
                let Some(outcome) = failed.outcome else {
                    return Err(failed.status);
                };
                exit.counters.count(outcome);
                last_error = Some(format!("{}: {}", exit.name, failed.status.details));
                next = may_retry(&tried);
                if next.is_none() {
                    if outcome == EgressOutcome::ExitError {
                        return Err(no_exit(&host, choice.region.as_deref(), last_error));
                    }
                    return Err(failed.status);
                }
                continue;
            }
        };
        let (mut response_head, upstream) = UpstreamBody::new(sent);
        let held = plan.politeness.observe(
            &host,
            response_head.status,
            &response_head.headers,
            sent_at.elapsed(),
        );
        if let Some(hold) = held {
            plan.share_hold(&host, hold);
        }
        let mut ahead = ReadAhead {
            prefix: None,
            trailers: None,
            body: upstream,
            ended: false,
        };
        let mut banned = plan
            .ban
            .bans_status(response_head.status)
            .then(|| format!("status {}", response_head.status.as_u16()));
        if banned.is_none() && plan.ban.scans(&response_head.headers) {
            match plan.ban.scan(ahead.body).await {
                Ok(Verdict::Clean(clean)) => ahead = clean,
                Ok(Verdict::Banned(dirty, pattern)) => {
                    ahead = dirty;
                    banned = Some(format!("body pattern {pattern:?}"));
                }
                Err(error) => {
                    exit.counters.count(EgressOutcome::SiteError);
                    last_error = Some(format!("{}: {error}", exit.name));
                    next = may_retry(&tried);
                    if next.is_none() {
                        return Err(ProxyStatus::new(
                            StatusCode::BAD_GATEWAY,
                            "http_response_incomplete",
                            "site_error",
                            format!("{host}: {error}"),
                        ));
                    }
                    continue;
                }
            }
        }
        if let Some(why) = &banned {
            let rest = exit.cool_down(
                &host,
                plan.ban.cooldown,
                plan.ban.max_cooldown,
                plan.rotator.rng(),
                Instant::now(),
            );
            plan.share_rest(&exit, &host, rest);
            exit.counters.count(EgressOutcome::Banned);
            exit.counters
                .bans
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(exit = %exit.name, %host, ban = %why, cooldown = ?rest, "exit banned by site");
            record.outcome = Some(EgressOutcome::Banned.label());
            next = may_retry(&tried);
            if next.is_some() {
                continue;
            }
            // No exit left to try: the site's own answer goes back as it is.
        } else {
            exit.forgive(&host, Instant::now());
            plan.share_session(&ask, &exit);
            exit.counters.count(EgressOutcome::Ok);
            record.outcome = Some(EgressOutcome::Ok.label());
        }
        let client_key;
        let session_key = match &origin {
            Origin::Tls(_, key) => *key,
            Origin::Plain => {
                client_key = SessionKey::of(&choice, record.client());
                &client_key
            }
        };
        plan.last_exits
            .used(session_key, &host, &exit.name, Instant::now());
        strip_hop_by_hop(&mut response_head.headers, false);
        let transforms = match &plan.mask {
            Some(mask) => {
                let path = head.uri.path();
                mask::mask_response(mask, &head.method, path, &mut response_head, record)?
            }
            None => false,
        };
        if let Ok(name) = HeaderValue::from_str(&exit.name) {
            response_head.headers.insert(&X_JUNCTION_EXIT, name);
        }
        let mut body = EgressBody {
            ahead,
            record: record.take(),
            transforms,
            ready: None,
            trailers: None,
            flushed: false,
            _held: (permit, in_use),
        };
        body.record.status = Some(response_head.status);
        body.record
            .record_head(response_head.status, &response_head.headers);
        if transforms {
            // Up to the first bytes the masking lets through, before the head goes
            // out: an answer it refuses is then a 502 (recorded in place of the
            // site's head), not a cut body.
            if let Err(reason) = body.transform_ahead().await {
                *record = body.record.take();
                return Err(mask::refused_answer(reason));
            }
        }
        return Ok(Response::from_parts(
            response_head,
            ProxyBody::Boxed(body.boxed()),
        ));
    }
    Err(no_exit(&host, choice.region.as_deref(), last_error))
}

/// Sends one attempt through `exit`.
async fn send_via(
    plan: &EgressPlan,
    exit: &Arc<Exit>,
    host: &str,
    port: u16,
    request: Request<ProxyBody>,
) -> Result<crate::upstream::Sent, Failed> {
    let (mut head, body) = request.into_parts();
    let origin_form = || {
        head.uri
            .path_and_query()
            .map(|pq| Uri::from(pq.clone()))
            .unwrap_or_else(|| Uri::from_static("/"))
    };
    let endpoint = match &exit.kind {
        ExitKind::Direct => {
            let address = resolve_checked(plan, host, port)
                .await
                .map_err(|status| Failed {
                    outcome: (status.reason != "denied").then_some(EgressOutcome::SiteError),
                    status,
                })?;
            head.uri = origin_form();
            exit.endpoint_for(&site_key(address))
        }
        ExitKind::Socks5 { .. } => {
            head.uri = origin_form();
            exit.endpoint_for(&authority(host, port))
        }
        ExitKind::Http { authorization, .. } => {
            // Absolute form, as a client talks to a proxy.
            if let Some(value) = authorization {
                head.headers
                    .insert(header::PROXY_AUTHORIZATION, value.clone());
            }
            exit.endpoint_for("")
        }
    }
    .map_err(|error| Failed {
        outcome: None,
        status: ProxyStatus::new(
            StatusCode::BAD_REQUEST,
            "http_request_error",
            "bad_request",
            error,
        ),
    })?;
    let sent = exit
        .client
        .send(
            &endpoint,
            Request::from_parts(head, body.into_request_body()),
            plan.limits.connect_timeout,
        )
        .await
        .map_err(|error| classify(plan, exit, host, error))?;
    if sent.response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED
        && matches!(exit.kind, ExitKind::Http { .. })
    {
        return Err(Failed {
            outcome: Some(EgressOutcome::ExitError),
            status: ProxyStatus::new(
                StatusCode::BAD_GATEWAY,
                "proxy_configuration_error",
                "exit_error",
                format!("exit {} refused its credentials (407)", exit.name),
            ),
        });
    }
    Ok(sent)
}

/// Whose fault a failed send was: the exit's (it is marked unreachable and probed) or
/// the site's.
fn classify(plan: &EgressPlan, exit: &Arc<Exit>, host: &str, error: SendError) -> Failed {
    // The exit could not be reached: it is out for every host until a probe reaches it.
    let unreachable = |status, kind, why: &dyn std::fmt::Display| {
        exit.mark_unreachable(plan.limits.probe_interval, plan.limits.connect_timeout);
        Failed {
            outcome: Some(EgressOutcome::ExitError),
            status: ProxyStatus::new(
                status,
                kind,
                "exit_error",
                format!("exit {}: {why}", exit.name),
            ),
        }
    };
    let site_failed = |status, kind, details: String| Failed {
        outcome: Some(EgressOutcome::SiteError),
        status: ProxyStatus::new(status, kind, "site_error", details),
    };
    if let Some(dialed) = dial_failure(&error) {
        use super::dial::DialError;
        return match dialed {
            DialError::Site(why) => {
                site_failed(StatusCode::BAD_GATEWAY, "connection_refused", why.clone())
            }
            DialError::Refused(why) => Failed {
                outcome: Some(EgressOutcome::TunnelRefused),
                status: ProxyStatus::new(
                    StatusCode::BAD_GATEWAY,
                    "connection_refused",
                    "tunnel_refused",
                    format!("exit {}: {why}", exit.name),
                ),
            },
            DialError::ExitUnreachable(_) | DialError::Timeout(_) => {
                unreachable(StatusCode::BAD_GATEWAY, "destination_unavailable", dialed)
            }
        };
    }
    let direct = matches!(exit.kind, ExitKind::Direct);
    match error {
        SendError::Connect { .. } | SendError::Tls { .. } | SendError::Handshake { .. }
            if !direct =>
        {
            unreachable(StatusCode::BAD_GATEWAY, "destination_unavailable", &error)
        }
        SendError::ConnectTimeout { .. } if !direct => {
            unreachable(StatusCode::GATEWAY_TIMEOUT, "connection_timeout", &error)
        }
        SendError::Connect { .. } => site_failed(
            StatusCode::BAD_GATEWAY,
            "connection_refused",
            format!("{host}: {error}"),
        ),
        SendError::ConnectTimeout { .. } => site_failed(
            StatusCode::GATEWAY_TIMEOUT,
            "connection_timeout",
            format!("{host}: {error}"),
        ),
        _ => site_failed(
            StatusCode::BAD_GATEWAY,
            "http_response_incomplete",
            format!("{host}: {error}"),
        ),
    }
}

/// Fetches `http(s)://host:port/robots.txt` through an exit of the rotation.
async fn fetch_robots(
    plan: &EgressPlan,
    host: &str,
    port: u16,
    ask: &Ask<'_>,
    origin: &Origin<'_>,
) -> RobotsFetch {
    let exits = plan.exits();
    let Some(exit) = plan.rotator.pick(&exits, ask, &[], Instant::now()) else {
        return RobotsFetch::Unreachable;
    };
    // IPv6 hosts in brackets: a bare `::1:8080` is no URI.
    let authority = authority(host, port);
    let Ok(uri) = format!("{}://{authority}/robots.txt", origin.scheme()).parse::<Uri>() else {
        return RobotsFetch::Unreachable;
    };
    let mut request = Request::new(ProxyBody::Empty);
    *request.uri_mut() = uri;
    if let Ok(value) = HeaderValue::from_str(&authority) {
        request.headers_mut().insert(header::HOST, value);
    }
    let Ok(sent) = origin.send(plan, &exit, host, port, request).await else {
        return RobotsFetch::Unreachable;
    };
    let status = sent.response.status();
    let (_, body) = UpstreamBody::new(sent);
    if status.is_client_error() {
        return RobotsFetch::Unavailable;
    }
    if !status.is_success() {
        return RobotsFetch::Unreachable;
    }
    let limited = http_body_util::Limited::new(body, ROBOTS_MAX_BYTES);
    match limited.collect().await {
        Ok(collected) => {
            RobotsFetch::Found(String::from_utf8_lossy(&collected.to_bytes()).into_owned())
        }
        // Longer than the limit: RFC 9309 parses the first 500 KiB; a body cut off
        // this way is rare enough that treating it as "no rules" is the safer side.
        Err(_) => RobotsFetch::Unavailable,
    }
}

/// A response through the egress proxy: the part read ahead (ban scanning), then the
/// rest, through the listener's masking when it transforms the body; it holds the
/// politeness permit and the exit's use count, and writes the log line when it ends.
struct EgressBody {
    ahead: ReadAhead,
    record: Record,
    /// The body phase transforms this body (`record.body`'s transform).
    transforms: bool,
    /// What the transform let through before the head went out.
    ready: Option<Bytes>,
    /// The site's trailers, held until the transform has had the end of the body.
    trailers: Option<http::HeaderMap>,
    /// The transform has had the end of the body.
    flushed: bool,
    _held: (Option<HostPermit>, super::exits::InUse),
}

impl EgressBody {
    /// The site's next frame: what was read ahead, then the rest.
    fn poll_site(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.ahead.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if let Some(trailers) = self.ahead.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        if self.ahead.ended {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.ahead.body)
            .poll_frame(cx)
            .map_err(Into::into)
    }

    /// The next frame for the client: the site's, or what the transform lets through
    /// (data it holds back is not a frame; the site's trailers follow its last bytes).
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.transforms {
            let polled = self.poll_site(cx);
            if let Poll::Ready(Some(Ok(frame))) = &polled
                && let Some(data) = frame.data_ref()
            {
                self.record.on_response_data(data);
            }
            return polled;
        }
        if let Some(ready) = self.ready.take() {
            return Poll::Ready(Some(Ok(Frame::data(ready))));
        }
        loop {
            if self.flushed {
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let (data, end) = match std::task::ready!(self.poll_site(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => (data, false),
                    Err(frame) => {
                        self.trailers = frame.into_trailers().ok();
                        (Bytes::new(), true)
                    }
                },
                None => (Bytes::new(), true),
                Some(Err(error)) => {
                    self.flushed = true;
                    return Poll::Ready(Some(Err(error)));
                }
            };
            self.flushed = end;
            let mut out = Vec::new();
            if let Err(reason) = self.record.body.transform(&data, end, &mut out) {
                self.flushed = true;
                self.trailers = None;
                let cut = format!("the response could not be masked: {reason}");
                return Poll::Ready(Some(Err(cut.into())));
            }
            if !out.is_empty() {
                self.record.on_response_data(&out);
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
        }
    }

    /// Runs the body through the transform until it lets something through or the
    /// body ends; `Err`: the transform refused the body (or the site broke it off).
    async fn transform_ahead(&mut self) -> Result<(), String> {
        match std::future::poll_fn(|cx| self.poll_next(cx)).await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => self.ready = Some(data),
                Err(frame) => self.trailers = frame.into_trailers().ok(),
            },
            Some(Err(error)) => return Err(error.to_string()),
            None => {}
        }
        Ok(())
    }
}

impl Body for EgressBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.poll_next(cx)
    }

    fn is_end_stream(&self) -> bool {
        if self.transforms {
            return self.flushed && self.ready.is_none() && self.trailers.is_none();
        }
        self.ahead.prefix.is_none()
            && self.ahead.trailers.is_none()
            && (self.ahead.ended || self.ahead.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.transforms {
            return SizeHint::default();
        }
        if self.ahead.ended {
            let length = self.ahead.prefix.as_ref().map_or(0, |p| p.len() as u64);
            return SizeHint::with_exact(length);
        }
        let mut hint = self.ahead.body.size_hint();
        if let Some(prefix) = &self.ahead.prefix {
            let length = prefix.len() as u64;
            hint.set_lower(hint.lower() + length);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + length);
            }
        }
        hint
    }
}

/// Largest echo answer read.
const ECHO_MAX_BYTES: usize = 4096;

/// Asks the echo URL of `verify` through `exit`: the address it saw.
pub(super) async fn probe_exit(
    plan: &EgressPlan,
    exit: &Arc<Exit>,
) -> Result<std::net::IpAddr, String> {
    let Some(rules) = &plan.verify else {
        return Err("no echo URL".into());
    };
    let uri = rules.url.clone();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(80);
    let mut request = Request::new(ProxyBody::Empty);
    if let Some(value) = uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        request.headers_mut().insert(header::HOST, value);
    }
    *request.uri_mut() = uri;
    let probe = async {
        let sent = send_via(plan, exit, &host, port, request)
            .await
            .map_err(|failed| failed.status.details)?;
        let (head, body) = UpstreamBody::new(sent);
        if !head.status.is_success() {
            return Err(format!("the echo URL answered {}", head.status.as_u16()));
        }
        let body = http_body_util::Limited::new(body, ECHO_MAX_BYTES)
            .collect()
            .await
            .map_err(|e| format!("the echo URL's answer: {e}"))?
            .to_bytes();
        super::verify::echoed_address(&body)
            .ok_or_else(|| "the echo URL's answer is not an address".to_string())
    };
    tokio::time::timeout(rules.timeout, probe)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", rules.timeout)))
}
