//! The `Connection` header's list (RFC 9110 7.6.1): which connection options it sets,
//! and whether it names other headers as hop-by-hop. A list that names a header the
//! request's framing or routing depends on is refused: dropping `Content-Length` while
//! sending the body would let the body be read as a second request.

use super::Refusal;

/// What a request's `Connection` lines say.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionTokens {
    pub close: bool,
    pub upgrade: bool,
    /// It names other headers (to be removed on entry, before anything reads them).
    pub names_headers: bool,
}

/// Headers no `Connection` list may name.
const ESSENTIAL: [&str; 3] = ["content-length", "transfer-encoding", "host"];

impl ConnectionTokens {
    /// Reads every `Connection` line of a request.
    pub fn read<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, Refusal> {
        let mut tokens = ConnectionTokens::default();
        for line in lines {
            for token in line.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.is_empty() || token.eq_ignore_ascii_case(b"keep-alive") {
                } else if token.eq_ignore_ascii_case(b"close") {
                    tokens.close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    tokens.upgrade = true;
                } else if let Some(essential) = ESSENTIAL
                    .iter()
                    .find(|name| token.eq_ignore_ascii_case(name.as_bytes()))
                {
                    return Err(Refusal::ConnectionNamesEssential(essential));
                } else {
                    tokens.names_headers = true;
                }
            }
        }
        Ok(tokens)
    }

    /// Whether `Upgrade` lines ask for `h2c`. That upgrade is never passed on: an endpoint
    /// that accepted it would take every later request on the connection as HTTP/2,
    /// past routing (RFC 9113 dropped it; the request is served as HTTP/1.1 instead).
    pub fn asks_h2c<'a>(upgrade: impl IntoIterator<Item = &'a [u8]>) -> bool {
        upgrade.into_iter().any(|line| {
            line.split(|&b| b == b',').any(|token| {
                let token = token.trim_ascii();
                let name = token.split(|&b| b == b'/').next().unwrap_or(token);
                name.trim_ascii().eq_ignore_ascii_case(b"h2c")
            })
        })
    }

    /// The header names a `Connection` line lists beyond the connection options.
    pub fn named(line: &[u8]) -> impl Iterator<Item = &[u8]> {
        line.split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .filter(|token| {
                !token.is_empty()
                    && !["keep-alive", "close", "upgrade"]
                        .iter()
                        .any(|option| token.eq_ignore_ascii_case(option.as_bytes()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Result<ConnectionTokens, Refusal> {
        ConnectionTokens::read(lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn options_and_names() {
        assert_eq!(read(&[]), Ok(ConnectionTokens::default()));
        let tokens = read(&["keep-alive", " Close ,,"]).unwrap();
        assert!(tokens.close && !tokens.names_headers && !tokens.upgrade);
        let tokens = read(&["Upgrade, x-secret"]).unwrap();
        assert!(tokens.upgrade && tokens.names_headers);
        let named: Vec<_> = ConnectionTokens::named(b"close, X-A ,te,,upgrade").collect();
        assert_eq!(named, [&b"X-A"[..], b"te"]);
    }

    #[test]
    fn h2c_in_any_spelling() {
        for line in ["h2c", "websocket, H2C", " h2c/1 "] {
            assert!(ConnectionTokens::asks_h2c([line.as_bytes()]), "{line}");
        }
        assert!(!ConnectionTokens::asks_h2c([&b"websocket"[..], b"h2"]));
    }

    #[test]
    fn essential_headers_are_refused_in_any_spelling_or_line() {
        for lines in [
            &["content-length"][..],
            &["Content-Length, keep-alive"],
            &["keep-alive,TRANSFER-ENCODING"],
            &["keep-alive", " host "],
        ] {
            assert!(
                matches!(read(lines), Err(Refusal::ConnectionNamesEssential(_))),
                "{lines:?}"
            );
        }
    }
}
