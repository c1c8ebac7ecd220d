//! The last load report of one endpoint (from its `/metrics` or an ORCA header), kept
//! in atomics so the poller writes and every pick reads without a lock. With it, the
//! in-flight count Junction had when the report came, to correct it until the next.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::llm::LoadSample;

/// A stored f64 that means "not reported".
const NONE_BITS: u64 = u64::MAX;

/// Where the last report came from, for the operator reading `/api/pools`: a poll of
/// the endpoint's metrics says everything it publishes, an ORCA header only some gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    Metrics,
    Orca,
}

impl LoadSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadSource::Metrics => "metrics",
            LoadSource::Orca => "orca",
        }
    }
}

/// `source` as stored: 0 before any report.
const SOURCE_METRICS: u8 = 1;
const SOURCE_ORCA: u8 = 2;

/// What a pick reads of an endpoint's report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadReading {
    pub waiting: f64,
    pub running: f64,
    /// KV-cache use, 0 to 1; 0 when the server does not report it.
    pub kv_usage: f64,
    /// Junction's in-flight count for the endpoint when the report came.
    pub in_flight_then: u64,
    pub age: Duration,
}

/// One endpoint's report. Fields are written one by one: a pick racing a write may
/// read one field of the new report with the others of the old, which is within what
/// a half-second-old report promises anyway.
pub struct EndpointLoad {
    epoch: Instant,
    /// Nanoseconds since `epoch` plus one; 0: no report yet.
    reported_at: AtomicU64,
    waiting: AtomicU64,
    running: AtomicU64,
    kv_usage: AtomicU64,
    in_flight_then: AtomicU64,
    /// `SOURCE_METRICS` or `SOURCE_ORCA`: which kind of report came last.
    source: AtomicU8,
}

impl Default for EndpointLoad {
    fn default() -> Self {
        EndpointLoad {
            epoch: Instant::now(),
            reported_at: AtomicU64::new(0),
            waiting: AtomicU64::new(NONE_BITS),
            running: AtomicU64::new(NONE_BITS),
            kv_usage: AtomicU64::new(NONE_BITS),
            in_flight_then: AtomicU64::new(0),
            source: AtomicU8::new(0),
        }
    }
}

fn store(cell: &AtomicU64, value: Option<f64>) {
    cell.store(value.map_or(NONE_BITS, f64::to_bits), Ordering::Relaxed);
}

fn load(cell: &AtomicU64) -> Option<f64> {
    let bits = cell.load(Ordering::Relaxed);
    (bits != NONE_BITS).then(|| f64::from_bits(bits))
}

impl EndpointLoad {
    /// A full report (a scrape of `/metrics`): what it does not say is unknown.
    pub fn record(&self, sample: &LoadSample, in_flight_now: u64) {
        store(&self.waiting, sample.waiting);
        store(&self.running, sample.running);
        store(&self.kv_usage, sample.kv_usage);
        self.stamp(in_flight_now, SOURCE_METRICS);
    }

    /// A partial report (an ORCA header names only some gauges): what it says replaces
    /// the stored values, the rest stays.
    pub fn merge(&self, sample: &LoadSample, in_flight_now: u64) {
        if sample.waiting.is_some() {
            store(&self.waiting, sample.waiting);
        }
        if sample.running.is_some() {
            store(&self.running, sample.running);
        }
        if sample.kv_usage.is_some() {
            store(&self.kv_usage, sample.kv_usage);
        }
        self.stamp(in_flight_now, SOURCE_ORCA);
    }

    fn stamp(&self, in_flight_now: u64, source: u8) {
        self.in_flight_then.store(in_flight_now, Ordering::Relaxed);
        self.source.store(source, Ordering::Relaxed);
        let now = self.epoch.elapsed().as_nanos() as u64;
        self.reported_at
            .store(now.saturating_add(1), Ordering::Relaxed);
    }

    /// Forgets the report (the endpoint stopped answering its metrics).
    pub fn clear(&self) {
        self.reported_at.store(0, Ordering::Relaxed);
    }

    /// How old the last report is; `None` before the first.
    pub fn age(&self) -> Option<Duration> {
        let at = self.reported_at.load(Ordering::Relaxed).checked_sub(1)?;
        let now = self.epoch.elapsed().as_nanos() as u64;
        Some(Duration::from_nanos(now.saturating_sub(at)))
    }

    /// The last report, if there is one that says something about the queue.
    pub fn reading(&self) -> Option<LoadReading> {
        let age = self.age()?;
        let waiting = load(&self.waiting);
        let running = load(&self.running);
        if waiting.is_none() && running.is_none() {
            // KV use alone says nothing about how many requests are ahead.
            return None;
        }
        Some(LoadReading {
            waiting: waiting.unwrap_or(0.0),
            running: running.unwrap_or(0.0),
            kv_usage: load(&self.kv_usage).unwrap_or(0.0),
            in_flight_then: self.in_flight_then.load(Ordering::Relaxed),
            age,
        })
    }

    /// Which kind of report came last; `None` before the first.
    pub fn source(&self) -> Option<LoadSource> {
        match self.source.load(Ordering::Relaxed) {
            SOURCE_METRICS => Some(LoadSource::Metrics),
            SOURCE_ORCA => Some(LoadSource::Orca),
            _ => None,
        }
    }

    /// The reported gauges as they are stored, for `/metrics`.
    pub fn gauges(&self) -> LoadSample {
        LoadSample {
            waiting: load(&self.waiting),
            running: load(&self.running),
            kv_usage: load(&self.kv_usage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reports_age_and_merge() {
        let load = EndpointLoad::default();
        assert_eq!(load.reading(), None);
        assert_eq!(load.source(), None);
        let full = LoadSample {
            waiting: Some(3.0),
            running: Some(5.0),
            kv_usage: Some(0.5),
        };
        load.record(&full, 7);
        tokio::time::advance(Duration::from_millis(300)).await;
        let reading = load.reading().unwrap();
        assert_eq!(
            (
                reading.waiting,
                reading.running,
                reading.kv_usage,
                reading.in_flight_then
            ),
            (3.0, 5.0, 0.5, 7)
        );
        assert_eq!(reading.age, Duration::from_millis(300));
        assert_eq!(load.source(), Some(LoadSource::Metrics));
        // An ORCA header with the queue only keeps the rest.
        load.merge(
            &LoadSample {
                waiting: Some(1.0),
                ..LoadSample::default()
            },
            2,
        );
        let reading = load.reading().unwrap();
        assert_eq!(
            (reading.waiting, reading.running, reading.age),
            (1.0, 5.0, Duration::ZERO)
        );
        assert_eq!(load.source(), Some(LoadSource::Orca));
        load.clear();
        assert_eq!(load.reading(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn kv_alone_is_no_reading() {
        let load = EndpointLoad::default();
        load.record(
            &LoadSample {
                kv_usage: Some(0.9),
                ..LoadSample::default()
            },
            0,
        );
        assert_eq!(load.reading(), None);
        assert!(load.age().is_some());
    }
}
