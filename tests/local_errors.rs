//! A connect that fails for want of the proxy's own resources evicts no node: healthgate runs
//! under a low open-file limit, the test takes every descriptor it has left (idle client
//! connections), and then asks for requests that need new upstream connections while the
//! liveness rounds keep connecting to the traffic ports. Every such failure is the host's
//! fault, not the nodes': they must stay ready, the failures must be counted, and the log
//! must say so once for the burst.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Descriptors healthgate may have open: enough to start and serve a little, few enough for
/// the test to take the rest.
const OPEN_FILES: usize = 128;
const DEADLINE: Duration = Duration::from_secs(10);
const PROBE_ERRORS: &str = "healthgate_local_connect_errors_total{source=\"probe\"} ";

/// One GET on a kept client connection; its status (0 if the connection failed).
async fn get(stream: &mut BufReader<TcpStream>) -> u16 {
    get_path(stream, "/orders").await.0
}

/// One GET of `path` on a kept connection: status (0 if the connection failed) and body.
async fn get_path(stream: &mut BufReader<TcpStream>, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: healthgate\r\n\r\n");
    if stream
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .is_err()
    {
        return (0, String::new());
    }
    let mut status_line = String::new();
    if stream.read_line(&mut status_line).await.unwrap_or(0) == 0 {
        return (0, String::new());
    }
    let mut length = 0;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return (0, String::new());
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.trim().eq_ignore_ascii_case("chunked");
            }
        }
    }
    let body = match chunked {
        true => read_chunks(stream).await,
        false => {
            let mut body = vec![0; length];
            stream.read_exact(&mut body).await.ok().map(|_| body)
        }
    };
    let Some(body) = body else {
        return (0, String::new());
    };
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A chunked body (the admin listener's metrics), or None if the connection failed.
async fn read_chunks(stream: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        stream.read_line(&mut size).await.ok()?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        let mut chunk = vec![0; size + 2];
        stream.read_exact(&mut chunk).await.ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// Reads a counter through an admin connection opened before the descriptors ran out
/// (a new one could not be accepted then).
async fn counter_on(admin: &mut BufReader<TcpStream>, line_start: &str) -> u64 {
    let (status, body) = get_path(admin, "/metrics").await;
    assert_eq!(status, 200, "the kept admin connection failed");
    counter(&body, line_start)
}

/// Opens idle client connections until the proxy holds `OPEN_FILES` descriptors. A freed
/// descriptor (a closed client, a finished probe) is taken again, so that the next connect
/// the proxy makes meets the shortage, whoever makes it.
async fn take_every_descriptor(proxy: &Proxy, fillers: &mut Vec<TcpStream>, since: Instant) {
    while proxy.open_files_below(OPEN_FILES) < OPEN_FILES {
        assert!(
            since.elapsed() < 2 * DEADLINE,
            "the proxy stopped at {} open files:\n{}",
            proxy.open_files_below(OPEN_FILES),
            proxy.log()
        );
        let before = proxy.open_files_below(OPEN_FILES);
        fillers.push(TcpStream::connect(proxy.listen).await.unwrap());
        // After it met the limit, Pingora's accept loop sleeps a second before it tries again.
        let accepted = Instant::now();
        while proxy.open_files_below(OPEN_FILES) <= before
            && accepted.elapsed() < Duration::from_millis(1500)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_evicts_no_node() {
    let nodes = start_nodes(2);
    let mut config = ProxyConfig::new(&nodes);
    config.open_files = Some(OPEN_FILES);
    // No cap below the file limit: the test is about what happens when it is reached.
    config.extra_yaml = "limits:\n  max_connections: 100000\n".into();
    let proxy = config.start().await;
    eventually(DEADLINE, "both nodes ready", || async {
        proxy.status().await["ready"] == 2
    })
    .await;
    let since =
        |status: &serde_json::Value| ["mi-1", "mi-2"].map(|n| node_field(status, n, "since"));
    let before = since(&proxy.status().await);

    // Client connections that will ask for requests once the descriptors are gone.
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut stream = BufReader::new(TcpStream::connect(proxy.listen).await.unwrap());
        assert_eq!(get(&mut stream).await, 200);
        clients.push(stream);
    }
    // Slow answers: concurrent requests need more upstream connections than are pooled.
    for node in &nodes {
        node.set_response_delay(Duration::from_millis(300));
    }
    // Metrics are read through this connection while no new one can be accepted.
    let mut admin = BufReader::new(TcpStream::connect(proxy.admin).await.unwrap());
    assert_eq!(counter_on(&mut admin, PROBE_ERRORS).await, 0);
    // Phase 1: every descriptor taken and kept taken, until a liveness or readiness round
    // (every 500 ms, each a new connection) has met the shortage.
    let mut fillers = Vec::new();
    let asked = Instant::now();
    loop {
        take_every_descriptor(&proxy, &mut fillers, asked).await;
        if counter_on(&mut admin, PROBE_ERRORS).await > 0 {
            break;
        }
        assert!(
            asked.elapsed() < DEADLINE,
            "after {DEADLINE:?} no probe connect failed locally:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Phase 2: concurrent slow requests need more upstream connections than are pooled,
    // while the descriptors are still all taken.
    let mut failed = 0;
    while failed == 0 {
        assert!(
            asked.elapsed() < 2 * DEADLINE && !clients.is_empty(),
            "no request met the shortage ({} clients left):\n{}",
            clients.len(),
            proxy.log()
        );
        take_every_descriptor(&proxy, &mut fillers, asked).await;
        let rounds: Vec<_> = clients
            .drain(..)
            .map(|mut stream| {
                tokio::spawn(async move {
                    let status = tokio::time::timeout(Duration::from_secs(3), get(&mut stream))
                        .await
                        .unwrap_or(0);
                    (stream, status)
                })
            })
            .collect();
        for round in rounds {
            let (stream, status) = round.await.unwrap();
            // A failed request closes its client connection; the others are kept.
            match status {
                200 => clients.push(stream),
                // A shortage is answered 503 (retry shortly), never 502 or a hang.
                503 => failed += 1,
                other => panic!("a request got {other}:\n{}", proxy.log()),
            }
        }
    }
    drop(fillers);
    drop(admin);
    drop(clients);
    for node in &nodes {
        node.set_response_delay(Duration::ZERO);
    }

    eventually(DEADLINE, "the admin listener answers again", || async {
        let url = format!("http://{}/liveness", proxy.admin);
        client()
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let status = proxy.status().await;
    assert_eq!(status["ready"], 2, "{status}");
    assert_eq!(since(&status), before, "a node changed state: {status}");
    let metrics = proxy.metrics().await;
    for node in ["mi-1", "mi-2"] {
        for to in ["dead", "not_ready"] {
            let line =
                format!("healthgate_backend_transitions_total{{node=\"{node}\",to=\"{to}\"}} ");
            assert_eq!(counter(&metrics, &line), 0, "{node} → {to}");
        }
        let line = format!("healthgate_upstream_connect_failures_total{{node=\"{node}\"}} ");
        assert_eq!(counter(&metrics, &line), 0, "counted against {node}");
    }
    let traffic = "healthgate_local_connect_errors_total{source=\"traffic\"} ";
    assert!(counter(&metrics, traffic) > 0, "{metrics}");
    assert!(counter(&metrics, PROBE_ERRORS) > 0, "{metrics}");
    let no_ready = "healthgate_no_ready_backend_total ";
    assert_eq!(counter(&metrics, no_ready), 0, "counted as no ready node");
    let log = proxy.log();
    let warnings = log
        .matches("a connect failed for want of this host's resources")
        .count();
    assert_eq!(warnings, 1, "one line for the burst:\n{log}");
    // And the proxy serves as before.
    let mut stream = BufReader::new(TcpStream::connect(proxy.listen).await.unwrap());
    assert_eq!(get(&mut stream).await, 200);
}
