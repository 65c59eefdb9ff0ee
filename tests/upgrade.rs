//! Zero-downtime binary upgrade: a second healthgate started with `--upgrade` takes the
//! listening sockets over when the running one gets SIGQUIT; under continuous load no
//! request fails, and the old process exits once its requests are done.

mod common;

use common::{Load, ProxyConfig, eventually, failures, start_nodes};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_under_load_loses_no_request() {
    let nodes = start_nodes(2);
    let sockets = tempfile::tempdir().expect("temp dir");
    let socket = sockets.path().join("upgrade.sock");
    let mut config = ProxyConfig::new(&nodes);
    config.extra_yaml = format!("upgrade_socket: \"{}\"\n", socket.display());
    let mut old = config.start().await;
    old.wait_ready(2).await;
    let load = Load::start(old.url("/orders"), 4);
    eventually(Duration::from_secs(5), "load flowing", || async {
        nodes[0].traffic_requests() > 50
    })
    .await;

    let mut new = old.start_upgrade();
    eventually(
        Duration::from_secs(10),
        "new process waits on the socket",
        || async { socket.exists() },
    )
    .await;
    old.signal("QUIT");
    eventually(
        Duration::from_secs(10),
        "new process took the listeners",
        || async { new.log().contains("Bootstrap done") },
    )
    .await;
    // The old process keeps serving a few seconds beside the new one, then drains and
    // exits (Pingora: 5 s, then the grace period).
    let exit = old.wait_exit(Duration::from_secs(20)).await;
    assert!(exit.is_some(), "old process still running:\n{}", old.log());
    assert!(
        new.child.try_wait().expect("try_wait").is_none(),
        "{}",
        new.log()
    );
    let served_before = nodes[0].traffic_requests() + nodes[1].traffic_requests();
    eventually(Duration::from_secs(5), "new process serves", || async {
        nodes[0].traffic_requests() + nodes[1].traffic_requests() > served_before + 100
    })
    .await;
    let samples = load.finish().await;
    assert!(samples.len() > 500, "{} requests", samples.len());
    assert!(failures(&samples).is_empty(), "{:?}", failures(&samples));
    // The admin listener came over too.
    assert_eq!(old.ready_nodes().await.len(), 2);
    assert!(
        new.log().contains("health checking 2 node(s)"),
        "{}",
        new.log()
    );
}
