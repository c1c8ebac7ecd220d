//! Routing end to end: route order, every matcher, the `model` field of JSON bodies,
//! the no-route answer, and what the proxy does to headers on the way through.

use crate::support;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use support::proxy::RunningProxy;
use support::upstream::{RunningUpstream, reply};
use support::{TestProxy, TestUpstream, client, listeners_toml};

/// A proxy with one pool per name in `pools` (one upstream each, named like the pool),
/// the `routes` tables, and `listener_keys` added to the public listener.
async fn start(
    listener_keys: &str,
    pools: &[&str],
    routes: &str,
) -> (RunningProxy, Vec<RunningUpstream>) {
    let mut config = format!("{}{listener_keys}\n", listeners_toml());
    let mut upstreams = Vec::new();
    for name in pools {
        let upstream = TestUpstream::named(name).start().await;
        config += &format!(
            "[[pools]]\nname = \"{name}\"\nendpoints = [{{ url = \"{}\" }}]\n\n",
            upstream.url()
        );
        upstreams.push(upstream);
    }
    config += routes;
    (TestProxy::from_toml(&config).start().await, upstreams)
}

/// The upstream that served the request, or "none" for the proxy's 404.
async fn routed_to(request: reqwest::RequestBuilder) -> String {
    let reply = request.send().await.expect("request through the proxy");
    match reply.status().as_u16() {
        200 => reply.headers()["x-upstream"].to_str().unwrap().to_string(),
        404 => {
            assert!(!reply.headers().contains_key("x-upstream"));
            "none".into()
        }
        status => panic!("unexpected status {status}"),
    }
}

/// The echo upstream's account of what it received, and the reply's headers.
async fn echoed(request: reqwest::RequestBuilder) -> (reqwest::header::HeaderMap, Value) {
    let reply = request.send().await.expect("request through the proxy");
    assert_eq!(reply.status(), 200);
    let headers = reply.headers().clone();
    (headers, reply.json().await.expect("echo JSON"))
}

/// A JSON error answer from the proxy: checks status and content type, returns the body.
async fn proxy_error(reply: reqwest::Response, status: u16) -> Value {
    assert_eq!(reply.status(), status);
    assert_eq!(reply.headers()["content-type"], "application/json");
    assert!(!reply.headers().contains_key("x-upstream"));
    reply.json().await.expect("JSON error body")
}

// === order ===

#[tokio::test]
async fn routes_are_tried_in_order_and_the_first_match_wins() {
    let specific_first = r#"
[[routes]]
name = "chat"
match = { path_prefix = "/v1/chat/" }
pool = "specific"

[[routes]]
name = "api"
match = { path_prefix = "/v1/" }
pool = "general"
"#;
    let (proxy, _upstreams) = start("", &["specific", "general"], specific_first).await;
    let http = client();
    let chat = || http.get(proxy.url("/v1/chat/completions"));
    assert_eq!(routed_to(chat()).await, "specific");
    assert_eq!(
        routed_to(http.get(proxy.url("/v1/models"))).await,
        "general"
    );

    let general_first = r#"
[[routes]]
name = "api"
match = { path_prefix = "/v1/" }
pool = "general"

[[routes]]
name = "chat"
match = { path_prefix = "/v1/chat/" }
pool = "specific"
"#;
    let (proxy, _upstreams) = start("", &["specific", "general"], general_first).await;
    let chat = http.get(proxy.url("/v1/chat/completions"));
    assert_eq!(routed_to(chat).await, "general");
}

// === matchers ===

#[tokio::test]
async fn path_matchers_exact_prefix_and_regex() {
    let routes = r#"
[[routes]]
name = "exact"
match = { path = "/exact" }
pool = "exact"

[[routes]]
name = "prefix"
match = { path_prefix = "/v1/" }
pool = "prefix"

[[routes]]
name = "regex"
match = { path_regex = "^/items/[0-9]+$" }
pool = "regex"
"#;
    let (proxy, _upstreams) = start("", &["exact", "prefix", "regex"], routes).await;
    let http = client();
    for (path, expected) in [
        ("/exact", "exact"),
        ("/exact?page=2", "exact"),
        ("/exact/", "none"),
        ("/exactly", "none"),
        ("/v1/", "prefix"),
        ("/v1/chat/completions", "prefix"),
        ("/v1", "none"),
        ("/v2/x", "none"),
        ("/items/42", "regex"),
        ("/items/42?x=y", "regex"),
        ("/items/42/parts", "none"),
        ("/items/abc", "none"),
    ] {
        let landed = routed_to(http.get(proxy.url(path))).await;
        assert_eq!(landed, expected, "{path}");
    }
}

