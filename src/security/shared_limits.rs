//! Rate limits shared by a fleet: the same GCRA and token budgets as the local limiter,
//! kept in Redis and updated by Lua scripts, so every check is one atomic round trip and
//! N instances enforce one limit. Times come from Redis (`TIME`), so the instances'
//! clocks need not agree. When Redis fails, `on_backend_error` decides (allow or deny),
//! with one warning per outage and a counter.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;

/// Longest wait for Redis on the request path.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// GCRA. KEYS[1]; ARGV: emission interval (µs), period (µs). Returns {allowed, µs}: the
/// wait when refused, else the budget in use (for the remaining count).
static GCRA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allowance = period - emission
if tat - now > allowance then
  return {0, tat - now - allowance}
end
local next = tat + emission
redis.call('SET', KEYS[1], next, 'PX', math.ceil(period / 1000) + 1000)
return {1, next - now}
",
    )
});

/// Token bucket. KEYS[1]; ARGV: capacity, period (µs), tokens to take (may be negative:
/// a settlement), force (1: take even beyond the level). Returns {allowed, wait µs, level}.
static TOKENS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local capacity = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local force = tonumber(ARGV[4])
local stored = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = tonumber(stored[1]) or capacity
local at = tonumber(stored[2]) or now
level = math.min(capacity, level + (now - at) * capacity / period)
if force == 0 and want > level then
  redis.call('HSET', KEYS[1], 'level', tostring(level), 'at', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil(period / 1000) * 2)
  local wait = period
  if want <= capacity then wait = math.ceil((want - level) * period / capacity) end
  return {0, wait, math.floor(level)}
end
level = math.min(capacity, level - want)
redis.call('HSET', KEYS[1], 'level', tostring(level), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(period / 1000) * 2)
return {1, 0, math.floor(level)}
",
    )
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBackendError {
    Allow,
    Deny,
}

/// The Redis side of a shared limit.
pub struct SharedLimits {
    url: String,
    client: redis::Client,
    connection: tokio::sync::OnceCell<ConnectionManager>,
    pub on_error: OnBackendError,
    in_outage: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("Redis at {url}: {source}")]
    Redis {
        url: String,
        source: redis::RedisError,
    },
    #[error("Redis at {url} did not answer within {REDIS_TIMEOUT:?}")]
    Timeout { url: String },
}

/// A script's verdict: allowed or not, a wait or budget in µs, and a token level.
pub type Verdict = (bool, u64, i64);

impl SharedLimits {
    pub fn new(url: &str, on_error: OnBackendError) -> Result<Self, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("{url:?} is not a Redis URL: {e}"))?;
        Ok(SharedLimits {
            url: url.to_string(),
            client,
            connection: tokio::sync::OnceCell::new(),
            on_error,
            in_outage: AtomicBool::new(false),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, BackendError> {
        let manager = self
            .connection
            .get_or_try_init(|| crate::redis_connection::open(&self.client, REDIS_TIMEOUT, 1))
            .await
            .map_err(|source| BackendError::Redis {
                url: self.url.clone(),
                source,
            })?;
        Ok(manager.clone())
    }

    async fn run(
        &self,
        script: &redis::Script,
        key: &str,
        args: &[i64],
    ) -> Result<Verdict, BackendError> {
        let call = async {
            let mut connection = self.connection().await?;
            let mut invocation = script.key(key);
            for arg in args {
                invocation.arg(*arg);
            }
            let (allowed, value, level): (i64, i64, Option<i64>) =
                match invocation.invoke_async::<Vec<i64>>(&mut connection).await {
                    Ok(values) => (
                        values.first().copied().unwrap_or(0),
                        values.get(1).copied().unwrap_or(0),
                        values.get(2).copied(),
                    ),
                    Err(source) => {
                        return Err(BackendError::Redis {
                            url: self.url.clone(),
                            source,
                        });
                    }
                };
            Ok((allowed == 1, value.max(0) as u64, level.unwrap_or(0)))
        };
        let result = match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::Timeout {
                url: self.url.clone(),
            }),
        };
        match &result {
            Ok(_) => {
                if self.in_outage.swap(false, Ordering::Relaxed) {
                    tracing::warn!(url = %self.url, "shared rate limits: Redis is back");
                }
            }
            Err(error) => {
                if !self.in_outage.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, on_backend_error = ?self.on_error, "shared rate limits: Redis failed; deciding by on_backend_error until it is back");
                }
            }
        }
        result
    }

    /// One request of `limit` per `period` for `key`.
    pub async fn check_request(
        &self,
        key: &str,
        limit: u64,
        period: Duration,
    ) -> Result<Verdict, BackendError> {
        let period_us = period.as_micros() as i64;
        let emission = period_us / limit.max(1) as i64;
        self.run(&GCRA, &format!("{key}:req"), &[emission, period_us])
            .await
    }

    /// Reserves `tokens` (or, with `force`, settles: negative gives back).
    pub async fn take_tokens(
        &self,
        key: &str,
        capacity: u64,
        period: Duration,
        tokens: i64,
        force: bool,
    ) -> Result<Verdict, BackendError> {
        let args = [
            capacity as i64,
            period.as_micros() as i64,
            tokens,
            i64::from(force),
        ];
        self.run(&TOKENS, &format!("{key}:tok"), &args).await
    }
}
