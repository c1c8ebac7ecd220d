//! The ACME certificates of TLS listeners: one `acme::Acme` per listener with a
//! `tls.acme` section, kept across reloads (renewal task and all) while its settings stay
//! the same, replaced when they change, stopped when the listener goes; each is plugged
//! into its listener's SNI resolver, which serves its certificate once published.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::acme::{Acme, Http01Answers};
use crate::config::Plan;

/// The running issuers, by listener name, with their ensure-then-renew task.
pub(super) type Issuers = HashMap<Arc<str>, (Arc<Acme>, JoinHandle<()>)>;

/// Brings `issuers` in line with `plan` and plugs each into its listener's resolver
/// (a reload builds new resolvers). Issuance runs in the background: a listener starts
/// without waiting for the ACME server.
pub(super) fn supervise(issuers: &mut Issuers, plan: &Plan, answers: &Arc<Http01Answers>) {
    let mut wanted = HashSet::new();
    for listener in &plan.listeners {
        let (Some(tls), Some(settings)) = (&listener.tls, &listener.acme) else {
            continue;
        };
        wanted.insert(listener.name.clone());
        let same = issuers
            .get(&listener.name)
            .is_some_and(|(acme, _)| acme.settings() == settings);
        if !same {
            let acme = Acme::new(settings.clone(), answers.clone());
            let task = acme.spawn();
            tracing::info!(listener = %listener.name, domains = ?settings.domains, "acme: issuer started");
            if let Some((_, old)) = issuers.insert(listener.name.clone(), (acme, task)) {
                old.abort();
            }
        }
        if let Some((acme, _)) = issuers.get(&listener.name) {
            tls.certs.set_acme(Box::new(acme.resolver()));
        }
    }
    issuers.retain(|name, (_, task)| {
        let keep = wanted.contains(name);
        if !keep {
            tracing::info!(listener = %name, "acme: issuer stopped");
            task.abort();
        }
        keep
    });
}
