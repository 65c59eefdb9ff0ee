//! How nodes are probed: one kept connection per node to its health port, and no
//! `/liveness` request while a node keeps passing readiness.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

/// The value of `healthgate_probes_total` for `node` and `probe`, over every result.
async fn probes(proxy: &Proxy, node: &str, probe: &str) -> f64 {
    let text = proxy.metrics().await;
    let wanted = format!("node=\"{node}\",probe=\"{probe}\"");
    text.lines()
        .filter(|l| l.starts_with("healthgate_probes_total{") && l.contains(&wanted))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Wait until `node` has passed `rounds` more readiness probes.
async fn readiness_rounds(proxy: &Proxy, node: &str, rounds: f64) {
    let start = probes(proxy, node, "readiness").await;
    eventually(Duration::from_secs(10), "readiness rounds", || async {
        probes(proxy, node, "readiness").await >= start + rounds
    })
    .await;
}

/// The local ports of established connections to `port` on this host (from
/// `/proc/net/tcp`): the proxy's probe connections, the only clients of a health port.
fn connections_to(port: u16) -> BTreeSet<u16> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let hex_port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
            let (local, remote, state) = (hex_port(fields[1])?, hex_port(fields[2])?, fields[3]);
            (remote == port && state == "01").then_some(local)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_probe_of_a_node_uses_one_kept_connection() {
    let nodes = start_nodes(1);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(1).await;
    let health_port = nodes[0].health_addr().port();
    let before = connections_to(health_port);
    assert_eq!(
        before.len(),
        1,
        "one connection to the health port: {before:?}"
    );
    // Ten readiness rounds and some liveness rounds (before the node was ready) later…
    readiness_rounds(&proxy, "mi-1", 10.0).await;
    assert_eq!(
        connections_to(health_port),
        before,
        "still the same connection"
    );

    // A restart closes it; the next probes open a new one and the node comes back.
    nodes[0].crash();
    proxy.wait_state("mi-1", "dead").await;
    nodes[0].restart().unwrap();
    proxy.wait_state("mi-1", "ready").await;
    let after = connections_to(health_port);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_is_asked_only_of_a_node_that_is_not_passing_readiness() {
    let nodes = start_nodes(1);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(1).await;
    // Let a liveness round that began before the node was ready finish.
    readiness_rounds(&proxy, "mi-1", 2.0).await;
    let asked = probes(&proxy, "mi-1", "liveness").await;
    // Ten readiness rounds of 200 ms span four liveness periods of 500 ms.
    readiness_rounds(&proxy, "mi-1", 10.0).await;
    assert_eq!(probes(&proxy, "mi-1", "liveness").await, asked);

    // Faulty CApps: not ready, so whether the process lives is asked again.
    nodes[0].set_faulty_capps(vec!["orders_1.0.0.car".into()]);
    proxy.wait_state("mi-1", "not_ready").await;
    eventually(Duration::from_secs(5), "a liveness probe", || async {
        probes(&proxy, "mi-1", "liveness").await > asked
    })
    .await;
    assert_eq!(proxy.node_state("mi-1").await, "not_ready");
}

/// A partly ready node (its faulty CApps all mapped) answers `/healthz` as a live MI does:
/// it is not asked `/liveness` either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_is_not_asked_of_a_partly_ready_node() {
    let nodes = start_nodes(1);
    let mut config = ProxyConfig::new(&nodes);
    config.extra_yaml = "capps:\n  - name: orders\n    paths: [/orders]\n".into();
    let proxy = config.start().await;
    proxy.wait_ready(1).await;
    nodes[0].set_faulty_capps(vec!["orders_1.0.0.car".into()]);
    proxy.wait_state("mi-1", "partly_ready").await;
    readiness_rounds(&proxy, "mi-1", 2.0).await;
    let asked = probes(&proxy, "mi-1", "liveness").await;
    readiness_rounds(&proxy, "mi-1", 10.0).await;
    assert_eq!(probes(&proxy, "mi-1", "liveness").await, asked);
    assert_eq!(proxy.node_state("mi-1").await, "partly_ready");
}
