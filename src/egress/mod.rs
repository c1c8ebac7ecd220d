//! The egress (forward) proxy for data collection: clients send absolute-form requests
//! (`GET http://site/path`) or open `CONNECT` tunnels (HTTPS stays end to end), and
//! Junction picks an exit (direct, HTTP(S) or SOCKS5 proxy) by region, session and
//! rotation, keeps to each site's politeness limits, and routes around exits a site
//! has banned; tunnels to hosts listed in `intercept` are opened and served like plain
//! requests. Errors Junction makes carry an RFC 9209 `Proxy-Status` header.

pub mod adaptive;
pub mod bans;
pub mod client_auth;
mod connect;
mod destinations;
pub mod dial;
pub mod exits;
pub mod fleet;
mod forward;
pub mod intercept;
mod mask;
pub mod politeness;
mod record;
pub mod reports;
pub mod robots;
pub mod rotation;
pub mod socks5;
mod socks5_listener;
pub mod tunnel;
pub mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

pub use destinations::{Destinations, Refusal, Rule, SPECIAL_RANGES};

use self::bans::BanRules;
use self::client_auth::{ClientChoice, Users, client_choice};
use self::connect::{open_site_tunnel, tunnel_slot};
use self::exits::{Exit, ExitSource, parse_exits_file};
use self::politeness::{HostPermit, Politeness};
use self::record::Record;
use self::reports::LastExits;
use self::robots::RobotsCache;
use self::rotation::Rotator;
use crate::pipeline::{ProxyBody, json_error};
use crate::security::client_slots::ClientCounts;
use crate::telemetry::{EgressRefusals, Telemetry};

pub static X_JUNCTION_EXIT: http::HeaderName = http::HeaderName::from_static("x-junction-exit");

/// An exits file and how it is watched: re-read every `poll`, and taken up when its
/// content changed (a hash, not the modification time, so a quick same-size rewrite is
/// seen too, and a bad file is reported once per version, not once per poll).
pub struct ExitsFile {
    pub path: PathBuf,
    pub poll: Duration,
    /// Hash of the content last read (or of the error reading it).
    seen: Mutex<Option<u64>>,
}

impl ExitsFile {
    pub fn new(path: PathBuf, poll: Duration) -> Self {
        ExitsFile {
            path,
            poll,
            seen: Mutex::new(None),
        }
    }

    /// Reads the file: its exits, or an error naming the line.
    pub fn read(&self) -> Result<Vec<ExitSource>, String> {
        self.read_if_changed(true).unwrap_or(Ok(Vec::new()))
    }

    /// The file's exits if its content changed since the last read (always with
    /// `force`), else None.
    fn read_if_changed(&self, force: bool) -> Option<Result<Vec<ExitSource>, String>> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()));
        let hash = match &text {
            Ok(text) => crate::balance::stable_hash(text.as_bytes()),
            Err(error) => crate::balance::stable_hash(error.as_bytes()) ^ 1,
        };
        let previous = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(hash);
        if !force && previous == Some(hash) {
            return None;
        }
        Some(text.and_then(|text| {
            parse_exits_file(&text).map_err(|e| format!("{}: {e}", self.path.display()))
        }))
    }
}

/// Timeouts and limits of an egress listener.
pub struct EgressLimits {
    pub attempts: u32,
    pub max_tunnels_per_client: u32,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub probe_interval: Duration,
}

/// What clients of an egress listener speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProtocol {
    /// HTTP/1.1 forward proxying: absolute-form requests and `CONNECT`.
    Http,
    /// SOCKS5 (RFC 1928) `CONNECT`, with RFC 1929 user and password.
    Socks5,
}

