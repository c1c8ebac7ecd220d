//! The fast path's chunked-body scanner (src/fastpath/chunked.rs), which finds where a
//! relayed chunked body ends while its bytes pass through unchanged.
//!
//! Properties:
//! - it never claims more bytes than it was given, and the data it reports is part of
//!   what it claimed;
//! - it agrees with a reference reader of RFC 9112 7.1, written here separately, on
//!   where the body ends, which bytes are data, and whether the framing is bad;
//! - fed the same bytes in pieces (split where the input says), it ends in the same
//!   place with the same data: a body split across reads frames the same.

#![no_main]

use junction::fuzzing::ChunkedScanner;
use libfuzzer_sys::fuzz_target;

/// What a whole input holds, by the reference reader.
#[derive(Debug, PartialEq, Eq)]
enum Reference {
    /// The body ends after this many bytes, with this data.
    Done(usize, Vec<u8>),
    /// Valid so far; the body goes on past the input.
    Incomplete(Vec<u8>),
    Bad,
}

/// RFC 9112 7.1 as Junction takes it: 1 to 16 hex digits, extensions starting with
/// `;`, space or tab and running to the line end, every line ending in CRLF, trailer
/// lines of at least one byte.
fn reference(input: &[u8]) -> Reference {
    let mut data = Vec::new();
    let mut at = 0;
    // `Err(true)`: the input ran out; `Err(false)`: bad framing.
    let mut read = || -> Result<usize, bool> {
        loop {
            let digits = input[at..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            if digits > 16 {
                return Err(false);
            }
            let size_text = &input[at..at + digits];
            at += digits;
            if at == input.len() {
                return Err(true);
            }
            if digits == 0 {
                return Err(false);
            }
            let size = u64::from_str_radix(std::str::from_utf8(size_text).unwrap(), 16).unwrap();
            if matches!(input[at], b';' | b' ' | b'\t') {
                at += input[at..]
                    .iter()
                    .take_while(|&&b| b != b'\r' && b != b'\n')
                    .count();
            }
            crlf(input, &mut at)?;
            if size == 0 {
                break;
            }
            let available = (input.len() - at) as u64;
            if available < size {
                data.extend_from_slice(&input[at..]);
                return Err(true);
            }
            data.extend_from_slice(&input[at..at + size as usize]);
            at += size as usize;
            crlf(input, &mut at)?;
        }
        // Trailer lines, then the blank line.
        loop {
            let line = input[at..]
                .iter()
                .take_while(|&&b| b != b'\r' && b != b'\n')
                .count();
            at += line;
            crlf(input, &mut at)?;
            if line == 0 {
                return Ok(at);
            }
        }
    };
    match read() {
        Ok(end) => Reference::Done(end, data),
        Err(true) => Reference::Incomplete(data),
        Err(false) => Reference::Bad,
    }
}

fn crlf(input: &[u8], at: &mut usize) -> Result<(), bool> {
    for expected in [b'\r', b'\n'] {
        match input.get(*at) {
            None => return Err(true),
            Some(&b) if b == expected => *at += 1,
            Some(_) => return Err(false),
        }
    }
    Ok(())
}

/// The scanner's reading of `input` fed in `pieces`.
fn scan(input: &[u8], pieces: &[usize]) -> Reference {
    let mut scanner = ChunkedScanner::default();
    let mut data = Vec::new();
    let mut used = 0;
    let mut rest = input;
    let mut sizes = pieces.iter().copied().chain(std::iter::repeat(usize::MAX));
    while !rest.is_empty() {
        let piece = sizes.next().unwrap().clamp(1, rest.len());
        let (part, after) = rest.split_at(piece);
        let mut seen = 0;
        let result = scanner.scan(part, &mut |run: &[u8]| {
            seen += run.len();
            data.extend_from_slice(run);
        });
        let Ok(n) = result else {
            return Reference::Bad;
        };
        assert!(n <= part.len(), "claimed {n} bytes of {}", part.len());
        assert!(seen <= n, "{seen} data bytes in {n} bytes claimed");
        used += n;
        if scanner.is_done() {
            return Reference::Done(used, data);
        }
        assert_eq!(n, part.len(), "stopped early without an end or an error");
        rest = after;
    }
    Reference::Incomplete(data)
}

fuzz_target!(|input: &[u8]| {
    let expected = reference(input);
    let whole = scan(input, &[]);
    assert_eq!(whole, expected, "whole input");
    if let Reference::Done(end, data) = &whole {
        assert!(*end <= input.len());
        assert!(data.len() <= *end);
    }
    // Split where the input's own bytes say: a few short pieces, then the rest.
    let pieces: Vec<usize> = input
        .iter()
        .take(8)
        .map(|b| usize::from(b % 7) + 1)
        .collect();
    assert_eq!(scan(input, &pieces), expected, "in pieces {pieces:?}");
    assert_eq!(scan(input, &[1; 64]), expected, "byte by byte");
});
