//! Politeness toward the sites behind the egress proxy: per-host rate and concurrency
//! caps, so many scrapers sharing one proxy never hammer one site. A request over a cap
//! waits its turn in a bounded per-host queue, or is refused at once with a Retry-After.
//! The spacing also adapts to the site's answers (holds and delays from `adaptive`),
//! for every exit alike: the state is the host's.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::adaptive::{AdaptiveRules, Throttle, hold_from};
use crate::routing::Glob;

/// Hosts whose state is kept before idle ones are forgotten.
const MAX_TRACKED_HOSTS: usize = 10_000;

/// Stands in for "never" where adding a duration would overflow the clock.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The caps of one host; `None` is no cap.
#[derive(Clone, Debug, Default)]
pub struct HostLimits {
    /// At most `.0` requests per `.1`, spaced evenly: one every `.1 / .0`.
    pub rate: Option<(u32, Duration)>,
    /// At most this many requests in flight at once.
    pub concurrency: Option<u32>,
}

impl HostLimits {
    fn is_unlimited(&self) -> bool {
        self.rate.is_none() && self.concurrency.is_none()
    }
}

/// What [`SharedSlots::reserve`] answers: `Some(Ok(wait))` a slot reserved `wait` from
/// now, `Some(Err(wait))` none, as the next is `wait` away (beyond the allowed wait),
/// `None` the store could not say.
pub type SlotAnswer = Option<Result<Duration, Duration>>;

/// One of a host's concurrency leases held in the fleet's store: given back when dropped.
pub type FleetLease = Box<dyn std::any::Any + Send + Sync>;

/// What [`SharedSlots::lease`] answers.
pub enum LeaseAnswer {
    Taken(FleetLease),
    /// The fleet holds `cap` leases of the host already.
    Full,
    /// The store could not say: the instance's own cap decides.
    Unknown,
}

/// How often a request waiting for a fleet-wide concurrency lease asks again.
const LEASE_RETRY: Duration = Duration::from_millis(50);

/// Politeness budgets kept outside this instance (the fleet's Redis), so that every
/// instance sharing them spaces and caps a host's requests together: a site allowed 2
/// requests a second, or 2 at a time, gets that from the fleet, not from each instance.
pub trait SharedSlots: Send + Sync {
    /// Reserves `host`'s next slot, `spacing` after the last one any instance took,
    /// unless it is more than `max_wait` away.
    fn reserve<'a>(
        &'a self,
        host: &'a str,
        spacing: Duration,
        max_wait: Duration,
    ) -> Pin<Box<dyn Future<Output = SlotAnswer> + Send + 'a>>;

    /// Takes one of `host`'s `cap` concurrency leases, unless the fleet holds them all.
    fn lease<'a>(
        &'a self,
        host: &'a str,
        cap: usize,
    ) -> Pin<Box<dyn Future<Output = LeaseAnswer> + Send + 'a>>;
}

/// Admission of requests to target hosts under their [`HostLimits`].
pub struct Politeness {
    default: HostLimits,
    overrides: Vec<(Glob, HostLimits)>,
    queue: usize,
    max_wait: Duration,
    hosts: Mutex<HostTable>,
    adaptive: AdaptiveRules,
    /// The fleet's rate slots; the local ones decide when they cannot.
    shared: Option<Arc<dyn SharedSlots>>,
}

struct HostTable {
    by_name: HashMap<String, Arc<HostState>>,
    /// Size beyond which idle hosts are pruned; raised when most hosts are busy, so a
    /// table full of busy hosts is not scanned on every new host.
    prune_above: usize,
}

struct HostState {
    /// Time between two requests, from the rate cap.
    spacing: Option<Duration>,
    /// The concurrency cap and its permits.
    concurrency: Option<(Arc<Semaphore>, usize)>,
    /// The earliest instant the next request may go (GCRA's theoretical arrival time).
    next_slot: Mutex<Instant>,
    /// Requests waiting for a rate slot or a concurrency permit.
    waiting: AtomicUsize,
    /// The AutoThrottle delay between requests, when `per_host` is set.
    delay: Mutex<Option<Duration>>,
    /// The site's robots.txt `Crawl-delay`, with `robots_crawl_delay`.
    crawl_delay: Mutex<Option<Duration>>,
}

impl HostState {
    fn new(limits: &HostLimits, throttle: Option<&Throttle>) -> Self {
        // A zero count or cap would block the host forever; the config rejects them, and
        // one is the closest meaningful reading if one slips through.
        let spacing = limits
            .rate
            .map(|(requests, period)| period / requests.max(1));
        let concurrency = limits.concurrency.map(|cap| {
            let cap = usize::try_from(cap.max(1))
                .unwrap_or(Semaphore::MAX_PERMITS)
                .min(Semaphore::MAX_PERMITS);
            (Arc::new(Semaphore::new(cap)), cap)
        });
        HostState {
            spacing,
            concurrency,
            next_slot: Mutex::new(Instant::now()),
            waiting: AtomicUsize::new(0),
            delay: Mutex::new(throttle.map(Throttle::first_delay)),
            crawl_delay: Mutex::new(None),
        }
    }

