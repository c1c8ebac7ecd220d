//! Form bodies a client sends: the parts of a `multipart/form-data` body, found by their
//! boundary and typed by their own headers, and the fields of an
//! `application/x-www-form-urlencoded` body, decoded and encoded again. Framing in doubt
//! is refused, never guessed at: what is masked is what the server will read.

use std::ops::Range;

use super::error::BodyError;
use super::shape::{self, BodyShape, Boundary};

/// The most header bytes one part may have: a part's headers are a few short lines.
const MAX_PART_HEADERS: usize = 16 << 10;

/// A stretch of a form body that holds data to read, and how to read it. The bytes
/// between pieces (delimiters, part headers) are framing, copied as they are.
#[derive(Debug, PartialEq, Eq)]
pub struct Piece {
    pub range: Range<usize>,
    pub shape: BodyShape,
    /// A form field's name (`Content-Disposition: form-data; name="password"`), which
    /// may say its value is a secret; `None` for a file.
    pub field: Option<Vec<u8>>,
    pub written: Written,
}

/// How a piece's bytes are written, so that a masked text is written back the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// A part's content, the preamble or the epilogue: bytes as they are.
    AsIs,
    /// A header parameter's quoted string, between its quotes.
    Quoted,
    /// A header parameter's bare token (a masked one is written quoted).
    Token,
    /// A header parameter's RFC 8187 value (`filename*=UTF-8''...`).
    Extended,
}

fn piece(range: Range<usize>, shape: BodyShape, field: Option<Vec<u8>>) -> Piece {
    Piece {
        range,
        shape,
        field,
        written: Written::AsIs,
    }
}

/// The pieces of a `multipart/form-data` body (RFC 7578, framed as RFC 2046 says): the
/// preamble and the epilogue as text (clients send none, and what a lenient server
/// might read there is read here too), and each part's content typed by
/// [`shape::part_shape`]. Errors name a byte offset: a delimiter not followed by a line
/// end or `--`, a part's headers not ended by an empty line, a folded or bare-LF header
/// line, a type given twice, a missing close delimiter.
pub fn multipart_pieces(body: &[u8], boundary: Boundary) -> Result<Vec<Piece>, BodyError> {
    let mut delimiter = Vec::with_capacity(boundary.as_bytes().len() + 4);
    delimiter.extend_from_slice(b"\r\n--");
    delimiter.extend_from_slice(boundary.as_bytes());
    let finder = memchr::memmem::Finder::new(&delimiter);
    let dash_boundary = &delimiter[2..];
    let mut pieces = Vec::new();
    // The first delimiter has no line end before it when there is no preamble.
    let mut at = if body.starts_with(dash_boundary) {
        dash_boundary.len()
    } else {
        let found = finder
            .find(body)
            .ok_or(BodyError::NotMultipart { offset: 0 })?;
        pieces.push(piece(0..found, BodyShape::Text, None));
        found + delimiter.len()
    };
    loop {
        if body[at..].starts_with(b"--") {
            // The close delimiter: padding, then the end or a line end and the epilogue.
            at = skip_padding(body, at + 2);
            if at < body.len() {
                if !body[at..].starts_with(b"\r\n") {
                    return Err(BodyError::NotMultipart { offset: at });
                }
                pieces.push(piece(at + 2..body.len(), BodyShape::Text, None));
            }
            return Ok(pieces);
        }
        at = skip_padding(body, at);
        if !body[at..].starts_with(b"\r\n") {
            return Err(BodyError::NotMultipart { offset: at });
        }
        let start = at + 2;
        // The part's headers end at the first empty line; a part with neither headers
        // nor content may end right where it starts (the delimiter's own line end).
        let end = finder
            .find(&body[start..])
            .map(|found| start + found)
            .ok_or(BodyError::NotMultipart { offset: start })?;
        let (headers, content) = split_part(body, start..end, &mut pieces)?;
        if let Some(content) = content {
            let (shape, field) = headers;
            pieces.push(piece(content, shape, field));
        }
        at = end + delimiter.len();
    }
}

/// Whether `content`, put in a part's place, would hold a delimiter of `boundary`
/// (a line end, `--` and the boundary, or the boundary's dashes at its start, right after
/// the empty line that ends the part's headers).
pub fn would_delimit(content: &[u8], boundary: Boundary) -> bool {
    let dash_boundary = [b"--", boundary.as_bytes()].concat();
    content.starts_with(&dash_boundary)
        || memchr::memmem::find(content, &[b"\r\n", &dash_boundary[..]].concat()).is_some()
}

