//! The anomaly detectors' places in the request, decided once for both engines: the
//! client's rate and any cool-down after the route's policies, prompt-injection markers
//! on the request body (called by the body phase). The end of the exchange is judged by
//! the `Exchange`'s report.

use std::time::Instant;

use http::HeaderValue;

use super::head::X_JUNCTION_TAG;
use super::{Exchange, HeaderEdits, ProxyError};
use crate::inspect::anomaly::Verdict;
use crate::routing::Route;

/// After the route's policies (so the API key is known): counts the request for its
/// client and applies a cool-down an earlier detection set.
pub fn on_request(
    route: &Route,
    exchange: &mut Exchange,
    edits: &mut HeaderEdits,
) -> Result<(), ProxyError> {
    let Some(anomalies) = route.anomalies.as_ref() else {
        return Ok(());
    };
    let Some(client) = exchange.client_id() else {
        return Ok(());
    };
    let verdict = anomalies.on_request(&client, Instant::now());
    apply(verdict, exchange, edits)
}

/// The request body as it goes on: its messages are read for prompt-injection markers.
pub fn on_prompt(
    route: &Route,
    body: &[u8],
    exchange: &mut Exchange,
    edits: &mut HeaderEdits,
) -> Result<(), ProxyError> {
    let Some(anomalies) = route.anomalies.as_ref().filter(|a| a.reads_prompts()) else {
        return Ok(());
    };
    let Some(client) = exchange.client_id() else {
        return Ok(());
    };
    let verdict = anomalies.on_prompt(&client, body, Instant::now());
    apply(verdict, exchange, edits)
}

/// A block becomes the refusal; tags go upstream as `x-junction-tag: anomaly:NAME`
/// lines (the header clients cannot send).
fn apply(
    verdict: Verdict,
    exchange: &mut Exchange,
    edits: &mut HeaderEdits,
) -> Result<(), ProxyError> {
    if let Some(detector) = verdict.block {
        exchange.anomaly_blocked = true;
        return Err(ProxyError::Anomaly {
            detector: detector.name(),
            status: detector.block_status(),
        });
    }
    for detector in verdict.tags {
        let value = format!("anomaly:{}", detector.name());
        if let Ok(value) = HeaderValue::from_str(&value) {
            edits.append(&X_JUNCTION_TAG, value);
        }
    }
    Ok(())
}
