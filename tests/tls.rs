//! TLS on listeners: certificates picked by SNI (exact names, wildcards, the default,
//! ECDSA or RSA by the client's signature schemes), reloaded in place when their files
//! change, expiry in the metrics, `junction check` and `/api/config`, full and resumed
//! handshakes counted.

use crate::support;

use std::net::SocketAddr;
use std::path::Path;

use support::certs::{
    Leaf, Offer, TestCa, get_over, https_client, peer_leaf, served_cert, tls_connect,
    verified_handshake,
};
use support::raw_http::within;
use support::{TestProxy, TestUpstream};

/// A gateway with one TLS listener ("public") whose `tls` table is `tls`, routing
/// everything to `upstream`.
fn config(tls: &str, upstream: &str) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"
tls = {tls}

[[pools]]
name = "p"
endpoints = [{{ url = "{upstream}" }}]

[[routes]]
name = "all"
pool = "p"
"#
    )
}

fn entry(dir: &Path, leaf: &Leaf, name: &str) -> String {
    let (cert, key) = leaf.write(dir, name);
    format!("{{ cert = {:?}, key = {:?} }}", cert, key)
}

/// Three certificates: `a.test`, `*.b.test`, and `c.test` (the default).
struct Sni {
    ca: TestCa,
    a: Leaf,
    b: Leaf,
    c: Leaf,
    _dir: tempfile::TempDir,
    tls: String,
}

fn sni_setup() -> Sni {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let a = ca.leaf(&["a.test"]);
    let b = ca.leaf(&["*.b.test"]);
    let c = ca.leaf(&["c.test"]);
    let tls = format!(
        "{{ certs = [{}, {}, {}], default = \"c.test\" }}",
        entry(dir.path(), &a, "a"),
        entry(dir.path(), &b, "b"),
        entry(dir.path(), &c, "c"),
    );
    Sni {
        ca,
        a,
        b,
        c,
        _dir: dir,
        tls,
    }
}

async fn served(addr: SocketAddr, sni: Option<&str>) -> rustls::pki_types::CertificateDer<'static> {
    within("TLS handshake", served_cert(addr, sni, Offer::All))
        .await
        .expect("handshake")
}

#[tokio::test]
async fn the_certificate_is_picked_by_the_name_the_client_asks_for() {
    let upstream = TestUpstream::named("u").start().await;
    let sni = sni_setup();
    let proxy = TestProxy::from_toml(&config(&sni.tls, &upstream.url()))
        .start()
        .await;
    let addr = proxy.addr("public");
    assert_eq!(served(addr, Some("a.test")).await, sni.a.der, "exact name");
    assert_eq!(
        served(addr, Some("A.TEST")).await,
        sni.a.der,
        "names ignore case"
    );
    assert_eq!(served(addr, Some("x.b.test")).await, sni.b.der, "wildcard");
    assert_eq!(served(addr, Some("c.test")).await, sni.c.der);
    // A wildcard covers one label: neither the bare name nor two labels.
    assert_eq!(served(addr, Some("b.test")).await, sni.c.der, "default");
    assert_eq!(served(addr, Some("y.x.b.test")).await, sni.c.der, "default");
    assert_eq!(served(addr, None).await, sni.c.der, "no SNI: the default");

    // A real client, verifying against the CA, through to the upstream.
    let client = https_client(&sni.ca.pem(), &["a.test", "x.b.test", "c.test"], addr);
    for host in ["a.test", "x.b.test", "c.test"] {
        let reply = within(
            host,
            client
                .get(format!("https://{host}:{}/v1/x", addr.port()))
                .send(),
        )
        .await
        .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(reply.status(), 200, "{host}");
        assert_eq!(reply.headers()["x-upstream"], "u");
    }
}

#[tokio::test]
async fn a_name_no_certificate_serves_gets_the_default_and_fails_verification() {
    let upstream = TestUpstream::named("u").start().await;
    let sni = sni_setup();
    let proxy = TestProxy::from_toml(&config(&sni.tls, &upstream.url()))
        .start()
        .await;
    let addr = proxy.addr("public");
    assert_eq!(served(addr, Some("other.test")).await, sni.c.der);
    let refused = within(
        "handshake",
        verified_handshake(addr, "other.test", &sni.ca.der()),
    )
    .await;
    let error = refused.expect_err("the default certificate does not serve other.test");
    assert!(error.to_string().contains("not valid for name"), "{error}");
    let client = https_client(&sni.ca.pem(), &["other.test"], addr);
    let failed = within(
        "request",
        client
            .get(format!("https://other.test:{}/", addr.port()))
            .send(),
    )
    .await;
    assert!(failed.is_err(), "{failed:?}");
    verified_handshake(addr, "a.test", &sni.ca.der())
        .await
        .expect("a.test verifies");
}

