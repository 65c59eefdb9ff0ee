//! A node whose traffic port serves HTTPS (`SimOptions::https`), on real sockets: clients that
//! trust the CA get the same answers as over plain HTTP, clients that do not (or an expired
//! leaf) fail the handshake without disturbing the node, and MI's shutdown trap, crash,
//! restart, delay, status and the WebSocket echo work over TLS. The health port stays plain.
#![allow(clippy::unwrap_used)]

mod common;

use common::{accepts, eventually, http_get, https_get, rustls_error, tls_connect};
use mi_sim::tls::{LeafSpec, TestPki, TlsIdentity};
use mi_sim::ws::{ECHO_PATH, Opcode, WsClient, close_code};
use mi_sim::{Phase, SimNode, SimOptions};
use rustls::{CertificateError, Error};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

fn https_node(name: &str, pki: &Arc<TestPki>) -> SimNode {
    let options = SimOptions::new(name).with_https(pki.clone()).unwrap();
    SimNode::start(options).unwrap()
}

/// Both ports listen. Not probed with a TCP connect: on an HTTPS port that would count as
/// a failed handshake.
async fn up(node: &SimNode) {
    tokio::time::timeout(DEADLINE, node.wait_for_phase(Phase::Running))
        .await
        .expect("the node runs");
}

#[tokio::test]
async fn https_get_verifies_against_the_ca() {
    let pki = Arc::new(TestPki::localhost().unwrap());
    let node = https_node("mi-tls", &pki);
    up(&node).await;
    assert!(node.is_https());
    assert_eq!(node.scheme(), "https");
    assert_eq!(
        node.traffic_url(),
        format!("https://127.0.0.1:{}", node.traffic_addr().port())
    );
    assert_eq!(node.pki().unwrap().ca_pem(), pki.ca_pem());

    let answer = https_get(node.traffic_addr(), pki.client_config().unwrap(), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-mi-node"), Some("mi-tls"));
    assert_eq!(answer.body, "hello from mi-tls\n");

    // By IP too (SAN 127.0.0.1), and ALPN settles on HTTP/1.1.
    let stream = tls_connect(
        node.traffic_addr(),
        pki.client_config().unwrap(),
        "127.0.0.1",
    )
    .await
    .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // A TLS 1.2-only client is served too.
    let mut tls12 = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates({
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca_der()).unwrap();
        roots
    })
    .with_no_client_auth();
    tls12.alpn_protocols = vec![b"http/1.1".to_vec()];
    let answer = https_get(node.traffic_addr(), tls12, "/").await.unwrap();
    assert_eq!(answer.status, 200);

    // The health port is plain HTTP, as MI's internal API port in the Helm chart.
    let health = http_get(node.health_addr(), "/healthz").await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(node.traffic_requests(), 2);
    // The server finishes a TLS 1.3 handshake after the client does: wait for the count.
    eventually(DEADLINE, "three handshakes", || async {
        node.tls_handshakes() == 3
    })
    .await;
    assert_eq!(node.tls_handshake_failures(), 0);
}

#[tokio::test]
async fn plain_http_stays_the_default() {
    let node = SimNode::start(SimOptions::new("mi-plain")).unwrap();
    up(&node).await;
    assert!(!node.is_https());
    assert_eq!(node.scheme(), "http");
    assert!(node.pki().is_none());
    let answer = http_get(node.traffic_addr(), "/").await.unwrap();
    assert_eq!(answer.status, 200);
    let swap = node
        .set_tls_identity(TlsIdentity::from_pki(Arc::new(TestPki::localhost().unwrap())).unwrap());
    assert!(swap.is_err(), "a plain node cannot turn HTTPS");
    assert_eq!(
        http_get(node.traffic_addr(), "/").await.unwrap().status,
        200
    );
}

#[tokio::test]
async fn client_with_another_ca_fails_the_handshake_and_the_node_keeps_serving() {
    let pki = Arc::new(TestPki::localhost().unwrap());
    let node = https_node("mi-tls", &pki);
    up(&node).await;

    let stranger = TestPki::localhost().unwrap();
    let refused = https_get(node.traffic_addr(), stranger.client_config().unwrap(), "/")
        .await
        .unwrap_err();
    assert_eq!(
        rustls_error(&refused),
        Some(&Error::InvalidCertificate(CertificateError::UnknownIssuer)),
        "{refused}"
    );
    eventually(DEADLINE, "the node saw the failed handshake", || async {
        node.tls_handshake_failures() == 1
    })
    .await;
    // Plain HTTP to the TLS port gets no HTTP answer either.
    assert!(http_get(node.traffic_addr(), "/").await.is_err());

    assert_eq!(node.phase(), Phase::Running);
    let answer = https_get(node.traffic_addr(), pki.client_config().unwrap(), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        node.traffic_requests(),
        1,
        "refused handshakes carry no request"
    );
}

