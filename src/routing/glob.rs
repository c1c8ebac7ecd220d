//! Glob patterns for model names and hosts: `*` matches any run of characters, `?`
//! one character. ASCII case-insensitive when asked (hosts).

#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    ignore_case: bool,
}

impl Glob {
    pub fn new(pattern: &str, ignore_case: bool) -> Self {
        let pattern = if ignore_case {
            pattern.to_ascii_lowercase()
        } else {
            pattern.to_string()
        };
        Glob {
            pattern,
            ignore_case,
        }
    }

    pub fn is_literal(&self) -> bool {
        !self.pattern.contains(['*', '?'])
    }

    pub fn matches(&self, text: &str) -> bool {
        wildcard_match(self.pattern.as_bytes(), text.as_bytes(), self.ignore_case)
    }
}

/// Iterative wildcard matching with single-star backtracking: linear in practice,
/// never exponential.
fn wildcard_match(pattern: &[u8], text: &[u8], ignore_case: bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    let same = |a: u8, b: u8| {
        if ignore_case {
            a == b.to_ascii_lowercase()
        } else {
            a == b
        }
    };
    while t < text.len() {
        if p < pattern.len()
            && (pattern[p] == b'?' || (pattern[p] != b'*' && same(pattern[p], text[t])))
        {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let glob = Glob::new("llama-*", false);
        assert!(glob.matches("llama-3-70b"));
        assert!(glob.matches("llama-"));
        assert!(!glob.matches("Llama-3"));
        assert!(!glob.matches("mistral"));
        assert!(Glob::new("*.example.com", true).matches("API.Example.com"));
        assert!(!Glob::new("*.example.com", true).matches("example.com"));
        assert!(Glob::new("gpt-?o", false).matches("gpt-4o"));
        assert!(Glob::new("a*b*c", false).matches("axxbyyc"));
        assert!(!Glob::new("a*b*c", false).matches("axxbyy"));
        assert!(Glob::new("*", false).matches(""));
    }
}
