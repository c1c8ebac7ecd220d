//! Metric state per route, pool and endpoint, kept in atomics built at plan time, and
//! the Prometheus collector that reads it at scrape time. Label values come only from
//! config names, status codes and fixed words, so cardinality is bounded by the config.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::histogram::DurationHistogram;
use super::window::Window;

/// Counts per HTTP status code 100..=599.
pub struct StatusCounts {
    counts: Box<[AtomicU64]>,
}

impl Default for StatusCounts {
    fn default() -> Self {
        StatusCounts {
            counts: (100..600).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl StatusCounts {
    pub fn add(&self, status: u16) {
        if let Some(count) = self.counts.get(usize::from(status.clamp(100, 599)) - 100) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (status, count) for every status seen.
    pub fn seen(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| (i as u16 + 100, c.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
    }
}

/// Everything measured for one (route, pool, version).
pub struct RouteMetrics {
    pub route: Arc<str>,
    pub pool: Arc<str>,
    pub version: Arc<str>,
    /// Shadow (mirrored) traffic, kept apart from the real one.
    pub shadow: bool,
    pub duration: DurationHistogram,
    pub time_to_first_byte: DurationHistogram,
    pub time_to_first_token: DurationHistogram,
    pub time_per_output_token: DurationHistogram,
    pub request_bytes: AtomicU64,
    pub response_bytes: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub retries: AtomicU64,
    /// Status counts by endpoint URL ("" for answers no endpoint gave).
    endpoints: Mutex<HashMap<Arc<str>, Arc<StatusCounts>>>,
    pub window: Window,
}

impl RouteMetrics {
    pub fn status_counts(&self, endpoint: &Arc<str>) -> Arc<StatusCounts> {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        endpoints.entry(endpoint.clone()).or_default().clone()
    }

    fn endpoint_counts(&self) -> Vec<(Arc<str>, Arc<StatusCounts>)> {
        let endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = endpoints
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// Bucket bounds of the histograms, from `[metrics]`.
#[derive(Clone)]
pub struct Buckets {
    pub latency: Arc<[f64]>,
    pub token: Arc<[f64]>,
}

/// Metric state by name, shared by every plan: a reload keeps the counters of routes it
/// keeps, and forgets those of routes it drops.
#[derive(Default)]
pub struct MetricsRegistry {
    routes: Mutex<HashMap<(String, String, bool), Arc<RouteMetrics>>>,
    listeners: Mutex<HashMap<String, Arc<AtomicI64>>>,
    /// Security decisions by rule and action (deny, unauthorized, tag, log).
    decisions: Mutex<HashMap<(String, &'static str), u64>>,
    /// Errors Junction answered itself, by route ("" before routing) and type.
    errors: Mutex<HashMap<(Arc<str>, &'static str), u64>>,
}

impl MetricsRegistry {
    /// The running metrics of (route, pool), or new ones when there are none or their
    /// version or bucket layout changed. New ones count only once a plan that has them
    /// is swapped in ([`MetricsRegistry::adopt`]): a refused reload changes nothing.
    pub fn route(
        &self,
        route: &str,
        pool: &str,
        version: &str,
        shadow: bool,
        buckets: &Buckets,
    ) -> Arc<RouteMetrics> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let key = (route.to_string(), pool.to_string(), shadow);
        if let Some(existing) = routes.get(&key) {
            if &*existing.version == version
                && existing.duration.has_bounds(&buckets.latency)
                && existing.time_per_output_token.has_bounds(&buckets.token)
            {
                return existing.clone();
            }
        }
        Arc::new(RouteMetrics {
            route: route.into(),
            pool: pool.into(),
            version: version.into(),
            shadow,
            duration: DurationHistogram::new(buckets.latency.clone()),
            time_to_first_byte: DurationHistogram::new(buckets.latency.clone()),
            time_to_first_token: DurationHistogram::new(buckets.latency.clone()),
            time_per_output_token: DurationHistogram::new(buckets.token.clone()),
            request_bytes: AtomicU64::new(0),
            response_bytes: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            endpoints: Mutex::default(),
            window: Window::default(),
        })
    }

    /// Makes `routes` (those of the plan just swapped in) the exported set.
    pub fn adopt(&self, routes: Vec<Arc<RouteMetrics>>) {
        let adopted = routes
            .into_iter()
            .map(|m| ((m.route.to_string(), m.pool.to_string(), m.shadow), m))
            .collect();
        *self.routes.lock().unwrap_or_else(|p| p.into_inner()) = adopted;
    }

    pub fn all_routes(&self) -> Vec<Arc<RouteMetrics>> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = routes.values().cloned().collect();
        all.sort_by(|a, b| (&a.route, &a.pool, a.shadow).cmp(&(&b.route, &b.pool, b.shadow)));
        all
    }

    pub fn listener_connections(&self, listener: &str) -> Arc<AtomicI64> {
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.entry(listener.to_string()).or_default().clone()
    }

    pub fn all_listeners(&self) -> Vec<(String, i64)> {
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = listeners
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
            .collect();
        all.sort();
        all
    }

    pub fn count_decision(&self, rule: &str, action: &'static str) {
        let mut decisions = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        *decisions.entry((rule.to_string(), action)).or_default() += 1;
    }

    pub fn all_decisions(&self) -> Vec<((String, &'static str), u64)> {
        let decisions = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = decisions.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort();
        all
    }

    pub fn count_error(&self, route: &Arc<str>, kind: &'static str) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry((route.clone(), kind)).or_default() += 1;
    }

    pub fn all_errors(&self) -> Vec<((Arc<str>, &'static str), u64)> {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = errors.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort();
        all
    }
}

impl RouteMetrics {
    pub fn endpoints_snapshot(&self) -> Vec<(Arc<str>, Arc<StatusCounts>)> {
        self.endpoint_counts()
    }
}
