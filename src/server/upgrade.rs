//! Binary upgrades without a gap (as HAProxy's `-x`): the running process listens on a
//! Unix socket; a new one connects, receives every listening socket (SCM_RIGHTS), the
//! runtime weights and canary phases and the endpoints' health verdicts, starts on them
//! and says `ready`; the old one then
//! stops accepting, drains its connections and exits.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};

use super::gateway::{EndpointVerdict, Gateway, HandedSocket};
use crate::canary::StateFile;

/// The handover's wire version: a process refuses one it does not know.
const VERSION: u32 = 1;
/// Most listening sockets one handover carries.
const MAX_SOCKETS: usize = 256;
/// Largest handover header (listener names and the canary state).
const MAX_HEADER: usize = 16 << 20;
/// How long the old process waits for the new one to start on its sockets.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the new process waits for the old one's sockets.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);
const READY: &[u8] = b"ready\n";

/// Why a handover did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("cannot reach the running process at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("upgrade socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("upgrade socket: {0}")]
    Protocol(String),
}

/// What travels with the sockets, as JSON: the listener of each socket, in the order of
/// the descriptors, and the route state.
#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    listeners: Vec<HandedListener>,
    state: StateFile,
    /// Endpoints down or ejected.
    #[serde(default)]
    endpoints: Vec<EndpointVerdict>,
}

#[derive(Serialize, Deserialize)]
struct HandedListener {
    listener: String,
    configured: SocketAddr,
}

// === The running process's side ===

/// The Unix socket a running process listens on for its successor.
pub struct UpgradeSocket {
    pub path: PathBuf,
    listener: UnixListener,
}

impl UpgradeSocket {
    /// Listens on `path`, replacing what is there at once (bound beside it, then renamed
    /// over it): the socket of the process this one replaced, or a stale one.
    pub fn listen(path: &Path) -> std::io::Result<UpgradeSocket> {
        let mut beside = path.as_os_str().to_owned();
        beside.push(format!(".{}.tmp", std::process::id()));
        let beside = PathBuf::from(beside);
        let _ = std::fs::remove_file(&beside);
        let listener = UnixListener::bind(&beside)?;
        std::fs::rename(&beside, path)?;
        tracing::info!(path = %path.display(), "upgrade socket listening");
        Ok(UpgradeSocket {
            path: path.to_path_buf(),
            listener,
        })
    }

    /// Answers successors until one has taken the sockets over, then returns. A failed
    /// attempt (the new process exits, or its config is invalid) changes nothing here.
    pub async fn serve(&self, gateway: &Arc<Gateway>) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "upgrade socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match hand_over(gateway, stream).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::error!(%error, "upgrade: the new process did not take over; serving on");
                    gateway.resume_after_failed_handover();
                }
            }
        }
    }
}

async fn hand_over(gateway: &Arc<Gateway>, mut stream: UnixStream) -> Result<(), UpgradeError> {
    let (sockets, state) = gateway.handover_snapshot().await;
    tracing::info!(
        sockets = sockets.len(),
        "upgrade: a new process asks for the sockets"
    );
    let header = Header {
        version: VERSION,
        listeners: sockets
            .iter()
            .map(|s| HandedListener {
                listener: s.listener.clone(),
                configured: s.configured,
            })
            .collect(),
        state,
        endpoints: gateway.endpoint_verdicts(),
    };
    let header = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    let fds: Vec<_> = sockets.iter().map(|s| s.socket.as_fd()).collect();
    let length = u32::try_from(header.len())
        .map_err(|_| UpgradeError::Protocol("state too large".into()))?
        .to_be_bytes();
    send_with_fds(&stream, &length, &fds).await?;
    stream.write_all(&header).await?;
    let mut answer = [0u8; READY.len()];
    match tokio::time::timeout(READY_TIMEOUT, stream.read_exact(&mut answer)).await {
        Err(_) => Err(UpgradeError::Protocol(format!(
            "no `ready` within {READY_TIMEOUT:?}"
        ))),
        Ok(Err(error)) => Err(UpgradeError::Protocol(format!(
            "the new process went away before it was ready ({error})"
        ))),
        Ok(Ok(_)) if answer == READY => Ok(()),
        Ok(Ok(_)) => Err(UpgradeError::Protocol("unexpected answer".into())),
    }
}

async fn send_with_fds(
    stream: &UnixStream,
    bytes: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> std::io::Result<()> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
    stream
        .async_io(Interest::WRITABLE, || {
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(std::io::Error::other("too many sockets for one message"));
            }
            let sent = rustix::net::sendmsg(
                stream,
                &[IoSlice::new(bytes)],
                &mut control,
                SendFlags::NOSIGNAL,
            )?;
            if sent != bytes.len() {
                return Err(std::io::Error::other("short write of the handover"));
            }
            Ok(())
        })
        .await
}

