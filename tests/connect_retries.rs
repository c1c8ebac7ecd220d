//! Failover on connect errors by default (issue #20, safe defaults): a request that
//! reached no endpoint (connect refused) goes to another one whatever its method, with
//! no `retries` on the route, on both HTTP/1.1 engines; `retry_connect_errors = false`
//! turns it off. Real sockets: two scripted upstreams and a closed port.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::proxy::RunningProxy;
use support::raw_http::*;
use support::travel::{self, Extra, Travel};
use support::upstream::TestUpstream;
use tokio::net::TcpListener;

/// Requests per case, half GET and half POST with a body.
const REQUESTS: usize = 300;

/// An address nothing listens on (bound, then released).
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

async fn start(travel: Travel, endpoints: &[String], route: &str) -> RunningProxy {
    let extra = Extra {
        pool: r#"balance = "round_robin""#,
        route,
        ..Extra::default()
    };
    travel::start(travel, endpoints, &extra).await
}

/// Sends REQUESTS requests, alternately GET and POST, each on a new connection, and
/// returns how many got something other than 200 (with the first such answer).
async fn failures(proxy: &RunningProxy) -> (usize, Option<String>) {
    let mut failed = 0;
    let mut first = None;
    for i in 0..REQUESTS {
        let mut client = RawClient::connect(proxy).await;
        let (method, request) = if i % 2 == 0 {
            ("GET", get(&format!("/get/{i}")))
        } else {
            let body = format!("{{\"n\":{i}}}");
            let head = format!(
                "POST /post/{i} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            ("POST", head + &body)
        };
        let response = client.request(method, &request).await;
        if response.status != 200 {
            failed += 1;
            first.get_or_insert_with(|| {
                format!("{method}: {} {}", response.status, response.text())
            });
        }
    }
    (failed, first)
}

/// One endpoint of three refuses connections: with the defaults no request fails, GET
/// or POST, and each reaches an endpoint that is up exactly once.
async fn a_refusing_endpoint_costs_no_request(travel: Travel) {
    let a = Upstream::start(echo_path).await;
    let b = Upstream::start(echo_path).await;
    let endpoints = [a.url(), closed_port().await, b.url()];
    let proxy = start(travel, &endpoints, "").await;
    let (failed, first) = failures(&proxy).await;
    assert_eq!(failed, 0, "failed requests of {REQUESTS}: first {first:?}");
    assert_eq!(a.seen().len() + b.seen().len(), REQUESTS);
}

/// `retry_connect_errors = false`: the refused requests fail with 502.
async fn switched_off_the_errors_reach_the_client(travel: Travel) {
    let a = Upstream::start(echo_path).await;
    let b = Upstream::start(echo_path).await;
    let endpoints = [a.url(), closed_port().await, b.url()];
    let proxy = start(travel, &endpoints, "retry_connect_errors = false").await;
    let (failed, first) = failures(&proxy).await;
    // Round robin sends every third request to the closed port.
    assert!(failed >= REQUESTS / 4, "only {failed} of {REQUESTS} failed");
    let first = first.expect("a failure");
    assert!(first.contains("502"), "{first}");
    assert!(first.contains("upstream_connect_failed"), "{first}");
}

/// Failures among `total` requests from `workers` concurrent clients while one of
/// three endpoints is killed (port closed, open connections cut) after a third of them:
/// (failed, failed among those started after the kill).
async fn kill_one_of_three_under_load(travel: Travel, route: &str) -> (usize, usize) {
    const WORKERS: usize = 16;
    const EACH: usize = 60;
    let upstreams = [
        TestUpstream::named("a")
            .delay(Duration::from_millis(2))
            .start()
            .await,
        TestUpstream::named("b")
            .delay(Duration::from_millis(2))
            .start()
            .await,
        TestUpstream::named("c")
            .delay(Duration::from_millis(2))
            .start()
            .await,
    ];
    let urls: Vec<String> = upstreams.iter().map(|u| u.url()).collect();
    let proxy = start(travel, &urls, route).await;
    let done = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let third = Arc::new(tokio::sync::Notify::new());
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let client = support::client();
        let url = proxy.url("/");
        let (done, killed, third) = (done.clone(), killed.clone(), third.clone());
        workers.push(tokio::spawn(async move {
            let (mut failed, mut failed_after) = (0, 0);
            for i in 0..EACH {
                let after_kill = killed.load(Ordering::SeqCst);
                let request = if (worker + i) % 2 == 0 {
                    client.get(format!("{url}get/{worker}/{i}"))
                } else {
                    client
                        .post(format!("{url}post/{worker}/{i}"))
                        .body("{\"x\":1}")
                };
                let ok = matches!(
                    tokio::time::timeout(STEP, request.send()).await,
                    Ok(Ok(response)) if response.status() == 200
                );
                if !ok {
                    failed += 1;
                    failed_after += usize::from(after_kill);
                }
                if done.fetch_add(1, Ordering::SeqCst) + 1 == WORKERS * EACH / 3 {
                    third.notify_one();
                }
            }
            (failed, failed_after)
        }));
    }
    within("a third of the requests", third.notified()).await;
    upstreams[1].kill();
    killed.store(true, Ordering::SeqCst);
    let (mut failed, mut failed_after) = (0, 0);
    for worker in workers {
        let (f, a) = within("a worker", worker).await.expect("worker");
        failed += f;
        failed_after += a;
    }
    eprintln!(
        "{travel:?} route={route:?}: {failed} of {} failed, {failed_after} started after the kill",
        WORKERS * EACH
    );
    (failed, failed_after)
}

/// With the defaults, killing one endpoint of three under load fails at most 1% of
/// requests (those in progress on it), and none sent after the kill.
async fn killing_an_endpoint_under_load_fails_at_most_one_percent(travel: Travel) {
    let (failed, failed_after) = kill_one_of_three_under_load(travel, "").await;
    assert!(failed * 100 <= 16 * 60, "{failed} failed");
    assert_eq!(failed_after, 0);
}

/// The same with `retry_connect_errors = false`: requests sent to the dead endpoint
/// after the kill fail (what every route saw before this default).
async fn killing_an_endpoint_with_failover_off_fails_requests(travel: Travel) {
    let route = "retry_connect_errors = false";
    let (failed, failed_after) = kill_one_of_three_under_load(travel, route).await;
    // About a third of the two thirds sent after the kill go to the dead endpoint.
    assert!(
        failed_after >= 16 * 60 / 10,
        "{failed} failed, {failed_after} after the kill"
    );
}

on_both_engines!(
    killing_an_endpoint_under_load_fails_at_most_one_percent,
    killing_an_endpoint_with_failover_off_fails_requests,
    a_refusing_endpoint_costs_no_request,
    switched_off_the_errors_reach_the_client,
);
