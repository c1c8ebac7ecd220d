//! The record of one request as it goes through the proxy: what was decided (route,
//! endpoint), what passed (bytes, tokens), and when (first byte, first token). It rides
//! inside the response body, so it sees the stream to its end, and reports itself when
//! dropped: metrics, the one-minute window, the access log, the endpoint's in-flight
//! count and the filters' `on_done`, also when the client went away mid-stream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;

use super::RequestCtx;
use super::body_record::BodyRecord;
use crate::inspect::anomaly::{ClientId, Observed};
use crate::inspect::flow::{Timings, Tokens, millis, stored_header};
use crate::inspect::{Outcome, Recording};
use crate::llm::{AnswerReader, ReplyKind, UsageScanner};

/// Bytes of an answer read for secrets at most (its start, when longer).
const ANSWER_READ_LIMIT: usize = 256 * 1024;
use crate::routing::{Route, Target};
use crate::telemetry::access_log::{Field, JsonLine, LogPath, Mark, Run, Slot};
use crate::telemetry::trace::RequestId;
use crate::telemetry::{RouteMetrics, StatusCounts, Telemetry, TraceIds};
use crate::upstream::{Endpoint, InFlight};

/// Request facts kept only for the access log (nothing is copied when it is off).
/// Kept as the request's own values (cheap clones of shared buffers), formatted only
/// when the line is written.
pub struct LogFacts {
    pub client_ip: std::net::IpAddr,
    pub method: http::Method,
    pub path: LogPath,
    /// `path` is already as a masking route logs it (the flow's capture read it first).
    pub path_masked: bool,
    pub protocol: &'static str,
    pub user_agent: Option<HeaderValue>,
}

pub struct Exchange {
    telemetry: Arc<Telemetry>,
    started: Instant,
    pub request_id: Option<RequestId>,
    pub trace: Option<TraceIds>,
    pub log: Option<LogFacts>,
    pub route: Option<Arc<Route>>,
    /// Which of the route's targets (split side) served it.
    pub target: usize,
    /// Where in the route's fallback chain it was served: 0 the target, n the n-th hop.
    pub hop: usize,
    /// The hops it took to other pools (chain targets, a pool's `fallback`), in order.
    pub hops: Vec<HopRecord>,
    pub endpoint: Option<Arc<Endpoint>>,
    pub status: u16,
    pub error: Option<&'static str>,
    pub bytes_in: BytesIn,
    pub bytes_out: u64,
    /// When the request was sent upstream, and when its response head came back.
    pub sent_at: Option<Instant>,
    pub head_at: Option<Instant>,
    pub scanner: Option<UsageScanner>,
    /// The response body broke off before its end.
    pub failed: bool,
    pub retries: u32,
    /// Name (never the key) of the API key that authenticated the request.
    pub key_name: Option<Arc<str>>,
    /// The client certificate's identity (mTLS), for the access log.
    pub client_identity: Option<Arc<crate::tls::ClientIdentity>>,
    pub(crate) in_flight: Option<InFlight>,
    /// The route filters' context, from their request phase on: `on_done` settles it when
    /// the exchange ends, however it ends ([`super::request_filters`]).
    pub(crate) done: Option<RequestCtx>,
    /// The body phase: what masking found, the response's transform.
    pub body: BodyRecord,
    /// The flow being captured, for a request the route's capture sampled.
    pub recording: Option<Box<Recording>>,
    /// The client behind trusted proxies, once the route is known.
    pub client_ip: Option<std::net::IpAddr>,
    /// The route's anomaly detectors refused the request.
    pub anomaly_blocked: bool,
    /// The answer's text, read for the anomaly detectors that look at it.
    pub answer: Option<Box<AnswerReader>>,
    /// The endpoint switched protocols (`101`): the tunnel, started once the answer is
    /// out with this record, which it keeps until the connection ends.
    pub tunnel: Option<TunnelStart>,
    /// When the `101` went out: the latency metrics end there, the access log's line
    /// when the tunnel ends.
    pub(crate) switched_at: Option<Instant>,
}

