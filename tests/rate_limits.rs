//! Rate limits: token budgets hold under concurrency (reserved at admission), are
//! settled exactly against a streamed response's usage, given back by a request that
//! fails before any answer or is refused by a later limit (not by one whose client
//! left), and 429s carry `Retry-After` and OpenAI's `x-ratelimit-*` headers. Request limits are exact (the GCRA's own
//! timing is unit-tested with paused time in src/security/rate_limit.rs).

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use junction::demo::mock::{MockModelServer, MockOptions, reply_words};
use support::{TestProxy, TestUpstream, client, listeners_toml, upstream::reply};
use tokio::sync::Notify;

fn config(upstream: &str, limit: &str) -> String {
    format!(
        "{}\n[[pools]]\nname = \"p\"\nendpoints = [{{ url = \"{upstream}\" }}]\n\n[[routes]]\nname = \"chat\"\npool = \"p\"\nrate_limit = {limit}\n",
        listeners_toml()
    )
}

/// A body of exactly `bytes` bytes asking for `max_tokens`: estimate = bytes/4 + max_tokens.
fn body_of(bytes: usize, max_tokens: u64) -> String {
    let skeleton = format!(
        r#"{{"model":"m","max_tokens":{max_tokens},"stream":true,"stream_options":{{"include_usage":true}},"messages":[{{"role":"user","content":""}}]}}"#
    );
    let pad = "x".repeat(bytes - skeleton.len());
    skeleton.replace(r#""content":"""#, &format!(r#""content":"{pad}""#))
}

/// `toml` for the hand-written HTTP/1.1 engine (`fast_path`) or hyper's.
fn on_engine(toml: String, fast_path: bool) -> String {
    if fast_path {
        return toml;
    }
    let toml = toml.replace("name = \"public\"", "name = \"public\"\nfast_path = false");
    assert!(toml.contains("fast_path = false"));
    toml
}

/// A chat completion request of `body` through `proxy`.
fn chat(
    http: &reqwest::Client,
    proxy: &support::proxy::RunningProxy,
    body: &str,
) -> reqwest::RequestBuilder {
    http.post(proxy.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string())
}

/// The statuses of `count` chat requests of `body` sent one after the other, each
/// answer read to its end.
async fn statuses_of(
    http: &reqwest::Client,
    proxy: &support::proxy::RunningProxy,
    body: &str,
    count: usize,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        let reply = chat(http, proxy, body).send().await.unwrap();
        statuses.push(reply.status().as_u16());
        reply.bytes().await.unwrap();
    }
    statuses
}

