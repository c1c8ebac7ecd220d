//! The audit log: one JSON line per security decision (deny, 401, 429, with the rule)
//! and per admin action, in its own file. Each line carries the SHA-256 of the line
//! before it (`prev`), so editing, removing or reordering any line breaks the chain;
//! `junction audit verify FILE` finds the first broken line. Lines are written by a
//! thread of their own and fsynced in small batches.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `prev` of the first line of a file.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Lines written before an fsync, at most; and the longest wait before one.
const BATCH: usize = 64;
const BATCH_WAIT: Duration = Duration::from_millis(50);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_line(line: &str) -> String {
    hex(&Sha256::digest(line.as_bytes()))
}

/// The audit log writer shared by the whole process.
#[derive(Default)]
pub struct AuditLog {
    sender: Mutex<Option<Writer>>,
}

/// The open file's path and the queue to its writer thread.
type Writer = (PathBuf, SyncSender<Map<String, Value>>);

impl AuditLog {
    /// Opens (or keeps) the log at `path`; `None` turns it off. The chain continues from
    /// the last line already in the file.
    pub fn apply(&self, path: Option<&Path>) -> std::io::Result<()> {
        let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        if sender.as_ref().map(|(p, _)| p.as_path()) == path {
            return Ok(());
        }
        *sender = match path {
            None => None,
            Some(path) => {
                let prev = last_hash(path)?;
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                let (tx, rx) = std::sync::mpsc::sync_channel(4096);
                std::thread::Builder::new()
                    .name("audit-log".into())
                    .spawn(move || write_chain(rx, file, prev))?;
                Some((path.to_path_buf(), tx))
            }
        };
        Ok(())
    }

    /// Records one event (`kind` plus its fields). Never blocks a request: if the writer
    /// is far behind, the event is reported in the process log instead.
    pub fn record(&self, kind: &str, fields: Value) {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let Some((_, tx)) = sender.as_ref() else {
            return;
        };
        let mut event = Map::new();
        event.insert(
            "time".into(),
            Value::String(crate::telemetry::access_log::now_rfc3339()),
        );
        event.insert("kind".into(), Value::String(kind.into()));
        if let Value::Object(fields) = fields {
            event.extend(fields);
        }
        if let Err(TrySendError::Full(event) | TrySendError::Disconnected(event)) =
            tx.try_send(event)
        {
            tracing::error!(target: "audit", ?event, "audit log writer is behind; event not written to the audit file");
        }
    }
}

/// The hash of the last line of an existing file, or the genesis value.
fn last_hash(path: &Path) -> std::io::Result<String> {
    match std::fs::File::open(path) {
        Ok(file) => {
            let mut last = None;
            for line in BufReader::new(file).lines() {
                let line = line?;
                if !line.is_empty() {
                    last = Some(line);
                }
            }
            Ok(last
                .map(|l| hash_line(&l))
                .unwrap_or_else(|| GENESIS.to_string()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(GENESIS.to_string()),
        Err(error) => Err(error),
    }
}

fn write_chain(events: Receiver<Map<String, Value>>, mut file: std::fs::File, mut prev: String) {
    while let Ok(first) = events.recv() {
        let mut batch = vec![first];
        let deadline = std::time::Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match events.recv_timeout(left) {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let mut text = String::new();
        for mut event in batch {
            event.insert("prev".into(), Value::String(prev.clone()));
            let line = Value::Object(event).to_string();
            prev = hash_line(&line);
            text.push_str(&line);
            text.push('\n');
        }
        if let Err(error) = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
        {
            tracing::error!(%error, "cannot write the audit log");
        }
    }
}

/// What `junction audit verify` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact {
        lines: usize,
    },
    /// 1-based line number of the first line whose `prev` does not match.
    Broken {
        line: usize,
        reason: String,
    },
}

/// Checks the hash chain of an audit file.
pub fn verify(path: &Path) -> std::io::Result<Verdict> {
    let file = std::fs::File::open(path)?;
    let mut expected = GENESIS.to_string();
    let mut count = 0;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        let number = i + 1;
        let value: Value = match serde_json::from_str(&line) {
            Ok(value) => value,
            Err(e) => {
                return Ok(Verdict::Broken {
                    line: number,
                    reason: format!("not a JSON line: {e}"),
                });
            }
        };
        match value.get("prev").and_then(Value::as_str) {
            Some(prev) if prev == expected => {}
            Some(_) => {
                let reason = if number == 1 {
                    "the first line does not start the chain".to_string()
                } else {
                    format!(
                        "its prev does not match the hash of line {} (that line or this one was changed, removed or inserted)",
                        number - 1
                    )
                };
                return Ok(Verdict::Broken {
                    line: number,
                    reason,
                });
            }
            None => {
                return Ok(Verdict::Broken {
                    line: number,
                    reason: "no prev field".into(),
                });
            }
        }
        expected = hash_line(&line);
        count = number;
    }
    Ok(Verdict::Intact { lines: count })
}

/// A shared handle, as the gateway and the filters hold it.
pub type SharedAuditLog = Arc<AuditLog>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_verifies_and_one_edited_byte_breaks_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::default();
        log.apply(Some(&path)).unwrap();
        for i in 0..5 {
            log.record("deny", serde_json::json!({ "rule": format!("r{i}") }));
        }
        log.apply(None).unwrap();
        // The writer thread ends once its queue is drained; wait for all five lines.
        for _ in 0..200 {
            if std::fs::read_to_string(&path)
                .map(|t| t.lines().count())
                .unwrap_or(0)
                == 5
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(verify(&path).unwrap(), Verdict::Intact { lines: 5 });

        // Reopening continues the chain.
        log.apply(Some(&path)).unwrap();
        log.record("admin", serde_json::json!({ "action": "reload" }));
        log.apply(None).unwrap();
        for _ in 0..200 {
            if std::fs::read_to_string(&path)
                .map(|t| t.lines().count())
                .unwrap_or(0)
                == 6
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(verify(&path).unwrap(), Verdict::Intact { lines: 6 });

        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replacen("\"r2\"", "\"r3\"", 1);
        std::fs::write(&path, edited).unwrap();
        match verify(&path).unwrap() {
            Verdict::Broken { line, .. } => assert_eq!(line, 4, "the line after the edited one"),
            other => panic!("{other:?}"),
        }
    }
}
