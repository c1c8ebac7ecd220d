//! Client certificates as identities (mTLS): the names a verified client certificate
//! carries (subject CN, DNS and URI SANs, a SPIFFE ID), and the verifier that checks
//! client certificates against a listener's CA.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::danger::ClientCertVerifier;

/// What a verified client certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub common_name: Option<String>,
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    /// The first `spiffe://` URI SAN.
    pub spiffe: Option<String>,
}

impl ClientIdentity {
    /// Reads the identity of a (verified) leaf certificate; `None` if it cannot be parsed.
    pub fn from_der(der: &CertificateDer<'_>) -> Option<ClientIdentity> {
        use x509_parser::prelude::*;
        let (_, cert) = parse_x509_certificate(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .find_map(|cn| cn.as_str().ok())
            .map(str::to_string);
        let (mut dns, mut uris) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(name) => dns.push(name.to_ascii_lowercase()),
                    GeneralName::URI(uri) => uris.push(uri.to_string()),
                    _ => {}
                }
            }
        }
        let spiffe = uris.iter().find(|u| u.starts_with("spiffe://")).cloned();
        Some(ClientIdentity {
            common_name,
            dns,
            uris,
            spiffe,
        })
    }

    /// The one name that stands for the client (upstream header, access log): its
    /// SPIFFE ID, else its first URI SAN, else its first DNS SAN, else its CN.
    pub fn primary(&self) -> &str {
        self.spiffe
            .as_deref()
            .or(self.uris.first().map(String::as_str))
            .or(self.dns.first().map(String::as_str))
            .or(self.common_name.as_deref())
            .unwrap_or("")
    }

    /// Every name an `auth.identities` pattern is matched against: the URIs (SPIFFE ID
    /// included), the DNS names, and the CN written `CN=...`.
    pub fn names(&self) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
        let uris = self
            .uris
            .iter()
            .map(|u| std::borrow::Cow::Borrowed(u.as_str()));
        let dns = self
            .dns
            .iter()
            .map(|d| std::borrow::Cow::Borrowed(d.as_str()));
        let cn = self
            .common_name
            .iter()
            .map(|cn| std::borrow::Cow::Owned(format!("CN={cn}")));
        uris.chain(dns).chain(cn)
    }
}

/// A verifier of client certificates issued by the CAs in `ca_file`; with `required`
/// false a client without a certificate is let through (with no identity).
pub fn client_verifier(
    ca_file: &Path,
    required: bool,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("cannot read CA file {ca_file:?}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid PEM in CA file {ca_file:?}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("CA file {ca_file:?} holds no certificate"));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("invalid CA certificate in {ca_file:?}: {e}"))?;
    }
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        super::provider(),
    );
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| format!("client certificate verifier: {e}"))
}
