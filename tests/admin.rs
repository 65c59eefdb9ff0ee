//! The admin listener: contract metrics, `/status`, the page, `/healthz`, `/liveness`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::Duration;

/// Every contract metric is exported, per node where it has a node label, and the state
/// gauge is one-hot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_the_contract_names() {
    let nodes = start_nodes(2);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(2).await;
    assert_eq!(proxy.get("/api").await.0, 200);
    // A request is counted in Pingora's logging hook, after its response went out.
    eventually(Duration::from_secs(5), "the request counted", || async {
        proxy
            .metrics()
            .await
            .contains("healthgate_request_duration_seconds_count 1")
    })
    .await;
    let metrics = proxy.metrics().await;
    for name in [
        "healthgate_backend_up{node=\"mi-1\"} 1",
        "healthgate_backend_state{node=\"mi-1\",state=\"ready\"} 1",
        "healthgate_backend_state{node=\"mi-1\",state=\"starting\"} 0",
        "healthgate_backend_state{node=\"mi-1\",state=\"not_ready\"} 0",
        "healthgate_backend_state{node=\"mi-1\",state=\"dead\"} 0",
        "healthgate_backend_faulty_capps{node=\"mi-2\"} 0",
        "healthgate_ready_backends 2",
        "healthgate_routing_table_generation ",
        "healthgate_probes_total{node=\"mi-1\",probe=\"readiness\",result=\"success\"}",
        "healthgate_probes_total{node=\"mi-1\",probe=\"tcp\",result=\"success\"}",
        "healthgate_probe_duration_seconds_bucket{node=\"mi-1\",probe=\"readiness\"",
        "healthgate_backend_transitions_total{node=\"mi-1\",to=\"ready\"} 1",
        "healthgate_upstream_connect_failures_total{node=\"mi-1\"} 0",
        "healthgate_retries_total 0",
        "healthgate_no_ready_backend_total 0",
        "healthgate_request_duration_seconds_count 1",
    ] {
        assert!(metrics.contains(name), "missing {name:?} in:\n{metrics}");
    }
    let answered = ["mi-1", "mi-2"].map(|node| {
        metrics.contains(&format!(
            "healthgate_upstream_requests_total{{node=\"{node}\",class=\"2xx\"}} 1"
        ))
    });
    assert_eq!(answered.iter().filter(|a| **a).count(), 1, "{metrics}");
}

/// The table is rebuilt only on a flip: steady probing leaves the generation alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_changes_only_when_a_node_flips() {
    let nodes = start_nodes(2);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(2).await;
    let generation = || async { proxy.status().await["generation"].as_u64().unwrap() };
    let steady = generation().await;
    assert_eq!(steady, 2, "one rebuild per node becoming ready");
    // Several probe periods (200 ms) with no change of state.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(generation().await, steady);

    nodes[0].set_faulty_capps(vec!["x.car".into()]);
    proxy.wait_ready(1).await;
    assert_eq!(generation().await, steady + 1);
    nodes[0].set_faulty_capps(Vec::new());
    proxy.wait_ready(2).await;
    assert_eq!(generation().await, steady + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_and_probe_endpoints() {
    let nodes = start_nodes(2);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(2).await;

    let status = proxy.status().await;
    assert_eq!(status["ready"], 2);
    let node = &status["nodes"][0];
    for field in [
        "name",
        "address",
        "state",
        "faulty_capps",
        "last_error",
        "since",
    ] {
        assert!(
            node.get(field).is_some(),
            "/status node lacks {field}: {node}"
        );
    }
    assert_eq!(node["address"], nodes[0].traffic_addr().to_string());

    let c = &proxy.client;
    let page = c.get(proxy.admin_url("/")).send().await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains("mi-1") && html.contains("mi-2") && html.contains("ready"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );

    assert_eq!(
        c.get(proxy.admin_url("/liveness"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(proxy.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(proxy.admin_url("/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.post(proxy.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
}

/// `initial_delay` holds the first probes back, so the node stays `starting`; a request
/// meanwhile waits for the first verdict rather than getting 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_delay_is_honoured() {
    let nodes = start_nodes(1);
    let mut config = ProxyConfig::new(&nodes);
    config.readiness_initial_delay = "1500ms";
    config.liveness_initial_delay = "1500ms";
    let proxy = config.start().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(nodes[0].health_requests(), 0, "probed before initial_delay");
    assert_eq!(proxy.node_state("mi-1").await, "starting");
    // A request before any verdict waits for the first probes instead of getting 503.
    assert_eq!(proxy.get("/api").await.0, 200);
    assert!(nodes[0].health_requests() > 0, "served before a probe");
    proxy.wait_ready(1).await;
}
