//! Sending a request to an endpoint over an idle fast-path connection or a new one, and
//! reading the response head; a reused connection found closed is replaced once, when
//! sending again is safe.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::REPLY_HEAD_LIMIT;
use super::buffer::ReceiveBuffer;
use super::reply::{self, ClientHead, Reply};
use crate::pipeline::ProxyError;
use crate::upstream::{Endpoint, EndpointStream, Room, SendError, UpstreamClient};

/// Why the endpoint gave no usable response head.
enum HeadFailure {
    /// Closed or reset before a byte of response: a reused connection may be stale.
    Closed(String),
    Failed(ProxyError),
}

/// Writes the request (`head`, then `body` when it was not copied behind the head) to
/// the endpoint (an idle connection, or a new one within the
/// pool's connection limit) and reads the response head. A reused connection that
/// turns out closed is replaced by a fresh one once, when sending again is safe.
#[allow(clippy::too_many_arguments)]
pub async fn send(
    pool: &UpstreamClient,
    endpoint: &Endpoint,
    head: &[u8],
    body: &[u8],
    replied: &mut ReceiveBuffer,
    client_head: &ClientHead<'_>,
    client_reply: &mut Vec<u8>,
    idempotent: bool,
    connect_timeout: Duration,
) -> Result<(EndpointStream, Reply), ProxyError> {
    let connections = &endpoint.state.connections;
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
            if !body.is_empty() {
                upstream.write_all(body).await?;
            }
            upstream.flush().await
        };
        let written = written.await;
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
