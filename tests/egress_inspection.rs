//! Inspection on an egress listener (issue #14): plain requests and CONNECT tunnels
//! captured as flows (proxy credentials redacted), and the outbound-volume detector
//! blocking a client that sends one site far more than its cap, for that site only.

use crate::support;

use std::time::Duration;

use junction::inspect::capture::read_newest;
use support::{TestProxy, TestUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
exits = [{{ url = "direct" }}]
allow = ["127.0.0.1/32"]
capture = {{ dir = "{}" }}
{extra}
"#,
        dir.display()
    )
}

fn through(proxy: &support::proxy::RunningProxy) -> reqwest::Client {
    let url = format!("http://{}", proxy.addr("scraper"));
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(url).unwrap())
        .build()
        .unwrap()
}

async fn flows(dir: &std::path::Path, count: usize) -> Vec<junction::inspect::Flow> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let flows = read_newest(dir, None, 100).unwrap_or_default();
            if flows.len() >= count {
                return flows;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the flows to be written")
}

#[tokio::test]
async fn plain_requests_and_tunnels_are_captured() {
    let site = TestUpstream::named("site").start().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::from_toml(&config(dir.path(), "")).start().await;
    let reply = through(&proxy)
        .post(format!("{}/form?q=1", site.url()))
        .header("proxy-authorization", "Basic dXNlcjpzZWNyZXQ=")
        .body("a=1&b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let body = reply.text().await.unwrap();
    let flow = &flows(dir.path(), 1).await[0];
    assert_eq!(flow.request.method, "POST");
    assert_eq!(flow.request.url, format!("{}/form?q=1", site.url()));
    assert_eq!(
        flow.request.body.size, 7,
        "recorded by its length: it streams"
    );
    let auth = flow
        .request
        .headers
        .iter()
        .find(|(n, _)| n == "proxy-authorization")
        .map(|(_, v)| v.as_str());
    assert_eq!(auth, Some("Basic [redacted]"));
    let response = flow.response.as_ref().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body.text(), Some(body.as_str()));
    assert_eq!(flow.pool.as_deref(), Some("scraper"));
    assert_eq!(flow.endpoint.as_deref(), Some("direct"));

    // A tunnel: its head and the proxy's 200, no bodies (they are TLS to the site).
    let mut stream = TcpStream::connect(proxy.addr("scraper")).await.unwrap();
    let target = site.url().trim_start_matches("http://").to_owned();
    let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(connect.as_bytes()).await.unwrap();
    let mut head = [0u8; 64];
    let read = stream.read(&mut head).await.unwrap();
    assert!(head[..read].starts_with(b"HTTP/1.1 200"));
    drop(stream);
    let flows = flows(dir.path(), 2).await;
    let tunnel = flows
        .iter()
        .find(|f| f.request.method == "CONNECT")
        .unwrap();
    assert_eq!(tunnel.request.url, target);
}

#[tokio::test]
async fn a_client_over_the_outbound_cap_is_blocked_for_that_site() {
    let site = TestUpstream::named("site").start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "outbound_volume = { action = \"block\", max_bytes = \"64KiB\", window = \"1h\", cooldown = \"1h\" }";
    let proxy = TestProxy::from_toml(&config(dir.path(), extra))
        .start()
        .await;
    let client = through(&proxy);
    let upload = vec![b'x'; 40 * 1024];
    for _ in 0..2 {
        let reply = client
            .post(format!("{}/upload", site.url()))
            .body(upload.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        reply.bytes().await.unwrap();
    }
    // The second upload crossed 64 KiB in the window: the next request is refused
    // once the exchange has reported (when its answer ended).
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let reply = client
                .get(format!("{}/next", site.url()))
                .send()
                .await
                .unwrap();
            if reply.status() != 200 {
                return reply;
            }
            reply.bytes().await.unwrap();
        }
    })
    .await
    .expect("the client to be blocked");
    assert_eq!(refused.status(), 429);
    let error: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "anomaly_blocked");
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains(
            "junction_anomalies_total{detector=\"outbound_volume\",route=\"scraper\",action=\"block\"} 1"
        ),
        "{metrics}"
    );
}
