//! Automatic canary analysis: every interval the candidate is compared with the stable
//! pool over that interval (error rate, p99 latency, p99 time to first token). Healthy
//! with enough requests: one step up. A threshold crossed: weight 0, marked failed.
//! Each transition is logged with the figures that decided it.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Split;
use crate::telemetry::window::{LATENCY_BUCKETS, bucket_of, bucket_upper_ms};

#[derive(Debug, Clone, PartialEq)]
pub struct CanaryPolicy {
    /// Target indexes of the stable and the candidate pool.
    pub stable: usize,
    pub candidate: usize,
    /// Candidate weights (percent) to walk through; the last is normally 100.
    pub steps: Vec<u32>,
    pub interval: Duration,
    pub min_requests: u64,
    pub max_error_rate: f64,
    pub max_latency_ratio: f64,
    pub max_ttft_ratio: f64,
}

/// Where the canary is; saved in the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CanaryPhase {
    /// At `steps[step]`.
    Progressing {
        step: usize,
    },
    Promoted,
    Failed {
        reason: String,
    },
}

impl CanaryPhase {
    /// For `junction_canary_state`: 0 progressing, 1 promoted, 2 failed.
    pub fn code(&self) -> i64 {
        match self {
            CanaryPhase::Progressing { .. } => 0,
            CanaryPhase::Promoted => 1,
            CanaryPhase::Failed { .. } => 2,
        }
    }
}

/// One target's requests over the current interval.
pub struct Tally {
    counts: Mutex<Counts>,
}

#[derive(Clone)]
struct Counts {
    requests: u64,
    errors: u64,
    latency: [u32; LATENCY_BUCKETS],
    ttft: [u32; LATENCY_BUCKETS],
    ttft_samples: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            requests: 0,
            errors: 0,
            latency: [0; LATENCY_BUCKETS],
            ttft: [0; LATENCY_BUCKETS],
            ttft_samples: 0,
        }
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            counts: Mutex::new(Counts::default()),
        }
    }
}

impl Tally {
    pub fn record(&self, latency: Duration, error: bool, ttft: Option<Duration>) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.requests += 1;
        counts.errors += u64::from(error);
        let bucket = &mut counts.latency[bucket_of(latency)];
        *bucket = bucket.saturating_add(1);
        if let Some(ttft) = ttft {
            counts.ttft_samples += 1;
            let bucket = &mut counts.ttft[bucket_of(ttft)];
            *bucket = bucket.saturating_add(1);
        }
    }

    fn take(&self) -> Counts {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn p99(buckets: &[u32; LATENCY_BUCKETS], samples: u64) -> Option<f64> {
    if samples == 0 {
        return None;
    }
    let rank = ((samples as f64) * 0.99).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    buckets
        .iter()
        .position(|count| {
            seen += u64::from(*count);
            seen >= rank
        })
        .map(bucket_upper_ms)
}

/// What one interval showed, as logged with each transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub candidate_requests: u64,
    pub candidate_error_rate: f64,
    pub stable_requests: u64,
    pub stable_error_rate: f64,
    pub latency_ratio: Option<f64>,
    pub ttft_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub from: CanaryPhase,
    pub to: CanaryPhase,
    pub candidate_weight: u32,
    pub figures: Figures,
}

pub struct CanaryRuntime {
    pub policy: CanaryPolicy,
    phase: Mutex<CanaryPhase>,
    /// One tally per target of the route.
    pub tallies: Vec<Tally>,
    history: Mutex<Vec<Transition>>,
    last: Mutex<Option<Figures>>,
}

/// Transitions kept for `/api/routes/{name}/canary`.
const HISTORY: usize = 32;

impl CanaryRuntime {
    pub fn new(policy: CanaryPolicy, targets: usize, phase: Option<CanaryPhase>) -> Self {
        CanaryRuntime {
            policy,
            phase: Mutex::new(phase.unwrap_or(CanaryPhase::Progressing { step: 0 })),
            tallies: (0..targets).map(|_| Tally::default()).collect(),
            history: Mutex::new(Vec::new()),
            last: Mutex::new(None),
        }
    }

    pub fn phase(&self) -> CanaryPhase {
        self.phase.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn history(&self) -> Vec<Transition> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn last_figures(&self) -> Option<Figures> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The weights the current phase stands for.
    pub fn weights_for(&self, phase: &CanaryPhase, targets: usize) -> Vec<u32> {
        let candidate_weight = match phase {
            CanaryPhase::Progressing { step } => {
                self.policy.steps.get(*step).copied().unwrap_or(100)
            }
            CanaryPhase::Promoted => 100,
            CanaryPhase::Failed { .. } => 0,
        };
        let mut weights = vec![0; targets];
        weights[self.policy.candidate] = candidate_weight.min(100);
        weights[self.policy.stable] = 100 - candidate_weight.min(100);
        weights
    }

    /// Ends the analysis by hand (promote or rollback through the admin API).
    pub fn set_phase(&self, phase: CanaryPhase) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
    }

    /// One interval's verdict; applies the new weights to `split`. Returns the
    /// transition, if the phase changed.
    pub fn evaluate(&self, split: &Split) -> Option<Transition> {
        let policy = &self.policy;
        let candidate = self.tallies[policy.candidate].take();
        let stable = self.tallies[policy.stable].take();
        let rate = |c: &Counts| {
            if c.requests == 0 {
                0.0
            } else {
                c.errors as f64 / c.requests as f64
            }
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let figures = Figures {
            candidate_requests: candidate.requests,
            candidate_error_rate: rate(&candidate),
            stable_requests: stable.requests,
            stable_error_rate: rate(&stable),
            latency_ratio: ratio(
                p99(&candidate.latency, candidate.requests),
                p99(&stable.latency, stable.requests),
            ),
            ttft_ratio: ratio(
                p99(&candidate.ttft, candidate.ttft_samples),
                p99(&stable.ttft, stable.ttft_samples),
            ),
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(figures.clone());

        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        let CanaryPhase::Progressing { step } = *phase else {
            return None;
        };
        let failure = if candidate.requests < policy.min_requests {
            None
        } else if figures.candidate_error_rate > policy.max_error_rate {
            Some(format!(
                "error rate {:.3} above {:.3}",
                figures.candidate_error_rate, policy.max_error_rate
            ))
        } else if figures
            .latency_ratio
            .is_some_and(|r| r > policy.max_latency_ratio)
        {
            Some(format!(
                "p99 latency ratio {:.2} above {:.2}",
                figures.latency_ratio.unwrap_or_default(),
                policy.max_latency_ratio
            ))
        } else if figures
            .ttft_ratio
            .is_some_and(|r| r > policy.max_ttft_ratio)
        {
            Some(format!(
                "p99 time-to-first-token ratio {:.2} above {:.2}",
                figures.ttft_ratio.unwrap_or_default(),
                policy.max_ttft_ratio
            ))
        } else {
            None
        };
        let next = match failure {
            Some(reason) => CanaryPhase::Failed { reason },
            None if candidate.requests >= policy.min_requests => match policy.steps.get(step + 1) {
                Some(weight) if *weight < 100 => CanaryPhase::Progressing { step: step + 1 },
                _ => CanaryPhase::Promoted,
            },
            None => return None,
        };
        let from = phase.clone();
        *phase = next.clone();
        drop(phase);
        let weights = self.weights_for(&next, self.tallies.len());
        split.set_weights(weights.clone());
        let transition = Transition {
            from,
            to: next,
            candidate_weight: weights[policy.candidate],
            figures,
        };
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if history.len() == HISTORY {
            history.remove(0);
        }
        history.push(transition.clone());
        Some(transition)
    }
}
