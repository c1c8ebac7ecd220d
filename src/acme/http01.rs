//! HTTP-01 answers (RFC 8555 §8.3): the tokens of the orders in flight and their key
//! authorizations, which a listener serves at `/.well-known/acme-challenge/{token}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

/// Where an ACME server asks for an HTTP-01 token.
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Tokens → key authorizations, shared by the ACME client (writes, rarely) and every
/// listener (reads, on each request whose path has the prefix). Reads take no lock.
#[derive(Default)]
pub struct Http01Answers {
    tokens: ArcSwap<HashMap<Box<str>, Arc<str>>>,
    /// How many tokens are pending: what every request checks, one relaxed load, before
    /// anything else. A token is in the map before it counts, and it is announced to the
    /// ACME server only after.
    pending: AtomicUsize,
}

impl std::fmt::Debug for Http01Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key authorizations are not secrets, but a token list in logs helps nobody.
        f.debug_struct("Http01Answers")
            .field("pending", &self.tokens.load().len())
            .finish()
    }
}

impl Http01Answers {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The key authorization to answer for a request to `path`, if `path` names a
    /// token of an order in flight. Anything else (other paths, unknown tokens) is
    /// not ACME's: the request goes on to the routes.
    pub fn answer(&self, path: &str) -> Option<Arc<str>> {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let token = path.strip_prefix(CHALLENGE_PREFIX)?;
        self.tokens.load().get(token).cloned()
    }

    /// Whether a raw request target (as the HTTP/1.1 engine holds it, before any
    /// normalisation) asks for a pending token: the engine then leaves the request to
    /// the full pipeline, which answers it. Cheap when nothing is pending.
    pub fn wants(&self, target: &[u8]) -> bool {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let Some(rest) = target.strip_prefix(CHALLENGE_PREFIX.as_bytes()) else {
            return false;
        };
        let token = rest.split(|&b| b == b'?').next().unwrap_or(rest);
        let tokens = self.tokens.load();
        std::str::from_utf8(token).is_ok_and(|t| tokens.contains_key(t))
    }

    /// Serves `key_authorization` for `token` until the returned guard drops.
    pub fn insert(self: &Arc<Self>, token: &str, key_authorization: &str) -> Pending {
        let authorization: Arc<str> = Arc::from(key_authorization);
        self.tokens.rcu(|tokens| {
            let mut tokens = HashMap::clone(tokens);
            tokens.insert(Box::from(token), authorization.clone());
            tokens
        });
        self.pending.fetch_add(1, Ordering::Release);
        Pending {
            answers: self.clone(),
            token: Box::from(token),
        }
    }

    fn remove(&self, token: &str) {
        self.pending.fetch_sub(1, Ordering::Release);
        self.tokens.rcu(|tokens| {
            let mut tokens = HashMap::clone(tokens);
            tokens.remove(token);
            tokens
        });
    }

    pub fn len(&self) -> usize {
        self.tokens.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.load().is_empty()
    }
}

/// A token being served; dropping it stops the answer (the order is done, or failed).
#[derive(Debug)]
pub struct Pending {
    answers: Arc<Http01Answers>,
    token: Box<str>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.answers.remove(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pending_tokens_under_the_prefix_are_answered() {
        let answers = Http01Answers::new();
        assert_eq!(answers.answer("/.well-known/acme-challenge/abc"), None);
        assert!(!answers.wants(b"/.well-known/acme-challenge/abc"));
        let pending = answers.insert("abc", "abc.thumb");
        assert_eq!(
            answers.answer("/.well-known/acme-challenge/abc").as_deref(),
            Some("abc.thumb")
        );
        assert!(answers.wants(b"/.well-known/acme-challenge/abc"));
        assert!(answers.wants(b"/.well-known/acme-challenge/abc?x=1"));
        assert_eq!(answers.answer("/.well-known/acme-challenge/abd"), None);
        assert_eq!(answers.answer("/abc"), None);
        assert!(!answers.wants(b"/x/.well-known/acme-challenge/abc"));
        drop(pending);
        assert_eq!(answers.answer("/.well-known/acme-challenge/abc"), None);
        assert!(answers.is_empty());
    }
}
