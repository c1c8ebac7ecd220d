//! Security end to end: client address allow and deny lists (IPv4 and IPv6, inline and
//! from files re-read on reload, listener and route scopes, `X-Forwarded-For` believed
//! only from trusted proxies), header inspection (scanner list, deny / tag / log rules,
//! required headers, header count and size limits), API keys stored as SHA-256 (both
//! headers, route and model restrictions, keys files, never the key in metrics or logs),
//! the hash-chained audit log and `junction audit verify`, and `junction key hash`.

use crate::support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use junction::security::hash_key;
use serde_json::Value;
use support::proxy::RunningProxy;
use support::upstream::RunningUpstream;
use support::{TestProxy, TestUpstream, client, wait_for_lines};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// === helpers ===

/// Admin and one public listener on port 0 with `listener_keys`, one echo pool "p", and
/// the `routes` (a catch-all route "all" when empty).
async fn start(listener_keys: &str, routes: &str) -> (RunningProxy, RunningUpstream) {
    let upstream = TestUpstream::named("p").start().await;
    let config = config_text("", listener_keys, &upstream, routes);
    (TestProxy::from_toml(&config).start().await, upstream)
}

fn config_text(top: &str, listener_keys: &str, upstream: &RunningUpstream, routes: &str) -> String {
    let routes = if routes.is_empty() {
        "[[routes]]\nname = \"all\"\npool = \"p\"\n"
    } else {
        routes
    };
    format!(
        r#"{top}
[admin]
bind = "127.0.0.1:0"
token_env = "JUNCTION_TEST_SECURITY_ADMIN_TOKEN"

[[listeners]]
name = "public"
bind = "127.0.0.1:0"
{listener_keys}

[[pools]]
name = "p"
endpoints = [{{ url = "{}" }}]

{routes}
"#,
        upstream.url()
    )
}

/// Starts a gateway from a config file (so that `reload` re-reads it and its files).
async fn start_file(path: &Path) -> RunningProxy {
    // The token `POST /api/reload` needs (`config_text` names the variable); the same
    // value in every test, so a test setting it again changes nothing another reads.
    // SAFETY: the readers of the environment here are Rust's (the config compiler,
    // reqwest's proxy lookup), which take std's environment lock, as `set_var` does.
    unsafe { std::env::set_var("JUNCTION_TEST_SECURITY_ADMIN_TOKEN", "security-tests") };
    let gateway = junction::server::Gateway::from_file(
        path.to_path_buf(),
        Arc::new(junction::balance::SplitMix::with_seed(7)),
    )
    .unwrap_or_else(|errors| panic!("invalid config:\n{errors}"));
    gateway.start().await.expect("start gateway");
    RunningProxy { gateway }
}

/// GET `path` with `X-Forwarded-For: xff` (when given); returns the status and the JSON
/// body (the echo for 200, the proxy's error otherwise).
async fn get_from(proxy: &RunningProxy, path: &str, xff: Option<&str>) -> (u16, Value) {
    let mut request = client().get(proxy.url(path));
    if let Some(xff) = xff {
        request = request.header("x-forwarded-for", xff);
    }
    answer(request).await
}

/// Sends the request; status and JSON body. Every answer here is JSON: the echo (from
/// the upstream, tagged `x-upstream`) or the proxy's own error (not tagged).
async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let reply = request.send().await.expect("request through the proxy");
    let status = reply.status().as_u16();
    let from_upstream = reply.headers().contains_key("x-upstream");
    assert_eq!(
        from_upstream,
        status == 200,
        "status {status}: only the upstream answers 200 here"
    );
    if !from_upstream {
        assert_eq!(reply.headers()["content-type"], "application/json");
    }
    let body = reply.json().await.expect("a JSON body");
    (status, body)
}

/// Asserts a JSON error of the proxy: status and `error.type`.
#[track_caller]
fn assert_refused(got: &(u16, Value), status: u16, kind: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["type"], kind, "{}", got.1);
    assert!(got.1["error"]["message"].is_string(), "{}", got.1);
}

/// `junction_security_decisions_total` by (rule, action).
fn decisions(text: &str) -> HashMap<(String, String), f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("junction_security_decisions_total{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").expect("a sample line");
        let label = |name: &str| {
            let start = labels
                .find(&format!("{name}=\""))
                .unwrap_or_else(|| panic!("no {name} label in {line}"))
                + name.len()
                + 2;
            let end = start + labels[start..].find('"').expect("closing quote");
            labels[start..end].to_string()
        };
        out.insert(
            (label("rule"), label("action")),
            value.parse().expect("a number"),
        );
    }
    out
}

/// Asserts the decision counters are exactly `expected` (no other series).
async fn assert_decisions(proxy: &RunningProxy, expected: &[(&str, &str, f64)]) {
    let text = proxy.metrics_text().await;
    let got = decisions(&text);
    let want: HashMap<(String, String), f64> = expected
        .iter()
        .map(|(rule, action, n)| ((rule.to_string(), action.to_string()), *n))
        .collect();
    assert_eq!(got, want, "junction_security_decisions_total");
}

/// One HTTP/1.1 request written byte for byte (so its headers are exactly these), and
/// the status of the answer. The caller includes `connection: close`.
async fn raw_status(addr: SocketAddr, headers: &[(String, String)]) -> u16 {
    let mut text = String::from("GET /limited HTTP/1.1\r\n");
    for (name, value) in headers {
        text += &format!("{name}: {value}\r\n");
    }
    text += "\r\n";
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(text.as_bytes()).await.expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .expect("the proxy answers and closes within 5 s")
        .expect("read");
    let reply = String::from_utf8_lossy(&reply);
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {reply:?}"))
}

