use crate::support;

// Model versioning end to end: a route's traffic split between a stable and a
// candidate pool (exact, or sticky by header, cookie or client address), the
// `x-junction-version` override, shadow traffic to a mirror pool, runtime control of the
// weights through the admin API, automatic canary analysis (promotion step by step, or
// rollback), and the state that survives reloads and restarts. Which pool served a
// request is read from the `x-upstream` header of its reply.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{StreamExt, stream};
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use junction::balance::SplitMix;
use junction::server::Gateway;
use serde_json::{Value, json};
use support::proxy::RunningProxy;
use support::upstream::{RunningUpstream, UpstreamReply, reply};
use support::{JunctionProcess, TestProxy, TestUpstream, client, served_by, tally};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

// === Config ===

/// Sets the admin token variable `name` (one name per test) and returns it.
fn set_token(name: &str, token: &str) -> String {
    // SAFETY: every test uses its own variable name, so no other thread of this test
    // binary writes it, and only the config compiler of this very test reads it.
    unsafe { std::env::set_var(name, token) };
    name.to_string()
}

/// `[admin]` with the token variable `token_env`, and one listener "public" with the
/// extra `listener` keys.
fn head(token_env: &str, listener: &str) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"
token_env = "{token_env}"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"
{listener}
"#
    )
}

fn pool(name: &str, version: &str, upstream: &RunningUpstream) -> String {
    format!(
        r#"
[[pools]]
name = "{name}"
version = "{version}"
endpoints = [{{ url = "{}" }}]
"#,
        upstream.url()
    )
}

/// Pools "stable" (v1) and "candidate" (v2), and route "chat" split between them by
/// `weights`, with the extra route keys `route` (a `[routes.canary]` table goes last).
fn split_config(
    head: &str,
    stable: &RunningUpstream,
    candidate: &RunningUpstream,
    weights: (u32, u32),
    route: &str,
) -> String {
    format!(
        r#"{head}
{}
{}
[[routes]]
name = "chat"
split = [{{ pool = "stable", weight = {} }}, {{ pool = "candidate", weight = {} }}]
{route}
"#,
        pool("stable", "v1", stable),
        pool("candidate", "v2", candidate),
        weights.0,
        weights.1,
    )
}

/// A canary table for route "chat" with candidate "candidate".
fn canary_table(interval: &str, min_requests: u32, max_ratio: f64) -> String {
    format!(
        r#"
[routes.canary]
candidate = "candidate"
steps = [5, 25, 50, 100]
interval = "{interval}"
min_requests = {min_requests}
max_error_rate = 0.05
max_latency_ratio = {max_ratio:.1}
max_ttft_ratio = {max_ratio:.1}
"#
    )
}

async fn stable_and_candidate() -> (RunningUpstream, RunningUpstream) {
    (
        TestUpstream::named("stable").start().await,
        TestUpstream::named("candidate").start().await,
    )
}

// === Requests ===

/// Sends every request (16 at a time) and returns who served each, in input order.
async fn serve_all(requests: Vec<reqwest::RequestBuilder>) -> Vec<String> {
    let mut served: Vec<(usize, String)> = stream::iter(requests.into_iter().enumerate())
        .map(|(i, request)| async move { (i, served_by(request).await) })
        .buffer_unordered(16)
        .collect()
        .await;
    served.sort();
    served.into_iter().map(|(_, name)| name).collect()
}

/// Requests forced to v2 and following the split, one after the other, until aborted.
fn spawn_load(url: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let http = client();
        loop {
            let forced = http.get(&url).header("x-junction-version", "v2").send();
            if let Ok(reply) = forced.await {
                let _ = reply.bytes().await;
            }
            if let Ok(reply) = http.get(&url).send().await {
                let _ = reply.bytes().await;
            }
        }
    })
}

// === Admin API ===

async fn get_json(url: String) -> Value {
    let reply = client().get(&url).send().await.expect("admin API");
    assert_eq!(reply.status(), 200, "GET {url}");
    reply.json().await.expect("JSON")
}

/// A changing admin call with an optional bearer token: (status, JSON body).
async fn admin_call(
    request: reqwest::RequestBuilder,
    token: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let reply = request.send().await.expect("admin API");
    let status = reply.status().as_u16();
    let headers = reply.headers().clone();
    let body = reply.json().await.expect("JSON");
    (status, body, headers)
}

async fn put_split(admin: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let request = client()
        .put(format!("{admin}/api/routes/chat/split"))
        .json(&body);
    let (status, body, _) = admin_call(request, token).await;
    (status, body)
}

async fn post_action(admin: &str, action: &str, token: Option<&str>) -> (u16, Value) {
    let request = client().post(format!("{admin}/api/routes/chat/{action}"));
    let (status, body, _) = admin_call(request, token).await;
    (status, body)
}

async fn metrics(admin: &str) -> String {
    client()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The sum of the series of `name` whose labels include every pair of `labels`, and how
/// many series that is.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> (f64, usize) {
    let mut sum = 0.0;
    let mut series = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some((label_text, value)) = rest.strip_prefix('{').and_then(|r| r.split_once("} "))
        else {
            continue;
        };
        let present: Vec<&str> = label_text.split(',').collect();
        if labels
            .iter()
            .all(|(k, v)| present.contains(&format!("{k}=\"{v}\"").as_str()))
        {
            sum += value.trim().parse::<f64>().expect("metric value");
            series += 1;
        }
    }
    (sum, series)
}

