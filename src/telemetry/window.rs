//! A one-minute sliding window of requests, errors and latencies per route and version,
//! for `/api/stats`: 60 one-second slots, each with a log-scale latency histogram, so
//! quantiles over the last minute cost a merge of 60 small arrays at query time only.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

const SLOTS: usize = 60;
/// Latency buckets grow by 2^(1/4) (19% apart) from 100 µs: 96 of them reach ~23 min.
pub(crate) const LATENCY_BUCKETS: usize = 96;
const SMALLEST_NANOS: f64 = 100_000.0;

#[derive(Clone)]
struct Slot {
    second: u64,
    requests: u64,
    errors: u64,
    latency: [u32; LATENCY_BUCKETS],
}

impl Slot {
    fn empty(second: u64) -> Self {
        Slot {
            second,
            requests: 0,
            errors: 0,
            latency: [0; LATENCY_BUCKETS],
        }
    }
}

pub struct Window {
    epoch: Instant,
    slots: Mutex<Vec<Slot>>,
}

/// The last minute at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct WindowStats {
    pub requests: u64,
    pub errors: u64,
    pub requests_per_second: f64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

pub(crate) fn bucket_of(latency: Duration) -> usize {
    // The first bucket whose bound holds it: the same answer as ⌈4·log2(latency /
    // 100 µs)⌉ for any whole number of nanoseconds, without the float conversions and
    // logarithm (a third of a request's window record).
    let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
    BUCKET_UPPER_NANOS
        .partition_point(|&upper| upper < nanos)
        .min(LATENCY_BUCKETS - 1)
}

/// Upper bounds of the latency buckets in whole nanoseconds: ⌊100 µs · 2^(b/4)⌋, so a
/// latency is in bucket b when it is at most bound b and more than bound b − 1.
const BUCKET_UPPER_NANOS: [u64; LATENCY_BUCKETS] = bucket_upper_nanos();

const fn bucket_upper_nanos() -> [u64; LATENCY_BUCKETS] {
    // 2^(k/4) for k = 0..3 in 2^-64ths, rounded down: fine enough that every bound
    // rounds down to the right nanosecond (in 2^-40ths, the largest came out one short).
    const QUARTERS: [u128; 4] = [
        18_446_744_073_709_551_616,
        21_936_999_301_089_678_046,
        26_087_635_650_665_564_424,
        31_023_601_929_370_129_896,
    ];
    let mut bounds = [0; LATENCY_BUCKETS];
    let mut bucket = 0;
    while bucket < LATENCY_BUCKETS {
        let scaled = (SMALLEST_NANOS as u128 * QUARTERS[bucket % 4]) << (bucket / 4);
        bounds[bucket] = (scaled >> 64) as u64;
        bucket += 1;
    }
    bounds
}

/// Upper bound of a bucket, in milliseconds.
pub(crate) fn bucket_upper_ms(bucket: usize) -> f64 {
    SMALLEST_NANOS * 2f64.powf(bucket as f64 / 4.0) / 1e6
}

impl Default for Window {
    fn default() -> Self {
        Window {
            epoch: Instant::now(),
            slots: Mutex::new((0..SLOTS).map(|_| Slot::empty(u64::MAX)).collect()),
        }
    }
}

impl Window {
    fn second(&self, now: Instant) -> u64 {
        now.duration_since(self.epoch).as_secs()
    }

    /// Counts one finished request; `error` for 5xx answers and failed streams.
    pub fn record(&self, latency: Duration, error: bool) {
        self.record_at(Instant::now(), latency, error);
    }

    /// [`Window::record`] with the time already read.
    pub fn record_at(&self, now: Instant, latency: Duration, error: bool) {
        let second = self.second(now);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut slots[(second % SLOTS as u64) as usize];
        if slot.second != second {
            *slot = Slot::empty(second);
        }
        slot.requests += 1;
        slot.errors += u64::from(error);
        let bucket = &mut slot.latency[bucket_of(latency)];
        *bucket = bucket.saturating_add(1);
    }

    /// The last 60 seconds (the current, partial second included).
    pub fn stats(&self) -> WindowStats {
        merged_stats(&[self])
    }
}