/// A compiled `[[egress]]` listener.
pub struct EgressPlan {
    pub name: Arc<str>,
    pub protocol: ClientProtocol,
    pub destinations: Destinations,
    exits: ArcSwap<Vec<Arc<Exit>>>,
    /// Exits from the config; the exits file's come after them.
    static_exits: Vec<ExitSource>,
    exits_file: Option<ExitsFile>,
    exit_tls: Option<Arc<rustls::ClientConfig>>,
    rotator: Rotator,
    users: Users,
    politeness: Politeness,
    robots: Option<RobotsCache>,
    ban: BanRules,
    limits: EgressLimits,
    /// Open tunnels per client address (`max_tunnels_per_client`).
    tunnels: Arc<ClientCounts>,
    /// The exit each session last used per host, for ban reports.
    last_exits: LastExits,
    refusals: Arc<EgressRefusals>,
    telemetry: Arc<Telemetry>,
    started: AtomicBool,
    /// Flow capture of plain requests and tunnels.
    pub capture: Option<Arc<crate::inspect::Capture>>,
    /// The detector of large outbound volume per client and site.
    pub outbound: Option<Arc<crate::inspect::anomaly::OutboundVolume>>,
    /// Exit verification through an echo URL.
    verify: Option<verify::VerifyRules>,
    /// Rests after bans shared with the fleet, through Redis.
    pub fleet: Option<Arc<fleet::FleetState>>,
    /// TLS interception of listed hosts.
    intercept: Option<intercept::Intercept>,
    /// Masking of plain and intercepted requests' bodies.
    mask: Option<EgressMask>,
}

/// An egress listener's `mask`: the policy, and the audit log its blocks go to.
pub struct EgressMask {
    pub policy: Arc<crate::masking::Policy>,
    pub audit: Option<Arc<crate::security::audit::AuditLog>>,
}

/// Everything an egress plan is built from (see `config::compile`).
pub struct EgressParts {
    pub name: Arc<str>,
    pub protocol: ClientProtocol,
    pub destinations: Destinations,
    pub exits: Vec<ExitSource>,
    pub exits_file: Option<ExitsFile>,
    pub exit_tls: Option<Arc<rustls::ClientConfig>>,
    pub rotator: Rotator,
    pub users: Users,
    pub politeness: Politeness,
    pub robots: Option<RobotsCache>,
    pub ban: BanRules,
    pub limits: EgressLimits,
    pub capture: Option<Arc<crate::inspect::Capture>>,
    pub outbound: Option<Arc<crate::inspect::anomaly::OutboundVolume>>,
    pub verify: Option<verify::VerifyRules>,
    pub fleet: Option<Arc<fleet::FleetState>>,
    pub intercept: Option<intercept::Intercept>,
    pub mask: Option<EgressMask>,
}

impl EgressPlan {
    /// The listener's masking policy, if it masks.
    pub fn mask_policy(&self) -> Option<&Arc<crate::masking::Policy>> {
        self.mask.as_ref().map(|mask| &mask.policy)
    }

    /// Builds the plan and its exits; errors name the exit (by its place in `exits`,
    /// or the exits file line).
    pub fn new(parts: EgressParts, telemetry: &Arc<Telemetry>) -> Result<Self, String> {
        let mut sources = parts.exits.clone();
        if let Some(file) = &parts.exits_file {
            sources.extend(file.read()?);
        }
        let plan = EgressPlan {
            refusals: telemetry.metrics.egress_refusals(&parts.name),
            name: parts.name,
            protocol: parts.protocol,
            destinations: parts.destinations,
            exits: ArcSwap::from_pointee(Vec::new()),
            static_exits: parts.exits,
            exits_file: parts.exits_file,
            exit_tls: parts.exit_tls,
            rotator: parts.rotator,
            users: parts.users,
            politeness: parts.politeness,
            robots: parts.robots,
            ban: parts.ban,
            limits: parts.limits,
            tunnels: Arc::default(),
            last_exits: LastExits::default(),
            telemetry: telemetry.clone(),
            started: AtomicBool::new(false),
            capture: parts.capture,
            outbound: parts.outbound,
            verify: parts.verify,
            fleet: parts.fleet,
            intercept: parts.intercept,
            mask: parts.mask,
        };
        let exits = plan.build_exits(sources, &[])?;
        if exits.is_empty() {
            return Err(
                "no exits: add exits = [{ url = \"direct\" }] to send requests from this host"
                    .into(),
            );
        }
        plan.exits.store(Arc::new(exits));
        Ok(plan)
    }

