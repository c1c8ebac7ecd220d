//! Least connections: the endpoint with the fewest in-flight requests relative to its
//! weight. Ties go to the next endpoint in rotation, so idle pools still spread load.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::Candidate;

#[derive(Default)]
pub struct LeastConn {
    rotation: AtomicUsize,
}

impl LeastConn {
    pub fn pick(
        &self,
        endpoints: &[impl Candidate],
        skip: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = endpoints.len();
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<(usize, u64, u64)> = None; // (index, in_flight, weight)
        for step in 0..n {
            let i = (start + step) % n;
            if skip(i) {
                continue;
            }
            let load = endpoints[i].in_flight();
            let weight = u64::from(endpoints[i].weight());
            // load_i / weight_i < load_best / weight_best, without division.
            let better = match best {
                None => true,
                Some((_, best_load, best_weight)) => {
                    u128::from(load) * u128::from(best_weight)
                        < u128::from(best_load) * u128::from(weight)
                }
            };
            if better {
                best = Some((i, load, weight));
            }
        }
        best.map(|(i, _, _)| i)
    }
}
