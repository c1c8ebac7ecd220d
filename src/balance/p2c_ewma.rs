//! Power of two choices over peak-EWMA latency (Finagle, Linkerd): draw two endpoints,
//! send to the one with the lower `latency_ewma × (in_flight + 1) / weight`. Peak EWMA
//! jumps up at once on a slow response and decays slowly, so a stalling model server
//! sheds load fast and wins it back gradually.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Candidate;
use super::SplitMix;

/// Decay time constant of the latency average.
const DECAY: Duration = Duration::from_secs(10);
/// Latency assumed for an endpoint that has not answered yet: low enough that a new
/// endpoint gets tried, high enough that an idle one is not flooded at once.
const INITIAL_LATENCY_NANOS: f64 = 1_000_000.0;

pub struct PowerOfTwo {
    rng: Arc<SplitMix>,
}

impl PowerOfTwo {
    pub fn new(rng: Arc<SplitMix>) -> Self {
        PowerOfTwo { rng }
    }

    pub fn pick(
        &self,
        endpoints: &[impl Candidate],
        skip: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let eligible: Vec<usize> = (0..endpoints.len()).filter(|i| !skip(*i)).collect();
        match eligible.len() {
            0 => None,
            1 => Some(eligible[0]),
            n => {
                let first = self.rng.below(n as u64) as usize;
                let mut second = self.rng.below(n as u64 - 1) as usize;
                if second >= first {
                    second += 1;
                }
                let (a, b) = (eligible[first], eligible[second]);
                if cost(&endpoints[a]) <= cost(&endpoints[b]) {
                    Some(a)
                } else {
                    Some(b)
                }
            }
        }
    }
}

fn cost(endpoint: &impl Candidate) -> f64 {
    let latency = endpoint.latency_nanos();
    latency * (endpoint.in_flight() as f64 + 1.0) / f64::from(endpoint.weight().max(1))
}

/// Peak-EWMA latency of one endpoint, kept in atomics (f64 bits, last update time) so
/// recording and reading never lock. Concurrent updates may lose one sample; the
/// average does not need more precision than that.
pub struct PeakEwma {
    nanos_bits: AtomicU64,
    updated_at_nanos: AtomicU64,
    epoch: tokio::time::Instant,
}

impl Default for PeakEwma {
    fn default() -> Self {
        PeakEwma {
            nanos_bits: AtomicU64::new(INITIAL_LATENCY_NANOS.to_bits()),
            updated_at_nanos: AtomicU64::new(0),
            epoch: tokio::time::Instant::now(),
        }
    }
}

impl PeakEwma {
    pub fn estimate_nanos(&self) -> f64 {
        f64::from_bits(self.nanos_bits.load(Ordering::Relaxed))
    }

    pub fn record(&self, latency: Duration) {
        self.record_at(tokio::time::Instant::now(), latency);
    }

    /// [`PeakEwma::record`] with the time already read.
    pub fn record_at(&self, now: tokio::time::Instant, latency: Duration) {
        let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        // Through u64: a u128 to f64 conversion is a library call on every answer.
        let sample = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX) as f64;
        let previous = self.estimate_nanos();
        let last = self.updated_at_nanos.swap(now, Ordering::Relaxed);
        let next = if sample > previous {
            sample
        } else {
            let elapsed = now.saturating_sub(last) as f64;
            let keep = (-elapsed / DECAY.as_nanos() as f64).exp();
            previous * keep + sample * (1.0 - keep)
        };
        self.nanos_bits.store(next.to_bits(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn peak_then_decay() {
        let ewma = PeakEwma::default();
        ewma.record(Duration::from_millis(500));
        assert_eq!(ewma.estimate_nanos(), 500_000_000.0);
        tokio::time::advance(Duration::from_secs(10)).await;
        ewma.record(Duration::from_millis(10));
        let after = ewma.estimate_nanos() / 1e6;
        // One time constant later the old peak keeps weight 1/e.
        assert!((180.0..200.0).contains(&after), "{after}");
    }
}
