//! Listener TLS: a certificate chain and key loaded once into the rustls server config
//! a `ListenerPlan` holds (TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Loads a certificate chain and its private key (PEM) into a server config.
pub fn server_config(
    cert_path: &str,
    key_path: &str,
) -> Result<Arc<rustls::ServerConfig>, (&'static str, String)> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| {
            (
                "cert",
                format!("cannot read certificate file {cert_path:?}: {e}"),
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| ("cert", format!("invalid PEM in {cert_path:?}: {e}")))?;
    if certs.is_empty() {
        return Err(("cert", format!("{cert_path:?} holds no certificate")));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        (
            "key",
            format!("cannot read private key from {key_path:?}: {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("cert", format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            (
                "key",
                format!("certificate and key do not fit together: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
