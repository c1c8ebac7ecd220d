//! Where replayed requests go, and how each exchange is timed: a base URL (`--to`), or
//! the endpoints of a config's pool, round robin, reached as the proxy reaches them (its
//! TLS settings, its protocol) and sent what the proxy sends them (its credential, its
//! model names). One connection per request, so no request waits on
//! another's connection and a slow reply slows only itself.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

use super::report::Measurement;
use super::request::ReplayRequest;
use crate::inspect::flow::millis;
use crate::llm::{ReplyKind, SseEvent, SseSplitter, UsageScanner, answer_of_json, answer_piece};
use crate::pipeline::HeaderEdits;
use crate::pipeline::forwarding::{add_pool_credential, is_client_credential};
use crate::pipeline::model_map::mapped_body;
use crate::upstream::{
    Endpoint, EndpointState, Limits, Pool, Protocol, UpstreamClient, UpstreamUrl, client_config,
};

/// How long a connection (and its TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of a reply that is not a stream kept to read its answer from; a larger one is
/// timed and counted, its answer not read.
const MAX_ANSWER_BODY: usize = 16 << 20;

pub struct Destination {
    client: Client,
    endpoints: Vec<Arc<Endpoint>>,
    /// Put before each request's path (`--to http://host/prefix`).
    prefix: String,
    /// The client's `Host` goes on, as through a pool with `rewrite_host = false`.
    keeps_host: bool,
    next: AtomicUsize,
    /// What the summary calls it.
    pub name: String,
}

enum Client {
    Own(UpstreamClient),
    Pool(Arc<Pool>),
}

/// What came of sending one request.
pub struct Exchange {
    pub endpoint: String,
    /// Once a response head came.
    pub measurement: Option<Measurement>,
    pub error: Option<String>,
}

impl Destination {
    /// A base URL: `http://host:port` or `https://...`, with a path prefix if need be.
    pub fn url(text: &str) -> Result<Destination, String> {
        let after_scheme = text.find("://").map_or(0, |at| at + 3);
        let (origin, prefix) = match text[after_scheme..].find('/') {
            Some(slash) => text.split_at(after_scheme + slash),
            None => (text, ""),
        };
        let target = UpstreamUrl::parse(origin).map_err(|error| format!("--to: {error}"))?;
        let prefix = prefix.trim_end_matches('/');
        if prefix.contains(['?', '#'])
            || (!prefix.is_empty() && prefix.parse::<PathAndQuery>().is_err())
        {
            return Err(format!(
                "--to {text:?}: a base URL has a path at most, no query"
            ));
        }
        let tls = if target.is_https() {
            Some(client_config(None, Protocol::Http1).map_err(|e| format!("--to: {e}"))?)
        } else {
            None
        };
        let client = UpstreamClient::new(Protocol::Http1, tls, None, &Limits::default());
        let endpoint = Endpoint::new(origin, target, 1, Arc::new(EndpointState::default()));
        Ok(Destination {
            client: Client::Own(client),
            endpoints: vec![Arc::new(endpoint)],
            prefix: prefix.to_owned(),
            keeps_host: false,
            next: AtomicUsize::new(0),
            name: text.to_owned(),
        })
    }

    /// The endpoints of pool `name` in the config at `config`, read and checked as
    /// `junction check` does.
    pub fn pool(config: &Path, name: &str) -> Result<Destination, String> {
        let plan = crate::config::checking(|context| crate::config::load_file(config, context))
            .map_err(|errors| format!("{}: invalid config:\n{errors}", config.display()))?;
        let Some(pool) = plan.pools.iter().find(|pool| &*pool.name == name).cloned() else {
            let names: Vec<&str> = plan.pools.iter().map(|pool| &*pool.name).collect();
            return Err(format!(
                "{}: no pool is named {name:?} (its pools: {})",
                config.display(),
                names.join(", ")
            ));
        };
        if pool.endpoints.is_empty() {
            return Err(format!(
                "{}: pool {name:?} has no endpoints",
                config.display()
            ));
        }
        let urls: Vec<&str> = pool.endpoints.iter().map(|e| &*e.url).collect();
        Ok(Destination {
            endpoints: pool.endpoints.clone(),
            prefix: String::new(),
            keeps_host: !pool.rewrite_host,
            next: AtomicUsize::new(0),
            name: format!("pool {name} ({})", urls.join(", ")),
            client: Client::Pool(pool),
        })
    }

