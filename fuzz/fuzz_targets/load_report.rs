//! Model servers' load reports (src/llm/load_report.rs: Prometheus text from a polled
//! `/metrics`, the ORCA `endpoint-load-metrics` header) and the prompt prefix of a chat
//! body (src/llm/prompt_prefix.rs), all read from what an endpoint or client sent.
//!
//! Properties, for any bytes:
//! - no parser panics;
//! - a gauge read is finite and 0 or more, and a KV-cache use at most 1;
//! - a report is `None` rather than empty;
//! - the prefix hash of a body is the same each time it is read.

#![no_main]

use junction::balance::stable_hash;
use junction::llm::{LoadSample, parse_orca_header, parse_prometheus_text, prompt_prefix_hash};
use libfuzzer_sys::fuzz_target;

fn check(sample: Option<LoadSample>) {
    let Some(sample) = sample else { return };
    assert!(!sample.is_empty());
    for value in [sample.waiting, sample.running, sample.kv_usage]
        .into_iter()
        .flatten()
    {
        assert!(value.is_finite() && value >= 0.0, "{sample:?}");
    }
    assert!(sample.kv_usage.is_none_or(|kv| kv <= 1.0), "{sample:?}");
}

fuzz_target!(|data: &[u8]| {
    check(parse_prometheus_text(data));
    check(parse_orca_header(data));
    assert_eq!(
        prompt_prefix_hash(data, stable_hash),
        prompt_prefix_hash(data, stable_hash)
    );
});
