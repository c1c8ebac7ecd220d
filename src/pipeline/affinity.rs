//! A request's affinity key: what keeps a client on one endpoint (`hash` balancing) or
//! on one side of a split (`sticky`), read from a header, a cookie or the client's
//! address through any engine's view, or a chat request's prompt prefix (`least_queue`
//! with prefix affinity) from its held body, so both engines place a key alike.

use std::net::IpAddr;

use http::header;

use super::RequestView;
use super::head::header_text;
use crate::balance::stable_hash;
use crate::routing::Route;
use crate::upstream::{HashKey, Pool};

/// The key `pool`'s balancer is given for this request: the prompt prefix's hash with
/// `affinity = "prefix"` (when the body is held whole: a streamed one has none), else
/// the hash key's, if the pool has one.
pub(crate) fn request_key(
    pool: &Pool,
    head: &dyn RequestView,
    client_ip: impl FnOnce() -> IpAddr,
    held_body: Option<&[u8]>,
) -> Option<u64> {
    if pool.prefix_affinity {
        return held_body.and_then(|body| crate::llm::prompt_prefix_hash(body, stable_hash));
    }
    pool.hash_key
        .as_ref()
        .and_then(|key| affinity_of(key, head, client_ip))
}

/// The keys of a route's chain targets after the first, each by its own pool's key, so
/// that a hop balances as a request sent to that pool directly would. Empty without a
/// chain.
pub(crate) fn chain_keys(
    route: &Route,
    head: &dyn RequestView,
    client_ip: IpAddr,
    held_body: Option<&[u8]>,
) -> Vec<Option<u64>> {
    route
        .chain
        .iter()
        .map(|hop| request_key(&hop.target.pool, head, || client_ip, held_body))
        .collect()
}

/// The key's hash for this request; `None` when the request does not carry it.
pub(crate) fn affinity_of(
    key: &HashKey,
    head: &dyn RequestView,
    client_ip: impl FnOnce() -> IpAddr,
) -> Option<u64> {
    match key {
        HashKey::Header(name) => head.first(name).map(stable_hash),
        HashKey::Cookie(name) => cookie_in(head, name).map(|v| stable_hash(v.as_bytes())),
        HashKey::ClientIp => Some(stable_hash(client_ip().to_string().as_bytes())),
    }
}

/// The value of cookie `name` among the request's `Cookie` lines.
fn cookie_in<'a>(head: &'a dyn RequestView, name: &str) -> Option<&'a str> {
    let mut found = None;
    head.any_value(&header::COOKIE, &mut |line| {
        found = header_text(line)
            .into_iter()
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value);
        found.is_some()
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::head::PartsView;

    #[test]
    fn cookies() {
        let mut head = http::Request::new(()).into_parts().0;
        head.headers
            .insert(header::COOKIE, "a=1; user=alice; b=2".parse().unwrap());
        head.headers.append(header::COOKIE, "c=3".parse().unwrap());
        let view = PartsView {
            head: &head,
            added_request_id: false,
        };
        assert_eq!(cookie_in(&view, "user"), Some("alice"));
        assert_eq!(cookie_in(&view, "c"), Some("3"));
        assert_eq!(cookie_in(&view, "nope"), None);
    }
}
