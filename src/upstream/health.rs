//! Endpoint health: active checks (HTTP or TCP probes with HAProxy's rise/fall
//! semantics), passive outlier detection from real traffic (Envoy-style ejection with a
//! growing, capped time, never more than a share of the pool), and `Retry-After` holds.
//! The verdicts live in atomics on the endpoint's state, read by every pick.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::Protocol;
pub use super::health_verdict::Health;
use super::{Endpoint, EndpointState, UpstreamClient};

/// Active check settings of a pool (`health = { ... }`).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// `None`: a TCP connect is the whole check.
    pub path: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Inclusive status ranges that pass.
    pub expect: Vec<(u16, u16)>,
}

/// Passive outlier detection settings of a pool (`outlier = { ... }`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub max_ejection_percent: u32,
}

/// The outcome of one exchange with an endpoint, for passive detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Connect failure, reset, timeout, or a 5xx answer.
    Failure,
}

/// Records `outcome` for `endpoint` of a pool; ejects it after too many failures in a
/// row unless that would take more than the allowed share of the pool out. Returns
/// the ejection time when it ejected.
pub fn record_outcome(
    endpoint: &Endpoint,
    pool: &[Arc<Endpoint>],
    policy: &OutlierDetection,
    outcome: Outcome,
) -> Option<Duration> {
    let health = &endpoint.state.health;
    match outcome {
        Outcome::Success => {
            if health.consecutive_failures.swap(0, Ordering::Relaxed) == 0 && !health.is_ejected() {
                // A clean run after an ejection: the next one starts from the base time.
                health.ejection_streak.store(0, Ordering::Relaxed);
            }
            None
        }
        Outcome::Failure => {
            let failures = health.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if failures < policy.consecutive_failures || health.is_ejected() {
                return None;
            }
            let ejected_now = pool.iter().filter(|e| e.state.health.is_ejected()).count();
            let allowed = (pool.len() * policy.max_ejection_percent as usize) / 100;
            if ejected_now + 1
                > allowed.max(if policy.max_ejection_percent > 0 {
                    1
                } else {
                    0
                })
            {
                return None;
            }
            let streak = health.ejection_streak.fetch_add(1, Ordering::Relaxed);
            let time = policy
                .base_ejection
                .saturating_mul(1u32 << streak.min(16))
                .min(policy.max_ejection);
            health
                .ejected_until
                .store(health.at(time), Ordering::Relaxed);
            health.consecutive_failures.store(0, Ordering::Relaxed);
            health.ejections_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(endpoint = %endpoint.url, ejected_for = ?time, failures, "endpoint ejected after consecutive failures");
            Some(time)
        }
    }
}

/// What a checker probes, and how: the endpoint's address and `Host`, with its pool's
/// protocol and TLS settings, so an HTTP check speaks what real traffic speaks (h2c or
/// h2 over TLS, https).
pub struct ProbeTarget {
    host: String,
    port: u16,
    authority: http::uri::Authority,
    host_header: http::HeaderValue,
    scheme: http::uri::Scheme,
    protocol: Protocol,
    /// For https endpoints.
    tls: Option<super::tls::UpstreamTls>,
}

impl ProbeTarget {
    pub fn new(endpoint: &Endpoint, client: &UpstreamClient) -> Self {
        ProbeTarget {
            host: endpoint.target.host.clone(),
            port: endpoint.target.port,
            authority: endpoint.target.authority.clone(),
            host_header: endpoint.host_header.clone(),
            scheme: endpoint.target.scheme.clone(),
            protocol: client.protocol,
            tls: if endpoint.target.is_https() {
                client.tls()
            } else {
                None
            },
        }
    }
}