#[tokio::test]
async fn expired_leaf_is_refused_by_a_verifying_client() {
    let pki = Arc::new(TestPki::expired().unwrap());
    let node = https_node("mi-expired", &pki);
    up(&node).await;
    let refused = https_get(node.traffic_addr(), pki.client_config().unwrap(), "/")
        .await
        .unwrap_err();
    assert!(
        matches!(
            rustls_error(&refused),
            Some(Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ))
        ),
        "{refused}"
    );
    assert_eq!(node.traffic_requests(), 0);
}

#[tokio::test]
async fn shutdown_trap_on_an_https_node() {
    let pki = Arc::new(TestPki::localhost().unwrap());
    let mut options = SimOptions::new("mi-tls").with_https(pki.clone()).unwrap();
    options.shutdown_grace = Duration::from_secs(3);
    let node = SimNode::start(options).unwrap();
    up(&node).await;
    let client = pki.client_config().unwrap();
    assert_eq!(
        https_get(node.traffic_addr(), client.clone(), "/")
            .await
            .unwrap()
            .status,
        200
    );

    node.shutdown();
    eventually(DEADLINE, "traffic port refuses", || async {
        !accepts(node.traffic_addr()).await
    })
    .await;
    assert_eq!(node.phase(), Phase::ShuttingDown);
    let health = http_get(node.health_addr(), "/healthz").await.unwrap();
    assert_eq!(
        health.status, 200,
        "/healthz answers ready during the grace"
    );
    node.wait_for_phase(Phase::Stopped).await;
    assert!(!accepts(node.health_addr()).await);

    node.restart().unwrap();
    up(&node).await;
    let answer = https_get(node.traffic_addr(), client, "/").await.unwrap();
    assert_eq!(answer.status, 200, "HTTPS again after a restart");
}

#[tokio::test]
async fn crash_restart_delay_and_status_over_tls() {
    let pki = Arc::new(TestPki::localhost().unwrap());
    let node = https_node("mi-tls", &pki);
    up(&node).await;
    let client = pki.client_config().unwrap();

    node.set_traffic_status(503);
    let answer = https_get(node.traffic_addr(), client.clone(), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 503);
    node.set_traffic_status(200);

    node.set_response_delay(Duration::from_millis(300));
    let started = Instant::now();
    let answer = https_get(node.traffic_addr(), client.clone(), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    node.set_response_delay(Duration::ZERO);

    node.crash();
    node.wait_for_phase(Phase::Stopped).await;
    assert!(!accepts(node.traffic_addr()).await);
    assert!(!accepts(node.health_addr()).await);
    node.restart().unwrap();
    up(&node).await;
    let answer = https_get(node.traffic_addr(), client, "/").await.unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn websocket_echo_over_tls_and_going_away_on_shutdown() {
    let pki = Arc::new(TestPki::localhost().unwrap());
    let node = https_node("mi-tls", &pki);
    up(&node).await;
    let connect = || async {
        let stream = tls_connect(
            node.traffic_addr(),
            pki.client_config().unwrap(),
            "localhost",
        )
        .await
        .unwrap();
        WsClient::upgrade(stream, "localhost", ECHO_PATH)
            .await
            .unwrap()
    };

    let mut ws = connect().await;
    assert!(
        ws.response_head.contains("x-mi-node: mi-tls"),
        "{}",
        ws.response_head
    );
    let echoed = ws.echo_text("over TLS").await.unwrap().unwrap();
    assert_eq!(
        (echoed.opcode, echoed.payload),
        (Opcode::Text, b"over TLS".to_vec())
    );
    let close = ws.close(close_code::NORMAL).await.unwrap().unwrap();
    assert_eq!(close.close_code(), Some(close_code::NORMAL));

    let mut ws = connect().await;
    eventually(DEADLINE, "session open", || async {
        node.websocket_open() == 1
    })
    .await;
    node.shutdown();
    let frame = tokio::time::timeout(DEADLINE, ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(frame.close_code(), Some(close_code::GOING_AWAY));
    assert_eq!(node.websocket_upgrades(), 2);
}

#[tokio::test]
async fn certificate_swap_applies_to_new_connections() {
    let pki = Arc::new(TestPki::localhost().unwrap());
    let node = https_node("mi-tls", &pki);
    up(&node).await;
    let served = |stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        stream.get_ref().1.peer_certificates().unwrap()[0].clone()
    };
    let before = tls_connect(
        node.traffic_addr(),
        pki.client_config().unwrap(),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(served(&before), pki.cert_der());

    let renewed = Arc::new(pki.issue(LeafSpec::localhost()).unwrap());
    node.set_tls_identity(TlsIdentity::from_pki(renewed.clone()).unwrap())
        .unwrap();
    assert!(Arc::ptr_eq(&node.pki().unwrap(), &renewed));
    let after = tls_connect(
        node.traffic_addr(),
        pki.client_config().unwrap(),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(
        served(&after),
        renewed.cert_der(),
        "same CA, so still trusted"
    );

    // The connection opened before the swap still carries requests.
    let answer = common::get_on(before, "localhost", "/").await.unwrap();
    assert_eq!(answer.status, 200);
}
