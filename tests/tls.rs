//! TLS on listeners: certificates picked by SNI (exact names, wildcards, the default,
//! ECDSA or RSA by the client's signature schemes), reloaded in place when their files
//! change, expiry in the metrics, `junction check` and `/api/config`.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use support::certs::{Leaf, Offer, TestCa, https_client, served_cert, verified_handshake};
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
