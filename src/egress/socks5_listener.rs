//! A SOCKS5 egress listener's connections: the handshake (parsed by `socks5`), then
//! the same admission, exit choice, tunnel, metrics and access-log line as a `CONNECT`
//! on an HTTP egress listener. Refusals are told by RFC 1928 reply codes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client_auth::{ClientChoice, split_user_parameters};
use super::dial::authority;
use super::record::Record;
use super::socks5::{
    AUTH_VERSION, HandshakeError, NO_ACCEPTABLE, Parsed, Reply, USER_PASSWORD, VERSION,
    choose_method, parse_credentials, parse_greeting, parse_request, reply_bytes,
};
use super::{EgressPlan, ProxyStatus, admit_target, open_site_tunnel, tunnel_slot};

/// Longest handshake message: a request with a 255-byte host name, or credentials of
/// 255 bytes each.
const MAX_MESSAGE: usize = 2 + 255 + 1 + 255;

/// Why a connection ended before its tunnel opened.
enum Ended {
    /// The client left, sent something unreadable, or took too long: nothing to tell.
    Quietly,
    /// Refused by Junction: counted, logged, told to the client. `user`: the name it
    /// gave, when it gave one.
    Refused {
        refusal: ProxyStatus,
        user: Option<String>,
    },
}

/// The access-log line of a client refused before its tunnel was asked for (a greeting
/// or credentials refused, a request that does not parse), as a refused HTTP `CONNECT`
/// gets one. The target is not known yet, so the line has no host.
fn log_early_refusal(
    plan: &EgressPlan,
    peer: SocketAddr,
    user: Option<String>,
    status: StatusCode,
    reason: &'static str,
) {
    let head = Request::builder()
        .method(Method::CONNECT)
        .body(())
        .unwrap_or_default();
    let mut record = Record::new(plan.telemetry.clone(), &plan.name, peer, &head);
    record.user = user.filter(|u| !u.is_empty());
    record.refused(status, reason);
}

/// Serves one SOCKS5 client connection.
pub async fn serve(mut stream: TcpStream, plan: Arc<EgressPlan>, peer: SocketAddr) {
    let handshake_within = plan.limits.idle_timeout.min(Duration::from_secs(30));
    let mut buffer = Vec::with_capacity(64);
    let greeted =
        tokio::time::timeout(handshake_within, greet(&mut stream, &mut buffer, &plan)).await;
    let choice = match greeted {
        Ok(Ok(choice)) => choice,
        Ok(Err(Ended::Refused { refusal, user })) => {
            plan.refusals.count(refusal.reason);
            tracing::debug!(%peer, reason = refusal.reason, "SOCKS5 client refused");
            log_early_refusal(&plan, peer, user, refusal.status, refusal.reason);
            return;
        }
        Ok(Err(Ended::Quietly)) | Err(_) => return,
    };
    let target = tokio::time::timeout(
        handshake_within,
        read(&mut stream, &mut buffer, parse_request),
    )
    .await;
    let target = match target {
        Ok(Ok(target)) => target,
        Ok(Err(Some(error))) => {
            tracing::debug!(%peer, %error, "SOCKS5 request refused");
            plan.refusals.count("bad_request");
            log_early_refusal(
                &plan,
                peer,
                choice.user.clone(),
                StatusCode::BAD_REQUEST,
                "bad_request",
            );
            let _ = stream.write_all(&reply_bytes(error.reply())).await;
            return;
        }
        Ok(Err(None)) | Err(_) => return,
    };
    // The record as for a CONNECT to the same target.
    let head = Request::builder()
        .method(Method::CONNECT)
        .uri(authority(&target.host, target.port))
        .body(())
        .unwrap_or_default();
    let mut record = Record::new(plan.telemetry.clone(), &plan.name, peer, &head);
    record.outbound = plan.outbound.clone();
    if let Some(capture) = plan
        .capture
        .as_ref()
        .filter(|c| c.samples(plan.rotator.rng().next_u64()))
    {
        record.start_capture(capture.clone(), &head);
    }
    record.user = choice.user.clone().filter(|u| !u.is_empty());
    let admitted = admit_target(&plan, choice, target.host, target.port, &mut record);
    if matches!(&admitted, Ok(a) if plan.intercepts(&a.host)) {
        let slot = match tunnel_slot(&plan, peer) {
            Ok(slot) => slot,
            Err(refusal) => {
                plan.refusals.count(refusal.reason);
                record.refused(refusal.status, refusal.reason);
                let _ = stream.write_all(&reply_bytes(reply_for(&refusal))).await;
                return;
            }
        };
        record.outcome = Some("intercepted");
        drop(record);
        if stream
            .write_all(&reply_bytes(Reply::Succeeded))
            .await
            .is_ok()
        {
            let Ok(admitted) = admitted else { return };
            let client = crate::fastpath::Rewind::new(buffer.into(), stream);
            super::intercept::serve(client, plan, peer, admitted, slot).await;
        }
        return;
    }
    let opened = match admitted {
        Ok(admitted) => open_site_tunnel(&plan, peer, admitted, &mut record).await,
        Err(refusal) => Err(refusal),
    };
    match opened {
        Ok(opened) => {
            if stream
                .write_all(&reply_bytes(Reply::Succeeded))
                .await
                .is_ok()
            {
                opened.splice(stream, &buffer).await;
            }
        }
        Err(refusal) => {
            if record.exit.is_none() {
                plan.refusals.count(refusal.reason);
            }
            record.refused(refusal.status, refusal.reason);
            let _ = stream.write_all(&reply_bytes(reply_for(&refusal))).await;
        }
    }
}

