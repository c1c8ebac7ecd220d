//! Listener TLS: `tls = { cert, key }` or `tls = { certs = [...], default, watch }`
//! compiled into the listener's certificates (by SNI) and rustls server config.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::checks::{Errors, resolve};
use super::spec::TlsSpec;
use crate::tls::resolver::LoadError;
use crate::tls::{CertFiles, ListenerTls, SniResolver};
use crate::units::parse_duration;

/// How often certificate files are looked at when `watch` is not set.
const DEFAULT_WATCH: Duration = Duration::from_secs(10);

/// The TLS of listener `name` (at key path `path`), or `None` with its errors pushed.
pub(super) fn compile_listener_tls(
    name: &str,
    spec: &TlsSpec,
    base: &Path,
    path: &str,
    errors: &mut Errors,
) -> Option<ListenerTls> {
    let before = errors.len();
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
    if entries.is_empty() && errors.len() == before {
        errors.push((
            path.to_string(),
            "TLS needs a certificate: cert and key, or certs = [{ cert, key }, ...]".into(),
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
    let certs = match SniResolver::load(files, spec.default.clone()) {
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
    match crate::tls::server_config(name, certs.clone(), None) {
        Ok(config) => Some(ListenerTls {
            config,
            certs,
            watch,
        }),
        Err(message) => {
            errors.push((path.to_string(), message));
            None
        }
    }
}
