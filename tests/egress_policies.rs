//! Egress policies through real sockets on 127.0.0.1: per-host politeness (rate, wait
//! limit, overrides, concurrency), robots.txt, unreachable exits and their probe,
//! CONNECT tunnel caps and idle timeouts, the exits file and its watcher, destinations
//! refused before any exit proxy is asked, the egress access-log line, and the tunnel
//! and ban metrics.
//!
//! Nothing here waits a fixed time for background work (the probe, the exits-file
//! watcher, the log writer): conditions are polled until a deadline. The few bounded
//! windows below are there to show that something does *not* happen.

use crate::support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use support::exits::{ExitMode, HttpExit, Reply, get, get_ok, head_header, raw_connect, read_head};
use support::proxy::RunningProxy;
use support::upstream::{RunningUpstream, reply};
use support::{TestProxy, TestUpstream, parse_metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single step may take before the test calls it a hang.
const STEP: Duration = Duration::from_secs(5);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

/// Polls `check` every 20 ms until it gives `Some`, or panics after `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Config, clients, replies

/// Loopback destinations by address and by name (`localhost` resolves to 127.0.0.1).
const LOOPBACK: &str = r#""127.0.0.1/32", "::1/128", "localhost""#;

/// One `[[egress]]` listener "scraper" with these exits (inline tables), allowed
/// destinations and extra lines (egress keys, then possibly other tables).
fn config(exits: &str, allow: &str, extra: &str) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
exits = [{exits}]
allow = [{allow}]
{extra}
"#
    )
}

const DIRECT: &str = r#"{ url = "direct" }"#;

fn exit_entry(url: &str, name: &str) -> String {
    format!(r#"{{ url = "{url}", name = "{name}" }}"#)
}

/// A client that sends plain-HTTP requests through Junction.
fn through(proxy: &RunningProxy) -> reqwest::Client {
    let url = format!("http://{}", proxy.addr("scraper"));
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(url).unwrap())
        .timeout(STEP)
        .build()
        .unwrap()
}

/// `/metrics` of the admin listener, as text and as `series → value`.
async fn metrics(proxy: &RunningProxy) -> (String, HashMap<String, f64>) {
    let text = within("metrics", proxy.metrics_text()).await;
    let parsed = parse_metrics(&text);
    (text, parsed)
}

fn exit_up(exit: &str) -> String {
    format!(r#"junction_egress_exit_up{{egress="scraper",exit="{exit}"}}"#)
}

fn tunnel_bytes(exit: &str, direction: &str) -> String {
    format!(
        r#"junction_egress_tunnel_bytes_total{{egress="scraper",exit="{exit}",direction="{direction}"}}"#
    )
}

// ---------------------------------------------------------------------------------------
// Raw CONNECT

/// Reads the body of a raw answer whose head gave a `content-length`.
async fn read_body(stream: &mut TcpStream, head: &str) -> String {
    let length: usize = head_header(head, "content-length")
        .unwrap_or_else(|| panic!("no content-length: {head}"))
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    within("answer body", stream.read_exact(&mut body))
        .await
        .unwrap();
    String::from_utf8(body).unwrap()
}

/// Writes `data` into an open tunnel to the echo server and reads it back.
async fn echo_through(stream: &mut TcpStream, data: &[u8]) {
    stream.write_all(data).await.unwrap();
    let mut back = vec![0u8; data.len()];
    within("echo through the tunnel", stream.read_exact(&mut back))
        .await
        .unwrap();
    assert_eq!(back, data);
}

// ---------------------------------------------------------------------------------------
// Small servers of our own

/// A TCP echo server: every connection gets back what it sends, and is closed when the
/// client closes its side.
struct Echo {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                    let _ = write.shutdown().await;
                });
            }
        });
        Echo {
            addr,
            accepted,
            task,
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An exit that never connects anywhere: it counts the connections it accepts and
/// answers each with a `502` of its own. A test exit for destinations that must never
/// be asked for: whatever Junction did, nothing leaves this machine through it.
struct SinkExit {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl SinkExit {
    async fn start() -> SinkExit {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 4\r\nconnection: close\r\n\r\nsink",
                        )
                        .await;
                });
            }
        });
        SinkExit {
            addr,
            accepted,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SinkExit {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays every connection accepted on `addr` to `to`, byte for byte: puts a running
/// exit on a port chosen earlier.
struct Relay {
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(addr: SocketAddr, to: SocketAddr) -> Relay {
        let listener = TcpListener::bind(addr).await.expect("bind the relay port");
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
                    }
                });
            }
        });
        Relay { task }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
async fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Request arrivals at an origin: (Host header, path, instant).
type Arrivals = Arc<Mutex<Vec<(String, String, Instant)>>>;

/// A TestUpstream answering `200 ok` that notes when each request arrived.
async fn recording_origin() -> (RunningUpstream, Arrivals) {
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    let origin = TestUpstream::named("origin")
        .handler(move |request| {
            let host = request
                .headers()
                .get("host")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let host = host
                .rsplit_once(':')
                .map_or(host.clone(), |(h, _)| h.into());
            seen.lock()
                .unwrap()
                .push((host, request.uri().path().to_string(), Instant::now()));
            async { reply(200, "ok") }
        })
        .start()
        .await;
    (origin, arrivals)
}

fn arrivals_of(arrivals: &Arrivals, host: &str) -> Vec<Instant> {
    let mut at: Vec<Instant> = arrivals
        .lock()
        .unwrap()
        .iter()
        .filter(|(h, _, _)| h == host)
        .map(|(_, _, at)| *at)
        .collect();
    at.sort();
    at
}

fn gaps_ms(at: &[Instant]) -> Vec<u128> {
    at.windows(2)
        .map(|w| w[1].duration_since(w[0]).as_millis())
        .collect()
}

/// Sends `count` concurrent GETs to `url`; returns each reply with when it completed.
async fn concurrent_gets(
    client: &reqwest::Client,
    url: &str,
    count: usize,
) -> Vec<JoinHandle<(Reply, Instant)>> {
    (0..count)
        .map(|i| {
            let client = client.clone();
            let url = format!("{url}/{i}");
            tokio::spawn(async move {
                let reply = get(&client, &url).await;
                (reply, Instant::now())
            })
        })
        .collect()
}

async fn join_all(tasks: Vec<JoinHandle<(Reply, Instant)>>) -> Vec<(Reply, Instant)> {
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("request task"));
    }
    out
}

