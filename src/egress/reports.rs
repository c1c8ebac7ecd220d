//! Ban reports from clients, for what Junction cannot read inside a tunnel: the exit
//! that last carried a session's traffic to a host is remembered, so that a report
//! (`x-junction-ban: <host>` on the session's next request, or the admin API) rests
//! that exit for that host as an automatic ban would.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use tokio::time::Instant;

use http::StatusCode;

use super::client_auth::ClientChoice;
use super::{EgressPlan, ProxyStatus};

pub static X_JUNCTION_BAN: HeaderName = HeaderName::from_static("x-junction-ban");

/// Sessions and hosts whose last exit is remembered, at most; beyond, the oldest half
/// is forgotten.
const MAX_REMEMBERED: usize = 100_000;

/// Whose traffic a report is about: a client's session id, or (without one) the
/// client itself, by address and user name. The address is kept as it is, not as text:
/// every plain request makes a key, and formatting it cost more than the rest of the
/// egress admission.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionKey {
    Session(String),
    Client(IpAddr, String),
}

impl SessionKey {
    pub fn of(choice: &ClientChoice, peer: SocketAddr) -> SessionKey {
        match &choice.session {
            Some(session) => SessionKey::Session(session.clone()),
            None => SessionKey::Client(peer.ip(), choice.user.clone().unwrap_or_default()),
        }
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionKey::Session(id) => f.write_str(id),
            SessionKey::Client(address, user) => write!(f, "{address}/{user}"),
        }
    }
}

/// Each key's last exit, and when it was used.
type Table<K> = Mutex<HashMap<K, (Arc<str>, Instant)>>;

/// A session and a host, owned, as `LastExits` keeps them.
#[derive(Debug, PartialEq, Eq)]
struct SessionHost {
    session: SessionKey,
    host: Box<str>,
}

/// A session and a host to look up by. The kept key and a pair of borrowed parts both
/// are one, so that a pair seen before (nearly every request) is found and updated
/// without building a key: no host string allocated per request.
trait SessionHostKey {
    fn parts(&self) -> (&SessionKey, &str);
}

impl SessionHostKey for SessionHost {
    fn parts(&self) -> (&SessionKey, &str) {
        (&self.session, &self.host)
    }
}

impl SessionHostKey for (&SessionKey, &str) {
    fn parts(&self) -> (&SessionKey, &str) {
        (self.0, self.1)
    }
}

impl Hash for dyn SessionHostKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn SessionHostKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn SessionHostKey + '_ {}

// Hashed as its borrowed form is: a map's key and what it is looked up by must agree.
impl Hash for SessionHost {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn SessionHostKey).hash(state);
    }
}

impl<'a> Borrow<dyn SessionHostKey + 'a> for SessionHost {
    fn borrow(&self) -> &(dyn SessionHostKey + 'a) {
        self
    }
}

fn lock<K>(table: &Table<K>) -> std::sync::MutexGuard<'_, HashMap<K, (Arc<str>, Instant)>> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

fn remember<K: Eq + Hash>(map: &Table<K>, key: K, exit: &Arc<str>, now: Instant) {
    let mut map = lock(map);
    if map.len() >= MAX_REMEMBERED && !map.contains_key(&key) {
        // Forget the older half: reports come soon after the traffic they are about.
        let mut ages: Vec<Instant> = map.values().map(|(_, at)| *at).collect();
        let middle = ages.len() / 2;
        let (_, cut, _) = ages.select_nth_unstable(middle);
        let cut = *cut;
        map.retain(|_, (_, at)| *at > cut);
    }
    map.insert(key, (exit.clone(), now));
}

/// The last exit each session, and anyone, used for each host.
#[derive(Default)]
pub struct LastExits {
    by_session: Table<SessionHost>,
    by_host: Table<String>,
}

impl LastExits {
    /// `session` reached `host` through `exit` just now.
    pub fn used(&self, session: &SessionKey, host: &str, exit: &Arc<str>, now: Instant) {
        // A pair or host seen before (nearly always) is updated in place: no key to build.
        // The `if let`'s lock is released before its `else`, where `remember` takes it
        // again (edition 2024's scoping of the condition's temporaries).
        let known = (session, host);
        if let Some(last) = lock(&self.by_session).get_mut(&known as &dyn SessionHostKey) {
            *last = (exit.clone(), now);
        } else {
            let key = SessionHost {
                session: session.clone(),
                host: host.into(),
            };
            remember(&self.by_session, key, exit, now);
        }
        if let Some(last) = lock(&self.by_host).get_mut(host) {
            *last = (exit.clone(), now);
            return;
        }
        remember(&self.by_host, host.to_string(), exit, now);
    }

    /// The exit `session` last used for `host`; without a session, the exit anyone
    /// last used for it.
    pub fn last(&self, session: Option<&SessionKey>, host: &str) -> Option<Arc<str>> {
        let last = match session {
            Some(session) => lock(&self.by_session)
                .get(&(session, host) as &dyn SessionHostKey)
                .cloned(),
            None => lock(&self.by_host).get(host).cloned(),
        };
        last.map(|(exit, _)| exit)
    }
}

/// A report that a site banned an exit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BanReport {
    /// The exit by name; without it, the exit the session (or anyone) last used.
    pub exit: Option<String>,
    pub session: Option<SessionKey>,
    pub host: String,
    /// How long the exit rests; without it, as for an automatic ban (`ban.cooldown`
    /// doubled per ban in a row, up to `max_cooldown`).
    pub cooldown: Option<Duration>,
}

/// What a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banned {
    pub exit: Arc<str>,
    pub host: String,
    pub resting_for: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("no exit is named {0:?}")]
    UnknownExit(String),
    #[error("session {session:?} has used no exit for {host} (or it was forgotten)")]
    UnknownSession { session: String, host: String },
    #[error("no exit has been used for {0} (or it was forgotten)")]
    UnknownHost(String),
}

