//! SNI: a listener's certificates, picked per handshake by the name the client asked
//! for (exact names first, then one-label wildcards, else the default) and, among the
//! certificates of that name, by the signature schemes the client offers (ECDSA before
//! RSA). The set sits behind an `ArcSwap`: a reload swaps it whole, and a handshake
//! under way, like an open connection, keeps the certificate it was given.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certificate::{self, CertError, CertFiles, Certificate, name_matches};

/// The ALPN protocol of TLS-ALPN-01 checks (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Certificates obtained by ACME for some of a listener's names (the `acme` layer
/// implements it; this layer only asks): the issued certificate, or for a ClientHello
/// offering `acme-tls/1` a challenge certificate; `None` while there is none.
pub trait AcmeCertificates: std::fmt::Debug + Send + Sync {
    fn certificate(&self, hello: &ClientHello<'_>) -> Option<Arc<CertifiedKey>>;
    /// The certificate issued and in force, as the admin API shows it (`None` before
    /// the first issuance).
    fn issued(&self) -> Option<IssuedCertificate>;
}

/// An ACME certificate seen from outside: its names and validity, never its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// DNS names it serves, lower-cased.
    pub names: Vec<String>,
    /// End of validity, in seconds since the Unix epoch.
    pub not_after: i64,
    pub kind: super::KeyKind,
    /// The serial number, hex: what tells one issuance from the next.
    pub serial: String,
}

/// The `acme` section of a listener as its resolver sees it: its domains, and the
/// certificates once the gateway has plugged its issuer in (it outlives reloads, the
/// resolver does not).
#[derive(Debug)]
struct AcmeRoute {
    domains: Vec<String>,
    issuer: ArcSwapOption<Box<dyn AcmeCertificates>>,
}

/// The certificates of a listener at one moment.
pub struct CertSet {
    pub certs: Vec<Arc<Certificate>>,
    /// Exact names to the certificates serving them, best first.
    exact: HashMap<String, Vec<usize>>,
    /// `*.example.com` is kept under `example.com`.
    wildcard: HashMap<String, Vec<usize>>,
    /// Served when the client sends no name or one no certificate has.
    default: Vec<usize>,
}

impl CertSet {
    /// Indexes `certs` (in config order); `default` is a name one of them serves, or
    /// the first certificate's names stand in.
    pub fn new(certs: Vec<Arc<Certificate>>, default: Option<&str>) -> Result<CertSet, String> {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, cert) in certs.iter().enumerate() {
            for name in &cert.names {
                let slot = match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_string()).or_default(),
                    None => exact.entry(name.clone()).or_default(),
                };
                if !slot.contains(&i) {
                    slot.push(i);
                }
            }
        }
        // ECDSA first: smaller and faster handshakes for the clients that take it.
        for slot in exact.values_mut().chain(wildcard.values_mut()) {
            slot.sort_by_key(|&i| certs[i].kind);
        }
        if certs.is_empty() && default.is_none() {
            // Only ACME certificates: no default until issued (handshakes fail).
            return Ok(CertSet {
                certs,
                exact,
                wildcard,
                default: Vec::new(),
            });
        }
        let default = match default {
            Some(name) => {
                let name = name.to_ascii_lowercase();
                let mut serving: Vec<usize> = (0..certs.len())
                    .filter(|&i| certs[i].names.iter().any(|p| name_matches(p, &name)))
                    .collect();
                if serving.is_empty() {
                    return Err(format!("no certificate serves the default name {name:?}"));
                }
                serving.sort_by_key(|&i| certs[i].kind);
                serving
            }
            None => match certs.first() {
                // Every certificate of the first one's names (its RSA twin too).
                Some(first) => {
                    let mut same: Vec<usize> = (0..certs.len())
                        .filter(|&i| certs[i].names == first.names)
                        .collect();
                    same.sort_by_key(|&i| certs[i].kind);
                    same
                }
                None => return Err("a listener's TLS needs at least one certificate".into()),
            },
        };
        Ok(CertSet {
            certs,
            exact,
            wildcard,
            default,
        })
    }

    /// The certificates that would answer a client asking for `name` (none: the default).
    pub fn candidates(&self, name: Option<&str>) -> &[usize] {
        let Some(name) = name else {
            return &self.default;
        };
        if let Some(found) = self.exact.get(name) {
            return found;
        }
        name.split_once('.')
            .filter(|(label, _)| !label.is_empty())
            .and_then(|(_, suffix)| self.wildcard.get(suffix))
            .map_or(&self.default, |v| v)
    }

    /// Whether some certificate serves `name` (lower-case).
    pub fn serves(&self, name: &str) -> bool {
        self.certs
            .iter()
            .any(|c| c.names.iter().any(|p| name_matches(p, name)))
    }

    fn pick(&self, name: Option<&str>, hello: &ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let candidates = self.candidates(name);
        let schemes = hello.signature_schemes();
        let fits = candidates
            .iter()
            .map(|&i| &self.certs[i])
            .find(|cert| cert.key.key.choose_scheme(schemes).is_some());
        // None fits: the first anyway, and rustls tells the client why it fails.
        fits.or_else(|| candidates.first().map(|&i| &self.certs[i]))
            .map(|cert| cert.key.clone())
    }
}

/// Why a listener's certificates did not load.
#[derive(Debug)]
pub enum LoadError {
    /// The certificate at this index (in config order).
    Cert(usize, CertError),
    /// The `default` name is served by none of them.
    Default(String),
}

