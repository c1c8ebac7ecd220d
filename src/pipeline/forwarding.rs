//! Proxy hygiene on the way through: hop-by-hop headers out (RFC 9110 7.6.1),
//! `X-Forwarded-*` and `Via` in, `Host` and the request target shaped for the endpoint.
//! Done in one pass over the headers when none are hop-by-hop (the common case).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Version, request, response};
use ipnet::IpNet;

use super::{Downstream, HeaderEdits};
use crate::routing::GatewayListener;
use crate::upstream::Protocol;
use crate::upstream::{Endpoint, Pool, PoolCredential};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_JUNCTION_VERSION: HeaderName = HeaderName::from_static("x-junction-version");
const KEEP_ALIVE: &str = "keep-alive";
const PROXY_CONNECTION: &str = "proxy-connection";

const CONNECTION: u8 = 1;
const TE: u8 = 2;
const TRANSFER_ENCODING: u8 = 4;
const UPGRADE: u8 = 8;
const KEEP_ALIVE_BIT: u8 = 16;
const PROXY_CONNECTION_BIT: u8 = 32;

fn hop_by_hop_bit(name: &HeaderName) -> u8 {
    if name == header::CONNECTION {
        CONNECTION
    } else if name == header::TE {
        TE
    } else if name == header::TRANSFER_ENCODING {
        TRANSFER_ENCODING
    } else if name == header::UPGRADE {
        UPGRADE
    } else if name.as_str() == KEEP_ALIVE {
        KEEP_ALIVE_BIT
    } else if name.as_str() == PROXY_CONNECTION {
        PROXY_CONNECTION_BIT
    } else {
        0
    }
}

/// Removes hop-by-hop headers and those the `Connection` header names. With `upgrade`,
/// `Connection: upgrade` and `Upgrade` are kept (the endpoint must see them).
/// One pass over the names finds which are present; only those are removed, so the
/// common case (none, or just `Connection: keep-alive`) costs no hashing beyond that.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let present = headers
        .keys()
        .fold(0, |bits, name| bits | hop_by_hop_bit(name));
    if present == 0 {
        return;
    }
    if present & CONNECTION != 0 {
        // Tokens that name other headers; the usual ones (keep-alive, close, upgrade)
        // are handled below without building names.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|token| {
                !["keep-alive", "close", "upgrade", ""]
                    .iter()
                    .any(|usual| token.eq_ignore_ascii_case(usual))
            })
            .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        } else {
            headers.remove(header::CONNECTION);
        }
    }
    if present & TE != 0 {
        // gRPC and others need `TE: trailers` end to end; it is the one TE value kept,
        // line by line, as the HTTP/1.1 engine keeps it (a `TE: gzip` beside it goes).
        // A `TE` that `Connection` named is gone already, whatever its value.
        let trailers = headers
            .get_all(header::TE)
            .iter()
            .filter(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
            .count();
        if headers.get_all(header::TE).iter().count() != trailers {
            headers.remove(header::TE);
            for _ in 0..trailers {
                headers.append(header::TE, HeaderValue::from_static("trailers"));
            }
        }
    }
    if present & TRANSFER_ENCODING != 0 {
        headers.remove(header::TRANSFER_ENCODING);
    }
    if present & UPGRADE != 0 && !upgrade {
        headers.remove(header::UPGRADE);
    }
    if present & KEEP_ALIVE_BIT != 0 {
        headers.remove(KEEP_ALIVE);
    }
    if present & PROXY_CONNECTION_BIT != 0 {
        headers.remove(PROXY_CONNECTION);
    }
}

/// Removes those of `names` (at most 32) that `headers` holds. One pass over the names
/// present finds them, where a `remove` per name hashes each whether it is there or not;
/// on nearly every request none is.
pub(crate) fn remove_each(headers: &mut HeaderMap, names: &[&HeaderName]) {
    debug_assert!(names.len() <= 32);
    let present = headers.keys().fold(0u32, |bits, key| {
        names
            .iter()
            .enumerate()
            .filter(|(_, name)| **name == key)
            .fold(bits, |bits, (at, _)| bits | 1 << at)
    });
    if present == 0 {
        return;
    }
    for (at, name) in names.iter().enumerate() {
        if present & 1 << at != 0 {
            headers.remove(*name);
        }
    }
}

