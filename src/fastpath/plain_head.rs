//! Request and response heads in the plain form nearly every client and endpoint sends
//! (`GET /path HTTP/1.1`, `HTTP/1.x NNN reason`, `name: value` lines, CRLF endings),
//! read in one pass: httparse's per-byte dispatch was most of the fast path's head
//! work. Anything else is left to httparse, whose answer then stands, so these readers
//! only ever agree with it.

use smallvec::SmallVec;

/// A head's lines as names and values (trailing blanks cut), inline: a plain head
/// has at most [`PLAIN_LINES`].
pub type Lines<'b> = SmallVec<[(&'b [u8], &'b [u8]); PLAIN_LINES]>;

/// The lines a plain head may have: a head with more is httparse's.
pub const PLAIN_LINES: usize = 32;

/// A response head read by [`read_response`]; its lines are in the `Lines` given to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainHead {
    /// Bytes of the head, the empty line included.
    pub len: usize,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version: u8,
    pub status: u16,
    pub reason: (usize, usize),
}

/// `tchar` (RFC 9110 5.6.2): the bytes of a header name.
const TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    table
};

/// The response head at the start of `buf` when it is complete and plain: a status line of
/// `HTTP/1.1` or `HTTP/1.0`, one space, three digits, one space and a reason of
/// visible ASCII, spaces and tabs; lines of a token name, `:`, optional blanks and a
/// value without control bytes (tabs aside); CRLF after every line; at most
/// [`PLAIN_LINES`] lines. `None` for anything else, also for a head not all here yet:
/// httparse reads those (obs-text, bare LFs, obs-folds, partial heads).
pub fn read_response<'b>(buf: &'b [u8], lines: &mut Lines<'b>) -> Option<PlainHead> {
    lines.clear();
    let start = buf.first_chunk::<13>()?;
    let version = match &start[..9] {
        b"HTTP/1.1 " => 1,
        b"HTTP/1.0 " => 0,
        _ => return None,
    };
    let [hundreds, tens, ones, b' '] = start[9..13] else {
        return None;
    };
    if !(hundreds.is_ascii_digit() && tens.is_ascii_digit() && ones.is_ascii_digit()) {
        return None;
    }
    let status =
        u16::from(hundreds - b'0') * 100 + u16::from(tens - b'0') * 10 + u16::from(ones - b'0');
    let mut at = 13;
    while buf
        .get(at)
        .is_some_and(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        at += 1;
    }
    let reason = (13, at);
    let len = read_lines(buf, after_crlf(buf, at)?, lines)?;
    Some(PlainHead {
        len,
        version,
        status,
        reason,
    })
}

/// A request head read by [`read_request`]; its lines are in the `Lines` given to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainRequest {
    /// Bytes of the head, the empty line included.
    pub len: usize,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version: u8,
    pub method: (usize, usize),
    pub target: (usize, usize),
}

/// The request head at the start of `buf` when it is complete and plain: a token
/// method, one space, a target of visible ASCII, one space, `HTTP/1.1` or `HTTP/1.0`,
/// CRLF, then lines as [`read_response`] takes them. `None` for anything else (empty lines
/// before the request line, obs-text in the target, bare LFs, partial heads): httparse
/// reads those.
pub fn read_request<'b>(buf: &'b [u8], lines: &mut Lines<'b>) -> Option<PlainRequest> {
    lines.clear();
    let mut at = 0;
    while TOKEN[usize::from(*buf.get(at)?)] {
        at += 1;
    }
    if at == 0 || buf[at] != b' ' {
        return None;
    }
    let method = (0, at);
    at += 1;
    let target_start = at;
    while (0x21..=0x7e).contains(buf.get(at)?) {
        at += 1;
    }
    if at == target_start || buf[at] != b' ' {
        return None;
    }
    let target = (target_start, at);
    let version = match buf.get(at + 1..at + 11)? {
        b"HTTP/1.1\r\n" => 1,
        b"HTTP/1.0\r\n" => 0,
        _ => return None,
    };
    let len = read_lines(buf, at + 11, lines)?;
    Some(PlainRequest {
        len,
        version,
        method,
        target,
    })
}

