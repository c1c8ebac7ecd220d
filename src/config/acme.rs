//! The `acme` key of a TLS listener (`[listeners.tls] acme = { ... }`): its serde spec
//! (`spec::AcmeSpec`) checked once at load into `acme::AcmeSettings`, every error naming
//! its key path. Called by `config::tls`; nothing is fetched at load.

use std::path::Path;

use super::checks::{Errors, resolve};
use super::spec::AcmeSpec;
use crate::acme::{AcmeSettings, Challenge};

/// Checks `spec` (found at key path `path`); every problem goes to `errors`.
pub fn compile_acme(
    spec: &AcmeSpec,
    path: &str,
    base: &Path,
    errors: &mut Errors,
) -> Option<AcmeSettings> {
    let before = errors.len();
    check_directory(&spec.directory, &format!("{path}.directory"), errors);
    let email = spec
        .email
        .as_deref()
        .map(|e| e.strip_prefix("mailto:").unwrap_or(e));
    if let Some(email) = email {
        check_email(email, &format!("{path}.email"), errors);
    }
    let domains = check_domains(&spec.domains, &format!("{path}.domains"), errors);
    let challenge = match spec.challenge.as_deref() {
        None | Some("http-01") => Challenge::Http01,
        Some("tls-alpn-01") => Challenge::TlsAlpn01,
        Some(other) => {
            errors.push((
                format!("{path}.challenge"),
                format!("{other:?} is not a challenge: use \"http-01\" or \"tls-alpn-01\""),
            ));
            Challenge::Http01
        }
    };
    if spec.storage.trim().is_empty() {
        errors.push((format!("{path}.storage"), "must name a directory".into()));
    }
    let storage = resolve(base, &spec.storage);
    if let Ok(meta) = std::fs::metadata(&storage)
        && !meta.is_dir()
    {
        errors.push((
            format!("{path}.storage"),
            format!("{storage} exists and is not a directory"),
        ));
    }
    let ca = spec.ca.as_deref().map(|ca| resolve(base, ca));
    if let Some(ca) = &ca
        && let Err(e) = std::fs::read(ca)
    {
        errors.push((format!("{path}.ca"), format!("cannot read {ca}: {e}")));
    }
    (errors.len() == before).then(|| AcmeSettings {
        directory: spec.directory.clone(),
        email: email.map(str::to_string),
        domains,
        challenge,
        storage: storage.into(),
        ca: ca.map(Into::into),
    })
}

fn check_directory(directory: &str, path: &str, errors: &mut Errors) {
    match directory.parse::<http::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {}
        Ok(_) => errors.push((
            path.into(),
            format!("{directory:?} must be an https:// URL (RFC 8555 §6.1)"),
        )),
        Err(e) => errors.push((path.into(), format!("{directory:?} is not a URL: {e}"))),
    }
}

fn check_email(email: &str, path: &str, errors: &mut Errors) {
    let fine = email
        .split_once('@')
        .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !fine {
        errors.push((path.into(), format!("{email:?} is not an email address")));
    }
}

/// The domains, lower-cased; each must be a DNS name HTTP-01 can prove.
fn check_domains(domains: &[String], path: &str, errors: &mut Errors) -> Vec<String> {
    if domains.is_empty() {
        errors.push((path.into(), "must name at least one domain".into()));
    }
    let mut seen: Vec<String> = Vec::with_capacity(domains.len());
    for (i, domain) in domains.iter().enumerate() {
        let key = format!("{path}[{i}]");
        let domain = domain.to_ascii_lowercase();
        if domain.starts_with("*.") {
            errors.push((
                key,
                format!(
                    "{domain:?}: a wildcard needs the dns-01 challenge, which Junction does not do"
                ),
            ));
        } else if domain.parse::<std::net::IpAddr>().is_ok() {
            errors.push((
                key,
                format!("{domain:?}: certificates are issued for names, not addresses"),
            ));
        } else if let Err(why) = dns_name(&domain) {
            errors.push((key, format!("{domain:?} is not a DNS name: {why}")));
        } else if seen.contains(&domain) {
            errors.push((key, format!("{domain:?} is listed twice")));
        } else {
            seen.push(domain);
        }
    }
    seen
}

fn dns_name(name: &str) -> Result<(), &'static str> {
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err("needs at least two labels");
    }
    for label in labels {
        if label.is_empty() || label.len() > 63 {
            return Err("a label is empty or longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with '-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Locator;

    const PATH: &str = "listeners[0].tls.acme";

    fn compile(text: &str) -> (Option<AcmeSettings>, Errors) {
        let doc: toml::Table = toml::from_str(text).unwrap();
        let spec: AcmeSpec = doc["listeners"][0]["tls"]["acme"]
            .clone()
            .try_into()
            .unwrap();
        let mut errors = Errors::new();
        let settings = compile_acme(&spec, PATH, Path::new("/etc/junction"), &mut errors);
        (settings, errors)
    }

    #[test]
    fn a_good_section_becomes_settings() {
        let (settings, errors) = compile(
            r#"
[[listeners]]
[listeners.tls]
acme = { directory = "https://acme.example/dir", email = "mailto:ops@example.com", domains = ["API.example.com", "www.example.com"], storage = "acme" }
"#,
        );
        assert_eq!(errors, Errors::new());
        let settings = settings.unwrap();
        assert_eq!(settings.domains, ["api.example.com", "www.example.com"]);
        assert_eq!(settings.email.as_deref(), Some("ops@example.com"));
        assert_eq!(settings.challenge, Challenge::Http01);
        assert_eq!(settings.storage, Path::new("/etc/junction/acme"));
    }

    #[test]
    fn every_bad_key_is_named_with_its_line() {
        let text = r#"
[[listeners]]
[listeners.tls.acme]
directory = "http://acme.example/dir"
email = "nobody"
domains = ["ok.example.com", "*.example.com", "bad_name.example", "ok.example.com", "10.0.0.1"]
challenge = "dns-01"
storage = ""
ca = "/nonexistent/root.pem"
"#;
        let (settings, errors) = compile(text);
        assert!(settings.is_none());
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "listeners[0].tls.acme.directory",
                "listeners[0].tls.acme.email",
                "listeners[0].tls.acme.domains[1]",
                "listeners[0].tls.acme.domains[2]",
                "listeners[0].tls.acme.domains[3]",
                "listeners[0].tls.acme.domains[4]",
                "listeners[0].tls.acme.challenge",
                "listeners[0].tls.acme.storage",
                "listeners[0].tls.acme.ca",
            ]
        );
        let locator = Locator::new(text);
        assert_eq!(locator.line_of_path("listeners[0].tls.acme.email"), Some(5));
        assert_eq!(
            locator.line_of_path("listeners[0].tls.acme.domains[2]"),
            Some(6)
        );
    }

    #[test]
    fn the_challenge_is_one_of_two() {
        let section = |challenge: &str| {
            format!(
                r#"
[[listeners]]
[listeners.tls]
acme = {{ directory = "https://a.example/d", domains = ["a.example"], storage = "s", challenge = "{challenge}" }}
"#
            )
        };
        let (settings, _) = compile(&section("tls-alpn-01"));
        assert_eq!(settings.unwrap().challenge, Challenge::TlsAlpn01);
        let (settings, errors) = compile(&section("dns-01"));
        assert!(settings.is_none());
        assert_eq!(errors[0].0, "listeners[0].tls.acme.challenge");
    }
}
