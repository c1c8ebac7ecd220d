//! Shared fixtures for the integration tests: real upstream servers and real Junction
//! instances (in-process or as the built binary), all on 127.0.0.1 with OS-chosen ports.
//!
//! ```ignore
//! let a = TestUpstream::named("a").start().await;
//! let proxy = TestProxy::from_toml(&format!(r#" ... url = "{}" ... "#, a.url())).start().await;
//! let reply = client().get(proxy.url("/v1/x")).send().await?;
//! assert_eq!(reply.headers()["x-upstream"], "a");
//! ```
#![allow(dead_code, unused_imports)]

pub mod browser;
pub mod certs;
pub mod exits;
pub mod guarded;
pub mod pebble;
pub mod process;
pub mod proxy;
pub mod raw_http;
pub mod redis;
pub mod sse;
#[macro_use]
pub mod travel;
pub mod upstream;

pub use exits::{ExitMode, HttpExit, Socks5Exit, TlsOrigin};
pub use process::JunctionProcess;
pub use proxy::TestProxy;
pub use upstream::{TestUpstream, UpstreamReply};

/// `name{labels}` → value, from the Prometheus text format.
pub fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Sends the request, expects 200, and returns which upstream answered (`x-upstream`).
pub async fn served_by(request: reqwest::RequestBuilder) -> String {
    let reply = request.send().await.expect("request through the proxy");
    assert_eq!(reply.status(), 200);
    let name = reply.headers()["x-upstream"].to_str().unwrap().to_string();
    reply.bytes().await.expect("reply body");
    name
}

/// How many requests each upstream answered.
pub fn tally(names: &[String]) -> std::collections::BTreeMap<&str, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for name in names {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    counts
}

/// The non-empty lines of a file once it has at least `count` of them (5 s at most).
pub async fn wait_for_lines(path: &std::path::Path, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if lines.len() >= count || tokio::time::Instant::now() > deadline {
            assert_eq!(lines.len(), count, "lines of {}:\n{text}", path.display());
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A reqwest client that never uses a system proxy and keeps connections alive.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// A config snippet with an admin listener and one public listener on port 0.
pub fn listeners_toml() -> &'static str {
    r#"
[admin]
bind = "127.0.0.1:0"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"
"#
}

/// Fails unless `promtool check metrics` (Debian package `prometheus`, installed by
/// scripts/test) accepts `text`.
pub async fn promtool_check(text: &str) {
    use tokio::io::AsyncWriteExt;
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be installed (scripts/test installs the Debian package prometheus)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .await
        .expect("write to promtool");
    let output = promtool.wait_with_output().await.expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool rejected the metrics:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
