//! Egress state shared by a fleet through a real `redis-server`: an exit banned by a
//! site through one instance rests on the other too (its rotation never picks it for
//! that site), a session keeps its exit across instances, a site's Retry-After heard by
//! one holds it on the other, and with Redis stopped mid-test traffic goes on by local
//! state, counted.

use crate::support;

use support::exits::{CAPTCHA_BODY, get_ok};
use support::proxy::RunningProxy;
use support::redis::Redis;
use support::{ExitMode, HttpExit, TestProxy, TestUpstream};

/// Egress "scraper" through HTTP exits "a" and "b" in turn; a captcha is a ban.
fn config(a: &HttpExit, b: &HttpExit, backend: &str) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
rotation = "round_robin"
allow = ["127.0.0.1/32"]
exits = [{{ url = "{a}", name = "a" }}, {{ url = "{b}", name = "b" }}]
ban = {{ body = ["captcha"], cooldown = "5m" }}
state = {{ backend = "{backend}" }}
"#,
        a = a.url(),
        b = b.url(),
    )
}

fn through(proxy: &RunningProxy) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{}", proxy.addr("scraper"))).unwrap())
        .build()
        .unwrap()
}

async fn exits_used(proxy: &RunningProxy, url: &str, count: usize) -> Vec<String> {
    let http = through(proxy);
    let mut used = Vec::new();
    for _ in 0..count {
        used.push(get_ok(&http, url).await.exit());
    }
    used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_through_one_instance_rests_the_exit_on_the_other_and_an_outage_is_survived() {
    let redis = Redis::start().await;
    let (a, b) = (HttpExit::start("a").await, HttpExit::start("b").await);
    let site = TestUpstream::named("site").start().await;
    let page = format!("{}/page", site.url());
    let first = TestProxy::from_toml(&config(&a, &b, &redis.url()))
        .start()
        .await;
    let second = TestProxy::from_toml(&config(&a, &b, &redis.url()))
        .start()
        .await;

    // Before any ban, the second instance takes turns over both exits.
    assert_eq!(exits_used(&second, &page, 2).await, ["a", "b"]);

    // Exit a serves a captcha: the first instance's request there is banned, then
    // retried on b.
    a.set_mode(ExitMode::Captcha);
    let reply = get_ok(&through(&first), &page).await;
    assert_eq!(reply.exit(), "b", "{}", reply.body);
    assert_ne!(reply.body, CAPTCHA_BODY);
    a.set_mode(ExitMode::Normal);
    // The rest is written to Redis in the background: wait for the key itself.
    let key = "junction:egress:scraper:rest:a:127.0.0.1";
    let left: i64 = redis.until(&["PTTL", key], |left| *left > 0).await;
    assert!(left <= 6 * 60 * 1000, "5 minutes with jitter: {left}");

    // The second instance never saw the captcha, yet leaves a alone for this site.
    let plain_before = a.plain_count();
    assert_eq!(exits_used(&second, &page, 4).await, ["b"; 4]);
    assert_eq!(a.plain_count(), plain_before, "nothing went through a");
    let view = second.admin_json("/api/egress").await;
    let rested = &view["egress"][0]["exits"][0];
    assert_eq!(rested["name"], "a");
    assert_eq!(rested["resting_sites"], 1, "{view:#}");

    // A third instance without the fleet state still uses a: the rest came from Redis.
    let alone = TestProxy::from_toml(&config(&a, &b, "local")).start().await;
    assert_eq!(exits_used(&alone, &page, 2).await, ["a", "b"]);

    // Redis goes away: requests still pass, by each instance's own state, counted.
    redis.stop().await;
    let used = exits_used(&first, &format!("{}/after", site.url()), 3).await;
    assert_eq!(used, ["b"; 3], "the local rest of a still holds");
    let used = exits_used(&second, &format!("{}/after", site.url()), 2).await;
    assert_eq!(used, ["b"; 2]);
    let metrics = second.metrics_text().await;
    let errors: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"junction_egress_fleet_errors_total{egress="scraper"} "#))
        .unwrap_or_else(|| panic!("no fleet errors counted:\n{metrics}"))
        .parse()
        .unwrap();
    assert!(errors >= 1.0, "{errors}");
}

#[test]
fn a_state_backend_that_is_not_redis_is_a_config_error() {
    let text = r#"
[[egress]]
name = "s"
bind = "127.0.0.1:0"
exits = [{ url = "direct" }]
state = { backend = "memcached://x" }
"#;
    let errors = match junction::server::Gateway::from_str(
        text,
        std::path::Path::new("."),
        std::sync::Arc::new(junction::balance::SplitMix::with_seed(1)),
    ) {
        Ok(_) => panic!("accepted"),
        Err(errors) => errors.to_string(),
    };
    assert!(errors.contains("egress[0].state.backend"), "{errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_its_exit_whichever_instance_it_reaches() {
    let redis = Redis::start().await;
    let (a, b) = (HttpExit::start("a").await, HttpExit::start("b").await);
    let site = TestUpstream::named("site").start().await;
    let page = format!("{}/page", site.url());
    let first = TestProxy::from_toml(&config(&a, &b, &redis.url()))
        .start()
        .await;
    let second = TestProxy::from_toml(&config(&a, &b, &redis.url()))
        .start()
        .await;
    let with_session = |proxy: &RunningProxy| {
        let http = through(proxy);
        let page = page.clone();
        async move {
            let request = http.get(&page).header("x-junction-session", "cart42");
            support::exits::send(request).await.exit()
        }
    };

    // The first instance's turn is on b when the session starts: it lands there.
    assert_eq!(exits_used(&first, &page, 1).await, ["a"]);
    assert_eq!(with_session(&first).await, "b");
    // The session's pin is written in the background: wait for it in Redis.
    let key = "junction:egress:scraper:session::cart42";
    redis
        .until::<Option<String>>(&["GET", key], |pinned| pinned.as_deref() == Some("b"))
        .await;
    // The second instance, whose own turn is on a, keeps the session on b.
    for _ in 0..3 {
        assert_eq!(with_session(&second).await, "b");
    }
    let alone = TestProxy::from_toml(&config(&a, &b, "local")).start().await;
    assert_eq!(
        with_session(&alone).await,
        "a",
        "without the fleet: its own turn"
    );
    redis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sites_retry_after_through_one_instance_holds_it_on_the_other() {
    let redis = Redis::start().await;
    let (a, b) = (HttpExit::start("a").await, HttpExit::start("b").await);
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = asked.clone();
    let site = TestUpstream::named("site")
        .handler(move |_request| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let mut answer = support::upstream::reply(429, "slow down");
                answer
                    .headers_mut()
                    .insert("retry-after", "30".parse().unwrap());
                answer
            }
        })
        .start()
        .await;
    let page = format!("{}/page", site.url());
    let wait = "per_host_wait = \"2s\"\n";
    let with_wait = |text: String| text.replace("state = {", &format!("{wait}state = {{"));
    let first = TestProxy::from_toml(&with_wait(config(&a, &b, &redis.url())))
        .start()
        .await;
    let second = TestProxy::from_toml(&with_wait(config(&a, &b, &redis.url())))
        .start()
        .await;

    let reply = support::exits::get(&through(&first), &page).await;
    assert_eq!(reply.status, 429);
    let key = "junction:egress:scraper:hold:127.0.0.1";
    redis.until::<i64>(&["PTTL", key], |left| *left > 0).await;
    // The second instance never heard the site, yet holds it: 503 at once.
    let reply = support::exits::get(&through(&second), &page).await;
    reply.assert_junction_error(503, "connection_limit_reached", "politeness");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    redis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sites_rate_is_shared_by_the_fleet_not_given_to_each_instance() {
    let redis = Redis::start().await;
    let (a, b) = (HttpExit::start("a").await, HttpExit::start("b").await);
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    let site = TestUpstream::named("site")
        .handler(move |_request| {
            seen.lock().unwrap().push(std::time::Instant::now());
            async move { support::upstream::reply(200, "ok") }
        })
        .start()
        .await;
    let page = format!("{}/page", site.url());
    // One request every 400 ms to the site, for the fleet.
    let rate = "per_host_rate = \"5/2s\"\n";
    let with_rate = |text: String| text.replace("state = {", &format!("{rate}state = {{"));
    let first = TestProxy::from_toml(&with_rate(config(&a, &b, &redis.url())))
        .start()
        .await;
    let second = TestProxy::from_toml(&with_rate(config(&a, &b, &redis.url())))
        .start()
        .await;

    // Both instances at once, three requests each: alone, each would send its first at
    // once, and the site would see two requests together.
    let (http_first, http_second) = (through(&first), through(&second));
    let run = |http: reqwest::Client, page: String| async move {
        for _ in 0..3 {
            get_ok(&http, &page).await;
        }
    };
    tokio::join!(
        run(http_first, page.clone()),
        run(http_second, page.clone())
    );
    let mut times = arrivals.lock().unwrap().clone();
    times.sort();
    assert_eq!(times.len(), 6);
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        // Spacing is a floor; the test allows a little for the two clocks read.
        assert!(
            gap >= std::time::Duration::from_millis(350),
            "requests {gap:?} apart: {times:?}"
        );
    }
    redis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sites_concurrency_cap_holds_for_the_fleet() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let redis = Redis::start().await;
    let (a, b) = (HttpExit::start("a").await, HttpExit::start("b").await);
    let in_flight = std::sync::Arc::new(AtomicUsize::new(0));
    let most = std::sync::Arc::new(AtomicUsize::new(0));
    let (now, peak) = (in_flight.clone(), most.clone());
    let site = TestUpstream::named("site")
        .handler(move |_request| {
            let (now, peak) = (now.clone(), peak.clone());
            async move {
                let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(at_once, Ordering::SeqCst);
                // A slow site: the requests of both instances overlap unless capped.
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                support::upstream::reply(200, "ok")
            }
        })
        .start()
        .await;
    let page = format!("{}/page", site.url());
    let cap = "per_host_concurrency = 1\n";
    let with_cap = |text: String| text.replace("state = {", &format!("{cap}state = {{"));
    let first = TestProxy::from_toml(&with_cap(config(&a, &b, &redis.url())))
        .start()
        .await;
    let second = TestProxy::from_toml(&with_cap(config(&a, &b, &redis.url())))
        .start()
        .await;

    let run = |http: reqwest::Client, page: String| async move {
        let both = futures_util::future::join_all((0..2).map(|_| get_ok(&http, &page)));
        both.await;
    };
    tokio::join!(
        run(through(&first), page.clone()),
        run(through(&second), page.clone())
    );
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "one request at a time, fleet-wide"
    );

    // The leases were given back: none is left in Redis.
    let key = "junction:egress:scraper:concurrency:127.0.0.1";
    redis.until::<i64>(&["ZCARD", key], |held| *held == 0).await;
    redis.stop().await;
}
