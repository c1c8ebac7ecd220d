//! The gateway's shared state: the current [`Plan`] behind an `ArcSwap`, the registry
//! of endpoint state that outlives plans, and the running listeners. Reload builds a
//! new plan beside the old one and swaps it only if it is valid and its sockets bind.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use super::listeners::{Drain, ListenerHost, ListenerKind, PlanSource, Running};
use crate::acme::Http01Answers;
use crate::balance::SplitMix;
use crate::canary::{Controls, RouteControl};
use crate::config::{self, ADMIN_EXPOSED, CompileContext, ConfigErrors, Plan};
use crate::pipeline::GatewayState;
use crate::routing::GatewayListener;
use crate::security::audit::AuditLog;
use crate::telemetry::Telemetry;
use crate::upstream::LoadMetrics;
use crate::upstream::health::HealthCheck;
use crate::upstream::{EndpointKey, Registry};

/// Why a reload (or the first start) did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("invalid config:\n{0}")]
    Invalid(#[from] ConfigErrors),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("this gateway was started from built-in config text; there is no file to reload")]
    NoFile,
    #[error("shutting down: the config is no longer reloaded")]
    Draining,
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
}

/// The state every plan of a gateway shares, created before its first plan.
#[derive(Default)]
struct Shared {
    registry: Registry,
    telemetry: Arc<Telemetry>,
    audit: Arc<AuditLog>,
    controls: Arc<Controls>,
}

impl Shared {
    fn context<'a>(&'a self, rng: &Arc<SplitMix>) -> CompileContext<'a> {
        CompileContext {
            registry: &self.registry,
            telemetry: &self.telemetry,
            audit: &self.audit,
            controls: &self.controls,
            rng: rng.clone(),
        }
    }
}

/// A running canary analysis and the control it watches.
type CanaryTask = (Arc<RouteControl>, JoinHandle<()>);

pub struct Gateway {
    plan: ArcSwap<Plan>,
    registry: Registry,
    pub telemetry: Arc<Telemetry>,
    /// Runtime split weights and canaries by route.
    pub controls: Arc<Controls>,
    /// The tamper-evident log of security decisions and admin actions.
    pub audit: Arc<AuditLog>,
    pub(super) rng: Arc<SplitMix>,
    config_path: Option<PathBuf>,
    reload_lock: tokio::sync::Mutex<()>,
    /// Running proxy listeners by name, and the admin listener.
    listeners: Mutex<HashMap<Arc<str>, Running>>,
    admin: Mutex<Option<Running>>,
    draining: AtomicBool,
    pub(super) drain: Drain,
    /// One active health checker per endpoint, however many routes use its pool.
    pub(super) checkers: Mutex<HashMap<EndpointKey, (HealthCheck, JoinHandle<()>)>>,
    /// One load poll per endpoint of a `least_queue` pool with `load_metrics`.
    pub(super) pollers: Mutex<HashMap<EndpointKey, (LoadMetrics, JoinHandle<()>)>>,
    /// One analysis task per route under canary analysis.
    pub(super) canaries: Mutex<HashMap<String, CanaryTask>>,
    /// One certificate file watcher per TLS listener with `watch`.
    cert_watchers: Mutex<super::cert_watch::Watchers>,
    /// HTTP-01 tokens of ACME orders in flight, answered on every listener.
    acme_answers: Arc<Http01Answers>,
    /// One ACME issuer per listener with `tls.acme`, kept across reloads.
    acme_issuers: Mutex<super::acme_issuers::Issuers>,
    /// Listening sockets handed over by the process this one replaces, waiting for the
    /// listener that takes them (see `upgrade`).
    inherited: Mutex<Vec<HandedSocket>>,
    /// The task sharing canary state through `[fleet] backend`, with its settings.
    pub(super) fleet: Mutex<Option<(crate::canary::FleetSettings, JoinHandle<()>)>>,
}

/// A listening socket passed from one process to the next in a binary upgrade.
pub struct HandedSocket {
    /// "admin", or the proxy listener's name.
    pub listener: String,
    /// The address as configured (port 0 stays 0): the new process takes the socket
    /// only for a listener with the same name and configured address.
    pub configured: SocketAddr,
    pub socket: std::os::fd::OwnedFd,
}