// === The new process's side ===

/// Sockets and state received from the running process; `ready` tells it to go.
pub struct Received {
    pub sockets: Vec<HandedSocket>,
    pub state: StateFile,
    pub endpoints: Vec<EndpointVerdict>,
    stream: UnixStream,
}

/// Connects to the running process at `path` and takes its sockets and state.
pub async fn receive(path: &Path) -> Result<Received, UpgradeError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| UpgradeError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    tokio::time::timeout(RECEIVE_TIMEOUT, receive_on(stream))
        .await
        .map_err(|_| {
            UpgradeError::Protocol(format!(
                "no sockets from the running process within {RECEIVE_TIMEOUT:?}"
            ))
        })?
}

async fn receive_on(mut stream: UnixStream) -> Result<Received, UpgradeError> {
    let mut length = [0u8; 4];
    let (read, fds) = receive_with_fds(&stream, &mut length).await?;
    if read == 0 {
        return Err(UpgradeError::Protocol(
            "the running process closed the connection".into(),
        ));
    }
    stream.read_exact(&mut length[read..]).await?;
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_HEADER {
        return Err(UpgradeError::Protocol(format!("header of {length} bytes")));
    }
    let mut header = vec![0u8; length];
    stream.read_exact(&mut header).await?;
    let header: Header = serde_json::from_slice(&header)
        .map_err(|e| UpgradeError::Protocol(format!("bad header: {e}")))?;
    if header.version != VERSION {
        return Err(UpgradeError::Protocol(format!(
            "the running process speaks version {}, this one {VERSION}",
            header.version
        )));
    }
    if header.listeners.len() != fds.len() {
        return Err(UpgradeError::Protocol(format!(
            "{} listeners named, {} sockets received",
            header.listeners.len(),
            fds.len()
        )));
    }
    let sockets = header
        .listeners
        .into_iter()
        .zip(fds)
        .map(|(named, socket)| HandedSocket {
            listener: named.listener,
            configured: named.configured,
            socket,
        })
        .collect();
    Ok(Received {
        sockets,
        state: header.state,
        endpoints: header.endpoints,
        stream,
    })
}

async fn receive_with_fds(
    stream: &UnixStream,
    buffer: &mut [u8],
) -> Result<(usize, Vec<OwnedFd>), UpgradeError> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut fds = Vec::new();
    let read = stream
        .async_io(Interest::READABLE, || {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let received = rustix::net::recvmsg(
                stream,
                &mut [IoSliceMut::new(buffer)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )?;
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(received) = message {
                    fds.extend(received);
                }
            }
            Ok(received)
        })
        .await?;
    if read.flags.contains(ReturnFlags::CTRUNC) {
        return Err(UpgradeError::Protocol(format!(
            "more than {MAX_SOCKETS} sockets"
        )));
    }
    Ok((read.bytes, fds))
}

impl Received {
    /// Tells the old process that this one serves: it stops accepting and drains. An
    /// old process already gone is only logged.
    pub async fn ready(mut self) {
        if let Err(error) = self.stream.write_all(READY).await {
            tracing::warn!(%error, "upgrade: the previous process was gone before `ready`");
        }
        let _ = self.stream.shutdown().await;
    }
}

// === SIGUSR2 ===

/// Starts this binary again with the same arguments and `--upgrade-from socket`: the
/// new process takes over from this one. For a service manager (systemd) the new process
/// is then a child of the service and reports itself as its main process.
pub fn start_successor(socket: &Path) -> std::io::Result<()> {
    let mut args = std::env::args_os();
    let program = args
        .next()
        .ok_or_else(|| std::io::Error::other("no program name in argv"))?;
    let mut kept = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        if arg == "--upgrade-from" {
            args.next();
            continue;
        }
        if arg.to_string_lossy().starts_with("--upgrade-from=") {
            continue;
        }
        kept.push(arg);
    }
    let mut child = tokio::process::Command::new(program)
        .args(kept)
        .arg("--upgrade-from")
        .arg(socket)
        .spawn()?;
    tracing::info!(pid = child.id(), "SIGUSR2: started the new process");
    // Reaped here if it fails; if it takes over, this process exits first.
    tokio::spawn(async move {
        if let Ok(status) = child.wait().await
            && !status.success()
        {
            tracing::error!(%status, "upgrade: the new process exited");
        }
    });
    Ok(())
}
