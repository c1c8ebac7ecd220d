//! Listener certificates as the admin API shows them: the TLS families of `/metrics`
//! (seconds until each name expires, certificate reloads, full and resumed handshakes)
//! and the certificates beside each listener in `/api/config` (names, expiry, key
//! type; never a key), from files and from ACME alike.

use std::collections::BTreeMap;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use serde_json::{Value, json};

use crate::config::Plan;
use crate::telemetry::MetricsRegistry;

/// Seconds since the Unix epoch, now.
pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Per listener and name, the first expiry among the certificates serving it (an
/// ECDSA and an RSA certificate of one name are one series). A name of an issued ACME
/// certificate shows that certificate's expiry: it is what clients get for the name.
pub(super) fn expiries(plan: &Plan) -> BTreeMap<(String, String), i64> {
    let mut out: BTreeMap<(String, String), i64> = BTreeMap::new();
    for listener in &plan.listeners {
        let Some(tls) = &listener.tls else { continue };
        for cert in &tls.certs.current().certs {
            for name in &cert.names {
                let key = (listener.name.to_string(), name.clone());
                let at = out.entry(key).or_insert(cert.not_after);
                *at = (*at).min(cert.not_after);
            }
        }
        if let Some(issued) = tls.certs.acme_issued() {
            for name in issued.names {
                out.insert((listener.name.to_string(), name), issued.not_after);
            }
        }
    }
    out
}

pub(super) fn encode_metrics(
    encoder: &mut DescriptorEncoder<'_>,
    plan: &Plan,
    metrics: &MetricsRegistry,
) -> std::fmt::Result {
    let now = unix_now();
    let mut family = encoder.encode_descriptor(
        "junction_tls_certificate_expiry_seconds",
        "Seconds until a listener's certificate for a name expires (negative: expired).",
        None,
        MetricType::Gauge,
    )?;
    for ((listener, name), not_after) in expiries(plan) {
        let labels = vec![("listener", listener.as_str()), ("name", name.as_str())];
        family
            .encode_family(&labels)?
            .encode_gauge(&(not_after - now))?;
    }
    let mut family = encoder.encode_descriptor(
        "junction_tls_certificate_reloads",
        "Certificate files a listener loaded anew (reloaded) or refused (refused; the previous certificate kept serving).",
        None,
        MetricType::Counter,
    )?;
    for ((listener, outcome), count) in metrics.all_tls_reloads() {
        let labels = vec![("listener", &*listener), ("outcome", outcome)];
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
    }
    let mut family = encoder.encode_descriptor(
        "junction_tls_handshakes",
        "TLS handshakes a listener completed, full or resumed (a session ticket or id).",
        None,
        MetricType::Counter,
    )?;
    for ((listener, kind), count) in metrics.all_tls_handshakes() {
        let labels = vec![("listener", &*listener), ("kind", kind)];
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
    }
    Ok(())
}

/// Adds `certificates` to each TLS listener of `config` (the redacted spec's JSON).
pub(super) fn annotate_config(config: &mut Value, plan: &Plan) {
    let now = unix_now();
    let Some(listeners) = config.get_mut("listeners").and_then(Value::as_array_mut) else {
        return;
    };
    for listener in listeners {
        let Some(name) = listener.get("name").and_then(Value::as_str) else {
            continue;
        };
        let Some(tls) = plan.listener(name).and_then(|l| l.tls.as_ref()) else {
            continue;
        };
        let mut certificates: Vec<Value> = tls
            .certs
            .current()
            .certs
            .iter()
            .map(|cert| {
                json!({
                    "source": "file",
                    "names": cert.names,
                    "not_after": crate::tls::certificate::rfc3339(cert.not_after),
                    "expires_in_seconds": cert.not_after - now,
                    "key_type": cert.kind.label(),
                    "cert": cert.files.cert.display().to_string(),
                })
            })
            .collect();
        if let Some(issued) = tls.certs.acme_issued() {
            certificates.push(json!({
                "source": "acme",
                "names": issued.names,
                "not_after": crate::tls::certificate::rfc3339(issued.not_after),
                "expires_in_seconds": issued.not_after - now,
                "key_type": issued.kind.label(),
                "serial": issued.serial,
            }));
        }
        if let Some(tls) = listener.get_mut("tls").and_then(Value::as_object_mut) {
            tls.insert("certificates".into(), Value::Array(certificates));
        }
    }
}
