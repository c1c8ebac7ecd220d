//! Listening sockets and the connections they accept: TLS when the listener has it,
//! then the HTTP/1.1 fast path while it takes the requests, and hyper-util's auto server
//! for the rest (HTTP/1.1, HTTP/2 by ALPN or the h2c preface, upgrades). Connections
//! take part in the graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::slow_heads::{self, HeadWatch};
use crate::config::DEFAULT_MAX_REQUEST_HEAD;
use crate::config::Plan;
use crate::fastpath;
use crate::pipeline::{Downstream, GatewayState, handler};
use crate::security::client_slots::ClientCounts;

/// Time a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a complete request head (HTTP/1.1).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub enum ListenerKind {
    Proxy(Arc<str>),
    Admin,
}

/// A listening socket with its accept loop.
pub struct Running {
    /// The address as configured (port 0 stays 0): what reloads compare.
    pub configured: SocketAddr,
    /// The address actually bound.
    pub local_addr: SocketAddr,
    /// A second descriptor of the listening socket, for a binary upgrade to hand over.
    /// Dropped with the listener, so a stopped listener frees its address.
    pub(super) socket: std::os::fd::OwnedFd,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Serves `addr`: on `inherited`, a socket the previous process handed over, when
    /// there is one, else on a socket bound now.
    pub async fn start<H: ListenerHost>(
        gateway: Arc<H>,
        kind: ListenerKind,
        addr: SocketAddr,
        inherited: Option<std::net::TcpListener>,
    ) -> std::io::Result<Running> {
        let listener = match inherited {
            Some(socket) => {
                socket.set_nonblocking(true)?;
                TcpListener::from_std(socket)?
            }
            None => TcpListener::bind(addr).await?,
        };
        let local_addr = listener.local_addr()?;
        let socket = std::os::fd::AsFd::as_fd(&listener).try_clone_to_owned()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, gateway, kind, stopped));
        Ok(Running {
            configured: addr,
            local_addr,
            socket,
            stop,
            task,
        })
    }

    /// Stops accepting and closes the socket; open connections carry on.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop<H: ListenerHost>(
    listener: TcpListener,
    gateway: Arc<H>,
    kind: ListenerKind,
    mut stop: watch::Receiver<bool>,
) {
    // Read when the listener starts: changes apply to listeners started later (a new
    // bind or a restart), not to a socket a reload keeps.
    let settings = match &kind {
        ListenerKind::Proxy(name) => gateway
            .plan()
            .listener(name)
            .map(|l| (l.header_read_timeout, l.max_request_head())),
        ListenerKind::Admin => None,
    };
    let (header_read_timeout, max_head) =
        settings.unwrap_or((HEADER_READ_TIMEOUT, DEFAULT_MAX_REQUEST_HEAD));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's buffer limit is approximate (a read may take it past the limit): it gets
    // room to spare, and the handler measures each head against the limit exactly.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(max_head + max_head / 4 + 16 * 1024);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let per_client: Arc<ClientCounts> = Arc::default();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let builder = builder.clone();
        match &kind {
            ListenerKind::Proxy(name) => {
                let cap = gateway
                    .plan()
                    .listener(name)
                    .and_then(|l| l.max_connections_per_client);
                let Some(slot) = per_client.take(peer.ip(), cap) else {
                    tracing::debug!(%peer, "connection refused: too many from this client address");
                    gateway.telemetry().metrics.count_decision(
                        &format!("listener:{name} max_connections_per_client"),
                        "deny",
                    );
                    continue;
                };
                let name = name.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    serve_proxy(gateway, builder, name, stream, peer).await;
                });
            }
            ListenerKind::Admin => {
                tokio::spawn(serve_admin(gateway, builder, stream));
            }
        }
    }
}

