//! `outlier_detection`: a node whose live answers keep failing while its `/healthz` says
//! ready (one broken integration) is ejected for a while, growing each time, never more
//! than the configured share of the nodes.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::Duration;

fn ejected_for_ms(status: &serde_json::Value, name: &str) -> Option<u64> {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap()["ejected_for_ms"]
        .as_u64()
}

/// Statuses of `n` sequential GETs, with the answering node.
async fn statuses(proxy: &Proxy, n: usize) -> Vec<(u16, Option<String>)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(proxy.get("/api").await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_node_is_ejected_for_growing_times_within_the_cap() {
    let nodes = start_nodes(3);
    let mut config = ProxyConfig::new(&nodes);
    config.extra_yaml = "outlier_detection:\n  consecutive_failures: 3\n  base_ejection: 1s\n  max_ejection: 10s\n  max_ejected_percent: 50\n".into();
    let proxy = config.start().await;
    proxy.wait_ready(3).await;

    // mi-1's integration breaks: every answer is a 500, while /healthz stays 200.
    nodes[0].set_traffic_status(500);
    let answers = statuses(&proxy, 30).await;
    let failed = answers.iter().filter(|(s, _)| *s == 500).count();
    assert_eq!(failed, 3, "three failures, then mi-1 is out: {answers:?}");
    let status = proxy.status().await;
    let first = ejected_for_ms(&status, "mi-1").expect("mi-1 ejected");
    assert!(first <= 1000, "first ejection is base_ejection: {first} ms");
    assert_eq!(status["ready"], 2);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("healthgate_backend_ejected{node=\"mi-1\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("healthgate_outlier_ejections_total{node=\"mi-1\"} 1"));
    assert!(metrics.contains("healthgate_backend_up{node=\"mi-1\"} 0"));
    assert_eq!(
        proxy.node_state("mi-1").await,
        "ready",
        "health probes see nothing wrong"
    );

    // Back after its ejection; still failing, so out again, for twice as long.
    eventually(Duration::from_secs(5), "mi-1 back after 1 s", || async {
        ejected_for_ms(&proxy.status().await, "mi-1").is_none()
    })
    .await;
    let answers = statuses(&proxy, 30).await;
    assert_eq!(
        answers.iter().filter(|(s, _)| *s == 500).count(),
        3,
        "{answers:?}"
    );
    let second = ejected_for_ms(&proxy.status().await, "mi-1").expect("ejected again");
    assert!(second > 1000, "the second ejection is longer: {second} ms");

    // Every node failing: at most 50 % of 3 nodes (one) is ever out.
    nodes[1].set_traffic_status(500);
    nodes[2].set_traffic_status(500);
    let _ = statuses(&proxy, 40).await;
    let status = proxy.status().await;
    let out = ["mi-1", "mi-2", "mi-3"]
        .iter()
        .filter(|n| ejected_for_ms(&status, n).is_some())
        .count();
    assert_eq!(out, 1, "the cap holds: {status}");
    assert!(proxy.log().contains("node=mi-1 ejected for"));
}
