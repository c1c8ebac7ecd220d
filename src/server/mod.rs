//! The running server: the [`Gateway`] (current plan, endpoint state, reload), the
//! listeners that accept connections and serve HTTP/1.1 and HTTP/2 on them, and the
//! process lifecycle (signals, graceful drain).

mod gateway;
mod listeners;
pub mod tls;

use std::sync::Arc;

pub use gateway::{Gateway, ReloadError};

/// Runs until SIGTERM or SIGINT, reloading on SIGHUP; then drains and returns.
pub async fn run_until_signalled(gateway: Arc<Gateway>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                // The outcome is logged by reload itself.
                let _ = gateway.reload().await;
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    gateway.shutdown().await;
    Ok(())
}