fn skip_padding(body: &[u8], at: usize) -> usize {
    at + body[at..]
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count()
}

/// A part's headers read: its parameter values to mask (pushed to `pieces`), its
/// shape and field name, and its content's range (`None`: the part has headers only).
#[allow(clippy::type_complexity)]
fn split_part(
    body: &[u8],
    part: Range<usize>,
    pieces: &mut Vec<Piece>,
) -> Result<((BodyShape, Option<Vec<u8>>), Option<Range<usize>>), BodyError> {
    let mut content_type: Option<Range<usize>> = None;
    let mut disposition: Option<Range<usize>> = None;
    let mut transfer_encoding: Option<Range<usize>> = None;
    let mut at = part.start;
    let content = loop {
        if at == part.end {
            break None;
        }
        if body[at..part.end].starts_with(b"\r\n") {
            break Some(at + 2..part.end);
        }
        if at - part.start > MAX_PART_HEADERS {
            return Err(BodyError::NotMultipart { offset: at });
        }
        let line_end = memchr::memmem::find(&body[at..part.end], b"\r\n")
            .map(|found| at + found)
            .ok_or(BodyError::NotMultipart { offset: at })?;
        let line = &body[at..line_end];
        // A folded line, a bare CR or LF, or a line without a name: servers differ on
        // these, so the part cannot be read as the server will read it.
        let colon = line.iter().position(|b| *b == b':');
        let bad = matches!(line.first(), Some(b' ' | b'\t'))
            || line.iter().any(|b| matches!(b, b'\r' | b'\n' | 0))
            || colon
                .is_none_or(|colon| colon == 0 || !line[..colon].iter().all(|b| is_token_byte(*b)));
        if bad {
            return Err(BodyError::NotMultipart { offset: at });
        }
        let colon = colon.unwrap_or_default();
        let name = &line[..colon];
        let value = &line[colon + 1..];
        let leading = value.len() - value.trim_ascii_start().len();
        let value = at + colon + 1 + leading..at + colon + 1 + leading + value.trim_ascii().len();
        let slot = if name.eq_ignore_ascii_case(b"content-type") {
            Some(&mut content_type)
        } else if name.eq_ignore_ascii_case(b"content-disposition") {
            Some(&mut disposition)
        } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            Some(&mut transfer_encoding)
        } else {
            None
        };
        if let Some(slot) = slot {
            if slot.is_some() {
                return Err(BodyError::NotMultipart { offset: at });
            }
            *slot = Some(value);
        }
        at = line_end + 2;
    };
    let names = match disposition {
        Some(disposition) => disposition_names(body, disposition, pieces)?,
        None => Names::default(),
    };
    // A file's field name (`file`, `key`) says nothing of what the file holds.
    let field = names.file.is_none().then_some(names.field).flatten();
    let identity = transfer_encoding.is_none_or(|coding| {
        [&b"7bit"[..], b"8bit", b"binary"]
            .iter()
            .any(|known| body[coding.clone()].eq_ignore_ascii_case(known))
    });
    let shape = if identity {
        shape::part_shape(content_type.map(|t| &body[t]), names.file.as_deref())
    } else {
        // Base64 or quoted-printable: the text is not in the bytes as they are.
        BodyShape::Binary
    };
    Ok(((shape, field), content))
}

/// What a part's `Content-Disposition` names.
#[derive(Default)]
struct Names {
    /// The field's name (`name`).
    field: Option<Vec<u8>>,
    /// The file's name: `filename*` decoded when given, else `filename`.
    file: Option<Vec<u8>>,
}

/// The `Content-Disposition` parameters that name a part's field or file.
#[derive(Clone, Copy)]
enum Name {
    Field,
    File,
    ExtendedFile,
}

const NAMES: [(&[u8], Name); 3] = [
    (b"name", Name::Field),
    (b"filename", Name::File),
    (b"filename*", Name::ExtendedFile),
];

