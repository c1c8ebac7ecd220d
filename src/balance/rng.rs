//! A lock-free, seedable random source (SplitMix64) shared by the policies that draw.
//! Seeded from the clock per process; tests inject a fixed seed to be exact.

use std::sync::atomic::{AtomicU64, Ordering};

use super::mix64;

pub struct SplitMix {
    state: AtomicU64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix {
    pub fn with_seed(seed: u64) -> Self {
        SplitMix {
            state: AtomicU64::new(seed),
        }
    }

    pub fn from_clock() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self::with_seed(nanos ^ u64::from(std::process::id()).rotate_left(32))
    }

    pub fn next_u64(&self) -> u64 {
        mix64(
            self.state
                .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
                .wrapping_add(GOLDEN_GAMMA),
        )
    }

    /// Uniform in `0..bound` (bound > 0), without modulo bias worth caring about at
    /// the bounds used here (weights sums far below 2^32).
    pub fn below(&self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}
