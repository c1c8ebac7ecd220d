//! TLS-ALPN-01 answers (RFC 8737): for each domain of an order in flight, a self-signed
//! certificate carrying the key authorization's digest, served to a TLS client that
//! offers ALPN `acme-tls/1` for that name.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rcgen_acme::{CertificateParams, CustomExtension, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::AcmeError;

/// The ALPN protocol an ACME server offers when it checks TLS-ALPN-01; a listener that
/// serves an `acme` section with this challenge must list it in its ALPN protocols.
pub const ACME_TLS_ALPN: &[u8] = crate::tls::ACME_TLS_ALPN;

/// Domain → challenge certificate, for the orders in flight. Reads take no lock.
#[derive(Default)]
pub struct TlsAlpnAnswers {
    certificates: ArcSwap<HashMap<Box<str>, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for TlsAlpnAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAlpnAnswers")
            .field("pending", &self.certificates.load().len())
            .finish()
    }
}

impl TlsAlpnAnswers {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The challenge certificate for `server_name`, if one of its orders is in flight.
    pub fn get(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let certificates = self.certificates.load();
        if certificates.is_empty() {
            return None;
        }
        certificates
            .get(server_name.to_ascii_lowercase().as_str())
            .cloned()
    }

    /// Serves a challenge certificate for `domain` proving `digest` (the SHA-256 of the
    /// key authorization) until the returned guard drops.
    pub(super) fn insert(
        self: &Arc<Self>,
        domain: &str,
        digest: &[u8],
    ) -> Result<AlpnPending, AcmeError> {
        let certificate = Arc::new(challenge_certificate(domain, digest)?);
        self.certificates.rcu(|certificates| {
            let mut certificates = HashMap::clone(certificates);
            certificates.insert(Box::from(domain), certificate.clone());
            certificates
        });
        Ok(AlpnPending {
            answers: self.clone(),
            domain: Box::from(domain),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.certificates.load().is_empty()
    }
}

/// A challenge certificate being served; dropping it withdraws it.
#[derive(Debug)]
pub(super) struct AlpnPending {
    answers: Arc<TlsAlpnAnswers>,
    domain: Box<str>,
}

impl Drop for AlpnPending {
    fn drop(&mut self) {
        self.answers.certificates.rcu(|certificates| {
            let mut certificates = HashMap::clone(certificates);
            certificates.remove(&self.domain);
            certificates
        });
    }
}

/// A self-signed certificate for `domain` with the critical `id-pe-acmeIdentifier`
/// extension holding `digest` (RFC 8737 §3).
fn challenge_certificate(domain: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let failed = |e: String| AcmeError::BadCertificate(format!("TLS-ALPN-01 certificate: {e}"));
    if digest.len() != 32 {
        return Err(failed(format!("a digest of {} bytes", digest.len())));
    }
    let mut params =
        CertificateParams::new(vec![domain.to_string()]).map_err(|e| failed(e.to_string()))?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let key = KeyPair::generate().map_err(|e| failed(e.to_string()))?;
    let certificate = params
        .self_signed(&key)
        .map_err(|e| failed(e.to_string()))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki,
    // which refuses the (critical, unknown to it) acmeIdentifier extension.
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| failed(e.to_string()))?;
    Ok(CertifiedKey::new(
        vec![certificate.der().clone()],
        signing_key,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_certificate_is_served_while_pending() {
        let answers = TlsAlpnAnswers::new();
        assert!(answers.get("a.example.com").is_none());
        let pending = answers.insert("a.example.com", &[7; 32]).unwrap();
        assert!(answers.get("A.example.com").is_some());
        assert!(answers.get("b.example.com").is_none());
        drop(pending);
        assert!(answers.is_empty());
        assert!(answers.insert("a.example.com", &[7; 31]).is_err());
    }
}
