//! Listener TLS: `tls = { cert, key }` or `tls = { certs = [...], default, watch }`
//! compiled into the listener's certificates (by SNI) and rustls server config.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::acme::compile_acme;
use super::checks::{Errors, resolve};
use super::plan::ListenerPlan;
use super::spec::{ConfigSpec, PoolSpec, PoolTlsSpec, TlsSpec};
use crate::acme::{AcmeSettings, Challenge};
use crate::tls::resolver::LoadError;
use crate::tls::{CertFiles, ListenerTls, SniResolver};
use crate::units::parse_duration;
use crate::upstream::{Protocol, TlsOptions, TlsSetupError};
use rustls::pki_types::ServerName;

/// `junction check` warns of certificates that expire sooner than this.
const EXPIRY_WARNING_DAYS: i64 = 21;

/// The header the client's identity goes upstream in, unless `client_auth.header` says.
const DEFAULT_IDENTITY_HEADER: &str = "x-junction-client-identity";

/// How often certificate files are looked at when `watch` is not set.
const DEFAULT_WATCH: Duration = Duration::from_secs(10);

/// The TLS of listener `name` (at key path `path`) and its ACME settings, or `None`
/// with its errors pushed.
pub(super) fn compile_listener_tls(
    name: &str,
    spec: &TlsSpec,
    base: &Path,
    path: &str,
    errors: &mut Errors,
) -> Option<(ListenerTls, Option<AcmeSettings>)> {
    let before = errors.len();
    // Checked only: nothing is fetched (`junction check` must pass offline).
    let acme = spec
        .acme
        .as_ref()
        .and_then(|acme| compile_acme(acme, &format!("{path}.acme"), base, errors));
    // (key path prefix of the entry, its files)
    let mut entries: Vec<(String, CertFiles)> = Vec::new();
    match (&spec.cert, &spec.key) {
        (Some(cert), Some(key)) => entries.push((
            path.to_string(),
            CertFiles {
                cert: resolve(base, cert).into(),
                key: resolve(base, key).into(),
            },
        )),
        (Some(_), None) => errors.push((format!("{path}.cert"), "cert needs key".into())),
        (None, Some(_)) => errors.push((format!("{path}.key"), "key needs cert".into())),
        (None, None) => {}
    }
    for (i, cert) in spec.certs.iter().enumerate() {
        entries.push((
            format!("{path}.certs[{i}]"),
            CertFiles {
                cert: resolve(base, &cert.cert).into(),
                key: resolve(base, &cert.key).into(),
            },
        ));
    }
    if entries.is_empty() && spec.acme.is_none() && errors.len() == before {
        errors.push((
            path.to_string(),
            "TLS needs a certificate: cert and key, certs = [{ cert, key }, ...], or acme = { ... }".into(),
        ));
    }
    let watch = match spec.watch.as_deref() {
        None => Some(DEFAULT_WATCH),
        Some("off") => None,
        Some(text) => match parse_duration(text) {
            Ok(every) if !every.is_zero() => Some(every),
            Ok(_) => {
                errors.push((
                    format!("{path}.watch"),
                    "must be greater than zero, or \"off\"".into(),
                ));
                None
            }
            Err(e) => {
                errors.push((format!("{path}.watch"), e));
                None
            }
        },
    };
    if errors.len() > before {
        return None;
    }
    let (prefixes, files): (Vec<String>, Vec<CertFiles>) = entries.into_iter().unzip();
    let acme_domains = acme.as_ref().map_or(Vec::new(), |a| a.domains.clone());
    let certs = match SniResolver::load(files, spec.default.clone(), acme_domains) {
        Ok(certs) => Arc::new(certs),
        Err(LoadError::Cert(i, error)) => {
            errors.push((
                format!("{}.{}", prefixes[i], error.key()),
                error.to_string(),
            ));
            return None;
        }
        Err(LoadError::Default(message)) => {
            errors.push((format!("{path}.default"), message));
            return None;
        }
    };
    let verifier = match &spec.client_auth {
        Some(client_auth) => {
            let ca = resolve(base, &client_auth.ca);
            match crate::tls::client_verifier(Path::new(&ca), client_auth.required) {
                Ok(verifier) => Some(verifier),
                Err(message) => {
                    errors.push((format!("{path}.client_auth.ca"), message));
                    return None;
                }
            }
        }
        None => None,
    };
    let tls_alpn = acme
        .as_ref()
        .is_some_and(|a| a.challenge == Challenge::TlsAlpn01);
    match crate::tls::server_config(name, certs.clone(), verifier, tls_alpn) {
        Ok(config) => Some((
            ListenerTls {
                config,
                certs,
                watch,
                client_auth: spec.client_auth.is_some(),
            },
            acme,
        )),
        Err(message) => {
            errors.push((path.to_string(), message));
            None
        }
    }
}

