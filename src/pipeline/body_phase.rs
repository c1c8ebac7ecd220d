//! The body phase of the core: what a route does to the bytes of its bodies, decided
//! here once and run by both engines, which only take the framing off and put it back
//! on. Request bodies are transformed whole before they are sent (they are held for
//! retries anyway); response bodies piece by piece as they stream. Masking is its user.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, header};

use super::body_record::{BodyRecord, BodyRefusal, Direction, ResponseTransform};
use super::include_usage;
use super::{Exchange, HeaderEdits, ProxyError, RequestView};
use crate::inspect::flow::stored_header;
use crate::inspect::{self, Recording};
use crate::masking::policy::{Compressed, OnError, Policy};
use crate::masking::{self, Findings, Partition, Vault};
use crate::routing::Route;
use crate::security::audit::AuditLog;
use crate::telemetry::access_log::LogPath;
use crate::telemetry::trace::RequestId;

/// The answer to a response body the transform refused before the client's head was
/// written (after it, the body is cut instead).
pub fn refused_response(reason: String) -> ProxyError {
    ProxyError::Body(BodyRefusal::Unreadable {
        direction: Direction::Response,
        reason,
    })
}

/// Header changes the body phase needs on the request: a response it must read is
/// asked for uncompressed.
pub fn request_edits(route: &Route, edits: &mut HeaderEdits) {
    request_edits_by(route.mask.as_deref(), edits);
}