    /// The time between two requests now: the rate cap's or the adaptive delay, the
    /// longer; zero (slots still kept, for holds) when only adaptation is on.
    fn spacing_now(&self, adaptive: bool) -> Option<Duration> {
        let throttled = *self.delay.lock().unwrap_or_else(|p| p.into_inner());
        let crawl = *self.crawl_delay.lock().unwrap_or_else(|p| p.into_inner());
        let delay = throttled.max(crawl);
        match (self.spacing, delay) {
            (Some(rate), Some(delay)) => Some(rate.max(delay)),
            (rate, delay) => rate.or(delay).or(adaptive.then_some(Duration::ZERO)),
        }
    }

    fn next_slot(&self) -> Instant {
        *self.next_slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Nobody holds or awaits anything of this host, and its rate slot is in the past,
    /// so forgetting it changes no decision.
    fn is_idle(self: &Arc<Self>, now: Instant) -> bool {
        Arc::strong_count(self) == 1
            && self.waiting.load(Ordering::Acquire) == 0
            && self
                .concurrency
                .as_ref()
                .is_none_or(|(semaphore, cap)| semaphore.available_permits() == *cap)
            && self.next_slot() <= now
    }
}

/// Counts its request among the host's waiters until dropped, so a request whose
/// future is dropped mid-wait leaves the count right.
struct QueuePlace {
    state: Arc<HostState>,
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.state.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Holds a concurrency slot of its host (and its fleet-wide lease) until dropped.
#[derive(Debug)]
pub struct HostPermit {
    _concurrency: Option<OwnedSemaphorePermit>,
    _fleet: Option<FleetLease>,
}

/// Why a request was not admitted.
#[derive(Debug)]
pub enum Refused {
    /// `waiting` requests were already queued for `host`, as many as allowed; `wait` is
    /// an estimate of how long the newcomer would have waited.
    QueueFull {
        host: String,
        waiting: usize,
        wait: Duration,
    },
    /// The host's turn was further away than the longest wait allowed; `wait` is how long
    /// the request would have had to wait (at least).
    Deadline { host: String, wait: Duration },
}

impl Refused {
    /// When to try again: the estimated wait in whole seconds, rounded up and at least
    /// one, as a `Retry-After` header carries it.
    pub fn retry_after(&self) -> Duration {
        let (Refused::QueueFull { wait, .. } | Refused::Deadline { wait, .. }) = self;
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Duration::from_secs(seconds.max(1))
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::QueueFull { host, waiting, .. } => write!(
                f,
                "{waiting} requests are already waiting for {host}, the most its politeness \
                 limits allow; try again later"
            ),
            Refused::Deadline { host, wait } => write!(
                f,
                "the politeness limits of {host} would hold this request for {:.1}s, longer \
                 than the longest wait allowed; try again later",
                wait.as_secs_f64()
            ),
        }
    }
}

impl Politeness {
    /// `overrides`: (host glob, limits), the first match wins over `default` for that host.
    /// Globs should be built case-insensitive: hosts are matched in lowercase.
    pub fn new(
        default: HostLimits,
        overrides: Vec<(Glob, HostLimits)>,
        queue: usize,
        max_wait: Duration,
    ) -> Self {
        Politeness {
            default,
            overrides,
            queue,
            max_wait,
            hosts: Mutex::new(HostTable {
                by_name: HashMap::new(),
                prune_above: MAX_TRACKED_HOSTS,
            }),
            adaptive: AdaptiveRules::default(),
            shared: None,
        }
    }

    /// Takes rate slots from `slots` (shared with other instances) while it answers.
    pub fn with_shared_slots(mut self, slots: Arc<dyn SharedSlots>) -> Self {
        self.shared = Some(slots);
        self
    }

    /// Adapts to the sites' answers as `rules` say (see [`Politeness::observe`]).
    pub fn with_adaptive(mut self, rules: AdaptiveRules) -> Self {
        self.adaptive = rules;
        self
    }

    /// True when no host has any limit and nothing adapts (the proxy then skips
    /// admission entirely).
    pub fn is_unlimited(&self) -> bool {
        !self.adaptive.enabled()
            && self.default.is_unlimited()
            && self
                .overrides
                .iter()
                .all(|(_, limits)| limits.is_unlimited())
    }