/// A listener's certificates as rustls asks for them, reloadable in place.
pub struct SniResolver {
    set: ArcSwap<CertSet>,
    files: Vec<CertFiles>,
    default: Option<String>,
    /// Per certificate, the digest of files a reload refused: counted once, not at
    /// every poll while they stay broken.
    refused: Mutex<Vec<Option<[u8; 32]>>>,
    acme: Option<AcmeRoute>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver")
            .field("files", &self.files)
            .finish()
    }
}

/// What one look at a listener's certificate files found.
#[derive(Debug, Default)]
pub struct Refresh {
    /// Certificates loaded anew (their cert file paths).
    pub reloaded: Vec<std::path::PathBuf>,
    /// Changed files that were refused, each with why (the old certificate stays).
    pub refused: Vec<CertError>,
}

impl SniResolver {
    /// Loads every certificate; the first error fails the whole (a config error).
    /// `acme_domains` are served by the ACME issuer plugged in with `set_acme` (then
    /// `files` may be empty).
    pub fn load(
        files: Vec<CertFiles>,
        default: Option<String>,
        acme_domains: Vec<String>,
    ) -> Result<Self, LoadError> {
        if files.is_empty() && acme_domains.is_empty() {
            return Err(LoadError::Default(
                "a listener's TLS needs at least one certificate".into(),
            ));
        }
        let mut certs = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            let cert = certificate::load(f).map_err(|e| LoadError::Cert(i, e))?;
            certs.push(Arc::new(cert));
        }
        let set = CertSet::new(certs, default.as_deref()).map_err(LoadError::Default)?;
        Ok(SniResolver {
            set: ArcSwap::from_pointee(set),
            refused: Mutex::new(vec![None; files.len()]),
            files,
            default,
            acme: (!acme_domains.is_empty()).then(|| AcmeRoute {
                domains: acme_domains,
                issuer: ArcSwapOption::empty(),
            }),
        })
    }

    /// The names the ACME section of this listener is for (empty: none).
    pub fn acme_domains(&self) -> &[String] {
        self.acme.as_ref().map_or(&[], |acme| &acme.domains)
    }

    /// Plugs in the issuer of the listener's ACME certificate (ignored without an ACME
    /// section): its domains are then served from it as soon as it has one.
    pub fn set_acme(&self, issuer: Box<dyn AcmeCertificates>) {
        if let Some(acme) = &self.acme {
            acme.issuer.store(Some(Arc::new(issuer)));
        }
    }

    /// The ACME certificate serving this listener's `acme` domains, once issued.
    pub fn acme_issued(&self) -> Option<IssuedCertificate> {
        let acme = self.acme.as_ref()?;
        acme.issuer.load().as_ref()?.issued()
    }

    /// For a name of the ACME section: its certificate, if issued. `Err` when the
    /// client is an ACME server checking TLS-ALPN-01 and there is no challenge
    /// certificate: it must not be given another certificate.
    fn acme_certificate(
        &self,
        name: Option<&str>,
        hello: &ClientHello<'_>,
    ) -> Result<Option<Arc<CertifiedKey>>, ()> {
        let Some(acme) = &self.acme else {
            return Ok(None);
        };
        if !name.is_some_and(|n| acme.domains.iter().any(|d| d == n)) {
            return Ok(None);
        }
        let challenge = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        let found = acme
            .issuer
            .load()
            .as_ref()
            .and_then(|issuer| issuer.certificate(hello));
        match found {
            None if challenge => Err(()),
            found => Ok(found),
        }
    }

    /// The certificates in force.
    pub fn current(&self) -> Arc<CertSet> {
        self.set.load_full()
    }

    /// Reads the files again and swaps in those that changed and load; a changed file
    /// that does not load is refused (once per content) and the old certificate stays.
    pub fn refresh(&self) -> Refresh {
        let current = self.set.load_full();
        let mut refused_digests = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        let mut outcome = Refresh::default();
        let mut certs = current.certs.clone();
        for (i, files) in self.files.iter().enumerate() {
            let digest = match certificate::digest_of(files) {
                Ok(digest) => digest,
                Err(error) => {
                    // A missing file: refused once until it is back.
                    if refused_digests[i] != Some([0; 32]) {
                        refused_digests[i] = Some([0; 32]);
                        outcome.refused.push(error);
                    }
                    continue;
                }
            };
            if digest == certs[i].digest {
                // Back to what is serving (after a refusal): a later change counts anew.
                refused_digests[i] = None;
                continue;
            }
            if refused_digests[i] == Some(digest) {
                continue;
            }
            match certificate::load(files) {
                Ok(cert) => {
                    refused_digests[i] = None;
                    outcome.reloaded.push(files.cert.clone());
                    certs[i] = Arc::new(cert);
                }
                Err(error) => {
                    refused_digests[i] = Some(digest);
                    outcome.refused.push(error);
                }
            }
        }
        if !outcome.reloaded.is_empty() {
            match CertSet::new(certs, self.default.as_deref()) {
                Ok(set) => self.set.store(Arc::new(set)),
                Err(reason) => {
                    // The new names no longer serve the default: keep the old set.
                    outcome.reloaded.clear();
                    outcome.refused.push(CertError::Unparsable {
                        path: self.files[0].cert.clone(),
                        reason,
                    });
                }
            }
        }
        outcome
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.set.load();
        let lower = hello
            .server_name()
            .filter(|name| name.bytes().any(|b| b.is_ascii_uppercase()))
            .map(str::to_ascii_lowercase);
        let name = lower.as_deref().or(hello.server_name());
        match self.acme_certificate(name, &hello) {
            Ok(Some(issued)) => Some(issued),
            Ok(None) => set.pick(name, &hello),
            Err(()) => None,
        }
    }
}