    /// Shapes `request` as the proxy shapes a request on its way to this pool, with the
    /// same functions: the pool's credential in place of every client credential (a
    /// captured key, or one given with `--header`, never reaches a provider that does not
    /// own it), then its `model_map` on the body. A `--to` URL gets the request as it is.
    pub fn prepare(&self, request: &mut ReplayRequest) {
        let Client::Pool(pool) = &self.client else {
            return;
        };
        if let Some(credential) = &pool.credential {
            let mut edits = HeaderEdits::new();
            add_pool_credential(&mut edits, credential);
            edits.apply(&mut request.headers);
            // The pool's own key stands in for these: nothing is missing.
            request
                .credentials_left_out
                .retain(|name| !is_client_credential(name));
        }
        if let Some(mapped) = mapped_body(pool, &request.body) {
            request
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(mapped.len()));
            request.body = mapped;
        }
    }

    fn client(&self) -> &UpstreamClient {
        match &self.client {
            Client::Own(client) => client,
            Client::Pool(pool) => &pool.client,
        }
    }

    /// Sends `request` to the next endpoint and reads the whole reply, within `timeout`.
    pub async fn send(&self, request: ReplayRequest, timeout: Duration) -> Exchange {
        let at = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        let endpoint = &self.endpoints[at];
        // Filled as the exchange goes, so that a timeout still tells what came.
        let mut measurement = None;
        let error =
            match tokio::time::timeout(timeout, self.exchange(endpoint, request, &mut measurement))
                .await
            {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error),
                Err(_) => Some(format!("no whole answer within {}s", timeout.as_secs_f64())),
            };
        Exchange {
            endpoint: endpoint.url.to_string(),
            measurement,
            error,
        }
    }

    async fn exchange(
        &self,
        endpoint: &Endpoint,
        request: ReplayRequest,
        measurement: &mut Option<Measurement>,
    ) -> Result<(), String> {
        let client = self.client();
        let request = self.addressed(endpoint, request, client.protocol)?;
        let stream = client
            .connect_stream(endpoint, CONNECT_TIMEOUT)
            .await
            .map_err(|error| error.to_string())?;
        let io = TokioIo::new(stream);
        let handshake =
            |error: hyper::Error| format!("HTTP handshake with {}: {error}", endpoint.url);
        let exchange =
            |error: hyper::Error| format!("{} failed the request: {error}", endpoint.url);
        // The connection is driven by its own task, stopped once the reply is read.
        let (sent_at, response, _driver) = match client.protocol {
            Protocol::Http1 => {
                let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(handshake)?;
                let driver = Driver(tokio::spawn(async move {
                    let _ = connection.await;
                }));
                let sent_at = Instant::now();
                let response = sender.send_request(request).await.map_err(exchange)?;
                (sent_at, response, driver)
            }
            Protocol::H2 => {
                let (mut sender, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(handshake)?;
                let driver = Driver(tokio::spawn(async move {
                    let _ = connection.await;
                }));
                let sent_at = Instant::now();
                let response = sender.send_request(request).await.map_err(exchange)?;
                (sent_at, response, driver)
            }
        };
        let measured = measurement.insert(Measurement {
            status: Some(response.status().as_u16()),
            ..Measurement::default()
        });
        read_reply(response, sent_at, measured)
            .await
            .map_err(|error| format!("{} broke off the answer: {error}", endpoint.url))
    }

    /// The request as this endpoint is sent it: target, `Host` or `:authority`, version.
    fn addressed(
        &self,
        endpoint: &Endpoint,
        request: ReplayRequest,
        protocol: Protocol,
    ) -> Result<Request<Full<Bytes>>, String> {
        let path = format!("{}{}", self.prefix, request.path_and_query);
        let path: PathAndQuery = path
            .parse()
            .map_err(|_| format!("invalid target {path:?}"))?;
        let kept_host = request
            .host
            .as_deref()
            .filter(|_| self.keeps_host)
            .and_then(|host| host.parse::<Authority>().ok());
        let mut headers = request.headers;
        let (uri, version) = match protocol {
            Protocol::Http1 => {
                if !headers.contains_key(header::HOST) {
                    let host = match &kept_host {
                        Some(host) => HeaderValue::from_str(host.as_str())
                            .unwrap_or_else(|_| endpoint.host_header.clone()),
                        None => endpoint.host_header.clone(),
                    };
                    headers.insert(header::HOST, host);
                }
                (Uri::from(path), Version::HTTP_11)
            }
            Protocol::H2 => {
                // HTTP/2 carries the host in :authority; a Host header would contradict it.
                let given = headers
                    .remove(header::HOST)
                    .and_then(|host| host.to_str().ok()?.parse::<Authority>().ok());
                let mut parts = http::uri::Parts::default();
                parts.scheme = Some(endpoint.target.scheme.clone());
                parts.authority = Some(
                    given
                        .or(kept_host)
                        .unwrap_or_else(|| endpoint.target.authority.clone()),
                );
                parts.path_and_query = Some(path);
                let uri = Uri::from_parts(parts).map_err(|e| format!("invalid target: {e}"))?;
                (uri, Version::HTTP_2)
            }
        };
        let mut built = Request::new(Full::new(request.body));
        *built.method_mut() = request.method;
        *built.uri_mut() = uri;
        *built.version_mut() = version;
        *built.headers_mut() = headers;
        Ok(built)
    }
}

