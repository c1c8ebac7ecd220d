//! Flow capture: a route's (or listener's) `capture` settings, the flow being recorded
//! while its request passes, and the sinks flows go to, one per directory, shared by
//! every route and every reload that names it. The proxy core feeds a [`Recording`];
//! nothing here knows an HTTP engine.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::broadcast;

use super::filter::Filter;
use super::flow::{
    FORMAT, Flow, FlowBody, FlowRequest, FlowResponse, SseEventRecord, SseRecord, Timings, Tokens,
};
use super::ring::{Ring, RingConfig, RingCounts, newest_flows};
use crate::llm::{SseEvent, SseSplitter, answer_piece};

/// Flows waiting for a sink's writer at most, whatever their size.
const QUEUE_FLOWS: usize = 4096;
/// Bytes of flows waiting for a sink's writer at most: with the bodies each in-flight
/// recording holds, what the capture costs in memory.
const QUEUE_BYTES: usize = 32 << 20;
/// Flows a live tail may fall behind by before it skips (and says how many it skipped).
const TAIL_BACKLOG: usize = 256;

/// A route's capture settings, compiled. Its directory's sink is opened when the
/// first flow is kept (or a tail asks), not when the config is compiled: a plan that is
/// only checked, or refused on reload, creates nothing.
pub struct Capture {
    /// Share of requests recorded, 0 to 1.
    pub sample: f64,
    /// Only flows it matches are kept (evaluated once the flow is complete).
    pub filter: Option<Filter>,
    /// Bytes kept of each body; a stream's events are kept to the same budget.
    pub max_body: usize,
    /// Where the flows go, and the disk they may fill there.
    pub dir: PathBuf,
    pub max_disk: u64,
    sink: OnceLock<Option<Arc<Sink>>>,
}

impl Capture {
    pub fn new(
        sample: f64,
        filter: Option<Filter>,
        max_body: usize,
        dir: PathBuf,
        max_disk: u64,
    ) -> Capture {
        Capture {
            sample,
            filter,
            max_body,
            dir,
            max_disk,
            sink: OnceLock::new(),
        }
    }

    /// Whether a request with this random draw is recorded.
    pub fn samples(&self, draw: u64) -> bool {
        // 53 random bits as a fraction in [0, 1).
        let unit = (draw >> 11) as f64 / (1u64 << 53) as f64;
        unit < self.sample
    }

    /// The directory's sink, opened on first use; `None` when it cannot be (logged
    /// once: the flows of this capture are then lost).
    pub fn sink(&self) -> Option<&Arc<Sink>> {
        self.sink
            .get_or_init(|| match Sink::open(&self.dir, self.max_disk) {
                Ok(sink) => Some(sink),
                Err(error) => {
                    tracing::error!(dir = %self.dir.display(), %error, "flow capture: the directory cannot be used; flows are not kept");
                    None
                }
            })
            .as_ref()
    }

    /// The sink, if it has been opened (for metrics, which must not create it).
    pub fn opened_sink(&self) -> Option<&Arc<Sink>> {
        self.sink.get().and_then(Option::as_ref)
    }
}

/// Where a directory's flows go: its ring, and the live tails watching it.
pub struct Sink {
    pub dir: PathBuf,
    ring: Ring<Arc<Flow>>,
    tail: broadcast::Sender<Arc<Flow>>,
}

static SINKS: Mutex<Option<HashMap<PathBuf, Weak<Sink>>>> = Mutex::new(None);

impl Sink {
    /// The sink of `dir`: the one already open for it (its budget set to `max_disk`),
    /// or a new one. One writer per directory, whichever routes and plans name it.
    pub fn open(dir: &Path, max_disk: u64) -> io::Result<Arc<Sink>> {
        std::fs::create_dir_all(dir)?;
        let key = dir.canonicalize()?;
        let mut sinks = SINKS.lock().unwrap_or_else(|e| e.into_inner());
        let sinks = sinks.get_or_insert_with(HashMap::new);
        sinks.retain(|_, sink| sink.strong_count() > 0);
        if let Some(sink) = sinks.get(&key).and_then(Weak::upgrade) {
            sink.ring.set_max_disk(max_disk);
            return Ok(sink);
        }
        let ring = Ring::open(RingConfig {
            dir: key.clone(),
            max_disk,
            queue: QUEUE_FLOWS,
            queue_bytes: QUEUE_BYTES,
        })?;
        let sink = Arc::new(Sink {
            dir: key.clone(),
            ring,
            tail: broadcast::channel(TAIL_BACKLOG).0,
        });
        sinks.insert(key, Arc::downgrade(&sink));
        Ok(sink)
    }