/// The greeting and, when chosen, user and password (RFC 1929): the client's choice of
/// region and session from its user name.
async fn greet(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    plan: &EgressPlan,
) -> Result<ClientChoice, Ended> {
    let methods = read(stream, buffer, parse_greeting)
        .await
        .map_err(|_| Ended::Quietly)?;
    let method = choose_method(&methods, plan.users.required());
    let quietly = |_| Ended::Quietly;
    stream
        .write_all(&[VERSION, method])
        .await
        .map_err(quietly)?;
    if method == NO_ACCEPTABLE {
        return Err(Ended::Refused {
            refusal: unauthorized(),
            user: None,
        });
    }
    if method != USER_PASSWORD {
        return Ok(ClientChoice::default());
    }
    let (user, password) = read(stream, buffer, parse_credentials)
        .await
        .map_err(|_| Ended::Quietly)?;
    let (name, region, session) = split_user_parameters(&user);
    if plan.users.required() && !plan.users.accepts(&name, &password) {
        let _ = stream.write_all(&[AUTH_VERSION, 0x01]).await;
        return Err(Ended::Refused {
            refusal: unauthorized(),
            user: Some(name),
        });
    }
    stream
        .write_all(&[AUTH_VERSION, 0x00])
        .await
        .map_err(quietly)?;
    Ok(ClientChoice {
        user: Some(name),
        password: Some(password),
        region,
        session,
    })
}

fn unauthorized() -> ProxyStatus {
    ProxyStatus::new(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "http_request_denied",
        "unauthorized",
        "this proxy needs a user and password (RFC 1929)",
    )
}

/// Reads until `parse` has a whole message, and leaves what follows in `buffer` (a
/// client may send its request before the greeting's answer). `Err(None)`: the client
/// closed or sent too much; `Err(Some(..))`: the message is refused.
async fn read<T>(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Parsed<T>,
) -> Result<T, Option<HandshakeError>> {
    loop {
        if let Some((value, used)) = parse(buffer).map_err(Some)? {
            buffer.drain(..used);
            return Ok(value);
        }
        if buffer.len() >= MAX_MESSAGE {
            return Err(None);
        }
        let mut chunk = [0u8; 512];
        let n = stream.read(&mut chunk).await.map_err(|_| None)?;
        if n == 0 {
            return Err(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// The RFC 1928 reply code for a refusal Junction makes, by its RFC 9209 error type.
fn reply_for(refusal: &ProxyStatus) -> Reply {
    match refusal.error {
        "destination_ip_prohibited"
        | "http_request_denied"
        | "connection_limit_reached"
        | "anomaly_blocked" => Reply::NotAllowed,
        "destination_unavailable" => Reply::NetworkUnreachable,
        "dns_error" | "destination_not_found" | "connection_timeout" => Reply::HostUnreachable,
        "connection_refused" => Reply::ConnectionRefused,
        _ => Reply::GeneralFailure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_have_their_reply_codes() {
        let status = |error| ProxyStatus::new(StatusCode::BAD_GATEWAY, error, "x", "");
        assert_eq!(
            reply_for(&status("destination_ip_prohibited")),
            Reply::NotAllowed
        );
        assert_eq!(
            reply_for(&status("connection_limit_reached")),
            Reply::NotAllowed
        );
        assert_eq!(
            reply_for(&status("destination_unavailable")),
            Reply::NetworkUnreachable
        );
        assert_eq!(reply_for(&status("dns_error")), Reply::HostUnreachable);
        assert_eq!(
            reply_for(&status("connection_refused")),
            Reply::ConnectionRefused
        );
        assert_eq!(
            reply_for(&status("http_request_error")),
            Reply::GeneralFailure
        );
    }
}
