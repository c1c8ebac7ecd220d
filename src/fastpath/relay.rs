//! The response body on its way from the endpoint to the client: relayed as it arrives
//! (the head rides with the first bytes, and waits for them unless it is an event
//! stream's), framed as the endpoint framed it (a close-delimited body re-framed as
//! chunks), within the route's timeouts, while the client's socket is watched for it
//! going away.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::buffer::ReceiveBuffer;
use super::chunked::ChunkedScanner;
use super::reply::Framing;
use super::{ClientStream, REPLY_HEAD_LIMIT};
use crate::pipeline::Exchange;
use crate::pipeline::translation::SettledStatus;
use crate::upstream::EndpointStream;

/// Resolves when the client has closed its connection (end of stream or an error), so
/// that a request it no longer waits for is given up at once, as hyper does. Bytes it
/// sends meanwhile (a pipelined next request) are kept in `received`.
pub async fn client_gone<C: ClientStream>(client: &mut C, received: &mut ReceiveBuffer) {
    loop {
        let Some(spare) = received.spare() else {
            // No room to look: the client is taken to be there.
            return std::future::pending().await;
        };
        // Cancel-safe for TCP and TLS streams: bytes are only taken when returned.
        match client.read(spare).await {
            Ok(0) | Err(_) => return,
            Ok(n) => received.extend(n),
        }
    }
}

pub enum Relayed {
    Complete,
    ClientGone,
    /// The body failed before the client's head was written (it waits for the first
    /// byte of the body): the client can still get an error answer instead.
    Unanswered {
        reason: String,
        /// The body's framing was invalid (rather than cut or slow).
        malformed: bool,
    },
    /// The body phase could not transform the body before the client's head was
    /// written: the client gets the refusal instead.
    Refused {
        reason: String,
    },
    /// `at_boundary`: the client's body is chunked (as sent, or re-framed) and was cut
    /// between chunks, so a last chunk can still be added.
    UpstreamBroke {
        reason: String,
        at_boundary: bool,
    },
}

impl Relayed {
    /// The body phase's transform refused the body: the client gets the refusal if its
    /// head is not out yet; else the body is cut between its own chunks.
    fn transform_refused(reason: String, head_sent: bool) -> Relayed {
        match head_sent {
            false => Relayed::Refused { reason },
            true => Relayed::UpstreamBroke {
                reason: format!("the response could not be masked: {reason}"),
                at_boundary: true,
            },
        }
    }
}

/// Streams a response body from the endpoint to the client as it arrives, the head
/// riding with the first bytes.
pub struct BodyRelay<'a, C> {
    pub upstream: &'a mut EndpointStream,
    pub replied: &'a mut ReceiveBuffer,
    pub client: &'a mut C,
    /// The client's receive buffer, for bytes it sends while the body streams.
    pub received: &'a mut ReceiveBuffer,
    /// The client's response head, not yet written; then the chunk being written when
    /// a close-delimited body is re-framed.
    pub head: &'a mut Vec<u8>,
    pub exchange: &'a mut Exchange,
    pub idle: Option<Duration>,
    pub deadline: Option<Instant>,
    /// The head waits for the first byte of the body (`response_head::holds_head`).
    pub hold_head: bool,
    /// The body phase transforms the body (`Exchange::transforms_response`): its
    /// output goes to the client in chunks of its own, and the head says so.
    pub transform: bool,
    /// A pool's `api` translation settles the status of a JSON answer once it has read
    /// it (the head waits for that): written into the head before it goes.
    pub settled: Option<SettledStatus>,
}

