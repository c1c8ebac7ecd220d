//! Path normalisation (src/normalize/path.rs), which both engines apply before routing.
//!
//! Properties, for any path:
//! - the normal form is a fixed point: normalising it again gives it back, borrowed
//!   unless it keeps an escape;
//! - it starts with `/`, and has no dot segment, no empty segment but a trailing one,
//!   no escape of an unreserved character and no lower-case escape;
//! - `encoded_slash` is set when `%2F` or `%5C` is left in it, and only when the path
//!   as sent had one (a `..` may remove it from the normal form: still refused); for
//!   a path already normal, exactly when it holds one;
//! - a path returned borrowed is returned unchanged; one not starting with `/` is;
//! - a refusal is one of the path's own (not a Host or Connection one), and a path
//!   with no `%` is never refused.

#![no_main]

use std::borrow::Cow;

use junction::fuzzing::normalize_path;
use junction::normalize::Refusal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let normal = match normalize_path(path) {
        Ok(normal) => normal,
        Err(refusal) => {
            assert!(path.contains('%'), "{path:?} refused: {refusal}");
            assert!(matches!(
                refusal,
                Refusal::BadPercentEncoding
                    | Refusal::EncodedNul
                    | Refusal::EncodedDotSegment
                    | Refusal::EncodedSlash
            ));
            return;
        }
    };
    let text: &str = &normal.path;
    if let Cow::Borrowed(borrowed) = normal.path {
        assert_eq!(borrowed, path);
        assert!(!normal.encoded_slash);
    }
    if !path.starts_with('/') {
        assert!(matches!(normal.path, Cow::Borrowed(_)));
        return;
    }
    assert!(text.starts_with('/'), "{text:?}");
    let segments: Vec<&str> = text[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        assert!(
            *segment != "." && *segment != "..",
            "dot segment in {text:?}"
        );
        assert!(
            !segment.is_empty() || i == segments.len() - 1,
            "empty segment in {text:?}"
        );
    }
    let bytes = text.as_bytes();
    let mut slash = false;
    for (i, _) in text.match_indices('%') {
        let escape = &bytes[i + 1..i + 3];
        assert!(
            escape
                .iter()
                .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')),
            "{text:?}"
        );
        let byte = u8::from_str_radix(std::str::from_utf8(escape).unwrap(), 16).unwrap();
        assert!(
            !(byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')),
            "unreserved escape in {text:?}"
        );
        assert_ne!(byte, 0);
        slash |= matches!(byte, b'/' | b'\\');
    }
    if slash {
        assert!(normal.encoded_slash, "{text:?}");
    }
    if normal.encoded_slash {
        let sent = path.to_ascii_uppercase();
        assert!(sent.contains("%2F") || sent.contains("%5C"), "{path:?}");
    }

    let again = normalize_path(text).expect("a normal path is accepted");
    assert_eq!(again.path, text, "not a fixed point");
    assert_eq!(again.encoded_slash, slash, "{text:?}");
    assert!(matches!(again.path, Cow::Borrowed(_)) || text.contains('%'));
});
