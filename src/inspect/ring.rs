//! Captured flows on disk, written off the request path: a bounded queue feeds one writer
//! thread, which takes what has come on a short tick (never woken per flow), appends each
//! flow as a line to the newest segment file of a directory and deletes the oldest
//! segments to stay within the disk budget. A full queue drops the flow and counts it,
//! so memory stays bounded whatever the traffic.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
    /// Bytes of flows waiting for the writer at most (by [`Line::weight`]); more are
    /// dropped. With `queue`, what bounds the capture's memory whatever the traffic.
    pub queue_bytes: usize,
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

/// What the ring stores: one line each, encoded by the writer thread, so that the
/// request path pays only for handing it over.
pub trait Line: Send + 'static {
    /// About how many bytes the entry holds while it waits (its bodies, mostly).
    fn weight(&self) -> usize;
    /// Appends the entry's line, without its newline.
    fn write_line(&self, out: &mut Vec<u8>);
}

impl Line for Vec<u8> {
    fn weight(&self) -> usize {
        self.len()
    }
    fn write_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl<T: Line + Sync> Line for Arc<T> {
    fn weight(&self) -> usize {
        (**self).weight()
    }
    fn write_line(&self, out: &mut Vec<u8>) {
        (**self).write_line(out);
    }
}

/// The queue between the request path and the writer. Offers never wake the writer: it
/// takes what has come every [`TICK`] (at once when it is behind), so a busy proxy
/// pays no wake-up per flow.
struct Queue<T> {
    items: Mutex<Vec<T>>,
    /// Signalled only to stop the writer.
    stop: Condvar,
    closed: AtomicBool,
}

/// How often an idle writer looks for flows: a flow reaches the disk within about this.
/// Short, because the writer shares cores with the proxy: at 20 ms, the bursts it then
/// wrote stalled a proxy pinned to the same core (a quarter fewer requests per second
/// in `bench/ab.sh` at `sample = 1.0`); at 2 ms it wakes 500 times a second at most.
const TICK: Duration = Duration::from_millis(2);

/// The request path's side: [`Ring::offer`] never blocks on the writer.
pub struct Ring<T: Line = Vec<u8>> {
    queue: Arc<Queue<T>>,
    counts: Arc<RingCounts>,
    /// Bytes waiting in the queue, by weight.
    queued: Arc<AtomicUsize>,
    queue_flows: usize,
    queue_bytes: usize,
    /// The writer's budget, which a reload may change.
    max_disk: Arc<AtomicU64>,
    writer: Option<JoinHandle<()>>,
}

impl<T: Line> Ring<T> {
    /// Opens the directory (created if missing; segments already there count toward
    /// the budget, and new ones follow them) and starts the writer thread.
    pub fn open(config: RingConfig) -> io::Result<Ring<T>> {
        Ok(Ring::queue(&config)?.start(config))
    }

    /// The queue without its writer: offers wait, or are dropped, until `start`.
    fn queue(config: &RingConfig) -> io::Result<Ring<T>> {
        fs::create_dir_all(&config.dir)?;
        Ok(Ring {
            queue: Arc::new(Queue {
                items: Mutex::new(Vec::new()),
                stop: Condvar::new(),
                closed: AtomicBool::new(false),
            }),
            counts: Arc::default(),
            queued: Arc::default(),
            queue_flows: config.queue,
            queue_bytes: config.queue_bytes,
            max_disk: Arc::new(AtomicU64::new(config.max_disk)),
            writer: None,
        })
    }