/// A tunnel waiting for its answer to go out: given the exchange's record, it runs the
/// connection to its end, then drops the record, which writes its access log line, and
/// releases the endpoint's in-flight count, only then.
pub type TunnelStart =
    Box<dyn FnOnce(Box<Exchange>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A hop from one pool to another before any byte reached the client, and why.
pub struct HopRecord {
    pub from: Arc<str>,
    pub to: Arc<str>,
    /// The trigger that matched: a status code, `timeout`, `unavailable`, ...
    pub reason: Arc<str>,
}

/// Request body size: declared (`content-length`, or read whole), or counted as it streams.
pub enum BytesIn {
    Known(u64),
    Counted(Arc<AtomicU64>),
}

impl BytesIn {
    fn get(&self) -> u64 {
        match self {
            BytesIn::Known(bytes) => *bytes,
            BytesIn::Counted(counter) => counter.load(Ordering::Relaxed),
        }
    }
}

impl Exchange {
    pub fn new(telemetry: Arc<Telemetry>, log: Option<LogFacts>) -> Self {
        Exchange {
            telemetry,
            started: Instant::now(),
            request_id: None,
            trace: None,
            log,
            route: None,
            target: 0,
            hop: 0,
            hops: Vec::new(),
            endpoint: None,
            status: 0,
            error: None,
            bytes_in: BytesIn::Known(0),
            bytes_out: 0,
            sent_at: None,
            head_at: None,
            scanner: None,
            failed: false,
            retries: 0,
            key_name: None,
            client_identity: None,
            in_flight: None,
            done: None,
            body: BodyRecord::default(),
            recording: None,
            client_ip: None,
            anomaly_blocked: false,
            answer: None,
            tunnel: None,
            switched_at: None,
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Counts response body bytes and reads them for usage as they pass.
    pub fn on_response_data(&mut self, data: &[u8]) {
        if let Some(scanner) = self.scanner.as_mut() {
            scanner.feed(data);
        }
        self.on_sent_data(data);
    }

    /// Counts and records the response body bytes the client gets.
    fn on_sent_data(&mut self, data: &[u8]) {
        self.bytes_out += data.len() as u64;
        if self.recording.is_none() && self.answer.is_none() {
            return;
        }
        // The client's own values restored from pseudonyms are concealed again: not
        // stored, and not found by the detectors as secrets the answer gave away.
        let concealed = self.body.recorded(data);
        if let Some(recording) = self.recording.as_mut() {
            recording.response_data(&concealed);
        }
        if let Some(answer) = self.answer.as_mut() {
            answer.feed(&concealed);
        }
    }

    /// The endpoint's answer is of this kind: what of it is read as it passes (usage
    /// and first token for metrics, the log, a captured flow and the detectors; the
    /// answer text for the detectors that look for secrets in it). `content_encoding`:
    /// the endpoint's, as it sent the answer (usage is read through it).
    pub fn start_reading(&mut self, kind: ReplyKind, content_encoding: Option<&[u8]>) {
        let anomalies = self.route.as_ref().and_then(|r| r.anomalies.as_ref());
        let wants_usage = self.telemetry.metrics_enabled()
            || self.telemetry.access_log.enabled()
            || self.recording.is_some()
            || anomalies.is_some();
        if wants_usage {
            self.scanner = UsageScanner::for_answer(kind, content_encoding);
        }
        if anomalies.is_some_and(|a| a.reads_answers()) {
            self.answer = AnswerReader::for_reply(kind, ANSWER_READ_LIMIT).map(Box::new);
        }
    }

    /// The body of an answer the proxy made itself, for a captured flow.
    pub fn record_own_body(&mut self, body: &[u8]) {
        if let Some(recording) = self.recording.as_mut() {
            recording.response_data(body);
        }
    }

    /// The head the client is sent, for a captured flow: status and header lines.
    /// `event_stream`: its body is an event stream, reassembled into events.
    pub fn record_response_head<'h>(
        &mut self,
        status: u16,
        headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
        event_stream: bool,
    ) {
        if let Some(recording) = self.recording.as_mut() {
            let headers = headers.map(|(n, v)| stored_header(n, v)).collect();
            recording.response_head(status, headers, event_stream);
        }
    }

    /// Whether the response body goes through the body phase's transform.
    pub fn transforms_response(&self) -> bool {
        self.body.response.is_some()
    }

    /// Runs a piece of the response body through the body phase's transform,
    /// appending what goes to the client to `out` (and counting it). `end`: the body
    /// is over, `data` is its last piece (possibly empty).
    pub fn transform_response(
        &mut self,
        data: &[u8],
        end: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        if self.body.response.is_none() {
            out.extend_from_slice(data);
            self.on_response_data(data);
            return Ok(());
        }
        let from = out.len();
        let result = self.body.transform(data, end, out);
        // Usage is read from the endpoint's bytes (a usage chunk the client is spared
        // still counts); the bytes the client gets are the ones counted and recorded.
        if let Some(scanner) = self.scanner.as_mut() {
            scanner.feed(data);
        }
        self.on_sent_data(&out[from..]);
        result
    }

    fn metrics(&self) -> Option<&Arc<RouteMetrics>> {
        self.target().map(|target| &target.telemetry.metrics)
    }

    fn status_counts(&self) -> Option<Arc<StatusCounts>> {
        let target = self.target()?;
        Some(match &self.endpoint {
            Some(endpoint) => target.telemetry.endpoint_counts(endpoint),
            None => target.telemetry.no_endpoint.clone(),
        })
    }

    fn target(&self) -> Option<&Target> {
        self.route
            .as_ref()
            .and_then(|route| route.target_at(self.target, self.hop))
    }

    fn report(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.started);
        // A tunnel's request ended at its `101`: the metrics (and a canary's judgement)
        // count that, not how long the connection stayed open.
        let duration = match self.switched_at {
            Some(switched) => switched.duration_since(self.started),
            None => elapsed,
        };
        if let Some(scanner) = self.scanner.as_mut() {
            scanner.finish();
        }
        let usage = self.scanner.as_ref().map(|s| s.usage()).unwrap_or_default();
        let estimated = self.estimated_tokens(usage);
        let ttfb = self
            .sent_at
            .zip(self.head_at)
            .map(|(sent, head)| head.duration_since(sent));
        let first_token = self.scanner.as_ref().and_then(|s| s.first_token_at());
        let ttft = self
            .sent_at
            .zip(first_token)
            .map(|(sent, token)| token.duration_since(sent));
        let error = self.status >= 500 || self.failed;

        if self.status == 0 {
            // The client went away before the response head: nginx's 499.
            self.status = crate::filter::CLIENT_CLOSED;
        }
        if let Some(error_type) = self.error.filter(|_| self.telemetry.metrics_enabled()) {
            let route_name = self
                .route
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_else(|| Arc::from(""));
            self.telemetry.metrics.count_error(&route_name, error_type);
        }
        if self.telemetry.metrics_enabled()
            && let (Some(metrics), Some(counts)) = (self.metrics(), self.status_counts())
        {
            counts.add(self.status);
            metrics.duration.observe(duration);
            if let Some(ttfb) = ttfb {
                metrics.time_to_first_byte.observe(ttfb);
            }
            if let Some(ttft) = ttft {
                metrics.time_to_first_token.observe(ttft);
                if let (Some(first), Some(completion)) = (first_token, usage.completion)
                    && completion > 1
                {
                    let per_token = now.duration_since(first).div_f64((completion - 1) as f64);
                    metrics.time_per_output_token.observe(per_token);
                }
            }
            // Zero adds are skipped: each atomic add is a locked instruction.
            let counters = [
                (&metrics.request_bytes, self.bytes_in.get()),
                (&metrics.response_bytes, self.bytes_out),
                (&metrics.prompt_tokens, usage.prompt.unwrap_or(0)),
                (&metrics.completion_tokens, usage.completion.unwrap_or(0)),
                (
                    &metrics.prompt_tokens_estimated,
                    estimated.prompt.unwrap_or(0),
                ),
                (
                    &metrics.completion_tokens_estimated,
                    estimated.completion.unwrap_or(0),
                ),
                (&metrics.retries, u64::from(self.retries)),
            ];
            for (counter, value) in counters {
                if value > 0 {
                    counter.fetch_add(value, Ordering::Relaxed);
                }
            }
            metrics.window.record_at(now, duration, error);
            let canary = self
                .route
                .as_ref()
                .and_then(|r| r.control.as_ref())
                .and_then(|c| c.canary.as_ref());
            if let Some(tally) = canary.and_then(|c| c.tallies.get(self.target)) {
                tally.record(duration, error, ttft);
            }
        }
        if self.telemetry.metrics_enabled() {
            self.report_masking();
            self.report_unread_usage();
            if let Some(route) = &self.route {
                for hop in &self.hops {
                    let key = (
                        route.name.clone(),
                        hop.from.clone(),
                        hop.to.clone(),
                        hop.reason.clone(),
                    );
                    self.telemetry.metrics.count_hop(key);
                }
            }
        }
        let telemetry = self.telemetry.clone();
        let values = LineValues {
            // The line covers a tunnel's whole connection, as nginx's `$request_time`.
            duration: elapsed,
            ttfb,
            ttft,
            usage,
        };
        telemetry.access_log.write_line(|slots, line| {
            self.log_line(line, slots, &values);
        });
        // What the concealer still held of the answer.
        let rest = self.body.recorded_rest();
        if let Some(answer) = self.answer.as_mut() {
            answer.feed(&rest);
        }
        self.report_anomalies(now, usage);
        if let Some(mut recording) = self.recording.take() {
            recording.response_data(&rest);
            if self.body.withholds_response() {
                recording.withhold_response();
            }
            let timings = Timings {
                ttfb_ms: ttfb.map(millis),
                ttft_ms: ttft.map(millis),
                total_ms: millis(duration),
            };
            let tokens = Tokens {
                prompt: usage.prompt,
                completion: usage.completion,
            };
            self.finish_recording(*recording, timings, tokens);
        }
    }

    /// Tokens estimated for what the answer's usage did not report: see
    /// [`crate::llm::estimate_tokens`]. Only for a successful answer read to its end
    /// and recognised as a model's (generated text or a usage object).
    fn estimated_tokens(&self, reported: crate::llm::Usage) -> crate::llm::Usage {
        let Some(scanner) = self.scanner.as_ref() else {
            return crate::llm::Usage::default();
        };
        if !(200..300).contains(&self.status) || self.failed || scanner.unread().is_some() {
            return crate::llm::Usage::default();
        }
        let (text_bytes, recognised) = scanner.answer_text();
        if !recognised {
            return crate::llm::Usage::default();
        }
        crate::llm::estimate_tokens(reported, self.bytes_in.get(), text_bytes)
    }

    /// An answer whose usage was not read to its end, into the metrics (one that broke
    /// off is not: its compressed end is missing by nature).
    fn report_unread_usage(&self) {
        let unread = self
            .scanner
            .as_ref()
            .filter(|_| !self.failed)
            .and_then(|s| s.unread());
        if let (Some(unread), Some(route)) = (unread, self.route.as_ref()) {
            self.telemetry
                .metrics
                .count_usage_unread(&route.name, unread.name());
        }
    }

    /// Who the client is for the anomaly detectors: its API key's name, else its
    /// address.
    pub fn client_id(&self) -> Option<ClientId> {
        match (&self.key_name, self.client_ip) {
            (Some(name), _) => Some(ClientId::Key(name.clone())),
            (None, Some(ip)) => Some(ClientId::Address(ip)),
            (None, None) => None,
        }
    }

    /// The end of the exchange, to the route's detectors: tokens, size, the answer's
    /// text and the status go into the client's and the version's baselines.
    fn report_anomalies(&mut self, now: Instant, usage: crate::llm::Usage) {
        let Some(anomalies) = self.route.as_ref().and_then(|r| r.anomalies.clone()) else {
            return;
        };
        let Some(client) = self.client_id() else {
            return;
        };
        let answer = self.answer.take().map(|reader| reader.finish());
        let version = self.target().and_then(|t| t.pool.version.clone());
        let tokens = match (usage.prompt, usage.completion) {
            (None, None) => None,
            (prompt, completion) => Some(prompt.unwrap_or(0) + completion.unwrap_or(0)),
        };
        let observed = Observed {
            status: self.status,
            failed: self.status >= 500 || self.failed,
            version: version.as_ref(),
            tokens,
            response_bytes: self.bytes_out,
            answer: answer.as_deref(),
            blocked: self.anomaly_blocked,
        };
        anomalies.on_done(&client, &observed, now.into_std());
    }

    fn finish_recording(&self, recording: Recording, timings: Timings, tokens: Tokens) {
        let target = self.target();
        let outcome = Outcome {
            route: self.route.as_ref().map(|r| &*r.name),
            pool: target.map(|t| &*t.pool.name),
            version: target.and_then(|t| t.pool.version.as_deref()),
            endpoint: self.endpoint.as_ref().map(|e| &*e.url),
            request_id: self.request_id.as_ref().and_then(RequestId::as_str),
            key: self.key_name.as_deref(),
            model: self.body.model.clone(),
            status: self.status,
            error: self.error.or(self.failed.then_some("response_interrupted")),
            timings,
            tokens,
            masked: self.masked_field(),
        };
        recording.finish(outcome);
    }

    /// The body phase's findings and passes, into the metrics.
    fn report_masking(&self) {
        if let Some(route) = self.route.as_ref().filter(|r| r.mask.is_some()) {
            self.body
                .report_masking(&route.name, &self.telemetry.metrics);
        }
    }

    fn masked_field(&self) -> Option<String> {
        self.body.masked_field()
    }

    /// The access log's `hops` field: `from>to:reason` per hop, separated by commas
    /// (`primary>azure:429`); `None` when the first pool served.
    fn hops_field(&self) -> Option<String> {
        if self.hops.is_empty() {
            return None;
        }
        let hops: Vec<String> = self
            .hops
            .iter()
            .map(|h| format!("{}>{}:{}", h.from, h.to, h.reason))
            .collect();
        Some(hops.join(","))
    }

    fn log_line(&self, line: &mut JsonLine<'_>, slots: &[Slot], values: &LineValues) {
        // A run whose text this thread did not have: where it started, and where it ends.
        let mut writing: Option<(Run, Mark, usize)> = None;
        let mut at = 0;
        while let Some(slot) = slots.get(at) {
            if let Some(run) = slot.run {
                if self.repeat_run(line, run.id) {
                    at += run.len;
                    continue;
                }
                writing = Some((run, line.mark(), at + run.len));
            }
            self.log_field(line, slot, values);
            at += 1;
            if let Some((run, mark, _)) = writing.filter(|&(_, _, end)| end == at) {
                self.keep_run(line, run.id, mark);
                writing = None;
            }
        }
    }

    /// Writes a text this thread wrote for run `id` of the log's fields ([`Run`]),
    /// when that line had this route, target, endpoint, method and protocol.
    fn repeat_run(&self, line: &mut JsonLine<'_>, id: u64) -> bool {
        RUN_TEXTS.with(|texts| {
            let Ok(texts) = texts.try_borrow() else {
                return false;
            };
            // Newest first: the last line's is the likeliest.
            match texts
                .iter()
                .rev()
                .find(|kept| kept.id == id && kept.holds(self))
            {
                Some(kept) => {
                    line.repeat(&kept.text);
                    true
                }
                None => false,
            }
        })
    }

    /// Keeps the text of run `id` written since `mark`, for the thread's next lines.
    /// Several are kept per run (the sides of a split, a pool's endpoints): one only
    /// would be replaced on every line that went elsewhere, and again on the next.
    #[cold]
    #[inline(never)]
    fn keep_run(&self, line: &JsonLine<'_>, id: u64, mark: Mark) {
        let Some(text) = line.written_since(mark) else {
            return;
        };
        RUN_TEXTS.with(|texts| {
            let Ok(mut texts) = texts.try_borrow_mut() else {
                return;
            };
            // The oldest goes first: also the texts of writers replaced by reloads.
            let mut kept = match texts.len() >= RUN_TEXTS_KEPT {
                true => texts.remove(0),
                false => RunText::default(),
            };
            kept.keep(id, self, text);
            texts.push(kept);
        });
    }

    #[inline(always)]
    fn log_field(&self, line: &mut JsonLine<'_>, name: &Slot, values: &LineValues) {
        let route = self.route.as_ref();
        let facts = self.log.as_ref();
        let LineValues {
            duration,
            ttfb,
            ttft,
            usage,
        } = *values;
        match name.field {
            Field::Time => line.time(name),
            Field::RequestId => match &self.request_id {
                Some(RequestId::Made(digits)) => line.hex_string(name, digits),
                other => line.string(name, other.as_ref().and_then(RequestId::as_str)),
            },
            Field::TraceId => line.string(name, self.trace.as_ref().map(|t| t.trace_id.as_str())),
            Field::ClientIp => line.ip(name, facts.map(|f| f.client_ip)),
            Field::Method => line.string(name, facts.map(|f| f.method.as_str())),
            Field::Path => {
                let path = facts.filter(|f| !f.path_masked).map(|f| f.path.as_str());
                match (path, route.and_then(|r| r.mask.as_ref())) {
                    // A masking route logs no value: not one a query carries either.
                    (Some(path), Some(mask)) => line.string(
                        name,
                        Some(&*crate::masking::redacted_for_log(&*mask.masker, path)),
                    ),
                    _ => line.string(name, facts.map(|f| f.path.as_str())),
                }
            }
            Field::Protocol => line.string(name, facts.map(|f| f.protocol)),
            Field::Route => line.string(name, route.map(|r| &*r.name)),
            Field::Pool => line.string(name, self.target().map(|t| &*t.pool.name)),
            Field::Version => {
                line.string(name, self.target().and_then(|t| t.pool.version.as_deref()))
            }
            Field::Endpoint => line.string(name, self.endpoint.as_ref().map(|e| &*e.url)),
            Field::Status => line.number(name, Some(self.status)),
            Field::Error => line.string(
                name,
                self.error.or(self.failed.then_some("response_interrupted")),
            ),
            Field::BytesIn => line.number(name, Some(self.bytes_in.get())),
            Field::BytesOut => line.number(name, Some(self.bytes_out)),
            Field::DurationMs => line.millis(name, Some(duration)),
            Field::TtfbMs => line.millis(name, ttfb),
            Field::TtftMs => line.millis(name, ttft),
            Field::PromptTokens => line.number(name, usage.prompt),
            Field::CompletionTokens => line.number(name, usage.completion),
            Field::Retries => line.number(name, Some(self.retries)),
            Field::ApiKey => line.string(name, self.key_name.as_deref()),
            Field::ClientIdentity => {
                line.string(name, self.client_identity.as_deref().map(|id| id.primary()))
            }
            Field::Masked => line.string(name, self.masked_field().as_deref()),
            Field::Hops => line.string(name, self.hops_field().as_deref()),
            Field::UserAgent => line.string(
                name,
                facts
                    .and_then(|f| f.user_agent.as_ref())
                    .map(|v| String::from_utf8_lossy(v.as_bytes()))
                    .as_deref(),
            ),
        }
    }
}

/// What a line needs beyond the exchange's own fields.
#[derive(Clone, Copy)]
struct LineValues {
    duration: Duration,
    ttfb: Option<Duration>,
    ttft: Option<Duration>,
    usage: crate::llm::Usage,
}

/// Runs' texts kept per thread at most: a few per run of the log's fields (a split's
/// sides, a pool's endpoints, a few methods), found by a scan from the newest that
/// stops at the first that holds (a mismatch is a few compares). A thread that cycles
/// through more than this many (a pool of more endpoints, round robin) mostly misses:
/// it then writes the fields as without the texts, plus a copy.
const RUN_TEXTS_KEPT: usize = 16;

thread_local! {
    /// The text of each access log run as this thread last wrote it, with what it
    /// depends on.
    static RUN_TEXTS: std::cell::RefCell<Vec<RunText>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A run's text ([`Run`]) and what made it: the route,
/// endpoint, method and protocol of the line that wrote it. The route and endpoint
/// are held weakly, by address: a `Weak` keeps its allocation, so no other route or
/// endpoint can come to live at that address while the text is kept (it does not keep
/// the route's pools or connections), and the text of one is never repeated for
/// another. Both are immutable once built, so their names cannot change under it.
#[derive(Default)]
struct RunText {
    id: u64,
    route: Option<Weak<Route>>,
    target: usize,
    hop: usize,
    endpoint: Option<Weak<Endpoint>>,
    method: Option<http::Method>,
    protocol: Option<&'static str>,
    text: Vec<u8>,
}

impl RunText {
    /// Whether `exchange`'s line would write this text.
    fn holds(&self, exchange: &Exchange) -> bool {
        let facts = exchange.log.as_ref();
        same_arc(&self.route, &exchange.route)
            && self.target == exchange.target
            && self.hop == exchange.hop
            && same_arc(&self.endpoint, &exchange.endpoint)
            && match (self.protocol, facts.map(|f| f.protocol)) {
                (Some(kept), Some(protocol)) => std::ptr::eq(kept, protocol),
                (kept, protocol) => kept.is_none() && protocol.is_none(),
            }
            && self.method.as_ref() == facts.map(|f| &f.method)
    }

    fn keep(&mut self, id: u64, exchange: &Exchange, text: &[u8]) {
        let facts = exchange.log.as_ref();
        self.id = id;
        self.route = exchange.route.as_ref().map(Arc::downgrade);
        self.target = exchange.target;
        self.hop = exchange.hop;
        self.endpoint = exchange.endpoint.as_ref().map(Arc::downgrade);
        self.method = facts.map(|f| f.method.clone());
        self.protocol = facts.map(|f| f.protocol);
        self.text.clear();
        self.text.extend_from_slice(text);
    }
}

fn same_arc<T>(kept: &Option<Weak<T>>, now: &Option<Arc<T>>) -> bool {
    match (kept, now) {
        (Some(kept), Some(now)) => std::ptr::eq(kept.as_ptr(), Arc::as_ptr(now)),
        (kept, now) => kept.is_none() && now.is_none(),
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.report();
        // The context in place, borrowed, then dropped where it lies: taking it out
        // copied its few hundred bytes, and the route's clone was an atomic pair.
        let route = self.route.as_ref().filter(|r| r.filters.wants_done);
        if let (Some(route), Some(ctx)) = (route, self.done.as_mut()) {
            ctx.failed |= self.failed;
            ctx.usage = self.scanner.as_ref().map(|s| s.usage());
            ctx.status = http::StatusCode::from_u16(self.status).ok();
            route.filters.on_done(ctx);
        }
        self.done = None;
        // `in_flight` drops last: the endpoint's count falls once all is recorded.
    }
}
