//! The admin API against a browser's attacks, on real sockets: a page of another site
//! cannot make it reload (cross-site `Origin`, `Sec-Fetch-Site`, form content types),
//! and a DNS-rebound name cannot read it (`Host` other than its address or `[admin] hosts`).
//! And the admin token: every changing call needs it, reads too with
//! `read_requires_token`, never the probes.

use crate::support;

use std::net::SocketAddr;

use support::proxy::RunningProxy;
use support::raw_http::{RawClient, RawResponse};
use support::{TestUpstream, client};

fn config(upstream: &str, route: &str, admin_keys: &str) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"
{admin_keys}

[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{{ url = "{upstream}" }}]

[[routes]]
name = "{route}"
pool = "p"
"#
    )
}

/// The route names in the running config, as `GET /api/config` shows them.
async fn routes(proxy: &RunningProxy) -> Vec<String> {
    let config = proxy.admin_json("/api/config").await;
    config["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

async fn raw(admin: SocketAddr, method: &str, text: &str) -> RawResponse {
    RawClient::connect_to(admin)
        .await
        .request(method, text)
        .await
}

#[tokio::test]
async fn a_cross_site_reload_is_refused_and_a_same_origin_one_is_served() {
    let upstream = TestUpstream::named("p").start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junction.toml");
    std::fs::write(dir.path().join("admin.token"), "s3cret\n").unwrap();
    let token = r#"token_file = "admin.token""#;
    std::fs::write(&path, config(&upstream.url(), "before", token)).unwrap();
    let proxy = RunningProxy::from_file(&path).await;
    let admin = proxy.gateway.admin_addr().unwrap();
    std::fs::write(&path, config(&upstream.url(), "after", token)).unwrap();

    // What a page on evil.example can send with fetch(..., {mode: "no-cors"}) or a form.
    let attacks = [
        "Origin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
        "Origin: null\r\nContent-Length: 0\r\n\r\n",
        "Origin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\nContent-Length: 0\r\n\r\n",
        "Sec-Fetch-Site: cross-site\r\nContent-Length: 0\r\n\r\n",
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b",
    ];
    for attack in attacks {
        let reply = raw(
            admin,
            "POST",
            &format!("POST /api/reload HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer s3cret\r\n{attack}"),
        )
        .await;
        assert_eq!(reply.status, 403, "{attack}: {}", reply.text());
        assert_eq!(reply.error_type(), "cross_site_request", "{attack}");
    }
    assert_eq!(routes(&proxy).await, ["before"], "no refused call reloaded");

    let reply = raw(
        admin,
        "POST",
        &format!("POST /api/reload HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer s3cret\r\nOrigin: http://{admin}\r\nSec-Fetch-Site: same-origin\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(routes(&proxy).await, ["after"]);

    // Outside a browser (curl, scripts): no Origin, no body.
    std::fs::write(&path, config(&upstream.url(), "again", token)).unwrap();
    let reply = proxy.reload().await;
    assert_eq!(reply.status(), 200);
    assert_eq!(routes(&proxy).await, ["again"]);
}

#[tokio::test]
async fn a_rebound_host_cannot_read_the_admin_api_and_a_configured_name_can() {
    let upstream = TestUpstream::named("p").start().await;
    let proxy = support::TestProxy::from_toml(&config(
        &upstream.url(),
        "r",
        r#"hosts = ["admin.internal", "Admin.Example:9901"]"#,
    ))
    .start()
    .await;
    let admin = proxy.gateway.admin_addr().unwrap();
    let port = admin.port();
    for path in ["/api/config", "/metrics", "/api/pools"] {
        for host in [
            format!("evil.example:{port}"),
            "evil.example".to_string(),
            format!("admin.internal:{port}"),
        ] {
            let reply = raw(
                admin,
                "GET",
                &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            )
            .await;
            assert_eq!(reply.status, 421, "{path} for {host}: {}", reply.text());
            assert_eq!(reply.error_type(), "misdirected_request");
        }
        for host in [
            format!("{admin}"),
            format!("localhost:{port}"),
            "admin.internal".to_string(),
            "admin.example:9901".to_string(),
        ] {
            let reply = raw(
                admin,
                "GET",
                &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            )
            .await;
            assert_eq!(reply.status, 200, "{path} for {host}: {}", reply.text());
        }
    }
    // Absolute form: the target's authority is the host, and a Host that differs is refused.
    let reply = raw(
        admin,
        "GET",
        &format!("GET http://evil.example:{port}/api/config HTTP/1.1\r\nHost: {admin}\r\n\r\n"),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let reply = raw(admin, "GET", "GET /api/config HTTP/1.0\r\n\r\n").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.error_type(), "missing_host");
    // What reqwest, curl and the other suites send: the address they connected to.
    let reply = client()
        .get(proxy.admin_url("/api/config"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
}

#[test]
fn a_bad_admin_host_is_a_config_error_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junction.toml");
    std::fs::write(
        &path,
        config(
            "http://127.0.0.1:1",
            "r",
            r#"hosts = ["admin.internal", "http://admin.internal/"]"#,
        ),
    )
    .unwrap();
    let errors = match junction::server::Gateway::from_file(
        path.clone(),
        std::sync::Arc::new(junction::balance::SplitMix::with_seed(1)),
    ) {
        Ok(_) => panic!("a URL in [admin] hosts was accepted"),
        Err(errors) => errors.to_string(),
    };
    assert!(errors.contains("admin.hosts[1]"), "{errors}");
    assert!(errors.contains("line 4"), "{errors}");
}

/// `POST /api/reload` answered without the token, with a wrong one, and with the one in
/// `token_file`; nothing but the last reloads.
async fn post_reload(proxy: &RunningProxy, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = client().post(proxy.admin_url("/api/reload"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let reply = request.send().await.unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap())
}

#[tokio::test]
async fn a_reload_needs_the_admin_token() {
    let upstream = TestUpstream::named("p").start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junction.toml");
    std::fs::write(dir.path().join("admin.token"), "  s3cret\n").unwrap();
    let token = r#"token_file = "admin.token""#;
    std::fs::write(&path, config(&upstream.url(), "before", token)).unwrap();
    let proxy = RunningProxy::from_file(&path).await;
    std::fs::write(&path, config(&upstream.url(), "after", token)).unwrap();

    for presented in [None, Some("wrong"), Some("s3cre")] {
        let (status, body) = post_reload(&proxy, presented).await;
        assert_eq!(status, 401, "{presented:?}: {body}");
        assert_eq!(body["error"]["type"], "unauthorized");
    }
    assert_eq!(routes(&proxy).await, ["before"], "no refused call reloaded");
    // The file's surrounding white space is not part of the token.
    let (status, body) = post_reload(&proxy, Some("s3cret")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(routes(&proxy).await, ["after"]);
    // Reads stay open by default, and the probes always are.
    for path in [
        "/api/config",
        "/api/pools",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        let reply = client().get(proxy.admin_url(path)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{path}");
    }

    // No token configured: nothing can authorise a reload.
    let open = support::TestProxy::from_toml(&config(&upstream.url(), "r", ""))
        .start()
        .await;
    let (status, body) = post_reload(&open, Some("s3cret")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "admin_token_not_set");
}

#[tokio::test]
async fn read_requires_token_closes_the_reads_but_not_the_probes() {
    let upstream = TestUpstream::named("p").start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junction.toml");
    std::fs::write(dir.path().join("admin.token"), "s3cret").unwrap();
    let keys = "token_file = \"admin.token\"\nread_requires_token = true";
    std::fs::write(&path, config(&upstream.url(), "r", keys)).unwrap();
    let proxy = RunningProxy::from_file(&path).await;
    for path in [
        "/api/config",
        "/api/pools",
        "/api/stats",
        "/metrics",
        "/api/routes/r/split",
    ] {
        let reply = client().get(proxy.admin_url(path)).send().await.unwrap();
        assert_eq!(reply.status(), 401, "{path}");
        assert_eq!(reply.headers()["www-authenticate"], "Bearer", "{path}");
        let reply = client()
            .get(proxy.admin_url(path))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_ne!(reply.status(), 401, "{path}");
    }
    for path in ["/healthz", "/readyz"] {
        let reply = client().get(proxy.admin_url(path)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{path}");
    }
}

#[test]
fn a_token_file_that_cannot_be_read_or_is_empty_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junction.toml");
    std::fs::write(dir.path().join("empty.token"), " \n").unwrap();
    let load = |keys: &str| {
        std::fs::write(&path, config("http://127.0.0.1:1", "r", keys)).unwrap();
        match junction::server::Gateway::from_file(
            path.clone(),
            std::sync::Arc::new(junction::balance::SplitMix::with_seed(1)),
        ) {
            Ok(_) => panic!("{keys} was accepted"),
            Err(errors) => errors.to_string(),
        }
    };
    for (keys, says) in [
        (r#"token_file = "missing.token""#, "cannot read"),
        (r#"token_file = "empty.token""#, "is empty"),
        (
            "token_file = \"empty.token\"\ntoken_env = \"X\"",
            "not both",
        ),
    ] {
        let errors = load(keys);
        assert!(errors.contains("admin.token_file"), "{errors}");
        assert!(errors.contains(says), "{errors}");
    }
}
