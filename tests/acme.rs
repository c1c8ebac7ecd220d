//! ACME (issue #16 item 5) against a real ACME server on loopback: Debian's `pebble`.
//! Pebble checks HTTP-01 tokens by fetching them from a Junction gateway listener (its
//! DNS points every name at 127.0.0.1), so issuance proves the listener answers them;
//! the certificate is then served through `AcmeResolver` and verified against pebble's
//! issuing root. Restart reuse runs with pebble stopped, so it cannot have ordered.

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use junction::acme::{ACME_TLS_ALPN, Acme, AcmeResolver, AcmeSettings, Challenge, Outcome};
use support::pebble::{Pebble, free_port};
use support::{TestProxy, TestUpstream, client, listeners_toml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DOMAINS: [&str; 2] = ["junction-acme.example.com", "www.junction-acme.example.com"];

/// A gateway with a catch-all route: a token the gateway does not answer would go to
/// the upstream, which knows none.
async fn gateway() -> (
    support::proxy::RunningProxy,
    support::upstream::RunningUpstream,
) {
    let upstream = TestUpstream::named("app").start().await;
    let config = format!(
        r#"{}
[[pools]]
name = "app"
endpoints = [{{ url = "{}" }}]

[[routes]]
name = "all"
pool = "app"
"#,
        listeners_toml(),
        upstream.url()
    );
    (TestProxy::from_toml(&config).start().await, upstream)
}

fn settings(pebble: &Pebble, storage: &std::path::Path) -> AcmeSettings {
    AcmeSettings {
        directory: pebble.directory.clone(),
        email: Some("ops@example.com".into()),
        domains: DOMAINS.iter().map(|d| d.to_string()).collect(),
        challenge: Challenge::Http01,
        storage: storage.to_path_buf(),
        ca: Some(pebble.api_ca()),
    }
}

/// An HTTPS server on the resolver of an `acme` section, as a TLS listener would use
/// it: ALPN `acme-tls/1` connections (TLS-ALPN-01 checks) are counted and closed after
/// the handshake; others get `hello`.
struct TlsServer {
    addr: SocketAddr,
    acme_tls_handshakes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A socket for a `TlsServer` whose resolver is not made yet (pebble needs the port
/// first, the resolver needs pebble's directory).
struct BoundTls(tokio::net::TcpListener);

impl BoundTls {
    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    async fn serve(self, resolver: AcmeResolver) -> TlsServer {
        TlsServer::on(self.0, resolver)
    }
}

impl TlsServer {
    async fn start_later() -> BoundTls {
        BoundTls(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    async fn start(resolver: AcmeResolver) -> TlsServer {
        Self::start_later().await.serve(resolver).await
    }

    fn on(listener: tokio::net::TcpListener, resolver: AcmeResolver) -> TlsServer {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let addr = listener.local_addr().unwrap();
        let acme_tls_handshakes = Arc::new(AtomicUsize::new(0));
        let counted = acme_tls_handshakes.clone();
        let task = tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let _ = tls.shutdown().await;
                        return;
                    }
                    let mut head = [0u8; 1024];
                    let _ = tls.read(&mut head).await;
                    let reply =
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
                    let _ = tls.write_all(reply).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsServer {
            addr,
            acme_tls_handshakes,
            task,
        }
    }

    /// What a client trusting only `root` (pebble's issuer) gets for `name`: the
    /// handshake verifies the chain and the name.
    async fn fetch(&self, root: &str, name: &str) -> String {
        let client = reqwest::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
            .resolve(name, self.addr)
            .build()
            .unwrap();
        let url = format!("https://{name}:{}/", self.addr.port());
        client.get(url).send().await.unwrap().text().await.unwrap()
    }
}

#[tokio::test]
async fn http01_issuance_through_the_gateway_then_a_restart_reuses_the_stored_certificate() {
    let (proxy, upstream) = gateway().await;
    let pebble = Pebble::start(proxy.addr("public").port(), free_port(), None).await;
    let storage = tempfile::tempdir().unwrap();
    let settings = settings(&pebble, &storage.path().join("acme"));

    let acme = Acme::new(settings.clone(), proxy.gateway.acme_answers().clone());
    let outcome = tokio::time::timeout(Duration::from_secs(60), acme.ensure())
        .await
        .expect("issued within a minute")
        .expect("issued");
    assert_eq!(outcome, Outcome::Obtained);
    let issued = acme.published().current().expect("published");
    assert!(issued.covers(&settings.domains), "{:?}", issued.names);
    // The tokens were answered by the gateway, never by the route's upstream, and are
    // withdrawn once the order is done.
    assert_eq!(upstream.requests(), 0);
    assert!(proxy.gateway.acme_answers().is_empty());

    let root = pebble.issuer_root().await;
    let server = TlsServer::start(acme.resolver()).await;
    for name in DOMAINS {
        assert_eq!(server.fetch(&root, name).await, "hello");
    }

    // Account, chain and key are on disk, readable by the owner only.
    let files: Vec<_> = std::fs::read_dir(&settings.storage)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    for file in &files {
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file:?}");
    }

    // A restart with the ACME server gone: the stored certificate is all there is.
    pebble.stop().await;
    drop(acme);
    let restarted = Acme::new(settings, proxy.gateway.acme_answers().clone());
    assert_eq!(restarted.ensure().await.unwrap(), Outcome::Reused);
    let reused = restarted.published().current().unwrap();
    assert_eq!(reused.serial, issued.serial);
    assert_eq!(reused.chain_pem, issued.chain_pem);
}

#[tokio::test]
async fn a_token_nobody_ordered_goes_to_the_routes() {
    let (proxy, upstream) = gateway().await;
    let answers = proxy.gateway.acme_answers().clone();
    let pending = answers.insert("tok-123", "tok-123.thumbprint");
    let url = proxy.url("/.well-known/acme-challenge/tok-123");
    let reply = client().get(&url).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.text().await.unwrap(), "tok-123.thumbprint");
    let other = client()
        .get(proxy.url("/.well-known/acme-challenge/tok-124"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.headers()["x-upstream"], "app");
    drop(pending);
    let after = client().get(&url).send().await.unwrap();
    assert_eq!(after.headers()["x-upstream"], "app");
    assert_eq!(upstream.requests(), 2);
}

#[tokio::test]
async fn renewal_at_two_thirds_of_the_lifetime_publishes_and_stores_a_new_certificate() {
    let (proxy, _upstream) = gateway().await;
    // Pebble issues certificates valid for 12 s: renewal is due 8 s in.
    let validity = Some(Duration::from_secs(12));
    let pebble = Pebble::start(proxy.addr("public").port(), free_port(), validity).await;
    let storage = tempfile::tempdir().unwrap();
    let settings = settings(&pebble, storage.path());
    let acme = Acme::new(settings.clone(), proxy.gateway.acme_answers().clone());
    let changes = acme.published().changes();
    let task = acme.spawn();

    let wait = |n: u64| {
        let mut changes = changes.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(60), changes.wait_for(|&c| c >= n))
                .await
                .expect("published in time")
                .map(|_| ())
                .unwrap();
        }
    };
    wait(1).await;
    let first = acme.published().current().unwrap();
    let lifetime = first.not_after.duration_since(first.not_before).unwrap();
    assert!(lifetime <= Duration::from_secs(13), "{lifetime:?}");
    wait(2).await;
    let renewed_at = SystemTime::now();
    let second = acme.published().current().unwrap();
    task.abort();

    assert_ne!(second.serial, first.serial);
    let due = first.not_before + lifetime * 2 / 3;
    assert!(
        renewed_at >= due,
        "renewed before two thirds of the lifetime"
    );
    assert!(renewed_at < first.not_after, "renewed only after expiry");
    assert!(second.covers(&settings.domains));
    // What a restart would load is the renewed certificate.
    let stored =
        std::fs::read_to_string(storage.path().join(format!("{}.chain.pem", DOMAINS[0]))).unwrap();
    assert_eq!(stored, second.chain_pem);
    let root = pebble.issuer_root().await;
    let server = TlsServer::start(acme.resolver()).await;
    assert_eq!(server.fetch(&root, DOMAINS[1]).await, "hello");
}

#[tokio::test]
async fn tls_alpn01_issuance_through_the_resolver() {
    let (proxy, upstream) = gateway().await;
    let storage = tempfile::tempdir().unwrap();
    // HTTP-01 would go to a port nobody listens on: only the TLS-ALPN-01 answer can pass.
    let bound = TlsServer::start_later().await;
    let pebble = Pebble::start(free_port(), bound.port(), None).await;
    let mut settings = settings(&pebble, storage.path());
    settings.challenge = Challenge::TlsAlpn01;
    let acme = Acme::new(settings, proxy.gateway.acme_answers().clone());
    let server = bound.serve(acme.resolver()).await;

    let outcome = tokio::time::timeout(Duration::from_secs(60), acme.ensure())
        .await
        .expect("issued within a minute")
        .expect("issued");
    assert_eq!(outcome, Outcome::Obtained);
    let checks = server.acme_tls_handshakes.load(Ordering::SeqCst);
    assert!(checks >= DOMAINS.len(), "{checks} acme-tls/1 handshakes");
    assert_eq!(upstream.requests(), 0);
    assert!(proxy.gateway.acme_answers().is_empty());
    let root = pebble.issuer_root().await;
    for name in DOMAINS {
        assert_eq!(server.fetch(&root, name).await, "hello");
    }
}

#[tokio::test]
async fn a_stored_certificate_that_no_longer_fits_is_ordered_again_with_the_stored_account() {
    let (proxy, _upstream) = gateway().await;
    let pebble = Pebble::start(proxy.addr("public").port(), free_port(), None).await;
    let storage = tempfile::tempdir().unwrap();
    let answers = proxy.gateway.acme_answers();
    let mut settings = settings(&pebble, storage.path());
    settings.domains.truncate(1);
    let first = Acme::new(settings.clone(), answers.clone());
    assert_eq!(first.ensure().await.unwrap(), Outcome::Obtained);
    let account_files = |dir: &std::path::Path| -> Vec<(std::path::PathBuf, String)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("account-"))
            .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap()))
            .collect();
        files.sort();
        files
    };
    let account = account_files(storage.path());
    assert_eq!(account.len(), 1);

    // A second name: the stored certificate does not cover it.
    settings.domains = DOMAINS.iter().map(|d| d.to_string()).collect();
    let wider = Acme::new(settings.clone(), answers.clone());
    assert_eq!(wider.ensure().await.unwrap(), Outcome::Obtained);
    assert!(
        wider
            .published()
            .current()
            .unwrap()
            .covers(&settings.domains)
    );

    // A damaged chain file: logged, ordered anew, not fatal.
    let chain = storage.path().join(format!("{}.chain.pem", DOMAINS[0]));
    std::fs::write(&chain, "not a certificate").unwrap();
    let repaired = Acme::new(settings.clone(), answers.clone());
    assert_eq!(repaired.ensure().await.unwrap(), Outcome::Obtained);
    let again = Acme::new(settings, answers.clone());
    assert_eq!(again.ensure().await.unwrap(), Outcome::Reused);

    // Every order was placed with the one stored account.
    assert_eq!(account_files(storage.path()), account);
}

#[tokio::test]
async fn an_unreachable_acme_server_is_an_error_not_a_panic() {
    let storage = tempfile::tempdir().unwrap();
    let settings = AcmeSettings {
        directory: format!("https://127.0.0.1:{}/dir", free_port()),
        email: None,
        domains: vec![DOMAINS[0].to_string()],
        challenge: Challenge::Http01,
        storage: storage.path().to_path_buf(),
        ca: None,
    };
    let acme = Acme::new(settings, junction::acme::Http01Answers::new());
    let error = acme.ensure().await.unwrap_err();
    assert!(error.to_string().starts_with("ACME server"), "{error}");
    assert!(acme.published().current().is_none());
}
