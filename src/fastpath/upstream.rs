//! Sending a request to an endpoint over an idle fast-path connection or a new one, and
//! reading the response head; a reused connection found closed is replaced once, when
//! sending again is safe.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::buffer::ReceiveBuffer;
use super::reply::{self, ClientHead, Reply};
use super::{BodyReadError, BodyWait, ClientStream, REPLY_HEAD_LIMIT};
use crate::pipeline::ProxyError;
use crate::upstream::{Endpoint, EndpointStream, Room, SendError, UpstreamClient};

/// Why the endpoint gave no usable response head.
enum HeadFailure {
    /// Closed or reset before a byte of response: a reused connection may be stale.
    Closed(String),
    Failed(ProxyError),
}

/// A request body on its way to the endpoint.
pub enum Outgoing<'a, C> {
    /// Held whole (and sent again if need be): written after the head, unless it was
    /// copied behind it (then empty here).
    Held(&'a [u8]),
    /// Read from the client as it is sent, once: `prefix` came with the head, and
    /// `remaining` bytes are still to come, under the listener's body timeouts.
    Streamed {
        client: &'a mut C,
        prefix: &'a [u8],
        remaining: u64,
        wait: &'a BodyWait,
    },
}

/// Bytes of a streamed body read from the client at a time.
const UPLOAD_PIECE: usize = 64 * 1024;

/// Writes the request (`head`, then its body) to the endpoint (an idle connection, or
/// a new one within the pool's connection limit) and reads the response head. A reused
/// connection that turns out closed is replaced by a fresh one once, when sending again
/// is safe: before any of a streamed body was read from the client. The client's
/// failures while its body streams come back as `BodyTimeout` or `BadRequestBody`.
#[allow(clippy::too_many_arguments)]
pub async fn send<C: ClientStream>(
    pool: &UpstreamClient,
    endpoint: &Endpoint,
    head: &[u8],
    mut body: Outgoing<'_, C>,
    replied: &mut ReceiveBuffer,
    client_head: &ClientHead<'_>,
    client_reply: &mut Vec<u8>,
    idempotent: bool,
    connect_timeout: Duration,
) -> Result<(EndpointStream, Reply), ProxyError> {
    let connections = &endpoint.state.connections;
    // A streamed body cannot be sent twice: only a connection known to be open will do.
    let idempotent = idempotent && matches!(body, Outgoing::Held(_));
    let mut fresh_only = false;
    loop {
        let idle = if fresh_only {
            None
        } else {
            connections.pop_stream(!idempotent)
        };
        let (mut upstream, reused) = match idle {
            Some(stream) => (stream, true),
            None => loop {
                match pool.await_room(endpoint, connect_timeout).await? {
                    Room::Free => {
                        break (pool.connect_stream(endpoint, connect_timeout).await?, false);
                    }
                    // A connection came back idle (or closed, making room).
                    Room::Returned if !fresh_only => {
                        if let Some(stream) = connections.pop_stream(!idempotent) {
                            break (stream, true);
                        }
                    }
                    Room::Returned => {}
                }
            },
        };
        replied.clear();
        client_reply.clear();
        // TLS may keep the last record until flushed.
        let written = async {
            upstream.write_all(head).await?;
            let first = match &body {
                Outgoing::Held(body) => body,
                Outgoing::Streamed { prefix, .. } => prefix,
            };
            if !first.is_empty() {
                upstream.write_all(first).await?;
            }
            upstream.flush().await
        };
        let written = written.await;
        // The rest of a streamed body: from here on nothing is sent again.
        let written = match (&mut body, written) {
            (
                Outgoing::Streamed {
                    client,
                    remaining,
                    wait,
                    ..
                },
                Ok(()),
            ) if *remaining > 0 => {
                upload(*client, &mut upstream, *remaining, wait, endpoint).await?;
                Ok(())
            }
            (_, written) => written,
        };
        let failure = match written {
            // Nothing was taken: safe to send again, whatever the method.
            Err(error) if reused => {
                tracing::debug!(endpoint = %endpoint.url, %error, "idle connection closed; reconnecting");
                fresh_only = true;
                continue;
            }
            Err(error) => HeadFailure::Closed(error.to_string()),
            Ok(()) => {
                match read_reply_head(&mut upstream, replied, client_head, client_reply, endpoint)
                    .await
                {
                    Ok(reply) => return Ok((upstream, reply)),
                    Err(failure) => failure,
                }
            }
        };
        match failure {
            HeadFailure::Closed(_) if reused && idempotent => fresh_only = true,
            HeadFailure::Closed(reason) => {
                return Err(ProxyError::Upstream(SendError::Closed {
                    endpoint: endpoint.url.clone(),
                    reason,
                }));
            }
            HeadFailure::Failed(error) => return Err(error),
        }
    }
}

