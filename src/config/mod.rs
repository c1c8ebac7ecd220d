//! Configuration: `file -> spec -> validate -> Plan`. The TOML file is parsed into
//! plain serde types ([`spec`]), every rule is checked with all errors collected, each
//! naming its key path and line, and the result is compiled into an immutable [`Plan`]
//! that the server swaps in atomically.

pub mod acme;
mod anomalies;
mod capture;
mod checks;
mod compile;
mod egress;
mod locate;
pub mod masking;
mod plan;
mod pools;
mod routes;
mod security;
pub mod spec;
mod tls;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use compile::compile;
pub use locate::Locator;
pub use plan::{ADMIN_EXPOSED, BodyTimeouts, DEFAULT_MAX_REQUEST_HEAD, ListenerPlan, Plan};

use crate::balance::SplitMix;
use crate::telemetry::Telemetry;
use crate::upstream::Registry;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    /// Key path, e.g. `routes[2].match.path_regex`.
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.line) {
            (false, Some(line)) => write!(f, "{} (line {line}): {}", self.path, self.message),
            (false, None) => write!(f, "{}: {}", self.path, self.message),
            (true, Some(line)) => write!(f, "line {line}: {}", self.message),
            (true, None) => write!(f, "{}", self.message),
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize)]
#[serde(transparent)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn single(message: String) -> Self {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            line: None,
            message,
        }])
    }
}

/// Shared inputs of plan compilation that outlive any one plan.
pub struct CompileContext<'a> {
    /// Read only: a kept endpoint gets the state the plan in force has for it. New
    /// state is registered when the plan is swapped in (`Registry::adopt`), so
    /// compiling a plan that is then refused changes nothing.
    pub registry: &'a Registry,
    pub telemetry: &'a Arc<Telemetry>,
    pub audit: &'a Arc<crate::security::audit::AuditLog>,
    pub controls: &'a crate::canary::Controls,
    pub rng: Arc<SplitMix>,
}

/// Reads, validates and compiles a config file. Relative paths inside it (certificates,
/// CA files) are taken relative to the file's folder.
pub fn load_file(path: &Path, context: &CompileContext<'_>) -> Result<Plan, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(format!("cannot read config file {}: {e}", path.display()))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    load_str(&text, base, context)
}

/// Runs `compile` with a context of its own (registry, metrics, audit log, canary
/// controls), as `junction check` compiles: nothing running sees or keeps anything.
pub fn checking<R>(compile: impl FnOnce(&CompileContext<'_>) -> R) -> R {
    let registry = Registry::default();
    let telemetry = Arc::new(Telemetry::default());
    let audit = Arc::new(crate::security::audit::AuditLog::default());
    let controls = crate::canary::Controls::default();
    let context = CompileContext {
        registry: &registry,
        telemetry: &telemetry,
        audit: &audit,
        controls: &controls,
        rng: Arc::new(SplitMix::with_seed(0)),
    };
    compile(&context)
}

/// Validates and compiles config text.
pub fn load_str(
    text: &str,
    base: &Path,
    context: &CompileContext<'_>,
) -> Result<Plan, ConfigErrors> {
    let locator = Locator::new(text);
    let spec: spec::ConfigSpec = toml::from_str(text).map_err(|error| {
        let offset = error.span().map(|span| span.start);
        let path = offset.and_then(|o| locator.path_at(o)).unwrap_or_default();
        let line = offset.map(|o| locator.line_of(o));
        let mut message = error.message().trim().to_string();
        if message.is_empty() {
            // The TOML parser names no reason for some syntax errors (a control
            // character in a comment): say where, rather than print an empty error.
            message = match offset.map(|o| locator.column_of(o)) {
                Some(column) => format!("invalid TOML at column {column}"),
                None => "invalid TOML".to_string(),
            };
        }
        ConfigErrors(vec![ConfigError {
            path,
            line,
            message,
        }])
    })?;
    let mut plan = compile(spec, base, context).map_err(|errors| {
        ConfigErrors(
            errors
                .into_iter()
                .map(|(path, message)| ConfigError {
                    line: locator.line_of_path(&path),
                    path,
                    message,
                })
                .collect(),
        )
    })?;
    for warning in &mut plan.warnings {
        warning.line = locator.line_of_path(&warning.path);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Plan, ConfigErrors> {
        checking(|context| load_str(text, Path::new("."), context))
    }

    /// Found by the `config` fuzz target: the TOML parser gives no message for a control
    /// character in a comment, and `junction check` printed an empty error.
    #[test]
    fn a_syntax_error_without_a_reason_still_says_where() {
        let Err(errors) = load("[admin]\n# a comment with a form feed: \u{c} here\n") else {
            panic!("loaded");
        };
        assert_eq!(errors.0.len(), 1, "{errors}");
        let error = &errors.0[0];
        assert_eq!(error.line, Some(2));
        assert_eq!(error.message, "invalid TOML at column 31");
    }

    #[test]
    fn an_unknown_cache_scope_is_named_by_its_key_path_and_line() {
        let text = "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\n[[pools]]\nname = \"p\"\n\
                    endpoints = [{ url = \"http://127.0.0.1:9\" }]\n\n[[routes]]\nname = \"r\"\n\
                    pool = \"p\"\n\n[routes.mask]\ncache_scope = \"tenant\"\n";
        let Err(errors) = load(text) else {
            panic!("loaded");
        };
        assert_eq!(
            errors.to_string().trim(),
            "routes[0].mask.cache_scope (line 14): unknown variant `tenant`, expected `client` or `route`"
        );
    }
}
