//! Rate limits per client address, API key or route: requests by GCRA, and LLM tokens by
//! a token bucket that holds under concurrency. At admission a request reserves an
//! estimate (prompt size from the body plus `max_tokens`, or a default); when its
//! response ends the reservation is settled against the real `usage` (streams included).
//! A request whose reservation does not fit is refused before it costs anything, so a
//! burst of parallel requests cannot overshoot the budget. Refusals are 429 with
//! `Retry-After` and OpenAI's `x-ratelimit-*` headers, which the SDKs understand.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;

use super::Recorder;
use super::shared_limits::{OnBackendError, SharedLimits};
use crate::filter::{
    BudgetHold, BudgetKey, CLIENT_CLOSED, Filter, FilterFuture, Flow, HeaderEdits, LocalReply,
    RequestCtx, RequestView, ShortValue, Standing, StaticName,
};
use std::sync::Arc;

/// Whose budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKey {
    ClientIp,
    /// The API key's name (requests without one share the client address's budget).
    ApiKey,
    /// One budget for the whole route.
    Route,
}

/// Most distinct keys kept before idle ones are forgotten.
const MAX_KEYS: usize = 100_000;

/// Generic cell rate algorithm: `limit` requests per `period`, bursts up to `limit`.
pub struct Gcra {
    limit: u64,
    period: Duration,
    emission: Duration,
    tats: Mutex<HashMap<BudgetKey, Instant>>,
    /// `limit` as its header value, made once.
    limit_text: ShortValue,
}

impl Gcra {
    pub fn new(limit: u64, period: Duration) -> Self {
        // In nanoseconds: a huge limit must not truncate to a zero divisor.
        let emission =
            Duration::from_nanos((period.as_nanos() / u128::from(limit.max(1))).max(1) as u64);
        Gcra {
            limit,
            period,
            emission,
            tats: Mutex::new(HashMap::new()),
            limit_text: number_text(limit),
        }
    }

    /// Takes one request from `key`'s budget, or says how long to wait.
    pub fn check(&self, key: &BudgetKey, now: Instant) -> Result<Standing, Duration> {
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        if tats.len() >= MAX_KEYS {
            tats.retain(|_, tat| *tat > now);
        }
        // One hash per request: most keys come back, and are updated in place.
        let slot = tats.get_mut(key);
        // How far the key's theoretical arrival time is ahead of now, read once (each
        // reading of an `Instant` difference is a call).
        let ahead = slot
            .as_deref()
            .map_or(Duration::ZERO, |tat| tat.saturating_duration_since(now));
        let allowance = self.period.saturating_sub(self.emission);
        if ahead > allowance {
            return Err(ahead - allowance);
        }
        let used = ahead + self.emission;
        let next = now + used;
        match slot {
            Some(slot) => *slot = next,
            None => {
                tats.insert(key.clone(), next);
            }
        }
        Ok(self.standing(used))
    }

    /// A key's standing when `used` of its period is spent (until its budget is whole).
    fn standing(&self, used: Duration) -> Standing {
        let left = self.period.saturating_sub(used).as_nanos();
        let emission = self.emission.as_nanos().max(1);
        // In 64 bits when both fit (periods under 584 years): one division instruction
        // rather than the 128-bit division's library call, on every request.
        let remaining = match (u64::try_from(left), u64::try_from(emission)) {
            (Ok(left), Ok(emission)) => left / emission,
            _ => (left / emission) as u64,
        };
        Standing {
            limit: self.limit,
            remaining,
            reset: used,
        }
    }

    /// Gives back a request taken by `check` (its token reservation failed).
    pub fn undo(&self, key: &BudgetKey) {
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tat) = tats.get_mut(key) {
            *tat -= self.emission;
        }
    }
}

/// A token bucket per key: `capacity` tokens per `period`, refilled continuously.
pub struct TokenBudget {
    capacity: f64,
    period: Duration,
    levels: Mutex<HashMap<BudgetKey, (f64, Instant)>>,
    /// The capacity as its header value, made once.
    capacity_text: ShortValue,
}

impl TokenBudget {
    pub fn new(capacity: u64, period: Duration) -> Self {
        TokenBudget {
            capacity: capacity as f64,
            period,
            levels: Mutex::new(HashMap::new()),
            capacity_text: number_text(capacity as f64 as u64),
        }
    }

