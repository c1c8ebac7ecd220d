//! Header names and tokens the fast engine looks for, compared whatever their case as
//! three 8-byte words rather than byte by byte: the response head's per-line dispatch
//! runs on every answer, and its byte loops cost more than the rest of its pass.

/// A lowercase name (ASCII letters, digits, `-`) of at most [`KnownName::MAX`] bytes,
/// kept as the words [`KnownName::matches`] compares. `matches` gives what
/// `name.eq_ignore_ascii_case(text)` gives, for any bytes.
#[derive(Debug, Clone, Copy)]
pub struct KnownName {
    len: usize,
    /// The text at the offsets [`words`] reads.
    words: [u64; 3],
    /// `0x20` in each byte holding a letter: OR-ed into a candidate's bytes, it makes an
    /// upper-case letter lower-case there (and only there, so `-` never meets `\r`).
    case: [u64; 3],
}

impl KnownName {
    pub const MAX: usize = 24;

    /// Refuses to compile for a text that is too long or not lowercase letters,
    /// digits and `-`.
    pub const fn new(text: &str) -> KnownName {
        let text = text.as_bytes();
        assert!(text.len() <= KnownName::MAX);
        let mut case = [0u8; KnownName::MAX];
        let mut at = 0;
        while at < text.len() {
            let byte = text[at];
            assert!(byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
            if byte.is_ascii_lowercase() {
                case[at] = 0x20;
            }
            at += 1;
        }
        KnownName {
            len: text.len(),
            words: const_words(text),
            case: const_words(case.split_at(text.len()).0),
        }
    }

    /// Whether `name` is this name, whatever the case of its letters.
    #[inline]
    pub fn matches(&self, name: &[u8]) -> bool {
        name.len() == self.len && self.matches_same_length(name)
    }

    /// [`matches`](Self::matches) for a `name` known to have this name's length (a
    /// dispatch on the length has been made).
    #[inline]
    pub fn matches_same_length(&self, name: &[u8]) -> bool {
        debug_assert_eq!(name.len(), self.len);
        let [a, b, c] = words(name);
        ((a | self.case[0]) ^ self.words[0])
            | ((b | self.case[1]) ^ self.words[1])
            | ((c | self.case[2]) ^ self.words[2])
            == 0
    }
}

/// The header names (and `Connection` and coding tokens) the fast engine's request
/// and response heads look for, one set for both.
pub mod names {
    use super::KnownName;

