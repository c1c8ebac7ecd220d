//! CONNECT tunnels once open: bytes spliced both ways and counted as they pass (so
//! long tunnels show in the metrics while they last), and closed after an idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::dial::Tunnel;
use crate::telemetry::EgressExitCounters;

/// The site side of a tunnel: counts bytes into the exit's counters and notes the
/// time of the last activity (milliseconds since `opened`).
struct Metered {
    inner: Box<dyn Tunnel>,
    counters: Arc<EgressExitCounters>,
    opened: Instant,
    last_active: Arc<AtomicU64>,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl Metered {
    fn touch(&self) {
        let since = self.opened.elapsed().as_millis() as u64;
        self.last_active.store(since, Ordering::Relaxed);
    }
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            self.counters
                .tunnel_bytes_down
                .fetch_add(read, Ordering::Relaxed);
            self.down.fetch_add(read, Ordering::Relaxed);
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled
            && written > 0
        {
            self.counters
                .tunnel_bytes_up
                .fetch_add(written as u64, Ordering::Relaxed);
            self.up.fetch_add(written as u64, Ordering::Relaxed);
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Bytes a tunnel carried, for its log line.
#[derive(Default, Clone)]
pub struct TunnelBytes {
    pub up: Arc<AtomicU64>,
    pub down: Arc<AtomicU64>,
}

/// Bytes read at once, each way. tokio's default (8 KiB) made a bulk download through a
/// tunnel a syscall pair per 8 KiB: at 64 KiB a tunnel moves twice the bytes per CPU
/// second (bench/connect-throughput.sh), for 128 KiB held per open tunnel.
const TUNNEL_BUFFER: usize = 64 * 1024;

/// Joins the client and the site until either side closes or nothing passes for
/// `idle`. Returns whether it ended idle.
pub async fn splice<C>(
    mut client: C,
    site: Box<dyn Tunnel>,
    counters: Arc<EgressExitCounters>,
    bytes: TunnelBytes,
    idle: Duration,
) -> bool
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let opened = Instant::now();
    let last_active = Arc::new(AtomicU64::new(0));
    let mut site = Metered {
        inner: site,
        counters,
        opened,
        last_active: last_active.clone(),
        up: bytes.up,
        down: bytes.down,
    };
    let watchdog = async {
        loop {
            let last = Duration::from_millis(last_active.load(Ordering::Relaxed));
            let deadline = opened + last + idle;
            tokio::time::sleep_until(deadline).await;
            if Duration::from_millis(last_active.load(Ordering::Relaxed)) == last {
                return;
            }
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut site, TUNNEL_BUFFER, TUNNEL_BUFFER) => false,
        _ = watchdog => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_tunnels_close() {
        let (client, _client_peer) = tokio::io::duplex(64);
        let (site, _site_peer) = tokio::io::duplex(64);
        let idle = splice(
            client,
            Box::new(site),
            Arc::default(),
            TunnelBytes::default(),
            Duration::from_secs(30),
        )
        .await;
        assert!(idle);
    }
}
