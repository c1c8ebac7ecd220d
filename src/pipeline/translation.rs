//! A pool's `api`, per attempt: the request (held whole) rewritten for the API the
//! pool chosen for this attempt speaks, and its answer set up to be translated back
//! piece by piece. The translation itself is `llm::translate`'s; this is the core's hook.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header, request};

use super::body_record::{AttemptTranslation, ResponseTransform, TranslationRefusal};
use super::{Exchange, ProxyBody, ProxyError};
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

/// The request for this attempt's `pool`: when the pool speaks another API than the
/// client, the body is translated and the head's path and headers set for the
/// provider. `held`: the body as it would go (after `model_map`), when held. Records
/// the attempt's translation in `exchange` (cleared when there is none), for its answer.
pub(crate) fn request_for_attempt(
    pool: &Pool,
    head: &mut request::Parts,
    body: ProxyBody,
    held: Option<&[u8]>,
    exchange: &mut Exchange,
) -> Result<ProxyBody, ProxyError> {
    exchange.body.translation = None;
    let Some(translation) = Translation::between(head.uri.path(), pool.api) else {
        return Ok(body);
    };
    let Some(held) = held else {
        let limit = TRANSLATE_BODY_LIMIT;
        return Err(ProxyError::BodyTooLarge { limit });
    };
    let (body, attempt) = translated_request(pool, translation, head, held)?;
    exchange.body.translation = Some(attempt);
    Ok(ProxyBody::full(body))
}

/// The mirror's copy for its pool, translated as an attempt would be; `None` when the
/// pool takes it as it is, `Err` when it cannot be translated (no copy is sent).
pub(crate) fn mirror_copy(
    pool: &Pool,
    head: &mut request::Parts,
    body: &[u8],
) -> Option<Result<Bytes, ProxyError>> {
    let translation = Translation::between(head.uri.path(), pool.api)?;
    Some(translated_request(pool, translation, head, body).map(|(body, _)| body))
}

fn translated_request(
    pool: &Pool,
    translation: Translation,
    head: &mut request::Parts,
    body: &[u8],
) -> Result<(Bytes, AttemptTranslation), ProxyError> {
    let client = translation.client;
    let translated = translate::translate_request(translation, body)
        .map_err(|error| refused(client, StatusCode::BAD_REQUEST, error.0))?;
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut parts = head.uri.clone().into_parts();
    parts.path_and_query = translation.provider_path(path).parse().ok();
    if let Ok(uri) = http::Uri::from_parts(parts) {
        head.uri = uri;
    }
    let headers = &mut head.headers;
    headers.remove(header::TRANSFER_ENCODING);
    // The answer is read to be translated: it must come uncompressed.
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers.remove(header::CONTENT_ENCODING);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, translated.body.len().into());
    match translation.provider {
        Api::Anthropic => {
            if !headers.contains_key(&ANTHROPIC_VERSION_HEADER) {
                headers.insert(
                    ANTHROPIC_VERSION_HEADER.clone(),
                    HeaderValue::from_static(ANTHROPIC_VERSION),
                );
            }
        }
        Api::OpenAi => {
            headers.remove(&ANTHROPIC_VERSION_HEADER);
            headers.remove(&ANTHROPIC_BETA);
        }
    }
    if pool.credential.is_none() {
        move_client_key(translation.provider, headers);
    }
    let attempt = AttemptTranslation {
        translation,
        include_usage: translated.include_usage,
        model: translated.model,
    };
    Ok((Bytes::from(translated.body), attempt))
}

/// Without a pool credential the client's own key goes on, in the header the provider
/// reads: an OpenAI SDK's `Authorization: Bearer` as Anthropic's `x-api-key`, and back.
fn move_client_key(provider: Api, headers: &mut http::HeaderMap) {
    match provider {
        Api::Anthropic if !headers.contains_key(&X_API_KEY) => {
            let key = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
                .and_then(|key| HeaderValue::from_bytes(key).ok());
            if let Some(mut key) = key {
                key.set_sensitive(true);
                headers.remove(header::AUTHORIZATION);
                headers.insert(X_API_KEY.clone(), key);
            }
        }
        Api::OpenAi if !headers.contains_key(header::AUTHORIZATION) => {
            if let Some(key) = headers.remove(&X_API_KEY) {
                let mut bearer = b"Bearer ".to_vec();
                bearer.extend_from_slice(key.as_bytes());
                if let Ok(mut value) = HeaderValue::from_bytes(&bearer) {
                    value.set_sensitive(true);
                    headers.insert(header::AUTHORIZATION, value);
                }
            }
        }
        _ => {}
    }
}

/// The answer to a translated attempt: its body set to be translated (before any
/// masking, which reads the client's shape), its head made the client's. Returns the
/// status the translation settles once the body has been read ahead (a JSON answer).
pub(crate) fn on_response_head(
    head: &mut http::response::Parts,
    has_body: bool,
    exchange: &mut Exchange,
) -> Option<SettledStatus> {
    let attempt = exchange.body.translation.take()?;
    let status = head.status.as_u16();
    let kind = ReplyKind::of(&head.headers);
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
        head.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Shape::Json {
            held: Vec::new(),
            status,
            created,
        }
    };
    head.headers.remove(header::CONTENT_LENGTH);
    head.headers.remove(header::CONTENT_ENCODING);
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

/// The status a JSON answer's translation settled on (an error's mapping, or 502 for an
/// answer that could not be read), known once its body was read ahead.
#[derive(Clone)]
pub(crate) struct SettledStatus(Arc<AtomicU16>);

impl SettledStatus {
    pub(crate) fn apply(&self, head: &mut http::response::Parts) {
        let status = self.0.load(Ordering::Relaxed);
        if let Ok(status) = StatusCode::from_u16(status) {
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