/// The header a listener with `client_auth` passes the client's identity upstream in.
pub(super) fn identity_header(
    spec: Option<&TlsSpec>,
    path: &str,
    errors: &mut Errors,
) -> Option<http::HeaderName> {
    let client_auth = spec?.client_auth.as_ref()?;
    let name = client_auth
        .header
        .as_deref()
        .unwrap_or(DEFAULT_IDENTITY_HEADER);
    match http::HeaderName::from_bytes(name.as_bytes()) {
        Ok(header) => Some(header),
        Err(_) => {
            errors.push((
                format!("{path}.tls.client_auth.header"),
                format!("{name:?} is not a header name"),
            ));
            None
        }
    }
}

/// What `junction check` (and the start) warns of in listener TLS, as (key path,
/// message): certificates expired or expiring within 21 days, and route hosts that no
/// certificate of their listener serves.
pub(super) fn warnings(spec: &ConfigSpec, listeners: &[&ListenerPlan], now: i64) -> Errors {
    let mut warnings = Errors::new();
    for (i, pool) in spec.pools.iter().enumerate() {
        if pool.tls.as_ref().is_some_and(|tls| !tls.verify) {
            warnings.push((
                format!("pools[{i}].tls.verify"),
                "VERIFICATION IS OFF: the certificates of this pool's endpoints are not checked, so anyone on the network path can pose as them and read every request, prompts and credentials included; use tls.ca with the endpoints' CA instead".into(),
            ));
        }
    }
    identities_without_client_auth(spec, &mut warnings);
    for (i, listener) in spec.listeners.iter().enumerate() {
        let (Some(tls_spec), Some(tls)) = (
            &listener.tls,
            listeners
                .iter()
                .find(|l| *l.name == *listener.name)
                .and_then(|l| l.tls.as_ref()),
        ) else {
            continue;
        };
        let set = tls.certs.current();
        let single = usize::from(tls_spec.cert.is_some());
        for (j, cert) in set.certs.iter().enumerate() {
            let path = if j < single {
                format!("listeners[{i}].tls.cert")
            } else {
                format!("listeners[{i}].tls.certs[{}].cert", j - single)
            };
            let left = cert.not_after - now;
            let when = crate::tls::certificate::rfc3339(cert.not_after);
            let names = cert.names.join(", ");
            if left <= 0 {
                warnings.push((
                    path,
                    format!("the certificate for {names} expired on {when}"),
                ));
            } else if left < EXPIRY_WARNING_DAYS * 86_400 {
                warnings.push((
                    path,
                    format!(
                        "the certificate for {names} expires on {when}, in {} days",
                        (left + 43_200) / 86_400
                    ),
                ));
            }
        }
        for (k, route) in spec.routes.iter().enumerate() {
            let serves_here = match &route.listener {
                Some(name) => *name == listener.name,
                None => spec.listeners.len() == 1,
            };
            let Some(host) = route.matcher.host.as_deref().filter(|_| serves_here) else {
                continue;
            };
            let host = host.to_ascii_lowercase();
            // A wildcard route needs a wildcard certificate of the same domain.
            let covered = if host.starts_with("*.") {
                set.certs.iter().any(|c| c.names.contains(&host))
            } else {
                set.serves(&host) || tls.certs.acme_domains().contains(&host)
            };
            if !covered {
                warnings.push((
                    format!("routes[{k}].match.host"),
                    format!(
                        "no certificate of listener {:?} serves {host:?}: its clients get the default certificate and a verifying client refuses it",
                        listener.name
                    ),
                ));
            }
        }
    }
    warnings
}