    /// Waits for `host`'s turn. Refuses at once when the host's queue is full or when the
    /// wait would exceed `max_wait`.
    ///
    /// The concurrency permit is taken before the rate slot: a slot reserved first and then
    /// held up behind busy permits would let several requests leave together once permits
    /// free up, breaking the even spacing the site is promised. Taking the slot only with
    /// a permit in hand keeps the spacing exact at the moment requests are sent; a request
    /// whose slot is already beyond the deadline is still refused before waiting for a
    /// permit. Slots reserved by requests dropped while sleeping stay consumed: the host
    /// just gets a little more rest.
    pub async fn admit(&self, host: &str) -> Result<HostPermit, Refused> {
        // A trailing dot names the same host, and must not get a cap of its own.
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let limits = self.limits_for(&host);
        let adaptive = self.adaptive.enabled();
        if limits.is_unlimited() && !adaptive {
            return Ok(HostPermit {
                _concurrency: None,
                _fleet: None,
            });
        }
        let state = self.state_for(&host, limits);
        let spacing = state.spacing_now(adaptive);
        let started = Instant::now();
        // None: max_wait reaches past the end of the clock, so there is no deadline.
        let deadline = started.checked_add(self.max_wait);
        let beyond_deadline = |at: Instant| deadline.is_some_and(|deadline| at > deadline);
        let mut place: Option<QueuePlace> = None;

        let concurrency = match &state.concurrency {
            None => None,
            Some((semaphore, _)) => match semaphore.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let rate_turn = spacing.map(|_| state.next_slot());
                    if let Some(turn) = rate_turn.filter(|turn| beyond_deadline(*turn)) {
                        return Err(Refused::Deadline {
                            host,
                            wait: turn.saturating_duration_since(started),
                        });
                    }
                    let estimate = rate_turn
                        .map(|turn| turn.saturating_duration_since(started))
                        .unwrap_or_default()
                        .max(self.max_wait);
                    place = Some(self.join_queue(&host, &state, estimate)?);
                    let acquire = semaphore.clone().acquire_owned();
                    let acquired = match deadline {
                        Some(deadline) => tokio::time::timeout_at(deadline, acquire).await.ok(),
                        None => Some(acquire.await),
                    };
                    match acquired {
                        Some(Ok(permit)) => Some(permit),
                        // Timed out; a closed semaphore cannot happen, as none is ever closed.
                        _ => {
                            return Err(Refused::Deadline {
                                host,
                                wait: Instant::now().saturating_duration_since(started),
                            });
                        }
                    }
                }
            },
        };

        // The fleet's cap, once this instance's own permit is in hand.
        let mut fleet_lease = None;
        if let (Some((_, cap)), Some(slots)) = (&state.concurrency, &self.shared) {
            loop {
                match slots.lease(&host, *cap).await {
                    LeaseAnswer::Taken(lease) => {
                        fleet_lease = Some(lease);
                        break;
                    }
                    LeaseAnswer::Unknown => break,
                    LeaseAnswer::Full => {
                        let now = Instant::now();
                        if beyond_deadline(now + LEASE_RETRY) {
                            return Err(Refused::Deadline {
                                host,
                                wait: now.saturating_duration_since(started) + LEASE_RETRY,
                            });
                        }
                        if place.is_none() {
                            place = Some(self.join_queue(&host, &state, self.max_wait)?);
                        }
                        tokio::time::sleep(LEASE_RETRY).await;
                    }
                }
            }
        }

