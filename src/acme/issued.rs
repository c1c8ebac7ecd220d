//! An issued certificate (chain, key, validity, names) and the handle through which a
//! new one is published to whoever serves it: a TLS listener's resolver reads the
//! current one per handshake, a watcher is woken on every change.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::AcmeError;
use super::tls_alpn::{ACME_TLS_ALPN, TlsAlpnAnswers};

/// A certificate chain and its key, checked to fit together, ready for rustls.
pub struct Issued {
    /// The chain as the ACME server sent it (leaf first), PEM.
    pub chain_pem: String,
    pub key_pem: String,
    pub certified: Arc<CertifiedKey>,
    /// The leaf's DNS names (subjectAltName).
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The leaf's serial number, hex: what tells one issuance from another.
    pub serial: String,
    /// The leaf's key type (ECDSA from instant-acme's CSR).
    pub kind: crate::tls::KeyKind,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("names", &self.names)
            .field("serial", &self.serial)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// Reads a PEM chain and key; refuses a chain that does not parse, a key that is
    /// not the leaf's, or a leaf without a validity rustls and we can read.
    pub fn from_pem(chain_pem: String, key_pem: String) -> Result<Self, AcmeError> {
        let bad = |why: String| AcmeError::BadCertificate(why);
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(format!("chain PEM: {e}")))?;
        let Some(leaf) = chain.first() else {
            return Err(bad("the chain holds no certificate".into()));
        };
        let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| bad(format!("leaf: {e}")))?;
        let validity = cert.validity();
        let not_before = unix_time(validity.not_before.timestamp());
        let not_after = unix_time(validity.not_after.timestamp());
        let names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => return Err(bad(format!("subjectAltName: {e}"))),
        };
        let serial = cert.raw_serial_as_string().replace(':', "");
        let kind = crate::tls::certificate::describe(leaf)
            .map_err(|e| bad(format!("leaf: {e}")))?
            .kind;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| bad(format!("key PEM: {e}")))?;
        let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
        let certified = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| bad(format!("chain and key do not fit together: {e}")))?;
        Ok(Self {
            chain_pem,
            key_pem,
            certified: Arc::new(certified),
            names,
            not_before,
            not_after,
            serial,
            kind,
        })
    }

    /// When renewal is due: two thirds into the certificate's lifetime (what Caddy and
    /// Let's Encrypt advise: a 90-day certificate renews with 30 days left).
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        self.not_before + lifetime * 2 / 3
    }

    /// Whether the certificate names every one of `domains` (and so can serve them).
    pub fn covers(&self, domains: &[String]) -> bool {
        domains
            .iter()
            .all(|d| self.names.iter().any(|n| n.eq_ignore_ascii_case(d)))
    }
}

fn unix_time(seconds: i64) -> SystemTime {
    match u64::try_from(seconds) {
        Ok(after) => SystemTime::UNIX_EPOCH + Duration::from_secs(after),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// The certificate in force for one `acme` section, swapped whole when a new one is
/// issued. Readers never block; `changes()` wakes a watcher on each swap.
pub struct Published {
    current: ArcSwapOption<Issued>,
    generation: watch::Sender<u64>,
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published")
            .field("current", &self.current.load())
            .finish()
    }
}

impl Published {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwapOption::empty(),
            generation: watch::Sender::new(0),
        })
    }

    pub fn current(&self) -> Option<Arc<Issued>> {
        self.current.load_full()
    }

    /// A receiver that sees the count of certificates published so far change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub(super) fn publish(&self, issued: Arc<Issued>) {
        self.current.store(Some(issued));
        self.generation.send_modify(|n| *n += 1);
    }
}

/// A rustls certificate resolver serving the published certificate: what a TLS
/// listener configured with `acme` puts in its `ServerConfig` (from `Acme::resolver`).
/// A client offering ALPN `acme-tls/1` gets the TLS-ALPN-01 challenge certificate for
/// its server name instead, or no certificate when none is pending. Before the first
/// certificate is issued there is none, and handshakes fail.
#[derive(Debug, Clone)]
pub struct AcmeResolver {
    published: Arc<Published>,
    alpn: Arc<TlsAlpnAnswers>,
}

impl AcmeResolver {
    pub(super) fn new(published: Arc<Published>, alpn: Arc<TlsAlpnAnswers>) -> Self {
        Self { published, alpn }
    }
}

impl ResolvesServerCert for AcmeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        crate::tls::AcmeCertificates::certificate(self, &hello)
    }
}

/// How a listener's SNI resolver asks for the certificate of its ACME domains.
impl crate::tls::AcmeCertificates for AcmeResolver {
    fn certificate(&self, hello: &ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme_tls = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if acme_tls {
            return self.alpn.get(hello.server_name()?);
        }
        self.published.current().map(|i| i.certified.clone())
    }

    fn issued(&self) -> Option<crate::tls::IssuedCertificate> {
        let issued = self.published.current()?;
        let not_after = issued
            .not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Some(crate::tls::IssuedCertificate {
            names: issued.names.clone(),
            not_after,
            kind: issued.kind,
            serial: issued.serial.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, date_time_ymd};

    fn certificate(names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_before = date_time_ymd(2026, 1, 1);
        params.not_after = date_time_ymd(2026, 4, 1);
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn renewal_is_due_two_thirds_into_the_lifetime() {
        let (chain, key) = certificate(&["a.example.com", "B.example.com"]);
        let issued = Issued::from_pem(chain, key).unwrap();
        // 2026-01-01 to 2026-04-01 is 90 days: due 60 days in, on 2026-03-02.
        let due = issued.not_before + Duration::from_secs(60 * 86_400);
        assert_eq!(issued.renew_at(), due);
        assert!(issued.covers(&["b.example.com".into(), "A.EXAMPLE.COM".into()]));
        assert!(!issued.covers(&["a.example.com".into(), "c.example.com".into()]));
    }

    #[test]
    fn a_key_of_another_certificate_or_bad_pem_is_refused() {
        let (chain, _) = certificate(&["a.example.com"]);
        let (_, other_key) = certificate(&["a.example.com"]);
        for (chain, key) in [
            (chain.clone(), other_key.clone()),
            ("garbage".into(), other_key),
            (chain, "garbage".into()),
        ] {
            assert!(matches!(
                Issued::from_pem(chain, key),
                Err(AcmeError::BadCertificate(_))
            ));
        }
    }
}
