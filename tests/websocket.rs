//! WebSocket through healthgate: an `Upgrade` request goes to a ready node, its 101 is the
//! final answer, and the connection becomes a byte tunnel — never retried, counted as
//! `1xx` (not as a failure of the node, even with outlier detection at one failure), and
//! closed after `timeouts.tunnel_idle` without a byte either way. `limits.allow_upgrade:
//! false` refuses upgrades.

mod common;

use common::*;
use mi_sim::ws::{ECHO_PATH, Opcode, WsClient};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_session_is_tunnelled_and_counted_as_1xx() {
    let nodes = start_nodes(1);
    let mut config = ProxyConfig::new(&nodes);
    config.extra_yaml = "timeouts:\n  tunnel_idle: 1s\n  read: 300ms\n\
                         outlier_detection:\n  consecutive_failures: 1\n"
        .into();
    let proxy = config.start().await;
    proxy.wait_ready(1).await;

    let mut ws = WsClient::connect(proxy.listen, ECHO_PATH)
        .await
        .unwrap_or_else(|e| panic!("handshake through healthgate: {e}\n{}", proxy.log()));
    // Messages pass both ways, also after a pause longer than `timeouts.read`: the tunnel
    // has its own idle timeout, not the request's.
    let mut last = Instant::now();
    for (i, text) in ["hello", "über", "third"].into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let echoed = ws.echo_text(text).await.unwrap().expect("an echo");
        last = Instant::now();
        assert_eq!(echoed.opcode, Opcode::Text);
        assert_eq!(echoed.payload, text.as_bytes());
    }
    let metrics = proxy.metrics().await;
    assert_eq!(counter(&metrics, "healthgate_tunnels "), 1, "{metrics}");
    let class =
        |c: &str| format!("healthgate_upstream_requests_total{{node=\"mi-1\",class=\"{c}\"}} ");
    assert_eq!(counter(&metrics, &class("1xx")), 1, "{metrics}");
    assert_eq!(counter(&metrics, &class("error")), 0, "{metrics}");
    assert_eq!(
        counter(
            &metrics,
            "healthgate_outlier_ejections_total{node=\"mi-1\"} "
        ),
        0,
        "an upgrade is no failure of the node"
    );
    assert_eq!(proxy.status().await["ready"], 1);

    // Quiet for longer than `timeouts.tunnel_idle`: closed.
    let end = tokio::time::timeout(Duration::from_secs(10), ws.recv()).await;
    assert!(
        matches!(end, Ok(Ok(None)) | Ok(Err(_))),
        "tunnel still open after 10 s: {end:?}"
    );
    let after = last.elapsed();
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(5),
        "closed after {after:?} quiet"
    );
    eventually(
        Duration::from_secs(5),
        "the tunnel gauge back at 0",
        || async { counter(&proxy.metrics().await, "healthgate_tunnels ") == 0 },
    )
    .await;
    // Plain requests are served as before.
    assert_eq!(proxy.get("/api").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_are_refused_when_not_allowed() {
    let nodes = start_nodes(1);
    let mut config = ProxyConfig::new(&nodes);
    config.extra_yaml = "limits:\n  allow_upgrade: false\n".into();
    let proxy = config.start().await;
    proxy.wait_ready(1).await;
    let refused = WsClient::connect(proxy.listen, ECHO_PATH).await;
    let error = refused.err().expect("refused").to_string();
    assert!(error.contains("403"), "{error}");
    assert_eq!(nodes[0].traffic_started(), 0, "nothing reached the node");
}
