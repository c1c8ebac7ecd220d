//! The path as routing sees it and the endpoint gets it (RFC 3986 6.2.2): unreserved
//! characters decoded, other escapes in upper case, dot segments resolved, repeated
//! slashes merged. Escapes that servers read in different ways are refused: an encoded
//! dot segment always, an encoded `/` or `\` unless the route allows it (where it stays
//! encoded), a NUL or a malformed escape.

use std::borrow::Cow;

use super::Refusal;

/// A path in normal form.
#[derive(Debug, PartialEq, Eq)]
pub struct NormalPath<'a> {
    pub path: Cow<'a, str>,
    /// The path as sent held `%2F` or `%5C` (even in a segment a `..` then removed):
    /// a route must allow them.
    pub encoded_slash: bool,
}

/// Normalises an origin-form path (without the query). Paths that are already normal,
/// nearly all of them, are returned borrowed after one scan.
pub fn normalize(path: &str) -> Result<NormalPath<'_>, Refusal> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        // `*` (OPTIONS) and the like: no segments to read.
        return Ok(NormalPath {
            path: Cow::Borrowed(path),
            encoded_slash: false,
        });
    }
    if is_normal(bytes) {
        return Ok(NormalPath {
            path: Cow::Borrowed(path),
            encoded_slash: false,
        });
    }
    let mut encoded_slash = false;
    let mut segments: Vec<String> = Vec::new();
    let raw_segments: Vec<&[u8]> = bytes[1..].split(|&b| b == b'/').collect();
    let last = raw_segments.len() - 1;
    // Whether the result ends in `/`: a last segment that is empty or a dot segment.
    let mut trailing_slash = false;
    for (index, raw) in raw_segments.into_iter().enumerate() {
        let (segment, encoded_dot) = decode_segment(raw, &mut encoded_slash)?;
        let is_last = index == last;
        match segment.as_str() {
            "." | ".." if encoded_dot => return Err(Refusal::EncodedDotSegment),
            "." => trailing_slash = is_last,
            ".." => {
                segments.pop();
                trailing_slash = is_last;
            }
            "" => trailing_slash = is_last,
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut normal = String::with_capacity(path.len());
    for segment in &segments {
        normal.push('/');
        normal.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        normal.push('/');
    }
    Ok(NormalPath {
        path: Cow::Owned(normal),
        encoded_slash,
    })
}

/// No escapes, no empty segment (but a trailing one) and no dot segment.
fn is_normal(path: &[u8]) -> bool {
    if path.contains(&b'%') {
        return false;
    }
    let mut segments = path[1..].split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || segment == b"." || segment == b".." {
            return false;
        }
    }
    true
}

