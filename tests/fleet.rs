//! A fleet sharing canary state through a real `redis-server` (`[fleet] backend`): three
//! instances of the built binary hold the same weights within a second of a change made
//! on one of them; exactly one runs the canary analysis, and another takes its lease over
//! when it is killed; with Redis stopped, each keeps its last known state (logged and
//! counted) and they agree again once it is back.

use crate::support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::process::ADMIN_TOKEN;
use support::redis::Redis;
use support::upstream::RunningUpstream;
use support::{JunctionProcess, TestUpstream, client, parse_metrics};
use tempfile::TempDir;
use tokio::time::Instant;

/// The lease the test configures.
const LEASE: Duration = Duration::from_secs(2);
const LEADER_LINE: &str = "fleet: holding the canary analysis lease";

fn write_config(dir: &Path, upstream: &RunningUpstream, redis: &Redis) -> std::path::PathBuf {
    let text = format!(
        r#"
[fleet]
backend = "{redis}"
lease = "2s"

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
interval = "300ms"
min_requests = 1000000

[[routes]]
name = "plain"
split = [{{ pool = "stable", weight = 50 }}, {{ pool = "candidate", weight = 50 }}]
"#,
        redis = redis.url(),
        url = upstream.url(),
    );
    let path = dir.join("junction.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn get_json(process: &JunctionProcess, path: &str) -> Value {
    client()
        .get(process.url("admin", path))
        .send()
        .await
        .expect("admin answers")
        .json()
        .await
        .expect("JSON")
}

async fn weights(process: &JunctionProcess) -> Value {
    get_json(process, "/api/routes/plain/split").await["weights"].clone()
}

async fn put_weights(process: &JunctionProcess, stable: u32, candidate: u32) {
    let response = client()
        .put(process.url("admin", "/api/routes/plain/split"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "weights": { "stable": stable, "candidate": candidate } }))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(response.status(), 200);
}

async fn metric(process: &JunctionProcess, name: &str) -> Option<f64> {
    let text = client()
        .get(process.url("admin", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_metrics(&text).get(name).copied()
}

/// Waits until every process answers `wanted` weights; the time it took.
async fn converge(processes: &[&JunctionProcess], wanted: Value, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for process in processes {
            all &= weights(process).await == wanted;
        }
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "not every instance has {wanted} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Index of the process that logs that it holds the lease first.
async fn leader_of(processes: &mut [JunctionProcess]) -> usize {
    let waits = processes
        .iter_mut()
        .enumerate()
        .map(|(i, p)| {
            Box::pin(async move {
                p.wait_for_log(LEADER_LINE).await;
                i
            })
        })
        .collect::<Vec<_>>();
    futures_util::future::select_all(waits).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_canary_through_redis() {
    let redis = Redis::start().await;
    let port = redis.port;
    let upstream = TestUpstream::named("a").start().await;
    let dir = TempDir::new().unwrap();
    let config = write_config(dir.path(), &upstream, &redis);
    let mut processes = Vec::new();
    for _ in 0..3 {
        processes.push(JunctionProcess::start(&config, &["public"]).await);
    }

    // One analysis leader; the others do not analyse (no figures of an interval).
    let leader = leader_of(&mut processes).await;
    let analysed = Instant::now();
    loop {
        let canary = get_json(&processes[leader], "/api/routes/chat/canary").await;
        if !canary["last_interval"].is_null() {
            break;
        }
        assert!(
            analysed.elapsed() < Duration::from_secs(5),
            "the leader never analysed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, process) in processes.iter().enumerate() {
        let held = metric(process, "junction_fleet_leader").await;
        assert_eq!(
            held,
            Some(if i == leader { 1.0 } else { 0.0 }),
            "instance {i}"
        );
        if i != leader {
            let canary = get_json(process, "/api/routes/chat/canary").await;
            assert!(
                canary["last_interval"].is_null(),
                "instance {i} analysed: {canary}"
            );
        }
    }

    // A split changed on one instance reaches the others within a second.
    let changer = (leader + 1) % 3;
    put_weights(&processes[changer], 60, 40).await;
    let all: Vec<&JunctionProcess> = processes.iter().collect();
    let took = converge(
        &all,
        json!({ "stable": 60, "candidate": 40 }),
        Duration::from_secs(1),
    )
    .await;
    eprintln!("weights agreed on 3 instances {took:?} after the change");

    // The leader dies without a word: another instance takes the lease within its time.
    let mut dead = processes.remove(leader);
    dead.child.kill().await.unwrap();
    let killed = Instant::now();
    let new_leader = leader_of(&mut processes).await;
    let takeover = killed.elapsed();
    eprintln!("lease taken over {takeover:?} after the leader was killed (lease {LEASE:?})");
    // The issue's bound: the analysis moves within the lease (the key lives a tick
    // less, and the others ask every tick).
    assert!(takeover <= LEASE, "takeover after {takeover:?}");
    assert_eq!(
        metric(&processes[new_leader], "junction_fleet_leader").await,
        Some(1.0)
    );

    // Redis stops: each instance keeps what it knows, logs it once and counts.
    redis.stop().await;
    for process in processes.iter_mut() {
        process.wait_for_log("fleet: Redis failed").await;
    }
    put_weights(&processes[0], 20, 80).await;
    assert_eq!(
        weights(&processes[0]).await,
        json!({ "stable": 20, "candidate": 80 })
    );
    assert_eq!(
        weights(&processes[1]).await,
        json!({ "stable": 60, "candidate": 40 })
    );
    for process in &processes {
        let errors = metric(process, "junction_fleet_backend_errors_total").await;
        assert!(errors.is_some_and(|e| e >= 1.0), "{errors:?}");
        let answer = client()
            .get(process.url("public", "/anything"))
            .send()
            .await
            .expect("serving without Redis");
        assert_eq!(answer.status(), 200);
    }

    // Redis is back (empty): the change made meanwhile reaches the other instance.
    let _redis = Redis::start_on(port).await;
    for process in processes.iter_mut() {
        process.wait_for_log("fleet: Redis is back").await;
    }
    let all: Vec<&JunctionProcess> = processes.iter().collect();
    converge(
        &all,
        json!({ "stable": 20, "candidate": 80 }),
        Duration::from_secs(2),
    )
    .await;
    // And someone holds the lease again.
    let mut leaders = 0.0;
    let deadline = Instant::now() + LEASE * 2;
    while leaders != 1.0 && Instant::now() < deadline {
        leaders = 0.0;
        for process in &processes {
            leaders += metric(process, "junction_fleet_leader")
                .await
                .unwrap_or(0.0);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(leaders, 1.0, "one leader once Redis is back");
}