        if let Some(spacing) = spacing {
            let now = Instant::now();
            let shared = match (&self.shared, spacing.is_zero()) {
                (Some(slots), false) => {
                    let allowed =
                        deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(now));
                    slots.reserve(&host, spacing, allowed).await
                }
                _ => None,
            };
            let now = Instant::now();
            let slot = if let Some(answer) = shared {
                let wait = match answer {
                    Ok(wait) => wait,
                    Err(wait) => {
                        return Err(Refused::Deadline {
                            host,
                            wait: (now + wait).saturating_duration_since(started),
                        });
                    }
                };
                // Never before the local slot either: it carries the holds a site asked
                // for, and it follows the fleet's slots for the moment the store fails.
                let mut next_slot = state.next_slot.lock().unwrap_or_else(|p| p.into_inner());
                let slot = later_by(now, wait).max(*next_slot);
                if beyond_deadline(slot) {
                    return Err(Refused::Deadline {
                        host,
                        wait: slot.saturating_duration_since(started),
                    });
                }
                *next_slot = later_by(slot, spacing);
                drop(next_slot);
                if slot > now && place.is_none() {
                    let estimate = slot.saturating_duration_since(now);
                    place = Some(self.join_queue(&host, &state, estimate)?);
                }
                slot
            } else {
                let mut next_slot = state.next_slot.lock().unwrap_or_else(|p| p.into_inner());
                let slot = (*next_slot).max(now);
                if slot > now {
                    if beyond_deadline(slot) {
                        return Err(Refused::Deadline {
                            host,
                            wait: slot.saturating_duration_since(started),
                        });
                    }
                    if place.is_none() {
                        let estimate = slot.saturating_duration_since(now);
                        place = Some(self.join_queue(&host, &state, estimate)?);
                    }
                }
                *next_slot = later_by(slot, spacing);
                slot
            };
            if slot > now {
                tokio::time::sleep_until(slot).await;
            }
        }
        drop(place);
        Ok(HostPermit {
            _concurrency: concurrency,
            _fleet: fleet_lease,
        })
    }

    fn limits_for(&self, host: &str) -> &HostLimits {
        self.overrides
            .iter()
            .find(|(glob, _)| glob.matches(host))
            .map_or(&self.default, |(_, limits)| limits)
    }

    fn state_for(&self, host: &str, limits: &HostLimits) -> Arc<HostState> {
        let mut table = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = table.by_name.get(host) {
            return state.clone();
        }
        if table.by_name.len() >= table.prune_above {
            let now = Instant::now();
            table.by_name.retain(|_, state| !state.is_idle(now));
            table.prune_above = MAX_TRACKED_HOSTS.max(table.by_name.len() * 2);
        }
        let state = Arc::new(HostState::new(limits, self.adaptive.throttle.as_ref()));
        table.by_name.insert(host.to_string(), state.clone());
        state
    }

    /// A site's answer, `latency` after the request was sent: a hold it asks for
    /// (`Retry-After`, `RateLimit-*`) pushes the host's next slot back, for every exit;
    /// the AutoThrottle delay follows the latency.
    /// Returns the hold it applied, if any (for the fleet to share).
    pub fn observe(
        &self,
        host: &str,
        status: StatusCode,
        headers: &HeaderMap,
        latency: Duration,
    ) -> Option<Duration> {
        let hold = self
            .adaptive
            .honour_retry_after
            .then(|| hold_from(status, headers, std::time::SystemTime::now()))
            .flatten()
            .map(|hold| hold.min(self.adaptive.max_hold));
        // Most answers ask for nothing: the host's state is looked up (its name
        // lowercased, the table locked) only when there is something to apply.
        if hold.is_none() && self.adaptive.throttle.is_none() {
            return None;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let state = {
            let table = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            table.by_name.get(&host).cloned()
        };
        let state = state.unwrap_or_else(|| self.state_for(&host, self.limits_for(&host)));
        if let Some(hold) = hold
            && hold_state(&state, hold)
        {
            tracing::info!(%host, ?hold, status = status.as_u16(), "site asked to slow down; its requests are held");
        }
        if let Some(throttle) = &self.adaptive.throttle {
            let mut delay = state.delay.lock().unwrap_or_else(|p| p.into_inner());
            let current = delay.unwrap_or_else(|| throttle.first_delay());
            *delay = Some(throttle.next_delay(current, latency, status.is_success()));
        }
        hold
    }

    /// Holds `host`'s queue for `hold` from now (another instance of the fleet was
    /// asked to), unless it is held longer already.
    pub fn hold(&self, host: &str, hold: Duration) {
        if !self.adaptive.honour_retry_after {
            return;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let state = self.state_for(&host, self.limits_for(&host));
        hold_state(&state, hold.min(self.adaptive.max_hold));
    }

    /// The site's robots.txt asks for `delay` between requests: a floor under the
    /// host's spacing, with `robots_crawl_delay`.
    pub fn crawl_delay(&self, host: &str, delay: Option<Duration>) {
        if !self.adaptive.crawl_delay {
            return;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let state = self.state_for(&host, self.limits_for(&host));
        *state.crawl_delay.lock().unwrap_or_else(|p| p.into_inner()) = delay;
    }

    /// Counts the request among the host's waiters, or refuses it when the queue is full.
    fn join_queue(
        &self,
        host: &str,
        state: &Arc<HostState>,
        estimate: Duration,
    ) -> Result<QueuePlace, Refused> {
        state
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < self.queue).then_some(waiting + 1)
            })
            .map(|_| QueuePlace {
                state: state.clone(),
            })
            .map_err(|waiting| Refused::QueueFull {
                host: host.to_string(),
                waiting,
                wait: estimate,
            })
    }
}

/// Pushes the host's next slot to `hold` from now; whether it moved.
fn hold_state(state: &HostState, hold: Duration) -> bool {
    let until = later_by(Instant::now(), hold);
    let mut next_slot = state.next_slot.lock().unwrap_or_else(|p| p.into_inner());
    let moved = *next_slot < until;
    if moved {
        *next_slot = until;
    }
    moved
}

