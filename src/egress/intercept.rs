//! Opt-in TLS interception of `CONNECT` (and SOCKS5) tunnels to listed hosts: the
//! client's TLS ends here with a leaf the configured CA signs for the host, and each
//! decrypted request goes through the plain-HTTP forward path (bans, robots.txt,
//! politeness, retries, log) with TLS to the site, verified, through the chosen exit.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

use super::client_auth::ClientChoice;
use super::connect::dial_failed;
use super::dial::{DialError, ExitKind, authority, open_tunnel};
use super::exits::Exit;
use super::forward::{Failed, Origin, TlsSite, forward_admitted, unambiguous};
use super::record::Record;
use super::reports::SessionKey;
use super::{Admitted, EgressPlan, ProxyStatus, admit_target, resolve_checked};
use crate::pipeline::ProxyBody;
use crate::routing::Glob;
use crate::telemetry::EgressOutcome;
use crate::tls::authority::Authority;
use crate::upstream::{RequestBody, Sent};

/// A client that has not finished its TLS handshake by then is dropped.
const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an HTTP/2 client of an intercepted tunnel is pinged.
const H2_PING_INTERVAL: Duration = Duration::from_secs(60);
/// Idle HTTP/1.1 connections kept per exit, per intercepted tunnel.
const IDLE_PER_EXIT: usize = 4;

/// A listener's `intercept`: which hosts, the CA, and the trust in sites' certificates.
pub struct Intercept {
    hosts: Vec<Glob>,
    pub authority: Arc<Authority>,
    /// Roots for sites' certificates (system roots or `upstream_ca`), ALPN h2, http/1.1.
    upstream_tls: Arc<rustls::ClientConfig>,
}

impl Intercept {
    pub fn new(
        hosts: Vec<Glob>,
        authority: Arc<Authority>,
        upstream_tls: Arc<rustls::ClientConfig>,
    ) -> Intercept {
        Intercept {
            hosts,
            authority,
            upstream_tls,
        }
    }

    pub fn covers(&self, host: &str) -> bool {
        self.hosts.iter().any(|glob| glob.matches(host))
    }
}

/// The site of one intercepted tunnel, shared by the requests inside it.
struct Target {
    choice: ClientChoice,
    host: String,
    port: u16,
    /// `host[:port]` as the requests' URIs carry it (no `:443`).
    authority: String,
    /// `authority` parsed once for the tunnel (each request's URI is built from it);
    /// None if it does not parse (each request is then refused, saying why).
    uri_authority: Option<http::uri::Authority>,
    sites: SiteConnections,
    /// Whose traffic this is, for ban reports (the client and its choice are the
    /// tunnel's).
    session: SessionKey,
}