/// Reads a part's `Content-Disposition` (at `range` of `body`): the field's and the
/// file's name, and a piece for each of their values, which may hold a value to mask
/// (`filename="jane.doe@example.org.jsonl"`). Parameters that cannot be read, or a
/// name given twice, are refused: servers differ on which one they take.
fn disposition_names(
    body: &[u8],
    range: Range<usize>,
    pieces: &mut Vec<Piece>,
) -> Result<Names, BodyError> {
    let header = &body[range.clone()];
    let refused = |at: usize| BodyError::NotMultipart {
        offset: range.start + at,
    };
    let spans = shape::parameter_spans(header).ok_or(refused(0))?;
    let mut names = Names::default();
    let mut seen = [false; 3];
    for span in spans {
        let key = &header[span.key.clone()];
        let Some(&(_, name)) = NAMES.iter().find(|(k, _)| key.eq_ignore_ascii_case(k)) else {
            continue;
        };
        // Each may be given once.
        if std::mem::replace(&mut seen[name as usize], true) {
            return Err(refused(span.key.start));
        }
        let as_written = if span.quoted {
            Written::Quoted
        } else {
            Written::Token
        };
        let written = match name {
            Name::Field => {
                names.field = Some(span.unquoted(header));
                as_written
            }
            // `filename*` names the file when both are given (RFC 6266).
            Name::File => {
                if !seen[Name::ExtendedFile as usize] {
                    names.file = Some(span.unquoted(header));
                }
                as_written
            }
            Name::ExtendedFile => {
                let decoded =
                    extended_value(&header[span.value.clone()]).ok_or(refused(span.value.start))?;
                names.file = Some(decoded.into_bytes());
                Written::Extended
            }
        };
        let value = range.start + span.value.start..range.start + span.value.end;
        pieces.push(Piece {
            range: value,
            shape: BodyShape::Text,
            field: None,
            written,
        });
    }
    Ok(names)
}

/// An RFC 8187 value (`UTF-8''na%C3%AFve.txt`) as text: UTF-8 or ISO-8859-1, its
/// language ignored. `None` for another charset, a broken escape or bytes that are not
/// the charset's.
pub fn extended_value(raw: &[u8]) -> Option<String> {
    let mut parts = raw.splitn(3, |b| *b == b'\'');
    let (charset, _language, encoded) = (parts.next()?, parts.next()?, parts.next()?);
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut at = 0;
    while at < encoded.len() {
        match encoded[at] {
            b'%' => {
                let &[high, low] = encoded.get(at + 1..at + 3)? else {
                    return None;
                };
                bytes.push(hex_pair(high, low)?);
                at += 3;
            }
            b => {
                bytes.push(b);
                at += 1;
            }
        }
    }
    if charset.eq_ignore_ascii_case(b"utf-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case(b"iso-8859-1") {
        Some(bytes.iter().map(|b| char::from(*b)).collect())
    } else {
        None
    }
}

/// Writes `text` as an RFC 8187 value in UTF-8: `attr-char`s as they are, every other
/// byte as `%XX`.
pub fn write_extended_value(text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"UTF-8''");
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b);
        } else {
            push_escape(b, out);
        }
    }
}

/// Whether `raw` can stand between a quoted string's quotes as it is: no line end, and
/// every quote and backslash escaped.
pub fn is_quoted_content(raw: &[u8]) -> bool {
    let mut escaped = false;
    for &b in raw {
        match b {
            b'\r' | b'\n' | 0 => return false,
            b'"' if !escaped => return false,
            b'\\' if !escaped => {
                escaped = true;
                continue;
            }
            _ => {}
        }
        escaped = false;
    }
    !escaped
}

/// Writes `text` as a quoted string, its quotes and backslashes escaped.
pub fn write_quoted(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in text.as_bytes() {
        if matches!(b, b'"' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One field of a URL-encoded form: the raw (still encoded) bytes of its name and of
/// its value. A field without `=` is a name with an empty value, as browsers and
/// servers read it (WHATWG URL, `application/x-www-form-urlencoded` parsing).
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// The fields of a URL-encoded body, in order; empty ones (`a=1&&b=2`) are skipped.
pub fn url_encoded_fields(body: &[u8]) -> impl Iterator<Item = Field> + '_ {
    let mut at = 0;
    body.split(|b| *b == b'&').filter_map(move |field| {
        let start = at;
        at += field.len() + 1;
        if field.is_empty() {
            return None;
        }
        Some(match field.iter().position(|b| *b == b'=') {
            Some(equals) => Field {
                name: start..start + equals,
                value: start + equals + 1..start + field.len(),
            },
            None => Field {
                name: start..start + field.len(),
                value: start + field.len()..start + field.len(),
            },
        })
    })
}

/// Decodes a URL-encoded name or value as a server does: `+` is a blank, `%` and two
/// hex digits a byte, any other `%` itself.
pub fn url_decode(raw: &[u8], out: &mut Vec<u8>) {
    let mut at = 0;
    while at < raw.len() {
        match raw[at] {
            b'+' => out.push(b' '),
            b'%' if let Some(&[high, low]) = raw.get(at + 1..at + 3)
                && let Some(byte) = hex_pair(high, low) =>
            {
                out.push(byte);
                at += 2;
            }
            b => out.push(b),
        }
        at += 1;
    }
}

fn hex_pair(high: u8, low: u8) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    Some(digit(high)? << 4 | digit(low)?)
}

/// Encodes a text as a URL-encoded value: letters, digits and `*-._` as they are, a
/// blank as `+`, every other byte as `%XX`.
pub fn url_encode(text: &str, out: &mut Vec<u8>) {
    for &b in text.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b),
            b' ' => out.push(b'+'),
            _ => push_escape(b, out),
        }
    }
}

