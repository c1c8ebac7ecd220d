//! SOCKS5 clients (`protocol = "socks5"`): `curl --socks5-hostname`, Python `requests`
//! (PySocks) and a hand-written RFC 1928 client, through real HTTP and SOCKS5 exits;
//! region and session in the user name, users checked by RFC 1929, refusals told by
//! RFC 1928 reply codes, and tunnels counted and logged as CONNECT tunnels are.

use crate::support;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use support::exits::{domain, socks_handshake};
use support::process::python;
use support::proxy::RunningProxy;
use support::{HttpExit, Socks5Exit, TestProxy, TestUpstream, TlsOrigin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const STEP: Duration = Duration::from_secs(5);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

/// SOCKS5 listener "socks": exit "a" (HTTP proxy, us) and "b" (SOCKS5 proxy, fr) in
/// turn; sites on loopback allowed.
fn config(a: &HttpExit, b: &Socks5Exit, extra: &str) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"
{extra}

[[egress]]
name = "socks"
bind = "127.0.0.1:0"
protocol = "socks5"
rotation = "round_robin"
allow = ["127.0.0.1/32"]
exits = [
  {{ url = "{a}", region = "us", name = "a" }},
  {{ url = "{b}", region = "fr", name = "b" }},
]
"#,
        a = a.url(),
        b = b.url(),
    )
}

