//! Masking on an egress listener (`[[egress]] mask`): plain and intercepted requests'
//! bodies are masked before they leave through an exit, answers are masked or have
//! their pseudonyms restored on the way back, blocks are refused and audited, and what
//! was found shows in the access log and the metrics, never a value. Real sites (a
//! recording plain-HTTP server, an https site with its own certificate), real exits,
//! reqwest through the proxy.

use crate::support;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use junction::inspect::capture::read_newest;
use junction::tls::authority::generate_authority;
use support::exits::{ExitMode, HttpExit, TlsOrigin};
use support::proxy::RunningProxy;
use support::upstream::{RunningUpstream, TestUpstream, UpstreamReply, reply};
use support::{TestProxy, parse_metrics};

/// How long any single step may take before the test calls it a hang.
const STEP: Duration = Duration::from_secs(5);

const EMAIL: &str = "ann.smith@example.com";
const API_KEY: &str = "sk-proj-Xq7Lr2Vb9Nc4Tk8Wm3Hd6Pz1Sf5Gy0Ju";
/// A Luhn-valid 2-series Mastercard number.
const CARD: &str = "2223 0031 2200 3222";

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

/// A plain-HTTP site that keeps each body it receives and answers `/echo` with it (and
/// its content type), and any other path with `page` as `content_type`.
struct Site {
    upstream: RunningUpstream,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

impl Site {
    async fn start(content_type: &'static str, page: &'static str) -> Site {
        let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let kept = bodies.clone();
        let upstream = TestUpstream::named("site")
            .handler(move |request: http::Request<hyper::body::Incoming>| {
                let kept = kept.clone();
                async move {
                    let echo = request.uri().path() == "/echo";
                    let echoed_type = request.headers().get(http::header::CONTENT_TYPE).cloned();
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    kept.lock().unwrap().push(body.clone());
                    let mut answer: UpstreamReply = if echo {
                        reply(200, body)
                    } else {
                        reply(200, page)
                    };
                    let content_type = match echoed_type {
                        Some(value) if echo => value,
                        _ => http::HeaderValue::from_static(content_type),
                    };
                    answer
                        .headers_mut()
                        .insert(http::header::CONTENT_TYPE, content_type);
                    answer
                }
            })
            .start()
            .await;
        Site { upstream, bodies }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.upstream.url())
    }