/// Serves an intercepted tunnel once the client was told it is open: the TLS
/// handshake with a minted leaf, then HTTP/1.1 or HTTP/2 (by ALPN) until the client
/// leaves. `slot` is the client's tunnel slot, held as long.
pub(super) async fn serve<C>(
    client: C,
    plan: Arc<EgressPlan>,
    peer: SocketAddr,
    admitted: Admitted,
    slot: crate::security::client_slots::ClientSlot,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(intercept) = &plan.intercept else {
        return;
    };
    let Admitted { choice, host, port } = admitted;
    let config = match intercept.authority.server_config(&host) {
        Ok(config) => config,
        Err(error) => {
            tracing::warn!(egress = %plan.name, %host, %error, "no certificate for an intercepted host");
            handshake_failed(&plan, peer, &choice, &host, port, "certificate_error");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let tls = match tokio::time::timeout(CLIENT_HANDSHAKE_TIMEOUT, acceptor.accept(client)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            let outcome = client_tls_outcome(&error);
            tracing::info!(egress = %plan.name, %peer, %host, %error, outcome, "intercepted client's TLS handshake failed");
            handshake_failed(&plan, peer, &choice, &host, port, outcome);
            return;
        }
        Err(_) => {
            handshake_failed(&plan, peer, &choice, &host, port, "client_tls_timeout");
            return;
        }
    };
    let target_authority = match port {
        443 if host.contains(':') => format!("[{host}]"),
        443 => host.clone(),
        _ => authority(&host, port),
    };
    let target = Arc::new(Target {
        uri_authority: format!("https://{target_authority}/")
            .parse::<Uri>()
            .ok()
            .and_then(|uri| uri.into_parts().authority),
        authority: target_authority,
        session: SessionKey::of(&choice, peer),
        choice,
        host,
        port,
        sites: SiteConnections::new(intercept.upstream_tls.clone()),
    });
    let idle_timeout = plan.limits.idle_timeout;
    let service = service_fn(move |request: Request<Incoming>| {
        let (plan, target) = (plan.clone(), target.clone());
        async move { Ok::<_, Infallible>(handle(request, &plan, peer, &target).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A kept-alive HTTP/1.1 client that sends nothing for `idle_timeout` is closed, as
    // an idle tunnel would be; HTTP/2 clients are pinged and closed when they stop
    // answering.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_PING_INTERVAL));
    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
    drop(slot);
}

/// Whether the client refused the minted certificate (an alert about it: it does not
/// trust the CA, or pins another key) or the handshake failed otherwise.
fn client_tls_outcome(error: &std::io::Error) -> &'static str {
    use rustls::AlertDescription as Alert;
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(
            Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::UnsupportedCertificate
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::AccessDenied,
        )) => "client_rejected_certificate",
        _ => "client_tls_failed",
    }
}

/// Counts and logs a tunnel whose client never got to send a request.
fn handshake_failed(
    plan: &EgressPlan,
    peer: SocketAddr,
    choice: &ClientChoice,
    host: &str,
    port: u16,
    outcome: &'static str,
) {
    plan.refusals.count(outcome);
    let head = Request::builder()
        .method(Method::CONNECT)
        .uri(authority(host, port))
        .body(())
        .unwrap_or_default();
    let mut record = Record::new(plan.telemetry.clone(), &plan.name, peer, &head);
    record.user = choice.user.clone().filter(|u| !u.is_empty());
    record.host = Some(host.to_string());
    record.outcome = Some(outcome);
    record.error = Some(outcome);
}

/// One decrypted request: checked against the tunnel's site, then forwarded as a
/// plain-HTTP request would be, over TLS.
async fn handle(
    request: Request<Incoming>,
    plan: &Arc<EgressPlan>,
    peer: SocketAddr,
    target: &Target,
) -> Response<ProxyBody> {
    let mut record = super::new_record(plan, peer, &request);
    record.user = target.choice.user.clone().filter(|u| !u.is_empty());
    let result = forward_inside(request, plan, target, &mut record).await;
    super::answer(plan, record, result)
}

async fn forward_inside(
    request: Request<Incoming>,
    plan: &Arc<EgressPlan>,
    target: &Target,
    record: &mut Record,
) -> Result<Response<ProxyBody>, ProxyStatus> {
    let request = on_target(request, target)?;
    unambiguous(&request)?;
    let admitted = admit_target(
        plan,
        target.choice.clone(),
        target.host.clone(),
        target.port,
        record,
    )?;
    forward_admitted(
        request,
        admitted,
        plan,
        record,
        Origin::Tls(&target.sites, &target.session),
    )
    .await
}

/// The request with the tunnel's site as its target (`https://host[:port]/path`); a
/// request naming another site (`Host`, `:authority`) is refused: the tunnel's host is
/// the one the destination rules judged.
fn on_target(
    request: Request<Incoming>,
    target: &Target,
) -> Result<Request<Incoming>, ProxyStatus> {
    let misdirected = |named: &str| {
        ProxyStatus::new(
            StatusCode::MISDIRECTED_REQUEST,
            "http_request_error",
            "misdirected",
            format!(
                "this tunnel goes to {}; the request names {named:?}",
                target.authority
            ),
        )
    };
    let names_target = |authority: &str| {
        // The common case, the tunnel's own spelling, needs no parsing.
        if authority.eq_ignore_ascii_case(&target.authority) {
            return true;
        }
        let Ok(parsed) = authority.parse::<http::uri::Authority>() else {
            return false;
        };
        let host = parsed.host().trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case(&target.host) && parsed.port_u16().unwrap_or(443) == target.port
    };
    let (mut parts, body) = request.into_parts();
    if let Some(named) = parts.uri.authority()
        && !names_target(named.as_str())
    {
        return Err(misdirected(named.as_str()));
    }
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let first_host = hosts.next();
    if hosts.next().is_some() {
        return Err(misdirected("several Host headers"));
    }
    if let Some(named) = first_host {
        let named = named.to_str().unwrap_or_default();
        if !names_target(named) {
            return Err(misdirected(named));
        }
    }
    // The forward path sets Host from the target.
    parts.headers.remove(header::HOST);
    let bad_target = |e: &dyn std::fmt::Display| {
        ProxyStatus::new(
            StatusCode::BAD_REQUEST,
            "http_request_error",
            "bad_request",
            format!("invalid request target: {e}"),
        )
    };
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    parts.uri = match &target.uri_authority {
        // The tunnel's parsed authority and the request's own path: no text to format
        // and parse again per request.
        Some(uri_authority) if path.starts_with('/') => {
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(http::uri::Scheme::HTTPS);
            uri.authority = Some(uri_authority.clone());
            uri.path_and_query = Some(match parts.uri.path_and_query() {
                Some(pq) => pq.clone(),
                None => http::uri::PathAndQuery::from_static("/"),
            });
            Uri::from_parts(uri).map_err(|e| bad_target(&e))?
        }
        // Anything else (`*`, an authority that does not parse) as the text says.
        _ => format!("https://{}{path}", target.authority)
            .parse::<Uri>()
            .map_err(|e| bad_target(&e))?,
    };
    Ok(Request::from_parts(parts, body))
}

/// Connections to the site of one intercepted tunnel, by exit: TLS through the tunnel
/// the exit opens, then HTTP/2 or HTTP/1.1 as the site's ALPN says.
struct SiteConnections {
    tls: tokio_rustls::TlsConnector,
    idle: Mutex<HashMap<Arc<str>, Idle>>,
}

#[derive(Default)]
struct Idle {
    h2: Option<http2::SendRequest<RequestBody>>,
    h1: Vec<http1::SendRequest<RequestBody>>,
}

enum Sender {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

impl SiteConnections {
    fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        SiteConnections {
            tls: tokio_rustls::TlsConnector::from(tls),
            idle: Mutex::default(),
        }
    }

    /// Sends one attempt through `exit`, on a connection of this tunnel's or a new one.
    async fn send_one(
        &self,
        plan: &EgressPlan,
        exit: &Arc<Exit>,
        host: &str,
        port: u16,
        request: Request<ProxyBody>,
    ) -> Result<Sent, Failed> {
        let sender = match self.reuse(exit) {
            Some(sender) => sender,
            // Boxed: the dial and handshakes' state is large, and inline it would make
            // every request's future (moved into a box per attempt) as large, while a
            // connection is opened once per tunnel and exit.
            None => Box::pin(self.connect(plan, exit, host, port)).await?,
        };
        let (mut head, body) = request.into_parts();
        let body = body.into_request_body();
        let exchange_failed = |error: hyper::Error| Failed {
            outcome: Some(EgressOutcome::SiteError),
            status: ProxyStatus::new(
                StatusCode::BAD_GATEWAY,
                "http_response_incomplete",
                "site_error",
                format!("{host}: {error}"),
            ),
        };
        let response = match sender {
            Sender::H2(mut sender) => {
                // The target's authority goes as `:authority`.
                head.version = http::Version::HTTP_2;
                head.headers.remove(header::HOST);
                sender
                    .send_request(Request::from_parts(head, body))
                    .await
                    .map_err(exchange_failed)?
            }
            Sender::H1(mut sender) => {
                head.version = http::Version::HTTP_11;
                head.uri = head
                    .uri
                    .path_and_query()
                    .map(|pq| Uri::from(pq.clone()))
                    .unwrap_or_else(|| Uri::from_static("/"));
                let response = sender
                    .send_request(Request::from_parts(head, body))
                    .await
                    .map_err(exchange_failed)?;
                self.keep(exit, sender);
                response
            }
        };
        Ok(Sent::unpooled(response))
    }

    fn reuse(&self, exit: &Exit) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let idle = idle.get_mut(&exit.name)?;
        if let Some(h2) = idle.h2.as_ref().filter(|s| !s.is_closed()) {
            return Some(Sender::H2(h2.clone()));
        }
        idle.h1.retain(|s| !s.is_closed());
        let ready = idle.h1.iter().position(|s| s.is_ready())?;
        Some(Sender::H1(idle.h1.swap_remove(ready)))
    }

    /// Keeps an HTTP/1.1 connection for the next request (it is ready again once the
    /// answer's body has been read).
    fn keep(&self, exit: &Exit, sender: http1::SendRequest<RequestBody>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let idle = idle.entry(exit.name.clone()).or_default();
        if idle.h1.len() < IDLE_PER_EXIT {
            idle.h1.push(sender);
        }
    }

    async fn connect(
        &self,
        plan: &EgressPlan,
        exit: &Arc<Exit>,
        host: &str,
        port: u16,
    ) -> Result<Sender, Failed> {
        let direct_to = match exit.kind {
            ExitKind::Direct => Some(resolve_checked(plan, host, port).await.map_err(
                |status| Failed {
                    outcome: (status.reason != "denied").then_some(EgressOutcome::SiteError),
                    status,
                },
            )?),
            _ => None,
        };
        let timeout = plan.limits.connect_timeout;
        let stream = open_tunnel(
            &exit.kind,
            exit.tls.as_ref(),
            host,
            port,
            direct_to,
            timeout,
        )
        .await
        .map_err(|error| Failed {
            outcome: Some(dial_failed(plan, exit, host, &error)),
            status: dial_status(exit, host, &error),
        })?;
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| Failed {
                outcome: None,
                status: ProxyStatus::new(
                    StatusCode::BAD_REQUEST,
                    "http_request_error",
                    "bad_request",
                    format!("{host:?} is not a TLS server name: {e}"),
                ),
            })?;
        let tls = match tokio::time::timeout(timeout, self.tls.connect(name, stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => return Err(tls_failed(plan, exit, host, &error)),
            Err(_) => {
                return Err(Failed {
                    outcome: Some(EgressOutcome::SiteError),
                    status: ProxyStatus::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "connection_timeout",
                        "site_error",
                        format!("{host}: no TLS handshake within {timeout:?}"),
                    ),
                });
            }
        };
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let handshake_failed = |error: hyper::Error| Failed {
            outcome: Some(EgressOutcome::SiteError),
            status: ProxyStatus::new(
                StatusCode::BAD_GATEWAY,
                "http_response_incomplete",
                "site_error",
                format!("{host}: HTTP handshake: {error}"),
            ),
        };
        if h2 {
            let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(handshake_failed)?;
            tokio::spawn(connection);
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.entry(exit.name.clone()).or_default().h2 = Some(sender.clone());
            Ok(Sender::H2(sender))
        } else {
            let (sender, connection) = http1::handshake(TokioIo::new(tls))
                .await
                .map_err(handshake_failed)?;
            tokio::spawn(connection);
            Ok(Sender::H1(sender))
        }
    }
}

