//! A WebSocket on a masking route: the two upgraded connections relayed message by
//! message instead of byte for byte, each client text message masked and each
//! endpoint text message restored (and masked when the route masks answers), by
//! `masking::websocket`. A message masking refuses closes both sides with its reason.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::watch;

use super::body_phase::audit_block;
use super::body_record::Direction;
use crate::masking::policy::OnError;
use crate::masking::websocket::{
    self, BINARY, CLOSE, EndpointMessages, FrameReader, Message, MessageJoiner, Refusal, Sender,
    TEXT,
};
use crate::masking::{BodyError, Findings, Partition, TextMasker, Vault};
use crate::routing::Route;
use crate::security::audit::AuditLog;
use crate::telemetry::Telemetry;

/// Who the relay works for: the route (with its `mask`), the client's cache partition,
/// where findings and blocks are written.
pub struct MessageMasking {
    pub route: Arc<Route>,
    pub partition: Partition,
    pub telemetry: Arc<Telemetry>,
    pub audit: Arc<AuditLog>,
    pub request_id: Option<String>,
    pub client_ip: Option<IpAddr>,
    /// The key of the Close frame the proxy sends the endpoint on a refusal (a client's
    /// frames are masked).
    pub close_key: [u8; 4],
}

/// What a relayed connection's masking found, for its access log line (the metrics
/// counted each message as it went).
#[derive(Default)]
pub struct MessagesFound {
    /// In the client's messages.
    pub client: Findings,
    /// In the endpoint's messages.
    pub endpoint: Findings,
    /// The last direction a message was passed on unmasked in (`on_error = "pass"`).
    pub passed: Option<Direction>,
}

struct Relay<C, E> {
    masking: MessageMasking,
    vault: Mutex<Vault>,
    found: Mutex<MessagesFound>,
    to_client: tokio::sync::Mutex<WriteHalf<C>>,
    to_endpoint: tokio::sync::Mutex<WriteHalf<E>>,
    stop: watch::Sender<bool>,
}

/// Relays until both sides are done, or a refusal closes them; returns what masking
/// found.
pub async fn relay<C, E>(client: C, endpoint: E, masking: MessageMasking) -> MessagesFound
where
    C: AsyncRead + AsyncWrite + Unpin,
    E: AsyncRead + AsyncWrite + Unpin,
{
    let (from_client, to_client) = tokio::io::split(client);
    let (from_endpoint, to_endpoint) = tokio::io::split(endpoint);
    let (stop, stopped) = watch::channel(false);
    let relay = Relay {
        masking,
        vault: Mutex::new(Vault::default()),
        found: Mutex::default(),
        to_client: tokio::sync::Mutex::new(to_client),
        to_endpoint: tokio::sync::Mutex::new(to_endpoint),
        stop,
    };
    tokio::join!(
        relay.pump(Sender::Client, from_client, stopped.clone()),
        relay.pump(Sender::Endpoint, from_endpoint, stopped),
    );
    relay.found.into_inner().unwrap_or_else(|p| p.into_inner())
}

