//! A lock-free duration histogram: fixed bucket bounds chosen at load, counts and the
//! sum (in nanoseconds, exact) in atomics, so recording never locks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Request latencies of model servers: milliseconds to minutes.
pub const DEFAULT_LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Time per output token: a few milliseconds to a second.
pub const DEFAULT_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0,
];

pub struct DurationHistogram {
    /// Upper bounds in seconds, increasing; +Inf is implicit.
    bounds: Arc<[f64]>,
    /// One count per bound plus one for +Inf (not cumulative).
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    pub fn new(bounds: Arc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        DurationHistogram {
            bounds,
            counts,
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn has_bounds(&self, bounds: &[f64]) -> bool {
        *self.bounds == *bounds
    }

    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = self.bounds.partition_point(|bound| *bound < seconds);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            duration.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    /// (sum in seconds, count, buckets as (upper bound, count in that bucket alone)):
    /// the shape prometheus-client's encoder takes; it writes them cumulatively.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, count) in self.counts.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            total += count;
            buckets.push((self.bounds.get(i).copied().unwrap_or(f64::INFINITY), count));
        }
        (
            self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            total,
            buckets,
        )
    }
}

/// Validates bucket bounds from the config: positive, finite, strictly increasing.
pub fn check_buckets(bounds: &[f64]) -> Result<(), String> {
    if bounds.is_empty() {
        return Err("at least one bucket bound is needed".into());
    }
    if bounds.iter().any(|b| !b.is_finite() || *b <= 0.0) {
        return Err("bucket bounds must be positive numbers of seconds".into());
    }
    if bounds.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err("bucket bounds must be strictly increasing".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_have_le_semantics() {
        let histogram = DurationHistogram::new(Arc::from(vec![0.1, 1.0]));
        histogram.observe(Duration::from_millis(100)); // le 0.1
        histogram.observe(Duration::from_millis(500));
        histogram.observe(Duration::from_secs(5));
        let (sum, count, buckets) = histogram.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 5.6).abs() < 1e-9);
        assert_eq!(buckets, vec![(0.1, 1), (1.0, 1), (f64::INFINITY, 1)]);
        assert!(check_buckets(&[1.0, 0.5]).is_err());
        assert!(check_buckets(&[0.0]).is_err());
    }
}
