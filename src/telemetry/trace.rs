//! Request identity across hops: `x-request-id` (kept, or made) and W3C `traceparent`
//! (kept trace, new span id for the proxy hop), so traces join up across Junction.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::balance::SplitMix;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// `value` as 16 lowercase hex digits, all at once in a word per half: on every
/// request, where a loop over the nibbles cost more than the rest of the id.
fn hex16(value: u64) -> [u8; 16] {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // The eight nibbles of `half`, one per byte, the last nibble in the lowest byte.
    fn spread(half: u32) -> u64 {
        let x = u64::from(half);
        let x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
        let x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
        (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f
    }
    // Per byte (no carry: a nibble plus 6 is below 0x10 + 6): 1 where the nibble is
    // a letter, which then starts at `a` rather than after `9`.
    fn digits(nibbles: u64) -> u64 {
        let letters = ((nibbles + ONES * 6) >> 4) & ONES;
        nibbles + ONES * u64::from(b'0') + letters * u64::from(b'a' - b'0' - 10)
    }
    let mut text = [0u8; 16];
    text[..8].copy_from_slice(&digits(spread((value >> 32) as u32)).to_be_bytes());
    text[8..].copy_from_slice(&digits(spread(value as u32)).to_be_bytes());
    text
}

/// A request's id: one Junction made (32 hex digits, kept inline: no allocation and no
/// check of its bytes on the request path), or the one the client sent, kept as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    Made([u8; 32]),
    Given(HeaderValue),
}

impl RequestId {
    /// A new 128-bit id.
    pub fn new(rng: &SplitMix) -> Self {
        let mut text = [0u8; 32];
        text[..16].copy_from_slice(&hex16(rng.next_u64()));
        text[16..].copy_from_slice(&hex16(rng.next_u64()));
        RequestId::Made(text)
    }

    /// Whether a client's `x-request-id` is kept rather than replaced by a made one:
    /// the one rule of both engines.
    pub fn is_usable(value: &[u8]) -> bool {
        !value.is_empty() && value.len() <= 200
    }

    /// The client's `x-request-id`, when it is one to keep: usable, and a valid
    /// header value.
    pub fn given(value: &[u8]) -> Option<Self> {
        if !Self::is_usable(value) {
            return None;
        }
        HeaderValue::from_bytes(value).ok().map(RequestId::Given)
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            RequestId::Made(text) => text,
            RequestId::Given(value) => value.as_bytes(),
        }
    }

    /// The id as text, for logs and records: `None` for a client's id with bytes
    /// beyond visible ASCII.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            RequestId::Made(text) => std::str::from_utf8(text).ok(),
            RequestId::Given(value) => value.to_str().ok(),
        }
    }

    pub fn is_made(&self) -> bool {
        matches!(self, RequestId::Made(_))
    }

    pub fn to_header(&self) -> HeaderValue {
        match self {
            RequestId::Made(text) => {
                HeaderValue::from_bytes(text).expect("hex is a valid header value")
            }
            RequestId::Given(value) => value.clone(),
        }
    }
}

/// The request's id: the client's `x-request-id` if it sent a usable one, else a new
/// one, set on the request so that it goes upstream.
pub fn ensure_request_id(headers: &mut HeaderMap, rng: &SplitMix) -> RequestId {
    if let Some(existing) = headers.get(&X_REQUEST_ID)
        && RequestId::is_usable(existing.as_bytes())
    {
        return RequestId::Given(existing.clone());
    }
    let id = RequestId::new(rng);
    headers.insert(X_REQUEST_ID.clone(), id.to_header());
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
    let span = hex16(rng.next_u64() | 1); // never the all-zero invalid id
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
        assert!(made.is_made());
        assert_eq!(made.as_bytes().len(), 32);
        assert_eq!(headers[&X_REQUEST_ID], made.to_header());
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("abc"));
        let kept = ensure_request_id(&mut headers, &rng);
        assert_eq!(kept.as_str(), Some("abc"));
        assert!(!kept.is_made());
    }

    #[test]
    fn given_ids_are_kept_only_when_usable() {
        assert_eq!(RequestId::given(b"abc").unwrap().as_bytes(), b"abc");
        assert!(RequestId::given(b"").is_none());
        assert!(RequestId::given(&[b'a'; 201]).is_none());
        assert!(RequestId::given(&[b'a'; 200]).is_some());
        assert!(RequestId::given(b"a\nb").is_none());
    }

    proptest::proptest! {
        #[test]
        fn hex_words_are_what_format_writes(value: u64) {
            let text = hex16(value);
            proptest::prop_assert_eq!(std::str::from_utf8(&text).unwrap(), format!("{value:016x}"));
        }
    }

    #[test]
    fn hex_words_hold_every_nibble_at_every_place() {
        for place in 0..16 {
            for nibble in 0..16u64 {
                let value = nibble << (4 * place);
                assert_eq!(
                    std::str::from_utf8(&hex16(value)).unwrap(),
                    format!("{value:016x}")
                );
            }
        }
        let rng = SplitMix::with_seed(7);
        let RequestId::Made(text) = RequestId::new(&rng) else {
            panic!("a new id is made")
        };
        assert!(
            text.iter()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}
