//! The audit log: one JSON line per security decision (deny, 401, 429, with the rule)
//! and per admin action, in its own file. Each line carries the SHA-256 of the line
//! before it (`prev`), so editing, removing or reordering any line breaks the chain; an
//! anchor file beside it (`<log>.anchor`: line count and last hash, HMAC-signed when a key
//! is set) fixes the end, so a cut-off tail or an edited last line shows too.
//! `junction audit verify` checks both. Lines are written by a thread of their own and
//! fsynced in small batches; the anchor at checkpoints and at shutdown.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `prev` of the first line of a file.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Lines written before an fsync, at most; and the longest wait before one.
const BATCH: usize = 64;
const BATCH_WAIT: Duration = Duration::from_millis(50);
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_CHECKPOINT_RECORDS: u64 = 1000;
/// Shortest accepted anchor key: below this an HMAC key can be guessed.
pub const MIN_KEY_BYTES: usize = 16;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_line(line: &str) -> String {
    hex(&Sha256::digest(line.as_bytes()))
}

/// HMAC-SHA256 (RFC 2104); a dozen lines do not justify a crate.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// How the audit log is written, from `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub path: PathBuf,
    /// An anchor at most this long after a line is written...
    pub checkpoint_interval: Duration,
    /// ...or after this many lines, whichever comes first.
    pub checkpoint_records: u64,
    /// Signs the anchor (HMAC-SHA256) when set.
    pub key: Option<Arc<[u8]>>,
}

impl AuditSettings {
    pub fn new(path: PathBuf) -> Self {
        AuditSettings {
            path,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            checkpoint_records: DEFAULT_CHECKPOINT_RECORDS,
            key: None,
        }
    }
}

/// `<log>.anchor`.
pub fn anchor_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".anchor");
    PathBuf::from(name)
}

