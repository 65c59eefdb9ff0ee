//! Configuration reload on SIGHUP: nodes added and removed under load without a failed
//! request, kept nodes keep their state and counters, a removed node's requests in flight
//! finish, and a bad file changes nothing.

mod common;

use common::{
    Load, ProxyConfig, count_by_node, eventually, failures, node_field, spawn_send, start_nodes,
};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_nodes_under_load_without_a_failed_request() {
    let nodes = start_nodes(3);
    let proxy = ProxyConfig::new(&nodes[..2]).start().await;
    proxy.wait_ready(2).await;
    let before = proxy.status().await;
    let load = Load::start(proxy.url("/orders"), 4);
    eventually(DEADLINE, "load reaches mi-2", || async {
        nodes[1].traffic_requests() > 20
    })
    .await;
    let mi2_requests = node_field(&proxy.status().await, "mi-2", "requests");

    // mi-1 out, mi-3 in, mi-2 unchanged.
    proxy.reload(&ProxyConfig::new(&nodes[1..]));
    eventually(DEADLINE, "reload counted", || async {
        proxy.reloads("success").await == 1
    })
    .await;
    eventually(DEADLINE, "mi-2 and mi-3 ready, mi-1 gone", || async {
        proxy.ready_nodes().await == ["mi-2", "mi-3"]
            && proxy.status().await["nodes"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    let mi1_after_removal = nodes[0].traffic_requests();
    let mi3_before = nodes[2].traffic_requests();
    eventually(DEADLINE, "mi-3 takes traffic", || async {
        nodes[2].traffic_requests() > mi3_before + 20
    })
    .await;
    let samples = load.finish().await;

    assert!(failures(&samples).is_empty(), "{:?}", failures(&samples));
    assert_eq!(
        nodes[0].traffic_requests(),
        mi1_after_removal,
        "a removed node got requests"
    );
    let by_node = count_by_node(&samples);
    assert!(
        by_node.get("mi-3").copied().unwrap_or(0) > 20,
        "{by_node:?}"
    );

    // mi-2 kept its state (same `since`) and its counters (they did not restart).
    let after = proxy.status().await;
    assert_eq!(
        node_field(&before, "mi-2", "since"),
        node_field(&after, "mi-2", "since")
    );
    let count = |v: String| v.parse::<u64>().expect("requests is a number");
    assert!(count(node_field(&after, "mi-2", "requests")) > count(mi2_requests));
    let metrics = proxy.metrics().await;
    assert!(!metrics.contains("node=\"mi-1\""), "mi-1's series remain");
    assert!(metrics.contains("healthgate_backend_up{node=\"mi-3\"} 1"));
    assert!(
        proxy
            .log()
            .contains("reloaded: 1 node(s) kept (0 reweighted), 1 added, 1 removed"),
        "{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_finishes_its_requests_in_flight() {
    let nodes = start_nodes(2);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(2).await;
    for node in &nodes {
        node.set_response_delay(Duration::from_millis(1500));
    }
    // Round robin: one slow request on each node.
    let slow: Vec<_> = (0..2)
        .map(|_| spawn_send(reqwest::Method::GET, proxy.url("/slow")))
        .collect();
    eventually(DEADLINE, "a request in flight on mi-1", || async {
        nodes[0].traffic_started() > 0
    })
    .await;
    proxy.reload(&ProxyConfig::new(&nodes[1..]));
    eventually(DEADLINE, "mi-1 removed", || async {
        proxy.reloads("success").await == 1 && proxy.ready_nodes().await == ["mi-2"]
    })
    .await;
    let mut answered = Vec::new();
    for request in slow {
        let (status, node) = request.await.expect("request task");
        assert_eq!(status, 200);
        answered.extend(node);
    }
    answered.sort();
    assert_eq!(
        answered,
        ["mi-1", "mi-2"],
        "mi-1's request in flight finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_keeps_the_running_configuration_and_a_good_one_applies() {
    let nodes = start_nodes(2);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(2).await;
    let since = node_field(&proxy.status().await, "mi-1", "since");

    std::fs::write(
        proxy.config_path(),
        "nodes:\n  - name: mi-1\n    offset: lots\n",
    )
    .expect("write bad config");
    proxy.signal("HUP");
    eventually(DEADLINE, "failed reload counted", || async {
        proxy.reloads("failure").await == 1
    })
    .await;
    let log = proxy.log();
    let line = log
        .lines()
        .find(|l| l.contains("reload failed"))
        .unwrap_or_else(|| panic!("no reload error in:\n{log}"));
    assert!(
        line.contains("healthgate.yaml:3:") && line.contains("nodes[0].offset"),
        "{line}"
    );
    assert_eq!(proxy.get("/still").await.0, 200);
    assert_eq!(proxy.ready_nodes().await, ["mi-1", "mi-2"]);

    // A good file: new weights and a restart-only change (threads).
    let mut config = ProxyConfig::new(&nodes).weights(&[3, 1]);
    config.threads = 1;
    proxy.reload(&config);
    eventually(DEADLINE, "good reload counted", || async {
        proxy.reloads("success").await == 1
    })
    .await;
    let status = proxy.status().await;
    assert_eq!(node_field(&status, "mi-1", "weight"), "3");
    assert_eq!(node_field(&status, "mi-1", "since"), since, "state kept");
    assert_eq!(proxy.reloads("failure").await, 1);
    let log = proxy.log();
    assert!(
        log.contains("changed threads take(s) effect only at the next start or --upgrade"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_fails_to_resolve_a_host_changes_nothing_metrics_included() {
    let nodes = start_nodes(3);
    let proxy = ProxyConfig::new(&nodes[..2]).start().await;
    proxy.wait_ready(2).await;
    let before = proxy.status().await;
    let series = |text: &str, node: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("healthgate_backend_up{{node=\"{node}\"}}")))
            .count()
    };

    // mi-2 reweighted, mi-3 added (it resolves), mi-4 added on a host that does not: the
    // whole reload must fail, twice in a row, and leave nothing behind.
    let failing = ProxyConfig::new(&nodes).weights(&[1, 5, 1]);
    let unresolvable = "  - name: mi-4\n    host: no-such-host.invalid\n    traffic_port: 8290\n    health_port: 9201\n";
    for attempt in 1..=2 {
        let yaml = failing.yaml(proxy.listen, proxy.admin) + unresolvable;
        std::fs::write(proxy.config_path(), yaml).expect("write config");
        proxy.signal("HUP");
        eventually(DEADLINE, "failed reload counted", || async {
            proxy.reloads("failure").await == attempt
        })
        .await;
    }
    assert!(
        proxy
            .log()
            .contains("cannot resolve \"no-such-host.invalid\""),
        "{}",
        proxy.log()
    );
    let after = proxy.status().await;
    assert_eq!(after["generation"], before["generation"], "a new table");
    assert_eq!(after["nodes"].as_array().map(Vec::len), Some(2));
    assert_eq!(node_field(&after, "mi-2", "weight"), "1", "half applied");
    let metrics = proxy.metrics().await;
    for node in ["mi-3", "mi-4"] {
        assert!(
            !metrics.contains(&format!("node=\"{node}\"")),
            "{node}'s series after a failed reload:\n{metrics}"
        );
    }
    assert_eq!(series(&metrics, "mi-1"), 1);
    assert_eq!(series(&metrics, "mi-2"), 1);

    // The same nodes without the bad host: applies, and every node has its series once.
    proxy.reload(&failing);
    eventually(DEADLINE, "reload applied and mi-3 ready", || async {
        proxy.reloads("success").await == 1 && proxy.ready_nodes().await.len() == 3
    })
    .await;
    let metrics = proxy.metrics().await;
    for node in ["mi-1", "mi-2", "mi-3"] {
        assert_eq!(series(&metrics, node), 1, "{node} in\n{metrics}");
    }
    assert_eq!(node_field(&proxy.status().await, "mi-2", "weight"), "5");
}
