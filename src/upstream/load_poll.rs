//! Load polls (`least_queue`): every interval, GET each endpoint's Prometheus metrics,
//! read its queue, running and KV-cache gauges, and store them on the endpoint's state
//! with Junction's in-flight count of that moment. One task per endpoint.

use std::sync::Weak;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};

use super::EndpointState;
use super::health::{ProbeTarget, get};
use crate::llm::{LoadSample, parse_prometheus_text};

/// Largest metrics text read: vLLM's, histograms and all, is some hundred KiB.
const MAX_METRICS_BYTES: usize = 4 << 20;

/// A pool's `load_metrics = { ... }`, but `max_age`, which the balancer holds (it also
/// judges ORCA reports).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadMetrics {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Polls one endpoint until its state is dropped (the endpoint left every plan) or
/// the task is aborted (the settings changed). A failed poll leaves the last report to
/// age: past `max_age` the balancer no longer reads it.
pub async fn run_polls(
    pool: std::sync::Arc<str>,
    url: std::sync::Arc<str>,
    target: ProbeTarget,
    state: Weak<EndpointState>,
    settings: LoadMetrics,
) {
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        if state.strong_count() == 0 {
            return;
        }
        let result = tokio::time::timeout(settings.timeout, scrape(&target, &settings.path)).await;
        let Some(state) = state.upgrade() else { return };
        match result {
            Ok(Ok(sample)) => {
                state.load.record(&sample, state.in_flight());
                if failing {
                    tracing::info!(%pool, endpoint = %url, "load metrics read again");
                }
                failing = false;
            }
            Ok(Err(reason)) => {
                if !failing {
                    tracing::warn!(%pool, endpoint = %url, %reason, "cannot read load metrics");
                }
                failing = true;
            }
            Err(_) => {
                if !failing {
                    tracing::warn!(%pool, endpoint = %url, after = ?settings.timeout, "load metrics did not come in time");
                }
                failing = true;
            }
        }
    }
}

async fn scrape(target: &ProbeTarget, path: &str) -> Result<LoadSample, String> {
    let response = get(target, path, "junction-load-metrics").await?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_METRICS_BYTES)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    parse_prometheus_text(&body).ok_or_else(|| {
        "no queue or KV-cache gauge of vLLM, TGI, SGLang or Triton in the text".to_string()
    })
}
