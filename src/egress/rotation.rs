//! Which exit a request leaves from: the eligible exits (the asked region, reachable,
//! not resting after a ban by this host, not tried yet by this request), then the
//! rotation policy, with sessions pinned to their exit while they stay in use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::exits::Exit;
use crate::balance::{SplitMix, mix64, stable_hash};

/// Sessions remembered at most; beyond, idle ones are forgotten first.
const MAX_SESSIONS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    RoundRobin,
    Random,
    LeastUsed,
    StickyHost,
    StickySession,
}

impl Rotation {
    pub fn parse(text: &str) -> Option<Rotation> {
        Some(match text {
            "round_robin" => Rotation::RoundRobin,
            "random" => Rotation::Random,
            "least_used" => Rotation::LeastUsed,
            "sticky_host" => Rotation::StickyHost,
            "sticky_session" => Rotation::StickySession,
            _ => return None,
        })
    }
}

/// What a request asks of its exit.
pub struct Ask<'a> {
    pub host: &'a str,
    pub region: Option<&'a str>,
    /// The client's session id, if it chose one.
    pub session: Option<&'a str>,
    /// Under `sticky_session`, requests without a session id use this one (the client's
    /// address and user), so each client keeps its exit.
    pub client_session: &'a str,
    /// The exit the fleet has this session on (`state.backend`), if it knows one: it
    /// wins over this instance's memory while eligible.
    pub fleet_exit: Option<&'a str>,
}

pub struct Rotator {
    rotation: Rotation,
    next: AtomicUsize,
    rng: SplitMix,
    session_idle: Duration,
    sessions: Mutex<HashMap<String, (Arc<str>, Instant)>>,
}

impl Rotator {
    pub fn new(rotation: Rotation, session_idle: Duration) -> Self {
        Rotator {
            rotation,
            next: AtomicUsize::new(0),
            rng: SplitMix::from_clock(),
            session_idle,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether requests without a session id are keyed by client (`sticky_session`).
    pub fn keys_clients(&self) -> bool {
        self.rotation == Rotation::StickySession
    }

    pub fn session_idle(&self) -> Duration {
        self.session_idle
    }

    pub fn rng(&self) -> &SplitMix {
        &self.rng
    }

    /// The exit for this attempt, or None when no exit is eligible.
    pub fn pick(
        &self,
        exits: &[Arc<Exit>],
        ask: &Ask<'_>,
        tried: &[Arc<Exit>],
        now: Instant,
    ) -> Option<Arc<Exit>> {
        let eligible: Vec<&Arc<Exit>> = exits
            .iter()
            .filter(|exit| {
                ask.region.is_none_or(|r| exit.region.as_deref() == Some(r))
                    && exit.is_up()
                    && !tried.iter().any(|t| Arc::ptr_eq(t, exit))
                    && !exit.is_cooling(ask.host, now)
            })
            .collect();
        if eligible.is_empty() {
            return None;
        }
        if let Some(session) = self.session_of(ask) {
            return Some(self.pick_for_session(session, ask, &eligible, now));
        }
        Some(self.pick_by_policy(&eligible, ask.host).clone())
    }

    fn pick_by_policy<'e>(&self, eligible: &[&'e Arc<Exit>], host: &str) -> &'e Arc<Exit> {
        let turn = || self.next.fetch_add(1, Ordering::Relaxed);
        match self.rotation {
            Rotation::RoundRobin | Rotation::StickySession => eligible[turn() % eligible.len()],
            Rotation::Random => eligible[(self.rng.next_u64() % eligible.len() as u64) as usize],
            Rotation::LeastUsed => {
                // Ties go round: equal exits share the load instead of the first taking all.
                let start = turn();
                (0..eligible.len())
                    .map(|i| eligible[(start + i) % eligible.len()])
                    .min_by_key(|exit| exit.in_use())
                    .unwrap_or(eligible[0])
            }
            Rotation::StickyHost => {
                // Rendezvous hashing: a host moves only when its exit becomes ineligible.
                let key = stable_hash(host.to_ascii_lowercase().as_bytes());
                eligible
                    .iter()
                    .max_by_key(|exit| mix64(key ^ exit.identity_hash))
                    .copied()
                    .unwrap_or(eligible[0])
            }
        }
    }

    /// The session whose exit a request keeps: its session id, or under
    /// `sticky_session` its client's.
    pub fn session_of<'a>(&self, ask: &Ask<'a>) -> Option<&'a str> {
        ask.session.or(match self.rotation {
            Rotation::StickySession => Some(ask.client_session),
            _ => None,
        })
    }

    fn pick_for_session(
        &self,
        session: &str,
        ask: &Ask<'_>,
        eligible: &[&Arc<Exit>],
        now: Instant,
    ) -> Arc<Exit> {
        // A session is per region too: `session-1` in jp and in fr are two sessions.
        let key = format!("{}\u{0}{session}", ask.region.unwrap_or(""));
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let fleet = ask
            .fleet_exit
            .and_then(|name| eligible.iter().find(|e| &*e.name == name));
        if fleet.is_none()
            && let Some((name, last)) = sessions.get_mut(&key)
            && now.duration_since(*last) < self.session_idle
            && let Some(exit) = eligible.iter().find(|e| e.name == *name)
        {
            *last = now;
            return (*exit).clone();
        }
        let exit = match fleet {
            Some(exit) => (*exit).clone(),
            None => eligible[self.next.fetch_add(1, Ordering::Relaxed) % eligible.len()].clone(),
        };
        if sessions.len() >= MAX_SESSIONS {
            let idle = self.session_idle;
            sessions.retain(|_, (_, last)| now.duration_since(*last) < idle);
            if sessions.len() >= MAX_SESSIONS {
                sessions.clear();
            }
        }
        sessions.insert(key, (exit.name.clone(), now));
        exit
    }
}

