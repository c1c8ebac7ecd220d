//! Values a route never masks (`keep`): its own support address, the public address of
//! its status page, every address at its own domain. Checked against each value found,
//! after detection, so a kept value is simply not a finding.

use std::collections::HashSet;

/// The most entries a `keep` list may have, and the longest entry.
pub const MAX_ENTRIES: usize = 10_000;
pub const MAX_ENTRY_BYTES: usize = 512;

/// The values kept: exact values (e-mail addresses with their case ignored, as mail
/// systems treat them), and `@domain` entries, which keep every e-mail address at that
/// domain or below it.
#[derive(Clone, Debug, Default)]
pub struct KeepList {
    exact: HashSet<Box<str>>,
    /// E-mail addresses, lower-cased.
    addresses: HashSet<Box<str>>,
    /// Domains of `@domain` entries, lower-cased, without the `@`.
    domains: Vec<Box<str>>,
}

impl KeepList {
    /// The list of `entries`, or the index and the problem of the first bad one.
    pub fn new(entries: &[String]) -> Result<KeepList, (usize, String)> {
        if entries.len() > MAX_ENTRIES {
            return Err((MAX_ENTRIES, format!("more than {MAX_ENTRIES} entries")));
        }
        let mut list = KeepList::default();
        for (at, entry) in entries.iter().enumerate() {
            let problem = if entry.is_empty() {
                Some("an empty value".to_string())
            } else if entry.len() > MAX_ENTRY_BYTES {
                Some(format!("longer than {MAX_ENTRY_BYTES} bytes"))
            } else if entry.trim() != entry {
                Some("blanks around the value (found values never have them)".to_string())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err((at, problem));
            }
            match entry.strip_prefix('@') {
                Some(domain) if domain.is_empty() || domain.contains(['@', ' ']) => {
                    return Err((at, format!("{entry:?} is no domain (`@example.com`)")));
                }
                Some(domain) => list.domains.push(domain.to_ascii_lowercase().into()),
                None if entry.contains('@') => {
                    list.addresses.insert(entry.to_ascii_lowercase().into());
                }
                None => {
                    list.exact.insert(entry.as_str().into());
                }
            }
        }
        Ok(list)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.addresses.is_empty() && self.domains.is_empty()
    }

    /// Whether `value`, as found in a text, is kept.
    pub fn keeps(&self, value: &str) -> bool {
        if self.exact.contains(value) {
            return true;
        }
        let Some((_, domain)) = value
            .rsplit_once('@')
            .filter(|(local, _)| !local.is_empty())
        else {
            return false;
        };
        if !self.addresses.is_empty() && self.addresses.contains(&*value.to_ascii_lowercase()) {
            return true;
        }
        self.domains.iter().any(|kept| {
            let len = domain.len();
            // The domain itself, or one below it (`mail.example.com` for
            // `@example.com`; never `badexample.com`).
            domain.eq_ignore_ascii_case(kept)
                || (len > kept.len() + 1
                    && domain.is_char_boundary(len - kept.len() - 1)
                    && domain[len - kept.len() - 1..].starts_with('.')
                    && domain[len - kept.len()..].eq_ignore_ascii_case(kept))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> KeepList {
        KeepList::new(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_values_addresses_and_domains_are_kept() {
        let keep = list(&["203.0.113.7", "Support@Acme.com", "@example.org"]);
        for kept in [
            "203.0.113.7",
            "support@acme.com",
            "SUPPORT@ACME.COM",
            "ann@example.org",
            "ann@EXAMPLE.org",
            "ann@mail.example.org",
        ] {
            assert!(keep.keeps(kept), "{kept}");
        }
        for masked in [
            "203.0.113.70",
            "203.0.113.7 ",
            "sales@acme.com",
            "support@acme.com.evil.net",
            "ann@badexample.org",
            "ann@example.org.evil.net",
            "ann@example.or",
            "example.org",
            "@example.org",
        ] {
            assert!(!keep.keeps(masked), "{masked}");
        }
    }

    #[test]
    fn values_other_than_addresses_keep_their_case() {
        let keep = list(&["sk-Proj-Demo0000000000000000"]);
        assert!(keep.keeps("sk-Proj-Demo0000000000000000"));
        assert!(!keep.keeps("sk-proj-demo0000000000000000"));
    }

    #[test]
    fn bad_entries_are_named_by_their_place() {
        let bad = |entries: &[&str]| {
            KeepList::new(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap_err()
        };
        assert_eq!(bad(&["a", ""]), (1, "an empty value".to_string()));
        assert_eq!(bad(&[" a"]).0, 0);
        assert_eq!(bad(&["ok", "@"]).0, 1);
        assert_eq!(bad(&["@a@b"]).0, 0);
        assert_eq!(bad(&[&"x".repeat(MAX_ENTRY_BYTES + 1)]).0, 0);
        assert!(list(&[]).is_empty());
    }

    /// A domain's case is ignored wherever its bytes are not ASCII (no panic on a
    /// boundary inside a character).
    #[test]
    fn internationalised_domains_are_compared_without_splitting_characters() {
        let keep = list(&["@müller.de"]);
        assert!(keep.keeps("ann@müller.de"));
        assert!(keep.keeps("ann@post.müller.de"));
        assert!(!keep.keeps("ann@ümüller.de"));
        assert!(!keep.keeps("ann@ü.de"));
    }
}
