//! Observability: exact Prometheus counters after a scripted mix of requests (errors
//! and SSE streams with known usage), `promtool check metrics` on the live output, the
//! JSON access log one line per request, a blocked log that drops instead of blocking,
//! request ids and trace context, and `/api/stats`.

use crate::support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use junction::demo::mock::{MockModelServer, MockOptions, prompt_tokens, reply_words};
use support::parse_metrics;
use support::{TestProxy, TestUpstream, client, listeners_toml, upstream::reply};

async fn metrics(proxy: &support::proxy::RunningProxy) -> (String, HashMap<String, f64>) {
    let text = proxy.metrics_text().await;
    let parsed = parse_metrics(&text);
    (text, parsed)
}

fn config(flaky: &str, model: SocketAddr, extra: &str) -> String {
    format!(
        r#"{listeners}
{extra}

[[pools]]
name = "flaky"
version = "v1"
endpoints = [{{ url = "{flaky}" }}]

[[pools]]
name = "model"
version = "v2"
endpoints = [{{ url = "http://{model}" }}]

[[routes]]
name = "chat"
match = {{ path_prefix = "/v1/" }}
pool = "model"

[[routes]]
name = "api"
match = {{ path_prefix = "/api/" }}
pool = "flaky"
"#,
        listeners = listeners_toml()
    )
}

async fn flaky_upstream() -> support::upstream::RunningUpstream {
    TestUpstream::named("flaky")
        .handler(|request: http::Request<hyper::body::Incoming>| async move {
            if request.headers().contains_key("x-fail") {
                reply(500, "boom")
            } else {
                reply(200, "fine")
            }
        })
        .start()
        .await
}

async fn model_server() -> MockModelServer {
    let mut options = MockOptions::new("v2");
    options.token_interval = Duration::from_millis(1);
    MockModelServer::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap()
}

const PROMPT: &str = "count these five words";

