//! Adaptive politeness: a site's `429` with `Retry-After`, or `RateLimit-*` with nothing
//! remaining, holds that site's queue for every exit (a request that would wait past
//! `per_host_wait` gets `503` at once, tunnels too); `honour_retry_after = false` turns
//! it off.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::exits::{get, get_ok, raw_connect};
use support::proxy::RunningProxy;
use support::upstream::{RunningUpstream, reply};
use support::{TestProxy, TestUpstream};
use tokio::time::Instant;

/// Egress "scraper" through direct exits "first" and "second" in turn, no ban rules.
fn config(extra: &str) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
rotation = "round_robin"
allow = ["127.0.0.1/32"]
exits = [{{ url = "direct", name = "first" }}, {{ url = "direct", name = "second" }}]
{extra}
"#
    )
}

fn through(proxy: &RunningProxy) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{}", proxy.addr("scraper"))).unwrap())
        .build()
        .unwrap()
}

/// A site whose first answer carries `first` (status and headers), then `200 ok`; it
/// notes when each request arrived.
async fn site_asking_once(
    status: u16,
    headers: &'static [(&'static str, &'static str)],
) -> (RunningUpstream, Arc<Mutex<Vec<Instant>>>) {
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = arrivals.clone();
    let site = TestUpstream::named("site")
        .handler(move |_request| {
            let first = {
                let mut seen = seen.lock().unwrap();
                seen.push(Instant::now());
                seen.len() == 1
            };
            async move {
                if !first {
                    return reply(200, "ok");
                }
                let mut answer = reply(status, "slow down");
                for (name, value) in headers {
                    answer.headers_mut().insert(*name, value.parse().unwrap());
                }
                answer
            }
        })
        .start()
        .await;
    (site, arrivals)
}

#[tokio::test]
async fn a_retry_after_holds_the_site_for_every_exit() {
    let (site, arrivals) = site_asking_once(429, &[("retry-after", "1")]).await;
    let proxy = TestProxy::from_toml(&config("")).start().await;
    let http = through(&proxy);

    let first = get(&http, &format!("{}/1", site.url())).await;
    assert_eq!(first.status, 429, "the site's answer goes back as it is");
    assert_eq!(first.exit(), "first");
    let second = get_ok(&http, &format!("{}/2", site.url())).await;
    assert_eq!(
        second.exit(),
        "second",
        "another exit, the same site's hold"
    );
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 2);
    let gap = arrivals[1] - arrivals[0];
    assert!(gap >= Duration::from_millis(950), "held {gap:?}");
    assert!(gap < Duration::from_secs(3), "held {gap:?}");
}

#[tokio::test]
async fn a_hold_past_per_host_wait_is_a_503_at_once_for_requests_and_tunnels() {
    let headers = &[("ratelimit-remaining", "0"), ("ratelimit-reset", "30")];
    let (site, arrivals) = site_asking_once(200, headers).await;
    let proxy = TestProxy::from_toml(&config("per_host_wait = \"2s\""))
        .start()
        .await;
    let http = through(&proxy);

    get_ok(&http, &format!("{}/1", site.url())).await;
    let started = Instant::now();
    let refused = get(&http, &format!("{}/2", site.url())).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once"
    );
    refused.assert_junction_error(503, "connection_limit_reached", "politeness");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((29..=30).contains(&retry), "{retry}");
    let (head, _) = raw_connect(proxy.addr("scraper"), &site.addr.to_string(), "").await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert_eq!(
        arrivals.lock().unwrap().len(),
        1,
        "nothing more reached the site"
    );
}

#[tokio::test]
async fn honour_retry_after_false_lets_requests_through() {
    let (site, arrivals) = site_asking_once(429, &[("retry-after", "30")]).await;
    let proxy = TestProxy::from_toml(&config(
        "honour_retry_after = false\nper_host_wait = \"2s\"",
    ))
    .start()
    .await;
    let http = through(&proxy);
    assert_eq!(get(&http, &format!("{}/1", site.url())).await.status, 429);
    get_ok(&http, &format!("{}/2", site.url())).await;
    assert_eq!(arrivals.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn robots_crawl_delay_spaces_the_sites_requests() {
    let pages: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = pages.clone();
    let site = TestUpstream::named("site")
        .handler(move |request| {
            let robots = request.uri().path() == "/robots.txt";
            if !robots {
                seen.lock().unwrap().push(Instant::now());
            }
            async move {
                if robots {
                    reply(200, "User-agent: *\nCrawl-delay: 1\nDisallow: /private\n")
                } else {
                    reply(200, "page")
                }
            }
        })
        .start()
        .await;
    let proxy = TestProxy::from_toml(&config("respect_robots = true\nrobots_crawl_delay = true"))
        .start()
        .await;
    let http = through(&proxy);
    for i in 0..3 {
        get_ok(&http, &format!("{}/page{i}", site.url())).await;
    }
    let pages = pages.lock().unwrap().clone();
    assert_eq!(pages.len(), 3);
    for pair in pages.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(950), "{gap:?}");
    }
}

#[test]
fn robots_crawl_delay_without_respect_robots_is_a_config_error() {
    let errors = match junction::server::Gateway::from_str(
        &config("robots_crawl_delay = true\nper_host = { target_concurrency = 0.0 }"),
        std::path::Path::new("."),
        Arc::new(junction::balance::SplitMix::with_seed(1)),
    ) {
        Ok(_) => panic!("accepted"),
        Err(errors) => errors.to_string(),
    };
    assert!(errors.contains("egress[0].robots_crawl_delay"), "{errors}");
    assert!(
        errors.contains("egress[0].per_host.target_concurrency"),
        "{errors}"
    );
}
