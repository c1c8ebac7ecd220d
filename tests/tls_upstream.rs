//! TLS to upstreams per pool: a client certificate for endpoints that require one
//! (mTLS), a CA and a server name of the pool's own, session resumption, and
//! `verify = false` with its warning. Both engines connect through the same client.

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::HandshakeKind;
use support::TestProxy;
use support::certs::{Leaf, TestCa};
use support::raw_http::within;

/// What an upstream saw of one TLS connection.
#[derive(Debug, Clone)]
struct Handshake {
    sni: Option<String>,
    resumed: bool,
    client_cert: bool,
}

/// An https upstream (rustls, HTTP/1.1, one request per connection) answering 200
/// "secure"; records each handshake.
async fn tls_upstream(
    config: Arc<rustls::ServerConfig>,
) -> (SocketAddr, Arc<Mutex<Vec<Handshake>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Handshake>>> = Arc::default();
    let record = seen.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let (_, connection) = stream.get_ref();
                record.lock().unwrap().push(Handshake {
                    sni: connection.server_name().map(String::from),
                    resumed: connection.handshake_kind() == Some(HandshakeKind::Resumed),
                    client_cert: connection.peer_certificates().is_some(),
                });
                let service = service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"secure"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A server config for `leaf`; with `client_ca`, client certificates from it are required.
fn server_config(leaf: &Leaf, client_ca: Option<&TestCa>) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    Arc::new(
        builder
            .with_single_cert(vec![leaf.der.clone()], key)
            .unwrap(),
    )
}

/// A plain listener whose route goes to pool "p" at `url` with `pool_tls` lines.
fn config(url: &str, pool_tls: &str, fast_path: bool) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"
fast_path = {fast_path}

[[pools]]
name = "p"
endpoints = [{{ url = "{url}" }}]
{pool_tls}

[[routes]]
name = "all"
pool = "p"
"#
    )
}

/// GET / through the proxy (HTTP/1.1, so the fast path serves it where it may).
async fn status(proxy: &support::proxy::RunningProxy) -> u16 {
    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .build()
        .unwrap();
    within("request", client.get(proxy.url("/")).send())
        .await
        .expect("the proxy answers")
        .status()
        .as_u16()
}

struct Pki {
    dir: tempfile::TempDir,
    server_ca: TestCa,
    client_ca: TestCa,
    backend: Leaf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new();
    let client_ca = TestCa::new();
    std::fs::write(dir.path().join("server-ca.pem"), server_ca.pem()).unwrap();
    client_ca
        .client_leaf(
            "junction",
            &["gateway.internal"],
            &["spiffe://example.org/gateway"],
        )
        .write(dir.path(), "client");
    let backend = server_ca.leaf(&["backend.internal"]);
    Pki {
        dir,
        server_ca,
        client_ca,
        backend,
    }
}

