//! `balancing.slow_start`: a readmitted node's share ramps up instead of jumping to a full
//! share at once.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::Duration;

/// mi-1's share of `n` sequential requests.
async fn share_of_mi1(proxy: &Proxy, n: usize) -> f64 {
    let mut hits = 0;
    for _ in 0..n {
        let (status, node) = proxy.get("/api").await;
        assert_eq!(status, 200);
        hits += usize::from(node.as_deref() == Some("mi-1"));
    }
    hits as f64 / n as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readmitted_node_ramps_up_over_slow_start() {
    let nodes = start_nodes(2);
    let mut config = ProxyConfig::new(&nodes);
    config.slow_start = Some("6s");
    let proxy = config.start().await;
    proxy.wait_ready(2).await;
    // At start-up every node takes a full share at once.
    let start_share = share_of_mi1(&proxy, 40).await;
    assert!((0.4..=0.6).contains(&start_share), "{start_share}");

    nodes[0].set_faulty_capps(vec!["x.car".into()]);
    proxy.wait_state("mi-1", "not_ready").await;
    nodes[0].set_faulty_capps(Vec::new());
    proxy.wait_state("mi-1", "ready").await;

    // Just readmitted: a share near 0 (at most 1/6 after a second), where round robin
    // alone would give 0.5.
    let early = share_of_mi1(&proxy, 60).await;
    assert!(early < 0.3, "early share {early}");
    // Then it grows to a full share.
    let mut last = early;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while last < 0.4 {
        assert!(
            std::time::Instant::now() < deadline,
            "share still {last} long after the 6 s ramp"
        );
        last = share_of_mi1(&proxy, 60).await;
    }
}
