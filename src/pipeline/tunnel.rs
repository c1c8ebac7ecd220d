//! The connection after a `101 Switching Protocols`: spliced byte for byte, or relayed
//! message by message on a masking route. It keeps the request's record to its end, so
//! the access log's line covers the connection (its bytes, what masking found) and the
//! endpoint's in-flight count holds while it is open.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::exchange::{BytesIn, Exchange, TunnelStart};
use super::websocket::{self, MessageMasking};
use crate::upstream::ReadCount;

/// The tunnel between the client's and the endpoint's upgraded connections, to start
/// with the request's record once the `101` is out.
pub fn start(
    client: OnUpgrade,
    endpoint: OnUpgrade,
    masking: Option<MessageMasking>,
) -> TunnelStart {
    Box::new(move |mut exchange: Box<Exchange>| {
        Box::pin(async move {
            let (Ok(client), Ok(endpoint)) = (client.await, endpoint.await) else {
                return;
            };
            let (sent, answered) = (Arc::<AtomicU64>::default(), Arc::<AtomicU64>::default());
            let mut client = ReadCount::new(TokioIo::new(client), Arc::clone(&sent));
            let mut endpoint = ReadCount::new(TokioIo::new(endpoint), Arc::clone(&answered));
            match masking {
                Some(masking) => {
                    let found = websocket::relay(client, endpoint, masking).await;
                    let body = &mut exchange.body;
                    body.counted = true;
                    body.request.merge(&found.client);
                    body.message_answers.merge(&found.endpoint);
                    body.passed = body.passed.or(found.passed);
                }
                None => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut endpoint).await;
                }
            }
            exchange.bytes_in = BytesIn::Known(sent.load(Ordering::Relaxed));
            exchange.bytes_out = answered.load(Ordering::Relaxed);
        })
    })
}