#[tokio::test]
async fn an_upstream_that_requires_a_client_certificate_gets_the_pools_on_both_engines() {
    let pki = pki();
    let (addr, seen) = tls_upstream(server_config(&pki.backend, Some(&pki.client_ca))).await;
    let url = format!("https://127.0.0.1:{}", addr.port());
    let dir = pki.dir.path().display();
    let with_cert = format!(
        r#"tls = {{ cert = "{dir}/client.pem", key = "{dir}/client.key", ca = "{dir}/server-ca.pem", server_name = "backend.internal" }}"#
    );
    for fast_path in [true, false] {
        let proxy = TestProxy::from_toml(&config(&url, &with_cert, fast_path))
            .start()
            .await;
        assert_eq!(status(&proxy).await, 200, "fast_path {fast_path}");
    }
    let handshakes = seen.lock().unwrap().clone();
    assert!(handshakes.iter().all(|h| h.client_cert), "{handshakes:?}");
    assert!(
        handshakes
            .iter()
            .all(|h| h.sni.as_deref() == Some("backend.internal")),
        "server_name is the SNI: {handshakes:?}"
    );

    // Without the certificate the endpoint refuses the handshake: 502.
    let without =
        format!(r#"tls = {{ ca = "{dir}/server-ca.pem", server_name = "backend.internal" }}"#);
    let proxy = TestProxy::from_toml(&config(&url, &without, true))
        .start()
        .await;
    assert_eq!(status(&proxy).await, 502);
    // Without server_name the certificate (backend.internal) does not fit 127.0.0.1.
    let unnamed = format!(
        r#"tls = {{ cert = "{dir}/client.pem", key = "{dir}/client.key", ca = "{dir}/server-ca.pem" }}"#
    );
    let proxy = TestProxy::from_toml(&config(&url, &unnamed, true))
        .start()
        .await;
    assert_eq!(status(&proxy).await, 502);
}

#[tokio::test]
async fn new_connections_to_an_endpoint_resume_the_tls_session() {
    let pki = pki();
    let (addr, seen) = tls_upstream(server_config(&pki.backend, None)).await;
    let url = format!("https://127.0.0.1:{}", addr.port());
    let dir = pki.dir.path().display();
    let pool_tls =
        format!(r#"tls = {{ ca = "{dir}/server-ca.pem", server_name = "backend.internal" }}"#);
    let proxy = TestProxy::from_toml(&config(&url, &pool_tls, true))
        .start()
        .await;
    for _ in 0..3 {
        // The upstream closes each connection: every request needs a new handshake.
        assert_eq!(status(&proxy).await, 200);
    }
    let kinds: Vec<bool> = seen.lock().unwrap().iter().map(|h| h.resumed).collect();
    assert_eq!(kinds, [false, true, true], "full, then resumed");
}

#[tokio::test]
async fn verify_false_reaches_an_unknown_certificate_and_junction_check_warns() {
    let pki = pki();
    let stranger = TestCa::new().leaf(&["who.knows"]);
    let (addr, _) = tls_upstream(server_config(&stranger, None)).await;
    let url = format!("https://127.0.0.1:{}", addr.port());
    let verified = config(&url, "", true);
    let proxy = TestProxy::from_toml(&verified).start().await;
    assert_eq!(
        status(&proxy).await,
        502,
        "verified against the system roots"
    );
    let unverified = config(&url, "tls = { verify = false }", true);
    let proxy = TestProxy::from_toml(&unverified).start().await;
    assert_eq!(status(&proxy).await, 200);

    let plan = junction::config::checking(|context| {
        junction::config::load_str(&unverified, Path::new("."), context)
    })
    .unwrap();
    let warning = &plan.warnings[0];
    assert_eq!(warning.path, "pools[0].tls.verify");
    assert!(warning.message.contains("VERIFICATION IS OFF"), "{warning}");
    assert!(warning.line.is_some());
    let _ = (&pki.server_ca, &pki.backend);
}

#[tokio::test]
async fn pool_tls_errors_name_their_key() {
    let pki = pki();
    let dir = pki.dir.path().display();
    let cases = [
        (
            "https://127.0.0.1:1",
            format!(r#"tls = {{ cert = "{dir}/client.pem" }}"#),
            "pools[0].tls.cert",
        ),
        (
            "https://127.0.0.1:1",
            format!(
                r#"ca_file = "{dir}/server-ca.pem"
tls = {{ ca = "{dir}/server-ca.pem" }}"#
            ),
            "pools[0].tls.ca",
        ),
        (
            "http://127.0.0.1:1",
            "tls = { verify = true }".to_string(),
            "pools[0].tls",
        ),
        (
            "https://127.0.0.1:1",
            r#"tls = { server_name = "not a name" }"#.to_string(),
            "pools[0].tls.server_name",
        ),
        (
            "https://127.0.0.1:1",
            format!(r#"tls = {{ cert = "{dir}/client.pem", key = "{dir}/server-ca.pem" }}"#),
            "pools[0].tls.cert",
        ),
    ];
    for (url, pool_tls, path) in cases {
        let text = config(url, &pool_tls, true);
        let errors = junction::config::checking(|context| {
            junction::config::load_str(&text, Path::new("."), context)
        })
        .err()
        .unwrap_or_else(|| panic!("{pool_tls} loaded"));
        assert_eq!(errors.0[0].path, path, "{errors}");
    }
}