    /// Exits for `sources`, keeping the state (health, cooldowns) of those unchanged.
    fn build_exits(
        &self,
        sources: Vec<ExitSource>,
        current: &[Arc<Exit>],
    ) -> Result<Vec<Arc<Exit>>, String> {
        let mut exits: Vec<Arc<Exit>> = Vec::with_capacity(sources.len());
        for source in sources {
            if let Some(same) = current.iter().find(|e| e.source == source) {
                exits.push(same.clone());
                continue;
            }
            let name = source.label(&exits::ExitUrl::parse(&source.url)?);
            if exits.iter().any(|e| e.name == name) {
                return Err(format!(
                    "two exits are named {:?}; give them distinct names (name = ...)",
                    &*name
                ));
            }
            let region = source.region.as_deref().unwrap_or("");
            let counters = self
                .telemetry
                .metrics
                .egress_exit(&self.name, &name, region);
            exits.push(Exit::new(source, self.exit_tls.clone(), counters)?);
        }
        Ok(exits)
    }

    pub fn exits(&self) -> Arc<Vec<Arc<Exit>>> {
        self.exits.load_full()
    }

    pub fn open_tunnels(&self) -> u64 {
        self.tunnels.total()
    }

    /// Starts the exits-file watcher once; it ends when the plan is dropped.
    pub fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(file) = &self.exits_file {
            tokio::spawn(watch_exits_file(Arc::downgrade(self), file.poll));
        }
        if let Some(rules) = &self.verify {
            tokio::spawn(verify_exits(Arc::downgrade(self), rules.interval));
        }
    }

    fn reload_exits_file(&self) {
        let Some(file) = &self.exits_file else { return };
        let Some(read) = file.read_if_changed(false) else {
            return;
        };
        let read = read.and_then(|from_file| {
            let mut sources = self.static_exits.clone();
            sources.extend(from_file);
            self.build_exits(sources, &self.exits.load())
        });
        match read {
            Ok(exits) if exits.is_empty() => {
                tracing::warn!(egress = %self.name, "exits file left no exit; keeping the previous exits")
            }
            Ok(exits) => {
                tracing::info!(egress = %self.name, exits = exits.len(), "exits file re-read");
                self.exits.store(Arc::new(exits));
            }
            Err(error) => {
                tracing::warn!(egress = %self.name, %error, "exits file refused; keeping the previous exits")
            }
        }
    }
}

/// Probes every exit through the echo URL now and every `interval`, until the plan is
/// dropped (a reload builds a new plan, and its own prober).
async fn verify_exits(plan: std::sync::Weak<EgressPlan>, interval: Duration) {
    loop {
        let Some(current) = plan.upgrade() else {
            return;
        };
        let probes: Vec<_> = current
            .exits()
            .iter()
            .map(|exit| {
                let (plan, exit) = (current.clone(), exit.clone());
                tokio::spawn(async move {
                    let result = forward::probe_exit(&plan, &exit).await;
                    let failed = result.as_ref().err().cloned();
                    let mut verification =
                        exit.verification.lock().unwrap_or_else(|p| p.into_inner());
                    let moved = verification.record(result, Instant::now());
                    if moved {
                        tracing::warn!(egress = %plan.name, exit = %exit.name, address = ?verification.address, first = ?verification.first_address, "exit's public address changed");
                    }
                    if let Some(error) = failed {
                        tracing::warn!(egress = %plan.name, exit = %exit.name, %error, "exit failed its verification probe");
                    }
                })
            })
            .collect();
        drop(current);
        for probe in probes {
            let _ = probe.await;
        }
        tokio::time::sleep(interval).await;
    }
}

