//! Compiling the security keys of listeners and routes into filters.

use std::path::Path;

use http::HeaderName;
use regex::Regex;

use std::time::Duration;

use super::checks::{Errors, duration_or, parse_cidrs, resolve};
use super::spec::{ApiKeySpec, KeysFileSpec, RateLimitSpec, SecuritySpec, SizeSpec};
use crate::cidr::Cidr;
use crate::pipeline::Filter;
use crate::routing::Glob;
use crate::security::rate_limit::{Gcra, LimitKey, RateLimit, TokenBudget};
use crate::security::shared_limits::{OnBackendError, SharedLimits};
use crate::security::{
    AccessList, ApiKey, ApiKeys, HeaderAction, HeaderInspection, HeaderRule, Recorder,
    SCANNER_SIGNATURES,
};
use crate::units::parse_byte_size;
use std::sync::Arc;

/// The filters for one security section, in the order they run: address lists, header
/// inspection, API keys, the rate limit. Its rate limits (the keys' own included) are
/// added to `limits` too, for the admin API.
pub(super) fn compile_security(
    spec: SecuritySpec<'_>,
    scope: &str,
    path: &str,
    base: &Path,
    recorder: &Recorder,
    limits: &mut Vec<Arc<RateLimit>>,
    errors: &mut Errors,
) -> Vec<Box<dyn Filter>> {
    let mut filters: Vec<Box<dyn Filter>> = Vec::new();

    let mut allow = parse_cidrs(spec.allow, &format!("{path}.allow"), errors);
    let mut deny = parse_cidrs(spec.deny, &format!("{path}.deny"), errors);
    for (file, list, key) in [
        (spec.allow_file, &mut allow, "allow_file"),
        (spec.deny_file, &mut deny, "deny_file"),
    ] {
        let Some(file) = file else { continue };
        let full = resolve(base, file);
        match std::fs::read_to_string(&full) {
            Ok(text) => {
                let lines: Vec<String> = text
                    .lines()
                    .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect();
                list.extend(parse_cidrs(
                    &lines,
                    &format!("{path}.{key} ({full})"),
                    errors,
                ));
            }
            Err(e) => errors.push((format!("{path}.{key}"), format!("cannot read {full}: {e}"))),
        }
    }
    if !allow.is_empty() || !deny.is_empty() {
        filters.push(Box::new(AccessList {
            scope: scope.to_string(),
            allow: allow.into_iter().map(Cidr::from).collect(),
            deny: deny.into_iter().map(Cidr::from).collect(),
            recorder: recorder.clone(),
        }));
    }

    let mut rules = Vec::new();
    if spec.block_scanners {
        rules.push(HeaderRule {
            name: "scanner user agent".into(),
            header: http::header::USER_AGENT,
            matches: Regex::new(SCANNER_SIGNATURES).expect("the built-in list is a valid regex"),
            action: HeaderAction::Deny,
        });
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let rule_path = format!("{path}.rules[{i}]");
        let header = HeaderName::from_bytes(rule.header.as_bytes())
            .map_err(|_| {
                errors.push((
                    format!("{rule_path}.header"),
                    format!("{:?} is not a valid header name", rule.header),
                ))
            })
            .ok();
        let matches = Regex::new(&rule.matches)
            .map_err(|e| {
                errors.push((
                    format!("{rule_path}.matches"),
                    format!("invalid regex: {e}"),
                ))
            })
            .ok();
        let action = match rule.action.as_str() {
            "deny" => Some(HeaderAction::Deny),
            "tag" => Some(HeaderAction::Tag),
            "log" => Some(HeaderAction::Log),
            other => {
                errors.push((
                    format!("{rule_path}.action"),
                    format!("{other:?}: expected \"deny\", \"tag\" or \"log\""),
                ));
                None
            }
        };
        if let (Some(header), Some(matches), Some(action)) = (header, matches, action) {
            let name = rule
                .name
                .clone()
                .unwrap_or_else(|| format!("{} ~ {}", rule.header, rule.matches));
            rules.push(HeaderRule {
                name,
                header,
                matches,
                action,
            });
        }
    }
    let require: Vec<HeaderName> = spec
        .require_headers
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| {
                    errors.push((
                        format!("{path}.require_headers[{i}]"),
                        format!("{name:?} is not a valid header name"),
                    ))
                })
                .ok()
        })
        .collect();
    let max_bytes = spec.max_header_bytes.and_then(|size| match size {
        SizeSpec::Bytes(bytes) => Some(*bytes as usize),
        SizeSpec::Text(text) => parse_byte_size(text)
            .map(|b| b as usize)
            .map_err(|e| errors.push((format!("{path}.max_header_bytes"), e)))
            .ok(),
    });
    if !rules.is_empty()
        || !require.is_empty()
        || spec.max_header_count.is_some()
        || max_bytes.is_some()
    {
        filters.push(Box::new(HeaderInspection {
            rules,
            require,
            max_count: spec.max_header_count,
            max_bytes,
            recorder: recorder.clone(),
        }));
    }

    if let Some(auth) = spec.auth {
        let mut specs: Vec<(String, ApiKeySpec)> = auth
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| (format!("{path}.auth.keys[{i}]"), k.clone()))
            .collect();
        if let Some(file) = &auth.keys_file {
            let full = resolve(base, file);
            match std::fs::read_to_string(&full)
                .map_err(|e| e.to_string())
                .and_then(|t| toml::from_str::<KeysFileSpec>(&t).map_err(|e| e.to_string()))
            {
                Ok(loaded) => specs.extend(
                    loaded
                        .keys
                        .into_iter()
                        .enumerate()
                        .map(|(i, k)| (format!("{path}.auth.keys_file ({full}) keys[{i}]"), k)),
                ),
                Err(e) => errors.push((
                    format!("{path}.auth.keys_file"),
                    format!("cannot load {full}: {e}"),
                )),
            }
        }
        let mut keys = Vec::new();
        for (key_path, key) in specs {
            let hash = key.sha256.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                errors.push((format!("{key_path}.sha256"), "expected 64 hex digits (the SHA-256 of the key; `junction key hash KEY` prints it)".into()));
                continue;
            }
            let models = key.models.iter().map(|m| Glob::new(m, false)).collect();
            let limit = key.rate_limit.as_ref().and_then(|limit| {
                let scope = format!("key:{}", key.name);
                let mut limiter = compile_rate_limit(
                    limit,
                    &scope,
                    &format!("{key_path}.rate_limit"),
                    recorder,
                    errors,
                )?;
                // A key's own budget is the key's, whatever `key` says.
                limiter.key = LimitKey::ApiKey;
                let limiter = Arc::new(limiter);
                limits.push(limiter.clone());
                Some(limiter)
            });
            keys.push(ApiKey {
                limit,
                name: key.name.into(),
                sha256: hash,
                routes: key.routes,
                models,
            });
        }
        let identities: Vec<Glob> = auth
            .identities
            .iter()
            .map(|i| Glob::new(i, false))
            .collect();
        if keys.is_empty()
            && identities.is_empty()
            && !errors
                .iter()
                .any(|(p, _)| p.starts_with(&format!("{path}.auth")))
        {
            errors.push((
                format!("{path}.auth"),
                "auth needs at least one key (keys or keys_file) or identity (identities)".into(),
            ));
        }
        filters.push(Box::new(ApiKeys {
            keys,
            identities,
            recorder: recorder.clone(),
        }));
    }

    if let Some(limit) = spec.rate_limit
        && let Some(limiter) = compile_rate_limit(
            limit,
            scope,
            &format!("{path}.rate_limit"),
            recorder,
            errors,
        )
    {
        let limiter = Arc::new(limiter);
        limits.push(limiter.clone());
        filters.push(Box::new(limiter));
    }
    filters
}

