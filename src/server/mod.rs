//! The running server: the [`Gateway`] (current plan, endpoint state, reload), the
//! listeners that accept connections and serve HTTP/1.1 and HTTP/2 on them, and the
//! process lifecycle (signals, graceful drain, binary upgrades, systemd readiness).

mod acme_issuers;
mod cert_watch;
mod gateway;
mod listeners;
pub mod notify;
mod slow_heads;
mod supervise;
pub mod upgrade;

use std::sync::Arc;

pub use gateway::{EndpointVerdict, Gateway, HandedSocket, ReloadError};
pub use listeners::AdminApi;
use upgrade::UpgradeSocket;

/// The signals the process answers, caught from [`Signals::install`] on. Install them
/// before the listeners start: a SIGHUP or SIGTERM that arrives once a listener has
/// logged its address must reload or drain, not meet the default action (exit).
pub struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
    user2: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            user1: signal(SignalKind::user_defined1())?,
            user2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Runs until SIGTERM or SIGINT, reloading on SIGHUP; then drains and returns. With
    /// an upgrade socket, also until a new process has taken the sockets over (SIGUSR2
    /// starts one).
    pub async fn run(mut self, gateway: Arc<Gateway>, upgrades: Option<UpgradeSocket>) {
        let handed_over = async {
            match &upgrades {
                Some(upgrades) => upgrades.serve(&gateway).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(handed_over);
        loop {
            tokio::select! {
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the config");
                    // The outcome is logged by reload itself.
                    let _ = gateway.reload().await;
                }
                _ = self.user1.recv() => {
                    tracing::info!("SIGUSR1: reopening the access log");
                    gateway.telemetry.access_log.reopen();
                }
                _ = self.user2.recv() => match &upgrades {
                    Some(upgrades) => {
                        if let Err(error) = upgrade::start_successor(&upgrades.path) {
                            tracing::error!(%error, "SIGUSR2: cannot start the new process");
                        }
                    }
                    None => tracing::warn!("SIGUSR2: no upgrade socket (junction run --upgrade-socket PATH); ignored"),
                },
                () = &mut handed_over => {
                    tracing::info!("upgrade: the new process serves; no new connections here, draining");
                    gateway.shutdown_handed_over().await;
                    tracing::info!("upgrade: drained; exiting");
                    return;
                }
                _ = self.terminate.recv() => break,
                _ = self.interrupt.recv() => break,
            }
        }
        notify::stopping();
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        gateway.shutdown().await;
    }
}
