//! Request identity across hops: `x-request-id` (kept, or made) and W3C `traceparent`
//! (kept trace, new span id for the proxy hop), so traces join up across Junction.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::balance::SplitMix;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into(out: &mut [u8], mut value: u64) {
    for byte in out.iter_mut().rev() {
        *byte = HEX[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// A new 128-bit id as 32 lowercase hex digits.
pub fn new_request_id(rng: &SplitMix) -> HeaderValue {
    let mut text = [0u8; 32];
    hex_into(&mut text[..16], rng.next_u64());
    hex_into(&mut text[16..], rng.next_u64());
    HeaderValue::from_bytes(&text).expect("hex is a valid header value")
}

/// The request's id: the client's `x-request-id` if it sent a usable one, else a new
/// one, set on the request so that it goes upstream.
pub fn ensure_request_id(headers: &mut HeaderMap, rng: &SplitMix) -> HeaderValue {
    if let Some(existing) = headers.get(&X_REQUEST_ID) {
        if !existing.is_empty() && existing.len() <= 200 {
            return existing.clone();
        }
    }
    let id = new_request_id(rng);
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

/// Trace and span ids of this hop, for the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceIds {
    pub trace_id: String,
    pub span_id: String,
}

/// Rewrites a valid `traceparent` with a new parent (span) id for the proxy hop; an
/// invalid one is removed (the spec says not to pass on what cannot be parsed), and
/// none is created when the client sent none.
pub fn continue_trace(headers: &mut HeaderMap, rng: &SplitMix) -> Option<TraceIds> {
    let incoming = headers.get(&TRACEPARENT)?;
    let Some((trace_id, flags)) = parse_traceparent(incoming.as_bytes()) else {
        headers.remove(&TRACEPARENT);
        return None;
    };
    let mut span = [0u8; 16];
    hex_into(&mut span, rng.next_u64() | 1); // never the all-zero invalid id
    let span_id = std::str::from_utf8(&span).expect("hex").to_string();
    let value = format!("00-{trace_id}-{span_id}-{flags}");
    headers.insert(
        TRACEPARENT.clone(),
        HeaderValue::from_str(&value).expect("hex is a valid header value"),
    );
    Some(TraceIds { trace_id, span_id })
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; all-zero ids are invalid.
fn parse_traceparent(value: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut parts = text.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let is_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = is_hex(version, 2)
        && version != "ff"
        && is_hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && is_hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && is_hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    valid.then(|| (trace.to_string(), flags.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_gets_a_new_span() {
        let rng = SplitMix::with_seed(1);
        let mut headers = HeaderMap::new();
        headers.insert(
            &TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let ids = continue_trace(&mut headers, &rng).unwrap();
        assert_eq!(ids.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let forwarded = headers[&TRACEPARENT].to_str().unwrap();
        assert!(forwarded.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(forwarded.ends_with("-01"));
        assert!(!forwarded.contains("00f067aa0ba902b7"));
        assert_eq!(&forwarded[36..52], ids.span_id);
    }

    #[test]
    fn invalid_trace_context_is_dropped() {
        let rng = SplitMix::with_seed(1);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "xx",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(&TRACEPARENT, HeaderValue::from_str(bad).unwrap());
            assert!(continue_trace(&mut headers, &rng).is_none());
            assert!(!headers.contains_key(&TRACEPARENT));
        }
    }

    #[test]
    fn request_ids_are_kept_or_made() {
        let rng = SplitMix::with_seed(1);
        let mut headers = HeaderMap::new();
        let made = ensure_request_id(&mut headers, &rng);
        assert_eq!(made.len(), 32);
        assert_eq!(headers[&X_REQUEST_ID], made);
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("abc"));
        assert_eq!(ensure_request_id(&mut headers, &rng), "abc");
    }
}
