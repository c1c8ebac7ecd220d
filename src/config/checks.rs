//! What the compile steps share: the list their errors go to, and the checks and
//! conversions more than one of them makes. Each step (`pools`, `routes`, `security`,
//! `egress`) and `compile`, which runs them, import from here; none imports from
//! `compile`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;

use super::spec::{BalanceSpec, ProtocolSpec, SizeSpec};
use crate::balance::{Policy, PrefixAffinity};
use crate::units::{parse_byte_size, parse_duration};
use crate::upstream::Protocol;

/// Errors as (key path, message).
pub(super) type Errors = Vec<(String, String)>;

pub(super) fn parse_addr(text: &str, path: &str, errors: &mut Errors) -> Option<SocketAddr> {
    text.parse::<SocketAddr>()
        .map_err(|_| {
            errors.push((
                path.into(),
                format!("{text:?} is not an IP:port address, e.g. \"127.0.0.1:8080\""),
            ))
        })
        .ok()
}

pub(super) fn check_unique<'a>(
    names: impl Iterator<Item = &'a str>,
    what: &str,
    errors: &mut Errors,
) {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        if name.is_empty() {
            errors.push((format!("{what}[{i}].name"), "name must not be empty".into()));
        } else if !seen.insert(name) {
            errors.push((
                format!("{what}[{i}].name"),
                format!("duplicate name {name:?}"),
            ));
        }
    }
}

/// CIDRs or bare addresses (taken as /32 or /128).
pub(super) fn parse_cidrs(items: &[String], path: &str, errors: &mut Errors) -> Vec<IpNet> {
    items
        .iter()
        .enumerate()
        .filter_map(|(i, text)| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    errors.push((
                        format!("{path}[{i}]"),
                        format!("{text:?} is not a CIDR (\"10.0.0.0/8\") or IP address"),
                    ))
                })
                .ok()
        })
        .collect()
}

pub(super) fn resolve(base: &Path, file: &str) -> String {
    let path = Path::new(file);
    if path.is_absolute() {
        file.to_string()
    } else {
        base.join(path).to_string_lossy().into_owned()
    }
}

/// A size as written (`"64KiB"`, or a number of bytes), or `None` with its error at
/// `path`.
pub(super) fn bytes_of(value: &SizeSpec, path: &str, errors: &mut Errors) -> Option<u64> {
    match value {
        SizeSpec::Bytes(bytes) => Some(*bytes),
        SizeSpec::Text(text) => parse_byte_size(text)
            .map_err(|e| errors.push((path.into(), e)))
            .ok(),
    }
}

pub(super) fn duration_or(
    text: &Option<String>,
    default: Duration,
    path: &str,
    errors: &mut Errors,
) -> Duration {
    match text.as_deref().map(parse_duration) {
        None => default,
        Some(Ok(duration)) if !duration.is_zero() => duration,
        Some(Ok(_)) => {
            errors.push((path.into(), "must be greater than zero".into()));
            default
        }
        Some(Err(e)) => {
            errors.push((path.into(), e));
            default
        }
    }
}

/// The run-time form of `balance = "..."`; `least_queue` with its settings.
pub(super) fn policy(
    spec: BalanceSpec,
    max_age: Duration,
    affinity: Option<PrefixAffinity>,
) -> Policy {
    match spec {
        BalanceSpec::LeastQueue => Policy::LeastQueue { max_age, affinity },
        BalanceSpec::RoundRobin => Policy::RoundRobin,
        BalanceSpec::LeastConn => Policy::LeastConn,
        BalanceSpec::P2cEwma => Policy::P2cEwma,
        BalanceSpec::Hash => Policy::Hash,
        BalanceSpec::Random => Policy::Random,
    }
}

/// The run-time form of `protocol = "..."`.
pub(super) fn protocol(spec: ProtocolSpec) -> Protocol {
    match spec {
        ProtocolSpec::Http1 => Protocol::Http1,
        ProtocolSpec::H2 => Protocol::H2,
    }
}

/// Request headers the proxy itself writes (framing, hop-by-hop, forwarding, tracing,
/// its own control headers): a header rule may not set or remove them, so what an
/// endpoint receives never depends on which engine rendered the head.
pub(super) const OWNED_REQUEST_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "via",
    "x-request-id",
    "traceparent",
];

/// Why a pool's `auth` may not use `name` as its header, if it may not: the same
/// headers a request header rule may not touch.
pub(super) fn owned_request_header(name: &http::HeaderName) -> Option<String> {
    owned(name, OWNED_REQUEST_HEADERS)
}

/// Response headers the proxy itself writes.
pub(super) const OWNED_RESPONSE_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "trailer",
    "upgrade",
    "x-request-id",
];

/// Why a header rule may not touch `name`, if it may not.
pub(super) fn owned(name: &http::HeaderName, owned: &[&str]) -> Option<String> {
    let name = name.as_str();
    if owned.contains(&name) {
        Some(format!(
            "{name} is written by the proxy itself and cannot be set or removed by a header rule"
        ))
    } else if name.starts_with("x-junction-") {
        Some(format!("{name}: x-junction-* headers are Junction's own"))
    } else {
        None
    }
}
