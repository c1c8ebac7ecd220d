//! The body maskers (src/masking/) on bytes a client or an endpoint sent: a request body
//! of each shape masked whole, and a response streamed in two pieces.
//!
//! Properties, for any bytes:
//! - nothing panics, whatever the shape and the action;
//! - a JSON body serde_json reads is masked (never refused as not JSON unless nested
//!   past the scanner's limit), stays JSON, and keeps its structure and every
//!   non-string value: only strings change;
//! - a masked form keeps its framing (multipart parts, URL-encoded fields);
//! - text masked with `pseudonymize` and then restored from the request's vault, as a
//!   response, is the text that came in (when it holds no `<`, which a pseudonym
//!   starts with);
//! - every run of hex digits, colons and dots in the input is an IPv6 address to the
//!   detectors' in-place check exactly when `std::net::Ipv6Addr` parses it, with the
//!   same groups written out.

#![no_main]

use std::sync::{Arc, OnceLock};

use junction::masking::{
    Action, Api, BodyError, BodyShape, Boundary, Builtin, Findings, Masker, ResponseMasker, TextMasker,
    Vault, mask_request_body,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const ACTIONS: [Action; 4] = [
    Action::Redact,
    Action::Hash,
    Action::Partial,
    Action::Pseudonymize,
];

/// The maskers, built once: a build (the literal searcher, the tables) costs more than
/// masking an input.
fn masker(action: Action, names: bool) -> Arc<Masker> {
    static MASKERS: OnceLock<Vec<Arc<Masker>>> = OnceLock::new();
    let maskers = MASKERS.get_or_init(|| {
        [false, true]
            .into_iter()
            .flat_map(|names| ACTIONS.map(|action| Arc::new(build(action, names))))
            .collect()
    });
    let at = ACTIONS.iter().position(|a| *a == action).unwrap_or(0);
    maskers[usize::from(names) * ACTIONS.len() + at].clone()
}

fn build(action: Action, names: bool) -> Masker {
    // The maskers with names also read a request's identifiers (`user`, `metadata`), so
    // that both request selections are fuzzed.
    let mut builder = Masker::builder()
        .hash_key(b"fuzz".to_vec())
        .identifiers(names);
    for kind in Builtin::ALL {
        if !kind.is_optional() || names {
            builder = builder.action(kind, action);
        }
    }
    builder.build().expect("the built-in detectors build")
}

/// The same tree with strings in the same places and every other value equal.
fn same_but_strings(before: &Value, after: &Value) -> bool {
    match (before, after) {
        (Value::String(_), Value::String(_)) => true,
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_but_strings(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, a), (kb, b))| ka == kb && same_but_strings(a, b))
        }
        (a, b) => a == b,
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let action = ACTIONS[usize::from(first & 3)];
    let masker = masker(action, first & 4 != 0);
    let boundary = Boundary::new(b"b").expect("a boundary");
    let shape = match ((first >> 3) & 3, body.len() % 3) {
        (0, _) => BodyShape::ApiJson(Api::OpenAiChat),
        (1, _) => BodyShape::OtherJson,
        (2, _) => BodyShape::Text,
        (_, 0) => BodyShape::JsonLines(None),
        (_, 1) => BodyShape::Multipart(boundary),
        _ => BodyShape::UrlEncodedForm,
    };
    let mut vault = Vault::default();
    let mut findings = Findings::default();
    let masked = mask_request_body(&*masker, shape, body, &mut vault, &mut findings);

    if matches!(shape, BodyShape::ApiJson(_) | BodyShape::OtherJson)
        && let Ok(before) = serde_json::from_slice::<Value>(body)
        && depth(&before) < 100
    {
        let masked = match &masked {
            Ok(masked) => masked,
            Err(BodyError::Blocked(_)) => return,
            Err(error) => panic!("valid JSON refused: {error}"),
        };
        let after: Value = serde_json::from_slice(&masked).expect("masked JSON stays JSON");
        assert!(same_but_strings(&before, &after), "only strings change");
    }

    // A form keeps its framing: a masked multipart body reads as one again, and a
    // URL-encoded one has the same fields (replacements are encoded).
    if let Ok(masked) = &masked {
        if shape == BodyShape::Multipart(boundary) {
            let again = mask_request_body(
                &*masker,
                shape,
                masked,
                &mut Vault::default(),
                &mut Findings::default(),
            );
            assert!(
                !matches!(again, Err(BodyError::NotMultipart { .. })),
                "a masked multipart body is multipart: {again:?}"
            );
        }
        if shape == BodyShape::UrlEncodedForm {
            // Each field as `name=value` or a name alone, in the same order.
            let fields = |bytes: &[u8]| -> Vec<bool> {
                bytes.split(|b| *b == b'&').map(|f| f.contains(&b'=')).collect()
            };
            assert_eq!(fields(masked), fields(body), "the same fields");
        }
    }

    if shape == BodyShape::Text
        && action == Action::Pseudonymize
        && !body.contains(&b'<')
        && let Ok(masked) = &masked
    {
        let cut = usize::from(first >> 5) * masked.len() / 8;
        let mut restorer = ResponseMasker::new(None, vault, BodyShape::Text);
        let mut restored = Vec::new();
        let mut findings = Findings::default();
        restorer
            .push(&masked[..cut], &mut restored, &mut findings)
            .expect("restoring text never fails");
        restorer
            .push(&masked[cut..], &mut restored, &mut findings)
            .expect("restoring text never fails");
        restorer
            .finish(&mut restored, &mut findings)
            .expect("restoring text never fails");
        if std::str::from_utf8(body).is_ok() {
            assert_eq!(restored, body, "pseudonyms restored");
        }
    }

    if let Ok(text) = std::str::from_utf8(body) {
        let runs = text.split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.'));
        for run in runs.filter(|run| !run.is_empty() && run.len() <= 64) {
            let by_std = run.parse::<std::net::Ipv6Addr>().ok().map(|_| {
                run.split(':').filter(|g| !g.is_empty()).count() + usize::from(run.contains('.'))
            });
            assert_eq!(
                junction::fuzzing::ipv6_groups(run.as_bytes()),
                by_std,
                "{run:?}"
            );
        }
    }

    // Any response shape, in two pieces, masked as it streams.
    let response_shape = match first >> 6 {
        0 => BodyShape::ApiJson(Api::OpenAiChat),
        1 => BodyShape::Text,
        2 => BodyShape::EventStream(Some(Api::OpenAiChat)),
        _ => BodyShape::JsonLines(None),
    };
    let masker: Arc<dyn TextMasker> = masker;
    let mut response = ResponseMasker::new(Some(masker), Vault::default(), response_shape);
    let cut = usize::from(first) * body.len() / 256;
    let mut out = Vec::new();
    let mut findings = Findings::default();
    let _ = response
        .push(&body[..cut], &mut out, &mut findings)
        .and_then(|()| response.push(&body[cut..], &mut out, &mut findings))
        .and_then(|()| response.finish(&mut out, &mut findings));
});
