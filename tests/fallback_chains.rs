//! Fallback chains (`targets = [...]` on a route), on every way a request travels: each
//! trigger sends the request on to the next pool, nothing else does, nothing hops once
//! a byte reached the client, hops stay within the retry budget, each pool gets its own
//! credential and model name, and every hop shows in the metrics and the access log.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use support::proxy::RunningProxy;
use support::sse::{ChannelBody, event_stream};
use support::travel::{Extra, Travel, start};
use support::upstream::{RunningUpstream, reply};
use support::{TestUpstream, client, parse_metrics};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
const CLIENT_KEY: &str = "sk-client-owned";
/// Longest wait for something the proxy does on its own time (metrics, the log).
const WITHIN: Duration = Duration::from_secs(10);

/// An upstream that answers every request with `status` and a small JSON body.
async fn answering(name: &str, status: u16) -> RunningUpstream {
    TestUpstream::named(name)
        .handler(move |_| async move { reply(status, r#"{"ok":true}"#) })
        .start()
        .await
}

/// The bodies an upstream received, one entry per request.
type Bodies = Arc<Mutex<Vec<String>>>;

/// An upstream that answers 200 and keeps every request's body.
async fn recording_bodies(name: &str) -> (RunningUpstream, Bodies) {
    let bodies: Bodies = Arc::default();
    let keep = bodies.clone();
    let upstream = TestUpstream::named(name)
        .handler(move |request: http::Request<hyper::body::Incoming>| {
            let keep = keep.clone();
            async move {
                use http_body_util::BodyExt;
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                keep.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                reply(200, r#"{"ok":true}"#)
            }
        })
        .start()
        .await;
    (upstream, bodies)
}

/// A proxy whose route "chain" (every `/v1` path) tries the pool "p" (`primary`), then
/// "backup" on `on` (`None`: the default triggers), with `route` added to the route.
async fn chain_proxy(
    travel: Travel,
    primary: &str,
    backup: &str,
    on: Option<&str>,
    route: &str,
    extra: &Extra<'_>,
) -> RunningProxy {
    let on = on.map(|on| format!(", on = {on}")).unwrap_or_default();
    let before = format!(
        "{}\n[[pools]]\nname = \"backup\"\nendpoints = [{{ url = \"{backup}\" }}]\n\n\
         [[routes]]\nname = \"chain\"\nmatch = {{ path_prefix = \"/v1\" }}\n\
         targets = [{{ pool = \"p\" }}, {{ pool = \"backup\"{on} }}]\n{}\n{route}\n",
        extra.before,
        travel.route_keys(),
    );
    let extra = Extra {
        before: &before,
        ..*extra
    };
    start(travel, &[primary.to_string()], &extra).await
}

/// A chat completion as an SDK sends it: status and the `x-upstream` that answered.
async fn chat(proxy: &RunningProxy) -> (u16, String) {
    let response = client()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("content-type", "application/json")
        .body(CHAT)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let from = response
        .headers()
        .get("x-upstream")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    let _ = response.bytes().await;
    (status, from)
}

/// The value of the hop counter `(from, to, reason)` of route "chain", once it is at
/// least `at_least` (the exchange reports when it ends, after the client has its reply).
async fn hops_counted(
    proxy: &RunningProxy,
    from: &str,
    to: &str,
    reason: &str,
    at_least: f64,
) -> f64 {
    hops_counted_on(proxy, "chain", from, to, reason, at_least).await
}

async fn hops_counted_on(
    proxy: &RunningProxy,
    route: &str,
    from: &str,
    to: &str,
    reason: &str,
    at_least: f64,
) -> f64 {
    let series = format!(
        "junction_fallback_hops_total{{route=\"{route}\",from=\"{from}\",to=\"{to}\",reason=\"{reason}\"}}"
    );
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let value = parse_metrics(&proxy.metrics_text().await)
            .get(&series)
            .copied()
            .unwrap_or(0.0);
        if value >= at_least || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn no_hop_series(text: &str) -> bool {
    !text.contains("junction_fallback_hops_total{")
}

#[tokio::test]
async fn each_listed_status_hops_and_a_429_needs_no_rate_limit_headers() {
    for travel in Travel::ALL {
        for status in [429, 500, 502, 503, 504] {
            let primary = answering("primary", status).await;
            let backup = answering("backup", 200).await;
            let on = "[429, 500, 502, 503, 504, \"timeout\", \"first_token_timeout\"]";
            let proxy = chain_proxy(
                travel,
                &primary.url(),
                &backup.url(),
                Some(on),
                "",
                &Extra::default(),
            )
            .await;
            assert_eq!(
                chat(&proxy).await,
                (200, "backup".into()),
                "{travel:?} {status}"
            );
            assert_eq!(primary.requests(), 1, "{travel:?} {status}");
            assert_eq!(backup.requests(), 1, "{travel:?} {status}");
            let counted = hops_counted(&proxy, "p", "backup", &status.to_string(), 1.0).await;
            assert_eq!(counted, 1.0, "{travel:?} {status}");
        }
    }
}

#[tokio::test]
async fn a_status_not_in_on_is_passed_to_the_client() {
    for travel in Travel::ALL {
        let primary = answering("primary", 500).await;
        let backup = answering("backup", 200).await;
        let proxy = chain_proxy(
            travel,
            &primary.url(),
            &backup.url(),
            Some("[429, 503]"),
            "",
            &Extra::default(),
        )
        .await;
        assert_eq!(chat(&proxy).await, (500, "primary".into()), "{travel:?}");
        assert_eq!(backup.requests(), 0, "{travel:?}");
        assert!(no_hop_series(&proxy.metrics_text().await), "{travel:?}");
    }
}

/// An endpoint that takes the request and never answers.
async fn silent(name: &str) -> RunningUpstream {
    TestUpstream::named(name)
        .handler(|_| std::future::pending())
        .start()
        .await
}

#[tokio::test]
async fn no_response_head_in_time_hops_on_timeout() {
    for travel in Travel::ALL {
        let primary = silent("primary").await;
        let backup = answering("backup", 200).await;
        let proxy = chain_proxy(
            travel,
            &primary.url(),
            &backup.url(),
            Some("[\"timeout\"]"),
            "timeouts = { response_headers = \"300ms\" }",
            &Extra::default(),
        )
        .await;
        assert_eq!(chat(&proxy).await, (200, "backup".into()), "{travel:?}");
        assert_eq!(primary.requests(), 1, "{travel:?}");
        assert_eq!(
            hops_counted(&proxy, "p", "backup", "timeout", 1.0).await,
            1.0
        );
    }
}

/// An event stream that sends its head and then what the test sends down the channel
/// it gets for each request (no event while the sender only lives).
async fn stalled_stream(
    name: &str,
) -> (
    RunningUpstream,
    mpsc::UnboundedReceiver<mpsc::Sender<Bytes>>,
) {
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let upstream = TestUpstream::named(name)
        .handler(move |_| {
            let (tx, rx) = mpsc::channel(4);
            let _ = arrived_tx.send(tx);
            async move { event_stream(ChannelBody(rx)) }
        })
        .start()
        .await;
    (upstream, arrived)
}

#[tokio::test]
async fn a_stream_without_a_first_event_in_time_hops_on_first_token_timeout() {
    for travel in Travel::ALL {
        let (primary, _senders) = stalled_stream("primary").await;
        let backup = answering("backup", 200).await;
        let proxy = chain_proxy(
            travel,
            &primary.url(),
            &backup.url(),
            Some("[\"first_token_timeout\"]"),
            "timeouts = { first_token = \"300ms\" }",
            &Extra::default(),
        )
        .await;
        assert_eq!(chat(&proxy).await, (200, "backup".into()), "{travel:?}");
        let counted = hops_counted(&proxy, "p", "backup", "first_token_timeout", 1.0).await;
        assert_eq!(counted, 1.0, "{travel:?}");
    }
}

#[tokio::test]
async fn a_refused_connection_hops_on_connect_error() {
    for travel in Travel::ALL {
        let refused = {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            format!("http://{}", listener.local_addr().unwrap())
        };
        let backup = answering("backup", 200).await;
        let proxy = chain_proxy(
            travel,
            &refused,
            &backup.url(),
            Some("[\"connect_error\"]"),
            "",
            &Extra::default(),
        )
        .await;
        assert_eq!(chat(&proxy).await, (200, "backup".into()), "{travel:?}");
        let counted = hops_counted(&proxy, "p", "backup", "connect_error", 1.0).await;
        assert_eq!(counted, 1.0, "{travel:?}");
    }
}

/// An endpoint that reads the request head and closes the connection without a word.
async fn hanging_up() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            drop(stream);
        }
    });
    (url, task)
}

#[tokio::test]
async fn a_connection_closed_before_the_answer_hops_on_reset() {
    for travel in Travel::ALL {
        let (primary, task) = hanging_up().await;
        let backup = answering("backup", 200).await;
        let proxy = chain_proxy(
            travel,
            &primary,
            &backup.url(),
            Some("[\"reset\"]"),
            "",
            &Extra::default(),
        )
        .await;
        assert_eq!(chat(&proxy).await, (200, "backup".into()), "{travel:?}");
        assert_eq!(hops_counted(&proxy, "p", "backup", "reset", 1.0).await, 1.0);
        task.abort();
    }
}

#[tokio::test]
async fn a_full_pool_hops_on_unavailable() {
    for travel in Travel::ALL {
        // The primary holds its one request until released.
        let (arrived_tx, mut arrived) = mpsc::channel::<oneshot::Sender<()>>(1);
        let primary = TestUpstream::named("primary")
            .handler(move |_| {
                let arrived_tx = arrived_tx.clone();
                async move {
                    let (release, released) = oneshot::channel();
                    let _ = arrived_tx.send(release).await;
                    let _ = released.await;
                    reply(200, r#"{"ok":true}"#)
                }
            })
            .start()
            .await;
        let backup = answering("backup", 200).await;
        let extra = Extra {
            pool: "limits = { pool_max_in_flight = 1 }",
            ..Extra::default()
        };
        let proxy = chain_proxy(
            travel,
            &primary.url(),
            &backup.url(),
            Some("[\"unavailable\"]"),
            "",
            &extra,
        )
        .await;
        let proxy = Arc::new(proxy);
        let first = tokio::spawn({
            let proxy = proxy.clone();
            async move { chat(&proxy).await }
        });
        let release = arrived
            .recv()
            .await
            .expect("the first request reached the primary");
        assert_eq!(chat(&proxy).await, (200, "backup".into()), "{travel:?}");
        let _ = release.send(());
        assert_eq!(first.await.unwrap(), (200, "primary".into()), "{travel:?}");
        let counted = hops_counted(&proxy, "p", "backup", "unavailable", 1.0).await;
        assert_eq!(counted, 1.0, "{travel:?}");
    }
}

/// Once the first event reached the client, a stream that dies is not sent again: the
/// client's stream ends (with an error event), and the next pool never sees it.
#[tokio::test]
async fn no_hop_once_a_byte_reached_the_client() {
    for travel in Travel::ALL {
        let (primary, mut senders) = stalled_stream("primary").await;
        let backup = answering("backup", 200).await;
        // The default triggers, `reset` among them.
        let proxy = chain_proxy(
            travel,
            &primary.url(),
            &backup.url(),
            None,
            "timeouts = { first_token = \"5s\" }",
            &Extra::default(),
        )
        .await;
        let sent = client()
            .post(proxy.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(CHAT)
            .send();
        let sent = tokio::spawn(sent);
        let tx = senders.recv().await.expect("the primary got the request");
        tx.send(Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        ))
        .await
        .expect("send the first event");
        let response = sent.await.unwrap().expect("request");
        assert_eq!(response.status(), 200, "{travel:?}");
        assert_eq!(response.headers()["x-upstream"], "primary", "{travel:?}");
        let mut chunks = Box::pin(response.bytes_stream());
        let mut seen = String::new();
        while !seen.contains("\n\n") {
            let chunk = chunks
                .next()
                .await
                .expect("a chunk")
                .expect("the first event");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(seen.contains("Hel"), "{travel:?}: {seen}");
        // The endpoint dies mid-stream.
        primary.kill();
        drop(tx);
        let rest = tokio::time::timeout(WITHIN, async {
            let mut rest = String::new();
            // The stream ends, or breaks: either way nothing more from another pool.
            while let Some(Ok(chunk)) = chunks.next().await {
                rest.push_str(&String::from_utf8_lossy(&chunk));
            }
            rest
        })
        .await
        .expect("the stream ends");
        assert!(!rest.contains(r#""ok":true"#), "{travel:?}: {rest}");
        assert_eq!(backup.requests(), 0, "{travel:?}");
        assert!(no_hop_series(&proxy.metrics_text().await), "{travel:?}");
    }
}

/// A hop goes only where an endpoint can take the request: once the next pool's only
/// endpoint is held by its `Retry-After`, the client gets the first pool's own 429
/// rather than a made-up `no_endpoint`, and no hop is counted.
#[tokio::test]
async fn no_hop_to_a_pool_with_nothing_to_send_to() {
    for travel in Travel::ALL {
        let primary = answering("primary", 429).await;
        let backup = TestUpstream::named("backup")
            .handler(|_| async {
                let mut answer = reply(429, r#"{"error":"slow down"}"#);
                answer
                    .headers_mut()
                    .insert("retry-after", http::HeaderValue::from_static("300"));
                answer
            })
            .start()
            .await;
        let proxy = chain_proxy(
            travel,
            &primary.url(),
            &backup.url(),
            Some("[429]"),
            "",
            &Extra::default(),
        )
        .await;
        // The backup answers 429 with `Retry-After: 300`: the end of the chain.
        assert_eq!(chat(&proxy).await, (429, "backup".into()), "{travel:?}");
        // Now held: the primary's own answer goes to the client.
        assert_eq!(chat(&proxy).await, (429, "primary".into()), "{travel:?}");
        assert_eq!(
            (primary.requests(), backup.requests()),
            (2, 1),
            "{travel:?}"
        );
        assert_eq!(hops_counted(&proxy, "p", "backup", "429", 1.0).await, 1.0);
    }
}

/// Hops take from the route's retry budget: at `budget_ratio = 0.5` and no floor, every
/// other request may hop; the others get the primary's own answer.
#[tokio::test]
async fn hops_stay_within_the_retry_budget() {
    for travel in Travel::ALL {
        let primary = answering("primary", 429).await;
        let backup = answering("backup", 200).await;
        let route = "retries = { attempts = 0, budget_ratio = 0.5, budget_min_per_second = 0 }";
        let proxy = chain_proxy(
            travel,
            &primary.url(),
            &backup.url(),
            Some("[429]"),
            route,
            &Extra::default(),
        )
        .await;
        let mut answers = Vec::new();
        for _ in 0..4 {
            answers.push(chat(&proxy).await);
        }
        let expected = [
            (200, "backup".to_string()),
            (429, "primary".to_string()),
            (200, "backup".to_string()),
            (429, "primary".to_string()),
        ];
        assert_eq!(answers, expected, "{travel:?}");
        assert_eq!(hops_counted(&proxy, "p", "backup", "429", 2.0).await, 2.0);
    }
}

/// Without `retries` a chain has the default budget (20 % plus 3 per second) and no
/// retries within a pool: a pool of two endpoints answering 503 is left after the first.
#[tokio::test]
async fn without_retries_a_pool_is_left_after_its_first_endpoint() {
    for travel in Travel::ALL {
        let one = answering("one", 503).await;
        let two = answering("two", 503).await;
        let backup = answering("backup", 200).await;
        let before = format!(
            "[[pools]]\nname = \"primary\"\nendpoints = [{{ url = \"{}\" }}, {{ url = \"{}\" }}]\n",
            one.url(),
            two.url()
        );
        let extra = Extra {
            before: &before,
            ..Extra::default()
        };
        // The chain's first target is "primary" here, not "p".
        let on = Some("[503]");
        let proxy = chain_proxy_from(travel, "primary", &backup.url(), on, "", &extra).await;
        assert_eq!(chat(&proxy).await, (200, "backup".into()), "{travel:?}");
        assert_eq!(one.requests() + two.requests(), 1, "{travel:?}");
    }
}

/// With `retries`, the pool's other endpoints are tried first (`attempts` per target),
/// then the chain goes on.
#[tokio::test]
async fn retries_within_the_pool_come_before_the_hop() {
    for travel in Travel::ALL {
        let one = answering("one", 503).await;
        let two = answering("two", 503).await;
        let backup = answering("backup", 200).await;
        let before = format!(
            "[[pools]]\nname = \"primary\"\nendpoints = [{{ url = \"{}\" }}, {{ url = \"{}\" }}]\n",
            one.url(),
            two.url()
        );
        let extra = Extra {
            before: &before,
            ..Extra::default()
        };
        let route = "retries = { attempts = 1, on = [503], retry_non_idempotent = true }";
        let proxy = chain_proxy_from(
            travel,
            "primary",
            &backup.url(),
            Some("[503]"),
            route,
            &extra,
        )
        .await;
        assert_eq!(chat(&proxy).await, (200, "backup".into()), "{travel:?}");
        assert_eq!((one.requests(), two.requests()), (1, 1), "{travel:?}");
        assert_eq!(
            hops_counted(&proxy, "primary", "backup", "503", 1.0).await,
            1.0
        );
    }
}

/// `chain_proxy` with the chain starting at the pool `first` (defined in `extra.before`).
async fn chain_proxy_from(
    travel: Travel,
    first: &str,
    backup: &str,
    on: Option<&str>,
    route: &str,
    extra: &Extra<'_>,
) -> RunningProxy {
    let on = on.map(|on| format!(", on = {on}")).unwrap_or_default();
    let before = format!(
        "{}\n[[pools]]\nname = \"backup\"\nendpoints = [{{ url = \"{backup}\" }}]\n\n\
         [[routes]]\nname = \"chain\"\nmatch = {{ path_prefix = \"/v1\" }}\n\
         targets = [{{ pool = \"{first}\" }}, {{ pool = \"backup\"{on} }}]\n{}\n{route}\n",
        extra.before,
        travel.route_keys(),
    );
    let unused = answering("unused", 500).await;
    let extra = Extra {
        before: &before,
        ..*extra
    };
    let proxy = start(travel, &[unused.url()], &extra).await;
    // The catch-all pool "p" is never asked: the chain route takes every `/v1` path.
    std::mem::forget(unused);
    proxy
}

/// Three targets: a 503 goes on to the second, whose 429 goes on to the third. The
/// access log names the pool that answered and every hop.
#[tokio::test]
async fn a_three_target_chain_is_walked_in_order_and_logged() {
    for travel in Travel::ALL {
        let primary = answering("primary", 503).await;
        let second = answering("second", 429).await;
        let third = answering("third", 200).await;
        let log = tempfile::NamedTempFile::new().expect("temp file");
        let top = format!(
            "[access_log]\npath = \"{}\"",
            log.path().display().to_string().replace('\\', "/")
        );
        let before = format!(
            "[[pools]]\nname = \"second\"\nendpoints = [{{ url = \"{}\" }}]\n\n\
             [[pools]]\nname = \"third\"\nendpoints = [{{ url = \"{}\" }}]\n\n\
             [[routes]]\nname = \"chain\"\nmatch = {{ path_prefix = \"/v1\" }}\n\
             targets = [{{ pool = \"p\" }}, {{ pool = \"second\", on = [503] }}, \
             {{ pool = \"third\", on = [429] }}]\n{}\n",
            second.url(),
            third.url(),
            travel.route_keys()
        );
        let extra = Extra {
            top: &top,
            before: &before,
            ..Extra::default()
        };
        let proxy = start(travel, &[primary.url()], &extra).await;
        assert_eq!(chat(&proxy).await, (200, "third".into()), "{travel:?}");
        assert_eq!(
            (primary.requests(), second.requests(), third.requests()),
            (1, 1, 1)
        );
        let line = access_log_line(log.path()).await;
        assert_eq!(line["route"], "chain", "{travel:?}");
        assert_eq!(line["pool"], "third", "{travel:?}");
        assert_eq!(line["endpoint"], third.url(), "{travel:?}");
        assert_eq!(line["status"], 200, "{travel:?}");
        assert_eq!(line["hops"], "p>second:503,second>third:429", "{travel:?}");
        assert_eq!(line["retries"], 0, "{travel:?}");
        let text = proxy.metrics_text().await;
        let metrics = parse_metrics(&text);
        let series = |from: &str, to: &str, reason: &str| {
            format!(
                "junction_fallback_hops_total{{route=\"chain\",from=\"{from}\",to=\"{to}\",reason=\"{reason}\"}}"
            )
        };
        assert_eq!(
            metrics.get(&series("p", "second", "503")),
            Some(&1.0),
            "{text}"
        );
        assert_eq!(
            metrics.get(&series("second", "third", "429")),
            Some(&1.0),
            "{text}"
        );
        // The request counts for the pool that answered it.
        let served = "junction_requests_total{route=\"chain\",pool=\"third\"";
        assert!(text.lines().any(|l| l.starts_with(served)), "{text}");
        // The dashboard lists the hops from the same series.
        let dashboard = proxy.admin_json("/api/dashboard").await;
        let hops = dashboard["tables"]["junction_fallback_hops_total"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(hops.len(), 2, "{travel:?}: {dashboard}");
        // The HTTP/1.1 engine served the chained route itself: nothing handed to hyper.
        if travel == Travel::Fast {
            assert!(
                !text.contains("junction_fast_path_handoffs_total{"),
                "{text}"
            );
        }
        support::promtool_check(&text).await;
    }
}

/// The first line of the access log, once written.
async fn access_log_line(path: &std::path::Path) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            return serde_json::from_str(line).expect("a JSON access log line");
        }
        assert!(tokio::time::Instant::now() < deadline, "no access log line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The credential headers and the body an endpoint received, one entry per request.
type Seen = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

async fn recording(name: &str, status: u16) -> (RunningUpstream, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let upstream = TestUpstream::named(name)
        .handler(move |request: http::Request<hyper::body::Incoming>| {
            let record = record.clone();
            async move {
                use http_body_util::BodyExt;
                let credentials = ["authorization", "x-api-key", "api-key"]
                    .iter()
                    .flat_map(|name| {
                        request.headers().get_all(*name).iter().map(|value| {
                            (name.to_string(), value.to_str().unwrap_or("").to_string())
                        })
                    })
                    .collect();
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                let body = String::from_utf8_lossy(&body).into_owned();
                record.lock().unwrap().push((credentials, body));
                reply(status, r#"{"ok":true}"#)
            }
        })
        .start()
        .await;
    (upstream, seen)
}

/// A chain across providers: each hop sends its pool's own key and model name, and the
/// client's key reaches neither pool (each has its own credential).
#[tokio::test]
async fn each_hop_sends_its_pools_key_and_model_name() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "sk-primary\n").unwrap();
    // SAFETY: no other test of this binary writes this variable; only this test's
    // config compiler reads it.
    unsafe { std::env::set_var("JUNCTION_TEST_CHAIN_AZURE_KEY", "sk-azure") };
    for travel in Travel::ALL {
        let (primary, primary_seen) = recording("primary", 429).await;
        let (azure, azure_seen) = recording("azure", 200).await;
        let pool = format!(
            "auth = {{ value_file = {:?} }}",
            key_file.display().to_string()
        );
        let before = format!(
            "[[pools]]\nname = \"azure\"\nendpoints = [{{ url = \"{}\" }}]\n\
             auth = {{ header = \"api-key\", value_env = \"JUNCTION_TEST_CHAIN_AZURE_KEY\" }}\n\
             model_map = {{ \"gpt-4o\" = \"my-deployment\" }}\n\n\
             [[routes]]\nname = \"chain\"\nmatch = {{ path_prefix = \"/v1\" }}\n\
             targets = [{{ pool = \"p\" }}, {{ pool = \"azure\", on = [429] }}]\n{}\n",
            azure.url(),
            travel.route_keys()
        );
        let extra = Extra {
            pool: &pool,
            before: &before,
            ..Extra::default()
        };
        let proxy = start(travel, &[primary.url()], &extra).await;
        let response = client()
            .post(proxy.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .header("x-api-key", CLIENT_KEY)
            .header("api-key", CLIENT_KEY)
            .header("content-type", "application/json")
            .body(CHAT)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{travel:?}");
        let primary_seen = primary_seen.lock().unwrap().clone();
        let azure_seen = azure_seen.lock().unwrap().clone();
        let only = |name: &str, value: &str| vec![(name.to_string(), value.to_string())];
        assert_eq!(primary_seen.len(), 1, "{travel:?}");
        assert_eq!(
            primary_seen[0].0,
            only("authorization", "Bearer sk-primary")
        );
        assert_eq!(primary_seen[0].1, CHAT, "{travel:?}");
        assert_eq!(azure_seen.len(), 1, "{travel:?}");
        assert_eq!(azure_seen[0].0, only("api-key", "sk-azure"), "{travel:?}");
        assert_eq!(
            azure_seen[0].1,
            CHAT.replace("gpt-4o", "my-deployment"),
            "{travel:?}"
        );
        for (credentials, _) in primary_seen.iter().chain(&azure_seen) {
            assert!(
                !credentials.iter().any(|(_, v)| v.contains(CLIENT_KEY)),
                "{travel:?}: the client's key reached a pool with its own: {credentials:?}"
            );
        }
    }
}

/// A pool's `fallback` (kept: a hop on `unavailable` that needs no chain) still works
/// and is counted as a hop.
#[tokio::test]
async fn a_pools_own_fallback_still_works_and_is_counted() {
    for travel in Travel::ALL {
        let (arrived_tx, mut arrived) = mpsc::channel::<oneshot::Sender<()>>(1);
        let primary = TestUpstream::named("primary")
            .handler(move |_| {
                let arrived_tx = arrived_tx.clone();
                async move {
                    let (release, released) = oneshot::channel();
                    let _ = arrived_tx.send(release).await;
                    let _ = released.await;
                    reply(200, r#"{"ok":true}"#)
                }
            })
            .start()
            .await;
        let (spare, bodies) = recording_bodies("spare").await;
        let before = format!(
            "[[pools]]\nname = \"spare\"\nendpoints = [{{ url = \"{}\" }}]\n",
            spare.url()
        );
        let extra = Extra {
            pool: "limits = { pool_max_in_flight = 1 }\nfallback = \"spare\"",
            before: &before,
            ..Extra::default()
        };
        let proxy = Arc::new(start(travel, &[primary.url()], &extra).await);
        let first = tokio::spawn({
            let proxy = proxy.clone();
            async move { chat(&proxy).await }
        });
        let release = arrived
            .recv()
            .await
            .expect("the first request reached the primary");
        assert_eq!(chat(&proxy).await, (200, "spare".into()), "{travel:?}");
        let _ = release.send(());
        assert_eq!(first.await.unwrap(), (200, "primary".into()), "{travel:?}");
        assert_eq!(bodies.lock().unwrap().len(), 1, "{travel:?}");
        let counted = hops_counted_on(&proxy, "all", "p", "spare", "unavailable", 1.0).await;
        assert_eq!(counted, 1.0, "{travel:?}");
    }
}

/// `junction check` on `text`: its exit code and its stderr.
async fn check(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = dir.path().join("junction.toml");
    std::fs::write(&path, text).expect("write config");
    let output = tokio::process::Command::new(support::process::binary())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WITHIN, output)
        .await
        .expect("junction check finishes")
        .expect("junction runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

const CHECKED_POOLS: &str = r#"[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "primary"
endpoints = [{ url = "http://127.0.0.1:9001" }]

[[pools]]
name = "azure"
endpoints = [{ url = "http://127.0.0.1:9002" }]
"#;

#[tokio::test]
async fn a_chain_is_checked_at_load_with_key_paths_and_lines() {
    let config = format!(
        r#"{CHECKED_POOLS}
[[routes]]
name = "chat"
targets = [
  {{ pool = "primary", on = [429] }},
  {{ pool = "azure", on = [429, 200, "foo", "timeout"] }},
  {{ pool = "nowhere" }},
  {{ pool = "azure", on = [] }},
]
"#
    );
    let (code, stderr) = check(&config).await;
    assert_eq!(code, Some(1), "{stderr}");
    let expected = [
        "routes[0].targets[0].on (line 16): the first target is always tried",
        "routes[0].targets[1].on[1] (line 17): 200 is not an error status (400 to 599)",
        r#"routes[0].targets[1].on[2] (line 17): unknown trigger "foo""#,
        r#"routes[0].targets[2].pool (line 18): no pool is named "nowhere""#,
        r#"routes[0].targets[3].pool (line 19): pool "azure" is in the chain twice"#,
        "routes[0].targets[3].on (line 19): an empty `on` means this target is never tried",
    ];
    for error in expected {
        assert!(stderr.contains(error), "missing {error:?} in:\n{stderr}");
    }
}

#[tokio::test]
async fn targets_exclude_pool_and_split_and_a_good_chain_passes() {
    let both = format!(
        "{CHECKED_POOLS}\n[[routes]]\nname = \"chat\"\npool = \"primary\"\n\
         targets = [{{ pool = \"primary\" }}, {{ pool = \"azure\" }}]\n"
    );
    let (code, stderr) = check(&both).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("routes[0].targets (line 16): use pool, split or targets, only one"),
        "{stderr}"
    );
    let empty = format!("{CHECKED_POOLS}\n[[routes]]\nname = \"chat\"\ntargets = []\n");
    let (code, stderr) = check(&empty).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("routes[0].targets"), "{stderr}");
    assert!(
        stderr.contains("a chain needs at least one target"),
        "{stderr}"
    );
    let good = format!(
        "{CHECKED_POOLS}\n[[routes]]\nname = \"chat\"\n\
         targets = [{{ pool = \"primary\" }}, {{ pool = \"azure\", on = [429, 503, \"timeout\", \
         \"first_token_timeout\", \"connect_error\", \"reset\", \"unavailable\"] }}]\n"
    );
    let (code, stderr) = check(&good).await;
    assert_eq!(code, Some(0), "{stderr}");
}

/// After a hop the next pool balances by its own key: a `hash` pool on `x-user` keeps
/// a user on one endpoint, though the first pool has no key at all.
#[tokio::test]
async fn the_next_pool_balances_by_its_own_key() {
    for travel in Travel::ALL {
        let primary = answering("primary", 503).await;
        let one = answering("one", 200).await;
        let two = answering("two", 200).await;
        let before = format!(
            "[[pools]]\nname = \"hashed\"\nbalance = \"hash\"\nhash_key = \"header:x-user\"\n\
             endpoints = [{{ url = \"{}\" }}, {{ url = \"{}\" }}]\n\n\
             [[routes]]\nname = \"chain\"\nmatch = {{ path_prefix = \"/v1\" }}\n\
             targets = [{{ pool = \"p\" }}, {{ pool = \"hashed\", on = [503] }}]\n\
             retries = {{ budget_min_per_second = 1000 }}\n{}\n",
            one.url(),
            two.url(),
            travel.route_keys()
        );
        let extra = Extra {
            before: &before,
            ..Extra::default()
        };
        let proxy = start(travel, &[primary.url()], &extra).await;
        for user in ["alice", "bob", "carol"] {
            let mut answered_by = std::collections::BTreeSet::new();
            for _ in 0..6 {
                let response = client()
                    .post(proxy.url("/v1/chat/completions"))
                    .header("x-user", user)
                    .header("content-type", "application/json")
                    .body(CHAT)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), 200, "{travel:?}");
                answered_by.insert(
                    response.headers()["x-upstream"]
                        .to_str()
                        .unwrap()
                        .to_string(),
                );
            }
            assert_eq!(answered_by.len(), 1, "{travel:?} {user}: {answered_by:?}");
        }
    }
}

/// A status in `on` also matches the answer Junction makes when the target fails
/// without one, as Envoy's `5xx` covers resets and timeouts: a primary held by its own
/// `Retry-After` (Junction's `503 no_endpoint`) hops on 503, a refused connect (`502`)
/// on 502, with the issue's list of triggers and no names for these failures.
#[tokio::test]
async fn a_listed_status_matches_junctions_own_answer_for_a_failure() {
    let on = "[429, 500, 502, 503, 504, \"timeout\", \"first_token_timeout\"]";
    for travel in Travel::ALL {
        let primary = TestUpstream::named("primary")
            .handler(|_| async {
                let mut answer = reply(429, r#"{"error":"slow down"}"#);
                answer
                    .headers_mut()
                    .insert("retry-after", http::HeaderValue::from_static("300"));
                answer
            })
            .start()
            .await;
        let backup = answering("backup", 200).await;
        let proxy = chain_proxy(
            travel,
            &primary.url(),
            &backup.url(),
            Some(on),
            "",
            &Extra::default(),
        )
        .await;
        assert_eq!(chat(&proxy).await, (200, "backup".into()), "{travel:?}");
        // The primary's only endpoint is held for 300 s: no endpoint, Junction's 503.
        assert_eq!(chat(&proxy).await, (200, "backup".into()), "{travel:?}");
        assert_eq!(
            (primary.requests(), backup.requests()),
            (1, 2),
            "{travel:?}"
        );
        assert_eq!(hops_counted(&proxy, "p", "backup", "429", 1.0).await, 1.0);
        assert_eq!(hops_counted(&proxy, "p", "backup", "503", 1.0).await, 1.0);

        let refused = {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            format!("http://{}", listener.local_addr().unwrap())
        };
        let proxy = chain_proxy(
            travel,
            &refused,
            &backup.url(),
            Some(on),
            "",
            &Extra::default(),
        )
        .await;
        assert_eq!(chat(&proxy).await, (200, "backup".into()), "{travel:?}");
        assert_eq!(hops_counted(&proxy, "p", "backup", "502", 1.0).await, 1.0);
    }
}

/// Only a body held whole goes again: one that streams (`request_buffering = false`,
/// longer than `retries.body_limit`) is sent once, and the client gets the first
/// pool's own answer.
#[tokio::test]
async fn a_streamed_body_never_hops() {
    for travel in Travel::ALL {
        let primary = answering("primary", 429).await;
        let backup = answering("backup", 200).await;
        let route = "request_buffering = false\nretries = { attempts = 0, body_limit = \"16B\" }";
        let proxy = chain_proxy(
            travel,
            &primary.url(),
            &backup.url(),
            Some("[429]"),
            route,
            &Extra::default(),
        )
        .await;
        assert_eq!(chat(&proxy).await, (429, "primary".into()), "{travel:?}");
        assert_eq!(backup.requests(), 0, "{travel:?}");
        assert!(no_hop_series(&proxy.metrics_text().await), "{travel:?}");
    }
}
