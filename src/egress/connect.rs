//! Opening a tunnel (`CONNECT`, SOCKS5) to an admitted destination: the client's
//! tunnel slot, the host's politeness turn, then exits in rotation until one opens it
//! (another one when an exit refuses or cannot be reached); then the splice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use super::dial::{DialError, ExitKind, Tunnel, open_tunnel};
use super::exits::{self, Exit};
use super::politeness::HostPermit;
use super::record::Record;
use super::reports::SessionKey;
use super::rotation::Ask;
use super::tunnel::{TunnelBytes, splice};
use super::{
    Admitted, EgressPlan, ProxyStatus, client_session, no_exit, polite_turn, resolve_checked,
};
use crate::telemetry::EgressOutcome;

/// A tunnel open to the site through an exit, waiting for the client's side; it holds
/// the client's tunnel slot, the host's politeness turn and the exit's use until it
/// closes, and writes its record then.
pub(super) struct OpenTunnel {
    site: Box<dyn Tunnel>,
    pub(super) exit: Arc<Exit>,
    idle: Duration,
    record: Record,
    held: (
        crate::security::client_slots::ClientSlot,
        Option<HostPermit>,
        exits::InUse,
    ),
}

impl OpenTunnel {
    /// Joins the client to the site until either closes or the tunnel idles; `early`
    /// is what the client sent before the tunnel opened (it goes to the site first).
    pub(super) async fn splice<C>(self, client: C, early: &[u8])
    where
        C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let OpenTunnel {
            mut site,
            exit,
            idle,
            mut record,
            held,
        } = self;
        if !early.is_empty() {
            use tokio::io::AsyncWriteExt;
            if site.write_all(early).await.is_err() {
                return;
            }
        }
        let bytes = TunnelBytes::default();
        record.tunnel_bytes = Some(bytes.clone());
        let idled = splice(client, site, exit.counters.clone(), bytes, idle).await;
        if idled {
            record.error = Some("idle_timeout");
        }
        drop((record, held));
    }
}

/// One of the client's `max_tunnels_per_client` tunnel slots (intercepted tunnels hold
/// one too).
pub(super) fn tunnel_slot(
    plan: &EgressPlan,
    peer: SocketAddr,
) -> Result<crate::security::client_slots::ClientSlot, ProxyStatus> {
    plan.tunnels
        .take(peer.ip(), Some(plan.limits.max_tunnels_per_client))
        .ok_or_else(|| {
            ProxyStatus::new(
                StatusCode::TOO_MANY_REQUESTS,
                "connection_limit_reached",
                "too_many_tunnels",
                format!(
                    "this client has {} tunnels open, the most allowed",
                    plan.limits.max_tunnels_per_client
                ),
            )
        })
}

/// What a tunnel that did not open says of its exit: one that cannot be reached is
/// marked so (and probed), one that refused rests for the host.
pub(super) fn dial_failed(
    plan: &EgressPlan,
    exit: &Arc<Exit>,
    host: &str,
    error: &DialError,
) -> EgressOutcome {
    match error {
        DialError::ExitUnreachable(_) => {
            exit.mark_unreachable(plan.limits.probe_interval, plan.limits.connect_timeout);
            EgressOutcome::ExitError
        }
        DialError::Refused(_) => {
            let rest = exit.cool_down(
                host,
                plan.ban.cooldown,
                plan.ban.max_cooldown,
                plan.rotator.rng(),
                Instant::now(),
            );
            plan.share_rest(exit, host, rest);
            EgressOutcome::TunnelRefused
        }
        DialError::Site(_) | DialError::Timeout(_) => EgressOutcome::SiteError,
    }
}

/// Opens a tunnel to an admitted destination: the client's tunnel slot, the host's
/// politeness turn, then exits in rotation until one opens it (an exit that refuses
/// rests for the host; one that cannot be reached is probed).
pub(super) async fn open_site_tunnel(
    plan: &Arc<EgressPlan>,
    peer: SocketAddr,
    admitted: Admitted,
    record: &mut Record,
) -> Result<OpenTunnel, ProxyStatus> {
    let Admitted { choice, host, port } = admitted;
    let slot = tunnel_slot(plan, peer)?;
    let permit = polite_turn(plan, &host).await?;
    let session = client_session(plan, peer, &choice);
    let mut ask = Ask {
        host: &host,
        region: choice.region.as_deref(),
        session: choice.session.as_deref(),
        client_session: &session,
        fleet_exit: None,
    };
    let fleet_exit = plan.fleet_session(&ask).await;
    ask.fleet_exit = fleet_exit.as_deref();
    let exits = plan.exits();
    let mut tried: Vec<Arc<Exit>> = Vec::new();
    let mut last_error = None;
    let mut direct_to = None;
    while tried.len() < plan.limits.attempts as usize {
        let Some(exit) = plan.rotator.pick(&exits, &ask, &tried, Instant::now()) else {
            break;
        };
        tried.push(exit.clone());
        record.attempt(&exit);
        if matches!(exit.kind, ExitKind::Direct) && direct_to.is_none() {
            direct_to = Some(resolve_checked(plan, &host, port).await?);
        }
        let in_use = exit.use_guard();
        let opened = open_tunnel(
            &exit.kind,
            exit.tls.as_ref(),
            &host,
            port,
            direct_to,
            plan.limits.connect_timeout,
        )
        .await;
        let site = match opened {
            Ok(site) => site,
            Err(error) => {
                let outcome = dial_failed(plan, &exit, &host, &error);
                exit.counters.count(outcome);
                tracing::debug!(exit = %exit.name, %host, %error, "tunnel not opened");
                last_error = Some(format!("{}: {error}", exit.name));
                continue;
            }
        };
        exit.counters.count(EgressOutcome::Ok);
        plan.share_session(&ask, &exit);
        plan.last_exits.used(
            &SessionKey::of(&choice, peer),
            &host,
            &exit.name,
            Instant::now(),
        );
        record.outcome = Some(EgressOutcome::Ok.label());
        record.status = Some(StatusCode::OK);
        return Ok(OpenTunnel {
            site,
            exit,
            idle: plan.limits.idle_timeout,
            record: record.take(),
            held: (slot, permit, in_use),
        });
    }
    Err(match last_error {
        Some(error) if tried.iter().all(|e| matches!(e.kind, ExitKind::Direct)) => {
            ProxyStatus::new(
                StatusCode::BAD_GATEWAY,
                "connection_refused",
                "site_error",
                error,
            )
        }
        last_error => no_exit(&host, choice.region.as_deref(), last_error),
    })
}