async fn watch_exits_file(plan: std::sync::Weak<EgressPlan>, poll: Duration) {
    loop {
        tokio::time::sleep(poll).await;
        let Some(plan) = plan.upgrade() else { return };
        plan.reload_exits_file();
    }
}

/// An error Junction makes itself: its RFC 9209 error type, a word for metrics and
/// logs (`reason`), and details.
pub struct ProxyStatus {
    status: StatusCode,
    error: &'static str,
    reason: &'static str,
    details: String,
    retry_after: Option<Duration>,
}

impl ProxyStatus {
    fn new(
        status: StatusCode,
        error: &'static str,
        reason: &'static str,
        details: impl Into<String>,
    ) -> Self {
        ProxyStatus {
            status,
            error,
            reason,
            details: details.into(),
            retry_after: None,
        }
    }

    fn into_response(self) -> Response<ProxyBody> {
        let mut response = json_error(self.status, self.error, &self.details);
        let details = self.details.replace(['"', '\\'], "'");
        let value = format!("junction; error={}; details=\"{details}\"", self.error);
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert("proxy-status", value);
        }
        if let Ok(reason) = HeaderValue::from_str(self.reason) {
            headers.insert("x-junction-reason", reason);
        }
        if let Some(after) = self.retry_after {
            let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            headers.insert(
                http::header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"junction\""),
            );
        }
        response
    }
}

pub use socks5_listener::serve as serve_socks5;

/// Serves one request on an egress listener.
pub async fn handle(
    request: Request<Incoming>,
    plan: &Arc<EgressPlan>,
    peer: SocketAddr,
) -> Response<ProxyBody> {
    let mut record = new_record(plan, peer, &request);
    let result = if request.method() == Method::CONNECT {
        tunnel(request, plan, peer, &mut record).await
    } else {
        forward::forward(request, plan, &mut record).await
    };
    answer(plan, record, result)
}

/// A request's record: its log line, outbound volume and, when sampled, its capture.
fn new_record(plan: &EgressPlan, peer: SocketAddr, request: &Request<Incoming>) -> Record {
    let mut record = Record::new(plan.telemetry.clone(), &plan.name, peer, request);
    record.outbound = plan.outbound.clone();
    if let Some(capture) = plan
        .capture
        .as_ref()
        .filter(|c| c.samples(plan.rotator.rng().next_u64()))
    {
        record.start_capture(capture.clone(), request);
    }
    record
}

/// The response, or Junction's refusal (counted when no exit was tried).
fn answer(
    plan: &EgressPlan,
    mut record: Record,
    result: Result<Response<ProxyBody>, ProxyStatus>,
) -> Response<ProxyBody> {
    match result {
        Ok(response) => response,
        Err(refusal) => {
            if record.exit.is_none() {
                plan.refusals.count(refusal.reason);
            }
            record.refused(refusal.status, refusal.reason);
            let response = refusal.into_response();
            record.record_answer(&response);
            response
        }
    }
}

/// What every request goes through before it picks an exit: the client's identity
/// and choices, the destination, the region.
struct Admitted {
    choice: ClientChoice,
    host: String,
    port: u16,
}

fn admit(
    plan: &EgressPlan,
    request: &Request<Incoming>,
    connect: bool,
    record: &mut Record,
) -> Result<Admitted, ProxyStatus> {
    let choice = client_choice(request.headers());
    if plan.users.required() {
        let accepted = match (&choice.user, &choice.password) {
            (Some(user), Some(password)) => plan.users.accepts(user, password),
            _ => false,
        };
        if !accepted {
            return Err(ProxyStatus::new(
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "http_request_denied",
                "unauthorized",
                "this proxy needs a user and password (Proxy-Authorization: Basic)",
            ));
        }
    }
    record.user = choice.user.clone().filter(|u| !u.is_empty());
    plan.take_reports(request.headers(), &choice, record.client())?;
    let (host, port) = destination(request.uri(), connect)?;
    admit_target(plan, choice, host, port, record)
}

