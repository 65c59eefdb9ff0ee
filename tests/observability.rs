//! What an operator sees: every contract metric's value (read with a real Prometheus text
//! parser) through a scripted ready → faulty → dead → ready sequence, the counters of live
//! traffic failures, and the log lines for flips, config loads and (opt-in) requests.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use prometheus_parse::{Sample, Scrape, Value};
use std::time::Duration;

/// A parsed `/metrics` scrape.
struct Metrics(Vec<Sample>);

impl Metrics {
    async fn of(proxy: &Proxy) -> Metrics {
        let text = proxy.metrics().await;
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        Metrics(scrape.samples)
    }

    /// The value of the sample `name` whose labels include every `labels` pair; histograms
    /// give their count. Panics if there is no such sample.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let sample = self
            .0
            .iter()
            .find(|s| {
                s.metric == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(k).is_some_and(|l| l == *v))
            })
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"));
        match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("{name} is a summary"),
        }
    }

    /// The one-hot state of `node`, checked to be one-hot.
    fn state(&self, node: &str) -> String {
        let on: Vec<&str> = ["starting", "ready", "not_ready", "dead"]
            .into_iter()
            .filter(|s| {
                self.value("healthgate_backend_state", &[("node", node), ("state", *s)]) == 1.0
            })
            .collect();
        assert_eq!(on.len(), 1, "{node}: one state at a time, got {on:?}");
        on[0].to_string()
    }

    fn node(&self, name: &str, node: &str) -> f64 {
        self.value(name, &[("node", node)])
    }

    fn transitions(&self, node: &str, to: &str) -> f64 {
        self.value(
            "healthgate_backend_transitions_total",
            &[("node", node), ("to", to)],
        )
    }

    fn probes(&self, node: &str, probe: &str, result: &str) -> f64 {
        self.value(
            "healthgate_probes_total",
            &[("node", node), ("probe", probe), ("result", result)],
        )
    }
}

/// MI-style shutdown of `node`, then wait until its traffic port refuses connections.
async fn shut_down(node: &mi_sim::SimNode) {
    node.shutdown();
    eventually(Duration::from_secs(5), "traffic port closed", || async {
        std::net::TcpStream::connect(node.traffic_addr()).is_err()
    })
    .await;
}

/// The contract metrics follow mi-1 through ready → faulty → dead → ready, next to a
/// steady mi-2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_node_through_ready_faulty_dead_ready() {
    let nodes = start_nodes(2);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(2).await;
    for _ in 0..10 {
        assert_eq!(proxy.get("/api").await.0, 200);
    }

    // Ready. A request is counted in Pingora's logging hook, after its response went out:
    // wait for the last one.
    eventually(Duration::from_secs(5), "10 requests counted", || async {
        Metrics::of(&proxy)
            .await
            .value("healthgate_request_duration_seconds", &[])
            == 10.0
    })
    .await;
    let m = Metrics::of(&proxy).await;
    assert_eq!(m.state("mi-1"), "ready");
    assert_eq!(m.node("healthgate_backend_up", "mi-1"), 1.0);
    assert_eq!(m.node("healthgate_backend_faulty_capps", "mi-1"), 0.0);
    assert_eq!(m.value("healthgate_ready_backends", &[]), 2.0);
    assert_eq!(m.value("healthgate_routing_table_generation", &[]), 2.0);
    assert_eq!(m.transitions("mi-1", "ready"), 1.0);
    assert_eq!(m.transitions("mi-1", "not_ready"), 0.0);
    assert!(m.probes("mi-1", "readiness", "success") >= 1.0);
    assert!(
        m.value(
            "healthgate_probe_duration_seconds",
            &[("node", "mi-1"), ("probe", "readiness")]
        ) >= 1.0
    );
    let answered: f64 = ["mi-1", "mi-2"]
        .iter()
        .map(|n| {
            m.value(
                "healthgate_upstream_requests_total",
                &[("node", n), ("class", "2xx")],
            )
        })
        .sum();
    assert_eq!(answered, 10.0);
    assert_eq!(m.value("healthgate_request_duration_seconds", &[]), 10.0);
    assert_eq!(
        m.node("healthgate_upstream_connect_failures_total", "mi-1"),
        0.0
    );
    assert_eq!(m.value("healthgate_retries_total", &[]), 0.0);
    assert_eq!(m.value("healthgate_no_ready_backend_total", &[]), 0.0);
    assert!(m.value("process_resident_memory_bytes", &[]) > 1e6);
    assert!(m.value("process_open_fds", &[]) >= 3.0);
    assert!(m.value("process_cpu_seconds_total", &[]) >= 0.0);
    assert!(m.value("process_start_time_seconds", &[]) > 1.7e9);

    // Faulty: two CApps failed to deploy.
    nodes[0].set_faulty_capps(vec!["orders_1.0.0.car".into(), "billing \"v2\".car".into()]);
    proxy.wait_state("mi-1", "not_ready").await;
    let m = Metrics::of(&proxy).await;
    assert_eq!(m.state("mi-1"), "not_ready");
    assert_eq!(m.node("healthgate_backend_up", "mi-1"), 0.0);
    assert_eq!(m.node("healthgate_backend_faulty_capps", "mi-1"), 2.0);
    assert_eq!(m.value("healthgate_ready_backends", &[]), 1.0);
    assert_eq!(m.value("healthgate_routing_table_generation", &[]), 3.0);
    assert_eq!(m.transitions("mi-1", "not_ready"), 1.0);
    assert!(m.probes("mi-1", "readiness", "failure") >= 2.0);
    assert_eq!(m.state("mi-2"), "ready");
    // Not ready, its liveness is asked again (a ready node's is skipped: tests/probing.rs).
    eventually(Duration::from_secs(5), "a liveness probe", || async {
        Metrics::of(&proxy)
            .await
            .probes("mi-1", "liveness", "success")
            >= 1.0
    })
    .await;

    // Dead: the process is gone.
    nodes[0].crash();
    proxy.wait_state("mi-1", "dead").await;
    let m = Metrics::of(&proxy).await;
    assert_eq!(m.state("mi-1"), "dead");
    assert_eq!(m.transitions("mi-1", "dead"), 1.0);
    assert!(m.probes("mi-1", "liveness", "error") + m.probes("mi-1", "tcp", "error") >= 1.0);
    assert_eq!(m.value("healthgate_ready_backends", &[]), 1.0);
    assert_eq!(m.value("healthgate_routing_table_generation", &[]), 3.0);

    // Ready again: restarted with its CApps fixed.
    nodes[0].set_faulty_capps(Vec::new());
    nodes[0].restart().unwrap();
    proxy.wait_state("mi-1", "ready").await;
    let m = Metrics::of(&proxy).await;
    assert_eq!(m.state("mi-1"), "ready");
    assert_eq!(m.node("healthgate_backend_up", "mi-1"), 1.0);
    assert_eq!(m.node("healthgate_backend_faulty_capps", "mi-1"), 0.0);
    assert_eq!(m.transitions("mi-1", "ready"), 2.0);
    assert_eq!(m.value("healthgate_ready_backends", &[]), 2.0);
    assert_eq!(m.value("healthgate_routing_table_generation", &[]), 4.0);
    // Nothing was sent to mi-1 while it was out, so no client request failed.
    assert_eq!(m.value("healthgate_retries_total", &[]), 0.0);
    assert_eq!(
        m.node("healthgate_upstream_connect_failures_total", "mi-1"),
        0.0
    );
}

