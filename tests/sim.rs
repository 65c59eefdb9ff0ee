//! The simulated MI node behaves as MI-HEALTH-API.md describes, over real sockets.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mi_sim::{Phase, SimOptions};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_ok()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Option<String>, String) {
    let r = client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (status, ct, r.text().await.unwrap())
}

#[tokio::test]
async fn health_port_answers_like_mi_byte_for_byte() {
    let node = start_node(SimOptions::new("mi-1"));
    node.wait_for_phase(Phase::Running).await;
    let h = node.health_addr();
    let ready = r#"{"version":"4.4.0", "update_level":"-", "status" : "ready"}"#;
    assert_eq!(
        get(h, "/healthz").await,
        (200, Some("application/json".into()), ready.into())
    );
    assert_eq!(get(h, "/healthz/").await.2, ready);
    assert_eq!(get(h, "/liveness").await.2, r#"{"server" : "started"}"#);
    assert_eq!(get(h, "/management/apis").await.0, 404);
    let post = client()
        .post(format!("http://{h}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 404, "GET only");

    node.add_faulty_capp("bad_1.0.0.car");
    node.add_faulty_capp("other_1.0.0.car");
    let faulty = r#"{"version":"4.4.0", "update_level":"-", "status": "not ready, faulty CAPPs detected", "Faulty CAPPs" : ["bad_1.0.0.car","other_1.0.0.car"]}"#;
    assert_eq!(
        get(h, "/healthz").await,
        (500, Some("application/json".into()), faulty.into())
    );
    assert!(node.remove_faulty_capp("bad_1.0.0.car"));
    node.set_faulty_capps(Vec::new());
    assert_eq!(
        get(h, "/healthz").await.0,
        200,
        "a removed faulty CApp stops counting"
    );
}

#[tokio::test]
async fn old_mi_has_no_liveness_endpoint() {
    let mut options = SimOptions::new("mi-old");
    options.liveness_endpoint = false;
    options.version = "4.1.0".into();
    let node = start_node(options);
    node.wait_for_phase(Phase::Running).await;
    assert_eq!(get(node.health_addr(), "/liveness").await.0, 404);
}

#[tokio::test]
async fn traffic_answers_name_the_node() {
    let node = start_node(SimOptions::new("mi-7"));
    node.wait_for_phase(Phase::Running).await;
    let r = client()
        .get(format!("http://{}/any/api", node.traffic_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-mi-node"], "mi-7");
    assert_eq!(node.traffic_requests(), 1);
}

/// Slow startup: both ports refuse while CApps deploy; the traffic port opens before the
/// health port, never after.
#[tokio::test]
async fn ports_open_in_mi_order_after_startup() {
    let mut options = SimOptions::new("mi-slow");
    options.startup_delay = Duration::from_millis(400);
    let node = start_node(options);
    assert_eq!(node.phase(), Phase::Starting);
    assert!(!accepts(node.traffic_addr()).await);
    assert!(!accepts(node.health_addr()).await);
    eventually(Duration::from_secs(5), "health port open", || async {
        let health = accepts(node.health_addr()).await;
        if health {
            assert!(
                accepts(node.traffic_addr()).await,
                "health opened before traffic"
            );
        }
        health
    })
    .await;
    assert_eq!(node.phase(), Phase::Running);
}

/// MI's shutdown: the traffic port and its idle keep-alive connections close, in-flight
/// requests finish, `/healthz` keeps answering 200 for the grace, then everything closes.
#[tokio::test]
async fn mi_style_shutdown_closes_traffic_first() {
    let mut options = SimOptions::new("mi-1");
    options.shutdown_grace = Duration::from_millis(800);
    let node = start_node(options);
    node.wait_for_phase(Phase::Running).await;

    // An idle keep-alive connection, and a slow request in flight.
    let mut idle = TcpStream::connect(node.traffic_addr()).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let slow_url = format!("http://{}/slow?delay_ms=300", node.traffic_addr());
    let slow = tokio::spawn(async move {
        client()
            .get(slow_url)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    eventually(
        Duration::from_secs(2),
        "slow request inside the node",
        || async { node.traffic_started() > node.traffic_requests() },
    )
    .await;

    node.shutdown();
    eventually(Duration::from_secs(2), "traffic port refuses", || async {
        !accepts(node.traffic_addr()).await
    })
    .await;
    let n = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "idle keep-alive connection closed: {n:?}"
    );
    assert_eq!(
        get(node.health_addr(), "/healthz").await.0,
        200,
        "the shutdown trap"
    );
    assert_eq!(node.phase(), Phase::ShuttingDown);
    assert_eq!(
        slow.await.unwrap().unwrap(),
        200,
        "in-flight request finished"
    );

    node.wait_for_phase(Phase::Stopped).await;
    assert!(!accepts(node.health_addr()).await);
    assert!(!accepts(node.traffic_addr()).await);
}

#[tokio::test]
async fn crash_closes_everything_and_restart_reopens_the_same_ports() {
    let node = start_node(SimOptions::new("mi-1"));
    node.wait_for_phase(Phase::Running).await;
    let mut open = TcpStream::connect(node.health_addr()).await.unwrap();
    node.crash();
    node.wait_for_phase(Phase::Stopped).await;
    assert!(!accepts(node.traffic_addr()).await);
    assert!(!accepts(node.health_addr()).await);
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), open.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "open connection closed: {n:?}"
    );

    let (traffic, health) = (node.traffic_addr(), node.health_addr());
    node.restart().unwrap();
    node.wait_for_phase(Phase::Running).await;
    assert_eq!((node.traffic_addr(), node.health_addr()), (traffic, health));
    assert_eq!(get(health, "/healthz").await.0, 200);
    assert!(node.restart().is_err(), "restart needs a stopped node");
}

#[tokio::test]
async fn hung_health_port_accepts_but_never_answers() {
    let node = start_node(SimOptions::new("mi-1"));
    node.wait_for_phase(Phase::Running).await;
    node.set_hung(true);
    let url = format!("http://{}/healthz", node.health_addr());
    let hung = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hung.is_err_and(|e| e.is_timeout()));
    node.set_hung(false);
    assert_eq!(get(node.health_addr(), "/healthz").await.0, 200);
}
