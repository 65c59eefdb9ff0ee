//! What MI nodes do wrong, and what the proxy must do about it.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mi_sim::Phase;
use std::time::{Duration, Instant};

/// A node that hot-deploys a faulty CApp leaves the table within
/// `period × failure_threshold + timeout` (+ one period of slack), `/status` names the CApps,
/// and the node returns once they are removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_capps_take_a_node_out_in_time_and_it_returns() {
    let nodes = start_nodes(3);
    let mut config = ProxyConfig::new(&nodes);
    config.readiness_period = "250ms";
    config.readiness_timeout = "100ms";
    config.failure_threshold = 2;
    let proxy = config.start().await;
    proxy.wait_ready(3).await;

    let bound = Duration::from_millis(250 * 2 + 100 + 250);
    let faulty = [
        "bad_1.0.0.car".to_string(),
        r#"we"ird_2.0.0.car"#.to_string(),
    ];
    let started = Instant::now();
    nodes[1].set_faulty_capps(faulty.to_vec());
    eventually(bound * 2, "mi-2 out of the table", || async {
        proxy.node_state("mi-2").await == "not_ready"
    })
    .await;
    let took = started.elapsed();
    assert!(took <= bound, "mi-2 left after {took:?}, bound {bound:?}");

    let status = proxy.status().await;
    assert_eq!(status["ready"], 2);
    let mi2 = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "mi-2")
        .unwrap();
    assert_eq!(mi2["faulty_capps"], serde_json::json!(faulty));
    assert!(
        mi2["last_error"]
            .as_str()
            .unwrap()
            .contains("bad_1.0.0.car")
    );
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("healthgate_backend_faulty_capps{node=\"mi-2\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("healthgate_backend_up{node=\"mi-2\"} 0"));
    for _ in 0..20 {
        let (status, node) = proxy.get("/api").await;
        assert_eq!(status, 200);
        assert_ne!(
            node.as_deref(),
            Some("mi-2"),
            "traffic went to a not-ready node"
        );
    }

    nodes[1].set_faulty_capps(Vec::new());
    eventually(Duration::from_secs(5), "mi-2 back in the table", || async {
        proxy.node_state("mi-2").await == "ready"
    })
    .await;
    let status = proxy.status().await;
    assert_eq!(status["ready"], 3);
    assert_eq!(node_field(&status, "mi-2", "faulty_capps"), "[]");
}

/// MI's shutdown: the traffic port closes while `/healthz` still answers 200. Under
/// continuous concurrent load no client request fails; the node is out; it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mi_style_shutdown_under_load_loses_no_request() {
    let nodes = start_nodes(3);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(3).await;
    let load = Load::start(proxy.url("/api"), 8);
    tokio::time::sleep(Duration::from_millis(500)).await;

    nodes[2].shutdown();
    eventually(Duration::from_secs(5), "mi-3 out of the table", || async {
        proxy.node_state("mi-3").await != "ready"
    })
    .await;
    // /healthz keeps answering 200 for the shutdown grace; mi-3 must stay out meanwhile.
    assert_eq!(nodes[2].phase(), Phase::ShuttingDown);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_ne!(
        proxy.node_state("mi-3").await,
        "ready",
        "readmitted on /healthz alone"
    );

    nodes[2].wait_for_phase(Phase::Stopped).await;
    nodes[2].restart().unwrap();
    eventually(Duration::from_secs(5), "mi-3 readmitted", || async {
        proxy.node_state("mi-3").await == "ready"
    })
    .await;
    let served_before = nodes[2].traffic_requests();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = load.finish().await;

    assert!(samples.len() > 200, "too little load: {}", samples.len());
    assert!(
        failures(&samples).is_empty(),
        "failed requests: {:?}",
        failures(&samples)
    );
    assert!(
        nodes[2].traffic_requests() > served_before,
        "mi-3 gets traffic again"
    );
}

