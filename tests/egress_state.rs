//! `GET /api/egress`: a site that answers an exit with its ban status shows as that
//! exit's ban for the site (bans in a row, rest left), the other exit stays clear, and
//! sessions show with their exit; lists are bounded by `?limit=` beside their counts.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use support::proxy::RunningProxy;
use support::upstream::reply;
use support::{TestProxy, TestUpstream};

/// Egress listener "scraper" with two direct exits, "first" and "second", in turn; 403
/// is a ban; sites on loopback allowed.
const CONFIG: &str = r#"
[admin]
bind = "127.0.0.1:0"

[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
rotation = "round_robin"
allow = ["127.0.0.1/32"]
exits = [{ url = "direct", name = "first" }, { url = "direct", name = "second" }]
ban = { status = [403], cooldown = "60s" }
attempts = 2
"#;

fn through(proxy: &RunningProxy) -> reqwest::Client {
    let url = format!("http://{}", proxy.addr("scraper"));
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(url).unwrap())
        .build()
        .unwrap()
}

/// `GET /api/egress` on the proxy's admin listener: (status, JSON).
async fn egress(proxy: &RunningProxy, query: &str) -> (u16, serde_json::Value) {
    proxy
        .admin_status_json(&format!("/api/egress{query}"))
        .await
}

#[tokio::test]
async fn a_ban_by_a_site_and_the_sessions_show_in_the_admin_api() {
    // The site bans the first request it sees (the first exit's), then serves.
    let banned_once = Arc::new(AtomicBool::new(false));
    let site = TestUpstream::named("site")
        .handler(move |_request| {
            let first = !banned_once.swap(true, Ordering::SeqCst);
            async move {
                if first {
                    reply(403, "go away")
                } else {
                    reply(200, "welcome")
                }
            }
        })
        .start()
        .await;
    let proxy = TestProxy::from_toml(CONFIG).start().await;
    let http = through(&proxy);

    let (status, before) = egress(&proxy, "").await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(
        before["egress"][0]["exits"][0]["sites"],
        serde_json::json!([])
    );

    let reply = http
        .get(format!("{}/page", site.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "retried on the second exit");
    assert_eq!(reply.headers()["x-junction-exit"], "second");
    for session in ["cart1", "cart2"] {
        let reply = http
            .get(format!("{}/{session}", site.url()))
            .header("x-junction-session", session)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
    }

    let (status, view) = egress(&proxy, "").await;
    assert_eq!(status, 200);
    assert_eq!(view["limit"], 50);
    let scraper = &view["egress"][0];
    assert_eq!(scraper["name"], "scraper");
    let (first, second) = (&scraper["exits"][0], &scraper["exits"][1]);
    assert_eq!(first["name"], "first");
    assert_eq!(first["state"], "up");
    assert_eq!(first["url"], "direct");
    assert_eq!(first["bans"], 1);
    assert_eq!(first["resting_sites"], 1);
    assert_eq!(first["sites_total"], 1);
    let ban = &first["sites"][0];
    assert_eq!(ban["host"], "127.0.0.1", "{view:#}");
    assert_eq!(ban["bans_in_a_row"], 1);
    // 60 s with ±20% jitter, a moment ago.
    let resting = ban["resting_ms"].as_u64().unwrap();
    assert!((40_000..=72_000).contains(&resting), "{resting}");
    assert_eq!(
        (second["bans"].as_u64(), second["sites_total"].as_u64()),
        (Some(0), Some(0))
    );

    // Both sessions on the second exit: the first rests for this site.
    assert_eq!(scraper["sessions_total"], 2);
    let sessions = scraper["sessions"].as_array().unwrap();
    let named: Vec<(&str, &str)> = sessions
        .iter()
        .map(|s| (s["session"].as_str().unwrap(), s["exit"].as_str().unwrap()))
        .collect();
    assert_eq!(
        named,
        [("cart2", "second"), ("cart1", "second")],
        "most recent first"
    );
    assert!(sessions[0]["expires_in_ms"].as_u64().unwrap() <= 600_000);

    // Bounded, with the count of all.
    let (_, top) = egress(&proxy, "?limit=1").await;
    assert_eq!(top["egress"][0]["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(top["egress"][0]["sessions_total"], 2);
    let (status, body) = egress(&proxy, "?limit=-1").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_limit");
}
