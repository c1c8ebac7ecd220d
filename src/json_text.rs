//! JSON string text, written and scanned quickly: which bytes need an escape, runs that
//! need none found 32 bytes at a time, and a string encoder. Shared by the body
//! maskers (prompts are long plain runs) and the access log (a line per request).

/// The bytes a JSON string cannot hold as they are: `"`, `\\` and the control
/// characters. A table rather than three comparisons keeps the scanning loops tight.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The length of the leading run of `bytes` that a JSON string holds as it is. Prompts
/// are long plain runs between escapes (a `\n` every line), so each call must both
/// step fast and find its end fast: 32 bytes at a time, each block flagged byte by byte
/// in vector registers and the first flag read from the flags as words, then the last
/// 8 to 31 bytes as two overlapping blocks.
pub fn plain_run(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(block) = bytes.get(at..).and_then(|rest| rest.first_chunk::<32>()) {
        if let Some(found) = first_escape(block) {
            return at + found;
        }
        at += 32;
    }
    at + short_plain_run(&bytes[at..])
}

/// [`plain_run`] of fewer than 32 bytes: a head and a tail block that overlap cover
/// them, so no byte-by-byte loop runs unless fewer than eight are left.
fn short_plain_run(rest: &[u8]) -> usize {
    let len = rest.len();
    if let (Some(head), Some(tail)) = (rest.first_chunk::<16>(), rest.last_chunk::<16>()) {
        return first_escape(head)
            .or_else(|| first_escape(tail).map(|at| len - 16 + at))
            .unwrap_or(len);
    }
    if let (Some(head), Some(tail)) = (rest.first_chunk::<8>(), rest.last_chunk::<8>()) {
        return first_escape(head)
            .or_else(|| first_escape(tail).map(|at| len - 8 + at))
            .unwrap_or(len);
    }
    rest.iter()
        .position(|&byte| NEEDS_ESCAPE[usize::from(byte)])
        .unwrap_or(len)
}

/// The offset of the first byte of `block` that needs an escape. Every byte is flagged
/// with plain compares and no early exit, which the compiler turns into vector compares
/// (no `unsafe`); the flags are then read eight at a time as words, where the lowest set
/// byte of the first non-zero word is the answer.
#[inline(always)]
fn first_escape<const N: usize>(block: &[u8; N]) -> Option<usize> {
    let mut flags = [0u8; N];
    for (flag, &byte) in flags.iter_mut().zip(block) {
        *flag = u8::from(byte < 0x20) | u8::from(byte == b'"') | u8::from(byte == b'\\');
    }
    flags
        .chunks_exact(8)
        .enumerate()
        .find_map(|(word_at, word)| {
            let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
            (word != 0).then(|| word_at * 8 + word.trailing_zeros() as usize / 8)
        })
}

/// Whether any byte of `block` needs an escape: every byte tested, no early exit, so
/// that the compiler vectorises it.
fn block_needs_escape<const N: usize>(block: &[u8; N]) -> bool {
    block.iter().fold(0u8, |any, &byte| {
        any | u8::from(byte < 0x20) | u8::from(byte == b'"') | u8::from(byte == b'\\')
    }) != 0
}

/// Appends `text` as a JSON string, quotes included: `"` and `\` escaped, control
/// characters as `\n`-style or `\u00XX` escapes, everything else as UTF-8. Runs of
/// bytes that need no escape are copied whole.
pub fn encode_string(text: &str, out: &mut Vec<u8>) {
    if encode_short_plain(text.as_bytes(), out) {
        return;
    }
    out.reserve(text.len() + 2);
    out.push(b'"');
    encode_str(text, out);
    out.push(b'"');
}

/// [`encode_string`] without the quotes: a piece of a string's text.
pub fn encode_str(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let mut at = 0;
    loop {
        let run = plain_run(&bytes[at..]);
        out.extend_from_slice(&bytes[at..at + run]);
        at += run;
        let Some(&byte) = bytes.get(at) else { break };
        at += 1;
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
        }
    }
}

