//! TLS to https endpoints: rustls with the system roots or a configured CA, a client
//! certificate when the endpoint asks for one (mTLS), an optional SNI / verification
//! name, and ALPN chosen by the pool's protocol. Sessions are resumed (rustls' in-memory
//! store of 256 sessions per pool, TLS 1.3 tickets and 1.2 ids), so a new connection to
//! a known endpoint costs an abbreviated handshake. Both engines connect through here.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use super::Protocol;

/// A pool's TLS settings beyond the default (system roots, verified, SNI from the URL).
#[derive(Default)]
pub struct TlsOptions<'a> {
    /// PEM file of CAs trusted instead of the system roots.
    pub ca_file: Option<&'a str>,
    /// A client certificate chain and key (PEM files) shown to endpoints that ask.
    pub client_cert: Option<(&'a str, &'a str)>,
    /// `false`: any server certificate is accepted (handshake signatures are still
    /// checked). Only for tests and closed networks; `junction check` warns.
    pub verify: bool,
}

/// Which setting a pool's TLS could not be built from.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{0}")]
    Ca(String),
    #[error("{0}")]
    ClientCert(String),
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// Builds the client TLS config of a pool (`ca_file` or the system's roots).
pub fn client_config(
    ca_file: Option<&str>,
    protocol: Protocol,
) -> Result<Arc<rustls::ClientConfig>, String> {
    client_config_with(
        &TlsOptions {
            ca_file,
            verify: true,
            ..TlsOptions::default()
        },
        protocol,
    )
    .map_err(|e| e.to_string())
}

/// Builds the client TLS config of a pool from all its TLS settings.
pub fn client_config_with(
    options: &TlsOptions<'_>,
    protocol: Protocol,
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Setup(e.to_string()))?;
    let builder = if options.verify {
        builder.with_root_certificates(roots(options.ca_file).map_err(TlsSetupError::Ca)?)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
    };
    let mut config = match options.client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                client_chain(cert).map_err(TlsSetupError::ClientCert)?,
                PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    TlsSetupError::ClientCert(format!("cannot read private key from {key:?}: {e}"))
                })?,
            )
            .map_err(|e| {
                TlsSetupError::ClientCert(format!(
                    "client certificate and key do not fit together: {e}"
                ))
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match protocol {
        Protocol::H2 => vec![b"h2".to_vec()],
        Protocol::Http1 => vec![b"http/1.1".to_vec()],
    };
    Ok(Arc::new(config))
}

fn client_chain(cert: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read client certificate {cert:?}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid PEM in {cert:?}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{cert:?} holds no certificate"));
    }
    Ok(chain)
}

fn roots(ca_file: Option<&str>) -> Result<rustls::RootCertStore, String> {
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
    Ok(roots)
}

/// A pool's TLS as its connections use it: the config and the name to ask for.
#[derive(Clone)]
pub struct UpstreamTls {
    connector: tokio_rustls::TlsConnector,
    /// `server_name`: sent as SNI and verified instead of the endpoint URL's host.
    server_name: Option<ServerName<'static>>,
}

impl UpstreamTls {
    pub fn new(
        config: Arc<rustls::ClientConfig>,
        server_name: Option<ServerName<'static>>,
    ) -> Self {
        UpstreamTls {
            connector: tokio_rustls::TlsConnector::from(config),
            server_name,
        }
    }

    pub fn with_server_name(mut self, name: ServerName<'static>) -> Self {
        self.server_name = Some(name);
        self
    }

    /// The TLS handshake with an endpoint whose URL names `host`.
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_string())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        };
        self.connector.connect(name, tcp).await
    }
}

/// `verify = false`: every server certificate is taken; the handshake's signatures
/// are still checked, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
