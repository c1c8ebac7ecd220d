//! One endpoint of a pool and its live state, plus the registry that hands the same
//! state to every plan that names the same endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::HeaderValue;
use http::uri::{Authority, Scheme};

use super::Protocol;
use super::connections::ConnectionCache;
use crate::balance::{Candidate, EndpointLoad, LoadReading, PeakEwma, stable_hash};

/// A parsed `http://host:port` or `https://host:port` endpoint URL.
#[derive(Debug, Clone)]
pub struct UpstreamUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub authority: Authority,
}

impl UpstreamUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: http::Uri = text
            .parse()
            .map_err(|e| format!("invalid URL {text:?}: {e}"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            Some(other) => {
                return Err(format!(
                    "unsupported scheme {other:?} in {text:?} (http or https)"
                ));
            }
            None => {
                return Err(format!(
                    "URL {text:?} needs a scheme, e.g. http://127.0.0.1:9001"
                ));
            }
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("URL {text:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "URL {text:?}: credentials in endpoint URLs are not supported"
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "URL {text:?}: an endpoint URL has no path or query"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority
            .port_u16()
            .unwrap_or(if scheme == Scheme::HTTPS { 443 } else { 80 });
        Ok(UpstreamUrl {
            scheme,
            host,
            port,
            authority,
        })
    }

    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }
}

/// A compiled endpoint: its address, weight and shared live state.
pub struct Endpoint {
    pub url: Arc<str>,
    pub target: UpstreamUrl,
    pub weight: u32,
    /// `Host` sent when the pool rewrites it.
    pub host_header: HeaderValue,
    /// Stable across instances: the endpoint's share of consistent hashing.
    pub identity_hash: u64,
    pub state: Arc<EndpointState>,
}

impl Endpoint {
    pub fn new(url: &str, target: UpstreamUrl, weight: u32, state: Arc<EndpointState>) -> Self {
        let host_header = HeaderValue::from_str(target.authority.as_str())
            .expect("authority is a valid header value");
        Endpoint {
            url: url.into(),
            identity_hash: stable_hash(url.as_bytes()),
            target,
            weight,
            host_header,
            state,
        }
    }
}

impl Candidate for Endpoint {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn in_flight(&self) -> u64 {
        self.state.in_flight()
    }
    fn latency_nanos(&self) -> f64 {
        self.state.latency.estimate_nanos()
    }
    fn identity_hash(&self) -> u64 {
        self.identity_hash
    }
    fn load(&self) -> Option<LoadReading> {
        self.state.load.reading()
    }
}

/// Live state of one endpoint, shared by every plan that has it.
#[derive(Default)]
pub struct EndpointState {
    in_flight: AtomicU64,
    requests: AtomicU64,
    pub latency: PeakEwma,
    pub connections: Arc<ConnectionCache>,
    pub health: super::health_verdict::Health,
    /// The model server's last load report (`least_queue`).
    pub load: EndpointLoad,
}

impl EndpointState {
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the returned guard drops (after the response
    /// body has ended or the exchange was abandoned).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight {
            state: self.clone(),
        }
    }
}

pub struct InFlight {
    state: Arc<EndpointState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// (pool, endpoint URL, protocol): how endpoint state is keyed across plans.
pub type EndpointKey = (String, String, Protocol);

/// Endpoint state by [`EndpointKey`], for the plan in force. Compiling a plan only
/// reads it ([`Registry::kept`]): kept endpoints get their old state, new ones a fresh
/// state that nobody else sees yet. Swapping the plan in registers what it holds
/// ([`Registry::adopt`]), so a plan that is refused leaves the registry as it was.
#[derive(Default)]
pub struct Registry {
    states: Mutex<HashMap<EndpointKey, Arc<EndpointState>>>,
}

impl Registry {
    /// The state of `key` in the plan in force, if it has that endpoint.
    pub fn kept(&self, key: &EndpointKey) -> Option<Arc<EndpointState>> {
        self.lock().get(key).cloned()
    }

    /// Makes `states` (each endpoint of the plan being swapped in, with the state that
    /// plan holds) the registry's content: new endpoints are registered, the state of
    /// endpoints it does not name is forgotten (plans still running keep theirs).
    pub fn adopt(&self, states: impl IntoIterator<Item = (EndpointKey, Arc<EndpointState>)>) {
        let fresh: HashMap<EndpointKey, Arc<EndpointState>> = states.into_iter().collect();
        *self.lock() = fresh;
    }

    /// Every registered endpoint and its state, sorted by key.
    pub fn entries(&self) -> Vec<(EndpointKey, Arc<EndpointState>)> {
        let mut entries: Vec<_> = self
            .lock()
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EndpointKey, Arc<EndpointState>>> {
        self.states
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = UpstreamUrl::parse("http://127.0.0.1:9001").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.is_https()),
            ("127.0.0.1", 9001, false)
        );
        let url = UpstreamUrl::parse("https://example.com").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.is_https()),
            ("example.com", 443, true)
        );
        let url = UpstreamUrl::parse("http://[::1]:8000/").unwrap();
        assert_eq!(url.host, "::1");
        for bad in ["127.0.0.1:80", "ftp://x", "http://u:p@x", "http://x/path"] {
            assert!(UpstreamUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