/// The checkpoint of a log's end: its first `lines` lines end with `last_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    pub lines: usize,
    pub last_hash: String,
    pub time: String,
    /// HMAC-SHA256 of the three fields above, with the configured key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Anchor {
    fn signed_text(&self) -> String {
        format!(
            "junction-audit-anchor:{}:{}:{}",
            self.lines, self.last_hash, self.time
        )
    }

    fn new(lines: usize, last_hash: &str, key: Option<&[u8]>) -> Anchor {
        let mut anchor = Anchor {
            lines,
            last_hash: last_hash.to_string(),
            time: crate::units::now_rfc3339(),
            mac: None,
        };
        anchor.mac = key.map(|key| hex(&hmac_sha256(key, anchor.signed_text().as_bytes())));
        anchor
    }

    fn signature_matches(&self, key: &[u8]) -> bool {
        let expected = hex(&hmac_sha256(key, self.signed_text().as_bytes()));
        self.mac.as_deref().is_some_and(|mac| {
            crate::security::constant_time_eq(mac.as_bytes(), expected.as_bytes())
        })
    }

    /// Written to a temporary file, fsynced, renamed over the old anchor, and the folder
    /// fsynced: a crash leaves the old anchor or the new one, never half of one.
    fn write(&self, log: &Path) -> std::io::Result<()> {
        let path = anchor_path(log);
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut file = std::fs::File::create(&temporary)?;
        let text = serde_json::to_string(self).map_err(std::io::Error::other)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Makes the rename itself durable; not possible on every platform.
            let _ = std::fs::File::open(folder).and_then(|f| f.sync_all());
        }
        Ok(())
    }

    fn read(log: &Path) -> std::io::Result<Option<Anchor>> {
        match std::fs::read_to_string(anchor_path(log)) {
            Ok(text) => serde_json::from_str(text.trim())
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// The audit log writer shared by the whole process.
#[derive(Default)]
pub struct AuditLog {
    sender: Mutex<Option<Writer>>,
}

/// The open log's settings, the queue to its writer thread, and the thread.
struct Writer {
    settings: AuditSettings,
    queue: SyncSender<Map<String, Value>>,
    thread: std::thread::JoinHandle<()>,
}

impl AuditLog {
    /// Opens (or keeps) the log; `None` turns it off. The chain continues from the last
    /// line already in the file; a file that no longer matches its anchor or its chain is
    /// noted as the first new line (`kind: "audit_check"`).
    pub fn apply(&self, settings: Option<&AuditSettings>) -> std::io::Result<()> {
        let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        if sender.as_ref().map(|w| &w.settings) == settings {
            return Ok(());
        }
        // The old writer drains its queue and writes its final anchor; on the same file
        // it must be done before the new one reads where the chain ends.
        if let Some(old) = sender.take() {
            drop(old.queue);
            if Some(&old.settings.path) == settings.map(|s| &s.path) {
                let _ = old.thread.join();
            }
        }
        *sender = match settings {
            None => None,
            Some(settings) => {
                let found = scan(&settings.path, None)?;
                let problem = match check(&settings.path, &found, settings.key.as_deref())? {
                    Verdict::Intact { .. } => None,
                    Verdict::Broken { line, reason } => {
                        Some(format!("broken at line {line}: {reason}"))
                    }
                    Verdict::BadAnchor { reason }
                        if matches!(Anchor::read(&settings.path), Ok(None)) =>
                    {
                        // A new log, or one from before anchors (or whose anchor was
                        // deleted): anchor it as found. Lines already there are vouched
                        // for by nothing, since a cut tail would look the same: that is
                        // written into the chain.
                        Anchor::new(found.lines, &found.last_hash, settings.key.as_deref())
                            .write(&settings.path)?;
                        tracing::debug!(%reason, "audit log anchored at open");
                        (found.lines > 0).then(|| {
                            format!(
                                "{} lines found without an anchor: their end is not vouched for",
                                found.lines
                            )
                        })
                    }
                    Verdict::BadAnchor { reason } => Some(reason),
                };
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&settings.path)?;
                let (tx, rx) = std::sync::mpsc::sync_channel(4096);
                let chain = Chain {
                    file,
                    settings: settings.clone(),
                    prev: found.last_hash,
                    lines: found.lines,
                    anchored: found.lines,
                    anchored_at: Instant::now(),
                };
                let thread = std::thread::Builder::new()
                    .name("audit-log".into())
                    .spawn(move || chain.run(rx))?;
                if let Some(problem) = problem {
                    tracing::error!(target: "audit", path = %settings.path.display(), %problem, "the audit log found at open does not verify");
                    let mut event = Map::new();
                    event.insert("time".into(), Value::String(crate::units::now_rfc3339()));
                    event.insert("kind".into(), "audit_check".into());
                    event.insert("problem".into(), Value::String(problem));
                    let _ = tx.try_send(event);
                }
                Some(Writer {
                    settings: settings.clone(),
                    queue: tx,
                    thread,
                })
            }
        };
        Ok(())
    }

    /// Writes what is queued and a final anchor, and waits for both (shutdown).
    pub fn close(&self) {
        let writer = self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Writer { queue, thread, .. }) = writer {
            drop(queue);
            let _ = thread.join();
        }
    }

    /// Records one event (`kind` plus its fields). Never blocks a request: if the writer
    /// is far behind, the event is reported in the process log instead.
    pub fn record(&self, kind: &str, fields: Value) {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let Some(writer) = sender.as_ref() else {
            return;
        };
        let mut event = Map::new();
        event.insert("time".into(), Value::String(crate::units::now_rfc3339()));
        event.insert("kind".into(), Value::String(kind.into()));
        if let Value::Object(fields) = fields {
            event.extend(fields);
        }
        if let Err(TrySendError::Full(event) | TrySendError::Disconnected(event)) =
            writer.queue.try_send(event)
        {
            tracing::error!(target: "audit", ?event, "audit log writer is behind; event not written to the audit file");
        }
    }
}

/// The writer thread's state: where the chain is, and where it was last anchored.
struct Chain {
    file: std::fs::File,
    settings: AuditSettings,
    prev: String,
    lines: usize,
    anchored: usize,
    anchored_at: Instant,
}

