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
    /// Tokens estimated for answers that reported none (`source="estimated"`).
    pub prompt_tokens_estimated: AtomicU64,
    pub completion_tokens_estimated: AtomicU64,
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

/// What became of one attempt through an egress exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressOutcome {
    /// The site's answer was passed on (or the tunnel opened).
    Ok,
    /// The site banned the exit (a ban status or body pattern).
    Banned,
    /// The exit could not be reached or failed the exchange.
    ExitError,
    /// The exit refused to open a tunnel.
    TunnelRefused,
    /// The site could not be reached through the exit.
    SiteError,
    /// An intercepted site's certificate did not verify (the request is refused).
    UpstreamCertificateInvalid,
}

impl EgressOutcome {
    pub const ALL: [EgressOutcome; 6] = [
        EgressOutcome::Ok,
        EgressOutcome::Banned,
        EgressOutcome::ExitError,
        EgressOutcome::TunnelRefused,
        EgressOutcome::SiteError,
        EgressOutcome::UpstreamCertificateInvalid,
    ];

    pub fn label(self) -> &'static str {
        match self {
            EgressOutcome::Ok => "ok",
            EgressOutcome::Banned => "banned",
            EgressOutcome::ExitError => "exit_error",
            EgressOutcome::TunnelRefused => "tunnel_refused",
            EgressOutcome::SiteError => "site_error",
            EgressOutcome::UpstreamCertificateInvalid => "upstream_certificate_invalid",
        }
    }
}

/// Counters of one egress exit, kept across reloads and exits-file changes.
#[derive(Default)]
pub struct EgressExitCounters {
    outcomes: [AtomicU64; EgressOutcome::ALL.len()],
    pub bans: AtomicU64,
    /// Tunnel bytes towards sites and back.
    pub tunnel_bytes_up: AtomicU64,
    pub tunnel_bytes_down: AtomicU64,
}

