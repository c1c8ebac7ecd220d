//! Ban reports from clients, for HTTPS sites Junction cannot read inside a tunnel: a
//! session's next request with `x-junction-ban: <host>`, or `POST
//! /api/egress/{name}/bans` (admin token, audit log), rests the exit that carried the
//! session's last tunnel to that host; the session then leaves through another exit.

use crate::support;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::exits::{basic, head_header, raw_connect};
use support::proxy::RunningProxy;
use support::{HttpExit, TestProxy, TestUpstream, TlsOrigin, client};
use tokio::time::Instant;

const STEP: Duration = Duration::from_secs(5);
const TOKEN: &str = "bans-s3cret";

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

/// Egress "scraper" through exits "a" and "b" in turn; 60 s cooldowns.
fn config(a: &HttpExit, b: &HttpExit, top: &str) -> String {
    format!(
        r#"
{top}
[admin]
bind = "127.0.0.1:0"
{token}

[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
rotation = "round_robin"
allow = ["127.0.0.1/32"]
exits = [{{ url = "{a}", name = "a" }}, {{ url = "{b}", name = "b" }}]
ban = {{ status = [403], cooldown = "60s" }}
"#,
        a = a.url(),
        b = b.url(),
        token = if top.is_empty() {
            ""
        } else {
            "token_file = \"admin.token\""
        },
    )
}

/// An HTTPS GET through the proxy, as a scraper sends it: the session in the proxy
/// user name, the request itself inside the tunnel.
async fn https_get(proxy: &RunningProxy, site: &TlsOrigin, session: &str) -> String {
    let url = format!(
        "http://scraper-session-{session}:pw@{}",
        proxy.addr("scraper")
    );
    let http = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(url).unwrap())
        .add_root_certificate(site.certificate())
        .build()
        .unwrap();
    let reply = within("https GET", http.get(format!("{}/page", site.url())).send())
        .await
        .expect("through the tunnel");
    assert_eq!(reply.status(), 200);
    reply.text().await.unwrap()
}

/// Which of the two exits carried the tunnels opened by `action`.
async fn carried_by<F: Future>(a: &HttpExit, b: &HttpExit, action: F) -> &'static str {
    let before = (a.connect_count(), b.connect_count());
    action.await;
    match (a.connect_count() - before.0, b.connect_count() - before.1) {
        (1, 0) => "a",
        (0, 1) => "b",
        other => panic!("expected one tunnel through one exit, got {other:?}"),
    }
}

fn other(exit: &str) -> &'static str {
    if exit == "a" { "b" } else { "a" }
}