/// A node killed under load: the only client requests that may fail are those already in
/// flight to it when it died. The node counts how many requests reached it and how many it
/// answered; the difference is exactly what the kill cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_under_load_fails_only_requests_in_flight() {
    let nodes = start_nodes(3);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(3).await;
    let load = Load::start(proxy.url("/api"), 8);
    tokio::time::sleep(Duration::from_millis(700)).await;

    let killed_at = Instant::now();
    nodes[0].crash();
    nodes[0].wait_for_phase(Phase::Stopped).await;
    eventually(Duration::from_secs(5), "mi-1 out of the table", || async {
        proxy.node_state("mi-1").await == "dead"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let samples = load.finish().await;

    let cut_off = nodes[0].traffic_started() - nodes[0].traffic_requests();
    let failed: Vec<&Sample> = samples.iter().filter(|s| !s.ok()).collect();
    assert!(
        failed.iter().all(|s| s.started < killed_at),
        "a request sent after the kill failed: {failed:?}"
    );
    assert!(
        failed.len() as u64 <= cut_off,
        "{} failed but only {cut_off} were in flight to mi-1: {failed:?}",
        failed.len()
    );
    let after = samples.iter().filter(|s| s.started > killed_at).count();
    assert!(after > 100, "too little load after the kill: {after}");
    eprintln!(
        "{} requests, {} in flight to mi-1 at the kill, {} failed",
        samples.len(),
        cut_off,
        failed.len()
    );
}

/// A health endpoint that accepts and never answers takes the node out by timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_health_endpoint_takes_the_node_out_by_timeout() {
    let nodes = start_nodes(2);
    let mut config = ProxyConfig::new(&nodes);
    config.readiness_period = "200ms";
    config.readiness_timeout = "100ms";
    config.failure_threshold = 2;
    let proxy = config.start().await;
    proxy.wait_ready(2).await;

    nodes[0].set_hung(true);
    eventually(
        Duration::from_secs(3),
        "mi-1 not ready after hanging",
        || async { proxy.node_state("mi-1").await == "not_ready" },
    )
    .await;
    let last_error = node_field(&proxy.status().await, "mi-1", "last_error");
    assert!(
        last_error.contains("no complete answer within 100ms"),
        "{last_error}"
    );
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains(
            "healthgate_probes_total{node=\"mi-1\",probe=\"readiness\",result=\"timeout\"}"
        ),
        "{metrics}"
    );
    for _ in 0..10 {
        assert_eq!(proxy.get("/api").await.1.as_deref(), Some("mi-2"));
    }
    nodes[0].set_hung(false);
    eventually(Duration::from_secs(3), "mi-1 ready again", || async {
        proxy.node_state("mi-1").await == "ready"
    })
    .await;
}

/// No node ready: 503 with `Retry-After` and a one-line body, proxy `/healthz` 503, and
/// automatic recovery when a node is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ready_node_answers_503_and_recovers() {
    let nodes = start_nodes(2);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(2).await;
    let healthz = || async {
        proxy
            .client
            .get(proxy.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(healthz().await, 200);

    for n in &nodes {
        n.set_faulty_capps(vec!["broken_1.0.0.car".into()]);
    }
    proxy.wait_ready(0).await;
    let r = proxy.client.get(proxy.url("/api")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    // The proxy closes the connection after a 503; it must say so.
    assert_eq!(r.headers()["connection"], "close");
    let body = r.text().await.unwrap();
    assert_eq!(body.lines().count(), 1, "{body:?}");
    assert!(body.contains("no ready"), "{body:?}");
    assert_eq!(healthz().await, 503);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("healthgate_no_ready_backend_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("healthgate_ready_backends 0"));

    nodes[1].set_faulty_capps(Vec::new());
    eventually(Duration::from_secs(5), "traffic flows again", || async {
        proxy.get("/api").await == (200, Some("mi-2".to_string()))
    })
    .await;
    assert_eq!(healthz().await, 200);
}
