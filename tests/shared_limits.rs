//! Rate limits shared through a real `redis-server` (started here on a free loopback
//! port): two Junction instances enforce one limit, token reservations hold across
//! both and are given back in Redis by a request that failed, and a Redis that goes away
//! mid-test follows `on_backend_error`.

use crate::support;
use support::redis::Redis;
use support::{TestProxy, TestUpstream, client, listeners_toml};

fn config(upstream: &str, limit: &str) -> String {
    format!(
        "{}\n[[pools]]\nname = \"p\"\nendpoints = [{{ url = \"{upstream}\" }}]\n\n[[routes]]\nname = \"r\"\npool = \"p\"\nrate_limit = {limit}\n",
        listeners_toml()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_enforce_one_request_limit() {
    let redis = Redis::start().await;
    let upstream = TestUpstream::named("a").start().await;
    let limit = format!(
        "{{ requests = 10, per = \"1m\", key = \"route\", backend = \"{}\" }}",
        redis.url()
    );
    let first = TestProxy::from_toml(&config(&upstream.url(), &limit))
        .start()
        .await;
    let second = TestProxy::from_toml(&config(&upstream.url(), &limit))
        .start()
        .await;
    let http = client();
    let mut statuses = Vec::new();
    for i in 0..16 {
        let proxy = if i % 2 == 0 { &first } else { &second };
        statuses.push(
            http.get(proxy.url("/x"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(&statuses[10..], &[429; 6]);
    assert_eq!(upstream.requests(), 10);
    // The admin API says that the usage lives in Redis, not here.
    let view: serde_json::Value = http
        .get(first.admin_url("/api/limits"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let limit = &view["routes"][0]["limits"][0];
    assert_eq!(limit["backend"], "redis", "{view:#}");
    assert_eq!(limit["usage_here"], false);
    assert_eq!(limit["keys"], serde_json::json!([]));
    assert!(limit["note"].as_str().unwrap().contains("Redis"));
    redis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reservations_hold_across_instances() {
    let redis = Redis::start().await;
    let upstream = TestUpstream::named("a").start().await;
    // Each request reserves 100 (400 bytes) + 100 (max_tokens) = 200 of 1000.
    let limit = format!(
        "{{ tokens = 1000, per = \"1m\", key = \"route\", backend = \"{}\" }}",
        redis.url()
    );
    let first = TestProxy::from_toml(&config(&upstream.url(), &limit))
        .start()
        .await;
    let second = TestProxy::from_toml(&config(&upstream.url(), &limit))
        .start()
        .await;
    let skeleton = r#"{"model":"m","max_tokens":100,"messages":[{"role":"user","content":""}]}"#;
    let body = skeleton.replace(
        r#""content":"""#,
        &format!(r#""content":"{}""#, "x".repeat(400 - skeleton.len())),
    );
    assert_eq!(body.len(), 400);
    let http = client();
    let mut calls = Vec::new();
    for i in 0..10 {
        let proxy = if i % 2 == 0 { &first } else { &second };
        let request = http
            .post(proxy.url("/v1/chat"))
            .header("content-type", "application/json")
            .body(body.clone());
        calls.push(tokio::spawn(request.send()));
    }
    let mut ok = 0;
    for call in calls {
        // The echo upstream reports no usage: each admitted request keeps its estimate.
        if call.await.unwrap().unwrap().status() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
    redis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_fails_before_any_answer_gives_its_shared_reservation_back() {
    let redis = Redis::start().await;
    // An endpoint that refuses connections: the request ends in a 502 without a head.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let limit = format!(
        "{{ tokens = 1000, per = \"1m\", key = \"route\", backend = \"{}\" }}",
        redis.url()
    );
    let proxy = TestProxy::from_toml(&config(&dead, &limit)).start().await;
    // 100 (400 bytes) + max_tokens 300 = 400 reserved.
    let skeleton = r#"{"model":"m","max_tokens":300,"messages":[{"role":"user","content":""}]}"#;
    let body = skeleton.replace(
        r#""content":"""#,
        &format!(r#""content":"{}""#, "x".repeat(400 - skeleton.len())),
    );
    let reply = client()
        .post(proxy.url("/v1/chat"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 502);
    // The settlement goes to Redis on a task of its own: the budget's level comes back
    // to (nearly) whole, where it would stay at 600 without it.
    let keys: Vec<String> = redis
        .until(
            &["KEYS", "junction:ratelimit:*:tok"],
            |keys: &Vec<String>| !keys.is_empty(),
        )
        .await;
    assert_eq!(keys.len(), 1, "one token budget: {keys:?}");
    redis
        .until(&["HGET", &keys[0], "level"], |level: &String| {
            level.parse::<f64>().is_ok_and(|level| level >= 990.0)
        })
        .await;
    redis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_follows_on_backend_error() {
    let redis = Redis::start().await;
    let upstream = TestUpstream::named("a").start().await;
    let url = redis.url();
    let allow = TestProxy::from_toml(&config(
        &upstream.url(),
        &format!("{{ requests = 100, backend = \"{url}\", on_backend_error = \"allow\" }}"),
    ))
    .start()
    .await;
    let deny = TestProxy::from_toml(&config(
        &upstream.url(),
        &format!("{{ requests = 100, backend = \"{url}\", on_backend_error = \"deny\" }}"),
    ))
    .start()
    .await;
    let http = client();
    assert_eq!(
        http.get(allow.url("/x")).send().await.unwrap().status(),
        200
    );
    assert_eq!(http.get(deny.url("/x")).send().await.unwrap().status(), 200);
    redis.stop().await;
    for _ in 0..3 {
        assert_eq!(
            http.get(allow.url("/x")).send().await.unwrap().status(),
            200,
            "allow: served without the limiter"
        );
        let refused = http.get(deny.url("/x")).send().await.unwrap();
        assert_eq!(refused.status(), 503, "deny: refused without the limiter");
        let error: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["type"], "rate_limiter_unavailable");
    }
    let metrics = http
        .get(allow.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"junction_security_decisions_total{rule="route:r backend",action="backend_error"} 3"#
        ),
        "{metrics}"
    );
}
