//! A request head made unambiguous on entry, before routing, filters or anything Junction
//! adds: the core's rules (`crate::normalize`) applied to hyper's head, hop-by-hop
//! headers removed (so a client cannot name away what the proxy adds later), and
//! forwarding claims from untrusted clients dropped.

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderName};
use http::uri::{PathAndQuery, Uri};
use http::{HeaderValue, Version, request};

use super::ProxyError;
use super::forwarding::{is_upgrade_request, remove_each, strip_hop_by_hop};
use crate::normalize::{ConnectionTokens, Refusal, host, path};

static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// What entry found that a later phase must judge.
pub struct Entry {
    /// The path holds `%2F` or `%5C`: only a route that allows them may take it.
    pub encoded_slash: bool,
}

/// The rules a forward proxy shares with the gateway: a `Connection` list may not name
/// the framing or `Host`, and `Host` must be single, valid, agree with the target's
/// authority, and be there when `required` (HTTP/1.1).
pub(crate) fn framing_and_host(
    uri: &Uri,
    headers: &HeaderMap,
    required: bool,
) -> Result<(), Refusal> {
    let connection = headers.get_all(header::CONNECTION);
    ConnectionTokens::read(connection.iter().map(HeaderValue::as_bytes))?;
    let authority = uri.authority().map(|a| a.as_str().as_bytes());
    let hosts = headers.get_all(header::HOST);
    host::request_host(authority, hosts.iter().map(HeaderValue::as_bytes), required)?;
    Ok(())
}

/// Normalises `head` in place, or refuses it.
pub fn normalise(head: &mut request::Parts, trusted: bool) -> Result<Entry, ProxyError> {
    let required = head.version == Version::HTTP_11;
    framing_and_host(&head.uri, &head.headers, required)?;
    if ConnectionTokens::asks_h2c(
        head.headers
            .get_all(header::UPGRADE)
            .iter()
            .map(HeaderValue::as_bytes),
    ) {
        head.headers.remove(header::UPGRADE);
        head.headers.remove(&HTTP2_SETTINGS);
    }
    let upgrade = is_upgrade_request(head);
    strip_hop_by_hop(&mut head.headers, upgrade);

    let normal = path::normalize(head.uri.path())?;
    let encoded_slash = normal.encoded_slash;
    if let Cow::Owned(path) = normal.path {
        head.uri = with_path(&head.uri, path)?;
    }
    if !trusted {
        // Like `X-Forwarded-*`: only a trusted proxy may say who the client is.
        remove_each(&mut head.headers, &[&FORWARDED, &X_REAL_IP]);
    }
    Ok(Entry { encoded_slash })
}

/// `uri` with its path replaced and its query kept as sent.
fn with_path(uri: &Uri, path: String) -> Result<Uri, ProxyError> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    // The normal form only drops or decodes characters the original had: it parses.
    parts.path_and_query =
        Some(PathAndQuery::try_from(path_and_query).map_err(|_| Refusal::BadPercentEncoding)?);
    Uri::from_parts(parts).map_err(|_| Refusal::BadPercentEncoding.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(uri: &str, headers: &[(&str, &str)]) -> request::Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn connection_named_headers_go_before_anything_reads_them() {
        let mut request = head(
            "/x",
            &[
                ("host", "a"),
                ("connection", "x-request-id, x-junction-tag"),
                ("x-request-id", "client"),
                ("x-junction-tag", "t"),
                ("forwarded", "for=1.2.3.4"),
                ("x-real-ip", "1.2.3.4"),
            ],
        );
        normalise(&mut request, false).unwrap();
        let names: Vec<_> = request.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["host"]);
    }

    #[test]
    fn an_h2c_upgrade_becomes_a_plain_request() {
        let mut request = head(
            "/x",
            &[
                ("host", "a"),
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c"),
                ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ],
        );
        normalise(&mut request, false).unwrap();
        let names: Vec<_> = request.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["host"]);
    }

    #[test]
    fn paths_are_rewritten_and_queries_kept() {
        let mut request = head("/public/../%61dmin?a=%2F..", &[("host", "a")]);
        let entry = normalise(&mut request, true).unwrap();
        assert!(!entry.encoded_slash);
        assert_eq!(request.uri, "/admin?a=%2F..");
        let mut request = head("http://a/x/./y", &[("host", "A")]);
        normalise(&mut request, true).unwrap();
        assert_eq!(request.uri, "http://a/x/y");
    }

    #[test]
    fn ambiguity_is_refused() {
        for (uri, headers) in [
            ("/", &[("host", "a"), ("connection", "content-length")][..]),
            ("/", &[]),
            ("/", &[("host", "a"), ("host", "a")]),
            ("http://a/", &[("host", "b")]),
            ("/", &[("host", "a b")]),
            ("/%2e%2e/x", &[("host", "a")]),
        ] {
            let mut request = head(uri, headers);
            assert!(
                matches!(normalise(&mut request, false), Err(ProxyError::Invalid(_))),
                "{uri} {headers:?}"
            );
        }
    }
}