pub fn is_upgrade_request(head: &request::Parts) -> bool {
    head.version == Version::HTTP_11
        && head.headers.contains_key(header::UPGRADE)
        && head
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

pub(crate) fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    !trusted.is_empty() && trusted.iter().any(|net| net.contains(&ip.to_canonical()))
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the
/// right-most `X-Forwarded-For` address that is not itself a trusted proxy. IPv4-mapped
/// IPv6 addresses (`::ffff:a.b.c.d`, from dual-stack sockets) are given as IPv4, so that
/// IPv4 allow and deny lists see them.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    client_behind(
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .map(HeaderValue::as_bytes),
        peer,
        trusted,
    )
}

/// [`client_ip`] from any engine's view of the request.
pub(crate) fn client_ip_of(
    head: &dyn super::RequestView,
    peer: IpAddr,
    trusted: &[IpNet],
) -> IpAddr {
    if !is_trusted(trusted, peer.to_canonical()) {
        return peer.to_canonical();
    }
    let mut lines: Vec<&[u8]> = Vec::new();
    head.any_value(&X_FORWARDED_FOR, &mut |line| {
        lines.push(line);
        false
    });
    client_behind(lines.into_iter(), peer, trusted)
}

fn client_behind<'a>(
    forwarded_for: impl Iterator<Item = &'a [u8]>,
    peer: IpAddr,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(trusted, peer) {
        return peer;
    }
    let mut client = peer;
    let hops = forwarded_for
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip.to_canonical();
                if !is_trusted(trusted, ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// Every line of a header joined with ", " (RFC 9110 5.3: they form one list);
/// `None` when there is none.
fn joined_lines(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let mut lines = headers.get_all(name).iter();
    let mut joined = lines.next()?.as_bytes().to_vec();
    for line in lines {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(line.as_bytes());
    }
    Some(joined)
}

/// The headers clients carry a provider key in: `Authorization` (OpenAI and most
/// others), `x-api-key` (Anthropic), `api-key` (Azure OpenAI), `x-goog-api-key` (Gemini).
static CLIENT_CREDENTIALS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-goog-api-key"),
];

/// Whether `name` is a header clients carry a provider key in, which a pool's own
/// credential replaces (a replay that left such a header out misses nothing then).
pub(crate) fn is_client_credential(name: &str) -> bool {
    CLIENT_CREDENTIALS
        .iter()
        .any(|known| known.as_str().eq_ignore_ascii_case(name))
}

/// Adds a pool's credential to the edits a request gets on its way to that pool: every
/// client credential header out, then the pool's own. Last, so that it wins over a
/// route's `request_headers`; per attempt, as a retry or fallback may change the pool.
pub(crate) fn add_pool_credential(edits: &mut HeaderEdits, credential: &PoolCredential) {
    for name in &CLIENT_CREDENTIALS {
        edits.remove(name);
    }
    edits.set(&credential.header, credential.value.clone());
}

/// On a listener with `tls.client_auth`: the identity header a client sent is removed
/// and the verified certificate's identity set in its place. Both engines add these to
/// the request's edits at the same phase, after the route's filters.
pub(crate) fn client_identity_edits(downstream: &Downstream, edits: &mut HeaderEdits) {
    let Some(header) = &downstream.accepted_on.identity_header else {
        return;
    };
    edits.remove(header);
    let value = downstream
        .client_identity
        .as_deref()
        .and_then(|identity| HeaderValue::from_str(identity.primary()).ok());
    if let Some(value) = value {
        edits.set(header, value);
    }
}

