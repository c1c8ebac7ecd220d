//! `balance = "least_queue"` end to end: real upstreams whose `/metrics` (or ORCA
//! headers) report queues, a real proxy polling them, and each request's endpoint read
//! from the `x-upstream` header of its reply; prefix affinity on both engines; and the
//! config errors of the new keys, with their key paths and lines.

use crate::support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use junction::balance::SplitMix;
use junction::server::Gateway;
use support::proxy::RunningProxy;
use support::upstream::{RunningUpstream, reply};
use support::{TestProxy, TestUpstream, client, listeners_toml, parse_metrics, served_by, tally};

/// What an upstream's `/metrics` says, and whether it answers at all.
struct Reported {
    text: std::sync::Mutex<String>,
    answering: AtomicBool,
}

impl Reported {
    fn new(waiting: u32, running: u32, kv: f64) -> Arc<Self> {
        Arc::new(Reported {
            text: std::sync::Mutex::new(vllm_text(waiting, running, kv)),
            answering: AtomicBool::new(true),
        })
    }
}

fn vllm_text(waiting: u32, running: u32, kv: f64) -> String {
    format!(
        "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{{model_name=\"m\"}} {waiting}.0\n\
         vllm:num_requests_running{{model_name=\"m\"}} {running}.0\nvllm:kv_cache_usage_perc{{model_name=\"m\"}} {kv}\n"
    )
}

/// An upstream serving `reported` on `/metrics` (a 503 once it stops answering) and
/// 200 with its name on every other path.
async fn model_server(name: &str, reported: Arc<Reported>) -> RunningUpstream {
    TestUpstream::named(name)
        .handler(move |request| {
            let reported = reported.clone();
            async move {
                if request.uri().path() != "/metrics" {
                    return reply(200, "ok");
                }
                if !reported.answering.load(Ordering::SeqCst) {
                    return reply(503, "metrics unavailable");
                }
                let text = reported.text.lock().unwrap().clone();
                reply(200, text)
            }
        })
        .start()
        .await
}