#[tokio::test]
async fn a_ban_header_on_the_next_request_rests_the_exit_of_the_sessions_last_tunnel() {
    let (a, b) = (HttpExit::start("a").await, HttpExit::start("b").await);
    let site = TlsOrigin::start("site").await;
    let proxy = TestProxy::from_toml(&config(&a, &b, "")).start().await;
    let host = site.addr().to_string();

    let first = carried_by(&a, &b, https_get(&proxy, &site, "s1")).await;
    assert_eq!(
        carried_by(&a, &b, https_get(&proxy, &site, "s1")).await,
        first,
        "a session keeps its exit"
    );

    // The scraper saw a ban page inside the tunnel: it says so on the session's next
    // CONNECT, which already leaves through the other exit.
    let auth = basic("scraper-session-s1", "pw");
    let (head, _tunnel) = raw_connect(
        proxy.addr("scraper"),
        &host,
        &format!("Proxy-Authorization: {auth}\r\nx-junction-ban: 127.0.0.1\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        head_header(&head, "x-junction-exit").as_deref(),
        Some(other(first))
    );
    assert_eq!(
        carried_by(&a, &b, https_get(&proxy, &site, "s1")).await,
        other(first),
        "the session stays off the banned exit"
    );

    let view = proxy.admin_json("/api/egress").await;
    let exits = view["egress"][0]["exits"].as_array().unwrap();
    let banned = exits.iter().find(|e| e["name"] == first).unwrap();
    assert_eq!(banned["bans"], 1, "{view:#}");
    assert_eq!(banned["sites"][0]["host"], "127.0.0.1");
    let resting = banned["sites"][0]["resting_ms"].as_u64().unwrap();
    assert!(
        (40_000..=72_000).contains(&resting),
        "as an automatic ban: {resting}"
    );
    let clear = exits.iter().find(|e| e["name"] == other(first)).unwrap();
    assert_eq!(clear["bans"], 0);

    // A session that never reached the host bans nothing.
    let (head, _) = raw_connect(
        proxy.addr("scraper"),
        &host,
        "x-junction-session: fresh\r\nx-junction-ban: other.example\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let view = proxy.admin_json("/api/egress").await;
    let bans: u64 = view["egress"][0]["exits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["bans"].as_u64().unwrap())
        .sum();
    assert_eq!(bans, 1);

    // A report that names no host is the client's error.
    let (head, _) = raw_connect(proxy.addr("scraper"), &host, "x-junction-ban: a b\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        head_header(&head, "proxy-status")
            .unwrap()
            .starts_with("junction; error=http_request_error"),
        "{head}"
    );
}

#[tokio::test]
async fn a_ban_header_on_a_plain_request_is_used_and_not_forwarded() {
    let (a, b) = (HttpExit::start("a").await, HttpExit::start("b").await);
    let site = TestUpstream::named("site").start().await;
    let proxy = TestProxy::from_toml(&config(&a, &b, "")).start().await;
    let http = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{}", proxy.addr("scraper"))).unwrap())
        .build()
        .unwrap();
    let get = |ban: Option<&'static str>| {
        let mut request = http
            .get(format!("{}/page", site.url()))
            .header("x-junction-session", "plain");
        if let Some(host) = ban {
            request = request.header("x-junction-ban", host);
        }
        async move {
            let reply = within("GET", request.send()).await.unwrap();
            assert_eq!(reply.status(), 200);
            let exit = reply.headers()["x-junction-exit"]
                .to_str()
                .unwrap()
                .to_string();
            (exit, reply.json::<Value>().await.unwrap())
        }
    };
    let (first, _) = get(None).await;
    let (second, echo) = get(Some("127.0.0.1")).await;
    assert_eq!(second, other(&first));
    assert!(
        echo["headers"].get("x-junction-ban").is_none(),
        "the report stays with the proxy: {echo}"
    );
}

/// `POST path` on the admin listener with a JSON body and an optional token.
async fn post(proxy: &RunningProxy, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client()
        .post(proxy.admin_url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let reply = within("admin POST", request.send()).await.unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.expect("a JSON body"))
}

/// The audit log's lines once one has `action` (written by a task of its own).
async fn audit_line(path: &Path, action: &str) -> Value {
    let deadline = Instant::now() + STEP;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l.to_string().contains(action))
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no {action} in the audit log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_admin_api_takes_ban_reports_with_the_token_and_audits_them() {
    let (a, b) = (HttpExit::start("a").await, HttpExit::start("b").await);
    let site = TlsOrigin::start("site").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), TOKEN).unwrap();
    let path = dir.path().join("junction.toml");
    std::fs::write(&path, config(&a, &b, "[audit]\npath = \"audit.log\"\n")).unwrap();
    let proxy = RunningProxy::from_file(&path).await;
    let bans = "/api/egress/scraper/bans";

    let first = carried_by(&a, &b, https_get(&proxy, &site, "s1")).await;
    let report = r#"{"session": "s1", "host": "127.0.0.1", "cooldown": "5m"}"#;
    let (status, body) = post(&proxy, bans, report, None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(&proxy, bans, report, Some("wrong")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        carried_by(&a, &b, https_get(&proxy, &site, "s1")).await,
        first,
        "a refused report bans nothing"
    );

    let (status, body) = post(&proxy, bans, report, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "egress": "scraper", "exit": first, "host": "127.0.0.1", "resting_ms": 300_000 })
    );
    assert_eq!(
        carried_by(&a, &b, https_get(&proxy, &site, "s1")).await,
        other(first)
    );
    let audit = audit_line(&dir.path().join("audit.log"), "egress_ban").await;
    assert!(
        audit.to_string().contains(&format!("\"exit\":\"{first}\"")),
        "{audit}"
    );

    // Without a session: the exit anyone used last for the host (the other one now),
    // for as long as an automatic ban.
    let (status, body) = post(&proxy, bans, r#"{"host": "127.0.0.1:443"}"#, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exit"], other(first));
    let resting = body["resting_ms"].as_u64().unwrap();
    assert!((48_000..=72_000).contains(&resting), "{resting}");
    // By exit name.
    let (status, body) = post(
        &proxy,
        bans,
        r#"{"exit": "a", "host": "elsewhere.example", "cooldown": "10s"}"#,
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (status, &body["resting_ms"]),
        (200, &json!(10_000)),
        "{body}"
    );

    for (body, status, kind) in [
        (
            r#"{"exit": "nope", "host": "h.example"}"#,
            404,
            "unknown_exit",
        ),
        (
            r#"{"session": "never", "host": "h.example"}"#,
            404,
            "unknown_session",
        ),
        (r#"{"host": "never.example"}"#, 404, "unknown_host"),
        (r#"{"host": "a b"}"#, 400, "bad_request"),
        (
            r#"{"host": "h.example", "cooldown": "soon"}"#,
            400,
            "bad_request",
        ),
        (
            r#"{"host": "h.example", "colour": "red"}"#,
            400,
            "bad_request",
        ),
        ("not json", 400, "bad_request"),
    ] {
        let (got, answer) = post(&proxy, bans, body, Some(TOKEN)).await;
        assert_eq!(
            (got, answer["error"]["type"].as_str()),
            (status, Some(kind)),
            "{body}: {answer}"
        );
    }
    let (status, _) = post(&proxy, "/api/egress/nobody/bans", report, Some(TOKEN)).await;
    assert_eq!(status, 404);
    let reply = client()
        .get(proxy.admin_url(bans))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 405);
}
