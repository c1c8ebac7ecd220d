//! TLS interception on an egress listener (`intercept`): tunnels to listed hosts are
//! answered with a leaf the test's CA signs, and each request inside goes through the
//! plain-HTTP forward path (bans from bodies, retries through another exit, log,
//! metrics) with TLS to the site, verified against the configured CA. Unlisted hosts
//! still tunnel end to end. Real sites (tests/support/exits.rs `TlsOrigin`, each with
//! its own self-signed certificate), real exits, reqwest, Python and Scrapy clients.

use crate::support;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use junction::tls::authority::generate_authority;
use support::exits::{HttpExit, TlsOrigin, get_ok, send};
use support::process::{binary, python};
use support::proxy::RunningProxy;
use support::{TestProxy, parse_metrics};

/// How long any single step may take before the test calls it a hang.
const STEP: Duration = Duration::from_secs(5);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

/// Polls `check` until it gives a value (every 20 ms, up to [`STEP`]).
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Junction's CA and the trusted site's certificate as files, and Junction with one
/// egress listener "scraper" intercepting `localhost` through `exits`.
struct Setup {
    dir: tempfile::TempDir,
    ca_pem: String,
    proxy: RunningProxy,
}

impl Setup {
    async fn start(site: &TlsOrigin, exits: &[&HttpExit], extra: &str) -> Setup {
        Setup::start_as("http", site, exits, extra).await
    }

    async fn start_as(protocol: &str, site: &TlsOrigin, exits: &[&HttpExit], extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ca = generate_authority("test interception CA").unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let (cert, key) = (write("ca.pem", &ca.cert_pem), write("ca.key", &ca.key_pem));
        let site_ca = write("site-ca.pem", site.ca_pem());
        let log = dir.path().join("access.log").display().to_string();
        let exits: Vec<String> = exits
            .iter()
            .map(|e| format!(r#"{{ url = "{}", name = "{}" }}"#, e.url(), e.name()))
            .collect();
        let toml = format!(
            r#"
[admin]
bind = "127.0.0.1:0"

[access_log]
path = "{log}"

[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
protocol = "{protocol}"
rotation = "round_robin"
allow = ["127.0.0.1/32", "localhost"]
exits = [{exits}]
ban = {{ status = [403], body = ["captcha"], cooldown = "60s" }}
attempts = 3
intercept = {{ hosts = ["localhost"], ca = {{ cert = "{cert}", key = "{key}" }}, upstream_ca = "{site_ca}" }}
{extra}
"#,
            exits = exits.join(", ")
        );
        let proxy = TestProxy::from_toml(&toml).start().await;
        Setup {
            dir,
            ca_pem: ca.cert_pem,
            proxy,
        }
    }

    fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy.addr("scraper"))
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A client through Junction trusting only `roots` (no built-in roots).
    fn client_trusting(&self, roots: &[&str]) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(self.proxy_url()).unwrap())
            .tls_built_in_root_certs(false)
            .timeout(STEP);
        for pem in roots {
            builder = builder
                .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
        }
        builder
    }

    /// A client through Junction that trusts Junction's CA.
    fn client(&self) -> reqwest::Client {
        self.client_trusting(&[&self.ca_pem]).build().unwrap()
    }

    async fn metrics(&self) -> std::collections::HashMap<String, f64> {
        parse_metrics(&self.proxy.metrics_text().await)
    }

