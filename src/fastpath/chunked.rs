//! Finds where a chunked body (RFC 9112 7.1) ends while its bytes pass through
//! unchanged, and which of them are data (for byte counts and the usage scanner).
//! Strict: every line ends in CRLF. Bytes passed on verbatim must frame the same way
//! for every parser after us, or responses could be split differently downstream.

/// Longest chunk size line accepted: 16 hex digits, then extensions.
const MAX_SIZE_DIGITS: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid chunked encoding")]
pub struct BadChunk;

pub struct ChunkedScanner {
    state: State,
    size: u64,
    digits: u32,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner {
            state: State::Size,
            size: 0,
            digits: 0,
        }
    }
}

impl ChunkedScanner {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Between chunks: bytes written after these start a chunk of their own.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Size && self.digits == 0
    }

    /// Reads `input` up to the end of the body: returns how many bytes belong to it and
    /// calls `on_data` with each run of data bytes among them.
    pub fn scan(
        &mut self,
        input: &[u8],
        on_data: &mut impl FnMut(&[u8]),
    ) -> Result<usize, BadChunk> {
        let mut at = 0;
        while at < input.len() && self.state != State::Done {
            if self.state == State::Data {
                let n = (input.len() - at).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                on_data(&input[at..at + n]);
                at += n;
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let byte = input[at];
            at += 1;
            self.state = match (self.state, byte) {
                (State::Size, b) if b.is_ascii_hexdigit() => {
                    if self.digits == MAX_SIZE_DIGITS {
                        return Err(BadChunk);
                    }
                    self.digits += 1;
                    self.size = self.size << 4 | u64::from(hex_value(b));
                    State::Size
                }
                (State::Size, b';' | b' ' | b'\t') if self.digits > 0 => State::Extension,
                (State::Size, b'\r') if self.digits > 0 => State::SizeLf,
                (State::Extension, b'\r') => State::SizeLf,
                (State::Extension, b) if b != b'\n' => State::Extension,
                (State::SizeLf, b'\n') => self.after_size(),
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::Size,
                (State::TrailerStart, b'\r') => State::EndLf,
                (State::Trailer, b'\r') => State::TrailerLf,
                (State::TrailerStart | State::Trailer, b) if b != b'\n' => State::Trailer,
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::EndLf, b'\n') => State::Done,
                _ => return Err(BadChunk),
            };
        }
        Ok(at)
    }

    fn after_size(&mut self) -> State {
        self.digits = 0;
        if self.size == 0 {
            State::TrailerStart
        } else {
            State::Data
        }
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_pieces(input: &[u8], piece: usize) -> (usize, Vec<u8>, bool) {
        let mut scanner = ChunkedScanner::default();
        let mut data = Vec::new();
        let mut used = 0;
        for part in input.chunks(piece) {
            used += scanner
                .scan(part, &mut |d| data.extend_from_slice(d))
                .unwrap();
            if scanner.is_done() {
                break;
            }
        }
        (used, data, scanner.is_done())
    }

    #[test]
    fn finds_the_end_and_the_data_in_any_split() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        for piece in 1..body.len() {
            let (used, data, done) = scan_in_pieces(body, piece);
            assert!(done, "piece {piece}");
            assert_eq!(used, body.len() - 4, "piece {piece}");
            assert_eq!(data, b"hello 0123456789", "piece {piece}");
        }
    }

    #[test]
    fn bad_framing_is_an_error() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"11111111111111111\r\n",
        ] {
            let mut scanner = ChunkedScanner::default();
            assert_eq!(scanner.scan(bad, &mut |_| {}), Err(BadChunk), "{bad:?}");
        }
    }

    #[test]
    fn bare_lf_line_ends_are_refused() {
        for bad in [
            &b"3\nabc\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n5\r\nworld\r\n0\r\n\r\n",
            b"0\r\nx: 1\n\r\n",
            b"0\r\n\n",
            b"1;ext\n",
        ] {
            let mut scanner = ChunkedScanner::default();
            assert_eq!(scanner.scan(bad, &mut |_| {}), Err(BadChunk), "{bad:?}");
        }
    }
}
