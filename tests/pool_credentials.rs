//! Per-pool upstream credentials (`auth`, `api_key_env`) on every way a request travels:
//! the endpoint sees its pool's key and never the client's, retries and splits across
//! pools send each pool its own key, and the secret stays out of `/api/config`.

use crate::support;

use std::sync::{Arc, Mutex};

use support::travel::{Extra, Travel, start};
use support::upstream::{RunningUpstream, reply};
use support::{TestUpstream, client};
use tempfile::TempDir;

/// The credential headers an endpoint received, one entry per request.
type Seen = Arc<Mutex<Vec<Vec<(String, String)>>>>;

const CLIENT_KEY: &str = "sk-client-owned";

/// An upstream that records every credential header it receives and answers `status`.
async fn recording(name: &str, status: u16) -> (RunningUpstream, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let upstream = TestUpstream::named(name)
        .handler(move |request: http::Request<hyper::body::Incoming>| {
            let credentials =
                ["authorization", "x-api-key", "api-key", "x-goog-api-key"]
                    .iter()
                    .flat_map(|name| {
                        request.headers().get_all(*name).iter().map(|value| {
                            (name.to_string(), value.to_str().unwrap_or("").to_string())
                        })
                    })
                    .collect();
            record.lock().unwrap().push(credentials);
            async move { reply(status, "{}") }
        })
        .start()
        .await;
    (upstream, seen)
}

/// A secret in a file of its own; the folder lives as long as the guard.
fn secret_file(secret: &str) -> (TempDir, String) {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("key");
    std::fs::write(&path, format!("{secret}\n")).expect("write key");
    (dir, path.display().to_string())
}