    fn refill(&self, level: f64, since: Instant, now: Instant) -> f64 {
        let rate = self.capacity / self.period.as_secs_f64();
        (level + rate * now.duration_since(since).as_secs_f64()).min(self.capacity)
    }

    fn standing(&self, level: f64) -> Standing {
        let missing = (self.capacity - level).max(0.0);
        let reset = Duration::from_secs_f64(missing / (self.capacity / self.period.as_secs_f64()));
        Standing {
            limit: self.capacity as u64,
            remaining: level.max(0.0) as u64,
            reset,
        }
    }

    /// Reserves `tokens`, or says how long until they would fit. An estimate larger
    /// than the whole budget can never fit and is refused outright.
    pub fn reserve(
        &self,
        key: &BudgetKey,
        tokens: u64,
        now: Instant,
    ) -> Result<Standing, Duration> {
        let mut levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        if levels.len() >= MAX_KEYS {
            let capacity = self.capacity;
            levels.retain(|_, (level, _)| *level < capacity);
        }
        let slot = levels.get_mut(key);
        let (level, since) = slot.as_deref().copied().unwrap_or((self.capacity, now));
        let level = self.refill(level, since, now);
        let wanted = tokens as f64;
        let (kept, result) = if wanted > level {
            let rate = self.capacity / self.period.as_secs_f64();
            let wait = if wanted > self.capacity {
                self.period
            } else {
                Duration::from_secs_f64((wanted - level) / rate)
            };
            (level, Err(wait))
        } else {
            (level - wanted, Ok(self.standing(level - wanted)))
        };
        match slot {
            Some(slot) => *slot = (kept, now),
            None => {
                levels.insert(key.clone(), (kept, now));
            }
        }
        result
    }

    /// Settles a reservation: gives back what was not used, or takes the excess (the
    /// level may go below zero: later requests wait for it).
    pub fn settle(&self, key: &BudgetKey, reserved: u64, used: u64, now: Instant) {
        let mut levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        let slot = levels.get_mut(key);
        let (level, since) = slot.as_deref().copied().unwrap_or((self.capacity, now));
        let level = self.refill(level, since, now) + reserved as f64 - used as f64;
        match slot {
            Some(slot) => *slot = (level.min(self.capacity), now),
            None => {
                levels.insert(key.clone(), (level.min(self.capacity), now));
            }
        }
    }
}

pub struct RateLimit {
    pub scope: String,
    pub key: LimitKey,
    pub requests: Option<Gcra>,
    pub tokens: Option<TokenBudget>,
    /// Completion tokens assumed when a request names no `max_tokens`.
    pub default_max_tokens: u64,
    pub recorder: Recorder,
    /// Keep the budgets in Redis (with `requests`' and `tokens`' limits, not their state).
    pub shared: Option<Arc<SharedLimits>>,
}

static LIMIT_REQUESTS: StaticName = StaticName::new("x-ratelimit-limit-requests");
static REMAINING_REQUESTS: StaticName = StaticName::new("x-ratelimit-remaining-requests");
static RESET_REQUESTS: StaticName = StaticName::new("x-ratelimit-reset-requests");
static LIMIT_TOKENS: StaticName = StaticName::new("x-ratelimit-limit-tokens");
static REMAINING_TOKENS: StaticName = StaticName::new("x-ratelimit-remaining-tokens");
static RESET_TOKENS: StaticName = StaticName::new("x-ratelimit-reset-tokens");