/// [`request_edits`] for a masking `policy` (a route's or an egress listener's).
pub fn request_edits_by(policy: Option<&Policy>, edits: &mut HeaderEdits) {
    if policy.is_some_and(|m| m.response || m.request) {
        edits.set(
            &header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
}

/// What the client sent, for [`begin_capture`].
pub struct ClientFacts<'a> {
    pub client_ip: IpAddr,
    pub http_version: &'static str,
    pub host: Option<&'a str>,
    pub tls: bool,
}

/// The route captures flows and `draw` (a random number) falls in its sample: starts
/// recording the flow, from the client's head. Called once the route is known, before
/// its policies, so that a request they refuse is recorded too.
pub fn begin_capture(
    route: &Route,
    view: &dyn RequestView,
    client: ClientFacts<'_>,
    draw: u64,
    exchange: &mut Exchange,
) {
    let Some(capture) = route.capture.as_ref().filter(|c| c.samples(draw)) else {
        return;
    };
    let mut headers = Vec::with_capacity(16);
    view.each_header(&mut |name, value| headers.push(stored_header(name, value)));
    let mut target = String::from_utf8_lossy(view.target());
    if let Some(mask) = route.mask.as_ref() {
        // A masking route stores no value: not one its query carries either. The
        // access log's path is the same text: read once, for both.
        let redacted = crate::masking::redacted_for_log(&*mask.masker, &target);
        let logged = exchange
            .log
            .as_mut()
            .filter(|log| log.path.as_str() == target);
        if let Some(log) = logged {
            if let std::borrow::Cow::Owned(redacted) = &redacted {
                log.path = LogPath::Text(redacted.as_str().into());
            }
            log.path_masked = true;
        }
        if let std::borrow::Cow::Owned(redacted) = redacted {
            target = std::borrow::Cow::Owned(redacted);
        }
    }
    let head = inspect::RequestHead {
        method: view.method().as_str(),
        target: &target,
        http_version: client.http_version,
        host: client.host,
        tls: client.tls,
        client: client.client_ip,
    };
    exchange.recording = Some(Box::new(Recording::start(capture.clone(), head, headers)));
}

/// The request body to send instead of `body` (`None`: unchanged), or the refusal.
/// `body` is the whole body when the engine holds it (read up to
/// [`request_body_limit`], or held anyway: each use applies its own limit), or `None`
/// when it streams; `view` is its head as the client sent it. The body as it goes on
/// (masked) is recorded for a captured flow, its start when it is longer than the
/// capture keeps; one masking passed on unmasked is not.
/// A body sent decoded loses its `content-encoding` through `edits`.
pub fn on_request_body(
    route: &Route,
    view: &dyn RequestView,
    body: Option<&[u8]>,
    edits: &mut HeaderEdits,
    exchange: &mut Exchange,
    audit: &AuditLog,
) -> Result<Option<Bytes>, ProxyError> {
    let masked = match mask_request_body(route, view, body, edits, exchange, audit) {
        Ok(masked) => masked,
        Err(error) => {
            // A refused body is not stored; its size is.
            if let Some(recording) = exchange.recording.as_mut() {
                let size = body
                    .map(|b| b.len() as u64)
                    .or_else(|| declared_length(view));
                recording.request_body(None, size);
            }
            return Err(error);
        }
    };
    // The route's `include_usage`, on the body as masking left it.
    let usage = include_usage::on_request(route, view, masked.as_deref().or(body), edits, exchange);
    let masked = usage.or(masked);
    // The body as it goes on.
    let sent = masked.as_deref().or(body);
    if let Some(sent) = sent {
        super::detection::on_prompt(route, sent, exchange, edits)?;
    }
    if exchange.recording.is_some() {
        let unmasked = exchange.body.passed == Some(Direction::Request);
        if let Some(sent) = sent.filter(|_| !unmasked) {
            exchange.body.model = crate::llm::model_of(sent);
        }
        // A captured flow holds no value: a body passed on unmasked, or holding a value
        // `log` let through, is kept by its size only.
        let sent = sent.filter(|_| !exchange.body.withholds_request());
        let declared = declared_length(view);
        if let Some(recording) = exchange.recording.as_mut() {
            recording.request_body(sent, declared);
        }
    }
    Ok(masked)
}

/// From this many bytes, a whole body is masked off its worker thread.
const LONG_BODY: usize = 64 * 1024;

/// Runs `mask`, the masking of a whole body of `len` bytes, where a long one does not
/// hold up the other connections of its worker thread: a megabyte dense with
/// candidates takes a core for a good part of a second, and every connection the
/// worker serves would wait for it (and, with as many such bodies as workers, the
/// whole proxy). On the multi-threaded runtime (the default) the worker hands its
/// other tasks to another thread while it masks; on one thread (`--threads 1`) there
/// is no other to hand them to, and offline there is no runtime.
fn off_the_workers<T>(len: usize, mask: impl FnOnce() -> T) -> T {
    let many_threads = || {
        tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
    };
    if len >= LONG_BODY && many_threads() {
        tokio::task::block_in_place(mask)
    } else {
        mask()
    }
}

/// The request's `content-length`, if it gave one.
fn declared_length(view: &dyn RequestView) -> Option<u64> {
    view.first(&header::CONTENT_LENGTH)
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
}

fn mask_request_body(
    route: &Route,
    view: &dyn RequestView,
    body: Option<&[u8]>,
    edits: &mut HeaderEdits,
    exchange: &mut Exchange,
    audit: &AuditLog,
) -> Result<Option<Bytes>, ProxyError> {
    let Some(policy) = route.mask.as_ref().filter(|m| m.request) else {
        return Ok(None);
    };
    let client = Partition::of(exchange.client_id());
    mask_request_by(policy, view, body, edits, client, &mut exchange.body).map_err(|refusal| {
        if let BodyRefusal::Blocked(blocked) = &refusal {
            let request_id = exchange.request_id.as_ref().and_then(RequestId::as_str);
            let client_ip = exchange.log.as_ref().map(|l| l.client_ip);
            audit_block(
                audit,
                ("route", &route.name),
                blocked,
                request_id,
                client_ip,
            );
        }
        ProxyError::Body(refusal)
    })
}

/// Masks a request body by `policy` (a route's, or an egress listener's): the body to
/// send instead (`None`: unchanged), or the refusal. `body` is the whole body, or `None`
/// when it was longer than the engine read. What was found, the pseudonyms the
/// response restores, and a body passed on unmasked (`on_error = "pass"`) go to
/// `record`; a `block` is the caller's to audit ([`audit_block`]). `client`: who sent
/// it, whose texts read before the masker may answer from.
pub fn mask_request_by(
    policy: &Policy,
    view: &dyn RequestView,
    body: Option<&[u8]>,
    edits: &mut HeaderEdits,
    client: Partition,
    record: &mut BodyRecord,
) -> Result<Option<Bytes>, BodyRefusal> {
    // The body phase may have read more for capture than masking reads.
    let body = body.filter(|b| b.len() <= policy.max_body);
    let mut vault = Vault::default();
    let result = match body {
        Some(body) => off_the_workers(body.len(), || {
            mask_request(
                policy,
                view,
                body,
                edits,
                client,
                &mut vault,
                &mut record.request,
            )
        }),
        None => Err(BodyRefusal::TooLarge {
            direction: Direction::Request,
            limit: policy.max_body,
        }),
    };
    match result {
        Ok(masked) => {
            if !vault.is_empty() {
                record.vault = Some(vault);
            }
            Ok(masked.map(Bytes::from))
        }
        Err(refusal) => settle(policy, refusal, record).map(|()| None),
    }
}

/// Where a `block` found in a response goes: the audit log, with the route (or egress
/// listener), the request and the client, as a request's block does.
pub struct BlockAudit {
    pub audit: Arc<AuditLog>,
    pub scope: (&'static str, Arc<str>),
    pub request_id: Option<String>,
    pub client_ip: Option<IpAddr>,
}

impl BlockAudit {
    fn record(&self, blocked: &masking::Blocked) {
        let scope = (self.scope.0, &*self.scope.1);
        audit_block(
            &self.audit,
            scope,
            blocked,
            self.request_id.as_deref(),
            self.client_ip,
        );
    }
}

/// A `block` in the audit log: who, where (`scope`: `("route", name)` or
/// `("egress", name)`) and which type, never the value.
pub fn audit_block(
    audit: &AuditLog,
    scope: (&'static str, &str),
    blocked: &masking::Blocked,
    request_id: Option<&str>,
    client_ip: Option<IpAddr>,
) {
    let mut fields = serde_json::Map::new();
    fields.insert(scope.0.into(), scope.1.into());
    fields.insert("type".into(), blocked.kind.name().into());
    fields.insert("request_id".into(), request_id.into());
    fields.insert(
        "client_ip".into(),
        client_ip.map(|ip| ip.to_string()).into(),
    );
    audit.record("mask_block", serde_json::Value::Object(fields));
}

/// The largest request body the body phase reads whole for this request, if it reads
/// it: for the route's masking, a captured flow, and prompt-injection markers.
pub fn request_body_limit(route: &Route, exchange: &Exchange) -> Option<usize> {
    let masked = route
        .mask
        .as_ref()
        .filter(|m| m.request)
        .map(|m| m.max_body);
    let captured = exchange.recording.as_ref().map(|r| r.max_body());
    let prompts = route
        .anomalies
        .as_ref()
        .filter(|a| a.reads_prompts())
        .map(|_| crate::routing::PROMPT_READ_LIMIT);
    let usage = route
        .include_usage
        .then_some(crate::routing::STREAM_OPTIONS_READ_LIMIT);
    masked.max(captured).max(prompts).max(usage)
}

fn mask_request(
    policy: &Policy,
    view: &dyn RequestView,
    body: &[u8],
    edits: &mut HeaderEdits,
    client: Partition,
    vault: &mut Vault,
    findings: &mut Findings,
) -> Result<Option<Vec<u8>>, BodyRefusal> {
    if body.is_empty() {
        return Ok(None);
    }
    let direction = Direction::Request;
    let mut decoded = Vec::new();
    let mut body = body;
    if let Some(encoding) = encoded(view.first(&header::CONTENT_ENCODING)) {
        let codec = Codec::of(&encoding).filter(|_| policy.compressed == Compressed::Decode);
        let Some(codec) = codec else {
            return Err(BodyRefusal::Compressed {
                direction,
                encoding,
            });
        };
        decoded = codec.decode_whole(body, policy.max_body)?;
        body = &decoded;
        edits.remove(&header::CONTENT_ENCODING);
    }
    let shape = masking::request_shape(view.path().as_bytes(), view.first(&header::CONTENT_TYPE));
    masking::mask_client_request_body(&*policy.masker, shape, body, vault, findings, client)
        .map(|masked| match masked {
            std::borrow::Cow::Owned(masked) => Some(masked),
            // Unchanged, but a decoded body still goes on decoded.
            std::borrow::Cow::Borrowed(same) if !decoded.is_empty() => Some(same.to_vec()),
            std::borrow::Cow::Borrowed(_) => None,
        })
        .map_err(|error| match error {
            masking::BodyError::Blocked(blocked) => BodyRefusal::Blocked(blocked),
            other => BodyRefusal::Unreadable {
                direction,
                reason: other.to_string(),
            },
        })
}

/// How an upgraded connection's bytes go on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeMasking {
    /// No masking on the route: spliced byte for byte.
    Unmasked,
    /// A WebSocket on a masking route: relayed message by message, each masked or
    /// restored (`pipeline/websocket.rs`); its compression extensions are not let through
    /// the handshake, so that every message can be read.
    Messages,
    /// Another protocol, which masking cannot read, let through with `on_error =
    /// "pass"` (counted as a request passed unmasked).
    Passed,
}

/// An upgrade on a route, by its `Upgrade` header: a WebSocket on a masking route is
/// masked message by message; any other protocol there is refused before an endpoint
/// is asked (`400 masking_unreadable_body`), or passed and counted with `on_error =
/// "pass"`. Never spliced through unread in silence.
pub fn on_upgrade(
    route: &Route,
    upgrade: Option<&[u8]>,
    exchange: &mut Exchange,
) -> Result<UpgradeMasking, ProxyError> {
    let Some(policy) = route.mask.as_ref() else {
        return Ok(UpgradeMasking::Unmasked);
    };
    if masking::websocket::is_websocket(upgrade) {
        return Ok(UpgradeMasking::Messages);
    }
    let refusal = BodyRefusal::Unreadable {
        direction: Direction::Request,
        reason: "the connection would be upgraded to a protocol whose messages cannot be \
                 masked"
            .into(),
    };
    settle(policy, refusal, &mut exchange.body)
        .map(|()| UpgradeMasking::Passed)
        .map_err(ProxyError::Body)
}

/// A body that could not be masked: refused, or passed on and counted.
fn settle(
    policy: &Policy,
    refusal: BodyRefusal,
    record: &mut BodyRecord,
) -> Result<(), BodyRefusal> {
    let passes = policy.on_error == OnError::Pass && !matches!(refusal, BodyRefusal::Blocked(_));
    if passes {
        tracing::warn!(reason = %refusal, "body passed on unmasked (on_error = \"pass\")");
        let direction = refusal.direction();
        if direction == Direction::Request {
            // What was found before the body failed went out as it was: counted as
            // masked, it would tell an auditor these values were redacted.
            record.request = Findings::default();
        }
        record.passed = Some(direction);
        return Ok(());
    }
    // A block was counted where it was found, as every other action.
    Err(refusal)
}

/// The response's head has come: sets up the transform of its body, or refuses the
/// response before its head goes to the client. `request_path` says which API answers
/// (`/v1/chat/completions`...); `has_body`: the response has a body
/// (not HEAD, 204, 304 or a zero length). Returns whether the body is transformed:
/// its length is then unknown, and the engine frames it as it goes (chunks on
/// HTTP/1.1).
#[allow(clippy::too_many_arguments)]
pub fn on_response_head(
    route: &Route,
    request_path: &[u8],
    content_type: Option<&[u8]>,
    content_encoding: Option<&[u8]>,
    has_body: bool,
    edits: &mut HeaderEdits,
    exchange: &mut Exchange,
    audit: &Arc<AuditLog>,
) -> Result<bool, ProxyError> {
    let strips = include_usage::strips(exchange, content_type, content_encoding, has_body);
    let head = ResponseHead {
        request_path,
        content_type,
        content_encoding,
        has_body,
    };
    let masked = on_masked_response_head(route, head, edits, exchange, audit)?;
    if !strips {
        return Ok(masked);
    }
    // The usage chunk is dropped first: masking then sees the stream the client gets.
    let next = exchange.body.response.take();
    exchange.body.response = Some(Box::new(include_usage::StripUsage {
        filter: crate::llm::UsageChunkFilter::default(),
        next,
    }));
    Ok(true)
}

/// The route's masking of the response body, set up on its head.
fn on_masked_response_head(
    route: &Route,
    head: ResponseHead<'_>,
    edits: &mut HeaderEdits,
    exchange: &mut Exchange,
    audit: &Arc<AuditLog>,
) -> Result<bool, ProxyError> {
    let Some(policy) = route.mask.as_deref() else {
        return Ok(false);
    };
    let block_audit = BlockAudit {
        audit: audit.clone(),
        scope: ("route", route.name.clone()),
        request_id: exchange
            .request_id
            .as_ref()
            .and_then(RequestId::as_str)
            .map(str::to_owned),
        client_ip: exchange.log.as_ref().map(|l| l.client_ip),
    };
    mask_response_by(policy, head, edits, &mut exchange.body, Some(block_audit))
        .map_err(ProxyError::Body)
}

/// What masking reads of a response's head, and of the request it answers.
pub struct ResponseHead<'a> {
    /// Which API answers (`/v1/chat/completions`...).
    pub request_path: &'a [u8],
    pub content_type: Option<&'a [u8]>,
    pub content_encoding: Option<&'a [u8]>,
    /// The response has a body (not HEAD, 204, 304 or a zero length).
    pub has_body: bool,
}

/// Sets up the masking of a response body by `policy` (a route's or an egress
/// listener's) in `record`: masked, pseudonyms restored, or both. Returns whether the
/// body is transformed (its length is then unknown), or the refusal of a response that
/// cannot be masked, before its head goes out.
pub fn mask_response_by(
    policy: &Policy,
    head: ResponseHead<'_>,
    edits: &mut HeaderEdits,
    record: &mut BodyRecord,
    audit: Option<BlockAudit>,
) -> Result<bool, BodyRefusal> {
    let ResponseHead {
        request_path,
        content_type,
        content_encoding,
        has_body,
    } = head;
    let vault = record.vault.take();
    record.concealer = vault.as_ref().map(|v| Box::new(v.concealer()));
    let restores = vault.is_some();
    if !(policy.response || restores) || !has_body {
        return Ok(false);
    }
    let direction = Direction::Response;
    let mut decoder = None;
    if let Some(encoding) = encoded(content_encoding) {
        match Codec::of(&encoding).filter(|_| policy.compressed == Compressed::Decode) {
            Some(codec) => {
                decoder = Some(codec.stream_decoder());
                edits.remove(&header::CONTENT_ENCODING);
            }
            // Only pseudonyms to restore: the client gets them unrestored, not a leak.
            None if !policy.response => {
                record.passed = Some(direction);
                return Ok(false);
            }
            None => {
                let refusal = BodyRefusal::Compressed {
                    direction,
                    encoding,
                };
                return settle(policy, refusal, record).map(|()| false);
            }
        }
    }
    let shape = masking::response_shape(request_path, content_type);
    if shape == masking::BodyShape::Binary && policy.response {
        // Judged on the head, so that a refusal is an answer, not a cut body; pseudonyms
        // cannot be in bytes that are not text, so a passed body is left as it is.
        let refusal = BodyRefusal::Unreadable {
            direction,
            reason: "its content type is not text or JSON".into(),
        };
        return settle(policy, refusal, record).map(|()| false);
    }
    let masker = policy
        .response
        .then(|| policy.masker.clone() as Arc<dyn masking::TextMasker>);
    let vault = vault.unwrap_or_default();
    let transform = MaskingTransform {
        decoder,
        masker: masking::ResponseMasker::with_max_body(masker, vault, shape, policy.max_body),
        findings: Findings::default(),
        audit,
    };
    record.response = Some(Box::new(transform));
    Ok(true)
}

/// A `content-encoding` other than `identity`.
fn encoded(value: Option<&[u8]>) -> Option<String> {
    let value = value?.trim_ascii();
    (!value.is_empty() && !value.eq_ignore_ascii_case(b"identity"))
        .then(|| String::from_utf8_lossy(value).into_owned())
}

struct MaskingTransform {
    /// The answer is compressed and `compressed = "decode"`: decoded first.
    decoder: Option<StreamDecoder>,
    masker: masking::ResponseMasker,
    findings: Findings,
    /// Where a `block` in the answer is recorded.
    audit: Option<BlockAudit>,
}

impl MaskingTransform {
    /// The error as the engine reports it; a `block` is audited, and named as the
    /// answer's.
    fn refused(&self, error: masking::BodyError) -> String {
        match error {
            masking::BodyError::Blocked(blocked) => {
                if let Some(audit) = &self.audit {
                    audit.record(&blocked);
                }
                format!(
                    "the response holds a value of type {} that this route does not let through",
                    blocked.kind.name()
                )
            }
            error => error.to_string(),
        }
    }
}

impl ResponseTransform for MaskingTransform {
    fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let data = match self.decoder.as_mut() {
            Some(decoder) => decoder.push(data)?,
            None => data,
        };
        let pushed = self.masker.push(data, out, &mut self.findings);
        pushed.map_err(|e| self.refused(e))
    }

    fn on_end(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        if let Some(decoder) = self.decoder.as_mut() {
            let rest = decoder.finish()?;
            let pushed = self.masker.push(rest, out, &mut self.findings);
            pushed.map_err(|e| self.refused(e))?;
        }
        let (masker, findings) = (&mut self.masker, &mut self.findings);
        let finished = off_the_workers(masker.held(), || masker.finish(out, findings));
        finished.map_err(|e| self.refused(e))
    }

    fn findings(&self) -> Option<&Findings> {
        Some(&self.findings)
    }
}

