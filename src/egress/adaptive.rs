//! Politeness that adapts to the site: a hold when it says to slow down (`429`/`503`
//! with `Retry-After`, `RateLimit-*` with nothing remaining), and an AutoThrottle-like
//! delay between requests that follows its latency. The per-host state that applies
//! them is `politeness`; this module only decides.

use std::time::{Duration, SystemTime};

use http::header::{HeaderName, RETRY_AFTER};
use http::{HeaderMap, StatusCode};

// Looked up by value on every answer: names built once, not parsed from text each time.
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `(remaining, reset)` in the draft's and the older `X-` spelling.
static RATELIMIT_PAIRS: [(HeaderName, HeaderName); 2] = [
    (
        HeaderName::from_static("ratelimit-remaining"),
        HeaderName::from_static("ratelimit-reset"),
    ),
    (
        HeaderName::from_static("x-ratelimit-remaining"),
        HeaderName::from_static("x-ratelimit-reset"),
    ),
];

/// How the egress listener adapts (`retry_after`, `per_host`).
#[derive(Debug, Clone, Default)]
pub struct AdaptiveRules {
    /// Honour `Retry-After` and `RateLimit-*` (default on).
    pub honour_retry_after: bool,
    /// The longest hold a site's answer may impose.
    pub max_hold: Duration,
    pub throttle: Option<Throttle>,
    /// Space requests by robots.txt's `Crawl-delay` (`robots_crawl_delay`).
    pub crawl_delay: bool,
}

impl AdaptiveRules {
    pub fn enabled(&self) -> bool {
        self.honour_retry_after || self.throttle.is_some() || self.crawl_delay
    }
}

/// `per_host = { target_concurrency, min_delay, max_delay, start_delay }`: Scrapy's
/// AutoThrottle. The delay between two requests to a host aims at `latency /
/// target_concurrency`, so about `target_concurrency` requests are at the site at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Throttle {
    pub target_concurrency: f64,
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub start_delay: Duration,
}

impl Throttle {
    /// The delay after an answer that took `latency`: halfway from `current` toward the
    /// target, never below the target (a slower site is followed at once), within
    /// `min_delay..=max_delay`. A failed answer (`ok` false) may raise the delay, never
    /// lower it: errors come fast and would otherwise speed the crawl up.
    pub fn next_delay(&self, current: Duration, latency: Duration, ok: bool) -> Duration {
        let target = latency.as_secs_f64() / self.target_concurrency.max(f64::MIN_POSITIVE);
        let halfway = (current.as_secs_f64() + target) / 2.0;
        let next = halfway.max(target);
        let next = Duration::try_from_secs_f64(next)
            .unwrap_or(self.max_delay)
            .clamp(self.min_delay, self.max_delay);
        if !ok && next < current {
            return current;
        }
        next
    }

    pub fn first_delay(&self) -> Duration {
        self.start_delay.clamp(self.min_delay, self.max_delay)
    }
}

