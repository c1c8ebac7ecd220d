//! Certificate files watched by polling: each TLS listener with `watch` has a task that
//! reads its files at that interval and swaps in the certificates that changed (new
//! handshakes get them, open connections keep theirs). A file that does not load is
//! refused, logged and counted; the certificate before it keeps serving.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::Plan;
use crate::telemetry::Telemetry;
use crate::tls::{ListenerTls, Refresh};

/// The running watchers, by listener name, with the TLS each one watches.
pub(super) type Watchers = HashMap<Arc<str>, (Arc<ListenerTls>, JoinHandle<()>)>;

/// One watcher per TLS listener of `plan` that has `watch`: a listener whose TLS was
/// rebuilt by a reload gets a new one; watchers of listeners gone are stopped.
pub(super) fn supervise(watchers: &mut Watchers, plan: &Plan, telemetry: &Arc<Telemetry>) {
    let mut wanted = std::collections::HashSet::new();
    for listener in &plan.listeners {
        let Some(tls) = &listener.tls else { continue };
        let Some(every) = tls.watch else { continue };
        wanted.insert(listener.name.clone());
        if watchers
            .get(&listener.name)
            .is_some_and(|(watched, _)| Arc::ptr_eq(watched, tls))
        {
            continue;
        }
        let task = tokio::spawn(watch(
            listener.name.clone(),
            Arc::downgrade(tls),
            every,
            telemetry.clone(),
        ));
        if let Some((_, old)) = watchers.insert(listener.name.clone(), (tls.clone(), task)) {
            old.abort();
        }
    }
    watchers.retain(|name, (_, task)| {
        let keep = wanted.contains(name);
        if !keep {
            task.abort();
        }
        keep
    });
}

async fn watch(
    listener: Arc<str>,
    tls: Weak<ListenerTls>,
    every: Duration,
    telemetry: Arc<Telemetry>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: the files were just loaded.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(tls) = tls.upgrade() else { return };
        let certs = tls.certs.clone();
        drop(tls);
        // File reads and key parsing: off the async workers.
        let Ok(refresh) = tokio::task::spawn_blocking(move || certs.refresh()).await else {
            continue;
        };
        record(&listener, refresh, &telemetry);
    }
}

fn record(listener: &Arc<str>, refresh: Refresh, telemetry: &Telemetry) {
    for path in refresh.reloaded {
        tracing::info!(%listener, cert = %path.display(), "certificate reloaded");
        telemetry.metrics.count_tls_reload(listener, "reloaded");
    }
    for error in refresh.refused {
        tracing::error!(%listener, %error, "certificate refused; the previous one keeps serving");
        telemetry.metrics.count_tls_reload(listener, "refused");
    }
}
