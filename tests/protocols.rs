//! Protocols on both sides of the proxy: HTTP/2 clients in front of HTTP/1.1
//! upstreams, HTTP/2 (h2c) upstreams sharing one connection, TLS termination with
//! ALPN, and https upstreams verified against a configured CA or the system roots.

use crate::support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{TestProxy, TestUpstream, client, listeners_toml};
use tokio::net::TcpListener;
use tokio::sync::Barrier;

/// How long any single step may take before the test calls it a hang.
const STEP: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

/// A catch-all route to one pool; `pool_extra` adds lines to the pool table.
fn config(listeners: &str, url: &str, pool_extra: &str) -> String {
    format!(
        r#"{listeners}
[[pools]]
name = "p"
endpoints = [{{ url = "{url}" }}]
{pool_extra}

[[routes]]
name = "all"
pool = "p"
"#
    )
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
struct TestCert {
    _dir: tempfile::TempDir,
    cert_pem: String,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl TestCert {
    fn generate() -> TestCert {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("generate certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        let cert_pem = certified.cert.pem();
        std::fs::write(&cert_path, &cert_pem).unwrap();
        std::fs::write(&key_path, certified.key_pair.serialize_pem()).unwrap();
        TestCert {
            _dir: dir,
            cert_pem,
            cert_path,
            key_path,
        }
    }

    fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = vec![CertificateDer::from_pem_file(&self.cert_path).unwrap()];
        let key = PrivateKeyDer::from_pem_file(&self.key_path).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// Answers every request with JSON: the HTTP version it arrived as and its Host.
async fn version_echo(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(String::from);
    let body = serde_json::json!({
        "version": format!("{:?}", request.version()),
        "host": host,
        "authority": request.uri().authority().map(|a| a.to_string()),
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// An https upstream (rustls around hyper's auto server) answering with
/// [`version_echo`]; returns its address.
async fn https_upstream(cert: &TestCert) -> SocketAddr {
    counting_https_upstream(cert).await.0
}

/// [`https_upstream`], with the count of TLS connections it accepted.
async fn counting_https_upstream(cert: &TestCert) -> (SocketAddr, Arc<AtomicUsize>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config(&[b"h2", b"http/1.1"]));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(version_echo))
                    .await;
            });
        }
    });
    (addr, accepted)
}

/// HTTP/1.1 upstream connections are kept alive and reused: sequential requests of
/// every shape (bodiless, with a body, a streamed body, an empty reply, a 404, a HEAD)
/// all travel on one connection, and every answer is complete.
#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let upstream = TestUpstream::named("h1").start().await;
    let proxy = TestProxy::from_toml(&config(listeners_toml(), &upstream.url(), ""))
        .start()
        .await;
    let client = client();
    for round in 0..5 {
        let get = within(
            "get",
            client.get(proxy.url(&format!("/get/{round}"))).send(),
        )
        .await
        .unwrap();
        assert_eq!(get.status(), 200);
        let echo: serde_json::Value = get.json().await.unwrap();
        assert_eq!(echo["uri"], format!("/get/{round}"));

        let post = within(
            "post",
            client
                .post(proxy.url("/post"))
                .body(vec![b'x'; 100_000])
                .send(),
        )
        .await
        .unwrap();
        let echo: serde_json::Value = post.json().await.unwrap();
        assert_eq!(echo["body_len"], 100_000);

        let chunks = futures_util::stream::iter(
            (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789"))),
        );
        let streamed = within(
            "streamed post",
            client
                .post(proxy.url("/streamed"))
                .body(reqwest::Body::wrap_stream(chunks))
                .send(),
        )
        .await
        .unwrap();
        let echo: serde_json::Value = streamed.json().await.unwrap();
        assert_eq!(echo["body_len"], 100);

        let head = within("head", client.head(proxy.url("/head")).send())
            .await
            .unwrap();
        assert_eq!(head.status(), 200);
    }
    assert_eq!(upstream.requests(), 20);
    assert_eq!(
        upstream.connections(),
        1,
        "one kept-alive connection for 20 sequential requests"
    );
}