impl<C, E> Relay<C, E>
where
    C: AsyncRead + AsyncWrite + Unpin,
    E: AsyncRead + AsyncWrite + Unpin,
{
    /// One direction: frames from `sender` read, messages edited, frames written on.
    async fn pump<R: AsyncRead + Unpin>(
        &self,
        sender: Sender,
        mut from: R,
        mut stopped: watch::Receiver<bool>,
    ) {
        let Some(policy) = self.masking.route.mask.as_ref() else {
            return;
        };
        // A side whose messages are never read is copied as it comes: its messages are
        // not held whole, nor held to `max_body`. (Pseudonyms come only from a masked
        // request, so answers are read only when requests or answers are masked.)
        let reads = match sender {
            Sender::Client => policy.request,
            Sender::Endpoint => policy.request || policy.response,
        };
        let mut reader = FrameReader::new(sender, policy.max_body);
        let mut joiner = MessageJoiner::default();
        let mut answers = (sender == Sender::Endpoint).then(|| {
            let masker = policy
                .response
                .then(|| policy.masker.clone() as Arc<dyn TextMasker>);
            EndpointMessages::new(masker, policy.request, policy.max_body)
        });
        let mut buffer = vec![0; 16 << 10];
        loop {
            let read = tokio::select! {
                read = from.read(&mut buffer) => read,
                _ = stopped.changed() => return,
            };
            let read = match read {
                Ok(0) | Err(_) => {
                    self.flush_answers(&mut answers).await;
                    self.shut_down(sender).await;
                    return;
                }
                Ok(read) => read,
            };
            if !reads {
                if !self.write(sender, &buffer[..read]).await {
                    let _ = self.stop.send(true);
                    return;
                }
                continue;
            }
            reader.push(&buffer[..read]);
            let mut out = Vec::new();
            let refused = self
                .take_frames(sender, &mut reader, &mut joiner, &mut answers, &mut out)
                .err();
            // What came before a refused message still goes on, then the Close frames.
            if !out.is_empty() && !self.write(sender, &out).await {
                let _ = self.stop.send(true);
                return;
            }
            if let Some(refusal) = refused {
                return self.refuse(refusal).await;
            }
        }
    }

    /// Every whole frame read so far, written to `out` as it goes on (a message once its
    /// last fragment is in), until a frame or a message is refused.
    fn take_frames(
        &self,
        sender: Sender,
        reader: &mut FrameReader,
        joiner: &mut MessageJoiner,
        answers: &mut Option<EndpointMessages>,
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        let limit = self.masking.route.mask.as_ref().map_or(0, |m| m.max_body);
        while let Some(frame) = reader.next_frame()? {
            if frame.is_control() {
                if frame.opcode == CLOSE {
                    // No data may follow a Close frame: the answers' held text first.
                    self.held_answers(answers, out);
                }
                websocket::write_frame(out, true, frame.opcode, &frame.payload, frame.key);
                continue;
            }
            if let Some(message) = joiner.push(frame, limit)? {
                self.edit(sender, &message, answers, out)?;
            }
        }
        Ok(())
    }

    /// A whole message from `sender`: the frames to send for it written to `out` (none
    /// while an answer's text is held, more than one when held text goes first).
    fn edit(
        &self,
        sender: Sender,
        message: &Message,
        answers: &mut Option<EndpointMessages>,
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        let Some(policy) = self.masking.route.mask.as_ref() else {
            return Ok(());
        };
        let as_it_is = |out: &mut Vec<u8>| {
            websocket::write_frame(out, true, message.opcode, &message.data, message.key);
        };
        let mut findings = Findings::default();
        let mut messages = Vec::new();
        let mut vault = self.vault.lock().unwrap_or_else(|p| p.into_inner());
        let edited = match (sender, message.opcode == BINARY) {
            // Pseudonyms cannot be in bytes: a binary answer is left when only restoring.
            (Sender::Endpoint, true) if !policy.response => Ok(()),
            (_, true) => Err(BodyError::NotMaskable),
            (Sender::Client, false) => websocket::mask_client_message(
                &*policy.masker,
                &message.data,
                &mut vault,
                &mut findings,
                self.masking.partition,
            )
            .map(|masked| messages.push(masked.unwrap_or_else(|| message.data.clone()))),
            (Sender::Endpoint, false) => match answers.as_mut() {
                Some(answers) => {
                    answers.push(&message.data, &mut vault, &mut findings, &mut messages)
                }
                None => {
                    messages.push(message.data.clone());
                    Ok(())
                }
            },
        };
        let vault_full = vault.len() > websocket::MAX_PSEUDONYMS;
        drop(vault);
        if vault_full {
            return Err(Refusal::too_many_pseudonyms());
        }
        let direction = match sender {
            Sender::Client => Direction::Request,
            Sender::Endpoint => Direction::Response,
        };
        self.count(&findings, direction);
        match edited {
            Ok(()) if message.opcode == BINARY => as_it_is(out),
            Ok(()) => {
                for data in &messages {
                    websocket::write_frame(out, true, message.opcode, data, message.key);
                }
            }
            Err(BodyError::Blocked(blocked)) => {
                let masking = &self.masking;
                audit_block(
                    &masking.audit,
                    ("route", &masking.route.name),
                    &blocked,
                    masking.request_id.as_deref(),
                    masking.client_ip,
                );
                return Err(Refusal::of_body_error(&BodyError::Blocked(blocked)));
            }
            Err(error) if policy.on_error == OnError::Pass => {
                tracing::warn!(%error, "websocket message passed on unmasked (on_error = \"pass\")");
                self.masking
                    .telemetry
                    .metrics
                    .count_masking_passed(&self.masking.route.name, direction.name());
                self.found.lock().unwrap_or_else(|p| p.into_inner()).passed = Some(direction);
                as_it_is(out);
            }
            Err(error) => return Err(Refusal::of_body_error(&error)),
        }
        Ok(())
    }

    /// The endpoint's side ended: the answers' held text goes to the client.
    async fn flush_answers(&self, answers: &mut Option<EndpointMessages>) {
        let mut out = Vec::new();
        self.held_answers(answers, &mut out);
        if !out.is_empty() {
            write_all(&self.to_client, &out).await;
        }
    }

    /// The answers' held text, as frames to the client, written to `out`.
    fn held_answers(&self, answers: &mut Option<EndpointMessages>, out: &mut Vec<u8>) {
        let Some(answers) = answers.as_mut() else {
            return;
        };
        let mut findings = Findings::default();
        let mut messages = Vec::new();
        let flushed = {
            let mut vault = self.vault.lock().unwrap_or_else(|p| p.into_inner());
            answers.finish(&mut vault, &mut findings, &mut messages)
        };
        self.count(&findings, Direction::Response);
        if flushed.is_ok() {
            for data in &messages {
                websocket::write_frame(out, true, TEXT, data, None);
            }
        }
    }

    /// Counts a message's findings in the metrics at once (a connection may stay open
    /// for hours), and keeps them for the access log's line, written when it ends.
    fn count(&self, findings: &Findings, direction: Direction) {
        if findings.is_empty() {
            return;
        }
        let metrics = &self.masking.telemetry.metrics;
        for (kind, action, count) in findings.iter() {
            let key = (
                self.masking.route.name.clone(),
                kind.0.clone(),
                action.name(),
                direction.name(),
            );
            metrics.count_masking(key, u64::from(count));
        }
        let mut found = self.found.lock().unwrap_or_else(|p| p.into_inner());
        match direction {
            Direction::Request => found.client.merge(findings),
            Direction::Response => found.endpoint.merge(findings),
        }
    }

    /// Writes `bytes` to the side `sender` sends to; false when it is gone.
    async fn write(&self, sender: Sender, bytes: &[u8]) -> bool {
        match sender {
            Sender::Client => write_all(&self.to_endpoint, bytes).await,
            Sender::Endpoint => write_all(&self.to_client, bytes).await,
        }
    }

    /// `sender` ended its side: the other side's write half is shut down after it.
    async fn shut_down(&self, sender: Sender) {
        match sender {
            Sender::Client => {
                let _ = self.to_endpoint.lock().await.shutdown().await;
            }
            Sender::Endpoint => {
                let _ = self.to_client.lock().await.shutdown().await;
            }
        }
    }

    /// Closes both sides with the refusal's code and reason, and stops both directions.
    async fn refuse(&self, refusal: Refusal) {
        tracing::debug!(code = refusal.code, reason = %refusal.reason, "websocket closed by masking");
        let payload = websocket::close_payload(&refusal);
        let mut to_client = Vec::new();
        websocket::write_frame(&mut to_client, true, CLOSE, &payload, None);
        let mut to_endpoint = Vec::new();
        let key = Some(self.masking.close_key);
        websocket::write_frame(&mut to_endpoint, true, CLOSE, &payload, key);
        let _ = self.stop.send(true);
        write_all(&self.to_client, &to_client).await;
        write_all(&self.to_endpoint, &to_endpoint).await;
        let _ = self.to_client.lock().await.shutdown().await;
        let _ = self.to_endpoint.lock().await.shutdown().await;
    }
}

async fn write_all<W: AsyncWrite>(to: &tokio::sync::Mutex<WriteHalf<W>>, bytes: &[u8]) -> bool {
    let mut to = to.lock().await;
    to.write_all(bytes).await.is_ok() && to.flush().await.is_ok()
}
