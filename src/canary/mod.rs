//! Model versioning: splitting a route's traffic between pools (exact or sticky),
//! forcing a version, shadow traffic, runtime control of the weights, and automatic
//! canary analysis that promotes a healthy candidate step by step or rolls it back.
//! Runtime state lives in [`Controls`] by route name, survives reloads, and is saved
//! to a small state file so that it survives restarts too.

mod analysis;
mod fleet;
mod split;
mod state_file;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use analysis::{CanaryPhase, CanaryPolicy, CanaryRuntime, Tally, Transition};
pub use fleet::{DEFAULT_FLEET_LEASE, FleetSettings, run_fleet};
pub use split::Split;
pub use state_file::{SavedRoute, StateFile};

/// Runtime control of one route's split, shared by every plan that has the route with
/// the same targets and configured weights.
pub struct RouteControl {
    pub route: Arc<str>,
    /// Target pool names, in config order.
    pub pools: Vec<Arc<str>>,
    /// Weights as configured: a reload that changes them resets the runtime weights.
    pub configured: Vec<u32>,
    pub split: Split,
    pub canary: Option<CanaryRuntime>,
}

impl RouteControl {
    pub fn weights_by_pool(&self) -> Vec<(Arc<str>, u32)> {
        self.pools
            .iter()
            .cloned()
            .zip(self.split.weights())
            .collect()
    }

    pub fn index_of(&self, pool: &str) -> Option<usize> {
        self.pools.iter().position(|p| &**p == pool)
    }
}

/// All route controls, plus where their state is saved.
pub struct Controls {
    routes: Mutex<HashMap<String, Arc<RouteControl>>>,
    /// State restored from the state file, waiting for its route to be compiled.
    restored: Mutex<HashMap<String, SavedRoute>>,
    state_file: Mutex<Option<PathBuf>>,
    /// False while another instance of a fleet holds the analysis lease.
    analysing: AtomicBool,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            routes: Mutex::default(),
            restored: Mutex::default(),
            state_file: Mutex::default(),
            analysing: AtomicBool::new(true),
        }
    }
}