#[tokio::test]
async fn http2_client_reaches_an_http1_upstream() {
    let upstream = TestUpstream::named("h1").start().await;
    let proxy = TestProxy::from_toml(&config(listeners_toml(), &upstream.url(), ""))
        .start()
        .await;
    let h2_client = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();

    let response = within("response", h2_client.get(proxy.url("/v1/models")).send())
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.headers()["x-upstream"], "h1");
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["uri"], "/v1/models");
    // HTTP/2 carries the host as :authority; the HTTP/1.1 upstream needs a Host header.
    assert_eq!(
        echo["headers"]["host"],
        proxy.addr("public").to_string().as_str()
    );
    assert_eq!(echo["headers"]["via"], "2 junction");
}

#[tokio::test]
async fn h2_pool_speaks_http2_to_an_h2c_upstream() {
    let upstream = TestUpstream::named("h2").http2_only().start().await;
    let proxy = TestProxy::from_toml(&config(
        listeners_toml(),
        &upstream.url(),
        r#"protocol = "h2""#,
    ))
    .start()
    .await;

    // An HTTP/1.1 client in front; HTTP/2 behind.
    let response = within("response", client().get(proxy.url("/a?b=c")).send())
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_11);
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echo["version"], "HTTP/2.0");
    // The request target in absolute form, with the client's host as :authority.
    assert_eq!(
        echo["uri"],
        format!("http://{}/a?b=c", proxy.addr("public")).as_str()
    );
    assert!(
        echo["headers"].get("host").is_none(),
        "HTTP/2 requests carry :authority, not Host: {echo}"
    );
}

/// An h2c server that counts the TCP connections it accepted, and whose handler
/// holds every request until `together` requests are in progress at once.
async fn counting_h2c_upstream(together: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let barrier = Arc::new(Barrier::new(together));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let barrier = barrier.clone();
                    async move {
                        if request.uri().path() == "/together" {
                            barrier.wait().await;
                        }
                        version_echo(request).await
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn h2_pool_multiplexes_concurrent_requests_on_one_connection() {
    const CONCURRENT: usize = 20;
    let (upstream, connections) = counting_h2c_upstream(CONCURRENT).await;
    let proxy = TestProxy::from_toml(&config(
        listeners_toml(),
        &format!("http://{upstream}"),
        r#"protocol = "h2""#,
    ))
    .start()
    .await;

    // Every request waits at the upstream until all of them have arrived there, so
    // they can only complete if the proxy sends them concurrently.
    let client = client();
    let requests: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let request = client.get(proxy.url("/together")).send();
            tokio::spawn(request)
        })
        .collect();
    for request in requests {
        let response = within("concurrent response", request)
            .await
            .unwrap()
            .expect("request");
        assert_eq!(response.status(), 200);
        let echo: serde_json::Value = response.json().await.unwrap();
        assert_eq!(echo["version"], "HTTP/2.0");
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "concurrent requests to an h2 pool should share one connection"
    );

    // And later requests still use it.
    for _ in 0..3 {
        let response = within("later response", client.get(proxy.url("/later")).send())
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

fn tls_listeners(cert: &TestCert) -> String {
    format!(
        "{}tls = {{ cert = \"{}\", key = \"{}\" }}\n",
        listeners_toml(),
        path_str(&cert.cert_path),
        path_str(&cert.key_path)
    )
}

fn trusting_client(cert: &TestCert, proxy: SocketAddr) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert_pem.as_bytes()).unwrap())
        .resolve("localhost", proxy)
}

#[tokio::test]
async fn tls_termination_serves_http1_and_http2_by_alpn() {
    let cert = TestCert::generate();
    let upstream = TestUpstream::named("behind-tls").start().await;
    let proxy = TestProxy::from_toml(&config(&tls_listeners(&cert), &upstream.url(), ""))
        .start()
        .await;
    let addr = proxy.addr("public");

    let cases = [
        (
            "HTTP/1.1 by IP",
            trusting_client(&cert, addr).http1_only(),
            format!("https://{addr}/secure"),
            Version::HTTP_11,
        ),
        (
            "HTTP/2 by IP",
            trusting_client(&cert, addr),
            format!("https://{addr}/secure"),
            Version::HTTP_2,
        ),
        (
            "HTTP/2 by name",
            trusting_client(&cert, addr),
            format!("https://localhost:{}/secure", addr.port()),
            Version::HTTP_2,
        ),
    ];
    for (case, builder, url, version) in cases {
        let client = builder.build().unwrap();
        let response = within(case, client.get(&url).send())
            .await
            .unwrap_or_else(|e| panic!("{case}: {e:?}"));
        assert_eq!(response.status(), 200, "{case}");
        assert_eq!(response.version(), version, "{case}");
        let echo: serde_json::Value = response.json().await.unwrap();
        assert_eq!(echo["uri"], "/secure", "{case}");
        assert_eq!(echo["version"], "HTTP/1.1", "{case}");
        assert_eq!(echo["headers"]["x-forwarded-proto"], "https", "{case}");
    }

    // Plain HTTP on the TLS port is not served.
    let plain = client().get(format!("http://{addr}/secure")).send().await;
    assert!(plain.is_err(), "plain HTTP on a TLS listener: {plain:?}");
    // Nor is a client that does not trust the certificate.
    let untrusting = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let refused = untrusting
        .get(format!("https://{addr}/secure"))
        .send()
        .await;
    assert!(refused.is_err(), "untrusted certificate accepted");
    assert_eq!(upstream.requests(), 3);
}

