//! Consistent hashing by weighted rendezvous (highest random weight): every endpoint
//! scores the key, the best score wins. Removing one of n endpoints moves only the keys
//! that endpoint held (1/n), and the result is identical on every instance.
//! Requests without a key are spread by weighted random.

use super::Candidate;
use super::mix64;
use super::random::WeightedRandom;

pub struct Rendezvous {
    fallback: WeightedRandom,
}

impl Rendezvous {
    pub fn new(fallback: WeightedRandom) -> Self {
        Rendezvous { fallback }
    }

    pub fn pick(
        &self,
        endpoints: &[impl Candidate],
        key: Option<u64>,
        skip: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let Some(key) = key else {
            return self.fallback.pick(endpoints, skip);
        };
        let mut best: Option<(usize, f64)> = None;
        for (i, endpoint) in endpoints.iter().enumerate() {
            if skip(i) {
                continue;
            }
            let score = weighted_score(key, endpoint.identity_hash(), endpoint.weight());
            if best.is_none_or(|(_, best_score)| score > best_score) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// `-weight / ln(u)` with `u` uniform in (0, 1) from hash(key, endpoint): the logarithmic
/// method, which gives each endpoint a share proportional to its weight.
pub(super) fn weighted_score(key: u64, endpoint: u64, weight: u32) -> f64 {
    let hash = mix64(key ^ endpoint.rotate_left(17));
    // 53 high bits to a float in (0, 1).
    let unit = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / unit.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::stable_hash;

    fn winner(key: u64, endpoints: &[(u64, u32)]) -> u64 {
        endpoints
            .iter()
            .map(|(id, w)| (*id, weighted_score(key, *id, *w)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap()
            .0
    }

    #[test]
    fn removing_one_of_four_moves_a_quarter() {
        let all: Vec<(u64, u32)> = (0..4)
            .map(|i| (stable_hash(format!("ep{i}").as_bytes()), 1))
            .collect();
        let three = &all[..3];
        let moved = (0..1000u64)
            .filter(|k| {
                let key = stable_hash(&k.to_le_bytes());
                winner(key, &all) != winner(key, three)
            })
            .count();
        assert!((180..=320).contains(&moved), "moved {moved}");
    }

    #[test]
    fn weights_shape_shares() {
        let all = [(stable_hash(b"a"), 3), (stable_hash(b"b"), 1)];
        let on_a = (0..4000u64)
            .filter(|k| winner(stable_hash(&k.to_le_bytes()), &all) == all[0].0)
            .count();
        assert!((2800..3200).contains(&on_a), "on_a {on_a}");
    }
}
