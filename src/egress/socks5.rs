//! SOCKS5 clients (`protocol = "socks5"`): the server side of RFC 1928 (`CONNECT`
//! only: `BIND` and `UDP ASSOCIATE` get "command not supported") with RFC 1929 user
//! and password, whose user name carries region and session parameters as for HTTP.
//! The parsers are pure functions over the bytes read so far (fuzzed: they never panic).

use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 1928 reply codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    Succeeded = 0x00,
    GeneralFailure = 0x01,
    NotAllowed = 0x02,
    NetworkUnreachable = 0x03,
    HostUnreachable = 0x04,
    ConnectionRefused = 0x05,
    TtlExpired = 0x06,
    CommandNotSupported = 0x07,
    AddressTypeNotSupported = 0x08,
}

pub const VERSION: u8 = 0x05;
pub const NO_AUTH: u8 = 0x00;
pub const USER_PASSWORD: u8 = 0x02;
pub const NO_ACCEPTABLE: u8 = 0xFF;
/// RFC 1929's sub-negotiation version.
pub const AUTH_VERSION: u8 = 0x01;

/// Why a handshake cannot go on; `reply` is what the client is told, when the protocol
/// has a place for it (after the request), before the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("not SOCKS version 5 (first byte {0:#04x})")]
    Version(u8),
    #[error("no authentication methods offered")]
    NoMethods,
    #[error("bad user/password sub-negotiation version {0:#04x}")]
    AuthVersion(u8),
    #[error("user name or password is not UTF-8")]
    NotUtf8,
    #[error("command {0:#04x} is not supported (CONNECT only)")]
    Command(u8),
    #[error("address type {0:#04x} is not supported")]
    AddressType(u8),
    #[error("reserved byte is {0:#04x}, not 0")]
    Reserved(u8),
    #[error("empty or unreadable host name")]
    HostName,
    #[error("port 0")]
    Port,
}

impl HandshakeError {
    /// The reply code a request refused for this reason gets.
    pub fn reply(&self) -> Reply {
        match self {
            HandshakeError::Command(_) => Reply::CommandNotSupported,
            HandshakeError::AddressType(_) => Reply::AddressTypeNotSupported,
            _ => Reply::GeneralFailure,
        }
    }
}

/// A parse of the bytes read so far: None when more are needed, else the value and the
/// number of bytes it took.
pub type Parsed<T> = Result<Option<(T, usize)>, HandshakeError>;

/// The client's greeting: `VER NMETHODS METHODS...` → the methods offered.
pub fn parse_greeting(buf: &[u8]) -> Parsed<Vec<u8>> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(HandshakeError::Version(version));
    }
    let Some(&count) = buf.get(1) else {
        return Ok(None);
    };
    if count == 0 {
        return Err(HandshakeError::NoMethods);
    }
    let end = 2 + count as usize;
    Ok(buf.get(2..end).map(|methods| (methods.to_vec(), end)))
}

/// The method the server picks from those offered: user and password when users are
/// required, and also whenever offered (the user name carries region and session
/// parameters); else no authentication; else none acceptable.
pub fn choose_method(offered: &[u8], users_required: bool) -> u8 {
    if offered.contains(&USER_PASSWORD) {
        USER_PASSWORD
    } else if !users_required && offered.contains(&NO_AUTH) {
        NO_AUTH
    } else {
        NO_ACCEPTABLE
    }
}

/// RFC 1929: `VER ULEN UNAME PLEN PASSWD` → (user, password).
pub fn parse_credentials(buf: &[u8]) -> Parsed<(String, String)> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    if version != AUTH_VERSION {
        return Err(HandshakeError::AuthVersion(version));
    }
    let Some(&user_len) = buf.get(1) else {
        return Ok(None);
    };
    let user_end = 2 + user_len as usize;
    let Some(user) = buf.get(2..user_end) else {
        return Ok(None);
    };
    let Some(&pass_len) = buf.get(user_end) else {
        return Ok(None);
    };
    let end = user_end + 1 + pass_len as usize;
    let Some(pass) = buf.get(user_end + 1..end) else {
        return Ok(None);
    };
    let text =
        |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| HandshakeError::NotUtf8);
    Ok(Some(((text(user)?, text(pass)?), end)))
}

/// A CONNECT request's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A host name (lower case) or an IP address as text, without brackets.
    pub host: String,
    pub port: u16,
}