/// `at + by`, saturating far in the future instead of overflowing the clock.
fn later_by(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(FAR_FUTURE))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(requests: u32, period: Duration) -> HostLimits {
        HostLimits {
            rate: Some((requests, period)),
            concurrency: None,
        }
    }

    fn concurrency(cap: u32) -> HostLimits {
        HostLimits {
            rate: None,
            concurrency: Some(cap),
        }
    }

    fn limited_by(default: HostLimits, queue: usize, max_wait: Duration) -> Arc<Politeness> {
        Arc::new(Politeness::new(default, Vec::new(), queue, max_wait))
    }

    fn waiting(politeness: &Politeness, host: &str) -> usize {
        let table = politeness.hosts.lock().unwrap_or_else(|p| p.into_inner());
        table
            .by_name
            .get(host)
            .map_or(0, |state| state.waiting.load(Ordering::Acquire))
    }

    /// Admits `count` concurrent requests to `host`; returns when each was admitted,
    /// relative to the start, in order.
    async fn admission_times(politeness: &Arc<Politeness>, host: &str, count: usize) -> Vec<u128> {
        let start = Instant::now();
        let tasks: Vec<_> = (0..count)
            .map(|_| {
                let politeness = politeness.clone();
                let host = host.to_string();
                tokio::spawn(async move {
                    let admitted = politeness.admit(&host).await.is_ok();
                    (admitted, start.elapsed().as_millis())
                })
            })
            .collect();
        let mut times = Vec::new();
        for task in tasks {
            let (admitted, at) = task.await.expect("admission task");
            assert!(admitted, "request to {host} refused");
            times.push(at);
        }
        times.sort_unstable();
        times
    }

    #[tokio::test(start_paused = true)]
    async fn rate_spaces_requests_evenly() {
        let politeness = limited_by(rate(2, Duration::from_secs(1)), 10, Duration::from_secs(10));
        let times = admission_times(&politeness, "example.com", 5).await;
        assert_eq!(times, vec![0, 500, 1000, 1500, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_spaces_one_after_another_too() {
        let politeness = limited_by(rate(2, Duration::from_secs(1)), 10, Duration::from_secs(10));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..3 {
            let _permit = politeness.admit("example.com").await.expect("admitted");
            times.push(start.elapsed().as_millis());
        }
        assert_eq!(times, vec![0, 500, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_host_goes_at_once_without_bursting() {
        let politeness = limited_by(rate(2, Duration::from_secs(1)), 10, Duration::from_secs(10));
        politeness.admit("example.com").await.expect("first");
        tokio::time::sleep(Duration::from_secs(60)).await;
        let times = admission_times(&politeness, "example.com", 3).await;
        assert_eq!(
            times,
            vec![0, 500, 1000],
            "a long rest must not build up a burst"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn other_hosts_are_unaffected() {
        let politeness = limited_by(
            rate(1, Duration::from_secs(10)),
            10,
            Duration::from_secs(60),
        );
        politeness.admit("a.example").await.expect("first to a");
        let start = Instant::now();
        politeness.admit("b.example").await.expect("first to b");
        assert_eq!(start.elapsed(), Duration::ZERO);
        politeness.admit("a.example").await.expect("second to a");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn refuses_when_the_wait_exceeds_max_wait() {
        let politeness = limited_by(rate(1, Duration::from_secs(5)), 10, Duration::from_secs(7));
        let start = Instant::now();
        politeness.admit("example.com").await.expect("slot 0s");
        politeness
            .admit("example.com")
            .await
            .expect("slot 5s, within 7s");
        politeness.admit("example.com").await.expect("slot 10s");
        assert_eq!(start.elapsed(), Duration::from_secs(10));

        // Two requests at 10s: the first gets slot 15s, the second would need 20s > 17s.
        let first = {
            let politeness = politeness.clone();
            tokio::spawn(async move { politeness.admit("example.com").await.is_ok() })
        };
        tokio::task::yield_now().await;
        let refused = politeness
            .admit("example.com")
            .await
            .expect_err("slot 20s is beyond 10s + 7s");
        assert_eq!(start.elapsed(), Duration::from_secs(10), "refused at once");
        match &refused {
            Refused::Deadline { host, wait } => {
                assert_eq!(host, "example.com");
                assert_eq!(*wait, Duration::from_secs(10));
            }
            other => panic!("expected Deadline, got {other:?}"),
        }
        assert_eq!(refused.retry_after(), Duration::from_secs(10));
        assert!(refused.to_string().contains("example.com"), "{refused}");
        assert!(first.await.expect("task"));

        // The refused request did not consume a slot: the next one gets 20s.
        politeness.admit("example.com").await.expect("slot 20s");
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn queue_full_refuses_at_once() {
        let politeness = limited_by(rate(1, Duration::from_secs(1)), 2, Duration::from_secs(60));
        politeness.admit("example.com").await.expect("goes at once");
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let politeness = politeness.clone();
                tokio::spawn(async move { politeness.admit("example.com").await.is_ok() })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(waiting(&politeness, "example.com"), 2);

        let start = Instant::now();
        let refused = politeness
            .admit("example.com")
            .await
            .expect_err("queue full");
        assert_eq!(start.elapsed(), Duration::ZERO);
        match &refused {
            Refused::QueueFull {
                host,
                waiting,
                wait,
            } => {
                assert_eq!(host, "example.com");
                assert_eq!(*waiting, 2);
                assert_eq!(*wait, Duration::from_secs(3), "behind slots 1s and 2s");
            }
            other => panic!("expected QueueFull, got {other:?}"),
        }
        assert_eq!(refused.retry_after(), Duration::from_secs(3));
        assert!(refused.to_string().contains("example.com"), "{refused}");

        for task in queued {
            assert!(task.await.expect("task"));
        }
        assert_eq!(waiting(&politeness, "example.com"), 0);
        politeness
            .admit("example.com")
            .await
            .expect("room in the queue again");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_queue_refuses_whatever_would_wait() {
        let politeness = limited_by(rate(1, Duration::from_secs(1)), 0, Duration::from_secs(60));
        politeness.admit("example.com").await.expect("goes at once");
        assert!(matches!(
            politeness.admit("example.com").await,
            Err(Refused::QueueFull { waiting: 0, .. })
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        politeness
            .admit("example.com")
            .await
            .expect("no wait needed");
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_waiter_leaves_the_queue() {
        let politeness = limited_by(rate(1, Duration::from_secs(10)), 1, Duration::from_secs(60));
        politeness.admit("example.com").await.expect("goes at once");
        let abandoned =
            tokio::time::timeout(Duration::from_secs(1), politeness.admit("example.com")).await;
        assert!(abandoned.is_err(), "should still have been waiting");
        assert_eq!(waiting(&politeness, "example.com"), 0);

        // The abandoned slot (10s) stays consumed; the next request gets 20s.
        let start = Instant::now();
        politeness
            .admit("example.com")
            .await
            .expect("queue has room again");
        assert_eq!(start.elapsed(), Duration::from_secs(19));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_cap_holds_until_permits_drop() {
        let politeness = limited_by(concurrency(2), 10, Duration::from_secs(60));
        let first = politeness.admit("example.com").await.expect("first");
        let second = politeness.admit("example.com").await.expect("second");

        let third = {
            let politeness = politeness.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let permit = politeness.admit("example.com").await;
                (permit.is_ok(), start.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(waiting(&politeness, "example.com"), 1);
        assert!(!third.is_finished());

        drop(first);
        let (admitted, waited) = third.await.expect("task");
        assert!(admitted);
        assert_eq!(waited, Duration::from_secs(3));
        assert_eq!(waiting(&politeness, "example.com"), 0);
        drop(second);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_wait_ends_at_the_deadline() {
        let politeness = limited_by(concurrency(1), 10, Duration::from_secs(5));
        let _held = politeness.admit("example.com").await.expect("first");
        let start = Instant::now();
        let refused = politeness
            .admit("example.com")
            .await
            .expect_err("no permit within 5s");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert!(
            matches!(refused, Refused::Deadline { wait, .. } if wait == Duration::from_secs(5))
        );
        assert_eq!(waiting(&politeness, "example.com"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_queue_is_bounded() {
        let politeness = limited_by(concurrency(1), 1, Duration::from_secs(5));
        let _held = politeness.admit("example.com").await.expect("first");
        let queued = {
            let politeness = politeness.clone();
            tokio::spawn(async move { politeness.admit("example.com").await.is_ok() })
        };
        tokio::task::yield_now().await;
        let refused = politeness
            .admit("example.com")
            .await
            .expect_err("queue of one is taken");
        assert!(matches!(refused, Refused::QueueFull { waiting: 1, .. }));
        assert_eq!(refused.retry_after(), Duration::from_secs(5));
        assert!(
            !queued.await.expect("task"),
            "times out, the permit is never freed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rate_and_concurrency_together_keep_the_spacing() {
        let limits = HostLimits {
            rate: Some((2, Duration::from_secs(1))),
            concurrency: Some(2),
        };
        let politeness = limited_by(limits, 10, Duration::from_secs(60));
        let start = Instant::now();
        let first = politeness.admit("example.com").await.expect("first");
        let second = politeness.admit("example.com").await.expect("second");
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        let later: Vec<_> = (0..2)
            .map(|_| {
                let politeness = politeness.clone();
                tokio::spawn(async move {
                    let admitted = politeness.admit("example.com").await.is_ok();
                    (admitted, start.elapsed().as_millis())
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        // Both permits free at once; the waiters must still leave 500ms apart.
        drop((first, second));
        let mut times = Vec::new();
        for task in later {
            let (admitted, at) = task.await.expect("task");
            assert!(admitted);
            times.push(at);
        }
        times.sort_unstable();
        assert_eq!(times, vec![3000, 3500]);
    }

    #[tokio::test(start_paused = true)]
    async fn past_rate_slot_leaves_only_the_permit_wait() {
        let limits = HostLimits {
            rate: Some((2, Duration::from_secs(1))),
            concurrency: Some(1),
        };
        let politeness = limited_by(limits, 10, Duration::from_secs(60));
        let start = Instant::now();
        let first = politeness.admit("example.com").await.expect("first");
        let second = {
            let politeness = politeness.clone();
            tokio::spawn(async move {
                let admitted = politeness.admit("example.com").await.is_ok();
                (admitted, start.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(first);
        let (admitted, at) = second.await.expect("task");
        assert!(admitted);
        assert_eq!(at, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn busy_permits_with_a_far_rate_slot_refuse_at_once() {
        let limits = HostLimits {
            rate: Some((1, Duration::from_secs(60))),
            concurrency: Some(1),
        };
        let politeness = limited_by(limits, 10, Duration::from_secs(5));
        let _held = politeness.admit("example.com").await.expect("first");
        let start = Instant::now();
        let refused = politeness.admit("example.com").await.expect_err("slot 60s");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(
            matches!(refused, Refused::Deadline { wait, .. } if wait == Duration::from_secs(60))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn first_matching_override_wins() {
        let overrides = vec![
            (
                Glob::new("*.slow.example", true),
                rate(1, Duration::from_secs(10)),
            ),
            (Glob::new("*.example", true), HostLimits::default()),
        ];
        let politeness = Politeness::new(
            rate(1, Duration::from_secs(1)),
            overrides,
            10,
            Duration::from_secs(60),
        );
        let start = Instant::now();
        politeness.admit("a.slow.example").await.expect("first");
        politeness.admit("a.slow.example").await.expect("second");
        assert_eq!(start.elapsed(), Duration::from_secs(10), "override rate");

        let start = Instant::now();
        for _ in 0..5 {
            politeness.admit("fast.example").await.expect("no limit");
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "second override: unlimited"
        );

        let start = Instant::now();
        politeness.admit("other.org").await.expect("first");
        politeness.admit("other.org").await.expect("second");
        assert_eq!(start.elapsed(), Duration::from_secs(1), "default rate");
    }

    #[tokio::test(start_paused = true)]
    async fn host_names_compare_case_insensitively() {
        let overrides = vec![(
            Glob::new("*.Slow.Example", true),
            rate(1, Duration::from_secs(10)),
        )];
        let politeness = Politeness::new(
            HostLimits::default(),
            overrides,
            10,
            Duration::from_secs(60),
        );
        let start = Instant::now();
        politeness.admit("WWW.slow.EXAMPLE").await.expect("first");
        politeness.admit("www.SLOW.example.").await.expect("second");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(10),
            "one host, one rate"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_skips_everything() {
        let politeness = limited_by(HostLimits::default(), 0, Duration::ZERO);
        assert!(politeness.is_unlimited());
        for _ in 0..100 {
            politeness.admit("example.com").await.expect("always");
        }
        let table = politeness.hosts.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            table.by_name.is_empty(),
            "no state kept for unlimited hosts"
        );
    }

    #[test]
    fn any_limit_is_not_unlimited() {
        let limited = Politeness::new(concurrency(1), Vec::new(), 1, Duration::ZERO);
        assert!(!limited.is_unlimited());
        let override_only = Politeness::new(
            HostLimits::default(),
            vec![(
                Glob::new("*.example", true),
                rate(1, Duration::from_secs(1)),
            )],
            1,
            Duration::ZERO,
        );
        assert!(!override_only.is_unlimited());
    }

    #[tokio::test(start_paused = true)]
    async fn degenerate_limits_do_not_panic() {
        let limits = HostLimits {
            rate: Some((0, Duration::MAX)),
            concurrency: Some(0),
        };
        let politeness = limited_by(limits, usize::MAX, Duration::MAX);
        let _first = politeness.admit("example.com").await.expect("first");
        let limits = HostLimits {
            rate: Some((u32::MAX, Duration::ZERO)),
            concurrency: Some(u32::MAX),
        };
        let politeness = limited_by(limits, 1, Duration::ZERO);
        for _ in 0..10 {
            politeness.admit("example.com").await.expect("zero spacing");
        }
    }

    fn tracked_hosts(politeness: &Politeness) -> usize {
        let table = politeness.hosts.lock().unwrap_or_else(|p| p.into_inner());
        table.by_name.len()
    }

    #[tokio::test(start_paused = true)]
    async fn busy_hosts_are_kept_past_the_bound() {
        let politeness = limited_by(rate(1, Duration::from_secs(1)), 10, Duration::from_secs(60));
        for index in 0..=MAX_TRACKED_HOSTS {
            politeness
                .admit(&format!("host{index}.example"))
                .await
                .expect("first to each host");
        }
        // Every slot is still ahead: forgetting a host would let it be hit again early.
        assert_eq!(tracked_hosts(&politeness), MAX_TRACKED_HOSTS + 1);
        let table = politeness.hosts.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(table.prune_above, 2 * MAX_TRACKED_HOSTS);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_hosts_are_forgotten_past_the_bound() {
        let politeness = limited_by(rate(1, Duration::from_secs(1)), 10, Duration::from_secs(60));
        for index in 0..MAX_TRACKED_HOSTS - 1 {
            politeness
                .admit(&format!("host{index}.example"))
                .await
                .expect("first to each host");
        }
        politeness
            .admit("busy.example")
            .await
            .expect("first to busy");
        assert_eq!(tracked_hosts(&politeness), MAX_TRACKED_HOSTS);

        tokio::time::sleep(Duration::from_secs(2)).await;
        politeness
            .admit("busy.example")
            .await
            .expect("second to busy");
        politeness.admit("new.example").await.expect("new host");
        assert_eq!(
            tracked_hosts(&politeness),
            2,
            "busy.example (slot ahead) and the newcomer"
        );
        let start = Instant::now();
        politeness
            .admit("busy.example")
            .await
            .expect("third to busy");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1),
            "busy.example kept its spacing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn admission_can_cross_threads() {
        fn assert_send<T: Send>(_: &T) {}
        let politeness = limited_by(rate(1, Duration::from_secs(1)), 1, Duration::from_secs(1));
        let admission = politeness.admit("example.com");
        assert_send(&admission);
        admission.await.expect("admitted");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let deadline = |wait| Refused::Deadline {
            host: "example.com".into(),
            wait,
        };
        assert_eq!(
            deadline(Duration::ZERO).retry_after(),
            Duration::from_secs(1)
        );
        assert_eq!(
            deadline(Duration::from_millis(1500)).retry_after(),
            Duration::from_secs(2)
        );
        assert_eq!(
            deadline(Duration::from_secs(7)).retry_after(),
            Duration::from_secs(7)
        );
    }

    fn adaptive(throttle: Option<Throttle>) -> Arc<Politeness> {
        let rules = AdaptiveRules {
            honour_retry_after: true,
            max_hold: Duration::from_secs(60),
            throttle,
            crawl_delay: true,
        };
        Arc::new(
            Politeness::new(
                HostLimits::default(),
                Vec::new(),
                10,
                Duration::from_secs(120),
            )
            .with_adaptive(rules),
        )
    }

    fn retry_after(seconds: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, seconds.parse().unwrap());
        headers
    }

    #[tokio::test(start_paused = true)]
    async fn a_sites_retry_after_holds_that_host_only_up_to_the_cap() {
        let politeness = adaptive(None);
        assert!(!politeness.is_unlimited());
        assert_eq!(
            admission_times(&politeness, "a.example", 3).await,
            [0, 0, 0]
        );
        let latency = Duration::from_millis(50);
        politeness.observe(
            "a.example",
            StatusCode::TOO_MANY_REQUESTS,
            &retry_after("5"),
            latency,
        );
        assert_eq!(
            admission_times(&politeness, "a.example", 2).await,
            [5000, 5000]
        );
        assert_eq!(admission_times(&politeness, "b.example", 1).await, [0]);
        // A 200 with Retry-After holds nothing; a hold past the cap is cut to it.
        politeness.observe("a.example", StatusCode::OK, &retry_after("5"), latency);
        assert_eq!(admission_times(&politeness, "a.example", 1).await, [0]);
        politeness.observe(
            "a.example",
            StatusCode::SERVICE_UNAVAILABLE,
            &retry_after("3600"),
            latency,
        );
        assert_eq!(admission_times(&politeness, "a.example", 1).await, [60_000]);
        // Beyond the longest wait, a request is refused with the hold as its Retry-After.
        let impatient = Arc::new(
            Politeness::new(
                HostLimits::default(),
                Vec::new(),
                10,
                Duration::from_secs(1),
            )
            .with_adaptive(AdaptiveRules {
                honour_retry_after: true,
                max_hold: Duration::from_secs(60),
                ..AdaptiveRules::default()
            }),
        );
        impatient.observe(
            "a.example",
            StatusCode::TOO_MANY_REQUESTS,
            &retry_after("30"),
            latency,
        );
        let refused = impatient.admit("a.example").await.unwrap_err();
        assert_eq!(refused.retry_after(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn the_throttle_spaces_requests_by_latency_over_target_concurrency() {
        let politeness = adaptive(Some(Throttle {
            target_concurrency: 2.0,
            min_delay: Duration::ZERO,
            max_delay: Duration::from_secs(10),
            start_delay: Duration::from_secs(1),
        }));
        assert_eq!(
            admission_times(&politeness, "a.example", 3).await,
            [0, 1000, 2000],
            "the start delay before any answer"
        );
        for _ in 0..60 {
            politeness.observe(
                "a.example",
                StatusCode::OK,
                &HeaderMap::new(),
                Duration::from_millis(400),
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            admission_times(&politeness, "a.example", 3).await,
            [0, 200, 400]
        );
        // The site slows down: the delay follows at once.
        politeness.observe(
            "a.example",
            StatusCode::OK,
            &HeaderMap::new(),
            Duration::from_secs(3),
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            admission_times(&politeness, "a.example", 2).await,
            [0, 1500]
        );
        // Errors answered fast do not speed it up.
        politeness.observe(
            "a.example",
            StatusCode::INTERNAL_SERVER_ERROR,
            &HeaderMap::new(),
            Duration::ZERO,
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            admission_times(&politeness, "a.example", 2).await,
            [0, 1500]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_crawl_delay_is_a_floor_under_the_rate() {
        let politeness = adaptive(None);
        politeness.crawl_delay("a.example", Some(Duration::from_secs(3)));
        assert_eq!(
            admission_times(&politeness, "a.example", 3).await,
            [0, 3000, 6000]
        );
        assert_eq!(admission_times(&politeness, "b.example", 2).await, [0, 0]);
        let capped = Arc::new(
            Politeness::new(
                rate(2, Duration::from_secs(1)),
                Vec::new(),
                10,
                Duration::from_secs(60),
            )
            .with_adaptive(AdaptiveRules {
                crawl_delay: true,
                ..AdaptiveRules::default()
            }),
        );
        capped.crawl_delay("a.example", Some(Duration::from_millis(100)));
        assert_eq!(
            admission_times(&capped, "a.example", 3).await,
            [0, 500, 1000],
            "the rate's spacing is longer"
        );
    }
}
