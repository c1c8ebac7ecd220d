//! One egress request's record, reported when the request ends (for plain requests
//! when the response body ends, for tunnels when the tunnel closes): its access-log
//! line, its captured flow, and its upload to the outbound-volume detector.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{Method, Request, StatusCode};
use tokio::time::Instant;

use super::exits::Exit;
use super::tunnel::TunnelBytes;
use crate::inspect::anomaly::{ClientId, OutboundVolume};
use crate::inspect::flow::{Timings, millis, stored_header};
use crate::inspect::{Capture, Outcome, Recording, RequestHead};
use crate::pipeline::ProxyBody;
use crate::pipeline::body_record::BodyRecord;
use crate::telemetry::Telemetry;

pub struct Record {
    telemetry: Option<Arc<Telemetry>>,
    egress: Arc<str>,
    started: Instant,
    client: SocketAddr,
    method: Method,
    /// Path and query of plain requests (tunnels carry none in the clear).
    path: Option<String>,
    pub user: Option<String>,
    pub host: Option<String>,
    pub region: Option<String>,
    pub exit: Option<Arc<str>>,
    pub attempts: u32,
    pub status: Option<StatusCode>,
    pub outcome: Option<&'static str>,
    pub error: Option<&'static str>,
    pub bytes_out: u64,
    pub tunnel_bytes: Option<TunnelBytes>,
    /// The request body's declared length (what a plain request sends toward the site).
    pub bytes_up: u64,
    /// The flow being captured, for a request the listener's capture sampled.
    pub recording: Option<Box<Recording>>,
    pub outbound: Option<Arc<OutboundVolume>>,
    /// What the listener's masking found and did (a plain or intercepted request's).
    pub body: BodyRecord,
    /// The listener masks: its findings go to these metrics when the request ends.
    pub masking: Option<Arc<Telemetry>>,
}

impl Record {
    pub fn new<B>(
        telemetry: Arc<Telemetry>,
        egress: &Arc<str>,
        client: SocketAddr,
        request: &Request<B>,
    ) -> Self {
        let connect = request.method() == Method::CONNECT;
        Record {
            telemetry: telemetry.access_log.enabled().then_some(telemetry),
            egress: egress.clone(),
            started: Instant::now(),
            client,
            method: request.method().clone(),
            path: (!connect)
                .then(|| {
                    request
                        .uri()
                        .path_and_query()
                        .map(|pq| pq.as_str().to_string())
                })
                .flatten(),
            user: None,
            host: None,
            region: None,
            exit: None,
            attempts: 0,
            status: None,
            outcome: None,
            error: None,
            bytes_out: 0,
            tunnel_bytes: None,
            bytes_up: request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0),
            recording: None,
            outbound: None,
            body: BodyRecord::default(),
            masking: None,
        }
    }

    /// A masking listener logs and stores no value: not one the request's query
    /// carries either (its log line's path, its captured flow's URL).
    pub fn redact_path(&mut self, masker: &dyn crate::masking::TextMasker) {
        let redacted = |text: &str| match crate::masking::redacted_for_log(masker, text) {
            std::borrow::Cow::Owned(redacted) => Some(redacted),
            std::borrow::Cow::Borrowed(_) => None,
        };
        if let Some(path) = self.path.as_deref().and_then(redacted) {
            self.path = Some(path);
        }
        if let Some(recording) = self.recording.as_mut() {
            recording.rewrite_url(redacted);
        }
    }

    /// Who the client is for the detectors: its egress user, else its address.
    pub fn client_id(&self) -> ClientId {
        match &self.user {
            Some(user) => ClientId::Key(user.as_str().into()),
            None => ClientId::Address(self.client.ip()),
        }
    }

    /// Starts recording the flow, from the client's head (a plain request's body is
    /// recorded by its declared length: it streams to the site).
    pub fn start_capture<B>(&mut self, capture: Arc<Capture>, request: &Request<B>) {
        let target = request.uri().to_string();
        let headers = request
            .headers()
            .iter()
            .map(|(n, v)| stored_header(n.as_str().as_bytes(), v.as_bytes()))
            .collect();
        let head = RequestHead {
            method: request.method().as_str(),
            target: &target,
            http_version: crate::pipeline::handler::protocol_name(request.version()),
            host: None,
            tls: false,
            client: self.client.ip(),
        };
        let mut recording = Recording::start(capture, head, headers);
        let declared = (self.bytes_up > 0).then_some(self.bytes_up);
        recording.request_body(None, declared);
        self.recording = Some(Box::new(recording));
    }

    /// The head the client is sent, for a captured flow.
    pub fn record_head(&mut self, status: StatusCode, headers: &http::HeaderMap) {
        if let Some(recording) = self.recording.as_mut() {
            let headers = headers
                .iter()
                .map(|(n, v)| stored_header(n.as_str().as_bytes(), v.as_bytes()))
                .collect();
            recording.response_head(status.as_u16(), headers, false);
        }
    }

    /// Junction's own answer (a refusal), for a captured flow.
    pub fn record_answer(&mut self, response: &http::Response<ProxyBody>) {
        self.record_head(response.status(), response.headers());
        if let (Some(recording), ProxyBody::Full(Some(body))) =
            (self.recording.as_mut(), response.body())
        {
            recording.response_data(body);
        }
    }

    /// The request body as it goes on toward the site (masked), for a captured flow;
    /// one passed on unmasked is not kept.
    pub fn record_request_body(&mut self, sent: &[u8]) {
        self.bytes_up = sent.len() as u64;
        let withheld = self.body.withholds_request();
        if let Some(recording) = self.recording.as_mut().filter(|_| !withheld) {
            recording.request_body(Some(sent), None);
        }
    }

    /// A piece of the site's answer on its way to the client.
    pub fn on_response_data(&mut self, data: &[u8]) {
        self.bytes_out += data.len() as u64;
        if let Some(recording) = self.recording.as_mut() {
            recording.response_data(&self.body.recorded(data));
        }
    }

    /// The egress listener's name.
    pub fn egress_name(&self) -> &Arc<str> {
        &self.egress
    }

    pub fn client(&self) -> SocketAddr {
        self.client
    }

    pub fn attempt(&mut self, exit: &Exit) {
        self.attempts += 1;
        self.exit = Some(exit.name.clone());
        if exit.region.is_some() {
            self.region = exit.region.as_deref().map(str::to_string);
        }
    }

    pub fn refused(&mut self, status: StatusCode, reason: &'static str) {
        self.status = Some(status);
        self.outcome = Some(reason);
    }

    /// Moves the line out (to a body or a tunnel task); this one writes nothing.
    pub fn take(&mut self) -> Record {
        let taken = Record {
            telemetry: self.telemetry.take(),
            egress: self.egress.clone(),
            started: self.started,
            client: self.client,
            method: self.method.clone(),
            path: self.path.take(),
            user: self.user.take(),
            host: self.host.take(),
            region: self.region.take(),
            exit: self.exit.take(),
            attempts: self.attempts,
            status: self.status,
            outcome: self.outcome,
            error: self.error,
            bytes_out: self.bytes_out,
            tunnel_bytes: self.tunnel_bytes.take(),
            bytes_up: self.bytes_up,
            recording: self.recording.take(),
            outbound: self.outbound.take(),
            body: std::mem::take(&mut self.body),
            masking: self.masking.take(),
        };
        self.telemetry = None;
        taken
    }
}