/// A content coding masking can decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    Gzip,
    /// HTTP's `deflate` is the zlib format (RFC 9110 8.4.1.2).
    Deflate,
}

impl Codec {
    fn of(encoding: &str) -> Option<Codec> {
        match encoding.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Codec::Gzip),
            "deflate" => Some(Codec::Deflate),
            _ => None,
        }
    }

    /// The whole body decoded, at most `limit` bytes of it (a small body that inflates
    /// past the limit is refused like a large one).
    fn decode_whole(self, body: &[u8], limit: usize) -> Result<Vec<u8>, BodyRefusal> {
        use std::io::Read;
        let reader: Box<dyn Read + '_> = match self {
            Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
            Codec::Deflate => Box::new(flate2::read::ZlibDecoder::new(body)),
        };
        let mut decoded = Vec::with_capacity(body.len() * 4);
        let read = reader.take(limit as u64 + 1).read_to_end(&mut decoded);
        read.map_err(|error| BodyRefusal::Unreadable {
            direction: Direction::Request,
            reason: format!("its {self:?} coding does not decode: {error}").to_lowercase(),
        })?;
        if decoded.len() > limit {
            return Err(BodyRefusal::TooLarge {
                direction: Direction::Request,
                limit,
            });
        }
        Ok(decoded)
    }

    fn stream_decoder(self) -> StreamDecoder {
        let inner = match self {
            Codec::Gzip => StreamInner::Gzip(flate2::write::MultiGzDecoder::new(Vec::new())),
            Codec::Deflate => StreamInner::Deflate(flate2::write::ZlibDecoder::new(Vec::new())),
        };
        StreamDecoder { inner }
    }
}

