//! The Grafana dashboard in deploy/grafana/junction.json (issue #17): valid JSON in the
//! shape Grafana imports, and every metric its PromQL names is one that `/metrics`
//! exposes, so that a renamed metric cannot leave a panel silently empty.

use crate::support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{TestProxy, TestUpstream};

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/junction.json");
    let text = std::fs::read_to_string(path).expect("deploy/grafana/junction.json exists");
    serde_json::from_str(&text).expect("the dashboard is valid JSON")
}

/// Every PromQL expression of the dashboard's panels.
fn expressions(dashboard: &Value) -> Vec<String> {
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("every target has an expr");
            exprs.push(expr.to_string());
        }
    }
    exprs
}

/// The `junction_...` metric names in `expr`, histogram series named by their family.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(start) = rest.find("junction_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .unwrap_or(name);
        names.insert(family.to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_dashboard_has_the_shape_grafana_imports() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "junction-gateway");
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let names: Vec<&str> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["datasource", "route"]);
    let ids: Vec<u64> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().expect("every panel has an id"))
        .collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "panel ids are unique");
    for expr in expressions(&dashboard) {
        assert_eq!(
            expr.matches('(').count(),
            expr.matches(')').count(),
            "unbalanced: {expr}"
        );
        assert!(!metric_names(&expr).is_empty(), "names no metric: {expr}");
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exposed() {
    let upstream = TestUpstream::named("p").start().await;
    let proxy = TestProxy::from_toml(&format!(
        "{}\n[[pools]]\nname = \"p\"\nendpoints = [{{ url = \"{}\" }}]\n\n[[routes]]\nname = \"all\"\npool = \"p\"\n",
        support::listeners_toml(),
        upstream.url()
    ))
    .start()
    .await;
    let reply = support::client().get(proxy.url("/x")).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    let exposition = proxy.metrics_text().await;
    let exposed: BTreeSet<&str> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let queried: BTreeSet<String> = expressions(&dashboard())
        .iter()
        .flat_map(|expr| metric_names(expr))
        .collect();
    assert!(queried.len() >= 20, "{queried:?}");
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| !exposed.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exposed: {missing:?}\nexposed: {exposed:?}"
    );
}