/// Stops a connection's task when the exchange is over (or abandoned on a timeout).
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the reply to its end: when its first token came, its usage, its answer.
async fn read_reply(
    response: Response<Incoming>,
    sent_at: Instant,
    measured: &mut Measurement,
) -> Result<(), hyper::Error> {
    let kind = ReplyKind::of(response.headers());
    let coding = response.headers().get(http::header::CONTENT_ENCODING);
    let mut scanner = UsageScanner::for_answer(kind, coding.map(|v| v.as_bytes()));
    let mut answer = AnswerReader::for_reply(kind);
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if let Some(scanner) = scanner.as_mut() {
                scanner.feed(&data);
            }
            answer.feed(&data);
        }
    }
    let since_sent = |at: Instant| millis(at.saturating_duration_since(sent_at));
    measured.latency_ms = Some(since_sent(Instant::now()));
    if let Some(mut scanner) = scanner {
        scanner.finish();
        measured.ttft_ms = scanner.first_token_at().map(since_sent);
        measured.completion_tokens = scanner.usage().completion;
    }
    measured.answer_chars = answer.finish().map(|text| text.chars().count());
    Ok(())
}

/// The generated text of a reply: pieced together from a stream's events as they come,
/// or read from the whole body at its end.
enum AnswerReader {
    Stream {
        splitter: SseSplitter,
        text: Option<String>,
    },
    Whole {
        body: Vec<u8>,
        too_large: bool,
    },
}

impl AnswerReader {
    fn for_reply(kind: ReplyKind) -> AnswerReader {
        match kind {
            ReplyKind::EventStream => AnswerReader::Stream {
                splitter: SseSplitter::default(),
                text: None,
            },
            ReplyKind::Json | ReplyKind::Other => AnswerReader::Whole {
                body: Vec::new(),
                too_large: false,
            },
        }
    }

    fn feed(&mut self, data: &[u8]) {
        match self {
            AnswerReader::Stream { splitter, text } => {
                splitter.feed(data, &mut |event: &SseEvent| {
                    if let Some(piece) = answer_piece(event) {
                        text.get_or_insert_with(String::new).push_str(&piece);
                    }
                });
            }
            AnswerReader::Whole { body, too_large } => {
                if body.len() + data.len() > MAX_ANSWER_BODY {
                    *too_large = true;
                    *body = Vec::new();
                } else if !*too_large {
                    body.extend_from_slice(data);
                }
            }
        }
    }

    fn finish(self) -> Option<String> {
        match self {
            AnswerReader::Stream { text, .. } => text,
            AnswerReader::Whole { body, too_large } => {
                (!too_large).then(|| answer_of_json(&body)).flatten()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_may_carry_a_path_prefix_but_no_query() {
        let plain = Destination::url("http://127.0.0.1:9001").unwrap();
        assert_eq!(plain.prefix, "");
        assert_eq!(&*plain.endpoints[0].url, "http://127.0.0.1:9001");
        let prefixed = Destination::url("http://127.0.0.1:9001/gateway/").unwrap();
        assert_eq!(prefixed.prefix, "/gateway");
        assert_eq!(&*prefixed.endpoints[0].url, "http://127.0.0.1:9001");
        for (bad, reason) in [
            ("127.0.0.1:9001", "needs a scheme"),
            ("ftp://127.0.0.1", "unsupported scheme"),
            ("http://127.0.0.1:9001/a?b=1", "no query"),
        ] {
            let Err(error) = Destination::url(bad) else {
                panic!("{bad} accepted");
            };
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }

    #[test]
    fn requests_are_addressed_to_the_endpoint() {
        let destination = Destination::url("http://127.0.0.1:9001/base").unwrap();
        let request = ReplayRequest {
            method: http::Method::POST,
            path_and_query: PathAndQuery::from_static("/v1/chat/completions?x=1"),
            host: Some("gateway.example".into()),
            headers: http::HeaderMap::new(),
            body: Bytes::from_static(b"{}"),
            credentials_left_out: Vec::new(),
        };
        let endpoint = destination.endpoints[0].clone();
        let built = destination
            .addressed(&endpoint, request, Protocol::Http1)
            .unwrap();
        assert_eq!(built.uri(), "/base/v1/chat/completions?x=1");
        assert_eq!(built.headers()[header::HOST], "127.0.0.1:9001");
        assert_eq!(built.method(), http::Method::POST);
    }
}