/// [`encode_string`] for a string of up to [`SHORT`] bytes that needs no escape (most of
/// an access-log line's: names, ids, a path), false, with nothing written, for any other.
/// Two blocks of fixed size that overlap cover the string (its first and its last 16,
/// 8 or 4 bytes): each is tested whole and copied whole, so no copy of unknown length
/// (a `memcpy` call) is made, where the general loop's run search, byte-by-byte tail and
/// second copy cost twice as much on such strings.
fn encode_short_plain(bytes: &[u8], out: &mut Vec<u8>) -> bool {
    match bytes.len() {
        16..=SHORT => put_covered::<16>(bytes, out),
        8..16 => put_covered::<8>(bytes, out),
        4..8 => put_covered::<4>(bytes, out),
        len @ 0..4 => {
            let mut block = [b' '; 4];
            for (at, &byte) in bytes.iter().take(3).enumerate() {
                block[at] = byte;
            }
            if block_needs_escape(&block) {
                return false;
            }
            let start = out.len();
            out.reserve(6);
            out.push(b'"');
            out.extend_from_slice(&block);
            out.truncate(start + 1 + len);
            out.push(b'"');
            true
        }
        _ => false,
    }
}

/// `bytes` (of `N` to `2 * N` bytes) quoted, from its first and its last `N` bytes, when
/// neither block needs an escape.
fn put_covered<const N: usize>(bytes: &[u8], out: &mut Vec<u8>) -> bool {
    let (Some(head), Some(tail)) = (bytes.first_chunk::<N>(), bytes.last_chunk::<N>()) else {
        return false;
    };
    if block_needs_escape(head) | block_needs_escape(tail) {
        return false;
    }
    let start = out.len();
    out.reserve(2 * N + 2);
    out.push(b'"');
    out.extend_from_slice(head);
    // The tail goes where it belongs, over the head's last bytes when they overlap.
    out.truncate(start + 1 + bytes.len() - N);
    out.extend_from_slice(tail);
    out.push(b'"');
    true
}

/// [`encode_string`] into `room` (at least [`SHORT_QUOTED`] bytes, of which the string
/// takes the first ones) for a string of up to [`SHORT`] bytes that needs no escape:
/// the bytes written, or `None`, for any other string, with `room` to be ignored.
/// As [`encode_short_plain`], two overlapping blocks of fixed size, each tested and
/// copied whole; here into a block the caller keeps on its stack.
pub fn encode_short(bytes: &[u8], room: &mut [u8]) -> Option<usize> {
    let room = room.first_chunk_mut::<SHORT_QUOTED>()?;
    let len = bytes.len();
    match len {
        16..=SHORT => cover::<16>(bytes, room)?,
        8..16 => cover::<8>(bytes, room)?,
        4..8 => cover::<4>(bytes, room)?,
        0..4 => {
            let mut block = [b' '; 4];
            for (at, &byte) in bytes.iter().take(3).enumerate() {
                block[at] = byte;
            }
            if block_needs_escape(&block) {
                return None;
            }
            room[0] = b'"';
            room[1..5].copy_from_slice(&block);
        }
        _ => return None,
    }
    room[1 + len.min(SHORT)] = b'"';
    Some(len + 2)
}

/// `bytes` (of `N` to `2 * N` bytes, at most [`SHORT`]) after a quote in `room`, from
/// its first and its last `N` bytes, when neither needs an escape.
fn cover<const N: usize>(bytes: &[u8], room: &mut [u8; SHORT_QUOTED]) -> Option<()> {
    let (head, tail) = (bytes.first_chunk::<N>()?, bytes.last_chunk::<N>()?);
    if block_needs_escape(head) | block_needs_escape(tail) {
        return None;
    }
    let len = bytes.len().min(SHORT);
    room[0] = b'"';
    room[1..1 + N].copy_from_slice(head);
    // The tail goes where it belongs, over the head's last bytes when they overlap.
    room[1 + len - N..1 + len].copy_from_slice(tail);
    Some(())
}

/// A short string with its quotes.
pub const SHORT_QUOTED: usize = SHORT + 2;

