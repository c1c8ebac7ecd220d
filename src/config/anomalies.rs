//! The `anomalies` table of a route: which detectors run, with what action, thresholds,
//! warm-up and cool-down. Validated once at load, every problem named by its key path;
//! compiled into an `inspect::anomaly::Anomalies` whose findings go to the audit log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::checks::{Errors, bytes_of, duration_or};
use super::spec::{AnomaliesSpec, BaselineSpec, MaskSpec, OutboundVolumeSpec, SizeSpec};
use crate::inspect::anomaly::{
    Action, Anomalies, AnomalyConfig, AuthFailuresRule, Baseline, ErrorRateRule, InjectionRule,
    OutboundRule, OutboundVolume, Report, SecretsRule, default_injection_rules,
};
use crate::masking::Builtin;
use crate::security::audit::AuditLog;

const DEFAULT_MAX_CLIENTS: usize = 10_000;

/// Validates a route's `anomalies` table (at `path`) and compiles it; detections go to
/// `audit` (when one is configured) and the log, named by `route`.
pub fn compile_anomalies(
    spec: &AnomaliesSpec,
    path: &str,
    route: &str,
    audit: Option<Arc<AuditLog>>,
    errors: &mut Errors,
) -> Option<Arc<Anomalies>> {
    let before = errors.len();
    let mut action = |text: &Option<String>, key: &str, default: Action, allowed: &[Action]| {
        let Some(text) = text else { return default };
        match Action::parse(text).filter(|a| allowed.contains(a)) {
            Some(action) => action,
            None => {
                let names: Vec<&str> = allowed.iter().map(|a| a.name()).collect();
                errors.push((
                    format!("{path}.{key}.action"),
                    format!("{text:?} is not one of {}", names.join(", ")),
                ));
                default
            }
        }
    };
    const ALL: &[Action] = &[Action::Log, Action::Tag, Action::Block];
    let rate_action = spec
        .rate
        .as_ref()
        .map(|r| action(&r.action, "rate", Action::Log, ALL));
    let tokens_action = spec
        .tokens
        .as_ref()
        .map(|r| action(&r.action, "tokens", Action::Log, ALL));
    let size_action = spec
        .response_size
        .as_ref()
        .map(|r| action(&r.action, "response_size", Action::Log, ALL));
    // A version's error spike is not one client's doing: logged, never pinned on one.
    let error_action = spec
        .error_rate
        .as_ref()
        .map(|r| action(&r.action, "error_rate", Action::Log, &[Action::Log]));
    let secrets_action = spec
        .response_secrets
        .as_ref()
        .map(|r| action(&r.action, "response_secrets", Action::Log, ALL));
    let injection_action = spec
        .prompt_injection
        .as_ref()
        .map(|r| action(&r.action, "prompt_injection", Action::Block, ALL));
    let auth_action = spec
        .auth_failures
        .as_ref()
        .map(|r| action(&r.action, "auth_failures", Action::Block, ALL));

    let baseline = |spec: &BaselineSpec,
                    key: &str,
                    action: Action,
                    warmup: u32,
                    floor: f64,
                    errors: &mut Errors| {
        let z = spec.z.unwrap_or(6.0);
        if !(z > 0.0 && z.is_finite()) {
            errors.push((format!("{path}.{key}.z"), "must be above 0".into()));
        }
        let min_ratio = spec.min_ratio.unwrap_or(2.0);
        if !(min_ratio >= 1.0 && min_ratio.is_finite()) {
            errors.push((
                format!("{path}.{key}.min_ratio"),
                "must be 1 or more".into(),
            ));
        }
        let floor = spec.floor.unwrap_or(floor);
        if !(floor >= 0.0 && floor.is_finite()) {
            errors.push((format!("{path}.{key}.floor"), "must be 0 or more".into()));
        }
        Baseline {
            action,
            z,
            warmup: spec.warmup.unwrap_or(warmup),
            floor,
            min_ratio,
        }
    };
    let rate = spec
        .rate
        .as_ref()
        .zip(rate_action)
        .map(|(s, a)| baseline(s, "rate", a, 6, 5.0, errors));
    let rate_window = duration_or(
        &spec.rate.as_ref().and_then(|r| r.window.clone()),
        Duration::from_secs(10),
        &format!("{path}.rate.window"),
        errors,
    );
    let tokens = spec
        .tokens
        .as_ref()
        .zip(tokens_action)
        .map(|(s, a)| baseline(s, "tokens", a, 20, 200.0, errors));
    let response_size = spec
        .response_size
        .as_ref()
        .zip(size_action)
        .map(|(s, a)| baseline(s, "response_size", a, 20, 4096.0, errors));
    let error_rate = spec
        .error_rate
        .as_ref()
        .zip(error_action)
        .map(|(s, action)| {
            let min_share = s.min_share.unwrap_or(0.2);
            if !(0.0..=1.0).contains(&min_share) {
                errors.push((
                    format!("{path}.error_rate.min_share"),
                    "a share between 0 and 1".into(),
                ));
            }
            ErrorRateRule {
                action,
                z: s.z.unwrap_or(4.0),
                min_share,
                min_requests: s.min_requests.unwrap_or(20),
                warmup: s.warmup.unwrap_or(3),
            }
        });
    let response_secrets =
        spec.response_secrets
            .as_ref()
            .zip(secrets_action)
            .and_then(|(s, action)| {
                // Masking's detectors find them: every type but those left out is looked for.
                let mut types = BTreeMap::new();
                if let Some(wanted) = &s.types {
                    for (i, name) in wanted.iter().enumerate() {
                        if Builtin::from_name(name).is_none() {
                            errors.push((
                                format!("{path}.response_secrets.types[{i}]"),
                                format!(
                                    "{name:?} is not a built-in type (docs/masking.md lists them)"
                                ),
                            ));
                        }
                    }
                    for builtin in Builtin::ALL {
                        if !wanted.iter().any(|w| w == builtin.name()) {
                            types.insert(builtin.name().to_owned(), "off".to_owned());
                        }
                    }
                }
                let mask = MaskSpec {
                    types,
                    ..MaskSpec::default()
                };
                let policy = super::masking::compile_mask(
                    &mask,
                    &format!("{path}.response_secrets"),
                    errors,
                )?;
                Some(SecretsRule {
                    action,
                    finder: policy.masker.clone(),
                })
            });
    let prompt_injection =
        spec.prompt_injection
            .as_ref()
            .zip(injection_action)
            .map(|(s, action)| {
                let mut rules = if s.builtin.unwrap_or(true) {
                    default_injection_rules()
                } else {
                    Vec::new()
                };
                for (i, rule) in s.rules.iter().enumerate() {
                    match Regex::new(&format!("(?i){}", rule.regex)) {
                        Ok(regex) => {
                            rules.push((rule.role.clone().unwrap_or_else(|| "*".into()), regex))
                        }
                        Err(error) => errors.push((
                            format!("{path}.prompt_injection.rules[{i}].regex"),
                            format!("invalid regex: {error}"),
                        )),
                    }
                }
                if rules.is_empty() {
                    errors.push((
                        format!("{path}.prompt_injection"),
                        "no rule is left: keep builtin = true or add rules".into(),
                    ));
                }
                InjectionRule { action, rules }
            });
    let auth_failures = spec
        .auth_failures
        .as_ref()
        .zip(auth_action)
        .map(|(s, action)| {
            let max = s.max.unwrap_or(10);
            if max == 0 {
                errors.push((
                    format!("{path}.auth_failures.max"),
                    "must be at least 1".into(),
                ));
            }
            AuthFailuresRule {
                action,
                max,
                window: duration_or(
                    &s.window,
                    Duration::from_secs(60),
                    &format!("{path}.auth_failures.window"),
                    errors,
                ),
            }
        });
    let cooldown = duration_or(
        &spec.cooldown,
        Duration::from_secs(300),
        &format!("{path}.cooldown"),
        errors,
    );
    let max_clients = spec.max_clients.unwrap_or(DEFAULT_MAX_CLIENTS);
    if !(8..=10_000_000).contains(&max_clients) {
        errors.push((
            format!("{path}.max_clients"),
            "between 8 and 10000000".into(),
        ));
    }
    let report = reporter(route, audit);
    (errors.len() == before).then(|| {
        Arc::new(Anomalies::reporting(
            AnomalyConfig {
                rate,
                rate_window,
                tokens,
                response_size,
                error_rate,
                response_secrets,
                prompt_injection,
                auth_failures,
                cooldown,
                max_clients,
            },
            report,
        ))
    })
}

