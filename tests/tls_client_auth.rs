//! Client certificates on listeners (mTLS): required and optional, the verified
//! identity passed upstream in a header a client cannot forge (both engines), routes
//! authorized by identity, and the identity in the access log.

use crate::support;

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
use support::certs::{Leaf, TestCa};
use support::raw_http::within;
use support::{TestProxy, TestUpstream, wait_for_lines};

const HEADER: &str = "x-client-id";

/// The server certificate, the client CA and the client certificates of a test.
struct Pki {
    dir: tempfile::TempDir,
    server_ca: TestCa,
    client_ca: TestCa,
    billing: Leaf,
    admin: Leaf,
    /// Signed by a CA the listener does not trust.
    stranger: Leaf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new();
    let client_ca = TestCa::new();
    server_ca.leaf(&["api.test"]).write(dir.path(), "server");
    std::fs::write(dir.path().join("clients-ca.pem"), client_ca.pem()).unwrap();
    let billing = client_ca.client_leaf("billing", &[], &["spiffe://example.org/billing"]);
    let admin = client_ca.client_leaf("ops-admin", &["admin.internal"], &[]);
    let stranger = TestCa::new().client_leaf("stranger", &[], &["spiffe://example.org/billing"]);
    Pki {
        dir,
        server_ca,
        client_ca,
        billing,
        admin,
        stranger,
    }
}

/// One TLS listener with `client_auth`, routes `/open` (no auth) and `/admin` (only
/// the identities `CN=ops-admin` and `admin.*`), and an access log.
fn config(pki: &Pki, required: bool, fast_path: bool, upstream: &str) -> String {
    let dir = pki.dir.path().display();
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[access_log]
path = "{dir}/access.log"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"
fast_path = {fast_path}
tls = {{ cert = "{dir}/server.pem", key = "{dir}/server.key", client_auth = {{ ca = "{dir}/clients-ca.pem", required = {required}, header = "{HEADER}" }} }}

[[pools]]
name = "p"
endpoints = [{{ url = "{upstream}" }}]

[[routes]]
name = "admin"
match = {{ path_prefix = "/admin" }}
pool = "p"
auth = {{ identities = ["CN=ops-admin", "admin.*"] }}

[[routes]]
name = "open"
pool = "p"
"#
    )
}