#[tokio::test]
async fn host_matchers_exact_and_wildcard() {
    let routes = r#"
[[routes]]
name = "api"
match = { host = "api.example.com" }
pool = "exact"

[[routes]]
name = "tenants"
match = { host = "*.example.com" }
pool = "wildcard"

[[routes]]
name = "rest"
match = { path_prefix = "/" }
pool = "fallback"
"#;
    let (proxy, _upstreams) = start("", &["exact", "wildcard", "fallback"], routes).await;
    let http = client();
    for (host, expected) in [
        ("api.example.com", "exact"),
        ("API.Example.COM:8443", "exact"),
        ("eu.example.com", "wildcard"),
        ("a.b.example.com:80", "wildcard"),
        ("example.com", "fallback"),
        ("api.example.com.evil.test", "fallback"),
    ] {
        let request = http.get(proxy.url("/")).header("host", host);
        assert_eq!(routed_to(request).await, expected, "Host: {host}");
    }
    // Without an override the Host is 127.0.0.1:PORT.
    assert_eq!(routed_to(http.get(proxy.url("/"))).await, "fallback");
}

#[tokio::test]
async fn method_matchers_one_and_many() {
    let routes = r#"
[[routes]]
name = "create"
match = { method = "post" }
pool = "posts"

[[routes]]
name = "change"
match = { method = ["PUT", "DELETE"] }
pool = "writes"

[[routes]]
name = "rest"
pool = "fallback"
"#;
    let (proxy, _upstreams) = start("", &["posts", "writes", "fallback"], routes).await;
    let http = client();
    for (method, expected) in [
        ("GET", "fallback"),
        ("POST", "posts"),
        ("PUT", "writes"),
        ("DELETE", "writes"),
        ("PATCH", "fallback"),
    ] {
        let request = http.request(method.parse().unwrap(), proxy.url("/thing"));
        assert_eq!(routed_to(request).await, expected, "{method}");
    }
}

#[tokio::test]
async fn header_matchers_exact_value_and_present() {
    let routes = r#"
[[routes]]
name = "red-team"
match = { headers = { "x-team" = "red" } }
pool = "red"

[[routes]]
name = "canary"
match = { headers = { "x-canary" = "*" } }
pool = "canary"

[[routes]]
name = "rest"
pool = "fallback"
"#;
    let (proxy, _upstreams) = start("", &["red", "canary", "fallback"], routes).await;
    let http = client();
    let get = || http.get(proxy.url("/"));
    assert_eq!(routed_to(get().header("x-team", "red")).await, "red");
    assert_eq!(routed_to(get().header("X-Team", "red")).await, "red");
    assert_eq!(routed_to(get().header("x-team", "blue")).await, "fallback");
    assert_eq!(
        routed_to(get().header("x-team", "red-ish")).await,
        "fallback"
    );
    let both = get().header("x-team", "blue").header("x-team", "red");
    assert_eq!(routed_to(both).await, "red");
    assert_eq!(routed_to(get().header("x-canary", "1")).await, "canary");
    assert_eq!(routed_to(get().header("x-canary", "")).await, "canary");
    assert_eq!(routed_to(get()).await, "fallback");
}

#[tokio::test]
async fn conditions_of_one_route_must_all_hold() {
    let routes = r#"
[[routes]]
name = "red-posts"
match = { path_prefix = "/v1/", method = "POST", headers = { "x-team" = "red" } }
pool = "red"

[[routes]]
name = "rest"
pool = "fallback"
"#;
    let (proxy, _upstreams) = start("", &["red", "fallback"], routes).await;
    let http = client();
    let url = proxy.url("/v1/x");
    assert_eq!(
        routed_to(http.post(&url).header("x-team", "red")).await,
        "red"
    );
    assert_eq!(
        routed_to(http.get(&url).header("x-team", "red")).await,
        "fallback"
    );
    assert_eq!(routed_to(http.post(&url)).await, "fallback");
    let other_path = http.post(proxy.url("/v2/x")).header("x-team", "red");
    assert_eq!(routed_to(other_path).await, "fallback");
}