/// A compressed answer decoded as its pieces come.
struct StreamDecoder {
    inner: StreamInner,
}

enum StreamInner {
    Gzip(flate2::write::MultiGzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
}

impl StreamDecoder {
    /// The decoded bytes, emptied first: what was there was handed on already.
    fn fresh_output(&mut self) -> &mut Vec<u8> {
        let output = match &mut self.inner {
            StreamInner::Gzip(decoder) => decoder.get_mut(),
            StreamInner::Deflate(decoder) => decoder.get_mut(),
        };
        output.clear();
        output
    }

    fn output(&self) -> &[u8] {
        match &self.inner {
            StreamInner::Gzip(decoder) => decoder.get_ref(),
            StreamInner::Deflate(decoder) => decoder.get_ref(),
        }
    }

    /// The bytes `data` decodes to.
    fn push(&mut self, data: &[u8]) -> Result<&[u8], String> {
        use std::io::Write;
        self.fresh_output();
        let written = match &mut self.inner {
            StreamInner::Gzip(decoder) => decoder.write_all(data),
            StreamInner::Deflate(decoder) => decoder.write_all(data),
        };
        written.map_err(|error| format!("the compressed answer does not decode: {error}"))?;
        Ok(self.output())
    }

    /// What is left once the answer ended.
    fn finish(&mut self) -> Result<&[u8], String> {
        self.fresh_output();
        let done = match &mut self.inner {
            StreamInner::Gzip(decoder) => decoder.try_finish(),
            StreamInner::Deflate(decoder) => decoder.try_finish(),
        };
        done.map_err(|error| format!("the compressed answer is cut short: {error}"))?;
        Ok(self.output())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long body's masking hands its worker's other tasks to another thread: with one
    /// worker, a task spawned after the masking began still runs while it waits.
    #[test]
    fn a_long_body_is_masked_off_its_worker() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async {
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            let (go_tx, go_rx) = std::sync::mpsc::channel();
            let masking = tokio::spawn(async move {
                off_the_workers(LONG_BODY, move || {
                    started_tx.send(()).unwrap();
                    // Bounded only so that a failure ends: the other task answers at once.
                    go_rx
                        .recv_timeout(std::time::Duration::from_secs(20))
                        .is_ok()
                })
            });
            started_rx.await.unwrap();
            tokio::spawn(async move { go_tx.send(()).unwrap() });
            assert!(masking.await.unwrap(), "the other task never ran");
        });
    }
}
