//! `limits`: a request whose header or body is too large is answered by the proxy (431,
//! 413) and never reaches a node; one within the limits goes through.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// Send a chunked body of `chunks` × `size` bytes over a raw connection; the answer's status.
async fn chunked(
    method: &'static str,
    addr: SocketAddr,
    chunks: usize,
    size: usize,
) -> Option<u16> {
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .ok()?;
        let head =
            format!("{method} /orders HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        let _ = s.write_all(head.as_bytes());
        for _ in 0..chunks {
            // The proxy may answer and close before the whole body is sent.
            let _ = s.write_all(format!("{size:x}\r\n{}\r\n", "c".repeat(size)).as_bytes());
        }
        let _ = s.write_all(b"0\r\n\r\n");
        let mut answer = [0u8; 64];
        let n = s.read(&mut answer).ok()?;
        let text = String::from_utf8_lossy(&answer[..n]).to_string();
        text.split(' ').nth(1)?.parse().ok()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_get_413_and_431_and_never_reach_a_node() {
    let nodes = start_nodes(1);
    let mut config = ProxyConfig::new(&nodes);
    config.extra_yaml = "limits:\n  max_request_header: 2KiB\n  max_request_body: 1KiB\n".into();
    let proxy = config.start().await;
    proxy.wait_ready(1).await;
    let post = |body: Vec<u8>| proxy.client.post(proxy.url("/orders")).body(body).send();

    assert_eq!(post(vec![b'a'; 1000]).await.unwrap().status(), 200);
    let reached = nodes[0].traffic_started();

    assert_eq!(post(vec![b'a'; 2000]).await.unwrap().status(), 413);
    let big_header = proxy
        .client
        .get(proxy.url("/orders"))
        .header("x-big", "b".repeat(3000))
        .send()
        .await
        .unwrap();
    assert_eq!(big_header.status(), 431);
    // A chunked body (no Content-Length) is counted as it streams.
    assert_eq!(chunked("POST", proxy.listen, 4, 600).await, Some(413));
    // An idempotent method too: a client's oversized body is not retried on other nodes.
    assert_eq!(chunked("PUT", proxy.listen, 4, 600).await, Some(413));

    assert_eq!(
        nodes[0].traffic_requests(),
        reached,
        "no oversized request reached the node whole"
    );
    assert_eq!(
        post(vec![b'a'; 10]).await.unwrap().status(),
        200,
        "the proxy still serves"
    );
}

/// Over `limits.max_connections` a new client connection is answered 503 and closed at
/// once (counted); the connections already open are served as before, and a place freed
/// by one that closes is taken by the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_and_the_rest_serve_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let nodes = start_nodes(1);
    let mut config = ProxyConfig::new(&nodes);
    config.extra_yaml = "limits:\n  max_connections: 4\n".into();
    let proxy = config.start().await;
    proxy.wait_ready(1).await;
    async fn exchange(stream: &mut tokio::net::TcpStream) -> String {
        let _ = stream
            .write_all(b"GET /capped HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_or(0, |r| r.unwrap_or(0));
        String::from_utf8_lossy(&buf[..n]).to_string()
    }
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut stream = tokio::net::TcpStream::connect(proxy.listen).await.unwrap();
        assert!(exchange(&mut stream).await.starts_with("HTTP/1.1 200"));
        open.push(stream);
    }
    let mut fifth = tokio::net::TcpStream::connect(proxy.listen).await.unwrap();
    let answer = exchange(&mut fifth).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    for stream in &mut open {
        assert!(
            exchange(stream).await.starts_with("HTTP/1.1 200"),
            "kept ones serve on"
        );
    }
    drop(open.pop());
    eventually(Duration::from_secs(5), "a freed place is taken", || async {
        let mut stream = tokio::net::TcpStream::connect(proxy.listen).await.unwrap();
        exchange(&mut stream).await.starts_with("HTTP/1.1 200")
    })
    .await;
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("healthgate_connections_refused_total 1\n")
            || metrics.contains("healthgate_connections_refused_total 2\n"),
        "{metrics}"
    );
}
