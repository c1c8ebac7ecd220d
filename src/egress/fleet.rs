//! Egress state shared by a fleet (`state = { backend = "redis://..." }`): the rests of
//! exits after bans, per (exit, host), a site's holds (`Retry-After`), its rate slots and
//! concurrency leases, and the exit of each session are written to Redis as keys that expire with them, and read back
//! before a request waits for its turn and picks its exit, so an exit banned through one instance rests on all and a
//! session keeps its exit whichever instance it reaches. Redis failing never stops traffic: the local state
//! decides, with one warning per outage, a counter, and no Redis call for a second.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::EgressPlan;
use super::exits::Exit;
use super::politeness::{LeaseAnswer, SharedSlots, SlotAnswer};
use super::rotation::Ask;

/// Longest wait for Redis on the request path.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, Redis is left alone this long: requests go by local state at once.
const BACKOFF: Duration = Duration::from_secs(1);

/// The remaining rest (ms) of each key; -2/-1 (none, no expiry) for the others.
static READ_RESTS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('PTTL', key) end
return out
",
    )
});

/// Sets a rest of ARGV[1] ms unless the key already rests longer (two instances banning
/// at once keep the longer rest).
static WRITE_REST: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return left
",
    )
});

/// A session's exit, or "".
static READ_SESSION: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new("return {redis.call('GET', KEYS[1]) or ''}"));

/// Pins a session: ARGV[1] the exit, ARGV[2] its idle time in ms.
static WRITE_SESSION: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new("redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return {''}")
});

/// Reserves a host's next rate slot, by Redis's clock (instances' clocks may differ):
/// KEYS[1] holds the earliest time (µs) of the next slot; ARGV[1] the spacing, ARGV[2]
/// the longest wait allowed (µs). Returns {1, wait} with the slot taken, or {0, wait}
/// when it is further away than allowed (nothing taken).
static RESERVE_SLOT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local wait = slot - now
if wait > tonumber(ARGV[2]) then return {0, wait} end
local after = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', after), 'PX', math.floor((after - now) / 1000) + 1000)
return {1, wait}
",
    )
});

/// Takes one of a host's concurrency leases (a sorted set of lease ids scored by their
/// expiry, by Redis's clock): KEYS[1] the set, ARGV[1] the cap, ARGV[2] the lease time
/// (ms), ARGV[3] the lease id. Expired leases (their instance died) are dropped first.
/// Returns {1} when taken, {0} when the fleet holds `cap` already.
static TAKE_LEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return {0} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000)
return {1}
",
    )
});

/// Extends a lease still held (ARGV[1] the lease time in ms, ARGV[2] its id).
static RENEW_LEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) + 1000)
return {1}
",
    )
});

/// Gives a lease back (ARGV[1] its id).
static RETURN_LEASE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new("redis.call('ZREM', KEYS[1], ARGV[1]) return {1}"));

/// How long a concurrency lease lasts unless renewed: an instance that dies holding one
/// frees it after this.
const LEASE_TIME: Duration = Duration::from_secs(30);
/// How often a held lease is renewed.
const LEASE_RENEWAL: Duration = Duration::from_secs(10);

/// A host's concurrency lease held in Redis: renewed while held, given back on drop
/// (in the background; if that fails it expires with [`LEASE_TIME`]).
struct HeldLease {
    key: String,
    id: String,
    connection: ConnectionManager,
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.renewal.abort();
        let (key, id) = (std::mem::take(&mut self.key), std::mem::take(&mut self.id));
        let mut connection = self.connection.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut invocation = RETURN_LEASE.prepare_invoke();
                invocation.key(key).arg(id);
                let returned = invocation.invoke_async::<Vec<i64>>(&mut connection);
                let _ = tokio::time::timeout(REDIS_TIMEOUT, returned).await;
            });
        }
    }
}

pub struct FleetState {
    /// For logs: the URL without its password.
    url: String,
    /// Keys start `junction:egress:<listener>:`.
    prefix: String,
    client: redis::Client,
    connection: tokio::sync::OnceCell<ConnectionManager>,
    in_outage: AtomicBool,
    /// No Redis call before this instant (after a failure).
    quiet_until: Mutex<Option<Instant>>,
    /// Redis calls that failed (or were skipped in the backoff) since start.
    pub errors: Arc<AtomicU64>,
    /// Lease ids are `<instance>-<n>`, unique across the fleet.
    lease_ids: AtomicU64,
    instance: String,
}

