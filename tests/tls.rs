//! TLS on both sides: HTTPS clients (HTTP/1.1 and HTTP/2) through a TLS listener, https
//! MI nodes behind `upstream_tls`, a node whose certificate cannot be verified, MI's
//! shutdown trap on an https node, and listener certificates swapped by SIGHUP.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mi_sim::tls::{LeafSpec, PkiFiles, TestPki};
use mi_sim::{SimNode, SimOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(10);

/// `count` https nodes, mi-1 …, serving leaves of `pki`'s CA for `localhost`.
fn https_nodes(count: usize, pki: &Arc<TestPki>) -> Vec<SimNode> {
    (1..=count)
        .map(|i| {
            let options = SimOptions::new(format!("mi-{i}"))
                .with_https(pki.clone())
                .unwrap();
            start_node(options)
        })
        .collect()
}

/// `upstream_tls` trusting `ca`, with MI's default keystore name.
fn upstream_tls(ca: &Path) -> String {
    format!("upstream_tls:\n  ca: {}\n  sni: localhost\n", ca.display())
}

/// An HTTPS client trusting `ca` only (HTTP/1.1 and HTTP/2 by ALPN).
fn https_client(ca: &TestPki) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(ca.ca_pem().as_bytes()).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn write_pki(pki: &TestPki, dir: &Path) -> PkiFiles {
    std::fs::create_dir_all(dir).unwrap();
    pki.write_files(dir).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_client_reaches_https_nodes_over_pooled_connections() {
    let dir = tempfile::tempdir().unwrap();
    let node_pki = Arc::new(TestPki::localhost().unwrap());
    let node_files = write_pki(&node_pki, &dir.path().join("nodes"));
    let listener_pki = TestPki::localhost().unwrap();
    let listener_files = write_pki(&listener_pki, &dir.path().join("listener"));
    let nodes = https_nodes(2, &node_pki);
    let mut config = ProxyConfig::new(&nodes)
        .with_tls_listener(listener_files.cert.clone(), listener_files.key.clone());
    config.https_nodes = true;
    config.extra_yaml = upstream_tls(&node_files.ca);
    let proxy = config.start().await;
    eventually(DEADLINE, "both https nodes ready", || async {
        proxy.status().await["ready"] == 2
    })
    .await;

    let client = https_client(&listener_pki);
    let url = format!(
        "https://localhost:{}/orders",
        proxy.tls_listen.unwrap().port()
    );
    let mut by_node = std::collections::BTreeMap::new();
    for _ in 0..60 {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let seen = |name: &str| response.headers()[name].to_str().unwrap().to_string();
        assert_eq!(seen("x-seen-forwarded-proto"), "https");
        *by_node.entry(seen("x-mi-node")).or_insert(0) += 1;
    }
    assert_eq!(by_node.len(), 2, "{by_node:?}");
    // Pooled: a handful of handshakes per node (probes and a connection per worker thread),
    // not one per request.
    let handshakes: u64 = nodes.iter().map(SimNode::tls_handshakes).sum();
    let traffic: u64 = nodes.iter().map(SimNode::traffic_requests).sum();
    assert!(traffic >= 60, "{traffic}");
    let probe_rounds_bound = 40; // liveness every 500 ms, with a handshake each
    assert!(
        handshakes < probe_rounds_bound,
        "{handshakes} TLS handshakes for {traffic} requests:\n{}",
        proxy.log()
    );
    // The plain listener serves the same nodes beside it, with `X-Forwarded-Proto: http`.
    let plain = proxy.client.get(proxy.url("/orders")).send().await.unwrap();
    assert_eq!(plain.headers()["x-seen-forwarded-proto"], "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_proxied_to_http1_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let listener_pki = TestPki::localhost().unwrap();
    let files = write_pki(&listener_pki, dir.path());
    let nodes = start_nodes(2);
    let proxy = ProxyConfig::new(&nodes)
        .with_tls_listener(files.cert.clone(), files.key.clone())
        .start()
        .await;
    eventually(DEADLINE, "both nodes ready", || async {
        proxy.status().await["ready"] == 2
    })
    .await;
    let client = https_client(&listener_pki);
    let base = format!("https://127.0.0.1:{}", proxy.tls_listen.unwrap().port());
    // Many streams at once on one connection, GETs and POSTs with bodies.
    let requests: Vec<_> = (0..40)
        .map(|i| {
            let client = client.clone();
            let base = base.clone();
            tokio::spawn(async move {
                let response = match i % 2 {
                    0 => client.get(format!("{base}/get/{i}")).send().await,
                    _ => {
                        client
                            .post(format!("{base}/post"))
                            .body(vec![b'x'; 3000])
                            .send()
                            .await
                    }
                }
                .unwrap();
                let version = response.version();
                let status = response.status();
                let bytes = response.headers().get("x-request-bytes").cloned();
                let host = response.headers()["x-seen-host"]
                    .to_str()
                    .unwrap()
                    .to_string();
                (version, status, bytes, host, i)
            })
        })
        .collect();
    for request in requests {
        let (version, status, bytes, host, i) = request.await.unwrap();
        assert_eq!(version, reqwest::Version::HTTP_2);
        assert_eq!(status, 200);
        assert_eq!(
            host,
            format!("127.0.0.1:{}", proxy.tls_listen.unwrap().port())
        );
        if i % 2 == 1 {
            assert_eq!(bytes.unwrap(), "3000");
        }
    }
    let served: u64 = nodes.iter().map(SimNode::traffic_requests).sum();
    assert!(served >= 40, "{served}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_certificate_is_not_trusted_is_not_ready_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let node_pki = Arc::new(TestPki::localhost().unwrap());
    let other_ca = TestPki::localhost().unwrap();
    let other = write_pki(&other_ca, dir.path());
    let nodes = https_nodes(1, &node_pki);
    let mut config = ProxyConfig::new(&nodes);
    config.https_nodes = true;
    config.extra_yaml = upstream_tls(&other.ca);
    let proxy = config.start().await;
    eventually(
        DEADLINE,
        "the node is not_ready for its certificate",
        || async {
            let status = proxy.status().await;
            node_field(&status, "mi-1", "state") == "not_ready"
                && node_field(&status, "mi-1", "last_error")
                    .contains("TLS: certificate verify failed")
        },
    )
    .await;
    let response = proxy.client.get(proxy.url("/x")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let metrics = proxy.metrics().await;
    let line = "healthgate_probes_total{node=\"mi-1\",probe=\"tcp\",result=\"tls\"} ";
    assert!(counter(&metrics, line) > 0, "{metrics}");
    assert!(
        proxy.log().contains("TLS: certificate verify failed"),
        "{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mi_shutdown_on_an_https_node_loses_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let node_pki = Arc::new(TestPki::localhost().unwrap());
    let files = write_pki(&node_pki, dir.path());
    let nodes = https_nodes(3, &node_pki);
    let mut config = ProxyConfig::new(&nodes);
    config.https_nodes = true;
    config.extra_yaml = upstream_tls(&files.ca);
    let proxy = config.start().await;
    eventually(DEADLINE, "three https nodes ready", || async {
        proxy.status().await["ready"] == 3
    })
    .await;
    let load = Load::start(proxy.url("/orders"), 8);
    eventually(DEADLINE, "traffic on mi-1", || async {
        nodes[0].traffic_requests() > 20
    })
    .await;
    // MI's shutdown: the traffic port closes while /healthz still answers 200.
    nodes[0].shutdown();
    eventually(DEADLINE, "mi-1 out of the table", || async {
        node_field(&proxy.status().await, "mi-1", "state") == "dead"
    })
    .await;
    let before = nodes[1].traffic_requests() + nodes[2].traffic_requests();
    eventually(DEADLINE, "traffic goes on to the others", || async {
        nodes[1].traffic_requests() + nodes[2].traffic_requests() > before + 100
    })
    .await;
    let samples = load.finish().await;
    assert!(samples.len() > 100, "{} samples", samples.len());
    assert_eq!(failures(&samples), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_listener_certificate_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(TestPki::localhost().unwrap());
    let files = write_pki(&first, dir.path());
    let nodes = start_nodes(2);
    let config = ProxyConfig::new(&nodes).with_tls_listener(files.cert.clone(), files.key.clone());
    let proxy = config.start().await;
    eventually(DEADLINE, "both nodes ready", || async {
        proxy.status().await["ready"] == 2
    })
    .await;
    let address = proxy.tls_listen.unwrap();
    let url = format!("https://localhost:{}/orders", address.port());
    // One kept connection, opened on the first certificate.
    let mut kept = raw_tls::Connection::open(address, &first).await;
    assert_eq!(kept.peer_certificate(), first.cert_der());
    assert_eq!(kept.get("/orders").await, 200);
    // Load over TLS all along (new connections and kept ones, both CAs' leaves trusted:
    // the second leaf comes from the same CA).
    let load = Load::start_with(https_client(&first), url.clone(), 4);

    let second = first.issue(LeafSpec::localhost()).unwrap();
    std::fs::write(&files.cert, second.cert_pem()).unwrap();
    std::fs::write(&files.key, second.key_pem()).unwrap();
    proxy.reload(&config);
    eventually(DEADLINE, "the reload applied", || async {
        proxy.reloads("success").await == 1
    })
    .await;
    let fresh = raw_tls::Connection::open(address, &first).await;
    assert_eq!(
        fresh.peer_certificate(),
        second.cert_der(),
        "a new handshake"
    );
    assert_eq!(
        kept.get("/orders").await,
        200,
        "the kept connection serves on"
    );
    assert_eq!(kept.peer_certificate(), first.cert_der());

    // A bad pair (the key of another certificate) keeps the second one.
    let stranger = TestPki::localhost().unwrap();
    std::fs::write(&files.key, stranger.key_pem()).unwrap();
    proxy.reload(&config);
    eventually(DEADLINE, "the bad reload refused", || async {
        proxy.reloads("failure").await == 1
    })
    .await;
    assert!(
        proxy.log().contains("does not match"),
        "the reason is logged:\n{}",
        proxy.log()
    );
    let after = raw_tls::Connection::open(address, &first).await;
    assert_eq!(after.peer_certificate(), second.cert_der());

    let samples = load.finish().await;
    assert!(samples.len() > 20, "{} samples", samples.len());
    assert_eq!(failures(&samples), Vec::<String>::new());
    let metrics = proxy.metrics().await;
    let expiry = format!("healthgate_tls_certificate_expiry_seconds{{listener=\"{address}\"}} ");
    assert!(counter(&metrics, &expiry) > 1_700_000_000, "{metrics}");
}

/// A TLS client connection kept open by hand, to see which certificate a handshake got.
mod raw_tls {
    use mi_sim::tls::TestPki;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::net::SocketAddr;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;

    pub struct Connection(TlsStream<TcpStream>);

    impl Connection {
        /// A handshake with `address` for `localhost`, trusting `ca`'s CA, HTTP/1.1.
        pub async fn open(address: SocketAddr, ca: &TestPki) -> Connection {
            let config = ca.client_config().unwrap();
            let connector = TlsConnector::from(Arc::new(config));
            let tcp = TcpStream::connect(address).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            Connection(connector.connect(name, tcp).await.unwrap())
        }

        /// The leaf the server presented.
        pub fn peer_certificate(&self) -> CertificateDer<'static> {
            let certs = self.0.get_ref().1.peer_certificates().unwrap();
            certs[0].clone().into_owned()
        }

        /// One GET on this connection; its status.
        pub async fn get(&mut self, path: &str) -> u16 {
            let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
            self.0.write_all(request.as_bytes()).await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                self.0.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            let mut body = vec![0; length];
            self.0.read_exact(&mut body).await.unwrap();
            head.split(' ').nth(1).unwrap().parse().unwrap()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reads_the_upstream_ca_again() {
    let dir = tempfile::tempdir().unwrap();
    let node_pki = Arc::new(TestPki::localhost().unwrap());
    let stranger = TestPki::localhost().unwrap();
    let ca = dir.path().join("mi-ca.pem");
    std::fs::write(&ca, stranger.ca_pem()).unwrap();
    let nodes = https_nodes(1, &node_pki);
    let mut config = ProxyConfig::new(&nodes);
    config.https_nodes = true;
    config.extra_yaml = upstream_tls(&ca);
    let proxy = config.start().await;
    eventually(DEADLINE, "not_ready: the CA is the wrong one", || async {
        let status = proxy.status().await;
        node_field(&status, "mi-1", "last_error").contains("unknown issuer")
    })
    .await;
    // The operator mounts the right CA and reloads: the same member is verified anew.
    std::fs::write(&ca, node_pki.ca_pem()).unwrap();
    proxy.reload(&config);
    eventually(DEADLINE, "ready with the new CA", || async {
        proxy.status().await["ready"] == 1
    })
    .await;
    let response = proxy.client.get(proxy.url("/orders")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(proxy.reloads("success").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_passes_tls_on_both_sides_and_a_failed_handshake_is_counted() {
    use mi_sim::ws::{ECHO_PATH, WsClient};
    use rustls::pki_types::ServerName;
    let dir = tempfile::tempdir().unwrap();
    let node_pki = Arc::new(TestPki::localhost().unwrap());
    let node_files = write_pki(&node_pki, &dir.path().join("nodes"));
    let listener_pki = TestPki::localhost().unwrap();
    let files = write_pki(&listener_pki, &dir.path().join("listener"));
    let nodes = https_nodes(1, &node_pki);
    let mut config = ProxyConfig::new(&nodes).with_tls_listener(files.cert, files.key);
    config.https_nodes = true;
    config.extra_yaml = upstream_tls(&node_files.ca);
    let proxy = config.start().await;
    proxy.wait_ready(1).await;
    let address = proxy.tls_listen.unwrap();

    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(listener_pki.client_config().unwrap()));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let mut ws = WsClient::upgrade(tls, "localhost", ECHO_PATH)
        .await
        .unwrap_or_else(|e| panic!("upgrade over TLS: {e}\n{}", proxy.log()));
    for text in ["one", "two"] {
        let echoed = ws.echo_text(text).await.unwrap().expect("an echo");
        assert_eq!(echoed.payload, text.as_bytes());
    }
    assert_eq!(nodes[0].websocket_upgrades(), 1);

    // Plain HTTP to the TLS port: no handshake, counted, and the listener serves on.
    let mut plain = tokio::net::TcpStream::connect(address).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = plain.read_to_end(&mut rest).await;
    eventually(DEADLINE, "the failed handshake counted", || async {
        let metrics = proxy.metrics().await;
        counter(&metrics, "healthgate_tls_handshake_failures_total ") == 1
    })
    .await;
    let client = https_client(&listener_pki);
    let url = format!("https://localhost:{}/after", address.port());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
}
