//! Automatic canary analysis: every interval the candidate is compared with the stable
//! pool over that interval (error rate, p99 latency, p99 time to first token). Healthy
//! with enough requests: one step up. A threshold crossed: weight 0, marked failed.
//! Each transition is logged with the figures that decided it. Paused by hand, the
//! canary holds its weights and takes no step, but a crossed threshold still rolls it back.

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
    /// At `steps[step]`, held by hand: no step up until resumed, but a crossed
    /// threshold still fails it (a pause must not keep a bad candidate serving).
    Paused {
        step: usize,
    },
    Promoted,
    Failed {
        reason: String,
    },
}

impl CanaryPhase {
    /// For `junction_canary_state`: 0 progressing, 1 promoted, 2 failed, 3 paused.
    pub fn code(&self) -> i64 {
        match self {
            CanaryPhase::Progressing { .. } => 0,
            CanaryPhase::Promoted => 1,
            CanaryPhase::Failed { .. } => 2,
            CanaryPhase::Paused { .. } => 3,
        }
    }

    /// Whether the analysis still runs: progressing, or paused (watching for a
    /// regression only).
    pub fn is_analysing(&self) -> bool {
        matches!(
            self,
            CanaryPhase::Progressing { .. } | CanaryPhase::Paused { .. }
        )
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
            CanaryPhase::Progressing { step } | CanaryPhase::Paused { step } => {
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

    /// Holds a progressing canary where it is. `Ok(true)` when it was paused now,
    /// `Ok(false)` when it already was; `Err` with the phase when the analysis has ended
    /// (promoted or failed), as there is nothing left to hold.
    pub fn pause(&self) -> Result<bool, CanaryPhase> {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        match *phase {
            CanaryPhase::Progressing { step } => {
                *phase = CanaryPhase::Paused { step };
                Ok(true)
            }
            CanaryPhase::Paused { .. } => Ok(false),
            ref ended => Err(ended.clone()),
        }
    }

    /// Lets a paused canary step again from where it was held: the next healthy
    /// interval steps up. `Ok(false)` when it was not paused; `Err` once ended.
    pub fn resume(&self) -> Result<bool, CanaryPhase> {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        match *phase {
            CanaryPhase::Paused { step } => {
                *phase = CanaryPhase::Progressing { step };
                Ok(true)
            }
            CanaryPhase::Progressing { .. } => Ok(false),
            ref ended => Err(ended.clone()),
        }
    }

    /// Forgets the figures gathered since the last interval.
    pub fn reset_tallies(&self) {
        for tally in &self.tallies {
            tally.take();
        }
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
        let (step, paused) = match *phase {
            CanaryPhase::Progressing { step } => (step, false),
            CanaryPhase::Paused { step } => (step, true),
            CanaryPhase::Promoted | CanaryPhase::Failed { .. } => return None,
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
            // Held by hand: healthy intervals change nothing.
            None if paused => return None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CanaryPolicy {
        CanaryPolicy {
            stable: 0,
            candidate: 1,
            steps: vec![10, 50, 100],
            interval: Duration::from_secs(60),
            min_requests: 5,
            max_error_rate: 0.05,
            max_latency_ratio: 3.0,
            max_ttft_ratio: 3.0,
        }
    }

    /// One interval of `requests` to each side, `errors` of the candidate's failing.
    fn interval(canary: &CanaryRuntime, requests: u64, errors: u64) {
        for i in 0..requests {
            let latency = Duration::from_millis(10);
            canary.tallies[0].record(latency, false, None);
            canary.tallies[1].record(latency, i < errors, None);
        }
    }

    #[test]
    fn a_paused_canary_holds_its_weights_through_healthy_intervals() {
        let canary = CanaryRuntime::new(policy(), 2, None);
        let split = Split::new(vec![90, 10]);
        assert_eq!(canary.pause(), Ok(true));
        assert_eq!(canary.pause(), Ok(false), "pausing twice changes nothing");
        assert_eq!(canary.phase(), CanaryPhase::Paused { step: 0 });
        for _ in 0..3 {
            interval(&canary, 20, 0);
            assert_eq!(canary.evaluate(&split), None);
        }
        assert_eq!(split.weights(), vec![90, 10]);
        assert_eq!(canary.phase(), CanaryPhase::Paused { step: 0 });
        assert!(
            canary.last_figures().is_some(),
            "the figures are still measured"
        );

        assert_eq!(canary.resume(), Ok(true));
        assert_eq!(canary.resume(), Ok(false));
        interval(&canary, 20, 0);
        let transition = canary.evaluate(&split).expect("a step once resumed");
        assert_eq!(transition.to, CanaryPhase::Progressing { step: 1 });
        assert_eq!(split.weights(), vec![50, 50]);
    }

    #[test]
    fn a_regression_rolls_a_paused_canary_back() {
        let canary = CanaryRuntime::new(policy(), 2, Some(CanaryPhase::Progressing { step: 1 }));
        let split = Split::new(vec![50, 50]);
        canary.pause().unwrap();
        interval(&canary, 20, 5);
        let transition = canary.evaluate(&split).expect("a rollback while paused");
        assert_eq!(transition.from, CanaryPhase::Paused { step: 1 });
        assert!(matches!(transition.to, CanaryPhase::Failed { .. }));
        assert_eq!(split.weights(), vec![100, 0]);
        assert_eq!(
            canary.resume(),
            Err(canary.phase()),
            "a failed canary cannot resume"
        );
    }

    #[test]
    fn an_ended_canary_cannot_be_paused() {
        let canary = CanaryRuntime::new(policy(), 2, Some(CanaryPhase::Promoted));
        assert_eq!(canary.pause(), Err(CanaryPhase::Promoted));
        assert!(!canary.phase().is_analysing());
        assert!(CanaryPhase::Paused { step: 2 }.is_analysing());
        assert_eq!(
            canary.weights_for(&CanaryPhase::Paused { step: 1 }, 2),
            vec![50, 50]
        );
    }

    #[test]
    fn the_paused_phase_is_saved_as_it_is_shown() {
        let text = serde_json::to_string(&CanaryPhase::Paused { step: 1 }).unwrap();
        assert_eq!(text, r#"{"state":"paused","step":1}"#);
        let back: CanaryPhase = serde_json::from_str(&text).unwrap();
        assert_eq!(back, CanaryPhase::Paused { step: 1 });
    }
}
