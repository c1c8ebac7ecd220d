//! Rate limits as the admin API sees them: a limiter shared between its filter chain and
//! the plan's list of limits (an `Arc` of a filter is itself a filter), and the names of
//! the keys budgets are spent by (API key names, client addresses; never key values).

use std::sync::Arc;

use super::rate_limit::{LimitKey, RateLimit};
use crate::filter::BudgetKey;

impl LimitKey {
    /// What a budget is per, as the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKey::ClientIp => "ip",
            LimitKey::ApiKey => "api_key",
            LimitKey::Route => "route",
        }
    }
}

/// A key as the admin API names it, as (kind, name): an API key's name, a client
/// address, or the whole route's budget.
pub fn key_kind(key: &BudgetKey) -> (&'static str, String) {
    match key {
        BudgetKey::Key(name) => ("api_key", name.to_string()),
        BudgetKey::Ip(ip) => ("ip", ip.to_string()),
        BudgetKey::Route => ("route", String::new()),
    }
}

/// A route's rate limits, in the order its chain runs them: the listener's (its API
/// keys' own, then its own), then the route's the same way.
pub struct RouteLimits {
    pub route: Arc<str>,
    pub limits: Vec<Arc<RateLimit>>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::filter::Filter;
    use crate::security::Recorder;
    use crate::security::rate_limit::{Gcra, Spent, TokenBudget};

    fn limit(requests: Option<u64>, tokens: Option<u64>) -> RateLimit {
        let per = Duration::from_secs(60);
        RateLimit {
            scope: "route:chat".into(),
            key: LimitKey::ApiKey,
            requests: requests.map(|r| Gcra::new(r, per)),
            tokens: tokens.map(|t| TokenBudget::new(t, per)),
            default_max_tokens: 100,
            recorder: Recorder {
                telemetry: Arc::default(),
                audit: Arc::default(),
            },
            shared: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn usage_ranks_keys_by_the_share_spent_and_counts_them_all() {
        let limit = limit(Some(10), Some(1000));
        let now = Instant::now();
        let gcra = limit.requests.as_ref().unwrap();
        let budget = limit.tokens.as_ref().unwrap();
        for _ in 0..3 {
            gcra.check(&BudgetKey::Key("alice".into()), now).unwrap();
        }
        gcra.check(&BudgetKey::Key("bob".into()), now).unwrap();
        budget
            .reserve(&BudgetKey::Key("bob".into()), 900, now)
            .unwrap();
        budget
            .reserve(&BudgetKey::Ip([10, 0, 0, 1].into()), 100, now)
            .unwrap();

        let (keys, in_use) = limit.usage_snapshot(now, 2);
        assert_eq!(in_use, 3);
        let names: Vec<String> = keys.iter().map(|(k, _, _)| k.to_string()).collect();
        assert_eq!(
            names,
            ["key:bob", "key:alice"],
            "bob spent 90% of his tokens"
        );
        let (_, requests, tokens) = &keys[1];
        assert_eq!(
            *requests,
            Some(Spent {
                used: 3,
                limit: 10,
                refill: Duration::from_secs(18)
            })
        );
        assert_eq!(*tokens, None, "alice spent no tokens");
        assert_eq!(keys[0].2.unwrap().used, 900);
        assert_eq!(keys[0].2.unwrap().refill, Duration::from_secs(54));

        // Budgets refill: a minute later nothing is in use.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(limit.usage_snapshot(Instant::now(), 50), (vec![], 0));
        assert_eq!(
            limit.budgets_snapshot(),
            (Some(10), Some(1000), Duration::from_secs(60))
        );
    }

    #[test]
    fn the_shared_limiter_answers_as_the_limiter() {
        let tokens = Arc::new(limit(None, Some(10)));
        let requests = Arc::new(limit(Some(10), None));
        for (shared, plain) in [(&tokens, &*tokens), (&requests, &*requests)] {
            let filter: &dyn Filter = shared;
            assert_eq!(filter.name(), plain.name());
            assert_eq!(filter.waits(), plain.waits());
            assert_eq!(filter.wants_done(), plain.wants_done());
            assert_eq!(filter.edits_responses(), plain.edits_responses());
        }
    }

    #[test]
    fn keys_are_named_by_kind() {
        let kind = |key: BudgetKey| key_kind(&key);
        assert_eq!(
            kind(BudgetKey::Key("alice".into())),
            ("api_key", "alice".into())
        );
        assert_eq!(
            kind(BudgetKey::Ip([127, 0, 0, 1].into())),
            ("ip", "127.0.0.1".into())
        );
        assert_eq!(kind(BudgetKey::Route), ("route", String::new()));
    }
}
