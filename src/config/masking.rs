//! The `mask` table of a route: which directions are masked, the action per type, the
//! custom detectors, and what happens to a body that cannot be masked. Validated once at
//! load, every problem named by its key path; compiled into a `masking::Policy`.
//!
//! ```toml
//! [routes.mask]
//! directions = "request"          # "request" (default) | "response" | "both"
//! on_error = "refuse"             # (default) or "pass"
//! max_body = "1MiB"               # (default)
//! compressed = "refuse"           # (default) or "decode"
//! hash_key_env = "JUNCTION_MASK_KEY"  # the variable holding the `hash` action's key
//! names = false                   # the optional PERSON / STREET_ADDRESS detectors
//! cache_entries = 8192            # (default) texts read before, answered by hash; 0: off
//! cache_scope = "client"          # (default) each client's texts apart, or "route"
//! identifiers = false             # also mask `user`, `safety_identifier`, `prompt_cache_key`, `metadata`
//! keep = ["support@acme.com", "@acme.com"]   # values (or a domain's addresses) never masked
//! types = { EMAIL_ADDRESS = "pseudonymize", CREDIT_CARD = "block", IP_ADDRESS = "off" }
//! custom = [
//!   { name = "EMPLOYEE_ID", regex = "EMP-[0-9]{6}" },
//!   { name = "CARD_REF", regex = "[0-9]{16}", validator = "luhn", action = "hash" },
//!   { name = "CODENAME", words = ["bluebird", "nightjar"] },   # ignore_case = true
//! ]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::checks::Errors;
use super::spec::{
    CacheScopeSpec, CompressedSpec, DirectionsSpec, MaskSpec, OnErrorSpec, SizeSpec,
};
use crate::masking::custom::{CustomSpec, Validator};
use crate::masking::{self, Action, Builtin, Compressed, Kind, Masker, OnError, Policy};
use crate::units::parse_byte_size;

/// Longest custom type name (it appears in `[NAME]`, `<NAME_1>` and metric labels).
const NAME_MAX: usize = 64;

/// An action name, or `None` for "off"; `Err` for an unknown name.
fn parse_action(text: &str) -> Result<Option<Action>, String> {
    Ok(Some(match text {
        "redact" => Action::Redact,
        "hash" => Action::Hash,
        "partial" => Action::Partial,
        "pseudonymize" => Action::Pseudonymize,
        "block" => Action::Block,
        "log" => Action::Log,
        "off" => return Ok(None),
        other => {
            return Err(format!(
                "unknown action {other:?} (redact, hash, partial, pseudonymize, block, log or off)"
            ));
        }
    }))
}

/// Validates a route's `mask` table (at `path`, e.g. `routes[0].mask`) and compiles it.
/// The hash key is read from the environment variable `hash_key_env` names.
pub fn compile_mask(spec: &MaskSpec, path: &str, errors: &mut Errors) -> Option<Policy> {
    compile_mask_with(spec, path, errors, &|name| std::env::var(name).ok())
}