/// The last 60 seconds of several windows together (a route's pools of one version).
pub fn merged_stats(windows: &[&Window]) -> WindowStats {
    let now = Instant::now();
    let mut merged = [0u64; LATENCY_BUCKETS];
    let mut stats = WindowStats::default();
    let mut covered: f64 = 1.0;
    for window in windows {
        let second = window.second(now);
        let oldest = second.saturating_sub(SLOTS as u64 - 1);
        let slots = window.slots.lock().unwrap_or_else(|p| p.into_inner());
        for slot in slots
            .iter()
            .filter(|s| s.second != u64::MAX && s.second >= oldest && s.second <= second)
        {
            stats.requests += slot.requests;
            stats.errors += slot.errors;
            for (total, count) in merged.iter_mut().zip(slot.latency.iter()) {
                *total += u64::from(*count);
            }
        }
        // Before a minute has passed, divide by the time actually covered.
        covered = covered.max(
            now.duration_since(window.epoch)
                .as_secs_f64()
                .clamp(1.0, SLOTS as f64),
        );
    }
    stats.requests_per_second = stats.requests as f64 / covered;
    if stats.requests > 0 {
        stats.error_rate = stats.errors as f64 / stats.requests as f64;
        let quantile = |q: f64| {
            let rank = (q * stats.requests as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            merged
                .iter()
                .position(|count| {
                    seen += count;
                    seen >= rank
                })
                .map(bucket_upper_ms)
        };
        stats.p50_ms = quantile(0.50);
        stats.p90_ms = quantile(0.90);
        stats.p99_ms = quantile(0.99);
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_the_last_minute_only() {
        let window = Window::default();
        for i in 0..100u64 {
            window.record(Duration::from_millis(10 + i), i < 7);
        }
        let stats = window.stats();
        assert_eq!((stats.requests, stats.errors), (100, 7));
        assert!((stats.error_rate - 0.07).abs() < 1e-9);
        // p50 is about 60 ms; buckets are 19% wide.
        let p50 = stats.p50_ms.unwrap();
        assert!((59.0..72.0).contains(&p50), "{p50}");
        tokio::time::advance(Duration::from_secs(61)).await;
        window.record(Duration::from_millis(1), false);
        let stats = window.stats();
        assert_eq!((stats.requests, stats.errors), (1, 0));
    }

    /// The bucket as first defined: ⌈4·log2(latency / 100 µs)⌉, at least 0, at most
    /// the last.
    fn bucket_by_logarithm(latency: Duration) -> usize {
        let nanos = latency.as_nanos() as f64;
        if nanos <= SMALLEST_NANOS {
            return 0;
        }
        (((nanos / SMALLEST_NANOS).log2() * 4.0).ceil() as usize).min(LATENCY_BUCKETS - 1)
    }

    #[test]
    fn buckets_end_at_their_bounds() {
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert_eq!(bucket_of(Duration::from_micros(100)), 0);
        assert_eq!(bucket_of(Duration::from_nanos(100_001)), 1);
        assert_eq!(bucket_of(Duration::from_micros(200)), 4);
        assert_eq!(bucket_of(Duration::from_nanos(200_001)), 5);
        assert_eq!(bucket_of(Duration::MAX), LATENCY_BUCKETS - 1);
        for (bucket, &upper) in BUCKET_UPPER_NANOS.iter().enumerate() {
            let upper = Duration::from_nanos(upper);
            assert_eq!(bucket_of(upper), bucket, "{upper:?}");
            assert_eq!(bucket_by_logarithm(upper), bucket, "{upper:?}");
            let next = (bucket + 1).min(LATENCY_BUCKETS - 1);
            let above = upper + Duration::from_nanos(1);
            assert_eq!(bucket_of(above), next, "{above:?}");
            assert_eq!(bucket_by_logarithm(above), next, "{above:?}");
            let shown = bucket_upper_ms(bucket) * 1e6;
            assert!((shown - upper.as_nanos() as f64).abs() < 1.0, "{bucket}");
        }
    }

    proptest::proptest! {
        #[test]
        fn buckets_agree_with_the_logarithm(nanos in 0u64..(1 << 42)) {
            let latency = Duration::from_nanos(nanos);
            proptest::prop_assert_eq!(bucket_of(latency), bucket_by_logarithm(latency));
        }

        #[test]
        fn buckets_agree_with_the_logarithm_near_bounds(
            bucket in 0..LATENCY_BUCKETS,
            offset in -1000i64..=1000,
        ) {
            let nanos = BUCKET_UPPER_NANOS[bucket].saturating_add_signed(offset);
            let latency = Duration::from_nanos(nanos);
            proptest::prop_assert_eq!(bucket_of(latency), bucket_by_logarithm(latency));
        }
    }
}
