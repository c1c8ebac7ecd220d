use crate::support;

// Endpoint health end to end: active HTTP and TCP checks (rise/fall, status ranges),
// passive outlier ejection (growing, capped, never the whole pool), `Retry-After`
// holds, circuit breaking, the fallback pool, and health state across reloads and in
// the logs. Health states are read from the admin API and `/metrics`, polled with a
// bounded deadline; where exact counts of probes matter, the test answers each probe
// itself (see `Lockstep`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use serde_json::Value;
use support::proxy::RunningProxy;
use support::upstream::{RunningUpstream, reply};
use support::{JunctionProcess, TestProxy, TestUpstream, client, listeners_toml};
use tempfile::TempDir;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::{Instant, timeout};

// === Fixtures ===

/// An upstream whose `/health` answers the status in `health` (switchable at any time);
/// it counts health probes and other requests apart.
struct Switchable {
    upstream: RunningUpstream,
    health: Arc<AtomicU16>,
    probes: Arc<AtomicUsize>,
    traffic: Arc<AtomicUsize>,
}

impl Switchable {
    async fn start(name: &str) -> Switchable {
        let health = Arc::new(AtomicU16::new(200));
        let probes = Arc::new(AtomicUsize::new(0));
        let traffic = Arc::new(AtomicUsize::new(0));
        let (status, probed, served) = (health.clone(), probes.clone(), traffic.clone());
        let upstream = TestUpstream::named(name)
            .handler(move |request: Request<Incoming>| {
                let (status, probed, served) = (status.clone(), probed.clone(), served.clone());
                async move {
                    if request.uri().path() == "/health" {
                        probed.fetch_add(1, Ordering::SeqCst);
                        reply(status.load(Ordering::SeqCst), "health")
                    } else {
                        served.fetch_add(1, Ordering::SeqCst);
                        reply(200, "served")
                    }
                }
            })
            .start()
            .await;
        Switchable {
            upstream,
            health,
            probes,
            traffic,
        }
    }

    fn url(&self) -> String {
        self.upstream.url()
    }

    fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::SeqCst);
    }

    fn probes(&self) -> usize {
        self.probes.load(Ordering::SeqCst)
    }

    fn traffic(&self) -> usize {
        self.traffic.load(Ordering::SeqCst)
    }

    /// Waits for `count` more probes and returns how long they took. A checker sends one
    /// probe per interval at most, so `count` probes of one checker take about `count`
    /// intervals; two checkers would take half that.
    async fn time_probes(&self, count: usize) -> Duration {
        let target = self.probes() + 1;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.probes() < target {
            assert!(Instant::now() < deadline, "no health probe within 5 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let started = Instant::now();
        let target = target + count;
        while self.probes() < target {
            assert!(Instant::now() < deadline, "{count} probes took over 5 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        started.elapsed()
    }
}

/// An upstream whose `/health` probes wait for the test to choose their status. The
/// checker of an endpoint sends one probe at a time and waits for it, so while the test
/// holds probe N, the endpoint's state is exactly the verdict of probes 1..N-1.
struct Lockstep {
    upstream: RunningUpstream,
    probes: mpsc::UnboundedReceiver<oneshot::Sender<u16>>,
    traffic: Arc<AtomicUsize>,
}

impl Lockstep {
    async fn start(name: &str) -> Lockstep {
        let (arrivals, probes) = mpsc::unbounded_channel::<oneshot::Sender<u16>>();
        let traffic = Arc::new(AtomicUsize::new(0));
        let served = traffic.clone();
        let upstream = TestUpstream::named(name)
            .handler(move |request: Request<Incoming>| {
                let (arrivals, served) = (arrivals.clone(), served.clone());
                async move {
                    if request.uri().path() != "/health" {
                        served.fetch_add(1, Ordering::SeqCst);
                        return reply(200, "served");
                    }
                    let (answer, status) = oneshot::channel();
                    if arrivals.send(answer).is_err() {
                        return reply(500, "the test is gone");
                    }
                    reply(status.await.unwrap_or(500), "probe")
                }
            })
            .start()
            .await;
        Lockstep {
            upstream,
            probes,
            traffic,
        }
    }

    fn url(&self) -> String {
        self.upstream.url()
    }

    fn traffic(&self) -> usize {
        self.traffic.load(Ordering::SeqCst)
    }

    /// The next probe, held until the returned sender gets its status.
    async fn next_probe(&mut self) -> oneshot::Sender<u16> {
        timeout(Duration::from_secs(5), self.probes.recv())
            .await
            .expect("a health probe within 5 s")
            .expect("the upstream is running")
    }
}

/// An upstream that holds every request until the test adds permits to `gate`, and
/// reports each arrival on `arrivals`.
struct Holding {
    upstream: RunningUpstream,
    arrivals: mpsc::UnboundedReceiver<()>,
    gate: Arc<Semaphore>,
}

impl Holding {
    async fn start(name: &str) -> Holding {
        let (sender, arrivals) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(0));
        Holding {
            upstream: holding_upstream(name, sender, gate.clone()).await,
            arrivals,
            gate,
        }
    }

    async fn arrival(&mut self) {
        timeout(Duration::from_secs(5), self.arrivals.recv())
            .await
            .expect("the request reaches the upstream within 5 s")
            .expect("the upstream is running");
    }
}

async fn holding_upstream(
    name: &str,
    arrivals: mpsc::UnboundedSender<()>,
    gate: Arc<Semaphore>,
) -> RunningUpstream {
    TestUpstream::named(name)
        .handler(move |_request: Request<Incoming>| {
            let (arrivals, gate) = (arrivals.clone(), gate.clone());
            async move {
                let _ = arrivals.send(());
                gate.acquire().await.expect("gate open").forget();
                reply(200, "released")
            }
        })
        .start()
        .await
}

/// What came back through the proxy.
struct Answer {
    status: u16,
    upstream: Option<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn error_type(&self) -> Value {
        serde_json::from_str::<Value>(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))["error"]["type"]
            .clone()
    }
}

async fn send(http: &reqwest::Client, url: &str) -> Answer {
    let response = timeout(Duration::from_secs(10), http.get(url).send())
        .await
        .expect("an answer within 10 s")
        .expect("the proxy answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let upstream = headers
        .get("x-upstream")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.text().await.expect("body");
    Answer {
        status,
        upstream,
        headers,
        body,
    }
}

/// Sends `count` GETs and returns who answered each (all must be 200).
async fn served_by(http: &reqwest::Client, url: &str, count: usize) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..count {
        let answer = send(http, url).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        names.push(answer.upstream.expect("x-upstream"));
    }
    names
}

/// The admin API of a running Junction.
struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    fn of(proxy: &RunningProxy) -> Admin {
        Admin {
            http: client(),
            base: proxy.admin_url(""),
        }
    }

    fn of_process(process: &JunctionProcess) -> Admin {
        Admin {
            http: client(),
            base: process.url("admin", ""),
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("admin API answers")
    }

    async fn pool(&self, pool: &str) -> Value {
        let pools: Value = self.get("/api/pools").await.json().await.unwrap();
        pools["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == pool)
            .unwrap_or_else(|| panic!("no pool {pool} in {pools}"))
            .clone()
    }

    /// The `/api/pools` entry of one endpoint.
    async fn endpoint(&self, pool: &str, url: &str) -> Value {
        let entry = self.pool(pool).await;
        entry["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["url"] == url)
            .unwrap_or_else(|| panic!("no endpoint {url} in {entry}"))
            .clone()
    }

    /// Polls `/api/pools` until `ready` holds for the endpoint (5 s at most).
    async fn wait_for(
        &self,
        pool: &str,
        url: &str,
        what: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let endpoint = self.endpoint(pool, url).await;
            if ready(&endpoint) {
                return endpoint;
            }
            assert!(
                Instant::now() < deadline,
                "{url} never became {what}: {endpoint}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_for_check(&self, pool: &str, url: &str, verdict: &str) -> Value {
        self.wait_for(pool, url, verdict, |e| e["health_check"] == verdict)
            .await
    }

    /// The value of `family{...endpoint="url"...}` in `/metrics`.
    async fn metric(&self, family: &str, url: &str) -> Option<f64> {
        let text = self.get("/metrics").await.text().await.unwrap();
        let label = format!("endpoint=\"{url}\"");
        text.lines()
            .find(|line| line.starts_with(&format!("{family}{{")) && line.contains(&label))
            .and_then(|line| line.rsplit(' ').next())
            .map(|value| value.parse().expect("a number"))
    }
}

/// A config with listeners and the given pools and routes (TOML text).
fn config(rest: &str) -> String {
    format!("{}\n{rest}", listeners_toml())
}

fn route_all(pool: &str) -> String {
    format!(
        r#"
[[routes]]
name = "all"
pool = "{pool}"
"#
    )
}

// === Active HTTP checks ===

#[tokio::test]
async fn active_http_check_goes_down_after_fall_failures_and_back_after_rise_passes() {
    let mut a = Lockstep::start("a").await;
    let b = TestUpstream::named("b").start().await;
    let proxy = TestProxy::from_toml(&config(&format!(
        r#"
[[pools]]
name = "p"
endpoints = [{{ url = "{}" }}, {{ url = "{}" }}]
health = {{ path = "/health", interval = "50ms", timeout = "2s", rise = 2, fall = 3 }}
{}"#,
        a.url(),
        b.url(),
        route_all("p")
    )))
    .start()
    .await;
    let admin = Admin::of(&proxy);
    let http = client();
    let url = proxy.url("/work");

    // Healthy: both endpoints take traffic.
    a.next_probe().await.send(200).unwrap();
    served_by(&http, &url, 4).await;
    assert_eq!(a.traffic(), 2, "round robin over two healthy endpoints");

    // Still up after one and two failed probes; down once the third is in.
    for failed in 0..3 {
        let probe = a.next_probe().await;
        let state = admin.endpoint("p", &a.url()).await;
        assert_eq!(
            state["health_check"], "up",
            "down after {failed} failed probes (fall = 3): {state}"
        );
        probe.send(503).unwrap();
    }
    let held = a.next_probe().await;
    let state = admin.endpoint("p", &a.url()).await;
    assert_eq!(state["health_check"], "down", "{state}");
    assert_eq!(state["up"], false, "{state}");
    assert_eq!(
        admin.metric("junction_endpoint_up", &a.url()).await,
        Some(0.0)
    );
    assert_eq!(
        admin.metric("junction_endpoint_up", &b.url()).await,
        Some(1.0)
    );
    // Down: no traffic at all.
    let before = a.traffic();
    let names = served_by(&http, &url, 6).await;
    assert!(names.iter().all(|n| n == "b"), "{names:?}");
    assert_eq!(a.traffic(), before, "a down endpoint got requests");
    held.send(503).unwrap();

    // One passing probe is not enough (rise = 2); the second brings it back.
    for passed in 0..2 {
        let probe = a.next_probe().await;
        let state = admin.endpoint("p", &a.url()).await;
        assert_eq!(
            state["health_check"], "down",
            "up after {passed} passing probes (rise = 2): {state}"
        );
        assert_eq!(state["up"], false);
        probe.send(200).unwrap();
    }
    let held = a.next_probe().await;
    let state = admin.endpoint("p", &a.url()).await;
    assert_eq!(state["health_check"], "up", "{state}");
    assert_eq!(state["up"], true, "{state}");
    assert_eq!(
        admin.metric("junction_endpoint_up", &a.url()).await,
        Some(1.0)
    );
    let before = a.traffic();
    served_by(&http, &url, 4).await;
    assert_eq!(a.traffic(), before + 2, "traffic is back on a");
    held.send(200).unwrap();
}

#[tokio::test]
async fn active_http_check_honours_expect_status_ranges() {
    let mut ranged = Lockstep::start("ranged").await;
    let mut plain = Lockstep::start("plain").await;
    let proxy = TestProxy::from_toml(&config(&format!(
        r#"
[[pools]]
name = "ranged"
endpoints = [{{ url = "{}" }}]
health = {{ path = "/health", interval = "50ms", timeout = "2s", rise = 1, fall = 1, expect_status = "200-299, 418" }}

[[pools]]
name = "plain"
endpoints = [{{ url = "{}" }}]
health = {{ path = "/health", interval = "50ms", timeout = "2s", rise = 1, fall = 1 }}
{}"#,
        ranged.url(),
        plain.url(),
        route_all("ranged")
    )))
    .start()
    .await;
    let admin = Admin::of(&proxy);

    // rise = fall = 1: the verdict of each probe shows while the next one is held.
    let ranged_cases = [
        (301, "down"),
        (204, "up"),
        (300, "down"),
        (299, "up"),
        (419, "down"),
        (418, "up"),
        (500, "down"),
        (200, "up"),
        (417, "down"),
    ];
    verdicts_follow(&admin, "ranged", &mut ranged, &ranged_cases).await;
    // The default range is 200-399.
    let plain_cases = [(400, "down"), (399, "up"), (503, "down"), (302, "up")];
    verdicts_follow(&admin, "plain", &mut plain, &plain_cases).await;
}

/// Answers one probe with each status in turn, and checks the verdict after each (the
/// pool has rise = fall = 1).
async fn verdicts_follow(
    admin: &Admin,
    pool: &str,
    upstream: &mut Lockstep,
    statuses: &[(u16, &str)],
) {
    let mut probe = upstream.next_probe().await;
    for &(status, verdict) in statuses {
        probe.send(status).unwrap();
        probe = upstream.next_probe().await;
        let state = admin.endpoint(pool, &upstream.url()).await;
        assert_eq!(
            state["health_check"], verdict,
            "pool {pool}: after a probe answered {status}: {state}"
        );
    }
    probe.send(200).unwrap();
}

// === TCP checks ===

#[tokio::test]
async fn tcp_check_takes_a_closed_port_out_and_back_when_it_opens() {
    // A bound socket that does not listen: connections to its port are refused.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    let b = TestUpstream::named("b").start().await;
    let proxy = TestProxy::from_toml(&config(&format!(
        r#"
[[pools]]
name = "p"
endpoints = [{{ url = "{closed_url}" }}, {{ url = "{}" }}]
health = {{ tcp = true, interval = "50ms", timeout = "500ms", rise = 2, fall = 2 }}
{}"#,
        b.url(),
        route_all("p")
    )))
    .start()
    .await;
    let admin = Admin::of(&proxy);
    let http = client();

    admin.wait_for_check("p", &closed_url, "down").await;
    assert_eq!(
        admin.endpoint("p", &b.url()).await["health_check"],
        "up",
        "the listening endpoint passes the TCP check"
    );
    assert_eq!(
        admin.metric("junction_endpoint_up", &closed_url).await,
        Some(0.0)
    );
    let names = served_by(&http, &proxy.url("/work"), 8).await;
    assert!(names.iter().all(|n| n == "b"), "{names:?}");
    // A TCP check sends no HTTP request.
    assert_eq!(b.requests(), 8);

    // The port opens: a connect is the whole check, so it comes back.
    let _listener = closed.listen(16).unwrap();
    admin.wait_for_check("p", &closed_url, "up").await;
}

// === Passive outlier detection ===

#[tokio::test]
async fn outlier_ejection_grows_from_base_and_is_capped() {
    let a = TestUpstream::named("a")
        .handler(|_request: Request<Incoming>| async { reply(500, "broken") })
        .start()
        .await;
    let b = TestUpstream::named("b").start().await;
    let proxy = TestProxy::from_toml(&config(&format!(
        r#"
[[pools]]
name = "p"
endpoints = [{{ url = "{}" }}, {{ url = "{}" }}]
outlier = {{ consecutive_failures = 3, base_ejection = "300ms", max_ejection = "800ms", max_ejection_percent = 50 }}
{}"#,
        a.url(),
        b.url(),
        route_all("p")
    )))
    .start()
    .await;
    let admin = Admin::of(&proxy);
    let http = client();
    let url = proxy.url("/work");

    // Sends until a has answered `total` requests in all, checking that a has been
    // ejected `ejections` times until then; returns when the last answer came back.
    let fail_until = |total: usize, ejections: u64| {
        let (http, url, a, admin) = (&http, &url, &a, &admin);
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            while a.requests() < total {
                assert!(Instant::now() < deadline, "a got no traffic for 5 s");
                let answer = send(http, url).await;
                match answer.upstream.as_deref() {
                    Some("a") => assert_eq!(answer.status, 500),
                    Some("b") => assert_eq!(answer.status, 200),
                    other => panic!("answered by {other:?}: {} {}", answer.status, answer.body),
                }
                if a.requests() < total {
                    let state = admin.endpoint("p", &a.url()).await;
                    assert_eq!(state["ejections"], ejections, "ejected early: {state}");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Instant::now()
        }
    };

    // Three failures in a row: ejected for the base time.
    let ejected_at = fail_until(3, 0).await;
    let state = admin.endpoint("p", &a.url()).await;
    assert_eq!(state["ejections"], 1, "{state}");
    assert_eq!(state["up"], false, "{state}");
    assert_eq!(
        state["health_check"], "up",
        "ejection is not a check verdict"
    );
    let left = state["ejected_for_ms"].as_u64().expect("ejected_for_ms");
    assert!((1..=300).contains(&left), "first ejection: {left} ms left");
    assert_eq!(
        admin.metric("junction_ejections_total", &a.url()).await,
        Some(1.0)
    );
    assert_eq!(
        admin.metric("junction_ejections_total", &b.url()).await,
        Some(0.0)
    );
    assert_eq!(
        admin.metric("junction_endpoint_up", &a.url()).await,
        Some(0.0)
    );

    // While ejected, everything goes to b.
    let mut during = 0;
    while ejected_at.elapsed() < Duration::from_millis(200) {
        let answer = send(&http, &url).await;
        assert_eq!(answer.upstream.as_deref(), Some("b"), "{}", answer.body);
        during += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(during > 0);
    assert_eq!(a.requests(), 3, "an ejected endpoint got requests");

    // Back after the base time: the next request to a comes after about 300 ms.
    let fourth = fail_until(4, 1).await;
    let back_after = fourth.duration_since(ejected_at);
    assert!(
        back_after >= Duration::from_millis(250) && back_after < Duration::from_secs(2),
        "back after {back_after:?}, ejected for 300 ms"
    );

    // Ejected again, for twice as long.
    fail_until(6, 1).await;
    let state = admin.endpoint("p", &a.url()).await;
    assert_eq!(state["ejections"], 2, "{state}");
    let left = state["ejected_for_ms"].as_u64().expect("ejected_for_ms");
    assert!(
        (301..=600).contains(&left),
        "second ejection: {left} ms left, expected up to 600"
    );

    // And again: twice as long would be 1200 ms, capped at max_ejection = 800 ms.
    fail_until(9, 2).await;
    let state = admin.endpoint("p", &a.url()).await;
    assert_eq!(state["ejections"], 3, "{state}");
    let left = state["ejected_for_ms"].as_u64().expect("ejected_for_ms");
    assert!(
        (601..=800).contains(&left),
        "third ejection: {left} ms left, expected capped at 800"
    );
    assert_eq!(
        admin.metric("junction_ejections_total", &a.url()).await,
        Some(3.0)
    );
}

#[tokio::test]
async fn a_clean_success_after_an_ejection_starts_the_next_one_from_the_base_time() {
    let status = Arc::new(AtomicU16::new(500));
    let answer_with = status.clone();
    let a = TestUpstream::named("a")
        .handler(move |_request: Request<Incoming>| {
            let status = answer_with.load(Ordering::SeqCst);
            async move { reply(status, "a") }
        })
        .start()
        .await;
    let b = TestUpstream::named("b").start().await;
    let proxy = TestProxy::from_toml(&config(&format!(
        r#"
[[pools]]
name = "p"
endpoints = [{{ url = "{}" }}, {{ url = "{}" }}]
outlier = {{ consecutive_failures = 2, base_ejection = "200ms", max_ejection = "5s" }}
{}"#,
        a.url(),
        b.url(),
        route_all("p")
    )))
    .start()
    .await;
    let admin = Admin::of(&proxy);
    let http = client();
    let url = proxy.url("/work");
    // Sends until a has answered `total` requests in all (5 s at most).
    let until_a_answered = |total: usize| {
        let (http, url, a) = (&http, &url, &a);
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            while a.requests() < total {
                assert!(Instant::now() < deadline, "a got no traffic for 5 s");
                send(http, url).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };

    until_a_answered(2).await;
    let state = admin.endpoint("p", &a.url()).await;
    assert_eq!(state["ejections"], 1, "{state}");
    // It comes back healthy and answers one request well...
    status.store(200, Ordering::SeqCst);
    until_a_answered(3).await;
    // ...then fails again: the second ejection is the base time, not twice it.
    status.store(500, Ordering::SeqCst);
    until_a_answered(5).await;
    let state = admin.endpoint("p", &a.url()).await;
    assert_eq!(state["ejections"], 2, "{state}");
    let left = state["ejected_for_ms"].as_u64().expect("ejected_for_ms");
    assert!(
        (1..=200).contains(&left),
        "second ejection after a clean success: {left} ms left, expected the base 200"
    );
}

#[tokio::test]
async fn max_ejection_percent_never_ejects_the_last_endpoints() {
    let failing = |name: &str| {
        TestUpstream::named(name)
            .handler(|_request: Request<Incoming>| async { reply(500, "broken") })
            .start()
    };
    let (a, b) = (failing("a").await, failing("b").await);
    let proxy = TestProxy::from_toml(&config(&format!(
        r#"
[[pools]]
name = "p"
endpoints = [{{ url = "{}" }}, {{ url = "{}" }}]
outlier = {{ consecutive_failures = 2, base_ejection = "30s", max_ejection = "30s", max_ejection_percent = 50 }}
{}"#,
        a.url(),
        b.url(),
        route_all("p")
    )))
    .start()
    .await;
    let admin = Admin::of(&proxy);
    let http = client();

    // Both fail every request; at most one of two (50%) may be ejected.
    for _ in 0..20 {
        let answer = send(&http, &proxy.url("/work")).await;
        assert_eq!(answer.status, 500, "an endpoint answers: {}", answer.body);
        assert!(answer.upstream.is_some());
    }
    let states = [
        admin.endpoint("p", &a.url()).await,
        admin.endpoint("p", &b.url()).await,
    ];
    let ejected: Vec<&Value> = states
        .iter()
        .filter(|s| !s["ejected_for_ms"].is_null())
        .collect();
    assert_eq!(ejected.len(), 1, "{states:?}");
    let total: u64 = states
        .iter()
        .map(|s| s["ejections"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 1, "{states:?}");
    let kept = states
        .iter()
        .find(|s| s["ejected_for_ms"].is_null())
        .unwrap();
    assert_eq!(kept["up"], true, "{kept}");
    // The ejected one got its two failures and nothing after.
    assert_eq!(a.requests() + b.requests(), 20);
    assert_eq!(a.requests().min(b.requests()), 2, "{states:?}");
}

// === Nobody up, the fallback pool ===

#[tokio::test]
async fn all_endpoints_down_is_a_503_no_endpoint_and_recovers_without_restart() {
    let a = Switchable::start("a").await;
    let b = Switchable::start("b").await;
    let proxy = TestProxy::from_toml(&config(&format!(
        r#"
[[pools]]
name = "p"
endpoints = [{{ url = "{}" }}, {{ url = "{}" }}]
health = {{ path = "/health", interval = "50ms", timeout = "500ms", rise = 2, fall = 2 }}
{}"#,
        a.url(),
        b.url(),
        route_all("p")
    )))
    .start()
    .await;
    let admin = Admin::of(&proxy);
    let http = client();
    let url = proxy.url("/work");
    served_by(&http, &url, 2).await;

    a.set_health(503);
    b.set_health(503);
    admin.wait_for_check("p", &a.url(), "down").await;
    admin.wait_for_check("p", &b.url(), "down").await;
    let traffic = a.traffic() + b.traffic();
    for _ in 0..3 {
        let answer = send(&http, &url).await;
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert_eq!(answer.error_type(), "no_endpoint", "{}", answer.body);
        assert!(answer.upstream.is_none());
        let retry_after = answer
            .headers
            .get("retry-after")
            .expect("a Retry-After header")
            .to_str()
            .unwrap();
        assert!(
            retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
            "Retry-After: {retry_after}"
        );
    }
    assert_eq!(a.traffic() + b.traffic(), traffic);

    // The checks pass again: served again by the same running proxy.
    a.set_health(200);
    b.set_health(200);
    admin.wait_for_check("p", &a.url(), "up").await;
    admin.wait_for_check("p", &b.url(), "up").await;
    let mut names = served_by(&http, &url, 4).await;
    names.sort();
    assert_eq!(names, ["a", "a", "b", "b"]);
}

#[tokio::test]
async fn requests_go_to_the_fallback_pool_while_the_primary_is_down() {
    let a = Switchable::start("a").await;
    let c = TestUpstream::named("c").start().await;
    let proxy = TestProxy::from_toml(&config(&format!(
        r#"
[[pools]]
name = "primary"
version = "main"
endpoints = [{{ url = "{}" }}]
health = {{ path = "/health", interval = "50ms", timeout = "500ms", rise = 2, fall = 2 }}
fallback = "spare"

[[pools]]
name = "spare"
version = "spare"
endpoints = [{{ url = "{}" }}]
{}"#,
        a.url(),
        c.url(),
        route_all("primary")
    )))
    .start()
    .await;
    let admin = Admin::of(&proxy);
    let http = client();
    let url = proxy.url("/work");

    let answer = send(&http, &url).await;
    assert_eq!(
        (answer.status, answer.upstream.as_deref()),
        (200, Some("a"))
    );
    assert_eq!(answer.headers["x-junction-version"], "main");

    a.set_health(503);
    admin.wait_for_check("primary", &a.url(), "down").await;
    let traffic = a.traffic();
    for _ in 0..4 {
        let answer = send(&http, &url).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.upstream.as_deref(), Some("c"));
        assert_eq!(answer.headers["x-junction-version"], "spare");
    }
    assert_eq!(a.traffic(), traffic);
    assert_eq!(c.requests(), 4);

    a.set_health(200);
    admin.wait_for_check("primary", &a.url(), "up").await;
    assert_eq!(served_by(&http, &url, 2).await, ["a", "a"]);
}

// === Circuit breaking ===

#[tokio::test]
async fn max_in_flight_turns_the_next_request_away_fast_with_overloaded() {
    let mut held = Holding::start("a").await;
    let proxy = TestProxy::from_toml(&config(&format!(
        r#"
[[pools]]
name = "p"
endpoints = [{{ url = "{}" }}]
limits = {{ max_in_flight = 2 }}
{}"#,
        held.upstream.url(),
        route_all("p")
    )))
    .start()
    .await;
    let admin = Admin::of(&proxy);
    let http = client();
    let url = proxy.url("/work");

    let mut waiting = Vec::new();
    for _ in 0..2 {
        let (http, url) = (http.clone(), url.clone());
        waiting.push(tokio::spawn(async move { send(&http, &url).await }));
        held.arrival().await;
    }

    let started = Instant::now();
    let third = send(&http, &url).await;
    let took = started.elapsed();
    assert_eq!(third.status, 503, "{}", third.body);
    assert_eq!(third.error_type(), "overloaded", "{}", third.body);
    assert!(third.headers.contains_key("retry-after"));
    assert!(took < Duration::from_secs(1), "turned away after {took:?}");
    assert!(waiting.iter().all(|w| !w.is_finished()));
    assert_eq!(
        held.upstream.requests(),
        2,
        "the third reached the endpoint"
    );

    held.gate.add_permits(2);
    for request in waiting {
        let answer = request.await.unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "released"));
    }
    // Room again once the held ones are done.
    admin
        .wait_for("p", &held.upstream.url(), "idle", |e| e["in_flight"] == 0)
        .await;
    held.gate.add_permits(1);
    assert_eq!(send(&http, &url).await.status, 200);
}

#[tokio::test]
async fn pool_max_in_flight_turns_requests_away_even_when_an_endpoint_has_room() {
    let (sender, mut arrivals) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let a = holding_upstream("a", sender.clone(), gate.clone()).await;
    let b = holding_upstream("b", sender, gate.clone()).await;
    let proxy = TestProxy::from_toml(&config(&format!(
        r#"
[[pools]]
name = "p"
balance = "round_robin"
endpoints = [{{ url = "{}" }}, {{ url = "{}" }}]
limits = {{ max_in_flight = 2, pool_max_in_flight = 3 }}
{}"#,
        a.url(),
        b.url(),
        route_all("p")
    )))
    .start()
    .await;
    let admin = Admin::of(&proxy);
    let http = client();
    let url = proxy.url("/work");

    let mut waiting = Vec::new();
    for _ in 0..3 {
        let (http, url) = (http.clone(), url.clone());
        waiting.push(tokio::spawn(async move { send(&http, &url).await }));
        timeout(Duration::from_secs(5), arrivals.recv())
            .await
            .expect("the request reaches an upstream")
            .unwrap();
    }
    let pool = admin.pool("p").await;
    let mut in_flight: Vec<u64> = pool["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["in_flight"].as_u64().unwrap())
        .collect();
    in_flight.sort();
    assert_eq!(in_flight, [1, 2], "one endpoint still has room: {pool}");

    let started = Instant::now();
    let fourth = send(&http, &url).await;
    assert_eq!(fourth.status, 503, "{}", fourth.body);
    assert_eq!(fourth.error_type(), "overloaded", "{}", fourth.body);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(waiting.iter().all(|w| !w.is_finished()));
    assert_eq!(a.requests() + b.requests(), 3);

    gate.add_permits(3);
    for request in waiting {
        assert_eq!(request.await.unwrap().status, 200);
    }
}

// === Retry-After ===

#[tokio::test]
async fn retry_after_on_a_429_holds_the_endpoint_for_that_long() {
    let a = TestUpstream::named("a")
        .handler(|_request: Request<Incoming>| async {
            let mut response = reply(429, "slow down");
            response
                .headers_mut()
                .insert("retry-after", "1".parse().unwrap());
            response
        })
        .start()
        .await;
    let b = TestUpstream::named("b").start().await;
    let proxy = TestProxy::from_toml(&config(&format!(
        r#"
[[pools]]
name = "p"
balance = "round_robin"
endpoints = [{{ url = "{}" }}, {{ url = "{}" }}]
{}"#,
        a.url(),
        b.url(),
        route_all("p")
    )))
    .start()
    .await;
    let admin = Admin::of(&proxy);
    let http = client();
    let url = proxy.url("/work");

    // Round robin reaches a within two requests.
    let mut held_at = None;
    for _ in 0..2 {
        if send(&http, &url).await.status == 429 {
            held_at = Some(Instant::now());
            break;
        }
    }
    let held_at = held_at.expect("a answered 429");
    assert_eq!(a.requests(), 1);
    let state = admin.endpoint("p", &a.url()).await;
    assert_eq!(state["up"], false, "held: {state}");
    assert_eq!(state["health_check"], "up", "{state}");

    // No new request for a while the hold lasts; b takes them all.
    let mut during = 0;
    while held_at.elapsed() < Duration::from_millis(800) {
        let answer = send(&http, &url).await;
        assert_eq!(answer.upstream.as_deref(), Some("b"), "{}", answer.body);
        during += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(during > 10, "only {during} requests in 800 ms");
    assert_eq!(a.requests(), 1, "a held endpoint got requests");

    // Then a is picked again.
    let deadline = held_at + Duration::from_secs(5);
    while a.requests() == 1 {
        assert!(Instant::now() < deadline, "a never got traffic again");
        send(&http, &url).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let back_after = held_at.elapsed();
    assert!(
        back_after >= Duration::from_millis(900) && back_after < Duration::from_millis(2500),
        "back after {back_after:?}, Retry-After: 1"
    );
}

// === Checkers ===

#[tokio::test]
async fn one_checker_per_endpoint_however_many_routes_use_the_pool() {
    let a = Switchable::start("a").await;
    let proxy = TestProxy::from_toml(&config(&format!(
        r#"
[[pools]]
name = "p"
endpoints = [{{ url = "{}" }}]
health = {{ path = "/health", interval = "50ms", timeout = "500ms" }}

[[routes]]
name = "one"
match = {{ path_prefix = "/one" }}
pool = "p"

[[routes]]
name = "two"
match = {{ path_prefix = "/two" }}
pool = "p"

[[routes]]
name = "three"
pool = "p"
"#,
        a.url(),
    )))
    .start()
    .await;
    let http = client();
    for path in ["/one", "/two", "/three"] {
        served_by(&http, &proxy.url(path), 1).await;
    }
    // 10 probes of one checker every 50 ms take about 500 ms; two would take 250 ms.
    let took = a.time_probes(10).await;
    assert!(
        took >= Duration::from_millis(400),
        "10 probes in {took:?}: more than one checker"
    );
    assert!(took < Duration::from_secs(3), "10 probes took {took:?}");
}

#[tokio::test]
async fn health_state_and_checker_survive_a_reload_with_the_same_settings() {
    let a = Switchable::start("a").await;
    let b = TestUpstream::named("b").start().await;
    let file = |version: &str| {
        config(&format!(
            r#"
[[pools]]
name = "p"
version = "{version}"
endpoints = [{{ url = "{}" }}, {{ url = "{}" }}]
health = {{ path = "/health", interval = "50ms", timeout = "500ms", rise = 2, fall = 2 }}
{}"#,
            a.url(),
            b.url(),
            route_all("p")
        ))
    };
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("junction.toml");
    std::fs::write(&path, file("v1")).unwrap();
    let gateway = junction::server::Gateway::from_file(
        path.clone(),
        Arc::new(junction::balance::SplitMix::with_seed(7)),
    )
    .unwrap_or_else(|errors| panic!("invalid config:\n{errors}"));
    gateway.start().await.expect("start");
    let proxy = RunningProxy { gateway };
    let admin = Admin::of(&proxy);
    let http = client();
    let url = proxy.url("/work");

    a.set_health(503);
    admin.wait_for_check("p", &a.url(), "down").await;

    // Same pool settings, a new version: a stays down right after the swap.
    std::fs::write(&path, file("v2")).unwrap();
    proxy.gateway.reload().await.expect("reload");
    assert_eq!(admin.pool("p").await["version"], "v2", "the reload took");
    let state = admin.endpoint("p", &a.url()).await;
    assert_eq!(state["health_check"], "down", "{state}");
    assert_eq!(state["up"], false, "{state}");
    for _ in 0..4 {
        let answer = send(&http, &url).await;
        assert_eq!(answer.upstream.as_deref(), Some("b"), "{}", answer.body);
        assert_eq!(answer.headers["x-junction-version"], "v2");
    }
    assert_eq!(a.traffic(), 0);

    // Still one checker (the old one was kept, not doubled)...
    let took = a.time_probes(10).await;
    assert!(
        took >= Duration::from_millis(400),
        "10 probes in {took:?}: more than one checker"
    );
    // ...and it still decides: a comes back when its checks pass.
    a.set_health(200);
    admin.wait_for_check("p", &a.url(), "up").await;
    let mut names = served_by(&http, &url, 2).await;
    names.sort();
    assert_eq!(names, ["a", "b"]);
}

// === Logging ===

#[tokio::test]
async fn each_health_transition_is_logged_once_not_per_probe_or_request() {
    let a = Switchable::start("a").await;
    let b = TestUpstream::named("b").start().await;
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("junction.toml");
    std::fs::write(
        &path,
        config(&format!(
            r#"
[[pools]]
name = "p"
endpoints = [{{ url = "{}" }}, {{ url = "{}" }}]
health = {{ path = "/health", interval = "50ms", timeout = "500ms", rise = 1, fall = 2 }}

[[routes]]
name = "one"
match = {{ path_prefix = "/one" }}
pool = "p"

[[routes]]
name = "two"
pool = "p"
"#,
            a.url(),
            b.url()
        )),
    )
    .unwrap();
    let mut process = timeout(
        Duration::from_secs(30),
        JunctionProcess::start(&path, &["public"]),
    )
    .await
    .expect("junction starts within 30 s");
    let http = client();
    let a_field = format!("endpoint={} ", a.url());

    for round in 0..2 {
        a.set_health(503);
        let line = timeout(
            Duration::from_secs(10),
            process.wait_for_log("(health check)"),
        )
        .await
        .expect("a transition is logged");
        assert!(
            line.contains("endpoint is down (health check)") && line.contains(&a_field),
            "round {round}: expected a's down transition, got {line}"
        );
        let admin = Admin::of_process(&process);
        assert_eq!(
            admin.metric("junction_endpoint_up", &a.url()).await,
            Some(0.0)
        );
        // Stay down for several more failing probes while requests come in.
        for path in ["/one", "/two"] {
            let names = served_by(&http, &process.url("public", path), 3).await;
            assert!(names.iter().all(|n| n == "b"), "{names:?}");
        }
        a.time_probes(6).await;

        a.set_health(200);
        let line = timeout(
            Duration::from_secs(10),
            process.wait_for_log("(health check)"),
        )
        .await
        .expect("a transition is logged");
        assert!(
            line.contains("endpoint is up (health check)") && line.contains(&a_field),
            "round {round}: expected a's up transition next (one down line per transition), got {line}"
        );
    }
}

// === Checks speak the pool's protocol ===

/// Counts `/health` probes (and the HTTP version they came as); answers 200.
fn probe_counter(
    probes: Arc<AtomicUsize>,
) -> impl Fn(Request<Incoming>) -> std::future::Ready<support::UpstreamReply> + Clone {
    move |request: Request<Incoming>| {
        if request.uri().path() == "/health" {
            probes.fetch_add(1, Ordering::SeqCst);
        }
        std::future::ready(reply(200, format!("{:?}", request.version())))
    }
}

/// Waits until `probes` reached `count` while the endpoint stays up by its checks.
async fn wait_for_passing_probes(admin: &Admin, url: &str, probes: &AtomicUsize, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while probes.load(Ordering::SeqCst) < count {
        let state = admin.endpoint("p", url).await;
        assert!(
            Instant::now() < deadline,
            "only {} of {count} probes reached {url} in 5 s: {state}",
            probes.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let state = admin.endpoint("p", url).await;
    assert_eq!(state["health_check"], "up", "{state}");
}

/// An upstream that speaks HTTP/2 with prior knowledge only (h2c), answering with
/// `handler`; returns its URL.
async fn h2c_only_upstream(
    handler: impl Fn(Request<Incoming>) -> std::future::Ready<support::UpstreamReply>
    + Clone
    + Send
    + Sync
    + 'static,
) -> String {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let reply = handler(request);
                    async move { Ok::<_, std::convert::Infallible>(reply.await) }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

#[tokio::test]
async fn http_checks_of_an_h2c_pool_speak_http2() {
    let probes = Arc::new(AtomicUsize::new(0));
    let upstream = h2c_only_upstream(probe_counter(probes.clone())).await;
    let proxy = TestProxy::from_toml(&config(&format!(
        r#"
[[pools]]
name = "p"
protocol = "h2"
endpoints = [{{ url = "{upstream}" }}]
health = {{ path = "/health", interval = "50ms", timeout = "500ms", rise = 1, fall = 2 }}
{}"#,
        route_all("p")
    )))
    .start()
    .await;
    let admin = Admin::of(&proxy);

    // fall = 2: four answered probes in a row mean the checks work (and pass).
    wait_for_passing_probes(&admin, &upstream, &probes, 4).await;
    let answer = send(&client(), &proxy.url("/work")).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "HTTP/2.0"));
}

/// A self-signed certificate for 127.0.0.1, as a PEM file, and an https upstream
/// (rustls around hyper's auto server, ALPN h2 and http/1.1) using it.
struct HttpsUpstream {
    _dir: TempDir,
    ca_file: String,
    url: String,
}

async fn https_upstream(probes: Arc<AtomicUsize>) -> HttpsUpstream {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let dir = TempDir::new().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, certified.cert.pem()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(certified.cert.der().to_vec())],
        key,
    )
    .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let handler = probe_counter(probes);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request| {
                    let reply = handler(request);
                    async move { Ok::<_, std::convert::Infallible>(reply.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    HttpsUpstream {
        ca_file: ca_path.to_str().unwrap().to_string(),
        _dir: dir,
        url,
    }
}

#[tokio::test]
async fn http_checks_of_an_https_pool_use_tls() {
    for protocol in ["http1", "h2"] {
        let probes = Arc::new(AtomicUsize::new(0));
        let upstream = https_upstream(probes.clone()).await;
        let proxy = TestProxy::from_toml(&config(&format!(
            r#"
[[pools]]
name = "p"
protocol = "{protocol}"
ca_file = "{}"
endpoints = [{{ url = "{}" }}]
health = {{ path = "/health", interval = "50ms", timeout = "500ms", rise = 1, fall = 2 }}
{}"#,
            upstream.ca_file,
            upstream.url,
            route_all("p")
        )))
        .start()
        .await;
        let admin = Admin::of(&proxy);

        wait_for_passing_probes(&admin, &upstream.url, &probes, 4).await;
        let answer = send(&client(), &proxy.url("/work")).await;
        assert_eq!(answer.status, 200, "{protocol}: {}", answer.body);
    }
}