    /// Every sink open now, for the admin API and metrics.
    pub fn all() -> Vec<Arc<Sink>> {
        let sinks = SINKS.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<Arc<Sink>> = sinks
            .iter()
            .flat_map(|sinks| sinks.values())
            .filter_map(Weak::upgrade)
            .collect();
        all.sort_by(|a, b| a.dir.cmp(&b.dir));
        all
    }

    /// Hands a finished flow to the writer (never waits) and to the live tails.
    pub fn offer(&self, flow: Flow) {
        let flow = Arc::new(flow);
        if self.tail.receiver_count() > 0 {
            let _ = self.tail.send(flow.clone());
        }
        self.ring.offer(flow);
    }

    /// Flows as they are captured, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Flow>> {
        self.tail.subscribe()
    }

    pub fn counts(&self) -> &RingCounts {
        self.ring.counts()
    }

    pub fn queued_bytes(&self) -> usize {
        self.ring.queued_bytes()
    }

    /// The newest `limit` flows on disk that `filter` matches, newest first.
    pub fn newest(&self, filter: Option<&Filter>, limit: usize) -> io::Result<Vec<Flow>> {
        read_newest(&self.dir, filter, limit)
    }

    /// The flow with this id, if it is still on disk.
    pub fn find(&self, id: &str) -> io::Result<Option<Flow>> {
        find_flow(&self.dir, id)
    }
}

/// The newest `limit` flows in a capture directory that `filter` matches, newest first.
pub fn read_newest(dir: &Path, filter: Option<&Filter>, limit: usize) -> io::Result<Vec<Flow>> {
    newest_flows(dir, limit, |line| {
        let flow = Flow::from_line(line).ok()?;
        filter.is_none_or(|f| f.matches(&flow)).then_some(flow)
    })
}

/// The flow with this id in a capture directory.
pub fn find_flow(dir: &Path, id: &str) -> io::Result<Option<Flow>> {
    let found = newest_flows(dir, 1, |line| {
        (Flow::id_of_line(line) == Some(id)).then(|| Flow::from_line(line).ok())?
    })?;
    Ok(found.into_iter().next())
}

/// Next flow id: Unix milliseconds, then a process-wide counter (ids sort in time order
/// as text, and never repeat within a process).
pub fn next_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let count = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
    format!("{millis:012x}{count:06x}")
}

/// The request as the client sent it, for [`Recording::start`].
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub http_version: &'static str,
    pub host: Option<&'a str>,
    pub tls: bool,
    pub client: IpAddr,
}

/// What only the end of the exchange knows, for [`Recording::finish`].
#[derive(Default)]
pub struct Outcome<'a> {
    pub route: Option<&'a str>,
    pub pool: Option<&'a str>,
    pub version: Option<&'a str>,
    pub endpoint: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub key: Option<&'a str>,
    pub model: Option<String>,
    pub status: u16,
    pub error: Option<&'a str>,
    pub timings: Timings,
    pub tokens: Tokens,
    pub masked: Option<String>,
}

/// A flow being recorded as its request passes through the proxy.
pub struct Recording {
    capture: Arc<Capture>,
    flow: Flow,
    response: Option<ResponseCopy>,
    /// Body bytes that came before the head was recorded (an engine that runs the
    /// body phase's first piece before it renders the head), up to `max_body`: they
    /// are the start of the body of the head recorded next.
    early: Vec<u8>,
}

struct ResponseCopy {
    kept: Vec<u8>,
    size: u64,
    stream: Option<StreamCopy>,
}

/// An event stream's events, reassembled as they pass.
struct StreamCopy {
    splitter: SseSplitter,
    events: Vec<SseEventRecord>,
    /// Data bytes of the events kept.
    kept: usize,
    truncated: bool,
    answer: Option<String>,
}

