//! A deadline a connection sets for every request without moving a timer in tokio's
//! wheel each time: its one `Sleep` is moved only when it fires before the deadline (which
//! was pushed back since) or when a nearer deadline is set. Registering and cancelling a
//! timer per request head cost more than parsing it, and woke the timer driver.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Far enough that it never fires before a real deadline is set.
const UNSET: Duration = Duration::from_secs(60 * 60 * 24 * 365);

pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
    /// When `sleep` fires.
    armed: Instant,
    /// When the deadline is.
    due: Instant,
}

impl Deadline {
    pub fn new() -> Self {
        let far = Instant::now() + UNSET;
        Deadline {
            sleep: Box::pin(tokio::time::sleep_until(far)),
            armed: far,
            due: far,
        }
    }

    /// Sets the deadline; the timer moves only if it would fire too late.
    pub fn set(&mut self, due: Instant) {
        self.due = due;
        if due < self.armed {
            self.sleep.as_mut().reset(due);
            self.armed = due;
        }
    }

    /// Resolves once the deadline has passed.
    pub async fn elapsed(&mut self) {
        loop {
            self.sleep.as_mut().await;
            if Instant::now() >= self.due {
                return;
            }
            // Set later since it was armed: wait for the rest.
            self.sleep.as_mut().reset(self.due);
            self.armed = self.due;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_fires_at_its_latest_setting_not_before() {
        let start = Instant::now();
        let mut deadline = Deadline::new();
        deadline.set(start + Duration::from_secs(5));
        // Pushed back before it fired: it must not fire at the first setting.
        deadline.set(start + Duration::from_secs(8));
        deadline.elapsed().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_nearer_deadline_moves_the_timer_forward() {
        let start = Instant::now();
        let mut deadline = Deadline::new();
        deadline.set(start + Duration::from_secs(30));
        deadline.set(start + Duration::from_secs(2));
        deadline.elapsed().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        // Used again after firing: it waits for the new deadline.
        deadline.set(start + Duration::from_secs(10));
        deadline.elapsed().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_already_past_fires_at_once() {
        let start = Instant::now();
        let mut deadline = Deadline::new();
        deadline.set(start + Duration::from_secs(3));
        deadline.elapsed().await;
        deadline.set(start + Duration::from_secs(1));
        deadline.elapsed().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
    }
}
