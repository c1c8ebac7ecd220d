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
    /// The longest token given: read on every restored text, so kept, not counted (a
    /// WebSocket's vault lives as long as its connection).
    longest: usize,
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
            self.longest = self.longest.max(token.len());
            self.originals.insert(token.clone(), value.to_string());
            self.tokens.insert(value.to_string(), token);
        }
        &self.tokens[value]
    }

    /// Numbers the next pseudonyms past the tokens of their form that `body` holds
    /// already: a pseudonym of an earlier answer the client sends back in its history
    /// (`<EMAIL_ADDRESS_2>`, a value the model wrote and the answer masked), or a
    /// placeholder it typed. Numbered from 1 again, a new value would get the same
    /// token, and the model's mention of the old one would be restored as the new.
    pub fn number_past_tokens_in(&mut self, body: &[u8]) {
        for at in memchr::memchr_iter(b'<', body) {
            let Some((name, number)) = token_at(&body[at + 1..]) else {
                continue;
            };
            match self
                .numbers
                .iter_mut()
                .find(|(kind, _)| kind.name() == name)
            {
                Some((_, last)) => *last = (*last).max(number),
                None => {
                    let kind = super::Kind(std::sync::Arc::from(name));
                    self.numbers.insert(kind, number);
                }
            }
        }
    }

    /// The value a token stands for, if this vault gave it.
    pub fn original(&self, token: &str) -> Option<&str> {
        self.originals.get(token).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.originals.is_empty()
    }

    /// How many pseudonyms it gave.
    pub fn len(&self) -> usize {
        self.originals.len()
    }

    /// The longest token this vault gave, in bytes (0 when empty).
    pub fn longest_token(&self) -> usize {
        self.longest
    }

    /// What puts the pseudonyms back in place of the values a restored response
    /// carries, for what is kept of it (a captured flow).
    pub fn concealer(&self) -> Concealer {
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(self.tokens.len());
        for (value, token) in self.tokens.iter().filter(|(value, _)| !value.is_empty()) {
            // A value is restored as the place of its token writes it: as it is in a
            // text, escaped once in a JSON string, twice in tool-call arguments (JSON in
            // a JSON string). Each form is concealed.
            let mut form = value.clone().into_bytes();
            for _ in 0..3 {
                pairs.push((form.clone(), token.clone().into_bytes()));
                let mut escaped = Vec::with_capacity(form.len() + 8);
                // `form` is the value or its escape: UTF-8 either way.
                crate::json_text::encode_str(&String::from_utf8_lossy(&form), &mut escaped);
                if escaped == form {
                    break;
                }
                form = escaped;
            }
        }
        // The longest first: a value holding another is replaced whole.
        pairs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let hold = pairs.first().map_or(0, |(value, _)| value.len() - 1);
        Concealer {
            pairs,
            hold,
            carry: Vec::new(),
        }
    }
}

/// The type name and number of a token `NAME_N>` at the start of `rest` (just past its
/// `<`): a name of capitals, digits and `_`, a number of at most nine digits.
fn token_at(rest: &[u8]) -> Option<(&str, u32)> {
    let close = rest.iter().take(80).position(|&b| b == b'>')?;
    let inner = &rest[..close];
    let underscore = inner.iter().rposition(|&b| b == b'_')?;
    let (name, digits) = (&inner[..underscore], &inner[underscore + 1..]);
    let name_ok = name.first().is_some_and(u8::is_ascii_uppercase)
        && name
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok || digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((std::str::from_utf8(name).ok()?, number))
}

/// Replaces a vault's values by their pseudonyms in a body that arrives in pieces,
/// holding back the bytes that could start a value cut by the end of a piece (one
/// byte less than the longest value).
pub struct Concealer {
    /// Value -> pseudonym, the longest value first.
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    hold: usize,
    carry: Vec<u8>,
}

impl std::fmt::Debug for Concealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Concealer")
            .field("pseudonyms", &self.pairs.len())
            .finish()
    }
}

