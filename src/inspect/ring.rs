//! Captured flows on disk, written off the request path: a bounded queue feeds one writer
//! thread, which appends each flow as a line to the newest segment file of a directory
//! and deletes the oldest segments to stay within the disk budget. A full queue drops
//! the flow and counts it, so memory stays bounded whatever the traffic.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

/// Segments a budget is cut into: the disk in use stays between `(SEGMENTS - 1) /
/// SEGMENTS` of the budget and the budget, and one deletion frees an eighth of it.
const SEGMENTS: u64 = 8;
/// The smallest segment, whatever the budget.
const MIN_SEGMENT: u64 = 64 * 1024;

/// Where and how much.
#[derive(Debug, Clone)]
pub struct RingConfig {
    pub dir: PathBuf,
    /// Bytes of segment files kept at most.
    pub max_disk: u64,
    /// Flows waiting for the writer at most; more are dropped.
    pub queue: usize,
}

/// What the ring did, for metrics.
#[derive(Debug, Default)]
pub struct RingCounts {
    pub written: AtomicU64,
    /// Dropped because the writer was behind (the queue was full) or gone.
    pub dropped: AtomicU64,
    /// Lost to a failed write (disk full, directory removed); logged.
    pub failed: AtomicU64,
    /// Segment files deleted to stay within the budget.
    pub rotated: AtomicU64,
}

/// The request path's side: [`Ring::offer`] never blocks.
pub struct Ring {
    sender: Option<SyncSender<Vec<u8>>>,
    counts: Arc<RingCounts>,
    writer: Option<JoinHandle<()>>,
}

impl Ring {
    /// Opens the directory (created if missing; segments already there count toward
    /// the budget, and new ones follow them) and starts the writer thread.
    pub fn open(config: RingConfig) -> io::Result<Ring> {
        let (ring, receiver) = Ring::queue(&config)?;
        Ok(ring.start(config, receiver))
    }

    /// The queue without its writer: offers wait, or are dropped, until `start`.
    fn queue(config: &RingConfig) -> io::Result<(Ring, Receiver<Vec<u8>>)> {
        fs::create_dir_all(&config.dir)?;
        let (sender, receiver) = sync_channel(config.queue);
        let ring = Ring {
            sender: Some(sender),
            counts: Arc::default(),
            writer: None,
        };
        Ok((ring, receiver))
    }