impl Recording {
    /// `headers` are stored lines ([`stored_header`]: credentials redacted).
    pub fn start(
        capture: Arc<Capture>,
        head: RequestHead<'_>,
        headers: Vec<(String, String)>,
    ) -> Recording {
        let flow = Flow {
            v: FORMAT,
            id: next_id(),
            started: crate::units::now_rfc3339(),
            client: Some(head.client),
            request: FlowRequest {
                method: head.method.to_owned(),
                url: head.target.to_owned(),
                http_version: head.http_version.to_owned(),
                host: head.host.map(str::to_owned),
                scheme: head.tls.then(|| "https".to_owned()),
                headers,
                body: FlowBody::default(),
            },
            ..Flow::default()
        };
        Recording {
            capture,
            flow,
            response: None,
            early: Vec::new(),
        }
    }

    /// The largest request body kept.
    /// Rewrites the request's URL as stored (a masking route's: the values of its
    /// query masked, as its log shows them).
    pub fn rewrite_url(&mut self, rewrite: impl FnOnce(&str) -> Option<String>) {
        if let Some(url) = rewrite(&self.flow.request.url) {
            self.flow.request.url = url;
        }
    }

    pub fn max_body(&self) -> usize {
        self.capture.max_body
    }

    /// The request body as it goes on (masked where the route masks): `body` when it
    /// was read whole, else `None` and its length, if declared.
    pub fn request_body(&mut self, body: Option<&[u8]>, declared: Option<u64>) {
        self.flow.request.body = match body {
            Some(body) => {
                let kept = &body[..body.len().min(self.capture.max_body)];
                FlowBody::kept(kept.to_vec(), body.len() as u64)
            }
            None => FlowBody {
                data: Vec::new(),
                size: declared.unwrap_or(0),
                truncated: true,
            },
        };
    }

    /// The head the client is sent: the endpoint's (after the route's edits) or the
    /// proxy's own answer.
    pub fn response_head(
        &mut self,
        status: u16,
        headers: Vec<(String, String)>,
        event_stream: bool,
    ) {
        self.flow.response = Some(FlowResponse {
            status,
            headers,
            body: FlowBody::default(),
        });
        self.response = Some(ResponseCopy {
            kept: Vec::new(),
            size: 0,
            stream: event_stream.then(|| StreamCopy {
                splitter: SseSplitter::default(),
                events: Vec::new(),
                kept: 0,
                truncated: false,
                answer: None,
            }),
        });
        if !self.early.is_empty() {
            let early = std::mem::take(&mut self.early);
            self.response_data(&early);
        }
    }

    /// Drops what was kept of the response body, its size staying: an answer masking
    /// passed on unread (`on_error = "pass"`), or that held a value `log` let through.
    pub fn withhold_response(&mut self) {
        self.early.clear();
        if let Some(copy) = self.response.as_mut() {
            copy.kept = Vec::new();
            if let Some(stream) = copy.stream.as_mut() {
                stream.events = Vec::new();
                stream.answer = None;
                stream.truncated = true;
            }
        }
    }

    /// A piece of the response body as the client gets it.
    pub fn response_data(&mut self, data: &[u8]) {
        let Some(copy) = self.response.as_mut() else {
            let room = self.capture.max_body.saturating_sub(self.early.len());
            self.early.extend_from_slice(&data[..data.len().min(room)]);
            return;
        };
        let max = self.capture.max_body;
        copy.size += data.len() as u64;
        let room = max.saturating_sub(copy.kept.len());
        copy.kept.extend_from_slice(&data[..data.len().min(room)]);
        if let Some(stream) = copy.stream.as_mut() {
            let StreamCopy {
                splitter,
                events,
                kept,
                truncated,
                answer,
            } = stream;
            splitter.feed(data, &mut |event: &SseEvent| {
                // The answer reads every event; the events are kept to the budget.
                if let Some(piece) = answer_piece(event) {
                    let answer = answer.get_or_insert_with(String::new);
                    if answer.len() < max {
                        answer.push_str(&piece);
                    }
                }
                if *kept + event.data.len() > max {
                    *truncated = true;
                    return;
                }
                *kept += event.data.len();
                events.push(SseEventRecord {
                    event: event.event.clone(),
                    data: event.data.clone(),
                });
            });
        }
    }

