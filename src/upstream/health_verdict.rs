//! An endpoint's health verdicts (active check, passive ejection, `Retry-After` hold),
//! read on every pick. Kept apart from the checker (`health.rs`), which judges
//! endpoints, so an endpoint's state needs nothing of it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Health verdicts of one endpoint. Times are nanoseconds since `epoch`.
pub struct Health {
    epoch: Instant,
    /// The active check's verdict (true until checks say otherwise).
    active_up: AtomicBool,
    pub(super) ejected_until: AtomicU64,
    /// `Retry-After` of a 429 or 503: no new requests before this.
    hold_until: AtomicU64,
    pub(super) consecutive_failures: AtomicU32,
    /// How many times in a row it was ejected (the ejection time grows with it).
    pub(super) ejection_streak: AtomicU32,
    pub ejections_total: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            epoch: Instant::now(),
            active_up: AtomicBool::new(true),
            ejected_until: AtomicU64::new(0),
            hold_until: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejection_streak: AtomicU32::new(0),
            ejections_total: AtomicU64::new(0),
        }
    }
}

impl Health {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub(super) fn at(&self, after: Duration) -> u64 {
        self.now().saturating_add(after.as_nanos() as u64)
    }

    /// May this endpoint be picked now?
    pub fn is_available(&self) -> bool {
        if !self.active_up.load(Ordering::Relaxed) {
            return false;
        }
        let ejected_until = self.ejected_until.load(Ordering::Relaxed);
        let hold_until = self.hold_until.load(Ordering::Relaxed);
        if ejected_until == 0 && hold_until == 0 {
            // Never ejected or held, or both ended and cleared: no clock read, on the
            // path of every pick.
            return true;
        }
        let now = self.now();
        if ejected_until > now || hold_until > now {
            return false;
        }
        // Both ended: cleared, unless a new ejection or hold came in between.
        let _ = self.ejected_until.compare_exchange(
            ejected_until,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        let _ =
            self.hold_until
                .compare_exchange(hold_until, 0, Ordering::Relaxed, Ordering::Relaxed);
        true
    }

    pub fn is_active_up(&self) -> bool {
        self.active_up.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > self.now()
    }

    /// Time left in the current ejection, if any.
    pub fn ejected_for(&self) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        let now = self.now();
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// Honours `Retry-After`: no new requests to this endpoint for `duration`.
    pub fn hold(&self, duration: Duration) {
        self.hold_until
            .fetch_max(self.at(duration), Ordering::Relaxed);
    }

    /// Ejects for `duration` (a verdict handed over by the process this one replaces).
    pub fn eject_for(&self, duration: Duration) {
        self.ejected_until
            .fetch_max(self.at(duration), Ordering::Relaxed);
    }

    pub fn set_active(&self, up: bool) -> bool {
        self.active_up.swap(up, Ordering::Relaxed) != up
    }
}
