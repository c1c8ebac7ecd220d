//! `TestUpstream`: a real HTTP server on 127.0.0.1:0 that tags every reply with its
//! name (`x-upstream`) and counts requests; by default it echoes what it received
//! as JSON, or runs a custom async handler.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub type UpstreamReply = Response<BoxBody<Bytes, Infallible>>;
type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = UpstreamReply> + Send>> + Send + Sync,
>;

pub struct TestUpstream {
    name: String,
    delay: Duration,
    handler: Option<Handler>,
    http2_only: bool,
}

pub struct RunningUpstream {
    pub name: String,
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    /// The tasks serving accepted connections.
    served: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Drop for RunningUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RunningUpstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Dies as a killed process does: the port refuses from now on, and every open
    /// connection is closed, requests in progress included.
    pub fn kill(&self) {
        self.task.abort();
        for connection in self.served.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

/// Builds a reply with a body.
pub fn reply(status: u16, body: impl Into<Bytes>) -> UpstreamReply {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
    response
}

impl TestUpstream {
    pub fn named(name: &str) -> Self {
        TestUpstream {
            name: name.into(),
            delay: Duration::ZERO,
            handler: None,
            http2_only: false,
        }
    }

    /// Waits this long before answering (the default echo handler only).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Serves HTTP/2 with prior knowledge (h2c) only.
    pub fn http2_only(mut self) -> Self {
        self.http2_only = true;
        self
    }

    pub fn handler<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = UpstreamReply> + Send + 'static,
    {
        self.handler = Some(Arc::new(move |request| Box::pin(handler(request))));
        self
    }

    pub async fn start(self) -> RunningUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let name = self.name.clone();
        let delay = self.delay;
        let handler = self.handler.clone();
        let counter = requests.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let http2_only = self.http2_only;
        let served: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let serving = served.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (name, handler, counter) = (name.clone(), handler.clone(), counter.clone());
                let connection = tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (name, handler, counter) =
                            (name.clone(), handler.clone(), counter.clone());
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let mut response = match handler {
                                Some(handler) => handler(request).await,
                                None => echo(request, delay).await,
                            };
                            response
                                .headers_mut()
                                .insert("x-upstream", name.parse().expect("name"));
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let mut builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    if http2_only {
                        builder = builder.http2_only();
                    }
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
                serving.lock().unwrap().push(connection.abort_handle());
            }
        });
        RunningUpstream {
            name: self.name,
            addr,
            requests,
            connections,
            task,
            served,
        }
    }
}

/// Replies with what arrived: method, path and query, version, headers, body.
async fn echo(request: Request<Incoming>, delay: Duration) -> UpstreamReply {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (head, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = head
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                serde_json::Value::String(v.to_str().unwrap_or("<binary>").to_string()),
            )
        })
        .collect();
    let echo = serde_json::json!({
        "method": head.method.as_str(),
        "uri": head.uri.to_string(),
        "version": format!("{:?}", head.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "body_len": body.len(),
    });
    let mut response = reply(200, echo.to_string());
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("ct"));
    response
}
