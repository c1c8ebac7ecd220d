//! Routing: each listener has an ordered table of routes; the first whose matcher
//! accepts the request wins. Matchers test path, host, method, headers and the
//! `model` field of a JSON body, all compiled once at load.

pub mod chain;
mod engines;
mod glob;
mod listener;
pub mod retry;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, request};
use ipnet::IpNet;
use regex::Regex;

pub use chain::{Hop, Trigger, Triggers};
pub use engines::{
    BodyUse, Engines, HTTP1_BODY_LIMIT, PROMPT_READ_LIMIT, STREAM_OPTIONS_READ_LIMIT,
};
pub use glob::Glob;
pub use listener::{BodyTimeouts, DEFAULT_MAX_REQUEST_HEAD, GatewayListener};
pub use retry::{RetryBudget, RetryPolicy};

use crate::canary::RouteControl;
use crate::filter::FilterChain;
pub use crate::filter::RouteInput;
use crate::telemetry::RouteTelemetry;
use crate::upstream::{HashKey, Pool};

/// A compiled `[[routes]]` entry.
pub struct Route {
    pub name: Arc<str>,
    pub matcher: Matcher,
    /// The pools that serve the route: one, or the sides of a split (config order).
    pub targets: Vec<Target>,
    /// A fallback chain's targets after the first (`targets[1..]` in the config), in
    /// order; empty without one.
    pub chain: Vec<Hop>,
    /// Runtime weights (and canary analysis) when the traffic is split.
    pub control: Option<Arc<RouteControl>>,
    /// What keeps a client on one side of the split.
    pub sticky: Option<HashKey>,
    /// Cookie to set for clients that have none (with `sticky = "cookie:NAME"`).
    pub set_cookie: Option<String>,
    /// Clients whose `x-junction-version` header is honoured.
    pub override_from: Vec<IpNet>,
    pub mirror: Option<Mirror>,
    pub timeouts: Timeouts,
    pub retries: Option<RetryPolicy>,
    pub filters: FilterChain,
    /// A filter needs the body's `model` and `max_tokens` (token rate limits).
    pub reads_request_facts: bool,
    /// Largest request body accepted.
    pub max_body_bytes: Option<u64>,
    /// Paths with `%2F` or `%5C` are forwarded instead of refused.
    pub allow_encoded_slashes: bool,
    /// Add `stream_options.include_usage` to streamed OpenAI requests that lack it, and
    /// drop the usage chunk it brings from what the client gets (the core's body phase).
    pub include_usage: bool,
    /// Read bodies up to `request_buffer_bytes` whole before an endpoint is chosen.
    pub request_buffering: bool,
    pub request_buffer_bytes: u64,
    /// Send a request that reached no endpoint to another one (see `attempts::fails_over`).
    pub retry_connect_errors: bool,
    /// Sensitive-data masking of the route's bodies (the core's body phase).
    pub mask: Option<Arc<crate::masking::policy::Policy>>,
    /// Flow capture (the route's own `capture`, else its listener's): the core's body
    /// phase records a sample of the route's flows.
    pub capture: Option<Arc<crate::inspect::Capture>>,
    /// Anomaly and exfiltration detectors, run by the core at the request, its body
    /// and the end of the exchange.
    pub anomalies: Option<Arc<crate::inspect::anomaly::Anomalies>>,
    /// Which engine serves the route (worked out by `Engines::of` once compiled).
    pub engines: Engines,
}

/// One pool of a route, with the route's metric handles for it.
pub struct Target {
    pub pool: Arc<Pool>,
    pub telemetry: RouteTelemetry,
}

/// Shadow traffic: a share of requests copied to another pool, answers discarded.
pub struct Mirror {
    pub pool: Arc<Pool>,
    pub percent: u32,
    /// Requests seen, for an exact share (every n-th, not a coin flip).
    pub seen: std::sync::atomic::AtomicU64,
    pub telemetry: RouteTelemetry,
}

impl Mirror {
    /// Whether this request is one of the `percent` copied.
    pub fn takes_next(&self) -> bool {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (n + 1) * u64::from(self.percent) / 100 > n * u64::from(self.percent) / 100
    }
}

/// Largest request body copied to a mirror pool when the route has no retry limit.
const SHADOW_BODY_LIMIT: u64 = 1 << 20;

impl Route {
    /// Largest request body copied to the route's mirror pool (a longer one is not).
    pub fn mirror_body_limit(&self) -> u64 {
        self.retries
            .as_ref()
            .map_or(SHADOW_BODY_LIMIT, |r| r.body_limit)
    }

    /// The first (or only) target: the stable side of a split.
    pub fn primary(&self) -> &Target {
        &self.targets[0]
    }

    /// The target at `hop` of the chain: 0 is the split's side `side` (or the one pool),
    /// n the chain's n-th hop.
    pub fn target_at(&self, side: usize, hop: usize) -> Option<&Target> {
        match hop {
            0 => self.targets.get(side),
            n => self.chain.get(n - 1).map(|h| &h.target),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub response_headers: Duration,
    pub idle: Option<Duration>,
    pub total: Option<Duration>,
    pub first_token: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            response_headers: Duration::from_secs(300),
            idle: Some(Duration::from_secs(300)),
            total: None,
            first_token: None,
        }
    }
}

pub enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

pub enum HeaderMatch {
    Present,
    Exact(HeaderValue),
}

#[derive(Default)]
pub struct Matcher {
    pub path: Option<PathMatch>,
    pub host: Option<Glob>,
    pub methods: Vec<Method>,
    pub headers: Vec<(HeaderName, HeaderMatch)>,
    pub model: Option<Glob>,
}