#[tokio::test]
async fn https_upstream_is_verified_against_the_ca_file() {
    let cert = TestCert::generate();
    let ca_file = format!(r#"ca_file = "{}""#, path_str(&cert.cert_path));

    for (protocol, expected) in [("http1", "HTTP/1.1"), ("h2", "HTTP/2.0")] {
        let (upstream, accepted) = counting_https_upstream(&cert).await;
        let url = format!("https://{upstream}");
        let extra = format!("{ca_file}\nprotocol = \"{protocol}\"");
        let proxy = TestProxy::from_toml(&config(listeners_toml(), &url, &extra))
            .start()
            .await;
        for _ in 0..3 {
            let response = within(protocol, client().get(proxy.url("/over-tls")).send())
                .await
                .expect("request");
            assert_eq!(response.status(), 200, "{protocol}");
            let echo: serde_json::Value = response.json().await.unwrap();
            assert_eq!(echo["version"], expected, "{protocol}");
        }
        // One TLS connection, kept and reused.
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "{protocol}");
        // HTTP/1.1 over TLS to the endpoint is the fast engine's; HTTP/2 is hyper's.
        let metrics = within("metrics", proxy.metrics_text()).await;
        let handed_off = metrics.contains("junction_fast_path_handoffs_total{");
        assert_eq!(handed_off, protocol == "h2", "{protocol}");
    }
}

#[tokio::test]
async fn https_upstream_with_an_unknown_ca_fails_with_502() {
    let cert = TestCert::generate();
    let upstream = https_upstream(&cert).await;
    // No ca_file: the system roots, which do not know this self-signed certificate.
    let proxy = TestProxy::from_toml(&config(
        listeners_toml(),
        &format!("https://{upstream}"),
        "",
    ))
    .start()
    .await;

    let response = within("response", client().get(proxy.url("/over-tls")).send())
        .await
        .expect("request");
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "application/json");
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "upstream_tls_failed");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&upstream.to_string()),
        "the message names the endpoint: {error}"
    );
}

