//! SIGTERM: the listeners close at once, requests in flight finish within
//! `shutdown.grace_period`, and the process exits as soon as none is left.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_lets_in_flight_requests_finish() {
    let nodes = start_nodes(1);
    let mut config = ProxyConfig::new(&nodes);
    config.shutdown_grace = "6s";
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
    let answered = term.elapsed();
    let exit = proxy
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("healthgate exits");
    let took = term.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(
        took < Duration::from_secs(5),
        "exit after {took:?}: the last request was answered after {answered:?}, so the \
         process should not sleep out the 6 s grace period"
    );
    assert!(
        proxy
            .log()
            .contains("no request in flight: exiting before the grace period ends"),
        "{}",
        proxy.log()
    );
}
