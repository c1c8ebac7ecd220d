//! Observability: Prometheus metrics per route, pool, version and endpoint (LLM tokens
//! and time to first token included), the JSON access log, a one-minute window per
//! route for `/api/stats`, and request identity (request ids, trace context).
//! Everything recorded on the request path is an atomic or a bounded queue.

pub mod access_log;
mod histogram;
mod metrics;
pub mod trace;
pub(crate) mod window;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use access_log::{AccessLog, AccessLogSettings, Destination, Field};
pub use histogram::{
    DEFAULT_LATENCY_BUCKETS, DEFAULT_TOKEN_BUCKETS, DurationHistogram, check_buckets,
};
pub use metrics::{
    Buckets, EgressExitCounters, EgressOutcome, EgressRefusals, MetricsRegistry, RouteMetrics,
    StatusCounts,
};
pub use trace::TraceIds;
pub use window::{Window, WindowStats, merged_stats};

/// Telemetry state shared by every plan (it outlives reloads).
#[derive(Default)]
pub struct Telemetry {
    pub metrics: MetricsRegistry,
    pub access_log: AccessLog,
    metrics_disabled: AtomicBool,
}

impl Telemetry {
    pub fn metrics_enabled(&self) -> bool {
        !self.metrics_disabled.load(Ordering::Relaxed)
    }

    pub fn set_metrics_enabled(&self, enabled: bool) {
        self.metrics_disabled.store(!enabled, Ordering::Relaxed);
    }
}

/// A route's handles into the metric state, resolved when the plan is built so the
/// request path does no lookups by name.
pub struct RouteTelemetry {
    pub metrics: Arc<RouteMetrics>,
    /// Status counts per endpoint of the route's pool, in pool order.
    endpoints: Vec<(Arc<str>, Arc<StatusCounts>)>,
    /// Status counts of answers no endpoint gave (no endpoint available, ...).
    pub no_endpoint: Arc<StatusCounts>,
}

impl RouteTelemetry {
    pub fn new(metrics: Arc<RouteMetrics>, endpoint_urls: &[Arc<str>]) -> Self {
        let endpoints = endpoint_urls
            .iter()
            .map(|url| (url.clone(), metrics.status_counts(url)))
            .collect();
        let no_endpoint = metrics.status_counts(&Arc::from(""));
        RouteTelemetry {
            metrics,
            endpoints,
            no_endpoint,
        }
    }

    pub fn endpoint_counts(&self, endpoint: &crate::upstream::Endpoint) -> Arc<StatusCounts> {
        self.endpoints
            .iter()
            .find(|(url, _)| Arc::ptr_eq(url, &endpoint.url) || **url == *endpoint.url)
            .map(|(_, counts)| counts.clone())
            .unwrap_or_else(|| self.metrics.status_counts(&endpoint.url))
    }
}
