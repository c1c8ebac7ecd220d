//! Smooth weighted round robin (nginx's algorithm), precomputed: the order for one full
//! cycle is built once per plan, so picking is one atomic increment, with no lock.
//! Weights 2:1 give a, b, a — interleaved, and exact over every cycle.

use std::sync::atomic::{AtomicUsize, Ordering};

pub struct SmoothWeighted {
    sequence: Vec<u32>,
    cursor: AtomicUsize,
}

impl SmoothWeighted {
    pub fn new(weights: &[u32]) -> Self {
        SmoothWeighted {
            sequence: smooth_sequence(weights),
            cursor: AtomicUsize::new(0),
        }
    }

    pub fn pick(&self, endpoint_count: usize, skip: &dyn Fn(usize) -> bool) -> Option<usize> {
        let len = self.sequence.len();
        if len == 0 || endpoint_count == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for step in 0..len {
            let candidate = self.sequence[(start + step) % len] as usize;
            if candidate < endpoint_count && !skip(candidate) {
                if step > 0 {
                    // Move past the skipped slots so the next caller does not land on them again.
                    self.cursor.fetch_add(step, Ordering::Relaxed);
                }
                return Some(candidate);
            }
        }
        None
    }
}

/// One cycle of nginx's smooth weighted round robin, with weights divided by their gcd.
fn smooth_sequence(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<i64> = weights.iter().map(|w| i64::from(w / divisor)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut sequence = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, weight) in weights.iter().enumerate() {
            current[i] += weight;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        sequence.push(best as u32);
    }
    sequence
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_to_one_interleaves() {
        assert_eq!(smooth_sequence(&[2, 1]), vec![0, 1, 0]);
        assert_eq!(smooth_sequence(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_sequence(&[4, 2]), vec![0, 1, 0]);
    }

    #[test]
    fn exact_over_cycles_and_skips() {
        let policy = SmoothWeighted::new(&[2, 1]);
        let mut counts = [0; 2];
        for _ in 0..300 {
            counts[policy.pick(2, &|_| false).unwrap()] += 1;
        }
        assert_eq!(counts, [200, 100]);
        assert_eq!(policy.pick(2, &|i| i == 0), Some(1));
        assert_eq!(policy.pick(2, &|_| true), None);
    }
}