impl Chain {
    fn run(mut self, events: Receiver<Map<String, Value>>) {
        loop {
            let first = if self.lines > self.anchored {
                let left = self
                    .settings
                    .checkpoint_interval
                    .saturating_sub(self.anchored_at.elapsed());
                match events.recv_timeout(left) {
                    Ok(event) => event,
                    Err(RecvTimeoutError::Timeout) => {
                        self.checkpoint();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match events.recv() {
                    Ok(event) => event,
                    Err(_) => break,
                }
            };
            self.write_batch(first, &events);
            let due = (self.lines - self.anchored) as u64 >= self.settings.checkpoint_records
                || self.anchored_at.elapsed() >= self.settings.checkpoint_interval;
            if due {
                self.checkpoint();
            }
        }
        // Shutdown, or the log was switched off or moved: anchor the very end.
        self.checkpoint();
    }

    fn write_batch(&mut self, first: Map<String, Value>, events: &Receiver<Map<String, Value>>) {
        let mut batch = vec![first];
        let deadline = Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH {
            let left = deadline.saturating_duration_since(Instant::now());
            match events.recv_timeout(left) {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let mut text = String::new();
        let mut prev = self.prev.clone();
        for mut event in batch.drain(..) {
            event.insert("prev".into(), Value::String(prev.clone()));
            let line = Value::Object(event).to_string();
            prev = hash_line(&line);
            text.push_str(&line);
            text.push('\n');
        }
        let count = text.bytes().filter(|b| *b == b'\n').count();
        match self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
        {
            Ok(()) => {
                self.prev = prev;
                self.lines += count;
            }
            Err(error) => tracing::error!(%error, "cannot write the audit log"),
        }
    }

    fn checkpoint(&mut self) {
        let anchor = Anchor::new(self.lines, &self.prev, self.settings.key.as_deref());
        match anchor.write(&self.settings.path) {
            Ok(()) => {
                // Also in the process log: a copy shipped elsewhere outlives a rewrite of
                // both files.
                tracing::info!(target: "audit", lines = anchor.lines, last_hash = %anchor.last_hash, "audit log anchored");
                self.anchored = self.lines;
                self.anchored_at = Instant::now();
            }
            Err(error) => {
                tracing::error!(%error, "cannot write the audit log's anchor");
                // Try again after a full interval, not in a tight loop.
                self.anchored_at = Instant::now();
            }
        }
    }
}

/// A pass over a log file: its lines, the hash of the last one, the hash after line
/// `at` if asked, and the first line that breaks the chain.
struct Scan {
    lines: usize,
    last_hash: String,
    hash_at: Option<String>,
    broken: Option<(usize, String)>,
}

fn scan(path: &Path, at: Option<usize>) -> std::io::Result<Scan> {
    let mut found = Scan {
        lines: 0,
        last_hash: GENESIS.to_string(),
        hash_at: (at == Some(0)).then(|| GENESIS.to_string()),
        broken: None,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(error) => return Err(error),
    };
    for line in BufReader::new(file).lines() {
        let line = line?;
        let number = found.lines + 1;
        if found.broken.is_none() {
            found.broken = chain_break(&line, number, &found.last_hash);
        }
        found.last_hash = hash_line(&line);
        found.lines = number;
        if at == Some(number) {
            found.hash_at = Some(found.last_hash.clone());
        }
    }
    Ok(found)
}

/// Why `line` (number `number`) does not continue a chain ending in `expected`, if it does not.
fn chain_break(line: &str, number: usize, expected: &str) -> Option<(usize, String)> {
    let value: Value = match serde_json::from_str(line) {
        Ok(value) => value,
        Err(e) => return Some((number, format!("not a JSON line: {e}"))),
    };
    match value.get("prev").and_then(Value::as_str) {
        Some(prev) if prev == expected => None,
        Some(_) if number == 1 => Some((number, "the first line does not start the chain".into())),
        Some(_) => Some((
            number,
            format!(
                "its prev does not match the hash of line {} (that line or this one was changed, removed or inserted)",
                number - 1
            ),
        )),
        None => Some((number, "no prev field".into())),
    }
}

/// What `junction audit verify` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact {
        lines: usize,
        /// The anchor the end was checked against (`None` with `--no-anchor`).
        anchor: Option<Anchor>,
        /// Whether the anchor's HMAC was checked (a key was given).
        signature_checked: bool,
    },
    /// 1-based line number of the first line that is wrong (or missing).
    Broken { line: usize, reason: String },
    /// The anchor is missing, unreadable or not signed as it must be.
    BadAnchor { reason: String },
}

/// How to verify: the anchor key, and whether a missing anchor is acceptable.
#[derive(Debug, Default, Clone)]
pub struct VerifyOptions {
    pub key: Option<Vec<u8>>,
    /// Check the chain alone (logs written before anchors existed).
    pub no_anchor: bool,
}

/// Checks the hash chain of an audit file and, unless told not to, its end against the anchor.
pub fn verify(path: &Path, options: &VerifyOptions) -> std::io::Result<Verdict> {
    // The anchor first: it only ever covers lines already written, so a checkpoint taken
    // while the log is read cannot look like a cut-off tail.
    let anchor = if options.no_anchor {
        None
    } else {
        Anchor::read(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("{}: {e}", anchor_path(path).display()))
        })?
    };
    std::fs::metadata(path)?;
    let found = scan(path, anchor.as_ref().map(|a| a.lines))?;
    if options.no_anchor {
        return Ok(match found.broken {
            Some((line, reason)) => Verdict::Broken { line, reason },
            None => Verdict::Intact {
                lines: found.lines,
                anchor: None,
                signature_checked: false,
            },
        });
    }
    judge(path, &found, anchor, options.key.as_deref())
}

