//! Least queue: the endpoint whose model server reports the shortest queue, then the
//! least KV-cache use, corrected by what Junction sent and saw finish since the report.
//! Without a fresh report it is least connections. With prefix affinity, a request
//! goes to its prompt prefix's endpoint while that queue is within a slack of the best.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::Candidate;
use super::rendezvous::weighted_score;

/// `affinity = "prefix"`: how much longer (in requests, per unit of weight) the
/// prefix's own endpoint's queue may be than the best one's and still get the request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefixAffinity {
    pub slack: f64,
}

pub struct LeastQueue {
    /// Reports older than this are ignored: the endpoint is judged by in-flight counts.
    max_age: Duration,
    affinity: Option<PrefixAffinity>,
    rotation: AtomicUsize,
}

/// How loaded an endpoint looks: compared by `queue`, then `kv_usage`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cost {
    queue: f64,
    kv_usage: f64,
}

impl Cost {
    fn better_than(&self, other: &Cost) -> bool {
        self.queue < other.queue || (self.queue == other.queue && self.kv_usage < other.kv_usage)
    }
}

impl LeastQueue {
    pub fn new(max_age: Duration, affinity: Option<PrefixAffinity>) -> Self {
        LeastQueue {
            max_age,
            affinity,
            rotation: AtomicUsize::new(0),
        }
    }

    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// `prefix`: the hash of the request's prompt prefix, when the pool has prefix
    /// affinity and the request is a chat request.
    pub fn pick(
        &self,
        endpoints: &[impl Candidate],
        prefix: Option<u64>,
        skip: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = endpoints.len();
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<(usize, Cost)> = None;
        let mut preferred: Option<(usize, Cost, f64)> = None;
        let affinity = self.affinity.zip(prefix);
        for step in 0..n {
            let i = (start + step) % n;
            if skip(i) {
                continue;
            }
            let cost = self.cost(&endpoints[i]);
            if best.is_none_or(|(_, best)| cost.better_than(&best)) {
                best = Some((i, cost));
            }
            if let Some((_, key)) = affinity {
                let score =
                    weighted_score(key, endpoints[i].identity_hash(), endpoints[i].weight());
                if preferred.is_none_or(|(_, _, best_score)| score > best_score) {
                    preferred = Some((i, cost, score));
                }
            }
        }
        let (best, best_cost) = best?;
        match (affinity, preferred) {
            (Some((policy, _)), Some((i, cost, _)))
                if cost.queue <= best_cost.queue + policy.slack =>
            {
                Some(i)
            }
            _ => Some(best),
        }
    }

