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

/// The digits of one `u64`, on the stack, made two at a time from a table (as `itoa`
/// does; that crate's buffer lends its digits out, and callers here want them by value).
pub struct Digits {
    bytes: [u8; 20],
    len: usize,
}

/// "00" to "99".
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

impl Digits {
    pub fn of(value: u64) -> Self {
        let (bytes, len) = Self::block(value);
        Digits { bytes, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The digits of `value` at the start of a block of 20 bytes, and how many there
    /// are: a writer copies the whole block (a copy of fixed size, no `memcpy` call)
    /// and keeps `len` bytes of it.
    #[inline]
    pub fn block(value: u64) -> ([u8; 20], usize) {
        // Most numbers in a line are small (a count of retries, a status, a length):
        // made here, inline; longer ones by the loop.
        let mut bytes = [0u8; 20];
        if value < 10 {
            bytes[0] = b'0' + value as u8;
            return (bytes, 1);
        }
        if value < 100 {
            let pair = value as usize * 2;
            bytes[..2].copy_from_slice(&PAIRS[pair..pair + 2]);
            return (bytes, 2);
        }
        if value < 1000 {
            let pair = (value % 100) as usize * 2;
            bytes[0] = b'0' + (value / 100) as u8;
            bytes[1..3].copy_from_slice(&PAIRS[pair..pair + 2]);
            return (bytes, 3);
        }
        Self::long_block(value)
    }

    #[inline(never)]
    fn long_block(mut value: u64) -> ([u8; 20], usize) {
        let len = value.checked_ilog10().map_or(1, |log| log as usize + 1);
        let mut bytes = [0u8; 20];
        let mut end = len;
        while value >= 100 && end >= 2 {
            let pair = (value % 100) as usize * 2;
            value /= 100;
            end -= 2;
            bytes[end..end + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        }
        if value >= 10 && end >= 2 {
            let pair = value as usize * 2;
            bytes[end - 2..end].copy_from_slice(&PAIRS[pair..pair + 2]);
        } else if end >= 1 {
            bytes[end - 1] = b'0' + value as u8;
        }
        (bytes, len)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("0")
    }
}

/// The dotted-decimal text of an IPv4 address (as `Display` writes it) at the start of a
/// block of 15 bytes, and how many there are: written by hand, as the access log's
/// client address and the egress site key are on every request.
#[inline]
pub fn ipv4(address: std::net::Ipv4Addr) -> ([u8; 15], usize) {
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in address.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    (text, len)
}

#[cfg(test)]
mod tests {
    use super::{Digits, ipv4};

    #[test]
    fn ipv4_text_matches_display() {
        let octets = [0u8, 1, 9, 10, 42, 99, 100, 199, 200, 255];
        for a in octets {
            for b in octets {
                let address = std::net::Ipv4Addr::new(a, b, b.wrapping_add(a), 255 - a);
                let (text, len) = ipv4(address);
                assert_eq!(&text[..len], address.to_string().as_bytes());
            }
        }
    }

    #[test]
    fn digits_match_display() {
        let some = [1_000_000, 12_345_678, u64::MAX / 10, u64::MAX - 1, u64::MAX];
        for value in (0..20_000).chain(some) {
            assert_eq!(Digits::of(value).as_str(), value.to_string());
            let (block, len) = Digits::block(value);
            assert_eq!(&block[..len], value.to_string().as_bytes());
        }
        for power in 0..20 {
            let value = 10u64.pow(power);
            for value in [value - 1, value, value + 1] {
                let (block, len) = Digits::block(value);
                assert_eq!(&block[..len], value.to_string().as_bytes());
            }
        }
    }
}
