//! Keeps browsers from driving the admin API: a `Host` other than the admin's own address
//! or a configured name is refused (DNS rebinding), and so is a change asked for by
//! another site (`Origin`, `Sec-Fetch-Site`, or a form's content type without `Origin`).

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use serde_json::json;

use crate::normalize::host::parse_host;
use crate::pipeline::{ProxyBody, json_error};
use crate::server::Gateway;

/// Who the admin API is: the addresses it listens on and the names it answers to.
pub struct Identity<'a> {
    pub bound: &'a [SocketAddr],
    pub names: &'a [std::sync::Arc<str>],
}

impl Identity<'_> {
    /// Whether `host` (a `Host` value or the host of an `Origin`) names this admin API.
    /// A name must be configured; an IP literal must be the bound one (any IP when bound
    /// to an unspecified address: a rebinding page always carries its own domain name,
    /// never an IP); `localhost` names a loopback or unspecified bind.
    pub fn accepts(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.names.iter().any(|name| **name == *host) {
            return true;
        }
        let Some((name, port)) = parse_host(&host) else {
            return false;
        };
        let port = port.unwrap_or(80);
        let ip = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name)
            .parse::<IpAddr>()
            .ok();
        self.bound.iter().any(|bound| {
            if bound.port() != port {
                return false;
            }
            match ip {
                Some(ip) => ip == bound.ip() || bound.ip().is_unspecified(),
                None => {
                    name == "localhost" && (bound.ip().is_loopback() || bound.ip().is_unspecified())
                }
            }
        })
    }
}

/// The refusal for a request the admin API must not serve, if it is one.
/// `local` is the address the client connected to.
pub fn check<B>(
    request: &Request<B>,
    gateway: &Gateway,
    local: SocketAddr,
) -> Result<(), Box<Response<ProxyBody>>> {
    let plan = gateway.plan();
    let bound = [plan.admin_bind, local];
    let identity = Identity {
        bound: &bound,
        names: &plan.admin_hosts,
    };
    let refusal = match judge(
        request.method(),
        request.uri(),
        request.headers(),
        &identity,
    ) {
        Ok(()) => return Ok(()),
        Err(refusal) => refusal,
    };
    let host = request
        .headers()
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    tracing::warn!(target: "audit", method = %request.method(), path = %request.uri().path(), ?host, ?origin, reason = refusal.message, "admin request refused");
    gateway.audit.record(
        "admin_refused",
        json!({ "method": request.method().as_str(), "path": request.uri().path(), "host": host, "origin": origin, "rule": refusal.kind }),
    );
    Err(Box::new(json_error(
        refusal.status,
        refusal.kind,
        refusal.message,
    )))
}

#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: &'static str,
}

const fn refuse(status: StatusCode, kind: &'static str, message: &'static str) -> Refusal {
    Refusal {
        status,
        kind,
        message,
    }
}

/// Content types an HTML form can send to another site without a CORS preflight.
const FORM_TYPES: &[&str] = &[
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
];

