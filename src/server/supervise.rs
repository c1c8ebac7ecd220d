//! The gateway's background tasks, matched to each plan as it is swapped in: active
//! health checks and load polls per endpoint, one canary analysis per route, and the
//! fleet sync of `[fleet]`.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::gateway::Gateway;
use crate::canary::RouteControl;
use crate::config::Plan;
use crate::upstream::health;
use crate::upstream::load_poll;
use crate::upstream::{Endpoint, EndpointKey, Pool};

impl Gateway {
    /// Starts, restarts (new settings) and stops active checkers to match `plan`. An
    /// endpoint keeps its checker and its verdict across reloads that keep its settings;
    /// one whose checks were removed is considered up again.
    pub(super) fn supervise_health_checks(&self, plan: &Plan) {
        let mut checkers = self.checkers.lock().unwrap_or_else(|p| p.into_inner());
        supervise_endpoint_tasks(
            &mut checkers,
            plan,
            |pool| pool.health.as_ref(),
            |endpoint| {
                endpoint.state.health.set_active(true);
            },
            |pool, endpoint, check| {
                tokio::spawn(health::run_checks(
                    pool.name.clone(),
                    endpoint.url.clone(),
                    health::ProbeTarget::new(endpoint, &pool.client),
                    Arc::downgrade(&endpoint.state),
                    check.clone(),
                ))
            },
        );
    }

    /// Starts, restarts (new settings) and stops load polls to match `plan`, as for
    /// checkers. An endpoint whose polls stop forgets its last report.
    pub(super) fn supervise_load_polls(&self, plan: &Plan) {
        let mut pollers = self.pollers.lock().unwrap_or_else(|p| p.into_inner());
        supervise_endpoint_tasks(
            &mut pollers,
            plan,
            |pool| pool.load_metrics.as_ref(),
            |endpoint| endpoint.state.load.clear(),
            |pool, endpoint, settings| {
                tokio::spawn(load_poll::run_polls(
                    pool.name.clone(),
                    endpoint.url.clone(),
                    health::ProbeTarget::new(endpoint, &pool.client),
                    Arc::downgrade(&endpoint.state),
                    settings.clone(),
                ))
            },
        );
    }

    /// Runs the fleet sync `[fleet]` asks for, restarted when its settings change. Until
    /// it holds the lease, this instance does not analyse.
    pub(super) fn supervise_fleet(&self, plan: &Plan) {
        let mut fleet = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
        if fleet.as_ref().map(|(settings, _)| settings) == plan.fleet.as_ref() {
            return;
        }
        if let Some((_, task)) = fleet.take() {
            task.abort();
        }
        let Some(settings) = plan.fleet.clone() else {
            self.controls.set_analysing(true);
            self.telemetry.metrics.set_fleet_leader(None);
            return;
        };
        self.controls.set_analysing(false);
        self.telemetry.metrics.set_fleet_leader(false);
        let instance = format!(
            "{}-{}-{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "junction".into()),
            std::process::id(),
            self.rng.next_u64() as u32
        );
        let task = tokio::spawn(crate::canary::run_fleet(
            settings.clone(),
            self.controls.clone(),
            self.telemetry.clone(),
            instance,
        ));
        *fleet = Some((settings, task));
    }

    /// Runs one analysis task per route with a canary; a route whose control was
    /// replaced (new targets, weights or policy) gets a new task.
    pub(super) fn supervise_canaries(&self, plan: &Plan) {
        let mut canaries = self.canaries.lock().unwrap_or_else(|p| p.into_inner());
        let wanted: Vec<Arc<RouteControl>> = plan
            .route_controls()
            .into_iter()
            .filter(|c| c.canary.is_some())
            .collect();
        canaries.retain(|_, (control, task)| {
            let keep = wanted.iter().any(|w| Arc::ptr_eq(w, control));
            if !keep {
                task.abort();
            }
            keep
        });
        for control in wanted {
            if canaries
                .get(&*control.route)
                .is_some_and(|(running, _)| Arc::ptr_eq(running, &control))
            {
                continue;
            }
            let task = tokio::spawn(crate::canary::run_analysis(
                Arc::downgrade(&control),
                self.controls.clone(),
            ));
            if let Some((_, old)) = canaries.insert(control.route.to_string(), (control, task)) {
                old.abort();
            }
        }
    }
}

/// One background task per endpoint whose pool asks for it (`settings_of`), matched to
/// `plan`: started for new endpoints, restarted when the settings changed, stopped (and
/// `on_stop` called) when the pool no longer asks or the endpoint is gone. A task whose
/// settings did not change keeps running across the reload.
fn supervise_endpoint_tasks<S: Clone + PartialEq>(
    tasks: &mut HashMap<EndpointKey, (S, JoinHandle<()>)>,
    plan: &Plan,
    settings_of: impl Fn(&Pool) -> Option<&S>,
    on_stop: impl Fn(&Endpoint),
    spawn: impl Fn(&Pool, &Endpoint, &S) -> JoinHandle<()>,
) {
    let mut wanted = std::collections::HashSet::new();
    for pool in &plan.pools {
        for endpoint in &pool.endpoints {
            let key = (
                pool.name.to_string(),
                endpoint.url.to_string(),
                pool.protocol,
            );
            let Some(settings) = settings_of(pool) else {
                if let Some((_, task)) = tasks.remove(&key) {
                    task.abort();
                    on_stop(endpoint);
                }
                continue;
            };
            wanted.insert(key.clone());
            if tasks
                .get(&key)
                .is_some_and(|(running, _)| running == settings)
            {
                continue;
            }
            let task = spawn(pool, endpoint, settings);
            if let Some((_, old)) = tasks.insert(key, (settings.clone(), task)) {
                old.abort();
            }
        }
    }
    tasks.retain(|key, (_, task)| {
        let keep = wanted.contains(key);
        if !keep {
            task.abort();
        }
        keep
    });
}
