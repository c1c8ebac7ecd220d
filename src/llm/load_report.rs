//! Load signals model servers publish: the queue, running and KV-cache gauges of a
//! Prometheus `/metrics` text (vLLM, TGI, SGLang, Triton), and the ORCA
//! `endpoint-load-metrics` response header (TEXT and JSON forms).

/// What one report says about an endpoint's load; a field is `None` when the server
/// does not publish it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadSample {
    /// Requests waiting for a slot (or for KV-cache room).
    pub waiting: Option<f64>,
    /// Requests being served.
    pub running: Option<f64>,
    /// KV-cache use, 0 to 1.
    pub kv_usage: Option<f64>,
}

impl LoadSample {
    pub fn is_empty(&self) -> bool {
        self.waiting.is_none() && self.running.is_none() && self.kv_usage.is_none()
    }
}

/// Which reading a metric name gives, and its precedence among names for the same
/// reading (lower wins: vLLM's current KV name over its older one).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    Waiting,
    Running,
    KvUsage,
}

/// The gauges read, by server. Several series of one name (vLLM's `engine` label, a
/// Triton model per label set) are added up; fractions are averaged.
const GAUGES: &[(&str, Reading, u8)] = &[
    ("vllm:num_requests_waiting", Reading::Waiting, 0),
    ("vllm:num_requests_running", Reading::Running, 0),
    ("vllm:kv_cache_usage_perc", Reading::KvUsage, 0),
    ("vllm:gpu_cache_usage_perc", Reading::KvUsage, 1),
    ("tgi_queue_size", Reading::Waiting, 0),
    ("tgi_batch_current_size", Reading::Running, 0),
    ("sglang:num_queue_reqs", Reading::Waiting, 0),
    ("sglang:num_running_reqs", Reading::Running, 0),
    ("sglang:token_usage", Reading::KvUsage, 0),
    ("nv_inference_pending_request_count", Reading::Waiting, 0),
];

/// Sum and count of the series seen for one gauge name.
#[derive(Clone, Copy, Default)]
struct Tally {
    sum: f64,
    series: u32,
}

/// Reads the load gauges of a Prometheus text exposition. Linear in the text, no
/// allocation per line; lines it cannot read are skipped, never an error. `None` when
/// no known gauge is there.
pub fn parse_prometheus_text(text: &[u8]) -> Option<LoadSample> {
    let mut tallies = [Tally::default(); GAUGES.len()];
    for line in text.split(|b| *b == b'\n') {
        let Some((name, value)) = sample_line(line) else {
            continue;
        };
        let Some(index) = GAUGES
            .iter()
            .position(|(known, _, _)| known.as_bytes() == name)
        else {
            continue;
        };
        if value.is_finite() && value >= 0.0 {
            tallies[index].sum += value;
            tallies[index].series += 1;
        }
    }
    let pick = |reading: Reading| {
        GAUGES
            .iter()
            .zip(tallies)
            .filter(|((_, r, _), tally)| *r == reading && tally.series > 0)
            .min_by_key(|((_, _, rank), _)| *rank)
            .map(|(_, tally)| match reading {
                Reading::KvUsage => (tally.sum / f64::from(tally.series)).min(1.0),
                Reading::Waiting | Reading::Running => tally.sum,
            })
    };
    let sample = LoadSample {
        waiting: pick(Reading::Waiting),
        running: pick(Reading::Running),
        kv_usage: pick(Reading::KvUsage),
    };
    (!sample.is_empty()).then_some(sample)
}