/// A pool's TLS to its https endpoints (`ca_file`, or `tls = { cert, key, ca,
/// server_name, verify }`): the client config and the name to ask for, or `None` (no
/// https endpoint, or errors pushed).
#[allow(clippy::type_complexity)]
pub(super) fn compile_pool_tls(
    spec: &PoolSpec,
    protocol: Protocol,
    needs_tls: bool,
    base: &Path,
    path: &str,
    errors: &mut Errors,
) -> Option<(Arc<rustls::ClientConfig>, Option<ServerName<'static>>)> {
    let before = errors.len();
    if !needs_tls {
        if spec.ca_file.is_some() {
            errors.push((
                format!("{path}.ca_file"),
                "ca_file is only used with https endpoints".into(),
            ));
        }
        if spec.tls.is_some() {
            errors.push((
                format!("{path}.tls"),
                "tls is only used with https endpoints".into(),
            ));
        }
        return None;
    }
    let default = PoolTlsSpec {
        cert: None,
        key: None,
        ca: None,
        server_name: None,
        verify: true,
    };
    let tls = spec.tls.as_ref().unwrap_or(&default);
    let (ca, ca_key) = match (&spec.ca_file, &tls.ca) {
        (Some(_), Some(_)) => {
            errors.push((
                format!("{path}.tls.ca"),
                "set the CA once: ca_file or tls.ca".into(),
            ));
            (None, String::new())
        }
        (Some(file), None) => (Some(resolve(base, file)), format!("{path}.ca_file")),
        (None, Some(file)) => (Some(resolve(base, file)), format!("{path}.tls.ca")),
        (None, None) => (None, format!("{path}.tls")),
    };
    let cert = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => Some((resolve(base, cert), resolve(base, key))),
        (Some(_), None) => {
            errors.push((format!("{path}.tls.cert"), "cert needs key".into()));
            None
        }
        (None, Some(_)) => {
            errors.push((format!("{path}.tls.key"), "key needs cert".into()));
            None
        }
        (None, None) => None,
    };
    let server_name = tls.server_name.as_ref().and_then(|name| {
        ServerName::try_from(name.clone())
            .map_err(|e| {
                errors.push((
                    format!("{path}.tls.server_name"),
                    format!("{name:?} is not a DNS name or IP address: {e}"),
                ))
            })
            .ok()
    });
    if errors.len() > before {
        return None;
    }
    let options = TlsOptions {
        ca_file: ca.as_deref(),
        client_cert: cert.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
        verify: tls.verify,
    };
    match crate::upstream::client_config_with(&options, protocol) {
        Ok(config) => Some((config, server_name)),
        Err(error) => {
            let key = match &error {
                TlsSetupError::ClientCert(_) => format!("{path}.tls.cert"),
                TlsSetupError::Ca(_) => ca_key,
                TlsSetupError::Setup(_) => format!("{path}.tls"),
            };
            errors.push((key, error.to_string()));
            None
        }
    }
}

/// `auth.identities` on a listener, or a route of one, that asks for no client
/// certificate: nobody can match them.
fn identities_without_client_auth(spec: &ConfigSpec, warnings: &mut Errors) {
    let asks = |listener: &super::spec::ListenerSpec| {
        listener
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_auth.is_some())
    };
    let has_identities =
        |auth: Option<&super::spec::AuthSpec>| auth.is_some_and(|a| !a.identities.is_empty());
    const WHY: &str = "no client certificate is asked for on this listener (tls.client_auth), so no request has an identity to match";
    for (i, listener) in spec.listeners.iter().enumerate() {
        if has_identities(listener.auth.as_ref()) && !asks(listener) {
            warnings.push((format!("listeners[{i}].auth.identities"), WHY.into()));
        }
    }
    for (k, route) in spec.routes.iter().enumerate() {
        let listener = match &route.listener {
            Some(name) => spec.listeners.iter().find(|l| l.name == *name),
            None if spec.listeners.len() == 1 => spec.listeners.first(),
            None => None,
        };
        if has_identities(route.auth.as_ref()) && listener.is_some_and(|l| !asks(l)) {
            warnings.push((format!("routes[{k}].auth.identities"), WHY.into()));
        }
    }
}