/// 100 plain requests (7 fail with 500) and 10 streamed chat completions.
async fn scripted_mix(proxy: &support::proxy::RunningProxy) {
    let http = client();
    for i in 0..100 {
        let mut request = http.get(proxy.url(&format!("/api/item/{i}")));
        if i % 14 == 3 && i < 98 {
            request = request.header("x-fail", "1");
        }
        let status = request.send().await.unwrap().status();
        assert!(status == 200 || status == 500);
    }
    for _ in 0..10 {
        let reply = http
            .post(proxy.url("/v1/chat/completions"))
            .json(&serde_json::json!({
                "model": "m", "stream": true, "stream_options": { "include_usage": true },
                "messages": [{ "role": "user", "content": PROMPT }]
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        let mut body = reply.bytes_stream();
        let mut text = Vec::new();
        while let Some(chunk) = body.next().await {
            text.extend_from_slice(&chunk.unwrap());
        }
        assert!(
            String::from_utf8(text)
                .unwrap()
                .ends_with("data: [DONE]\n\n")
        );
    }
}

/// The counters are updated when each response body ends, just after the client has
/// read it: wait (bounded) until the scrape shows them all.
async fn settled(
    proxy: &support::proxy::RunningProxy,
    series: &str,
    expected: f64,
) -> HashMap<String, f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, parsed) = metrics(proxy).await;
        if parsed.get(series) == Some(&expected) || tokio::time::Instant::now() > deadline {
            return parsed;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn counters_match_the_scripted_mix_exactly() {
    let flaky = flaky_upstream().await;
    let model = model_server().await;
    let proxy = TestProxy::from_toml(&config(&flaky.url(), model.addr, ""))
        .start()
        .await;
    scripted_mix(&proxy).await;

    let flaky_url = flaky.url();
    let model_url = format!("http://{}", model.addr);
    let ok = format!(
        r#"junction_requests_total{{route="api",pool="flaky",version="v1",shadow="false",endpoint="{flaky_url}",code="200"}}"#
    );
    let failed = format!(
        r#"junction_requests_total{{route="api",pool="flaky",version="v1",shadow="false",endpoint="{flaky_url}",code="500"}}"#
    );
    let streams = format!(
        r#"junction_requests_total{{route="chat",pool="model",version="v2",shadow="false",endpoint="{model_url}",code="200"}}"#
    );
    let m = settled(&proxy, &streams, 10.0).await;
    assert_eq!(m[&ok], 93.0);
    assert_eq!(m[&failed], 7.0);
    assert_eq!(m[&streams], 10.0);

    let prompt = prompt_tokens(&[serde_json::json!({ "role": "user", "content": PROMPT })]) as f64;
    let completion = reply_words("v2", PROMPT).len() as f64;
    assert_eq!(
        m[r#"junction_llm_tokens_total{route="chat",pool="model",version="v2",shadow="false",kind="prompt",source="reported"}"#],
        10.0 * prompt
    );
    assert_eq!(
        m[r#"junction_llm_tokens_total{route="chat",pool="model",version="v2",shadow="false",kind="completion",source="reported"}"#],
        10.0 * completion
    );
    assert_eq!(
        m[r#"junction_llm_time_to_first_token_seconds_count{route="chat",pool="model",version="v2",shadow="false"}"#],
        10.0
    );
    assert_eq!(
        m[r#"junction_llm_time_per_output_token_seconds_count{route="chat",pool="model",version="v2",shadow="false"}"#],
        10.0
    );
    assert_eq!(
        m[r#"junction_request_duration_seconds_count{route="api",pool="flaky",version="v1",shadow="false"}"#],
        100.0
    );
    assert_eq!(
        m[r#"junction_upstream_time_to_first_byte_seconds_count{route="api",pool="flaky",version="v1",shadow="false"}"#],
        100.0
    );
    // "fine" x 93 + "boom" x 7.
    assert_eq!(
        m[r#"junction_response_bytes_total{route="api",pool="flaky",version="v1",shadow="false"}"#],
        93.0 * 4.0 + 7.0 * 4.0
    );
    assert_eq!(
        m[r#"junction_request_duration_seconds_bucket{route="api",pool="flaky",version="v1",shadow="false",le="+Inf"}"#],
        100.0
    );

    // The error rate per version is one ratio of these series.
    let errors: f64 = m
        .iter()
        .filter(|(k, _)| {
            k.starts_with("junction_requests_total")
                && k.contains(r#"version="v1""#)
                && k.contains(r#"code="5"#)
        })
        .map(|(_, v)| v)
        .sum();
    let all: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("junction_requests_total") && k.contains(r#"version="v1""#))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(errors / all, 0.07);

    let stats = proxy.admin_json("/api/stats").await;
    let v1 = stats["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == "v1")
        .unwrap();
    assert_eq!(v1["requests"], 100);
    assert_eq!(v1["errors"], 7);
    assert!((v1["error_rate"].as_f64().unwrap() - 0.07).abs() < 1e-9);
    assert!(v1["p99_ms"].as_f64().unwrap() > 0.0);
    let chat = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "chat")
        .unwrap();
    assert_eq!(chat["requests"], 10);
}

#[tokio::test]
async fn promtool_accepts_the_live_metrics() {
    let flaky = flaky_upstream().await;
    let model = model_server().await;
    let proxy = TestProxy::from_toml(&config(&flaky.url(), model.addr, ""))
        .start()
        .await;
    scripted_mix(&proxy).await;
    let _ = client().get(proxy.url("/nowhere")).send().await.unwrap();
    let (text, _) = metrics(&proxy).await;
    assert!(
        text.contains("junction_errors_total{route=\"\",type=\"no_route\"} 1"),
        "{text}"
    );
    support::promtool_check(&text).await;
}

#[tokio::test]
async fn access_log_has_one_json_line_per_request() {
    let flaky = flaky_upstream().await;
    let model = model_server().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let extra = format!("[access_log]\npath = \"{}\"\n", log.display());
    let proxy = TestProxy::from_toml(&config(&flaky.url(), model.addr, &extra))
        .start()
        .await;
    scripted_mix(&proxy).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        if lines.len() >= 110 || tokio::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(lines.len(), 110);
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let mut ids = std::collections::HashSet::new();
    for (i, entry) in entries.iter().take(100).enumerate() {
        assert_eq!(entry["path"], format!("/api/item/{i}"));
        assert_eq!(entry["method"], "GET");
        assert_eq!(entry["route"], "api");
        assert_eq!(entry["version"], "v1");
        assert_eq!(entry["client_ip"], "127.0.0.1");
        let expected = if i % 14 == 3 && i < 98 { 500 } else { 200 };
        assert_eq!(entry["status"], expected);
        assert!(entry["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(ids.insert(entry["request_id"].as_str().unwrap().to_string()));
    }
    for entry in &entries[100..] {
        assert_eq!(entry["route"], "chat");
        assert_eq!(entry["completion_tokens"], reply_words("v2", PROMPT).len());
        assert!(entry["ttft_ms"].as_f64().is_some());
        assert!(entry["bytes_out"].as_u64().unwrap() > 0);
    }
}

#[tokio::test]
async fn a_blocked_access_log_drops_lines_and_never_blocks_requests() {
    let flaky = flaky_upstream().await;
    let model = model_server().await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("blocked.log");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    // Held open for reading and never read: the pipe fills up and writes block.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let extra = format!("[access_log]\npath = \"{}\"\nqueue = 4\n", fifo.display());
    let proxy = TestProxy::from_toml(&config(&flaky.url(), model.addr, &extra))
        .start()
        .await;
    let http = client();
    // Long paths fill the 64 KiB pipe quickly.
    let long = "x".repeat(4000);
    for i in 0..200 {
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            http.get(proxy.url(&format!("/api/{long}/{i}"))).send(),
        )
        .await
        .expect("a request must not wait for the log")
        .unwrap();
        assert_eq!(reply.status(), 200);
    }
    let (_, m) = metrics(&proxy).await;
    let dropped = m["junction_access_log_dropped_total"];
    assert!(dropped > 100.0, "dropped {dropped}");
}

#[tokio::test]
async fn request_ids_and_trace_context_cross_the_proxy() {
    let upstream = TestUpstream::named("echo").start().await;
    let config = format!(
        "{}\n[[pools]]\nname = \"p\"\nendpoints = [{{ url = \"{}\" }}]\n\n[[routes]]\nname = \"r\"\npool = \"p\"\n",
        listeners_toml(),
        upstream.url()
    );
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();

    let reply = http.get(proxy.url("/")).send().await.unwrap();
    let made = reply.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(made.len(), 32);
    let echo: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(echo["headers"]["x-request-id"], made);
    assert!(
        echo["headers"].get("traceparent").is_none(),
        "no trace is started for the client"
    );

    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let reply = http
        .get(proxy.url("/"))
        .header("x-request-id", "client-chosen-7")
        .header("traceparent", parent)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.headers()["x-request-id"], "client-chosen-7");
    let echo: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(echo["headers"]["x-request-id"], "client-chosen-7");
    let forwarded = echo["headers"]["traceparent"].as_str().unwrap();
    assert!(
        forwarded.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{forwarded}"
    );
    assert!(forwarded.ends_with("-01"));
    assert_ne!(forwarded, parent, "the proxy hop has its own span id");

    // Errors Junction makes itself carry the id too: a pool whose endpoint refuses.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "{}\n[[pools]]\nname = \"p\"\nendpoints = [{{ url = \"http://{refused}\" }}]\n\n[[routes]]\nname = \"r\"\npool = \"p\"\n",
        listeners_toml()
    );
    let failing = TestProxy::from_toml(&config).start().await;
    let reply = http.get(failing.url("/")).send().await.unwrap();
    assert_eq!(reply.status(), 502);
    assert_eq!(reply.headers()["x-request-id"].len(), 32);
}

#[tokio::test]
async fn cardinality_stays_bounded_by_the_config() {
    let flaky = flaky_upstream().await;
    let model = model_server().await;
    let proxy = TestProxy::from_toml(&config(&flaky.url(), model.addr, ""))
        .start()
        .await;
    let http = client();
    for i in 0..50 {
        let _ = http
            .get(proxy.url(&format!("/api/{i}")))
            .header("user-agent", format!("agent-{i}"))
            .send()
            .await
            .unwrap();
        let _ = http
            .get(proxy.url(&format!("/unrouted/{i}")))
            .send()
            .await
            .unwrap();
    }
    let (text, _) = metrics(&proxy).await;
    assert!(!text.contains("agent-"), "request data leaked into labels");
    assert!(
        !text.contains("/unrouted"),
        "request data leaked into labels"
    );
    let series = text
        .lines()
        .filter(|l| l.starts_with("junction_requests_total"))
        .count();
    assert_eq!(series, 1, "{text}");
}

/// A line's route, pool, version, endpoint, method and protocol are written once per
/// thread and repeated while they stay the same: on a route split over two pools, with
/// two methods, each line still names its own request's side and method, and after a
/// reload that renames the route and orders the fields otherwise, the new name in the
/// new order.
#[tokio::test]
async fn access_log_lines_name_each_requests_own_target() {
    let side = |name: &'static str| {
        TestUpstream::named(name)
            .handler(move |_| async move { reply(200, name) })
            .start()
    };
    let (stable, candidate) = (side("stable").await, side("candidate").await);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let config = |route: &str, fields: &str| {
        format!(
            r#"{listeners}
[access_log]
path = "{log}"
fields = [{fields}]

[[pools]]
name = "stable"
version = "v1"
endpoints = [{{ url = "{stable}" }}]

[[pools]]
name = "candidate"
version = "v2"
endpoints = [{{ url = "{candidate}" }}]

[[routes]]
name = "{route}"
match = {{ path_prefix = "/" }}
split = [ {{ pool = "stable", weight = 50 }}, {{ pool = "candidate", weight = 50 }} ]
"#,
            listeners = listeners_toml(),
            log = log.display(),
            stable = stable.url(),
            candidate = candidate.url(),
        )
    };
    let file = dir.path().join("junction.toml");
    let before =
        r#""request_id", "status", "method", "protocol", "route", "pool", "version", "endpoint""#;
    std::fs::write(&file, config("first", before)).unwrap();
    let proxy = support::proxy::RunningProxy::from_file(&file).await;

    // Request id -> (method, side, route) as the client saw them.
    let mut sent = HashMap::new();
    let http = client();
    let mut send = async |route: &'static str, i: usize| {
        let method = if i.is_multiple_of(3) {
            http::Method::DELETE
        } else {
            http::Method::GET
        };
        let reply = http
            .request(method.clone(), proxy.url(&format!("/item/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        let id = reply.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let side = reply.text().await.unwrap();
        sent.insert(id, (method.to_string(), side, route));
    };
    for i in 0..40 {
        send("first", i).await;
    }
    let after = r#""endpoint", "version", "route", "pool", "request_id", "method""#;
    std::fs::write(&file, config("second", after)).unwrap();
    proxy.gateway.reload().await.expect("reload");
    for i in 40..80 {
        send("second", i).await;
    }
    let sides: std::collections::HashSet<_> = sent.values().map(|(_, side, _)| side).collect();
    assert_eq!(sides.len(), 2, "both sides served");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        if lines.len() >= 80 || tokio::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(lines.len(), 80);
    for line in &lines {
        let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let (method, side, route) = &sent[entry["request_id"].as_str().unwrap()];
        let (version, url) = match side.as_str() {
            "stable" => ("v1", stable.url()),
            _ => ("v2", candidate.url()),
        };
        let expected = match *route {
            "first" => format!(
                r#"{{"request_id":{},"status":200,"method":"{method}","protocol":"HTTP/1.1","route":"first","pool":"{side}","version":"{version}","endpoint":"{url}"}}"#,
                entry["request_id"]
            ),
            _ => format!(
                r#"{{"endpoint":"{url}","version":"{version}","route":"second","pool":"{side}","request_id":{},"method":"{method}"}}"#,
                entry["request_id"]
            ),
        };
        assert_eq!(line, &expected);
    }
}