impl TlsSite for SiteConnections {
    fn send<'a>(
        &'a self,
        plan: &'a EgressPlan,
        exit: &'a Arc<Exit>,
        host: &'a str,
        port: u16,
        request: Request<ProxyBody>,
    ) -> Pin<Box<dyn Future<Output = Result<Sent, Failed>> + Send + 'a>> {
        Box::pin(self.send_one(plan, exit, host, port, request))
    }
}

/// The answer for a tunnel through `exit` that did not open.
fn dial_status(exit: &Exit, host: &str, error: &DialError) -> ProxyStatus {
    match error {
        DialError::ExitUnreachable(_) => ProxyStatus::new(
            StatusCode::BAD_GATEWAY,
            "destination_unavailable",
            "exit_error",
            format!("exit {}: {error}", exit.name),
        ),
        DialError::Refused(_) => ProxyStatus::new(
            StatusCode::BAD_GATEWAY,
            "connection_refused",
            "tunnel_refused",
            format!("exit {}: {error}", exit.name),
        ),
        DialError::Site(_) => ProxyStatus::new(
            StatusCode::BAD_GATEWAY,
            "connection_refused",
            "site_error",
            format!("{host}: {error}"),
        ),
        DialError::Timeout(_) => ProxyStatus::new(
            StatusCode::GATEWAY_TIMEOUT,
            "connection_timeout",
            "site_error",
            format!("{host} through exit {}: {error}", exit.name),
        ),
    }
}

/// A TLS handshake with the site that failed. A certificate that does not verify is
/// never passed over: the request is refused, whatever the exit, and counted.
fn tls_failed(plan: &EgressPlan, exit: &Exit, host: &str, error: &std::io::Error) -> Failed {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    if let Some(rustls::Error::InvalidCertificate(why)) = rustls_error {
        exit.counters
            .count(EgressOutcome::UpstreamCertificateInvalid);
        tracing::warn!(egress = %plan.name, exit = %exit.name, %host, error = ?why, "intercepted site's certificate does not verify; request refused");
        return Failed {
            outcome: None,
            status: ProxyStatus::new(
                StatusCode::BAD_GATEWAY,
                "tls_certificate_error",
                "upstream_certificate_invalid",
                format!(
                    "upstream_certificate_invalid: {host}'s certificate does not verify: {why:?}"
                ),
            ),
        };
    }
    Failed {
        outcome: Some(EgressOutcome::SiteError),
        status: ProxyStatus::new(
            StatusCode::BAD_GATEWAY,
            "tls_protocol_error",
            "site_error",
            format!("{host}: TLS handshake failed: {error}"),
        ),
    }
}
