//! Fallback chains: the targets after a route's first, tried in order, each only when
//! what happened at the one before matches its `on` triggers. The decisions are made by
//! `pipeline::attempts`, once for both engines; this module names the triggers.

use std::borrow::Cow;

use super::Target;

/// A target after the first: its pool (with the route's metric handles for it) and
/// what sends a request on to it.
pub struct Hop {
    pub target: Target,
    pub on: Triggers,
}

/// Something that happened at a target, before any byte reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The endpoint answered with this status, or Junction answers it for a failure
    /// that got no answer (503 no endpoint, 502 connect error or reset, 504 timeout).
    Status(u16),
    /// No response head in time (`timeouts.response_headers`), or the connect timed out.
    Timeout,
    /// An event stream's first event not in time (`timeouts.first_token`).
    FirstTokenTimeout,
    /// The endpoint could not be reached: connect refused or timed out, TLS or HTTP
    /// handshake failed. It never saw the request.
    ConnectError,
    /// The connection broke, or the endpoint sent no valid response head, after the
    /// request went out: the endpoint may have seen it.
    Reset,
    /// The pool had no endpoint to send to: none up, or all at their limits.
    Unavailable,
}

/// The trigger names accepted in `on`, besides status codes.
pub const TRIGGER_NAMES: [&str; 5] = [
    "timeout",
    "first_token_timeout",
    "connect_error",
    "reset",
    "unavailable",
];

/// The statuses a target without `on` is tried on: the rate limit and the server errors
/// a provider answers when it cannot serve now.
const DEFAULT_STATUSES: [u16; 5] = [429, 500, 502, 503, 504];

impl Trigger {
    pub fn parse(name: &str) -> Option<Trigger> {
        Some(match name {
            "timeout" => Trigger::Timeout,
            "first_token_timeout" => Trigger::FirstTokenTimeout,
            "connect_error" => Trigger::ConnectError,
            "reset" => Trigger::Reset,
            "unavailable" => Trigger::Unavailable,
            _ => return None,
        })
    }

    /// As written in `on`, and as the `reason` of a hop in metrics and the access log.
    pub fn name(self) -> Cow<'static, str> {
        match self {
            Trigger::Status(status) => Cow::Owned(status.to_string()),
            Trigger::Timeout => Cow::Borrowed("timeout"),
            Trigger::FirstTokenTimeout => Cow::Borrowed("first_token_timeout"),
            Trigger::ConnectError => Cow::Borrowed("connect_error"),
            Trigger::Reset => Cow::Borrowed("reset"),
            Trigger::Unavailable => Cow::Borrowed("unavailable"),
        }
    }
}

/// A target's `on`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triggers(Vec<Trigger>);

impl Triggers {
    pub fn new(triggers: Vec<Trigger>) -> Self {
        Triggers(triggers)
    }

    /// The triggers of a target that names none: every failure a provider or a model
    /// server shows when it cannot serve now.
    pub fn default_chain() -> Self {
        let statuses = DEFAULT_STATUSES.iter().map(|s| Trigger::Status(*s));
        let names = TRIGGER_NAMES.iter().filter_map(|name| Trigger::parse(name));
        Triggers(statuses.chain(names).collect())
    }

    /// The first of `happened` (what one outcome counts as, most specific first) this
    /// target is tried on.
    pub fn first_match(&self, happened: &[Trigger]) -> Option<Trigger> {
        happened.iter().copied().find(|t| self.0.contains(t))
    }

    pub fn contains(&self, trigger: Trigger) -> bool {
        self.0.contains(&trigger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_default_covers_every_kind() {
        for name in TRIGGER_NAMES {
            let trigger = Trigger::parse(name).expect(name);
            assert_eq!(trigger.name(), name);
            assert!(Triggers::default_chain().contains(trigger));
        }
        assert_eq!(Trigger::parse("429"), None);
        assert_eq!(Trigger::Status(429).name(), "429");
    }

    #[test]
    fn the_most_specific_match_is_the_reason() {
        let on = Triggers::new(vec![Trigger::ConnectError, Trigger::Timeout]);
        let connect_timeout = [Trigger::Timeout, Trigger::ConnectError];
        assert_eq!(on.first_match(&connect_timeout), Some(Trigger::Timeout));
        let on = Triggers::new(vec![Trigger::ConnectError]);
        assert_eq!(
            on.first_match(&connect_timeout),
            Some(Trigger::ConnectError)
        );
        assert_eq!(on.first_match(&[Trigger::Status(429)]), None);
    }
}
