//! A first end-to-end pass: one upstream, one route, a request through the proxy.

use crate::support;

use support::{TestProxy, TestUpstream, client, listeners_toml};

#[tokio::test]
async fn proxies_to_the_upstream_and_tags_the_version() {
    let upstream = TestUpstream::named("a").start().await;
    let config = format!(
        r#"{}
[[pools]]
name = "p"
version = "v7"
endpoints = [{{ url = "{}" }}]

[[routes]]
name = "all"
pool = "p"
"#,
        listeners_toml(),
        upstream.url()
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let reply = client().get(proxy.url("/hello?x=1")).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["x-upstream"], "a");
    assert_eq!(reply.headers()["x-junction-version"], "v7");
    let echo: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(echo["uri"], "/hello?x=1");
    assert_eq!(echo["headers"]["via"], "1.1 junction");
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");
}