/// Requests stay on the HTTP/1.1 fast path however many there are, `hash` balancing and
/// route policies (retries, address lists, rate limits, mirrors) included; a connection
/// whose request the fast path does not take (an `Expect: 100-continue` upload, a route that says
/// `fast_path = false`) is handed to the full pipeline once, counted by reason, and
/// answered.
#[tokio::test]
async fn plain_requests_stay_on_the_fast_path_and_the_rest_is_handed_off() {
    let upstream = TestUpstream::named("h1").start().await;
    let toml = format!(
        r#"{listeners}
[[pools]]
name = "p"
endpoints = [{{ url = "{url}" }}]

[[pools]]
name = "hashed"
balance = "hash"
hash_key = "header:x-user"
endpoints = [{{ url = "{url}" }}]

[[routes]]
name = "hashed"
match = {{ path_prefix = "/hashed" }}
pool = "hashed"

[[routes]]
name = "retried"
match = {{ path_prefix = "/retried" }}
pool = "p"
retries = {{ attempts = 2 }}
allow = ["127.0.0.0/8"]
rate_limit = {{ requests = 1000, per = "1s" }}

[[routes]]
name = "first-token"
match = {{ path_prefix = "/first-token" }}
pool = "p"
timeouts = {{ first_token = "5s" }}

[[routes]]
name = "mirrored"
match = {{ path_prefix = "/mirrored" }}
pool = "p"
mirror = {{ pool = "p", percent = 100 }}

[[routes]]
name = "full"
match = {{ path_prefix = "/full" }}
pool = "p"
fast_path = false

[[routes]]
name = "all"
pool = "p"
"#,
        listeners = listeners_toml(),
        url = upstream.url()
    );
    let proxy = TestProxy::from_toml(&toml).start().await;
    let handoffs = |reason: &'static str| {
        let url = proxy.admin_url("/metrics");
        async move {
            let text = within("metrics", client().get(url).send())
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let key = format!(
                "junction_fast_path_handoffs_total{{listener=\"public\",reason=\"{reason}\"}}"
            );
            support::parse_metrics(&text)
                .get(&key)
                .copied()
                .unwrap_or(0.0)
        }
    };

    let plain = client();
    for round in 0..20 {
        let reply = within("get", plain.get(proxy.url(&format!("/get/{round}"))).send())
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.headers()["x-upstream"], "h1");
        let hashed = within(
            "hashed",
            plain
                .get(proxy.url("/hashed"))
                .header("x-user", format!("user-{round}"))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(hashed.status(), 200);
    }
    for reason in ["request", "size", "route"] {
        assert_eq!(
            handoffs(reason).await,
            0.0,
            "no hand-off ({reason}) for plain GETs"
        );
    }

    // A long prompt's body (under the 1 MiB held whole) stays, and so does a larger
    // one, which streams to the endpoint.
    let large = client();
    for (size, handed_off) in [(600 * 1024, 0.0), (2 << 20, 0.0)] {
        let reply = within(
            "large body",
            large
                .post(proxy.url("/large"))
                .body(vec![b'x'; size])
                .send(),
        )
        .await
        .unwrap();
        let echo: serde_json::Value = reply.json().await.unwrap();
        assert_eq!(echo["body_len"], size);
        assert_eq!(handoffs("size").await, handed_off, "a body of {size} bytes");
    }

    let chunks = futures_util::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789"))),
    );
    let upload = within(
        "chunked upload",
        plain
            .post(proxy.url("/upload"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send(),
    )
    .await
    .unwrap();
    let echo: serde_json::Value = upload.json().await.unwrap();
    assert_eq!(echo["body_len"], 40);
    assert_eq!(
        handoffs("request").await,
        0.0,
        "a chunked upload is read here"
    );
    let expecting = within(
        "upload expecting 100-continue",
        plain
            .post(proxy.url("/upload"))
            .header("expect", "100-continue")
            .body("0123456789")
            .send(),
    )
    .await
    .unwrap();
    let echo: serde_json::Value = expecting.json().await.unwrap();
    assert_eq!(echo["body_len"], 10);
    assert_eq!(handoffs("request").await, 1.0);

    // Policies run on the fast engine: no hand-off.
    let retried = within("retried route", client().get(proxy.url("/retried")).send())
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    assert!(
        retried
            .headers()
            .contains_key("x-ratelimit-remaining-requests")
    );
    assert_eq!(handoffs("route").await, 0.0);
    for path in ["/first-token", "/mirrored"] {
        let answer = within(path, client().get(proxy.url(path)).send())
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        assert_eq!(handoffs("route").await, 0.0, "{path}");
    }
    // A route that asks for the full pipeline goes there.
    let full = within("full route", client().get(proxy.url("/full")).send())
        .await
        .unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(handoffs("route").await, 1.0);
}

/// HTTP/1.1 over TLS takes the fast path too (HTTP/2 by ALPN goes to hyper): requests
/// on one kept-alive TLS connection are relayed with `x-forwarded-proto: https`, and a
/// request the fast path does not take hands the TLS connection to hyper, bytes already
/// decrypted included, without a break.
#[tokio::test]
async fn http1_over_tls_takes_the_fast_path_and_hands_off_mid_connection() {
    let cert = TestCert::generate();
    let upstream = TestUpstream::named("behind-tls").start().await;
    let proxy = TestProxy::from_toml(&config(&tls_listeners(&cert), &upstream.url(), ""))
        .start()
        .await;
    let addr = proxy.addr("public");
    let handoffs = || {
        let url = proxy.admin_url("/metrics");
        async move {
            let text = within("metrics", client().get(url).send())
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            support::parse_metrics(&text)
                .iter()
                .filter(|(series, _)| series.starts_with("junction_fast_path_handoffs_total"))
                .map(|(_, count)| *count)
                .sum::<f64>()
        }
    };

    let tls = trusting_client(&cert, addr).http1_only().build().unwrap();
    for round in 0..10 {
        let reply = within("get", tls.get(format!("https://{addr}/tls/{round}")).send())
            .await
            .unwrap();
        assert_eq!(reply.version(), Version::HTTP_11);
        let echo: serde_json::Value = reply.json().await.unwrap();
        assert_eq!(echo["uri"], format!("/tls/{round}"));
        assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    }
    assert_eq!(
        handoffs().await,
        0.0,
        "HTTP/1.1 over TLS stayed on the fast path"
    );

    let chunks = futures_util::stream::iter(
        (0..3).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789"))),
    );
    let upload = within(
        "chunked upload over TLS",
        tls.post(format!("https://{addr}/upload"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send(),
    )
    .await
    .unwrap();
    let echo: serde_json::Value = upload.json().await.unwrap();
    assert_eq!(echo["body_len"], 30);
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    assert_eq!(handoffs().await, 0.0, "a chunked upload is read here");
    let expecting = within(
        "upload expecting 100-continue over TLS",
        tls.post(format!("https://{addr}/upload"))
            .header("expect", "100-continue")
            .body("0123456789")
            .send(),
    )
    .await
    .unwrap();
    let echo: serde_json::Value = expecting.json().await.unwrap();
    assert_eq!(echo["body_len"], 10);
    assert_eq!(handoffs().await, 1.0);
    // The handed-off connection goes on serving.
    let after = within(
        "get after hand-off",
        tls.get(format!("https://{addr}/after")).send(),
    )
    .await
    .unwrap();
    assert_eq!(after.status(), 200);
    assert_eq!(upstream.requests(), 13);
}

/// An h2 answer that is only trailers (a gRPC stream of zero messages, whose status
/// rides in the trailers) reaches the client whole: the head waits for the first frame,
/// and a first frame of trailers is passed on, not dropped.
#[tokio::test]
async fn trailers_without_data_reach_the_client() {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_request: Request<Incoming>| async {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    let frames = vec![Ok::<_, Infallible>(Frame::<Bytes>::trailers(trailers))];
                    let body = StreamBody::new(futures_util::stream::iter(frames));
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/grpc")
                            .body(body)
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let url = format!("http://{upstream}");
    let proxy = TestProxy::from_toml(&config(listeners_toml(), &url, r#"protocol = "h2""#))
        .start()
        .await;

    let stream = tokio::net::TcpStream::connect(proxy.addr("public"))
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let request = Request::builder()
        .uri(format!("http://{}/pkg.Service/List", proxy.addr("public")))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = within("response", sender.send_request(request))
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let collected = within("body", response.into_body().collect())
        .await
        .expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..]),
        "the trailers were lost: {trailers:?}"
    );
}

/// A pool of a refusing http endpoint and a working https one: every request fails over
/// to the https endpoint, on the fast path's listener as on hyper's (the fast path
/// leaves such pools to the full path, which speaks TLS).
#[tokio::test]
async fn connect_failover_reaches_an_https_endpoint_on_both_engines() {
    let cert = TestCert::generate();
    let https = https_upstream(&cert).await;
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let refusing = closed.local_addr().unwrap();
    drop(closed);
    for fast_path in [true, false] {
        let listeners = format!(
            "[admin]\nbind = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\nfast_path = {fast_path}\n"
        );
        let text = format!(
            r#"{listeners}
[[pools]]
name = "p"
balance = "round_robin"
ca_file = "{}"
endpoints = [{{ url = "http://{refusing}" }}, {{ url = "https://{https}" }}]

[[routes]]
name = "all"
pool = "p"
"#,
            path_str(&cert.cert_path)
        );
        let proxy = TestProxy::from_toml(&text).start().await;
        for i in 0..4 {
            let response = within("request", client().get(proxy.url("/x")).send())
                .await
                .expect("request");
            assert_eq!(
                response.status(),
                200,
                "fast_path = {fast_path}, request {i}: {}",
                response.text().await.unwrap_or_default()
            );
        }
    }
}