/// `verify` on an already scanned file, with the anchor read now.
fn check(path: &Path, found: &Scan, key: Option<&[u8]>) -> std::io::Result<Verdict> {
    let anchor = match Anchor::read(path) {
        Ok(anchor) => anchor,
        Err(e) => {
            return Ok(Verdict::BadAnchor {
                reason: format!("unreadable anchor {}: {e}", anchor_path(path).display()),
            });
        }
    };
    let found = match &anchor {
        Some(anchor) if anchor.lines > 0 && anchor.lines <= found.lines => {
            scan(path, Some(anchor.lines))?
        }
        _ => Scan {
            lines: found.lines,
            last_hash: found.last_hash.clone(),
            hash_at: anchor
                .as_ref()
                .filter(|a| a.lines == 0)
                .map(|_| GENESIS.to_string()),
            broken: found.broken.clone(),
        },
    };
    judge(path, &found, anchor, key)
}

fn judge(
    path: &Path,
    found: &Scan,
    anchor: Option<Anchor>,
    key: Option<&[u8]>,
) -> std::io::Result<Verdict> {
    if let Some((line, reason)) = &found.broken {
        return Ok(Verdict::Broken {
            line: *line,
            reason: reason.clone(),
        });
    }
    let Some(anchor) = anchor else {
        return Ok(Verdict::BadAnchor {
            reason: format!(
                "no anchor file {}: the end of the log cannot be checked (--no-anchor checks the chain alone)",
                anchor_path(path).display()
            ),
        });
    };
    if let Some(key) = key {
        if anchor.mac.is_none() {
            return Ok(Verdict::BadAnchor {
                reason: "the anchor is not signed, but a key was given: it may have been rewritten"
                    .into(),
            });
        }
        if !anchor.signature_matches(key) {
            return Ok(Verdict::BadAnchor {
                reason: "the anchor's signature does not match: it was forged or altered, or the key is not the one it was signed with".into(),
            });
        }
    }
    if anchor.lines > found.lines {
        return Ok(Verdict::Broken {
            line: found.lines + 1,
            reason: format!(
                "the log ends after {} lines but its anchor of {} records {} (lines were cut off the end)",
                found.lines, anchor.time, anchor.lines
            ),
        });
    }
    if found.hash_at.as_deref() != Some(anchor.last_hash.as_str()) {
        return Ok(Verdict::Broken {
            line: anchor.lines,
            reason: format!(
                "its hash does not match the anchor of {} (the last anchored line was changed)",
                anchor.time
            ),
        });
    }
    Ok(Verdict::Intact {
        lines: found.lines,
        anchor: Some(anchor),
        signature_checked: key.is_some(),
    })
}