/// Validates an egress listener's `outbound_volume` table (at `path`) and compiles it;
/// detections go to `audit` and the log, named by the listener.
pub fn compile_outbound(
    spec: &OutboundVolumeSpec,
    path: &str,
    egress: &str,
    audit: Option<Arc<AuditLog>>,
    errors: &mut Errors,
) -> Option<Arc<OutboundVolume>> {
    let before = errors.len();
    let action = match spec.action.as_deref() {
        None | Some("log") => Action::Log,
        Some("block") => Action::Block,
        Some(other) => {
            errors.push((
                format!("{path}.action"),
                format!("{other:?} is not one of log, block"),
            ));
            Action::Log
        }
    };
    let mut size = |value: &Option<SizeSpec>, key: &str| {
        let value = value.as_ref()?;
        bytes_of(value, &format!("{path}.{key}"), errors)
    };
    let floor = size(&spec.floor, "floor").unwrap_or(1 << 20) as f64;
    let max_bytes = size(&spec.max_bytes, "max_bytes");
    let z = spec.z.unwrap_or(6.0);
    if !(z > 0.0 && z.is_finite()) {
        errors.push((format!("{path}.z"), "must be above 0".into()));
    }
    let window = duration_or(
        &spec.window,
        Duration::from_secs(60),
        &format!("{path}.window"),
        errors,
    );
    let cooldown = duration_or(
        &spec.cooldown,
        Duration::from_secs(600),
        &format!("{path}.cooldown"),
        errors,
    );
    if errors.len() > before {
        return None;
    }
    let rule = OutboundRule {
        action,
        window,
        baseline: Baseline {
            action,
            z,
            warmup: spec.warmup.unwrap_or(10),
            floor,
            min_ratio: spec.min_ratio.unwrap_or(2.0),
        },
        max_bytes,
        cooldown,
        max_pairs: spec.max_pairs.unwrap_or(DEFAULT_MAX_CLIENTS),
    };
    Some(Arc::new(OutboundVolume::new(
        rule,
        Some(reporter(egress, audit)),
    )))
}