type Names = [&'static StaticName; 3];
static REQUEST_NAMES: Names = [&LIMIT_REQUESTS, &REMAINING_REQUESTS, &RESET_REQUESTS];
static TOKEN_NAMES: Names = [&LIMIT_TOKENS, &REMAINING_TOKENS, &RESET_TOKENS];

fn number_text(value: u64) -> ShortValue {
    let mut text = ShortValue::new();
    text.number(value);
    text
}

/// OpenAI's duration form: `6m0s`, `1.5s`, `20ms` (seconds to the millisecond,
/// without trailing zeros).
fn openai_duration_into(duration: Duration, out: &mut ShortValue) {
    let ms = duration.as_millis();
    if ms < 1000 {
        out.number(ms as u64);
        out.text("ms");
    } else if ms < 60_000 {
        let rounded = (duration.as_nanos() + 500_000) / 1_000_000;
        out.number((rounded / 1000) as u64);
        let mut fraction = (rounded % 1000) as u64;
        if fraction > 0 {
            let mut digits = 3;
            while fraction.is_multiple_of(10) {
                fraction /= 10;
                digits -= 1;
            }
            out.text(".");
            let shown = fraction.checked_ilog10().map_or(1, |log| log + 1);
            for _ in shown..digits {
                out.text("0");
            }
            out.number(fraction);
        }
        out.text("s");
    } else {
        out.number((ms / 60_000) as u64);
        out.text("m");
        out.number(((ms % 60_000) / 1000) as u64);
        out.text("s");
    }
}

fn openai_duration(duration: Duration) -> String {
    let mut text = ShortValue::new();
    openai_duration_into(duration, &mut text);
    String::from_utf8_lossy(text.as_bytes()).into_owned()
}

/// The `x-ratelimit-*` header values of a standing, each given to `put` with its name.
/// `limit`: the limit's text when it was made before (it never changes).
fn standing_headers(
    standing: Standing,
    names: Names,
    limit: Option<ShortValue>,
    mut put: impl FnMut(&'static StaticName, ShortValue),
) {
    let [limit_name, remaining, reset] = names;
    put(
        limit_name,
        limit.unwrap_or_else(|| number_text(standing.limit)),
    );
    put(remaining, number_text(standing.remaining));
    let mut text = ShortValue::new();
    openai_duration_into(standing.reset, &mut text);
    put(reset, text);
}

fn put(headers: &mut HeaderMap, standing: Standing, names: Names) {
    standing_headers(standing, names, None, |name, value| {
        if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
            headers.insert(name.name().clone(), value);
        }
    });
}

impl RateLimit {
    /// Admission against the budgets in Redis.
    async fn shared_admission(&self, ctx: &mut RequestCtx) -> Flow {
        let Some(shared) = &self.shared else {
            return Flow::Continue;
        };
        let budget_key = self.key_of(ctx);
        let key = self.shared_key(&budget_key);
        let micros = Duration::from_micros;
        let mut requests = None;
        if let Some(gcra) = &self.requests {
            match shared.check_request(&key, gcra.limit, gcra.period).await {
                Ok((true, used, _)) => requests = Some(gcra.standing(micros(used))),
                Ok((false, wait, _)) => {
                    let (limit, wait) = (gcra.limit, micros(wait));
                    return self.refuse(ctx, "requests", wait, |h| {
                        put(
                            h,
                            Standing {
                                limit,
                                remaining: 0,
                                reset: wait,
                            },
                            REQUEST_NAMES,
                        )
                    });
                }
                Err(_) => return self.backend_failed(ctx, shared),
            }
        }
        let estimate =
            ctx.prompt_estimate.unwrap_or(0) + ctx.max_tokens.unwrap_or(self.default_max_tokens);
        let mut token_standing = None;
        if let Some(budget) = &self.tokens {
            let capacity = budget.capacity as u64;
            match shared
                .take_tokens(&key, capacity, budget.period, estimate as i64, false)
                .await
            {
                Ok((true, _, level)) => token_standing = Some(budget.standing(level as f64)),
                Ok((false, wait, _)) => {
                    let wait = micros(wait);
                    return self.refuse(ctx, "tokens", wait, |h| {
                        put(
                            h,
                            Standing {
                                limit: capacity,
                                remaining: 0,
                                reset: wait,
                            },
                            TOKEN_NAMES,
                        )
                    });
                }
                Err(_) => return self.backend_failed(ctx, shared),
            }
        }
        let reserved = if self.tokens.is_some() { estimate } else { 0 };
        ctx.holds.push(BudgetHold {
            limit: self.id(),
            key: budget_key,
            tokens: reserved,
            requests,
            token_standing,
        });
        Flow::Continue
    }

    /// This limit's name in `BudgetHold::limit`: its address (the plan that holds it
    /// outlives every request under it).
    fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    fn hold<'a>(&self, ctx: &'a RequestCtx) -> Option<&'a BudgetHold> {
        let id = self.id();
        ctx.holds.iter().find(|hold| hold.limit == id)
    }

    /// The key of `key`'s budget in Redis.
    fn shared_key(&self, key: &BudgetKey) -> String {
        format!("junction:ratelimit:{}:{key}", self.scope)
    }

    fn backend_failed(&self, ctx: &RequestCtx, shared: &SharedLimits) -> Flow {
        self.recorder
            .telemetry
            .metrics
            .count_decision(&format!("{} backend", self.scope), "backend_error");
        match shared.on_error {
            OnBackendError::Allow => Flow::Continue,
            OnBackendError::Deny => {
                let rule = format!("{} backend", self.scope);
                self.recorder.decide(
                    ctx,
                    &rule,
                    "deny",
                    serde_json::json!("rate limit backend unavailable"),
                );
                let mut reply = LocalReply::json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "rate_limiter_unavailable",
                    "the shared rate limiter cannot be reached",
                );
                reply
                    .headers
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                Flow::Respond(Box::new(reply))
            }
        }
    }

    fn key_of(&self, ctx: &RequestCtx) -> BudgetKey {
        match (self.key, &ctx.key_name) {
            (LimitKey::ApiKey, Some(name)) => BudgetKey::Key(name.clone()),
            (LimitKey::ClientIp | LimitKey::ApiKey, _) => BudgetKey::Ip(ctx.client_ip),
            (LimitKey::Route, _) => BudgetKey::Route,
        }
    }

    fn refuse(
        &self,
        ctx: &RequestCtx,
        what: &str,
        wait: Duration,
        headers: impl FnOnce(&mut HeaderMap),
    ) -> Flow {
        let rule = format!("{} {what}", self.scope);
        self.recorder.decide(
            ctx,
            &rule,
            "rate_limited",
            serde_json::json!({ "retry_after_ms": wait.as_millis() as u64 }),
        );
        let message = format!(
            "rate limit reached ({what}); retry in {}",
            openai_duration(wait)
        );
        let mut reply = LocalReply::json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            &message,
        );
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        reply
            .headers
            .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        headers(&mut reply.headers);
        Flow::Respond(Box::new(reply))
    }
}