    fn start(mut self, config: RingConfig, receiver: Receiver<Vec<u8>>) -> Ring {
        let counts = self.counts.clone();
        let writer = std::thread::Builder::new()
            .name("junction-capture".into())
            .spawn(move || {
                let mut segments = Segments::scan(config.dir, config.max_disk);
                for flow in receiver {
                    match segments.append(&flow, &counts) {
                        Ok(()) => counts.written.fetch_add(1, Ordering::Relaxed),
                        Err(error) => {
                            tracing::warn!(%error, "flow capture: a flow could not be written");
                            counts.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
            .expect("a thread can be started");
        self.writer = Some(writer);
        self
    }

    /// Queues one flow (a JSON line, without its newline) for writing; `false` when it
    /// was dropped because the writer is behind.
    pub fn offer(&self, flow: Vec<u8>) -> bool {
        let sent = match &self.sender {
            Some(sender) => sender.try_send(flow),
            None => return false,
        };
        match sent {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn counts(&self) -> &RingCounts {
        &self.counts
    }

    /// Writes what is queued, then stops the writer.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.sender = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer's view of the directory: segment files `flows-NNNNNNNN.jsonl`, oldest
/// (lowest number) first.
struct Segments {
    dir: PathBuf,
    max_disk: u64,
    segment_size: u64,
    /// Number and size of each segment, oldest first; the last is being written.
    files: Vec<(u64, u64)>,
    current: Option<File>,
}

impl Segments {
    fn scan(dir: PathBuf, max_disk: u64) -> Segments {
        let mut files: Vec<(u64, u64)> = segment_files(&dir)
            .into_iter()
            .map(|(number, path)| (number, fs::metadata(path).map_or(0, |m| m.len())))
            .collect();
        files.sort_unstable();
        Segments {
            dir,
            max_disk,
            segment_size: (max_disk / SEGMENTS).max(MIN_SEGMENT),
            files,
            current: None,
        }
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("flows-{number:08}.jsonl"))
    }

    fn append(&mut self, flow: &[u8], counts: &RingCounts) -> io::Result<()> {
        let full = self
            .files
            .last()
            .is_none_or(|&(_, size)| size + flow.len() as u64 + 1 > self.segment_size);
        if self.current.is_none() || full {
            // A new segment: the numbers go on from the newest one there.
            let number = self.files.last().map_or(1, |&(number, _)| number + 1);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(number))?;
            self.current = Some(file);
            self.files.push((number, 0));
        }
        let mut line = Vec::with_capacity(flow.len() + 1);
        line.extend_from_slice(flow);
        line.push(b'\n');
        self.current
            .as_mut()
            .expect("a segment is open")
            .write_all(&line)?;
        if let Some((_, size)) = self.files.last_mut() {
            *size += line.len() as u64;
        }
        // Within the budget: the oldest segments go, never the one being written.
        while self.files.len() > 1 && self.files.iter().map(|(_, s)| s).sum::<u64>() > self.max_disk
        {
            let (number, _) = self.files.remove(0);
            match fs::remove_file(self.path(number)) {
                Ok(()) => counts.rotated.fetch_add(1, Ordering::Relaxed),
                Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
                Err(error) => return Err(error),
            };
        }
        Ok(())
    }
}

/// The segment files in `dir`, by number.
fn segment_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let number = name
                .to_str()?
                .strip_prefix("flows-")?
                .strip_suffix(".jsonl")?
                .parse()
                .ok()?;
            Some((number, entry.path()))
        })
        .collect();
    files.sort_unstable();
    files
}

/// Every flow line in `dir`, oldest first (a line cut short by a crash is skipped: it
/// is not JSON).
pub fn read_flows(dir: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut flows = Vec::new();
    for (_, path) in segment_files(dir) {
        let file = match File::open(&path) {
            Ok(file) => file,
            // Deleted by the writer meanwhile: its flows are gone.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for line in BufReader::new(file).split(b'\n') {
            let line = line?;
            if serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok() {
                flows.push(line);
            }
        }
    }
    Ok(flows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, max_disk: u64, queue: usize) -> RingConfig {
        RingConfig {
            dir: dir.to_path_buf(),
            max_disk,
            queue,
        }
    }

    fn flow(i: usize) -> Vec<u8> {
        format!(r#"{{"id":{i},"pad":"{}"}}"#, "x".repeat(1000)).into_bytes()
    }

    fn id(line: &[u8]) -> u64 {
        serde_json::from_slice::<serde_json::Value>(line).unwrap()["id"]
            .as_u64()
            .unwrap()
    }

    fn disk(dir: &Path) -> u64 {
        segment_files(dir)
            .iter()
            .map(|(_, path)| fs::metadata(path).unwrap().len())
            .sum()
    }

    #[test]
    fn the_disk_stays_within_budget_and_the_newest_flows_stay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Ring::open(config(dir.path(), 512 * 1024, 10_000)).unwrap();
        for i in 0..5000 {
            assert!(ring.offer(flow(i)));
        }
        let counts = Arc::clone(&ring.counts);
        ring.close();
        assert_eq!(counts.written.load(Ordering::Relaxed), 5000);
        assert!(counts.rotated.load(Ordering::Relaxed) > 0);
        assert!(disk(dir.path()) <= 512 * 1024, "{}", disk(dir.path()));
        let ids: Vec<u64> = read_flows(dir.path())
            .unwrap()
            .iter()
            .map(|l| id(l))
            .collect();
        assert_eq!(ids.last(), Some(&4999));
        assert!(
            ids.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "in order, no gap"
        );
        // Whole segments go: what remains is most of the budget.
        assert!(
            ids.len() as u64 * 1000 > 512 * 1024 * 6 / 10,
            "{}",
            ids.len()
        );
    }

    #[test]
    fn a_writer_behind_drops_flows_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20, 3);
        let (ring, receiver) = Ring::queue(&config).unwrap();
        let offered: Vec<bool> = (0..10).map(|i| ring.offer(flow(i))).collect();
        assert_eq!(
            offered,
            [
                true, true, true, false, false, false, false, false, false, false
            ]
        );
        assert_eq!(ring.counts.dropped.load(Ordering::Relaxed), 7);
        let ring = ring.start(config, receiver);
        let counts = Arc::clone(&ring.counts);
        ring.close();
        assert_eq!(counts.written.load(Ordering::Relaxed), 3);
        let ids: Vec<u64> = read_flows(dir.path())
            .unwrap()
            .iter()
            .map(|l| id(l))
            .collect();
        assert_eq!(ids, [0, 1, 2]);
    }

    #[test]
    fn a_reopened_ring_goes_on_after_its_segments_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let budget = 256 * 1024;
        for round in 0..3 {
            let ring = Ring::open(config(dir.path(), budget, 1000)).unwrap();
            for i in 0..300 {
                ring.offer(flow(round * 1000 + i));
            }
            ring.close();
            assert!(disk(dir.path()) <= budget);
        }
        let ids: Vec<u64> = read_flows(dir.path())
            .unwrap()
            .iter()
            .map(|l| id(l))
            .collect();
        assert_eq!(ids.last(), Some(&2299));
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "oldest first");
        // A line cut short (a crash mid-write) is skipped, not a failure.
        let last = segment_files(dir.path()).pop().unwrap().1;
        OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap()
            .write_all(br#"{"id":9999,"pad":"xx"#)
            .unwrap();
        let again = read_flows(dir.path()).unwrap();
        assert_eq!(again.len(), ids.len());
    }
}
