//! A masker for the body maskers' unit tests: `SECRET-<digits>` and
//! `<letters>@example.org`, every value with one action.

use regex::Regex;

use super::{Action, Blocked, Findings, Kind, Span, TextMasker, Vault};

pub struct SampleMasker {
    pattern: Regex,
    pub action: Action,
    pub look_behind: usize,
}

impl SampleMasker {
    pub fn new(action: Action) -> Self {
        SampleMasker {
            pattern: Regex::new(r"SECRET-[0-9]+|[a-z]+@example\.org").unwrap(),
            action,
            look_behind: 32,
        }
    }
}

impl TextMasker for SampleMasker {
    fn find(&self, text: &str, spans: &mut Vec<Span>) {
        for found in self.pattern.find_iter(text) {
            let kind = if found.as_str().starts_with("SECRET") {
                "SECRET"
            } else {
                "EMAIL_ADDRESS"
            };
            spans.push(Span {
                start: found.start(),
                end: found.end(),
                kind: Kind(kind.into()),
                by_context: false,
            });
        }
    }

    fn replace(
        &self,
        span: &Span,
        value: &str,
        vault: &mut Vault,
        out: &mut String,
        findings: &mut Findings,
    ) -> Result<(), Blocked> {
        findings.add(&span.kind, self.action);
        match self.action {
            Action::Block => {
                return Err(Blocked {
                    kind: span.kind.clone(),
                });
            }
            Action::Pseudonymize => out.push_str(vault.pseudonym(&span.kind, value)),
            Action::Log => out.push_str(value),
            _ => {
                out.push('[');
                out.push_str(span.kind.name());
                out.push(']');
            }
        }
        Ok(())
    }

    fn look_behind(&self) -> usize {
        self.look_behind
    }
}

/// A sample masker with `action`, as the stream tests take it; the redacting one is
/// compiled once for the many runs of the split-point tests.
pub fn shared(action: Action) -> Option<std::sync::Arc<dyn TextMasker>> {
    use std::sync::{Arc, OnceLock};
    static REDACT: OnceLock<Arc<SampleMasker>> = OnceLock::new();
    if action == Action::Redact {
        return Some(
            REDACT
                .get_or_init(|| Arc::new(SampleMasker::new(action)))
                .clone(),
        );
    }
    Some(Arc::new(SampleMasker::new(action)))
}
