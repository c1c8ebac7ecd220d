//! The egress (forward) proxy for data collection: clients send absolute-form requests
//! (`GET http://site/path`) or open `CONNECT` tunnels (HTTPS stays end to end), and
//! Junction checks the destination before opening anything. Errors Junction makes carry
//! an RFC 9209 `Proxy-Status` header, so a scraper can tell them from a site's own.
//!
//! Built so far: direct exits, destination allow/deny with special ranges refused by
//! default. Not yet: upstream proxy exits (HTTP, SOCKS5), rotation, regions, sessions,
//! politeness, ban detection, client auth (issue #7).

mod destinations;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub use destinations::{Destinations, Refusal, Rule, SPECIAL_RANGES};

use crate::pipeline::forwarding::strip_hop_by_hop;
use crate::pipeline::{ProxyBody, UpstreamStream, json_error};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::upstream::{Endpoint, SendError, UpstreamBody, UpstreamClient, UpstreamUrl};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A compiled `[[egress]]` listener.
pub struct EgressPlan {
    pub name: String,
    pub destinations: Destinations,
    /// Connections to sites, reused across requests (the gateway's own client).
    pub client: UpstreamClient,
    sites: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
}

/// Sites whose idle connections are kept, at most; beyond, the table starts afresh.
const MAX_SITES: usize = 4096;

impl EgressPlan {
    pub fn new(name: String, destinations: Destinations) -> Self {
        let client = UpstreamClient::new(
            crate::config::spec::ProtocolSpec::Http1,
            None,
            None,
            &Default::default(),
        );
        EgressPlan {
            name,
            destinations,
            client,
            sites: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoint (with its idle connections) for a resolved site address.
    fn site(&self, address: SocketAddr) -> Arc<Endpoint> {
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(site) = sites.get(&address) {
            return site.clone();
        }
        if sites.len() >= MAX_SITES {
            sites.clear();
        }
        let url = format!("http://{address}");
        let target = UpstreamUrl::parse(&url).expect("a socket address makes a valid URL");
        let site = Arc::new(Endpoint::new(&url, target, 1, Arc::default()));
        sites.insert(address, site.clone());
        site
    }
}

/// An error Junction makes itself, with its RFC 9209 error type.
struct ProxyStatus {
    status: StatusCode,
    error: &'static str,
    details: String,
}

impl ProxyStatus {
    fn new(status: StatusCode, error: &'static str, details: impl Into<String>) -> Self {
        ProxyStatus {
            status,
            error,
            details: details.into(),
        }
    }

    fn into_response(self) -> Response<ProxyBody> {
        let mut response = json_error(self.status, self.error, &self.details);
        let details = self.details.replace(['"', '\\'], "'");
        let value = format!("junction; error={}; details=\"{details}\"", self.error);
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert("proxy-status", value);
        }
        response
    }
}

/// Serves one request on an egress listener.
pub async fn handle(request: Request<Incoming>, plan: &EgressPlan) -> Response<ProxyBody> {
    let result = if request.method() == Method::CONNECT {
        tunnel(request, plan).await
    } else {
        forward(request, plan).await
    };
    result.unwrap_or_else(ProxyStatus::into_response)
}

/// Host and port of the destination: the CONNECT authority, or an absolute `http://` URI.
fn destination(uri: &Uri, connect: bool) -> Result<(String, u16), ProxyStatus> {
    let bad = |why: &str| {
        ProxyStatus::new(
            StatusCode::BAD_REQUEST,
            "http_request_error",
            why.to_string(),
        )
    };
    if !connect && uri.scheme_str() != Some("http") {
        return Err(bad(
            "an egress proxy takes absolute http:// URIs, or CONNECT for https",
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| bad("the request names no destination host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = match authority.port_u16() {
        Some(port) => port,
        None if connect => return Err(bad("CONNECT needs host:port")),
        None => 80,
    };
    Ok((host, port))
}

/// Checks the host, resolves it, checks every address; the first address to use.
async fn resolve(plan: &EgressPlan, host: &str, port: u16) -> Result<SocketAddr, ProxyStatus> {
    let refused = |refusal: Refusal| {
        let details = match refusal {
            Refusal::Denied(rule) => format!("{host} is denied by {rule}"),
            Refusal::NotAllowed => format!("{host} is not in this egress listener's allow list"),
            Refusal::SpecialRange(ip) => format!(
                "{host} resolves to {ip}, a loopback, private or link-local address (allow it explicitly to reach it)"
            ),
        };
        ProxyStatus::new(StatusCode::FORBIDDEN, "destination_ip_prohibited", details)
    };
    plan.destinations.check_host(host).map_err(refused)?;
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| {
                ProxyStatus::new(
                    StatusCode::BAD_GATEWAY,
                    "dns_error",
                    format!("cannot resolve {host}: {e}"),
                )
            })?
            .collect(),
    };
    // Every address must pass: a name must not smuggle a private address in beside a public one.
    for address in &addresses {
        plan.destinations
            .check_ip(host, address.ip())
            .map_err(refused)?;
    }
    addresses.into_iter().next().ok_or_else(|| {
        ProxyStatus::new(
            StatusCode::BAD_GATEWAY,
            "destination_not_found",
            format!("{host} has no address"),
        )
    })
}

async fn connect(address: SocketAddr, host: &str) -> Result<TcpStream, ProxyStatus> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(ProxyStatus::new(
            StatusCode::BAD_GATEWAY,
            "connection_refused",
            format!("{host} ({address}): {e}"),
        )),
        Err(_) => Err(ProxyStatus::new(
            StatusCode::GATEWAY_TIMEOUT,
            "connection_timeout",
            format!("{host} ({address}) did not accept within {CONNECT_TIMEOUT:?}"),
        )),
    }
}