// ---------------------------------------------------------------------------------------
// 1. Politeness: rate, wait limit, overrides

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_rate_spaces_requests_to_one_host_and_leaves_others_alone() {
    let (origin, arrivals) = recording_origin().await;
    let proxy = TestProxy::from_toml(&config(DIRECT, LOOPBACK, r#"per_host_rate = "2/s""#))
        .start()
        .await;
    let client = through(&proxy);
    let port = origin.addr.port();

    let start = Instant::now();
    let by_ip = concurrent_gets(&client, &format!("http://127.0.0.1:{port}/ip"), 5).await;
    let by_name = concurrent_gets(&client, &format!("http://localhost:{port}/name"), 5).await;
    for (reply, _) in join_all(by_ip)
        .await
        .into_iter()
        .chain(join_all(by_name).await)
    {
        assert_eq!(reply.status, 200, "{reply:?}");
    }

    for host in ["127.0.0.1", "localhost"] {
        let at = arrivals_of(&arrivals, host);
        assert_eq!(at.len(), 5, "{host}");
        let gaps = gaps_ms(&at);
        assert!(
            gaps.iter().all(|gap| *gap >= 400),
            "2/s for {host}: arrivals must be ~500 ms apart, gaps were {gaps:?} ms"
        );
        // Each host has its own schedule: neither waits behind the other's queue.
        let first = at[0].duration_since(start);
        assert!(
            first < Duration::from_millis(400),
            "the first request to {host} went after {first:?}: queued behind the other host?"
        );
    }
    assert_eq!(origin.requests(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_override_exempts_that_host_from_the_default_rate() {
    let (origin, arrivals) = recording_origin().await;
    let extra = r#"
per_host_rate = "2/s"
hosts = [{ host = "localhost", rate = "100/s" }]
"#;
    let proxy = TestProxy::from_toml(&config(DIRECT, LOOPBACK, extra))
        .start()
        .await;
    let client = through(&proxy);
    let port = origin.addr.port();

    let slow = concurrent_gets(&client, &format!("http://127.0.0.1:{port}/slow"), 5).await;
    let fast = concurrent_gets(&client, &format!("http://localhost:{port}/fast"), 5).await;
    let fast = join_all(fast).await;
    let slow = join_all(slow).await;
    for (reply, _) in slow.iter().chain(&fast) {
        assert_eq!(reply.status, 200, "{reply:?}");
    }

    let slow_at = arrivals_of(&arrivals, "127.0.0.1");
    let gaps = gaps_ms(&slow_at);
    assert!(gaps.iter().all(|gap| *gap >= 400), "2/s: gaps {gaps:?} ms");
    let last_slow = *slow_at.last().unwrap();
    for (_, done) in &fast {
        assert!(
            *done < last_slow,
            "every request to the overridden host completes before the default-rate host's last one is admitted"
        );
    }
    let fast_at = arrivals_of(&arrivals, "localhost");
    let span = fast_at.last().unwrap().duration_since(fast_at[0]);
    assert!(
        span < Duration::from_millis(400),
        "100/s: 5 requests took {span:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_beyond_per_host_wait_is_a_503_with_retry_after() {
    let (origin, _) = recording_origin().await;
    let extra = r#"
per_host_rate = "2/s"
per_host_wait = "1s"
"#;
    let proxy = TestProxy::from_toml(&config(DIRECT, LOOPBACK, extra))
        .start()
        .await;
    let client = through(&proxy);
    let url = format!("http://127.0.0.1:{}/w", origin.addr.port());

    let replies = join_all(concurrent_gets(&client, &url, 5).await).await;
    let (ok, refused): (Vec<_>, Vec<_>) = replies.iter().partition(|(r, _)| r.status == 200);
    // Slots at 0, 0.5, 1 s fit within the 1 s wait; 1.5 s and 2 s do not.
    assert!(ok.len() >= 2, "{replies:?}");
    assert!(!refused.is_empty(), "no request was refused: {replies:?}");
    for (reply, _) in &refused {
        reply.assert_junction_error(503, "connection_limit_reached", "politeness");
        let retry_after: u64 = reply
            .header("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After: {reply:?}"))
            .parse()
            .expect("Retry-After in seconds");
        assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
        assert!(reply.header("x-junction-exit").is_none(), "{reply:?}");
    }
    assert_eq!(
        origin.requests(),
        ok.len(),
        "refused requests never reach the site"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Politeness: concurrency

/// A body that sends "start", then waits for its gate before sending "end".
struct GatedBody {
    started: bool,
    gate: Option<oneshot::Receiver<()>>,
}

impl Body for GatedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.started {
            self.started = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"start")))));
        }
        let Some(gate) = self.gate.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(gate).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => {
                self.gate = None;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"end")))))
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_concurrency_holds_the_next_request_until_the_body_ends() {
    let arrivals: Arrivals = Arc::default();
    let (release, gate) = oneshot::channel::<()>();
    let gate = Arc::new(Mutex::new(Some(gate)));
    let seen = arrivals.clone();
    let origin = TestUpstream::named("origin")
        .handler(move |request| {
            let path = request.uri().path().to_string();
            seen.lock()
                .unwrap()
                .push((String::new(), path.clone(), Instant::now()));
            let gate = gate.lock().unwrap().take().filter(|_| path == "/held");
            async move {
                match gate {
                    Some(gate) => {
                        let body = GatedBody {
                            started: false,
                            gate: Some(gate),
                        };
                        http::Response::new(body.boxed())
                    }
                    None => reply(200, "ok"),
                }
            }
        })
        .start()
        .await;
    let arrived = |path: &str| -> Option<Instant> {
        arrivals
            .lock()
            .unwrap()
            .iter()
            .find(|(_, p, _)| p == path)
            .map(|(_, _, at)| *at)
    };
    let proxy = TestProxy::from_toml(&config(DIRECT, LOOPBACK, "per_host_concurrency = 1"))
        .start()
        .await;
    let client = through(&proxy);
    let port = origin.addr.port();

    // The first request's head and first chunk arrive; its body stays open.
    let mut first = within(
        "first request",
        client.get(format!("http://127.0.0.1:{port}/held")).send(),
    )
    .await
    .unwrap();
    assert_eq!(first.status(), 200);
    let chunk = within("first chunk", first.chunk()).await.unwrap().unwrap();
    assert_eq!(&chunk[..], b"start");

    let second = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, &format!("http://127.0.0.1:{port}/second")).await })
    };
    // Another host is not held: it goes through while the second request waits.
    get_ok(&client, &format!("http://localhost:{port}/other")).await;
    // A bounded window to show the second request is held, not a synchronisation.
    let held = tokio::time::timeout(Duration::from_millis(300), async {
        eventually("second arrives", STEP, || async { arrived("/second") }).await
    })
    .await;
    assert!(
        held.is_err(),
        "the second request to 127.0.0.1 was forwarded while the first one's body was open"
    );

    let released = Instant::now();
    release.send(()).unwrap();
    let rest = within("rest of the first body", first.bytes())
        .await
        .unwrap();
    assert_eq!(&rest[..], b"end");
    let second = within("second request", second).await.unwrap();
    assert_eq!(second.status, 200, "{second:?}");
    let second_at = arrived("/second").expect("the second request arrived");
    assert!(
        second_at >= released,
        "the second request arrived before the first one's body ended"
    );
    assert_eq!(origin.requests(), 3);
}