/// The header lines from `at` to the empty line, into `lines`; the offset past the
/// empty line.
fn read_lines<'b>(buf: &'b [u8], mut at: usize, lines: &mut Lines<'b>) -> Option<usize> {
    loop {
        if *buf.get(at)? == b'\r' {
            return after_crlf(buf, at);
        }
        let name_start = at;
        while TOKEN[usize::from(*buf.get(at)?)] {
            at += 1;
        }
        if at == name_start || buf[at] != b':' || lines.len() == PLAIN_LINES {
            return None;
        }
        let name_end = at;
        at += 1;
        while matches!(*buf.get(at)?, b' ' | b'\t') {
            at += 1;
        }
        let value = &buf[at..];
        let value_len = value_end(value)?;
        // The value holds no CR, LF or form feed (`value_end`): the ASCII white space
        // cut here is its trailing spaces and tabs.
        lines.push((
            &buf[name_start..name_end],
            value[..value_len].trim_ascii_end(),
        ));
        at = after_crlf(buf, at + value_len)?;
    }
}

/// Past the CRLF at `at`.
fn after_crlf(buf: &[u8], at: usize) -> Option<usize> {
    (buf.get(at..at + 2)? == b"\r\n").then_some(at + 2)
}

/// Where `value` ends: the offset of its CR. `None` at a byte a value may not hold (a
/// bare LF among them), or at the end of the bytes. Eight bytes at a time.
#[inline(always)]
fn value_end(value: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        if let Some(word) = value.get(at..).and_then(<[u8]>::first_chunk::<8>) {
            let flags = controls(u64::from_le_bytes(*word));
            if flags == 0 {
                at += 8;
                continue;
            }
            at += flags.trailing_zeros() as usize / 8;
        }
        match *value.get(at)? {
            b'\r' => return Some(at),
            b'\t' => at += 1,
            b if b < 0x20 || b == 0x7f => return None,
            // Not flagged after all (only the first flag of a word is exact).
            _ => at += 1,
        }
    }
}

/// The high bit of each byte of `word` (little-endian) below `0x20` or `0x7f`. The
/// lowest flagged byte is always one: a borrow only starts at a flagged byte, so only
/// bytes above the first may be flagged wrongly, and none is missed before it.
fn controls(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let del = word ^ (ONES * 0x7f);
    let del = del.wrapping_sub(ONES) & !del & HIGH;
    below_space | del
}

/// The reader's oracle: what httparse reads of the same bytes, in this reader's terms.
/// The unit tests below and the head fuzz targets hold the reader to it.
#[cfg(any(test, feature = "fuzzing"))]
pub mod oracle {
    use super::{Lines, PlainHead, PlainRequest, read_request, read_response};

    /// A head's lines as read: names and values.
    pub type NamesAndValues = Vec<(Vec<u8>, Vec<u8>)>;

    /// Where `part`, a slice of `buf`, starts and ends in it.
    fn offsets(buf: &[u8], part: &str) -> (usize, usize) {
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        (start, start + part.len())
    }

    fn owned(
        lines: impl IntoIterator<Item = (impl AsRef<[u8]>, impl AsRef<[u8]>)>,
    ) -> NamesAndValues {
        lines
            .into_iter()
            .map(|(name, value)| (name.as_ref().to_vec(), value.as_ref().to_vec()))
            .collect()
    }

    /// httparse's reading of a response head, when it finds a complete one.
    pub fn httparse_response(buf: &[u8]) -> Option<(PlainHead, NamesAndValues)> {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = response.parse(buf) else {
            return None;
        };
        let head = PlainHead {
            len,
            version: response.version?,
            status: response.code?,
            reason: offsets(buf, response.reason?),
        };
        Some((
            head,
            owned(response.headers.iter().map(|h| (h.name, h.value))),
        ))
    }

    /// httparse's reading of a request head, when it finds a complete one.
    pub fn httparse_request(buf: &[u8]) -> Option<(PlainRequest, NamesAndValues)> {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut request = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = request.parse(buf) else {
            return None;
        };
        let head = PlainRequest {
            len,
            version: request.version?,
            method: offsets(buf, request.method?),
            target: offsets(buf, request.path?),
        };
        Some((
            head,
            owned(request.headers.iter().map(|h| (h.name, h.value))),
        ))
    }

    /// The plain reader's reading of a response head.
    pub fn plain_response(buf: &[u8]) -> Option<(PlainHead, NamesAndValues)> {
        let mut lines = Lines::new();
        let head = read_response(buf, &mut lines)?;
        Some((head, owned(lines)))
    }

    /// The plain reader's reading of a request head.
    pub fn plain_request(buf: &[u8]) -> Option<(PlainRequest, NamesAndValues)> {
        let mut lines = Lines::new();
        let head = read_request(buf, &mut lines)?;
        Some((head, owned(lines)))
    }