// === Read-only snapshots, for the admin API ===

/// A session pinned to its exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedSession {
    /// The region it asked for ("" for any).
    pub region: String,
    pub session: String,
    pub exit: Arc<str>,
    /// Since its last request (its start is not kept).
    pub idle: Duration,
    /// Until it is forgotten unless used again.
    pub expires_in: Duration,
}

impl Rotator {
    /// The `top` sessions used most recently, and how many are live in all (used within
    /// `session_idle`; older ones wait to be swept and are not counted).
    pub fn sessions_snapshot(&self, now: Instant, top: usize) -> (Vec<PinnedSession>, usize) {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let mut live: Vec<(&String, &(Arc<str>, Instant))> = sessions
            .iter()
            .filter(|(_, (_, last))| now.saturating_duration_since(*last) < self.session_idle)
            .collect();
        let total = live.len();
        let order = |a: &(&String, &(Arc<str>, Instant)), b: &(&String, &(Arc<str>, Instant))| {
            (b.1.1, a.0).cmp(&(a.1.1, b.0))
        };
        if live.len() > top && top > 0 {
            live.select_nth_unstable_by(top - 1, order);
        }
        live.truncate(top);
        live.sort_unstable_by(order);
        let sessions = live
            .into_iter()
            .map(|(key, (exit, last))| {
                let (region, session) = key.split_once('\u{0}').unwrap_or(("", key));
                let idle = now.saturating_duration_since(*last);
                PinnedSession {
                    region: region.to_string(),
                    session: session.to_string(),
                    exit: exit.clone(),
                    idle,
                    expires_in: self.session_idle.saturating_sub(idle),
                }
            })
            .collect();
        (sessions, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::exits::ExitSource;

    fn exits(regions: &[&str]) -> Vec<Arc<Exit>> {
        regions
            .iter()
            .enumerate()
            .map(|(i, region)| {
                let source = ExitSource {
                    url: "direct".into(),
                    region: Some(region.to_string()),
                    name: Some(format!("e{i}")),
                };
                Exit::new(source, None, Arc::default()).unwrap()
            })
            .collect()
    }

    fn ask<'a>(host: &'a str, region: Option<&'a str>, session: Option<&'a str>) -> Ask<'a> {
        Ask {
            host,
            region,
            session,
            client_session: "127.0.0.1",
            fleet_exit: None,
        }
    }

    fn names(rotator: &Rotator, exits: &[Arc<Exit>], ask: &Ask<'_>, n: usize) -> Vec<String> {
        let now = Instant::now();
        (0..n)
            .map(|_| rotator.pick(exits, ask, &[], now).unwrap().name.to_string())
            .collect()
    }

    #[tokio::test]
    async fn round_robin_takes_turns_within_the_region() {
        let exits = exits(&["us", "fr", "us"]);
        let rotator = Rotator::new(Rotation::RoundRobin, Duration::from_secs(60));
        assert_eq!(
            names(&rotator, &exits, &ask("h", None, None), 6),
            ["e0", "e1", "e2", "e0", "e1", "e2"]
        );
        let us = names(&rotator, &exits, &ask("h", Some("us"), None), 4);
        assert_eq!(us.iter().filter(|n| *n == "e0").count(), 2);
        assert_eq!(us.iter().filter(|n| *n == "e2").count(), 2);
        assert!(
            rotator
                .pick(&exits, &ask("h", Some("jp"), None), &[], Instant::now())
                .is_none()
        );
    }

