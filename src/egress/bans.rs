//! Ban detection: a site that answers an exit with a ban status (403, 429...) or a
//! page carrying a pattern ("captcha") has banned that exit. The start of a textual
//! body is read ahead to look, then passed on unchanged if the exit is fine.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;

use crate::upstream::UpstreamBody;

pub struct BanRules {
    pub status: Vec<u16>,
    /// Lowercase patterns.
    pub body: Vec<Vec<u8>>,
    pub cooldown: Duration,
    pub max_cooldown: Duration,
    pub scan_bytes: usize,
}

impl Default for BanRules {
    fn default() -> Self {
        BanRules {
            status: Vec::new(),
            body: Vec::new(),
            cooldown: Duration::from_secs(60),
            max_cooldown: Duration::from_secs(3600),
            scan_bytes: 64 * 1024,
        }
    }
}

/// A response body with its start read ahead.
pub struct ReadAhead {
    pub prefix: Option<Bytes>,
    pub trailers: Option<HeaderMap>,
    pub body: UpstreamBody,
    /// The body ended within what was read ahead.
    pub ended: bool,
}

pub enum Verdict {
    Clean(ReadAhead),
    Banned(ReadAhead, String),
}

impl BanRules {
    pub fn bans_status(&self, status: StatusCode) -> bool {
        self.status.contains(&status.as_u16())
    }

    /// Whether this response's body is worth scanning: there are patterns and it is
    /// text (HTML, JSON, plain), not an image or an archive.
    pub fn scans(&self, headers: &HeaderMap) -> bool {
        if self.body.is_empty() {
            return false;
        }
        let Some(kind) = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            return true;
        };
        let kind = kind.trim().to_ascii_lowercase();
        kind.starts_with("text/")
            || kind.contains("json")
            || kind.contains("xml")
            || kind.contains("javascript")
    }

    /// Reads up to `scan_bytes` of the body and looks for the patterns.
    pub async fn scan(&self, mut body: UpstreamBody) -> Result<Verdict, hyper::Error> {
        let mut read = BytesMut::new();
        let mut trailers = None;
        let mut ended = false;
        while read.len() < self.scan_bytes {
            match body.frame().await {
                None => {
                    ended = true;
                    break;
                }
                Some(frame) => match frame?.into_data() {
                    Ok(data) => read.extend_from_slice(&data),
                    Err(frame) => {
                        trailers = frame.into_trailers().ok();
                        ended = true;
                        break;
                    }
                },
            }
        }
        let found = self
            .body
            .iter()
            .find(|pattern| contains_ignoring_case(&read, pattern))
            .map(|pattern| String::from_utf8_lossy(pattern).into_owned());
        let ahead = ReadAhead {
            prefix: (!read.is_empty()).then(|| read.freeze()),
            trailers,
            body,
            ended,
        };
        Ok(match found {
            Some(pattern) => Verdict::Banned(ahead, pattern),
            None => Verdict::Clean(ahead),
        })
    }
}

/// `pattern` is lowercase already.
fn contains_ignoring_case(haystack: &[u8], pattern: &[u8]) -> bool {
    !pattern.is_empty()
        && haystack
            .windows(pattern.len())
            .any(|window| window.eq_ignore_ascii_case(pattern))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_in_any_case() {
        assert!(contains_ignoring_case(
            b"<p>Please solve the CAPTCHA</p>",
            b"captcha"
        ));
        assert!(!contains_ignoring_case(b"<p>welcome</p>", b"captcha"));
        assert!(!contains_ignoring_case(b"cap", b"captcha"));
        assert!(!contains_ignoring_case(b"anything", b""));
    }

    #[test]
    fn only_textual_bodies_are_scanned() {
        let rules = BanRules {
            body: vec![b"captcha".to_vec()],
            ..Default::default()
        };
        let with = |kind: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, kind.parse().unwrap());
            rules.scans(&headers)
        };
        assert!(with("text/html; charset=utf-8"));
        assert!(with("application/json"));
        assert!(!with("image/png"));
        assert!(rules.scans(&HeaderMap::new()));
        assert!(!BanRules::default().scans(&HeaderMap::new()));
    }
}