fn compile_mask_with(
    spec: &MaskSpec,
    path: &str,
    errors: &mut Errors,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Policy> {
    let before = errors.len();
    let mut builder = Masker::builder();
    if spec.names {
        builder = builder.names();
    }

    // Custom detectors first: `types` may name them.
    let mut custom_actions: BTreeMap<String, (usize, Option<Action>)> = BTreeMap::new();
    let mut custom_specs = Vec::new();
    for (i, custom) in spec.custom.iter().enumerate() {
        let key = format!("{path}.custom[{i}]");
        let name = custom.name.as_str();
        if name.is_empty()
            || name.len() > NAME_MAX
            || !name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            errors.push((
                format!("{key}.name"),
                format!("{name:?} must be 1 to {NAME_MAX} upper-case letters, digits or '_'"),
            ));
            continue;
        }
        if Builtin::from_name(name).is_some() {
            errors.push((
                format!("{key}.name"),
                format!("{name} is a built-in type; set its action in `types`"),
            ));
            continue;
        }
        if custom_actions.contains_key(name) {
            errors.push((format!("{key}.name"), format!("{name} is defined twice")));
            continue;
        }
        let action = match custom.action.as_deref().map(parse_action) {
            None => Some(Action::Redact),
            Some(Ok(action)) => action,
            Some(Err(e)) => {
                errors.push((format!("{key}.action"), e));
                continue;
            }
        };
        let kind = Kind(name.into());
        let detector = match (&custom.regex, &custom.words) {
            (Some(pattern), None) => {
                if custom.ignore_case.is_some() {
                    errors.push((
                        format!("{key}.ignore_case"),
                        "applies to `words` only (use (?i) in a regex)".into(),
                    ));
                }
                let validator = match custom.validator.as_deref() {
                    None => None,
                    Some(v) => match Validator::from_name(v) {
                        Some(v) => Some(v),
                        None => {
                            errors.push((
                                format!("{key}.validator"),
                                format!("unknown validator {v:?} (luhn or mod97)"),
                            ));
                            continue;
                        }
                    },
                };
                CustomSpec::Regex {
                    kind,
                    pattern: pattern.clone(),
                    validator,
                }
            }
            (None, Some(words)) => {
                if custom.validator.is_some() {
                    errors.push((format!("{key}.validator"), "applies to `regex` only".into()));
                }
                if words.iter().all(|w| w.trim().is_empty()) {
                    errors.push((format!("{key}.words"), "the word list is empty".into()));
                    continue;
                }
                CustomSpec::Words {
                    kind,
                    words: words.clone(),
                    ignore_case: custom.ignore_case.unwrap_or(true),
                }
            }
            _ => {
                errors.push((key, "needs one of `regex` or `words`".into()));
                continue;
            }
        };
        // Checked here, so a bad regex is named by its own key path.
        if let Err((_, message)) =
            masking::custom::CustomDetectors::new(std::slice::from_ref(&detector))
        {
            let field = if custom.regex.is_some() {
                "regex"
            } else {
                "words"
            };
            errors.push((format!("{key}.{field}"), message));
            continue;
        }
        custom_actions.insert(name.to_string(), (custom_specs.len(), action));
        custom_specs.push(detector);
    }

    let mut uses_hash = None;
    for (name, action_text) in &spec.types {
        let key = format!("{path}.types.{name}");
        let action = match parse_action(action_text) {
            Ok(action) => action,
            Err(e) => {
                errors.push((key, e));
                continue;
            }
        };
        if let Some(builtin) = Builtin::from_name(name) {
            builder = match action {
                Some(action) => builder.action(builtin, action),
                None => builder.off(builtin),
            };
        } else if let Some(entry) = custom_actions.get_mut(name) {
            entry.1 = action;
        } else {
            let known: BTreeSet<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
            errors.push((
                key,
                format!(
                    "unknown type {name:?} (built-in: {}; or a `custom` detector's name)",
                    known.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
            continue;
        }
        if action == Some(Action::Hash) && uses_hash.is_none() {
            uses_hash = Some(format!("{path}.types.{name}"));
        }
    }
    let mut custom_list: Vec<(&String, &(usize, Option<Action>))> = custom_actions.iter().collect();
    custom_list.sort_by_key(|(_, (index, _))| *index);
    for (name, (index, action)) in custom_list {
        if let Some(action) = action {
            if *action == Action::Hash && uses_hash.is_none() {
                uses_hash = Some(format!("{path}.custom[{index}].action ({name})"));
            }
            builder = builder.custom(custom_specs[*index].clone(), *action);
        }
    }

    match (&spec.hash_key_env, &uses_hash) {
        (Some(var), _) if var.is_empty() => {
            errors.push((format!("{path}.hash_key_env"), "must name an environment variable".into()));
        }
        (Some(var), Some(user)) => match env(var) {
            Some(key) if !key.is_empty() => builder = builder.hash_key(key.into_bytes()),
            _ => errors.push((
                format!("{path}.hash_key_env"),
                format!("the environment variable {var} is not set (the hash action of {user} needs its key)"),
            )),
        },
        (None, Some(user)) => errors.push((
            format!("{path}.hash_key_env"),
            format!("{user} uses the hash action: name the environment variable holding its key"),
        )),
        (Some(var), None) => {
            if let Some(key) = env(var).filter(|k| !k.is_empty()) {
                builder = builder.hash_key(key.into_bytes());
            }
        }
        (None, None) => {}
    }

    let max_body = match &spec.max_body {
        None => masking::policy::DEFAULT_MAX_BODY,
        Some(size) => {
            let bytes = match size {
                SizeSpec::Bytes(bytes) => Ok(*bytes),
                SizeSpec::Text(text) => parse_byte_size(text),
            };
            match bytes {
                Ok(0) => {
                    errors.push((
                        format!("{path}.max_body"),
                        "must be greater than zero".into(),
                    ));
                    0
                }
                Ok(bytes) => usize::try_from(bytes).unwrap_or(usize::MAX),
                Err(e) => {
                    errors.push((format!("{path}.max_body"), e));
                    0
                }
            }
        }
    };

    match spec.cache_entries {
        Some(entries) if entries > masking::MAX_CACHE_ENTRIES => errors.push((
            format!("{path}.cache_entries"),
            format!(
                "{entries} is more than {} (0 turns the cache off)",
                masking::MAX_CACHE_ENTRIES
            ),
        )),
        Some(entries) => builder = builder.cache_entries(entries),
        None => {}
    }
    builder = builder.cache_scope(match spec.cache_scope {
        CacheScopeSpec::Client => masking::CacheScope::Client,
        CacheScopeSpec::Route => masking::CacheScope::Route,
    });
    builder = builder.identifiers(spec.identifiers);
    match masking::keep::KeepList::new(&spec.keep) {
        Ok(keep) => builder = builder.keep(keep),
        Err((at, problem)) => errors.push((format!("{path}.keep[{at}]"), problem)),
    }

    if errors.len() > before {
        return None;
    }
    let masker = match builder.build() {
        Ok(masker) => masker,
        Err(e) => {
            // Every case is checked above with its own key; this is the backstop.
            errors.push((path.to_string(), e.to_string()));
            return None;
        }
    };
    let directions = spec.directions.unwrap_or_default();
    Some(Policy {
        masker: Arc::new(masker),
        request: directions != DirectionsSpec::Response,
        response: directions != DirectionsSpec::Request,
        on_error: match spec.on_error.unwrap_or_default() {
            OnErrorSpec::Refuse => OnError::Refuse,
            OnErrorSpec::Pass => OnError::Pass,
        },
        max_body,
        compressed: match spec.compressed.unwrap_or_default() {
            CompressedSpec::Refuse => Compressed::Refuse,
            CompressedSpec::Decode => Compressed::Decode,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::{Findings, TextMasker, Vault, mask_text};

    fn spec(toml_text: &str) -> MaskSpec {
        toml::from_str(toml_text).expect("a MaskSpec")
    }

    fn compile(toml_text: &str) -> (Option<Policy>, Errors) {
        let mut errors = Errors::new();
        let env = |name: &str| (name == "TEST_MASK_KEY").then(|| "k3y".to_string());
        let policy = compile_mask_with(&spec(toml_text), "routes[0].mask", &mut errors, &env);
        (policy, errors)
    }

    fn mask(policy: &Policy, text: &str) -> String {
        let mut out = String::new();
        mask_text(
            policy.masker.as_ref() as &dyn TextMasker,
            text,
            &mut Vault::default(),
            &mut out,
            &mut Findings::default(),
        )
        .expect("not blocked");
        out
    }

    #[test]
    fn defaults_fail_closed_and_mask_requests() {
        let (policy, errors) = compile("");
        assert!(errors.is_empty());
        let policy = policy.unwrap();
        assert!(policy.request && !policy.response);
        assert_eq!(policy.on_error, OnError::Refuse);
        assert_eq!(policy.compressed, Compressed::Refuse);
        assert_eq!(policy.max_body, 1 << 20);
        assert_eq!(mask(&policy, "a@example.org"), "[EMAIL_ADDRESS]");
        assert!(format!("{:?}", policy.masker).contains("cache_entries: Some(8192)"));
        assert!(format!("{:?}", policy.masker).contains("cache_scope: Client"));
    }

    #[test]
    fn the_cache_and_the_identifiers_are_configured() {
        for (line, shown) in [
            ("cache_entries = 0", "cache_entries: None"),
            ("cache_entries = 1000", "cache_entries: Some(1024)"),
            ("cache_scope = \"route\"", "cache_scope: Route"),
            ("cache_scope = \"client\"", "cache_scope: Client"),
            ("identifiers = true", "identifiers: true"),
            ("", "identifiers: false"),
        ] {
            let (policy, errors) = compile(line);
            assert_eq!(errors, Errors::new());
            assert!(
                format!("{:?}", policy.unwrap().masker).contains(shown),
                "{line}"
            );
        }
    }

    #[test]
    fn the_proposed_table() {
        let (policy, errors) = compile(
            r#"
            directions = "both"
            on_error = "pass"
            max_body = "256KiB"
            compressed = "decode"
            hash_key_env = "TEST_MASK_KEY"
            names = true
            types = { EMAIL_ADDRESS = "pseudonymize", CREDIT_CARD = "block", IP_ADDRESS = "off", CARD_REF = "hash" }
            custom = [
              { name = "EMPLOYEE_ID", regex = "EMP-[0-9]{6}" },
              { name = "CARD_REF", regex = "REF[0-9]{16}", validator = "luhn" },
              { name = "CODENAME", words = ["bluebird", "nightjar"] },
            ]
            "#,
        );
        assert_eq!(errors, Errors::new());
        let policy = policy.unwrap();
        assert!(policy.request && policy.response);
        assert_eq!(policy.on_error, OnError::Pass);
        assert_eq!(policy.compressed, Compressed::Decode);
        assert_eq!(policy.max_body, 256 << 10);
        let masked = mask(&policy, "EMP-123456 from 10.0.0.1 is on BlueBird");
        assert_eq!(masked, "[EMPLOYEE_ID] from 10.0.0.1 is on [CODENAME]");
        assert!(mask(&policy, "REF4111111111111111").starts_with("[CARD_REF:"));
        assert_eq!(
            policy.masker.action(&Kind("PERSON".into())),
            Some(Action::Redact)
        );
    }

    #[test]
    fn every_problem_is_named_by_its_key_path() {
        let (policy, errors) = compile(
            r#"
            types = { EMAIL = "redact", PHONE_NUMBER = "scramble", JWT = "hash" }
            custom = [
              { name = "BAD_RE", regex = "(" },
              { name = "V", regex = "x", validator = "crc32" },
              { name = "EMPTY", words = [] },
              { name = "lower", words = ["a"] },
              { name = "BOTH", regex = "x", words = ["y"] },
              { name = "EMAIL_ADDRESS", regex = "x" },
            ]
            max_body = "lots"
            cache_entries = 2000000
            keep = ["ok@example.com", ""]
            "#,
        );
        assert!(policy.is_none());
        let paths: BTreeSet<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        for path in [
            "routes[0].mask.types.EMAIL",
            "routes[0].mask.types.PHONE_NUMBER",
            "routes[0].mask.hash_key_env",
            "routes[0].mask.custom[0].regex",
            "routes[0].mask.custom[1].validator",
            "routes[0].mask.custom[2].words",
            "routes[0].mask.custom[3].name",
            "routes[0].mask.custom[4]",
            "routes[0].mask.custom[5].name",
            "routes[0].mask.max_body",
            "routes[0].mask.cache_entries",
            "routes[0].mask.keep[1]",
        ] {
            assert!(paths.contains(path), "{path} not in {errors:?}");
        }
    }

    #[test]
    fn a_hash_key_variable_that_is_not_set_is_named() {
        let (_, errors) = compile(
            r#"
            hash_key_env = "JUNCTION_TEST_UNSET_KEY"
            types = { EMAIL_ADDRESS = "hash" }
            "#,
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "routes[0].mask.hash_key_env");
        assert!(errors[0].1.contains("JUNCTION_TEST_UNSET_KEY"));
        // The real environment: the variable is surely not set there either.
        let mut errors = Errors::new();
        let spec = spec("hash_key_env = \"JUNCTION_TEST_UNSET_KEY\"\ntypes = { JWT = \"hash\" }");
        assert!(compile_mask(&spec, "routes[1].mask", &mut errors).is_none());
        assert_eq!(errors[0].0, "routes[1].mask.hash_key_env");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<MaskSpec>("direction = \"both\"").is_err());
        assert!(toml::from_str::<MaskSpec>("directions = \"sideways\"").is_err());
        assert!(toml::from_str::<MaskSpec>("custom = [{ name = \"A\", regexp = \"x\" }]").is_err());
    }
}