/// Decodes one segment: unreserved characters from their escapes, other escapes kept
/// in upper case. Returns the segment and whether any `.` in it was encoded.
fn decode_segment(raw: &[u8], encoded_slash: &mut bool) -> Result<(String, bool), Refusal> {
    // Bytes, not chars: a path may hold UTF-8 (hyper's `Uri` takes it), copied as is.
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut encoded_dot = false;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(&high), Some(&low)) = (raw.get(i + 1), raw.get(i + 2)) else {
            return Err(Refusal::BadPercentEncoding);
        };
        let (Some(h), Some(l)) = (hex_value(high), hex_value(low)) else {
            return Err(Refusal::BadPercentEncoding);
        };
        let decoded = h << 4 | l;
        match decoded {
            0 => return Err(Refusal::EncodedNul),
            b'/' | b'\\' => {
                *encoded_slash = true;
                out.extend_from_slice(if decoded == b'/' { b"%2F" } else { b"%5C" });
            }
            b'.' => {
                encoded_dot = true;
                out.push(b'.');
            }
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') => out.push(b),
            _ => {
                out.extend_from_slice(&[b'%', high.to_ascii_uppercase(), low.to_ascii_uppercase()])
            }
        }
        i += 3;
    }
    // Whole UTF-8 sequences were copied and everything added is ASCII: it stays UTF-8.
    let out = String::from_utf8(out).map_err(|_| Refusal::BadPercentEncoding)?;
    Ok((out, encoded_dot))
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(path: &str) -> Result<String, Refusal> {
        normalize(path).map(|n| n.path.into_owned())
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for path in [
            "/",
            "/v1/chat/completions",
            "/a/",
            "/a.b/.c/..d/...",
            "/a-b_c~d",
        ] {
            let normal = normalize(path).unwrap();
            assert!(matches!(normal.path, Cow::Borrowed(_)), "{path}");
            assert_eq!(normal.path, path);
        }
    }

    #[test]
    fn paths_are_brought_to_normal_form() {
        for (path, expected) in [
            ("/%61dmin/secret", "/admin/secret"),
            ("/public/../admin/secret", "/admin/secret"),
            ("/./admin/secret", "/admin/secret"),
            ("/public/./x", "/public/x"),
            ("/public//x", "/public/x"),
            ("//x", "/x"),
            ("/a/%7Euser", "/a/~user"),
            ("/a/%7euser", "/a/~user"),
            ("/a/%c3%a9", "/a/%C3%A9"),
            ("/..", "/"),
            ("/../..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a//", "/a/"),
            ("/a/..b", "/a/..b"),
            ("/a/../é", "/é"),
            ("//résumé/./x", "/résumé/x"),
        ] {
            assert_eq!(normal(path).as_deref(), Ok(expected), "{path}");
        }
    }

    #[test]
    fn ambiguous_escapes_are_refused() {
        for (path, refusal) in [
            ("/public/%2e%2e/admin/secret", Refusal::EncodedDotSegment),
            ("/public/.%2E/x", Refusal::EncodedDotSegment),
            ("/%2e/x", Refusal::EncodedDotSegment),
            ("/a%zz", Refusal::BadPercentEncoding),
            ("/a%4", Refusal::BadPercentEncoding),
            ("/a%00b", Refusal::EncodedNul),
        ] {
            assert_eq!(normal(path), Err(refusal), "{path}");
        }
    }

    proptest::proptest! {
        /// Whatever the path, the result is in normal form: normalising it again
        /// changes nothing, and no dot segment, empty segment or unreserved escape is
        /// left for an endpoint to read differently.
        #[test]
        fn the_normal_form_is_a_fixed_point(
            segments in proptest::collection::vec(
                proptest::string::string_regex(
                    "(\\.|\\.\\.|%2[eEfF]|%6[1-9]|%7[eE]|%[cC]3|[a-z]|-|~|;|é){0,4}"
                ).unwrap(),
                0..6,
            ),
            trailing in proptest::bool::ANY,
        ) {
            let mut path = format!("/{}", segments.join("/"));
            if trailing {
                path.push('/');
            }
            if let Ok(normal) = normalize(&path) {
                let again = normalize(&normal.path).expect("a normal path is accepted");
                proptest::prop_assert_eq!(&again.path, &normal.path);
                let text: &str = &normal.path;
                // Escapes left in place send a path down the slow scan, unchanged.
                proptest::prop_assert!(matches!(again.path, Cow::Borrowed(_)) || text.contains('%'));
                proptest::prop_assert!(text.starts_with('/'));
                proptest::prop_assert!(!text[1..].split('/').rev().skip(1).any(str::is_empty), "{}", text);
                proptest::prop_assert!(!text.split('/').any(|s| s == "." || s == ".."), "{}", text);
                for escape in ["%2e", "%2E", "%61", "%7e", "%7E"] {
                    proptest::prop_assert!(!text.contains(escape), "{}", text);
                }
            }
        }
    }

    /// Found by the `path` fuzz target, and kept: an encoded slash counts where it was
    /// sent, even when a dot segment removes it from the normal form.
    #[test]
    fn an_encoded_slash_in_a_removed_segment_is_flagged() {
        let normal = normalize("/a/%2F/../b").unwrap();
        assert_eq!(normal.path, "/a/b");
        assert!(normal.encoded_slash);
        assert!(!normalize(&normal.path).unwrap().encoded_slash);
    }

    #[test]
    fn encoded_slashes_stay_encoded_and_are_flagged() {
        let normal = normalize("/a%2fb/%5c").unwrap();
        assert_eq!(normal.path, "/a%2Fb/%5C");
        assert!(normal.encoded_slash);
        assert!(!normalize("/a%2e%2eb").unwrap().encoded_slash);
    }
}
