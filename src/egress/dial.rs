//! Opening byte streams to a site through an exit: a TCP connect (direct), `CONNECT`
//! through an HTTP(S) proxy, or a SOCKS5 handshake (RFC 1928, with RFC 1929 user and
//! password). Failures say whose fault they were: the exit's, or the site's.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use http::HeaderValue;

use crate::upstream::{Dialer, Endpoint, SendError};

/// How an exit reaches sites.
pub enum ExitKind {
    /// From this host.
    Direct,
    /// Through an HTTP proxy (`tls`: HTTPS to the proxy): absolute-form requests and
    /// CONNECT, with `Proxy-Authorization` when the URL has credentials.
    Http {
        address: ProxyAddress,
        tls: bool,
        authorization: Option<HeaderValue>,
    },
    /// Through a SOCKS5 proxy (RFC 1928), with user and password when given (RFC 1929).
    /// Host names are sent as names: the exit resolves them, in its own region.
    Socks5 {
        address: ProxyAddress,
        credentials: Option<(String, String)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAddress {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for ProxyAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&authority(&self.host, self.port))
    }
}

/// `host:port`, with an IPv6 address in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A stream to a site, whatever carries it.
pub trait Tunnel: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Tunnel for T {}

/// Longest answer head an HTTP exit may send to CONNECT.
const MAX_CONNECT_REPLY: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The exit itself could not be reached (or its TLS or SOCKS greeting failed).
    #[error("exit unreachable: {0}")]
    ExitUnreachable(String),
    /// The exit was reached and refused to open the tunnel.
    #[error("exit refused the tunnel: {0}")]
    Refused(String),
    /// The site could not be reached (directly, or as the exit reports it).
    #[error("{0}")]
    Site(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Opens a stream to `host:port` through an exit of `kind` (`connector`: its TLS, for
/// an HTTPS proxy); `direct_to` is the checked address a direct exit connects to.
pub async fn open_tunnel(
    kind: &ExitKind,
    connector: Option<&tokio_rustls::TlsConnector>,
    host: &str,
    port: u16,
    direct_to: Option<SocketAddr>,
    timeout: Duration,
) -> Result<Box<dyn Tunnel>, DialError> {
    let opening = async {
        match kind {
            ExitKind::Direct => {
                let address =
                    direct_to.ok_or_else(|| DialError::Site(format!("{host} was not resolved")))?;
                let stream = TcpStream::connect(address)
                    .await
                    .map_err(|e| DialError::Site(format!("{host} ({address}): {e}")))?;
                let _ = stream.set_nodelay(true);
                Ok(Box::new(stream) as Box<dyn Tunnel>)
            }
            ExitKind::Http {
                address,
                tls,
                authorization,
            } => {
                let stream = connect_exit(address).await?;
                let authority = authority(host, port);
                if *tls {
                    let connector = connector.ok_or_else(|| {
                        DialError::ExitUnreachable("no TLS settings for https exits".into())
                    })?;
                    let name = rustls::pki_types::ServerName::try_from(address.host.clone())
                        .map_err(|e| DialError::ExitUnreachable(format!("{address}: {e}")))?;
                    let mut stream = connector.connect(name, stream).await.map_err(|e| {
                        DialError::ExitUnreachable(format!("TLS with {address}: {e}"))
                    })?;
                    http_connect(&mut stream, &authority, authorization.as_ref()).await?;
                    Ok(Box::new(stream) as Box<dyn Tunnel>)
                } else {
                    let mut stream = stream;
                    http_connect(&mut stream, &authority, authorization.as_ref()).await?;
                    Ok(Box::new(stream) as Box<dyn Tunnel>)
                }
            }
            ExitKind::Socks5 {
                address,
                credentials,
            } => {
                let mut stream = connect_exit(address).await?;
                socks5_connect(&mut stream, host, port, credentials.as_ref()).await?;
                Ok(Box::new(stream) as Box<dyn Tunnel>)
            }
        }
    };
    tokio::time::timeout(timeout, opening)
        .await
        .unwrap_or(Err(DialError::Timeout(timeout)))
}

async fn connect_exit(address: &ProxyAddress) -> Result<TcpStream, DialError> {
    let stream = TcpStream::connect((address.host.as_str(), address.port))
        .await
        .map_err(|e| DialError::ExitUnreachable(format!("{address}: {e}")))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Asks an HTTP proxy for a tunnel; any 2xx answer opens it.
async fn http_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    authority: &str,
    authorization: Option<&http::HeaderValue>,
) -> Result<(), DialError> {
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(value) = authorization {
        head.push_str("Proxy-Authorization: ");
        head.push_str(value.to_str().unwrap_or_default());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let broken = |e: std::io::Error| DialError::ExitUnreachable(format!("CONNECT: {e}"));
    stream.write_all(head.as_bytes()).await.map_err(broken)?;
    // Read byte by byte up to the blank line: nothing of the tunnel may be consumed.
    let mut reply = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n\r\n") {
        if reply.len() >= MAX_CONNECT_REPLY {
            return Err(DialError::Refused("CONNECT answer head too long".into()));
        }
        if stream.read(&mut byte).await.map_err(broken)? == 0 {
            return Err(DialError::Refused(
                "the exit closed the connection instead of answering CONNECT".into(),
            ));
        }
        reply.push(byte[0]);
    }
    let status_line = String::from_utf8_lossy(&reply);
    let status_line = status_line.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| DialError::Refused(format!("bad CONNECT answer {status_line:?}")))?;
    match status {
        200..=299 => Ok(()),
        // The exit could not reach the site: not the exit's refusal.
        502 | 504 => Err(DialError::Site(format!("exit answered {status_line:?}"))),
        _ => Err(DialError::Refused(format!("exit answered {status_line:?}"))),
    }
}

/// The SOCKS5 handshake for a CONNECT to `host:port`; names are sent as names (the
/// exit resolves them), addresses as addresses.
pub async fn socks5_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    port: u16,
    credentials: Option<&(String, String)>,
) -> Result<(), DialError> {
    let broken = |e: std::io::Error| DialError::ExitUnreachable(format!("SOCKS5: {e}"));
    let methods: &[u8] = if credentials.is_some() {
        &[5, 2, 0x00, 0x02]
    } else {
        &[5, 1, 0x00]
    };
    stream.write_all(methods).await.map_err(broken)?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await.map_err(broken)?;
    if choice[0] != 5 {
        return Err(DialError::ExitUnreachable(
            "not a SOCKS5 server (bad version in its greeting)".into(),
        ));
    }
    match (choice[1], credentials) {
        (0x00, _) => {}
        (0x02, Some((user, pass))) => {
            if user.len() > 255 || pass.len() > 255 {
                return Err(DialError::Refused(
                    "SOCKS5 user and password are at most 255 bytes".into(),
                ));
            }
            let mut auth = vec![1u8, user.len() as u8];
            auth.extend_from_slice(user.as_bytes());
            auth.push(pass.len() as u8);
            auth.extend_from_slice(pass.as_bytes());
            stream.write_all(&auth).await.map_err(broken)?;
            let mut status = [0u8; 2];
            stream.read_exact(&mut status).await.map_err(broken)?;
            if status[1] != 0 {
                return Err(DialError::Refused(
                    "the SOCKS5 exit rejected its user and password".into(),
                ));
            }
        }
        (0xff, _) | (0x02, None) => {
            return Err(DialError::Refused(
                "the SOCKS5 exit accepts none of our authentication methods".into(),
            ));
        }
        (other, _) => {
            return Err(DialError::Refused(format!(
                "the SOCKS5 exit chose unknown method {other:#04x}"
            )));
        }
    }
    let mut request = vec![5u8, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            if host.len() > 255 {
                return Err(DialError::Site(format!("host name too long: {host}")));
            }
            request.push(3);
            request.push(host.len() as u8);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await.map_err(broken)?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await.map_err(broken)?;
    if reply[1] != 0 {
        let why = match reply[1] {
            1 => "general SOCKS server failure",
            2 => "connection not allowed by ruleset",
            3 => "network unreachable",
            4 => "host unreachable",
            5 => "connection refused",
            6 => "TTL expired",
            7 => "command not supported",
            8 => "address type not supported",
            _ => "unknown error",
        };
        let message = format!("SOCKS5 exit: {why} ({host}:{port})");
        // 3, 4, 5, 6: the exit tried and the site did not answer.
        return Err(if matches!(reply[1], 3..=6) {
            DialError::Site(message)
        } else {
            DialError::Refused(message)
        });
    }
    // The bound address the exit reports: read and ignored.
    let skip = match reply[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut length = [0u8; 1];
            stream.read_exact(&mut length).await.map_err(broken)?;
            usize::from(length[0]) + 2
        }
        _ => {
            return Err(DialError::Refused(
                "the SOCKS5 exit answered a bad address type".into(),
            ));
        }
    };
    let mut bound = vec![0u8; skip];
    stream.read_exact(&mut bound).await.map_err(broken)?;
    Ok(())
}

