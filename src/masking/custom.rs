//! Detectors from the config: regexes (each with an optional `luhn` or `mod97` check)
//! and word lists (project code names; whole words, optionally ignoring case), each under
//! a type name of its own.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_automata::{Input, meta};

use super::Kind;
use super::bounds;
use super::finance;

/// A check a custom regex's match must pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validator {
    /// The Luhn checksum over its digits (card-like numbers).
    Luhn,
    /// The ISO 7064 mod-97 check (IBAN-like codes).
    Mod97,
}

impl Validator {
    pub fn from_name(name: &str) -> Option<Validator> {
        match name {
            "luhn" => Some(Validator::Luhn),
            "mod97" => Some(Validator::Mod97),
            _ => None,
        }
    }

    fn accepts(self, value: &str) -> bool {
        match self {
            Validator::Luhn => finance::luhn(value.as_bytes()),
            Validator::Mod97 => finance::mod97(value.as_bytes()),
        }
    }
}

/// One configured detector, before it is compiled.
#[derive(Clone, Debug)]
pub enum CustomSpec {
    Regex {
        kind: Kind,
        pattern: String,
        validator: Option<Validator>,
    },
    Words {
        kind: Kind,
        words: Vec<String>,
        ignore_case: bool,
    },
}

/// The compiled custom detectors of one masker.
pub struct CustomDetectors {
    /// All regexes in one multi-pattern regex; pattern i is `regexes[i]`.
    regex: Option<meta::Regex>,
    regexes: Vec<(Kind, Option<Validator>)>,
    words: Vec<(Kind, AhoCorasick)>,
    /// The longest word, in bytes.
    longest_word: usize,
}

impl std::fmt::Debug for CustomDetectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Word lists may be confidential (code names): only counts.
        f.debug_struct("CustomDetectors")
            .field("regexes", &self.regexes.len())
            .field("word_lists", &self.words.len())
            .finish()
    }
}

impl CustomDetectors {
    /// Compiles `specs`; `Err((index, message))` names the first one that does not.
    pub fn new(specs: &[CustomSpec]) -> Result<CustomDetectors, (usize, String)> {
        let mut patterns = Vec::new();
        let mut regexes = Vec::new();
        let mut words = Vec::new();
        let mut longest_word = 0;
        for (i, spec) in specs.iter().enumerate() {
            match spec {
                CustomSpec::Regex {
                    kind,
                    pattern,
                    validator,
                } => {
                    meta::Regex::new(pattern).map_err(|e| (i, format!("invalid regex: {e}")))?;
                    if meta::Regex::new(pattern).is_ok_and(|r| r.is_match("")) {
                        return Err((i, "the regex matches the empty string".into()));
                    }
                    patterns.push(pattern.as_str());
                    regexes.push((kind.clone(), *validator));
                }
                CustomSpec::Words {
                    kind,
                    words: list,
                    ignore_case,
                } => {
                    let list: Vec<&str> = list
                        .iter()
                        .map(|w| w.trim())
                        .filter(|w| !w.is_empty())
                        .collect();
                    if list.is_empty() {
                        return Err((i, "the word list is empty".into()));
                    }
                    longest_word =
                        longest_word.max(list.iter().map(|w| w.len()).max().unwrap_or(0));
                    let automaton = AhoCorasickBuilder::new()
                        .ascii_case_insensitive(*ignore_case)
                        .match_kind(MatchKind::LeftmostLongest)
                        .build(&list)
                        .map_err(|e| (i, format!("word list: {e}")))?;
                    words.push((kind.clone(), automaton));
                }
            }
        }
        let regex = if patterns.is_empty() {
            None
        } else {
            Some(meta::Regex::new_many(&patterns).map_err(|e| (0, format!("invalid regex: {e}")))?)
        };
        Ok(CustomDetectors {
            regex,
            regexes,
            words,
            longest_word,
        })
    }

    pub fn longest_word(&self) -> usize {
        self.longest_word
    }

    /// Appends (start, end, kind) of every match, in no particular order.
    pub fn find(&self, text: &str, out: &mut Vec<(usize, usize, Kind)>) {
        if let Some(regex) = &self.regex {
            let mut at = 0;
            while at <= text.len() {
                let Some(m) = regex.search(&Input::new(text).range(at..)) else {
                    break;
                };
                let (kind, validator) = &self.regexes[m.pattern().as_usize()];
                let value = &text[m.start()..m.end()];
                if !m.is_empty() && validator.is_none_or(|v| v.accepts(value)) {
                    out.push((m.start(), m.end(), kind.clone()));
                    at = m.end();
                } else {
                    // Rejected: look again one character further on.
                    at = m.start() + bounds::after(text, m.start()).map_or(1, char::len_utf8);
                }
            }
        }
        for (kind, automaton) in &self.words {
            for m in automaton.find_iter(text) {
                let whole_word = !bounds::before(text, m.start()).is_some_and(bounds::is_word)
                    && !bounds::after(text, m.end()).is_some_and(bounds::is_word);
                // A word that starts or ends inside a character is not one (case folding is
                // ASCII only, so matches of ASCII words are on boundaries anyway).
                if whole_word && text.is_char_boundary(m.start()) && text.is_char_boundary(m.end())
                {
                    out.push((m.start(), m.end(), kind.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> Kind {
        Kind(name.into())
    }

    #[test]
    fn regexes_with_validators_and_whole_words() {
        let custom = CustomDetectors::new(&[
            CustomSpec::Regex {
                kind: kind("EMPLOYEE_ID"),
                pattern: "EMP-[0-9]{6}".into(),
                validator: None,
            },
            CustomSpec::Regex {
                kind: kind("CARD_REF"),
                pattern: "[0-9]{16}".into(),
                validator: Some(Validator::Luhn),
            },
            CustomSpec::Words {
                kind: kind("CODENAME"),
                words: vec!["bluebird".into(), "Night Jar".into()],
                ignore_case: true,
            },
        ])
        .unwrap();
        let text = "EMP-123456 paid 4111111111111111 not 4111111111111112; BlueBird and night jar, not bluebirds";
        let mut out = Vec::new();
        custom.find(text, &mut out);
        let got: Vec<(&str, &str)> = out
            .iter()
            .map(|(s, e, k)| (&text[*s..*e], k.name()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("EMP-123456", "EMPLOYEE_ID"),
                ("4111111111111111", "CARD_REF"),
                ("BlueBird", "CODENAME"),
                ("night jar", "CODENAME"),
            ]
        );
    }

    #[test]
    fn bad_specs_are_named() {
        let bad = CustomDetectors::new(&[
            CustomSpec::Words {
                kind: kind("A"),
                words: vec!["x".into()],
                ignore_case: false,
            },
            CustomSpec::Regex {
                kind: kind("B"),
                pattern: "(".into(),
                validator: None,
            },
        ]);
        assert_eq!(bad.unwrap_err().0, 1);
        assert!(
            CustomDetectors::new(&[CustomSpec::Words {
                kind: kind("A"),
                words: vec![" ".into()],
                ignore_case: false
            }])
            .is_err()
        );
        assert!(
            CustomDetectors::new(&[CustomSpec::Regex {
                kind: kind("A"),
                pattern: "x*".into(),
                validator: None
            }])
            .is_err()
        );
    }
}