/// A `rate_limit` table (of a listener, a route or an API key) as a limiter.
fn compile_rate_limit(
    limit: &RateLimitSpec,
    scope: &str,
    limit_path: &str,
    recorder: &Recorder,
    errors: &mut Errors,
) -> Option<RateLimit> {
    let on_error = match limit.on_backend_error.as_deref().unwrap_or("allow") {
        "allow" => OnBackendError::Allow,
        "deny" => OnBackendError::Deny,
        other => {
            errors.push((
                format!("{limit_path}.on_backend_error"),
                format!("{other:?}: expected \"allow\" or \"deny\""),
            ));
            OnBackendError::Allow
        }
    };
    let shared = match limit.backend.as_deref() {
        None | Some("local") => None,
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            SharedLimits::new(url, on_error)
                .map(Arc::new)
                .map_err(|e| errors.push((format!("{limit_path}.backend"), e)))
                .ok()
        }
        Some(other) => {
            errors.push((
                format!("{limit_path}.backend"),
                format!("{other:?}: expected \"local\" or a redis:// URL"),
            ));
            None
        }
    };
    if limit.on_backend_error.is_some() && shared.is_none() {
        errors.push((
            format!("{limit_path}.on_backend_error"),
            "only used with a Redis backend".into(),
        ));
    }
    let per = duration_or(
        &limit.per,
        Duration::from_secs(60),
        &format!("{limit_path}.per"),
        errors,
    );
    let key = match limit.key.as_deref().unwrap_or("ip") {
        "ip" => Some(LimitKey::ClientIp),
        "api_key" => Some(LimitKey::ApiKey),
        "route" => Some(LimitKey::Route),
        other => {
            errors.push((
                format!("{limit_path}.key"),
                format!("{other:?}: expected \"ip\", \"api_key\" or \"route\""),
            ));
            None
        }
    };
    if limit.requests.is_none() && limit.tokens.is_none() {
        errors.push((
            limit_path.to_string(),
            "set requests, tokens, or both".into(),
        ));
    }
    for (name, value) in [("requests", limit.requests), ("tokens", limit.tokens)] {
        if value == Some(0) {
            errors.push((format!("{limit_path}.{name}"), "must be at least 1".into()));
        }
    }
    key.map(|key| RateLimit {
        scope: scope.to_string(),
        key,
        requests: limit.requests.filter(|r| *r > 0).map(|r| Gcra::new(r, per)),
        tokens: limit
            .tokens
            .filter(|t| *t > 0)
            .map(|t| TokenBudget::new(t, per)),
        default_max_tokens: limit.default_max_tokens.unwrap_or(1024),
        recorder: recorder.clone(),
        shared,
    })
}
