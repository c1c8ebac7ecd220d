//! Restoring pseudonyms: a `<KIND_N>` token the request's vault gave is replaced by the
//! value it stands for. Tokens are found by shape (`<`, no whitespace, `>`, no longer
//! than the vault's longest) and confirmed in the vault; anything else is left alone.

use super::Vault;

/// A byte that can be inside a token: kind names are configured, so anything but
/// whitespace, quotes and the angle brackets.
fn token_byte(byte: u8) -> bool {
    !(byte.is_ascii_whitespace() || byte == b'<' || byte == b'>' || byte == b'"')
}

/// A piece of a text, in order: plain text, or a token the vault gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Plain text starting at byte `at` of the text.
    Plain { text: &'a str, at: usize },
    /// A token (of `len` bytes at `at`) and its original value.
    Original {
        value: &'a str,
        at: usize,
        len: usize,
    },
}

/// The pieces of `text`: plain runs and restorable tokens.
pub struct Pieces<'a> {
    text: &'a str,
    vault: &'a Vault,
    longest: usize,
    at: usize,
    /// A token found ahead, given after the plain run before it.
    next: Option<(usize, usize, &'a str)>,
}

impl<'a> Pieces<'a> {
    pub fn new(text: &'a str, vault: &'a Vault) -> Self {
        Pieces {
            text,
            vault,
            longest: vault.longest_token(),
            at: 0,
            next: None,
        }
    }

    /// The next token at or after `from`: (start, end, original).
    fn find_token(&self, mut from: usize) -> Option<(usize, usize, &'a str)> {
        if self.longest == 0 {
            return None;
        }
        let bytes = self.text.as_bytes();
        while let Some(found) = self.text[from..].find('<') {
            let start = from + found;
            let limit = (start + self.longest).min(bytes.len());
            let mut end = start + 1;
            while end < limit && token_byte(bytes[end]) {
                end += 1;
            }
            if end < limit
                && bytes[end] == b'>'
                && let Some(value) = self.vault.original(&self.text[start..=end])
            {
                return Some((start, end + 1, value));
            }
            from = start + 1;
        }
        None
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        if let Some((start, end, value)) = self.next.take() {
            self.at = end;
            return Some(Piece::Original {
                value,
                at: start,
                len: end - start,
            });
        }
        if self.at >= self.text.len() {
            return None;
        }
        let at = self.at;
        match self.find_token(at) {
            Some((start, end, value)) if start == at => {
                self.at = end;
                Some(Piece::Original {
                    value,
                    at,
                    len: end - start,
                })
            }
            Some(token) => {
                self.next = Some(token);
                self.at = token.0;
                Some(Piece::Plain {
                    text: &self.text[at..token.0],
                    at,
                })
            }
            None => {
                self.at = self.text.len();
                Some(Piece::Plain {
                    text: &self.text[at..],
                    at,
                })
            }
        }
    }
}

/// Where a token that may still be completed by more text starts: the last `<` of
/// `text` followed only by token bytes, closer to the end than the longest token.
/// A stream holds the text from there back until the token is whole or cannot be one.
pub fn unfinished_token(text: &str, longest: usize) -> Option<usize> {
    if longest == 0 {
        return None;
    }
    let start = text.rfind('<')?;
    let tail = &text.as_bytes()[start + 1..];
    (text.len() - start < longest && tail.iter().all(|b| token_byte(*b))).then_some(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::Kind;

    #[test]
    fn tokens_the_vault_gave_are_found_and_others_left() {
        let mut vault = Vault::default();
        let email = Kind("EMAIL_ADDRESS".into());
        vault.pseudonym(&email, "a@example.org");
        let text = "to <EMAIL_ADDRESS_1>, not <EMAIL_ADDRESS_2> or <b> <<EMAIL_ADDRESS_1>>";
        let mut restored = String::new();
        for piece in Pieces::new(text, &vault) {
            match piece {
                Piece::Plain { text, .. } => restored.push_str(text),
                Piece::Original { value, .. } => restored.push_str(value),
            }
        }
        assert_eq!(
            restored,
            "to a@example.org, not <EMAIL_ADDRESS_2> or <b> <a@example.org>"
        );
        let longest = vault.longest_token();
        assert_eq!(unfinished_token("x <EMAIL_AD", longest), Some(2));
        assert_eq!(unfinished_token("x <EMAIL AD", longest), None);
        assert_eq!(unfinished_token("x <EMAIL_ADDRESS_1>", longest), None);
        assert_eq!(unfinished_token("x <", longest), Some(2));
        assert_eq!(unfinished_token("x <", 0), None);
    }
}