// ---------------------------------------------------------------------------------------
// 3. robots.txt

/// An origin serving `robots` at /robots.txt and `page <path>` elsewhere; counts the
/// robots.txt fetches.
async fn robots_origin(robots: &'static str) -> (RunningUpstream, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let origin = TestUpstream::named("origin")
        .handler(move |request| {
            let path = request.uri().path().to_string();
            if path == "/robots.txt" {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                if path == "/robots.txt" {
                    reply(200, robots)
                } else {
                    reply(200, format!("page {path}"))
                }
            }
        })
        .start()
        .await;
    (origin, fetches)
}

#[tokio::test]
async fn robots_txt_is_obeyed_and_fetched_once() {
    let (origin, fetches) = robots_origin("User-agent: *\nDisallow: /private\n").await;
    let proxy = TestProxy::from_toml(&config(DIRECT, LOOPBACK, "respect_robots = true"))
        .start()
        .await;
    let client = through(&proxy);
    let site = origin.url();

    // The first requests come together: they share one fetch.
    let first: Vec<_> = (0..4)
        .map(|i| {
            let client = client.clone();
            let url = format!("{site}/public/{i}");
            tokio::spawn(async move { get(&client, &url).await })
        })
        .collect();
    for task in first {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
    }

    let refused = get(&client, &format!("{site}/private")).await;
    refused.assert_junction_error(403, "http_request_denied", "robots");
    let refused = get(&client, &format!("{site}/private/deeper?x=1")).await;
    refused.assert_junction_error(403, "http_request_denied", "robots");
    let page = get_ok(&client, &format!("{site}/public")).await;
    assert_eq!(page.body, "page /public");

    assert_eq!(fetches.load(Ordering::SeqCst), 1, "robots.txt fetched once");
    assert_eq!(
        origin.requests(),
        1 + 4 + 1,
        "robots.txt, four public pages and one more; nothing private"
    );
}

#[tokio::test]
async fn a_group_naming_the_robots_user_agent_overrides_the_star_group() {
    const ROBOTS: &str = "User-agent: *\nDisallow: /private\n\nUser-agent: mybot\nDisallow:\n";
    // Our own agent named: the `*` group does not apply.
    let (origin, fetches) = robots_origin(ROBOTS).await;
    let extra = "respect_robots = true\nrobots_user_agent = \"mybot\"";
    let proxy = TestProxy::from_toml(&config(DIRECT, LOOPBACK, extra))
        .start()
        .await;
    let reply = get_ok(&through(&proxy), &format!("{}/private", origin.url())).await;
    assert_eq!(reply.body, "page /private");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // The same file for the default agent: the `*` group applies.
    let (origin, _) = robots_origin(ROBOTS).await;
    let proxy = TestProxy::from_toml(&config(DIRECT, LOOPBACK, "respect_robots = true"))
        .start()
        .await;
    let reply = get(&through(&proxy), &format!("{}/private", origin.url())).await;
    reply.assert_junction_error(403, "http_request_denied", "robots");
}

// ---------------------------------------------------------------------------------------
// 4. Unreachable exits and their probe

