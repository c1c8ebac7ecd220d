//! Weighted random choice: each endpoint is drawn with probability weight / total.

use std::sync::Arc;

use super::Candidate;
use super::SplitMix;

pub struct WeightedRandom {
    rng: Arc<SplitMix>,
}

impl WeightedRandom {
    pub fn new(rng: Arc<SplitMix>) -> Self {
        WeightedRandom { rng }
    }

    pub fn pick(
        &self,
        endpoints: &[impl Candidate],
        skip: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let total: u64 = (0..endpoints.len())
            .filter(|i| !skip(*i))
            .map(|i| u64::from(endpoints[i].weight()))
            .sum();
        if total == 0 {
            return None;
        }
        let mut ticket = self.rng.below(total);
        for (i, endpoint) in endpoints.iter().enumerate() {
            if skip(i) {
                continue;
            }
            let weight = u64::from(endpoint.weight());
            if ticket < weight {
                return Some(i);
            }
            ticket -= weight;
        }
        None
    }

    pub fn rng(&self) -> &SplitMix {
        &self.rng
    }
}