    #[tokio::test]
    async fn tried_and_cooling_exits_are_skipped() {
        let exits = exits(&["us", "us"]);
        let rotator = Rotator::new(Rotation::RoundRobin, Duration::from_secs(60));
        let now = Instant::now();
        let picked = rotator.pick(&exits, &ask("h", None, None), &[exits[0].clone()], now);
        assert_eq!(&*picked.unwrap().name, "e1");
        exits[1].cool_down(
            "h",
            Duration::from_secs(10),
            Duration::from_secs(10),
            rotator.rng(),
            now,
        );
        for _ in 0..4 {
            assert_eq!(
                &*rotator
                    .pick(&exits, &ask("h", None, None), &[], now)
                    .unwrap()
                    .name,
                "e0"
            );
        }
        assert!(
            rotator
                .pick(&exits, &ask("h", None, None), &[exits[0].clone()], now)
                .is_none()
        );
        assert!(
            rotator
                .pick(&exits, &ask("other", None, None), &[exits[0].clone()], now)
                .is_some()
        );
    }

    #[tokio::test]
    async fn sessions_keep_their_exit_until_idle() {
        let exits = exits(&["us", "us", "us"]);
        let rotator = Rotator::new(Rotation::RoundRobin, Duration::from_secs(60));
        let first = names(&rotator, &exits, &ask("h", None, Some("abc")), 10);
        assert!(first.iter().all(|n| *n == first[0]));
        let spread: std::collections::HashSet<String> = (0..6)
            .map(|i| {
                let session = format!("s{i}");
                names(&rotator, &exits, &ask("h", None, Some(&session)), 1).remove(0)
            })
            .collect();
        assert!(spread.len() > 1);
        let later = Instant::now() + Duration::from_secs(61);
        // After the idle expiry the session is assigned afresh (it may land anywhere).
        assert!(
            rotator
                .pick(&exits, &ask("h", None, Some("abc")), &[], later)
                .is_some()
        );
    }

    #[tokio::test]
    async fn sticky_host_moves_only_the_hosts_of_a_removed_exit() {
        let exits = exits(&["a", "b", "c", "d"]);
        let rotator = Rotator::new(Rotation::StickyHost, Duration::from_secs(60));
        let now = Instant::now();
        let hosts: Vec<String> = (0..200).map(|i| format!("site{i}.example")).collect();
        let before: Vec<Arc<str>> = hosts
            .iter()
            .map(|h| {
                rotator
                    .pick(&exits, &ask(h, None, None), &[], now)
                    .unwrap()
                    .name
                    .clone()
            })
            .collect();
        let tried = [exits[3].clone()];
        for (host, old) in hosts.iter().zip(&before) {
            let new = rotator
                .pick(&exits, &ask(host, None, None), &tried, now)
                .unwrap();
            if &**old != "e3" {
                assert_eq!(&new.name, old, "{host} moved");
            }
        }
    }

    #[tokio::test]
    async fn least_used_prefers_the_idle_exit() {
        let exits = exits(&["a", "b"]);
        let rotator = Rotator::new(Rotation::LeastUsed, Duration::from_secs(60));
        let _busy = exits[0].use_guard();
        for _ in 0..4 {
            assert_eq!(
                &*rotator
                    .pick(&exits, &ask("h", None, None), &[], Instant::now())
                    .unwrap()
                    .name,
                "e1"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_snapshot_lists_live_sessions_most_recent_first() {
        let exits = exits(&["us", "fr"]);
        let rotator = Rotator::new(Rotation::RoundRobin, Duration::from_secs(60));
        let start = Instant::now();
        rotator.pick(&exits, &ask("h", Some("fr"), Some("old")), &[], start);
        tokio::time::advance(Duration::from_secs(10)).await;
        let now = Instant::now();
        rotator.pick(&exits, &ask("h", None, Some("new")), &[], now);
        let (listed, live) = rotator.sessions_snapshot(now, 1);
        assert_eq!(live, 2);
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].session.as_str(), listed[0].region.as_str()),
            ("new", "")
        );
        let (listed, _) = rotator.sessions_snapshot(now, 10);
        assert_eq!(
            (listed[1].session.as_str(), listed[1].region.as_str()),
            ("old", "fr")
        );
        assert_eq!(&*listed[1].exit, "e1", "the only exit in fr");
        assert_eq!(listed[1].idle, Duration::from_secs(10));
        assert_eq!(listed[1].expires_in, Duration::from_secs(50));
        // Idle past `session_idle`: no longer counted.
        let later = start + Duration::from_secs(65);
        assert_eq!(rotator.sessions_snapshot(later, 10).1, 1);
    }
}