    /// Panics unless a response head the plain reader takes is read the same by httparse.
    pub fn assert_response_agrees(buf: &[u8]) {
        if let Some(plain) = plain_response(buf) {
            let text = String::from_utf8_lossy(buf);
            assert_eq!(Some(plain), httparse_response(buf), "{text:?}");
        }
    }

    /// Panics unless a request head the plain reader takes is read the same by httparse.
    pub fn assert_request_agrees(buf: &[u8]) {
        if let Some(plain) = plain_request(buf) {
            let text = String::from_utf8_lossy(buf);
            assert_eq!(Some(plain), httparse_request(buf), "{text:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::oracle::{assert_request_agrees, assert_response_agrees, plain_response};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_endpoints_usual_head_is_read_as_httparse_reads_it() {
        let head = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 05 Dec 2026 12:00:00 GMT\r\nContent-Type: application/octet-stream\r\nContent-Length: 32\r\nConnection: keep-alive\r\nX-Empty:\r\nX-Blanks: \t a b \t \r\n\r\nbody";
        let (plain, lines) = plain_response(head).expect("plain");
        assert_eq!(lines.len(), 7);
        assert_eq!(plain.status, 200);
        assert_eq!(&head[plain.reason.0..plain.reason.1], b"OK");
        assert_eq!(lines[4], (b"Connection".to_vec(), b"keep-alive".to_vec()));
        assert_eq!(lines[5], (b"X-Empty".to_vec(), b"".to_vec()));
        assert_eq!(lines[6], (b"X-Blanks".to_vec(), b"a b".to_vec()));
        assert_response_agrees(head);
        let (_, lines) = plain_response(&head[..head.len() - 4]).unwrap();
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn anything_unusual_is_left_to_httparse() {
        for head in [
            &b"HTTP/1.1 200 OK\r\nA: b\r\n"[..],      // not all here
            b"HTTP/1.1 200 OK\nA: b\r\n\r\n",         // bare LF
            b"HTTP/1.1 200 OK\r\nA: b\n\r\n",         // bare LF after a value
            b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", // obs-fold
            b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n",      // blank before the colon
            b"HTTP/1.1 200 OK\r\n: b\r\n\r\n",        // no name
            b"HTTP/1.1 200 OK\r\nA: b\x00c\r\n\r\n",  // NUL
            b"HTTP/1.1 200 OK\r\nA: b\x7fc\r\n\r\n",  // DEL
            b"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n",    // CR alone
            b"HTTP/1.1 200 \xc3\xa9\r\n\r\n",         // obs-text reason
            b"HTTP/1.1 200\r\n\r\n",                  // no reason, no space
            b"HTTP/1.1  200 OK\r\n\r\n",              // two spaces
            b"HTTP/2.0 200 OK\r\n\r\n",               // another version
            b"HTTP/1.1 20x OK\r\n\r\n",               // not a status
        ] {
            assert!(read_response(head, &mut Lines::new()).is_none(), "{head:?}");
        }
        let many: String = (0..=PLAIN_LINES).map(|i| format!("h{i}: v\r\n")).collect();
        let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert!(read_response(many.as_bytes(), &mut Lines::new()).is_none());
    }

    #[test]
    fn values_end_at_their_cr_wherever_it_falls_in_a_word() {
        for len in 0..40 {
            for tab in [None, Some(len / 2)] {
                let mut value: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                if let Some(at) = tab.filter(|&at| at < len) {
                    value[at] = b'\t';
                }
                let head = [&b"HTTP/1.1 204 No Content\r\nx: "[..], &value, b"\r\n\r\n"].concat();
                let (_, lines) = plain_response(&head).expect("plain");
                let expected = value.trim_ascii_end().to_vec();
                let expected = expected.trim_ascii_start().to_vec();
                assert_eq!(lines[0].1, expected, "{len} {tab:?}");
                assert_response_agrees(&head);
            }
        }
    }

    #[test]
    fn control_flags_find_the_first_control_byte() {
        for at in 0..8 {
            for control in (0u8..0x20).chain([0x7f]) {
                for filler in [b'a', b' ', 0x80, 0xff, 0x7e, 0x21] {
                    let mut word = [filler; 8];
                    word[at] = control;
                    let flags = controls(u64::from_le_bytes(word));
                    assert_eq!(flags.trailing_zeros() as usize / 8, at, "{word:?}");
                }
            }
        }
        for byte in (0x20u8..0x7f).chain(0x80..=0xff) {
            assert_eq!(controls(u64::from_le_bytes([byte; 8])), 0, "{byte:#x}");
        }
    }

    /// Header lines, plain and not, then the head's end.
    fn lines_text() -> impl Strategy<Value = Vec<u8>> {
        let line = (
            prop::sample::select(vec![
                "Content-Length",
                "content-type",
                "X-A",
                "Set-Cookie",
                "a!#$%&'*+-.^_`|~9",
                "Bad Name",
                "",
                " folded",
            ]),
            prop::sample::select(vec![":", " :", ": ", ":\t", ":  "]),
            prop::collection::vec(
                prop::sample::select(vec![
                    b'a', b' ', b'\t', b'\r', b'\n', 0, 0x7f, 0x80, 0xe9, b':', b'"', b'~',
                ]),
                0..20,
            ),
            prop::sample::select(vec!["\r\n", "\n", "\r", ""]),
        )
            .prop_map(|(name, colon, value, end)| {
                [name.as_bytes(), colon.as_bytes(), &value, end.as_bytes()].concat()
            });
        (
            prop::collection::vec(line, 0..6),
            prop::sample::select(vec!["\r\n", "\n", "", "\r\nbody"]),
        )
            .prop_map(|(lines, end)| [lines.concat(), end.as_bytes().to_vec()].concat())
    }

    fn head_text() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::sample::select(vec![
                "HTTP/1.1 200 OK\r\n",
                "HTTP/1.0 404 Not Found\r\n",
                "HTTP/1.1 101 \r\n",
                "HTTP/1.1 200\r\n",
                "HTTP/1.1 204 No\tContent \r\n",
                "HTTP/1.1 999 \u{e9}\r\n",
            ]),
            lines_text(),
        )
            .prop_map(|(status, rest)| [status.as_bytes(), &rest].concat())
    }

    fn request_text() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::sample::select(vec![
                "GET / HTTP/1.1\r\n",
                "POST /v1/chat/completions?x=1 HTTP/1.1\r\n",
                "get /a HTTP/1.0\r\n",
                "\r\nGET / HTTP/1.1\r\n",
                "GET  / HTTP/1.1\r\n",
                "GET / HTTP/1.1\n",
                "GET /\u{e9} HTTP/1.1\r\n",
                "G(T / HTTP/1.1\r\n",
                "GET(/ HTTP/1.1\r\n",
                "GET\t/ HTTP/1.1\r\n",
                "GET /(x)HTTP/1.1\r\n",
                "GET / HTTP/2.0\r\n",
                "GET /a\tb HTTP/1.1\r\n",
            ]),
            lines_text(),
        )
            .prop_map(|(line, rest)| [line.as_bytes(), &rest].concat())
    }

    #[test]
    fn a_clients_usual_request_is_read_as_httparse_reads_it() {
        let head = b"POST /v1/chat/completions?stream=1 HTTP/1.1\r\nHost: api.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\nUser-Agent: wrk \r\n\r\n{}";
        let mut lines = Lines::new();
        let request = read_request(head, &mut lines).expect("plain");
        assert_eq!(&head[request.method.0..request.method.1], b"POST");
        assert_eq!(
            &head[request.target.0..request.target.1],
            b"/v1/chat/completions?stream=1"
        );
        assert_eq!(request.len, head.len() - 2);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3], (&b"User-Agent"[..], &b"wrk"[..]));
        assert_request_agrees(head);
        for odd in [
            &b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            b"GET(/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(read_request(odd, &mut Lines::new()).is_none(), "{odd:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn requests_read_plainly_httparse_reads_the_same(head in request_text()) {
            assert_request_agrees(&head);
            for cut in [head.len() / 2, head.len().saturating_sub(1)] {
                assert_request_agrees(&head[..cut]);
            }
        }

        #[test]
        fn what_is_read_plainly_httparse_reads_the_same(head in head_text()) {
            assert_response_agrees(&head);
            for cut in [head.len() / 2, head.len().saturating_sub(1)] {
                assert_response_agrees(&head[..cut]);
            }
        }

        #[test]
        fn any_bytes_read_plainly_are_read_the_same(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let head = [&b"HTTP/1.1 200 OK\r\n"[..], &bytes].concat();
            assert_response_agrees(&head);
        }
    }
}