/// An endpoint's health verdicts, passed to the next process in a binary upgrade so that
/// an endpoint known to be down stays out until its checks pass `rise` times.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EndpointVerdict {
    pub pool: String,
    pub url: String,
    /// The active checks' verdict.
    pub up: bool,
    /// Time left in an outlier ejection.
    pub ejected_ms: Option<u64>,
}

/// What `shutdown` is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shutdown {
    /// SIGTERM: the admin API keeps answering (`/readyz` 503) until the drain ends.
    Exit,
    /// A new process took the sockets over: stop the admin API at once (the new one
    /// answers on the same socket) and give busy keep-alive connections a moment to be
    /// told `Connection: close` before idle ones are closed.
    HandedOver,
}

/// How long, after a handover, connections have to end on an answer of their own
/// (`Connection: close`) before idle ones are closed.
const HANDOVER_LINGER: Duration = Duration::from_secs(1);

/// What the listeners use of the gateway that runs them (`listeners.rs`).
impl ListenerHost for Gateway {
    fn drain(&self) -> &Drain {
        &self.drain
    }
}

impl PlanSource for Gateway {
    fn plan(&self) -> Arc<Plan> {
        Gateway::plan(self)
    }
}

/// What the engines use of the gateway (they know it only by this trait).
impl GatewayState for Gateway {
    fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    fn rng(&self) -> &SplitMix {
        &self.rng
    }

    fn draining_flag(&self) -> &AtomicBool {
        &self.draining
    }

    fn listener(&self, name: &str) -> Option<Arc<GatewayListener>> {
        self.plan
            .load()
            .listener(name)
            .map(|listener| listener.gateway.clone())
    }

    fn acme_answers(&self) -> &Http01Answers {
        &self.acme_answers
    }

    fn is_admin_token(&self, token: &[u8]) -> bool {
        self.plan
            .load()
            .admin_token
            .as_deref()
            .is_some_and(|expected| crate::security::constant_time_eq(expected.as_bytes(), token))
    }
}

impl Gateway {
    /// The table an `acme::Acme` puts its HTTP-01 tokens in, for the listeners to answer.
    pub fn acme_answers(&self) -> &Arc<Http01Answers> {
        &self.acme_answers
    }

    /// The ACME issuer of TLS listener `listener` (its `tls.acme` section), if it has one
    /// running: `published()` is what the listener serves for its domains.
    pub fn acme_issuer(&self, listener: &str) -> Option<Arc<crate::acme::Acme>> {
        self.acme_issuers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(listener)
            .map(|(acme, _)| acme.clone())
    }

    /// Loads the config file and builds a gateway (not yet listening).
    pub fn from_file(path: PathBuf, rng: Arc<SplitMix>) -> Result<Arc<Self>, ConfigErrors> {
        Self::from_file_handed(path, rng, None)
    }

    /// As `from_file`, resuming from the weights and canary phases `handed` by the
    /// process this one replaces (newer than any state file).
    pub fn from_file_handed(
        path: PathBuf,
        rng: Arc<SplitMix>,
        handed: Option<crate::canary::StateFile>,
    ) -> Result<Arc<Self>, ConfigErrors> {
        let shared = Shared::default();
        let mut plan = config::load_file(&path, &shared.context(&rng))?;
        if let Some(state) = handed {
            shared.controls.restore(state);
            shared.controls.set_state_file(plan.state_file.clone());
            plan = config::load_file(&path, &shared.context(&rng))?;
        } else if let Some(state_file) = plan.state_file.clone() {
            // Runtime weights and canary phases from the last run, then compile again so
            // the routes resume from them.
            shared.controls.load_state(Some(state_file)).map_err(|e| {
                let error = config::ConfigError {
                    path: "server.state_file".into(),
                    line: None,
                    message: e.to_string(),
                };
                ConfigErrors(vec![error])
            })?;
            plan = config::load_file(&path, &shared.context(&rng))?;
        }
        Ok(Self::new(plan, shared, rng, Some(path)))
    }