    pub const CONTENT_LENGTH: KnownName = KnownName::new("content-length");
    pub const TRANSFER_ENCODING: KnownName = KnownName::new("transfer-encoding");
    pub const CONNECTION: KnownName = KnownName::new("connection");
    pub const KEEP_ALIVE: KnownName = KnownName::new("keep-alive");
    pub const PROXY_CONNECTION: KnownName = KnownName::new("proxy-connection");
    pub const TE: KnownName = KnownName::new("te");
    pub const UPGRADE: KnownName = KnownName::new("upgrade");
    pub const CONTENT_TYPE: KnownName = KnownName::new("content-type");
    pub const X_REQUEST_ID: KnownName = KnownName::new("x-request-id");
    pub const X_JUNCTION_VERSION: KnownName = KnownName::new("x-junction-version");
    pub const CLOSE: KnownName = KnownName::new("close");
    pub const TRAILERS: KnownName = KnownName::new("trailers");
    pub const CHUNKED: KnownName = KnownName::new("chunked");
    // The response head's.
    pub const DATE: KnownName = KnownName::new("date");
    pub const RETRY_AFTER: KnownName = KnownName::new("retry-after");
    pub const LOAD_METRICS: KnownName = KnownName::new("endpoint-load-metrics");
    pub const CONTENT_ENCODING: KnownName = KnownName::new("content-encoding");
    // The request head's.
    pub const VIA: KnownName = KnownName::new("via");
    pub const HOST: KnownName = KnownName::new("host");
    pub const FORWARDED: KnownName = KnownName::new("forwarded");
    pub const X_REAL_IP: KnownName = KnownName::new("x-real-ip");
    pub const TRACEPARENT: KnownName = KnownName::new("traceparent");
    pub const X_JUNCTION_TAG: KnownName = KnownName::new("x-junction-tag");
    pub const X_FORWARDED_FOR: KnownName = KnownName::new("x-forwarded-for");
    pub const X_FORWARDED_HOST: KnownName = KnownName::new("x-forwarded-host");
    pub const X_FORWARDED_PROTO: KnownName = KnownName::new("x-forwarded-proto");
    pub const X_JUNCTION_ADMIN_TOKEN: KnownName = KnownName::new("x-junction-admin-token");
    pub const EXPECT: KnownName = KnownName::new("expect");
    pub const USER_AGENT: KnownName = KnownName::new("user-agent");
}

/// Words covering `bytes` (at most [`KnownName::MAX`] long; a longer one is only ever
/// compared after its length differed): from 8 bytes on, the first 8, 8 from the
/// middle and the last 8, overlapping when shorter than 24; under 8, the first and last
/// 4 (or 2, or the one byte), the rest zero.
#[inline]
fn words(bytes: &[u8]) -> [u64; 3] {
    let len = bytes.len();
    if let (Some(head), Some(tail)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        let middle = bytes[8.min(len - 8)..].first_chunk::<8>().unwrap_or(tail);
        return [
            u64::from_le_bytes(*head),
            u64::from_le_bytes(*middle),
            u64::from_le_bytes(*tail),
        ];
    }
    if let (Some(head), Some(tail)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        return [
            u64::from(u32::from_le_bytes(*head)),
            u64::from(u32::from_le_bytes(*tail)),
            0,
        ];
    }
    if let (Some(head), Some(tail)) = (bytes.first_chunk::<2>(), bytes.last_chunk::<2>()) {
        return [
            u64::from(u16::from_le_bytes(*head)),
            u64::from(u16::from_le_bytes(*tail)),
            0,
        ];
    }
    [bytes.first().map_or(0, |&b| u64::from(b)), 0, 0]
}

/// [`words`] at compile time (no `first_chunk` there): the same offsets, byte by byte.
const fn const_words(bytes: &[u8]) -> [u64; 3] {
    let len = bytes.len();
    let (width, starts) = if len >= 8 {
        let middle = if len - 8 < 8 { len - 8 } else { 8 };
        (8, [0, middle, len - 8])
    } else if len >= 4 {
        (4, [0, len - 4, usize::MAX])
    } else if len >= 2 {
        (2, [0, len - 2, usize::MAX])
    } else if len == 1 {
        (1, [0, usize::MAX, usize::MAX])
    } else {
        (0, [usize::MAX, usize::MAX, usize::MAX])
    };
    let mut words = [0u64; 3];
    let mut word = 0;
    while word < 3 {
        if starts[word] != usize::MAX {
            let mut at = 0;
            while at < width {
                words[word] |= (bytes[starts[word] + at] as u64) << (8 * at);
                at += 1;
            }
        }
        word += 1;
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXTS: &[&str] = &[
        "te",
        "date",
        "close",
        "upgrade",
        "trailers",
        "connection",
        "keep-alive",
        "retry-after",
        "content-type",
        "x-request-id",
        "content-length",
        "content-encoding",
        "proxy-connection",
        "transfer-encoding",
        "x-junction-version",
        "endpoint-load-metrics",
        "via",
        "host",
        "chunked",
        "x-forwarded-proto",
        "x-junction-admin-token",
        "a",
        "ab9",
        "x-24-bytes-long-name-abc",
        "",
    ];

    fn agrees(known: &KnownName, text: &str, candidate: &[u8]) {
        assert_eq!(
            known.matches(candidate),
            candidate.eq_ignore_ascii_case(text.as_bytes()),
            "{text:?} against {:?}",
            String::from_utf8_lossy(candidate)
        );
    }

    /// Every byte value at every position, and each letter's other case, alone and all
    /// at once: the word compare answers as `eq_ignore_ascii_case` does.
    #[test]
    fn matches_as_eq_ignore_ascii_case_does() {
        for &text in TEXTS {
            let known = KnownName::new(text);
            agrees(&known, text, text.as_bytes());
            agrees(&known, text, text.to_ascii_uppercase().as_bytes());
            for at in 0..text.len() {
                for byte in 0..=255u8 {
                    let mut candidate = text.as_bytes().to_vec();
                    candidate[at] = byte;
                    agrees(&known, text, &candidate);
                    let mut upper = text.to_ascii_uppercase().into_bytes();
                    upper[at] = byte;
                    agrees(&known, text, &upper);
                }
            }
        }
    }

    /// Near misses of every length around the name's: a byte more or less at either
    /// end, the other names of the table.
    #[test]
    fn near_misses_do_not_match() {
        for &text in TEXTS {
            let known = KnownName::new(text);
            let bytes = text.as_bytes();
            let mut longer = bytes.to_vec();
            longer.push(b'x');
            assert!(!known.matches(&longer), "{text:?}x");
            let mut before = b"x".to_vec();
            before.extend_from_slice(bytes);
            assert!(!known.matches(&before), "x{text:?}");
            if let Some((_, shorter)) = bytes.split_last() {
                assert!(!known.matches(shorter), "{text:?} less its last byte");
                assert!(!known.matches(&bytes[1..]), "{text:?} less its first byte");
            }
            for &other in TEXTS.iter().filter(|&&other| other != text) {
                assert!(!known.matches(other.as_bytes()), "{text:?} took {other:?}");
            }
        }
        for miss in [
            "content-lengthx",
            "transfer-encodin",
            "content_length",
            "Content-Lengtg",
        ] {
            assert!(!KnownName::new("content-length").matches(miss.as_bytes()));
            assert!(!KnownName::new("transfer-encoding").matches(miss.as_bytes()));
        }
    }
}
