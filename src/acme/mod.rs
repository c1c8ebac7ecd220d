//! ACME (RFC 8555): certificates obtained from a directory (Let's Encrypt, a private CA,
//! pebble in tests), kept in a storage directory, reused on restart and renewed in the
//! background at two thirds of their lifetime. HTTP-01 tokens are answered by every
//! gateway listener through [`Http01Answers`]; a TLS listener serves the certificate,
//! and TLS-ALPN-01 challenge certificates, through [`AcmeResolver`] (docs/acme.md).

mod http01;
mod issued;
mod manager;
mod store;
mod tls_alpn;

use std::path::PathBuf;

pub use http01::{CHALLENGE_PREFIX, Http01Answers, Pending};
pub use issued::{AcmeResolver, Issued, Published};
pub use manager::{Acme, Outcome};
pub use tls_alpn::{ACME_TLS_ALPN, TlsAlpnAnswers};

/// How the ACME server is to check that we hold a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// A token served over plain HTTP on port 80 (`/.well-known/acme-challenge/…`).
    Http01,
    /// A self-signed certificate served on port 443 for ALPN `acme-tls/1` (RFC 8737):
    /// the listener's resolver answers it (`Acme::resolver`).
    TlsAlpn01,
}

impl Challenge {
    pub fn name(self) -> &'static str {
        match self {
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// One `acme` section, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The ACME directory URL (`https://acme-v02.api.letsencrypt.org/directory`).
    pub directory: String,
    /// Contact for the account (expiry notices from the CA), without `mailto:`.
    pub email: Option<String>,
    /// The names the certificate is for; the first names the storage files.
    pub domains: Vec<String>,
    pub challenge: Challenge,
    pub storage: PathBuf,
    /// A PEM root to trust for the directory's HTTPS instead of the system's (a
    /// private ACME server, pebble).
    pub ca: Option<PathBuf>,
}

/// Why a certificate could not be obtained, stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME server: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("storage {0:?}: {1}")]
    Storage(PathBuf, String),
    #[error("certificate: {0}")]
    BadCertificate(String),
    #[error("authorization for {identifier} is {status}")]
    Authorization { identifier: String, status: String },
    #[error("the ACME server offers no {challenge} challenge for {identifier}")]
    NoChallenge {
        challenge: &'static str,
        identifier: String,
    },
    #[error("order ended {0}")]
    Order(String),
}