/// Shapes a downstream request head for `endpoint`.
pub fn prepare_request(
    head: &mut request::Parts,
    downstream: &Downstream,
    listener: &GatewayListener,
    pool: &Pool,
    endpoint: &Endpoint,
    upgrade: bool,
) {
    let via: &'static str = match head.version {
        Version::HTTP_2 => "2 junction",
        Version::HTTP_10 => "1.0 junction",
        _ => "1.1 junction",
    };
    let headers = &mut head.headers;
    strip_hop_by_hop(headers, upgrade);
    if let Some(credential) = &pool.credential {
        let mut edits = HeaderEdits::new();
        add_pool_credential(&mut edits, credential);
        edits.apply(headers);
    }

    let trusted = is_trusted(&listener.trusted_proxies, downstream.peer.ip());
    match joined_lines(headers, &X_FORWARDED_FOR) {
        Some(mut joined) if trusted => {
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(downstream.peer_header.as_bytes());
            if let Ok(value) = HeaderValue::from_bytes(&joined) {
                headers.insert(X_FORWARDED_FOR.clone(), value);
            }
        }
        _ => {
            headers.insert(X_FORWARDED_FOR.clone(), downstream.peer_header.clone());
        }
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = HeaderValue::from_static(if downstream.tls { "https" } else { "http" });
        headers.insert(X_FORWARDED_PROTO.clone(), proto);
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        let host = headers.get(header::HOST).cloned().or_else(|| {
            head.uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        if let Some(host) = host {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
    }
    match joined_lines(headers, &header::VIA) {
        Some(mut joined) => {
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(via.as_bytes());
            if let Ok(value) = HeaderValue::from_bytes(&joined) {
                headers.insert(header::VIA, value);
            }
        }
        None => {
            headers.insert(header::VIA, HeaderValue::from_static(via));
        }
    }

    let path = head
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    match pool.protocol {
        Protocol::Http1 => {
            if pool.rewrite_host {
                headers.insert(header::HOST, endpoint.host_header.clone());
            } else if !headers.contains_key(header::HOST) {
                // HTTP/2 clients send the host as :authority only.
                let host = head
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
                headers.insert(
                    header::HOST,
                    host.unwrap_or_else(|| endpoint.host_header.clone()),
                );
            }
            if head.uri.scheme().is_some() || head.uri.authority().is_some() {
                head.uri = Uri::from(path);
            }
            head.version = Version::HTTP_11;
        }
        Protocol::H2 => {
            // HTTP/2 carries the host in :authority; a Host header would contradict it.
            let authority = if pool.rewrite_host {
                endpoint.target.authority.clone()
            } else {
                headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.parse().ok())
                    .or_else(|| head.uri.authority().cloned())
                    .unwrap_or_else(|| endpoint.target.authority.clone())
            };
            headers.remove(header::HOST);
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(endpoint.target.scheme.clone());
            parts.authority = Some(authority);
            parts.path_and_query = Some(path);
            if let Ok(uri) = Uri::from_parts(parts) {
                head.uri = uri;
            }
            head.version = Version::HTTP_2;
        }
    }
}

/// Shapes an endpoint's response head for the client.
pub fn prepare_response(head: &mut response::Parts, pool: &Pool, upgrade: bool) {
    strip_hop_by_hop(&mut head.headers, upgrade);
    if let Some(version) = &pool.version_header {
        head.headers
            .insert(X_JUNCTION_VERSION.clone(), version.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_each_removes_every_value_of_the_names_present_and_nothing_else() {
        let named = [
            HeaderName::from_static("x-a"),
            header::PROXY_AUTHORIZATION,
            HeaderName::from_static("x-b"),
        ];
        let names: Vec<&HeaderName> = named.iter().collect();
        // Each subset of the names present, beside headers that stay.
        for subset in 0..8u32 {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static("h"));
            headers.insert("x-ab", HeaderValue::from_static("kept"));
            for (at, name) in named.iter().enumerate() {
                if subset & 1 << at != 0 {
                    headers.append(name, HeaderValue::from_static("1"));
                    headers.append(name, HeaderValue::from_static("2"));
                }
            }
            remove_each(&mut headers, &names);
            let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
            assert_eq!(left, ["host", "x-ab"], "subset {subset:03b}");
            assert_eq!(headers.len(), 2);
        }
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers, false);
        let names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["te", "x-kept"]);
    }

    /// The same `TE` lines the HTTP/1.1 engine keeps: each `trailers` line, nothing
    /// beside it, and none when `Connection` names `TE`.
    #[test]
    fn te_keeps_only_trailers_lines() {
        let mut headers = HeaderMap::new();
        headers.append(header::TE, HeaderValue::from_static("trailers"));
        headers.append(header::TE, HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut headers, false);
        let te: Vec<_> = headers.get_all(header::TE).iter().collect();
        assert_eq!(te, ["trailers"]);

        headers.insert(header::CONNECTION, HeaderValue::from_static("da, te"));
        strip_hop_by_hop(&mut headers, false);
        assert!(headers.get(header::TE).is_none(), "{headers:?}");
    }

    #[test]
    fn client_ip_walks_trusted_hops() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("198.51.100.7, 10.1.1.1"),
        );
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            client_ip(&headers, peer, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let untrusted: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(client_ip(&headers, untrusted, &trusted), untrusted);
    }
}