/// A shared handle, as the gateway and the filters hold it.
pub type SharedAuditLog = Arc<AuditLog>;

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(path: &Path) -> AuditSettings {
        AuditSettings::new(path.to_path_buf())
    }

    /// Writes `n` records and closes the log (which writes the final anchor).
    fn write_log(settings: &AuditSettings, n: usize) {
        let log = AuditLog::default();
        log.apply(Some(settings)).unwrap();
        for i in 0..n {
            log.record("deny", serde_json::json!({ "rule": format!("r{i}") }));
        }
        log.close();
    }

    fn check(path: &Path) -> Verdict {
        verify(path, &VerifyOptions::default()).unwrap()
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    fn rewrite(path: &Path, lines: &[String]) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_clean_log_verifies_and_reopening_continues_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&settings(&path), 5);
        match check(&path) {
            Verdict::Intact {
                lines: 5,
                anchor: Some(anchor),
                ..
            } => assert_eq!(anchor.lines, 5),
            other => panic!("{other:?}"),
        }
        write_log(&settings(&path), 1);
        assert!(matches!(check(&path), Verdict::Intact { lines: 6, .. }));

        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"r2\"", "\"r3\"", 1)).unwrap();
        match check(&path) {
            Verdict::Broken { line, .. } => assert_eq!(line, 4, "the line after the edited one"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_cut_off_tail_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&settings(&path), 5);
        let all = lines(&path);
        rewrite(&path, &all[..3]);
        match check(&path) {
            Verdict::Broken { line, reason } => {
                assert_eq!(line, 4);
                assert!(reason.contains("cut off"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Without the anchor the chain alone cannot tell.
        let options = VerifyOptions {
            no_anchor: true,
            ..Default::default()
        };
        assert!(matches!(
            verify(&path, &options).unwrap(),
            Verdict::Intact { lines: 3, .. }
        ));
        std::fs::write(&path, "").unwrap();
        assert!(matches!(check(&path), Verdict::Broken { line: 1, .. }));
    }

    #[test]
    fn an_edited_last_line_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&settings(&path), 5);
        let mut all = lines(&path);
        all[4] = all[4].replacen("\"r4\"", "\"r9\"", 1);
        rewrite(&path, &all);
        match check(&path) {
            Verdict::Broken { line, reason } => {
                assert_eq!(line, 5);
                assert!(
                    reason.contains("last anchored line was changed"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        // And a removed anchor is not a clean bill either.
        std::fs::remove_file(anchor_path(&path)).unwrap();
        assert!(matches!(check(&path), Verdict::BadAnchor { .. }));
    }

    #[test]
    fn shutdown_and_the_record_count_write_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut slow = settings(&path);
        slow.checkpoint_interval = Duration::from_secs(3600);
        let log = AuditLog::default();
        log.apply(Some(&slow)).unwrap();
        assert_eq!(
            Anchor::read(&path).unwrap().unwrap().lines,
            0,
            "anchored at open"
        );
        for i in 0..3 {
            log.record("deny", serde_json::json!({ "rule": i }));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&path).unwrap().lines().count() < 3 {
            assert!(Instant::now() < deadline, "three lines written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            Anchor::read(&path).unwrap().unwrap().lines,
            0,
            "no checkpoint due yet"
        );
        log.close();
        assert_eq!(
            Anchor::read(&path).unwrap().unwrap().lines,
            3,
            "the shutdown checkpoint"
        );

        let mut by_count = slow.clone();
        by_count.checkpoint_records = 2;
        let log = AuditLog::default();
        log.apply(Some(&by_count)).unwrap();
        log.record("deny", serde_json::json!({ "rule": "a" }));
        log.record("deny", serde_json::json!({ "rule": "b" }));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Anchor::read(&path).unwrap().unwrap().lines < 5 {
            assert!(Instant::now() < deadline, "anchored after two records");
            std::thread::sleep(Duration::from_millis(5));
        }
        log.close();
    }

    #[test]
    fn new_settings_for_the_same_file_continue_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::default();
        let mut current = settings(&path);
        for round in 0..20u32 {
            current.checkpoint_records = u64::from(round) + 1;
            log.apply(Some(&current)).unwrap();
            log.record("admin", serde_json::json!({ "round": round }));
        }
        log.close();
        assert!(matches!(check(&path), Verdict::Intact { lines: 20, .. }));
    }

    #[test]
    fn a_keyed_anchor_cannot_be_rewritten_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut keyed = settings(&path);
        keyed.key = Some(Arc::from(b"0123456789abcdef".as_slice()));
        write_log(&keyed, 4);
        let with = |key: &[u8]| VerifyOptions {
            key: Some(key.to_vec()),
            no_anchor: false,
        };
        assert!(matches!(
            verify(&path, &with(b"0123456789abcdef")).unwrap(),
            Verdict::Intact {
                lines: 4,
                signature_checked: true,
                ..
            }
        ));
        assert!(matches!(
            verify(&path, &with(b"fedcba9876543210")).unwrap(),
            Verdict::BadAnchor { .. }
        ));

        // An attacker cuts the last line and writes a matching anchor without the key.
        let all = lines(&path);
        rewrite(&path, &all[..3]);
        let forged = Anchor::new(3, &hash_line(&all[2]), None);
        forged.write(&path).unwrap();
        assert!(
            matches!(check(&path), Verdict::Intact { lines: 3, .. }),
            "no key: undetectable"
        );
        assert!(matches!(
            verify(&path, &with(b"0123456789abcdef")).unwrap(),
            Verdict::BadAnchor { .. }
        ));
        let forged = Anchor::new(3, &hash_line(&all[2]), Some(b"guessed-key-xxxx"));
        forged.write(&path).unwrap();
        assert!(matches!(
            verify(&path, &with(b"0123456789abcdef")).unwrap(),
            Verdict::BadAnchor { .. }
        ));
    }

    #[test]
    fn a_garbled_anchor_is_noted_at_open_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&settings(&path), 2);
        std::fs::write(anchor_path(&path), "not json").unwrap();
        assert!(verify(&path, &VerifyOptions::default()).is_err());
        write_log(&settings(&path), 0);
        let note: Value = serde_json::from_str(&lines(&path)[2]).unwrap();
        assert!(
            note["problem"]
                .as_str()
                .unwrap()
                .contains("unreadable anchor"),
            "{note}"
        );
        assert!(matches!(check(&path), Verdict::Intact { lines: 3, .. }));
    }

    /// A log of 4 lines cut to 2 while stopped (and its anchor removed, if asked), then
    /// opened again: the note written as its third line.
    fn note_after_a_cut(remove_anchor: bool) -> (Value, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&settings(&path), 4);
        let all = lines(&path);
        rewrite(&path, &all[..2]);
        if remove_anchor {
            std::fs::remove_file(anchor_path(&path)).unwrap();
        }
        write_log(&settings(&path), 0);
        let after = lines(&path);
        assert_eq!(after.len(), 3);
        let note: Value = serde_json::from_str(&after[2]).unwrap();
        assert_eq!(note["kind"], "audit_check");
        (note, after)
    }

    #[test]
    fn a_log_changed_while_stopped_is_noted_when_reopened() {
        let (note, after) = note_after_a_cut(false);
        assert!(
            note["problem"].as_str().unwrap().contains("cut off"),
            "{note}"
        );
        assert_eq!(note["prev"], hash_line(&after[1]));
    }

    #[test]
    fn a_log_whose_anchor_was_deleted_is_noted_when_reopened() {
        let (note, _) = note_after_a_cut(true);
        assert!(
            note["problem"]
                .as_str()
                .unwrap()
                .contains("without an anchor"),
            "{note}"
        );
        // A new log has nothing to vouch for: no note.
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.log");
        write_log(&settings(&fresh), 2);
        assert!(lines(&fresh).iter().all(|l| !l.contains("audit_check")));
    }
}