/// Detections to the log and the audit log, named by the route or egress listener.
fn reporter(scope: &str, audit: Option<Arc<AuditLog>>) -> Report {
    let scope: Arc<str> = Arc::from(scope);
    Box::new(move |client, finding| {
        tracing::warn!(target: "audit", route = %scope, %client, detector = finding.detector.name(), action = finding.action.name(), detail = %finding.detail, "anomaly");
        if let Some(audit) = &audit {
            audit.record(
                "anomaly",
                serde_json::json!({
                    "route": &*scope,
                    "client": client.to_string(),
                    "detector": finding.detector.name(),
                    "action": finding.action.name(),
                    "detail": finding.detail,
                }),
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> (Option<Arc<Anomalies>>, Errors) {
        let spec: AnomaliesSpec = toml::from_str(text).unwrap();
        let mut errors = Errors::new();
        let compiled = compile_anomalies(&spec, "routes[0].anomalies", "r", None, &mut errors);
        (compiled, errors)
    }

    #[test]
    fn defaults_and_every_detector() {
        let (compiled, errors) = compile(
            r#"
            rate = {}
            tokens = { action = "tag" }
            response_size = {}
            error_rate = {}
            response_secrets = { types = ["AWS_ACCESS_KEY", "API_KEY"] }
            prompt_injection = {}
            auth_failures = { max = 5 }
            "#,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let anomalies = compiled.unwrap();
        let config = &anomalies.config;
        assert_eq!(config.rate.unwrap().action, Action::Log);
        assert_eq!(config.tokens.unwrap().action, Action::Tag);
        assert_eq!(
            config.prompt_injection.as_ref().unwrap().action,
            Action::Block
        );
        assert_eq!(config.auth_failures.unwrap().max, 5);
        assert_eq!(config.cooldown, Duration::from_secs(300));
        assert!(anomalies.reads_answers() && anomalies.reads_prompts());
    }

    #[test]
    fn every_bad_key_is_named() {
        let (compiled, errors) = compile(
            r#"
            cooldown = "soon"
            rate = { action = "shout", z = -1 }
            error_rate = { action = "block" }
            response_secrets = { types = ["PASSWORDS"] }
            prompt_injection = { builtin = false, rules = [{ regex = "(" }] }
            auth_failures = { max = 0 }
            "#,
        );
        assert!(compiled.is_none());
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        for key in [
            "routes[0].anomalies.rate.action",
            "routes[0].anomalies.rate.z",
            "routes[0].anomalies.error_rate.action",
            "routes[0].anomalies.response_secrets.types[0]",
            "routes[0].anomalies.prompt_injection.rules[0].regex",
            "routes[0].anomalies.prompt_injection",
            "routes[0].anomalies.auth_failures.max",
            "routes[0].anomalies.cooldown",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }
}
