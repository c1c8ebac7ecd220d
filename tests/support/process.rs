//! `JunctionProcess`: the built `junction` binary as a child process, for what only a
//! process can show (signals, reload from a file, exit codes). Addresses are learned
//! from its "listening" log lines, so configs can use port 0.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub struct JunctionProcess {
    pub child: Child,
    /// Listener name (or "admin") to bound address, as logged.
    pub addrs: HashMap<String, SocketAddr>,
    lines: mpsc::UnboundedReceiver<String>,
    pub config: PathBuf,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_junction")
}

/// The admin token every spawned Junction has (in `JUNCTION_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "lifecycle-tests";

/// Parses `listener "NAME" listening addr=IP:PORT` and `the admin listener listening addr=...`.
fn listening(line: &str) -> Option<(String, SocketAddr)> {
    let addr = line
        .split("addr=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    if line.contains("the admin listener listening") {
        return Some(("admin".into(), addr));
    }
    let name = line.split("listener \"").nth(1)?.split('"').next()?;
    line.contains("listening").then(|| (name.to_string(), addr))
}

impl JunctionProcess {
    /// Starts `junction run --config FILE` and waits until the admin listener and
    /// `listeners` named listeners have logged their addresses.
    pub async fn start(config: &Path, listeners: &[&str]) -> JunctionProcess {
        Self::start_with(config, &[], listeners).await
    }

    /// As `start`, with more arguments for `junction run` (`--upgrade-from PATH`...).
    pub async fn start_with(
        config: &Path,
        args: &[&std::ffi::OsStr],
        listeners: &[&str],
    ) -> JunctionProcess {
        let mut child = Command::new(binary())
            .args(["run", "--config"])
            .arg(config)
            .args(args)
            .env("RUST_LOG", "info")
            // The default variable of `[admin] token_env`: `POST /api/reload` needs it.
            .env("JUNCTION_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn junction");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = JunctionProcess {
            child,
            addrs: HashMap::new(),
            lines,
            config: config.to_path_buf(),
        };
        let mut wanted: Vec<String> = listeners.iter().map(|s| s.to_string()).collect();
        wanted.push("admin".into());
        for name in wanted {
            process.wait_for_listener(&name).await;
        }
        process
    }

    /// Waits for a log line containing `needle`, returning it (30 s at most).
    pub async fn wait_for_log(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line containing {needle:?} within 30 s"))
                .unwrap_or_else(|| panic!("junction exited before logging {needle:?}"));
            if let Some((name, addr)) = listening(&line) {
                self.addrs.insert(name, addr);
            }
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Waits until listener `name` (or "admin") has logged its address.
    pub async fn wait_for_listener(&mut self, name: &str) -> SocketAddr {
        while !self.addrs.contains_key(name) {
            self.wait_for_log("listening").await;
        }
        self.addrs[name]
    }

    pub fn url(&self, listener: &str, path: &str) -> String {
        format!("http://{}{path}", self.addrs[listener])
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -s {signal} failed");
    }
}

/// Runs `python3 -c script` (scripts/test installs it, `requests` and PySocks) and
/// returns its output; fails the test when it fails.
pub async fn python(script: &str) -> String {
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .output(),
    )
    .await
    .expect("python3: nothing within 30 s")
    .expect("python3 runs (scripts/test installs it, `requests` and PySocks)");
    assert!(
        output.status.success(),
        "python failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
