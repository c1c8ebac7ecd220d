//! `/metrics`: the Prometheus text exposition of the metric state, encoded with
//! prometheus-client at scrape time (the hot path only touches atomics). It reads the
//! telemetry and the plan in force (pools, canary controls, egress exits), so it sits
//! here, above `config`, not in `telemetry`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::config::Plan;
use crate::telemetry::{DurationHistogram, RouteMetrics, Telemetry};

/// Encodes every metric of `telemetry` and `plan` in the Prometheus text format.
pub fn render(telemetry: &Arc<Telemetry>, plan: &Arc<Plan>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        telemetry: telemetry.clone(),
        plan: plan.clone(),
    }));
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

struct Scrape {
    telemetry: Arc<Telemetry>,
    plan: Arc<Plan>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;
/// Picks one histogram or counter of a route's metrics.
type HistogramOf = fn(&RouteMetrics) -> &DurationHistogram;
type CounterOf = fn(&RouteMetrics) -> u64;

fn shadow_label(route: &RouteMetrics) -> &'static str {
    if route.shadow { "true" } else { "false" }
}

fn family<'a, F>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    kind: MetricType,
    series: F,
) -> std::fmt::Result
where
    F: FnOnce(&mut MetricEncoder<'_>) -> std::fmt::Result + 'a,
{
    let mut metric = encoder.encode_descriptor(name, help, unit.as_ref(), kind)?;
    series(&mut metric)
}

fn counter(metric: &mut MetricEncoder<'_>, labels: &Labels<'_>, value: u64) -> std::fmt::Result {
    let mut series = metric.encode_family(labels)?;
    series.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&value, None)
}

fn gauge(metric: &mut MetricEncoder<'_>, labels: &Labels<'_>, value: i64) -> std::fmt::Result {
    metric.encode_family(labels)?.encode_gauge(&value)
}

fn histogram(
    metric: &mut MetricEncoder<'_>,
    labels: &Labels<'_>,
    histogram: &DurationHistogram,
) -> std::fmt::Result {
    let (sum, count, buckets) = histogram.snapshot();
    metric
        .encode_family(labels)?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
}

