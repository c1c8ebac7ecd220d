//! Compiling a plan registers nothing; swapping it in does. A reload refused for an
//! invalid config or a socket that does not bind leaves the endpoint registry exactly
//! as it was, and an accepted one hands kept endpoints their warm state (request
//! counts, latency average, idle connections).

use crate::support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use junction::balance::SplitMix;
use junction::server::{Gateway, ReloadError};
use junction::upstream::{EndpointKey, EndpointState, Protocol};
use support::upstream::RunningUpstream;
use support::{TestUpstream, client};
use tempfile::TempDir;

/// Pool "a" serves paths under `/x` on listener "public". `b`, when given, is pool "b" on
/// path prefix `/b`; `second` adds a listener bound to that address, routed to "b";
/// `broken` adds a route naming a pool that does not exist.
fn config(
    a: &RunningUpstream,
    b: Option<&RunningUpstream>,
    second: Option<&str>,
    broken: bool,
) -> String {
    let mut text = format!(
        r#"[admin]
bind = "127.0.0.1:0"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[pools]]
name = "a"
endpoints = [{{ url = "{}" }}]

[[routes]]
name = "all"
listener = "public"
pool = "a"
match = {{ path_prefix = "/x" }}
"#,
        a.url()
    );
    if let Some(b) = b {
        text.push_str(&format!(
            r#"
[[pools]]
name = "b"
endpoints = [{{ url = "{}" }}]

[[routes]]
name = "b"
listener = "public"
pool = "b"
match = {{ path_prefix = "/b" }}
"#,
            b.url()
        ));
    }
    if let Some(bind) = second {
        text.push_str(&format!(
            r#"
[[listeners]]
name = "second"
bind = "{bind}"

[[routes]]
name = "second"
listener = "second"
pool = "b"
"#
        ));
    }
    if broken {
        text.push_str("\n[[routes]]\nname = \"broken\"\nlistener = \"public\"\npool = \"nope\"\n");
    }
    text
}

/// The registry's keys, with the state of each.
fn registry(gateway: &Gateway) -> Vec<(EndpointKey, Arc<EndpointState>)> {
    gateway.registry().entries()
}

fn same(
    left: &[(EndpointKey, Arc<EndpointState>)],
    right: &[(EndpointKey, Arc<EndpointState>)],
) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .all(|((k1, s1), (k2, s2))| k1 == k2 && Arc::ptr_eq(s1, s2))
}

/// The name of the upstream that answered `GET url` (its `x-upstream` header).
async fn get(url: &str, client: &reqwest::Client) -> String {
    let response = client.get(url).send().await.expect("the proxy answers");
    assert_eq!(response.status(), 200);
    let upstream = response.headers()["x-upstream"]
        .to_str()
        .expect("ASCII")
        .to_string();
    response.bytes().await.expect("the whole body");
    upstream
}

/// Waits (2 s at most) until `state` holds an idle connection: one is given back
/// when its response body has been read to the end.
async fn idle_connection(state: &EndpointState) -> usize {
    for _ in 0..200 {
        if state.connections.idle_count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    state.connections.idle_count()
}

#[tokio::test]
async fn a_refused_reload_leaves_the_registry_as_it_was_and_an_accepted_one_keeps_warm_state() {
    let a = TestUpstream::named("a").start().await;
    let b = TestUpstream::named("b").start().await;
    let dir = TempDir::new().expect("temp dir");
    let path: PathBuf = dir.path().join("junction.toml");
    std::fs::write(&path, config(&a, None, None, false)).expect("write");
    let gateway =
        Gateway::from_file(path.clone(), Arc::new(SplitMix::with_seed(7))).expect("valid config");
    gateway.start().await.expect("start");
    let public = gateway.listener_addr("public").expect("public listens");
    let client = client();

    // Warm endpoint "a": one request, its connection idle afterwards.
    assert_eq!(get(&format!("http://{public}/x"), &client).await, "a");
    let before = registry(&gateway);
    let key_a: EndpointKey = ("a".into(), a.url(), Protocol::Http1);
    assert_eq!(before.iter().map(|(k, _)| k).collect::<Vec<_>>(), [&key_a]);
    let state_a = before[0].1.clone();
    assert_eq!(state_a.requests(), 1);
    assert_eq!(idle_connection(&state_a).await, 1);

    // Refused: invalid (a route names no pool). Pool "b" compiled fine, but nothing of
    // it may stay behind.
    std::fs::write(&path, config(&a, Some(&b), None, true)).expect("write");
    match gateway.reload().await {
        Err(ReloadError::Invalid(errors)) => {
            assert_eq!(errors.0.len(), 1, "{errors}");
            assert_eq!(errors.0[0].path, "routes[2].pool", "{errors}");
        }
        other => panic!("expected an invalid config, got {other:?}"),
    }
    assert!(
        same(&registry(&gateway), &before),
        "an invalid config changed the registry"
    );

    // Refused: valid, but the new listener's address is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("address").to_string();
    std::fs::write(&path, config(&a, Some(&b), Some(&taken_addr), false)).expect("write");
    match gateway.reload().await {
        Err(ReloadError::Bind { .. }) => {}
        other => panic!("expected a bind failure, got {other:?}"),
    }
    assert!(
        same(&registry(&gateway), &before),
        "a reload that did not bind changed the registry"
    );
    drop(taken);

    // Accepted: "a" keeps its state (same object: counts, latency, idle connection),
    // "b" is registered with the state the new plan holds.
    std::fs::write(&path, config(&a, Some(&b), None, false)).expect("write");
    gateway.reload().await.expect("reload");
    let after = registry(&gateway);
    let key_b: EndpointKey = ("b".into(), b.url(), Protocol::Http1);
    assert_eq!(
        after.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        [key_a.clone(), key_b]
    );
    assert!(
        Arc::ptr_eq(&after[0].1, &state_a),
        "a kept endpoint lost its state"
    );
    assert_eq!(state_a.requests(), 1);
    assert_eq!(state_a.connections.idle_count(), 1);
    let plan = gateway.plan();
    for (pool, (_, registered)) in plan.pools.iter().zip(&after) {
        assert!(
            Arc::ptr_eq(&pool.endpoints[0].state, registered),
            "pool {} serves with another state than the registry's",
            pool.name
        );
    }
    // The warm connection is the one used next.
    assert_eq!(get(&format!("http://{public}/x"), &client).await, "a");
    assert_eq!(get(&format!("http://{public}/b"), &client).await, "b");
    assert_eq!(state_a.requests(), 2);
    assert_eq!(a.connections(), 1, "the idle connection to a was reused");

    // Dropping "b" forgets its state.
    std::fs::write(&path, config(&a, None, None, false)).expect("write");
    gateway.reload().await.expect("reload");
    let last = registry(&gateway);
    assert_eq!(last.len(), 1);
    assert!(Arc::ptr_eq(&last[0].1, &state_a));

    gateway.shutdown().await;
}