    /// `junction_egress_requests_total` of the scraper by exit and outcome.
    async fn requests(&self, exit: &str, outcome: &str) -> f64 {
        let metrics = self.metrics().await;
        metrics
            .iter()
            .filter(|(series, _)| {
                series.starts_with("junction_egress_requests_total{")
                    && series.contains(r#"egress="scraper""#)
                    && series.contains(&format!(r#"exit="{exit}""#))
                    && series.contains(&format!(r#"outcome="{outcome}""#))
            })
            .map(|(_, value)| value)
            .sum()
    }

    async fn bans(&self, exit: &str) -> f64 {
        let metrics = self.metrics().await;
        metrics
            .get(&format!(
                r#"junction_egress_bans_total{{egress="scraper",exit="{exit}"}}"#
            ))
            .copied()
            .unwrap_or(0.0)
    }

    /// The egress lines of the access log once `check` accepts them.
    async fn log_lines(
        &self,
        what: &str,
        check: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let path = self.dir.path().join("access.log");
        eventually(what, || async {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .filter(|l: &serde_json::Value| l["kind"] == "egress")
                .collect();
            check(&lines).then_some(lines)
        })
        .await
    }
}

#[tokio::test]
async fn an_intercepted_connect_gets_the_sites_answer_and_is_logged_and_counted() {
    let site = TlsOrigin::start("site").await;
    let a = HttpExit::start("a").await;
    let setup = Setup::start(&site, &[&a], "").await;

    // The client trusts Junction's CA only: the site's own certificate would fail.
    let url = format!("{}/hello?q=1", site.localhost_url());
    let reply = get_ok(&setup.client(), &url).await;
    assert_eq!(reply.body, "secure site /hello");
    assert_eq!(reply.exit(), "a");
    assert_eq!(site.requests(), 1);
    assert_eq!(
        a.connect_count(),
        1,
        "the TLS to the site went through exit a"
    );

    let lines = setup
        .log_lines("the GET and CONNECT lines", |lines| lines.len() >= 2)
        .await;
    let get = lines
        .iter()
        .find(|l| l["method"] == "GET")
        .expect("a line for the decrypted GET");
    assert_eq!(get["host"], "localhost", "{get}");
    assert_eq!(get["path"], "/hello?q=1", "{get}");
    assert_eq!(get["status"], 200, "{get}");
    assert_eq!(get["outcome"], "ok", "{get}");
    assert_eq!(get["exit"], "a", "{get}");
    assert_eq!(get["bytes_out"], "secure site /hello".len(), "{get}");
    let connect = lines
        .iter()
        .find(|l| l["method"] == "CONNECT")
        .expect("a line for the CONNECT");
    assert_eq!(connect["outcome"], "intercepted", "{connect}");
    assert_eq!(setup.requests("a", "ok").await, 1.0);
}

#[tokio::test]
async fn a_ban_in_an_intercepted_body_rests_the_exit_and_the_request_goes_through_another() {
    let site = TlsOrigin::start("site").await;
    let (a, b) = (HttpExit::start("a").await, HttpExit::start("b").await);
    let setup = Setup::start(&site, &[&a, &b], "").await;

    // The site answers the first request for this path with a captcha page.
    let url = format!("{}/ban-first/page", site.localhost_url());
    let reply = get_ok(&setup.client(), &url).await;
    assert_eq!(reply.body, "secure site /ban-first/page");
    let second = reply.exit();
    let first = if second == "a" { "b" } else { "a" };
    assert_eq!(site.requests(), 2, "the captcha, then the page");
    assert_eq!(setup.bans(first).await, 1.0);
    assert_eq!(setup.bans(&second).await, 0.0);
    assert_eq!(setup.requests(first, "banned").await, 1.0);

    // The banned exit rests for this site: the next requests avoid it.
    for _ in 0..2 {
        let reply = get_ok(&setup.client(), &format!("{}/next", site.localhost_url())).await;
        assert_eq!(reply.exit(), second);
    }
    let lines = setup
        .log_lines("the line of the banned request", |lines| {
            lines.iter().any(|l| l["path"] == "/ban-first/page")
        })
        .await;
    let banned = lines
        .iter()
        .find(|l| l["path"] == "/ban-first/page")
        .unwrap();
    assert_eq!(banned["attempts"], 2, "{banned}");
    assert_eq!(banned["outcome"], "ok", "{banned}");
}

#[tokio::test]
async fn a_request_inside_a_tunnel_naming_another_site_is_misdirected() {
    let site = TlsOrigin::start("site").await;
    let a = HttpExit::start("a").await;
    let setup = Setup::start(&site, &[&a], "").await;

    // The tunnel was admitted for localhost; the Host header names another site.
    let http1 = setup
        .client_trusting(&[&setup.ca_pem])
        .http1_only()
        .build()
        .unwrap();
    let reply = send(
        http1
            .get(format!("{}/x", site.localhost_url()))
            .header("host", "169.254.169.254"),
    )
    .await;
    reply.assert_junction_error(421, "http_request_error", "misdirected");
    assert_eq!(site.requests(), 0);
}

#[tokio::test]
async fn robots_txt_paths_apply_inside_an_intercepted_tunnel() {
    let site = TlsOrigin::start("site").await;
    let a = HttpExit::start("a").await;
    let setup = Setup::start(&site, &[&a], "respect_robots = true").await;

    let reply = send(
        setup
            .client()
            .get(format!("{}/private/page", site.localhost_url())),
    )
    .await;
    reply.assert_junction_error(403, "http_request_denied", "robots");
    assert_eq!(site.requests(), 1, "robots.txt only, fetched over TLS");
    let reply = get_ok(&setup.client(), &format!("{}/public", site.localhost_url())).await;
    assert_eq!(reply.body, "secure site /public");
    assert_eq!(site.requests(), 2, "robots.txt is kept");
}

#[tokio::test]
async fn a_site_whose_certificate_does_not_verify_is_refused_never_downgraded() {
    let trusted = TlsOrigin::start("trusted").await;
    let rogue = TlsOrigin::start("rogue").await;
    let a = HttpExit::start("a").await;
    // upstream_ca trusts `trusted`'s certificate only.
    let setup = Setup::start(&trusted, &[&a], "").await;

    let reply = send(
        setup
            .client()
            .get(format!("{}/secret", rogue.localhost_url())),
    )
    .await;
    reply.assert_junction_error(502, "tls_certificate_error", "upstream_certificate_invalid");
    assert!(
        reply.body.contains("upstream_certificate_invalid"),
        "{}",
        reply.body
    );
    assert_eq!(rogue.requests(), 0, "the site got no request");
    assert_eq!(
        setup.requests("a", "upstream_certificate_invalid").await,
        1.0
    );
    let lines = setup
        .log_lines("the refused request's line", |lines| {
            lines.iter().any(|l| l["path"] == "/secret")
        })
        .await;
    let refused = lines.iter().find(|l| l["path"] == "/secret").unwrap();
    assert_eq!(
        refused["outcome"], "upstream_certificate_invalid",
        "{refused}"
    );
    assert_eq!(refused["status"], 502, "{refused}");
}

#[tokio::test]
async fn an_unlisted_host_still_tunnels_end_to_end() {
    let site = TlsOrigin::start("site").await;
    let a = HttpExit::start("a").await;
    let setup = Setup::start(&site, &[&a], "").await;

    // 127.0.0.1 is not in intercept.hosts: the client sees the site's own certificate.
    let url = format!("{}/direct", site.url());
    let own = setup.client_trusting(&[site.ca_pem()]).build().unwrap();
    let reply = get_ok(&own, &url).await;
    assert_eq!(reply.body, "secure site /direct");
    assert_eq!(
        reply.header("x-junction-exit"),
        None,
        "not Junction's answer"
    );
    let error = setup
        .client()
        .get(&url)
        .send()
        .await
        .expect_err("Junction's CA does not vouch for an unlisted host");
    assert!(
        format!("{error:?}").to_lowercase().contains("certificate"),
        "{error:?}"
    );
    // A tunnel's line is written when it closes.
    drop(own);
    let lines = setup
        .log_lines("the tunnel lines", |lines| {
            lines.iter().filter(|l| l["method"] == "CONNECT").count() >= 2
        })
        .await;
    assert!(
        lines
            .iter()
            .all(|l| l["outcome"] == "ok" && l["path"].is_null()),
        "plain tunnels: {lines:?}"
    );
}

#[tokio::test]
async fn a_client_that_rejects_the_minted_certificate_is_counted_and_logged() {
    let site = TlsOrigin::start("site").await;
    let a = HttpExit::start("a").await;
    let setup = Setup::start(&site, &[&a], "").await;

    // This client trusts the site itself, not Junction's CA (as a pinning client would).
    let pinned = setup.client_trusting(&[site.ca_pem()]).build().unwrap();
    let error = pinned
        .get(format!("{}/pinned", site.localhost_url()))
        .send()
        .await
        .expect_err("the minted certificate is not trusted");
    assert!(
        format!("{error:?}").to_lowercase().contains("certificate"),
        "{error:?}"
    );

    let counted = eventually("the rejection in the metrics", || async {
        let n = setup.requests("none", "client_rejected_certificate").await;
        (n > 0.0).then_some(n)
    })
    .await;
    assert_eq!(counted, 1.0);
    let lines = setup
        .log_lines("the rejection's line", |lines| {
            lines
                .iter()
                .any(|l| l["outcome"] == "client_rejected_certificate")
        })
        .await;
    let line = lines
        .iter()
        .find(|l| l["outcome"] == "client_rejected_certificate")
        .unwrap();
    assert_eq!(line["host"], "localhost", "{line}");
    assert_eq!(site.requests(), 0);
}

#[tokio::test]
async fn http2_to_the_client_and_to_the_site_when_alpn_offers_it() {
    let site = TlsOrigin::start("site").await;
    let a = HttpExit::start("a").await;
    let setup = Setup::start(&site, &[&a], "").await;

    // reqwest offers h2 and http/1.1 by ALPN; Junction's leaf picks h2.
    let reply = within(
        "GET over h2",
        setup
            .client()
            .get(format!("{}/two", site.localhost_url()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(reply.version(), reqwest::Version::HTTP_2);
    assert_eq!(reply.text().await.unwrap(), "secure site /two");
    // The site offers h2 too.
    assert_eq!(site.versions(), vec![http::Version::HTTP_2]);

    // A client offering http/1.1 only gets HTTP/1.1.
    let http1 = setup
        .client_trusting(&[&setup.ca_pem])
        .http1_only()
        .build()
        .unwrap();
    let reply = within(
        "GET over HTTP/1.1",
        http1.get(format!("{}/one", site.localhost_url())).send(),
    )
    .await
    .unwrap();
    assert_eq!(reply.version(), reqwest::Version::HTTP_11);
    assert_eq!(reply.text().await.unwrap(), "secure site /one");
}

#[tokio::test]
async fn request_bodies_stream_to_the_site_over_both_protocols() {
    let site = TlsOrigin::start("site").await;
    let a = HttpExit::start("a").await;
    let setup = Setup::start(&site, &[&a], "").await;
    let body = vec![b'x'; 256 * 1024];
    for client in [
        setup.client(),
        setup
            .client_trusting(&[&setup.ca_pem])
            .http1_only()
            .build()
            .unwrap(),
    ] {
        let reply = send(
            client
                .post(format!("{}/upload", site.localhost_url()))
                .body(body.clone()),
        )
        .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.body, "secure site /upload");
    }
    assert_eq!(site.requests(), 2);
}

#[tokio::test]
async fn socks5_clients_are_intercepted_too() {
    let site = TlsOrigin::start("site").await;
    let a = HttpExit::start("a").await;
    let setup = Setup::start_as("socks5", &site, &[&a], "").await;

    let script = format!(
        r#"
import requests
r = requests.get("{url}/socks", proxies={{"https": "socks5h://{proxy}"}}, verify="{ca}", timeout=5)
print(r.status_code, r.headers.get("x-junction-exit"), r.text)
"#,
        url = site.localhost_url(),
        proxy = setup.proxy.addr("scraper"),
        ca = setup.ca_file().display(),
    );
    let out = python(&script).await;
    assert_eq!(out.trim(), "200 a secure site /socks");
    assert_eq!(site.requests(), 1);
}

/// `junction ca init` with `args` in `dir`.
fn ca_init(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary())
        .args(["ca", "init", "--cert", "ca.pem", "--key", "ca.key"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("junction runs")
}

#[tokio::test]
async fn ca_init_writes_a_usable_ca_and_refuses_to_overwrite_it() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let made = ca_init(dir.path(), &["--name", "Crawl fleet CA"]);
    assert!(made.status.success(), "{made:?}");
    let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is for its owner only");
    let first = std::fs::read_to_string(&cert).unwrap();
    assert!(first.starts_with("-----BEGIN CERTIFICATE-----"));

    let again = ca_init(dir.path(), &[]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{again:?}"
    );
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), first, "kept");

    // Usable: Junction intercepts with it, and a client trusting it gets through.
    let site = TlsOrigin::start("site").await;
    let a = HttpExit::start("a").await;
    let toml = format!(
        r#"
[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
allow = ["127.0.0.1/32", "localhost"]
exits = [{{ url = "{exit}", name = "a" }}]
intercept = {{ hosts = ["localhost"], ca = {{ cert = "{cert}", key = "{key}" }}, upstream_ca = "{site_ca}" }}
"#,
        exit = a.url(),
        cert = cert.display(),
        key = key.display(),
        site_ca = {
            let path = dir.path().join("site.pem");
            std::fs::write(&path, site.ca_pem()).unwrap();
            path.display().to_string()
        },
    );
    let proxy = TestProxy::from_toml(&toml).start().await;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", proxy.addr("scraper"))).unwrap())
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(first.as_bytes()).unwrap())
        .timeout(STEP)
        .build()
        .unwrap();
    let reply = get_ok(&client, &format!("{}/made", site.localhost_url())).await;
    assert_eq!(reply.body, "secure site /made");

    // --force replaces both files.
    let forced = ca_init(dir.path(), &["--force"]);
    assert!(forced.status.success(), "{forced:?}");
    assert_ne!(std::fs::read_to_string(&cert).unwrap(), first);
}

#[tokio::test]
async fn check_names_the_key_of_a_ca_that_is_not_one_or_a_key_that_is_not_its() {
    let dir = tempfile::tempdir().unwrap();
    assert!(ca_init(dir.path(), &[]).status.success());
    let other = tempfile::tempdir().unwrap();
    assert!(ca_init(other.path(), &[]).status.success());
    let config = dir.path().join("junction.toml");
    let write = |cert: &Path, key: &Path| {
        std::fs::write(
            &config,
            format!(
                r#"[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
exits = [{{ url = "direct" }}]
intercept = {{ hosts = ["*.example.org"], ca = {{ cert = "{}", key = "{}" }} }}
"#,
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
    };
    let check = || {
        let output = std::process::Command::new(binary())
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .expect("junction runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    write(&dir.path().join("ca.pem"), &other.path().join("ca.key"));
    let (code, stderr) = check();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("egress[0].intercept.ca.key") && stderr.contains("line 5"),
        "{stderr}"
    );
    assert!(stderr.contains("not the CA certificate's key"), "{stderr}");

    // A leaf certificate is no CA.
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["leaf.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.path().join("leaf.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.path().join("leaf.key"), key.serialize_pem()).unwrap();
    write(&dir.path().join("leaf.pem"), &dir.path().join("leaf.key"));
    let (code, stderr) = check();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("egress[0].intercept.ca.cert") && stderr.contains("not a CA"),
        "{stderr}"
    );

    write(&dir.path().join("ca.pem"), &dir.path().join("ca.key"));
    let (code, stderr) = check();
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn scrapy_crawls_an_https_site_through_interception_past_a_captcha() {
    let site = TlsOrigin::start("site").await;
    let (a, b) = (HttpExit::start("a").await, HttpExit::start("b").await);
    let setup = Setup::start(&site, &[&a, &b], "").await;

    let out = setup.dir.path().join("pages.txt");
    let spider = setup.dir.path().join("spider.py");
    std::fs::write(
        &spider,
        format!(
            r#"
import scrapy

class Crawl(scrapy.Spider):
    name = "crawl"
    custom_settings = {{"LOG_LEVEL": "INFO", "RETRY_ENABLED": False, "TELNETCONSOLE_ENABLED": False}}
    start_urls = ["{site}/ban-first/catalog", "{site}/plain"]

    def parse(self, response):
        with open("{out}", "a") as f:
            f.write("%s %s %s\n" % (response.status, response.headers.get("x-junction-exit", b"").decode(), response.text))
"#,
            site = site.localhost_url(),
            out = out.display(),
        ),
    )
    .unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .args(["-m", "scrapy", "runspider"])
            .arg(&spider)
            // Scrapy's HttpProxyMiddleware takes the proxy from the environment.
            .env("https_proxy", setup.proxy_url())
            .env_remove("HTTPS_PROXY")
            .env_remove("no_proxy")
            .env_remove("NO_PROXY")
            .current_dir(setup.dir.path())
            .output(),
    )
    .await
    .expect("scrapy: nothing within 60 s")
    .expect("python3 runs (scripts/test installs scrapy)");
    assert!(
        output.status.success(),
        "scrapy failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let pages = std::fs::read_to_string(&out).unwrap_or_default();
    let mut lines: Vec<&str> = pages.lines().collect();
    lines.sort();
    assert_eq!(
        lines.len(),
        2,
        "{pages}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("200 ") && l.ends_with(" secure site /ban-first/catalog")),
        "the crawl got the page, not the captcha: {pages}"
    );
    assert!(!pages.contains("captcha</html>"), "{pages}");
    assert_eq!(
        setup.bans("a").await + setup.bans("b").await,
        1.0,
        "one exit banned by the captcha"
    );
}
