//! Malformed `/healthz` answers are judged by status code and deadline, with bounded
//! memory and no panic: in-process against the probe, and end to end through the proxy.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use healthgate::health::ProbeResult;
use healthgate::health::probe;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How a hand-made health endpoint answers.
#[derive(Clone)]
enum Answer {
    /// These bytes, then close.
    Raw(Vec<u8>),
    /// A status line and headers, then `size` bytes of body in 64 KiB writes.
    Huge {
        status: u16,
        prefix: &'static str,
        size: usize,
    },
    /// A valid head, then the body one byte per `every`.
    Trickle { every: Duration },
}

fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A health endpoint answering every connection with `answer`; counts body bytes written.
async fn endpoint(answer: Answer) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 2048];
                let _ = stream.read(&mut request).await;
                match answer {
                    Answer::Raw(bytes) => {
                        let _ = stream.write_all(&bytes).await;
                    }
                    Answer::Huge {
                        status,
                        prefix,
                        size,
                    } => {
                        let head = format!(
                            "HTTP/1.1 {status} X\r\nContent-Length: {size}\r\n\r\n{prefix}"
                        );
                        if stream.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = vec![b'x'; 64 * 1024];
                        let mut sent = prefix.len();
                        while sent < size {
                            let n = chunk.len().min(size - sent);
                            if stream.write_all(&chunk[..n]).await.is_err() {
                                break;
                            }
                            sent += n;
                            counter.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                    Answer::Trickle { every } => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
                        if stream.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        for _ in 0..1000 {
                            tokio::time::sleep(every).await;
                            if stream.write_all(b"x").await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, written)
}

const DEADLINE: Duration = Duration::from_millis(500);

/// One readiness probe of `addr` on a fresh connection.
async fn probe_once(addr: SocketAddr) -> healthgate::health::ProbeOutcome {
    let mut connection = probe::HealthConnection::default();
    probe::readiness(&mut connection, addr, "127.0.0.1", "/healthz", DEADLINE).await
}

async fn readiness(answer: Answer) -> healthgate::health::ProbeOutcome {
    let (addr, _) = endpoint(answer).await;
    probe_once(addr).await
}

#[tokio::test]
async fn invalid_json_with_200_is_ready() {
    let outcome = readiness(Answer::Raw(http("200 OK", "{\"status\" : ready, ,"))).await;
    assert_eq!(outcome.result, ProbeResult::Success, "{outcome:?}");
}

#[tokio::test]
async fn unescaped_quote_in_capp_name_is_not_ready_with_names() {
    let body = r#"{"version":"4.4.0", "update_level":"-", "status": "not ready, faulty CAPPs detected", "Faulty CAPPs" : ["my"app_1.0.0.car","ok_1.0.0.car"]}"#;
    let outcome = readiness(Answer::Raw(http("500 Internal Server Error", body))).await;
    assert_eq!(outcome.result, ProbeResult::Failure);
    assert_eq!(outcome.status, Some(500));
    assert_eq!(
        outcome.faulty_capps,
        [r#"my"app_1.0.0.car"#, "ok_1.0.0.car"]
    );
}

#[tokio::test]
async fn empty_500_is_not_ready_without_names() {
    let outcome = readiness(Answer::Raw(http("500 Internal Server Error", ""))).await;
    assert_eq!(outcome.result, ProbeResult::Failure);
    assert!(outcome.faulty_capps.is_empty());
    assert_eq!(outcome.reason, "/healthz answered 500");
}

#[tokio::test]
async fn ten_megabyte_answer_is_judged_by_status_without_reading_it_all() {
    let size = 10 * 1024 * 1024;
    let (addr, written) = endpoint(Answer::Huge {
        status: 200,
        prefix: "",
        size,
    })
    .await;
    let outcome = probe_once(addr).await;
    assert_eq!(outcome.result, ProbeResult::Success, "{outcome:?}");

    let prefix = r#"{"Faulty CAPPs" : ["big_1.0.0.car"], "padding": ""#;
    let (addr, _) = endpoint(Answer::Huge {
        status: 500,
        prefix,
        size,
    })
    .await;
    let outcome = probe_once(addr).await;
    assert_eq!(outcome.result, ProbeResult::Failure);
    assert_eq!(outcome.faulty_capps, ["big_1.0.0.car"]);
    // The probe stops reading at 64 KiB and closes: the writer cannot get all 10 MB out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = written.load(Ordering::Relaxed);
    assert!(sent < size, "the whole body was consumed ({sent} bytes)");
}

#[tokio::test]
async fn slow_trickle_fails_by_the_deadline() {
    let started = Instant::now();
    let outcome = readiness(Answer::Trickle {
        every: Duration::from_millis(20),
    })
    .await;
    assert_eq!(outcome.result, ProbeResult::Timeout, "{outcome:?}");
    assert!(
        started.elapsed() < DEADLINE + Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn not_http_and_oversized_heads_are_errors() {
    let outcome = readiness(Answer::Raw(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec())).await;
    assert_eq!(outcome.result, ProbeResult::Error, "{outcome:?}");
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..5000 {
        head.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(40)).as_bytes());
    }
    head.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let outcome = readiness(Answer::Raw(head)).await;
    assert_eq!(outcome.result, ProbeResult::Error, "{outcome:?}");
}

#[tokio::test]
async fn refused_health_port_is_an_error() {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let outcome = probe_once(addr).await;
    assert_eq!(outcome.result, ProbeResult::Error);
    assert!(outcome.reason.contains("connect"), "{}", outcome.reason);
}

/// Through the real proxy: nodes whose health ports answer badly get the right state, the
/// proxy keeps serving, and its memory stays bounded while it probes 10 MB answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_survives_malformed_health_answers() {
    // mi-1 is a normal node; mi-2..5 only lend their traffic ports to the hand-made health
    // endpoints (traffic addresses must be unique).
    let sims = start_nodes(5);
    let traffic = |i: usize| sims[i].traffic_addr();
    let (invalid_json, _) = endpoint(Answer::Raw(http("200 OK", "{not json"))).await;
    let (empty_500, _) = endpoint(Answer::Raw(http("500 Internal Server Error", ""))).await;
    let (huge, _) = endpoint(Answer::Huge {
        status: 500,
        prefix: "",
        size: 10 * 1024 * 1024,
    })
    .await;
    let (trickle, _) = endpoint(Answer::Trickle {
        every: Duration::from_millis(20),
    })
    .await;
    let mut config = ProxyConfig::new(&sims[..1])
        .node("invalid-json", traffic(1), invalid_json)
        .node("empty-500", traffic(2), empty_500)
        .node("huge", traffic(3), huge)
        .node("trickle", traffic(4), trickle);
    config.readiness_period = "100ms";
    config.readiness_timeout = "100ms";
    let proxy = config.start().await;

    // These endpoints give the same bad answer on /liveness, so they may end up dead
    // rather than not_ready; either way they must be judged and kept out.
    let out = |state: String| state == "not_ready" || state == "dead";
    eventually(Duration::from_secs(10), "every node judged", || async {
        let s = proxy.status().await;
        node_field(&s, "invalid-json", "state") == "ready"
            && out(node_field(&s, "empty-500", "state"))
            && out(node_field(&s, "huge", "state"))
            && out(node_field(&s, "trickle", "state"))
    })
    .await;
    let baseline = proxy.rss_kib();
    tokio::time::sleep(Duration::from_secs(2)).await; // ~20 probes of a 10 MB answer
    let after = proxy.rss_kib();
    assert!(
        after < baseline + 16 * 1024,
        "RSS grew from {baseline} KiB to {after} KiB"
    );
    assert_eq!(proxy.get("/api").await.0, 200);
    let trickle_error = node_field(&proxy.status().await, "trickle", "last_error");
    assert!(
        trickle_error.contains("no complete answer"),
        "{trickle_error}"
    );
    let metrics = proxy.metrics().await;
    let timeouts =
        "healthgate_probes_total{node=\"trickle\",probe=\"readiness\",result=\"timeout\"}";
    assert!(metrics.contains(timeouts), "{metrics}");
}