/// Header bytes as `max_header_bytes` counts them: name, value and 4 per header.
fn header_bytes(headers: &[(String, String)]) -> usize {
    headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum()
}

// === client address lists ===

const TRUSTED_LISTS: &str = r#"
trusted_proxies = ["127.0.0.1/32"]
allow = ["10.0.0.0/8", "2001:db8::/32"]
deny = ["10.6.6.0/24", "2001:db8:bad::/48"]
"#;

#[tokio::test]
async fn allow_and_deny_lists_decide_on_the_forwarded_ipv4_and_ipv6_client() {
    let (proxy, upstream) = start(TRUSTED_LISTS, "").await;

    for allowed in ["10.1.2.3", "10.255.0.1", "2001:db8::7", "2001:db8:1::1"] {
        let got = get_from(&proxy, "/x", Some(allowed)).await;
        assert_eq!(got.0, 200, "{allowed}: {}", got.1);
        // The upstream is told the chain: the client's address, then the proxy's peer.
        assert_eq!(
            got.1["headers"]["x-forwarded-for"],
            format!("{allowed}, 127.0.0.1")
        );
    }
    // Deny wins over allow, for both families.
    for denied in ["10.6.6.7", "10.6.6.250", "2001:db8:bad::1"] {
        let got = get_from(&proxy, "/x", Some(denied)).await;
        assert_refused(&got, 403, "forbidden");
        assert!(
            got.1["error"]["message"].as_str().unwrap().contains(denied),
            "{}",
            got.1
        );
    }
    // Outside the allow list.
    for outside in ["192.0.2.9", "11.0.0.1", "2001:db9::1", "::1"] {
        assert_refused(
            &get_from(&proxy, "/x", Some(outside)).await,
            403,
            "forbidden",
        );
    }
    // No X-Forwarded-For: the trusted peer itself (127.0.0.1) is the client, not allowed.
    assert_refused(&get_from(&proxy, "/x", None).await, 403, "forbidden");
    // The right-most address that is not a trusted proxy is the client: an address
    // forged further left changes nothing, and trusted hops are skipped.
    assert_eq!(
        get_from(&proxy, "/x", Some("10.1.2.3, 127.0.0.1")).await.0,
        200
    );
    assert_refused(
        &get_from(&proxy, "/x", Some("10.1.2.3, 192.0.2.9")).await,
        403,
        "forbidden",
    );
    assert_refused(
        &get_from(&proxy, "/x", Some("10.1.2.3, 10.6.6.7")).await,
        403,
        "forbidden",
    );

    // An IPv4 client written in its IPv4-mapped IPv6 form (as dual-stack sockets and
    // the proxies behind them report it) is the same client for IPv4 lists.
    assert_eq!(get_from(&proxy, "/x", Some("::ffff:10.1.2.3")).await.0, 200);
    let got = get_from(&proxy, "/x", Some("::ffff:10.6.6.7")).await;
    assert_refused(&got, 403, "forbidden");
    // A trusted proxy's own hop in mapped form is skipped like the plain one.
    assert_refused(
        &get_from(&proxy, "/x", Some("10.6.6.7, ::ffff:127.0.0.1")).await,
        403,
        "forbidden",
    );

    assert_eq!(
        upstream.requests(),
        6,
        "refused requests never reach the upstream"
    );
    assert_decisions(
        &proxy,
        &[
            ("listener:public deny 10.6.6.0/24", "deny", 5.0),
            ("listener:public deny 2001:db8:bad::/48", "deny", 1.0),
            ("listener:public allow", "deny", 6.0),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_empty_allow_list_lets_everyone_in_and_deny_still_refuses() {
    let keys = r#"
trusted_proxies = ["127.0.0.1/32"]
deny = ["10.6.6.0/24", "2001:db8:bad::/48"]
"#;
    let (proxy, upstream) = start(keys, "").await;
    for allowed in ["192.0.2.9", "10.1.2.3", "2001:db8::7", "198.51.100.1"] {
        assert_eq!(
            get_from(&proxy, "/x", Some(allowed)).await.0,
            200,
            "{allowed}"
        );
    }
    assert_eq!(
        get_from(&proxy, "/x", None).await.0,
        200,
        "127.0.0.1 itself"
    );
    for denied in ["10.6.6.1", "2001:db8:bad:1::9"] {
        assert_refused(
            &get_from(&proxy, "/x", Some(denied)).await,
            403,
            "forbidden",
        );
    }
    assert_eq!(upstream.requests(), 5);
    assert_decisions(
        &proxy,
        &[
            ("listener:public deny 10.6.6.0/24", "deny", 1.0),
            ("listener:public deny 2001:db8:bad::/48", "deny", 1.0),
        ],
    )
    .await;
}

#[tokio::test]
async fn without_trusted_proxies_x_forwarded_for_is_ignored() {
    // Only 10/8 allowed: a client on 127.0.0.1 cannot claim to be 10.1.2.3.
    let (strict, strict_upstream) = start(r#"allow = ["10.0.0.0/8"]"#, "").await;
    for xff in [Some("10.1.2.3"), Some("10.1.2.3, 10.1.2.4"), None] {
        let got = get_from(&strict, "/x", xff).await;
        assert_refused(&got, 403, "forbidden");
        assert!(
            got.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("127.0.0.1"),
            "the client is the socket peer: {}",
            got.1
        );
    }
    assert_eq!(strict_upstream.requests(), 0);

    // 10/8 denied: a forged 10.x address does not get a loopback client refused either,
    // and the upstream sees the real peer only.
    let (open, _upstream) = start(r#"deny = ["10.0.0.0/8"]"#, "").await;
    let got = get_from(&open, "/x", Some("10.6.6.7")).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["headers"]["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn listener_lists_apply_to_every_route_and_route_lists_to_their_own() {
    let keys = r#"
trusted_proxies = ["127.0.0.1/32"]
deny = ["192.0.2.0/24"]
"#;
    let routes = r#"
[[routes]]
name = "a"
match = { path_prefix = "/a" }
pool = "p"
allow = ["10.0.0.0/8", "2001:db8::/32"]
deny = ["10.9.0.0/16"]

[[routes]]
name = "b"
match = { path_prefix = "/b" }
pool = "p"
"#;
    let (proxy, upstream) = start(keys, routes).await;
    let cases = [
        // (client, /a, /b)
        ("192.0.2.9", 403, 403),
        ("10.1.2.3", 200, 200),
        ("2001:db8::1", 200, 200),
        ("198.51.100.1", 403, 200),
        ("10.9.1.1", 403, 200),
    ];
    for (ip, a, b) in cases {
        assert_eq!(get_from(&proxy, "/a", Some(ip)).await.0, a, "{ip} on /a");
        assert_eq!(get_from(&proxy, "/b", Some(ip)).await.0, b, "{ip} on /b");
    }
    assert_eq!(upstream.requests(), 6);
    // The listener's list runs first: 192.0.2.9 on /a is the listener's refusal, not
    // the route's (it is outside the route's allow list too).
    assert_decisions(
        &proxy,
        &[
            ("listener:public deny 192.0.2.0/24", "deny", 2.0),
            ("route:a allow", "deny", 1.0),
            ("route:a deny 10.9.0.0/16", "deny", 1.0),
        ],
    )
    .await;
}

#[tokio::test]
async fn allow_and_deny_files_are_read_with_comments_and_reread_on_reload() {
    let upstream = TestUpstream::named("p").start().await;
    let dir = tempfile::tempdir().unwrap();
    let allow = dir.path().join("allow.txt");
    let deny = dir.path().join("deny.txt");
    let blocked = dir.path().join("blocked.txt");
    std::fs::write(
        &allow,
        "# offices\n10.0.0.0/8   # the VPN\n\n  2001:db8::/32\n# 192.0.2.0/24 is commented out\n",
    )
    .unwrap();
    std::fs::write(&deny, "# known bad\n10.6.6.0/24\n").unwrap();
    std::fs::write(&blocked, "198.51.100.0/24 # listener-wide\n").unwrap();
    // Relative paths: resolved against the config file's directory.
    let keys = r#"
trusted_proxies = ["127.0.0.1/32"]
deny_file = "blocked.txt"
"#;
    let routes = r#"
[[routes]]
name = "all"
pool = "p"
allow_file = "allow.txt"
deny_file = "deny.txt"
"#;
    let path = dir.path().join("junction.toml");
    std::fs::write(&path, config_text("", keys, &upstream, routes)).unwrap();
    let proxy = start_file(&path).await;

    let expect = |cases: Vec<(&'static str, u16)>| {
        let proxy = &proxy;
        async move {
            for (ip, status) in cases {
                assert_eq!(get_from(proxy, "/x", Some(ip)).await.0, status, "{ip}");
            }
        }
    };
    expect(vec![
        ("10.1.2.3", 200),
        ("2001:db8::9", 200),
        ("10.6.6.1", 403),
        ("192.0.2.9", 403),
        ("198.51.100.7", 403),
        ("203.0.113.5", 403),
    ])
    .await;

    // New file contents take effect on reload only.
    std::fs::write(&allow, "10.0.0.0/8\n192.0.2.0/24 # partners\n").unwrap();
    std::fs::write(&deny, "10.6.6.0/24\n10.1.2.3 # a bare address\n").unwrap();
    std::fs::write(&blocked, "# nothing blocked now\n").unwrap();
    assert_eq!(get_from(&proxy, "/x", Some("192.0.2.9")).await.0, 403);
    proxy.gateway.reload().await.expect("reload");
    expect(vec![
        ("192.0.2.9", 200),
        ("198.51.100.7", 403), // no longer blocked, but not in the new allow list
        ("10.1.2.3", 403),
        ("10.1.2.4", 200),
        ("2001:db8::9", 403),
        ("10.6.6.1", 403),
    ])
    .await;

    // A file that cannot be read refuses the reload; the lists in force stay.
    std::fs::remove_file(&deny).unwrap();
    let error = proxy.gateway.reload().await.expect_err("missing deny file");
    assert!(error.to_string().contains("deny_file"), "{error}");
    assert_eq!(get_from(&proxy, "/x", Some("10.1.2.3")).await.0, 403);
    assert_eq!(get_from(&proxy, "/x", Some("10.1.2.4")).await.0, 200);
    // A line that is not a CIDR too.
    std::fs::write(&deny, "10.6.6.0/24\nnot-an-address\n").unwrap();
    let error = proxy.gateway.reload().await.expect_err("bad line");
    assert!(error.to_string().contains("not-an-address"), "{error}");
    assert_eq!(get_from(&proxy, "/x", Some("10.1.2.3")).await.0, 403);
}

#[tokio::test]
async fn listener_security_mistakes_are_config_errors_not_silently_dropped() {
    // A listener's lists must be validated like a route's: a typo in an allow list
    // that is dropped would leave the list empty, and an empty allow list lets
    // everyone in.
    let upstream = TestUpstream::named("p").start().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-file.txt");
    let cases = [
        ("allow = [\"10.0.0.O/8\"]".to_string(), "10.0.0.O/8"),
        (
            format!("allow_file = \"{}\"", missing.display()),
            "allow_file",
        ),
        (
            "rules = [{ header = \"user-agent\", matches = \"(\", action = \"deny\" }]".into(),
            "matches",
        ),
        (
            "auth = { keys = [{ name = \"k\", sha256 = \"abc\" }] }".into(),
            "sha256",
        ),
    ];
    // Two routes on the listener: its mistakes are reported once, not once per route.
    let routes = r#"
[[routes]]
name = "one"
match = { path_prefix = "/one" }
pool = "p"

[[routes]]
name = "two"
pool = "p"
"#;
    for (keys, needle) in cases {
        let text = config_text("", &keys, &upstream, routes);
        let errors = match junction::server::Gateway::from_str(
            &text,
            dir.path(),
            Arc::new(junction::balance::SplitMix::with_seed(7)),
        ) {
            Ok(_) => panic!("listener keys {keys:?} were accepted"),
            Err(errors) => errors.to_string(),
        };
        assert_eq!(
            errors.matches("listeners[0]").count(),
            1,
            "{keys}: {errors}"
        );
        assert!(errors.contains(needle), "{keys}: {errors}");
    }
}

// === header inspection ===

#[tokio::test]
async fn scanner_user_agents_are_refused_and_header_rules_deny_tag_and_log() {
    let routes = r#"
[[routes]]
name = "scan"
match = { path_prefix = "/scan" }
pool = "p"
block_scanners = true

[[routes]]
name = "rules"
match = { path_prefix = "/rules" }
pool = "p"
rules = [
  { name = "sqlmap or nikto", header = "user-agent", matches = "(?i)sqlmap|nikto", action = "deny" },
  { name = "internal tools", header = "user-agent", matches = "^internal-", action = "tag" },
  { name = "curl seen", header = "user-agent", matches = "^curl/", action = "log" },
]
"#;
    let (proxy, upstream) = start("", routes).await;
    let with_ua = |path: &str, ua: &str| client().get(proxy.url(path)).header("user-agent", ua);

    for ua in [
        "sqlmap/1.7#stable (https://sqlmap.org)",
        "Mozilla/5.00 (Nikto/2.5.0)",
    ] {
        assert_refused(&answer(with_ua("/scan", ua)).await, 403, "forbidden");
        assert_refused(&answer(with_ua("/rules", ua)).await, 403, "forbidden");
    }
    assert_refused(
        &answer(with_ua("/scan", "Nuclei - Open-source project")).await,
        403,
        "forbidden",
    );
    // The explicit rule names only sqlmap and nikto.
    assert_eq!(answer(with_ua("/rules", "nuclei")).await.0, 200);

    for ua in [
        "curl/8.5.0",
        "python-requests/2.31.0",
        "Python/3.12 aiohttp/3.9.1",
        "OpenAI/Python 1.30.1",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
    ] {
        let got = answer(with_ua("/scan", ua)).await;
        assert_eq!(got.0, 200, "{ua}");
        assert_eq!(got.1["headers"]["x-junction-tag"], Value::Null);
    }

    // tag: passes with the rule's name added to the upstream request.
    let got = answer(with_ua("/rules", "internal-batch/1.0")).await;
    assert_eq!(got.0, 200);
    assert_eq!(got.1["headers"]["x-junction-tag"], "internal tools");
    assert_eq!(got.1["headers"]["user-agent"], "internal-batch/1.0");
    // log: passes untouched.
    let got = answer(with_ua("/rules", "curl/8.5.0")).await;
    assert_eq!(got.0, 200);
    assert_eq!(got.1["headers"]["x-junction-tag"], Value::Null);
    assert_eq!(got.1["headers"]["user-agent"], "curl/8.5.0");
    let got = answer(with_ua("/rules", "curl/7.88.1")).await;
    assert_eq!(got.0, 200);

    assert_eq!(upstream.requests(), 5 + 1 + 3);
    assert_decisions(
        &proxy,
        &[
            ("scanner user agent", "deny", 3.0),
            ("sqlmap or nikto", "deny", 2.0),
            ("internal tools", "tag", 1.0),
            ("curl seen", "log", 2.0),
        ],
    )
    .await;
}

#[tokio::test]
async fn listener_rules_run_before_the_routes_and_both_tag() {
    let keys = r#"
block_scanners = true
rules = [{ name = "beta", header = "x-beta", matches = "^1$", action = "tag" }]
"#;
    let routes = r#"
[[routes]]
name = "all"
pool = "p"
rules = [
  { name = "anything goes", header = "user-agent", matches = ".", action = "log" },
  { name = "no beta here", header = "x-beta", matches = "^2$", action = "deny" },
]
"#;
    let (proxy, _upstream) = start(keys, routes).await;
    let got = answer(
        client()
            .get(proxy.url("/x"))
            .header("user-agent", "curl/8")
            .header("x-beta", "1"),
    )
    .await;
    assert_eq!(got.0, 200);
    assert_eq!(got.1["headers"]["x-junction-tag"], "beta");
    // A scanner is refused by the listener before any route rule counts it.
    let got = answer(
        client()
            .get(proxy.url("/x"))
            .header("user-agent", "sqlmap/1.7"),
    )
    .await;
    assert_refused(&got, 403, "forbidden");
    let got = answer(
        client()
            .get(proxy.url("/x"))
            .header("user-agent", "curl/8")
            .header("x-beta", "2"),
    )
    .await;
    assert_refused(&got, 403, "forbidden");
    assert_decisions(
        &proxy,
        &[
            ("beta", "tag", 1.0),
            ("anything goes", "log", 2.0),
            ("scanner user agent", "deny", 1.0),
            ("no beta here", "deny", 1.0),
        ],
    )
    .await;
}

#[tokio::test]
async fn required_headers_are_enforced_with_400() {
    let routes = r#"
[[routes]]
name = "all"
pool = "p"
require_headers = ["x-tenant", "x-client-version"]
"#;
    let (proxy, upstream) = start("", routes).await;
    let got = answer(client().get(proxy.url("/x"))).await;
    assert_refused(&got, 400, "missing_header");
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-tenant")
    );
    let got = answer(client().get(proxy.url("/x")).header("x-tenant", "acme")).await;
    assert_refused(&got, 400, "missing_header");
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-client-version")
    );
    let got = answer(
        client()
            .get(proxy.url("/x"))
            .header("X-Tenant", "acme")
            .header("x-client-version", ""),
    )
    .await;
    assert_eq!(got.0, 200, "present (even empty) is enough: {}", got.1);
    assert_eq!(upstream.requests(), 1);
    assert_decisions(
        &proxy,
        &[
            ("require x-tenant", "deny", 1.0),
            ("require x-client-version", "deny", 1.0),
        ],
    )
    .await;
}

#[tokio::test]
async fn header_count_and_size_limits_refuse_with_431_exactly_beyond_the_limit() {
    let routes = r#"
[[routes]]
name = "count"
match = { headers = { x-which = "count" } }
pool = "p"
max_header_count = 8

[[routes]]
name = "bytes"
match = { headers = { x-which = "bytes" } }
pool = "p"
max_header_bytes = 400
"#;
    let (proxy, upstream) = start("", routes).await;
    let addr = proxy.addr("public");
    let base = |which: &str| {
        vec![
            ("host".to_string(), addr.to_string()),
            ("connection".to_string(), "close".to_string()),
            ("x-which".to_string(), which.to_string()),
        ]
    };

    // Exactly 8 headers from the client pass; 9 are refused. (The x-request-id the proxy
    // adds is not the client's and does not count; nor does `Connection`, which is the
    // connection's and removed on entry, before any filter runs.)
    let mut at_limit = base("count");
    for i in at_limit.len()..9 {
        at_limit.push((format!("x-filler-{i}"), "1".into()));
    }
    assert_eq!(at_limit.len(), 9);
    assert_eq!(raw_status(addr, &at_limit).await, 200, "8 headers, limit 8");
    let mut beyond = at_limit.clone();
    beyond.push(("x-one-more".into(), "1".into()));
    assert_eq!(raw_status(addr, &beyond).await, 431, "9 headers, limit 8");
    // Repeated lines of one header count one by one.
    let mut repeated = base("count");
    for _ in 0..7 {
        repeated.push(("x-same".into(), "1".into()));
    }
    assert_eq!(raw_status(addr, &repeated).await, 431, "9 lines, limit 8");
    let got = answer((0..10).fold(
        client().get(proxy.url("/x")).header("x-which", "count"),
        |r, i| r.header(format!("x-h{i}"), "v"),
    ))
    .await;
    assert_refused(&got, 431, "headers_too_large");

    // Exactly 400 bytes (names, values, 4 per header) pass; 401 are refused. The
    // `connection: close` line is removed on entry and not counted.
    let hop_by_hop = "connection".len() + "close".len() + 4;
    let mut at_limit = base("bytes");
    let pad = 400 + hop_by_hop - header_bytes(&at_limit) - ("x-pad".len() + 4);
    at_limit.push(("x-pad".into(), "a".repeat(pad)));
    assert_eq!(header_bytes(&at_limit), 400 + hop_by_hop);
    assert_eq!(
        raw_status(addr, &at_limit).await,
        200,
        "400 bytes, limit 400"
    );
    let mut beyond = base("bytes");
    beyond.push(("x-pad".into(), "a".repeat(pad + 1)));
    assert_eq!(header_bytes(&beyond), 401 + hop_by_hop);
    assert_eq!(raw_status(addr, &beyond).await, 431, "401 bytes, limit 400");
    let got = answer(
        client()
            .get(proxy.url("/x"))
            .header("x-which", "bytes")
            .header("x-big", "b".repeat(1000)),
    )
    .await;
    assert_refused(&got, 431, "headers_too_large");

    assert_eq!(upstream.requests(), 2);
    assert_decisions(
        &proxy,
        &[
            ("max_header_count", "deny", 3.0),
            ("max_header_bytes", "deny", 2.0),
        ],
    )
    .await;
}

// === API keys ===

const RED: &str = "sk-red-7f3a9c1e5b2d4f60";
const BLUE: &str = "sk-blue-0a1b2c3d4e5f6789";
const OPS: &str = "sk-ops-aaaabbbbccccdddd";
const FILED: &str = "sk-filed-1234567890abcdef";
const WRONG: &str = "sk-wrong-ffffeeeeddddcccc";

#[tokio::test]
async fn api_keys_by_hash_with_route_and_model_restrictions() {
    let upstream = TestUpstream::named("p").start().await;
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.toml");
    std::fs::write(
        &keys_file,
        format!(
            "# issued by hand\n[[keys]]\nname = \"filed\"\nsha256 = \"{}\"\nroutes = [\"other\"]\n",
            hash_key(FILED).to_uppercase()
        ),
    )
    .unwrap();
    let access_log = dir.path().join("access.log");
    let top = format!("[access_log]\npath = \"{}\"\n", access_log.display());
    let keys = format!(
        r#"auth = {{ keys = [
  {{ name = "team-red", sha256 = "{}", routes = ["chat"] }},
  {{ name = "team-blue", sha256 = "{}", models = ["llama-*"] }},
  {{ name = "ops", sha256 = "{}" }},
], keys_file = "{}" }}"#,
        hash_key(RED),
        hash_key(BLUE),
        hash_key(OPS),
        keys_file.display()
    );
    let routes = r#"
[[routes]]
name = "chat"
match = { path_prefix = "/v1/", model = "*" }
pool = "p"

[[routes]]
name = "other"
match = { path_prefix = "/other" }
pool = "p"
"#;
    let config = config_text(&top, &keys, &upstream, routes);
    assert!(!config.contains(RED), "only hashes are configured");
    let proxy = TestProxy::from_toml(&config).start().await;
    let http = client();
    let chat = |model: &str| {
        http.post(proxy.url("/v1/chat/completions"))
            .json(&serde_json::json!({ "model": model, "messages": [] }))
    };
    let other = || http.get(proxy.url("/other"));

    // Missing and unknown keys: 401.
    let mut expected_log: Vec<(u16, Option<&str>)> = Vec::new();
    for request in [
        other(),
        other().bearer_auth(WRONG),
        other().header("x-api-key", WRONG),
        other().header("authorization", format!("Basic {RED}")),
        chat("llama-3"),
    ] {
        assert_refused(&answer(request).await, 401, "unauthorized");
        expected_log.push((401, None));
    }

    // Both headers work; the key's name reaches the access log.
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (chat("gpt-4").bearer_auth(RED), 200, "team-red"),
        (chat("gpt-4").header("x-api-key", RED), 200, "team-red"),
        (other().bearer_auth(RED), 403, "team-red"), // not its route
        (chat("llama-3").bearer_auth(BLUE), 200, "team-blue"),
        (
            chat("llama-3-70b").header("x-api-key", BLUE),
            200,
            "team-blue",
        ),
        (chat("gpt-4").bearer_auth(BLUE), 403, "team-blue"), // not its model
        (chat("Llama-3").bearer_auth(BLUE), 403, "team-blue"),
        (other().bearer_auth(BLUE), 403, "team-blue"), // no model at all
        (chat("gpt-4").bearer_auth(OPS), 200, "ops"),
        (other().header("x-api-key", OPS), 200, "ops"),
        (other().bearer_auth(FILED), 200, "filed"),
        (chat("llama-3").bearer_auth(FILED), 403, "filed"),
    ];
    for (i, (request, status, name)) in cases.into_iter().enumerate() {
        let got = answer(request).await;
        assert_eq!(got.0, status, "case {i}: {}", got.1);
        if status == 403 {
            assert_refused(&got, 403, "forbidden");
            assert!(got.1["error"]["message"].as_str().unwrap().contains(name));
            expected_log.push((403, None));
        } else {
            expected_log.push((200, Some(name)));
        }
    }
    assert_eq!(upstream.requests(), 7);

    let text = proxy.metrics_text().await;
    for key in [RED, BLUE, OPS, FILED, WRONG] {
        assert!(!text.contains(key), "a key in the metrics");
    }
    assert_eq!(
        decisions(&text),
        [
            ("api_key missing", "unauthorized", 3.0),
            ("api_key unknown", "unauthorized", 2.0),
            ("api_key team-red route", "deny", 1.0),
            ("api_key team-blue model", "deny", 3.0),
            ("api_key filed route", "deny", 1.0),
        ]
        .into_iter()
        .map(|(r, a, n)| ((r.to_string(), a.to_string()), n))
        .collect::<HashMap<_, _>>()
    );

    let lines = wait_for_lines(&access_log, expected_log.len()).await;
    for (line, (status, name)) in lines.iter().zip(&expected_log) {
        for key in [RED, BLUE, OPS, FILED, WRONG] {
            assert!(!line.contains(key), "a key in the access log: {line}");
        }
        let entry: Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(entry["status"], *status, "{line}");
        match name {
            Some(name) => assert_eq!(entry["api_key"], *name, "{line}"),
            None => assert_eq!(entry["api_key"], Value::Null, "{line}"),
        }
    }
}