/// The longest string [`encode_short_plain`] takes: one block.
pub const SHORT: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_encode_and_decode_back() {
        let mut out = Vec::new();
        encode_string("a\"\\\u{1}\n😀\u{8}\u{c}\u{1f}", &mut out);
        assert_eq!(out, r#""a\"\\\u0001\n😀\b\f\u001f""#.as_bytes());
        let round: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(round, "a\"\\\u{1}\n😀\u{8}\u{c}\u{1f}");
    }

    /// One byte to escape anywhere in a long plain text: the block test lets the word
    /// test find it, and the run ends there.
    #[test]
    fn plain_runs_end_at_an_escape_anywhere_in_a_block() {
        let plain = b"a plain line of prose, with no byte to escape at all: ".repeat(3);
        assert_eq!(plain_run(&plain), plain.len());
        for b in 0..=255u8 {
            for at in 0..plain.len() {
                let mut text = plain.clone();
                text[at] = b;
                let expected = if NEEDS_ESCAPE[usize::from(b)] {
                    at
                } else {
                    text.len()
                };
                assert_eq!(plain_run(&text), expected, "byte {b:#x} at {at}");
            }
        }
    }

    /// Every length up to three blocks, plain or with one byte to escape at any place:
    /// the whole blocks, the overlapping head and tail blocks of the last 8 to 31 bytes
    /// and the byte-by-byte end each find it where it is.
    #[test]
    fn plain_runs_end_at_an_escape_at_every_length_and_place() {
        for len in 0..=96 {
            let plain = vec![b'x'; len];
            assert_eq!(plain_run(&plain), len, "plain, length {len}");
            for at in 0..len {
                for byte in [b'"', b'\\', b'\n', 0x1f] {
                    let mut text = plain.clone();
                    text[at] = byte;
                    // A second one after it must not be what is found.
                    if at + 3 < len {
                        text[at + 3] = b'"';
                    }
                    assert_eq!(plain_run(&text), at, "length {len}, {byte:#x} at {at}");
                }
            }
        }
    }

    /// Strings of every length around the one-block path's, plain or with one
    /// character needing an escape (or more than one byte) at the start, middle or end.
    fn around_the_block(specials: [char; 4]) -> Vec<String> {
        let mut texts = Vec::new();
        for len in 0..=SHORT + 2 {
            for special in std::iter::once(None).chain(specials.map(Some)) {
                for at in [0, len / 2, len.saturating_sub(1)] {
                    let mut text: Vec<char> = "x".repeat(len).chars().collect();
                    if let (Some(c), true) = (special, len > 0) {
                        text[at] = c;
                    }
                    texts.push(text.into_iter().collect());
                }
            }
        }
        texts
    }

    /// Short strings (the one-block path) and longer ones encode alike, plain or not,
    /// at every length around the block's.
    #[test]
    fn short_and_long_strings_encode_alike() {
        for text in around_the_block(['"', '\\', '\n', 'é']) {
            let mut out = b"before".to_vec();
            encode_string(&text, &mut out);
            let expected = format!("before{}", serde_json::to_string(&text).unwrap());
            assert_eq!(out, expected.as_bytes(), "{text:?}");
        }
    }

    /// The stack-block encoder writes what the vector one does, or declines.
    #[test]
    fn short_encoding_into_a_block_matches() {
        for text in around_the_block(['"', '\\', '\u{1f}', 'é']) {
            let mut room = [0u8; SHORT_QUOTED + 3];
            let expected = serde_json::to_string(&text).unwrap();
            match encode_short(text.as_bytes(), &mut room) {
                Some(n) => assert_eq!(&room[..n], expected.as_bytes(), "{text:?}"),
                None => assert!(
                    text.len() > SHORT || expected.len() != text.len() + 2,
                    "declined {text:?}"
                ),
            }
        }
        assert_eq!(encode_short(b"abc", &mut [0u8; 10]), None, "no room");
    }

    proptest::proptest! {
        /// The eight-bytes-at-a-time run finder stops where a byte-by-byte one would,
        /// whatever the bytes: ASCII, control characters, quotes, backslashes, UTF-8.
        #[test]
        fn plain_runs_end_at_the_first_byte_needing_an_escape(
            bytes in proptest::collection::vec(
                // Mostly plain bytes, so that whole plain words are met too.
                proptest::prop_oneof![
                    1 => proptest::strategy::Just(b'"'),
                    1 => proptest::strategy::Just(b'\\'),
                    1 => 0u8..0x20,
                    20 => 0x20u8..0x80,
                    6 => 0x80u8..=0xff,
                ],
                0..80,
            ),
            start in 0usize..80,
        ) {
            let start = start.min(bytes.len());
            let naive = bytes[start..]
                .iter()
                .position(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
                .unwrap_or(bytes.len() - start);
            proptest::prop_assert_eq!(plain_run(&bytes[start..]), naive);
        }
    }
}