async fn serve_proxy<H: ListenerHost>(
    gateway: Arc<H>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    name: Arc<str>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let _open = gateway.drain().track();
    let _counted = OpenGauge::new(gateway.telemetry().metrics.listener_connections(&name));
    let plan = gateway.plan();
    let Some(listener) = plan.listener(&name) else {
        return;
    };
    if let Some(egress) = &listener.egress
        && egress.protocol == crate::egress::ClientProtocol::Socks5
    {
        crate::egress::serve_socks5(stream, egress.clone(), peer).await;
        return;
    }
    let tls = listener
        .tls
        .as_ref()
        .map(|tls| (tls.config.clone(), tls.client_auth));
    let header_read_timeout = listener.header_read_timeout;
    let fast_path = listener.fast_path.then(|| fastpath::Settings {
        header_read_timeout: listener.header_read_timeout,
        body_timeouts: listener.body_timeouts,
        max_head: listener.max_request_head(),
    });
    let drained = gateway.drain().signal();
    let accepted_on = listener.gateway.clone();
    let egress = EgressDispatch {
        gateway: gateway.clone(),
        accepted_under: plan.clone(),
    };
    let listener_name = name.clone();
    let downstream = Downstream::new(gateway.clone(), accepted_on, peer, name, tls.is_some());
    match tls {
        Some((config, client_auth)) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let accepted =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            if let Ok(Ok(stream)) = &accepted {
                let kind = match stream.get_ref().1.handshake_kind() {
                    Some(rustls::HandshakeKind::Resumed) => "resumed",
                    _ => "full",
                };
                gateway
                    .telemetry()
                    .metrics
                    .count_tls_handshake(&listener_name, kind);
            }
            match accepted {
                Ok(Ok(stream))
                    if stream.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) =>
                {
                    // A TLS-ALPN-01 check: the handshake was the answer; no HTTP on it.
                    tracing::debug!(%peer, "acme-tls/1 handshake answered; closing");
                }
                Ok(Ok(stream)) => {
                    // rustls verified the chain; only the leaf's names are read here.
                    let identity = client_auth
                        .then(|| stream.get_ref().1.peer_certificates())
                        .flatten()
                        .and_then(|chain| chain.first())
                        .and_then(crate::tls::ClientIdentity::from_der);
                    let downstream = Arc::new(downstream.with_identity(identity));
                    // HTTP/2 (by ALPN) is hyper's; HTTP/1.1 tries the fast path first.
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let fast_path = fast_path.filter(|_| !h2);
                    serve_http(
                        &builder,
                        stream,
                        downstream,
                        egress,
                        fast_path,
                        header_read_timeout,
                        drained,
                    )
                    .await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
        None => {
            serve_http(
                &builder,
                stream,
                Arc::new(downstream),
                egress,
                fast_path,
                header_read_timeout,
                drained,
            )
            .await
        }
    }
}

/// Where a connection's requests go when its listener is an `[[egress]]` one: the
/// listener's forward proxy in the plan in force, or in the plan the connection was
/// accepted under when a reload removed the listener (to finish on).
struct EgressDispatch {
    gateway: Arc<dyn PlanSource>,
    accepted_under: Arc<crate::config::Plan>,
}

impl EgressDispatch {
    fn current(&self, listener: &str) -> Option<Arc<crate::egress::EgressPlan>> {
        let current = self.gateway.plan();
        let plan = if current.listener(listener).is_some() {
            &current
        } else {
            &self.accepted_under
        };
        plan.listener(listener).and_then(|l| l.egress.clone())
    }
}

/// Serves a client connection (after TLS, if any): on the HTTP/1.1 fast path while it
/// takes the requests, then (or from the start) on hyper's server.
async fn serve_http<S>(
    builder: &auto::Builder<TokioExecutor>,
    mut stream: S,
    downstream: Arc<Downstream>,
    egress: EgressDispatch,
    fast_path: Option<fastpath::Settings>,
    header_read_timeout: Duration,
    mut drained: watch::Receiver<bool>,
) where
    S: fastpath::ClientStream + 'static,
{
    let prefix = match &fast_path {
        Some(settings) => {
            match fastpath::serve(&mut stream, &downstream, &mut drained, settings).await {
                fastpath::Ended::Closed => return,
                fastpath::Ended::HandOff(prefix) => prefix,
            }
        }
        None => Bytes::new(),
    };
    // Egress listeners are dispatched here, per request (a reload may change what the
    // listener is): the gateway's handler knows nothing of egress.
    let egress = Arc::new(egress);
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let downstream = downstream.clone();
        let egress = egress.clone();
        // Boxed: the request's future is some 8 KB (the whole pipeline's state), and
        // hyper moves it by value into the task it spawns for each HTTP/2 stream, and
        // tokio again as that task runs and ends; boxed, only a pointer moves. The box
        // is made before the future, so that the future can be written straight into it
        // rather than copied there from the stack.
        let slot = Box::new_uninit();
        Box::into_pin(Box::write(slot, async move {
            let http1 = request.version() < http::Version::HTTP_2;
            let mut response = match egress.current(&downstream.listener) {
                Some(plan) => crate::egress::handle(request, &plan, downstream.peer).await,
                None => handler::handle(request, downstream.clone()).await?,
            };
            // While draining, an HTTP/1.1 connection closes after this answer, as on the
            // fast path: the client learns it before it sends another request, instead
            // of racing a close of the idle connection.
            if http1
                && downstream.gateway.is_draining()
                && response.status() != http::StatusCode::SWITCHING_PROTOCOLS
            {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok(response)
        }))
    });
    let (stream, timed_out) =
        HeadWatch::new(fastpath::Rewind::new(prefix, stream), header_read_timeout);
    serve(
        builder,
        TokioIo::new(stream),
        service,
        drained,
        Some(timed_out),
    )
    .await;
}

