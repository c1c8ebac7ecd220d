//! Binary upgrades with the built binary: `junction run --upgrade-from PATH` takes the
//! listening sockets over from the process listening on its `--upgrade-socket` (the
//! descriptors travel over the Unix socket), with its split weights and canary phases;
//! the old process stops accepting, drains and exits 0. Clients under load must not
//! notice: no failed request, no broken event stream.

use crate::support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use support::process::ADMIN_TOKEN;
use support::sse::{ChannelBody, event_stream};
use support::upstream::{RunningUpstream, reply};
use support::{JunctionProcess, TestUpstream, client};
use tempfile::TempDir;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

/// Events of each stream, `EVENT_GAP` apart, then `[DONE]`.
const EVENTS: usize = 20;
const EVENT_GAP: Duration = Duration::from_millis(25);

/// `/sse` is an event stream of `EVENTS` events; anything else answers `ok`.
async fn streaming_upstream() -> RunningUpstream {
    TestUpstream::named("a")
        .handler(|request| async move {
            if request.uri().path() != "/sse" {
                return reply(200, "ok");
            }
            let (events, body) = mpsc::channel(4);
            tokio::spawn(async move {
                for i in 0..EVENTS {
                    tokio::time::sleep(EVENT_GAP).await;
                    if events
                        .send(Bytes::from(format!("data: {i}\n\n")))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                let _ = events.send(Bytes::from("data: [DONE]\n\n")).await;
            });
            event_stream(ChannelBody(body))
        })
        .start()
        .await
}

fn whole_stream() -> String {
    let mut text: String = (0..EVENTS).map(|i| format!("data: {i}\n\n")).collect();
    text.push_str("data: [DONE]\n\n");
    text
}

fn write_config(dir: &Path, upstream: &RunningUpstream) -> PathBuf {
    let text = format!(
        r#"
[server]
shutdown_grace = "20s"

[admin]
bind = "127.0.0.1:0"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "stable"
endpoints = [{{ url = "{url}" }}]

[[pools]]
name = "candidate"
endpoints = [{{ url = "{url}" }}]

[[routes]]
name = "chat"
match = {{ path_prefix = "/v1/chat" }}
split = [{{ pool = "stable", weight = 95 }}, {{ pool = "candidate", weight = 5 }}]
[routes.canary]
candidate = "candidate"
steps = [5, 25, 50, 100]
interval = "1h"

[[routes]]
name = "plain"
match = {{ path_prefix = "/v1/plain" }}
split = [{{ pool = "stable", weight = 50 }}, {{ pool = "candidate", weight = 50 }}]

[[routes]]
name = "rest"
pool = "stable"
"#,
        url = upstream.url()
    );
    let path = dir.join("junction.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The first process, listening for successors on `socket`.
async fn first(config: &Path, socket: &Path) -> JunctionProcess {
    let args = [OsStr::new("--upgrade-socket"), socket.as_os_str()];
    timeout(
        Duration::from_secs(30),
        JunctionProcess::start_with(config, &args, &["public"]),
    )
    .await
    .expect("junction starts within 30 s")
}

/// Starts a successor of `old` and waits until it serves, then until `old` has drained
/// and exited 0; returns the successor.
async fn upgrade(mut old: JunctionProcess, config: &Path, socket: &Path) -> JunctionProcess {
    let args = [
        OsStr::new("--upgrade-from"),
        socket.as_os_str(),
        OsStr::new("--upgrade-socket"),
        socket.as_os_str(),
    ];
    let mut new = timeout(
        Duration::from_secs(30),
        JunctionProcess::start_with(config, &args, &["public"]),
    )
    .await
    .expect("the new process starts within 30 s");
    new.wait_for_log("upgrade: took over from the previous process")
        .await;
    assert_eq!(
        new.addrs, old.addrs,
        "the same sockets, so the same addresses"
    );
    old.wait_for_log("upgrade: drained; exiting").await;
    let status = timeout(Duration::from_secs(10), old.child.wait())
        .await
        .expect("the old process exits after its drain")
        .expect("wait");
    assert!(status.success(), "old process: {status}");
    new
}

// === Load ===

#[derive(Default)]
struct Load {
    answers: usize,
    streams: usize,
    failures: Vec<String>,
    stop: bool,
}

async fn request_loop(load: Arc<watch::Sender<Load>>, url: String, http2: bool) {
    let client = if http2 {
        reqwest::Client::builder()
            .no_proxy()
            .http2_prior_knowledge()
            .build()
            .expect("h2c client")
    } else {
        client()
    };
    while !load.borrow().stop {
        let outcome = async {
            let response = client
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            let status = response.status();
            let body = response.text().await.map_err(|e| format!("body: {e:?}"))?;
            match (status.as_u16(), body.as_str()) {
                (200, "ok") => Ok(()),
                _ => Err(format!("{status}: {body}")),
            }
        };
        let outcome = timeout(Duration::from_secs(10), outcome)
            .await
            .unwrap_or_else(|_| Err("no answer within 10 s".into()));
        load.send_modify(|load| match outcome {
            Ok(()) => load.answers += 1,
            Err(error) => load.failures.push(format!("GET {url}: {error}")),
        });
    }
}

async fn stream_loop(load: Arc<watch::Sender<Load>>, url: String) {
    let client = client();
    let expected = whole_stream();
    while !load.borrow().stop {
        let outcome = async {
            let response = client
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            let body = response.text().await.map_err(|e| format!("body: {e:?}"))?;
            if body == expected {
                Ok(())
            } else {
                Err(format!("broken stream: {body:?}"))
            }
        };
        let outcome = timeout(Duration::from_secs(10), outcome)
            .await
            .unwrap_or_else(|_| Err("stream not complete within 10 s".into()));
        load.send_modify(|load| match outcome {
            Ok(()) => load.streams += 1,
            Err(error) => load.failures.push(format!("GET {url}: {error}")),
        });
    }
}

/// Waits until `answers` answers and `streams` whole streams were seen; panics on the
/// first failure.
async fn progress(watcher: &mut watch::Receiver<Load>, answers: usize, streams: usize) {
    let reached = watcher.wait_for(|load| {
        !load.failures.is_empty() || (load.answers >= answers && load.streams >= streams)
    });
    let load = timeout(Duration::from_secs(30), reached)
        .await
        .expect("the load makes progress")
        .expect("load alive");
    assert!(load.failures.is_empty(), "failures: {:#?}", load.failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_upgrades_under_load_fail_no_request_and_break_no_stream() {
    let upstream = streaming_upstream().await;
    let dir = TempDir::new().unwrap();
    let config = write_config(dir.path(), &upstream);
    let socket = dir.path().join("upgrade.sock");
    let mut process = first(&config, &socket).await;
    let public = process.addrs["public"];

    let (load, mut watcher) = watch::channel(Load::default());
    let load = Arc::new(load);
    let mut clients = Vec::new();
    // Three HTTP/1.1 keep-alive clients and one HTTP/2 (h2c) client.
    for http2 in [false, false, false, true] {
        clients.push(tokio::spawn(request_loop(
            load.clone(),
            format!("http://{public}/ok"),
            http2,
        )));
    }
    for _ in 0..2 {
        clients.push(tokio::spawn(stream_loop(
            load.clone(),
            format!("http://{public}/sse"),
        )));
    }

    for _ in 0..20 {
        // Each upgrade happens with requests and streams going: at least one more of each
        // since the last one (a stream lasts half a second, so some are always open).
        let (answers, streams) = {
            let load = watcher.borrow();
            (load.answers, load.streams)
        };
        progress(&mut watcher, answers + 20, streams + 2).await;
        process = upgrade(process, &config, &socket).await;
    }
    let (answers, streams) = {
        let load = watcher.borrow();
        (load.answers, load.streams)
    };
    progress(&mut watcher, answers + 20, streams + 2).await;
    load.send_modify(|load| load.stop = true);
    for task in clients {
        task.await.expect("client task");
    }
    let load = watcher.borrow();
    assert!(load.failures.is_empty(), "failures: {:#?}", load.failures);
    eprintln!(
        "20 upgrades: {} answers, {} whole streams, no failure",
        load.answers, load.streams
    );

    let ready = client()
        .get(process.url("admin", "/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "the last process is ready");
}

async fn admin_json(
    process: &JunctionProcess,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = client()
        .request(method, process.url("admin", path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin answers");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_hands_over_split_weights_and_canary_phases() {
    let upstream = streaming_upstream().await;
    let dir = TempDir::new().unwrap();
    let config = write_config(dir.path(), &upstream);
    let socket = dir.path().join("upgrade.sock");
    let process = first(&config, &socket).await;

    let put = json!({ "weights": { "stable": 70, "candidate": 30 } });
    admin_json(
        &process,
        reqwest::Method::PUT,
        "/api/routes/plain/split",
        Some(put),
    )
    .await;
    let paused = admin_json(
        &process,
        reqwest::Method::POST,
        "/api/routes/chat/canary/pause",
        None,
    )
    .await;
    assert_eq!(paused["phase"]["state"], "paused", "{paused}");

    let process = upgrade(process, &config, &socket).await;
    let split = admin_json(
        &process,
        reqwest::Method::GET,
        "/api/routes/plain/split",
        None,
    )
    .await;
    assert_eq!(
        split["weights"],
        json!({ "stable": 70, "candidate": 30 }),
        "{split}"
    );
    let canary = admin_json(
        &process,
        reqwest::Method::GET,
        "/api/routes/chat/canary",
        None,
    )
    .await;
    assert_eq!(
        canary["phase"],
        json!({ "state": "paused", "step": 0 }),
        "{canary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_hands_over_an_endpoint_known_to_be_down() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let healthy = Arc::new(AtomicBool::new(false));
    let upstream = TestUpstream::named("checked")
        .handler({
            let healthy = healthy.clone();
            move |request| {
                let sick = request.uri().path() == "/health" && !healthy.load(Ordering::SeqCst);
                async move {
                    if sick {
                        reply(503, "sick")
                    } else {
                        reply(200, "ok")
                    }
                }
            }
        })
        .start()
        .await;
    let dir = TempDir::new().unwrap();
    // Checked once at start, then hourly: two passes in a row bring it back.
    let config = dir.path().join("junction.toml");
    std::fs::write(
        &config,
        format!(
            r#"{}
[[pools]]
name = "p"
endpoints = [{{ url = "{}" }}]
health = {{ path = "/health", interval = "1h", timeout = "2s", rise = 2, fall = 1 }}

[[routes]]
name = "all"
pool = "p"
"#,
            support::listeners_toml(),
            upstream.url()
        ),
    )
    .unwrap();
    let socket = dir.path().join("upgrade.sock");
    let mut process = first(&config, &socket).await;
    process
        .wait_for_log("endpoint is down (health check)")
        .await;
    // Healthy again, but one pass is not `rise`: the successor must keep it down, where
    // a fresh start would take it as up.
    healthy.store(true, Ordering::SeqCst);
    let process = upgrade(process, &config, &socket).await;
    let pools = admin_json(&process, reqwest::Method::GET, "/api/pools", None).await;
    assert_eq!(
        pools["pools"][0]["endpoints"][0]["health_check"], "down",
        "{pools}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_fails_to_start_leaves_the_old_process_serving() {
    let upstream = streaming_upstream().await;
    let dir = TempDir::new().unwrap();
    let config = write_config(dir.path(), &upstream);
    let socket = dir.path().join("upgrade.sock");
    let mut process = first(&config, &socket).await;

    // The successor gets the sockets but its config is invalid: it exits 1 without
    // saying `ready`, and the old process serves on.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[[listeners]]\nname = 1\n").unwrap();
    let status = timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(support::process::binary())
            .args(["run", "--config"])
            .arg(&broken)
            .arg("--upgrade-from")
            .arg(&socket)
            .stderr(std::process::Stdio::null())
            .status(),
    )
    .await
    .expect("the successor gives up within 30 s")
    .expect("spawn");
    assert!(!status.success());
    process
        .wait_for_log("upgrade: the new process did not take over; serving on")
        .await;
    let answer = client()
        .get(process.url("public", "/ok"))
        .send()
        .await
        .expect("the old process still serves");
    assert_eq!(answer.status(), 200);
    // And it can still be upgraded.
    let _process = upgrade(process, &config, &socket).await;
}

#[tokio::test]
async fn upgrade_from_a_socket_nobody_listens_on_is_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let upstream = streaming_upstream().await;
    let config = write_config(dir.path(), &upstream);
    let output = tokio::process::Command::new(support::process::binary())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--upgrade-from")
        .arg(dir.path().join("nobody.sock"))
        .output()
        .await
        .expect("spawn");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the running process at"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_starts_the_successor_itself() {
    let upstream = streaming_upstream().await;
    let dir = TempDir::new().unwrap();
    let config = write_config(dir.path(), &upstream);
    let socket = dir.path().join("upgrade.sock");
    let mut process = first(&config, &socket).await;
    process.signal("USR2");
    // The successor inherits stderr: its lines come on the same stream.
    let started = process
        .wait_for_log("SIGUSR2: started the new process")
        .await;
    let pid: u32 = started
        .split("pid=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {started:?}"));
    let _successor = KillOnDrop(pid);
    // Two processes write to one pipe: the lines come in either order.
    let (mut took_over, mut drained) = (false, false);
    while !(took_over && drained) {
        let line = process.wait_for_log("upgrade: ").await;
        took_over |= line.contains("upgrade: took over from the previous process");
        drained |= line.contains("upgrade: drained; exiting");
    }
    let status = timeout(Duration::from_secs(10), process.child.wait())
        .await
        .expect("the old process exits")
        .expect("wait");
    assert!(status.success(), "{status}");
    // The successor serves on the same sockets, then stops on SIGTERM.
    let answer = client()
        .get(process.url("public", "/ok"))
        .send()
        .await
        .expect("the successor serves");
    assert_eq!(answer.status(), 200);
    let ready = client()
        .get(process.url("admin", "/readyz"))
        .send()
        .await
        .expect("the successor's admin API");
    assert_eq!(ready.status(), 200);
    let killed = std::process::Command::new("kill")
        .args(["-s", "TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    process.wait_for_log("shutting down").await;
}

/// The successor SIGUSR2 started is no child of the test: killed when the test ends,
/// passed or not.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", &self.0.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