#[tokio::test]
async fn route_keys_apply_after_the_listener_keys() {
    // Listener auth and route auth both hold: a key must pass both.
    let keys = format!(
        r#"auth = {{ keys = [{{ name = "outer", sha256 = "{}" }}] }}"#,
        hash_key(RED)
    );
    let routes = format!(
        r#"
[[routes]]
name = "inner"
match = {{ path_prefix = "/inner" }}
pool = "p"
auth = {{ keys = [{{ name = "outer-too", sha256 = "{}" }}, {{ name = "inner-only", sha256 = "{}" }}] }}

[[routes]]
name = "rest"
pool = "p"
"#,
        hash_key(RED),
        hash_key(BLUE)
    );
    let (proxy, _upstream) = start(&keys, &routes).await;
    let get = |path: &str, key: &str| client().get(proxy.url(path)).bearer_auth(key);
    assert_eq!(answer(get("/inner", RED)).await.0, 200);
    assert_eq!(answer(get("/rest", RED)).await.0, 200);
    assert_refused(&answer(get("/inner", BLUE)).await, 401, "unauthorized");
    assert_refused(&answer(get("/rest", BLUE)).await, 401, "unauthorized");
    assert_decisions(&proxy, &[("api_key unknown", "unauthorized", 2.0)]).await;
}

