//! An egress listener's `mask`: the gateway's body phase (`pipeline::body_phase`) run
//! on plain and intercepted requests and their answers. The decisions (what is found,
//! the actions, refusals, `on_error`) are the body phase's; this module only holds the
//! body to read it whole and turns its refusals into the forward proxy's answers.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header, request, response};
use hyper::body::{Body, Incoming};

use super::record::Record;
use super::{EgressMask, ProxyStatus};
use crate::masking::Partition;
use crate::pipeline::body::{ClientBody, Held, read_up_to};
use crate::pipeline::body_phase::{self, ResponseHead};
use crate::pipeline::body_record::{BodyRefusal, Direction};
use crate::pipeline::head::PartsView;
use crate::pipeline::{HeaderEdits, ProxyBody};

/// The request body as it goes toward the site.
pub(super) enum Outgoing {
    /// Held whole (masked, or read to be masked and passed): sent again on a retry.
    Held(Bytes),
    /// Streamed as the client sends it (no masking of requests, or a body longer than
    /// masking reads, passed on with `on_error = "pass"`).
    Streamed(ProxyBody),
}

/// Masks the request body by the listener's policy: reads it whole (up to the policy's
/// `max_body`, within `idle`), masks it, and edits `head` to match (its length,
/// `content-encoding` when it was decoded, `accept-encoding: identity` when the answer
/// is read). A `block` goes to the audit log; every refusal is the client's answer.
pub(super) async fn mask_request(
    mask: &EgressMask,
    head: &mut request::Parts,
    body: Incoming,
    idle: Duration,
    record: &mut Record,
) -> Result<Outgoing, ProxyStatus> {
    let policy = &*mask.policy;
    let mut edits = HeaderEdits::new();
    body_phase::request_edits_by(Some(policy), &mut edits);
    if !policy.request || body.is_end_stream() {
        edits.apply(&mut head.headers);
        let streamed = if body.is_end_stream() {
            ProxyBody::Empty
        } else {
            ProxyBody::Incoming(ClientBody::untimed(body))
        };
        return Ok(Outgoing::Streamed(streamed));
    }
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let read = read_whole(body, declared, policy.max_body, idle).await?;
    let whole = match &read {
        Held::Whole(bytes) => Some(&bytes[..]),
        Held::Over(_) => None,
    };
    let view = PartsView {
        head,
        added_request_id: false,
    };
    // Who the client is: its address, and the user it gave. Not the user alone: where
    // the listener asks for no password, a client may give anyone's.
    let client = Partition::of((record.client().ip(), record.user.as_deref()));
    let masked =
        body_phase::mask_request_by(policy, &view, whole, &mut edits, client, &mut record.body);
    let masked = masked.map_err(|refusal| {
        if let (BodyRefusal::Blocked(blocked), Some(audit)) = (&refusal, &mask.audit) {
            let scope = ("egress", &**record.egress_name());
            body_phase::audit_block(audit, scope, blocked, None, Some(record.client().ip()));
        }
        refusal_status(&refusal)
    })?;
    edits.apply(&mut head.headers);
    let sent = match (masked, read) {
        (Some(masked), _) | (None, Held::Whole(masked)) => masked,
        // Longer than masking reads, and passed: what was read, then the rest.
        (None, Held::Over(streamed)) => return Ok(Outgoing::Streamed(streamed)),
    };
    head.headers.remove(header::TRANSFER_ENCODING);
    head.headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(sent.len()));
    record.record_request_body(&sent);
    Ok(Outgoing::Held(sent))
}

/// Reads a request body whole when it is at most `limit` bytes. The client has `idle`
/// for all of it: a site's politeness turn is not taken before it is in.
async fn read_whole(
    body: Incoming,
    declared: Option<u64>,
    limit: usize,
    idle: Duration,
) -> Result<Held, ProxyStatus> {
    let reading = read_up_to(None, ClientBody::untimed(body), declared, limit as u64);
    match tokio::time::timeout(idle, reading).await {
        Ok(Ok(held)) => Ok(held),
        Ok(Err(error)) => Err(ProxyStatus::new(
            StatusCode::BAD_REQUEST,
            "http_request_error",
            "client_body",
            format!("the request body could not be read: {error}"),
        )),
        Err(_) => Err(ProxyStatus::new(
            StatusCode::REQUEST_TIMEOUT,
            "http_request_error",
            "client_body",
            format!("the request body did not arrive within {idle:?}"),
        )),
    }
}

/// Sets up the masking of the site's answer (masked, or pseudonyms restored): edits its
/// head, and returns whether its body is transformed; or the refusal of an answer that
/// cannot be masked (502; counted, as the gateway counts it).
pub(super) fn mask_response(
    mask: &EgressMask,
    method: &Method,
    request_path: &str,
    head: &mut response::Parts,
    record: &mut Record,
) -> Result<bool, ProxyStatus> {
    let status = head.status;
    let empty_length = head
        .headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0");
    let has_body = *method != Method::HEAD
        && !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED
        && !empty_length;
    let mut edits = HeaderEdits::new();
    let response_head = ResponseHead {
        request_path: request_path.as_bytes(),
        content_type: head.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        content_encoding: head
            .headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.as_bytes()),
        has_body,
    };
    let block_audit = mask.audit.as_ref().map(|audit| body_phase::BlockAudit {
        audit: audit.clone(),
        scope: ("egress", record.egress_name().clone()),
        request_id: None,
        client_ip: Some(record.client().ip()),
    });
    let transformed = body_phase::mask_response_by(
        &mask.policy,
        response_head,
        &mut edits,
        &mut record.body,
        block_audit,
    )
    .map_err(|refusal| refusal_status(&refusal))?;
    edits.apply(&mut head.headers);
    if transformed {
        head.headers.remove(header::CONTENT_LENGTH);
    }
    Ok(transformed)
}

/// The forward proxy's answer to a body the body phase refused: the gateway's status,
/// and its error type as the reason.
pub(super) fn refusal_status(refusal: &BodyRefusal) -> ProxyStatus {
    let status = refusal.status();
    let error = if status.is_server_error() {
        "proxy_internal_response"
    } else {
        "http_request_denied"
    };
    ProxyStatus::new(status, error, refusal.kind(), refusal.to_string())
}

/// The answer to a site's body the transform refused before the head went out.
pub(super) fn refused_answer(reason: String) -> ProxyStatus {
    refusal_status(&BodyRefusal::Unreadable {
        direction: Direction::Response,
        reason,
    })
}
