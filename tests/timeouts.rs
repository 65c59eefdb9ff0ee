//! `timeouts.read` and `.total`: a node that takes too long to answer costs the client a 504 (a POST),
//! or nothing at all (an idempotent request goes to another node).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::{Duration, Instant};

/// One request to `/orders`: (status, answering node).
async fn order(proxy: &Proxy, method: reqwest::Method) -> (u16, Option<String>) {
    send(&proxy.client, method, proxy.url("/orders")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_node_times_out_reads() {
    let nodes = start_nodes(2);
    let mut config = ProxyConfig::new(&nodes);
    config.read_timeout = Some("300ms");
    let proxy = config.start().await;
    proxy.wait_ready(2).await;
    nodes[0].set_response_delay(Duration::from_secs(3));

    // Round robin: of two POSTs one waits on mi-1 and times out.
    let started = Instant::now();
    let mut posts = vec![
        order(&proxy, reqwest::Method::POST).await,
        order(&proxy, reqwest::Method::POST).await,
    ];
    posts.sort();
    assert_eq!(posts, [(200, Some("mi-2".into())), (504, None)]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "504 after the read timeout, not after mi-1's 3 s: {:?}",
        started.elapsed()
    );

    // Two GETs: the one that times out on mi-1 is answered by mi-2.
    for _ in 0..2 {
        assert_eq!(
            order(&proxy, reqwest::Method::GET).await,
            (200, Some("mi-2".into()))
        );
    }
    // Slow is not dead: mi-1 stays in the table.
    assert_eq!(proxy.node_state("mi-1").await, "ready");
}

/// A client that stops sending its body is given up on after `timeouts.client_body`: 408,
/// and the node never gets a whole request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_gets_408() {
    let nodes = start_nodes(1);
    let mut config = ProxyConfig::new(&nodes);
    config.extra_yaml = "timeouts:\n  client_body: 500ms\n".into();
    let proxy = config.start().await;
    proxy.wait_ready(1).await;
    let listen = proxy.listen;
    let (status, took) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(listen).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        s.write_all(b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
            .unwrap();
        let mut answer = [0u8; 64];
        let n = s.read(&mut answer).unwrap_or(0);
        let text = String::from_utf8_lossy(&answer[..n]).to_string();
        (
            text.split(' ').nth(1).map(str::to_string),
            started.elapsed(),
        )
    })
    .await
    .unwrap();
    assert_eq!(status.as_deref(), Some("408"));
    assert!(took < Duration::from_secs(5), "given up after {took:?}");
    assert_eq!(nodes[0].traffic_requests(), 0);
}

/// `timeouts.total` bounds a request across its attempts: with every node slower than the
/// budget, a GET gets 504 once the budget is used up instead of waiting on node after node;
/// a node within the budget answers normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_timeout_bounds_a_request_across_retries() {
    let nodes = start_nodes(2);
    let mut config = ProxyConfig::new(&nodes);
    config.extra_yaml = "timeouts:\n  total: 1s\n".into();
    let proxy = config.start().await;
    proxy.wait_ready(2).await;
    for node in &nodes {
        node.set_response_delay(Duration::from_millis(300));
    }
    assert_eq!(order(&proxy, reqwest::Method::GET).await.0, 200);

    for node in &nodes {
        node.set_response_delay(Duration::from_secs(3));
    }
    let attempts_before = nodes[0].traffic_started() + nodes[1].traffic_started();
    let started = Instant::now();
    assert_eq!(order(&proxy, reqwest::Method::GET).await, (504, None));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "504 when the 1 s budget is used up, not after a 3 s answer or two: {took:?}"
    );
    let attempts = nodes[0].traffic_started() + nodes[1].traffic_started() - attempts_before;
    assert_eq!(attempts, 1, "no retry once the budget is used up");
}

/// An idle keep-alive client connection is closed after `timeouts.client_idle`; one that
/// keeps sending requests stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_connection_is_closed_after_client_idle() {
    let nodes = start_nodes(1);
    let mut config = ProxyConfig::new(&nodes);
    config.extra_yaml = "timeouts:\n  client_idle: 1s\n".into();
    let proxy = config.start().await;
    proxy.wait_ready(1).await;
    let listen = proxy.listen;
    let (idle_for, reused) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(listen).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let exchange = |conn: &mut std::net::TcpStream| {
            conn.write_all(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            // The sim answers with a Content-Length body; read until the blank line and body.
            while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "closed before the answer");
                answer.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200")
        };
        // Requests 300 ms apart keep the connection in use.
        let mut reused = 0;
        for _ in 0..4 {
            assert!(exchange(&mut conn));
            reused += 1;
            std::thread::sleep(Duration::from_millis(300));
        }
        let idle_since = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue, // the rest of the last body
                Err(e) => panic!("no close within 10 s: {e}"),
            }
        }
        (idle_since.elapsed(), reused)
    })
    .await
    .unwrap();
    assert_eq!(reused, 4);
    assert!(
        idle_for >= Duration::from_millis(500) && idle_for < Duration::from_secs(5),
        "closed after {idle_for:?} idle"
    );
}

/// Sends `head` one byte per `gap` on `conn` until the proxy answers or closes; what it
/// answered and when, from the first byte.
fn trickle(conn: &mut std::net::TcpStream, head: &[u8], gap: Duration) -> (Duration, String) {
    use std::io::{Read, Write};
    conn.set_read_timeout(Some(gap)).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    for byte in head.iter().chain(std::iter::repeat_n(&b'x', 1000)) {
        if conn.write_all(&[*byte]).is_err() {
            break;
        }
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).to_string(),
    )
}

/// A client that trickles its request header, one byte a second (slowloris), is answered
/// 408 and dropped once `timeouts.client_header` has passed since its first byte — on the
/// first request of a connection and on a later one — and nothing reaches a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_header_gets_408_after_client_header() {
    let nodes = start_nodes(1);
    let mut config = ProxyConfig::new(&nodes);
    config.extra_yaml = "timeouts:\n  client_header: 2s\n".into();
    let proxy = config.start().await;
    proxy.wait_ready(1).await;
    let listen = proxy.listen;
    let head = b"GET /trickled HTTP/1.1\r\nHost: x\r\nX-Pad: ";
    let (first, later) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let gap = Duration::from_secs(1);
        let mut conn = std::net::TcpStream::connect(listen).unwrap();
        let first = trickle(&mut conn, head, gap);
        // A kept connection: one whole request, then a trickled one.
        let mut conn = std::net::TcpStream::connect(listen).unwrap();
        conn.write_all(b"GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        let later = trickle(&mut conn, head, gap);
        (first, later)
    })
    .await
    .unwrap();
    for (which, (after, answer)) in [("first", first), ("later", later)] {
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "{which} request: {answer:?} after {after:?}"
        );
        assert!(
            after >= Duration::from_millis(1500) && after < Duration::from_secs(6),
            "{which} request dropped after {after:?}"
        );
    }
    assert_eq!(
        nodes[0].traffic_started(),
        1,
        "only the whole request reached the node"
    );
}