// === no route ===

#[tokio::test]
async fn no_matching_route_is_a_json_404() {
    let routes = r#"
[[routes]]
name = "only"
match = { path = "/only" }
pool = "only"
"#;
    let (proxy, upstreams) = start("", &["only"], routes).await;
    let reply = client().get(proxy.url("/nope")).send().await.unwrap();
    let body = proxy_error(reply, 404).await;
    assert_eq!(body["error"]["type"], "no_route");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("/nope"), "{message}");
    assert_eq!(upstreams[0].requests(), 0);
}

// === model ===

const MODEL_ROUTES: &str = r#"
[[routes]]
name = "exact-model"
match = { path_prefix = "/v1/", model = "gpt-4o" }
pool = "gpt"

[[routes]]
name = "llama-models"
match = { path_prefix = "/v1/", model = "llama-*" }
pool = "llama"

[[routes]]
name = "rest"
pool = "fallback"
"#;

async fn model_proxy() -> (RunningProxy, Vec<RunningUpstream>) {
    start(
        "model_body_limit = 1024",
        &["gpt", "llama", "fallback"],
        MODEL_ROUTES,
    )
    .await
}

fn json_post(proxy: &RunningProxy, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    json_post_with(&client(), proxy, body)
}

fn json_post_with(
    http: &reqwest::Client,
    proxy: &RunningProxy,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    http.post(proxy.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
}

#[tokio::test]
async fn model_field_of_a_json_body_picks_the_route() {
    let (proxy, _upstreams) = model_proxy().await;
    for (model, expected) in [
        ("llama-3-70b", "llama"),
        ("llama-", "llama"),
        ("gpt-4o", "gpt"),
        ("gpt-4o-mini", "fallback"),
        ("GPT-4o", "fallback"),
        ("mistral-large", "fallback"),
        ("Llama-3", "fallback"),
    ] {
        let body = serde_json::json!({ "model": model, "messages": [] }).to_string();
        assert_eq!(
            routed_to(json_post(&proxy, body)).await,
            expected,
            "{model}"
        );
    }
    let no_model = r#"{"messages": [], "temperature": 0}"#;
    assert_eq!(routed_to(json_post(&proxy, no_model)).await, "fallback");
    let not_a_string = r#"{"model": ["llama-3"]}"#;
    assert_eq!(routed_to(json_post(&proxy, not_a_string)).await, "fallback");
    let broken = r#"{"model": "llama-3", "#;
    assert_eq!(routed_to(json_post(&proxy, broken)).await, "fallback");
}

#[tokio::test]
async fn a_body_read_for_its_model_reaches_the_upstream_byte_for_byte() {
    let (proxy, _upstreams) = model_proxy().await;
    let original = "  {\"messages\" :[ {\"role\":\"user\",\"content\":\"h\u{e9}llo \u{1F30D} \\u00e9 \\\"q\\\"\"}],\r\n\t\"model\"  :  \"llama-3-70b\" , \"temperature\":0.50 , \"n\": 1e0 }\n\n";
    let (headers, echo) = echoed(json_post(&proxy, original)).await;
    assert_eq!(headers["x-upstream"], "llama");
    assert_eq!(echo["body"], original);
    assert_eq!(echo["body_len"], original.len());
    assert_eq!(
        echo["headers"]["content-length"],
        original.len().to_string()
    );

    // The same through a chunked body under the limit.
    let chunks: Vec<Bytes> = original
        .as_bytes()
        .chunks(7)
        .map(Bytes::copy_from_slice)
        .collect();
    let (headers, echo) = echoed(json_post(&proxy, chunked(chunks))).await;
    assert_eq!(headers["x-upstream"], "llama");
    assert_eq!(echo["body"], original);
    assert_eq!(echo["body_len"], original.len());
}

#[tokio::test]
async fn json_content_types_with_parameters_or_suffix_are_read() {
    let (proxy, _upstreams) = model_proxy().await;
    let body = r#"{"model": "llama-3-8b"}"#;
    for content_type in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.openai+json",
    ] {
        let request = client()
            .post(proxy.url("/v1/chat/completions"))
            .header("content-type", content_type)
            .body(body);
        assert_eq!(routed_to(request).await, "llama", "{content_type}");
    }
}