/// Live-traffic failures are counted where they happen: a refused connection (MI's
/// shutdown before any probe noticed) counts a connect failure and a retry; a request with
/// no ready node counts a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_failures_are_counted() {
    let nodes = start_nodes(2);
    let mut config = ProxyConfig::new(&nodes);
    // Probes too slow to notice the shutdown before the requests below do.
    config.liveness_period = "30s";
    config.readiness_period = "30s";
    config.readiness_timeout = "1s";
    let proxy = config.start().await;
    proxy.wait_ready(2).await;

    shut_down(&nodes[0]).await;
    for _ in 0..4 {
        assert_eq!(proxy.get("/api").await, (200, Some("mi-2".into())));
    }
    let m = Metrics::of(&proxy).await;
    assert_eq!(
        m.node("healthgate_upstream_connect_failures_total", "mi-1"),
        1.0
    );
    assert_eq!(m.value("healthgate_retries_total", &[]), 1.0);
    assert_eq!(
        m.value(
            "healthgate_upstream_requests_total",
            &[("node", "mi-1"), ("class", "error")]
        ),
        1.0
    );
    assert_eq!(m.state("mi-1"), "dead");

    shut_down(&nodes[1]).await;
    assert_eq!(proxy.get("/api").await.0, 503);
    assert_eq!(proxy.get("/api").await.0, 503);
    let m = Metrics::of(&proxy).await;
    assert_eq!(m.value("healthgate_ready_backends", &[]), 0.0);
    // The first 503 found mi-2's port closed; the second found no node at all.
    assert!(m.value("healthgate_no_ready_backend_total", &[]) >= 1.0);
    assert_eq!(
        m.node("healthgate_upstream_connect_failures_total", "mi-2"),
        1.0
    );
}

/// A flip is one log line with node, from, to and the reason (here the faulty CApp names);
/// the config load is logged; no line per request unless the access log is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flips_and_config_loads_are_logged_requests_only_on_request() {
    let nodes = start_nodes(1);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(1).await;
    assert_eq!(proxy.get("/quiet").await.0, 200);
    nodes[0].set_faulty_capps(vec!["orders_1.0.0.car".into()]);
    proxy.wait_state("mi-1", "not_ready").await;

    let log = proxy.log();
    assert!(
        log.contains("loaded: 1 node(s)"),
        "config load line:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("node=mi-1 from=starting to=ready reason=")),
        "{log}"
    );
    let flip = log
        .lines()
        .find(|l| l.contains("node=mi-1 from=ready to=not_ready"))
        .unwrap_or_else(|| panic!("no flip line in:\n{log}"));
    assert!(
        flip.contains("reason=") && flip.contains("faulty CApps orders_1.0.0.car"),
        "{flip}"
    );
    assert!(!log.contains("/quiet"), "no access log by default:\n{log}");

    let mut config =
        ProxyConfig::new(&nodes[..0]).node("mi-x", nodes[0].traffic_addr(), nodes[0].health_addr());
    config.access_log = true;
    nodes[0].set_faulty_capps(Vec::new());
    let logged = config.start().await;
    logged.wait_ready(1).await;
    assert_eq!(logged.get("/orders?id=7").await.0, 200);
    eventually(Duration::from_secs(5), "access log line", || async {
        logged.log().lines().any(|l| {
            l.contains("healthgate::access")
                && l.contains("method=GET")
                && l.contains("path=/orders?id=7 ")
                && l.contains("status=200")
                && l.contains("node=mi-x")
        })
    })
    .await;
}