    /// Builds a gateway from config text (the demo, tests); `base` resolves relative paths.
    pub fn from_str(
        text: &str,
        base: &std::path::Path,
        rng: Arc<SplitMix>,
    ) -> Result<Arc<Self>, ConfigErrors> {
        let shared = Shared::default();
        let plan = config::load_str(text, base, &shared.context(&rng))?;
        Ok(Self::new(plan, shared, rng, None))
    }

    fn new(
        plan: Plan,
        shared: Shared,
        rng: Arc<SplitMix>,
        config_path: Option<PathBuf>,
    ) -> Arc<Self> {
        let Shared {
            registry,
            telemetry,
            audit,
            controls,
        } = shared;
        // The admin API answers as soon as its socket is bound: the routes' controls must
        // be there before, not only after the first swap.
        controls.adopt(plan.route_controls());
        // The first plan is in force from here on: its endpoints' state is the registry's.
        registry.adopt(plan.endpoint_states());
        Arc::new(Gateway {
            plan: ArcSwap::from_pointee(plan),
            registry,
            telemetry,
            audit,
            controls,
            rng,
            config_path,
            reload_lock: tokio::sync::Mutex::new(()),
            listeners: Mutex::new(HashMap::new()),
            admin: Mutex::new(None),
            draining: AtomicBool::new(false),
            drain: Drain::default(),
            checkers: Mutex::new(HashMap::new()),
            pollers: Mutex::new(HashMap::new()),
            canaries: Mutex::new(HashMap::new()),
            cert_watchers: Mutex::new(HashMap::new()),
            acme_answers: Http01Answers::new(),
            acme_issuers: Mutex::new(HashMap::new()),
            inherited: Mutex::new(Vec::new()),
            fleet: Mutex::new(None),
        })
    }

    /// The plan in force now. Callers keep the `Arc` for the whole request, so a
    /// reload never changes a plan under a request in flight.
    pub fn plan(&self) -> Arc<Plan> {
        self.plan.load_full()
    }

    /// The endpoint state of the plan in force.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The process's random source (request ids, trace span ids).
    pub fn rng(&self) -> &SplitMix {
        &self.rng
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Set once shutdown has begun; read where a response head is written.
    pub fn draining_flag(&self) -> &AtomicBool {
        &self.draining
    }

    /// Binds the admin listener and every proxy listener of the current plan.
    pub async fn start(self: &Arc<Self>) -> Result<(), ReloadError> {
        // The admin API can ask for a reload as soon as its socket is bound, before this
        // call has recorded the listeners it started.
        let _serialised = self.reload_lock.lock().await;
        let plan = self.plan();
        let started = self.apply_listeners(&plan).await;
        // Handed-over sockets no listener took (renamed or moved in the new config).
        for unused in std::mem::take(&mut *self.inherited.lock().unwrap_or_else(|p| p.into_inner()))
        {
            tracing::info!(listener = %unused.listener, addr = %unused.configured, "handed-over socket not in this config; closed");
        }
        started
    }

    /// Sockets handed over by the process this one replaces; `start` serves on them
    /// instead of binding where name and configured address match.
    pub fn inherit(&self, sockets: Vec<HandedSocket>) {
        *self.inherited.lock().unwrap_or_else(|p| p.into_inner()) = sockets;
    }

    /// For a binary upgrade: stops the canary analyses (the successor resumes them from
    /// the snapshot, so the two never both step a canary) and returns a second
    /// descriptor of every listening socket with the weights and phases now.
    /// `resume_after_failed_handover` undoes the stop.
    pub(super) async fn handover_snapshot(&self) -> (Vec<HandedSocket>, crate::canary::StateFile) {
        let _serialised = self.reload_lock.lock().await;
        abort_tasks(&self.canaries);
        let mut sockets = Vec::new();
        let copy = |name: &str, running: &Running, sockets: &mut Vec<HandedSocket>| match running
            .socket
            .try_clone()
        {
            Ok(socket) => sockets.push(HandedSocket {
                listener: name.to_string(),
                configured: running.configured,
                socket,
            }),
            Err(error) => {
                tracing::error!(%error, listener = name, "cannot copy a listening socket for the upgrade; the new process binds it")
            }
        };
        if let Some(admin) = &*self.admin.lock().unwrap_or_else(|p| p.into_inner()) {
            copy("admin", admin, &mut sockets);
        }
        for (name, running) in self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            copy(name, running, &mut sockets);
        }
        (sockets, self.controls.snapshot())
    }