/// A host as a report names it: lower case, without a port or IPv6 brackets. None
/// when it cannot be a host name or address.
pub fn report_host(text: &str) -> Option<String> {
    let text = text.trim();
    let host = if let Some(rest) = text.strip_prefix('[') {
        rest.split_once(']')?.0
    } else {
        match text.rsplit_once(':') {
            // One colon: host:port. More: a bare IPv6 address.
            Some((host, port)) if !host.contains(':') => {
                port.parse::<u16>().ok()?;
                host
            }
            _ => text,
        }
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    valid.then(|| host.to_ascii_lowercase())
}

/// The hosts `x-junction-ban` headers name (comma-separated, repeatable), or the first
/// value that names no host.
pub fn reported_hosts(headers: &HeaderMap) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    for value in headers.get_all(&X_JUNCTION_BAN) {
        let text = value
            .to_str()
            .map_err(|_| "x-junction-ban is not text".to_string())?;
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let host = report_host(item)
                .ok_or_else(|| format!("x-junction-ban: {item:?} is not a host"))?;
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
    }
    Ok(hosts)
}

// === Reports applied to the plan ===

impl EgressPlan {
    /// Rests the reported exit for the reported host, as an automatic ban would (or
    /// for the report's own cooldown).
    pub fn report_ban(&self, report: &BanReport) -> Result<Banned, ReportError> {
        let exit_name: Arc<str> = match (&report.exit, &report.session) {
            (Some(name), _) => name.as_str().into(),
            (None, session) => self
                .last_exits
                .last(session.as_ref(), &report.host)
                .ok_or_else(|| match session {
                    Some(session) => ReportError::UnknownSession {
                        session: session.to_string(),
                        host: report.host.clone(),
                    },
                    None => ReportError::UnknownHost(report.host.clone()),
                })?,
        };
        let exits = self.exits();
        let exit = exits
            .iter()
            .find(|e| e.name == exit_name)
            .ok_or_else(|| ReportError::UnknownExit(exit_name.to_string()))?;
        let now = Instant::now();
        let resting_for = match report.cooldown {
            Some(rest) => exit.rest_for(&report.host, rest, now),
            None => exit.cool_down(
                &report.host,
                self.ban.cooldown,
                self.ban.max_cooldown,
                self.rotator.rng(),
                now,
            ),
        };
        exit.counters
            .bans
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.share_rest(exit, &report.host, resting_for);
        tracing::info!(egress = %self.name, exit = %exit.name, host = %report.host, cooldown = ?resting_for, "exit banned by a client's report");
        Ok(Banned {
            exit: exit.name.clone(),
            host: report.host.clone(),
            resting_for,
        })
    }

    /// `x-junction-ban` on a request: each host named rests the exit this session last
    /// used for it. A report about a host the session has not used is ignored.
    pub(super) fn take_reports(
        &self,
        headers: &http::HeaderMap,
        choice: &ClientChoice,
        peer: SocketAddr,
    ) -> Result<(), ProxyStatus> {
        let hosts = reported_hosts(headers).map_err(|why| {
            ProxyStatus::new(
                StatusCode::BAD_REQUEST,
                "http_request_error",
                "bad_request",
                why,
            )
        })?;
        for host in hosts {
            let report = BanReport {
                session: Some(SessionKey::of(choice, peer)),
                host,
                ..BanReport::default()
            };
            if let Err(error) = self.report_ban(&report) {
                tracing::debug!(egress = %self.name, %error, "ban report ignored");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_without_port_or_case() {
        assert_eq!(
            report_host("WWW.Example.org").as_deref(),
            Some("www.example.org")
        );
        assert_eq!(
            report_host("example.org:443").as_deref(),
            Some("example.org")
        );
        assert_eq!(report_host("[::1]:443").as_deref(), Some("::1"));
        assert_eq!(report_host("::1").as_deref(), Some("::1"));
        assert_eq!(report_host(" 127.0.0.1 ").as_deref(), Some("127.0.0.1"));
        for bad in ["", "a b", "x:notaport", "[::1", "a/b", "ex\u{e9}mple.org"] {
            assert_eq!(report_host(bad), None, "{bad:?}");
        }
        let mut headers = HeaderMap::new();
        headers.append(&X_JUNCTION_BAN, "a.example, B.example:443".parse().unwrap());
        headers.append(&X_JUNCTION_BAN, "a.example".parse().unwrap());
        assert_eq!(
            reported_hosts(&headers).unwrap(),
            ["a.example", "b.example"]
        );
        headers.append(&X_JUNCTION_BAN, "no way".parse().unwrap());
        assert!(reported_hosts(&headers).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_exit_is_kept_per_session_and_per_host() {
        let last = LastExits::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let s1 = SessionKey::Session("s1".into());
        let s2 = SessionKey::Session("s2".into());
        last.used(&s1, "h", &a, Instant::now());
        last.used(&s2, "h", &b, Instant::now());
        assert_eq!(last.last(Some(&s1), "h"), Some(a.clone()));
        assert_eq!(last.last(Some(&s2), "h"), Some(b.clone()));
        assert_eq!(last.last(None, "h"), Some(b.clone()), "anyone's last");
        assert_eq!(last.last(Some(&s1), "other"), None);
        last.used(&s1, "h", &b, Instant::now());
        assert_eq!(last.last(Some(&s1), "h"), Some(b));
        // Updated in place, found by the borrowed pair: no second entry for it.
        assert_eq!(lock(&last.by_session).len(), 2);
        assert_eq!(lock(&last.by_host).len(), 1);
    }
}
