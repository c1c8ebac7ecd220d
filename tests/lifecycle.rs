//! The process lifecycle: reloads (SIGHUP and `POST /api/reload`) under load, refused
//! reloads, listeners added and removed by a reload, and the graceful drain on SIGTERM.
//! Most scenarios run the built binary (signals, files, exit codes); a few run the
//! gateway in-process where its state is worth looking at directly.

use crate::support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use junction::balance::SplitMix;
use junction::config::ConfigError;
use junction::server::{Gateway, ReloadError};
use serde_json::{Value, json};
use support::upstream::{RunningUpstream, reply};
use support::{JunctionProcess, TestProxy, TestUpstream, client, listeners_toml};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, timeout};

// === Configs ===

/// Admin API, one listener "public", one route sending everything to pool "p" made of
/// `endpoints` (upstream, weight). Line numbers, for the tests that break it:
/// 10 `endpoints = ...`, 12 `[[routes]]`, 14 `pool = "p"`.
fn single_pool(endpoints: &[(&RunningUpstream, u32)]) -> String {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|(upstream, weight)| format!(r#"{{ url = "{}", weight = {weight} }}"#, upstream.url()))
        .collect();
    format!(
        r#"[admin]
bind = "127.0.0.1:0"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{}]

[[routes]]
name = "all"
pool = "p"
"#,
        endpoints.join(", ")
    )
}

/// Listener "public" routed to `public`, and optionally a listener "second" on `bind`
/// routed to its own upstream.
fn with_listeners(public: &RunningUpstream, second: Option<(&str, &RunningUpstream)>) -> String {
    let mut text = format!(
        r#"[admin]
bind = "127.0.0.1:0"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "p"
endpoints = [{{ url = "{}" }}]

[[routes]]
name = "all"
listener = "public"
pool = "p"
"#,
        public.url()
    );
    if let Some((bind, upstream)) = second {
        text.push_str(&format!(
            r#"
[[listeners]]
name = "second"
bind = "{bind}"

[[pools]]
name = "q"
endpoints = [{{ url = "{}" }}]

[[routes]]
name = "second"
listener = "second"
pool = "q"
"#,
            upstream.url()
        ));
    }
    text
}

/// `/slow...` goes to `slow`, everything else to `fast`; `extra` is put on top.
fn slow_and_fast(extra: &str, slow: &RunningUpstream, fast: &RunningUpstream) -> String {
    format!(
        r#"{extra}
{}
[[pools]]
name = "slow"
endpoints = [{{ url = "{}" }}]

[[pools]]
name = "fast"
endpoints = [{{ url = "{}" }}]

[[routes]]
name = "slow"
match = {{ path_prefix = "/slow" }}
pool = "slow"

[[routes]]
name = "rest"
pool = "fast"
"#,
        listeners_toml(),
        slow.url(),
        fast.url()
    )
}

// === Helpers ===

/// Writes `config` to a fresh temporary folder and starts the binary on it.
async fn start(config: &str, listeners: &[&str]) -> (TempDir, JunctionProcess) {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("junction.toml");
    std::fs::write(&path, config).expect("write config");
    let process = timeout(
        Duration::from_secs(30),
        JunctionProcess::start(&path, listeners),
    )
    .await
    .expect("junction starts within 30 s");
    (dir, process)
}

fn rewrite(process: &JunctionProcess, config: &str) {
    std::fs::write(&process.config, config).expect("rewrite config");
}

#[derive(Clone, Copy, Debug)]
enum Reload {
    Sighup,
    Api,
}

async fn post_reload(process: &JunctionProcess) -> reqwest::Response {
    timeout(
        Duration::from_secs(30),
        client()
            .post(process.url("admin", "/api/reload"))
            .bearer_auth(support::process::ADMIN_TOKEN)
            .send(),
    )
    .await
    .expect("reload answers within 30 s")
    .expect("admin API answers")
}

