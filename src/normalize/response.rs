//! What Junction accepts of an endpoint's response head, for both engines: how its body
//! is delimited (RFC 9112 6.3: `Transfer-Encoding` overrides `Content-Length`, whose
//! lines must agree) and which statuses may come back.

use http::HeaderMap;
use http::header::{CONTENT_LENGTH, HeaderValue, TRANSFER_ENCODING};

use crate::decimal::{Digits, parse_length};

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: HEAD, 204, 304.
    Empty,
    Length(u64),
    Chunked,
    /// Read until the endpoint closes; re-framed as chunks for the client (as hyper
    /// does), so the client's connection stays open and a cut can be told apart.
    UntilClose,
}

/// The `Content-Length` of a head, from all its lines: a line may be a list (`5, 5`),
/// and every value must be the same, or the length is ambiguous.
#[derive(Debug, Default, Clone, Copy)]
pub struct ContentLength {
    value: Option<u64>,
    /// More than one value was seen (a list, or several lines).
    repeated: bool,
}

impl ContentLength {
    pub fn add(&mut self, line: &[u8]) -> Result<(), &'static str> {
        for item in line.split(|&b| b == b',') {
            let length = parse_length(item).ok_or("invalid content-length")?;
            match self.value {
                Some(seen) if seen != length => return Err("conflicting content-length"),
                Some(_) => self.repeated = true,
                None => self.value = Some(length),
            }
        }
        Ok(())
    }

    pub fn get(&self) -> Option<u64> {
        self.value
    }
}

/// The body's framing, and whether the endpoint's connection may carry another request
/// after it. `no_body`: the answer to a HEAD, or a 204 or 304.
pub fn framing(
    no_body: bool,
    transfer_encoding: Option<&[u8]>,
    length: Option<u64>,
) -> (Framing, bool) {
    match (transfer_encoding, length) {
        // A length beside chunking is a smuggling hint even with no body to read: the
        // connection is not reused (as the hyper client's `settle_length` decides).
        (coding, length) if no_body => (Framing::Empty, coding.is_none() || length.is_none()),
        (Some(coding), _) => {
            let last = coding.rsplit(|&b| b == b',').next().unwrap_or(b"");
            if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                // A length beside chunking is a smuggling hint: never reuse.
                (Framing::Chunked, length.is_none())
            } else {
                (Framing::UntilClose, false)
            }
        }
        (None, Some(length)) => (Framing::Length(length), true),
        (None, None) => (Framing::UntilClose, false),
    }
}

/// A `101 Switching Protocols` answers only a request that asked for an upgrade; to any
/// other it would hand the client's connection to a protocol nobody agreed on.
pub fn check_status(status: u16, upgrade_requested: bool) -> Result<(), &'static str> {
    if status == 101 && !upgrade_requested {
        return Err("switching protocols without an upgrade request");
    }
    Ok(())
}

/// The hyper client's response head made as the fast path writes it: a
/// `Content-Length` beside `Transfer-Encoding` removed (an intermediary must, RFC 9112
/// 6.3) and a repeated one sent once. Returns whether the connection may be reused.
pub fn settle_length(headers: &mut HeaderMap) -> Result<bool, &'static str> {
    let mut length = ContentLength::default();
    for line in headers.get_all(CONTENT_LENGTH) {
        length.add(line.as_bytes())?;
    }
    // hyper has framed the body already (and knows the request's method, which says
    // whether there is one); all that is left is the smuggling hint of `framing`.
    let coding = headers.contains_key(TRANSFER_ENCODING);
    let reusable = !(coding && length.get().is_some());
    if coding {
        headers.remove(CONTENT_LENGTH);
    } else if let (true, Some(value)) = (length.repeated, length.get()) {
        let single = HeaderValue::from_bytes(Digits::of(value).as_bytes());
        if let Ok(single) = single {
            headers.insert(CONTENT_LENGTH, single);
        }
    }
    Ok(reusable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn length(lines: &[&str]) -> Result<Option<u64>, &'static str> {
        let mut length = ContentLength::default();
        for line in lines {
            length.add(line.as_bytes())?;
        }
        Ok(length.get())
    }

    #[test]
    fn equal_lengths_are_one_length() {
        assert_eq!(length(&["5, 5"]), Ok(Some(5)));
        assert_eq!(length(&["5", "5"]), Ok(Some(5)));
        assert_eq!(length(&[]), Ok(None));
        assert!(length(&["5, 6"]).is_err());
        assert!(length(&["5", "6"]).is_err());
        assert!(length(&["-1"]).is_err());
        assert!(length(&["5,"]).is_err());
    }

    #[test]
    fn transfer_encoding_overrides_the_length() {
        let mut headers = HeaderMap::new();
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("3"));
        assert_eq!(settle_length(&mut headers), Ok(false));
        assert!(!headers.contains_key(CONTENT_LENGTH));

        let mut headers = HeaderMap::new();
        headers.append(CONTENT_LENGTH, HeaderValue::from_static("5"));
        headers.append(CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert_eq!(settle_length(&mut headers), Ok(true));
        let lines: Vec<_> = headers.get_all(CONTENT_LENGTH).iter().collect();
        assert_eq!(lines, vec!["5"]);
    }

    #[test]
    fn a_length_beside_chunking_ends_reuse_with_or_without_a_body() {
        assert_eq!(
            framing(false, Some(b"chunked"), Some(3)),
            (Framing::Chunked, false)
        );
        assert_eq!(
            framing(true, Some(b"chunked"), Some(3)),
            (Framing::Empty, false)
        );
        assert_eq!(framing(true, None, Some(3)), (Framing::Empty, true));
        assert_eq!(framing(false, None, Some(3)), (Framing::Length(3), true));
    }

    #[test]
    fn switching_protocols_needs_an_upgrade_request() {
        assert!(check_status(101, false).is_err());
        assert!(check_status(101, true).is_ok());
        assert!(check_status(200, false).is_ok());
    }
}
