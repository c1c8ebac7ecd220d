//! Sending a request to an endpoint over an idle fast-path connection or a new one, and
//! reading the response head; a reused connection found closed is replaced once, when
//! sending again is safe.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

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

impl HeadFailure {
    /// The error, where sending again is not an option.
    fn into_error(self, endpoint: &Endpoint) -> ProxyError {
        match self {
            HeadFailure::Closed(reason) => ProxyError::Upstream(SendError::Closed {
                endpoint: endpoint.url.clone(),
                reason,
            }),
            HeadFailure::Failed(error) => error,
        }
    }
}

/// A body read from the client as it is sent, once: `prefix` came with the head, and
/// `remaining` bytes are still to come, under the listener's body timeouts.
pub struct Upload<'a, C> {
    pub client: &'a mut C,
    pub prefix: &'a [u8],
    pub remaining: u64,
    pub wait: &'a BodyWait,
}

/// Bytes of a streamed body read from the client at a time.
const UPLOAD_PIECE: usize = 64 * 1024;

/// Writes the request (`head`, then `body` when it was not copied behind the head) to
/// the endpoint (an idle connection, or a new one within the pool's connection limit)
/// and reads the response head. A reused connection that turns out closed is replaced
/// by a fresh one once, when sending again is safe.
pub async fn send(
    pool: &UpstreamClient,
    head: &[u8],
    body: &[u8],
    mut reading: ReadingHead<'_, '_>,
    idempotent: bool,
    connect_timeout: Duration,
) -> Result<(EndpointStream, Reply), ProxyError> {
    let endpoint = reading.endpoint;
    let mut fresh_only = false;
    loop {
        let probe = !idempotent;
        let (mut upstream, reused) =
            connection(pool, endpoint, fresh_only, probe, connect_timeout).await?;
        let written = write_request(&mut upstream, head, body).await;
        match answer_of(written, reused, idempotent, &mut upstream, &mut reading).await {
            Answer::Head(reply) => return Ok((upstream, reply)),
            Answer::Again => fresh_only = true,
            Answer::Failed(error) => return Err(error),
        }
    }
}

/// [`send`] for a body that streams from the client: sent once, so only a connection
/// known to be open will do, and a reused one found closed is replaced only before any
/// of the body was read from the client. The client's failures come back as
/// `BodyTimeout` or `BadRequestBody`.
pub async fn send_streamed<C: ClientStream>(
    pool: &UpstreamClient,
    head: &[u8],
    mut upload: Upload<'_, C>,
    mut reading: ReadingHead<'_, '_>,
    connect_timeout: Duration,
) -> Result<(EndpointStream, Reply), ProxyError> {
    let endpoint = reading.endpoint;
    let mut fresh_only = false;
    loop {
        let (mut upstream, reused) =
            connection(pool, endpoint, fresh_only, true, connect_timeout).await?;
        let written = write_request(&mut upstream, head, upload.prefix).await;
        if written.is_ok() && upload.remaining > 0 {
            // From here on nothing is sent again.
            let (mut reply, whole) =
                upload_watching(&mut upstream, &mut upload, &mut reading).await?;
            if !whole {
                // Answered before the body ended: neither connection is at a message's
                // end, so neither is used again.
                reply.reusable = false;
                reply::close_client_after(&mut reply, reading.client_reply);
            }
            return Ok((upstream, reply));
        }
        match answer_of(written, reused, false, &mut upstream, &mut reading).await {
            Answer::Head(reply) => return Ok((upstream, reply)),
            Answer::Again => fresh_only = true,
            Answer::Failed(error) => return Err(error),
        }
    }
}

/// An idle connection to the endpoint (checked with a read when `probe`), or a new
/// one within the pool's connection limit; and whether it was reused.
async fn connection(
    pool: &UpstreamClient,
    endpoint: &Endpoint,
    fresh_only: bool,
    probe: bool,
    connect_timeout: Duration,
) -> Result<(EndpointStream, bool), ProxyError> {
    let connections = &endpoint.state.connections;
    if let Some(stream) = (!fresh_only)
        .then(|| connections.pop_stream(probe))
        .flatten()
    {
        return Ok((stream, true));
    }
    // Boxed: connecting (TCP, TLS) is the rare case, and its future is large; inline it
    // would grow every request's.
    Box::pin(open_connection(
        pool,
        endpoint,
        fresh_only,
        probe,
        connect_timeout,
    ))
    .await
}