/// Connections to sites through a SOCKS5 exit, for the plain-HTTP client and its cache.
pub struct SocksDialer {
    pub proxy: ProxyAddress,
    pub credentials: Option<(String, String)>,
}

/// How a SOCKS5 dial failed, carried inside the client's `SendError`.
pub fn dial_failure(error: &SendError) -> Option<&DialError> {
    match error {
        SendError::Connect { source, .. } => source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<DialError>()),
        _ => None,
    }
}

impl Dialer for SocksDialer {
    fn dial<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<TcpStream, SendError>> + Send + 'a>> {
        Box::pin(async move {
            let failed = |source: std::io::Error| SendError::Connect {
                endpoint: endpoint.url.clone(),
                source,
            };
            let opening = async {
                let mut stream = connect_exit(&self.proxy)
                    .await
                    .map_err(|e| failed(std::io::Error::other(e)))?;
                socks5_connect(
                    &mut stream,
                    &endpoint.target.host,
                    endpoint.target.port,
                    self.credentials.as_ref(),
                )
                .await
                .map_err(|e| failed(std::io::Error::other(e)))?;
                Ok(stream)
            };
            tokio::time::timeout(timeout, opening)
                .await
                .unwrap_or(Err(SendError::ConnectTimeout {
                    endpoint: endpoint.url.clone(),
                    after: timeout,
                }))
        })
    }
}