/// What the listeners need of the gateway that runs them, declared here where they are
/// served and implemented by `Gateway` (`gateway.rs`), which owns and starts them: the
/// two files do not import each other. Besides its supertraits (the per-request state
/// of `pipeline`, the admin API, the plan in force), the graceful drain.
pub trait ListenerHost: GatewayState + AdminApi + PlanSource + 'static {
    fn drain(&self) -> &Drain;
}

/// The plan in force. Apart from [`ListenerHost`] so that an egress connection can keep
/// it as a trait object (it looks its listener up again after a reload).
pub trait PlanSource: Send + Sync {
    fn plan(&self) -> Arc<Plan>;
}

/// The admin API as its listener serves it. Declared here, where it is served, and
/// implemented for the gateway by `admin` (a layer above), so that serving it needs no
/// import of the layer that answers it.
pub trait AdminApi {
    fn handle_admin(
        self: Arc<Self>,
        request: hyper::Request<Incoming>,
        local: SocketAddr,
    ) -> impl std::future::Future<
        Output = Result<hyper::Response<crate::pipeline::ProxyBody>, std::convert::Infallible>,
    > + Send
    + 'static;
}

async fn serve_admin<H: ListenerHost>(
    gateway: Arc<H>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
) {
    // Keep the sender alive: a dropped sender would read as "drained" at once.
    let (_never_sent, never_drained) = watch::channel(false);
    // The address this client reached: the admin's own, even while a reload that bound
    // it has not yet recorded it in the gateway.
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        gateway.clone().handle_admin(request, local)
    });
    serve(&builder, TokioIo::new(stream), service, never_drained, None).await;
}

async fn serve<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    drained: watch::Receiver<bool>,
    head_timed_out: Option<Arc<std::sync::atomic::AtomicBool>>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = hyper::Response<crate::pipeline::ProxyBody>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            // Tells the stream (when it drops, with the connection) to send a 408.
            if let (Err(error), Some(flag)) = (result, head_timed_out)
                && slow_heads::is_header_timeout(&*error) {
                    flag.store(true, Ordering::Relaxed);
                }
        }
        _ = until_drained(drained) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

async fn until_drained(mut drained: watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it before anything else awaits.
    let _ = drained.wait_for(|drained| *drained).await.map(|_| ());
}

/// One open connection in the `junction_active_connections` gauge of its listener.
struct OpenGauge(Arc<std::sync::atomic::AtomicI64>);

impl OpenGauge {
    fn new(gauge: Arc<std::sync::atomic::AtomicI64>) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        OpenGauge(gauge)
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts open proxy connections and tells them when to wind down.
pub struct Drain {
    open: AtomicUsize,
    all_closed: Notify,
    signal: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            open: AtomicUsize::new(0),
            all_closed: Notify::new(),
            signal: watch::channel(false).0,
        }
    }
}

pub struct OpenConnection<'a> {
    drain: &'a Drain,
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        if self.drain.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drain.all_closed.notify_waiters();
        }
    }
}

impl Drain {
    pub fn track(&self) -> OpenConnection<'_> {
        self.open.fetch_add(1, Ordering::AcqRel);
        OpenConnection { drain: self }
    }

    pub fn signal(&self) -> watch::Receiver<bool> {
        self.signal.subscribe()
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Waits up to `time` for the connections to close by themselves (draining answers
    /// carry `Connection: close`), before `drain` closes the idle ones.
    pub async fn linger(&self, time: Duration) {
        let _ = tokio::time::timeout(time, self.all_closed()).await;
    }

    async fn all_closed(&self) {
        loop {
            let notified = self.all_closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Asks every connection to finish its in-flight requests and close; true when all
    /// closed within `grace`.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.signal.send_replace(true);
        tokio::time::timeout(grace, self.all_closed()).await.is_ok()
    }
}