impl FleetState {
    pub fn new(url: &str, egress: &str) -> Result<Self, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("{url:?} is not a Redis URL: {e}"))?;
        Ok(FleetState {
            url: without_password(url),
            prefix: format!("junction:egress:{egress}:"),
            client,
            connection: tokio::sync::OnceCell::new(),
            in_outage: AtomicBool::new(false),
            quiet_until: Mutex::new(None),
            errors: Arc::default(),
            lease_ids: AtomicU64::new(0),
            instance: format!(
                "{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
            ),
        })
    }

    fn rest_key(&self, exit: &str, host: &str) -> String {
        format!("{}rest:{exit}:{host}", self.prefix)
    }

    fn hold_key(&self, host: &str) -> String {
        format!("{}hold:{host}", self.prefix)
    }

    /// The fleet-wide hold of `host` (a site's `Retry-After`), then the remaining rest
    /// of each of `exits` for it, in one round trip (None: none, or Redis could not say).
    pub async fn host_state(
        &self,
        exits: &[Arc<str>],
        host: &str,
    ) -> Option<Vec<Option<Duration>>> {
        let mut keys = vec![self.hold_key(host)];
        keys.extend(exits.iter().map(|e| self.rest_key(e, host)));
        let left = self.invoke(&READ_RESTS, &keys, &[]).await?;
        Some(
            left.into_iter()
                .map(|ms| (ms > 0).then(|| Duration::from_millis(ms as u64)))
                .collect(),
        )
    }

    /// Takes `host`'s next rate slot of the fleet (see [`RESERVE_SLOT`]).
    async fn reserve_slot(&self, host: &str, spacing: Duration, max_wait: Duration) -> SlotAnswer {
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let key = format!("{}slot:{host}", self.prefix);
        let answer = self
            .invoke(&RESERVE_SLOT, &[key], &[micros(spacing), micros(max_wait)])
            .await?;
        let [taken, wait] = answer[..] else {
            return None;
        };
        let wait = Duration::from_micros(wait.max(0) as u64);
        Some(if taken == 1 { Ok(wait) } else { Err(wait) })
    }

    /// Takes one of `host`'s `cap` fleet-wide concurrency leases (see [`TAKE_LEASE`]).
    async fn take_lease(&self, host: &str, cap: usize) -> LeaseAnswer {
        let key = format!("{}concurrency:{host}", self.prefix);
        let id = format!(
            "{}-{}",
            self.instance,
            self.lease_ids.fetch_add(1, Ordering::Relaxed)
        );
        let millis = LEASE_TIME.as_millis().to_string();
        let args = [cap.to_string(), millis.clone(), id.clone()];
        let Some(taken) = self
            .invoke_text(&TAKE_LEASE, std::slice::from_ref(&key), &args)
            .await
        else {
            return LeaseAnswer::Unknown;
        };
        if taken.first().map(String::as_str) != Some("1") {
            return LeaseAnswer::Full;
        }
        let Ok(connection) = self.connection().await else {
            return LeaseAnswer::Unknown;
        };
        let renewal = {
            let (mut connection, key, id) = (connection.clone(), key.clone(), id.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_RENEWAL).await;
                    let mut invocation = RENEW_LEASE.prepare_invoke();
                    invocation.key(&key).arg(&millis).arg(&id);
                    let renewed = invocation.invoke_async::<Vec<i64>>(&mut connection);
                    let _ = tokio::time::timeout(REDIS_TIMEOUT, renewed).await;
                }
            })
        };
        LeaseAnswer::Taken(Box::new(HeldLease {
            key,
            id,
            connection,
            renewal,
        }))
    }

    /// A site asked (through this instance) that `host` be left alone for `hold`.
    pub async fn hold(&self, host: &str, hold: Duration) {
        let ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX).max(1);
        self.invoke(&WRITE_REST, &[self.hold_key(host)], &[ms])
            .await;
    }

    /// `exit` rests `rest` for `host`, fleet-wide.
    pub async fn rest(&self, exit: &str, host: &str, rest: Duration) {
        let ms = i64::try_from(rest.as_millis()).unwrap_or(i64::MAX).max(1);
        self.invoke(&WRITE_REST, &[self.rest_key(exit, host)], &[ms])
            .await;
    }

    fn session_key(&self, region: Option<&str>, session: &str) -> String {
        format!("{}session:{}:{session}", self.prefix, region.unwrap_or(""))
    }

    /// The exit the fleet has `session` (in `region`) on, if any.
    pub async fn session_exit(&self, region: Option<&str>, session: &str) -> Option<String> {
        let values = self
            .invoke_text(&READ_SESSION, &[self.session_key(region, session)], &[])
            .await?;
        values.into_iter().next().filter(|exit| !exit.is_empty())
    }

    /// `session` is on `exit`, for `idle` unless used again.
    pub async fn pin_session(
        &self,
        region: Option<&str>,
        session: &str,
        exit: &str,
        idle: Duration,
    ) {
        let ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX).max(1);
        self.invoke_text(
            &WRITE_SESSION,
            &[self.session_key(region, session)],
            &[exit.to_string(), ms.to_string()],
        )
        .await;
    }

    async fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        let manager = self
            .connection
            .get_or_try_init(|| crate::redis_connection::open(&self.client, REDIS_TIMEOUT, 1))
            .await?;
        Ok(manager.clone())
    }

    async fn invoke(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[i64],
    ) -> Option<Vec<i64>> {
        self.call(script, keys, args).await
    }

    async fn invoke_text(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Option<Vec<String>> {
        self.call(script, keys, args).await
    }

    /// Runs `script`; None (and the outage handling) when Redis fails or is resting.
    async fn call<A, T>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[A],
    ) -> Option<Vec<T>>
    where
        A: redis::ToRedisArgs,
        T: redis::FromRedisValue,
    {
        let now = Instant::now();
        {
            let quiet = self.quiet_until.lock().unwrap_or_else(|p| p.into_inner());
            if quiet.is_some_and(|until| now < until) {
                self.errors.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        let call = async {
            let mut connection = self.connection().await.map_err(|e| e.to_string())?;
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(arg);
            }
            invocation
                .invoke_async::<Vec<T>>(&mut connection)
                .await
                .map_err(|e| e.to_string())
        };
        let result = match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {REDIS_TIMEOUT:?}")),
        };
        match result {
            Ok(values) => {
                if self.in_outage.swap(false, Ordering::Relaxed) {
                    tracing::warn!(url = %self.url, "egress fleet state: Redis is back");
                }
                Some(values)
            }
            Err(error) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                *self.quiet_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(now + BACKOFF);
                if !self.in_outage.swap(true, Ordering::Relaxed) {
                    tracing::warn!(url = %self.url, %error, "egress fleet state: Redis failed; this instance decides by its own state until it is back");
                }
                None
            }
        }
    }
}