/// Copies the rest of a streamed body from the client to the endpoint, reading no byte
/// past it.
async fn upload<C: ClientStream>(
    client: &mut C,
    upstream: &mut EndpointStream,
    mut remaining: u64,
    wait: &BodyWait,
    endpoint: &Endpoint,
) -> Result<(), ProxyError> {
    let mut piece = vec![0; UPLOAD_PIECE.min(remaining as usize)];
    while remaining > 0 {
        let want = piece.len().min(remaining as usize);
        let n = match wait.read_into(client, &mut piece[..want]).await {
            Ok(n) => n,
            Err(BodyReadError::TimedOut(after)) => return Err(ProxyError::BodyTimeout { after }),
            Err(BodyReadError::Closed) => {
                return Err(ProxyError::BadRequestBody {
                    reason: "the client closed the connection before its body ended".into(),
                });
            }
        };
        let sent = async {
            upstream.write_all(&piece[..n]).await?;
            upstream.flush().await
        };
        if let Err(error) = sent.await {
            return Err(ProxyError::Upstream(SendError::Closed {
                endpoint: endpoint.url.clone(),
                reason: error.to_string(),
            }));
        }
        remaining -= n as u64;
    }
    Ok(())
}

async fn read_reply_head(
    upstream: &mut EndpointStream,
    replied: &mut ReceiveBuffer,
    client_head: &ClientHead<'_>,
    client_reply: &mut Vec<u8>,
    endpoint: &Endpoint,
) -> Result<Reply, HeadFailure> {
    let invalid = |reason| {
        HeadFailure::Failed(ProxyError::Upstream(SendError::Protocol {
            endpoint: endpoint.url.clone(),
            reason,
        }))
    };
    let mut any_byte = false;
    loop {
        if !replied.is_empty() {
            match reply::parse(replied.filled(), client_head, client_reply) {
                reply::Parsed::Complete(reply) if reply.is_informational() => {
                    replied.consume(reply.len);
                    continue;
                }
                reply::Parsed::Complete(reply) => return Ok(reply),
                reply::Parsed::Invalid(reason) => return Err(invalid(reason)),
                reply::Parsed::Partial => {}
            }
        }
        match replied.read_from(upstream, REPLY_HEAD_LIMIT).await {
            Ok(0) if !any_byte => return Err(HeadFailure::Closed("end of stream".into())),
            Ok(0) => return Err(invalid("incomplete response head")),
            Ok(_) => any_byte = true,
            Err(_) if replied.make_room(REPLY_HEAD_LIMIT).is_err() => {
                return Err(invalid("response head too large"));
            }
            Err(error) if !any_byte => return Err(HeadFailure::Closed(error.to_string())),
            Err(error) => {
                return Err(HeadFailure::Failed(ProxyError::Upstream(
                    SendError::Closed {
                        endpoint: endpoint.url.clone(),
                        reason: error.to_string(),
                    },
                )));
            }
        }
    }
}