/// The head not yet written gets the status a translation settled on, if any.
fn settle_status(head: &mut Vec<u8>, settled: Option<&SettledStatus>, exchange: &mut Exchange) {
    let Some(status) = settled.and_then(SettledStatus::get) else {
        return;
    };
    let Some(end) = head.windows(2).position(|w| w == b"\r\n") else {
        return;
    };
    let line = format!(
        "HTTP/1.1 {} {}",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    head.splice(..end, line.into_bytes());
    exchange.status = status.as_u16();
}

/// Why reading more of the body failed.
enum ReadFailure {
    Upstream(String),
    ClientGone,
}

impl<C: ClientStream> BodyRelay<'_, C> {
    pub async fn run(mut self, framing: Framing) -> Relayed {
        let mut remaining = match framing {
            Framing::Length(length) => length,
            _ => 0,
        };
        let mut chunks = ChunkedScanner::default();
        let mut head_sent = false;
        // The transform's output (transform mode only).
        let mut out = Vec::new();
        let mut refused = None;
        let transform = self.transform;
        loop {
            let available = self.replied.filled();
            let exchange = &mut *self.exchange;
            // Each piece of payload: recorded as it passes, or given to the transform.
            let mut payload = |data: &[u8]| {
                if !transform {
                    exchange.on_response_data(data);
                } else if refused.is_none()
                    && let Err(reason) = exchange.transform_response(data, false, &mut out)
                {
                    refused = Some(reason);
                }
            };
            let (used, done) = match framing {
                Framing::Empty => (0, true),
                Framing::Length(_) => {
                    let used = available
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    payload(&available[..used]);
                    remaining -= used as u64;
                    (used, remaining == 0)
                }
                Framing::Chunked => match chunks.scan(available, &mut payload) {
                    Ok(used) => (used, chunks.is_done()),
                    Err(error) if !head_sent => {
                        return Relayed::Unanswered {
                            reason: error.to_string(),
                            malformed: true,
                        };
                    }
                    Err(error) => {
                        return Relayed::UpstreamBroke {
                            reason: error.to_string(),
                            at_boundary: false,
                        };
                    }
                },
                Framing::UntilClose => {
                    payload(available);
                    (available.len(), false)
                }
            };
            if transform
                && done
                && refused.is_none()
                && let Err(reason) = self.exchange.transform_response(&[], true, &mut out)
            {
                refused = Some(reason);
            }
            if let Some(reason) = refused.take() {
                return Relayed::transform_refused(reason, head_sent);
            }
            let piece = &available[..used];
            // Nothing to send with the head yet: it waits for the first byte (of what
            // the transform lets through, when there is one).
            let nothing = if transform {
                out.is_empty()
            } else {
                piece.is_empty()
            };
            let waits = !head_sent && self.hold_head && nothing && !done;
            if head_sent {
                self.head.clear();
            } else if !waits {
                settle_status(self.head, self.settled.as_ref(), self.exchange);
            }
            let written = if waits {
                Ok(())
            } else if transform {
                if !out.is_empty() {
                    put_chunk(self.head, &out);
                    out.clear();
                }
                if done {
                    self.head.extend_from_slice(LAST_CHUNK);
                }
                match self.head.is_empty() {
                    true => Ok(()),
                    false => self.client.write_all(self.head).await,
                }
            } else if framing == Framing::UntilClose {
                if !piece.is_empty() {
                    put_chunk(self.head, piece);
                }
                self.client.write_all(self.head).await
            } else if head_sent {
                self.client.write_all(piece).await
            } else {
                self.head.extend_from_slice(piece);
                self.client.write_all(self.head).await
            };
            if written.is_err() {
                return Relayed::ClientGone;
            }
            head_sent |= !waits;
            self.replied.consume(used);
            if done {
                return Relayed::Complete;
            }
            let broke = |reason: String| match head_sent {
                true => Relayed::UpstreamBroke {
                    reason,
                    at_boundary: framing == Framing::UntilClose
                        || (framing == Framing::Chunked && chunks.at_boundary()),
                },
                false => Relayed::Unanswered {
                    reason,
                    malformed: false,
                },
            };
            match self.read().await {
                Ok(0) if framing == Framing::UntilClose => {
                    // The head, if it waited for a first byte that never came.
                    if head_sent {
                        self.head.clear();
                    }
                    if transform {
                        if let Err(reason) = self.exchange.transform_response(&[], true, &mut out) {
                            return Relayed::transform_refused(reason, head_sent);
                        }
                        if !head_sent {
                            settle_status(self.head, self.settled.as_ref(), self.exchange);
                        }
                        if !out.is_empty() {
                            put_chunk(self.head, &out);
                        }
                    }
                    self.head.extend_from_slice(LAST_CHUNK);
                    return match self.client.write_all(self.head).await {
                        Ok(()) => Relayed::Complete,
                        Err(_) => Relayed::ClientGone,
                    };
                }
                Ok(0) => return broke("the endpoint closed mid-body".into()),
                Ok(_) => {}
                Err(ReadFailure::Upstream(reason)) => return broke(reason),
                Err(ReadFailure::ClientGone) => return Relayed::ClientGone,
            }
        }
    }

    /// Reads more of the body, within the idle and total timeouts, while watching for
    /// the client going away.
    async fn read(&mut self) -> Result<usize, ReadFailure> {
        let idle = self.idle.map(|idle| Instant::now() + idle);
        let until = match (idle, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let read = self.replied.read_from(self.upstream, REPLY_HEAD_LIMIT);
        let read = async {
            match until {
                Some(until) => tokio::time::timeout_at(until, read).await.map_err(|_| {
                    if self.deadline.is_some_and(|d| Instant::now() >= d) {
                        "the exchange took longer than its total timeout".to_string()
                    } else {
                        format!(
                            "no data from the endpoint for {:?}",
                            self.idle.unwrap_or_default()
                        )
                    }
                }),
                None => Ok(read.await),
            }
        };
        tokio::select! {
            read = read => match read {
                Ok(Ok(n)) => Ok(n),
                Ok(Err(error)) => Err(ReadFailure::Upstream(format!(
                    "the endpoint's response broke off: {error}"
                ))),
                Err(reason) => Err(ReadFailure::Upstream(reason)),
            },
            () = client_gone(self.client, self.received) => Err(ReadFailure::ClientGone),
        }
    }
}

/// The last chunk of a chunked body, with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends `data` as one chunk.
pub fn put_chunk(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}