impl SharedSlots for FleetState {
    fn reserve<'a>(
        &'a self,
        host: &'a str,
        spacing: Duration,
        max_wait: Duration,
    ) -> Pin<Box<dyn Future<Output = SlotAnswer> + Send + 'a>> {
        Box::pin(self.reserve_slot(host, spacing, max_wait))
    }

    fn lease<'a>(
        &'a self,
        host: &'a str,
        cap: usize,
    ) -> Pin<Box<dyn Future<Output = LeaseAnswer> + Send + 'a>> {
        Box::pin(self.take_lease(host, cap))
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`.
fn without_password(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, rest)), Some((userinfo, host))) if rest.contains('@') => {
            let userinfo = userinfo
                .strip_prefix(&format!("{scheme}://"))
                .unwrap_or(userinfo);
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

// === The plan's use of it ===

impl EgressPlan {
    /// Before a request to `host` waits for its turn: a hold the site asked of another
    /// instance, and the rests other instances gave the exits for it, apply here too.
    pub(super) async fn sync_host(&self, host: &str) {
        let Some(fleet) = &self.fleet else { return };
        let exits = self.exits();
        let names: Vec<Arc<str>> = exits.iter().map(|e| e.name.clone()).collect();
        let Some(found) = fleet.host_state(&names, host).await else {
            return;
        };
        let mut found = found.into_iter();
        if let Some(hold) = found.next().flatten() {
            self.politeness.hold(host, hold);
        }
        let now = Instant::now();
        for (exit, rest) in exits.iter().zip(found) {
            if let Some(rest) = rest {
                exit.adopt_rest(host, rest, now);
            }
        }
    }

    /// The site asked that `host` be held for `hold`: the fleet learns it (in the
    /// background).
    pub(super) fn share_hold(&self, host: &str, hold: Duration) {
        let Some(fleet) = self.fleet.clone() else {
            return;
        };
        let host = host.to_string();
        tokio::spawn(async move { fleet.hold(&host, hold).await });
    }

    /// The exit the fleet has this request's session on (None without a session or
    /// fleet state, or when Redis cannot say).
    pub(super) async fn fleet_session(&self, ask: &Ask<'_>) -> Option<String> {
        let fleet = self.fleet.as_ref()?;
        let session = self.rotator.session_of(ask).filter(|s| !s.is_empty())?;
        fleet.session_exit(ask.region, session).await
    }

    /// The request's session is on `exit`: the fleet learns it (in the background).
    pub(super) fn share_session(&self, ask: &Ask<'_>, exit: &Exit) {
        let (Some(fleet), Some(session)) = (self.fleet.clone(), self.rotator.session_of(ask))
        else {
            return;
        };
        if session.is_empty() {
            return;
        }
        let region = ask.region.map(str::to_string);
        let (session, exit, idle) = (
            session.to_string(),
            exit.name.clone(),
            self.rotator.session_idle(),
        );
        tokio::spawn(async move {
            fleet
                .pin_session(region.as_deref(), &session, &exit, idle)
                .await
        });
    }

    /// `exit` now rests `rest` for `host`: the fleet learns it (in the background; the
    /// request does not wait for Redis).
    pub(super) fn share_rest(&self, exit: &Exit, host: &str, rest: Duration) {
        let Some(fleet) = self.fleet.clone() else {
            return;
        };
        let (exit, host) = (exit.name.clone(), host.to_string());
        tokio::spawn(async move { fleet.rest(&exit, &host, rest).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_urls_hide_the_password() {
        assert_eq!(
            without_password("redis://:s3cret@redis.internal:6379/0"),
            "redis://:***@redis.internal:6379/0"
        );
        assert_eq!(
            without_password("rediss://app:p@ss@redis:6380"),
            "rediss://app:***@redis:6380"
        );
        assert_eq!(
            without_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