/// Polls `GET /api/routes/chat/canary` until its phase is `state` (at most `within`).
async fn wait_for_phase(admin: &str, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let canary = get_json(format!("{admin}/api/routes/chat/canary")).await;
        if canary["phase"]["state"] == state {
            return canary;
        }
        assert!(
            Instant::now() < deadline,
            "the canary did not reach {state:?} within {within:?}: {canary:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn admin(proxy: &RunningProxy) -> String {
    proxy.admin_url("")
}

// === Exact split ===

#[tokio::test]
async fn a_95_5_split_is_exact_over_10000_requests() {
    let (stable, candidate) = stable_and_candidate().await;
    let config = split_config(
        &head("VERSIONING_TEST_TOKEN_EXACT", ""),
        &stable,
        &candidate,
        (95, 5),
        "",
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    let served = serve_all((0..10_000).map(|_| http.get(proxy.url("/v1/x"))).collect()).await;

    // Smooth weighted rotation: exactly 95 of every 100, far inside 0.5 percentage points.
    assert_eq!(
        tally(&served),
        BTreeMap::from([("candidate", 500), ("stable", 9500)])
    );
    assert_eq!((stable.requests(), candidate.requests()), (9500, 500));
    // Spread out, not in runs: every window of 100 in a row has exactly 5 candidates.
    let rotation = serve_all((0..200).map(|_| http.get(proxy.url("/v1/x"))).collect()).await;
    assert_eq!(tally(&rotation)["candidate"], 10);
    let reply = http.get(proxy.url("/v1/x")).send().await.unwrap();
    let version = &reply.headers()["x-junction-version"];
    match reply.headers()["x-upstream"].to_str().unwrap() {
        "stable" => assert_eq!(version, "v1"),
        _ => assert_eq!(version, "v2"),
    }
}

// === Stickiness ===

#[tokio::test]
async fn sticky_users_keep_their_pool_and_stay_on_a_growing_candidate() {
    let token = "sticky-secret";
    let env = set_token("VERSIONING_TEST_TOKEN_STICKY", token);
    let (stable, candidate) = stable_and_candidate().await;
    let config = split_config(
        &head(&env, ""),
        &stable,
        &candidate,
        (95, 5),
        r#"sticky = "header:x-user-id""#,
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();
    const USERS: usize = 1000;

    // Each user three times (interleaved: all users, then all again).
    let requests = (0..3 * USERS)
        .map(|i| {
            http.get(proxy.url("/v1/chat"))
                .header("x-user-id", format!("user-{}", i % USERS))
        })
        .collect();
    let served = serve_all(requests).await;
    let mut before = Vec::new();
    for user in 0..USERS {
        let first = &served[user];
        assert_eq!(&served[USERS + user], first, "user-{user} changed pool");
        assert_eq!(&served[2 * USERS + user], first, "user-{user} changed pool");
        before.push(first.clone());
    }
    let on_candidate = before.iter().filter(|p| *p == "candidate").count();
    assert!(
        (30..=70).contains(&on_candidate),
        "{on_candidate} of {USERS} users on a 5% candidate"
    );

    let (status, body) = put_split(
        &admin(&proxy),
        Some(token),
        json!({ "weights": { "stable": 75, "candidate": 25 } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["weights"], json!({ "stable": 75, "candidate": 25 }));
    assert_eq!(body["configured"], json!({ "stable": 95, "candidate": 5 }));

    let requests = (0..2 * USERS)
        .map(|i| {
            http.get(proxy.url("/v1/chat"))
                .header("x-user-id", format!("user-{}", i % USERS))
        })
        .collect();
    let served = serve_all(requests).await;
    let mut grown = 0;
    for user in 0..USERS {
        let now = &served[user];
        assert_eq!(&served[USERS + user], now, "user-{user} changed pool");
        if before[user] == "candidate" {
            assert_eq!(
                now, "candidate",
                "user-{user} left the candidate as it grew"
            );
        }
        grown += usize::from(now == "candidate");
    }
    assert!(
        (200..=300).contains(&grown),
        "{grown} of {USERS} users on a 25% candidate"
    );
}

#[tokio::test]
async fn a_set_cookie_pins_a_new_client_to_its_pool() {
    let (stable, candidate) = stable_and_candidate().await;
    let config = split_config(
        &head("VERSIONING_TEST_TOKEN_COOKIE", ""),
        &stable,
        &candidate,
        (80, 20),
        r#"sticky = "cookie:jv"
set_cookie = true"#,
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    let mut pools = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for client_number in 0..200 {
        let reply = http.get(proxy.url("/v1/chat")).send().await.unwrap();
        assert_eq!(reply.status(), 200);
        let first = reply.headers()["x-upstream"].to_str().unwrap().to_string();
        let set_cookie = reply
            .headers()
            .get("set-cookie")
            .unwrap_or_else(|| panic!("client {client_number}: no Set-Cookie on a first reply"))
            .to_str()
            .unwrap()
            .to_string();
        let pair = set_cookie.split(';').next().unwrap().trim().to_string();
        assert!(pair.starts_with("jv="), "{set_cookie}");
        assert!(set_cookie.contains("Path=/"), "{set_cookie}");
        assert!(ids.insert(pair.clone()), "the id {pair} was given twice");
        for _ in 0..3 {
            let reply = http
                .get(proxy.url("/v1/chat"))
                .header("cookie", format!("theme=dark; {pair}"))
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 200);
            assert!(
                reply.headers().get("set-cookie").is_none(),
                "a client with the cookie got another"
            );
            assert_eq!(
                reply.headers()["x-upstream"],
                first,
                "client {client_number} with {pair} changed pool"
            );
        }
        *pools.entry(first).or_insert(0) += 1;
    }
    assert_eq!(pools.len(), 2, "both sides must have clients: {pools:?}");
    assert!(pools["candidate"] >= 15, "{pools:?}");
}

#[tokio::test]
async fn sticky_ip_keeps_each_client_address_on_one_pool() {
    let (stable, candidate) = stable_and_candidate().await;
    // Behind a trusted load balancer: the client address is the X-Forwarded-For one.
    let config = split_config(
        &head(
            "VERSIONING_TEST_TOKEN_IP",
            r#"trusted_proxies = ["127.0.0.1/32"]"#,
        ),
        &stable,
        &candidate,
        (80, 20),
        r#"sticky = "ip""#,
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();
    const CLIENTS: usize = 300;

    let requests = (0..3 * CLIENTS)
        .map(|i| {
            let ip = format!("203.0.{}.{}", (i % CLIENTS) / 200, (i % CLIENTS) % 200 + 1);
            http.get(proxy.url("/v1/chat"))
                .header("x-forwarded-for", ip)
        })
        .collect();
    let served = serve_all(requests).await;
    for c in 0..CLIENTS {
        assert_eq!(served[CLIENTS + c], served[c], "client {c} changed pool");
        assert_eq!(
            served[2 * CLIENTS + c],
            served[c],
            "client {c} changed pool"
        );
    }
    let on_candidate = served[..CLIENTS]
        .iter()
        .filter(|p| *p == "candidate")
        .count();
    assert!(
        (30..=90).contains(&on_candidate),
        "{on_candidate} of {CLIENTS} addresses on a 20% candidate"
    );

    // Without the header every request comes from 127.0.0.1: one pool for all.
    let direct = serve_all((0..50).map(|_| http.get(proxy.url("/v1/chat"))).collect()).await;
    assert_eq!(tally(&direct).len(), 1, "{:?}", tally(&direct));
}

// === The override header ===

/// The headers the upstream received, from its echo.
async fn echoed(reply: reqwest::Response) -> (String, serde_json::Map<String, Value>) {
    assert_eq!(reply.status(), 200);
    let upstream = reply.headers()["x-upstream"].to_str().unwrap().to_string();
    let echo: Value = reply.json().await.unwrap();
    (upstream, echo["headers"].as_object().unwrap().clone())
}

fn assert_override_headers_removed(headers: &serde_json::Map<String, Value>) {
    assert!(
        !headers.contains_key("x-junction-version"),
        "the upstream saw x-junction-version: {headers:?}"
    );
    assert!(
        !headers.contains_key("x-junction-admin-token"),
        "the upstream saw the admin token: {headers:?}"
    );
}

#[tokio::test]
async fn the_version_header_forces_a_pool_from_a_trusted_network() {
    let (stable, candidate) = stable_and_candidate().await;
    let config = split_config(
        &head("VERSIONING_TEST_TOKEN_FORCE", ""),
        &stable,
        &candidate,
        (95, 5),
        r#"version_override_from = ["127.0.0.1/32"]"#,
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    for _ in 0..40 {
        let reply = http
            .get(proxy.url("/v1/chat"))
            .header("x-junction-version", "v2")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.headers()["x-junction-version"], "v2");
        let (upstream, headers) = echoed(reply).await;
        assert_eq!(upstream, "candidate");
        assert_override_headers_removed(&headers);
    }
    let forced_stable = serve_all(
        (0..20)
            .map(|_| {
                http.get(proxy.url("/v1/chat"))
                    .header("x-junction-version", "v1")
            })
            .collect(),
    )
    .await;
    assert_eq!(tally(&forced_stable), BTreeMap::from([("stable", 20)]));
    // An unknown version follows the split: the rotation was not disturbed by the
    // forced requests, so 100 in a row are exactly 95/5.
    let unknown = serve_all(
        (0..100)
            .map(|_| {
                http.get(proxy.url("/v1/chat"))
                    .header("x-junction-version", "v9")
            })
            .collect(),
    )
    .await;
    assert_eq!(
        tally(&unknown),
        BTreeMap::from([("candidate", 5), ("stable", 95)])
    );
    assert_eq!(candidate.requests(), 45);
}

#[tokio::test]
async fn the_version_header_from_elsewhere_needs_the_admin_token() {
    let token = "override-secret";
    let env = set_token("VERSIONING_TEST_TOKEN_UNTRUSTED", token);
    let (stable, candidate) = stable_and_candidate().await;
    // The candidate gets nothing from the split: only a forced request reaches it.
    let config = split_config(
        &head(&env, ""),
        &stable,
        &candidate,
        (100, 0),
        r#"version_override_from = ["10.0.0.0/8"]"#,
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();
    let send = |token: Option<&str>, forwarded_for: Option<&str>| {
        let mut request = http
            .get(proxy.url("/v1/chat"))
            .header("x-junction-version", "v2");
        if let Some(token) = token {
            request = request.header("x-junction-admin-token", token);
        }
        if let Some(ip) = forwarded_for {
            request = request.header("x-forwarded-for", ip);
        }
        request.send()
    };

    // 127.0.0.1 is not in 10.0.0.0/8: ignored, and so is a claimed address from an
    // untrusted peer, and a wrong token.
    for (token, forwarded_for) in [
        (None, None),
        (None, Some("10.1.2.3")),
        (Some("wrong"), None),
        (Some("override-secre"), None),
    ] {
        let (upstream, headers) = echoed(send(token, forwarded_for).await.unwrap()).await;
        assert_eq!(
            upstream, "stable",
            "token {token:?}, x-forwarded-for {forwarded_for:?}"
        );
        assert_override_headers_removed(&headers);
    }
    for _ in 0..10 {
        let (upstream, headers) = echoed(send(Some(token), None).await.unwrap()).await;
        assert_eq!(
            upstream, "candidate",
            "the admin token forces from anywhere"
        );
        assert_override_headers_removed(&headers);
    }
    assert_eq!((stable.requests(), candidate.requests()), (4, 10));
}

// === Shadow traffic ===

#[tokio::test]
async fn a_hanging_shadow_pool_never_delays_the_primary() {
    let (stable, candidate) = stable_and_candidate().await;
    let hanging = TestUpstream::named("shadow")
        .handler(|_request: Request<Incoming>| std::future::pending::<UpstreamReply>())
        .start()
        .await;
    let config = format!(
        "{}{}",
        split_config(
            &head("VERSIONING_TEST_TOKEN_HANG", ""),
            &stable,
            &candidate,
            (95, 5),
            r#"mirror = { pool = "shadow", percent = 100 }"#,
        ),
        pool("shadow", "v3", &hanging)
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let started = Instant::now();
        let reply = http
            .post(proxy.url("/v1/chat"))
            .body(format!("{{\"n\":{i}}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        assert_ne!(reply.headers()["x-upstream"], "shadow");
        let echo: Value = reply.json().await.unwrap();
        assert_eq!(echo["body"], format!("{{\"n\":{i}}}"));
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(200),
        "a primary request took {slowest:?}"
    );

    // Every copy reached the shadow endpoint, none has been answered, and the primary
    // path is still as fast with 30 copies hanging.
    let deadline = Instant::now() + Duration::from_secs(5);
    while hanging.requests() < 30 {
        assert!(
            Instant::now() < deadline,
            "{} of 30 copies arrived",
            hanging.requests()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..10 {
        let started = Instant::now();
        served_by(http.post(proxy.url("/v1/chat")).body("again")).await;
        assert!(started.elapsed() < Duration::from_millis(200));
    }
    assert_eq!(stable.requests() + candidate.requests(), 40);
    let text = metrics(&admin(&proxy)).await;
    let (shadow_answers, _) = metric(
        &text,
        "junction_requests_total",
        &[("pool", "shadow"), ("shadow", "true")],
    );
    assert_eq!(shadow_answers, 0.0, "no shadow copy has an answer yet");
}

/// An upstream that reports each request's path and body on a channel, then echoes.
async fn recording(name: &str) -> (RunningUpstream, mpsc::UnboundedReceiver<(String, String)>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let upstream = TestUpstream::named(name)
        .handler(move |request: Request<Incoming>| {
            let sender = sender.clone();
            async move {
                let path = request.uri().to_string();
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let body = String::from_utf8_lossy(&body).into_owned();
                let _ = sender.send((path, body.clone()));
                reply(200, body)
            }
        })
        .start()
        .await;
    (upstream, receiver)
}

async fn receive(
    receiver: &mut mpsc::UnboundedReceiver<(String, String)>,
    count: usize,
) -> Vec<(String, String)> {
    let mut received = Vec::new();
    for _ in 0..count {
        let copy = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} copies arrived", received.len()))
            .expect("shadow upstream running");
        received.push(copy);
    }
    received
}

/// Polls `/metrics` until the shadow series of pool "shadow" add up to `expected`.
async fn wait_for_shadow_count(admin: &str, expected: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics(admin).await;
        let (count, _) = metric(
            &text,
            "junction_requests_total",
            &[("route", "chat"), ("pool", "shadow"), ("shadow", "true")],
        );
        if count == expected {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "shadow requests counted: {count}, expected {expected}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn shadow_copies_carry_the_body_and_are_counted_as_shadow() {
    let (stable, candidate) = stable_and_candidate().await;
    let (shadow, mut copies) = recording("shadow").await;
    let config = format!(
        "{}{}",
        split_config(
            &head("VERSIONING_TEST_TOKEN_SHADOW", ""),
            &stable,
            &candidate,
            (95, 5),
            r#"mirror = { pool = "shadow", percent = 100 }"#,
        ),
        pool("shadow", "v3", &shadow)
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    for i in 0..20 {
        let reply = http
            .post(proxy.url(&format!("/v1/chat?i={i}")))
            .header("content-type", "application/json")
            .body(format!(r#"{{"model":"m","n":{i}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        assert_ne!(reply.headers()["x-upstream"], "shadow");
        let echo: Value = reply.json().await.unwrap();
        assert_eq!(echo["body"], format!(r#"{{"model":"m","n":{i}}}"#));
    }
    let mut received = receive(&mut copies, 20).await;
    received.sort_by_key(|(path, _)| path[path.find('=').unwrap() + 1..].parse::<u32>().unwrap());
    for (i, (path, body)) in received.iter().enumerate() {
        assert_eq!(path, &format!("/v1/chat?i={i}"));
        assert_eq!(body, &format!(r#"{{"model":"m","n":{i}}}"#));
    }

    let text = wait_for_shadow_count(&admin(&proxy), 20.0).await;
    let (ok, series) = metric(
        &text,
        "junction_requests_total",
        &[
            ("route", "chat"),
            ("pool", "shadow"),
            ("version", "v3"),
            ("shadow", "true"),
            ("code", "200"),
        ],
    );
    assert_eq!((ok, series), (20.0, 1), "{text}");
    let (primary, _) = metric(
        &text,
        "junction_requests_total",
        &[("route", "chat"), ("shadow", "false")],
    );
    assert_eq!(primary, 20.0, "{text}");
    let (shadow_as_primary, _) = metric(
        &text,
        "junction_requests_total",
        &[("pool", "shadow"), ("shadow", "false")],
    );
    assert_eq!(shadow_as_primary, 0.0, "{text}");
    assert_eq!(stable.requests() + candidate.requests(), 20);
}

#[tokio::test]
async fn mirror_percent_10_copies_exactly_10_of_100() {
    let (stable, candidate) = stable_and_candidate().await;
    let (shadow, mut copies) = recording("shadow").await;
    let config = format!(
        "{}{}",
        split_config(
            &head("VERSIONING_TEST_TOKEN_PERCENT", ""),
            &stable,
            &candidate,
            (95, 5),
            r#"mirror = { pool = "shadow", percent = 10 }"#,
        ),
        pool("shadow", "v3", &shadow)
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    for i in 1..=100 {
        served_by(http.get(proxy.url(&format!("/v1/chat?i={i}")))).await;
    }
    let paths: BTreeSet<String> = receive(&mut copies, 10)
        .await
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let expected: BTreeSet<String> = (1..=10).map(|k| format!("/v1/chat?i={}", 10 * k)).collect();
    assert_eq!(paths, expected, "every 10th request is copied");
    wait_for_shadow_count(&admin(&proxy), 10.0).await;
    assert!(copies.try_recv().is_err(), "more than 10 copies");
    assert_eq!(shadow.requests(), 10);
}

// === Canary analysis ===

/// An upstream that answers 500 to every 5th request.
async fn failing_every_fifth(name: &str) -> RunningUpstream {
    let count = Arc::new(AtomicUsize::new(0));
    TestUpstream::named(name)
        .handler(move |_request: Request<Incoming>| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n.is_multiple_of(5) {
                    reply(500, "boom")
                } else {
                    reply(200, "ok")
                }
            }
        })
        .start()
        .await
}

#[tokio::test]
async fn a_failing_candidate_is_rolled_back_within_one_interval() {
    let stable = TestUpstream::named("stable").start().await;
    let candidate = failing_every_fifth("candidate").await;
    let route = format!(
        "version_override_from = [\"127.0.0.1/32\"]\n{}",
        canary_table("400ms", 20, 3.0)
    );
    let config = split_config(
        &head("VERSIONING_TEST_TOKEN_ROLLBACK", ""),
        &stable,
        &candidate,
        (95, 5),
        &route,
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let admin = admin(&proxy);
    let before = get_json(format!("{admin}/api/routes/chat/canary")).await;
    assert_eq!(
        before["phase"],
        json!({ "state": "progressing", "step": 0 })
    );
    assert_eq!(before["weights"], json!({ "stable": 95, "candidate": 5 }));

    let started = Instant::now();
    let load = spawn_load(proxy.url("/v1/chat"));
    let canary = wait_for_phase(&admin, "failed", Duration::from_secs(5)).await;
    let took = started.elapsed();
    load.abort();

    // The first interval already had the candidate's 20 requests: failed at its end,
    // straight from the first step.
    assert!(
        took < Duration::from_millis(400 + 1000),
        "rolled back after {took:?} with a 400 ms interval"
    );
    let transitions = canary["transitions"].as_array().unwrap();
    assert_eq!(transitions.len(), 1, "{canary:#}");
    let transition = &transitions[0];
    assert_eq!(
        transition["from"],
        json!({ "state": "progressing", "step": 0 })
    );
    assert_eq!(transition["candidate_weight"], 0);
    let reason = canary["phase"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("error rate"), "{reason}");
    let figures = &transition["figures"];
    assert!(figures["candidate_requests"].as_u64().unwrap() >= 20);
    let rate = figures["candidate_error_rate"].as_f64().unwrap();
    assert!((0.15..=0.25).contains(&rate), "{figures}");
    assert_eq!(canary["weights"], json!({ "stable": 100, "candidate": 0 }));

    let text = metrics(&admin).await;
    assert_eq!(
        metric(&text, "junction_canary_state", &[("route", "chat")]),
        (2.0, 1)
    );
    assert_eq!(
        metric(
            &text,
            "junction_canary_weight",
            &[("route", "chat"), ("pool", "candidate")]
        ),
        (0.0, 1)
    );
    assert_eq!(
        metric(
            &text,
            "junction_canary_weight",
            &[("route", "chat"), ("pool", "stable")]
        ),
        (100.0, 1)
    );
    let http = client();
    let after = serve_all((0..50).map(|_| http.get(proxy.url("/v1/chat"))).collect()).await;
    assert_eq!(tally(&after), BTreeMap::from([("stable", 50)]));
}

#[tokio::test]
async fn a_healthy_candidate_walks_every_step_to_100() {
    let (stable, candidate) = stable_and_candidate().await;
    // Generous latency ratios: both sides are the same echo server, and a p99 taken
    // over a few hundred requests on a busy test machine is noise; this is the walk.
    let route = format!(
        "version_override_from = [\"127.0.0.1/32\"]\n{}",
        canary_table("300ms", 10, 50.0)
    );
    let config = split_config(
        &head("VERSIONING_TEST_TOKEN_WALK", ""),
        &stable,
        &candidate,
        (95, 5),
        &route,
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let admin = admin(&proxy);

    let load = spawn_load(proxy.url("/v1/chat"));
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let canary = loop {
        let canary = get_json(format!("{admin}/api/routes/chat/canary")).await;
        seen.insert(canary["weights"]["candidate"].as_u64().unwrap());
        if canary["phase"]["state"] != "progressing" {
            break canary;
        }
        assert!(Instant::now() < deadline, "still progressing: {canary:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    load.abort();

    assert_eq!(
        canary["phase"],
        json!({ "state": "promoted" }),
        "{canary:#}"
    );
    let transitions = canary["transitions"].as_array().unwrap();
    let walked: Vec<(Value, Value)> = transitions
        .iter()
        .map(|t| (t["to"].clone(), t["candidate_weight"].clone()))
        .collect();
    assert_eq!(
        walked,
        vec![
            (json!({ "state": "progressing", "step": 1 }), json!(25)),
            (json!({ "state": "progressing", "step": 2 }), json!(50)),
            (json!({ "state": "promoted" }), json!(100)),
        ]
    );
    for transition in transitions {
        assert!(
            transition["figures"]["candidate_requests"]
                .as_u64()
                .unwrap()
                >= 10
        );
        assert_eq!(transition["figures"]["candidate_error_rate"], 0.0);
    }
    assert!(
        seen.is_subset(&BTreeSet::from([5, 25, 50, 100])),
        "{seen:?}"
    );
    assert_eq!(canary["weights"], json!({ "stable": 0, "candidate": 100 }));

    let text = metrics(&admin).await;
    assert_eq!(
        metric(&text, "junction_canary_state", &[("route", "chat")]),
        (1.0, 1)
    );
    assert_eq!(
        metric(
            &text,
            "junction_canary_weight",
            &[("route", "chat"), ("pool", "candidate")]
        ),
        (100.0, 1)
    );
    let http = client();
    let after = serve_all((0..50).map(|_| http.get(proxy.url("/v1/chat"))).collect()).await;
    assert_eq!(tally(&after), BTreeMap::from([("candidate", 50)]));
    assert!(stable.requests() > 0);
}

// === Admin control ===

#[tokio::test]
async fn manual_promote_and_rollback_need_the_bearer_token() {
    let token = "promote-secret";
    let env = set_token("VERSIONING_TEST_TOKEN_MANUAL", token);
    let (stable, candidate) = stable_and_candidate().await;
    // An interval far beyond the test: only the admin API moves the weights.
    let config = split_config(
        &head(&env, ""),
        &stable,
        &candidate,
        (95, 5),
        &canary_table("1h", 20, 3.0),
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let admin = admin(&proxy);
    let http = client();

    for (action, presented) in [
        ("promote", None),
        ("promote", Some("wrong")),
        ("rollback", None),
        ("rollback", Some("promote-secre")),
    ] {
        let request = http.post(format!("{admin}/api/routes/chat/{action}"));
        let (status, body, headers) = admin_call(request, presented).await;
        assert_eq!(status, 401, "{action} with {presented:?}: {body}");
        assert_eq!(headers["www-authenticate"], "Bearer");
    }
    let (status, _) = put_split(
        &admin,
        None,
        json!({ "weights": { "stable": 0, "candidate": 100 } }),
    )
    .await;
    assert_eq!(status, 401);
    let unchanged = get_json(format!("{admin}/api/routes/chat/split")).await;
    assert_eq!(
        unchanged["weights"],
        json!({ "stable": 95, "candidate": 5 })
    );

    let (status, body) = post_action(&admin, "promote", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["weights"], json!({ "stable": 0, "candidate": 100 }));
    let canary = get_json(format!("{admin}/api/routes/chat/canary")).await;
    assert_eq!(canary["phase"], json!({ "state": "promoted" }));
    let served = serve_all((0..20).map(|_| http.get(proxy.url("/v1/x"))).collect()).await;
    assert_eq!(tally(&served), BTreeMap::from([("candidate", 20)]));
    let text = metrics(&admin).await;
    assert_eq!(
        metric(&text, "junction_canary_state", &[("route", "chat")]),
        (1.0, 1)
    );

    let (status, body) = post_action(&admin, "rollback", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["weights"], json!({ "stable": 100, "candidate": 0 }));
    let canary = get_json(format!("{admin}/api/routes/chat/canary")).await;
    assert_eq!(canary["phase"]["state"], "failed");
    assert_eq!(
        canary["phase"]["reason"],
        "rolled back through the admin API"
    );
    let served = serve_all((0..20).map(|_| http.get(proxy.url("/v1/x"))).collect()).await;
    assert_eq!(tally(&served), BTreeMap::from([("stable", 20)]));
    let text = metrics(&admin).await;
    assert_eq!(
        metric(&text, "junction_canary_state", &[("route", "chat")]),
        (2.0, 1)
    );
    assert_eq!(
        metric(
            &text,
            "junction_canary_weight",
            &[("route", "chat"), ("pool", "candidate")]
        ),
        (0.0, 1)
    );
}

#[tokio::test]
async fn changes_are_forbidden_without_a_configured_token() {
    // A variable nobody sets: no token, so no change is possible.
    let (stable, candidate) = stable_and_candidate().await;
    let config = split_config(
        &head("VERSIONING_TEST_TOKEN_NEVER_SET", ""),
        &stable,
        &candidate,
        (95, 5),
        "",
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let admin = admin(&proxy);

    let (status, body) = put_split(
        &admin,
        Some("anything"),
        json!({ "weights": { "stable": 50, "candidate": 50 } }),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "admin_token_not_set");
    for action in ["promote", "rollback"] {
        let (status, _) = post_action(&admin, action, Some("anything")).await;
        assert_eq!(status, 403, "{action}");
    }
    let split = get_json(format!("{admin}/api/routes/chat/split")).await;
    assert_eq!(split["weights"], json!({ "stable": 95, "candidate": 5 }));
}

#[tokio::test]
async fn put_split_checks_its_body() {
    let token = "validate-secret";
    let env = set_token("VERSIONING_TEST_TOKEN_VALIDATE", token);
    let (stable, candidate) = stable_and_candidate().await;
    let config = split_config(&head(&env, ""), &stable, &candidate, (95, 5), "");
    let proxy = TestProxy::from_toml(&config).start().await;
    let admin = admin(&proxy);
    let http = client();

    for (body, fragment) in [
        (
            json!({ "weights": { "nope": 10 } }),
            "pool \"nope\" is not in the split",
        ),
        (
            json!({ "weights": { "stable": 0, "candidate": 0 } }),
            "at least one weight",
        ),
        (
            json!({ "weights": { "stable": 1001 } }),
            "between 0 and 1000",
        ),
        (json!({ "stable": 50 }), "expected"),
    ] {
        let (status, reply) = put_split(&admin, Some(token), body.clone()).await;
        assert_eq!(status, 400, "{body}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(fragment), "{body}: {message}");
    }
    // Nothing changed.
    let split = get_json(format!("{admin}/api/routes/chat/split")).await;
    assert_eq!(split["weights"], json!({ "stable": 95, "candidate": 5 }));

    let request = http
        .put(format!("{admin}/api/routes/nothing/split"))
        .json(&json!({ "weights": { "stable": 1 } }));
    let (status, _, _) = admin_call(request, Some(token)).await;
    assert_eq!(status, 404);
    let request = http.get(format!("{admin}/api/routes/chat/canary"));
    let (status, body, _) = admin_call(request, None).await;
    assert_eq!(status, 404, "no canary on this route: {body}");

    // One pool only: the other keeps its weight.
    let (status, body) = put_split(
        &admin,
        Some(token),
        json!({ "weights": { "candidate": 95 } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["weights"], json!({ "stable": 95, "candidate": 95 }));
    let served = serve_all((0..100).map(|_| http.get(proxy.url("/v1/x"))).collect()).await;
    assert_eq!(
        tally(&served),
        BTreeMap::from([("candidate", 50), ("stable", 50)])
    );
}

// === State across restarts and reloads ===

struct ConfigFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
    state: PathBuf,
}

fn config_file() -> ConfigFile {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = dir.path().join("junction.toml");
    let state = dir.path().join("state.json");
    ConfigFile {
        _dir: dir,
        path,
        state,
    }
}

fn with_state_file(state: &Path, config: &str) -> String {
    format!("[server]\nstate_file = \"{}\"\n{config}", state.display())
}

#[tokio::test]
async fn runtime_weights_and_canary_phases_survive_a_restart() {
    let token = "restart-secret";
    let env = set_token("VERSIONING_TEST_TOKEN_RESTART", token);
    let (stable, candidate) = stable_and_candidate().await;
    let file = config_file();
    // Route "chat" (split only) on /v1/, route "canary" (under analysis) on /v2/.
    let config = with_state_file(
        &file.state,
        &format!(
            r#"{}
{}
{}
[[routes]]
name = "chat"
match = {{ path_prefix = "/v1/" }}
split = [{{ pool = "stable", weight = 95 }}, {{ pool = "candidate", weight = 5 }}]

[[routes]]
name = "canary"
match = {{ path_prefix = "/v2/" }}
split = [{{ pool = "stable", weight = 95 }}, {{ pool = "candidate", weight = 5 }}]
[routes.canary]
candidate = "candidate"
steps = [5, 25, 50, 100]
interval = "1h"
"#,
            head(&env, ""),
            pool("stable", "v1", &stable),
            pool("candidate", "v2", &candidate),
        ),
    );
    std::fs::write(&file.path, &config).unwrap();

    let mut first = JunctionProcess::start(&file.path, &["public"]).await;
    let admin = first.url("admin", "");
    let (status, body) = put_split(
        &admin,
        Some(token),
        json!({ "weights": { "stable": 60, "candidate": 40 } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let request = client().post(format!("{admin}/api/routes/canary/promote"));
    let (status, body, _) = admin_call(request, Some(token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(file.state.exists(), "no state file written");
    first.child.kill().await.expect("stop the first process");
    drop(first);

    let second = JunctionProcess::start(&file.path, &["public"]).await;
    let admin = second.url("admin", "");
    let split = get_json(format!("{admin}/api/routes/chat/split")).await;
    assert_eq!(split["weights"], json!({ "stable": 60, "candidate": 40 }));
    assert_eq!(split["configured"], json!({ "stable": 95, "candidate": 5 }));
    let canary = get_json(format!("{admin}/api/routes/canary/canary")).await;
    assert_eq!(canary["phase"], json!({ "state": "promoted" }));
    assert_eq!(canary["weights"], json!({ "stable": 0, "candidate": 100 }));
    let http = client();
    let chat = serve_all(
        (0..100)
            .map(|_| http.get(second.url("public", "/v1/x")))
            .collect(),
    )
    .await;
    assert_eq!(
        tally(&chat),
        BTreeMap::from([("candidate", 40), ("stable", 60)])
    );
    let promoted = serve_all(
        (0..20)
            .map(|_| http.get(second.url("public", "/v2/x")))
            .collect(),
    )
    .await;
    assert_eq!(tally(&promoted), BTreeMap::from([("candidate", 20)]));
}

#[tokio::test]
async fn a_reload_keeps_runtime_weights_unless_the_configured_split_changes() {
    let token = "reload-secret";
    let env = set_token("VERSIONING_TEST_TOKEN_RELOAD", token);
    let (stable, candidate) = stable_and_candidate().await;
    let file = config_file();
    let write = |weights: (u32, u32), route: &str| {
        let config = split_config(&head(&env, ""), &stable, &candidate, weights, route);
        std::fs::write(&file.path, with_state_file(&file.state, &config)).unwrap();
    };
    write((95, 5), "");
    let gateway =
        Gateway::from_file(file.path.clone(), Arc::new(SplitMix::with_seed(7))).expect("config");
    gateway.start().await.expect("start");
    let proxy = RunningProxy { gateway };
    let admin = admin(&proxy);
    let weights = |admin: String| async move {
        get_json(format!("{admin}/api/routes/chat/split")).await["weights"].clone()
    };

    let (status, body) = put_split(
        &admin,
        Some(token),
        json!({ "weights": { "stable": 70, "candidate": 30 } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Another change to the route, same split: the runtime weights stay.
    write((95, 5), r#"timeouts = { connect = "2s" }"#);
    proxy.gateway.reload().await.expect("reload");
    assert_eq!(
        proxy.gateway.plan().spec.routes[0]
            .timeouts
            .connect
            .as_deref(),
        Some("2s"),
        "the reload took"
    );
    assert_eq!(
        weights(admin.clone()).await,
        json!({ "stable": 70, "candidate": 30 })
    );
    let http = client();
    let served = serve_all((0..100).map(|_| http.get(proxy.url("/v1/x"))).collect()).await;
    assert_eq!(
        tally(&served),
        BTreeMap::from([("candidate", 30), ("stable", 70)])
    );

    // A new configured split replaces them.
    write((90, 10), "");
    proxy.gateway.reload().await.expect("reload");
    assert_eq!(
        weights(admin.clone()).await,
        json!({ "stable": 90, "candidate": 10 })
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(&file.state).unwrap()).unwrap();
    assert_eq!(saved["routes"]["chat"]["weights"], json!([70, 30]));
    proxy.gateway.shutdown().await;
}

// === Config errors ===

/// The errors of a config that must be refused, as `path (line N): message` lines.
fn refused(config: &str) -> Vec<String> {
    let errors = match Gateway::from_str(config, Path::new("."), Arc::new(SplitMix::with_seed(1))) {
        Ok(_) => panic!("the config was accepted:\n{config}"),
        Err(errors) => errors,
    };
    errors.0.iter().map(|e| e.to_string()).collect()
}

fn line_of(config: &str, needle: &str) -> usize {
    config
        .lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the config"))
        + 1
}

#[tokio::test]
async fn versioning_config_errors_name_their_keys() {
    let (stable, candidate) = stable_and_candidate().await;
    let head = head("VERSIONING_TEST_TOKEN_CONFIG", "");

    let config = split_config(
        &head,
        &stable,
        &candidate,
        (95, 5),
        r#"
[routes.canary]
candidate = "elsewhere"
steps = [5, 100]
"#,
    );
    let errors = refused(&config);
    let line = line_of(&config, r#"candidate = "elsewhere""#);
    assert_eq!(
        errors,
        [format!(
            "routes[0].canary.candidate (line {line}): \"elsewhere\" is not one of the split's pools"
        )]
    );

    let config = format!(
        r#"{head}
{}
[[routes]]
name = "chat"
split = [{{ pool = "stable", weight = 100 }}]
[routes.canary]
candidate = "stable"
steps = [5, 100]
"#,
        pool("stable", "v1", &stable)
    );
    let errors = refused(&config);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("routes[0].canary (line")
            && errors[0].ends_with(
                "a canary needs a split of exactly two pools: the stable one and the candidate"
            ),
        "{errors:?}"
    );

    let config = split_config(&head, &stable, &candidate, (95, 5), r#"pool = "stable""#);
    let errors = refused(&config);
    let line = line_of(&config, "split = [");
    assert_eq!(
        errors,
        [format!(
            "routes[0].split (line {line}): use pool or split, not both"
        )]
    );

    // And a few neighbours: a mirror to no pool, set_cookie without a cookie, bad CIDRs.
    let config = split_config(
        &head,
        &stable,
        &candidate,
        (95, 5),
        r#"mirror = { pool = "ghost", percent = 150 }
sticky = "header:x-user"
set_cookie = true
version_override_from = ["10.0.0.0/33"]"#,
    );
    let errors = refused(&config);
    let paths: BTreeSet<&str> = errors
        .iter()
        .map(|e| e.split([' ', ':']).next().unwrap())
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "routes[0].mirror.percent",
            "routes[0].mirror.pool",
            "routes[0].set_cookie",
            "routes[0].version_override_from[0]",
        ]),
        "{errors:#?}"
    );
}