/// `VER CMD RSV ATYP DST.ADDR DST.PORT` → the CONNECT target.
pub fn parse_request(buf: &[u8]) -> Parsed<Target> {
    if buf.len() < 4 {
        // Check what is there already: a wrong version is refused without waiting.
        if let Some(&version) = buf.first()
            && version != VERSION
        {
            return Err(HandshakeError::Version(version));
        }
        return Ok(None);
    }
    let (version, command, reserved, kind) = (buf[0], buf[1], buf[2], buf[3]);
    if version != VERSION {
        return Err(HandshakeError::Version(version));
    }
    if command != 0x01 {
        return Err(HandshakeError::Command(command));
    }
    if reserved != 0 {
        return Err(HandshakeError::Reserved(reserved));
    }
    let (host, at) = match kind {
        0x01 => match buf.get(4..8) {
            Some(octets) => (
                Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]).to_string(),
                8,
            ),
            None => return Ok(None),
        },
        0x04 => match buf.get(4..20) {
            Some(octets) => {
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(octets);
                (Ipv6Addr::from(bytes).to_string(), 20)
            }
            None => return Ok(None),
        },
        0x03 => {
            let Some(&len) = buf.get(4) else {
                return Ok(None);
            };
            let end = 5 + len as usize;
            let Some(name) = buf.get(5..end) else {
                return Ok(None);
            };
            let name = std::str::from_utf8(name).map_err(|_| HandshakeError::HostName)?;
            let name = name.trim_start_matches('[').trim_end_matches(']');
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
            if !valid {
                return Err(HandshakeError::HostName);
            }
            (name.to_ascii_lowercase(), end)
        }
        other => return Err(HandshakeError::AddressType(other)),
    };
    let Some(port) = buf.get(at..at + 2) else {
        return Ok(None);
    };
    let port = u16::from_be_bytes([port[0], port[1]]);
    if port == 0 {
        return Err(HandshakeError::Port);
    }
    Ok(Some((Target { host, port }, at + 2)))
}

/// The server's answer to a request: `VER REP RSV ATYP BND.ADDR BND.PORT`, with an
/// unspecified bound address (clients of a CONNECT do not use it).
pub fn reply_bytes(reply: Reply) -> [u8; 10] {
    [VERSION, reply as u8, 0, 0x01, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_and_methods() {
        assert_eq!(parse_greeting(&[5]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 0]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 0, 2, 9]), Ok(Some((vec![0, 2], 4))));
        assert_eq!(parse_greeting(&[4, 1, 0]), Err(HandshakeError::Version(4)));
        assert_eq!(parse_greeting(&[5, 0]), Err(HandshakeError::NoMethods));
        assert_eq!(choose_method(&[0, 2], false), USER_PASSWORD);
        assert_eq!(choose_method(&[0], false), NO_AUTH);
        assert_eq!(choose_method(&[0], true), NO_ACCEPTABLE);
        assert_eq!(choose_method(&[1], false), NO_ACCEPTABLE);
    }

    #[test]
    fn credentials() {
        let message = [1, 3, b'b', b'o', b'b', 2, b'p', b'w'];
        for cut in 0..message.len() {
            assert_eq!(parse_credentials(&message[..cut]), Ok(None), "{cut}");
        }
        assert_eq!(
            parse_credentials(&message),
            Ok(Some((("bob".into(), "pw".into()), 8)))
        );
        assert_eq!(
            parse_credentials(&[1, 0, 0]),
            Ok(Some((("".into(), "".into()), 3)))
        );
        assert_eq!(
            parse_credentials(&[5, 0, 0]),
            Err(HandshakeError::AuthVersion(5))
        );
        assert_eq!(
            parse_credentials(&[1, 1, 0xff, 0]),
            Err(HandshakeError::NotUtf8)
        );
    }

    #[test]
    fn requests() {
        let v4 = [5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90];
        for cut in 0..v4.len() {
            assert_eq!(parse_request(&v4[..cut]), Ok(None), "{cut}");
        }
        assert_eq!(
            parse_request(&v4),
            Ok(Some((
                Target {
                    host: "127.0.0.1".into(),
                    port: 8080
                },
                10
            )))
        );
        let mut name = vec![5, 1, 0, 3, 11];
        name.extend_from_slice(b"Example.ORG");
        name.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(
            parse_request(&name).unwrap().unwrap().0,
            Target {
                host: "example.org".into(),
                port: 443
            }
        );
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&80u16.to_be_bytes());
        assert_eq!(parse_request(&v6).unwrap().unwrap().0.host, "::1");
        assert_eq!(
            parse_request(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 1])
                .unwrap_err()
                .reply(),
            Reply::CommandNotSupported
        );
        assert_eq!(
            parse_request(&[5, 3, 0, 1]).unwrap_err().reply(),
            Reply::CommandNotSupported
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 9]).unwrap_err().reply(),
            Reply::AddressTypeNotSupported
        );
        assert_eq!(parse_request(&[4]), Err(HandshakeError::Version(4)));
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 0, 0, 80]),
            Err(HandshakeError::HostName)
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 3, b'a', b' ', b'b', 0, 80]),
            Err(HandshakeError::HostName)
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 1, 1, 2, 3, 4, 0, 0]),
            Err(HandshakeError::Port)
        );
    }

    /// What the fuzz target checks, on generated handshakes: no panic, and messages
    /// that delimit themselves.
    fn delimited<T: PartialEq + std::fmt::Debug>(data: &[u8], parse: fn(&[u8]) -> Parsed<T>) {
        if let Ok(Some((value, used))) = parse(data) {
            assert!(used <= data.len());
            assert_eq!(parse(&data[..used]), Ok(Some((value, used))));
            for shorter in 0..used {
                assert!(!matches!(parse(&data[..shorter]), Ok(Some(_))));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic_and_messages_delimit_themselves(
            head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6),
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            // Plausible starts (version bytes, small lengths) reach the deep branches.
            let mut data = head.clone();
            data.extend_from_slice(&rest);
            for first in [VERSION, AUTH_VERSION] {
                let mut steered = data.clone();
                if let Some(byte) = steered.first_mut() {
                    *byte = first;
                }
                delimited(&steered, parse_greeting);
                delimited(&steered, parse_credentials);
                delimited(&steered, parse_request);
            }
        }
    }
}
