//! The running server: the [`Gateway`] (current plan, endpoint state, reload), the
//! listeners that accept connections and serve HTTP/1.1 and HTTP/2 on them, and the
//! process lifecycle (signals, graceful drain).

mod cert_watch;
mod gateway;
mod listeners;
mod slow_heads;

use std::sync::Arc;

pub use gateway::{Gateway, ReloadError};
pub use listeners::AdminApi;

/// The signals the process answers, caught from [`Signals::install`] on. Install them
/// before the listeners start: a SIGHUP or SIGTERM that arrives once a listener has
/// logged its address must reload or drain, not meet the default action (exit).
pub struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            user1: signal(SignalKind::user_defined1())?,
        })
    }

    /// Runs until SIGTERM or SIGINT, reloading on SIGHUP; then drains and returns.
    pub async fn run(mut self, gateway: Arc<Gateway>) {
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
                _ = self.terminate.recv() => break,
                _ = self.interrupt.recv() => break,
            }
        }
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        gateway.shutdown().await;
    }
}
