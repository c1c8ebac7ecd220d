//! A listener's rustls server config: its certificates (by SNI), TLS 1.2 and 1.3 with
//! rustls' safe cipher suites, ALPN `h2` then `http/1.1`, a session cache, and session
//! tickets whose keys rotate (every 6 hours, each valid 12) and survive config reloads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::server::ProducesTickets;

use super::resolver::SniResolver;

/// Session ids a listener remembers for TLS 1.2 resumption.
const SESSION_CACHE_SIZE: usize = 4096;

/// A listener's TLS as the server runs it.
pub struct ListenerTls {
    pub config: Arc<rustls::ServerConfig>,
    /// Its certificates, reloaded in place by the watcher.
    pub certs: Arc<SniResolver>,
    /// How often the certificate files are looked at (`None`: only on config reload).
    pub watch: Option<Duration>,
    /// Client certificates are asked for (`client_auth`): read their identity.
    pub client_auth: bool,
}

/// The ticket keys of a listener, by listener name: one rotating ticketer each, kept
/// for the process's life so a reload does not void the tickets clients hold, and not
/// shared so a ticket from one listener never resumes on another.
fn ticketer(listener: &str) -> Result<Arc<dyn ProducesTickets>, String> {
    static TICKETERS: OnceLock<Mutex<HashMap<String, Arc<dyn ProducesTickets>>>> = OnceLock::new();
    let mut ticketers = TICKETERS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ticketer) = ticketers.get(listener) {
        return Ok(ticketer.clone());
    }
    let ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS tickets: {e}"))?;
    ticketers.insert(listener.to_string(), ticketer.clone());
    Ok(ticketer)
}

/// The server config of listener `listener` serving `certs`; `acme_tls_alpn` adds
/// ALPN `acme-tls/1` for TLS-ALPN-01 checks.
pub fn server_config(
    listener: &str,
    certs: Arc<SniResolver>,
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    acme_tls_alpn: bool,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let builder = rustls::ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme_tls_alpn {
        // Only ACME servers offer it; the listener closes such connections after the
        // handshake.
        config.alpn_protocols.push(super::ACME_TLS_ALPN.to_vec());
    }
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = ticketer(listener)?;
    Ok(Arc::new(config))
}
