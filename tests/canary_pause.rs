//! Pausing a canary through the admin API: `POST /api/routes/{name}/canary/pause` and
//! `/resume` need the admin token and go to the audit log; a paused canary holds its
//! weights through healthy intervals, is still rolled back by a regression, and stays
//! paused across a restart (the state file).

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use serde_json::{Value, json};
use support::proxy::RunningProxy;
use support::upstream::{RunningUpstream, reply};
use support::{TestUpstream, client};
use tokio::time::Instant;

const TOKEN: &str = "pause-s3cret";

/// Route "chat" split 95/5 between "stable" and "candidate" under a canary analysed every
/// `interval`, and a plain route "embed"; the token in a file, a state file, an audit log.
fn write_config(
    dir: &Path,
    stable: &RunningUpstream,
    candidate: &RunningUpstream,
    interval: &str,
) -> PathBuf {
    std::fs::write(dir.join("admin.token"), TOKEN).unwrap();
    let text = format!(
        r#"
[server]
state_file = "state.json"

[audit]
path = "audit.log"

[admin]
bind = "127.0.0.1:0"
token_file = "admin.token"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "stable"
version = "v1"
endpoints = [{{ url = "{stable}" }}]

[[pools]]
name = "candidate"
version = "v2"
endpoints = [{{ url = "{candidate}" }}]

[[routes]]
name = "embed"
match = {{ path_prefix = "/v1/embeddings" }}
pool = "stable"

[[routes]]
name = "chat"
split = [{{ pool = "stable", weight = 95 }}, {{ pool = "candidate", weight = 5 }}]
version_override_from = ["127.0.0.1/32"]
[routes.canary]
candidate = "candidate"
steps = [5, 25, 50, 100]
interval = "{interval}"
min_requests = 10
max_error_rate = 0.05
max_latency_ratio = 50.0
"#,
        stable = stable.url(),
        candidate = candidate.url(),
    );
    let path = dir.join("junction.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `POST {path}` on the admin listener with an optional bearer token: (status, body).
async fn post(proxy: &RunningProxy, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client().post(proxy.admin_url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let reply = request.send().await.expect("admin answers");
    let status = reply.status().as_u16();
    (status, reply.json().await.expect("a JSON body"))
}

/// The audit log's lines once at least `count` are written (the log is written by a
/// task of its own; the file is the only signal).
async fn audit_lines(path: &Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(Instant::now() < deadline, "audit log:\n{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn pause_and_resume_need_the_token_are_audited_and_survive_a_restart() {
    let stable = TestUpstream::named("stable").start().await;
    let candidate = TestUpstream::named("candidate").start().await;
    let dir = tempfile::tempdir().unwrap();
    // An interval far beyond the test: only the admin API moves the canary.
    let path = write_config(dir.path(), &stable, &candidate, "1h");
    let proxy = RunningProxy::from_file(&path).await;

    for presented in [None, Some("wrong")] {
        let (status, body) = post(&proxy, "/api/routes/chat/canary/pause", presented).await;
        assert_eq!(status, 401, "{presented:?}: {body}");
        assert_eq!(body["error"]["type"], "unauthorized");
    }
    let canary = proxy.admin_json("/api/routes/chat/canary").await;
    assert_eq!(
        canary["phase"],
        json!({ "state": "progressing", "step": 0 })
    );

    // Weights set by hand, then held by the pause.
    let reply = client()
        .put(proxy.admin_url("/api/routes/chat/split"))
        .bearer_auth(TOKEN)
        .json(&json!({ "weights": { "stable": 80, "candidate": 20 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let (status, body) = post(&proxy, "/api/routes/chat/canary/pause", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["phase"], json!({ "state": "paused", "step": 0 }));
    assert_eq!(body["weights"], json!({ "stable": 80, "candidate": 20 }));
    let (status, again) = post(&proxy, "/api/routes/chat/canary/pause", Some(TOKEN)).await;
    assert_eq!(
        (status, &again["phase"]),
        (200, &body["phase"]),
        "pausing twice"
    );
    let canary = proxy.admin_json("/api/routes/chat/canary").await;
    assert_eq!(canary["phase"]["state"], "paused");
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains("junction_canary_state{route=\"chat\"} 3"),
        "{metrics}"
    );

    // A second gateway from the same files, as after a restart: still paused, same weights.
    let restarted = RunningProxy::from_file(&path).await;
    let canary = restarted.admin_json("/api/routes/chat/canary").await;
    assert_eq!(canary["phase"], json!({ "state": "paused", "step": 0 }));
    assert_eq!(canary["weights"], json!({ "stable": 80, "candidate": 20 }));

    let (status, body) = post(&proxy, "/api/routes/chat/canary/resume", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(&proxy, "/api/routes/chat/canary/resume", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["phase"], json!({ "state": "progressing", "step": 0 }));

    // Wrong targets and methods: JSON errors, never a change.
    let (status, body) = post(&proxy, "/api/routes/embed/canary/pause", Some(TOKEN)).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = post(&proxy, "/api/routes/nothing/canary/pause", Some(TOKEN)).await;
    assert_eq!(status, 404, "{body}");
    let reply = client()
        .get(proxy.admin_url("/api/routes/chat/canary/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 405);
    let (status, _) = post(&proxy, "/api/routes/chat/rollback", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let (status, body) = post(&proxy, "/api/routes/chat/canary/pause", Some(TOKEN)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["type"], "canary_ended");

    // Every call that reached the token check is in the audit log; the 404s, the 405 and
    // the 409 changed nothing and left no line.
    let entries = audit_lines(&dir.path().join("audit.log"), 8).await;
    let actions: Vec<String> = entries
        .iter()
        .map(|e| {
            let what = e["action"].as_str().or(e["rule"].as_str()).unwrap_or("");
            format!("{} {what}", e["kind"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        actions,
        [
            "admin_refused bearer_token",
            "admin_refused bearer_token",
            "admin set_split",
            "admin canary_pause",
            "admin canary_pause",
            "admin_refused bearer_token",
            "admin canary_resume",
            "admin rollback",
        ],
        "{entries:#?}"
    );
    assert_eq!(entries[3]["changed"], true);
    assert_eq!(entries[4]["changed"], false);
    assert_eq!(entries[3]["phase"], json!({ "state": "paused", "step": 0 }));
}

/// An upstream named `name` that answers 500 while `failing` is set.
async fn switchable(name: &str, failing: Arc<AtomicBool>) -> RunningUpstream {
    TestUpstream::named(name)
        .handler(move |_request: Request<Incoming>| {
            let failing = failing.load(Ordering::SeqCst);
            async move {
                if failing {
                    reply(500, "boom")
                } else {
                    reply(200, "ok")
                }
            }
        })
        .start()
        .await
}

/// `GET .../canary` until `done` holds for it (at most 10 s), with traffic to both
/// versions meanwhile so that every interval has figures.
async fn canary_until(proxy: &RunningProxy, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let http = client();
    loop {
        let canary = proxy.admin_json("/api/routes/chat/canary").await;
        if done(&canary) {
            return canary;
        }
        assert!(Instant::now() < deadline, "{what}: {canary:#}");
        for version in ["v1", "v2"] {
            let reply = http
                .get(proxy.url("/v1/chat"))
                .header("x-junction-version", version)
                .send()
                .await
                .unwrap();
            reply.bytes().await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_paused_canary_takes_no_step_but_a_regression_still_rolls_it_back() {
    let failing = Arc::new(AtomicBool::new(false));
    let stable = TestUpstream::named("stable").start().await;
    let candidate = switchable("candidate", failing.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &stable, &candidate, "300ms");
    // Paused from the start (saved by an earlier run), so no interval can step it first.
    let saved = json!({ "routes": { "chat": {
        "pools": ["stable", "candidate"], "configured": [95, 5], "weights": [95, 5],
        "canary": { "state": "paused", "step": 0 },
    } } });
    std::fs::write(dir.path().join("state.json"), saved.to_string()).unwrap();
    let proxy = RunningProxy::from_file(&path).await;

    // A healthy interval with enough candidate requests would have stepped it to 25%.
    let canary = canary_until(&proxy, "a healthy interval analysed", |c| {
        c["last_interval"]["candidate_requests"].as_u64() >= Some(10)
    })
    .await;
    assert_eq!(canary["phase"], json!({ "state": "paused", "step": 0 }));
    assert_eq!(canary["weights"], json!({ "stable": 95, "candidate": 5 }));
    assert_eq!(canary["transitions"], json!([]));

    failing.store(true, Ordering::SeqCst);
    let canary = canary_until(&proxy, "the rollback", |c| c["phase"]["state"] == "failed").await;
    assert_eq!(canary["weights"], json!({ "stable": 100, "candidate": 0 }));
    let transition = &canary["transitions"][0];
    assert_eq!(transition["from"], json!({ "state": "paused", "step": 0 }));
    let reason = canary["phase"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("error rate"), "{reason}");
}