/// `name{labels} value [timestamp]` → (name, value); comments, blank and unreadable
/// lines → `None`. Label values are quoted and may hold `}` or escaped quotes.
fn sample_line(line: &[u8]) -> Option<(&[u8], f64)> {
    let line = line.trim_ascii();
    if line.is_empty() || line[0] == b'#' {
        return None;
    }
    let name_end = line
        .iter()
        .position(|b| *b == b'{' || b.is_ascii_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    if rest[0] == b'{' {
        rest = &rest[labels_end(rest)?..];
    }
    let value = rest.trim_ascii_start();
    let value_end = value
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(value.len());
    let value = std::str::from_utf8(&value[..value_end]).ok()?;
    Some((name, value.parse::<f64>().ok()?))
}

/// The offset just past the `}` that closes the label set `text` starts with.
fn labels_end(text: &[u8]) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, byte) in text.iter().enumerate().skip(1) {
        match (in_quotes, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => in_quotes = !in_quotes,
            (false, _, b'}') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// Reads an ORCA `endpoint-load-metrics` header: `TEXT named_metrics.NAME=VALUE, ...`
/// or `JSON {"named_metrics": {...}}`, as vLLM sends them (`BIN` is not read). The
/// named metrics vLLM reports are `num_requests_waiting` and `kv_cache_usage_perc`;
/// `num_requests_running` is read where a server adds it.
pub fn parse_orca_header(value: &[u8]) -> Option<LoadSample> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut sample = LoadSample::default();
    let mut set = |name: &str, value: f64| {
        if !value.is_finite() || value < 0.0 {
            return;
        }
        match name {
            "num_requests_waiting" => sample.waiting = Some(value),
            "num_requests_running" => sample.running = Some(value),
            "kv_cache_usage_perc" | "kv_cache_utilization" => {
                sample.kv_usage = Some(value.min(1.0))
            }
            _ => {}
        }
    };
    if let Some(pairs) = text.strip_prefix("TEXT ") {
        for pair in pairs.split(',') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if let (Some(name), Ok(value)) = (
                key.trim().strip_prefix("named_metrics."),
                value.trim().parse::<f64>(),
            ) {
                set(name, value);
            }
        }
    } else if let Some(json) = text.strip_prefix("JSON ") {
        #[derive(serde::Deserialize)]
        struct Report {
            #[serde(default)]
            named_metrics: std::collections::HashMap<String, serde_json::Value>,
        }
        let report: Report = serde_json::from_str(json).ok()?;
        for (name, value) in &report.named_metrics {
            if let Some(value) = value.as_f64() {
                set(name, value);
            }
        }
    }
    (!sample.is_empty()).then_some(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm() {
        let text = br#"# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
vllm:num_requests_waiting{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
vllm:num_requests_running{engine="0",model_name="m"} 8.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.7
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="m"} 0.0
vllm:num_requests_waiting_by_reason{reason="x"} 99
"#;
        let sample = parse_prometheus_text(text).unwrap();
        assert_eq!(sample.waiting, Some(5.0));
        assert_eq!(sample.running, Some(8.0));
        assert!((sample.kv_usage.unwrap() - 0.6).abs() < 1e-9);
    }

    #[test]
    fn older_vllm_kv_name_only_when_the_new_one_is_missing() {
        let both = b"vllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.2\n";
        assert_eq!(parse_prometheus_text(both).unwrap().kv_usage, Some(0.2));
        let old = b"vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.9\n";
        assert_eq!(parse_prometheus_text(old).unwrap().kv_usage, Some(0.9));
    }

    #[test]
    fn tgi_sglang_triton() {
        let tgi = b"# TYPE tgi_queue_size gauge\ntgi_queue_size 4\ntgi_batch_current_size 16\n";
        let tgi = parse_prometheus_text(tgi).unwrap();
        assert_eq!(
            (tgi.waiting, tgi.running, tgi.kv_usage),
            (Some(4.0), Some(16.0), None)
        );
        let sglang = b"sglang:num_queue_reqs{model_name=\"m\"} 7\nsglang:num_running_reqs{model_name=\"m\"} 2\nsglang:token_usage{model_name=\"m\"} 0.28\n";
        let sglang = parse_prometheus_text(sglang).unwrap();
        assert_eq!(
            (sglang.waiting, sglang.running, sglang.kv_usage),
            (Some(7.0), Some(2.0), Some(0.28))
        );
        let triton = b"nv_inference_pending_request_count{model=\"a\",version=\"1\"} 2\nnv_inference_pending_request_count{model=\"b\",version=\"1\"} 1\n";
        assert_eq!(parse_prometheus_text(triton).unwrap().waiting, Some(3.0));
    }

    #[test]
    fn labels_with_braces_quotes_and_timestamps() {
        let text = br#"vllm:num_requests_waiting{model_name="a}b\"c{"} 6 1700000000000"#;
        assert_eq!(parse_prometheus_text(text).unwrap().waiting, Some(6.0));
    }

    #[test]
    fn malformed_text() {
        for text in [
            &b""[..],
            b"not metrics at all",
            b"vllm:num_requests_waiting{unclosed=\"x} 3",
            b"vllm:num_requests_waiting",
            b"vllm:num_requests_waiting abc",
            b"vllm:num_requests_waiting NaN\nvllm:num_requests_running -1",
            b"{} 3\n\xff\xfe 4",
            b"vllm:num_requests_waiting +Inf",
        ] {
            assert_eq!(parse_prometheus_text(text), None, "{text:?}");
        }
        // One good line among bad ones still counts.
        let mixed = b"garbage{\nvllm:num_requests_waiting 2\n\xff";
        assert_eq!(parse_prometheus_text(mixed).unwrap().waiting, Some(2.0));
        // A KV fraction above 1 is read as full.
        assert_eq!(
            parse_prometheus_text(b"sglang:token_usage 1.5")
                .unwrap()
                .kv_usage,
            Some(1.0)
        );
    }

    #[test]
    fn orca_text_and_json() {
        let text = b"TEXT named_metrics.kv_cache_usage_perc=0.4, named_metrics.num_requests_waiting=3.0, cpu_utilization=0.3";
        let sample = parse_orca_header(text).unwrap();
        assert_eq!((sample.waiting, sample.kv_usage), (Some(3.0), Some(0.4)));
        let json = br#"JSON {"named_metrics": {"num_requests_waiting": 1.0, "kv_cache_usage_perc": 0.25, "other": "x"}}"#;
        let sample = parse_orca_header(json).unwrap();
        assert_eq!((sample.waiting, sample.kv_usage), (Some(1.0), Some(0.25)));
        for bad in [
            &b"BIN AAAA"[..],
            b"TEXT cpu_utilization=0.3",
            b"JSON {",
            b"TEXT named_metrics.num_requests_waiting=x",
            b"named_metrics.num_requests_waiting=1",
            b"\xff",
        ] {
            assert_eq!(parse_orca_header(bad), None, "{bad:?}");
        }
    }
}