#[tokio::test]
async fn an_unreachable_exit_is_skipped_probed_and_used_again_once_it_answers() {
    let (origin, _) = recording_origin().await;
    let a = HttpExit::start("a").await;
    let dead_addr = free_port().await;
    let exits = [
        exit_entry(&format!("http://{dead_addr}"), "dead"),
        exit_entry(&a.url(), "a"),
    ]
    .join(", ");
    let proxy = TestProxy::from_toml(&config(
        &exits,
        r#""127.0.0.1/32""#,
        r#"probe_interval = "100ms""#,
    ))
    .start()
    .await;
    let client = through(&proxy);

    for i in 0..10 {
        let reply = get_ok(&client, &format!("{}/r/{i}", origin.url())).await;
        assert_eq!(reply.exit(), "a");
    }
    assert_eq!(a.plain_count(), 10);
    let (text, m) = metrics(&proxy).await;
    assert_eq!(m.get(&exit_up("dead")), Some(&0.0), "{text}");
    assert_eq!(m.get(&exit_up("a")), Some(&1.0), "{text}");
    let failed = r#"junction_egress_requests_total{egress="scraper",exit="dead",region="",outcome="exit_error"}"#;
    assert!(m.get(failed).copied().unwrap_or(0.0) >= 1.0, "{text}");

    // An exit comes up on the dead port; the probe notices and the rotation uses it.
    let b = HttpExit::start("b").await;
    let _relay = Relay::start(dead_addr, b.addr()).await;
    eventually("exit_up 1 for the revived exit", STEP, || async {
        let (_, m) = metrics(&proxy).await;
        (m.get(&exit_up("dead")) == Some(&1.0)).then_some(())
    })
    .await;
    eventually("a request through the revived exit", STEP, || async {
        let reply = get_ok(&client, &format!("{}/back", origin.url())).await;
        (reply.exit() == "dead").then_some(())
    })
    .await;
    assert!(b.plain_count() >= 1, "the revived exit got the request");
}

// ---------------------------------------------------------------------------------------
// 5. Tunnels per client

#[tokio::test]
async fn max_tunnels_per_client_refuses_a_third_tunnel_until_one_closes() {
    let echo = Echo::start().await;
    let proxy = TestProxy::from_toml(&config(
        DIRECT,
        r#""127.0.0.1/32""#,
        "max_tunnels_per_client = 2",
    ))
    .start()
    .await;
    let junction = proxy.addr("scraper");
    let target = echo.addr.to_string();

    let (head, mut one) = raw_connect(junction, &target, "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (head, mut two) = raw_connect(junction, &target, "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    echo_through(&mut one, b"one").await;
    echo_through(&mut two, b"two").await;

    let (head, mut three) = raw_connect(junction, &target, "").await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    let status = head_header(&head, "proxy-status").unwrap_or_default();
    assert!(
        status.starts_with("junction; error=connection_limit_reached"),
        "{head}"
    );
    let body = read_body(&mut three, &head).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["type"], "connection_limit_reached");
    assert_eq!(
        echo.accepted.load(Ordering::SeqCst),
        2,
        "nothing opened for the third"
    );

    drop(one);
    let mut four = eventually("a tunnel after one closed", STEP, || {
        let target = target.clone();
        async move {
            let (head, stream) = raw_connect(junction, &target, "").await;
            head.starts_with("HTTP/1.1 200").then_some(stream)
        }
    })
    .await;
    echo_through(&mut four, b"four").await;
    echo_through(&mut two, b"two again").await;
}

// ---------------------------------------------------------------------------------------
// 6. Tunnel idle timeout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tunnels_are_closed_and_busy_ones_stay_open() {
    let echo = Echo::start().await;
    let proxy = TestProxy::from_toml(&config(
        DIRECT,
        r#""127.0.0.1/32""#,
        r#"idle_timeout = "300ms""#,
    ))
    .start()
    .await;
    let junction = proxy.addr("scraper");
    let target = echo.addr.to_string();

    let (head, mut idle) = raw_connect(junction, &target, "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (head, mut busy) = raw_connect(junction, &target, "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let opened = Instant::now();

    let idle_closed = tokio::spawn(async move {
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut buffer)).await;
        (read.map(|r| r.map_err(|e| e.kind())), opened.elapsed())
    });

    // Traffic every 100 ms for 1.2 s: four idle timeouts' worth.
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    for i in 0..12 {
        ticks.tick().await;
        echo_through(&mut busy, format!("ping {i}").as_bytes()).await;
    }
    assert!(opened.elapsed() >= Duration::from_secs(1));
    echo_through(&mut busy, b"still open").await;

    let (read, after) = idle_closed.await.unwrap();
    match read {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("the idle tunnel carried {n} bytes"),
        Err(_) => panic!("the idle tunnel was still open after 3 s"),
    }
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?}, before the idle timeout"
    );
}

