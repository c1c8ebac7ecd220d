//! The egress (forward) proxy's foundation: absolute-form HTTP and CONNECT tunnels
//! through a direct exit, destinations checked before anything is opened (loopback
//! refused unless allowed), and `Proxy-Status` on the errors Junction makes.

use crate::support;

use std::time::Duration;

use support::{TestProxy, TestUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(allow: &str) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
exits = [{{ url = "direct" }}]
allow = [{allow}]
"#
    )
}

fn through(proxy: &support::proxy::RunningProxy) -> reqwest::Client {
    let url = format!("http://{}", proxy.addr("scraper"));
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(url).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn absolute_form_requests_reach_an_allowed_site() {
    let site = TestUpstream::named("site").start().await;
    let proxy = TestProxy::from_toml(&config("\"127.0.0.1/32\""))
        .start()
        .await;
    let reply = through(&proxy)
        .get(format!("{}/page?x=1", site.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["x-upstream"], "site");
    let echo: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(
        echo["uri"], "/page?x=1",
        "origin form on the way to the site"
    );
    assert!(echo["headers"].get("proxy-authorization").is_none());
    assert!(echo["headers"].get("proxy-connection").is_none());
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed_with_proxy_status() {
    let site = TestUpstream::named("site").start().await;
    // Allowed: some other network only. The site on 127.0.0.1 is a special range.
    let proxy = TestProxy::from_toml(&config("\"203.0.113.0/24\""))
        .start()
        .await;
    let reply = through(&proxy)
        .get(format!("{}/x", site.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 403);
    let status = reply.headers()["proxy-status"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        status.starts_with("junction; error=destination_ip_prohibited"),
        "{status}"
    );
    let error: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(error["error"]["type"], "destination_ip_prohibited");
    assert_eq!(
        site.requests(),
        0,
        "nothing was opened towards a refused destination"
    );
}

#[tokio::test]
async fn connect_tunnels_join_the_two_sides() {
    let site = TestUpstream::named("site").start().await;
    let proxy = TestProxy::from_toml(&config("\"127.0.0.1/32\""))
        .start()
        .await;
    let mut stream = TcpStream::connect(proxy.addr("scraper")).await.unwrap();
    let target = site.addr;
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buffer[..n])
    );
    // The tunnel is now the site's socket: speak HTTP to it directly.
    stream
        .write_all(b"GET /through HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("x-upstream: site"));
    assert!(reply.contains("\"uri\":\"/through\""));
}

#[tokio::test]
async fn connect_to_a_refused_destination_opens_nothing() {
    let site = TestUpstream::named("site").start().await;
    let proxy = TestProxy::from_toml(&config("")).start().await;
    let mut stream = TcpStream::connect(proxy.addr("scraper")).await.unwrap();
    stream
        .write_all(format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", site.addr).as_bytes())
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buffer[..n]);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("proxy-status: junction; error=destination_ip_prohibited"),
        "{text}"
    );
    assert_eq!(site.requests(), 0);
}

/// The scraper's own code, unchanged but for one proxy URL: Python `requests` through
/// Junction (scripts/test installs `requests`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_uses_the_proxy_unchanged() {
    let site = TestUpstream::named("site").start().await;
    let proxy = TestProxy::from_toml(&config("\"127.0.0.1/32\""))
        .start()
        .await;
    let script = format!(
        r#"
import requests
proxies = {{"http": "http://{proxy}", "https": "http://{proxy}"}}
reply = requests.get("{site}/from-python?q=1", proxies=proxies, timeout=10)
assert reply.status_code == 200, reply.status_code
assert reply.headers["x-upstream"] == "site"
assert reply.json()["uri"] == "/from-python?q=1"
refused = requests.get("http://169.254.169.254/latest/meta-data/", proxies=proxies, timeout=10)
assert refused.status_code == 403, refused.status_code
assert refused.headers["proxy-status"].startswith("junction; error=destination_ip_prohibited")
print("ok")
"#,
        proxy = proxy.addr("scraper"),
        site = site.url()
    );
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "python failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok");
}

/// The gateway's entry rules hold for the forward proxy too: a `Host` that names another
/// site than the target, or a `Connection` list naming the framing, is refused before
/// anything is opened; a matching `Host` goes on as the target's authority.
#[tokio::test]
async fn ambiguous_absolute_form_requests_are_refused() {
    let site = TestUpstream::named("site").start().await;
    let proxy = TestProxy::from_toml(&config("\"127.0.0.1/32\""))
        .start()
        .await;
    let authority = site.url().trim_start_matches("http://").to_string();
    let exchange = |head: String| {
        let addr = proxy.addr("scraper");
        async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(head.as_bytes()).await.unwrap();
            let mut reply = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
                .await
                .expect("answered and closed")
                .unwrap();
            String::from_utf8_lossy(&reply).into_owned()
        }
    };
    for (name, head) in [
        (
            "host mismatch",
            format!(
                "GET http://{authority}/x HTTP/1.1\r\nHost: admin.example\r\nConnection: close\r\n\r\n"
            ),
        ),
        (
            "two hosts",
            format!(
                "GET http://{authority}/x HTTP/1.1\r\nHost: {authority}\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
            ),
        ),
        (
            "connection names content-length",
            format!(
                "POST http://{authority}/x HTTP/1.1\r\nHost: {authority}\r\nConnection: content-length, close\r\nContent-Length: 5\r\n\r\nhello"
            ),
        ),
    ] {
        let reply = exchange(head).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{name}: {reply}");
        assert!(reply.contains("invalid_request"), "{name}: {reply}");
    }
    assert_eq!(site.requests(), 0, "nothing reached the site");
    let reply = exchange(format!(
        "GET http://{authority}/ok HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        authority.to_uppercase()
    ))
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(site.requests(), 1);
}
