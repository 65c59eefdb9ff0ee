//! SIGTERM: the listeners close at once, requests in flight finish within
//! `shutdown.grace_period`, then the process exits.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_lets_in_flight_requests_finish() {
    let nodes = start_nodes(1);
    let mut config = ProxyConfig::new(&nodes);
    config.shutdown_grace = "2s";
    let mut proxy = config.start().await;
    proxy.wait_ready(1).await;

    nodes[0].set_response_delay(Duration::from_millis(1200));
    let slow = {
        let (client, url) = (client(), proxy.url("/slow"));
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
    };
    eventually(Duration::from_secs(5), "the request in flight", || async {
        nodes[0].traffic_started() > nodes[0].traffic_requests()
    })
    .await;

    let term = Instant::now();
    proxy.terminate();
    let listen = proxy.listen;
    eventually(Duration::from_secs(2), "listener closed", || async move {
        std::net::TcpStream::connect(listen).is_err()
    })
    .await;
    assert_eq!(
        slow.await
            .unwrap()
            .expect("the in-flight request completes"),
        200
    );
    let exit = proxy
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("healthgate exits after the grace period");
    let took = term.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(9),
        "exit {exit:?} after {took:?}: grace 2 s, then at most 5 s for the runtimes"
    );
}