/// A chat completion as an SDK sends it, with the client's key in each usual header.
async fn send(url: &str) -> u16 {
    client()
        .post(url)
        .bearer_auth(CLIENT_KEY)
        .header("x-api-key", CLIENT_KEY)
        .header("api-key", CLIENT_KEY)
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

fn all_seen(seen: &Seen) -> Vec<Vec<(String, String)>> {
    seen.lock().unwrap().clone()
}

fn only(header: &str, value: &str) -> Vec<(String, String)> {
    vec![(header.to_string(), value.to_string())]
}

#[tokio::test]
async fn the_pool_key_replaces_every_client_credential() {
    let (_dir, key_file) = secret_file("sk-pool-p");
    for travel in Travel::ALL {
        let (upstream, seen) = recording("p", 200).await;
        let pool = format!("auth = {{ value_file = {key_file:?} }}");
        let extra = Extra {
            pool: &pool,
            ..Extra::default()
        };
        let proxy = start(travel, &[upstream.url()], &extra).await;
        assert_eq!(
            send(&proxy.url("/v1/chat/completions")).await,
            200,
            "{travel:?}"
        );
        assert_eq!(
            all_seen(&seen),
            vec![only("authorization", "Bearer sk-pool-p")],
            "{travel:?}"
        );
    }
}

#[tokio::test]
async fn a_custom_header_without_prefix_and_a_route_header_rule_do_not_win() {
    let (_dir, key_file) = secret_file("sk-ant-pool");
    for travel in Travel::ALL {
        let (upstream, seen) = recording("p", 200).await;
        let pool = format!("auth = {{ header = \"x-api-key\", value_file = {key_file:?} }}");
        // A route that sets a key of its own: the pool's credential still replaces it.
        let route = "request_headers = { set = { \"authorization\" = \"Bearer route\" } }";
        let extra = Extra {
            pool: &pool,
            route,
            ..Extra::default()
        };
        let proxy = start(travel, &[upstream.url()], &extra).await;
        assert_eq!(send(&proxy.url("/v1/messages")).await, 200, "{travel:?}");
        assert_eq!(
            all_seen(&seen),
            vec![only("x-api-key", "sk-ant-pool")],
            "{travel:?}"
        );
    }
}

/// Without `auth`, the client's credential goes on as it came: the client owns the
/// provider account (a pass-through gateway).
#[tokio::test]
async fn a_pool_without_auth_passes_the_client_key() {
    for travel in Travel::ALL {
        let (upstream, seen) = recording("p", 200).await;
        let proxy = start(travel, &[upstream.url()], &Extra::default()).await;
        assert_eq!(send(&proxy.url("/v1/chat/completions")).await, 200);
        let bearer = format!("Bearer {CLIENT_KEY}");
        assert_eq!(
            all_seen(&seen),
            vec![vec![
                ("authorization".to_string(), bearer),
                ("x-api-key".to_string(), CLIENT_KEY.to_string()),
                ("api-key".to_string(), CLIENT_KEY.to_string()),
            ]],
            "{travel:?}"
        );
    }
}

/// A retry that falls back to another pool sends that pool's key, not the first one's.
#[tokio::test]
async fn a_retry_to_the_fallback_pool_sends_that_pools_key() {
    let (_dir, key_file) = secret_file("sk-primary");
    // SAFETY: no other test of this binary writes this variable; only this test's
    // config compiler reads it.
    unsafe { std::env::set_var("JUNCTION_TEST_FALLBACK_POOL_KEY", "sk-azure") };
    for travel in Travel::ALL {
        let (primary, primary_seen) = recording("primary", 503).await;
        let (azure, azure_seen) = recording("azure", 200).await;
        let pool = format!("auth = {{ value_file = {key_file:?} }}\nfallback = \"azure\"");
        let before = format!(
            "[[pools]]\nname = \"azure\"\nendpoints = [{{ url = \"{}\" }}]\n\
             auth = {{ header = \"api-key\", value_env = \"JUNCTION_TEST_FALLBACK_POOL_KEY\" }}\n",
            azure.url()
        );
        let route = "retries = { attempts = 1, on = [503], retry_non_idempotent = true }";
        let extra = Extra {
            pool: &pool,
            before: &before,
            route,
            ..Extra::default()
        };
        let proxy = start(travel, &[primary.url()], &extra).await;
        assert_eq!(
            send(&proxy.url("/v1/chat/completions")).await,
            200,
            "{travel:?}"
        );
        assert_eq!(
            all_seen(&primary_seen),
            vec![only("authorization", "Bearer sk-primary")],
            "{travel:?}"
        );
        assert_eq!(
            all_seen(&azure_seen),
            vec![only("api-key", "sk-azure")],
            "{travel:?}"
        );
    }
}

/// A split over two pools: every request carries the key of the pool it went to.
#[tokio::test]
async fn a_split_sends_each_pool_its_own_key() {
    let (_dir_a, key_a) = secret_file("sk-stable");
    let (_dir_b, key_b) = secret_file("sk-candidate");
    for travel in Travel::ALL {
        let (stable, stable_seen) = recording("stable", 200).await;
        let (candidate, candidate_seen) = recording("candidate", 200).await;
        let pool = format!("auth = {{ value_file = {key_a:?} }}");
        let before = format!(
            "[[pools]]\nname = \"candidate\"\nendpoints = [{{ url = \"{}\" }}]\n\
             auth = {{ value_file = {key_b:?} }}\n\n\
             [[routes]]\nname = \"split\"\nmatch = {{ path_prefix = \"/v1\" }}\n\
             split = [{{ pool = \"p\", weight = 50 }}, {{ pool = \"candidate\", weight = 50 }}]\n{}\n",
            candidate.url(),
            travel.route_keys()
        );
        let extra = Extra {
            pool: &pool,
            before: &before,
            ..Extra::default()
        };
        let proxy = start(travel, &[stable.url()], &extra).await;
        for _ in 0..10 {
            assert_eq!(send(&proxy.url("/v1/chat/completions")).await, 200);
        }
        let stable_seen = all_seen(&stable_seen);
        let candidate_seen = all_seen(&candidate_seen);
        assert_eq!(stable_seen.len() + candidate_seen.len(), 10, "{travel:?}");
        assert!(
            !stable_seen.is_empty() && !candidate_seen.is_empty(),
            "{travel:?}"
        );
        for seen in stable_seen {
            assert_eq!(
                seen,
                only("authorization", "Bearer sk-stable"),
                "{travel:?}"
            );
        }
        for seen in candidate_seen {
            assert_eq!(
                seen,
                only("authorization", "Bearer sk-candidate"),
                "{travel:?}"
            );
        }
    }
}

/// `/api/config` shows where the secret is read from, never the secret.
#[tokio::test]
async fn the_secret_is_not_in_the_admin_config() {
    let (_dir, key_file) = secret_file("sk-never-shown");
    let (upstream, _) = recording("p", 200).await;
    let pool = format!("auth = {{ value_file = {key_file:?} }}");
    let extra = Extra {
        pool: &pool,
        ..Extra::default()
    };
    let proxy = start(Travel::Fast, &[upstream.url()], &extra).await;
    let config = client()
        .get(proxy.admin_url("/api/config"))
        .send()
        .await
        .expect("GET /api/config")
        .text()
        .await
        .expect("body");
    assert!(config.contains("value_file"), "{config}");
    assert!(!config.contains("sk-never-shown"), "{config}");
}

/// `value_file` is read again at reload: a rotated key is sent from then on, and an
/// emptied file refuses the reload, leaving the running key in use.
#[tokio::test]
async fn a_reload_reads_the_key_file_again() {
    use support::proxy::RunningProxy;
    let (upstream, seen) = recording("p", 200).await;
    let dir = TempDir::new().expect("temp dir");
    std::fs::write(dir.path().join("admin.token"), "admin-secret\n").unwrap();
    std::fs::write(dir.path().join("pool.key"), "sk-before\n").unwrap();
    let path = dir.path().join("junction.toml");
    let config = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n\
         [[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\n\
         [[pools]]\nname = \"p\"\nendpoints = [{{ url = \"{}\" }}]\nauth = {{ value_file = \"pool.key\" }}\n\n\
         [[routes]]\nname = \"all\"\npool = \"p\"\n",
        upstream.url()
    );
    std::fs::write(&path, config).unwrap();
    let proxy = RunningProxy::from_file(&path).await;
    let url = proxy.url("/v1/chat/completions");
    assert_eq!(send(&url).await, 200);

    std::fs::write(dir.path().join("pool.key"), "sk-after\n").unwrap();
    assert_eq!(proxy.reload().await.status(), 200);
    assert_eq!(send(&url).await, 200);

    std::fs::write(dir.path().join("pool.key"), "").unwrap();
    let refused = proxy.reload().await;
    assert_ne!(refused.status(), 200);
    let text = refused.text().await.unwrap();
    assert!(text.contains("pools[0].auth.value_file"), "{text}");
    assert_eq!(send(&url).await, 200);

    assert_eq!(
        all_seen(&seen),
        vec![
            only("authorization", "Bearer sk-before"),
            only("authorization", "Bearer sk-after"),
            only("authorization", "Bearer sk-after"),
        ]
    );
}
