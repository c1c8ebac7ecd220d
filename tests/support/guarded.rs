//! The test bed of the smuggling and confusion suites: a proxy whose guarded routes (a
//! host and a path prefix) answer 403 without reaching the upstream, and whose public
//! routes forward to a recording upstream, on each of the three ways a request travels.
//! Any request the upstream sees for the guarded host or path is a bypass.

use std::net::SocketAddr;

use super::TestProxy;
use super::proxy::RunningProxy;
use super::raw_http::{RawClient, Seen, Step, Upstream};
pub use super::travel::Travel;
use super::travel::listeners;

/// The host of the public routes.
pub const PUBLIC_HOST: &str = "public.example";
/// The guarded host: its route answers 403.
pub const ADMIN_HOST: &str = "admin.example";
/// The guarded path prefix: its route answers 403.
pub const ADMIN_PREFIX: &str = "/admin";
/// The `x-junction-tag` value the `/tagged` route adds.
pub const TAG: &str = "tagged-route";
/// The header (and value) the `/tagged` route sets with `request_headers.set`.
pub const SET_NAME: &str = "x-route-set";
pub const SET_VALUE: &str = "from-junction";

/// The bed's config. `listener_extra` and `route_extra` are added to the listener and
/// to every forwarding route.
pub fn config(
    travel: Travel,
    upstream_url: &str,
    listener_extra: &str,
    route_extra: &str,
) -> String {
    let listeners = listeners(travel, listener_extra);
    let retries = travel.route_keys();
    format!(
        r#"
{listeners}

[[pools]]
name = "p"
endpoints = [{{ url = "{upstream_url}" }}]

[[routes]]
name = "admin-host"
match = {{ host = "{ADMIN_HOST}" }}
pool = "p"
deny = ["127.0.0.0/8"]

[[routes]]
name = "admin-path"
match = {{ path_prefix = "{ADMIN_PREFIX}" }}
pool = "p"
deny = ["127.0.0.0/8"]

[[routes]]
name = "tagged"
match = {{ path_prefix = "/tagged" }}
pool = "p"
rules = [{{ name = "{TAG}", header = "host", matches = ".", action = "tag" }}]
request_headers = {{ set = {{ "{SET_NAME}" = "{SET_VALUE}" }} }}
timeouts = {{ response_headers = "3s" }}
{retries}
{route_extra}

[[routes]]
name = "public"
match = {{ path_prefix = "/" }}
pool = "p"
timeouts = {{ response_headers = "3s" }}
{retries}
{route_extra}
"#
    )
}

/// A running bed: the recording upstream and the proxy in front of it.
pub struct Bed {
    pub travel: Travel,
    pub upstream: Upstream,
    pub proxy: RunningProxy,
}

impl Bed {
    pub async fn start(travel: Travel) -> Bed {
        Bed::start_with(travel, "", "").await
    }

    pub async fn start_with(travel: Travel, listener_extra: &str, route_extra: &str) -> Bed {
        Bed::start_scripted(travel, listener_extra, route_extra, answer).await
    }

    /// A bed whose upstream answers with `script` instead of `answer`.
    pub async fn start_scripted(
        travel: Travel,
        listener_extra: &str,
        route_extra: &str,
        script: impl Fn(&Seen) -> Vec<Step> + Send + Sync + 'static,
    ) -> Bed {
        let upstream = Upstream::start(script).await;
        let toml = config(travel, &upstream.url(), listener_extra, route_extra);
        let proxy = TestProxy::from_toml(&toml).start().await;
        Bed {
            travel,
            upstream,
            proxy,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr("public")
    }

    pub async fn client(&self) -> RawClient {
        RawClient::connect_addr(self.addr()).await
    }
}

/// The body of the upstream's answer to a request: it names the request, so the client
/// side knows which of its requests reached the upstream, and as what.
pub fn answer_body(method: &str, target: &str) -> String {
    format!("upstream saw {method} {target}")
}

/// 200 naming the request, with `Connection: close`: the proxy closes each upstream
/// connection after one response, so `Upstream::settle` knows when everything the
/// proxy sent on it (a smuggled request too) has been parsed.
pub fn answer(seen: &Seen) -> Vec<Step> {
    let body = answer_body(&seen.method, &seen.path);
    let mut bytes = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if seen.method != "HEAD" {
        bytes.extend_from_slice(body.as_bytes());
    }
    vec![Step::Write(bytes)]
}

/// The path a lenient backend (a model server that decodes every escape and resolves
/// dot segments, as uvicorn and Starlette do) takes a request target for.
pub fn lenient_path(target: &str) -> String {
    let path = target.split('?').next().unwrap_or_default();
    let path = match path.find("://") {
        Some(scheme) => {
            let rest = &path[scheme + 3..];
            rest.find('/').map_or("/", |at| &rest[at..])
        }
        None => path,
    };
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(if byte == b'\\' { b'/' } else { byte });
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    format!("/{}", segments.join("/"))
}

/// The host a lenient backend takes a `Host` value for: lowercase, no port, no final dot.
pub fn lenient_host(value: &str) -> String {
    let host = value.trim().to_ascii_lowercase();
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
        _ => host,
    };
    host.trim_end_matches('.').to_string()
}

/// Panics unless a request the upstream saw is safe to have reached it: one `Host`,
/// neither it nor the path (as a lenient backend reads them) guarded, no offer to
/// upgrade to h2c (which an endpoint may accept, and then serve any host and path).
pub fn assert_not_guarded(seen: &Seen, vector: &str) {
    let head = &seen.head;
    let hosts = head.all("host");
    assert!(
        hosts.len() <= 1,
        "{vector}: the upstream saw {} Host lines:\n{}",
        hosts.len(),
        head.raw
    );
    if let Some(host) = hosts.first() {
        assert_ne!(
            lenient_host(host),
            ADMIN_HOST,
            "{vector}: a request for the guarded host reached the upstream:\n{}",
            head.raw
        );
    }
    let path = lenient_path(&seen.path);
    assert!(
        !(path == ADMIN_PREFIX || path.starts_with(&format!("{ADMIN_PREFIX}/"))),
        "{vector}: a request for the guarded path ({path}) reached the upstream:\n{}",
        head.raw
    );
    assert!(
        !head.tokens("upgrade").contains(&"h2c".to_string()),
        "{vector}: an h2c upgrade reached the upstream:\n{}",
        head.raw
    );
}
