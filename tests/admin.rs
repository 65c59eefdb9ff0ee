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

/// `/metrics` is written as it is rendered: chunked to an HTTP/1.1 client (several chunks
/// once the text passes one 64 KiB piece), ended by closing the connection for HTTP/1.0,
/// header only for HEAD (and the connection serves on). Every form carries the same
/// series, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_streamed_with_framing_for_every_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let nodes = start_nodes(2);
    // Nodes nobody listens for still have every series: ~6 KB each, 150 KB together.
    let mut config = ProxyConfig::new(&nodes);
    for i in 1..=24 {
        let gone = std::net::SocketAddr::from(([127, 0, 9, i], 1));
        config = config.node(&format!("gone-{i}"), gone, gone);
    }
    let proxy = config.start().await;
    proxy.wait_ready(2).await;

    let admin = proxy.admin;
    let exchange = |request: &'static str| async move {
        let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the answer ends with the connection")
            .unwrap();
        let answer = String::from_utf8(answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        (head.to_ascii_lowercase(), body.to_string())
    };
    let (head, chunked) =
        exchange("GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    let (chunks, text) = dechunk(&chunked);
    assert!(chunks >= 3, "{chunks} chunk(s): not written piece by piece");

    let (head, closed) = exchange("GET /metrics HTTP/1.0\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");

    // Both parse whole and name the same series (their values move between scrapes).
    let series = |text: &str| -> Vec<String> {
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("the scrape parses");
        let mut names: Vec<String> = scrape
            .samples
            .iter()
            .map(|s| {
                let labels: std::collections::BTreeMap<_, _> = s.labels.iter().collect();
                format!("{}{labels:?}", s.metric)
            })
            .collect();
        names.sort();
        names
    };
    let names = series(&text);
    assert!(names.len() >= 26 * 35, "{} series", names.len());
    assert_eq!(names, series(&closed));
    let last = "healthgate_upstream_tls_failures_total{node=\"gone-24\"} 0";
    assert!(text.ends_with(&format!("{last}\n")), "cut short");

    let mut kept = tokio::net::TcpStream::connect(proxy.admin).await.unwrap();
    kept.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut byte));
        assert_eq!(read.await.expect("the HEAD answer").unwrap(), 1, "closed");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut rest = String::new();
    let read = kept.read_to_string(&mut rest);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the next answer")
        .unwrap();
    assert!(
        rest.starts_with("HTTP/1.1 200") && rest.ends_with("ready: 2 node(s)\n"),
        "a HEAD answer carried a body, or the connection did not serve on: {rest:?}"
    );
}

/// The number of data chunks in a chunked body, and their data; panics if malformed.
fn dechunk(mut body: &str) -> (usize, String) {
    let (mut chunks, mut data) = (0, String::new());
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size, 16).expect("a hex chunk size");
        if size == 0 {
            assert_eq!(rest, "\r\n", "the body ends after the last chunk");
            return (chunks, data);
        }
        data.push_str(&rest[..size]);
        body = rest[size..]
            .strip_prefix("\r\n")
            .expect("CRLF after the chunk");
        chunks += 1;
    }
}