impl Record {
    /// What the client sent toward the site: a tunnel's upload, or a plain request's
    /// body.
    fn sent_up(&self) -> u64 {
        match &self.tunnel_bytes {
            Some(bytes) => bytes.up.load(Ordering::Relaxed),
            None => self.bytes_up,
        }
    }

    fn report_outbound(&mut self) {
        let (Some(outbound), Some(host)) = (self.outbound.take(), self.host.as_deref()) else {
            return;
        };
        let sent = self.sent_up();
        if sent > 0 {
            outbound.on_sent(&self.client_id(), host, sent, std::time::Instant::now());
        }
    }

    fn finish_recording(&mut self) {
        let Some(mut recording) = self.recording.take() else {
            return;
        };
        recording.response_data(&self.body.recorded_rest());
        if self.body.withholds_response() {
            recording.withhold_response();
        }
        let outcome = Outcome {
            pool: Some(&self.egress),
            endpoint: self.exit.as_deref(),
            key: self.user.as_deref(),
            status: self.status.map_or(0, |s| s.as_u16()),
            error: self.error.or(self.outcome.filter(|o| *o != "ok")),
            timings: Timings {
                total_ms: millis(self.started.elapsed()),
                ..Timings::default()
            },
            masked: self.body.masked_field(),
            ..Outcome::default()
        };
        recording.finish(outcome);
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.report_outbound();
        self.finish_recording();
        if let Some(telemetry) = self.masking.take().filter(|t| t.metrics_enabled()) {
            self.body.report_masking(&self.egress, &telemetry.metrics);
        }
        let Some(telemetry) = self.telemetry.take() else {
            return;
        };
        telemetry.access_log.write_line(|_, line| {
            line.time("time");
            line.string("kind", Some("egress"));
            line.string("egress", Some(&self.egress));
            line.ip("client_ip", Some(self.client.ip()));
            line.string("user", self.user.as_deref());
            line.string("method", Some(self.method.as_str()));
            line.string("host", self.host.as_deref());
            line.string("path", self.path.as_deref());
            line.number("status", self.status.map(|s| s.as_u16()));
            line.string("outcome", self.outcome);
            line.string("error", self.error);
            line.string("exit", self.exit.as_deref());
            line.string("region", self.region.as_deref());
            line.number("attempts", Some(self.attempts));
            line.string("masked", self.body.masked_field().as_deref());
            let (up, down) = match &self.tunnel_bytes {
                Some(bytes) => (
                    Some(bytes.up.load(Ordering::Relaxed)),
                    bytes.down.load(Ordering::Relaxed),
                ),
                None => (None, self.bytes_out),
            };
            line.number("bytes_in", up);
            line.number("bytes_out", Some(down));
            line.millis("duration_ms", Some(self.started.elapsed()));
        });
    }
}
