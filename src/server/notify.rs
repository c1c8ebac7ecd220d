//! systemd's readiness protocol (sd_notify), written by hand: one datagram to
//! `$NOTIFY_SOCKET` with `READY=1` once the listeners serve, `STOPPING=1` when a drain
//! starts, `MAINPID=` when an upgraded process takes over. Nothing when it is unset.

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;

/// Sends `state` to the service manager, if there is one; errors are logged.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(error) = notify_to(&socket, state) {
        tracing::warn!(%error, "cannot notify the service manager ({state:?})");
    }
}

/// Sends `state` to the notification socket `socket`: a path, or `@name` for a Linux
/// abstract socket.
pub fn notify_to(socket: &OsStr, state: &str) -> std::io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(socket);
    let sent = match bytes.split_first() {
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sender.send_to_addr(state.as_bytes(), &address)?
        }
        Some((b'/', _)) => sender.send_to(state.as_bytes(), socket)?,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither a path nor an abstract name",
            ));
        }
    };
    if sent != state.len() {
        return Err(std::io::Error::other("short write to NOTIFY_SOCKET"));
    }
    Ok(())
}

/// The processes' own state lines.
pub fn ready() {
    notify(&format!("READY=1\nMAINPID={}", std::process::id()));
}

pub fn stopping() {
    notify("STOPPING=1");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(receiver: &UnixDatagram) -> String {
        let mut buffer = [0u8; 256];
        let read = receiver.recv(&mut buffer).expect("a datagram");
        String::from_utf8_lossy(&buffer[..read]).into_owned()
    }

    #[test]
    fn ready_and_stopping_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1\nMAINPID=42").unwrap();
        assert_eq!(received(&receiver), "READY=1\nMAINPID=42");
        notify_to(path.as_os_str(), "STOPPING=1").unwrap();
        assert_eq!(received(&receiver), "STOPPING=1");
    }

    #[test]
    fn an_abstract_socket_is_reached_by_its_at_name() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("junction-notify-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let receiver = UnixDatagram::bind_addr(&address).unwrap();
        notify_to(OsStr::new(&format!("@{name}")), "READY=1").unwrap();
        assert_eq!(received(&receiver), "READY=1");
    }

    #[test]
    fn a_missing_or_odd_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("nobody");
        assert!(notify_to(gone.as_os_str(), "READY=1").is_err());
        assert!(notify_to(OsStr::new("relative"), "READY=1").is_err());
        assert!(notify_to(OsStr::new(""), "READY=1").is_err());
    }
}
