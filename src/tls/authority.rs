//! The certificate authority of TLS interception: a CA written by `junction ca init`
//! (or brought from elsewhere), checked at load, and the short-lived leaf certificates
//! it signs for each intercepted host, minted once per host and kept in a bounded cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rcgen_acme::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// How long a minted leaf is valid; clients see a fresh one well before it ends.
const LEAF_VALIDITY: Duration = Duration::from_secs(3 * 24 * 3600);
/// A cached leaf older than this is minted again.
const LEAF_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// Leaves back-dated by this much, for clients whose clocks run a little behind.
const LEAF_BACKDATE: Duration = Duration::from_secs(3600);
/// Hosts whose leaf is kept; beyond, the oldest is dropped.
const LEAF_CACHE: usize = 4096;
/// A CA made by `junction ca init` is valid this long.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What `junction ca init` writes: the CA certificate and its key, both PEM.
pub struct NewAuthority {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A new CA (ECDSA P-256, `CA:true`, `keyCertSign`) named `name`, for clients to trust.
pub fn generate_authority(name: &str) -> Result<NewAuthority, String> {
    let key = KeyPair::generate_for(&rcgen_acme::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("cannot make a key: {e}"))?;
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name);
    subject.push(DnType::OrganizationName, "Junction interception");
    params.distinguished_name = subject;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = unix_now();
    params.not_before = rcgen_acme::date_time_ymd(1970, 1, 1) + (now - LEAF_BACKDATE);
    params.not_after = rcgen_acme::date_time_ymd(1970, 1, 1) + (now + CA_VALIDITY);
    params.serial_number = Some(random_serial());
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot sign the CA: {e}"))?;
    Ok(NewAuthority {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // ring's system random; a serial needs no more than uniqueness.
    let _ = rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// A CA loaded for interception, with the leaves it minted.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    leaves: Mutex<HashMap<String, Arc<Leaf>>>,
    minted: std::sync::atomic::AtomicU64,
}

/// One host's leaf: minted once, whoever asks first, while the others wait for it.
struct Leaf {
    made: Instant,
    config: OnceLock<Result<Arc<rustls::ServerConfig>, String>>,
}

impl Authority {
    /// Reads and checks a CA: the certificate must be a CA allowed to sign certificates,
    /// the key must be its key. Errors say which file is wrong and why.
    pub fn load(cert_file: &str, key_file: &str) -> Result<Authority, AuthorityError> {
        let cert_pem = std::fs::read_to_string(cert_file)
            .map_err(|e| AuthorityError::Cert(format!("cannot read {cert_file:?}: {e}")))?;
        let key_pem = std::fs::read_to_string(key_file)
            .map_err(|e| AuthorityError::Key(format!("cannot read {key_file:?}: {e}")))?;
        Authority::from_pem(&cert_pem, &key_pem)
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Authority, AuthorityError> {
        let ca_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| AuthorityError::Cert(format!("no PEM certificate: {e}")))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| {
            AuthorityError::Key(format!(
                "not a PKCS#8 PEM private key (ECDSA, Ed25519): {e}"
            ))
        })?;
        check_ca(&ca_der, &key)?;
        let issuer = Issuer::from_ca_cert_der(&ca_der, key)
            .map_err(|e| AuthorityError::Cert(format!("cannot read the CA's subject: {e}")))?;
        Ok(Authority {
            issuer,
            ca_der,
            leaves: Mutex::new(HashMap::new()),
            minted: Default::default(),
        })
    }

    /// Leaves minted so far (a host's is minted once, then again when it is refreshed).
    pub fn minted(&self) -> u64 {
        self.minted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The server config presenting `host`'s leaf (ALPN `h2`, `http/1.1`).
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, String> {
        let leaf = {
            let mut leaves = self.leaves.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = leaves
                .get(host)
                .filter(|leaf| leaf.made.elapsed() < LEAF_REFRESH)
                .cloned();
            match fresh {
                Some(leaf) => leaf,
                None => {
                    if leaves.len() >= LEAF_CACHE {
                        let oldest = leaves
                            .iter()
                            .min_by_key(|(_, leaf)| leaf.made)
                            .map(|(host, _)| host.clone());
                        if let Some(oldest) = oldest {
                            leaves.remove(&oldest);
                        }
                    }
                    let leaf = Arc::new(Leaf {
                        made: Instant::now(),
                        config: OnceLock::new(),
                    });
                    leaves.insert(host.to_string(), leaf.clone());
                    leaf
                }
            }
        };
        leaf.config.get_or_init(|| self.mint(host)).clone()
    }

    fn mint(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, String> {
        self.minted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = KeyPair::generate_for(&rcgen_acme::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("cannot make a key for {host}: {e}"))?;
        let mut params = CertificateParams::new(vec![host.to_string()])
            .map_err(|e| format!("{host:?} cannot be a certificate name: {e}"))?;
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, host);
        params.distinguished_name = subject;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = unix_now();
        params.not_before = rcgen_acme::date_time_ymd(1970, 1, 1) + (now - LEAF_BACKDATE);
        params.not_after = rcgen_acme::date_time_ymd(1970, 1, 1) + (now + LEAF_VALIDITY);
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("cannot sign {host}'s certificate: {e}"))?;
        let chain = vec![cert.der().clone(), self.ca_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("TLS setup for {host}: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Which file of a CA is wrong.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("{0}")]
    Cert(String),
    #[error("{0}")]
    Key(String),
}

/// The certificate is a CA that may sign certificates, valid now, and `key` is its key.
fn check_ca(der: &CertificateDer<'_>, key: &KeyPair) -> Result<(), AuthorityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| AuthorityError::Cert(format!("not an X.509 certificate: {e}")))?;
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if !is_ca {
        return Err(AuthorityError::Cert(
            "not a CA certificate (no basicConstraints CA:true); make one with `junction ca init`"
                .into(),
        ));
    }
    if let Ok(Some(usage)) = cert.key_usage()
        && !usage.value.key_cert_sign()
    {
        return Err(AuthorityError::Cert(
            "the CA's key usage does not allow signing certificates (keyCertSign)".into(),
        ));
    }
    if !cert.validity().is_valid() {
        return Err(AuthorityError::Cert(format!(
            "the CA is not valid now (valid from {} to {})",
            cert.validity().not_before,
            cert.validity().not_after
        )));
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(AuthorityError::Key(
            "this key is not the CA certificate's key".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_ca_loads_and_signs_leaves_once_per_host() {
        let ca = generate_authority("test CA").unwrap();
        let authority = Authority::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        let first = authority.server_config("site.example").unwrap();
        let again = authority.server_config("site.example").unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        authority.server_config("127.0.0.1").unwrap();
        assert_eq!(authority.minted(), 2);
    }

    #[test]
    fn hosts_asked_for_at_once_get_one_leaf() {
        let ca = generate_authority("test CA").unwrap();
        let authority = Arc::new(Authority::from_pem(&ca.cert_pem, &ca.key_pem).unwrap());
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (authority, barrier) = (authority.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    authority.server_config("busy.example").unwrap()
                })
            })
            .collect();
        let configs: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(authority.minted(), 1);
        assert!(configs.iter().all(|c| Arc::ptr_eq(c, &configs[0])));
    }

    #[test]
    fn a_key_that_is_not_the_cas_is_refused() {
        let ca = generate_authority("one").unwrap();
        let other = generate_authority("two").unwrap();
        let error = Authority::from_pem(&ca.cert_pem, &other.key_pem)
            .err()
            .unwrap();
        assert!(matches!(error, AuthorityError::Key(_)), "{error}");
    }

    #[test]
    fn a_leaf_is_not_a_ca() {
        let key = KeyPair::generate_for(&rcgen_acme::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = CertificateParams::new(vec!["leaf.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let error = Authority::from_pem(&leaf.pem(), &key.serialize_pem())
            .err()
            .unwrap();
        assert!(error.to_string().contains("not a CA"), "{error}");
    }
}