fn client(pki: &Pki, addr: SocketAddr, identity: Option<&Leaf>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(pki.server_ca.pem().as_bytes()).unwrap(),
        )
        .resolve("api.test", addr)
        // HTTP/1.1, so that the fast path serves what it can (h2 is hyper's).
        .http1_only();
    if let Some(leaf) = identity {
        let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// GET `path` with a forged identity header; the status and, on 200, what the
/// upstream saw in the identity header.
async fn get(
    client: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
) -> reqwest::Result<(u16, Option<String>)> {
    let reply = within(
        path,
        client
            .get(format!("https://api.test:{}{path}", addr.port()))
            .header(HEADER, "spiffe://example.org/forged")
            .send(),
    )
    .await?;
    let status = reply.status().as_u16();
    if status != 200 {
        return Ok((status, None));
    }
    let echo: Value = reply.json().await?;
    Ok((status, echo["headers"][HEADER].as_str().map(String::from)))
}

#[tokio::test]
async fn a_required_client_certificate_is_verified_and_its_identity_passed_upstream_on_both_engines()
 {
    let upstream = TestUpstream::named("u").start().await;
    for fast_path in [true, false] {
        let pki = pki();
        let proxy = TestProxy::from_toml(&config(&pki, true, fast_path, &upstream.url()))
            .start()
            .await;
        let addr = proxy.addr("public");

        let billing = client(&pki, addr, Some(&pki.billing));
        let (status, seen) = get(&billing, addr, "/open").await.unwrap();
        assert_eq!(status, 200, "fast_path {fast_path}");
        assert_eq!(
            seen.as_deref(),
            Some("spiffe://example.org/billing"),
            "fast_path {fast_path}"
        );
        // Keep-alive: the second request on the connection carries it too.
        let (_, seen) = get(&billing, addr, "/open").await.unwrap();
        assert_eq!(seen.as_deref(), Some("spiffe://example.org/billing"));

        let anonymous = client(&pki, addr, None);
        assert!(
            get(&anonymous, addr, "/open").await.is_err(),
            "no certificate: refused"
        );
        let stranger = client(&pki, addr, Some(&pki.stranger));
        assert!(
            get(&stranger, addr, "/open").await.is_err(),
            "untrusted CA: refused"
        );

        // Identity-based route authorization.
        let (status, _) = get(&billing, addr, "/admin").await.unwrap();
        assert_eq!(status, 403);
        let admin = client(&pki, addr, Some(&pki.admin));
        let (status, seen) = get(&admin, addr, "/admin").await.unwrap();
        assert_eq!(status, 200);
        // No URI SAN: its DNS name stands for it.
        assert_eq!(seen.as_deref(), Some("admin.internal"));

        let lines = wait_for_lines(&pki.dir.path().join("access.log"), 4).await;
        let identities: Vec<Value> = lines
            .iter()
            .map(|line| serde_json::from_str::<Value>(line).unwrap()["client_identity"].clone())
            .collect();
        assert_eq!(
            identities,
            [
                "spiffe://example.org/billing",
                "spiffe://example.org/billing",
                "spiffe://example.org/billing",
                "admin.internal"
            ],
            "fast_path {fast_path}"
        );
    }
}

#[tokio::test]
async fn an_optional_client_certificate_lets_anonymous_clients_in_without_an_identity() {
    let upstream = TestUpstream::named("u").start().await;
    for fast_path in [true, false] {
        let pki = pki();
        let proxy = TestProxy::from_toml(&config(&pki, false, fast_path, &upstream.url()))
            .start()
            .await;
        let addr = proxy.addr("public");
        let anonymous = client(&pki, addr, None);
        let (status, seen) = get(&anonymous, addr, "/open").await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            seen, None,
            "the forged header is removed (fast_path {fast_path})"
        );
        let (status, _) = get(&anonymous, addr, "/admin").await.unwrap();
        assert_eq!(status, 401, "an identity route needs a certificate");

        let billing = client(&pki, addr, Some(&pki.billing));
        let (status, seen) = get(&billing, addr, "/open").await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(seen.as_deref(), Some("spiffe://example.org/billing"));
        // A certificate from another CA is still refused, even though one is optional.
        let stranger = client(&pki, addr, Some(&pki.stranger));
        assert!(get(&stranger, addr, "/open").await.is_err());
    }
}

#[tokio::test]
async fn client_auth_errors_name_their_key() {
    let pki = pki();
    let text =
        config(&pki, true, true, "http://127.0.0.1:1").replace("clients-ca.pem", "missing-ca.pem");
    let errors = junction::config::checking(|context| {
        junction::config::load_str(&text, Path::new("."), context)
    })
    .err()
    .expect("a missing CA file is an error");
    assert_eq!(
        errors.0[0].path, "listeners[0].tls.client_auth.ca",
        "{errors}"
    );
    let _ = &pki.client_ca;
}

#[tokio::test]
async fn identities_on_a_listener_that_asks_for_no_certificate_are_a_warning() {
    let pki = pki();
    let dir = pki.dir.path().display();
    let text = config(&pki, true, true, "http://127.0.0.1:1").replace(
        &format!(
            r#", client_auth = {{ ca = "{dir}/clients-ca.pem", required = true, header = "{HEADER}" }}"#
        ),
        "",
    );
    let plan = junction::config::checking(|context| {
        junction::config::load_str(&text, Path::new("."), context)
    })
    .expect("valid, with a warning");
    let paths: Vec<&str> = plan.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(paths, ["routes[0].auth.identities"], "{:?}", plan.warnings);
}
