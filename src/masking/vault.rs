//! The per-request vault of pseudonyms: `<EMAIL_ADDRESS_1>` stands for a value in the
//! request and is restored in the response. It lives as long as the request, in memory
//! only: never logged, stored or shown.

use std::collections::HashMap;

use super::Kind;

/// Pseudonyms of one request and the values they stand for.
#[derive(Default)]
pub struct Vault {
    /// Token -> original value.
    originals: HashMap<String, String>,
    /// Original value -> token, so the same value gets the same pseudonym.
    tokens: HashMap<String, String>,
    /// Per type, the last number given.
    numbers: HashMap<Kind, u32>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        f.debug_struct("Vault")
            .field("pseudonyms", &self.originals.len())
            .finish()
    }
}

impl Vault {
    /// The longest token a vault gives, in bytes, for a type name of `name_len` bytes:
    /// `<`, the name, `_`, up to 10 digits, `>`.
    pub const fn token_len_max(name_len: usize) -> usize {
        name_len + 13
    }

    /// The pseudonym of `value`: the one it already has, or a new `<KIND_N>`.
    pub fn pseudonym(&mut self, kind: &Kind, value: &str) -> &str {
        if !self.tokens.contains_key(value) {
            let number = self.numbers.entry(kind.clone()).or_insert(0);
            *number += 1;
            let token = format!("<{}_{}>", kind.name(), number);
            self.originals.insert(token.clone(), value.to_string());
            self.tokens.insert(value.to_string(), token);
        }
        &self.tokens[value]
    }

    /// The value a token stands for, if this vault gave it.
    pub fn original(&self, token: &str) -> Option<&str> {
        self.originals.get(token).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.originals.is_empty()
    }

    /// The longest token this vault gave, in bytes (0 when empty).
    pub fn longest_token(&self) -> usize {
        self.originals.keys().map(String::len).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_value_gets_the_same_pseudonym_and_is_restored() {
        let mut vault = Vault::default();
        let email = Kind("EMAIL_ADDRESS".into());
        let a = vault.pseudonym(&email, "a@example.org").to_string();
        let b = vault.pseudonym(&email, "b@example.org").to_string();
        assert_eq!(a, "<EMAIL_ADDRESS_1>");
        assert_eq!(b, "<EMAIL_ADDRESS_2>");
        assert_eq!(vault.pseudonym(&email, "a@example.org"), a);
        assert_eq!(vault.original(&b), Some("b@example.org"));
        assert_eq!(vault.original("<EMAIL_ADDRESS_3>"), None);
        assert!(!format!("{vault:?}").contains("example"));
    }
}