pub fn judge(
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    identity: &Identity<'_>,
) -> Result<(), Refusal> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "bad_host",
                "more than one Host header",
            ));
        }
        (Some(value), None) => Some(value.to_str().map_err(|_| {
            refuse(
                StatusCode::BAD_REQUEST,
                "bad_host",
                "the Host header is not text",
            )
        })?),
        (None, None) => None,
    };
    // HTTP/2 and absolute-form targets carry the authority in the URI; it wins, and a
    // Host that says otherwise is refused rather than guessed between.
    let authority = uri.authority().map(|a| a.as_str());
    let host = match (authority, host) {
        (Some(authority), Some(host)) if !authority.eq_ignore_ascii_case(host) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "bad_host",
                "the Host header does not match the request target's authority",
            ));
        }
        (Some(authority), _) => authority,
        (None, Some(host)) => host,
        (None, None) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "missing_host",
                "the admin API needs a Host header naming it",
            ));
        }
    };
    if !identity.accepts(host) {
        return Err(refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            "the Host is not this admin API's address or one of [admin] hosts",
        ));
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    const CROSS_SITE: &str = "state-changing admin requests must come from the admin API's own origin, or from outside a browser";
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            CROSS_SITE,
        ));
    }
    let mut origins = headers.get_all(header::ORIGIN).iter();
    match (origins.next(), origins.next()) {
        (Some(origin), None) => {
            let own = origin.to_str().ok().and_then(|origin| {
                origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"))
            });
            // Same origin: the page's host is the one this request names (and passed the
            // Host check). Another accepted address is another origin: with an
            // unspecified bind, any IP on the port would otherwise do.
            if !own.is_some_and(|origin_host| origin_host.eq_ignore_ascii_case(host)) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "cross_site_request",
                    CROSS_SITE,
                ));
            }
        }
        (Some(_), Some(_)) => {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "cross_site_request",
                "more than one Origin header",
            ));
        }
        (None, _) if *method == Method::POST => {
            // Browsers from before Origin was sent on every POST: a form could still post
            // cross-site, but only with these types (other methods need a preflight). No
            // admin endpoint takes a form body.
            let essence = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                });
            if essence.is_some_and(|essence| FORM_TYPES.contains(&essence.as_str())) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "cross_site_request",
                    "a form content type without an Origin header may come from another site's form; send no body, or Content-Type: application/json",
                ));
            }
        }
        (None, _) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity_for(bound: &str, names: &[&str]) -> (Vec<SocketAddr>, Vec<std::sync::Arc<str>>) {
        (
            vec![bound.parse().unwrap()],
            names.iter().map(|n| std::sync::Arc::from(*n)).collect(),
        )
    }

    fn verdict(
        bound: &str,
        names: &[&str],
        method: Method,
        pairs: &[(&str, &str)],
    ) -> Result<(), &'static str> {
        let (bound, names) = identity_for(bound, names);
        let identity = Identity {
            bound: &bound,
            names: &names,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        judge(
            &method,
            &"/api/reload".parse().unwrap(),
            &headers,
            &identity,
        )
        .map_err(|r| r.kind)
    }

    #[test]
    fn hosts() {
        let get =
            |bound, names: &[&str], host| verdict(bound, names, Method::GET, &[("host", host)]);
        assert_eq!(get("127.0.0.1:9901", &[], "127.0.0.1:9901"), Ok(()));
        assert_eq!(get("127.0.0.1:9901", &[], "LOCALHOST:9901"), Ok(()));
        assert_eq!(
            get("127.0.0.1:9901", &[], "localhost:9902"),
            Err("misdirected_request")
        );
        assert_eq!(
            get("127.0.0.1:9901", &[], "evil.example:9901"),
            Err("misdirected_request")
        );
        assert_eq!(
            get("127.0.0.1:9901", &[], "127.0.0.2:9901"),
            Err("misdirected_request")
        );
        assert_eq!(get("127.0.0.1:80", &[], "127.0.0.1"), Ok(()));
        assert_eq!(get("[::1]:9901", &[], "[::1]:9901"), Ok(()));
        assert_eq!(get("[::1]:9901", &[], "localhost:9901"), Ok(()));
        assert_eq!(get("0.0.0.0:9901", &[], "10.1.2.3:9901"), Ok(()));
        assert_eq!(
            get("0.0.0.0:9901", &[], "admin.internal:9901"),
            Err("misdirected_request")
        );
        assert_eq!(
            get("10.0.0.1:9901", &[], "localhost:9901"),
            Err("misdirected_request")
        );
        let names = &["admin.internal", "admin.internal:9901"];
        assert_eq!(get("10.0.0.1:9901", names, "Admin.Internal"), Ok(()));
        assert_eq!(get("10.0.0.1:9901", names, "admin.internal:9901"), Ok(()));
        assert_eq!(
            get("10.0.0.1:9901", names, "admin.internal:8080"),
            Err("misdirected_request")
        );
        assert_eq!(
            verdict("127.0.0.1:9901", &[], Method::GET, &[]),
            Err("missing_host")
        );
        assert_eq!(
            verdict(
                "127.0.0.1:9901",
                &[],
                Method::GET,
                &[("host", "127.0.0.1:9901"), ("host", "127.0.0.1:9901")]
            ),
            Err("bad_host")
        );
        for bad in [
            "http://a", "a/b", "u@a", "a b", "::1", "[::1", "a:", "a:99999", "[nope]:1",
        ] {
            assert_eq!(parse_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn changes_need_the_own_origin() {
        let post = |pairs: &[(&str, &str)]| {
            let mut all = vec![("host", "127.0.0.1:9901")];
            all.extend_from_slice(pairs);
            verdict("127.0.0.1:9901", &["admin.internal"], Method::POST, &all)
        };
        assert_eq!(post(&[]), Ok(()));
        assert_eq!(post(&[("content-type", "application/json")]), Ok(()));
        assert_eq!(post(&[("origin", "http://127.0.0.1:9901")]), Ok(()));
        // Another name or address of the admin API is another origin.
        assert_eq!(
            post(&[("origin", "https://admin.internal")]),
            Err("cross_site_request")
        );
        assert_eq!(
            post(&[("origin", "http://localhost:9901")]),
            Err("cross_site_request")
        );
        let named = verdict(
            "127.0.0.1:9901",
            &["admin.internal"],
            Method::POST,
            &[
                ("host", "admin.internal"),
                ("origin", "https://admin.internal"),
            ],
        );
        assert_eq!(named, Ok(()));
        // Bound to every address: a page on any IP with the admin's port is still
        // another origin than the one the request names.
        let unspecified = verdict(
            "0.0.0.0:9901",
            &[],
            Method::POST,
            &[
                ("host", "127.0.0.1:9901"),
                ("origin", "http://1.2.3.4:9901"),
            ],
        );
        assert_eq!(unspecified, Err("cross_site_request"));
        assert_eq!(
            post(&[("origin", "http://evil.example")]),
            Err("cross_site_request")
        );
        assert_eq!(post(&[("origin", "null")]), Err("cross_site_request"));
        assert_eq!(
            post(&[("origin", "http://127.0.0.1:9902")]),
            Err("cross_site_request")
        );
        assert_eq!(
            post(&[("sec-fetch-site", "cross-site")]),
            Err("cross_site_request")
        );
        assert_eq!(
            post(&[("sec-fetch-site", "same-site")]),
            Err("cross_site_request")
        );
        assert_eq!(
            post(&[("content-type", "text/plain;charset=UTF-8")]),
            Err("cross_site_request")
        );
        assert_eq!(
            post(&[("content-type", "application/x-www-form-urlencoded")]),
            Err("cross_site_request")
        );
        assert_eq!(
            post(&[
                ("content-type", "text/plain"),
                ("origin", "http://127.0.0.1:9901")
            ]),
            Ok(()),
            "a same-origin page may send any type"
        );
        let get = verdict(
            "127.0.0.1:9901",
            &[],
            Method::GET,
            &[
                ("host", "127.0.0.1:9901"),
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        );
        assert_eq!(
            get,
            Ok(()),
            "reads are kept from other sites by the browser's same-origin policy"
        );
    }
}
