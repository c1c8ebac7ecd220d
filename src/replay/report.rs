//! What a replay found: the JSON line written for each flow (the original and the
//! replay side by side), and the summary table over all of them, with the medians and
//! percentiles it is built on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::inspect::Flow;

/// What one exchange showed; `None` where it does not tell (no stream, no `usage`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Measurement {
    pub status: Option<u16>,
    /// Milliseconds to the end of the response.
    pub latency_ms: Option<f64>,
    /// Milliseconds to the first event carrying generated text (streamed replies).
    pub ttft_ms: Option<f64>,
    pub completion_tokens: Option<u64>,
    /// Characters (not bytes) of the generated text.
    pub answer_chars: Option<usize>,
}

impl Measurement {
    /// What the capture recorded of the original exchange.
    pub fn of_original(flow: &Flow) -> Measurement {
        let answered = flow.response.is_some();
        Measurement {
            status: flow.response.as_ref().map(|response| response.status),
            latency_ms: answered.then_some(flow.timings.total_ms),
            ttft_ms: flow.timings.ttft_ms,
            completion_tokens: flow.tokens.completion,
            answer_chars: flow.answer().map(|answer| answer.chars().count()),
        }
    }
}

/// One flow's line in the `--out` file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub id: String,
    pub method: String,
    pub url: String,
    pub original: Measurement,
    /// The endpoint the replay went to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Present once a response head came back (with `error`, its body broke).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<Measurement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the flow was not sent at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Credential headers the capture stored redacted, sent without (none given with
    /// `--header`): a 401 here is theirs, not the model's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials_left_out: Vec<String>,
}

impl Row {
    pub fn new(flow: &Flow) -> Row {
        Row {
            id: flow.id.clone(),
            method: flow.request.method.clone(),
            url: flow.request.url.clone(),
            original: Measurement::of_original(flow),
            ..Row::default()
        }
    }
}

/// The medians, sums and means of one side (original or replay).
#[derive(Debug, Default)]
struct Side {
    latency: Vec<f64>,
    ttft: Vec<f64>,
    /// Sum of the completion tokens reported, and by how many flows.
    tokens: u64,
    tokens_reported: usize,
    answer_chars: Vec<usize>,
}

impl Side {
    fn add(&mut self, measurement: &Measurement) {
        self.latency.extend(measurement.latency_ms);
        self.ttft.extend(measurement.ttft_ms);
        if let Some(tokens) = measurement.completion_tokens {
            self.tokens += tokens;
            self.tokens_reported += 1;
        }
        self.answer_chars.extend(measurement.answer_chars);
    }

    fn total_tokens(&self) -> Option<f64> {
        (self.tokens_reported > 0).then_some(self.tokens as f64)
    }

    fn mean_answer_chars(&self) -> Option<f64> {
        let count = self.answer_chars.len();
        (count > 0).then(|| self.answer_chars.iter().sum::<usize>() as f64 / count as f64)
    }
}

/// The whole replay in numbers. Both sides are taken over the same flows, those
/// replayed whole, so that the two columns compare like with like.
#[derive(Debug, Default)]
pub struct Summary {
    replayed: usize,
    skipped: BTreeMap<String, usize>,
    failed: BTreeMap<String, usize>,
    statuses_compared: usize,
    statuses_matched: usize,
    original: Side,
    replay: Side,
    credentials_left_out: BTreeSet<String>,
    flows_without_credentials: usize,
}

/// Distinct errors listed under the table at most; the `--out` file has each.
const ERRORS_LISTED: usize = 5;

impl Summary {
    pub fn add(&mut self, row: &Row) {
        if !row.credentials_left_out.is_empty() {
            self.flows_without_credentials += 1;
            self.credentials_left_out
                .extend(row.credentials_left_out.iter().cloned());
        }
        if let Some(reason) = &row.skipped {
            *self.skipped.entry(reason.clone()).or_default() += 1;
            return;
        }
        if let Some(error) = &row.error {
            *self.failed.entry(error.clone()).or_default() += 1;
            return;
        }
        let Some(replay) = &row.replay else {
            *self.failed.entry("no answer".into()).or_default() += 1;
            return;
        };
        self.replayed += 1;
        if let (Some(original), Some(again)) = (row.original.status, replay.status) {
            self.statuses_compared += 1;
            self.statuses_matched += usize::from(original == again);
        }
        self.original.add(&row.original);
        self.replay.add(replay);
    }

    /// No flow that was sent went unanswered (skipped flows were never sent).
    pub fn all_answered(&self) -> bool {
        self.failed.is_empty()
    }

