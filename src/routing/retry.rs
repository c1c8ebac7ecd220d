//! Retry policy of a route and its budget: retries may add at most a share of the
//! route's traffic (plus a small floor), so they cannot turn an outage into a storm.

use std::sync::Mutex;
use std::time::Duration;

use http::Method;
use tokio::time::Instant;

pub struct RetryPolicy {
    /// Further tries after the first.
    pub attempts: u32,
    pub on_status: Vec<u16>,
    pub retry_non_idempotent: bool,
    /// Largest request body kept to be sent again.
    pub body_limit: u64,
    pub budget: RetryBudget,
}

impl RetryPolicy {
    /// Whether a response status may be retried for this method.
    pub fn retries_status(&self, method: &Method, status: u16) -> bool {
        self.on_status.contains(&status) && (self.retry_non_idempotent || is_idempotent(method))
    }
}

/// RFC 9110 9.2.2; kept here too for the callers that ask the retry policy.
pub use crate::normalize::is_idempotent;

/// Requests and retries over a sliding window (two half-windows, Finagle-style).
pub struct RetryBudget {
    ratio: f64,
    min_per_second: u32,
    window: Duration,
    counts: Mutex<Counts>,
}

struct Counts {
    started: Instant,
    requests: [u64; 2],
    retries: [u64; 2],
}

impl RetryBudget {
    pub fn new(ratio: f64, min_per_second: u32, window: Duration) -> Self {
        let counts = Counts {
            started: Instant::now(),
            requests: [0; 2],
            retries: [0; 2],
        };
        RetryBudget {
            ratio,
            min_per_second,
            window,
            counts: Mutex::new(counts),
        }
    }

    fn rotate(&self, counts: &mut Counts, now: Instant) {
        let half = self.window / 2;
        let elapsed = now.saturating_duration_since(counts.started);
        if elapsed >= self.window {
            *counts = Counts {
                started: now,
                requests: [0; 2],
                retries: [0; 2],
            };
        } else if elapsed >= half {
            counts.requests = [counts.requests[1], 0];
            counts.retries = [counts.retries[1], 0];
            counts.started += half;
        }
    }

    /// Counts a first try.
    pub fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    /// Counts a first try made at `now` (the request's start: the hot path reads the
    /// clock once per request, not once per policy).
    pub fn deposit_at(&self, now: Instant) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        self.rotate(&mut counts, now);
        counts.requests[1] += 1;
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        self.rotate(&mut counts, Instant::now());
        let requests: u64 = counts.requests.iter().sum();
        let retries: u64 = counts.retries.iter().sum();
        let floor = f64::from(self.min_per_second) * self.window.as_secs_f64();
        let allowed = (self.ratio * requests as f64).max(floor);
        if (retries as f64) < allowed {
            counts.retries[1] += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn budget_caps_retries_at_a_share_of_requests() {
        let budget = RetryBudget::new(0.2, 0, Duration::from_secs(10));
        for _ in 0..100 {
            budget.deposit();
        }
        let granted = (0..100).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 20);
        // A full window later the old traffic no longer counts.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!budget.withdraw());
        budget.deposit();
        budget.deposit();
        budget.deposit();
        budget.deposit();
        budget.deposit();
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn floor_allows_a_few_retries_on_little_traffic() {
        let budget = RetryBudget::new(0.2, 1, Duration::from_secs(10));
        assert_eq!((0..20).filter(|_| budget.withdraw()).count(), 10);
    }
}