// ---------------------------------------------------------------------------------------
// 7. The exits file

fn write_file(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn the_exits_file_is_watched_and_a_bad_file_is_refused() {
    let (origin, _) = recording_origin().await;
    let a = HttpExit::start("a").await;
    let b = HttpExit::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exits.txt");
    write_file(&file, &format!("{} region=us name=a\n", a.url()));
    let toml = format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
allow = ["127.0.0.1/32"]
exits_file = "{}"
exits_file_poll = "100ms"
"#,
        file.display()
    );
    let proxy = TestProxy::from_toml(&toml).start().await;
    let client = through(&proxy);
    let page = |i: usize| format!("{}/f/{i}", origin.url());

    for i in 0..3 {
        assert_eq!(get_ok(&client, &page(i)).await.exit(), "a");
    }

    // Exit b replaces a (a comment makes the length differ, whatever the mtime says).
    write_file(&file, &format!("# now b\n{} region=us name=b\n", b.url()));
    eventually("requests through b", STEP, || async {
        (get_ok(&client, &page(10)).await.exit() == "b").then_some(())
    })
    .await;
    let before = a.plain_count();
    for i in 0..3 {
        assert_eq!(get_ok(&client, &page(20 + i)).await.exit(), "b");
    }

    // A file with a bad line is refused as a whole: its good line (a) is not taken.
    write_file(
        &file,
        &format!("{} region=us name=a\nftp://nowhere:21 region=us\n", a.url()),
    );
    let window = Instant::now();
    while window.elapsed() < Duration::from_millis(600) {
        assert_eq!(
            get_ok(&client, &page(30)).await.exit(),
            "b",
            "a refused exits file changed the exits"
        );
    }
    assert_eq!(a.plain_count(), before);

    // The watcher is still alive: a good file is taken again.
    write_file(&file, &format!("{} region=us name=a\n", a.url()));
    eventually("requests through a again", STEP, || async {
        (get_ok(&client, &page(40)).await.exit() == "a").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_config_whose_exits_file_has_a_bad_line_fails_to_load() {
    let dir = tempfile::tempdir().unwrap();
    let exits = dir.path().join("exits.txt");
    write_file(
        &exits,
        "# exits\nhttp://127.0.0.1:1 name=a\nhttp://127.0.0.1:2 colour=red\n",
    );
    let toml = format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
exits_file = "{}"
"#,
        exits.display()
    );

    // In-process, as a reload would see it.
    let errors = match junction::server::Gateway::from_str(
        &toml,
        dir.path(),
        Arc::new(junction::balance::SplitMix::with_seed(7)),
    ) {
        Ok(_) => panic!("a bad exits file was accepted"),
        Err(errors) => errors,
    };
    let error = errors
        .0
        .iter()
        .find(|e| e.path == "egress[0].exits_file")
        .unwrap_or_else(|| panic!("no error names egress[0].exits_file: {errors}"));
    assert!(error.message.contains("line 3"), "{error}");
    assert!(error.message.contains("colour=red"), "{error}");

    // `junction check`, as a user runs it.
    let config = dir.path().join("junction.toml");
    write_file(&config, &toml);
    let output = within(
        "junction check",
        tokio::process::Command::new(support::process::binary())
            .arg("check")
            .arg("--config")
            .arg(&config)
            .output(),
    )
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("egress[0].exits_file"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// 8. Destinations refused before any exit proxy is asked

#[tokio::test]
async fn special_destinations_are_refused_before_any_exit_proxy_is_asked() {
    let sink = SinkExit::start().await;
    let proxy = TestProxy::from_toml(&config(&exit_entry(&sink.url(), "sink"), "", ""))
        .start()
        .await;
    let client = through(&proxy);

    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://127.0.0.1:9/",
        "http://[::ffff:169.254.169.254]/latest/meta-data",
        "http://[fe80::1]/",
    ] {
        let reply = get(&client, url).await;
        assert_eq!(reply.status, 403, "{url}: {reply:?}");
        reply.assert_junction_error(403, "destination_ip_prohibited", "denied");
    }
    for target in ["169.254.169.254:80", "10.0.0.1:443"] {
        let (head, _) = raw_connect(proxy.addr("scraper"), target, "").await;
        assert!(head.starts_with("HTTP/1.1 403"), "{target}: {head}");
        let status = head_header(&head, "proxy-status").unwrap_or_default();
        assert!(
            status.starts_with("junction; error=destination_ip_prohibited"),
            "{head}"
        );
    }
    assert_eq!(
        sink.accepted(),
        0,
        "the exit was asked for a refused destination"
    );

    let (text, m) = metrics(&proxy).await;
    let denied = r#"junction_egress_requests_total{egress="scraper",exit="none",region="",outcome="denied"}"#;
    assert_eq!(m.get(denied), Some(&7.0), "{text}");
}

/// 169.254.169.254 (and 127.0.0.1) spelled as resolvers (inet_aton, getaddrinfo) still
/// read them: as one decimal number, in hex, in octal, shortened. An exit proxy that
/// resolves these names reaches the metadata address (the HttpExit fixture would:
/// `TcpStream::connect(("2852039166", 80))`), so they must be refused like the
/// dotted-quad spelling. Raw requests: reqwest's URL parser would normalise them first.
#[tokio::test]
async fn ip_literals_in_other_spellings_are_refused_before_any_exit_proxy_is_asked() {
    let sink = SinkExit::start().await;
    let proxy = TestProxy::from_toml(&config(&exit_entry(&sink.url(), "sink"), "", ""))
        .start()
        .await;
    let mut let_through = Vec::new();
    for host in [
        "2852039166",
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "169.254.43518",
        "127.1",
    ] {
        let mut stream = TcpStream::connect(proxy.addr("scraper")).await.unwrap();
        stream
            .write_all(
                format!("GET http://{host}/latest HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let head = within("answer", read_head(&mut stream)).await;
        if !head.starts_with("HTTP/1.1 403") {
            let_through.push(format!("GET {host}: {}", head.lines().next().unwrap_or("")));
        }
        let (head, _) = raw_connect(proxy.addr("scraper"), &format!("{host}:80"), "").await;
        if !head.starts_with("HTTP/1.1 403") {
            let_through.push(format!(
                "CONNECT {host}: {}",
                head.lines().next().unwrap_or("")
            ));
        }
    }
    assert!(let_through.is_empty(), "sent to the exit: {let_through:#?}");
    assert_eq!(sink.accepted(), 0);
}

// ---------------------------------------------------------------------------------------
// 9. The egress access-log line

#[tokio::test]
async fn access_log_has_a_line_per_request_and_per_tunnel() {
    let (origin, _) = recording_origin().await;
    let echo = Echo::start().await;
    let a = HttpExit::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let extra = format!("\n[access_log]\npath = \"{}\"\n", log.display());
    let proxy = TestProxy::from_toml(&config(
        &exit_entry(&a.url(), "a"),
        r#""127.0.0.1/32""#,
        &extra,
    ))
    .start()
    .await;

    get_ok(&through(&proxy), &format!("{}/logged?q=1", origin.url())).await;
    let (head, mut tunnel) = raw_connect(proxy.addr("scraper"), &echo.addr.to_string(), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    echo_through(&mut tunnel, b"0123456789").await;
    drop(tunnel);

    let lines = eventually("two egress lines in the access log", STEP, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .filter(|l: &serde_json::Value| l["kind"] == "egress")
            .collect();
        (lines.len() >= 2).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let plain = lines
        .iter()
        .find(|l| l["method"] == "GET")
        .expect("the GET line");
    let tunnel = lines
        .iter()
        .find(|l| l["method"] == "CONNECT")
        .expect("the CONNECT line");

    assert_eq!(plain["egress"], "scraper", "{plain}");
    assert_eq!(plain["exit"], "a", "{plain}");
    assert_eq!(plain["host"], "127.0.0.1", "{plain}");
    assert_eq!(plain["path"], "/logged?q=1", "{plain}");
    assert_eq!(plain["status"], 200, "{plain}");
    assert_eq!(plain["outcome"], "ok", "{plain}");
    assert_eq!(plain["attempts"], 1, "{plain}");
    assert_eq!(plain["client_ip"], "127.0.0.1", "{plain}");
    assert_eq!(plain["bytes_out"], 2, "the body \"ok\": {plain}");

    assert_eq!(tunnel["exit"], "a", "{tunnel}");
    assert_eq!(tunnel["host"], "127.0.0.1", "{tunnel}");
    assert_eq!(tunnel["outcome"], "ok", "{tunnel}");
    assert_eq!(tunnel["attempts"], 1, "{tunnel}");
    assert_eq!(tunnel["bytes_in"], 10, "{tunnel}");
    assert_eq!(tunnel["bytes_out"], 10, "{tunnel}");
    assert_eq!(
        tunnel["status"], 200,
        "the CONNECT was answered 200: {tunnel}"
    );
}

// ---------------------------------------------------------------------------------------
// 10. Tunnel bytes and ban metrics

#[tokio::test]
async fn tunnel_bytes_are_counted_per_exit_and_direction_while_the_tunnel_is_open() {
    let echo = Echo::start().await;
    let a = HttpExit::start("a").await;
    let proxy = TestProxy::from_toml(&config(&exit_entry(&a.url(), "a"), r#""127.0.0.1/32""#, ""))
        .start()
        .await;
    let (_, m) = metrics(&proxy).await;
    let up_before = m.get(&tunnel_bytes("a", "up")).copied().unwrap_or(0.0);
    let down_before = m.get(&tunnel_bytes("a", "down")).copied().unwrap_or(0.0);

    let (head, mut tunnel) = raw_connect(proxy.addr("scraper"), &echo.addr.to_string(), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let data = vec![b'x'; 100_000];
    echo_through(&mut tunnel, &data).await;

    // Counted as the bytes pass: the tunnel is still open.
    let (up, down) = eventually("tunnel bytes in the metrics", STEP, || async {
        let (_, m) = metrics(&proxy).await;
        let up = m.get(&tunnel_bytes("a", "up")).copied().unwrap_or(0.0) - up_before;
        let down = m.get(&tunnel_bytes("a", "down")).copied().unwrap_or(0.0) - down_before;
        (up >= data.len() as f64 && down >= data.len() as f64).then_some((up, down))
    })
    .await;
    assert_eq!((up, down), (100_000.0, 100_000.0));
    let (text, m) = metrics(&proxy).await;
    assert_eq!(
        m.get(r#"junction_egress_open_tunnels{egress="scraper"}"#),
        Some(&1.0),
        "{text}"
    );
    echo_through(&mut tunnel, b"still open").await;
}

#[tokio::test]
async fn bans_are_counted_per_exit() {
    let (origin, _) = recording_origin().await;
    let a = HttpExit::start("a").await;
    let b = HttpExit::start("b").await;
    a.set_mode(ExitMode::Captcha);
    let exits = [exit_entry(&a.url(), "a"), exit_entry(&b.url(), "b")].join(", ");
    let extra = r#"ban = { status = [403], cooldown = "60s" }"#;
    let proxy = TestProxy::from_toml(&config(&exits, r#""127.0.0.1/32""#, extra))
        .start()
        .await;
    let client = through(&proxy);
    for i in 0..4 {
        assert_eq!(
            get_ok(&client, &format!("{}/b/{i}", origin.url()))
                .await
                .exit(),
            "b"
        );
    }
    let (text, m) = metrics(&proxy).await;
    let bans =
        |exit: &str| format!(r#"junction_egress_bans_total{{egress="scraper",exit="{exit}"}}"#);
    assert_eq!(m.get(&bans("a")), Some(&1.0), "{text}");
    assert_eq!(m.get(&bans("b")), Some(&0.0), "{text}");
    let banned =
        r#"junction_egress_requests_total{egress="scraper",exit="a",region="",outcome="banned"}"#;
    assert_eq!(m.get(banned), Some(&1.0), "{text}");
    assert_eq!(
        m.get(r#"junction_egress_cooldowns{egress="scraper",exit="a"}"#),
        Some(&1.0),
        "{text}"
    );
    assert_eq!(a.plain_count(), 1);
    // The egress families, with live series, are valid exposition text.
    support::promtool_check(&text).await;
}
