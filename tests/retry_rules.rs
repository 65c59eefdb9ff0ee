//! What may be sent twice. A request that never reached a node (refused connect) goes to
//! another node whatever its method (tests/routing.rs). One that reached a node and lost its
//! answer goes to another node only if it is idempotent: a GET is answered by the other
//! node, a POST fails with 502 and the other node never sees it.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_reached_a_node_is_never_replayed() {
    let nodes = start_nodes(2);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(2).await;
    // mi-1 holds its answers, so the POST sent to it is still open when it dies.
    nodes[0].set_response_delay(Duration::from_secs(2));

    // Round robin: of two POSTs, one goes to each node.
    let posts: Vec<_> = (0..2)
        .map(|_| spawn_send(reqwest::Method::POST, proxy.url("/orders")))
        .collect();
    eventually(
        Duration::from_secs(5),
        "one POST open on mi-1, one answered by mi-2",
        || async {
            nodes[0].traffic_started() > nodes[0].traffic_requests()
                && nodes[1].traffic_requests() == 1
        },
    )
    .await;
    let mi2_before = nodes[1].traffic_started();
    nodes[0].crash();

    let mut answers = Vec::new();
    for p in posts {
        answers.push(p.await.unwrap());
    }
    answers.sort();
    assert_eq!(
        answers,
        [(200, Some("mi-2".to_string())), (502, None)],
        "the POST that reached mi-1 fails; it is not sent again"
    );
    // Give a (wrong) replay every chance to arrive before counting.
    eventually(Duration::from_secs(3), "mi-1 evicted", || async {
        proxy.node_state("mi-1").await == "dead"
    })
    .await;
    assert_eq!(
        nodes[1].traffic_started(),
        mi2_before,
        "mi-2 never received the POST meant for mi-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_request_that_lost_its_answer_goes_to_another_node() {
    let nodes = start_nodes(2);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(2).await;
    nodes[0].set_response_delay(Duration::from_secs(2));

    let gets: Vec<_> = (0..2)
        .map(|_| spawn_send(reqwest::Method::GET, proxy.url("/orders/7")))
        .collect();
    eventually(
        Duration::from_secs(5),
        "one GET open on mi-1, one answered by mi-2",
        || async {
            nodes[0].traffic_started() > nodes[0].traffic_requests()
                && nodes[1].traffic_requests() == 1
        },
    )
    .await;
    nodes[0].crash();
    let mut answers = Vec::new();
    for g in gets {
        answers.push(g.await.unwrap());
    }
    assert_eq!(
        answers,
        [
            (200, Some("mi-2".to_string())),
            (200, Some("mi-2".to_string()))
        ],
        "the GET that lost its answer on mi-1 is answered by mi-2"
    );
    assert_eq!(nodes[1].traffic_requests(), 2);
}
