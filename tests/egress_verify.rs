//! Exit verification: every exit is probed through an echo URL (a real site answering
//! an address) via a real exit proxy; the address is reported in `/api/egress`, an exit
//! that cannot carry the probe is `failed`, one whose address moves from its first is
//! `changed`, and both show in `/metrics`.

use crate::support;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::proxy::RunningProxy;
use support::upstream::reply;
use support::{HttpExit, TestProxy, TestUpstream};
use tokio::time::Instant;

/// Polls `check` until it gives a value, for at most 5 s (the prober runs on its own
/// clock; its results are only seen through the admin API).
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn verification(proxy: &RunningProxy, exit: usize) -> Value {
    let view = proxy.admin_json("/api/egress").await;
    view["egress"][0]["exits"][exit]["verification"].clone()
}

#[tokio::test]
async fn exits_are_verified_through_the_echo_url_and_changes_and_failures_are_marked() {
    let address = Arc::new(Mutex::new("203.0.113.7".to_string()));
    let answer = address.clone();
    let echo = TestUpstream::named("echo")
        .handler(move |_request| {
            let text = answer.lock().unwrap().clone();
            async move { reply(200, format!("{text}\n")) }
        })
        .start()
        .await;
    let good = HttpExit::start("good").await;
    let gone = HttpExit::start("gone").await;
    let gone_url = gone.url();
    gone.kill();
    let proxy = TestProxy::from_toml(&format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
allow = ["127.0.0.1/32"]
exits = [{{ url = "{good}", name = "good" }}, {{ url = "{gone_url}", name = "gone" }}]
verify = {{ url = "{echo}/ip", interval = "100ms", timeout = "2s" }}
"#,
        good = good.url(),
        echo = echo.url(),
    ))
    .start()
    .await;

    let verified = eventually("the good exit verified", || async {
        let v = verification(&proxy, 0).await;
        (v["state"] == "verified").then_some(v)
    })
    .await;
    assert_eq!(verified["address"], "203.0.113.7", "{verified}");
    assert_eq!(verified["first_address"], "203.0.113.7");
    assert!(good.plain_count() >= 1, "the probe went through the exit");
    let failed = eventually("the gone exit failed", || async {
        let v = verification(&proxy, 1).await;
        (v["state"] == "failed").then_some(v)
    })
    .await;
    assert!(
        failed["error"].as_str().unwrap().contains("gone"),
        "{failed}"
    );
    assert_eq!(failed["address"], Value::Null);

    *address.lock().unwrap() = "203.0.113.8".into();
    let changed = eventually("the good exit's address changed", || async {
        let v = verification(&proxy, 0).await;
        (v["state"] == "changed").then_some(v)
    })
    .await;
    assert_eq!(changed["address"], "203.0.113.8", "{changed}");
    assert_eq!(changed["first_address"], "203.0.113.7");
    assert_eq!(changed["changes"], 1);

    let metrics = proxy.metrics_text().await;
    for line in [
        r#"junction_egress_exit_verified{egress="scraper",exit="good"} 0"#,
        r#"junction_egress_exit_verified{egress="scraper",exit="gone"} 0"#,
        r#"junction_egress_exit_address_changes_total{egress="scraper",exit="good"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // Back to its first address: verified again; the change stays counted.
    *address.lock().unwrap() = "203.0.113.7".into();
    let back = eventually("verified again", || async {
        let v = verification(&proxy, 0).await;
        (v["state"] == "verified").then_some(v)
    })
    .await;
    assert_eq!(back["changes"], 2);
    let metrics = proxy.metrics_text().await;
    assert!(metrics.contains(r#"junction_egress_exit_verified{egress="scraper",exit="good"} 1"#));
}

#[test]
fn a_verify_url_that_is_not_http_is_a_config_error() {
    let text = r#"
[[egress]]
name = "s"
bind = "127.0.0.1:0"
exits = [{ url = "direct" }]
verify = { url = "https://echo.example/ip" }
"#;
    let errors = match junction::server::Gateway::from_str(
        text,
        std::path::Path::new("."),
        Arc::new(junction::balance::SplitMix::with_seed(1)),
    ) {
        Ok(_) => panic!("accepted"),
        Err(errors) => errors.to_string(),
    };
    assert!(errors.contains("egress[0].verify.url"), "{errors}");
}
