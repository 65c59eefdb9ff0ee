//! CApp-aware routing (`capps`): a node whose `/healthz` lists only mapped faulty CApps is
//! `partly_ready` and keeps serving every other integration; a faulty CApp nobody mapped
//! takes the node out as before; when no node can serve a CApp, its requests get the 503
//! naming it; a reload swaps the map in one table.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);
const ORDERS: &str = "orders_1.0.0.car";

/// Three nodes with `orders` → `/orders` and `billing` → `/billing` mapped.
fn config(nodes: &[mi_sim::SimNode], capps: &str) -> ProxyConfig {
    let mut config = ProxyConfig::new(nodes);
    config.extra_yaml = capps.to_string();
    config
}

const MAP: &str = "capps:\n  - name: orders\n    paths: [/orders, /api/orders/v2]\n  - name: billing\n    paths: [/billing]\n";

/// The samples that started after `from` and finished before `to`.
fn between(samples: &[Sample], from: Instant, to: Instant) -> Vec<Sample> {
    samples
        .iter()
        .filter(|s| s.started >= from && s.finished <= to)
        .cloned()
        .collect()
}

async fn states(proxy: &Proxy) -> Vec<String> {
    let status = proxy.status().await;
    ["mi-1", "mi-2", "mi-3"]
        .iter()
        .map(|n| node_field(&status, n, "state"))
        .collect()
}