#[tokio::test]
async fn ecdsa_and_rsa_certificates_of_one_name_are_chosen_by_the_clients_schemes() {
    let upstream = TestUpstream::named("u").start().await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let rsa = ca.rsa_leaf(&["both.test"]);
    let ecdsa = ca.leaf(&["both.test"]);
    // RSA listed first: ECDSA is still preferred by a client that takes both.
    let tls = format!(
        "{{ certs = [{}, {}] }}",
        entry(dir.path(), &rsa, "rsa"),
        entry(dir.path(), &ecdsa, "ecdsa")
    );
    let proxy = TestProxy::from_toml(&config(&tls, &upstream.url()))
        .start()
        .await;
    let addr = proxy.addr("public");
    let offered = |offer| served_cert(addr, Some("both.test"), offer);
    assert_eq!(offered(Offer::All).await.unwrap(), ecdsa.der);
    assert_eq!(offered(Offer::EcdsaOnly).await.unwrap(), ecdsa.der);
    assert_eq!(offered(Offer::RsaOnly).await.unwrap(), rsa.der);
    // Without SNI too: the default is the first certificate's names, both keys.
    assert_eq!(
        served_cert(addr, None, Offer::RsaOnly).await.unwrap(),
        rsa.der
    );
}

#[tokio::test]
async fn the_single_certificate_form_still_works() {
    let upstream = TestUpstream::named("u").start().await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.leaf(&["localhost"]);
    let tls = entry(dir.path(), &leaf, "one");
    let proxy = TestProxy::from_toml(&config(&tls, &upstream.url()))
        .start()
        .await;
    let addr = proxy.addr("public");
    let client = https_client(&ca.pem(), &["localhost"], addr);
    let reply = client
        .get(format!("https://localhost:{}/", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    // Any name at all gets the one certificate.
    assert_eq!(served(addr, Some("elsewhere.test")).await, leaf.der);
}

#[tokio::test]
async fn certificate_errors_name_the_key_and_the_file() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let good = ca.leaf(&["a.test"]);
    let other = ca.leaf(&["b.test"]);
    let (cert, _) = good.write(dir.path(), "good");
    let (_, wrong_key) = other.write(dir.path(), "other");
    let cases = [
        (
            format!("{{ certs = [{{ cert = {cert:?}, key = {wrong_key:?} }}] }}"),
            "listeners[0].tls.certs[0].key",
            "does not belong",
        ),
        (
            format!(
                "{{ certs = [{}], default = \"z.test\" }}",
                entry(dir.path(), &good, "g2")
            ),
            "listeners[0].tls.default",
            "z.test",
        ),
        (
            "{ cert = \"/nonexistent.pem\", key = \"/nonexistent.key\" }".to_string(),
            "listeners[0].tls.cert",
            "cannot read",
        ),
        ("{ }".to_string(), "listeners[0].tls", "needs a certificate"),
    ];
    for (tls, path, words) in cases {
        let text = config(&tls, "http://127.0.0.1:1");
        let errors = junction::config::checking(|context| {
            junction::config::load_str(&text, Path::new("."), context)
        })
        .err()
        .unwrap_or_else(|| panic!("{tls} loaded"));
        let error = &errors.0[0];
        assert_eq!(error.path, path, "{errors}");
        assert!(error.message.contains(words), "{errors}");
        assert!(error.line.is_some(), "{errors}");
    }
}

/// The `junction_tls_certificate_reloads_total` count of listener "public" for `outcome`.
async fn reloads(proxy: &support::proxy::RunningProxy, outcome: &str) -> f64 {
    let metrics = support::parse_metrics(&proxy.metrics_text().await);
    let series = format!(
        "junction_tls_certificate_reloads_total{{listener=\"public\",outcome=\"{outcome}\"}}"
    );
    metrics.get(&series).copied().unwrap_or(0.0)
}

/// Polls until `condition` holds (the watcher runs every 50ms); panics after 10s.
async fn until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(what, async {
        while !condition().await {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_replaced_certificate_reaches_new_connections_while_open_ones_keep_theirs() {
    let upstream = TestUpstream::named("u").start().await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let old = ca.leaf(&["a.test"]);
    let tls = format!(
        "{{ certs = [{}], watch = \"50ms\" }}",
        entry(dir.path(), &old, "a")
    );
    let proxy = TestProxy::from_toml(&config(&tls, &upstream.url()))
        .start()
        .await;
    let addr = proxy.addr("public");
    let mut open = tls_connect(addr, Some("a.test"), Offer::All).await.unwrap();
    assert_eq!(peer_leaf(&open), old.der);

    let new = ca.leaf(&["a.test"]);
    new.write(dir.path(), "a");
    until("the new certificate is served", || async {
        served_cert(addr, Some("a.test"), Offer::All).await.unwrap() == new.der
    })
    .await;
    assert_eq!(reloads(&proxy, "reloaded").await, 1.0);
    // The connection opened before still works, on its old certificate.
    let head = within("answer", get_over(&mut open, "a.test", "/")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(peer_leaf(&open), old.der);
}

#[tokio::test]
async fn a_broken_certificate_file_is_refused_and_counted_and_the_old_one_keeps_serving() {
    let upstream = TestUpstream::named("u").start().await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let old = ca.leaf(&["a.test"]);
    let tls = format!(
        "{{ certs = [{}], watch = \"50ms\" }}",
        entry(dir.path(), &old, "a")
    );
    let proxy = TestProxy::from_toml(&config(&tls, &upstream.url()))
        .start()
        .await;
    let addr = proxy.addr("public");

    std::fs::write(
        dir.path().join("a.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n",
    )
    .unwrap();
    until("the broken file is refused", || async {
        reloads(&proxy, "refused").await >= 1.0
    })
    .await;
    assert_eq!(served(addr, Some("a.test")).await, old.der);
    let client = https_client(&ca.pem(), &["a.test"], addr);
    let reply = client
        .get(format!("https://a.test:{}/", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);

    // A key that belongs to another certificate is refused too.
    let other = ca.leaf(&["a.test"]);
    std::fs::write(dir.path().join("a.pem"), &other.cert_pem).unwrap();
    until("the mismatched key is refused", || async {
        reloads(&proxy, "refused").await >= 2.0
    })
    .await;
    assert_eq!(served(addr, Some("a.test")).await, old.der);

    // Fixed: the next look loads it.
    std::fs::write(dir.path().join("a.key"), &other.key_pem).unwrap();
    until("the fixed pair is served", || async {
        served_cert(addr, Some("a.test"), Offer::All).await.unwrap() == other.der
    })
    .await;
    assert_eq!(reloads(&proxy, "reloaded").await, 1.0);
}

#[tokio::test]
async fn a_config_reload_reads_the_certificates_again() {
    let upstream = TestUpstream::named("u").start().await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let old = ca.leaf(&["a.test"]);
    let tls = format!(
        "{{ certs = [{}], watch = \"off\" }}",
        entry(dir.path(), &old, "a")
    );
    std::fs::write(dir.path().join("admin.token"), "s3cret\n").unwrap();
    let text = config(&tls, &upstream.url()).replace(
        "bind = \"127.0.0.1:0\"\n\n[[listeners]]",
        "bind = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n[[listeners]]",
    );
    let path = dir.path().join("junction.toml");
    std::fs::write(&path, text).unwrap();
    let proxy = support::proxy::RunningProxy::from_file(&path).await;
    let addr = proxy.addr("public");

    let new = ca.leaf(&["a.test"]);
    new.write(dir.path(), "a");
    assert_eq!(served(addr, Some("a.test")).await, old.der, "not watched");
    assert_eq!(proxy.reload().await.status(), 200);
    assert_eq!(served(addr, Some("a.test")).await, new.der);

    // A broken file fails the reload: the config and certificate in force stay.
    std::fs::write(dir.path().join("a.key"), "garbage").unwrap();
    let refused = proxy.reload().await;
    assert_ne!(refused.status(), 200);
    let body = refused.text().await.unwrap();
    assert!(body.contains("listeners[0].tls.certs[0].key"), "{body}");
    assert_eq!(served(addr, Some("a.test")).await, new.der);
}

#[tokio::test]
async fn certificates_swapped_under_load_fail_no_request() {
    let upstream = TestUpstream::named("u").start().await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let first = ca.leaf(&["a.test"]);
    let tls = format!(
        "{{ certs = [{}], watch = \"20ms\" }}",
        entry(dir.path(), &first, "a")
    );
    let proxy = TestProxy::from_toml(&config(&tls, &upstream.url()))
        .start()
        .await;
    let addr = proxy.addr("public");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, pem) = (stop.clone(), ca.pem());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A new client each time: every request is a new TLS handshake.
                let client = https_client(&pem, &["a.test"], addr);
                match client
                    .get(format!("https://a.test:{}/", addr.port()))
                    .send()
                    .await
                {
                    Ok(reply) if reply.status() == 200 => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        }));
    }
    // Five swaps, each written in place (not renamed): a half-written pair is refused
    // and the certificate before it keeps serving.
    for round in 0..5 {
        let next = ca.leaf(&["a.test"]);
        next.write(dir.path(), "a");
        until(&format!("swap {round}"), || async {
            served_cert(addr, Some("a.test"), Offer::All).await.unwrap() == next.der
        })
        .await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for task in load {
        let (ok, failed) = task.await.unwrap();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        total += ok;
    }
    assert!(total > 0);
    assert!(reloads(&proxy, "reloaded").await >= 5.0);
}

const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

#[tokio::test]
async fn expiry_is_in_the_metrics_and_api_config_shows_names_and_expiries_but_no_key() {
    let upstream = TestUpstream::named("u").start().await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let soon = ca.expiring_leaf(&["soon.test"], 5 * DAY);
    let later = ca.expiring_leaf(&["later.test", "*.later.test"], 400 * DAY);
    let tls = format!(
        "{{ certs = [{}, {}] }}",
        entry(dir.path(), &soon, "soon"),
        entry(dir.path(), &later, "later")
    );
    let proxy = TestProxy::from_toml(&config(&tls, &upstream.url()))
        .start()
        .await;
    let text = proxy.metrics_text().await;
    let metrics = support::parse_metrics(&text);
    let expiry = |name: &str| {
        let series = format!(
            "junction_tls_certificate_expiry_seconds{{listener=\"public\",name=\"{name}\"}}"
        );
        *metrics
            .get(&series)
            .unwrap_or_else(|| panic!("{series} in\n{text}"))
    };
    let days = |seconds: f64| seconds / DAY.as_secs_f64();
    assert!((4.9..=5.0).contains(&days(expiry("soon.test"))));
    assert!((399.9..=400.0).contains(&days(expiry("later.test"))));
    assert!((399.9..=400.0).contains(&days(expiry("*.later.test"))));
    support::promtool_check(&text).await;

    let config = proxy.admin_json("/api/config").await;
    let certificates = &config["listeners"][0]["tls"]["certificates"];
    assert_eq!(certificates[0]["names"], serde_json::json!(["soon.test"]));
    assert_eq!(
        certificates[1]["names"],
        serde_json::json!(["later.test", "*.later.test"])
    );
    assert_eq!(certificates[0]["key_type"], "ecdsa");
    let left = certificates[0]["expires_in_seconds"].as_i64().unwrap();
    assert!((4 * 86_400..=5 * 86_400).contains(&left), "{left}");
    assert!(
        certificates[0]["not_after"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let whole = config.to_string();
    assert!(!whole.contains("PRIVATE KEY"), "{whole}");
}

/// `junction check` on a config file: its exit code and its standard error.
async fn junction_check(path: &Path) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_junction"))
        .arg("check")
        .arg("--config")
        .arg(path)
        .kill_on_drop(true)
        .output();
    let output = within("junction check", output)
        .await
        .expect("junction runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn junction_check_warns_of_expiring_certificates_and_hosts_no_certificate_serves() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let soon = ca.expiring_leaf(&["soon.test"], 10 * DAY);
    let fine = ca.expiring_leaf(&["fine.test", "*.fine.test"], 90 * DAY);
    let tls = format!(
        "{{ certs = [{}, {}] }}",
        entry(dir.path(), &soon, "soon"),
        entry(dir.path(), &fine, "fine")
    );
    let mut text = config(&tls, "http://127.0.0.1:1");
    for (name, host) in [
        ("a", "api.fine.test"),
        ("b", "other.test"),
        ("c", "*.soon.test"),
    ] {
        text.push_str(&format!(
            "\n[[routes]]\nname = \"{name}\"\nmatch = {{ host = \"{host}\" }}\npool = \"p\"\n"
        ));
    }
    let path = dir.path().join("junction.toml");
    std::fs::write(&path, &text).unwrap();
    let (code, stderr) = junction_check(&path).await;
    assert_eq!(code, Some(0), "warnings do not fail the check: {stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 3, "{stderr}");
    assert!(
        warnings[0].contains("listeners[0].tls.certs[0].cert"),
        "{stderr}"
    );
    assert!(warnings[0].contains("soon.test expires on"), "{stderr}");
    assert!(warnings[0].contains("in 10 days"), "{stderr}");
    assert!(warnings[1].contains("routes[2].match.host"), "{stderr}");
    assert!(warnings[1].contains("\"other.test\""), "{stderr}");
    assert!(warnings[2].contains("routes[3].match.host"), "{stderr}");
    assert!(stderr.contains("(line "), "{stderr}");

    // A key that is not the certificate's is an error, not a warning.
    std::fs::copy(dir.path().join("fine.key"), dir.path().join("soon.key")).unwrap();
    let (code, stderr) = junction_check(&path).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("listeners[0].tls.certs[0].key"), "{stderr}");
    assert!(stderr.contains("does not belong"), "{stderr}");
}

#[tokio::test]
async fn listeners_speak_tls_1_2_and_1_3_offer_h2_and_resume_sessions_across_a_reload() {
    use std::sync::Arc;
    use support::certs::{connect_with, trusting_client};
    let upstream = TestUpstream::named("u").start().await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.leaf(&["a.test"]);
    let tls = entry(dir.path(), &leaf, "a");
    std::fs::write(dir.path().join("admin.token"), "s3cret\n").unwrap();
    let text = config(&tls, &upstream.url()).replace(
        "bind = \"127.0.0.1:0\"\n\n[[listeners]]",
        "bind = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n[[listeners]]",
    );
    let path = dir.path().join("junction.toml");
    std::fs::write(&path, text).unwrap();
    let proxy = support::proxy::RunningProxy::from_file(&path).await;
    let addr = proxy.addr("public");

    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut config = trusting_client(Offer::All, &[version]);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let first = connect_with(config.clone(), addr, Some("a.test"))
            .await
            .unwrap();
        let (_, connection) = first.get_ref();
        assert_eq!(connection.protocol_version(), Some(expected));
        assert_eq!(connection.alpn_protocol(), Some(&b"h2"[..]), "h2 first");
        assert_eq!(
            connection.handshake_kind(),
            Some(rustls::HandshakeKind::Full)
        );
        // TLS 1.3 tickets arrive after the handshake: speak a little HTTP/2 (the
        // preface and an empty SETTINGS frame; the server answers with its SETTINGS)
        // so the client reads them before the next connection.
        let mut open = first;
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
            open.write_all(preface).await.unwrap();
            let mut frame = [0u8; 9];
            within("the server's SETTINGS", open.read_exact(&mut frame))
                .await
                .unwrap();
            assert_eq!(frame[3], 4, "a SETTINGS frame");
        }
        drop(open);
        // The same client again: its session resumes (a ticket, or a 1.2 session id).
        let again = connect_with(config.clone(), addr, Some("a.test"))
            .await
            .unwrap();
        assert_eq!(
            again.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "{expected:?}"
        );
        if expected == rustls::ProtocolVersion::TLSv1_3 {
            // Ticket keys outlive a config reload.
            drop(again);
            assert_eq!(proxy.reload().await.status(), 200);
            let after = connect_with(config, addr, Some("a.test")).await.unwrap();
            assert_eq!(
                after.get_ref().1.handshake_kind(),
                Some(rustls::HandshakeKind::Resumed),
                "after a reload"
            );
        }
    }
    // The server counted them alike: a full handshake per version, three resumed. The
    // server ends its side of a handshake after the client's: poll for the last one.
    let handshakes = |kind: &'static str| {
        let proxy = &proxy;
        async move {
            let metrics = support::parse_metrics(&proxy.metrics_text().await);
            let series =
                format!("junction_tls_handshakes_total{{listener=\"public\",kind=\"{kind}\"}}");
            metrics.get(&series).copied().unwrap_or(0.0)
        }
    };
    until("three resumed handshakes counted", || async {
        handshakes("resumed").await >= 3.0
    })
    .await;
    assert_eq!(handshakes("resumed").await, 3.0);
    assert_eq!(handshakes("full").await, 2.0);
}
