//! A pool's `max_connections` and `max_pending`, on both engines: an endpoint at its
//! limit queues up to `max_pending` requests for a connection to come back and refuses
//! the rest with 503, never opening one more; and an idle connection one engine left is
//! closed to make room for the other, which cannot use it.

use crate::support;

use std::sync::Arc;

use support::raw_http::{Step, Upstream, ok, within};
use support::travel::{Extra, Travel, start};
use support::{client, parse_metrics};
use tokio::sync::{Notify, mpsc};

/// An endpoint that reports each request it parses and answers it when `release` is
/// notified (once per request).
async fn held_upstream() -> (Upstream, mpsc::UnboundedReceiver<String>, Arc<Notify>) {
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let upstream = Upstream::start(move |seen| {
        let _ = arrived.send(seen.path.clone());
        vec![Step::Wait(held.clone()), Step::Write(ok(seen.path.clone()))]
    })
    .await;
    (upstream, arrivals, release)
}

fn handed_off(metrics: &str) -> bool {
    metrics.contains("junction_fast_path_handoffs_total{")
}

async fn limit_queues_then_refuses(travel: Travel) {
    let (upstream, mut arrivals, release) = held_upstream().await;
    let extra = Extra {
        pool: "limits = { max_connections = 1, max_pending = 1 }",
        route: "timeouts = { connect = \"5s\" }",
        ..Extra::default()
    };
    let proxy = start(travel, &[upstream.url()], &extra).await;
    let http = client();

    let first = tokio::spawn(http.get(proxy.url("/first")).send());
    let arrived = within("the first request upstream", arrivals.recv()).await;
    assert_eq!(arrived.as_deref(), Some("/first"));
    // Two more while the only connection is busy: one waits (max_pending = 1), the
    // other is refused at once, whichever came first.
    let mut second = tokio::spawn(http.get(proxy.url("/second")).send());
    let mut third = tokio::spawn(http.get(proxy.url("/third")).send());
    let (refused, waiting, waiting_path) = within("a refusal", async {
        tokio::select! {
            refused = &mut second => (refused, third, "/third"),
            refused = &mut third => (refused, second, "/second"),
        }
    })
    .await;
    let refused = refused.expect("task").expect("an answer");
    assert_eq!(refused.status(), 503, "{travel:?}");
    let error: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "overloaded", "{travel:?}");

    release.notify_one();
    let first = within("the first answer", first).await.unwrap().unwrap();
    assert_eq!(first.status(), 200);
    // The waiting request gets the connection the first one gave back.
    let arrived = within("the waiting request upstream", arrivals.recv()).await;
    assert_eq!(arrived.as_deref(), Some(waiting_path), "{travel:?}");
    release.notify_one();
    let waited = within("the waiting answer", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waited.status(), 200, "{travel:?}");
    assert_eq!(waited.text().await.unwrap(), waiting_path);
    assert_eq!(
        upstream.connections(),
        1,
        "{travel:?}: never a second connection"
    );

    let metrics = within("metrics", proxy.metrics_text()).await;
    assert_eq!(
        handed_off(&metrics),
        travel == Travel::HandOff,
        "{travel:?}"
    );
    let codes = parse_metrics(&metrics);
    let count = |code: &str| {
        codes
            .iter()
            .filter(|(series, _)| {
                series.starts_with("junction_requests_total{")
                    && series.contains(&format!("code=\"{code}\""))
                    && series.contains("shadow=\"false\"")
            })
            .map(|(_, value)| *value)
            .sum::<f64>()
    };
    assert_eq!((count("200"), count("503")), (2.0, 1.0), "{travel:?}");
}

#[tokio::test]
async fn an_endpoint_at_its_limit_queues_then_refuses_fast() {
    limit_queues_then_refuses(Travel::Fast).await;
}

#[tokio::test]
async fn an_endpoint_at_its_limit_queues_then_refuses_hyper() {
    limit_queues_then_refuses(Travel::Hyper).await;
}

#[tokio::test]
async fn an_endpoint_at_its_limit_queues_then_refuses_handed_off() {
    limit_queues_then_refuses(Travel::HandOff).await;
}

/// One endpoint, `max_connections = 1`, two routes: "full" served by hyper, "all" by
/// the fast engine. After a request on "full" its connection sits idle in hyper's
/// stack, where the fast engine cannot use it: the fast engine closes it and opens its
/// own at once, instead of waiting out `timeouts.connect` for a connection that never
/// comes back. Then the other way round: hyper takes the fast engine's idle stream.
#[tokio::test]
async fn an_idle_connection_of_the_other_engine_makes_room() {
    let upstream = Upstream::start(|seen| vec![Step::Write(ok(seen.path.clone()))]).await;
    let routes = r#"
[[routes]]
name = "full"
match = { path_prefix = "/full" }
pool = "p"
fast_path = false
timeouts = { connect = "10s" }
"#;
    let extra = Extra {
        pool: "limits = { max_connections = 1 }",
        before: routes,
        route: "timeouts = { connect = \"10s\" }",
        ..Extra::default()
    };
    let proxy = start(Travel::Fast, &[upstream.url()], &extra).await;
    for (path, connections) in [("/full/1", 1), ("/fast/1", 2), ("/full/2", 2)] {
        // A client connection handed to hyper stays with it: one per request.
        let answer = within(path, client().get(proxy.url(path)).send())
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        assert_eq!(answer.text().await.unwrap(), path);
        assert_eq!(upstream.connections(), connections, "after {path}");
    }
    // Each request above was answered within `within`'s 5 s, not after the 10 s
    // it could have waited.
}