    /// The endpoints of the plan in force that are down or ejected (the others are up,
    /// as a new process assumes anyway).
    pub(super) fn endpoint_verdicts(&self) -> Vec<EndpointVerdict> {
        let plan = self.plan();
        let mut verdicts = Vec::new();
        for pool in &plan.pools {
            for endpoint in &pool.endpoints {
                let health = &endpoint.state.health;
                let ejected = health.ejected_for();
                if !health.is_active_up() || ejected.is_some() {
                    verdicts.push(EndpointVerdict {
                        pool: pool.name.to_string(),
                        url: endpoint.url.to_string(),
                        up: health.is_active_up(),
                        ejected_ms: ejected.map(|d| d.as_millis() as u64),
                    });
                }
            }
        }
        verdicts
    }

    /// Takes the verdicts the process this one replaces handed over, for the endpoints
    /// this config still has (call before `start`, which starts the checks).
    pub fn restore_verdicts(&self, verdicts: &[EndpointVerdict]) {
        let plan = self.plan();
        for verdict in verdicts {
            let endpoint = plan
                .pools
                .iter()
                .filter(|pool| *pool.name == *verdict.pool)
                .flat_map(|pool| &pool.endpoints)
                .find(|endpoint| *endpoint.url == *verdict.url);
            let Some(endpoint) = endpoint else { continue };
            if !verdict.up {
                endpoint.state.health.set_active(false);
            }
            if let Some(ms) = verdict.ejected_ms {
                endpoint.state.health.eject_for(Duration::from_millis(ms));
            }
        }
    }

    /// The successor did not take over: the analyses run on here.
    pub(super) fn resume_after_failed_handover(&self) {
        self.supervise_canaries(&self.plan());
    }

