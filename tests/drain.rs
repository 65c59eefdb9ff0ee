//! Draining a node by hand through the admin listener: it gets no new requests, requests in
//! flight to it finish, its probes go on, and undraining lets it back.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::Duration;

async fn post(proxy: &Proxy, path: &str) -> (u16, String) {
    let r = proxy
        .client
        .post(proxy.admin_url(path))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn node_status(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_node_finishes_in_flight_requests_and_gets_no_new_ones() {
    let nodes = start_nodes(2);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(2).await;

    // Slow answers from mi-1, so requests are in flight to it when it is drained.
    nodes[0].set_response_delay(Duration::from_millis(800));
    let in_flight: Vec<_> = (0..4)
        .map(|_| spawn_send(reqwest::Method::GET, proxy.url("/slow")))
        .collect();
    eventually(
        Duration::from_secs(5),
        "requests in flight to mi-1",
        || async { nodes[0].traffic_started() > nodes[0].traffic_requests() },
    )
    .await;

    let (status, body) = post(&proxy, "/nodes/mi-1/drain").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"drained\":true"), "{body}");
    for _ in 0..10 {
        assert_eq!(proxy.get("/api").await, (200, Some("mi-2".into())));
    }
    let answers: Vec<(u16, Option<String>)> = futures_join(in_flight).await;
    assert!(
        answers
            .iter()
            .any(|(_, node)| node.as_deref() == Some("mi-1")),
        "some requests were in flight to mi-1: {answers:?}"
    );
    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "in-flight requests finish: {answers:?}"
    );

    let status = proxy.status().await;
    let mi1 = node_status(&status, "mi-1");
    assert_eq!(mi1["drained"], true);
    assert_eq!(mi1["state"], "ready", "health is still probed and reported");
    assert_eq!(status["ready"], 1);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("healthgate_backend_drained{node=\"mi-1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("healthgate_backend_up{node=\"mi-1\"} 0"),
        "{metrics}"
    );
    assert!(
        proxy
            .log()
            .contains("node=mi-1 drained=true by the operator")
    );

    nodes[0].set_response_delay(Duration::ZERO);
    assert_eq!(post(&proxy, "/nodes/mi-1/undrain").await.0, 200);
    proxy.wait_ready(2).await;
    let mut from_mi1 = 0;
    for _ in 0..10 {
        let (status, node) = proxy.get("/api").await;
        assert_eq!(status, 200);
        from_mi1 += usize::from(node.as_deref() == Some("mi-1"));
    }
    assert_eq!(from_mi1, 5, "round robin again");
    assert_eq!(node_status(&proxy.status().await, "mi-1")["drained"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_paths_check_method_and_node() {
    let nodes = start_nodes(1);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(1).await;
    assert_eq!(post(&proxy, "/nodes/nope/drain").await.0, 404);
    let get = proxy
        .client
        .get(proxy.admin_url("/nodes/mi-1/drain"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(proxy.status().await["ready"], 1, "nothing drained");
}

/// Await every task, in order.
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
