//! Traffic splits between a route's pools: exact proportions without stickiness (smooth
//! weighted round robin, so 95/5 is 95/5 over every 100 requests, not a coin's drift),
//! and sticky assignment by a hashed key that is the same on every instance and
//! monotone for the last target (the candidate, by convention): when its weight grows,
//! everyone already on it stays.

use std::sync::Mutex;

use crate::balance::mix64;

/// Weights of a route's targets, changeable at runtime (admin API, canary analysis).
pub struct Split {
    state: Mutex<SplitState>,
}

struct SplitState {
    weights: Vec<u32>,
    /// Smooth weighted round robin's running scores.
    current: Vec<i64>,
}

/// Sticky assignment resolution: a key lands in one of this many buckets.
const BUCKETS: u64 = 1_000_000;

impl Split {
    pub fn new(weights: Vec<u32>) -> Self {
        let current = vec![0; weights.len()];
        Split {
            state: Mutex::new(SplitState { weights, current }),
        }
    }

    pub fn weights(&self) -> Vec<u32> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .weights
            .clone()
    }

    pub fn set_weights(&self, weights: Vec<u32>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.current = vec![0; weights.len()];
        state.weights = weights;
    }

    /// The target for a request: by `sticky_key` (a stable hash) when there is one,
    /// else the next in the smooth weighted rotation. `None` when every weight is 0.
    pub fn pick(&self, sticky_key: Option<u64>) -> Option<usize> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let total: u64 = state.weights.iter().map(|w| u64::from(*w)).sum();
        if total == 0 {
            return None;
        }
        if let Some(key) = sticky_key {
            // Buckets are laid out from the last target down: the last (the candidate)
            // owns the lowest ones, so growing its weight only adds buckets to it.
            let bucket = mix64(key) % BUCKETS;
            let mut upper = 0u64;
            for (i, weight) in state.weights.iter().enumerate().rev() {
                upper += u64::from(*weight) * BUCKETS / total;
                if bucket < upper {
                    return Some(i);
                }
            }
            return state.weights.iter().position(|w| *w > 0);
        }
        let total = total as i64;
        let SplitState { weights, current } = &mut *state;
        let mut best = 0;
        for (i, weight) in weights.iter().enumerate() {
            current[i] += i64::from(*weight);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::stable_hash;

    #[test]
    fn exact_without_stickiness() {
        let split = Split::new(vec![95, 5]);
        let mut counts = [0; 2];
        for _ in 0..10_000 {
            counts[split.pick(None).unwrap()] += 1;
        }
        assert_eq!(counts, [9500, 500]);
    }

    #[test]
    fn sticky_is_stable_and_monotone_for_the_last_target() {
        // The candidate is the last target.
        let split = Split::new(vec![95, 5]);
        let keys: Vec<u64> = (0..10_000u64)
            .map(|i| stable_hash(format!("user-{i}").as_bytes()))
            .collect();
        let before: Vec<usize> = keys.iter().map(|k| split.pick(Some(*k)).unwrap()).collect();
        let on_candidate = before.iter().filter(|t| **t == 1).count();
        assert!((400..600).contains(&on_candidate), "{on_candidate}");
        assert_eq!(
            before,
            keys.iter()
                .map(|k| split.pick(Some(*k)).unwrap())
                .collect::<Vec<_>>()
        );
        split.set_weights(vec![75, 25]);
        let after: Vec<usize> = keys.iter().map(|k| split.pick(Some(*k)).unwrap()).collect();
        for (b, a) in before.iter().zip(&after) {
            if *b == 1 {
                assert_eq!(
                    *a, 1,
                    "a user on the candidate must stay there when it grows"
                );
            }
        }
        let grown = after.iter().filter(|t| **t == 1).count();
        assert!((2300..2700).contains(&grown), "{grown}");
    }

    #[test]
    fn zero_weights() {
        let split = Split::new(vec![0, 0]);
        assert_eq!(split.pick(None), None);
        split.set_weights(vec![0, 1]);
        assert_eq!(split.pick(Some(42)), Some(1));
        assert_eq!(split.pick(None), Some(1));
    }
}