/// A connection once none was idle: waits for room under the pool's limit, then
/// connects, or takes one that came back idle meanwhile.
async fn open_connection(
    pool: &UpstreamClient,
    endpoint: &Endpoint,
    fresh_only: bool,
    probe: bool,
    connect_timeout: Duration,
) -> Result<(EndpointStream, bool), ProxyError> {
    let connections = &endpoint.state.connections;
    loop {
        match pool.await_room(endpoint, connect_timeout).await? {
            Room::Free => {
                return Ok((pool.connect_stream(endpoint, connect_timeout).await?, false));
            }
            // A connection came back idle (or closed, making room).
            Room::Returned if !fresh_only => {
                if let Some(stream) = connections.pop_stream(probe) {
                    return Ok((stream, true));
                }
            }
            Room::Returned => {}
        }
    }
}

/// Writes a head and what follows it; TLS may keep the last record until flushed.
async fn write_request(
    upstream: &mut EndpointStream,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<()> {
    upstream.write_all(head).await?;
    if !body.is_empty() {
        upstream.write_all(body).await?;
    }
    upstream.flush().await
}

/// What came of a request written (or not) to an endpoint.
enum Answer {
    Head(Reply),
    /// Send it again on a new connection.
    Again,
    Failed(ProxyError),
}

/// Reads the answer to a request `written` to `upstream`: a reused connection that
/// took nothing, or (when `resend` allows) closed before a byte of answer, is to be
/// replaced.
async fn answer_of(
    written: std::io::Result<()>,
    reused: bool,
    resend: bool,
    upstream: &mut EndpointStream,
    reading: &mut ReadingHead<'_, '_>,
) -> Answer {
    let endpoint = reading.endpoint;
    let failure = match written {
        // Nothing was taken: safe to send again, whatever the method.
        Err(error) if reused => {
            tracing::debug!(%error, "idle connection closed; reconnecting");
            return Answer::Again;
        }
        Err(error) => HeadFailure::Closed(error.to_string()),
        Ok(()) => match read_reply_head(upstream, reading).await {
            Ok(reply) => return Answer::Head(reply),
            Err(failure) => failure,
        },
    };
    match failure {
        HeadFailure::Closed(_) if reused && resend => Answer::Again,
        failure => Answer::Failed(failure.into_error(endpoint)),
    }
}

/// Sends the rest of a streamed body while reading the response head, as an endpoint
/// may answer before the body ends (a 413, say) and stop reading it. The answer is
/// taken whenever it comes: before the body ended, after it, or after the endpoint
/// closed its side mid-body (writing then fails, but the answer may be there to read).
/// Returns the reply and whether the whole body went out.
async fn upload_watching<C: ClientStream>(
    upstream: &mut EndpointStream,
    upload: &mut Upload<'_, C>,
    reading: &mut ReadingHead<'_, '_>,
) -> Result<(Reply, bool), ProxyError> {
    let endpoint = reading.endpoint;
    let (mut from_endpoint, mut to_endpoint) = tokio::io::split(upstream);
    let answer = read_reply_head(&mut from_endpoint, reading);
    let copy = copy_body(
        &mut *upload.client,
        &mut to_endpoint,
        upload.remaining,
        upload.wait,
        endpoint,
    );
    tokio::pin!(answer, copy);
    let copied = tokio::select! {
        // The body first: an answer that comes with its last byte finds it whole, and
        // both connections stay usable.
        biased;
        copied = &mut copy => copied,
        answered = &mut answer => {
            let reply = answered.map_err(|failure| failure.into_error(endpoint))?;
            return Ok((reply, false));
        }
    };
    match copied {
        Ok(()) => answer
            .await
            .map(|reply| (reply, true))
            .map_err(|failure| failure.into_error(endpoint)),
        // Writing failed: the endpoint may have answered, then closed.
        Err(error @ ProxyError::Upstream(_)) => match answer.await {
            Ok(reply) => Ok((reply, false)),
            Err(_) => Err(error),
        },
        // The client failed (stalled, left): its error, whatever the endpoint does.
        Err(error) => Err(error),
    }
}

/// Copies the rest of a streamed body from the client to the endpoint, reading no byte
/// past it.
async fn copy_body<C: ClientStream, W: AsyncWrite + Unpin>(
    client: &mut C,
    upstream: &mut W,
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

/// The endpoint asked, and where its response head is read to (`replied`) and
/// rendered for the client (`client_reply`).
pub struct ReadingHead<'a, 'h> {
    pub endpoint: &'a Endpoint,
    pub replied: &'a mut ReceiveBuffer,
    pub client_head: &'a ClientHead<'h>,
    pub client_reply: &'a mut Vec<u8>,
}

async fn read_reply_head<R: AsyncRead + Unpin>(
    upstream: &mut R,
    reading: &mut ReadingHead<'_, '_>,
) -> Result<Reply, HeadFailure> {
    let ReadingHead {
        replied,
        client_head,
        client_reply,
        endpoint,
    } = reading;
    // A new answer: nothing of an earlier attempt's stays.
    replied.clear();
    client_reply.clear();
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