    /// The flow is complete: sent to the sink if the capture's filter keeps it.
    pub fn finish(mut self, outcome: Outcome<'_>) {
        let flow = &mut self.flow;
        let owned = |value: Option<&str>| value.map(str::to_owned);
        flow.route = owned(outcome.route);
        flow.pool = owned(outcome.pool);
        flow.version = owned(outcome.version);
        flow.endpoint = owned(outcome.endpoint);
        flow.request_id = owned(outcome.request_id);
        flow.key = owned(outcome.key);
        flow.model = outcome.model;
        flow.error = owned(outcome.error);
        flow.timings = outcome.timings;
        flow.tokens = outcome.tokens;
        flow.masked = outcome.masked;
        if let (Some(response), Some(copy)) = (flow.response.as_mut(), self.response) {
            // The status the client saw (a stream cut short keeps its 200).
            response.status = if outcome.status == 499 && response.status == 0 {
                499
            } else {
                response.status
            };
            response.body = FlowBody::kept(copy.kept, copy.size);
            flow.sse = copy.stream.map(|stream| SseRecord {
                events: stream.events,
                truncated: stream.truncated,
                answer: stream.answer,
            });
        }
        if self
            .capture
            .filter
            .as_ref()
            .is_none_or(|f| f.matches(&*flow))
            && let Some(sink) = self.capture.sink()
        {
            sink.offer(self.flow);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::flow::stored_header;

    #[test]
    fn samples_take_their_share() {
        let dir = tempfile::tempdir().unwrap();
        let capture = |sample| Capture::new(sample, None, 16, dir.path().into(), 1 << 20);
        let (never, all, tenth) = (capture(0.0), capture(1.0), capture(0.1));
        let mut state = 0x1234_5678_u64;
        let mut taken = 0;
        for _ in 0..100_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            assert!(!never.samples(state));
            assert!(all.samples(state));
            taken += usize::from(tenth.samples(state));
        }
        assert!((9_000..11_000).contains(&taken), "{taken}");
    }

    #[test]
    fn a_directory_has_one_sink_whoever_asks() {
        let dir = tempfile::tempdir().unwrap();
        let first = Sink::open(dir.path(), 1 << 20).unwrap();
        let second = Sink::open(&dir.path().join("."), 2 << 20).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn a_recorded_stream_keeps_its_events_and_answer_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let filter = Some(Filter::parse("~c 200").unwrap());
        let capture = Arc::new(Capture::new(1.0, filter, 80, dir.path().into(), 1 << 20));
        assert!(capture.opened_sink().is_none(), "opened at first use");
        let mut tail = capture.sink().unwrap().subscribe();
        let head = RequestHead {
            method: "POST",
            target: "/v1/chat/completions",
            http_version: "HTTP/1.1",
            host: Some("gw"),
            tls: false,
            client: "127.0.0.1".parse().unwrap(),
        };
        let mut recording = Recording::start(
            capture.clone(),
            head,
            vec![stored_header(b"authorization", b"Bearer sk-x")],
        );
        recording.request_body(Some(br#"{"model":"m","stream":true}"#), None);
        recording.response_head(200, Vec::new(), true);
        for word in ["Hel", "lo", " there", " and", " more", " words"] {
            let event =
                format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{word}\"}}}}]}}\n\n");
            // Split mid-event, as the network may.
            let (a, b) = event.as_bytes().split_at(7);
            recording.response_data(a);
            recording.response_data(b);
        }
        recording.finish(Outcome {
            status: 200,
            ..Outcome::default()
        });
        let flow = tail.try_recv().unwrap();
        let sse = flow.sse.as_ref().unwrap();
        assert_eq!(sse.answer.as_deref(), Some("Hello there and more words"));
        assert!(sse.truncated && !sse.events.is_empty() && sse.events.len() < 6);
        let body = &flow.response.as_ref().unwrap().body;
        assert!(body.truncated && body.data.len() == 80, "{body:?}");
        assert_eq!(flow.request.headers[0].1, "Bearer [redacted]");

        // The filter leaves out what it does not match.
        let mut other = Recording::start(
            capture.clone(),
            RequestHead {
                method: "GET",
                target: "/",
                http_version: "HTTP/1.1",
                host: None,
                tls: false,
                client: "127.0.0.1".parse().unwrap(),
            },
            Vec::new(),
        );
        other.response_head(404, Vec::new(), false);
        other.finish(Outcome::default());
        assert!(tail.try_recv().is_err());
    }
}