#[tokio::test]
async fn bodies_that_are_not_json_posts_are_not_parsed() {
    let (proxy, _upstreams) = model_proxy().await;
    let body = r#"{"model": "llama-3-70b"}"#;
    let url = proxy.url("/v1/chat/completions");
    let http = client();

    let get = http
        .get(&url)
        .header("content-type", "application/json")
        .body(body);
    assert_eq!(routed_to(get).await, "fallback");
    let put = http
        .put(&url)
        .header("content-type", "application/json")
        .body(body);
    assert_eq!(routed_to(put).await, "fallback");
    let text = http
        .post(&url)
        .header("content-type", "text/plain")
        .body(body);
    let (headers, echo) = echoed(text).await;
    assert_eq!(headers["x-upstream"], "fallback");
    assert_eq!(echo["body"], body);
    assert_eq!(routed_to(http.post(&url).body(body)).await, "fallback");
}

/// A request body sent with `Transfer-Encoding: chunked`, one frame per item.
fn chunked(chunks: Vec<Bytes>) -> reqwest::Body {
    let frames = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    reqwest::Body::wrap_stream(frames)
}

fn big_llama_body() -> String {
    let padding = "x".repeat(2048);
    format!(r#"{{"model": "llama-3-70b", "padding": "{padding}"}}"#)
}

#[tokio::test]
async fn a_body_over_the_model_limit_is_refused_with_413() {
    let (proxy, upstreams) = model_proxy().await;
    // One client throughout: after each refusal the next request must find a sane
    // connection (the unread body is not taken for a request).
    let http = client();

    let reply = json_post_with(&http, &proxy, big_llama_body()).send().await;
    let body = proxy_error(reply.expect("a 413, not a reset"), 413).await;
    assert_eq!(body["error"]["type"], "body_too_large");
    assert_eq!(routed_to(http.get(proxy.url("/after"))).await, "fallback");

    let chunks: Vec<Bytes> = big_llama_body()
        .into_bytes()
        .chunks(256)
        .map(Bytes::copy_from_slice)
        .collect();
    let reply = json_post_with(&http, &proxy, chunked(chunks)).send().await;
    let body = proxy_error(reply.expect("a 413, not a reset"), 413).await;
    assert_eq!(body["error"]["type"], "body_too_large");
    assert_eq!(routed_to(http.get(proxy.url("/after"))).await, "fallback");

    let on_routes: usize = upstreams.iter().map(|u| u.requests()).sum();
    assert_eq!(
        on_routes, 2,
        "only the two follow-up requests reach an upstream"
    );

    // Exactly at the limit is fine.
    let frame = |padding: &str| format!(r#"{{"model": "llama-3", "p": "{padding}"}}"#);
    let at_limit = frame(&"y".repeat(1024 - frame("").len()));
    assert_eq!(at_limit.len(), 1024);
    assert_eq!(
        routed_to(json_post_with(&http, &proxy, at_limit)).await,
        "llama"
    );
}

#[tokio::test]
async fn the_model_limit_applies_only_where_the_body_is_read() {
    let (proxy, _upstreams) = model_proxy().await;
    let big = big_llama_body();
    let request = client()
        .post(proxy.url("/v1/upload"))
        .header("content-type", "application/octet-stream")
        .body(big.clone());
    let (headers, echo) = echoed(request).await;
    assert_eq!(headers["x-upstream"], "fallback");
    assert_eq!(echo["body_len"], big.len());
}

// === proxy hygiene ===

const ONE_ROUTE: &str = "[[routes]]\nname = \"all\"\npool = \"a\"\n";

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let (proxy, upstreams) = start("", &["a"], ONE_ROUTE).await;
    let hop_by_hop = [
        "connection",
        "x-foo",
        "keep-alive",
        "te",
        "proxy-connection",
    ];
    let request = |base: &str| {
        client()
            .get(format!("{base}/"))
            .header("connection", "x-foo, keep-alive")
            .header("x-foo", "secret")
            .header("keep-alive", "timeout=5")
            .header("te", "gzip")
            .header("proxy-connection", "keep-alive")
            .header("x-kept", "1")
    };

    // Control: the client really sends them (straight to the upstream).
    let (_, echo) = echoed(request(&upstreams[0].url())).await;
    let direct = echo["headers"].as_object().unwrap();
    for sent in hop_by_hop {
        assert!(direct.contains_key(sent), "the client did not send {sent}");
    }

    let (_, echo) = echoed(request(&proxy.url(""))).await;
    let headers = echo["headers"].as_object().unwrap();
    for gone in hop_by_hop {
        assert!(
            !headers.contains_key(gone),
            "{gone} was forwarded: {headers:?}"
        );
    }
    assert_eq!(headers["x-kept"], "1");
}

#[tokio::test]
async fn hop_by_hop_headers_of_the_response_are_not_returned() {
    let upstream = TestUpstream::named("a")
        .handler(|_request: Request<Incoming>| async {
            let mut response = reply(200, "ok");
            let headers = response.headers_mut();
            headers.insert("connection", "x-bar".parse().unwrap());
            headers.insert("x-bar", "internal".parse().unwrap());
            headers.insert("keep-alive", "timeout=5".parse().unwrap());
            headers.insert("x-kept", "1".parse().unwrap());
            response
        })
        .start()
        .await;
    let config = format!(
        "{}\n[[pools]]\nname = \"a\"\nendpoints = [{{ url = \"{}\" }}]\n\n[[routes]]\nname = \"all\"\npool = \"a\"\n",
        listeners_toml(),
        upstream.url()
    );
    let proxy = TestProxy::from_toml(&config).start().await;

    // Control: the upstream really sends them.
    let direct = client().get(upstream.url()).send().await.unwrap();
    for sent in ["connection", "x-bar", "keep-alive"] {
        assert!(
            direct.headers().contains_key(sent),
            "upstream did not send {sent}"
        );
    }

    let reply = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    for gone in ["connection", "x-bar", "keep-alive"] {
        assert!(!reply.headers().contains_key(gone), "{gone} came back");
    }
    assert_eq!(reply.headers()["x-kept"], "1");
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_replaced() {
    let (proxy, _upstreams) = start("", &["a"], ONE_ROUTE).await;
    let http = client();

    let (_, echo) = echoed(http.get(proxy.url("/")).header("host", "app.example.com")).await;
    let headers = &echo["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "app.example.com");
    assert_eq!(headers["via"], "1.1 junction");

    let spoofed = http
        .get(proxy.url("/"))
        .header("host", "app.example.com")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.test");
    let (_, echo) = echoed(spoofed).await;
    let headers = &echo["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "app.example.com");
}

#[tokio::test]
async fn forwarded_headers_from_a_trusted_peer_are_extended() {
    let (proxy, _upstreams) =
        start(r#"trusted_proxies = ["127.0.0.1/32"]"#, &["a"], ONE_ROUTE).await;
    let http = client();

    let forwarded = http
        .get(proxy.url("/"))
        .header("host", "app.example.com")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "public.example.com")
        .header("via", "1.1 edge");
    let (_, echo) = echoed(forwarded).await;
    let headers = &echo["headers"];
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-host"], "public.example.com");
    assert_eq!(headers["via"], "1.1 edge, 1.1 junction");

    // Repeated lines are one list (RFC 9110 5.3): every hop is kept.
    let two_lines = http
        .get(proxy.url("/"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-for", "10.0.0.1")
        .header("via", "1.0 edge")
        .header("via", "1.1 lb");
    let (_, echo) = echoed(two_lines).await;
    let headers = &echo["headers"];
    assert_eq!(
        headers["x-forwarded-for"],
        "203.0.113.9, 10.0.0.1, 127.0.0.1"
    );
    assert_eq!(headers["via"], "1.0 edge, 1.1 lb, 1.1 junction");

    // A trusted peer that sends none gets them set.
    let (_, echo) = echoed(http.get(proxy.url("/")).header("host", "app.example.com")).await;
    let headers = &echo["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "app.example.com");
}

/// Two pools over the same upstream: "kept" as configured by `kept_keys`, "rewritten"
/// with `rewrite_host = true`; routes by path prefix.
async fn two_pools(kept_keys: &str) -> (RunningProxy, RunningUpstream) {
    let upstream = TestUpstream::named("a").start().await;
    let config = format!(
        r#"{}
[[pools]]
name = "kept"
{kept_keys}
endpoints = [{{ url = "{url}" }}]

[[pools]]
name = "rewritten"
rewrite_host = true
endpoints = [{{ url = "{url}" }}]

[[routes]]
name = "rewritten"
match = {{ path_prefix = "/rewritten/" }}
pool = "rewritten"

[[routes]]
name = "kept"
pool = "kept"
"#,
        listeners_toml(),
        url = upstream.url()
    );
    (TestProxy::from_toml(&config).start().await, upstream)
}

#[tokio::test]
async fn host_is_kept_unless_the_pool_rewrites_it() {
    let (proxy, upstream) = two_pools("").await;
    let http = client();

    let (_, echo) = echoed(http.get(proxy.url("/x")).header("host", "app.example.com")).await;
    assert_eq!(echo["headers"]["host"], "app.example.com");
    let (_, echo) = echoed(http.get(proxy.url("/x"))).await;
    assert_eq!(echo["headers"]["host"], proxy.addr("public").to_string());

    let rewritten = http
        .get(proxy.url("/rewritten/x"))
        .header("host", "app.example.com");
    let (_, echo) = echoed(rewritten).await;
    assert_eq!(echo["headers"]["host"], upstream.addr.to_string());
    assert_eq!(echo["headers"]["x-forwarded-host"], "app.example.com");
}

#[tokio::test]
async fn version_header_only_when_the_pool_has_a_version() {
    let (proxy, _upstream) = two_pools(r#"version = "v3""#).await;
    let http = client();

    let reply = http.get(proxy.url("/x")).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["x-junction-version"], "v3");
    let reply = http.get(proxy.url("/rewritten/x")).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    assert!(!reply.headers().contains_key("x-junction-version"));
}

#[tokio::test]
async fn route_header_rules_set_and_remove() {
    // Replies with the request headers it saw, plus two headers of its own.
    let upstream = TestUpstream::named("a")
        .handler(|request: Request<Incoming>| async move {
            let (head, body) = request.into_parts();
            body.collect().await.unwrap();
            let seen: serde_json::Map<String, Value> = head
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap())))
                .collect();
            let mut response = reply(200, Value::Object(seen).to_string());
            let headers = response.headers_mut();
            headers.insert("x-internal", "secret".parse().unwrap());
            headers.insert("server", "model-server/1.0".parse().unwrap());
            response
        })
        .start()
        .await;
    let config = format!(
        r#"{}
[[pools]]
name = "a"
endpoints = [{{ url = "{}" }}]

[[routes]]
name = "rules"
match = {{ path_prefix = "/rules/" }}
pool = "a"
request_headers = {{ set = {{ "x-added" = "1", "x-team" = "blue" }}, remove = ["x-secret"] }}
response_headers = {{ set = {{ "x-served-by" = "junction", "server" = "junction" }}, remove = ["x-internal"] }}

[[routes]]
name = "plain"
pool = "a"
"#,
        listeners_toml(),
        upstream.url()
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    let send = |path: &str| {
        http.get(proxy.url(path))
            .header("x-team", "red")
            .header("x-secret", "s3cret")
            .send()
    };
    let reply = send("/rules/x").await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["x-served-by"], "junction");
    assert_eq!(reply.headers()["server"], "junction");
    assert!(!reply.headers().contains_key("x-internal"));
    let seen: Value = reply.json().await.unwrap();
    assert_eq!(seen["x-added"], "1");
    assert_eq!(seen["x-team"], "blue");
    assert!(seen.get("x-secret").is_none(), "{seen}");

    // Another route leaves them alone.
    let reply = send("/plain").await.unwrap();
    assert_eq!(reply.headers()["x-internal"], "secret");
    assert!(!reply.headers().contains_key("x-served-by"));
    let seen: Value = reply.json().await.unwrap();
    assert_eq!(seen["x-team"], "red");
    assert_eq!(seen["x-secret"], "s3cret");
    assert!(seen.get("x-added").is_none());
}
