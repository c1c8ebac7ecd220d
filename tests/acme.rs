//! ACME (issue #16 item 5) against a real ACME server on loopback: Debian's `pebble`.
//! Pebble checks HTTP-01 tokens by fetching them from a Junction gateway listener (its
//! DNS points every name at 127.0.0.1), so issuance proves the listener answers them;
//! the certificate is then served through `AcmeResolver` and verified against pebble's
//! issuing root. Restart reuse runs with pebble stopped, so it cannot have ordered.
//! Also: issued certificates in the expiry metric and `/api/config`, the storage lock
//! shared by issuers, and `acme-tls/1` connections closed before any routing.

use crate::support;

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

    // Account, chain and key are on disk, readable by the owner only (the lock too).
    let files: Vec<_> = std::fs::read_dir(&settings.storage)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 4, "{files:?}");
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

/// The config of a Junction whose TLS listener "secure" (at `secure.0`, 0 for any) has
/// `tls.acme` with challenge `secure.1` for `DOMAINS` from `pebble`, stored in `acme`
/// beside the config file; pebble checks HTTP-01 on the plain listener "public" at
/// `http_port`.
fn acme_listener_config(
    pebble: &Pebble,
    http_port: u16,
    upstream: &str,
    secure: (u16, Challenge),
) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[[listeners]]
name = "public"
bind = "127.0.0.1:{http_port}"

[[listeners]]
name = "secure"
bind = "127.0.0.1:{secure_port}"
tls = {{ acme = {{ directory = "{directory}", email = "ops@example.com", domains = {domains:?}, challenge = "{challenge}", storage = "acme", ca = "{ca}" }} }}

[[pools]]
name = "app"
endpoints = [{{ url = "{upstream}" }}]

[[routes]]
name = "secure"
listener = "secure"
pool = "app"
"#,
        directory = pebble.directory,
        domains = DOMAINS,
        ca = pebble.api_ca().display(),
        secure_port = secure.0,
        challenge = secure.1.name(),
    )
}

