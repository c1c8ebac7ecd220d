//! A pool's `api`, per attempt: the request (held whole) rewritten for the API the
//! pool chosen for this attempt speaks, and its answer set up to be translated back
//! piece by piece. The translation itself is `llm::translate`'s; this is the core's hook.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header, request};

use super::body_record::{AttemptTranslation, ResponseTransform, TranslationRefusal};
use super::{Exchange, HeaderEdits, ProxyBody, ProxyError, RequestView};
use crate::llm::ReplyKind;
use crate::llm::translate::{self, ANTHROPIC_VERSION, Api, StreamTranslator, Translation};
use crate::masking::Findings;
use crate::upstream::Pool;

/// Largest request body read whole to be translated when nothing else held it (the
/// HTTP/1.1 engine's hold: a chat request with a long prompt).
pub const TRANSLATE_BODY_LIMIT: u64 = crate::routing::HTTP1_BODY_LIMIT;

/// Largest JSON answer held to be translated whole; a longer one is answered with a 502.
const MAX_JSON_ANSWER: usize = 16 << 20;

static ANTHROPIC_VERSION_HEADER: header::HeaderName =
    header::HeaderName::from_static("anthropic-version");
static ANTHROPIC_BETA: header::HeaderName = header::HeaderName::from_static("anthropic-beta");
static X_API_KEY: header::HeaderName = header::HeaderName::from_static("x-api-key");

fn refused(client: Api, status: StatusCode, message: String) -> ProxyError {
    ProxyError::Translation(TranslationRefusal {
        client,
        status,
        message,
    })
}

/// Whether a request on `path` to `pool` is translated: its body must then be held
/// whole (the caller reads it, within [`TRANSLATE_BODY_LIMIT`], if nothing held it).
pub(crate) fn translates(pool: &Pool, path: &str) -> bool {
    Translation::between(path, pool.api).is_some()
}

/// One attempt's request to a pool of another API, for either engine to render: the
/// body and the request target (path and query); the headers are edits.
pub(crate) struct TranslatedRequest {
    pub(crate) body: Bytes,
    pub(crate) target: String,
}

/// The request for this attempt's `pool`, when the pool speaks another API than the
/// client (`None`: it goes as it is). `view` is the client's head; `held`, the body as
/// it would go (after `model_map`), when held whole: a request to translate whose body
/// is not held is refused as too large. The header changes go to `edits` (before the
/// pool's credential, which wins). Records the attempt's translation in `exchange`
/// (cleared when there is none), for its answer.
pub(crate) fn for_attempt(
    pool: &Pool,
    view: &dyn RequestView,
    held: Option<&[u8]>,
    edits: &mut HeaderEdits,
    exchange: &mut Exchange,
) -> Result<Option<TranslatedRequest>, ProxyError> {
    exchange.body.translation = None;
    let target = String::from_utf8_lossy(view.target());
    let Some(translation) = Translation::between(&target, pool.api) else {
        return Ok(None);
    };
    let Some(held) = held else {
        let limit = TRANSLATE_BODY_LIMIT;
        return Err(ProxyError::BodyTooLarge { limit });
    };
    let (request, attempt) = translated_request(pool, translation, view, &target, held, edits)?;
    exchange.body.translation = Some(attempt);
    Ok(Some(request))
}

/// The hyper engine's rendering of [`for_attempt`]: the head's target and headers set,
/// the body replaced.
pub(crate) fn request_for_attempt(
    pool: &Pool,
    head: &mut request::Parts,
    body: ProxyBody,
    held: Option<&[u8]>,
    exchange: &mut Exchange,
) -> Result<ProxyBody, ProxyError> {
    let view = super::head::PartsView {
        head,
        added_request_id: false,
    };
    let mut edits = HeaderEdits::new();
    let Some(translated) = for_attempt(pool, &view, held, &mut edits, exchange)? else {
        return Ok(body);
    };
    render(head, &translated, &edits);
    Ok(ProxyBody::full(translated.body))
}

fn render(head: &mut request::Parts, translated: &TranslatedRequest, edits: &HeaderEdits) {
    let mut parts = head.uri.clone().into_parts();
    parts.path_and_query = translated.target.parse().ok();
    if let Ok(uri) = http::Uri::from_parts(parts) {
        head.uri = uri;
    }
    edits.apply(&mut head.headers);
    head.headers.remove(header::TRANSFER_ENCODING);
    head.headers
        .insert(header::CONTENT_LENGTH, translated.body.len().into());
}

