//! TLS as Junction terminates it: listener certificates picked by SNI and reloaded in
//! place, the rustls server config every listener shares the defaults of (TLS 1.2 and
//! 1.3, ALPN `h2` and `http/1.1`, rotating ticket keys), and client certificates read
//! as identities, and the CA that signs the leaves of intercepted egress hosts. Knows
//! nothing of HTTP; `config` builds it, `server` serves it.

pub mod authority;
pub mod certificate;
pub mod identity;
pub mod resolver;
mod server;

pub use certificate::{CertError, CertFiles, Certificate, KeyKind};
pub use identity::{ClientIdentity, client_verifier};
pub use resolver::{
    ACME_TLS_ALPN, AcmeCertificates, CertSet, IssuedCertificate, Refresh, SniResolver,
};
pub use server::{ListenerTls, server_config};

use std::sync::Arc;

/// The crypto provider of every TLS config Junction builds (ring: no cmake build).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}