/// The model servers' load reports `least_queue` reads: their age, and the gauges as
/// reported (series only for endpoints that sent one).
fn encode_load_reports(
    encoder: &mut DescriptorEncoder<'_>,
    pools: &[Arc<crate::upstream::Pool>],
) -> std::fmt::Result {
    let reporting = || {
        pools.iter().flat_map(|pool| {
            pool.endpoints.iter().filter_map(move |endpoint| {
                let age = endpoint.state.load.age()?;
                let labels: Labels<'_> = vec![("pool", &pool.name), ("endpoint", &endpoint.url)];
                Some((labels, age, endpoint.state.load.gauges()))
            })
        })
    };
    family(
        encoder,
        "junction_endpoint_load_metrics_age",
        "Age of an endpoint's last load report (its /metrics or an ORCA header).",
        Some(Unit::Seconds),
        MetricType::Gauge,
        |m| {
            for (labels, age, _) in reporting() {
                m.encode_family(&labels)?.encode_gauge(&age.as_secs_f64())?;
            }
            Ok(())
        },
    )?;
    type Gauge = fn(&crate::llm::LoadSample) -> Option<f64>;
    let gauges: [(&str, &str, Gauge); 3] = [
        (
            "junction_endpoint_queue_waiting",
            "Requests waiting at an endpoint, as its last load report said.",
            |s| s.waiting,
        ),
        (
            "junction_endpoint_queue_running",
            "Requests running at an endpoint, as its last load report said.",
            |s| s.running,
        ),
        (
            "junction_endpoint_kv_cache_usage_ratio",
            "KV-cache use of an endpoint (0 to 1), as its last load report said.",
            |s| s.kv_usage,
        ),
    ];
    for (name, help, pick) in gauges {
        family(encoder, name, help, None, MetricType::Gauge, |m| {
            for (labels, _, sample) in reporting() {
                if let Some(value) = pick(&sample) {
                    m.encode_family(&labels)?.encode_gauge(&value)?;
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let metrics = &self.telemetry.metrics;
        let routes = metrics.all_routes();
        let route_labels = |r: &RouteMetrics| -> Vec<(&'static str, String)> {
            vec![
                ("route", r.route.to_string()),
                ("pool", r.pool.to_string()),
                ("version", r.version.to_string()),
                ("shadow", shadow_label(r).to_string()),
            ]
        };

        family(
            &mut encoder,
            "junction_requests",
            "Requests answered, by route, pool, version, endpoint and status code.",
            None,
            MetricType::Counter,
            |m| {
                for route in &routes {
                    for (endpoint, counts) in route.endpoints_snapshot() {
                        for (code, count) in counts.seen() {
                            let code = code.to_string();
                            let labels: Labels<'_> = vec![
                                ("route", &route.route),
                                ("pool", &route.pool),
                                ("version", &route.version),
                                ("shadow", shadow_label(route)),
                                ("endpoint", &endpoint),
                                ("code", &code),
                            ];
                            counter(m, &labels, count)?;
                        }
                    }
                }
                Ok(())
            },
        )?;

        let histograms: [(&str, &str, HistogramOf); 4] = [
            (
                "junction_request_duration",
                "Time from receiving a request to the end of its response.",
                |r| &r.duration,
            ),
            (
                "junction_upstream_time_to_first_byte",
                "Time from sending a request upstream to its response head.",
                |r| &r.time_to_first_byte,
            ),
            (
                "junction_llm_time_to_first_token",
                "Time from sending a request upstream to the first event carrying generated text.",
                |r| &r.time_to_first_token,
            ),
            (
                "junction_llm_time_per_output_token",
                "Streaming generation time after the first token, per further output token.",
                |r| &r.time_per_output_token,
            ),
        ];
        for (name, help, pick) in histograms {
            family(
                &mut encoder,
                name,
                help,
                Some(Unit::Seconds),
                MetricType::Histogram,
                |m| {
                    for route in &routes {
                        let owned = route_labels(route);
                        let labels: Labels<'_> =
                            owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        histogram(m, &labels, pick(route))?;
                    }
                    Ok(())
                },
            )?;
        }

        let byte_counters: [(&str, &str, CounterOf); 2] = [
            (
                "junction_request",
                "Request body bytes received from clients.",
                |r| r.request_bytes.load(Ordering::Relaxed),
            ),
            (
                "junction_response",
                "Response body bytes sent to clients.",
                |r| r.response_bytes.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, read) in byte_counters {
            family(
                &mut encoder,
                name,
                help,
                Some(Unit::Bytes),
                MetricType::Counter,
                |m| {
                    for route in &routes {
                        let owned = route_labels(route);
                        let labels: Labels<'_> =
                            owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        counter(m, &labels, read(route))?;
                    }
                    Ok(())
                },
            )?;
        }

        family(
            &mut encoder,
            "junction_llm_tokens",
            "LLM tokens of responses, by kind (prompt or completion) and source: reported in the response's usage, or estimated from byte counts when it reported none.",
            None,
            MetricType::Counter,
            |m| {
                for route in &routes {
                    for (kind, source, value) in [
                        ("prompt", "reported", &route.prompt_tokens),
                        ("completion", "reported", &route.completion_tokens),
                        ("prompt", "estimated", &route.prompt_tokens_estimated),
                        (
                            "completion",
                            "estimated",
                            &route.completion_tokens_estimated,
                        ),
                    ] {
                        let labels: Labels<'_> = vec![
                            ("route", &route.route),
                            ("pool", &route.pool),
                            ("version", &route.version),
                            ("shadow", shadow_label(route)),
                            ("kind", kind),
                            ("source", source),
                        ];
                        counter(m, &labels, value.load(Ordering::Relaxed))?;
                    }
                }
                Ok(())
            },
        )?;

        family(
            &mut encoder,
            "junction_retries",
            "Requests sent again to another endpoint.",
            None,
            MetricType::Counter,
            |m| {
                for route in &routes {
                    let owned = route_labels(route);
                    let labels: Labels<'_> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    counter(m, &labels, route.retries.load(Ordering::Relaxed))?;
                }
                Ok(())
            },
        )?;

        family(
            &mut encoder,
            "junction_usage_unread",
            "Responses whose token usage was not read to their end, by route and reason (unknown_coding, decoded_limit, undecodable).",
            None,
            MetricType::Counter,
            |m| {
                for ((route, reason), count) in metrics.all_usage_unread() {
                    let labels: Labels<'_> = vec![("route", &route), ("reason", reason)];
                    counter(m, &labels, count)?;
                }
                Ok(())
            },
        )?;

        family(
            &mut encoder,
            "junction_fallback_hops",
            "Requests sent on to the next pool of a fallback chain (or a pool's fallback) before any byte reached the client, by route, pools and reason.",
            None,
            MetricType::Counter,
            |m| {
                for ((route, from, to, reason), count) in metrics.all_hops() {
                    let labels: Labels<'_> = vec![
                        ("route", &route),
                        ("from", &from),
                        ("to", &to),
                        ("reason", &reason),
                    ];
                    counter(m, &labels, count)?;
                }
                Ok(())
            },
        )?;

        family(
            &mut encoder,
            "junction_errors",
            "Responses Junction made itself, by route and error type.",
            None,
            MetricType::Counter,
            |m| {
                for ((route, kind), count) in metrics.all_errors() {
                    let labels: Labels<'_> = vec![("route", &route), ("type", kind)];
                    counter(m, &labels, count)?;
                }
                Ok(())
            },
        )?;

        family(
            &mut encoder,
            "junction_active_connections",
            "Open downstream connections, by listener.",
            None,
            MetricType::Gauge,
            |m| {
                for (listener, open) in metrics.all_listeners() {
                    gauge(m, &vec![("listener", listener.as_str())], open)?;
                }
                Ok(())
            },
        )?;

        let pools = &self.plan.pools;
        family(
            &mut encoder,
            "junction_inflight_requests",
            "Requests in flight to an endpoint (until their response body ends).",
            None,
            MetricType::Gauge,
            |m| {
                for pool in pools {
                    for endpoint in &pool.endpoints {
                        gauge(
                            m,
                            &vec![("pool", &pool.name), ("endpoint", &endpoint.url)],
                            endpoint.state.in_flight() as i64,
                        )?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_endpoint_up",
            "1 when an endpoint may be picked, 0 when it is down or ejected.",
            None,
            MetricType::Gauge,
            |m| {
                for pool in pools {
                    for endpoint in &pool.endpoints {
                        let up = i64::from(endpoint.state.health.is_available());
                        gauge(
                            m,
                            &vec![("pool", &pool.name), ("endpoint", &endpoint.url)],
                            up,
                        )?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_ejections",
            "Times an endpoint was ejected by outlier detection.",
            None,
            MetricType::Counter,
            |m| {
                for pool in pools {
                    for endpoint in &pool.endpoints {
                        let ejections = endpoint
                            .state
                            .health
                            .ejections_total
                            .load(Ordering::Relaxed);
                        counter(
                            m,
                            &vec![("pool", &pool.name), ("endpoint", &endpoint.url)],
                            ejections,
                        )?;
                    }
                }
                Ok(())
            },
        )?;

        encode_load_reports(&mut encoder, pools)?;
        super::tls::encode_metrics(&mut encoder, &self.plan, metrics)?;

        family(
            &mut encoder,
            "junction_security_decisions",
            "Security decisions by rule and action (deny, unauthorized, tag, log).",
            None,
            MetricType::Counter,
            |m| {
                for ((rule, action), count) in metrics.all_decisions() {
                    counter(m, &vec![("rule", rule.as_str()), ("action", action)], count)?;
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_fast_path_handoffs",
            "Client connections the HTTP/1.1 fast path handed to the full pipeline, by listener and reason.",
            None,
            MetricType::Counter,
            |m| {
                for ((listener, reason), count) in metrics.all_handoffs() {
                    counter(m, &vec![("listener", &listener), ("reason", reason)], count)?;
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_masking_findings",
            "Sensitive values masking found, by route, type, action and direction (never the values).",
            None,
            MetricType::Counter,
            |m| {
                for ((route, kind, action, direction), count) in metrics.all_masking() {
                    let labels = vec![
                        ("route", &*route),
                        ("type", &*kind),
                        ("action", action),
                        ("direction", direction),
                    ];
                    counter(m, &labels, count)?;
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_masking_passed",
            "Bodies masking could not read and passed on unmasked (on_error = \"pass\"), by route and direction.",
            None,
            MetricType::Counter,
            |m| {
                for ((route, direction), count) in metrics.all_masking_passed() {
                    counter(
                        m,
                        &vec![("route", &*route), ("direction", direction)],
                        count,
                    )?;
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_masking_cache_lookups",
            "Request texts of 64 bytes or more a masking route looked up in its cache of texts read before, by route and result (hit: answered from it; miss: read). Counted since the route was loaded.",
            None,
            MetricType::Counter,
            |m| {
                for (route, hits, misses) in self.plan.masking_cache_lookups() {
                    for (result, count) in [("hit", hits), ("miss", misses)] {
                        counter(m, &vec![("route", &*route), ("result", result)], count)?;
                    }
                }
                Ok(())
            },
        )?;
        let controls = self.plan.route_controls();
        family(
            &mut encoder,
            "junction_canary_weight",
            "Current weight of each pool of a split route (changed by canary analysis or the admin API).",
            None,
            MetricType::Gauge,
            |m| {
                for control in &controls {
                    for (pool, weight) in control.weights_by_pool() {
                        gauge(
                            m,
                            &vec![("route", &control.route), ("pool", &pool)],
                            i64::from(weight),
                        )?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_canary_state",
            "Canary analysis state per route: 0 progressing, 1 promoted, 2 failed (rolled back), 3 paused.",
            None,
            MetricType::Gauge,
            |m| {
                for control in &controls {
                    if let Some(canary) = &control.canary {
                        gauge(m, &vec![("route", &control.route)], canary.phase().code())?;
                    }
                }
                Ok(())
            },
        )?;
        if let Some((errors, leader)) = metrics.fleet() {
            family(
                &mut encoder,
                "junction_fleet_backend_errors",
                "Failed syncs of the fleet's canary state with Redis ([fleet] backend); the instance keeps its last known state meanwhile.",
                None,
                MetricType::Counter,
                |m| counter(m, &Labels::new(), errors),
            )?;
            family(
                &mut encoder,
                "junction_fleet_leader",
                "1 while this instance holds the fleet's canary analysis lease (and runs the analyses), else 0.",
                None,
                MetricType::Gauge,
                |m| gauge(m, &Labels::new(), i64::from(leader)),
            )?;
        }
        let detecting: Vec<_> = self
            .plan
            .listeners
            .iter()
            .flat_map(|l| &l.routes.routes)
            .filter_map(|r| r.anomalies.as_ref().map(|a| (&r.name, a)))
            .collect();
        family(
            &mut encoder,
            "junction_anomalies",
            "Anomalies the route's detectors found, by detector and the action taken.",
            None,
            MetricType::Counter,
            |m| {
                let outbound = self.plan.listeners.iter().filter_map(|l| {
                    let volume = l.egress.as_ref()?.outbound.as_ref()?;
                    Some((&l.name, volume.counts()))
                });
                let routes = detecting.iter().map(|(route, a)| (*route, a.counts()));
                for (route, counts) in routes.chain(outbound) {
                    for ((detector, action), count) in counts {
                        let labels: Labels<'_> = vec![
                            ("detector", detector.name()),
                            ("route", route),
                            ("action", action.name()),
                        ];
                        counter(m, &labels, count)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_anomaly_clients",
            "Clients whose baselines a route's detectors keep (bounded by max_clients).",
            None,
            MetricType::Gauge,
            |m| {
                for (route, anomalies) in &detecting {
                    let tracked = i64::try_from(anomalies.tracked_clients()).unwrap_or(i64::MAX);
                    gauge(m, &vec![("route", &***route)], tracked)?;
                }
                Ok(())
            },
        )?;
        let captures = super::flows::captures(&self.plan);
        let sinks: Vec<_> = captures.iter().filter_map(|c| c.opened_sink()).collect();
        let dirs: Vec<String> = sinks.iter().map(|s| s.dir.display().to_string()).collect();
        family(
            &mut encoder,
            "junction_capture_flows",
            "Captured flows by capture directory and outcome: written, dropped (the writer was behind) or failed (a write error).",
            None,
            MetricType::Counter,
            |m| {
                for (sink, dir) in sinks.iter().zip(&dirs) {
                    let counts = sink.counts();
                    for (outcome, count) in [
                        ("written", &counts.written),
                        ("dropped", &counts.dropped),
                        ("failed", &counts.failed),
                    ] {
                        let labels: Labels<'_> = vec![("dir", dir), ("outcome", outcome)];
                        counter(m, &labels, count.load(Ordering::Relaxed))?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_capture_segments_rotated",
            "Segment files deleted to keep a capture directory within max_disk.",
            None,
            MetricType::Counter,
            |m| {
                for (sink, dir) in sinks.iter().zip(&dirs) {
                    let rotated = sink.counts().rotated.load(Ordering::Relaxed);
                    counter(m, &vec![("dir", dir.as_str())], rotated)?;
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_capture_queue_bytes",
            "Bytes of captured flows waiting for the capture writer.",
            None,
            MetricType::Gauge,
            |m| {
                for (sink, dir) in sinks.iter().zip(&dirs) {
                    let queued = i64::try_from(sink.queued_bytes()).unwrap_or(i64::MAX);
                    gauge(m, &vec![("dir", dir.as_str())], queued)?;
                }
                Ok(())
            },
        )?;

        family(
            &mut encoder,
            "junction_egress_requests",
            "Egress attempts by exit and outcome (ok, banned, exit_error, tunnel_refused, site_error, upstream_certificate_invalid), and requests refused before any exit (exit=\"none\"; outcome: denied, unauthorized, politeness, robots, no_exit, unknown_region, too_many_tunnels, bad_request, client_rejected_certificate, client_tls_failed).",
            None,
            MetricType::Counter,
            |m| {
                for ((egress, exit, region), counters) in metrics.all_egress_exits() {
                    for outcome in crate::telemetry::EgressOutcome::ALL {
                        let labels: Labels<'_> = vec![
                            ("egress", &egress),
                            ("exit", &exit),
                            ("region", &region),
                            ("outcome", outcome.label()),
                        ];
                        counter(m, &labels, counters.outcome(outcome))?;
                    }
                }
                for (egress, refusals) in metrics.all_egress_refusals() {
                    for (reason, count) in refusals.all() {
                        let labels: Labels<'_> = vec![
                            ("egress", &egress),
                            ("exit", "none"),
                            ("region", ""),
                            ("outcome", reason),
                        ];
                        counter(m, &labels, count)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_egress_bans",
            "Times a site banned an exit (a ban status or body pattern).",
            None,
            MetricType::Counter,
            |m| {
                for ((egress, exit, _), counters) in metrics.all_egress_exits() {
                    let labels: Labels<'_> = vec![("egress", &egress), ("exit", &exit)];
                    counter(m, &labels, counters.bans.load(Ordering::Relaxed))?;
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_egress_tunnel",
            "Bytes carried by CONNECT tunnels, by exit and direction (up: to sites).",
            Some(Unit::Bytes),
            MetricType::Counter,
            |m| {
                for ((egress, exit, _), counters) in metrics.all_egress_exits() {
                    for (direction, value) in [
                        ("up", &counters.tunnel_bytes_up),
                        ("down", &counters.tunnel_bytes_down),
                    ] {
                        let labels: Labels<'_> = vec![
                            ("egress", &egress),
                            ("exit", &exit),
                            ("direction", direction),
                        ];
                        counter(m, &labels, value.load(Ordering::Relaxed))?;
                    }
                }
                Ok(())
            },
        )?;
        let egress_plans: Vec<_> = self
            .plan
            .listeners
            .iter()
            .filter_map(|l| l.egress.clone())
            .collect();
        let now = tokio::time::Instant::now();
        family(
            &mut encoder,
            "junction_egress_cooldowns",
            "Hosts an exit is resting for now, after bans.",
            None,
            MetricType::Gauge,
            |m| {
                for egress in &egress_plans {
                    for exit in egress.exits().iter() {
                        let labels: Labels<'_> =
                            vec![("egress", &egress.name), ("exit", &exit.name)];
                        gauge(m, &labels, exit.cooling_hosts(now) as i64)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_egress_exit_up",
            "1 when an exit is reachable, 0 while it is probed after failing.",
            None,
            MetricType::Gauge,
            |m| {
                for egress in &egress_plans {
                    for exit in egress.exits().iter() {
                        let labels: Labels<'_> =
                            vec![("egress", &egress.name), ("exit", &exit.name)];
                        gauge(m, &labels, i64::from(exit.is_up()))?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_egress_fleet_errors",
            "Calls to the fleet's Redis (state.backend) that failed, or were skipped while it was failing: the instance decided by its own state.",
            None,
            MetricType::Counter,
            |m| {
                for egress in &egress_plans {
                    if let Some(fleet) = &egress.fleet {
                        let errors = fleet.errors.load(std::sync::atomic::Ordering::Relaxed);
                        counter(m, &vec![("egress", &*egress.name)], errors)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_egress_exit_verified",
            "1 when an exit's last echo-URL probe saw its first address, 0 when it failed or saw another (exits probed so far).",
            None,
            MetricType::Gauge,
            |m| {
                for egress in &egress_plans {
                    for exit in egress.exits().iter() {
                        let verdict = exit
                            .verification
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .verdict
                            .clone();
                        if verdict == crate::egress::verify::Verdict::Unchecked {
                            continue;
                        }
                        let labels: Labels<'_> =
                            vec![("egress", &egress.name), ("exit", &exit.name)];
                        let verified = verdict == crate::egress::verify::Verdict::Verified;
                        gauge(m, &labels, i64::from(verified))?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_egress_exit_address_changes",
            "Echo-URL probes that saw an exit's public address change since the probe before.",
            None,
            MetricType::Counter,
            |m| {
                for egress in &egress_plans {
                    for exit in egress.exits().iter() {
                        let changes = exit
                            .verification
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .changes;
                        let labels: Labels<'_> =
                            vec![("egress", &egress.name), ("exit", &exit.name)];
                        counter(m, &labels, changes)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_egress_open_tunnels",
            "CONNECT tunnels open now.",
            None,
            MetricType::Gauge,
            |m| {
                for egress in &egress_plans {
                    gauge(
                        m,
                        &vec![("egress", &*egress.name)],
                        egress.open_tunnels() as i64,
                    )?;
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "junction_access_log_dropped",
            "Access log lines dropped because the writer fell behind.",
            None,
            MetricType::Counter,
            |m| counter(m, &Vec::new(), self.telemetry.access_log.dropped()),
        )?;
        Ok(())
    }
}
