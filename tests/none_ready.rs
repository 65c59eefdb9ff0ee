//! `balancing.when_none_ready`: what traffic gets when no node is ready. The default,
//! `reject` (503), is shown in tests/failures.rs; here `any_alive`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::Duration;

async fn fallback(proxy: &Proxy) -> bool {
    proxy.status().await["fallback"].as_bool().unwrap()
}

/// A faulty CApp on every node (the case MI users hit when one bad CApp is deployed
/// cluster-wide) does not take the service down under `any_alive`: traffic goes to the alive
/// nodes, flagged in metrics, `/status` and the log, while the proxy's own `/healthz` still
/// says no node is ready. A dead node gets nothing; the first node ready again ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_alive_routes_to_alive_nodes_while_none_is_ready() {
    let nodes = start_nodes(3);
    let mut config = ProxyConfig::new(&nodes);
    config.when_none_ready = "any_alive";
    let proxy = config.start().await;
    proxy.wait_ready(3).await;
    assert!(!fallback(&proxy).await);

    for n in &nodes {
        n.set_faulty_capps(vec!["shared_1.0.0.car".into()]);
    }
    proxy.wait_ready(0).await;
    eventually(Duration::from_secs(5), "fallback table", || async {
        fallback(&proxy).await
    })
    .await;
    nodes[2].crash();
    proxy.wait_state("mi-3", "dead").await;

    let mut by_node = std::collections::BTreeMap::new();
    for _ in 0..30 {
        let (status, node) = proxy.get("/api").await;
        assert_eq!(status, 200, "served by an alive node");
        *by_node.entry(node.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        by_node.keys().cloned().collect::<Vec<_>>(),
        ["mi-1", "mi-2"],
        "only the alive nodes: {by_node:?}"
    );
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("healthgate_routing_fallback 1"),
        "{metrics}"
    );
    assert!(metrics.contains("healthgate_ready_backends 0"), "{metrics}");
    // backend_up says what is routed: the alive nodes of the fallback table, not the dead.
    for (node, up) in [("mi-1", 1), ("mi-2", 1), ("mi-3", 0)] {
        let line = format!("healthgate_backend_up{{node=\"{node}\"}} {up}\n");
        assert!(metrics.contains(&line), "{line}in\n{metrics}");
    }
    let fallback_requests = metrics
        .lines()
        .find_map(|l| l.strip_prefix("healthgate_fallback_requests_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap();
    assert!(fallback_requests >= 30.0, "{metrics}");
    let healthz = proxy
        .client
        .get(proxy.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        healthz.status(),
        503,
        "no node is ready, whatever is routed"
    );
    assert!(proxy.log().contains("no node is ready: routing to"));

    // One node fixed: it alone takes traffic and the fallback ends.
    nodes[0].set_faulty_capps(Vec::new());
    proxy.wait_ready(1).await;
    eventually(Duration::from_secs(5), "fallback over", || async {
        !fallback(&proxy).await
    })
    .await;
    for _ in 0..10 {
        assert_eq!(proxy.get("/api").await, (200, Some("mi-1".into())));
    }
    assert!(
        proxy
            .metrics()
            .await
            .contains("healthgate_routing_fallback 0")
    );
    assert!(proxy.log().contains("fallback ended"));
}