impl Matcher {
    pub fn matches<R: RouteInput + ?Sized>(
        &self,
        head: &R,
        host: Option<&str>,
        model: Option<&str>,
    ) -> bool {
        if let Some(path) = &self.path {
            let actual = head.path();
            let ok = match path {
                PathMatch::Exact(expected) => actual == expected,
                PathMatch::Prefix(prefix) => actual.starts_with(prefix.as_str()),
                PathMatch::Regex(regex) => regex.is_match(actual),
            };
            if !ok {
                return false;
            }
        }
        if let Some(pattern) = &self.host
            && !host.is_some_and(|host| pattern.matches(host))
        {
            return false;
        }
        if !self.methods.is_empty() && !self.methods.contains(head.method()) {
            return false;
        }
        for (name, expected) in &self.headers {
            let ok = match expected {
                HeaderMatch::Present => head.has_header(name),
                HeaderMatch::Exact(value) => head.header_equals(name, value),
            };
            if !ok {
                return false;
            }
        }
        if let Some(pattern) = &self.model
            && !model.is_some_and(|model| pattern.matches(model))
        {
            return false;
        }
        true
    }
}

/// The routes of one listener, in config order.
#[derive(Default)]
pub struct RouteTable {
    pub routes: Vec<Arc<Route>>,
    /// Some route matches on `model` or limits tokens, so JSON bodies must be read
    /// before routing.
    pub needs_body: bool,
    /// Some route streams request bodies as they arrive (`request_buffering = false`).
    pub streams_bodies: bool,
}

impl RouteTable {
    pub fn new(routes: Vec<Arc<Route>>) -> Self {
        let needs_body = routes
            .iter()
            .any(|route| route.matcher.model.is_some() || route.reads_request_facts);
        let streams_bodies = routes.iter().any(|route| !route.request_buffering);
        RouteTable {
            routes,
            needs_body,
            streams_bodies,
        }
    }

    pub fn find(&self, head: &request::Parts, model: Option<&str>) -> Option<&Arc<Route>> {
        self.find_with_host(head, request_host(head), model)
    }

    /// `find` for a request whose host (without port) is already known.
    pub fn find_with_host<R: RouteInput + ?Sized>(
        &self,
        head: &R,
        host: Option<&str>,
        model: Option<&str>,
    ) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .find(|route| route.matcher.matches(head, host, model))
    }
}

/// The host a request is for, as routes match it: the URI authority (HTTP/2, absolute
/// form) or the `Host` header, without port.
pub fn request_host(head: &request::Parts) -> Option<&str> {
    let raw = match head.uri.host() {
        Some(host) => host,
        None => strip_port(head.headers.get(http::header::HOST)?.to_str().ok()?),
    };
    Some(without_root_dot(raw))
}

/// The host of an authority as routes match it: without port, and without the DNS root's
/// trailing dot (`admin.example.` is the host `admin.example`, for every endpoint).
pub fn route_host(authority: &str) -> &str {
    without_root_dot(strip_port(authority))
}

fn without_root_dot(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // [v6]:port
        return authority
            .split(']')
            .next()
            .map(|h| h.trim_start_matches('['))
            .unwrap_or(authority);
    }
    // By byte: `rsplit_once` sets up a searcher per call, and this runs on every request.
    match authority.bytes().rposition(|b| b == b':') {
        Some(at)
            if authority.as_bytes()[at + 1..]
                .iter()
                .all(u8::is_ascii_digit) =>
        {
            &authority[..at]
        }
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_stripped_only_when_all_digits() {
        for (authority, host) in [
            ("example.com", "example.com"),
            ("example.com:8080", "example.com"),
            ("example.com:", "example.com"),
            ("example.com:80x", "example.com:80x"),
            ("a:b:443", "a:b"),
            ("127.0.0.1:38998", "127.0.0.1"),
            ("[::1]:443", "::1"),
            ("[::1]", "::1"),
            ("", ""),
            (":", ""),
        ] {
            assert_eq!(strip_port(authority), host, "{authority:?}");
        }
    }

    fn head(method: &str, uri: &str, headers: &[(&str, &str)]) -> request::Parts {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn hosts() {
        assert_eq!(
            request_host(&head("GET", "/", &[("host", "a.example.com.:8080")])),
            Some("a.example.com")
        );
        assert_eq!(
            request_host(&head("GET", "/", &[("host", "[::1]:80")])),
            Some("::1")
        );
        assert_eq!(
            request_host(&head("GET", "http://b.test./x", &[])),
            Some("b.test")
        );
    }

    #[test]
    fn matcher_combines_conditions() {
        let matcher = Matcher {
            path: Some(PathMatch::Prefix("/v1/".into())),
            methods: vec![Method::POST],
            headers: vec![(
                HeaderName::from_static("x-team"),
                HeaderMatch::Exact(HeaderValue::from_static("red")),
            )],
            model: Some(Glob::new("llama-*", false)),
            ..Default::default()
        };
        let ok = head("POST", "/v1/chat", &[("x-team", "red")]);
        assert!(matcher.matches(&ok, None, Some("llama-3")));
        assert!(!matcher.matches(&ok, None, Some("gpt-4")));
        assert!(!matcher.matches(&ok, None, None));
        assert!(!matcher.matches(
            &head("GET", "/v1/chat", &[("x-team", "red")]),
            None,
            Some("llama-3")
        ));
        assert!(!matcher.matches(
            &head("POST", "/v2/chat", &[("x-team", "red")]),
            None,
            Some("llama-3")
        ));
        assert!(!matcher.matches(
            &head("POST", "/v1/chat", &[("x-team", "blue")]),
            None,
            Some("llama-3")
        ));
    }
}
