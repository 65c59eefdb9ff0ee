//! Three ready nodes share traffic by the chosen algorithm; the proxy sets forwarding headers.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

async fn sequential_counts(proxy: &Proxy, requests: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..requests {
        let (status, node) = proxy.get("/api").await;
        assert_eq!(status, 200);
        *counts.entry(node.expect("x-mi-node")).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_shares_exactly_evenly() {
    let nodes = start_nodes(3);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(3).await;
    let counts = sequential_counts(&proxy, 300).await;
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [100, 100, 100],
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_shares_in_proportion_to_weight() {
    let nodes = start_nodes(3);
    let proxy = ProxyConfig::new(&nodes)
        .algorithm("weighted")
        .weights(&[1, 2, 3])
        .start()
        .await;
    proxy.wait_ready(3).await;
    // Whole cycles of total weight 6 give exact shares.
    let counts = sequential_counts(&proxy, 600).await;
    assert_eq!(counts["mi-1"], 100, "{counts:?}");
    assert_eq!(counts["mi-2"], 200, "{counts:?}");
    assert_eq!(counts["mi-3"], 300, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_avoids_the_slow_node_and_shares_when_idle() {
    let nodes = start_nodes(3);
    let proxy = ProxyConfig::new(&nodes)
        .algorithm("least_connections")
        .start()
        .await;
    proxy.wait_ready(3).await;

    // Idle cluster, one request at a time: ties rotate, so the share is even.
    let counts = sequential_counts(&proxy, 300).await;
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [100, 100, 100],
        "{counts:?}"
    );

    // mi-1 becomes slow: with 8 concurrent clients it holds requests longer and gets fewer.
    nodes[0].set_response_delay(Duration::from_millis(50));
    let load = Load::start(proxy.url("/api"), 8);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let samples = load.finish().await;
    assert!(failures(&samples).is_empty(), "{:?}", failures(&samples));
    let counts = count_by_node(&samples);
    let slow = counts.get("mi-1").copied().unwrap_or(0);
    let fast = counts["mi-2"].min(counts["mi-3"]);
    assert!(slow * 4 < fast, "slow node got too much: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_set_and_host_is_kept() {
    let nodes = start_nodes(1);
    let mut config = ProxyConfig::new(&nodes);
    // The test client stands for a load balancer in front of healthgate.
    config.extra_yaml = "forwarded:\n  trusted_proxies: [127.0.0.0/8]\n".into();
    let proxy = config.start().await;
    proxy.wait_ready(1).await;
    let r = proxy
        .client
        .get(proxy.url("/api"))
        .header("host", "mi.example.com")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-for", "198.51.100.2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-seen-host"], "mi.example.com");
    assert_eq!(
        h["x-seen-forwarded-for"],
        "203.0.113.7, 198.51.100.2, 127.0.0.1"
    );
    assert_eq!(h["x-seen-forwarded-proto"], "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_reach_the_node() {
    let nodes = start_nodes(2);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(2).await;
    for size in [0usize, 1024, 64 * 1024] {
        let r = proxy
            .client
            .post(proxy.url("/api"))
            .body(vec![b'x'; size])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-request-bytes"], size.to_string().as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_a_request_through_the_proxy() {
    let client = client();
    // A port found free may be taken before the demo binds it (another test's connection):
    // the demo then exits at once, and is started again on other ports.
    let mut attempts = 0;
    let (mut child, listen, admin, stderr) = loop {
        attempts += 1;
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let stderr = tempfile::NamedTempFile::new().expect("temp file");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_healthgate"))
            .args([
                "demo",
                "--listen",
                &listen.to_string(),
                "--admin",
                &admin.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(stderr.reopen().expect("stderr file"))
            .spawn()
            .expect("spawn demo");
        let url = format!("http://{listen}/");
        let started = std::time::Instant::now();
        let answered = loop {
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                break true;
            }
            if child.try_wait().expect("try_wait").is_some()
                || started.elapsed() > Duration::from_secs(20)
            {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if answered {
            break (child, listen, admin, stderr);
        }
        let exited = child.try_wait().expect("try_wait").is_some();
        let _ = child.kill();
        let log = std::fs::read_to_string(stderr.path()).unwrap_or_default();
        assert!(
            exited,
            "the demo runs but did not answer within 20 s:\n{log}"
        );
        assert!(
            attempts < 3,
            "the demo did not answer in 3 attempts; last log:\n{log}"
        );
    };
    let url = format!("http://{listen}/");
    drop(stderr);
    let answer = client.get(&url).send().await.unwrap();
    let answered_by = answer
        .headers()
        .get("x-mi-node")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let status: serde_json::Value = client
        .get(format!("http://{admin}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _ = child.kill();
    let output = child.wait_with_output().expect("demo output");
    let banner = String::from_utf8_lossy(&output.stdout);
    assert!(answered_by.is_some_and(|n| n.starts_with("mi-")));
    assert_eq!(status["nodes"].as_array().map(Vec::len), Some(3));
    assert!(
        banner.contains(&format!("http://{listen}/")),
        "banner: {banner}"
    );
    assert!(
        banner.contains(&format!("http://{admin}/")),
        "banner: {banner}"
    );
}

/// Two of three nodes die at once while still in the table: with `retries: 2` every request
/// still succeeds, because a retry never goes back to a node it already tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_go_to_other_nodes_when_two_die_at_once() {
    let nodes = start_nodes(3);
    let mut config = ProxyConfig::new(&nodes);
    // Slow probes: eviction must come from live traffic, not from the poller.
    config.readiness_period = "5s";
    config.liveness_period = "5s";
    config.readiness_timeout = "1s";
    config.liveness_timeout = "1s";
    let proxy = config.start().await;
    proxy.wait_ready(3).await;
    nodes[0].crash();
    nodes[1].crash();
    nodes[0].wait_for_phase(mi_sim::Phase::Stopped).await;
    nodes[1].wait_for_phase(mi_sim::Phase::Stopped).await;
    for _ in 0..10 {
        assert_eq!(proxy.get("/api").await, (200, Some("mi-3".to_string())));
    }
    let status = proxy.status().await;
    assert_eq!(node_field(&status, "mi-1", "state"), "dead");
    assert_eq!(node_field(&status, "mi-2", "state"), "dead");
    let metrics = proxy.metrics().await;
    assert!(!metrics.contains("healthgate_retries_total 0"), "{metrics}");
}

/// Requests that are not HTTP, or too big, get an error or a closed connection; the proxy
/// keeps serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_never_take_the_proxy_down() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let nodes = start_nodes(1);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(1).await;
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2 << 20)
    );
    let bad: Vec<Vec<u8>> = vec![
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello".to_vec(),
        b"NOT HTTP AT ALL\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"G\0T / HTTP/1.1\r\n\r\n".to_vec(),
        huge_header.into_bytes(),
    ];
    for request in bad {
        let mut stream = tokio::net::TcpStream::connect(proxy.listen).await.unwrap();
        let _ = stream.write_all(&request).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
            "{text}"
        );
        assert_eq!(proxy.get("/api").await.0, 200, "proxy still serves");
    }
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
}

/// From a peer not in `forwarded.trusted_proxies` (by default: any), a client's own
/// `X-Forwarded-For` and `X-Forwarded-Proto` are replaced, not appended to: the node reads
/// the real peer address first, not one the client chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_client_cannot_forge_forwarding_headers() {
    let nodes = start_nodes(1);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(1).await;
    let r = proxy
        .client
        .get(proxy.url("/api"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-seen-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-seen-forwarded-proto"], "http");
}
