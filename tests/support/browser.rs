//! Headless Chromium (Debian's `chromium`, installed by scripts/test) driven over the
//! DevTools protocol: navigate, evaluate, wait for a condition in the page, screenshots,
//! and the console errors and exceptions the page produced.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "/usr/bin/chromium";
/// How long one protocol command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

pub struct Browser {
    // Dropping the child kills Chromium (`kill_on_drop`), then its profile goes.
    _chromium: tokio::process::Child,
    _profile: tempfile::TempDir,
    outgoing: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    events: Arc<Mutex<Vec<Value>>>,
    loaded: Arc<tokio::sync::Notify>,
}

impl Browser {
    /// Starts Chromium on an empty profile and attaches to its first tab. Fails, never
    /// skips, when Chromium is not installed.
    pub async fn launch() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run scripts/test, which installs Debian's chromium package"
        );
        let profile = tempfile::tempdir().expect("profile dir");
        // Without the background-networking flags Chromium reaches for Google's hosts,
        // which this closed network refuses; --no-sandbox because tests run as root.
        let mut chromium = tokio::process::Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let mut stderr = BufReader::new(chromium.stderr.take().expect("stderr")).lines();
        let browser_ws = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = stderr.next_line().await.expect("chromium stderr") {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_string();
                }
            }
            panic!("chromium exited without a DevTools address");
        })
        .await
        .expect("chromium printed no DevTools address within 30 s");
        // Keep reading so that Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

        let port = browser_ws
            .strip_prefix("ws://127.0.0.1:")
            .and_then(|rest| rest.split('/').next())
            .expect("DevTools address on 127.0.0.1");
        let targets: Value = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://127.0.0.1:{port}/json/list"))
            .send()
            .await
            .expect("DevTools target list")
            .json()
            .await
            .expect("target list JSON");
        let page_ws = targets
            .as_array()
            .and_then(|targets| targets.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (socket, _) = tokio_tungstenite::connect_async(page_ws.as_str())
            .await
            .expect("connect to the page's DevTools socket");
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut queue) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let loaded = Arc::new(tokio::sync::Notify::new());
        {
            let (pending, events, loaded) = (pending.clone(), events.clone(), loaded.clone());
            tokio::spawn(async move {
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Ok(value) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    if let Some(id) = value["id"].as_u64() {
                        if let Some(reply) = pending.lock().unwrap().remove(&id) {
                            let _ = reply.send(value);
                        }
                    } else if value["method"] == "Page.loadEventFired" {
                        loaded.notify_waiters();
                    } else {
                        events.lock().unwrap().push(value);
                    }
                }
            });
        }
        let browser = Browser {
            _chromium: chromium,
            _profile: profile,
            outgoing,
            pending,
            next_id: AtomicU64::new(1),
            events,
            loaded,
        };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({})).await;
        }
        browser
    }

    /// Sends one command and returns its `result`; panics on a protocol error.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, reply);
        let message = json!({ "id": id, "method": method, "params": params });
        self.outgoing
            .send(Message::Text(message.to_string()))
            .expect("DevTools socket open");
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, answer)
            .await
            .unwrap_or_else(|_| panic!("{method} got no answer within {COMMAND_TIMEOUT:?}"))
            .expect("DevTools socket closed");
        if let Some(error) = answer.get("error") {
            panic!("{method} failed: {error}");
        }
        answer["result"].clone()
    }

    /// Opens `url` and returns once its load event fired.
    pub async fn navigate(&self, url: &str) {
        let loaded = self.loaded.notified();
        tokio::pin!(loaded);
        loaded.as_mut().enable();
        let result = self.call("Page.navigate", json!({ "url": url })).await;
        assert!(
            result.get("errorText").is_none(),
            "navigate to {url}: {result}"
        );
        tokio::time::timeout(Duration::from_secs(20), loaded)
            .await
            .unwrap_or_else(|_| panic!("{url} did not finish loading within 20 s"));
    }

    /// The value of a JavaScript expression (promises awaited); panics if it throws.
    pub async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            )
            .await;
        if let Some(details) = result.get("exceptionDetails") {
            panic!("{expression} threw: {details}");
        }
        result["result"]["value"].clone()
    }

    /// Waits, up to `deadline`, until `condition` (an expression) is truthy in the page,
    /// checking it on every animation frame there; panics with `what` when it never is.
    pub async fn wait_until(&self, condition: &str, deadline: Duration, what: &str) {
        let expression = format!(
            "new Promise((done) => {{ const check = () => {{ try {{ if ({condition}) return done(true); }} catch (_) {{}} requestAnimationFrame(check); }}; check(); }})"
        );
        tokio::time::timeout(deadline, self.eval(&expression))
            .await
            .unwrap_or_else(|_| panic!("{what}: not within {deadline:?} ({condition})"));
    }

    /// Lays the page out as a screen of `width` x `height` CSS pixels (`mobile`: a phone's
    /// viewport and touch).
    pub async fn viewport(&self, width: u32, height: u32, scale: f64, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile }),
        )
        .await;
    }

    /// A PNG of the page (the whole page when `full_page`).
    pub async fn screenshot(&self, path: &Path, full_page: bool) {
        let result = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": full_page }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(result["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Console errors, uncaught exceptions and error log entries so far, as text.
    pub fn problems(&self) -> Vec<String> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter_map(|event| {
                let params = &event["params"];
                match event["method"].as_str()? {
                    "Runtime.exceptionThrown" => {
                        Some(format!("exception: {}", params["exceptionDetails"]))
                    }
                    "Runtime.consoleAPICalled"
                        if matches!(params["type"].as_str(), Some("error" | "assert")) =>
                    {
                        Some(format!("console.{}: {}", params["type"], params["args"]))
                    }
                    "Log.entryAdded" if params["entry"]["level"] == "error" => Some(format!(
                        "log ({}): {} {}",
                        params["entry"]["source"], params["entry"]["text"], params["entry"]["url"]
                    )),
                    _ => None,
                }
            })
            .collect()
    }
}