    /// A fresh report: requests the endpoint holds (waiting and running as it reported
    /// them, plus Junction's in-flight change since, so a burst between two reports
    /// spreads instead of piling on the endpoint that looked emptiest), waiting ones
    /// counted twice, as they show the endpoint is full. No fresh report: the in-flight
    /// count, as least connections reads it. Per unit of weight.
    fn cost(&self, endpoint: &impl Candidate) -> Cost {
        let weight = f64::from(endpoint.weight().max(1));
        let in_flight = endpoint.in_flight() as f64;
        match endpoint.load().filter(|r| r.age <= self.max_age) {
            Some(report) => {
                let change = in_flight - report.in_flight_then as f64;
                let held = (report.waiting + report.running + change).max(0.0);
                Cost {
                    queue: (held + report.waiting) / weight,
                    kv_usage: report.kv_usage,
                }
            }
            None => Cost {
                queue: in_flight / weight,
                kv_usage: 0.0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::LoadReading;
    use crate::balance::stable_hash;

    struct Fake {
        id: u64,
        in_flight: u64,
        report: Option<LoadReading>,
    }

    impl Candidate for Fake {
        fn weight(&self) -> u32 {
            1
        }
        fn in_flight(&self) -> u64 {
            self.in_flight
        }
        fn latency_nanos(&self) -> f64 {
            0.0
        }
        fn identity_hash(&self) -> u64 {
            self.id
        }
        fn load(&self) -> Option<LoadReading> {
            self.report
        }
    }

    fn report(waiting: f64, running: f64, kv_usage: f64, age_ms: u64) -> Option<LoadReading> {
        Some(LoadReading {
            waiting,
            running,
            kv_usage,
            in_flight_then: 0,
            age: Duration::from_millis(age_ms),
        })
    }

    fn endpoints(reports: &[Option<LoadReading>], in_flight: &[u64]) -> Vec<Fake> {
        reports
            .iter()
            .zip(in_flight)
            .enumerate()
            .map(|(i, (report, in_flight))| Fake {
                id: stable_hash(format!("ep{i}").as_bytes()),
                in_flight: *in_flight,
                report: *report,
            })
            .collect()
    }

    const FRESH: Duration = Duration::from_secs(2);

    #[test]
    fn shortest_queue_then_least_kv() {
        let policy = LeastQueue::new(FRESH, None);
        let pool = endpoints(
            &[
                report(4.0, 8.0, 0.9, 10),
                report(0.0, 6.0, 0.5, 10),
                report(0.0, 6.0, 0.3, 10),
            ],
            &[0, 0, 0],
        );
        for _ in 0..6 {
            assert_eq!(policy.pick(&pool, None, &|_| false), Some(2));
        }
        assert_eq!(policy.pick(&pool, None, &|i| i == 2), Some(1));
    }

    #[test]
    fn in_flight_since_the_report_counts() {
        let policy = LeastQueue::new(FRESH, None);
        // Equal reports, but Junction has sent three to the first since.
        let mut pool = endpoints(
            &[report(0.0, 2.0, 0.2, 10), report(0.0, 2.0, 0.2, 10)],
            &[3, 0],
        );
        assert_eq!(policy.pick(&pool, None, &|_| false), Some(1));
        // And three of the second's finished: it is the emptier one by far.
        pool[1].report.as_mut().unwrap().in_flight_then = 5;
        pool[1].in_flight = 2;
        pool[0].report.as_mut().unwrap().running = 0.0;
        assert_eq!(policy.pick(&pool, None, &|_| false), Some(1));
    }

    #[test]
    fn stale_reports_fall_back_to_in_flight_counts() {
        let policy = LeastQueue::new(FRESH, None);
        // The first reports an empty queue, but two seconds and more ago.
        let pool = endpoints(
            &[report(0.0, 0.0, 0.0, 2_500), report(9.0, 9.0, 0.9, 100)],
            &[5, 1],
        );
        // Fresh, the second is far worse (9 + 9 + 9 + 1 - 0); stale, the first counts 5.
        assert_eq!(policy.pick(&pool, None, &|_| false), Some(0));
        let all_stale = endpoints(&[report(0.0, 0.0, 0.0, 3_000), None], &[5, 1]);
        assert_eq!(policy.pick(&all_stale, None, &|_| false), Some(1));
    }

    #[test]
    fn prefix_affinity_within_slack() {
        let policy = LeastQueue::new(FRESH, Some(PrefixAffinity { slack: 2.0 }));
        let key = stable_hash(b"a system prompt");
        let quiet = endpoints(&[report(0.0, 1.0, 0.1, 10); 4], &[0; 4]);
        let home = policy.pick(&quiet, Some(key), &|_| false).unwrap();
        for _ in 0..8 {
            assert_eq!(policy.pick(&quiet, Some(key), &|_| false), Some(home));
        }
        // Two more requests at home: still within the slack.
        let mut busy = endpoints(&[report(0.0, 1.0, 0.1, 10); 4], &[0; 4]);
        busy[home].report.as_mut().unwrap().running = 3.0;
        assert_eq!(policy.pick(&busy, Some(key), &|_| false), Some(home));
        // A queue at home: beyond it, the best endpoint gets the request.
        busy[home].report.as_mut().unwrap().waiting = 1.0;
        assert_ne!(policy.pick(&busy, Some(key), &|_| false), Some(home));
        // Without a key, plain least queue.
        let picks: std::collections::HashSet<_> = (0..8)
            .filter_map(|_| policy.pick(&quiet, None, &|_| false))
            .collect();
        assert_eq!(picks.len(), 4);
    }

    #[test]
    fn nothing_eligible() {
        let policy = LeastQueue::new(FRESH, None);
        let pool = endpoints(&[None, None], &[0, 0]);
        assert_eq!(policy.pick(&pool, None, &|_| true), None);
    }
}