/// CONNECT: checks, connects, answers 200, then joins the two sides byte for byte.
async fn tunnel(
    mut request: Request<Incoming>,
    plan: &EgressPlan,
) -> Result<Response<ProxyBody>, ProxyStatus> {
    let (host, port) = destination(request.uri(), true)?;
    let address = resolve(plan, &host, port).await?;
    let mut site = connect(address, &host).await?;
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Ok(client) = upgrade.await {
            let mut client = TokioIo::new(client);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut site).await;
        }
    });
    Ok(Response::new(ProxyBody::Empty))
}

/// Absolute-form HTTP: checks, connects, sends the request in origin form, streams back.
async fn forward(
    request: Request<Incoming>,
    plan: &EgressPlan,
) -> Result<Response<ProxyBody>, ProxyStatus> {
    let (host, port) = destination(request.uri(), false)?;
    let address = resolve(plan, &host, port).await?;
    let (mut head, body) = request.into_parts();
    strip_hop_by_hop(&mut head.headers, false);
    head.headers.remove(header::PROXY_AUTHORIZATION);
    if !head.headers.contains_key(header::HOST) {
        let authority = head
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| host.clone());
        if let Ok(value) = HeaderValue::from_str(&authority) {
            head.headers.insert(header::HOST, value);
        }
    }
    head.uri = head
        .uri
        .path_and_query()
        .map(|pq| Uri::from(pq.clone()))
        .unwrap_or_else(|| Uri::from_static("/"));
    head.version = http::Version::HTTP_11;
    let site = plan.site(address);
    let sent = plan
        .client
        .send(
            &site,
            Request::from_parts(head, ProxyBody::Incoming(body)),
            CONNECT_TIMEOUT,
        )
        .await
        .map_err(|e| match e {
            SendError::Connect { .. } => ProxyStatus::new(
                StatusCode::BAD_GATEWAY,
                "connection_refused",
                format!("{host}: {e}"),
            ),
            SendError::ConnectTimeout { .. } => ProxyStatus::new(
                StatusCode::GATEWAY_TIMEOUT,
                "connection_timeout",
                format!("{host}: {e}"),
            ),
            _ => ProxyStatus::new(
                StatusCode::BAD_GATEWAY,
                "http_response_incomplete",
                format!("{host}: {e}"),
            ),
        })?;
    let (mut head, body) = UpstreamBody::new(sent);
    strip_hop_by_hop(&mut head.headers, false);
    let stream = UpstreamStream::new(body, None, false, None, None);
    Ok(Response::from_parts(
        head,
        ProxyBody::Upstream(Box::new(stream)),
    ))
}