/// How long the site asked to be left alone, from its answer: `Retry-After` (seconds
/// or an HTTP date) on a `429` or `503`; or, on any answer, `RateLimit-Remaining: 0`
/// with `RateLimit-Reset` seconds (also the `X-RateLimit-*` spelling, and the
/// structured `RateLimit: ...;r=0;t=30` of the IETF draft). None: no hold.
pub fn hold_from(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) && let Some(value) = text(&RETRY_AFTER)
    {
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        if let Ok(date) = httpdate::parse_http_date(value) {
            return Some(date.duration_since(now).unwrap_or_default());
        }
    }
    // Most answers carry no rate-limit header: one pass over the names tells, where a
    // lookup per spelling (five) hashed every one of them.
    if !headers.keys().any(|name| is_ratelimit_name(name.as_str())) {
        return None;
    }
    for (remaining, reset) in &RATELIMIT_PAIRS {
        let remaining = text(remaining).and_then(|v| v.parse::<u64>().ok());
        let reset = text(reset).and_then(|v| v.parse::<u64>().ok());
        if let (Some(0), Some(reset)) = (remaining, reset) {
            // Some sites send an epoch time here; far past any sane delay, read it as one.
            let reset = if reset > 1_000_000_000 {
                let epoch = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                reset.saturating_sub(epoch)
            } else {
                reset
            };
            return Some(Duration::from_secs(reset));
        }
    }
    let structured = text(&RATELIMIT)?;
    let parameter = |names: &[&str]| {
        structured.split([';', ',']).find_map(|item| {
            let (key, value) = item.trim().split_once('=')?;
            names
                .contains(&key.trim())
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
    };
    match (parameter(&["r", "remaining"]), parameter(&["t", "reset"])) {
        (Some(0), Some(reset)) => Some(Duration::from_secs(reset)),
        _ => None,
    }
}

/// `ratelimit` and the names after it (`ratelimit-reset`), also with `x-`: the names
/// [`hold_from`] reads past `Retry-After` (header names are lower case in a map).
fn is_ratelimit_name(name: &str) -> bool {
    name.strip_prefix("x-")
        .unwrap_or(name)
        .starts_with("ratelimit")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn retry_after_holds_on_429_and_503_only() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let seconds = headers(&[("retry-after", "30")]);
        for status in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            assert_eq!(
                hold_from(status, &seconds, now),
                Some(Duration::from_secs(30))
            );
        }
        assert_eq!(hold_from(StatusCode::OK, &seconds, now), None);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        let dated = headers(&[("retry-after", &date)]);
        assert_eq!(
            hold_from(StatusCode::TOO_MANY_REQUESTS, &dated, now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(
            hold_from(
                StatusCode::TOO_MANY_REQUESTS,
                &headers(&[("retry-after", &past)]),
                now
            ),
            Some(Duration::ZERO)
        );
        let garbage = headers(&[("retry-after", "soon")]);
        assert_eq!(
            hold_from(StatusCode::TOO_MANY_REQUESTS, &garbage, now),
            None
        );
    }

    #[test]
    fn ratelimit_headers_hold_when_nothing_remains() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ok = StatusCode::OK;
        let spent = headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "12")]);
        assert_eq!(hold_from(ok, &spent, now), Some(Duration::from_secs(12)));
        let left = headers(&[("ratelimit-remaining", "3"), ("ratelimit-reset", "12")]);
        assert_eq!(hold_from(ok, &left, now), None);
        let epoch = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1700000042"),
        ]);
        assert_eq!(hold_from(ok, &epoch, now), Some(Duration::from_secs(42)));
        let draft = headers(&[("ratelimit", "\"default\";r=0;t=7")]);
        assert_eq!(hold_from(ok, &draft, now), Some(Duration::from_secs(7)));
        let older = headers(&[("ratelimit", "limit=100, remaining=0, reset=5")]);
        assert_eq!(hold_from(ok, &older, now), Some(Duration::from_secs(5)));
        let plenty = headers(&[("ratelimit", "limit=100, remaining=50, reset=5")]);
        assert_eq!(hold_from(ok, &plenty, now), None);
        // Among other lines, named in any case (a map holds names in lower case).
        let among = headers(&[
            ("server", "nginx"),
            ("X-RateLimit-Remaining", "0"),
            ("content-type", "text/html"),
            ("X-RATELIMIT-RESET", "9"),
        ]);
        assert_eq!(hold_from(ok, &among, now), Some(Duration::from_secs(9)));
        let unrelated = headers(&[("server", "nginx"), ("x-rate", "0"), ("limit", "0")]);
        assert_eq!(hold_from(ok, &unrelated, now), None);
    }

    fn throttle() -> Throttle {
        Throttle {
            target_concurrency: 2.0,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            start_delay: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_delay_follows_latency_over_the_target_concurrency() {
        let throttle = throttle();
        let mut delay = throttle.first_delay();
        for _ in 0..20 {
            delay = throttle.next_delay(delay, Duration::from_millis(400), true);
        }
        // 400 ms at 2 in flight: one every 200 ms.
        assert!(
            delay.abs_diff(Duration::from_millis(200)) < Duration::from_millis(5),
            "{delay:?}"
        );
        // A slower site is followed at once, not halfway.
        assert_eq!(
            throttle.next_delay(delay, Duration::from_secs(4), true),
            Duration::from_secs(2)
        );
        // Bounds.
        assert_eq!(
            throttle.next_delay(delay, Duration::from_secs(100), true),
            Duration::from_secs(10)
        );
        let mut fast = Duration::from_secs(1);
        for _ in 0..40 {
            fast = throttle.next_delay(fast, Duration::ZERO, true);
        }
        assert_eq!(fast, Duration::from_millis(100));
        // A failed answer never speeds things up.
        assert_eq!(
            throttle.next_delay(Duration::from_secs(1), Duration::from_millis(10), false),
            Duration::from_secs(1)
        );
    }
}