fn pool_config(pool_keys: &str, endpoints: &[&RunningUpstream], route_keys: &str) -> String {
    let endpoints = endpoints
        .iter()
        .map(|upstream| format!(r#"{{ url = "{}" }}"#, upstream.url()))
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
{route_keys}
"#,
        listeners_toml()
    )
}

/// The age of each endpoint's load report, from the proxy's `/metrics`, in pool order
/// (`None`: no report yet).
async fn report_ages(proxy: &RunningProxy, upstreams: &[&RunningUpstream]) -> Vec<Option<f64>> {
    let metrics = parse_metrics(&proxy.metrics_text().await);
    upstreams
        .iter()
        .map(|upstream| {
            let series = format!(
                "junction_endpoint_load_metrics_age_seconds{{pool=\"p\",endpoint=\"{}\"}}",
                upstream.url()
            );
            metrics.get(&series).copied()
        })
        .collect()
}

/// Polls the proxy's `/metrics` until `done` holds for the report ages (10 s at most).
async fn wait_for_ages(
    proxy: &RunningProxy,
    upstreams: &[&RunningUpstream],
    what: &str,
    done: impl Fn(&[Option<f64>]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ages = report_ages(proxy, upstreams).await;
        if done(&ages) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: report ages stayed {ages:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const LOAD_METRICS: &str = r#"balance = "least_queue"
load_metrics = { interval = "50ms", max_age = "400ms" }"#;

#[tokio::test]
async fn routes_to_the_shortest_reported_queue_then_the_least_kv_cache() {
    let long = Reported::new(6, 8, 0.9);
    let roomy = Reported::new(0, 2, 0.2);
    let fuller = Reported::new(0, 2, 0.7);
    let a = model_server("long", long.clone()).await;
    let b = model_server("roomy", roomy.clone()).await;
    let c = model_server("fuller", fuller.clone()).await;
    let upstreams = [&a, &b, &c];
    let proxy = TestProxy::from_toml(&pool_config(LOAD_METRICS, &upstreams, ""))
        .start()
        .await;
    wait_for_ages(&proxy, &upstreams, "first reports", |ages| {
        ages.iter().all(Option::is_some)
    })
    .await;

    let http = client();
    let mut order = Vec::new();
    for _ in 0..30 {
        order.push(served_by(http.get(proxy.url("/v1/chat/completions"))).await);
    }
    assert_eq!(tally(&order), BTreeMap::from([("roomy", 30)]));

    // The queues change: the next reports send the traffic elsewhere.
    *roomy.text.lock().unwrap() = vllm_text(4, 8, 0.9);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while served_by(http.get(proxy.url("/v1/chat/completions"))).await != "fuller" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never moved to \"fuller\""
        );
    }
    let metrics = parse_metrics(&proxy.metrics_text().await);
    let waiting = format!(
        "junction_endpoint_queue_waiting{{pool=\"p\",endpoint=\"{}\"}}",
        a.url()
    );
    assert_eq!(metrics.get(&waiting), Some(&6.0));
}

#[tokio::test]
async fn stale_reports_fall_back_to_in_flight_counts() {
    let busy = Reported::new(40, 8, 1.0);
    let idle = Reported::new(0, 0, 0.0);
    let a = model_server("busy", busy.clone()).await;
    let b = model_server("idle", idle.clone()).await;
    let upstreams = [&a, &b];
    let proxy = TestProxy::from_toml(&pool_config(LOAD_METRICS, &upstreams, ""))
        .start()
        .await;
    wait_for_ages(&proxy, &upstreams, "first reports", |ages| {
        ages.iter().all(Option::is_some)
    })
    .await;
    let http = client();
    let mut fresh = Vec::new();
    for _ in 0..10 {
        fresh.push(served_by(http.get(proxy.url("/x"))).await);
    }
    assert_eq!(tally(&fresh), BTreeMap::from([("idle", 10)]));

    // Both stop answering their metrics; once the last reports are older than max_age,
    // they no longer count and in-flight counts (equal between sequential requests) do.
    busy.answering.store(false, Ordering::SeqCst);
    idle.answering.store(false, Ordering::SeqCst);
    wait_for_ages(&proxy, &upstreams, "reports going stale", |ages| {
        ages.iter().all(|age| age.is_some_and(|age| age > 0.4))
    })
    .await;
    let mut stale = Vec::new();
    for _ in 0..10 {
        stale.push(served_by(http.get(proxy.url("/x"))).await);
    }
    // Ties go round in turn; a count not yet down when the next request is picked may
    // tip one pick, hence no exact split.
    let counts = tally(&stale);
    assert!(
        counts.get("busy").is_some_and(|n| *n >= 3) && counts.get("idle").is_some_and(|n| *n >= 3),
        "{counts:?}"
    );

    // Answering again, fresh reports count again.
    busy.answering.store(true, Ordering::SeqCst);
    idle.answering.store(true, Ordering::SeqCst);
    wait_for_ages(&proxy, &upstreams, "fresh reports", |ages| {
        ages.iter().all(|age| age.is_some_and(|age| age < 0.2))
    })
    .await;
    for _ in 0..10 {
        assert_eq!(served_by(http.get(proxy.url("/x"))).await, "idle");
    }
}

/// An upstream that reports its queue in an ORCA header on every answer.
async fn orca_server(name: &str, waiting: u32) -> RunningUpstream {
    TestUpstream::named(name)
        .handler(move |_| async move {
            let mut answer = reply(200, "ok");
            let report = format!(
                "TEXT named_metrics.kv_cache_usage_perc=0.5, named_metrics.num_requests_waiting={waiting}.0"
            );
            answer
                .headers_mut()
                .insert("endpoint-load-metrics", report.parse().unwrap());
            answer
        })
        .start()
        .await
}

#[tokio::test]
async fn orca_headers_are_read_on_both_engines() {
    for route_keys in ["", "fast_path = false"] {
        let (a, b) = (orca_server("queued", 7).await, orca_server("free", 0).await);
        let config = pool_config(r#"balance = "least_queue""#, &[&a, &b], route_keys);
        let proxy = TestProxy::from_toml(&config).start().await;
        let http = client();
        // Until both have answered once, in-flight counts pick (alternately).
        let mut first = HashSet::new();
        for _ in 0..2 {
            first.insert(served_by(http.get(proxy.url("/x"))).await);
        }
        assert_eq!(first.len(), 2, "{route_keys}");
        for _ in 0..10 {
            assert_eq!(
                served_by(http.get(proxy.url("/x"))).await,
                "free",
                "{route_keys}"
            );
        }
    }
}

fn chat_body(system: &str, question: &str) -> String {
    serde_json::json!({
        "model": "m",
        "messages": [
            { "role": "system", "content": system },
            { "role": "user", "content": "Here is the document." },
            { "role": "assistant", "content": "Thanks." },
            { "role": "user", "content": question },
        ],
    })
    .to_string()
}

#[tokio::test]
async fn prefix_affinity_keeps_a_prompt_prefix_on_one_endpoint_on_both_engines() {
    for route_keys in ["", "fast_path = false"] {
        let mut upstreams = Vec::new();
        for name in ["a", "b", "c", "d"] {
            upstreams.push(TestUpstream::named(name).start().await);
        }
        let refs: Vec<&RunningUpstream> = upstreams.iter().collect();
        let keys = r#"balance = "least_queue"
affinity = "prefix""#;
        let proxy = TestProxy::from_toml(&pool_config(keys, &refs, route_keys))
            .start()
            .await;
        let http = client();
        let mut homes = HashSet::new();
        for prompt in 0..8 {
            let system = format!("You are assistant number {prompt}.");
            let send = |question: usize| {
                http.post(proxy.url("/v1/chat/completions"))
                    .header("content-type", "application/json")
                    .body(Bytes::from(chat_body(
                        &system,
                        &format!("question {question}"),
                    )))
            };
            let home = served_by(send(0)).await;
            for question in 1..10 {
                assert_eq!(served_by(send(question)).await, home, "{route_keys}");
            }
            homes.insert(home);
        }
        // Eight prefixes over four endpoints: not all on one.
        assert!(homes.len() >= 2, "{route_keys}: {homes:?}");
    }
}

/// The errors of compiling `pool_keys` into a pool: (key path, line, message).
fn config_errors(pool_keys: &str) -> Vec<(String, Option<usize>, String)> {
    let text = format!(
        r#"[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{{ url = "http://127.0.0.1:9" }}]
{pool_keys}

[[routes]]
name = "all"
pool = "p"
"#
    );
    let rng = Arc::new(SplitMix::with_seed(1));
    match Gateway::from_str(&text, std::path::Path::new("."), rng) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .0
            .into_iter()
            .map(|e| (e.path, e.line, e.message))
            .collect(),
    }
}

#[test]
fn config_errors_name_the_key_and_line() {
    let paths = |keys: &str| -> Vec<(String, Option<usize>)> {
        config_errors(keys)
            .into_iter()
            .map(|(path, line, _)| (path, line))
            .collect()
    };
    let at = |path: &str, line: usize| vec![(path.to_string(), Some(line))];
    assert_eq!(
        paths("balance = \"least_conn\"\nload_metrics = { interval = \"1s\" }"),
        at("pools[0].load_metrics", 9)
    );
    assert_eq!(
        paths("balance = \"round_robin\"\naffinity = \"prefix\""),
        at("pools[0].affinity", 9)
    );
    assert_eq!(
        paths("balance = \"least_queue\"\naffinity_slack = 3"),
        at("pools[0].affinity_slack", 9)
    );
    assert_eq!(
        paths("balance = \"least_queue\"\naffinity = \"prefix\"\naffinity_slack = -1"),
        at("pools[0].affinity_slack", 10)
    );
    assert_eq!(
        paths("balance = \"least_queue\"\nload_metrics = { interval = \"soon\" }"),
        at("pools[0].load_metrics.interval", 9)
    );
    assert_eq!(
        paths(
            "balance = \"least_queue\"\nload_metrics = { interval = \"1s\", max_age = \"500ms\" }"
        ),
        at("pools[0].load_metrics.max_age", 9)
    );
    assert_eq!(
        paths("balance = \"least_queue\"\n[pools.load_metrics]\npath = \"metrics\""),
        at("pools[0].load_metrics.path", 10)
    );
    assert_eq!(
        paths("balance = \"least_queue\"\nload_metrics = { every = \"1s\" }"),
        at("pools[0].load_metrics.every", 9)
    );
    assert_eq!(
        paths("balance = \"least_queue\"\naffinity = \"session\""),
        at("pools[0].affinity", 9)
    );
    let messages: Vec<String> = config_errors("balance = \"least_conn\"\naffinity = \"prefix\"")
        .into_iter()
        .map(|(_, _, message)| message)
        .collect();
    assert_eq!(
        messages,
        ["affinity is only used with balance = \"least_queue\""]
    );
    // And a good one.
    assert_eq!(
        paths(
            "balance = \"least_queue\"\naffinity = \"prefix\"\naffinity_slack = 4\nload_metrics = { path = \"/metrics\", interval = \"250ms\", max_age = \"1s\", timeout = \"200ms\" }"
        ),
        Vec::new()
    );
}

/// The `load` entry of each endpoint of pool "p" in `/api/pools`, in pool order.
async fn admin_loads(proxy: &RunningProxy) -> Vec<serde_json::Value> {
    let pools = proxy.admin_json("/api/pools").await;
    let pool = pools["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pool| pool["name"] == "p")
        .expect("pool p")
        .clone();
    pool["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|endpoint| endpoint["load"].clone())
        .collect()
}

/// Polls `/api/pools` until `done` holds for the endpoints' load entries (10 s at most).
async fn wait_for_loads(
    proxy: &RunningProxy,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let loads = admin_loads(proxy).await;
        if done(&loads) {
            return loads;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: /api/pools kept {loads:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_admin_api_shows_each_endpoints_load_report_its_age_and_source() {
    let reported = Reported::new(3, 5, 0.25);
    let silent = Reported::new(0, 0, 0.0);
    silent.answering.store(false, Ordering::SeqCst);
    let a = model_server("reporting", reported.clone()).await;
    let b = model_server("silent", silent).await;
    let proxy = TestProxy::from_toml(&pool_config(LOAD_METRICS, &[&a, &b], ""))
        .start()
        .await;
    let pools = proxy.admin_json("/api/pools").await;
    assert_eq!(pools["pools"][0]["load_max_age_seconds"], 0.4);

    let loads = wait_for_loads(&proxy, "first report", |loads| {
        loads[0]["age_seconds"].is_number()
    })
    .await;
    let fresh = &loads[0];
    assert_eq!(
        (
            &fresh["waiting"],
            &fresh["running"],
            &fresh["kv_cache_usage"],
            &fresh["source"],
            &fresh["stale"]
        ),
        (
            &serde_json::json!(3.0),
            &serde_json::json!(5.0),
            &serde_json::json!(0.25),
            &serde_json::json!("metrics"),
            &serde_json::json!(false)
        ),
        "{fresh}"
    );
    assert!(fresh["age_seconds"].as_f64().unwrap() < 0.4, "{fresh}");
    // An endpoint whose metrics never answered: no report, so in-flight counts pick.
    assert_eq!(
        loads[1],
        serde_json::json!({ "waiting": null, "running": null, "kv_cache_usage": null,
            "age_seconds": null, "stale": true, "source": null })
    );

    // Its metrics stop answering: the report ages past max_age and says so.
    reported.answering.store(false, Ordering::SeqCst);
    let loads = wait_for_loads(&proxy, "report going stale", |loads| {
        loads[0]["stale"] == true
    })
    .await;
    assert!(
        loads[0]["age_seconds"].as_f64().unwrap() > 0.4,
        "{}",
        loads[0]
    );
    assert_eq!(loads[0]["waiting"], 3.0, "the last report, kept to be seen");

    // ORCA headers: a partial report (no running count), from the answers themselves.
    let orca = orca_server("orca", 7).await;
    let config = pool_config(r#"balance = "least_queue""#, &[&orca], "");
    let proxy = TestProxy::from_toml(&config).start().await;
    assert_eq!(
        admin_loads(&proxy).await[0]["source"],
        serde_json::Value::Null
    );
    served_by(client().get(proxy.url("/x"))).await;
    let loads = admin_loads(&proxy).await;
    let header = &loads[0];
    assert_eq!(
        (
            &header["waiting"],
            &header["running"],
            &header["kv_cache_usage"],
            &header["source"],
            &header["stale"]
        ),
        (
            &serde_json::json!(7.0),
            &serde_json::Value::Null,
            &serde_json::json!(0.5),
            &serde_json::json!("orca"),
            &serde_json::json!(false)
        ),
        "{header}"
    );
}

#[tokio::test]
async fn pools_of_other_policies_show_no_load_entry() {
    let a = TestUpstream::named("a").start().await;
    let proxy = TestProxy::from_toml(&pool_config(r#"balance = "least_conn""#, &[&a], ""))
        .start()
        .await;
    let pools = proxy.admin_json("/api/pools").await;
    assert!(pools["pools"][0]["load_max_age_seconds"].is_null());
    assert!(pools["pools"][0]["endpoints"][0].get("load").is_none());
}
