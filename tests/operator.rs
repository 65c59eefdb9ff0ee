//! Operator actions on the admin listener: who may drain (a token when one is set, loopback
//! included; without one, loopback and never a browser on another site), node names
//! percent-decoded, and drains that survive a reload, and an `--upgrade` hand-over when
//! `drain_file` is set.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(10);
const TOKEN: &str = "0123456789abcdef-operator";

/// POST `path` to the admin listener with exactly these extra header lines (no `Host` unless
/// given), over a raw connection; the answer's status code.
async fn raw_post(admin: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    let mut request = format!("POST {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

fn drained(status: &serde_json::Value, name: &str) -> bool {
    node_field(status, name, "drained") == "true"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_operator_action_needs_it_loopback_included() {
    let nodes = start_nodes(2);
    let mut config = ProxyConfig::new(&nodes);
    config.extra_yaml = format!("admin_token: \"{TOKEN}\"\n");
    let proxy = config.start().await;
    proxy.wait_ready(2).await;
    let host = proxy.admin.to_string();
    let path = "/nodes/mi-1/drain";
    assert_eq!(raw_post(proxy.admin, path, &[("Host", &host)]).await, 401);
    let wrong = format!("Bearer {TOKEN}x");
    assert_eq!(
        raw_post(
            proxy.admin,
            path,
            &[("Host", &host), ("Authorization", &wrong)]
        )
        .await,
        401
    );
    assert!(!drained(&proxy.status().await, "mi-1"));
    // With the token, even a request naming another host acts: the token is the trust.
    let bearer = format!("Bearer {TOKEN}");
    let headers = [
        ("Host", "healthgate.example:9300"),
        ("Authorization", &*bearer),
    ];
    assert_eq!(raw_post(proxy.admin, path, &headers).await, 200);
    assert!(drained(&proxy.status().await, "mi-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_a_page_in_a_browser_cannot_drain() {
    let nodes = start_nodes(2);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(2).await;
    let own_address = proxy.admin.to_string();
    let own = own_address.as_str();
    let own_origin = format!("http://{own}");
    let rebound = format!("attacker.example:{}", proxy.admin.port());
    let path = "/nodes/mi-1/drain";
    for headers in [
        vec![("Host", rebound.as_str())], // DNS rebinding
        vec![("Host", own), ("Origin", "http://attacker.example")], // cross-site form post
        vec![("Host", own), ("Origin", "null")], // sandboxed page or file:
        vec![],                           // no Host at all
    ] {
        assert_eq!(
            raw_post(proxy.admin, path, &headers).await,
            403,
            "{headers:?}"
        );
    }
    assert!(!drained(&proxy.status().await, "mi-1"), "a refusal acted");
    // A same-origin form (the listener's own page) and curl (no Origin) may.
    let same_origin = [("Host", own), ("Origin", own_origin.as_str())];
    assert_eq!(raw_post(proxy.admin, path, &same_origin).await, 200);
    let localhost = format!("localhost:{}", proxy.admin.port());
    let undrain = "/nodes/mi-1/undrain";
    assert_eq!(
        raw_post(proxy.admin, undrain, &[("Host", &localhost)]).await,
        200
    );
    assert!(!drained(&proxy.status().await, "mi-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_names_in_the_path_are_percent_decoded() {
    let nodes = start_nodes(2);
    // The configured name is the one that counts, whatever the simulated node calls itself.
    let config =
        ProxyConfig::new(&nodes[1..]).node("mi 1", nodes[0].traffic_addr(), nodes[0].health_addr());
    let proxy = config.start().await;
    proxy.wait_ready(2).await;
    let host = proxy.admin.to_string();
    let headers = [("Host", host.as_str())];
    assert_eq!(
        raw_post(proxy.admin, "/nodes/mi%201/drain", &headers).await,
        200
    );
    assert!(drained(&proxy.status().await, "mi 1"));
    assert_eq!(
        raw_post(proxy.admin, "/nodes/mi%FF/drain", &headers).await,
        400,
        "not UTF-8"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_survives_a_reload_even_one_that_moves_the_node() {
    let nodes = start_nodes(3);
    let proxy = ProxyConfig::new(&nodes[..2]).start().await;
    proxy.wait_ready(2).await;
    let host = proxy.admin.to_string();
    let headers = [("Host", host.as_str())];
    assert_eq!(
        raw_post(proxy.admin, "/nodes/mi-2/drain", &headers).await,
        200
    );
    // mi-2 now at the third simulated node's addresses: a moved node, a new member.
    let moved =
        ProxyConfig::new(&nodes[..1]).node("mi-2", nodes[2].traffic_addr(), nodes[2].health_addr());
    proxy.reload(&moved);
    eventually(DEADLINE, "reload applied", || async {
        proxy.reloads("success").await == 1
    })
    .await;
    let status = proxy.status().await;
    assert_eq!(
        node_field(&status, "mi-2", "address"),
        nodes[2].traffic_addr().to_string()
    );
    assert!(drained(&status, "mi-2"), "the drain was lost: {status}");
    eventually(DEADLINE, "moved mi-2 ready but not routed", || async {
        proxy.node_state("mi-2").await == "ready"
    })
    .await;
    assert_eq!(proxy.status().await["ready"], 1, "only mi-1 is routed");
    for _ in 0..4 {
        assert_eq!(proxy.get("/api").await, (200, Some("mi-1".into())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_drain_file_a_drain_survives_an_upgrade_hand_over() {
    let nodes = start_nodes(2);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("upgrade.sock");
    let file = dir.path().join("drained");
    let mut config = ProxyConfig::new(&nodes);
    config.extra_yaml = format!(
        "upgrade_socket: \"{}\"\ndrain_file: \"{}\"\n",
        socket.display(),
        file.display()
    );
    let mut old = config.start().await;
    old.wait_ready(2).await;
    let new = old.start_upgrade();
    eventually(DEADLINE, "new process waits on the socket", || async {
        socket.exists()
    })
    .await;
    // Drained on the old process after the new one started: the new one reads the file
    // once the listeners are handed over, so it still sees this.
    let host = old.admin.to_string();
    let headers = [("Host", host.as_str())];
    assert_eq!(
        raw_post(old.admin, "/nodes/mi-1/drain", &headers).await,
        200
    );
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.lines().any(|l| l == "mi-1"), "{written}");
    old.signal("QUIT");
    eventually(DEADLINE, "new process took the listeners", || async {
        new.log().contains("Bootstrap done")
    })
    .await;
    assert!(old.wait_exit(Duration::from_secs(20)).await.is_some());
    // The admin address is the same: the new process answers it now.
    let status = old.status().await;
    assert!(drained(&status, "mi-1"), "{status}\n{}", new.log());
    assert!(
        new.log().contains("node=mi-1 stays drained"),
        "{}",
        new.log()
    );
    eventually(DEADLINE, "mi-2 alone routed", || async {
        let status = old.status().await;
        status["ready"] == 1 && node_field(&status, "mi-2", "state") == "ready"
    })
    .await;
    for _ in 0..4 {
        assert_eq!(old.get("/api").await, (200, Some("mi-2".into())));
    }
}