impl Controls {
    /// The control of a route with these targets: the running one when its targets and
    /// configured weights are unchanged, else a new one (from the state file if it
    /// saved this very configuration).
    pub fn route(
        &self,
        route: &str,
        pools: Vec<Arc<str>>,
        configured: Vec<u32>,
        canary: Option<CanaryPolicy>,
    ) -> Arc<RouteControl> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = routes.get(route) {
            let same_canary = match (&existing.canary, &canary) {
                (Some(running), Some(policy)) => running.policy == *policy,
                (None, None) => true,
                _ => false,
            };
            if existing.pools == pools && existing.configured == configured && same_canary {
                return existing.clone();
            }
        }
        let restored = self
            .restored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
            .cloned();
        let mut weights = configured.clone();
        let mut phase = None;
        if let Some(saved) = restored.filter(|s| {
            s.pools == pools.iter().map(|p| p.to_string()).collect::<Vec<_>>()
                && s.configured == configured
        }) {
            weights = saved.weights;
            phase = saved.canary;
        }
        let canary = canary.map(|policy| CanaryRuntime::new(policy, pools.len(), phase));
        if let Some(canary) = &canary {
            // Under analysis the phase decides the weights; a paused canary holds the
            // weights it was saved with (they may have been set by hand before the pause).
            let phase = canary.phase();
            let held = matches!(phase, CanaryPhase::Paused { .. }) && weights.len() == pools.len();
            if !held {
                weights = canary.weights_for(&phase, pools.len());
            }
        }
        Arc::new(RouteControl {
            route: route.into(),
            pools,
            configured,
            split: Split::new(weights),
            canary,
        })
    }

    /// Makes the controls of the plan just swapped in the current set.
    pub fn adopt(&self, controls: Vec<Arc<RouteControl>>) {
        let adopted = controls
            .into_iter()
            .map(|c| (c.route.to_string(), c))
            .collect();
        *self.routes.lock().unwrap_or_else(|p| p.into_inner()) = adopted;
    }

    pub fn get(&self, route: &str) -> Option<Arc<RouteControl>> {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<RouteControl>> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = routes.values().cloned().collect();
        all.sort_by(|a, b| a.route.cmp(&b.route));
        all
    }

    /// Where to save from now on (a reload may change it; the file is read only at start).
    pub fn set_state_file(&self, path: Option<PathBuf>) {
        *self.state_file.lock().unwrap_or_else(|p| p.into_inner()) = path;
    }

    /// Reads the state file (once, at start) so compiled routes can resume from it.
    pub fn load_state(&self, path: Option<PathBuf>) -> std::io::Result<()> {
        if let Some(path) = &path {
            let saved = StateFile::read(path)?;
            *self.restored.lock().unwrap_or_else(|p| p.into_inner()) = saved.routes;
        }
        *self.state_file.lock().unwrap_or_else(|p| p.into_inner()) = path;
        Ok(())
    }

    /// Whether this instance runs the canary analyses: always alone, only while it
    /// holds the fleet's lease in a fleet.
    pub fn set_analysing(&self, analysing: bool) {
        self.analysing.store(analysing, Ordering::Relaxed);
    }

    pub fn analysing(&self) -> bool {
        self.analysing.load(Ordering::Relaxed)
    }

    /// Takes state handed over by the process this one replaces (a binary upgrade):
    /// routes compiled from now on resume from it, as from a state file.
    pub fn restore(&self, state: StateFile) {
        *self.restored.lock().unwrap_or_else(|p| p.into_inner()) = state.routes;
    }

    /// The current weights and canary phases, as the state file holds them.
    pub fn snapshot(&self) -> StateFile {
        let routes = self
            .all()
            .iter()
            .map(|control| {
                let saved = SavedRoute {
                    pools: control.pools.iter().map(|p| p.to_string()).collect(),
                    configured: control.configured.clone(),
                    weights: control.split.weights(),
                    canary: control.canary.as_ref().map(|c| c.phase()),
                };
                (control.route.to_string(), saved)
            })
            .collect();
        StateFile { routes }
    }

    /// Writes the current weights and canary phases (after every change).
    pub fn save(&self) {
        let Some(path) = self
            .state_file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        let state = self.snapshot();
        if let Err(error) = state.write(&path) {
            tracing::error!(%error, path = %path.display(), "cannot save the route state file");
        }
        *self.restored.lock().unwrap_or_else(|p| p.into_inner()) = state.routes;
    }
}

/// Evaluates a route's canary every interval until the route leaves the plan or the
/// analysis ends (promoted or failed). Transitions are logged with their figures and
/// saved to the state file.
pub async fn run_analysis(control: std::sync::Weak<RouteControl>, controls: Arc<Controls>) {
    let Some(interval) = control
        .upgrade()
        .and_then(|c| c.canary.as_ref().map(|c| c.policy.interval))
    else {
        return;
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        ticker.tick().await;
        let Some(control) = control.upgrade() else {
            return;
        };
        let Some(canary) = &control.canary else {
            return;
        };
        // A paused canary is still watched: a regression rolls it back.
        if !canary.phase().is_analysing() {
            return;
        }
        // Another instance of the fleet decides; this one's figures of the interval are
        // dropped so that a takeover starts from a fresh interval.
        if !controls.analysing() {
            canary.reset_tallies();
            continue;
        }
        if let Some(transition) = canary.evaluate(&control.split) {
            let figures = &transition.figures;
            let message = match &transition.to {
                CanaryPhase::Failed { reason } => format!("canary rolled back: {reason}"),
                CanaryPhase::Promoted => "canary promoted".to_string(),
                CanaryPhase::Progressing { .. } => "canary stepped up".to_string(),
                // `evaluate` never pauses; only the admin API does.
                CanaryPhase::Paused { .. } => "canary paused".to_string(),
            };
            tracing::warn!(
                route = %control.route,
                candidate_weight = transition.candidate_weight,
                candidate_requests = figures.candidate_requests,
                candidate_error_rate = figures.candidate_error_rate,
                stable_requests = figures.stable_requests,
                stable_error_rate = figures.stable_error_rate,
                latency_ratio = ?figures.latency_ratio,
                ttft_ratio = ?figures.ttft_ratio,
                "{message}"
            );
            controls.save();
        }
    }
}