// === audit log ===

fn junction(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_junction"))
        .args(args)
        .output()
        .expect("run junction")
}

/// `junction audit verify` with `args`: (exit code, stdout, stderr).
fn audit_verify(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let mut all: Vec<&std::ffi::OsStr> = vec!["audit".as_ref(), "verify".as_ref()];
    all.extend_from_slice(args);
    let output = junction(&all);
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn verify(path: &Path) -> (i32, String, String) {
    audit_verify(&[path.as_os_str()])
}

#[tokio::test]
async fn the_audit_log_records_refusals_and_admin_actions_in_a_verifiable_chain() {
    let upstream = TestUpstream::named("p").start().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = r#"
trusted_proxies = ["127.0.0.1/32"]
deny = ["10.6.6.0/24"]
block_scanners = true
"#;
    let routes = format!(
        r#"
[[routes]]
name = "api"
pool = "p"
auth = {{ keys = [{{ name = "svc", sha256 = "{}" }}] }}
"#,
        hash_key(OPS)
    );
    let path = dir.path().join("junction.toml");
    std::fs::write(
        &path,
        config_text("[audit]\npath = \"audit.log\"\n", keys, &upstream, &routes),
    )
    .unwrap();
    let audit = dir.path().join("audit.log");
    let proxy = start_file(&path).await;
    let send = |xff: &str, ua: &str, key: Option<&str>| {
        let mut request = client()
            .get(proxy.url("/v1/x"))
            .header("x-forwarded-for", xff)
            .header("user-agent", ua);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        answer(request)
    };

    assert_refused(
        &send("10.6.6.7", "curl/8", Some(OPS)).await,
        403,
        "forbidden",
    );
    assert_refused(
        &send("192.0.2.9", "sqlmap/1.7", Some(OPS)).await,
        403,
        "forbidden",
    );
    assert_refused(
        &send("192.0.2.10", "curl/8", None).await,
        401,
        "unauthorized",
    );
    assert_refused(
        &send("2001:db8::5", "curl/8", Some(WRONG)).await,
        401,
        "unauthorized",
    );
    assert_eq!(
        send("192.0.2.11", "curl/8", Some(OPS)).await.0,
        200,
        "no audit line"
    );
    let reply = proxy.reload().await;
    assert_eq!(reply.status(), 200);
    assert_refused(
        &send("10.6.6.8", "curl/8", Some(OPS)).await,
        403,
        "forbidden",
    );

    let lines = wait_for_lines(&audit, 6).await;
    let entries: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let expected = [
        ("deny", "listener:public deny 10.6.6.0/24", "10.6.6.7"),
        ("deny", "scanner user agent", "192.0.2.9"),
        ("unauthorized", "api_key missing", "192.0.2.10"),
        ("unauthorized", "api_key unknown", "2001:db8::5"),
    ];
    for (entry, (kind, rule, ip)) in entries.iter().zip(expected) {
        assert_eq!(entry["kind"], kind, "{entry}");
        assert_eq!(entry["rule"], rule, "{entry}");
        assert_eq!(entry["client_ip"], ip, "{entry}");
        assert_eq!(entry["route"], "api", "{entry}");
        assert!(entry["time"].is_string(), "{entry}");
    }
    assert_eq!(entries[4]["kind"], "admin", "{}", entries[4]);
    assert_eq!(entries[4]["action"], "reload");
    assert_eq!(entries[4]["outcome"], "reloaded");
    assert_eq!(entries[5]["kind"], "deny");
    assert_eq!(entries[5]["client_ip"], "10.6.6.8");
    assert_eq!(entries[0]["prev"], junction::security::audit::GENESIS);
    for line in &lines {
        assert!(
            !line.contains(OPS) && !line.contains(WRONG),
            "a key in the audit log"
        );
    }

    let (code, stdout, stderr) = verify(&audit);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("intact (6 lines)"), "{stdout}");

    // One byte changed in line 3, still JSON: line 4 no longer chains to it.
    let original = std::fs::read_to_string(&audit).unwrap();
    let edited_line = lines[2].replacen("192.0.2.10", "192.0.2.11", 1);
    assert_ne!(edited_line, lines[2]);
    let tampered = original.replacen(&lines[2], &edited_line, 1);
    assert_eq!(tampered.len(), original.len());
    std::fs::write(&audit, &tampered).unwrap();
    let (code, stdout, stderr) = verify(&audit);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("broken at line 4"), "{stderr}");

    // One byte that makes line 3 no JSON at all: line 3 itself is named.
    let broken_line = lines[2].replacen('{', "[", 1);
    std::fs::write(&audit, original.replacen(&lines[2], &broken_line, 1)).unwrap();
    let (code, _, stderr) = verify(&audit);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("broken at line 3"), "{stderr}");

    // A line removed from the middle.
    let without: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(&audit, without).unwrap();
    let (code, _, stderr) = verify(&audit);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("broken at line 2"), "{stderr}");

    // Restored, the chain is intact again and new lines continue it.
    std::fs::write(&audit, &original).unwrap();
    assert_eq!(verify(&audit).0, 0);
    assert_refused(
        &send("10.6.6.9", "curl/8", Some(OPS)).await,
        403,
        "forbidden",
    );
    wait_for_lines(&audit, 7).await;
    let (code, stdout, stderr) = verify(&audit);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("intact (7 lines)"), "{stdout}");
}