    /// The address a listener actually bound (differs from the config for port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|r| r.local_addr)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.local_addr)
    }

    /// Re-reads the config file; swaps the new plan in if it is valid and its new
    /// sockets bind, else keeps the old one serving and returns why.
    ///
    /// Boxed because the admin API, served by a listener this very call may start,
    /// calls it too: the future type would otherwise contain itself.
    pub fn reload(
        self: &Arc<Self>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ReloadError>> + Send + '_>>
    {
        Box::pin(self.reload_inner())
    }

    async fn reload_inner(self: &Arc<Self>) -> Result<(), ReloadError> {
        let _serialised = self.reload_lock.lock().await;
        // Shutdown has taken the listeners away; a reload would bind them again.
        if self.is_draining() {
            return Err(ReloadError::Draining);
        }
        let Some(path) = &self.config_path else {
            return Err(ReloadError::NoFile);
        };
        let context = CompileContext {
            registry: &self.registry,
            telemetry: &self.telemetry,
            audit: &self.audit,
            controls: &self.controls,
            rng: self.rng.clone(),
        };
        let compiled = config::load_file(path, &context);
        let result = match compiled {
            Ok(plan) => {
                let plan = Arc::new(plan);
                self.apply_listeners(&plan).await
            }
            Err(errors) => Err(ReloadError::Invalid(errors)),
        };
        let outcome = match &result {
            Ok(()) => serde_json::json!({ "action": "reload", "outcome": "reloaded" }),
            Err(error) => {
                serde_json::json!({ "action": "reload", "outcome": "refused", "error": error.to_string() })
            }
        };
        self.audit.record("admin", outcome);
        match &result {
            Ok(()) => tracing::info!(config = %path.display(), "config reloaded"),
            Err(error) => {
                tracing::error!(config = %path.display(), %error, "reload refused; the previous config keeps serving")
            }
        }
        result
    }

    /// Brings the running sockets in line with `plan` and swaps it in:
    /// 1. bind sockets on addresses no running listener holds (failure: nothing changed);
    /// 2. swap the plan;
    /// 3. stop listeners the plan no longer has, then bind the addresses they freed.
    async fn apply_listeners(self: &Arc<Self>, plan: &Arc<Plan>) -> Result<(), ReloadError> {
        if plan.admin_exposed_without_token() {
            tracing::warn!(bind = %plan.admin_bind, "{ADMIN_EXPOSED}");
        }
        for warning in &plan.warnings {
            tracing::warn!("config: {warning}");
        }
        let (to_stop, fresh, handed_over) = {
            let running = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            let keep = |name: &str, bind: SocketAddr| {
                running.get(name).is_some_and(|r| r.configured == bind)
            };
            let to_stop: Vec<Arc<str>> = running
                .iter()
                .filter(|(name, r)| plan.listener(name).is_none_or(|l| l.bind != r.configured))
                .map(|(name, _)| name.clone())
                .collect();
            let held_by_stopping = |bind: SocketAddr| {
                bind.port() != 0 && to_stop.iter().any(|name| running[name].configured == bind)
            };
            let (handed_over, fresh): (Vec<_>, Vec<_>) = plan
                .listeners
                .iter()
                .filter(|l| !keep(&l.name, l.bind))
                .map(|l| (l.name.clone(), l.bind))
                .partition(|(_, bind)| held_by_stopping(*bind));
            (to_stop, fresh, handed_over)
        };

        // 1. Bind what can be bound without stopping anything; open the access log.
        let current_admin = self
            .admin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.configured);
        let new_admin = if current_admin != Some(plan.admin_bind) {
            Some(self.bind(ListenerKind::Admin, plan.admin_bind).await?)
        } else {
            None
        };
        let mut bound = Vec::new();
        let mut failure = None;
        for (name, bind) in &fresh {
            match self.bind(ListenerKind::Proxy(name.clone()), *bind).await {
                Ok(running) => bound.push((name.clone(), running)),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if failure.is_none()
            && let Err(error) = self.telemetry.access_log.apply(plan.access_log.as_ref())
        {
            failure = Some(ReloadError::AccessLog(error));
        }
        if failure.is_none()
            && let Err(error) = self.audit.apply(plan.audit.as_ref())
        {
            failure = Some(ReloadError::AccessLog(error));
        }
        if let Some(error) = failure {
            // Undo: close what this attempt opened; the running set is untouched.
            for (_, running) in bound {
                running.stop().await;
            }
            if let Some(admin) = new_admin {
                admin.stop().await;
            }
            return Err(error);
        }

        // 2. Swap (the new resolvers get their ACME issuers before any handshake).
        super::acme_issuers::supervise(
            &mut self.acme_issuers.lock().unwrap_or_else(|p| p.into_inner()),
            plan,
            &self.acme_answers,
        );
        self.plan.store(plan.clone());
        self.registry.adopt(plan.endpoint_states());
        self.telemetry.set_metrics_enabled(plan.metrics_enabled);
        self.telemetry.metrics.adopt(plan.route_metrics());
        self.supervise_health_checks(plan);
        self.supervise_load_polls(plan);
        self.controls.adopt(plan.route_controls());
        self.controls.set_state_file(plan.state_file.clone());
        self.supervise_fleet(plan);
        self.supervise_canaries(plan);
        super::cert_watch::supervise(
            &mut self.cert_watchers.lock().unwrap_or_else(|p| p.into_inner()),
            plan,
            &self.telemetry,
        );
        for egress in plan.listeners.iter().filter_map(|l| l.egress.as_ref()) {
            egress.start();
        }

        // 3. Stop what left, start what was waiting for its address.
        let stopped: Vec<Running> = {
            let mut running = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            let stopped = to_stop
                .iter()
                .filter_map(|name| running.remove(name))
                .collect();
            running.extend(bound);
            stopped
        };
        for listener in stopped {
            listener.stop().await;
        }
        if let Some(admin) = new_admin {
            let old = self
                .admin
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .replace(admin);
            if let Some(old) = old {
                old.stop().await;
            }
        }
        for (name, bind) in handed_over {
            match self.bind(ListenerKind::Proxy(name.clone()), bind).await {
                Ok(running) => {
                    self.listeners
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name, running);
                }
                Err(error) => {
                    tracing::error!(%error, listener = %name, "listener could not take over its address")
                }
            }
        }
        Ok(())
    }

    async fn bind(
        self: &Arc<Self>,
        kind: ListenerKind,
        addr: SocketAddr,
    ) -> Result<Running, ReloadError> {
        let what = match &kind {
            ListenerKind::Admin => "the admin listener".to_string(),
            ListenerKind::Proxy(name) => format!("listener {name:?}"),
        };
        let key = match &kind {
            ListenerKind::Admin => "admin",
            ListenerKind::Proxy(name) => &**name,
        };
        let inherited = {
            let mut inherited = self.inherited.lock().unwrap_or_else(|p| p.into_inner());
            inherited
                .iter()
                .position(|h| h.listener == key && h.configured == addr)
                .map(|at| std::net::TcpListener::from(inherited.swap_remove(at).socket))
        };
        let running = Running::start(self.clone(), kind, addr, inherited)
            .await
            .map_err(|source| ReloadError::Bind {
                what: what.clone(),
                addr,
                source,
            })?;
        tracing::info!(addr = %running.local_addr, "{what} listening");
        Ok(running)
    }

    /// Stops accepting, lets in-flight requests finish for up to the plan's grace
    /// period, then returns.
    pub async fn shutdown(&self) {
        self.shutdown_as(Shutdown::Exit).await
    }

    /// The shutdown of a process whose sockets a successor took over.
    pub(super) async fn shutdown_handed_over(&self) {
        self.shutdown_as(Shutdown::HandedOver).await
    }

    async fn shutdown_as(&self, why: Shutdown) {
        self.draining.store(true, Ordering::Relaxed);
        if why == Shutdown::HandedOver {
            // The successor saves the state from now on.
            self.controls.set_state_file(None);
        }
        abort_tasks(&self.checkers);
        abort_tasks(&self.pollers);
        abort_tasks(&self.canaries);
        abort_tasks(&self.cert_watchers);
        abort_tasks(&self.acme_issuers);
        if let Some((_, task)) = self.fleet.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        // A reload under way finishes first; later ones see `draining` and refuse.
        let serialised = self.reload_lock.lock().await;
        let listeners: Vec<Running> = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, r)| r)
            .collect();
        drop(serialised);
        for listener in listeners {
            listener.stop().await;
        }
        let grace = self.plan().shutdown_grace;
        if why == Shutdown::HandedOver {
            let admin = self.admin.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(admin) = admin {
                admin.stop().await;
            }
            self.drain.linger(HANDOVER_LINGER.min(grace)).await;
        }
        if !self.drain.drain(grace).await {
            tracing::warn!(
                ?grace,
                "grace period over with connections still open; closing them"
            );
        }
        let admin = self.admin.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(admin) = admin {
            admin.stop().await;
        }
        // Write out the queued access log lines (bounded: a blocked log must not hold the exit).
        let telemetry = self.telemetry.clone();
        let _ =
            tokio::task::spawn_blocking(move || telemetry.access_log.close(Duration::from_secs(2)))
                .await;
        // The audit log's last lines and its final anchor, so its end can be verified.
        let audit = self.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.close()).await;
    }

    /// Open downstream connections (proxy listeners only).
    pub fn open_connections(&self) -> usize {
        self.drain.open()
    }

    /// Time a shutdown would wait for in-flight requests.
    pub fn shutdown_grace(&self) -> Duration {
        self.plan().shutdown_grace
    }
}

/// Aborts and forgets every task of a per-key task table (health checkers, load polls,
/// canary analyses, certificate watchers, ACME issuers).
fn abort_tasks<K, V>(tasks: &Mutex<HashMap<K, (V, JoinHandle<()>)>>) {
    let mut tasks = tasks.lock().unwrap_or_else(|p| p.into_inner());
    for (_, (_, task)) in tasks.drain() {
        task.abort();
    }
}