/// GET `/` on `name` at `addr` by a client that trusts only `root`: the upstream's
/// name and the DER of the certificate the listener served.
async fn fetch_secure(addr: SocketAddr, root: &str, name: &str) -> (String, Vec<u8>) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .tls_info(true)
        .resolve(name, addr)
        .build()
        .unwrap();
    let reply = client
        .get(format!("https://{name}:{}/", addr.port()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let served = reply
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("the peer's certificate")
        .to_vec();
    (
        reply.headers()["x-upstream"].to_str().unwrap().to_string(),
        served,
    )
}

#[tokio::test]
async fn a_listener_with_acme_serves_the_issued_certificate_by_sni_and_keeps_it_across_reloads() {
    let upstream = TestUpstream::named("app").start().await;
    let http_port = free_port();
    let pebble = Pebble::start(http_port, free_port(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("junction.toml");
    std::fs::write(
        &config,
        acme_listener_config(&pebble, http_port, &upstream.url(), (0, Challenge::Http01)),
    )
    .unwrap();
    // The listener starts without waiting for pebble; issuance runs behind it.
    let proxy = support::proxy::RunningProxy::from_file(&config).await;
    let acme = proxy
        .gateway
        .acme_issuer("secure")
        .expect("an issuer for the listener");
    let mut changes = acme.published().changes();
    tokio::time::timeout(Duration::from_secs(60), changes.wait_for(|&c| c >= 1))
        .await
        .expect("issued within a minute")
        .unwrap();
    let issued = acme.published().current().unwrap();
    let issued_der = issued.certified.cert[0].to_vec();

    let root = pebble.issuer_root().await;
    let secure = proxy.addr("secure");
    for name in DOMAINS {
        let (served_by, served) = fetch_secure(secure, &root, name).await;
        assert_eq!(served_by, "app");
        assert_eq!(served, issued_der, "{name} got another certificate");
    }
    assert_admin_shows(&proxy, &issued).await;

    // A reload with the same settings keeps the issuer, its certificate and its task:
    // no new order, nothing published again.
    proxy.gateway.reload().await.expect("reload");
    let kept = proxy.gateway.acme_issuer("secure").unwrap();
    assert!(Arc::ptr_eq(&kept, &acme), "the reload replaced the issuer");
    assert_eq!(*kept.published().changes().borrow(), 1);
    assert_eq!(kept.published().current().unwrap().serial, issued.serial);
    let (_, served) = fetch_secure(secure, &root, DOMAINS[1]).await;
    assert_eq!(served, issued_der);
    assert_eq!(upstream.requests(), DOMAINS.len() + 1);

    // Changed settings replace the issuer; the new one reuses the stored certificate.
    let text = std::fs::read_to_string(&config).unwrap();
    let changed = text.replace("ops@example.com", "security@example.com");
    assert_ne!(changed, text);
    std::fs::write(&config, changed).unwrap();
    proxy.gateway.reload().await.expect("reload");
    let replaced = proxy.gateway.acme_issuer("secure").unwrap();
    assert!(
        !Arc::ptr_eq(&replaced, &acme),
        "changed settings kept the issuer"
    );
    let mut changes = replaced.published().changes();
    tokio::time::timeout(Duration::from_secs(60), changes.wait_for(|&c| c >= 1))
        .await
        .expect("published within a minute")
        .unwrap();
    assert_eq!(
        replaced.published().current().unwrap().serial,
        issued.serial
    );
    // Loaded from storage by the new issuer: still in the metric and /api/config.
    assert_admin_shows(&proxy, &issued).await;

    // A listener that goes takes its issuer with it.
    let text = std::fs::read_to_string(&config).unwrap();
    let without = &text[..text.find("[[listeners]]\nname = \"secure\"").unwrap()];
    std::fs::write(&config, without).unwrap();
    proxy.gateway.reload().await.expect("reload");
    assert!(proxy.gateway.acme_issuer("secure").is_none());
}

/// The expiry metric has a series per ACME domain of listener "secure" with the
/// issued certificate's expiry, and `/api/config` lists the certificate (names, expiry,
/// serial) beside the listener, without its key.
async fn assert_admin_shows(proxy: &support::proxy::RunningProxy, issued: &junction::acme::Issued) {
    let not_after = issued
        .not_after
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let metrics = proxy.metrics_text().await;
    for name in DOMAINS {
        let series = format!(
            "junction_tls_certificate_expiry_seconds{{listener=\"secure\",name=\"{name}\"}} "
        );
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&series))
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
        let left: i64 = line[series.len()..].trim().parse().unwrap();
        let expected = not_after - unix_now();
        assert!(
            (left - expected).abs() <= 2,
            "{line}: expected about {expected}"
        );
    }
    let config = proxy.admin_json("/api/config").await;
    let listener = config["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "secure")
        .expect("listener secure in /api/config");
    let certificates = listener["tls"]["certificates"].as_array().unwrap();
    let acme: Vec<_> = certificates
        .iter()
        .filter(|c| c["source"] == "acme")
        .collect();
    assert_eq!(acme.len(), 1, "{certificates:?}");
    assert_eq!(acme[0]["serial"], issued.serial.as_str());
    assert_eq!(acme[0]["names"], serde_json::json!(issued.names));
    assert_eq!(acme[0]["key_type"], "ecdsa");
    let expires_in = acme[0]["expires_in_seconds"].as_i64().unwrap();
    assert!((expires_in - (not_after - unix_now())).abs() <= 2);
    let text = config.to_string();
    assert!(!text.contains("PRIVATE KEY"), "a key in /api/config");
}

#[tokio::test]
async fn issuers_sharing_a_storage_order_once_and_the_other_reuses_what_was_stored() {
    let (proxy, _upstream) = gateway().await;
    let pebble = Pebble::start(proxy.addr("public").port(), free_port(), None).await;
    let storage = tempfile::tempdir().unwrap();
    let settings = settings(&pebble, storage.path());
    let answers = proxy.gateway.acme_answers();
    // Two issuers of one section, as two Junction processes (or two listeners) sharing
    // `storage` have: each takes the lock through its own open file, as a process does.
    let first = Acme::new(settings.clone(), answers.clone());
    let second = Acme::new(settings.clone(), answers.clone());
    let (a, b) = tokio::time::timeout(Duration::from_secs(90), async {
        tokio::join!(first.ensure(), second.ensure())
    })
    .await
    .expect("issued within 90 s");
    let mut outcomes = [a.expect("first"), b.expect("second")];
    outcomes.sort_by_key(|o| *o == Outcome::Reused);
    assert_eq!(
        outcomes,
        [Outcome::Obtained, Outcome::Reused],
        "ordered twice"
    );
    let (one, two) = (
        first.published().current().unwrap(),
        second.published().current().unwrap(),
    );
    assert_eq!(one.serial, two.serial);

    // One account, one chain and key, the lock; no temporary file left behind.
    let mut files: Vec<String> = std::fs::read_dir(storage.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(files.iter().all(|f| !f.contains(".new")), "{files:?}");
    assert!(files.contains(&".lock".to_string()), "{files:?}");
    let stored =
        std::fs::read_to_string(storage.path().join(format!("{}.chain.pem", DOMAINS[0]))).unwrap();
    assert_eq!(stored, one.chain_pem);

    // One renews; the other, when it looks (as its renewal loop does when due), takes
    // the renewed certificate from storage instead of ordering another.
    let renewed = tokio::time::timeout(Duration::from_secs(60), first.obtain())
        .await
        .expect("renewed within a minute")
        .unwrap();
    assert_ne!(renewed.serial, one.serial);
    assert_eq!(second.ensure().await.unwrap(), Outcome::Reused);
    assert_eq!(second.published().current().unwrap().serial, renewed.serial);
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn two_junction_processes_sharing_a_storage_order_once() {
    use support::process::JunctionProcess;
    let upstream = TestUpstream::named("app").start().await;
    let http_port = free_port();
    let pebble = Pebble::start(http_port, free_port(), None).await;
    let dir = tempfile::tempdir().unwrap();
    // Both configs sit in one directory, so both store into its `acme`. Only the first
    // has pebble's HTTP-01 port: the second can have a certificate from storage only.
    let config = |port: u16, name: &str| {
        let path = dir.path().join(name);
        let text = acme_listener_config(&pebble, port, &upstream.url(), (0, Challenge::Http01));
        std::fs::write(&path, text).unwrap();
        path
    };
    let (first, second) = (config(http_port, "first.toml"), config(0, "second.toml"));
    let mut one = JunctionProcess::start(&first, &["secure"]).await;
    // The second starts once the first holds the lock: started earlier, it could take
    // the lock first and order, which this test is not about (and pebble cannot reach it).
    one.wait_for_log("acme: ordering a certificate").await;
    let mut two = JunctionProcess::start(&second, &["secure"]).await;
    one.wait_for_log("acme: certificate obtained").await;
    // The second waits for the lock, then reuses; it never orders (an order of its
    // own fails: pebble cannot reach it, and it would log and retry 30 s later).
    loop {
        let line = two.wait_for_log("acme: ").await;
        assert!(!line.contains("no certificate this time"), "{line}");
        if line.contains("acme: reusing the stored certificate") {
            break;
        }
    }
    let root = pebble.issuer_root().await;
    let (_, served_by_one) = fetch_secure(one.addrs["secure"], &root, DOMAINS[0]).await;
    let (_, served_by_two) = fetch_secure(two.addrs["secure"], &root, DOMAINS[1]).await;
    assert_eq!(served_by_one, served_by_two, "two certificates");
}

#[tokio::test]
async fn an_acme_tls_alpn_connection_is_closed_after_the_handshake_and_never_routed() {
    let ca = support::certs::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["files.test"]).write(dir.path(), "files");
    let upstream = TestUpstream::named("app").start().await;
    let config = format!(
        r#"{}
tls = {{ certs = [{{ cert = {cert:?}, key = {key:?} }}], acme = {{ directory = "https://127.0.0.1:1/dir", domains = {DOMAINS:?}, challenge = "tls-alpn-01", storage = {storage:?} }} }}

[[pools]]
name = "app"
endpoints = [{{ url = "{upstream}" }}]

[[routes]]
name = "all"
pool = "app"
"#,
        listeners_toml(),
        storage = dir.path().join("acme"),
        upstream = upstream.url(),
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let addr = proxy.addr("public");
    let connect = |alpn: &'static [u8]| async move {
        let mut config =
            support::certs::trusting_client(support::certs::Offer::All, &[&rustls::version::TLS13]);
        config.alpn_protocols = vec![alpn.to_vec()];
        support::certs::connect_with(Arc::new(config), addr, Some("files.test"))
            .await
            .expect("handshake")
    };
    // The same connection with ALPN http/1.1 is served: the route works.
    let mut served = connect(b"http/1.1").await;
    let head = support::certs::get_over(&mut served, "files.test", "/").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(upstream.requests(), 1);

    // ALPN acme-tls/1 (a TLS-ALPN-01 check): the handshake completes, then the
    // listener closes without reading a request.
    let mut check = connect(ACME_TLS_ALPN).await;
    assert_eq!(check.get_ref().1.alpn_protocol(), Some(ACME_TLS_ALPN));
    let _ = check
        .write_all(b"GET / HTTP/1.1\r\nHost: files.test\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), check.read_to_end(&mut answer))
        .await
        .expect("closed, not left open");
    assert!(
        answer.is_empty(),
        "answered {:?} ({read:?})",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(
        upstream.requests(),
        1,
        "the acme-tls/1 connection was routed"
    );
}

#[tokio::test]
async fn a_listener_with_acme_answers_tls_alpn01_itself() {
    let upstream = TestUpstream::named("app").start().await;
    // HTTP-01 would go to a port nobody listens on: only the listener's own
    // `acme-tls/1` handshakes can prove the names.
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(free_port(), tls_port, None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("junction.toml");
    let secure = (tls_port, Challenge::TlsAlpn01);
    std::fs::write(
        &config,
        acme_listener_config(&pebble, http_port, &upstream.url(), secure),
    )
    .unwrap();
    let proxy = support::proxy::RunningProxy::from_file(&config).await;
    let acme = proxy.gateway.acme_issuer("secure").unwrap();
    let mut changes = acme.published().changes();
    tokio::time::timeout(Duration::from_secs(60), changes.wait_for(|&c| c >= 1))
        .await
        .expect("issued within a minute")
        .unwrap();
    let issued_der = acme.published().current().unwrap().certified.cert[0].to_vec();
    let root = pebble.issuer_root().await;
    let (served_by, served) = fetch_secure(proxy.addr("secure"), &root, DOMAINS[0]).await;
    assert_eq!(served_by, "app");
    assert_eq!(served, issued_der);
    // The checks' connections never reached a route.
    assert_eq!(upstream.requests(), 1);
}

/// A `tls` table with `acme` whose directory never answers (nothing listens on port 1).
fn unreachable_acme(storage: &std::path::Path, certs: &str) -> String {
    format!(
        r#"{}
tls = {{ {certs}acme = {{ directory = "https://127.0.0.1:1/dir", domains = {DOMAINS:?}, storage = {:?} }} }}

[[pools]]
name = "app"
endpoints = [{{ url = "http://127.0.0.1:1" }}]

[[routes]]
name = "all"
pool = "app"
"#,
        listeners_toml(),
        storage.display().to_string()
    )
}

#[tokio::test]
async fn before_issuance_the_configured_default_serves_and_without_one_the_handshake_fails() {
    let ca = support::certs::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let fallback = ca.leaf(&["fallback.test"]);
    let (cert, key) = fallback.write(dir.path(), "fallback");
    let certs = format!("certs = [{{ cert = {cert:?}, key = {key:?} }}], ");
    let proxy = TestProxy::from_toml(&unreachable_acme(&dir.path().join("acme"), &certs))
        .start()
        .await;
    // The listener is up although the ACME server is not; an ACME name gets the
    // configured default certificate until one is issued.
    let addr = proxy.addr("public");
    let served = support::certs::served_cert(addr, Some(DOMAINS[0]), support::certs::Offer::All)
        .await
        .unwrap();
    assert_eq!(served, fallback.der);

    let proxy = TestProxy::from_toml(&unreachable_acme(&dir.path().join("acme2"), ""))
        .start()
        .await;
    let client = support::certs::https_client(&ca.pem(), &[DOMAINS[0]], proxy.addr("public"));
    let refused = client
        .get(format!(
            "https://{}:{}/",
            DOMAINS[0],
            proxy.addr("public").port()
        ))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
}

#[test]
fn acme_errors_in_a_listener_name_the_key_and_the_line() {
    let text = format!(
        "{}tls = {{ acme = {{ directory = \"http://acme.example/dir\", domains = [\"a.example.com\"], storage = \"s\" }} }}\n",
        listeners_toml()
    );
    let errors = junction::config::checking(|context| {
        junction::config::load_str(&text, std::path::Path::new("."), context)
    })
    .err()
    .expect("refused");
    let error = &errors.0[0];
    assert_eq!(error.path, "listeners[0].tls.acme.directory", "{errors}");
    assert!(error.message.contains("https://"), "{errors}");
    assert_eq!(error.line, Some(8), "{errors}");
}