impl Filter for RateLimit {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn waits(&self) -> bool {
        self.shared.is_some()
    }

    fn on_request_waiting<'a>(
        &'a self,
        ctx: &'a mut RequestCtx,
        _head: &'a (dyn RequestView + Sync),
        _edits: &'a mut HeaderEdits,
    ) -> FilterFuture<'a> {
        Box::pin(self.shared_admission(ctx))
    }

    fn on_request(
        &self,
        ctx: &mut RequestCtx,
        _head: &dyn RequestView,
        _edits: &mut HeaderEdits,
    ) -> Flow {
        // The request's start, microseconds ago: one clock read per request, not one
        // per policy.
        let now = ctx.started;
        let key = self.key_of(ctx);
        let requests = match &self.requests {
            Some(gcra) => match gcra.check(&key, now) {
                Ok(standing) => Some(standing),
                Err(wait) => {
                    let limit = gcra.limit;
                    return self.refuse(ctx, "requests", wait, |h| {
                        put(
                            h,
                            Standing {
                                limit,
                                remaining: 0,
                                reset: wait,
                            },
                            REQUEST_NAMES,
                        )
                    });
                }
            },
            None => None,
        };
        let estimate =
            ctx.prompt_estimate.unwrap_or(0) + ctx.max_tokens.unwrap_or(self.default_max_tokens);
        let token_standing = match &self.tokens {
            Some(budget) => match budget.reserve(&key, estimate, now) {
                Ok(standing) => Some(standing),
                Err(wait) => {
                    if let Some(gcra) = &self.requests {
                        gcra.undo(&key);
                    }
                    let limit = budget.capacity as u64;
                    return self.refuse(ctx, "tokens", wait, |h| {
                        put(
                            h,
                            Standing {
                                limit,
                                remaining: 0,
                                reset: wait,
                            },
                            TOKEN_NAMES,
                        )
                    });
                }
            },
            None => None,
        };
        let reserved = if self.tokens.is_some() { estimate } else { 0 };
        ctx.holds.push(BudgetHold {
            limit: self.id(),
            key,
            tokens: reserved,
            requests,
            token_standing,
        });
        Flow::Continue
    }

    fn edits_responses(&self) -> bool {
        true
    }

    fn on_response(&self, ctx: &mut RequestCtx, edits: &mut HeaderEdits) {
        let Some(reservation) = self.hold(ctx) else {
            return;
        };
        let mut set = |name, value| edits.set_short(name, value);
        if let Some(standing) = reservation.requests {
            let limit = self.requests.as_ref().map(|gcra| gcra.limit_text);
            standing_headers(standing, REQUEST_NAMES, limit, &mut set);
        }
        if let Some(standing) = reservation.token_standing {
            let limit = self.tokens.as_ref().map(|budget| budget.capacity_text);
            standing_headers(standing, TOKEN_NAMES, limit, &mut set);
        }
    }

    fn wants_done(&self) -> bool {
        self.tokens.is_some()
    }

    fn on_done(&self, ctx: &RequestCtx) {
        let (Some(budget), Some(reservation)) = (&self.tokens, self.hold(ctx)) else {
            return;
        };
        if reservation.tokens == 0 {
            return;
        }
        // What the model server reported; without usage, the estimate stands, but for a
        // request that failed or was refused, which gives it all back. A client that
        // left before the answer (499) is not refunded: the endpoint may have worked on
        // its prompt, and leaving would otherwise be a way around the budget.
        let used = match ctx.usage {
            Some(usage) if usage.prompt.is_some() || usage.completion.is_some() => {
                usage.prompt.unwrap_or(0) + usage.completion.unwrap_or(0)
            }
            _ if ctx.status.is_some_and(|s| s.as_u16() == CLIENT_CLOSED) => reservation.tokens,
            _ if ctx.status.is_none_or(|s| !s.is_success()) => 0,
            _ => reservation.tokens,
        };
        match &self.shared {
            Some(shared) => {
                // Settling must not hold up the end of the response: on its own task.
                let (shared, key, capacity, period) = (
                    shared.clone(),
                    self.shared_key(&reservation.key),
                    budget.capacity as u64,
                    budget.period,
                );
                let excess = used as i64 - reservation.tokens as i64;
                tokio::spawn(async move {
                    let _ = shared
                        .take_tokens(&key, capacity, period, excess, true)
                        .await;
                });
            }
            None => budget.settle(&reservation.key, reservation.tokens, used, Instant::now()),
        }
    }
}

