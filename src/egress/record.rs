//! One egress request's access-log line, written when the request ends: for plain
//! requests when the response body ends, for tunnels when the tunnel closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{Method, Request, StatusCode};
use tokio::time::Instant;

use super::exits::Exit;
use super::tunnel::TunnelBytes;
use crate::telemetry::Telemetry;

pub struct Record {
    telemetry: Option<Arc<Telemetry>>,
    egress: Arc<str>,
    started: Instant,
    client: SocketAddr,
    method: Method,
    /// Path and query of plain requests (tunnels carry none in the clear).
    path: Option<String>,
    pub user: Option<String>,
    pub host: Option<String>,
    pub region: Option<String>,
    pub exit: Option<Arc<str>>,
    pub attempts: u32,
    pub status: Option<StatusCode>,
    pub outcome: Option<&'static str>,
    pub error: Option<&'static str>,
    pub bytes_out: u64,
    pub tunnel_bytes: Option<TunnelBytes>,
}

impl Record {
    pub fn new<B>(
        telemetry: Arc<Telemetry>,
        egress: &Arc<str>,
        client: SocketAddr,
        request: &Request<B>,
    ) -> Self {
        let connect = request.method() == Method::CONNECT;
        Record {
            telemetry: telemetry.access_log.enabled().then_some(telemetry),
            egress: egress.clone(),
            started: Instant::now(),
            client,
            method: request.method().clone(),
            path: (!connect)
                .then(|| {
                    request
                        .uri()
                        .path_and_query()
                        .map(|pq| pq.as_str().to_string())
                })
                .flatten(),
            user: None,
            host: None,
            region: None,
            exit: None,
            attempts: 0,
            status: None,
            outcome: None,
            error: None,
            bytes_out: 0,
            tunnel_bytes: None,
        }
    }

    pub fn client(&self) -> SocketAddr {
        self.client
    }

    pub fn attempt(&mut self, exit: &Exit) {
        self.attempts += 1;
        self.exit = Some(exit.name.clone());
        if exit.region.is_some() {
            self.region = exit.region.as_deref().map(str::to_string);
        }
    }

    pub fn refused(&mut self, status: StatusCode, reason: &'static str) {
        self.status = Some(status);
        self.outcome = Some(reason);
    }

    /// Moves the line out (to a body or a tunnel task); this one writes nothing.
    pub fn take(&mut self) -> Record {
        let taken = Record {
            telemetry: self.telemetry.take(),
            egress: self.egress.clone(),
            started: self.started,
            client: self.client,
            method: self.method.clone(),
            path: self.path.take(),
            user: self.user.take(),
            host: self.host.take(),
            region: self.region.take(),
            exit: self.exit.take(),
            attempts: self.attempts,
            status: self.status,
            outcome: self.outcome,
            error: self.error,
            bytes_out: self.bytes_out,
            tunnel_bytes: self.tunnel_bytes.take(),
        };
        self.telemetry = None;
        taken
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let Some(telemetry) = self.telemetry.take() else {
            return;
        };
        telemetry.access_log.write_line(|_, line| {
            line.time("time");
            line.string("kind", Some("egress"));
            line.string("egress", Some(&self.egress));
            line.ip("client_ip", Some(self.client.ip()));
            line.string("user", self.user.as_deref());
            line.string("method", Some(self.method.as_str()));
            line.string("host", self.host.as_deref());
            line.string("path", self.path.as_deref());
            line.number("status", self.status.map(|s| s.as_u16()));
            line.string("outcome", self.outcome);
            line.string("error", self.error);
            line.string("exit", self.exit.as_deref());
            line.string("region", self.region.as_deref());
            line.number("attempts", Some(self.attempts));
            let (up, down) = match &self.tunnel_bytes {
                Some(bytes) => (
                    Some(bytes.up.load(Ordering::Relaxed)),
                    bytes.down.load(Ordering::Relaxed),
                ),
                None => (None, self.bytes_out),
            };
            line.number("bytes_in", up);
            line.number("bytes_out", Some(down));
            line.millis("duration_ms", Some(self.started.elapsed()));
        });
    }
}
