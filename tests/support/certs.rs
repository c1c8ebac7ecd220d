//! Certificates for the TLS tests, made with rcgen: a test CA, leaves it signs (ECDSA
//! P-256, or RSA from the one fixed test key: ring cannot generate RSA keys), written as
//! PEM files; and a TLS client that reports which certificate a listener served.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// A 2048-bit RSA key made for these tests only (openssl genpkey); it protects nothing.
const RSA_TEST_KEY: &str = include_str!("rsa_test_key.pem");

/// A certificate authority that signs the test certificates.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// One signed certificate and its key, as PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Junction test CA");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// An ECDSA P-256 certificate for `names`, valid for years.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.issue(names, rcgen::KeyPair::generate().unwrap(), None)
    }

    /// An RSA certificate for `names`.
    pub fn rsa_leaf(&self, names: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::from_pem_and_sign_algo(RSA_TEST_KEY, &rcgen::PKCS_RSA_SHA256)
            .expect("the RSA test key");
        self.issue(names, key, None)
    }

    /// An ECDSA certificate for `names` that expires `in_` from now.
    pub fn expiring_leaf(&self, names: &[&str], in_: Duration) -> Leaf {
        self.issue(names, rcgen::KeyPair::generate().unwrap(), Some(in_))
    }

    /// A client certificate with subject CN `cn` and URI SANs `uris` (a SPIFFE ID).
    pub fn client_leaf(&self, cn: &str, dns: &[&str], uris: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for name in dns {
            params
                .subject_alt_names
                .push(rcgen::SanType::DnsName((*name).try_into().unwrap()));
        }
        for uri in uris {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI((*uri).try_into().unwrap()));
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn issue(&self, names: &[&str], key: rcgen::KeyPair, expires_in: Option<Duration>) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        if let Some(in_) = expires_in {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            params.not_after = rcgen::date_time_ymd(1970, 1, 1) + (now + in_);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

impl Leaf {
    /// Writes `NAME.pem` and `NAME.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&key, &self.key_pem).unwrap();
        std::fs::write(&cert, &self.cert_pem).unwrap();
        (cert, key)
    }
}

/// Which signature schemes a handshake offers the server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Offer {
    All,
    RsaOnly,
    EcdsaOnly,
}

/// A server certificate verifier that accepts anything and offers `Offer`'s schemes:
/// the test reads which certificate came, it does not judge it.
#[derive(Debug)]
struct Recording(Offer);

impl rustls::client::danger::ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        use rustls::SignatureScheme as S;
        let rsa = [
            S::RSA_PSS_SHA256,
            S::RSA_PSS_SHA384,
            S::RSA_PSS_SHA512,
            S::RSA_PKCS1_SHA256,
            S::RSA_PKCS1_SHA384,
            S::RSA_PKCS1_SHA512,
        ];
        let ecdsa = [S::ECDSA_NISTP256_SHA256, S::ECDSA_NISTP384_SHA384];
        match self.0 {
            Offer::All => ecdsa.iter().chain(rsa.iter()).copied().collect(),
            Offer::RsaOnly => rsa.to_vec(),
            Offer::EcdsaOnly => ecdsa.to_vec(),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS connection to `addr` asking for `sni` (none: no SNI), offering `offer`'s
/// schemes, accepting whatever certificate comes.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: Option<&str>,
    offer: Offer,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut config = trusting_client(offer, &[&rustls::version::TLS13, &rustls::version::TLS12]);
    config.enable_sni = sni.is_some();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    connect_with(Arc::new(config), addr, sni).await
}

/// A client config that takes any server certificate, offering `offer`'s schemes and
/// speaking only `versions`.
pub fn trusting_client(
    offer: Offer,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recording(offer)))
        .with_no_client_auth()
}

/// A TLS connection to `addr` with `config`, asking for `sni`.
pub async fn connect_with(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    sni: Option<&str>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let name = ServerName::try_from(sni.unwrap_or("no-sni.invalid").to_string()).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The leaf certificate of a TLS connection.
pub fn peer_leaf(
    stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate")[0]
        .clone()
}

/// The leaf certificate `addr` serves to a client asking for `sni`.
pub async fn served_cert(
    addr: SocketAddr,
    sni: Option<&str>,
    offer: Offer,
) -> std::io::Result<CertificateDer<'static>> {
    Ok(peer_leaf(&tls_connect(addr, sni, offer).await?))
}

/// `GET path` on an open connection; returns the response head.
pub async fn get_over<S>(stream: &mut S, host: &str, path: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read the answer");
        assert!(
            n > 0,
            "closed before the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A TLS handshake that verifies the server's certificate for `name` against `ca`.
pub async fn verified_handshake(
    addr: SocketAddr,
    name: &str,
    ca: &CertificateDer<'static>,
) -> std::io::Result<CertificateDer<'static>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await?;
    Ok(stream.get_ref().1.peer_certificates().unwrap()[0].clone())
}

/// A reqwest client that trusts only `ca` and reaches every name in `names` at `addr`.
pub fn https_client(ca: &str, names: &[&str], addr: SocketAddr) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
    for name in names {
        builder = builder.resolve(name, addr);
    }
    builder.build().expect("https client")
}
