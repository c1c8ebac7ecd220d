//! Decimal digits of an integer without going through `core::fmt`, for the hot paths
//! that write numbers into bytes (access-log lines, `content-length` headers), and the
//! one reading of a `Content-Length` value both engines share.

/// A `Content-Length` value (RFC 9110 8.6): digits only, no sign, no list, at most 19
/// of them (so it cannot overflow); surrounding white space is ignored.
pub fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u64, |n, &digit| n * 10 + u64::from(digit - b'0')),
    )
}

/// The digits of one `u64`, on the stack.
pub struct Digits {
    bytes: [u8; 20],
    start: usize,
}

impl Digits {
    pub fn of(mut value: u64) -> Self {
        let mut bytes = [0u8; 20];
        let mut start = bytes.len();
        loop {
            start -= 1;
            bytes[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        Digits { bytes, start }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::Digits;

    #[test]
    fn digits_match_display() {
        for value in [0, 7, 10, 999, 1_000_000, u64::MAX] {
            assert_eq!(Digits::of(value).as_str(), value.to_string());
        }
    }
}