/// Runs the active checks of one endpoint until its state is dropped (the endpoint left
/// every plan) or the task is aborted (the settings changed).
pub async fn run_checks(
    pool: Arc<str>,
    url: Arc<str>,
    target: ProbeTarget,
    state: Weak<EndpointState>,
    check: HealthCheck,
) {
    let mut passes = 0u32;
    let mut failures = 0u32;
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(state) = state.upgrade() else { return };
        let verdict = match tokio::time::timeout(check.timeout, probe(&target, &check)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err(format!("no answer within {:?}", check.timeout)),
        };
        let was_up = state.health.is_active_up();
        match verdict {
            Ok(()) => {
                failures = 0;
                passes += 1;
                if !was_up && passes >= check.rise && state.health.set_active(true) {
                    tracing::info!(%pool, endpoint = %url, passes, "endpoint is up (health check)");
                }
            }
            Err(reason) => {
                passes = 0;
                failures += 1;
                if was_up && failures >= check.fall && state.health.set_active(false) {
                    tracing::warn!(%pool, endpoint = %url, failures, %reason, "endpoint is down (health check)");
                }
            }
        }
    }
}

async fn probe(target: &ProbeTarget, check: &HealthCheck) -> Result<(), String> {
    let Some(path) = &check.path else {
        TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        return Ok(());
    };
    let status = get(target, path, "junction-health-check")
        .await?
        .status()
        .as_u16();
    if check
        .expect
        .iter()
        .any(|(low, high)| (*low..=*high).contains(&status))
    {
        Ok(())
    } else {
        Err(format!(
            "status {}",
            StatusCode::from_u16(status)
                .map(|s| s.to_string())
                .unwrap_or_else(|_| status.to_string())
        ))
    }
}

/// `GET path` on a new connection to the endpoint, in its pool's protocol and TLS: the
/// answer's head, its body still to read. Health checks and load polls use it.
pub(super) async fn get(
    target: &ProbeTarget,
    path: &str,
    user_agent: &'static str,
) -> Result<Response<Incoming>, String> {
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match &target.tls {
        Some(connector) => {
            let stream = connector
                .connect(&target.host, stream)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            get_over(TokioIo::new(stream), target, path, user_agent).await
        }
        None => get_over(TokioIo::new(stream), target, path, user_agent).await,
    }
}

/// `GET path` over `io` in the pool's protocol.
async fn get_over<I>(
    io: I,
    target: &ProbeTarget,
    path: &str,
    user_agent: &'static str,
) -> Result<Response<Incoming>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let handshake = |e: hyper::Error| format!("handshake: {e}");
    let request = |e: http::Error| format!("request: {e}");
    let response = match target.protocol {
        Protocol::Http1 => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(handshake)?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let probe = Request::get(path)
                .header(http::header::HOST, target.host_header.clone())
                .header(http::header::USER_AGENT, user_agent)
                .body(Empty::<Bytes>::new())
                .map_err(request)?;
            sender.send_request(probe).await
        }
        Protocol::H2 => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(handshake)?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            // HTTP/2 carries the host as :authority, from an absolute URI.
            let uri = http::Uri::builder()
                .scheme(target.scheme.clone())
                .authority(target.authority.clone())
                .path_and_query(path)
                .build()
                .map_err(request)?;
            let probe = Request::get(uri)
                .header(http::header::USER_AGENT, user_agent)
                .body(Empty::<Bytes>::new())
                .map_err(request)?;
            sender.send_request(probe).await
        }
    };
    response.map_err(|e| format!("request: {e}"))
}

/// Parses `"200-399"`, `"200"`, `"200,204,300-399"`.
pub fn parse_status_ranges(text: &str) -> Result<Vec<(u16, u16)>, String> {
    text.split(',')
        .map(|part| {
            let part = part.trim();
            let (low, high) = part.split_once('-').unwrap_or((part, part));
            let parse = |s: &str| {
                s.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|code| (100..=599).contains(code))
            };
            match (parse(low), parse(high)) {
                (Some(low), Some(high)) if low <= high => Ok((low, high)),
                _ => Err(format!(
                    "{part:?} is not a status or range of statuses (e.g. \"200-399\")"
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status_ranges("200-399").unwrap(), vec![(200, 399)]);
        assert_eq!(
            parse_status_ranges("200, 204,300-302").unwrap(),
            vec![(200, 200), (204, 204), (300, 302)]
        );
        assert!(parse_status_ranges("399-200").is_err());
        assert!(parse_status_ranges("abc").is_err());
        assert!(parse_status_ranges("700").is_err());
    }
}