/// The checks of a destination, whatever protocol the client spoke: the region it
/// asks for exists, the destination rules, the outbound-volume detector.
fn admit_target(
    plan: &EgressPlan,
    choice: ClientChoice,
    host: String,
    port: u16,
    record: &mut Record,
) -> Result<Admitted, ProxyStatus> {
    record.host = Some(host.clone());
    if let Some(region) = &choice.region {
        record.region = Some(region.clone());
        if !plan
            .exits()
            .iter()
            .any(|e| e.region.as_deref() == Some(region.as_str()))
        {
            return Err(ProxyStatus::new(
                StatusCode::BAD_REQUEST,
                "http_request_error",
                "unknown_region",
                format!("no exit is in region {region:?}"),
            ));
        }
    }
    check_destination(plan, &host)?;
    let now = std::time::Instant::now();
    if let Some(outbound) = &plan.outbound
        && outbound.blocked(&record.client_id(), &host, now)
    {
        return Err(ProxyStatus::new(
            StatusCode::TOO_MANY_REQUESTS,
            "anomaly_blocked",
            "outbound_volume",
            format!(
                "this client sent {host} far more than usual; its requests there are refused for a while"
            ),
        ));
    }
    Ok(Admitted { choice, host, port })
}

/// Host and port of the destination: the CONNECT authority, or an absolute `http://` URI.
fn destination(uri: &Uri, connect: bool) -> Result<(String, u16), ProxyStatus> {
    let bad = |why: &str| {
        ProxyStatus::new(
            StatusCode::BAD_REQUEST,
            "http_request_error",
            "bad_request",
            why.to_string(),
        )
    };
    if !connect && uri.scheme_str() != Some("http") {
        return Err(bad(
            "an egress proxy takes absolute http:// URIs, or CONNECT for https",
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| bad("the request names no destination host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = match authority.port_u16() {
        Some(port) => port,
        None if connect => return Err(bad("CONNECT needs host:port")),
        None => 80,
    };
    Ok((host, port))
}

fn refused(host: &str, refusal: Refusal) -> ProxyStatus {
    let details = match refusal {
        Refusal::Denied(rule) => format!("{host} is denied by {rule}"),
        Refusal::NotAllowed => format!("{host} is not in this egress listener's allow list"),
        Refusal::SpecialRange(ip) => format!(
            "{host} resolves to {ip}, a loopback, private or link-local address (allow it explicitly to reach it)"
        ),
    };
    ProxyStatus::new(
        StatusCode::FORBIDDEN,
        "destination_ip_prohibited",
        "denied",
        details,
    )
}

/// The checks possible before resolving: the name, and the address when the host is
/// one. Names are resolved (and their addresses checked) only for direct exits; exit
/// proxies resolve names themselves, in their own network and region.
fn check_destination(plan: &EgressPlan, host: &str) -> Result<(), ProxyStatus> {
    plan.destinations
        .check_host(host)
        .map_err(|r| refused(host, r))?;
    match destinations::host_address(host) {
        Ok(Some(ip)) => plan
            .destinations
            .check_ip(host, ip)
            .map_err(|r| refused(host, r)),
        Ok(None) => Ok(()),
        Err(()) => Err(ProxyStatus::new(
            StatusCode::BAD_REQUEST,
            "http_request_error",
            "bad_request",
            format!("{host:?} ends in a number but is not an IPv4 address"),
        )),
    }
}

/// Resolves `host` for a direct exit and checks every address it resolves to: a name
/// must not smuggle a private address in beside a public one.
async fn resolve_checked(
    plan: &EgressPlan,
    host: &str,
    port: u16,
) -> Result<SocketAddr, ProxyStatus> {
    let addresses: Vec<SocketAddr> = match destinations::host_address(host).ok().flatten() {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| {
                ProxyStatus::new(
                    StatusCode::BAD_GATEWAY,
                    "dns_error",
                    "site_error",
                    format!("cannot resolve {host}: {e}"),
                )
            })?
            .collect(),
    };
    for address in &addresses {
        plan.destinations
            .check_ip(host, address.ip())
            .map_err(|r| refused(host, r))?;
    }
    // IPv4 first: a site on IPv4 only is the common case where both are listed.
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| {
            ProxyStatus::new(
                StatusCode::BAD_GATEWAY,
                "destination_not_found",
                "site_error",
                format!("{host} has no address"),
            )
        })
}

/// Waits for the host's politeness turn (after learning what the fleet knows of it).
async fn polite_turn(plan: &EgressPlan, host: &str) -> Result<Option<HostPermit>, ProxyStatus> {
    plan.sync_host(host).await;
    if plan.politeness.is_unlimited() {
        return Ok(None);
    }
    match plan.politeness.admit(host).await {
        Ok(permit) => Ok(Some(permit)),
        Err(refused) => {
            let mut status = ProxyStatus::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "connection_limit_reached",
                "politeness",
                refused.to_string(),
            );
            status.retry_after = Some(refused.retry_after());
            Err(status)
        }
    }
}