/// `curl --socks5-hostname` through the listener; the body it printed.
async fn curl(proxy: SocketAddr, user: Option<&str>, url: &str) -> String {
    let mut command = tokio::process::Command::new("curl");
    command
        .args(["--silent", "--show-error", "--max-time", "5"])
        .args(["--socks5-hostname", &proxy.to_string()]);
    if let Some(user) = user {
        command.args(["--proxy-user", user]);
    }
    let output = within("curl", command.arg(url).output())
        .await
        .expect("curl runs (scripts/test installs it)");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The first `count` egress lines of the access log that `keep` selects, once written.
async fn access_lines(
    log: &std::path::Path,
    count: usize,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + STEP;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l: &serde_json::Value| l["kind"] == "egress" && keep(l))
            .collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(Instant::now() < deadline, "access log:\n{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn tunnels(a: &HttpExit, b: &Socks5Exit) -> (usize, usize) {
    (a.connect_count(), b.connect_count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_rotates_over_the_exits_and_picks_the_region_in_its_user_name() {
    let (a, b) = (HttpExit::start("a").await, Socks5Exit::start("b").await);
    let site = TestUpstream::named("site").start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let extra = format!("[access_log]\npath = \"{}\"\n", log.display());
    let proxy = TestProxy::from_toml(&config(&a, &b, &extra)).start().await;
    let listener = proxy.addr("socks");

    for i in 0..4 {
        let body = curl(listener, None, &format!("{}/page{i}", site.url())).await;
        assert!(body.contains(&format!("\"uri\":\"/page{i}\"")), "{body}");
    }
    assert_eq!(tunnels(&a, &b), (2, 2), "round robin over the tunnels");

    for _ in 0..3 {
        curl(
            listener,
            Some("scraper-region-fr:pw"),
            &format!("{}/fr", site.url()),
        )
        .await;
    }
    assert_eq!(tunnels(&a, &b), (2, 5), "region fr is exit b");
    assert_eq!(b.last_target(), Some(site.addr.to_string()));

    let metrics = proxy.metrics_text().await;
    for (exit, region, count) in [("a", "us", 2), ("b", "fr", 5)] {
        let line = format!(
            r#"junction_egress_requests_total{{egress="socks",exit="{exit}",region="{region}",outcome="ok"}} {count}"#
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }

    // A tunnel's line is written when it closes, which is not always in the order the
    // requests were sent: the lines are told apart by their user.
    let lines = access_lines(&log, 7, |_| true).await;
    let scraper: Vec<_> = lines.iter().filter(|l| l["user"] == "scraper").collect();
    assert_eq!(scraper.len(), 3, "{lines:?}");
    for line in scraper {
        assert_eq!(line["egress"], "socks");
        assert_eq!(line["method"], "CONNECT");
        assert_eq!(line["exit"], "b");
        assert_eq!(line["outcome"], "ok");
        assert!(line["bytes_out"].as_u64().unwrap() > 0, "{line}");
    }
    assert_eq!(
        lines.iter().filter(|l| l["user"].is_null()).count(),
        4,
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_keeps_its_session_on_one_exit_over_https() {
    let (a, b) = (HttpExit::start("a").await, Socks5Exit::start("b").await);
    let origin = TlsOrigin::start("origin").await;
    let proxy = TestProxy::from_toml(&config(&a, &b, "")).start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("origin.pem");
    std::fs::write(&ca, origin.ca_pem()).unwrap();
    let script = format!(
        r#"
import requests
proxy = "socks5h://scraper-session-cart42:pw@{listener}"
for i in range(4):
    reply = requests.get("{url}/py%d" % i, proxies={{"https": proxy}}, verify="{ca}", timeout=5)
    print(reply.status_code, reply.text)
"#,
        listener = proxy.addr("socks"),
        url = origin.url(),
        ca = ca.display(),
    );
    let output = python(&script).await;
    assert_eq!(output.lines().count(), 4, "{output}");
    for (i, line) in output.lines().enumerate() {
        assert_eq!(line, format!("200 secure origin /py{i}"));
    }
    let counts = tunnels(&a, &b);
    assert!(
        counts == (4, 0) || counts == (0, 4),
        "a session keeps its exit: {counts:?}"
    );
    let view = proxy.admin_json("/api/egress").await;
    assert_eq!(
        view["egress"][0]["sessions"][0]["session"], "cart42",
        "{view}"
    );
}

#[tokio::test]
async fn refusals_get_their_rfc_1928_reply_codes() {
    let (a, b) = (HttpExit::start("a").await, Socks5Exit::start("b").await);
    let site = TestUpstream::named("site").start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let extra = format!("[access_log]\npath = \"{}\"\n", log.display());
    let proxy = TestProxy::from_toml(&config(&a, &b, &extra)).start().await;
    let listener = proxy.addr("socks");
    let v4 = |ip: [u8; 4]| vec![1, ip[0], ip[1], ip[2], ip[3]];
    let port = site.addr.port();

    // [greeting answer (2), request answer (VER REP RSV ATYP)]
    let reply = |replies: &[u8]| replies[3];
    for (command, address, expected, what) in [
        (2, v4([127, 0, 0, 1]), 0x07, "BIND"),
        (3, v4([127, 0, 0, 1]), 0x07, "UDP ASSOCIATE"),
        (1, vec![9, 1, 2, 3, 4], 0x08, "an unknown address type"),
        (1, v4([10, 0, 0, 1]), 0x02, "a private address not allowed"),
        (1, v4([169, 254, 169, 254]), 0x02, "cloud metadata"),
        (1, domain("a b"), 0x01, "a host name with a space"),
    ] {
        let (_, replies) = within(
            what,
            socks_handshake(listener, &[0], None, command, &address, port),
        )
        .await;
        assert_eq!(&replies[..2], [5, 0], "{what}");
        assert_eq!(reply(&replies), expected, "{what}: {replies:?}");
    }
    assert_eq!(tunnels(&a, &b), (0, 0), "no exit was asked");

    // Not SOCKS5 at all: the connection is closed without an answer.
    let mut stream = TcpStream::connect(listener).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    within("close", stream.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");

    // A successful CONNECT, for contrast, speaks to the site.
    let (mut stream, replies) = within(
        "CONNECT",
        socks_handshake(listener, &[0], None, 1, &v4([127, 0, 0, 1]), port),
    )
    .await;
    assert_eq!(reply(&replies), 0x00, "{replies:?}");
    stream
        .write_all(b"GET /hand HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    within("answer", stream.read_to_end(&mut answer))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("\"uri\":\"/hand\""));

    let metrics = proxy.metrics_text().await;
    let refused = r#"junction_egress_requests_total{egress="socks",exit="none",region="",outcome="denied"} 2"#;
    assert!(metrics.contains(refused), "{metrics}");
    // Requests that do not parse are logged too, without a host.
    let bad = access_lines(&log, 1, |l| l["outcome"] == "bad_request").await;
    assert_eq!(bad[0]["status"], 400, "{}", bad[0]);
    assert_eq!(bad[0]["host"], serde_json::Value::Null, "{}", bad[0]);
}

#[tokio::test]
async fn users_authenticate_by_rfc_1929_and_keep_their_parameters() {
    let (a, b) = (HttpExit::start("a").await, Socks5Exit::start("b").await);
    let site = TestUpstream::named("site").start().await;
    // The password of "scraper" is "pw" (as in examples/egress.toml).
    let users = r#"users = [{ name = "scraper", password_hash = "sha256:30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4" }]"#;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let extra = format!("[access_log]\npath = \"{}\"\n", log.display());
    let text = config(&a, &b, &extra).replace(
        "rotation = \"round_robin\"",
        &format!("rotation = \"round_robin\"\n{users}"),
    );
    let proxy: RunningProxy = TestProxy::from_toml(&text).start().await;
    let listener = proxy.addr("socks");
    let target = [1, 127, 0, 0, 1];
    let port = site.addr.port();

    let (_, replies) = socks_handshake(listener, &[0], None, 1, &target, port).await;
    assert_eq!(replies, [5, 0xff], "no authentication is not acceptable");
    let (_, replies) = socks_handshake(
        listener,
        &[0, 2],
        Some(("scraper", "nope")),
        1,
        &target,
        port,
    )
    .await;
    assert_eq!(replies, [5, 2, 1, 1], "wrong password");
    // Both refusals are in the access log as a refused HTTP CONNECT is: 407,
    // `unauthorized`, the user name it gave (never its password).
    let refused = access_lines(&log, 2, |l| l["outcome"] == "unauthorized").await;
    for line in &refused {
        assert_eq!(line["egress"], "socks", "{line}");
        assert_eq!(line["method"], "CONNECT", "{line}");
        assert_eq!(line["status"], 407, "{line}");
        assert_eq!(line["exit"], serde_json::Value::Null, "{line}");
    }
    assert_eq!(
        refused[0]["user"],
        serde_json::Value::Null,
        "no credentials given"
    );
    assert_eq!(refused[1]["user"], "scraper");
    assert!(!std::fs::read_to_string(&log).unwrap().contains("nope"));
    let (_, replies) = socks_handshake(
        listener,
        &[2],
        Some(("scraper-region-us", "pw")),
        1,
        &target,
        port,
    )
    .await;
    assert_eq!(replies, [5, 2, 1, 0, 5, 0, 0, 1]);
    assert_eq!(tunnels(&a, &b), (1, 0), "region us is exit a");

    let body = curl(
        listener,
        Some("scraper-region-fr:pw"),
        &format!("{}/curl", site.url()),
    )
    .await;
    assert!(body.contains("\"uri\":\"/curl\""), "{body}");
    assert_eq!(tunnels(&a, &b), (1, 1));
}

#[test]
fn a_socks5_listener_with_robots_or_an_unknown_protocol_is_a_config_error() {
    for (line, key) in [
        ("protocol = \"socks4\"", "egress[0].protocol"),
        (
            "protocol = \"socks5\"\nrespect_robots = true",
            "egress[0].respect_robots",
        ),
    ] {
        let text = format!(
            "[[egress]]\nname = \"s\"\nbind = \"127.0.0.1:0\"\n{line}\nexits = [{{ url = \"direct\" }}]\n"
        );
        let errors = match junction::server::Gateway::from_str(
            &text,
            std::path::Path::new("."),
            std::sync::Arc::new(junction::balance::SplitMix::with_seed(1)),
        ) {
            Ok(_) => panic!("{line} was accepted"),
            Err(errors) => errors.to_string(),
        };
        assert!(errors.contains(key), "{key} in {errors}");
    }
}