// === Read-only snapshots, for the admin API ===

/// One key's spending of one budget (requests or tokens) at a moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spent {
    /// Spent and not yet refilled (tokens: beyond the budget when usage overshot it).
    pub used: u64,
    pub limit: u64,
    /// Until the budget is whole again.
    pub refill: Duration,
}

/// A key with some budget in use, by key as the limiter holds it.
pub type KeySpending = (BudgetKey, Option<Spent>, Option<Spent>);

impl RateLimit {
    /// The budgets: requests and tokens per period.
    pub fn budgets_snapshot(&self) -> (Option<u64>, Option<u64>, Duration) {
        let period = match (&self.requests, &self.tokens) {
            (Some(gcra), _) => gcra.period,
            (None, Some(budget)) => budget.period,
            (None, None) => Duration::ZERO,
        };
        let tokens = self.tokens.as_ref().map(|b| b.capacity as u64);
        (self.requests.as_ref().map(|g| g.limit), tokens, period)
    }

    /// The `top` keys that spent the largest share of a budget (requests or tokens,
    /// whichever is more), and how many keys have spent any. Walks the local tables
    /// under their locks, copying only the keys it returns; a limit kept in Redis has
    /// none here.
    pub fn usage_snapshot(&self, now: Instant, top: usize) -> (Vec<KeySpending>, usize) {
        let tats = self
            .requests
            .as_ref()
            .map(|g| (g, g.tats.lock().unwrap_or_else(|p| p.into_inner())));
        let levels = self
            .tokens
            .as_ref()
            .map(|b| (b, b.levels.lock().unwrap_or_else(|p| p.into_inner())));
        let requests_of = |key: &BudgetKey| {
            let (gcra, tats) = tats.as_ref()?;
            let in_use = tats.get(key)?.saturating_duration_since(now);
            let used = gcra.limit.saturating_sub(gcra.standing(in_use).remaining);
            (used > 0).then_some(Spent {
                used,
                limit: gcra.limit,
                refill: in_use,
            })
        };
        let tokens_of = |key: &BudgetKey| {
            let (budget, levels) = levels.as_ref()?;
            let (level, since) = *levels.get(key)?;
            let level = budget.refill(level, since, now);
            let used = (budget.capacity - level).max(0.0).ceil() as u64;
            let refill = budget
                .period
                .mul_f64((budget.capacity - level).max(0.0) / budget.capacity);
            (used > 0).then_some(Spent {
                used,
                limit: budget.capacity as u64,
                refill,
            })
        };
        let share =
            |spent: Option<Spent>| spent.map_or(0.0, |s| s.used as f64 / s.limit.max(1) as f64);
        let from_requests = tats.iter().flat_map(|(_, t)| t.keys());
        let only_tokens = levels
            .iter()
            .flat_map(|(_, l)| l.keys())
            .filter(|key| tats.as_ref().is_none_or(|(_, t)| !t.contains_key(*key)));
        let mut spending: Vec<(f64, &BudgetKey, Option<Spent>, Option<Spent>)> = from_requests
            .chain(only_tokens)
            .filter_map(|key| {
                let (requests, tokens) = (requests_of(key), tokens_of(key));
                let most = share(requests).max(share(tokens));
                (most > 0.0).then_some((most, key, requests, tokens))
            })
            .collect();
        let in_use = spending.len();
        let by_share = |a: &(f64, &BudgetKey, _, _), b: &(f64, &BudgetKey, _, _)| {
            b.0.total_cmp(&a.0).then(a.1.cmp(b.1))
        };
        if spending.len() > top && top > 0 {
            spending.select_nth_unstable_by(top - 1, by_share);
        }
        spending.truncate(top);
        spending.sort_unstable_by(by_share);
        let keys = spending
            .into_iter()
            .map(|(_, key, requests, tokens)| (key.clone(), requests, tokens))
            .collect();
        (keys, in_use)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> BudgetKey {
        BudgetKey::Key(name.into())
    }

    #[tokio::test(start_paused = true)]
    async fn gcra_is_exact() {
        let gcra = Gcra::new(10, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..10 {
            let standing = gcra.check(&key("a"), now).unwrap();
            assert_eq!(standing.remaining, 9 - i);
        }
        let wait = gcra.check(&key("a"), now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(6));
        assert!(gcra.check(&key("b"), now).is_ok(), "keys are separate");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(gcra.check(&key("a"), Instant::now()).is_ok());
        assert!(gcra.check(&key("a"), Instant::now()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_reserve_then_settle() {
        let budget = TokenBudget::new(1000, Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..5 {
            budget.reserve(&key("k"), 200, now).unwrap();
        }
        assert!(
            budget.reserve(&key("k"), 200, now).is_err(),
            "five reservations fill it"
        );
        // One finished using 50: 150 back.
        budget.settle(&key("k"), 200, 50, now);
        assert!(budget.reserve(&key("k"), 150, now).is_ok());
        assert!(budget.reserve(&key("k"), 1, now).is_err());
        assert!(budget.reserve(&key("k"), 5000, now).is_err(), "never fits");
    }

    #[test]
    fn durations_like_openai() {
        assert_eq!(openai_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(openai_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(openai_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(openai_duration(Duration::from_millis(1050)), "1.05s");
        assert_eq!(openai_duration(Duration::from_millis(1005)), "1.005s");
        assert_eq!(openai_duration(Duration::from_millis(2000)), "2s");
        assert_eq!(openai_duration(Duration::from_micros(1_999_600)), "2s");
        assert_eq!(openai_duration(Duration::from_micros(59_999_600)), "60s");
        assert_eq!(openai_duration(Duration::from_millis(999)), "999ms");
        // The float form it replaced, for every millisecond of the seconds range.
        for ms in (1000..60_000).step_by(7) {
            let d = Duration::from_millis(ms);
            let float = format!("{}s", (d.as_secs_f64() * 1000.0).round() / 1000.0);
            assert_eq!(openai_duration(d), float);
        }
    }
}
