//! Exit verification (`verify = { url, interval }`): every exit is asked, every
//! `interval`, for an echo URL that answers the address it sees the request from, the
//! exit's public address. An exit that fails the probe, or whose address is no longer
//! the one first seen, is marked (the admin API, `junction_egress_exit_verified`).
//! Marking informs; it does not take the exit out of rotation.

use std::net::IpAddr;
use std::time::Duration;

use http::Uri;
use tokio::time::Instant;

/// How exits are verified.
#[derive(Debug, Clone)]
pub struct VerifyRules {
    /// An `http://` URL answering the caller's address (text, or JSON with `ip`).
    pub url: Uri,
    pub interval: Duration,
    /// The whole probe: connecting, the answer and its body.
    pub timeout: Duration,
}

/// An exit's standing after its last probe.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Not probed yet.
    #[default]
    Unchecked,
    /// Answered with the address it first answered.
    Verified,
    /// Answered with another address than its first.
    Changed,
    /// The probe failed: why.
    Failed(String),
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Unchecked => "unchecked",
            Verdict::Verified => "verified",
            Verdict::Changed => "changed",
            Verdict::Failed(_) => "failed",
        }
    }
}

/// What the probes of one exit found.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    pub verdict: Verdict,
    /// The address the first successful probe saw: the one the exit should keep.
    pub first_address: Option<IpAddr>,
    /// The last address seen.
    pub address: Option<IpAddr>,
    pub checked: Option<Instant>,
    /// Probes that saw another address than the probe before.
    pub changes: u64,
    pub failures: u64,
}

impl Verification {
    /// Records a probe's result; returns whether the address moved since the last one.
    pub fn record(&mut self, result: Result<IpAddr, String>, now: Instant) -> bool {
        self.checked = Some(now);
        match result {
            Ok(address) => {
                let first = *self.first_address.get_or_insert(address);
                let moved = self.address.is_some_and(|last| last != address);
                if moved {
                    self.changes += 1;
                }
                self.address = Some(address);
                self.verdict = if address == first {
                    Verdict::Verified
                } else {
                    Verdict::Changed
                };
                moved
            }
            Err(why) => {
                self.failures += 1;
                self.verdict = Verdict::Failed(why);
                false
            }
        }
    }
}

/// The address in an echo service's answer: the body as text (`203.0.113.7`, as
/// api.ipify.org and ifconfig.me answer), or JSON with `ip`, `origin` (httpbin; its
/// first address when it lists several), `address` or `query`.
pub fn echoed_address(body: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if let Ok(address) = text.parse() {
        return Some(address);
    }
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    ["ip", "origin", "address", "query"].iter().find_map(|key| {
        json.get(key)?
            .as_str()?
            .split(',')
            .next()?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_answers_are_read_as_text_or_json() {
        let ip = |text: &str| text.parse::<IpAddr>().ok();
        assert_eq!(echoed_address(b"203.0.113.7\n"), ip("203.0.113.7"));
        assert_eq!(echoed_address(b"2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(
            echoed_address(br#"{"ip": "203.0.113.7"}"#),
            ip("203.0.113.7")
        );
        assert_eq!(
            echoed_address(br#"{"origin": "203.0.113.7, 10.0.0.1"}"#),
            ip("203.0.113.7")
        );
        for bad in [&b"<html>hi</html>"[..], b"", b"{\"ip\": 7}", b"\xff\xfe"] {
            assert_eq!(echoed_address(bad), None);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_unlike_the_first_marks_the_exit_until_it_returns() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let mut verification = Verification::default();
        assert_eq!(verification.verdict, Verdict::Unchecked);
        let now = Instant::now();
        assert!(!verification.record(Ok(ip("203.0.113.7")), now));
        assert_eq!(verification.verdict, Verdict::Verified);
        assert!(verification.record(Ok(ip("203.0.113.8")), now));
        assert_eq!(verification.verdict, Verdict::Changed);
        assert!(!verification.record(Ok(ip("203.0.113.8")), now));
        assert_eq!(verification.verdict, Verdict::Changed, "still not its own");
        assert!(!verification.record(Err("timed out".into()), now));
        assert_eq!(verification.verdict, Verdict::Failed("timed out".into()));
        assert_eq!(verification.address, Some(ip("203.0.113.8")));
        assert!(verification.record(Ok(ip("203.0.113.7")), now));
        assert_eq!(verification.verdict, Verdict::Verified);
        assert_eq!((verification.changes, verification.failures), (2, 1));
    }
}