/// Reloads and waits until the new config is in force (the "config reloaded" log line
/// comes after the swap and after every listener change).
async fn reload(process: &mut JunctionProcess, how: Reload) {
    match how {
        Reload::Sighup => process.signal("HUP"),
        Reload::Api => {
            let response = post_reload(process).await;
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            assert_eq!(status, 200, "reload refused: {body}");
            assert_eq!(body, r#"{"status":"reloaded"}"#);
        }
    }
    process.wait_for_log("config reloaded").await;
}

/// One GET: the name of the upstream that answered, or why it failed.
async fn answer(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = timeout(Duration::from_secs(10), client.get(url).send())
        .await
        .map_err(|_| format!("GET {url}: no answer within 10 s"))?
        .map_err(|e| format!("GET {url}: {e:?}"))?;
    let status = response.status();
    let upstream = response
        .headers()
        .get("x-upstream")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = timeout(Duration::from_secs(10), response.bytes())
        .await
        .map_err(|_| format!("GET {url}: body not complete within 10 s"))?
        .map_err(|e| format!("GET {url}: body: {e}"))?;
    match (status.as_u16(), upstream) {
        (200, Some(upstream)) => Ok(upstream),
        (status, upstream) => Err(format!(
            "GET {url}: {status} from {upstream:?}: {}",
            String::from_utf8_lossy(&body)
        )),
    }
}

async fn upstream_of(url: &str) -> String {
    answer(&client(), url)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until nothing accepts connections on `addr` any more (10 s at most). There is
/// no log line for "socket closed", so this asks the socket itself.
async fn until_refused(addr: SocketAddr) {
    let refused = async {
        loop {
            match TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                // Accepted by the kernel into the backlog just before the socket closed.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("connect to {addr}: {e}"),
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    timeout(Duration::from_secs(10), refused)
        .await
        .unwrap_or_else(|_| panic!("{addr} still accepts connections after 10 s"));
}

async fn assert_refused(addr: SocketAddr) {
    let connected = timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .expect("connect attempt ends within 5 s");
    match connected {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("{addr} still accepts connections"),
    }
}

/// An upstream whose requests wait until `release` turns true (never, if it is never
/// sent); `arrived` is notified when one comes in.
struct HeldUpstream {
    upstream: RunningUpstream,
    arrived: Arc<Notify>,
    release: watch::Sender<bool>,
}

async fn held_upstream(name: &str) -> HeldUpstream {
    let arrived = Arc::new(Notify::new());
    let (release, released) = watch::channel(false);
    let upstream = TestUpstream::named(name)
        .handler({
            let arrived = arrived.clone();
            move |_request| {
                let arrived = arrived.clone();
                let mut released = released.clone();
                async move {
                    arrived.notify_one();
                    let _ = released.wait_for(|go| *go).await.map(|_| ());
                    reply(200, "finished")
                }
            }
        })
        .start()
        .await;
    HeldUpstream {
        upstream,
        arrived,
        release,
    }
}

async fn exit_status(process: &mut JunctionProcess, within: Duration) -> std::process::ExitStatus {
    timeout(within, process.child.wait())
        .await
        .unwrap_or_else(|_| panic!("junction did not exit within {within:?}"))
        .expect("wait for junction")
}

// === Reload under load ===

/// What the load clients saw. A seqlock over reloads: `epoch` is even while one config
/// is in force and odd while a reload is under way; an answer counts for a config only
/// when its request started and ended in the same even epoch.
#[derive(Default)]
struct Tally {
    epoch: u64,
    /// Upstreams that may answer in this epoch.
    expected: Vec<String>,
    /// Answers per upstream in this epoch.
    counts: BTreeMap<String, usize>,
    failures: Vec<String>,
    requests: usize,
    stop: bool,
}

async fn load_client(tally: Arc<watch::Sender<Tally>>, url: String) {
    let client = client();
    loop {
        let started_in = {
            let tally = tally.borrow();
            if tally.stop {
                return;
            }
            tally.epoch
        };
        let outcome = answer(&client, &url).await;
        tally.send_modify(|tally| {
            tally.requests += 1;
            match outcome {
                Err(error) => tally.failures.push(error),
                Ok(upstream) if tally.epoch == started_in && started_in % 2 == 0 => {
                    if !tally.expected.contains(&upstream) {
                        tally.failures.push(format!(
                            "epoch {started_in}: answered by {upstream}, expected {:?}",
                            tally.expected
                        ));
                    }
                    *tally.counts.entry(upstream).or_default() += 1;
                }
                Ok(_) => {}
            }
        });
    }
}

/// Waits for `n` answers in the current epoch; panics on the first failed request.
async fn answers_in_epoch(
    watcher: &mut watch::Receiver<Tally>,
    n: usize,
) -> BTreeMap<String, usize> {
    let enough =
        watcher.wait_for(|t| !t.failures.is_empty() || t.counts.values().sum::<usize>() >= n);
    let tally = timeout(Duration::from_secs(60), enough)
        .await
        .unwrap_or_else(|_| panic!("fewer than {n} answers within 60 s"))
        .expect("tally alive");
    assert!(
        tally.failures.is_empty(),
        "failed requests: {:#?}",
        tally.failures
    );
    tally.counts.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_request_and_route_to_the_new_pool() {
    let a = TestUpstream::named("a").start().await;
    let b = TestUpstream::named("b").start().await;
    let (_dir, mut process) = start(&single_pool(&[(&a, 1)]), &["public"]).await;
    let url = process.url("public", "/v1/load");

    let tally = Arc::new(
        watch::channel(Tally {
            expected: vec!["a".into()],
            ..Tally::default()
        })
        .0,
    );
    let mut watcher = tally.subscribe();
    let clients: Vec<_> = (0..8)
        .map(|_| tokio::spawn(load_client(tally.clone(), url.clone())))
        .collect();
    assert_eq!(
        answers_in_epoch(&mut watcher, 100)
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["a"]
    );

    let steps: [(&[(&RunningUpstream, u32)], Reload); 6] = [
        (&[(&b, 1)], Reload::Sighup),
        (&[(&a, 1), (&b, 3)], Reload::Api),
        (&[(&a, 1)], Reload::Sighup),
        (&[(&a, 3), (&b, 1)], Reload::Api),
        (&[(&b, 1)], Reload::Api),
        (&[(&a, 2), (&b, 2)], Reload::Sighup),
    ];
    for (step, (endpoints, how)) in steps.iter().enumerate() {
        tally.send_modify(|t| t.epoch += 1);
        rewrite(&process, &single_pool(endpoints));
        reload(&mut process, *how).await;
        tally.send_modify(|t| {
            t.epoch += 1;
            t.expected = endpoints.iter().map(|(u, _)| u.name.clone()).collect();
            t.counts.clear();
        });
        let counts = answers_in_epoch(&mut watcher, 200).await;
        let count = |name: &str| counts.get(name).copied().unwrap_or(0);
        let (a_weight, b_weight) =
            endpoints
                .iter()
                .fold((0, 0), |(a, b), (u, w)| match u.name.as_str() {
                    "a" => (*w, b),
                    _ => (a, *w),
                });
        let context =
            format!("step {step} ({how:?}) weights a={a_weight} b={b_weight}: {counts:?}");
        // Every upstream of the pool answers, and only those.
        assert_eq!(count("a") > 0, a_weight > 0, "{context}");
        assert_eq!(count("b") > 0, b_weight > 0, "{context}");
        // Smooth weighted round robin over 200+ picks: 3:1 gives about 150:50, 1:1 100:100.
        if a_weight == 3 * b_weight {
            assert!(count("a") >= 2 * count("b"), "{context}");
        }
        if b_weight == 3 * a_weight {
            assert!(count("b") >= 2 * count("a"), "{context}");
        }
        if a_weight == b_weight && a_weight > 0 {
            assert!(count("a").abs_diff(count("b")) <= 40, "{context}");
        }
    }

    tally.send_modify(|t| t.stop = true);
    for client in clients {
        timeout(Duration::from_secs(30), client)
            .await
            .expect("load client stops within 30 s")
            .expect("load client did not panic");
    }
    let tally = tally.borrow();
    assert!(
        tally.failures.is_empty(),
        "failed requests: {:#?}",
        tally.failures
    );
    assert!(tally.requests >= 1300, "only {} requests", tally.requests);
    assert!(a.requests() > 0 && b.requests() > 0);
}

// === Refused reloads ===

#[tokio::test]
async fn an_invalid_reload_is_refused_with_key_paths_and_lines_and_the_old_config_serves() {
    let a = TestUpstream::named("a").start().await;
    let b = TestUpstream::named("b").start().await;
    let (_dir, mut process) = start(&single_pool(&[(&a, 1)]), &["public"]).await;
    let public = process.url("public", "/v1/x");
    assert_eq!(upstream_of(&public).await, "a");

    // A route naming a pool that does not exist (line 18), by the admin API.
    let missing_pool = format!(
        "{}\n[[routes]]\nname = \"typo\"\npool = \"missing\"\n",
        single_pool(&[(&b, 1)])
    );
    rewrite(&process, &missing_pool);
    let response = post_reload(&process).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["error"]["type"], "invalid_config", "{body}");
    assert_eq!(
        body["error"]["errors"],
        json!([{ "path": "routes[1].pool", "line": 18, "message": "no pool is named \"missing\"" }])
    );
    process.wait_for_log("reload refused").await;
    assert_eq!(upstream_of(&public).await, "a");

    // A TOML syntax error (line 14), by SIGHUP: the refusal and the error are logged.
    let syntax_error = single_pool(&[(&b, 1)]).replace("pool = \"p\"", "pool = \"p");
    assert_ne!(syntax_error, single_pool(&[(&b, 1)]));
    rewrite(&process, &syntax_error);
    process.signal("HUP");
    process.wait_for_log("reload refused").await;
    process.wait_for_log("line 14: ").await;
    assert_eq!(upstream_of(&public).await, "a");

    // The same file by the admin API: no key path (the file does not parse), the line.
    let response = post_reload(&process).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("JSON body");
    let errors = body["error"]["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["path"], "", "{body}");
    assert_eq!(errors[0]["line"], 14, "{body}");
    process.wait_for_log("reload refused").await;

    // The running config is still the first one, and a good file is taken afterwards.
    let config: Value = client()
        .get(process.url("admin", "/api/config"))
        .send()
        .await
        .expect("admin answers")
        .json()
        .await
        .expect("JSON config");
    assert_eq!(config["pools"][0]["endpoints"][0]["url"], a.url().as_str());
    assert_eq!(upstream_of(&public).await, "a");
    rewrite(&process, &single_pool(&[(&b, 1)]));
    reload(&mut process, Reload::Api).await;
    assert_eq!(upstream_of(&public).await, "b");
}

#[tokio::test]
async fn a_reload_whose_new_listener_cannot_bind_changes_nothing() {
    let a = TestUpstream::named("a").start().await;
    let b = TestUpstream::named("b").start().await;
    let (_dir, mut process) = start(&with_listeners(&a, None), &["public"]).await;
    let public = process.url("public", "/x");
    assert_eq!(upstream_of(&public).await, "a");

    // The new config moves "public" to b and adds "second" on a port someone else holds.
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = occupied.local_addr().expect("addr");
    let mut config = with_listeners(&a, Some((&taken.to_string(), &b)));
    config = config.replacen(&a.url(), &b.url(), 1);
    rewrite(&process, &config);
    let response = post_reload(&process).await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["error"]["type"], "reload_failed", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("cannot bind listener \"second\" on {taken}")),
        "{body}"
    );
    process.wait_for_log("reload refused").await;
    assert_eq!(
        upstream_of(&public).await,
        "a",
        "the plan must not have been swapped"
    );

    // Once the port is free, the same file goes in whole.
    drop(occupied);
    reload(&mut process, Reload::Api).await;
    assert_eq!(process.wait_for_listener("second").await, taken);
    assert_eq!(upstream_of(&public).await, "b");
    assert_eq!(upstream_of(&process.url("second", "/x")).await, "b");
}

// === Listener changes ===

#[tokio::test]
async fn reload_starts_a_new_listener_and_stops_a_removed_one() {
    let a = TestUpstream::named("a").start().await;
    let b = TestUpstream::named("b").start().await;
    let (_dir, mut process) = start(&with_listeners(&a, None), &["public"]).await;
    let public_addr = process.addrs["public"];
    let public = process.url("public", "/x");

    // Add "second" with its own route and pool.
    rewrite(&process, &with_listeners(&a, Some(("127.0.0.1:0", &b))));
    reload(&mut process, Reload::Api).await;
    let second = process.wait_for_listener("second").await;
    assert_ne!(second, public_addr);
    assert_eq!(upstream_of(&format!("http://{second}/x")).await, "b");
    assert_eq!(upstream_of(&public).await, "a");
    // "public" kept its socket: a rebind of port 0 would have logged a new address.
    assert_eq!(process.addrs["public"], public_addr);

    // Remove it again.
    rewrite(&process, &with_listeners(&a, None));
    reload(&mut process, Reload::Sighup).await;
    assert_refused(second).await;
    assert_eq!(upstream_of(&public).await, "a");
    assert_eq!(process.addrs["public"], public_addr);
}

// === Signals ===

/// A signal sent the moment the listeners have logged their addresses is answered (a
/// reload, a drain), not met by the default action, which would kill the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_sent_right_after_start_are_answered() {
    let a = TestUpstream::named("a").start().await;
    let starts = (0..4).map(|_| async {
        let (dir, mut process) = start(&single_pool(&[(&a, 1)]), &["public"]).await;
        process.signal("HUP");
        process.wait_for_log("config reloaded").await;
        drop(dir);
        let (dir, mut process) = start(&single_pool(&[(&a, 1)]), &["public"]).await;
        process.signal("TERM");
        let status = exit_status(&mut process, Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(0), "{status}");
        drop(dir);
    });
    futures_util::future::join_all(starts).await;
}

// === Graceful drain ===

#[tokio::test]
async fn sigterm_stops_accepting_finishes_in_flight_requests_and_exits_0() {
    let slow = held_upstream("slow").await;
    let fast = TestUpstream::named("fast").start().await;
    let (_dir, mut process) = start(&slow_and_fast("", &slow.upstream, &fast), &["public"]).await;
    let public_addr = process.addrs["public"];

    // An idle keep-alive connection must not hold the drain up for the 30 s default grace.
    let idle = client();
    assert_eq!(
        answer(&idle, &process.url("public", "/fast")).await,
        Ok("fast".into())
    );

    let slow_url = process.url("public", "/slow");
    let in_flight = tokio::spawn(async move { answer(&client(), &slow_url).await });
    timeout(Duration::from_secs(10), slow.arrived.notified())
        .await
        .expect("the slow request reaches the upstream");

    process.signal("TERM");
    process.wait_for_log("shutting down").await;
    until_refused(public_addr).await;
    let ready = client()
        .get(process.url("admin", "/readyz"))
        .send()
        .await
        .expect("admin answers while draining");
    assert_eq!(ready.status(), 503);
    // A reload asked for while draining must not bring the listeners back.
    let reloaded = post_reload(&process).await;
    assert_eq!(reloaded.status(), 409);
    let body: Value = reloaded.json().await.expect("JSON body");
    assert_eq!(body["error"]["type"], "reload_failed", "{body}");
    assert_refused(public_addr).await;
    assert!(
        !in_flight.is_finished(),
        "the held request finished before its release"
    );

    slow.release.send_replace(true);
    let answered = timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight request completes")
        .expect("client task");
    assert_eq!(answered, Ok("slow".into()));
    let status = exit_status(&mut process, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status}");
}

#[tokio::test]
async fn sigterm_gives_up_on_a_stuck_request_after_the_grace_period_and_exits_0() {
    let stuck = held_upstream("stuck").await;
    let fast = TestUpstream::named("fast").start().await;
    let config = slow_and_fast(
        "[server]\nshutdown_grace = \"500ms\"\n",
        &stuck.upstream,
        &fast,
    );
    let (_dir, mut process) = start(&config, &["public"]).await;

    let slow_url = process.url("public", "/slow");
    let in_flight = tokio::spawn(async move { answer(&client(), &slow_url).await });
    timeout(Duration::from_secs(10), stuck.arrived.notified())
        .await
        .expect("the request reaches the upstream");

    let signalled = Instant::now();
    process.signal("TERM");
    let status = exit_status(&mut process, Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        took >= Duration::from_millis(450),
        "exited after {took:?}, before the grace period"
    );
    assert!(
        took < Duration::from_secs(5),
        "exited after {took:?}; the grace period is 500 ms"
    );
    process.wait_for_log("grace period over").await;
    let answered = timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the client sees the connection end")
        .expect("client task");
    assert!(
        answered.is_err(),
        "the stuck request cannot have succeeded: {answered:?}"
    );
}

// === In-process ===

#[tokio::test]
async fn in_process_reload_keeps_sockets_and_connections_and_refuses_bad_files() {
    let a = TestUpstream::named("a").start().await;
    let b = TestUpstream::named("b").start().await;
    let dir = TempDir::new().expect("temp dir");
    let path: PathBuf = dir.path().join("junction.toml");
    std::fs::write(&path, single_pool(&[(&a, 1)])).expect("write");
    let gateway =
        Gateway::from_file(path.clone(), Arc::new(SplitMix::with_seed(7))).expect("valid config");
    gateway.start().await.expect("start");
    let public = gateway.listener_addr("public").expect("public listens");
    let admin = gateway.admin_addr().expect("admin listens");
    let url = format!("http://{public}/x");

    let keep_alive = client();
    assert_eq!(answer(&keep_alive, &url).await, Ok("a".into()));
    std::fs::write(&path, single_pool(&[(&b, 1)])).expect("write");
    gateway.reload().await.expect("reload");
    assert_eq!(gateway.listener_addr("public"), Some(public));
    assert_eq!(gateway.admin_addr(), Some(admin));
    // The connection opened under the old plan is served by the new one.
    assert_eq!(answer(&keep_alive, &url).await, Ok("b".into()));
    assert_eq!(gateway.open_connections(), 1);

    std::fs::write(&path, single_pool(&[(&a, 0)])).expect("write");
    match gateway.reload().await {
        Err(ReloadError::Invalid(errors)) => assert_eq!(
            errors.0,
            [ConfigError {
                path: "pools[0].endpoints[0].weight".into(),
                line: Some(10),
                message: "weight must be between 1 and 1000, got 0".into(),
            }]
        ),
        other => panic!("expected an invalid config, got {other:?}"),
    }
    assert_eq!(answer(&keep_alive, &url).await, Ok("b".into()));

    // Shutdown closes the idle keep-alive connection at once instead of waiting 30 s.
    timeout(Duration::from_secs(10), gateway.shutdown())
        .await
        .expect("drain does not wait for idle connections");
    assert!(gateway.is_draining());
    assert_eq!(gateway.open_connections(), 0);
    assert_eq!(gateway.listener_addr("public"), None);
    assert_refused(public).await;
    std::fs::write(&path, single_pool(&[(&a, 1)])).expect("write");
    assert!(matches!(gateway.reload().await, Err(ReloadError::Draining)));
    assert_eq!(gateway.listener_addr("public"), None);
    assert_refused(public).await;
}

#[tokio::test]
async fn a_gateway_from_config_text_has_nothing_to_reload() {
    let a = TestUpstream::named("a").start().await;
    // SAFETY: this test's own variable; only Rust code (the config compiler) reads the
    // environment while it runs, under std's environment lock.
    unsafe { std::env::set_var("JUNCTION_TEST_TEXT_RELOAD_TOKEN", "text-reload") };
    let proxy = TestProxy::from_toml(&format!(
        "[admin]\nbind = \"127.0.0.1:0\"\ntoken_env = \"JUNCTION_TEST_TEXT_RELOAD_TOKEN\"\n\n\
         [[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\n\
         [[pools]]\nname = \"p\"\nendpoints = [{{ url = \"{}\" }}]\n\n[[routes]]\nname = \"all\"\npool = \"p\"\n",
        a.url()
    ))
    .start()
    .await;
    assert!(matches!(
        proxy.gateway.reload().await,
        Err(ReloadError::NoFile)
    ));
    let response = proxy.reload().await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["error"]["type"], "reload_failed", "{body}");
    assert_eq!(upstream_of(&proxy.url("/x")).await, "a");
}

// === junction probe (the container health check) ===

#[tokio::test]
async fn probe_exits_0_for_a_ready_junction_and_1_when_nothing_answers() {
    let upstream = TestUpstream::named("a").start().await;
    let (_dir, process) = start(&single_pool(&[(&upstream, 1)]), &["public"]).await;
    let admin = process.addrs["admin"].to_string();
    let probe = |admin: String, path: &'static str| async move {
        tokio::process::Command::new(support::process::binary())
            .args(["probe", "--admin", &admin, "--path", path])
            .output()
            .await
            .expect("spawn probe")
    };
    assert!(probe(admin.clone(), "/readyz").await.status.success());
    assert!(probe(admin.clone(), "/healthz").await.status.success());
    let not_found = probe(admin.clone(), "/nothing").await;
    assert!(!not_found.status.success());
    assert!(String::from_utf8_lossy(&not_found.stderr).contains("404"));
    let bad = probe(admin, "readyz\r\nX: y").await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--path must be a path"));
    // A port nothing listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = probe(closed.to_string(), "/readyz").await;
    assert!(!refused.status.success());
}