impl EgressExitCounters {
    pub fn count(&self, outcome: EgressOutcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn outcome(&self, outcome: EgressOutcome) -> u64 {
        self.outcomes[outcome as usize].load(Ordering::Relaxed)
    }
}

/// Requests an egress listener refused itself, before any exit, by reason.
#[derive(Default)]
pub struct EgressRefusals {
    counts: Mutex<HashMap<&'static str, u64>>,
}

impl EgressRefusals {
    pub fn count(&self, reason: &'static str) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn all(&self) -> Vec<(&'static str, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = counts.iter().map(|(k, v)| (*k, *v)).collect();
        all.sort();
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
pub struct MetricsRegistry {
    routes: Mutex<HashMap<(String, String, bool), Arc<RouteMetrics>>>,
    listeners: Mutex<HashMap<String, Arc<AtomicI64>>>,
    /// Security decisions by rule and action (deny, unauthorized, tag, log).
    decisions: Mutex<HashMap<(String, &'static str), u64>>,
    /// Fallback hops by (route, from pool, to pool, reason).
    hops: Mutex<HashMap<HopKey, u64>>,
    /// Errors Junction answered itself, by route ("" before routing) and type.
    errors: Mutex<HashMap<(Arc<str>, &'static str), u64>>,
    /// Connections the HTTP/1.1 fast path handed to the full pipeline, by listener and reason.
    handoffs: Mutex<HashMap<(Arc<str>, &'static str), u64>>,
    /// Certificate reloads by listener and outcome (`reloaded`, `refused`).
    tls_reloads: Mutex<HashMap<(Arc<str>, &'static str), u64>>,
    /// TLS handshakes completed by listener and kind (`full`, `resumed`).
    tls_handshakes: Mutex<HashMap<(Arc<str>, &'static str), u64>>,
    /// Masking findings by (route, type, action, direction): counts, never values.
    /// Counted once per type found in each masked request, so hashed with Fx: SipHash
    /// over its four strings cost more than masking's JSON decoding. Its keys come from
    /// the config and the detectors, not from clients.
    masking: Mutex<HashMap<MaskingKey, u64, rustc_hash::FxBuildHasher>>,
    /// Bodies masking could not read and passed on (`on_error = "pass"`), by route and
    /// direction.
    masking_passed: Mutex<HashMap<(Arc<str>, &'static str), u64>>,
    /// Answers whose usage was not read to their end (a coding not read, a decoded
    /// size past the cap, bytes that do not decode), by route and reason.
    usage_unread: Mutex<HashMap<(Arc<str>, &'static str), u64>>,
    /// Egress exits by (egress, exit, region).
    egress_exits: Mutex<HashMap<(String, String, String), Arc<EgressExitCounters>>>,
    egress_refusals: Mutex<HashMap<String, Arc<EgressRefusals>>>,
    /// `[fleet]`: failed syncs with Redis, and whether this instance holds the lease
    /// (-1: no fleet).
    fleet_errors: std::sync::atomic::AtomicU64,
    fleet_leader: AtomicI64,
}

/// Labels of `junction_fallback_hops_total`: route, from, to, reason.
pub type HopKey = (Arc<str>, Arc<str>, Arc<str>, Arc<str>);

/// Labels of `junction_masking_findings_total`: route, type, action, direction.
pub type MaskingKey = (Arc<str>, Arc<str>, &'static str, &'static str);

impl Default for MetricsRegistry {
    fn default() -> Self {
        MetricsRegistry {
            routes: Mutex::default(),
            listeners: Mutex::default(),
            decisions: Mutex::default(),
            hops: Mutex::default(),
            errors: Mutex::default(),
            handoffs: Mutex::default(),
            tls_reloads: Mutex::default(),
            tls_handshakes: Mutex::default(),
            masking: Mutex::default(),
            masking_passed: Mutex::default(),
            usage_unread: Mutex::default(),
            egress_exits: Mutex::default(),
            egress_refusals: Mutex::default(),
            fleet_errors: Default::default(),
            fleet_leader: AtomicI64::new(-1),
        }
    }
}

impl MetricsRegistry {
    pub fn count_fleet_error(&self) {
        self.fleet_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// `None`: no `[fleet]` (any more).
    pub fn set_fleet_leader(&self, leader: impl Into<Option<bool>>) {
        let value = leader.into().map_or(-1, i64::from);
        self.fleet_leader.store(value, Ordering::Relaxed);
    }

    /// (failed syncs, holds the lease) while there is a `[fleet]`.
    pub fn fleet(&self) -> Option<(u64, bool)> {
        let leader = self.fleet_leader.load(Ordering::Relaxed);
        (leader >= 0).then(|| (self.fleet_errors.load(Ordering::Relaxed), leader == 1))
    }

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
        if let Some(existing) = routes.get(&key)
            && &*existing.version == version
            && existing.duration.has_bounds(&buckets.latency)
            && existing.time_per_output_token.has_bounds(&buckets.token)
        {
            return existing.clone();
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
            prompt_tokens_estimated: AtomicU64::new(0),
            completion_tokens_estimated: AtomicU64::new(0),
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

    pub fn count_handoff(&self, listener: &Arc<str>, reason: &'static str) {
        let mut handoffs = self.handoffs.lock().unwrap_or_else(|p| p.into_inner());
        *handoffs.entry((listener.clone(), reason)).or_default() += 1;
    }

    pub fn all_handoffs(&self) -> Vec<((Arc<str>, &'static str), u64)> {
        let handoffs = self.handoffs.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = handoffs.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort();
        all
    }

    pub fn count_tls_reload(&self, listener: &Arc<str>, outcome: &'static str) {
        let mut reloads = self.tls_reloads.lock().unwrap_or_else(|p| p.into_inner());
        *reloads.entry((listener.clone(), outcome)).or_default() += 1;
    }

    pub fn all_tls_reloads(&self) -> Vec<((Arc<str>, &'static str), u64)> {
        let reloads = self.tls_reloads.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = reloads.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort();
        all
    }

    pub fn count_tls_handshake(&self, listener: &Arc<str>, kind: &'static str) {
        let mut handshakes = self
            .tls_handshakes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *handshakes.entry((listener.clone(), kind)).or_default() += 1;
    }

    pub fn all_tls_handshakes(&self) -> Vec<((Arc<str>, &'static str), u64)> {
        let handshakes = self
            .tls_handshakes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = handshakes.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort();
        all
    }

    pub fn count_masking(&self, key: MaskingKey, count: u64) {
        let mut masking = self.masking.lock().unwrap_or_else(|p| p.into_inner());
        *masking.entry(key).or_default() += count;
    }

    pub fn all_masking(&self) -> Vec<(MaskingKey, u64)> {
        let masking = self.masking.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = masking.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort();
        all
    }

    pub fn count_masking_passed(&self, route: &Arc<str>, direction: &'static str) {
        let mut passed = self
            .masking_passed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *passed.entry((route.clone(), direction)).or_default() += 1;
    }

    pub fn all_masking_passed(&self) -> Vec<((Arc<str>, &'static str), u64)> {
        let passed = self
            .masking_passed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = passed.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort();
        all
    }

    pub fn count_usage_unread(&self, route: &Arc<str>, reason: &'static str) {
        let mut unread = self.usage_unread.lock().unwrap_or_else(|p| p.into_inner());
        *unread.entry((route.clone(), reason)).or_default() += 1;
    }

    pub fn all_usage_unread(&self) -> Vec<((Arc<str>, &'static str), u64)> {
        let unread = self.usage_unread.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = unread.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort();
        all
    }

    pub fn count_hop(&self, key: HopKey) {
        let mut hops = self.hops.lock().unwrap_or_else(|p| p.into_inner());
        *hops.entry(key).or_default() += 1;
    }

    pub fn all_hops(&self) -> Vec<(HopKey, u64)> {
        let hops = self.hops.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = hops.iter().map(|(k, v)| (k.clone(), *v)).collect();
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

impl MetricsRegistry {
    pub fn egress_exit(&self, egress: &str, exit: &str, region: &str) -> Arc<EgressExitCounters> {
        let mut exits = self.egress_exits.lock().unwrap_or_else(|p| p.into_inner());
        let key = (egress.to_string(), exit.to_string(), region.to_string());
        exits.entry(key).or_default().clone()
    }

    pub fn all_egress_exits(&self) -> Vec<((String, String, String), Arc<EgressExitCounters>)> {
        let exits = self.egress_exits.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = exits.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub fn egress_refusals(&self, egress: &str) -> Arc<EgressRefusals> {
        let mut refusals = self
            .egress_refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        refusals.entry(egress.to_string()).or_default().clone()
    }

    pub fn all_egress_refusals(&self) -> Vec<(String, Arc<EgressRefusals>)> {
        let refusals = self
            .egress_refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = refusals
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

impl RouteMetrics {
    pub fn endpoints_snapshot(&self) -> Vec<(Arc<str>, Arc<StatusCounts>)> {
        self.endpoint_counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_findings_add_up_per_route_type_action_and_direction() {
        let metrics = MetricsRegistry::default();
        let key = |route: &str, kind: &str, action, direction| -> MaskingKey {
            (Arc::from(route), Arc::from(kind), action, direction)
        };
        for _ in 0..2 {
            metrics.count_masking(key("chat", "EMAIL_ADDRESS", "redact", "request"), 2);
            metrics.count_masking(key("chat", "API_KEY", "block", "request"), 1);
            metrics.count_masking(key("chat", "EMAIL_ADDRESS", "redact", "response"), 1);
        }
        metrics.count_masking(key("chat", "EMAIL_ADDRESS", "hash", "request"), 3);
        metrics.count_masking(key("out", "EMAIL_ADDRESS", "redact", "request"), 1);
        let all: Vec<_> = metrics
            .all_masking()
            .into_iter()
            .map(|((route, kind, action, direction), count)| {
                format!("{route} {kind} {action} {direction} {count}")
            })
            .collect();
        assert_eq!(
            all,
            [
                "chat API_KEY block request 2",
                "chat EMAIL_ADDRESS hash request 3",
                "chat EMAIL_ADDRESS redact request 4",
                "chat EMAIL_ADDRESS redact response 2",
                "out EMAIL_ADDRESS redact request 1",
            ]
        );
    }
}
