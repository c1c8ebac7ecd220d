//! Balancing policies end to end: real upstreams behind a real proxy, each request's
//! endpoint read from the `x-upstream` header of its reply.

use crate::support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use http::Request;
use hyper::body::Incoming;
use support::proxy::RunningProxy;
use support::upstream::{RunningUpstream, UpstreamReply, reply};
use support::{TestProxy, TestUpstream, client, listeners_toml, served_by, tally};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

/// One pool over `endpoints` (upstream, weight) with `pool_keys` (`balance = ...`),
/// and one route sending every request to it.
fn one_pool(pool_keys: &str, endpoints: &[(&RunningUpstream, u32)]) -> String {
    let endpoints = endpoints
        .iter()
        .map(|(upstream, weight)| format!(r#"{{ url = "{}", weight = {weight} }}"#, upstream.url()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"{}
[[pools]]
name = "p"
{pool_keys}
endpoints = [{endpoints}]

[[routes]]
name = "all"
pool = "p"
"#,
        listeners_toml()
    )
}

async fn start_upstreams(names: &[&str]) -> Vec<RunningUpstream> {
    let mut upstreams = Vec::new();
    for name in names {
        upstreams.push(TestUpstream::named(name).start().await);
    }
    upstreams
}

/// The in-flight count of each endpoint of pool "p", from the admin API.
async fn in_flight(proxy: &RunningProxy) -> Vec<u64> {
    let pools = proxy.admin_json("/api/pools").await;
    pools["pools"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|endpoint| endpoint["in_flight"].as_u64().unwrap())
        .collect()
}

/// Polls the admin API until the pool's in-flight counts are `expected` (5 s at most).
async fn wait_for_in_flight(proxy: &RunningProxy, expected: &[u64]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = in_flight(proxy).await;
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "in-flight counts stayed {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// === round_robin ===

#[tokio::test]
async fn round_robin_two_to_one_is_exact_and_interleaved() {
    let (a, b) = (
        TestUpstream::named("a").start().await,
        TestUpstream::named("b").start().await,
    );
    let config = one_pool(r#"balance = "round_robin""#, &[(&a, 2), (&b, 1)]);
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    let mut order = Vec::new();
    for _ in 0..300 {
        order.push(served_by(http.get(proxy.url("/rr"))).await);
    }

    assert_eq!(order[..9], ["a", "b", "a", "a", "b", "a", "a", "b", "a"]);
    assert_eq!(tally(&order), BTreeMap::from([("a", 200), ("b", 100)]));
    assert_eq!((a.requests(), b.requests()), (200, 100));
}

// === hash ===

#[tokio::test]
async fn hash_on_a_header_keeps_each_key_on_one_endpoint() {
    let upstreams = start_upstreams(&["a", "b", "c", "d"]).await;
    let endpoints: Vec<_> = upstreams.iter().map(|u| (u, 1)).collect();
    let config = one_pool(
        r#"balance = "hash"
hash_key = "header:x-user""#,
        &endpoints,
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    let mut homes = HashSet::new();
    for key in 0..12 {
        let user = format!("user-{key}");
        let home = served_by(http.get(proxy.url("/chat")).header("x-user", &user)).await;
        for _ in 0..20 {
            let again = served_by(http.get(proxy.url("/chat")).header("x-user", &user)).await;
            assert_eq!(again, home, "{user} moved");
        }
        homes.insert(home);
    }
    assert!(homes.len() >= 2, "12 keys all landed on {homes:?}");
}

/// Both HTTP/1.1 engines (the fast path and the full pipeline) hash a key to the same
/// endpoint, so turning the fast path on or off moves no key.
#[tokio::test]
async fn hash_placement_is_the_same_on_both_http1_engines() {
    let upstreams = start_upstreams(&["a", "b", "c", "d"]).await;
    let endpoints: Vec<_> = upstreams.iter().map(|u| (u, 1)).collect();
    let keys = r#"balance = "hash"
hash_key = "header:x-user""#;
    let fast = TestProxy::from_toml(&one_pool(keys, &endpoints))
        .start()
        .await;
    let full_config = one_pool(keys, &endpoints)
        .replace("name = \"public\"", "name = \"public\"\nfast_path = false");
    assert!(full_config.contains("fast_path = false"));
    let full = TestProxy::from_toml(&full_config).start().await;
    let on_fast = placements(&fast, 100).await;
    assert_eq!(on_fast, placements(&full, 100).await);
    let spread: HashSet<_> = on_fast.iter().collect();
    assert!(spread.len() >= 3, "100 keys landed on {spread:?}");
}

/// Where each of `keys` lands through `proxy`, by the `x-user` header.
async fn placements(proxy: &RunningProxy, keys: usize) -> Vec<String> {
    let http = client();
    stream::iter(0..keys)
        .map(|key| {
            let request = http
                .get(proxy.url("/chat"))
                .header("x-user", format!("user-{key}"));
            served_by(request)
        })
        .buffered(16)
        .collect()
        .await
}

#[tokio::test]
async fn removing_one_of_four_endpoints_moves_only_its_keys() {
    let upstreams = start_upstreams(&["a", "b", "c", "d"]).await;
    let keys = r#"balance = "hash"
hash_key = "header:x-user""#;
    let all: Vec<_> = upstreams.iter().map(|u| (u, 1)).collect();
    let four = TestProxy::from_toml(&one_pool(keys, &all)).start().await;
    let three = TestProxy::from_toml(&one_pool(keys, &all[..3]))
        .start()
        .await;

    let before = placements(&four, 1000).await;
    let after = placements(&three, 1000).await;

    let shares = tally(&before);
    assert_eq!(
        shares.len(),
        4,
        "every endpoint holds some keys: {shares:?}"
    );
    let moved: Vec<usize> = (0..1000).filter(|&k| before[k] != after[k]).collect();
    assert!(moved.len() <= 350, "{} of 1000 keys moved", moved.len());
    // Rendezvous hashing: exactly the keys the removed endpoint held move.
    assert!(
        moved.iter().all(|&k| before[k] == "d"),
        "a key not on d moved"
    );
    assert_eq!(moved.len(), shares["d"]);
}

#[tokio::test]
async fn hash_on_a_cookie_ignores_the_other_cookies() {
    let upstreams = start_upstreams(&["a", "b", "c", "d"]).await;
    let endpoints: Vec<_> = upstreams.iter().map(|u| (u, 1)).collect();
    let config = one_pool(
        r#"balance = "hash"
hash_key = "cookie:session""#,
        &endpoints,
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    let mut homes = HashSet::new();
    for key in 0..12 {
        let cookie = |theme: usize| format!("theme=t{theme}; session=s-{key}; lang=en");
        let home = served_by(http.get(proxy.url("/")).header("cookie", cookie(0))).await;
        for theme in 1..10 {
            let again = served_by(http.get(proxy.url("/")).header("cookie", cookie(theme))).await;
            assert_eq!(again, home, "session s-{key} moved");
        }
        homes.insert(home);
    }
    assert!(homes.len() >= 2, "12 sessions all landed on {homes:?}");
}

#[tokio::test]
async fn hash_on_the_client_ip_sends_one_client_to_one_endpoint() {
    let upstreams = start_upstreams(&["a", "b", "c", "d"]).await;
    let endpoints: Vec<_> = upstreams.iter().map(|u| (u, 1)).collect();
    let config = one_pool(
        r#"balance = "hash"
hash_key = "ip""#,
        &endpoints,
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    let mut landed = Vec::new();
    for i in 0..40 {
        // Other headers, and an X-Forwarded-For from an untrusted peer, do not count.
        let request = http
            .get(proxy.url(&format!("/r{i}")))
            .header("x-user", format!("user-{i}"))
            .header("x-forwarded-for", format!("198.51.100.{i}"));
        landed.push(served_by(request).await);
    }
    let counts = tally(&landed);
    assert_eq!(counts.len(), 1, "127.0.0.1 was spread: {counts:?}");
}

#[tokio::test]
async fn hash_without_a_key_spreads_requests() {
    let upstreams = start_upstreams(&["a", "b", "c", "d"]).await;
    let endpoints: Vec<_> = upstreams.iter().map(|u| (u, 1)).collect();
    let config = one_pool(
        r#"balance = "hash"
hash_key = "header:x-user""#,
        &endpoints,
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    let mut landed = Vec::new();
    for _ in 0..200 {
        landed.push(served_by(http.get(proxy.url("/anonymous"))).await);
    }
    let counts = tally(&landed);
    assert_eq!(
        counts.len(),
        4,
        "keyless requests were not spread: {counts:?}"
    );
}

// === least_conn ===

/// An upstream handler that reports every arrival as (upstream, `x-id`) and, for
/// requests with `x-hold`, answers only once `gate` hands out a permit.
fn holding(
    name: &'static str,
    arrivals: mpsc::UnboundedSender<(&'static str, String)>,
    gate: Arc<Semaphore>,
) -> impl Fn(Request<Incoming>) -> std::pin::Pin<Box<dyn Future<Output = UpstreamReply> + Send>>
+ Send
+ Sync
+ 'static {
    move |request: Request<Incoming>| {
        let (arrivals, gate) = (arrivals.clone(), gate.clone());
        Box::pin(async move {
            let id = request.headers()["x-id"].to_str().unwrap().to_string();
            let hold = request.headers().contains_key("x-hold");
            arrivals.send((name, id)).unwrap();
            if hold {
                gate.acquire().await.unwrap().forget();
            }
            reply(200, "done")
        })
    }
}

/// Sends a held request and waits until an upstream has it (and so the proxy counts
/// it in flight); returns where it went and the pending reply.
async fn send_held(
    proxy: &RunningProxy,
    http: &reqwest::Client,
    arrivals: &mut mpsc::UnboundedReceiver<(&'static str, String)>,
    id: usize,
) -> (&'static str, JoinHandle<reqwest::Response>) {
    let request = http
        .get(proxy.url("/slow"))
        .header("x-hold", "1")
        .header("x-id", id.to_string());
    let pending = tokio::spawn(async move { request.send().await.expect("held request") });
    let (upstream, arrived) = arrivals.recv().await.unwrap();
    assert_eq!(arrived, id.to_string());
    (upstream, pending)
}

async fn expect_done(pending: Vec<JoinHandle<reqwest::Response>>, upstream: &str) {
    for reply in pending {
        let reply = reply.await.unwrap();
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.headers()["x-upstream"], upstream);
        assert_eq!(reply.text().await.unwrap(), "done");
    }
}

#[tokio::test]
async fn least_conn_sends_new_requests_to_the_idle_endpoint() {
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    let (gate_a, gate_b) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let a = TestUpstream::named("a")
        .handler(holding("a", arrivals_tx.clone(), gate_a.clone()))
        .start()
        .await;
    let b = TestUpstream::named("b")
        .handler(holding("b", arrivals_tx, gate_b.clone()))
        .start()
        .await;
    let config = one_pool(r#"balance = "least_conn""#, &[(&a, 1), (&b, 1)]);
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    // Eight held requests, one at a time: equal loads alternate, four on each.
    let (mut held_a, mut held_b) = (Vec::new(), Vec::new());
    for id in 0..8 {
        match send_held(&proxy, &http, &mut arrivals, id).await {
            ("a", pending) => held_a.push(pending),
            (_, pending) => held_b.push(pending),
        }
    }
    assert_eq!((held_a.len(), held_b.len()), (4, 4));

    // B finishes its four; A still holds four.
    gate_b.add_permits(4);
    expect_done(held_b, "b").await;
    wait_for_in_flight(&proxy, &[4, 0]).await;

    for id in 100..120 {
        let request = http.get(proxy.url("/fast")).header("x-id", id.to_string());
        assert_eq!(
            served_by(request).await,
            "b",
            "request {id} went to the busy endpoint"
        );
        assert_eq!(arrivals.recv().await.unwrap(), ("b", id.to_string()));
    }
    assert_eq!(in_flight(&proxy).await, [4, 0]);
    assert_eq!((a.requests(), b.requests()), (4, 24));

    gate_a.add_permits(4);
    expect_done(held_a, "a").await;
    wait_for_in_flight(&proxy, &[0, 0]).await;
}

#[tokio::test]
async fn least_conn_loads_endpoints_in_proportion_to_weight() {
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let a = TestUpstream::named("a")
        .handler(holding("a", arrivals_tx.clone(), gate.clone()))
        .start()
        .await;
    let b = TestUpstream::named("b")
        .handler(holding("b", arrivals_tx, gate.clone()))
        .start()
        .await;
    let config = one_pool(r#"balance = "least_conn""#, &[(&a, 3), (&b, 1)]);
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    let (mut held_a, mut held_b) = (Vec::new(), Vec::new());
    for id in 0..12 {
        match send_held(&proxy, &http, &mut arrivals, id).await {
            ("a", pending) => held_a.push(pending),
            (_, pending) => held_b.push(pending),
        }
    }
    assert_eq!((held_a.len(), held_b.len()), (9, 3));
    assert_eq!(in_flight(&proxy).await, [9, 3]);

    gate.add_permits(12);
    expect_done(held_a, "a").await;
    expect_done(held_b, "b").await;
    wait_for_in_flight(&proxy, &[0, 0]).await;
}

// === p2c_ewma ===

#[tokio::test]
async fn p2c_ewma_sends_little_to_a_slow_endpoint() {
    let slow = TestUpstream::named("slow")
        .delay(Duration::from_millis(200))
        .start()
        .await;
    let fast = TestUpstream::named("fast").start().await;
    let config = one_pool(r#"balance = "p2c_ewma""#, &[(&slow, 1), (&fast, 1)]);
    let proxy = TestProxy::from_toml(&config).seed(11).start().await;
    let http = client();

    let mut landed = Vec::new();
    for _ in 0..100 {
        landed.push(served_by(http.get(proxy.url("/infer"))).await);
    }
    let counts = tally(&landed);
    let on_slow = counts.get("slow").copied().unwrap_or(0);
    assert!(
        on_slow <= 5,
        "the slow endpoint got {on_slow} of 100: {counts:?}"
    );
    assert!(counts["fast"] >= 95, "{counts:?}");
}

// === random ===

#[tokio::test]
async fn random_three_to_one_shares_match_the_weights() {
    let (a, b) = (
        TestUpstream::named("a").start().await,
        TestUpstream::named("b").start().await,
    );
    let config = one_pool(r#"balance = "random""#, &[(&a, 3), (&b, 1)]);
    let proxy = TestProxy::from_toml(&config).seed(42).start().await;
    let http = client();

    // Each pick draws once from the seeded source, so the totals do not depend on
    // the order in which concurrent requests are picked.
    let landed: Vec<String> = stream::iter(0..2000)
        .map(|_| served_by(http.get(proxy.url("/dice"))))
        .buffer_unordered(16)
        .collect()
        .await;
    let counts = tally(&landed);
    let on_a = counts["a"];
    assert_eq!(on_a + counts["b"], 2000);
    assert!(
        (1440..=1560).contains(&on_a),
        "a got {on_a} of 2000 (75% ± 3%)"
    );
}

#[tokio::test]
async fn random_with_the_same_seed_picks_the_same_sequence() {
    let (a, b) = (
        TestUpstream::named("a").start().await,
        TestUpstream::named("b").start().await,
    );
    let config = one_pool(r#"balance = "random""#, &[(&a, 3), (&b, 1)]);
    let first = TestProxy::from_toml(&config).seed(5).start().await;
    let second = TestProxy::from_toml(&config).seed(5).start().await;
    let http = client();

    let mut sequences = Vec::new();
    for proxy in [&first, &second] {
        let mut sequence = Vec::new();
        for _ in 0..60 {
            sequence.push(served_by(http.get(proxy.url("/dice"))).await);
        }
        sequences.push(sequence);
    }
    assert_eq!(sequences[0], sequences[1]);
    assert_eq!(
        tally(&sequences[0]).len(),
        2,
        "60 draws never reached one endpoint"
    );
}
