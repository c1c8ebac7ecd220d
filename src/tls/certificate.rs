//! One certificate as a listener serves it: its chain and key (PEM files) loaded into
//! rustls, with what the rest of Junction reads of it (the names it serves, its expiry,
//! its key type) and a digest of the files, so a watcher knows when they changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// Why a certificate and key could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CertError {
    #[error("cannot read certificate file {path:?}: {reason}")]
    CertFile { path: PathBuf, reason: String },
    #[error("{path:?} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot read private key from {path:?}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("the certificate in {path:?} cannot be parsed: {reason}")]
    Unparsable { path: PathBuf, reason: String },
    #[error("the key in {key:?} does not belong to the certificate in {cert:?}: {reason}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

impl CertError {
    /// The config key the problem is about: `cert` or `key`.
    pub fn key(&self) -> &'static str {
        match self {
            CertError::KeyFile { .. } | CertError::KeyMismatch { .. } => "key",
            _ => "cert",
        }
    }
}

/// The files a certificate is loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The kind of key a certificate holds; clients that offer ECDSA get an ECDSA one first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyKind {
    Ecdsa,
    Ed25519,
    Rsa,
    Other,
}

impl KeyKind {
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::Ecdsa => "ecdsa",
            KeyKind::Ed25519 => "ed25519",
            KeyKind::Rsa => "rsa",
            KeyKind::Other => "other",
        }
    }
}

/// A loaded certificate.
pub struct Certificate {
    pub files: CertFiles,
    /// DNS names it serves, lower-cased (`*.example.com` for a wildcard): its DNS
    /// subject alternative names, or its subject CN when it has none.
    pub names: Vec<String>,
    /// End of validity, in seconds since the Unix epoch.
    pub not_after: i64,
    pub kind: KeyKind,
    pub key: Arc<CertifiedKey>,
    /// SHA-256 of the two files as read: a watcher reloads when it changes.
    pub digest: [u8; 32],
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Certificate")
            .field("files", &self.files)
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .field("kind", &self.kind)
            .finish()
    }
}

/// The SHA-256 of a certificate's two files, or the error reading them.
pub fn digest_of(files: &CertFiles) -> Result<[u8; 32], CertError> {
    let cert = read(&files.cert, |reason| CertError::CertFile {
        path: files.cert.clone(),
        reason,
    })?;
    let key = read(&files.key, |reason| CertError::KeyFile {
        path: files.key.clone(),
        reason,
    })?;
    Ok(digest(&cert, &key))
}

fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((cert.len() as u64).to_be_bytes());
    hasher.update(cert);
    hasher.update(key);
    hasher.finalize().into()
}

fn read(path: &Path, error: impl FnOnce(String) -> CertError) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|e| error(e.to_string()))
}

/// Loads a certificate chain and its private key (PEM; PKCS#8, PKCS#1 or SEC1) and
/// checks that they belong together.
pub fn load(files: &CertFiles) -> Result<Certificate, CertError> {
    let cert_pem = read(&files.cert, |reason| CertError::CertFile {
        path: files.cert.clone(),
        reason,
    })?;
    let key_pem = read(&files.key, |reason| CertError::KeyFile {
        path: files.key.clone(),
        reason,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::CertFile {
            path: files.cert.clone(),
            reason: format!("invalid PEM: {e}"),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate {
            path: files.cert.clone(),
        });
    };
    let described = describe(leaf).map_err(|reason| CertError::Unparsable {
        path: files.cert.clone(),
        reason,
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| CertError::KeyFile {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let provider = super::provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError::KeyFile {
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(|e| CertError::KeyMismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    })?;
    Ok(Certificate {
        files: files.clone(),
        names: described.names,
        not_after: described.not_after,
        kind: described.kind,
        key: Arc::new(key),
        digest: digest(&cert_pem, &key_pem),
    })
}

/// What a certificate says about itself.
pub struct Described {
    pub names: Vec<String>,
    pub not_after: i64,
    pub kind: KeyKind,
}

/// Reads the names, expiry and key kind of a DER certificate.
pub fn describe(der: &[u8]) -> Result<Described, String> {
    use x509_parser::prelude::*;
    let (_, cert) = parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    let algorithm = &cert.public_key().algorithm.algorithm;
    let kind = if *algorithm == x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY {
        KeyKind::Ecdsa
    } else if *algorithm == x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
        KeyKind::Rsa
    } else if *algorithm == x509_parser::oid_registry::OID_SIG_ED25519 {
        KeyKind::Ed25519
    } else {
        KeyKind::Other
    };
    Ok(Described {
        names,
        not_after: cert.validity().not_after.timestamp(),
        kind,
    })
}

/// `seconds` since the Unix epoch as an RFC 3339 UTC time (`2027-01-31T12:00:00Z`).
pub fn rfc3339(seconds: i64) -> String {
    format!("{}Z", crate::units::format_second(seconds))
}

/// Whether `pattern` (a certificate name, maybe `*.example.com`) covers `name`
/// (lower-case). A wildcard stands for exactly one label, as browsers read it.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn a_wildcard_covers_one_label_only() {
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", ".example.com"));
        assert!(name_matches("example.com", "example.com"));
        assert!(!name_matches("example.com", "a.example.com"));
    }
}