    fn start(mut self, config: RingConfig) -> Ring<T> {
        let counts = self.counts.clone();
        let queued = self.queued.clone();
        let max_disk = self.max_disk.clone();
        let queue = self.queue.clone();
        let writer = std::thread::Builder::new()
            .name("junction-capture".into())
            .spawn(move || {
                let mut segments = Segments::scan(config.dir, config.max_disk);
                let mut line = Vec::new();
                let mut batch = Vec::new();
                loop {
                    let closed = {
                        let mut items = queue.items.lock().unwrap_or_else(|e| e.into_inner());
                        while items.is_empty() && !queue.closed.load(Ordering::Acquire) {
                            items = queue
                                .stop
                                .wait_timeout(items, TICK)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                        std::mem::swap(&mut *items, &mut batch);
                        queue.closed.load(Ordering::Acquire)
                    };
                    if batch.is_empty() && closed {
                        return;
                    }
                    segments.set_budget(max_disk.load(Ordering::Relaxed));
                    for flow in batch.drain(..) {
                        line.clear();
                        flow.write_line(&mut line);
                        queued.fetch_sub(flow.weight(), Ordering::Relaxed);
                        drop(flow);
                        match segments.append(&line, &counts) {
                            Ok(()) => counts.written.fetch_add(1, Ordering::Relaxed),
                            Err(error) => {
                                tracing::warn!(%error, "flow capture: a flow could not be written");
                                counts.failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                }
            })
            .expect("a thread can be started");
        self.writer = Some(writer);
        self
    }

    /// Queues one flow for writing; `false` when it was dropped because the writer is
    /// behind (too many flows, or too many bytes, wait) or stopped.
    pub fn offer(&self, flow: T) -> bool {
        if self.queue.closed.load(Ordering::Relaxed) {
            return false;
        }
        let weight = flow.weight();
        let before = self.queued.fetch_add(weight, Ordering::Relaxed);
        // One flow larger than the whole budget still goes when nothing waits.
        let too_many_bytes = before > 0 && before + weight > self.queue_bytes;
        let mut items = self.queue.items.lock().unwrap_or_else(|e| e.into_inner());
        if too_many_bytes || items.len() >= self.queue_flows {
            drop(items);
            self.queued.fetch_sub(weight, Ordering::Relaxed);
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        items.push(flow);
        true
    }

    pub fn counts(&self) -> &RingCounts {
        &self.counts
    }

    /// Bytes of flows waiting for the writer.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// A new disk budget, taken by the writer before its next flow.
    pub fn set_max_disk(&self, max_disk: u64) {
        self.max_disk.store(max_disk, Ordering::Relaxed);
    }

    /// Writes what is queued, then stops the writer.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.queue.closed.store(true, Ordering::Release);
        self.queue.stop.notify_all();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl<T: Line> Drop for Ring<T> {
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

    fn set_budget(&mut self, max_disk: u64) {
        if max_disk != self.max_disk {
            self.max_disk = max_disk;
            self.segment_size = (max_disk / SEGMENTS).max(MIN_SEGMENT);
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

/// The newest `limit` flows in `dir` that `read` takes (it parses a line, or refuses
/// it with `None`), newest first. Reads the segments newest first and holds no more
/// than `limit` flows, whatever the directory holds.
pub fn newest_flows<T>(
    dir: &Path,
    limit: usize,
    mut read: impl FnMut(&[u8]) -> Option<T>,
) -> io::Result<Vec<T>> {
    let mut found = Vec::new();
    for (_, path) in segment_files(dir).into_iter().rev() {
        if found.len() >= limit {
            break;
        }
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        // This segment's flows are oldest first: the newest `room` of them are kept.
        let room = limit - found.len();
        let mut in_segment = std::collections::VecDeque::with_capacity(room.min(1024));
        for line in BufReader::new(file).split(b'\n') {
            if let Some(flow) = read(&line?) {
                if in_segment.len() == room {
                    in_segment.pop_front();
                }
                in_segment.push_back(flow);
            }
        }
        found.extend(in_segment.into_iter().rev());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, max_disk: u64, queue: usize) -> RingConfig {
        RingConfig {
            dir: dir.to_path_buf(),
            max_disk,
            queue,
            queue_bytes: usize::MAX,
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
        let ring = Ring::queue(&config).unwrap();
        let offered: Vec<bool> = (0..10).map(|i| ring.offer(flow(i))).collect();
        assert_eq!(
            offered,
            [
                true, true, true, false, false, false, false, false, false, false
            ]
        );
        assert_eq!(ring.counts.dropped.load(Ordering::Relaxed), 7);
        let ring = ring.start(config);
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