#[test]
fn key_hash_prints_the_sha256_the_config_stores() {
    for key in [RED, "a key with spaces", "ünïcødé"] {
        let output = junction(&["key".as_ref(), "hash".as_ref(), key.as_ref()]);
        assert!(output.status.success());
        let printed = String::from_utf8(output.stdout).unwrap();
        assert_eq!(printed.trim_end(), hash_key(key));
        assert_eq!(printed.trim_end().len(), 64);
    }
    // The well-known digest of the empty string: a real SHA-256, lowercase hex.
    assert_eq!(
        hash_key(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

// === Request normalisation ===

/// Requests refused as ambiguous are counted by what was ambiguous (the suite in
/// tests/smuggling.rs checks what reaches the endpoint).
#[tokio::test]
async fn ambiguous_requests_are_counted_as_security_decisions() {
    let (proxy, upstream) = start("", "").await;
    let addr = proxy.addr("public");
    let host = ("host".to_string(), addr.to_string());
    let close = ("connection".to_string(), "close".to_string());
    let named = (
        "connection".to_string(),
        "close, content-length".to_string(),
    );
    assert_eq!(raw_status(addr, &[host.clone(), named]).await, 400);
    assert_eq!(
        raw_status(addr, std::slice::from_ref(&close)).await,
        400,
        "no Host"
    );
    assert_eq!(
        raw_status(addr, &[host.clone(), host.clone(), close.clone()]).await,
        400,
        "two Hosts"
    );
    assert_eq!(raw_status(addr, &[host, close]).await, 200);
    assert_eq!(upstream.requests(), 1);
    assert_decisions(
        &proxy,
        &[
            ("normalize connection", "deny", 1.0),
            ("normalize host", "deny", 2.0),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_audit_logs_end_is_anchored_at_shutdown_and_verify_catches_a_cut_or_edited_tail() {
    let upstream = TestUpstream::named("p").start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junction.toml");
    let key_file = dir.path().join("audit.key");
    std::fs::write(&key_file, "a-key-of-32-bytes-for-the-anchor\n").unwrap();
    // No periodic checkpoint during the test: only the shutdown one can anchor the end.
    let audit_table =
        "[audit]\npath = \"audit.log\"\ncheckpoint_interval = \"1h\"\nkey_file = \"audit.key\"\n";
    std::fs::write(&path, config_text(audit_table, "", &upstream, "")).unwrap();
    let audit = dir.path().join("audit.log");
    let proxy = start_file(&path).await;
    for _ in 0..3 {
        let reply = proxy.reload().await;
        assert_eq!(reply.status(), 200);
    }
    let lines = wait_for_lines(&audit, 3).await;
    proxy.gateway.shutdown().await;

    let check = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["--file".as_ref(), audit.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        audit_verify(&args)
    };
    let key = ["--key-file", key_file.to_str().unwrap()];
    let (code, stdout, stderr) = check(&key);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("intact (3 lines); end anchored at line 3"),
        "{stdout}"
    );
    assert!(stdout.contains("signature checked"), "{stdout}");

    let original = std::fs::read_to_string(&audit).unwrap();
    // The last line cut off: the chain alone still holds, the anchor does not.
    std::fs::write(&audit, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    let (code, stdout, stderr) = check(&key);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("broken at line 3"), "{stderr}");
    assert!(stderr.contains("cut off the end"), "{stderr}");
    assert_eq!(
        check(&["--no-anchor"]).0,
        0,
        "the chain alone cannot see it"
    );

    // The last line edited.
    let edited = lines[2].replacen("reload", "relaod", 1);
    assert_ne!(edited, lines[2]);
    std::fs::write(&audit, original.replacen(&lines[2], &edited, 1)).unwrap();
    let (code, _, stderr) = check(&key);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("broken at line 3"), "{stderr}");
    assert!(
        stderr.contains("last anchored line was changed"),
        "{stderr}"
    );

    // Both files rewritten without the key: only the key tells.
    std::fs::write(&audit, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    let hash = junction::security::hash_key(&lines[1]);
    std::fs::write(
        junction::security::audit::anchor_path(&audit),
        format!("{{\"lines\":2,\"last_hash\":\"{hash}\",\"time\":\"2026-01-01T00:00:00Z\"}}\n"),
    )
    .unwrap();
    assert_eq!(
        check(&[]).0,
        0,
        "without the key a rewrite of both files passes"
    );
    let (code, _, stderr) = check(&key);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("bad anchor"), "{stderr}");

    std::fs::write(&audit, &original).unwrap();
    std::fs::remove_file(junction::security::audit::anchor_path(&audit)).unwrap();
    let (code, _, stderr) = check(&[]);
    assert_eq!(code, 1, "a missing anchor is not a clean bill: {stderr}");
    assert!(stderr.contains("no anchor file"), "{stderr}");
}
