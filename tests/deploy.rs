//! The shipped deployment files fit the binary they deploy: every alert rule is well formed,
//! and every healthgate metric the rules and the Grafana dashboard query is one a running
//! healthgate exports. (`.ci/run` also runs `docker-compose config` and, where it can be
//! installed, `promtool`.)
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: String,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap()
}

/// `healthgate_*` metric names a PromQL expression mentions.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("healthgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Whether the exposition has a sample of `name` (a histogram's `_bucket`, `_sum` and
/// `_count` are samples of their own).
fn exported(metrics: &str, name: &str) -> bool {
    metrics.lines().any(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

fn alert_rules() -> Vec<Rule> {
    let file: RuleFile = serde_saphyr::from_str(&read("deploy/prometheus/alerts.yml")).unwrap();
    assert!(file.groups.iter().all(|g| !g.name.is_empty()));
    file.groups.into_iter().flat_map(|g| g.rules).collect()
}

fn dashboard_exprs() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/healthgate.json")).unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect()
}

/// The rules an operator needs are there: a node out for over a minute, no ready node, a
/// faulty CApp; each has a severity and a summary.
#[test]
fn alert_rules_cover_the_operator_cases() {
    let rules = alert_rules();
    let find = |needle: &str| rules.iter().find(|r| r.expr.contains(needle));
    let down = find("healthgate_backend_up").expect("a node-out rule");
    assert_eq!(down.for_.as_deref(), Some("1m"));
    assert!(
        find("healthgate_ready_backends").is_some(),
        "a no-ready-node rule"
    );
    assert!(
        find("healthgate_backend_faulty_capps").is_some(),
        "a faulty-CApp rule"
    );
    for r in &rules {
        assert!(!r.alert.is_empty());
        assert!(r.labels.contains_key("severity"), "{}: severity", r.alert);
        assert!(
            r.annotations.contains_key("summary"),
            "{}: summary",
            r.alert
        );
    }
}

/// Every healthgate metric the alert rules and the dashboard query exists in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_dashboard_query_only_exported_metrics() {
    let nodes = start_nodes(1);
    let mut config = ProxyConfig::new(&nodes);
    // A mapped CApp, so the per-CApp series exist.
    config.extra_yaml = "capps:\n  - name: orders\n    paths: [/orders]\n".into();
    let proxy = config.start().await;
    proxy.wait_ready(1).await;
    assert_eq!(proxy.get("/").await.0, 200);
    let metrics = proxy.metrics().await;

    let exprs: Vec<String> = alert_rules()
        .into_iter()
        .map(|r| r.expr)
        .chain(dashboard_exprs())
        .collect();
    let names: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(names.len() >= 8, "the files query most metrics: {names:?}");
    for name in names {
        assert!(
            exported(&metrics, &name),
            "{name} is queried but not exported"
        );
    }
}