    fn bodies(&self) -> Vec<String> {
        let bodies = self.bodies.lock().unwrap();
        bodies
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

/// Junction with one egress listener "scraper" whose `mask` is `mask`, its access and
/// audit logs in a temporary folder. `extra` goes in the `[[egress]]` table.
struct Setup {
    dir: tempfile::TempDir,
    proxy: RunningProxy,
    ca_pem: Option<String>,
}

impl Setup {
    async fn start(mask: &str, exits: &str, extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            r#"
[admin]
bind = "127.0.0.1:0"

[access_log]
path = "{access}"

[audit]
path = "{audit}"

[[egress]]
name = "scraper"
bind = "127.0.0.1:0"
rotation = "round_robin"
allow = ["127.0.0.1/32", "localhost"]
exits = [{exits}]
attempts = 2
mask = {mask}
{extra}
"#,
            access = dir.path().join("access.log").display(),
            audit = dir.path().join("audit.log").display(),
        );
        let proxy = TestProxy::from_toml(&toml).start().await;
        Setup {
            dir,
            proxy,
            ca_pem: None,
        }
    }

    /// As [`Setup::start`], intercepting `localhost` with a fresh CA and trusting
    /// `site`'s certificate upstream.
    async fn intercepting(mask: &str, site: &TlsOrigin) -> Setup {
        let ca = generate_authority("test interception CA").unwrap();
        let files = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = files.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let (cert, key) = (write("ca.pem", &ca.cert_pem), write("ca.key", &ca.key_pem));
        let site_ca = write("site-ca.pem", site.ca_pem());
        let intercept = format!(
            r#"intercept = {{ hosts = ["localhost"], ca = {{ cert = "{cert}", key = "{key}" }}, upstream_ca = "{site_ca}" }}"#
        );
        let mut setup = Setup::start(mask, r#"{ url = "direct" }"#, &intercept).await;
        setup.ca_pem = Some(ca.cert_pem);
        // The files are read at start; the folder may go.
        drop(files);
        setup
    }

    fn client(&self) -> reqwest::Client {
        let proxy = format!("http://{}", self.proxy.addr("scraper"));
        let mut builder = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(proxy).unwrap())
            .timeout(STEP);
        if let Some(pem) = &self.ca_pem {
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }

    async fn post(&self, url: &str, content_type: &str, body: &str) -> (u16, String) {
        let sent = self
            .client()
            .post(url)
            .header("content-type", content_type)
            .body(body.to_string())
            .send();
        let response = within("the answer", sent).await.expect("an answer");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    async fn metrics(&self) -> std::collections::HashMap<String, f64> {
        parse_metrics(&self.proxy.metrics_text().await)
    }

    /// `junction_masking_findings_total` of the scraper for one type, action and
    /// direction.
    async fn findings(&self, kind: &str, action: &str, direction: &str) -> f64 {
        let series = format!(
            r#"junction_masking_findings_total{{route="scraper",type="{kind}",action="{action}",direction="{direction}"}}"#
        );
        self.metrics().await.get(&series).copied().unwrap_or(0.0)
    }

    /// The lines of a log once there are at least `count` that contain `with`.
    async fn lines(&self, log: &str, count: usize, with: &str) -> Vec<serde_json::Value> {
        let path = self.dir.path().join(log);
        within(&format!("{count} line(s) with {with:?} in {log}"), async {
            loop {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<serde_json::Value> = text
                    .lines()
                    .filter(|l| l.contains(with))
                    .map(|l| serde_json::from_str(l).expect("a JSON line"))
                    .collect();
                if lines.len() >= count {
                    return lines;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// Everything the logs hold, for the checks that no value leaked.
    fn log_text(&self) -> String {
        ["access.log", "audit.log"]
            .iter()
            .map(|name| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default())
            .collect()
    }
}

fn prompt() -> String {
    serde_json::json!({
        "note": format!("write to {EMAIL} with key {API_KEY}"),
        "count": 3,
    })
    .to_string()
}

#[tokio::test]
async fn a_plain_request_is_masked_before_it_leaves_and_its_pseudonyms_restored() {
    let site = Site::start("text/plain", "unused").await;
    let flows = tempfile::tempdir().unwrap();
    let setup = Setup::start(
        r#"{ directions = "both", types = { EMAIL_ADDRESS = "pseudonymize" } }"#,
        r#"{ url = "direct" }"#,
        &format!(r#"capture = {{ dir = "{}" }}"#, flows.path().display()),
    )
    .await;

    // A key in the query goes to the site as it is (masking reads bodies), but the log
    // shows it masked.
    let (status, answer) = setup
        .post(
            &site.url(&format!("/echo?key={API_KEY}")),
            "application/json",
            &prompt(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");

    // What left: the e-mail as a pseudonym, the key redacted, other fields unchanged.
    let bodies = site.bodies();
    assert_eq!(bodies.len(), 1);
    let sent: serde_json::Value = serde_json::from_str(&bodies[0]).expect("valid JSON sent");
    assert_eq!(
        sent["note"], "write to <EMAIL_ADDRESS_1> with key [API_KEY]",
        "{sent}"
    );
    assert_eq!(sent["count"], 3);
    // The echo comes back with the pseudonym restored (the redacted key stays redacted).
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        answer["note"],
        format!("write to {EMAIL} with key [API_KEY]")
    );

    let line = &setup.lines("access.log", 1, "\"masked\":\"").await[0];
    let masked = line["masked"].as_str().unwrap();
    assert!(masked.contains("EMAIL_ADDRESS:pseudonymize=1"), "{line}");
    assert!(masked.contains("API_KEY:redact=1"), "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["path"], "/echo?key=[API_KEY]", "{line}");
    assert_eq!(
        setup
            .findings("EMAIL_ADDRESS", "pseudonymize", "request")
            .await,
        1.0
    );
    assert_eq!(setup.findings("API_KEY", "redact", "request").await, 1.0);
    let logs = setup.log_text();
    assert!(
        !logs.contains(EMAIL) && !logs.contains(API_KEY),
        "a value in a log: {logs}"
    );

    // The captured flow keeps the answer with its pseudonyms, not the restored values.
    let flow = newest_flow(flows.path()).await;
    let kept = flow.response.as_ref().unwrap().body.text().unwrap();
    assert!(kept.contains("<EMAIL_ADDRESS_1>"), "{kept}");
    let stored = serde_json::to_string(&flow).unwrap();
    assert!(
        !stored.contains(EMAIL) && !stored.contains(API_KEY),
        "a value in the flow: {stored}"
    );
}

/// The cache of texts read before is kept per client: the same prompt sent again by
/// the same client is answered from it, the same prompt from another user at the same
/// address is read anew (a listener without passwords takes any user name, so the
/// address and the user together say who the client is).
#[tokio::test]
async fn a_prompt_sent_again_is_answered_from_the_cache_of_its_own_client_only() {
    let site = Site::start("text/plain", "unused").await;
    let setup = Setup::start("{}", r#"{ url = "direct" }"#, "").await;
    let proxy = format!("http://{}", setup.proxy.addr("scraper"));
    for user in ["ann", "ann", "bob"] {
        let client = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(&proxy).unwrap().basic_auth(user, "x"))
            .timeout(STEP)
            .build()
            .unwrap();
        let sent = client
            .post(site.url("/echo"))
            .header("content-type", "application/json")
            .body(prompt())
            .send();
        let response = within("the answer", sent).await.expect("an answer");
        assert_eq!(response.status(), 200);
    }
    let bodies = site.bodies();
    assert_eq!(bodies.len(), 3);
    assert!(
        bodies.iter().all(|b| b == &bodies[0] && !b.contains(EMAIL)),
        "{bodies:?}"
    );
    let metrics = setup.metrics().await;
    for (result, count) in [("hit", 1.0), ("miss", 2.0)] {
        let series =
            format!(r#"junction_masking_cache_lookups_total{{route="scraper",result="{result}"}}"#);
        assert_eq!(metrics.get(&series), Some(&count), "{series}: {metrics:?}");
    }
}

/// The first captured flow in `dir`, once it is written.
async fn newest_flow(dir: &std::path::Path) -> junction::inspect::Flow {
    within("the captured flow", async {
        loop {
            let found = read_newest(dir, None, 10).unwrap_or_default();
            if let Some(flow) = found.into_iter().next() {
                return flow;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_blocked_type_is_refused_by_its_name_and_audited_and_the_site_never_asked() {
    let site = Site::start("text/plain", "unused").await;
    let setup = Setup::start(
        r#"{ types = { CREDIT_CARD = "block" } }"#,
        r#"{ url = "direct" }"#,
        "",
    )
    .await;

    let body = format!("pay with {CARD} today");
    let (status, answer) = setup.post(&site.url("/echo"), "text/plain", &body).await;
    assert_eq!(status, 400, "{answer}");
    let error: serde_json::Value = serde_json::from_str(&answer).expect("a JSON error");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("CREDIT_CARD"), "{error}");
    assert!(!answer.contains("2223"), "the value in the error: {answer}");
    assert_eq!(site.upstream.requests(), 0, "nothing went to the site");

    let audit = &setup.lines("audit.log", 1, "mask_block").await[0];
    assert_eq!(audit["egress"], "scraper", "{audit}");
    assert_eq!(audit["type"], "CREDIT_CARD", "{audit}");
    assert_eq!(audit["client_ip"], "127.0.0.1", "{audit}");
    let line = &setup.lines("access.log", 1, "\"status\":400").await[0];
    assert_eq!(line["masked"], "CREDIT_CARD:block=1", "{line}");
    assert_eq!(setup.findings("CREDIT_CARD", "block", "request").await, 1.0);
    assert!(!setup.log_text().contains("2223"));
}

#[tokio::test]
async fn crawled_pages_are_masked_on_the_way_back_and_unreadable_ones_refused() {
    let page = "<p>Contact ann.smith@example.com or 536-22-1947</p>";
    let site = Site::start("text/html; charset=utf-8", page).await;
    let setup = Setup::start(
        r#"{ directions = "response" }"#,
        r#"{ url = "direct" }"#,
        "",
    )
    .await;

    let answer = within("the page", setup.client().get(site.url("/page")).send())
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers().get("content-length").is_none(),
        "a masked answer's length is not the site's"
    );
    let text = answer.text().await.unwrap();
    assert_eq!(text, "<p>Contact [EMAIL_ADDRESS] or [US_SSN]</p>");
    assert_eq!(
        setup.findings("EMAIL_ADDRESS", "redact", "response").await,
        1.0
    );
    let line = &setup.lines("access.log", 1, "\"masked\":\"").await[0];
    assert_eq!(
        line["masked"], "response.EMAIL_ADDRESS:redact=1,response.US_SSN:redact=1",
        "{line}"
    );
}

#[tokio::test]
async fn an_answer_masking_cannot_read_is_a_502_or_passed_and_counted_as_configured() {
    let site = Site::start("application/octet-stream", "bytes 536-22-1947").await;
    let refusing = Setup::start(
        r#"{ directions = "response" }"#,
        r#"{ url = "direct" }"#,
        "",
    )
    .await;
    let answer = within(
        "the refusal",
        refusing.client().get(site.url("/blob")).send(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 502);
    assert_eq!(
        answer.headers()["x-junction-reason"],
        "masking_unreadable_body"
    );
    let error: serde_json::Value = answer.json().await.expect("a JSON error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not text or JSON"),
        "{error}"
    );

    let passing = Setup::start(
        r#"{ directions = "response", on_error = "pass" }"#,
        r#"{ url = "direct" }"#,
        "",
    )
    .await;
    let answer = within(
        "the passed body",
        passing.client().get(site.url("/blob")).send(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "bytes 536-22-1947");
    let passed = passing
        .metrics()
        .await
        .get(r#"junction_masking_passed_total{route="scraper",direction="response"}"#)
        .copied();
    assert_eq!(passed, Some(1.0));
    let line = &passing.lines("access.log", 1, "passed_unmasked").await[0];
    assert_eq!(line["masked"], "response:passed_unmasked", "{line}");
}

#[tokio::test]
async fn a_body_longer_than_max_body_is_refused_or_passed_whole_as_configured() {
    let site = Site::start("text/plain", "ok").await;
    let long = format!("{EMAIL} {}", "x".repeat(200));

    let refusing = Setup::start(r#"{ max_body = "64B" }"#, r#"{ url = "direct" }"#, "").await;
    let (status, answer) = refusing.post(&site.url("/in"), "text/plain", &long).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(site.upstream.requests(), 0);

    let passing = Setup::start(
        r#"{ max_body = "64B", on_error = "pass" }"#,
        r#"{ url = "direct" }"#,
        "",
    )
    .await;
    let (status, answer) = passing.post(&site.url("/in"), "text/plain", &long).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        site.bodies(),
        [long],
        "the whole body, as the client sent it"
    );
    let line = &passing.lines("access.log", 1, "passed_unmasked").await[0];
    assert_eq!(line["masked"], "request:passed_unmasked", "{line}");
}

#[tokio::test]
async fn a_masked_body_is_sent_again_through_the_next_exit_after_a_ban() {
    let site = Site::start("text/plain", "stored").await;
    let (a, b) = (HttpExit::start("a").await, HttpExit::start("b").await);
    // Exit a is banned by "the site" (its 403 captcha); b forwards.
    a.set_mode(ExitMode::Captcha);
    let exits = format!(
        r#"{{ url = "{}", name = "a" }}, {{ url = "{}", name = "b" }}"#,
        a.url(),
        b.url()
    );
    let flows = tempfile::tempdir().unwrap();
    let extra = format!(
        r#"ban = {{ status = [403], cooldown = "60s" }}
capture = {{ dir = "{}" }}"#,
        flows.path().display()
    );
    let setup = Setup::start("{}", &exits, &extra).await;

    // Round robin starts with a; PUT is idempotent, and its masked body is held.
    let sent = setup
        .client()
        .put(site.url("/doc"))
        .header("content-type", "text/plain")
        .body(format!("owner {EMAIL}"))
        .send();
    let answer = within("the PUT", sent).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-junction-exit"], "b");
    assert_eq!(a.plain_count(), 1, "a was asked first");
    assert_eq!(site.bodies(), ["owner [EMAIL_ADDRESS]"]);
    let line = &setup.lines("access.log", 1, "\"masked\":\"").await[0];
    assert_eq!(line["attempts"], 2, "{line}");
    assert_eq!(line["masked"], "EMAIL_ADDRESS:redact=1", "{line}");

    // The captured flow holds the body as it left, masked, and what was found.
    let flow = newest_flow(flows.path()).await;
    assert_eq!(flow.request.body.text(), Some("owner [EMAIL_ADDRESS]"));
    assert_eq!(flow.masked.as_deref(), Some("EMAIL_ADDRESS:redact=1"));
}

#[tokio::test]
async fn an_intercepted_request_is_masked_and_its_answer_restored() {
    let site = TlsOrigin::start("site").await;
    let setup = Setup::intercepting(
        r#"{ directions = "both", types = { EMAIL_ADDRESS = "pseudonymize" } }"#,
        &site,
    )
    .await;

    let url = format!("{}/echo", site.localhost_url());
    let (status, answer) = setup.post(&url, "application/json", &prompt()).await;
    assert_eq!(status, 200, "{answer}");
    let bodies = site.bodies();
    assert_eq!(bodies.len(), 1);
    let sent: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
    assert_eq!(
        sent["note"], "write to <EMAIL_ADDRESS_1> with key [API_KEY]",
        "what the https site received"
    );
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        answer["note"],
        format!("write to {EMAIL} with key [API_KEY]")
    );
    let line = &setup.lines("access.log", 1, "\"masked\":\"").await[0];
    assert_eq!(line["host"], "localhost", "{line}");
    assert!(
        line["masked"]
            .as_str()
            .unwrap()
            .contains("EMAIL_ADDRESS:pseudonymize=1"),
        "{line}"
    );
    assert_eq!(
        setup
            .findings("EMAIL_ADDRESS", "pseudonymize", "request")
            .await,
        1.0
    );
    assert!(!setup.log_text().contains(EMAIL));
}