fn push_escape(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boundary(value: &str) -> Boundary {
        Boundary::new(value.as_bytes()).unwrap()
    }

    /// The text of each piece, with its shape and field name.
    #[allow(clippy::type_complexity)]
    fn read<'a>(
        body: &'a str,
        bound: &str,
    ) -> Result<Vec<(&'a str, BodyShape, Option<String>)>, BodyError> {
        Ok(multipart_pieces(body.as_bytes(), boundary(bound))?
            .into_iter()
            .filter(|p| p.written == Written::AsIs)
            .map(|p| {
                (
                    &body[p.range],
                    p.shape,
                    p.field.map(|f| String::from_utf8(f).unwrap()),
                )
            })
            .collect())
    }

    #[test]
    fn parts_are_typed_by_their_own_headers() {
        let body = "--XyZ\r\n\
            Content-Disposition: form-data; name=\"purpose\"\r\n\r\n\
            batch\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
            Content-Type: application/octet-stream\r\n\r\n\
            {\"a\":\"b\"}\n\r\n\
            --XyZ  \r\n\
            Content-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\
            Content-Type: audio/mpeg\r\n\r\n\
            ID3\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=\"notes\"\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\r\n\
            \r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=\"empty\"\r\n\
            \r\n\
            --XyZ--";
        assert_eq!(
            read(body, "XyZ").unwrap(),
            [
                ("batch", BodyShape::Text, Some("purpose".into())),
                ("{\"a\":\"b\"}\n", BodyShape::JsonLines(None), None),
                ("ID3", BodyShape::Binary, None),
                ("", BodyShape::Text, Some("notes".into())),
            ]
        );
    }

    #[test]
    fn a_preamble_and_an_epilogue_are_read_as_text() {
        let body =
            "hello\r\n--b\r\nContent-Disposition: form-data; name=x\r\n\r\nv\r\n--b--\r\nbye";
        assert_eq!(
            read(body, "b").unwrap(),
            [
                ("hello", BodyShape::Text, None),
                ("v", BodyShape::Text, Some("x".into())),
                ("bye", BodyShape::Text, None),
            ]
        );
    }

    #[test]
    fn framing_in_doubt_is_refused() {
        let part = "Content-Disposition: form-data; name=x\r\n\r\nv\r\n";
        for (body, offset) in [
            // No delimiter at all, no close delimiter.
            ("v".to_string(), 0),
            (format!("--b\r\n{part}"), 5),
            // The boundary continued by other text: inside a part, a server may read
            // it as data or as a delimiter.
            (format!("--b\r\n{part}--bb\r\n{part}--b--"), 53),
            // A folded header line, a bare LF, no colon.
            (
                "--b\r\nContent-Type: text/plain\r\n  ;x\r\n\r\nv\r\n--b--".to_string(),
                31,
            ),
            (
                "--b\r\nContent-Type: text/plain\nX: y\r\n\r\nv\r\n--b--".to_string(),
                5,
            ),
            ("--b\r\nnot a header\r\n\r\nv\r\n--b--".to_string(), 5),
            // A header line cut by the delimiter.
            ("--b\r\nContent-Type: text/plain\r\n--b--".to_string(), 5),
            // A type given twice.
            (
                "--b\r\nContent-Type: text/plain\r\nContent-Type: image/png\r\n\r\nv\r\n--b--"
                    .to_string(),
                31,
            ),
            // Text after the close delimiter on its line.
            (format!("--b\r\n{part}--b--x"), 55),
        ] {
            assert_eq!(
                read(&body, "b"),
                Err(BodyError::NotMultipart { offset }),
                "{body:?}"
            );
        }
    }

    #[test]
    fn encoded_parts_and_unknown_files_cannot_be_read() {
        let body = "--b\r\nContent-Disposition: form-data; name=f; filename=\"a.txt\"\r\n\
            Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n\
            --b\r\nContent-Disposition: form-data; name=g; filename=\"a.bin\"\r\n\r\nx\r\n\
            --b\r\nContent-Disposition: form-data; name=h; filename=\"notes.MD\"\r\n\r\ny\r\n--b--";
        let shapes: Vec<_> = read(body, "b").unwrap().into_iter().map(|p| p.1).collect();
        assert_eq!(
            shapes,
            [BodyShape::Binary, BodyShape::Binary, BodyShape::Text]
        );
    }

    #[test]
    fn field_and_file_names_are_pieces_written_as_they_were() {
        let body = "--b\r\nContent-Disposition: form-data; name=\"q\\\"x\"; filename=a.txt\r\n\r\nv\r\n\
            --b\r\nContent-Disposition: form-data; name=f; filename*=UTF-8''%C3%A9t%C3%A9.jsonl\r\n\
            \r\n{}\r\n--b--";
        let pieces = multipart_pieces(body.as_bytes(), boundary("b")).unwrap();
        let seen: Vec<_> = pieces
            .iter()
            .map(|p| (&body[p.range.clone()], p.written, p.shape))
            .collect();
        assert_eq!(
            seen,
            [
                ("q\\\"x", Written::Quoted, BodyShape::Text),
                ("a.txt", Written::Token, BodyShape::Text),
                ("v", Written::AsIs, BodyShape::Text),
                ("f", Written::Token, BodyShape::Text),
                (
                    "UTF-8''%C3%A9t%C3%A9.jsonl",
                    Written::Extended,
                    BodyShape::Text
                ),
                // `filename*` names the file: read by its extension.
                ("{}", Written::AsIs, BodyShape::JsonLines(None)),
            ]
        );
        assert_eq!(
            extended_value(b"UTF-8''%C3%A9t%C3%A9.jsonl").unwrap(),
            "été.jsonl"
        );
        assert_eq!(extended_value(b"iso-8859-1'fr'%E9t%E9").unwrap(), "été");
        for broken in [
            &b"UTF-8''%C3"[..],
            b"UTF-8''%zz",
            b"koi8-r''x",
            b"x",
            b"UTF-8''%FF",
        ] {
            assert_eq!(extended_value(broken), None, "{broken:?}");
        }
        let mut written = Vec::new();
        write_extended_value("<EMAIL_1> é.txt", &mut written);
        assert_eq!(written, b"UTF-8''%3CEMAIL_1%3E%20%C3%A9.txt");
        assert_eq!(extended_value(&written).unwrap(), "<EMAIL_1> é.txt");
        let mut quoted = Vec::new();
        write_quoted(r#"a"b\c"#, &mut quoted);
        assert_eq!(quoted, br#""a\"b\\c""#);
        assert!(is_quoted_content(br#"a\"b"#) && !is_quoted_content(b"a\"b"));
        assert!(!is_quoted_content(b"a\\") && !is_quoted_content(b"a\r\nb"));

        // A name given twice, parameters that cannot be read, a charset not known.
        for (disposition, offset) in [
            ("form-data; name=a; name=b", 45),
            ("form-data; filename=a; FILENAME=b", 49),
            ("form-data; name=\"a", 26),
            ("form-data; filename*=koi8-r''x", 47),
        ] {
            let body = format!("--b\r\nContent-Disposition: {disposition}\r\n\r\nv\r\n--b--");
            assert_eq!(
                multipart_pieces(body.as_bytes(), boundary("b")),
                Err(BodyError::NotMultipart { offset }),
                "{disposition}"
            );
        }
    }

    #[test]
    fn url_encoded_fields_decode_and_encode_as_servers_do() {
        let body = b"a=1&&pass+word=p%40ss+w%zz%4&flag&=v";
        let fields: Vec<_> = url_encoded_fields(body)
            .map(|f| (&body[f.name], &body[f.value]))
            .collect();
        assert_eq!(
            fields,
            [
                (&b"a"[..], &b"1"[..]),
                (b"pass+word", b"p%40ss+w%zz%4"),
                (b"flag", b""),
                (b"", b"v"),
            ]
        );
        let mut decoded = Vec::new();
        url_decode(b"p%40ss+w%zz%4%e2%82%AC", &mut decoded);
        assert_eq!(decoded, "p@ss w%zz%4€".as_bytes());
        let mut encoded = Vec::new();
        url_encode("a b@c.d*_-~€", &mut encoded);
        assert_eq!(encoded, b"a+b%40c.d*_-%7E%E2%82%AC");
        let mut again = Vec::new();
        url_decode(&encoded, &mut again);
        assert_eq!(again, "a b@c.d*_-~€".as_bytes());
    }
}