/// The mirror's copy for its pool, translated as an attempt would be; `None` when the
/// pool takes it as it is, `Err` when it cannot be translated (no copy is sent).
pub(crate) fn mirror_copy(
    pool: &Pool,
    head: &mut request::Parts,
    body: &[u8],
) -> Option<Result<Bytes, ProxyError>> {
    let view = super::head::PartsView {
        head,
        added_request_id: false,
    };
    let target = String::from_utf8_lossy(view.target()).into_owned();
    let translation = Translation::between(&target, pool.api)?;
    let mut edits = HeaderEdits::new();
    let translated = match translated_request(pool, translation, &view, &target, body, &mut edits) {
        Ok((translated, _)) => translated,
        Err(error) => return Some(Err(error)),
    };
    render(head, &translated, &edits);
    Some(Ok(translated.body))
}

fn translated_request(
    pool: &Pool,
    translation: Translation,
    view: &dyn RequestView,
    target: &str,
    body: &[u8],
    edits: &mut HeaderEdits,
) -> Result<(TranslatedRequest, AttemptTranslation), ProxyError> {
    let client = translation.client;
    let translated = translate::translate_request(translation, body)
        .map_err(|error| refused(client, StatusCode::BAD_REQUEST, error.0))?;
    // The answer is read to be translated: it must come uncompressed.
    edits.set(
        &header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    edits.remove(&header::CONTENT_ENCODING);
    edits.set(
        &header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    match translation.provider {
        Api::Anthropic => {
            if view.first(&ANTHROPIC_VERSION_HEADER).is_none() {
                let version = HeaderValue::from_static(ANTHROPIC_VERSION);
                edits.set(&ANTHROPIC_VERSION_HEADER, version);
            }
        }
        Api::OpenAi => {
            edits.remove(&ANTHROPIC_VERSION_HEADER);
            edits.remove(&ANTHROPIC_BETA);
        }
    }
    if pool.credential.is_none() {
        move_client_key(translation.provider, view, edits);
    }
    let request = TranslatedRequest {
        body: Bytes::from(translated.body),
        target: translation.provider_path(target),
    };
    let attempt = AttemptTranslation {
        translation,
        include_usage: translated.include_usage,
        model: translated.model,
    };
    Ok((request, attempt))
}

/// Without a pool credential the client's own key goes on, in the header the provider
/// reads: an OpenAI SDK's `Authorization: Bearer` as Anthropic's `x-api-key`, and back.
fn move_client_key(provider: Api, view: &dyn RequestView, edits: &mut HeaderEdits) {
    let key = match provider {
        Api::Anthropic if view.first(&X_API_KEY).is_none() => view
            .first(&header::AUTHORIZATION)
            .and_then(|value| value.strip_prefix(b"Bearer "))
            .map(<[u8]>::to_vec),
        Api::OpenAi if view.first(&header::AUTHORIZATION).is_none() => {
            view.first(&X_API_KEY).map(|key| [b"Bearer ", key].concat())
        }
        _ => None,
    };
    let Some(Ok(mut value)) = key.map(HeaderValue::from_maybe_shared) else {
        return;
    };
    value.set_sensitive(true);
    let (from, to) = match provider {
        Api::Anthropic => (&header::AUTHORIZATION, &X_API_KEY),
        Api::OpenAi => (&X_API_KEY, &header::AUTHORIZATION),
    };
    edits.remove(from);
    edits.set(to, value);
}

/// The answer to a translated attempt, for either engine: its body set to be
/// translated (before any masking, which reads the client's shape), and its head made
/// the client's through `edits`. `status` and `content_type` are the endpoint's.
/// Returns the status the translation settles once the body has been read ahead (a
/// JSON answer, whose head waits for it).
pub(crate) fn on_answer(
    status: u16,
    content_type: Option<&[u8]>,
    has_body: bool,
    edits: &mut HeaderEdits,
    exchange: &mut Exchange,
) -> Option<SettledStatus> {
    let attempt = exchange.body.translation.take()?;
    let kind = content_type.map_or(ReplyKind::Other, ReplyKind::of_content_type);
    let settled = SettledStatus(Arc::new(AtomicU16::new(0)));
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let shape = if status < 400 && kind == ReplyKind::EventStream {
        Shape::Stream(StreamTranslator::new(
            attempt.translation,
            attempt.model.clone(),
            attempt.include_usage,
            created,
        ))
    } else {
        edits.set(
            &header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Shape::Json {
            held: Vec::new(),
            status,
            created,
        }
    };
    edits.remove(&header::CONTENT_LENGTH);
    edits.remove(&header::CONTENT_ENCODING);
    if !has_body {
        return None;
    }
    let then = exchange.body.response.take();
    exchange.body.response = Some(Box::new(TranslateAnswer {
        attempt,
        shape,
        settled: settled.clone(),
        then,
    }));
    Some(settled)
}

/// The hyper engine's rendering of [`on_answer`].
pub(crate) fn on_response_head(
    head: &mut http::response::Parts,
    has_body: bool,
    exchange: &mut Exchange,
) -> Option<SettledStatus> {
    let mut edits = HeaderEdits::new();
    let content_type = head.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    let settled = on_answer(
        head.status.as_u16(),
        content_type,
        has_body,
        &mut edits,
        exchange,
    );
    edits.apply(&mut head.headers);
    settled
}

/// The status a JSON answer's translation settled on (an error's mapping, or 502 for an
/// answer that could not be read), known once its body was read ahead.
#[derive(Clone)]
pub(crate) struct SettledStatus(Arc<AtomicU16>);

impl SettledStatus {
    /// The settled status, once the answer was translated.
    pub(crate) fn get(&self) -> Option<StatusCode> {
        StatusCode::from_u16(self.0.load(Ordering::Relaxed)).ok()
    }

    pub(crate) fn apply(&self, head: &mut http::response::Parts) {
        if let Some(status) = self.get() {
            head.status = status;
        }
    }
}

enum Shape {
    Stream(StreamTranslator),
    /// Held whole (up to [`MAX_JSON_ANSWER`]), translated at its end.
    Json {
        held: Vec<u8>,
        status: u16,
        created: u64,
    },
}

struct TranslateAnswer {
    attempt: AttemptTranslation,
    shape: Shape,
    settled: SettledStatus,
    /// The body phase's own transform (masking), run on the translated bytes.
    then: Option<Box<dyn ResponseTransform>>,
}

impl TranslateAnswer {
    fn pass(&mut self, translated: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        match self.then.as_mut() {
            Some(then) => then.on_data(translated, out),
            None => {
                out.extend_from_slice(translated);
                Ok(())
            }
        }
    }

    /// The whole JSON answer in the client's shape, and its status.
    fn translate_whole(&self, held: &[u8], status: u16, created: u64) -> (u16, Vec<u8>) {
        let translation = self.attempt.translation;
        let client = translation.client;
        if held.len() > MAX_JSON_ANSWER {
            let message = format!("the provider's answer is larger than {MAX_JSON_ANSWER} bytes");
            return (502, TranslationRefusal::bad_gateway(client, message).body());
        }
        if status >= 400 {
            return translate::translate_error(translation, status, held);
        }
        let model = self.attempt.model.as_deref();
        match translate::translate_response(translation, held, model, created) {
            Ok(body) => (status, body),
            Err(reason) => (502, TranslationRefusal::bad_gateway(client, reason).body()),
        }
    }
}

impl TranslationRefusal {
    fn bad_gateway(client: Api, message: String) -> Self {
        TranslationRefusal {
            client,
            status: StatusCode::BAD_GATEWAY,
            message,
        }
    }
}

impl ResponseTransform for TranslateAnswer {
    fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let mut translated = Vec::new();
        match &mut self.shape {
            Shape::Stream(stream) => stream.push(data, &mut translated),
            Shape::Json { held, .. } => {
                // Past the cap only the size matters: the answer becomes a 502.
                if held.len() <= MAX_JSON_ANSWER {
                    held.extend_from_slice(data);
                }
                return Ok(());
            }
        }
        self.pass(&translated, out)
    }

    fn on_end(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let translated = match &mut self.shape {
            Shape::Stream(stream) => {
                let mut translated = Vec::new();
                stream.finish(&mut translated);
                translated
            }
            Shape::Json {
                held,
                status,
                created,
            } => {
                let (held, status, created) = (std::mem::take(held), *status, *created);
                let (status, body) = self.translate_whole(&held, status, created);
                self.settled.0.store(status, Ordering::Relaxed);
                body
            }
        };
        self.pass(&translated, out)?;
        match self.then.as_mut() {
            Some(then) => then.on_end(out),
            None => Ok(()),
        }
    }

    fn findings(&self) -> Option<&Findings> {
        self.then.as_ref().and_then(|then| then.findings())
    }
}