/// An endpoint that holds every request until the `Notify` is told to release them,
/// then answers `{}` (no usage).
async fn held_upstream() -> (support::upstream::RunningUpstream, Arc<Notify>) {
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let upstream = TestUpstream::named("held")
        .handler(move |_request| {
            let held = held.clone();
            async move {
                held.notified().await;
                reply(200, "{}")
            }
        })
        .start()
        .await;
    (upstream, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_requests_are_held_to_a_budget_that_fits_five() {
    // Held upstream: all admitted requests stay in flight, so no settlement can help.
    let (upstream, release) = held_upstream().await;
    // Each request: 400 bytes (100 tokens) + max_tokens 100 = 200 reserved; budget 1000.
    let proxy = TestProxy::from_toml(&config(&upstream.url(), "{ tokens = 1000, per = \"1m\" }"))
        .start()
        .await;
    let http = client();
    let body = body_of(400, 100);
    let mut calls = Vec::new();
    for _ in 0..20 {
        calls.push(tokio::spawn(chat(&http, &proxy, &body).send()));
    }
    // The five admitted ones are waiting upstream; the rest are refused at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while upstream.requests() < 5 && tokio::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.notify_waiters();
    let mut statuses = Vec::new();
    for call in calls {
        let reply = call.await.unwrap().unwrap();
        if reply.status() == 429 {
            assert!(reply.headers().contains_key("retry-after"));
            assert_eq!(reply.headers()["x-ratelimit-limit-tokens"], "1000");
            assert_eq!(reply.headers()["x-ratelimit-remaining-tokens"], "0");
            let error: serde_json::Value = reply.json().await.unwrap();
            assert_eq!(error["error"]["type"], "rate_limit_exceeded");
            statuses.push(429);
        } else {
            statuses.push(reply.status().as_u16());
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15);
    assert_eq!(upstream.requests(), 5);
}

#[tokio::test]
async fn a_streamed_response_settles_the_reservation_exactly() {
    let mut options = MockOptions::new("v1");
    options.token_interval = Duration::from_millis(1);
    let mock = MockModelServer::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    // Budget 1000 per minute: refill of 1000/60 tokens a second is negligible in this test.
    let proxy = TestProxy::from_toml(&config(
        &format!("http://{}", mock.addr),
        "{ tokens = 1000, per = \"1m\" }",
    ))
    .start()
    .await;
    let http = client();
    // 400 bytes (100) + max_tokens 300 = 400 reserved; the mock's usage is far less.
    let body = body_of(400, 300);
    let reply = chat(&http, &proxy, &body).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    let remaining_after_reserve: u64 = reply.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(remaining_after_reserve, 600);
    let mut stream = reply.bytes_stream();
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
    }
    // The mock counts one token per word: the prompt is one padded word, the reply
    // repeats it after its greeting.
    let used = 1 + reply_words("v1", "xxxx").len() as u64;
    // The settlement happens when the response body ends; the next request on the same
    // keep-alive connection is read only after that.
    let expected = 1000 - used - 400;
    let reply = chat(&http, &proxy, &body).send().await.unwrap();
    let remaining: u64 = reply.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // This request reserved 400 on top of the first one's real usage; the refill (1000 a
    // minute) may add a token or two.
    assert!(
        (expected..=expected + 3).contains(&remaining),
        "remaining {remaining}, expected about {expected} (used {used})"
    );
}

#[tokio::test]
async fn a_request_that_fails_before_any_answer_gives_its_reservation_back() {
    // An endpoint that refuses connections: every request ends in a 502 without a head.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    for fast_path in [true, false] {
        let toml = on_engine(config(&dead, "{ tokens = 1000, per = \"1m\" }"), fast_path);
        let proxy = TestProxy::from_toml(&toml).start().await;
        let http = client();
        // 400 bytes (100) + max_tokens 300 = 400 reserved each: three fit in 1000 only
        // if each failed one gives its 400 back.
        let body = body_of(400, 300);
        let statuses = statuses_of(&http, &proxy, &body, 3).await;
        assert_eq!(statuses, [502, 502, 502], "fast_path = {fast_path}");
    }
}

/// A listener's token budget reserves first; the route's request limit then refuses.
/// The refused request gives the listener its tokens back.
#[tokio::test]
async fn a_request_refused_by_a_later_limit_gives_its_reservation_back() {
    let upstream = TestUpstream::named("a")
        .handler(|_request| async { reply(200, "{}") })
        .start()
        .await;
    let config = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         rate_limit = {{ tokens = 1000, per = \"1m\" }}\n\n\
         [[pools]]\nname = \"p\"\nendpoints = [{{ url = \"{}\" }}]\n\n\
         [[routes]]\nname = \"chat\"\npool = \"p\"\nrate_limit = {{ requests = 1, per = \"1m\" }}\n",
        upstream.url()
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();
    // 400 reserved each. Without a usage in the answer, the first one's estimate stands.
    let body = body_of(400, 300);
    assert_eq!(statuses_of(&http, &proxy, &body, 3).await, [200, 429, 429]);
    let (_, view) = limits(&proxy, "").await;
    let listener = view["routes"][0]["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|limit| limit["tokens"] == 1000)
        .unwrap_or_else(|| panic!("the listener's budget: {view:#}"));
    // The refill (1000 a minute) may have given a few back meanwhile.
    let used = listener["keys"][0]["tokens"]["used"].as_u64().unwrap();
    assert!((390..=400).contains(&used), "used {used}: {view:#}");
}

/// A client that leaves before the answer is not refunded: the endpoint may have worked
/// on its prompt (else leaving would be a way around the budget).
#[tokio::test]
async fn a_client_that_leaves_before_the_answer_keeps_its_estimate_spent() {
    let (upstream, release) = held_upstream().await;
    for fast_path in [true, false] {
        let toml = on_engine(
            config(&upstream.url(), "{ tokens = 1000, per = \"1m\" }"),
            fast_path,
        );
        let proxy = TestProxy::from_toml(&toml).start().await;
        let seen = upstream.requests();
        let call = tokio::spawn(chat(&client(), &proxy, &body_of(400, 300)).send());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while upstream.requests() == seen {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the request arrives"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The client goes away while the endpoint works on it.
        call.abort();
        let _ = call.await;
        loop {
            let metrics = support::parse_metrics(&proxy.metrics_text().await);
            let gone: f64 = metrics
                .iter()
                .filter(|(name, _)| {
                    name.starts_with("junction_requests_total{") && name.contains("code=\"499\"")
                })
                .map(|(_, value)| value)
                .sum();
            if gone >= 1.0 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "recorded as 499");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (_, view) = limits(&proxy, "").await;
        // No key listed: nothing spent.
        let used = view["routes"][0]["limits"][0]["keys"][0]["tokens"]["used"]
            .as_u64()
            .unwrap_or(0);
        assert!(
            (390..=400).contains(&used),
            "fast_path = {fast_path}: used {used}: {view:#}"
        );
    }
    release.notify_waiters();
}

#[tokio::test]
async fn request_limits_are_exact_and_answer_like_openai() {
    let upstream = TestUpstream::named("a").start().await;
    let proxy = TestProxy::from_toml(&config(
        &upstream.url(),
        "{ requests = 10, per = \"1m\", key = \"ip\" }",
    ))
    .start()
    .await;
    let http = client();
    let mut remaining = Vec::new();
    for _ in 0..10 {
        let reply = http.get(proxy.url("/x")).send().await.unwrap();
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.headers()["x-ratelimit-limit-requests"], "10");
        remaining.push(
            reply.headers()["x-ratelimit-remaining-requests"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        remaining,
        ["9", "8", "7", "6", "5", "4", "3", "2", "1", "0"]
    );
    let refused = http.get(proxy.url("/x")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "6");
    assert!(
        refused.headers()["x-ratelimit-reset-requests"]
            .to_str()
            .unwrap()
            .ends_with('s')
    );
    assert_eq!(upstream.requests(), 10);
    let metrics = http
        .get(proxy.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(r#"junction_security_decisions_total{rule="route:chat requests",action="rate_limited"} 1"#), "{metrics}");
}

#[tokio::test]
async fn each_api_key_spends_its_own_budget() {
    let upstream = TestUpstream::named("a").start().await;
    let (small, large) = (
        junction::security::hash_key("sk-small"),
        junction::security::hash_key("sk-large"),
    );
    let config = format!(
        "{}\n[[pools]]\nname = \"p\"\nendpoints = [{{ url = \"{}\" }}]\n\n[[routes]]\nname = \"chat\"\npool = \"p\"\n\
         auth = {{ keys = [{{ name = \"small\", sha256 = \"{small}\", rate_limit = {{ requests = 2, per = \"1m\" }} }}, \
         {{ name = \"large\", sha256 = \"{large}\", rate_limit = {{ requests = 5, per = \"1m\" }} }}] }}\n",
        listeners_toml(),
        upstream.url()
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();
    let status = |key: &'static str| {
        let request = http.get(proxy.url("/x")).bearer_auth(key);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        [
            status("sk-small").await,
            status("sk-small").await,
            status("sk-small").await
        ],
        [200, 200, 429]
    );
    let large: Vec<u16> = futures_util::future::join_all((0..6).map(|_| status("sk-large"))).await;
    assert_eq!(large.iter().filter(|s| **s == 200).count(), 5, "{large:?}");
    assert_eq!(status("sk-nope").await, 401);
}

/// A listener's `rate_limit` is one budget for all of its routes (it was compiled once per
/// route, which gave each route a budget of its own).
#[tokio::test]
async fn a_listeners_limit_is_one_budget_for_all_its_routes() {
    let upstream = TestUpstream::named("a").start().await;
    let config = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         rate_limit = {{ requests = 4, per = \"1m\", key = \"ip\" }}\n\n\
         [[pools]]\nname = \"p\"\nendpoints = [{{ url = \"{}\" }}]\n\n\
         [[routes]]\nname = \"a\"\npool = \"p\"\nmatch = {{ path_prefix = \"/a\" }}\n\n\
         [[routes]]\nname = \"b\"\npool = \"p\"\nmatch = {{ path_prefix = \"/b\" }}\n",
        upstream.url()
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();
    let mut statuses = Vec::new();
    for path in ["/a", "/b", "/a", "/b", "/a", "/b"] {
        let reply = http.get(proxy.url(path)).send().await.unwrap();
        statuses.push(reply.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    assert_eq!(upstream.requests(), 4);
}

/// `GET /api/limits` on the proxy's admin listener: (status, JSON).
async fn limits(proxy: &support::proxy::RunningProxy, query: &str) -> (u16, serde_json::Value) {
    proxy
        .admin_status_json(&format!("/api/limits{query}"))
        .await
}

#[tokio::test]
async fn the_admin_api_shows_each_keys_spending_against_its_budget_by_name() {
    let upstream = TestUpstream::named("a").start().await;
    let (alice, bob) = (
        junction::security::hash_key("sk-alice-value"),
        junction::security::hash_key("sk-bob-value"),
    );
    // A route budget per API key (requests and tokens), and bob's own on top.
    let config = format!(
        "{}\n[[pools]]\nname = \"p\"\nendpoints = [{{ url = \"{}\" }}]\n\n[[routes]]\nname = \"chat\"\npool = \"p\"\n\
         rate_limit = {{ requests = 10, tokens = 10000, per = \"1m\", key = \"api_key\" }}\n\
         auth = {{ keys = [{{ name = \"alice\", sha256 = \"{alice}\" }}, \
         {{ name = \"bob\", sha256 = \"{bob}\", rate_limit = {{ requests = 5, per = \"1m\" }} }}] }}\n",
        listeners_toml(),
        upstream.url()
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let (_, before) = limits(&proxy, "").await;
    assert_eq!(
        before["routes"][0]["limits"][1]["keys_in_use"], 0,
        "{before:#}"
    );
    let http = client();
    for key in [
        "sk-alice-value",
        "sk-alice-value",
        "sk-alice-value",
        "sk-bob-value",
    ] {
        let reply = http
            .get(proxy.url("/x"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        reply.bytes().await.unwrap();
    }

    let (status, body) = limits(&proxy, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["limit"], 50);
    let text = body.to_string();
    assert!(
        !text.contains("sk-alice-value") && !text.contains(&alice),
        "a key's value or hash shown: {text}"
    );
    let route = &body["routes"][0];
    assert_eq!(route["route"], "chat");
    // Bob's own limit runs inside the key check, before the route's.
    let (own, shared) = (&route["limits"][0], &route["limits"][1]);
    assert_eq!(own["scope"], "key:bob");
    assert_eq!(own["requests"], 5);
    assert_eq!(own["keys"][0]["key"], "bob");
    assert_eq!(own["keys"][0]["requests"]["used"], 1);
    assert_eq!(shared["scope"], "route:chat");
    assert_eq!(shared["keyed_by"], "api_key");
    assert_eq!(
        (shared["backend"].as_str(), shared["usage_here"].as_bool()),
        (Some("local"), Some(true))
    );
    assert_eq!(
        (
            shared["period_ms"].as_u64(),
            shared["requests"].as_u64(),
            shared["tokens"].as_u64()
        ),
        (Some(60_000), Some(10), Some(10_000))
    );
    assert_eq!(shared["keys_in_use"], 2);
    let first = &shared["keys"][0];
    assert_eq!(
        (first["kind"].as_str(), first["key"].as_str()),
        (Some("api_key"), Some("alice")),
        "the most spent first: {shared:#}"
    );
    let requests = &first["requests"];
    assert_eq!(
        (
            requests["used"].as_u64(),
            requests["limit"].as_u64(),
            requests["remaining"].as_u64()
        ),
        (Some(3), Some(10), Some(7))
    );
    // Three requests of a 6 s refill each; a moment has passed since.
    let refill = requests["refill_ms"].as_u64().unwrap();
    assert!((15_000..=18_000).contains(&refill), "{refill}");
    // No body, no usage in the answer: each request spent the default estimate, 1024;
    // the budget refills continuously (10000 a minute), a little since.
    let tokens = first["tokens"]["used"].as_u64().unwrap();
    assert!((3000..=3072).contains(&tokens), "{tokens}");
    assert_eq!(shared["keys"][1]["key"], "bob");
    assert_eq!(shared["keys"][1]["requests"]["used"], 1);

    // Bounded: the most spent only, with the count of all.
    let (_, top) = limits(&proxy, "?limit=1").await;
    let shared = &top["routes"][0]["limits"][1];
    assert_eq!(shared["keys"].as_array().unwrap().len(), 1);
    assert_eq!(shared["keys_in_use"], 2);
    for query in ["?limit=0", "?limit=many", "?limit=100000"] {
        let (status, body) = limits(&proxy, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["type"], "invalid_limit");
    }
}