fn no_exit(host: &str, region: Option<&str>, last_error: Option<String>) -> ProxyStatus {
    let mut details = match region {
        Some(region) => format!("no exit in region {region} is left for {host}"),
        None => format!("no exit is left for {host}"),
    };
    details.push_str(" (exits are unreachable, cooling down after a ban, or were tried)");
    if let Some(error) = last_error {
        details.push_str("; last error: ");
        details.push_str(&error);
    }
    ProxyStatus::new(
        StatusCode::BAD_GATEWAY,
        "destination_unavailable",
        "no_exit",
        details,
    )
}

/// The session a request without a session id has under `sticky_session`.
fn client_session(plan: &EgressPlan, peer: SocketAddr, choice: &ClientChoice) -> String {
    if !plan.rotator.keys_clients() {
        return String::new();
    }
    format!("{}/{}", peer.ip(), choice.user.as_deref().unwrap_or(""))
}

/// CONNECT: checks, picks an exit (another one when an exit refuses or cannot be
/// reached), answers 200, then joins the two sides byte for byte.
async fn tunnel(
    mut request: Request<Incoming>,
    plan: &Arc<EgressPlan>,
    peer: SocketAddr,
    record: &mut Record,
) -> Result<Response<ProxyBody>, ProxyStatus> {
    let admitted = admit(plan, &request, true, record)?;
    if plan.intercepts(&admitted.host) {
        // The tunnel is Junction's own: each request inside picks its exit.
        let slot = tunnel_slot(plan, peer)?;
        record.outcome = Some("intercepted");
        record.status = Some(StatusCode::OK);
        let upgrade = hyper::upgrade::on(&mut request);
        let plan = plan.clone();
        tokio::spawn(async move {
            if let Ok(client) = upgrade.await {
                intercept::serve(TokioIo::new(client), plan, peer, admitted, slot).await;
            }
        });
        return Ok(Response::new(ProxyBody::Empty));
    }
    let opened = open_site_tunnel(plan, peer, admitted, record).await?;
    let mut response = Response::new(ProxyBody::Empty);
    if let Ok(name) = HeaderValue::from_str(&opened.exit.name) {
        response.headers_mut().insert(&X_JUNCTION_EXIT, name);
    }
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Ok(client) = upgrade.await {
            opened.splice(TokioIo::new(client), &[]).await;
        }
    });
    Ok(response)
}

// === Read-only snapshots, for the admin API ===

impl EgressPlan {
    /// Whether tunnels to `host` are intercepted (`intercept.hosts`).
    pub fn intercepts(&self, host: &str) -> bool {
        self.intercept.as_ref().is_some_and(|i| i.covers(host))
    }

    /// The `top` sessions used most recently, and how many are live (see
    /// [`Rotator::sessions_snapshot`]).
    pub fn sessions_snapshot(&self, top: usize) -> (Vec<rotation::PinnedSession>, usize) {
        self.rotator.sessions_snapshot(Instant::now(), top)
    }
}