impl Concealer {
    /// Appends to `out` what of `data` (after what was held back) is sure to hold no
    /// value any more.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.carry.extend_from_slice(data);
        let replaced = self.replaced();
        let ready = replaced.len().saturating_sub(self.hold);
        out.extend_from_slice(&replaced[..ready]);
        self.carry = replaced[ready..].to_vec();
    }

    /// The body ended: appends what was held back.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let replaced = self.replaced();
        out.extend_from_slice(&replaced);
        self.carry.clear();
    }

    /// The carried bytes with every value replaced, in one left-to-right pass (at
    /// each place the longest value that starts there).
    fn replaced(&self) -> Vec<u8> {
        let text = &self.carry;
        let mut out = Vec::with_capacity(text.len());
        let mut at = 0;
        while at < text.len() {
            let rest = &text[at..];
            match self.pairs.iter().find(|(value, _)| rest.starts_with(value)) {
                Some((value, token)) => {
                    out.extend_from_slice(token);
                    at += value.len();
                }
                None => {
                    out.push(text[at]);
                    at += 1;
                }
            }
        }
        out
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
        assert_eq!(vault.len(), 2);
    }

    /// Tokens the body holds already are not given again: a new value is numbered
    /// past them, and the old token stays unknown (not restored as the new value).
    #[test]
    fn numbers_start_past_the_tokens_a_body_holds() {
        let mut vault = Vault::default();
        let body = br#"{"content":"mail <EMAIL_ADDRESS_2> and <EMAIL_ADDRESS_1>, <PERSON_7>, <IP_1234567890>, <lower_3>, <X_>"}"#;
        vault.number_past_tokens_in(body);
        let email = Kind("EMAIL_ADDRESS".into());
        assert_eq!(
            vault.pseudonym(&email, "new@example.org"),
            "<EMAIL_ADDRESS_3>"
        );
        assert_eq!(vault.original("<EMAIL_ADDRESS_2>"), None);
        let person = Kind("PERSON".into());
        assert_eq!(vault.pseudonym(&person, "Ann Lee"), "<PERSON_8>");
        // Ten digits and small letters are no tokens of this vault's form.
        let ip = Kind("IP".into());
        assert_eq!(vault.pseudonym(&ip, "10.0.0.1"), "<IP_1>");
        let lower = Kind("lower".into());
        assert_eq!(vault.pseudonym(&lower, "x"), "<lower_1>");
        assert!(vault.numbers.len() >= 3);
    }

    #[test]
    fn the_longest_token_is_kept_as_tokens_are_given() {
        let mut vault = Vault::default();
        assert_eq!(vault.longest_token(), 0);
        let ip = Kind("IP".into());
        let email = Kind("EMAIL_ADDRESS".into());
        for n in 0..12 {
            vault.pseudonym(&ip, &format!("10.0.0.{n}"));
        }
        assert_eq!(vault.longest_token(), "<IP_12>".len());
        vault.pseudonym(&email, "a@example.org");
        assert_eq!(vault.longest_token(), "<EMAIL_ADDRESS_1>".len());
        vault.pseudonym(&ip, "10.0.0.99");
        assert_eq!(vault.longest_token(), "<EMAIL_ADDRESS_1>".len());
    }

    #[test]
    fn a_concealer_puts_pseudonyms_back_across_pieces() {
        let mut vault = Vault::default();
        let email = Kind("EMAIL_ADDRESS".into());
        vault.pseudonym(&email, "a@example.org");
        vault.pseudonym(&email, "bob.a@example.org");
        concealed_at_every_cut(
            &vault,
            b"to a@example.org, cc bob.a@example.org; end",
            "to <EMAIL_ADDRESS_1>, cc <EMAIL_ADDRESS_2>; end",
        );
        assert!(!format!("{:?}", vault.concealer()).contains("example"));
    }

    /// `body` cut in two at each place goes through a concealer as `expected`.
    fn concealed_at_every_cut(vault: &Vault, body: &[u8], expected: &str) {
        for cut in 0..body.len() {
            let mut concealer = vault.concealer();
            let mut out = Vec::new();
            concealer.push(&body[..cut], &mut out);
            concealer.push(&body[cut..], &mut out);
            concealer.finish(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "cut at {cut}");
        }
    }

    /// A value JSON must escape is restored escaped (twice in tool-call arguments):
    /// what a flow keeps holds its pseudonym in each form.
    #[test]
    fn a_concealer_finds_values_as_json_escapes_them() {
        let mut vault = Vault::default();
        let password = Kind("PASSWORD".into());
        vault.pseudonym(&password, "pa\"ss\\w0rd!");
        let body = br#"{"content":"pa\"ss\\w0rd!","arguments":"{\"p\":\"pa\\\"ss\\\\w0rd!\"}","text":pa"ss\w0rd!}"#;
        concealed_at_every_cut(
            &vault,
            body,
            r#"{"content":"<PASSWORD_1>","arguments":"{\"p\":\"<PASSWORD_1>\"}","text":<PASSWORD_1>}"#,
        );
    }
}