    pub fn render(&self) -> String {
        let skipped: usize = self.skipped.values().sum();
        let failed: usize = self.failed.values().sum();
        let mut out = String::new();
        let mut line = |label: &str, text: String| {
            let _ = writeln!(out, "{label:<22}{text}");
        };
        line(
            "flows",
            format!(
                "{} replayed, {skipped} skipped, {failed} failed",
                self.replayed
            ),
        );
        for (reason, count) in &self.skipped {
            line("  skipped", format!("{count}: {reason}"));
        }
        for (error, count) in self.failed.iter().take(ERRORS_LISTED) {
            line("  failed", format!("{count}: {error}"));
        }
        if self.failed.len() > ERRORS_LISTED {
            line(
                "  failed",
                format!("... {} other errors", self.failed.len() - ERRORS_LISTED),
            );
        }
        line(
            "status match",
            match self.statuses_compared {
                0 => "-".into(),
                compared => format!(
                    "{} of {compared} ({:.0}%)",
                    self.statuses_matched,
                    100.0 * self.statuses_matched as f64 / compared as f64
                ),
            },
        );
        line(
            "",
            format!("{:>12}{:>12}{:>12}", "original", "replay", "ratio"),
        );
        let (original, replay) = (&self.original, &self.replay);
        let mut compare = |label: &str, original: Option<f64>, replay: Option<f64>| {
            let ratio = match (original, replay) {
                (Some(original), Some(replay)) if original > 0.0 => {
                    format!("{:.2}", replay / original)
                }
                _ => "-".into(),
            };
            line(
                label,
                format!("{:>12}{:>12}{ratio:>12}", number(original), number(replay)),
            );
        };
        compare(
            "latency median ms",
            median(&original.latency),
            median(&replay.latency),
        );
        compare(
            "latency p95 ms",
            percentile(&original.latency, 95.0),
            percentile(&replay.latency, 95.0),
        );
        compare(
            "TTFT median ms",
            median(&original.ttft),
            median(&replay.ttft),
        );
        compare(
            "output tokens",
            original.total_tokens(),
            replay.total_tokens(),
        );
        compare(
            "mean answer chars",
            original.mean_answer_chars(),
            replay.mean_answer_chars(),
        );
        if !self.credentials_left_out.is_empty() {
            let names: Vec<&str> = self
                .credentials_left_out
                .iter()
                .map(String::as_str)
                .collect();
            let _ = writeln!(
                out,
                "note: {} flows were sent without {}: the capture never stores credentials; \
                 give them with --header 'Authorization: Bearer ...'",
                self.flows_without_credentials,
                names.join(", ")
            );
        }
        out
    }
}

fn number(value: Option<f64>) -> String {
    match value {
        Some(value) if value.fract() == 0.0 && value.abs() < 1e15 => format!("{value:.0}"),
        Some(value) => format!("{value:.1}"),
        None => "-".into(),
    }
}

/// The middle value; the mean of the two middle ones for an even count.
pub fn median(values: &[f64]) -> Option<f64> {
    let sorted = sorted(values);
    let count = sorted.len();
    match count {
        0 => None,
        _ if count % 2 == 1 => Some(sorted[count / 2]),
        _ => Some((sorted[count / 2 - 1] + sorted[count / 2]) / 2.0),
    }
}

/// The nearest-rank percentile: the smallest value that `percent` of the values are at
/// or below (p95 of 20 values is the 19th smallest). Always one of the values.
pub fn percentile(values: &[f64], percent: f64) -> Option<f64> {
    let sorted = sorted(values);
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_even_and_no_values() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&hundred, 95.0), Some(95.0));
        assert_eq!(percentile(&hundred, 100.0), Some(100.0));
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&twenty, 95.0), Some(19.0));
        assert_eq!(percentile(&[5.0, 1.0], 95.0), Some(5.0));
        assert_eq!(percentile(&[3.0], 95.0), Some(3.0));
        assert_eq!(percentile(&[3.0], 0.0), Some(3.0), "the smallest at worst");
        assert_eq!(percentile(&[], 95.0), None);
    }

    fn row(original: Measurement, replay: Measurement) -> Row {
        Row {
            original,
            replay: Some(replay),
            ..Row::default()
        }
    }

    fn measured(status: u16, latency: f64, tokens: Option<u64>) -> Measurement {
        Measurement {
            status: Some(status),
            latency_ms: Some(latency),
            completion_tokens: tokens,
            answer_chars: tokens.map(|t| t as usize * 5),
            ..Measurement::default()
        }
    }

    #[test]
    fn the_summary_compares_replayed_flows_and_counts_the_rest() {
        let mut summary = Summary::default();
        summary.add(&row(
            measured(200, 100.0, Some(10)),
            measured(200, 50.0, Some(8)),
        ));
        summary.add(&row(
            measured(200, 300.0, Some(20)),
            measured(500, 60.0, None),
        ));
        summary.add(&row(measured(404, 200.0, None), measured(404, 40.0, None)));
        summary.add(&Row {
            skipped: Some("body truncated".into()),
            original: measured(200, 9999.0, Some(1000)),
            ..Row::default()
        });
        summary.add(&Row {
            error: Some("connect refused".into()),
            credentials_left_out: vec!["authorization".into()],
            ..Row::default()
        });
        assert!(!summary.all_answered());
        assert_eq!(summary.original.latency, [100.0, 300.0, 200.0]);
        assert_eq!(median(&summary.replay.latency), Some(50.0));
        let table = summary.render();
        assert!(table.contains("3 replayed, 1 skipped, 1 failed"), "{table}");
        assert!(table.contains("1: body truncated"), "{table}");
        assert!(table.contains("1: connect refused"), "{table}");
        assert!(table.contains("2 of 3 (67%)"), "{table}");
        let columns = |label: &str| -> Vec<String> {
            let line = table.lines().find(|l| l.starts_with(label)).unwrap();
            line[label.len()..]
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        // Latency medians 200 and 50: a quarter.
        assert_eq!(columns("latency median ms"), ["200", "50", "0.25"]);
        assert_eq!(columns("latency p95 ms"), ["300", "60", "0.20"]);
        // Tokens: only what was reported is summed (the skipped flow's are not).
        assert_eq!(columns("output tokens"), ["30", "8", "0.27"]);
        assert_eq!(columns("mean answer chars"), ["75", "40", "0.53"]);
        assert_eq!(columns("TTFT median ms"), ["-", "-", "-"]);
        assert!(
            table.contains("1 flows were sent without authorization"),
            "{table}"
        );
    }
}
