//! TLS to https endpoints: rustls with the system roots or a configured CA file,
//! ALPN chosen by the pool's protocol.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::Protocol;

/// Builds the client TLS config of a pool (`ca_file` or the system's roots).
pub fn client_config(
    ca_file: Option<&str>,
    protocol: Protocol,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {path:?}: {e}"))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("invalid PEM in CA file {path:?}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("CA file {path:?} holds no certificate"));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("invalid CA certificate in {path:?}: {e}"))?;
            }
        }
        None => {
            let loaded = rustls_native_certs::load_native_certs();
            for cert in loaded.certs {
                // A system store may hold certificates rustls rejects; skipping them is
                // what browsers do too.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = match protocol {
        Protocol::H2 => vec![b"h2".to_vec()],
        Protocol::Http1 => vec![b"http/1.1".to_vec()],
    };
    Ok(Arc::new(config))
}