/// The issue's scenario: `orders` faulty on two of three nodes, deployed and removed under
/// load. `/orders` goes only to the third node meanwhile, `/billing` to all three, and no
/// request fails at any point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_capp_on_two_nodes_sends_its_paths_to_the_third_and_nothing_fails() {
    let nodes = start_nodes(3);
    let proxy = config(&nodes, MAP).start().await;
    proxy.wait_ready(3).await;
    let orders = Load::start(proxy.url("/orders/42"), 2);
    let nested = Load::start(proxy.url("/api/orders/v2/7?x=1"), 1);
    let billing = Load::start(proxy.url("/billing/7"), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;

    nodes[0].add_faulty_capp(ORDERS);
    nodes[1].add_faulty_capp(ORDERS);
    eventually(DEADLINE, "mi-1 and mi-2 partly ready", || async {
        states(&proxy).await == ["partly_ready", "partly_ready", "ready"]
    })
    .await;
    let partly_from = Instant::now();
    // What an operator sees meanwhile.
    let metrics = proxy.metrics().await;
    for (line, value) in [
        (
            r#"healthgate_backend_state{node="mi-1",state="partly_ready"} "#,
            1,
        ),
        (r#"healthgate_backend_state{node="mi-1",state="ready"} "#, 0),
        (r#"healthgate_backend_state{node="mi-3",state="ready"} "#, 1),
        (r#"healthgate_capp_faulty{node="mi-1",capp="orders"} "#, 1),
        (r#"healthgate_capp_faulty{node="mi-2",capp="orders"} "#, 1),
        (r#"healthgate_capp_ready_nodes{capp="orders"} "#, 1),
        (r#"healthgate_capp_ready_nodes{capp="billing"} "#, 3),
        (
            r#"healthgate_backend_transitions_total{node="mi-1",to="partly_ready"} "#,
            1,
        ),
        ("healthgate_ready_backends ", 3),
    ] {
        assert_eq!(counter(&metrics, line), value, "{line}");
    }
    assert!(
        !metrics.contains(r#"healthgate_capp_faulty{node="mi-3""#),
        "only nodes that list a mapped CApp have the series"
    );
    let status = proxy.status().await;
    assert_eq!(status["capps"][0]["name"], "orders");
    assert_eq!(status["capps"][0]["ready_nodes"], 1);
    assert_eq!(
        status["capps"][0]["faulty_on"],
        serde_json::json!(["mi-1", "mi-2"])
    );
    assert_eq!(status["capps"][1]["ready_nodes"], 3);
    let page = proxy.client.get(proxy.admin_url("/")).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains("partly_ready") && page.contains("data-capp=\"orders\""));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let partly_to = Instant::now();

    nodes[0].set_faulty_capps(Vec::new());
    nodes[1].set_faulty_capps(Vec::new());
    proxy.wait_ready(3).await;
    let healed = Instant::now();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (orders, nested, billing) = (
        orders.finish().await,
        nested.finish().await,
        billing.finish().await,
    );

    for (path, samples) in [
        ("/orders", &orders),
        ("/api/orders/v2", &nested),
        ("/billing", &billing),
    ] {
        let failed = failures(samples);
        assert!(
            failed.is_empty(),
            "{path}: {} failed: {failed:?}",
            failed.len()
        );
    }
    let end = Instant::now();
    for samples in [&orders, &nested] {
        let partly = count_by_node(&between(samples, partly_from, partly_to));
        assert_eq!(
            partly.keys().collect::<Vec<_>>(),
            ["mi-3"],
            "orders while faulty on mi-1 and mi-2: {partly:?}"
        );
        assert!(partly["mi-3"] > 10, "{partly:?}");
        let after = count_by_node(&between(samples, healed, end));
        assert_eq!(
            after.len(),
            3,
            "orders on every node once healed: {after:?}"
        );
    }
    let billing_partly = count_by_node(&between(&billing, partly_from, partly_to));
    assert_eq!(
        billing_partly.len(),
        3,
        "billing on every node meanwhile: {billing_partly:?}"
    );
    let log = proxy.log();
    assert!(
        log.contains("to=partly_ready") && log.contains("orders_1.0.0.car are all mapped"),
        "the flip is logged with its reason:\n{log}"
    );
}

/// The safe default stays: a faulty CApp nobody mapped makes its node `not_ready`, even
/// next to a mapped one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmapped_faulty_capp_takes_the_node_out_as_before() {
    let nodes = start_nodes(3);
    let proxy = config(&nodes, MAP).start().await;
    proxy.wait_ready(3).await;
    nodes[0].add_faulty_capp("shipping_1.0.0.car");
    nodes[1].set_faulty_capps(vec![ORDERS.into(), "shipping_1.0.0.car".into()]);
    nodes[2].add_faulty_capp("billing_2.0.0.car");
    eventually(DEADLINE, "mi-1, mi-2 not ready; mi-3 partly", || async {
        states(&proxy).await == ["not_ready", "not_ready", "partly_ready"]
    })
    .await;
    for path in ["/orders/1", "/anything"] {
        for _ in 0..6 {
            assert_eq!(proxy.get(path).await, (200, Some("mi-3".into())), "{path}");
        }
    }
    // billing is faulty on the only routable node: no node can serve it.
    let r = proxy
        .client
        .get(proxy.url("/billing/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let metrics = proxy.metrics().await;
    assert_eq!(
        counter(
            &metrics,
            r#"healthgate_capp_faulty{node="mi-2",capp="orders"} "#
        ),
        1,
        "a not ready node's mapped CApps are still shown"
    );
    assert!(
        !metrics.contains("capp=\"shipping\""),
        "unmapped CApps get no series"
    );
    assert_eq!(
        counter(&metrics, r#"healthgate_backend_faulty_capps{node="mi-2"} "#),
        2
    );
}

/// `orders` faulty on every node (one bad CApp deployed cluster-wide): `/orders` gets the
/// contract's 503 with a body naming the integration, every other path still flows, and
/// the proxy's own `/healthz` still says nodes are ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capp_faulty_everywhere_gets_a_503_naming_it_while_the_rest_flows() {
    let nodes = start_nodes(3);
    let proxy = config(&nodes, MAP).start().await;
    proxy.wait_ready(3).await;
    for n in &nodes {
        n.add_faulty_capp(ORDERS);
    }
    // Two versions of one CApp are one integration, one series.
    nodes[0].add_faulty_capp("orders_2.0.0.car");
    eventually(DEADLINE, "every node partly ready", || async {
        states(&proxy).await == ["partly_ready"; 3]
    })
    .await;
    for _ in 0..3 {
        let r = proxy
            .client
            .get(proxy.url("/orders/1"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert!(
            r.headers().get("connection").is_none(),
            "the connection stays open: the client's other integrations are served"
        );
        let body = r.text().await.unwrap();
        assert!(body.contains("orders integration"), "{body}");
    }
    let mut by_node = std::collections::BTreeSet::new();
    for path in ["/billing/1", "/other"] {
        for _ in 0..6 {
            let (status, node) = proxy.get(path).await;
            assert_eq!(status, 200, "{path}");
            by_node.insert(node.unwrap());
        }
    }
    assert_eq!(by_node.len(), 3, "every node serves the rest: {by_node:?}");
    let healthz = proxy.client.get(proxy.admin_url("/healthz")).send().await;
    assert_eq!(healthz.unwrap().status(), 200);
    let metrics = proxy.metrics().await;
    assert_eq!(
        counter(&metrics, r#"healthgate_capp_ready_nodes{capp="orders"} "#),
        0
    );
    assert!(counter(&metrics, "healthgate_no_ready_backend_total ") >= 3);
    let series = r#"healthgate_capp_faulty{node="mi-1",capp="orders"} "#;
    assert_eq!(metrics.matches(series).count(), 1, "{metrics}");
}

/// A reload swaps the map: the next requests route by the new one (in one table), and a
/// reload that unmaps a faulty CApp makes its nodes `not_ready`, the safe default. No
/// request fails throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_capp_map_in_one_step() {
    let nodes = start_nodes(3);
    // A long failure streak: what a reload does must not wait for it.
    let config = |capps: &str| {
        let mut c = config(&nodes, capps);
        c.failure_threshold = 10;
        c
    };
    let first = config("capps:\n  - name: orders\n    paths: [/orders]\n");
    let proxy = first.start().await;
    proxy.wait_ready(3).await;
    nodes[0].add_faulty_capp(ORDERS);
    nodes[1].add_faulty_capp(ORDERS);
    eventually(DEADLINE, "mi-1 and mi-2 partly ready", || async {
        states(&proxy).await == ["partly_ready", "partly_ready", "ready"]
    })
    .await;
    let shop = Load::start(proxy.url("/shop/1"), 2);
    let orders = Load::start(proxy.url("/orders/1"), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // orders now serves /shop instead of /orders.
    let moved = config("capps:\n  - name: orders\n    paths: [/shop]\n");
    let before = proxy.status().await["generation"].as_u64().unwrap();
    proxy.reload(&moved);
    eventually(DEADLINE, "reload counted", || async {
        proxy.reloads("success").await == 1
    })
    .await;
    let reloaded = Instant::now();
    let status = proxy.status().await;
    assert_eq!(status["capps"][0]["paths"], serde_json::json!(["/shop"]));
    assert!(status["generation"].as_u64().unwrap() > before);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (shop, orders) = (shop.finish().await, orders.finish().await);
    for (path, samples) in [("/shop", &shop), ("/orders", &orders)] {
        let failed = failures(samples);
        assert!(failed.is_empty(), "{path}: {failed:?}");
    }
    let end = Instant::now();
    let shop_after = count_by_node(&between(&shop, reloaded, end));
    assert_eq!(
        shop_after.keys().collect::<Vec<_>>(),
        ["mi-3"],
        "{shop_after:?}"
    );
    let orders_after = count_by_node(&between(&orders, reloaded, end));
    assert_eq!(
        orders_after.len(),
        3,
        "/orders is unmapped now: {orders_after:?}"
    );

    // No map at all: the faulty CApp is nobody's. At once, its nodes get nothing (their
    // last answer listed a CApp no longer mapped); their next answers make them not ready.
    proxy.reload(&config(""));
    eventually(DEADLINE, "second reload counted", || async {
        proxy.reloads("success").await == 2
    })
    .await;
    for _ in 0..6 {
        assert_eq!(proxy.get("/orders/1").await, (200, Some("mi-3".into())));
        assert_eq!(proxy.get("/other").await, (200, Some("mi-3".into())));
    }
    eventually(DEADLINE, "mi-1 and mi-2 not ready", || async {
        states(&proxy).await == ["not_ready", "not_ready", "ready"]
    })
    .await;
    assert!(proxy.status().await["capps"].as_array().unwrap().is_empty());
    for _ in 0..6 {
        assert_eq!(proxy.get("/orders/1").await, (200, Some("mi-3".into())));
    }
}

/// Under `when_none_ready: any_alive`, a CApp no ready node serves falls back to the alive,
/// not ready nodes that do not list it, never to a node that lists it faulty (its APIs are
/// not deployed there); the other paths are not a fallback at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_alive_falls_back_only_to_nodes_that_do_not_list_the_capp() {
    let nodes = start_nodes(3);
    let mut any_alive = config(&nodes, MAP);
    any_alive.when_none_ready = "any_alive";
    let proxy = any_alive.start().await;
    proxy.wait_ready(3).await;
    nodes[0].add_faulty_capp(ORDERS);
    nodes[1].add_faulty_capp(ORDERS);
    nodes[2].add_faulty_capp("shipping_1.0.0.car");
    eventually(DEADLINE, "two partly ready, mi-3 not ready", || async {
        states(&proxy).await == ["partly_ready", "partly_ready", "not_ready"]
    })
    .await;
    for _ in 0..6 {
        assert_eq!(proxy.get("/orders/1").await, (200, Some("mi-3".into())));
    }
    let mut billing = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (status, node) = proxy.get("/billing/1").await;
        assert_eq!(status, 200);
        billing.insert(node.unwrap());
    }
    assert_eq!(billing, ["mi-1".to_string(), "mi-2".into()].into());
    let status = proxy.status().await;
    assert_eq!(
        status["fallback"], false,
        "the default route has ready nodes"
    );
    assert_eq!(status["capps"][0]["ready_nodes"], 0);

    // With no alive node free of it either, orders gets its 503.
    nodes[2].set_faulty_capps(vec![ORDERS.into(), "shipping_1.0.0.car".into()]);
    eventually(DEADLINE, "orders refused", || async {
        proxy.get("/orders/1").await.0 == 503
    })
    .await;
    assert_eq!(proxy.get("/billing/1").await.0, 200);
}

/// A health port that answers `/liveness` 200, as MI does, and `/healthz` with `healthz`.
async fn health_port(healthz: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 2048];
                let n = stream.read(&mut request).await.unwrap_or(0);
                let answer = match request[..n].starts_with(b"GET /liveness") {
                    true => {
                        "HTTP/1.1 200 OK\r\nContent-Length: 22\r\nConnection: close\r\n\r\n{\"server\" : \"started\"}"
                    }
                    false => healthz,
                };
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// Only a 500 whose list of faulty CApps was read whole, every one mapped, is a partial
/// pass: a list cut short may hide an unmapped CApp, an empty 500 names none, and another
/// status is no MI faulty-CApp answer. Those nodes stay out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_complete_list_of_mapped_capps_makes_a_node_partly_ready() {
    const HEAD: &str = "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n";
    // No Content-Length, ended by the close: MI's framing varies too.
    let complete = health_port(concat!(
        "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n",
        r#"{"status": "not ready, faulty CAPPs detected", "Faulty CAPPs" : ["orders_1.0.0.car"]}"#
    ))
    .await;
    let cut = health_port(
        "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n{\"Faulty CAPPs\" : [\"orders_1.0.0.car\", \"billing_1.0.0.car\",",
    )
    .await;
    let empty = health_port(HEAD).await;
    let other = health_port(
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n{\"Faulty CAPPs\" : [\"orders_1.0.0.car\"]}",
    )
    .await;
    // The simulated nodes only lend their traffic ports.
    let sims = start_nodes(4);
    let traffic = |i: usize| sims[i].traffic_addr();
    let none: &[mi_sim::SimNode] = &[];
    let mut config = ProxyConfig::new(none)
        .node("complete", traffic(0), complete)
        .node("cut", traffic(1), cut)
        .node("empty", traffic(2), empty)
        .node("other", traffic(3), other);
    config.extra_yaml = MAP.to_string();
    let proxy = config.start().await;
    eventually(DEADLINE, "every node judged", || async {
        let s = proxy.status().await;
        ["complete", "cut", "empty", "other"].map(|n| node_field(&s, n, "state"))
            == ["partly_ready", "not_ready", "not_ready", "not_ready"]
    })
    .await;
    for _ in 0..4 {
        assert_eq!(proxy.get("/billing").await, (200, Some("mi-1".into())));
    }
    assert_eq!(proxy.get("/orders").await.0, 503);
}
