//! DNS discovery against a real DNS server whose answers change at run time (in this
//! process), with MI pods as simulated nodes on distinct loopback addresses (127.0.0.2,
//! 127.0.0.3, …) sharing one pair of ports, as pods behind a headless Service do.
#![allow(clippy::unwrap_used)]

mod common;

use common::dns::DnsServer;
use common::*;
use mi_sim::{SimNode, SimOptions};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(10);
const NAME: &str = "mi-headless.wso2.test";

fn pod_ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Traffic and health ports free on every pod address used by a test.
fn pod_ports() -> (u16, u16) {
    loop {
        let (traffic, health) = (free_port(), free_port());
        let free_everywhere = (2..=9).all(|last| {
            [traffic, health].iter().all(|port| {
                std::net::TcpListener::bind(SocketAddr::new(pod_ip(last), *port)).is_ok()
            })
        });
        if free_everywhere && traffic != health {
            return (traffic, health);
        }
    }
}

/// An MI pod at 127.0.0.`last` on the shared ports.
fn pod(last: u8, (traffic, health): (u16, u16)) -> SimNode {
    let mut options = SimOptions::new(format!("pod-{last}"));
    options.ip = pod_ip(last);
    options.traffic_port = traffic;
    options.health_port = health;
    options.shutdown_grace = Duration::from_secs(1);
    start_node(options)
}

/// A proxy with no configured node and `NAME` under `discovery`, asking `dns`.
async fn discovering_proxy(dns: &DnsServer, (traffic, health): (u16, u16)) -> Proxy {
    let mut config = ProxyConfig::new(&[]);
    config.extra_yaml = format!(
        "resolver: \"{}\"\ndiscovery:\n  - dns: {NAME}\n    traffic_port: {traffic}\n    health_port: {health}\n    interval: 200ms\n",
        dns.addr()
    );
    config.start().await
}

fn node_name(last: u8, (traffic, _): (u16, u16)) -> String {
    format!("127.0.0.{last}:{traffic}")
}

/// The names in `/status`.
async fn listed(proxy: &Proxy) -> Vec<String> {
    let status = proxy.status().await;
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect()
}

fn resolutions(result: &str) -> String {
    format!("healthgate_discovery_resolutions_total{{name=\"{NAME}\",result=\"{result}\"}} ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_up_routes_a_new_pod_once_ready_and_scaling_down_lets_requests_finish() {
    let dns = DnsServer::start().await;
    let ports = pod_ports();
    let (a, b) = (pod(2, ports), pod(3, ports));
    dns.set(NAME, &[pod_ip(2)]);
    let proxy = discovering_proxy(&dns, ports).await;
    proxy.wait_ready(1).await;
    assert_eq!(listed(&proxy).await, vec![node_name(2, ports)]);

    // Scale up: the new address is probed and routed once ready.
    dns.set(NAME, &[pod_ip(2), pod_ip(3)]);
    proxy.wait_ready(2).await;
    for _ in 0..10 {
        let response = proxy.client.get(proxy.url("/orders")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert!(b.traffic_requests() >= 4, "{}", b.traffic_requests());
    let metrics = proxy.metrics().await;
    let nodes = format!("healthgate_discovery_nodes{{name=\"{NAME}\"}} ");
    assert_eq!(counter(&metrics, &nodes), 2, "{metrics}");

    // Scale down while a slow request is in flight to the pod that goes.
    a.set_response_delay(Duration::from_millis(800));
    b.set_response_delay(Duration::from_millis(800));
    let in_flight: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (proxy.client.clone(), proxy.url("/slow"));
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    eventually(DEADLINE, "both pods hold a request", || async {
        a.traffic_started() > a.traffic_requests() && b.traffic_started() > b.traffic_requests()
    })
    .await;
    dns.set(NAME, &[pod_ip(2)]);
    eventually(DEADLINE, "the gone pod left the table", || async {
        listed(&proxy).await == vec![node_name(2, ports)]
    })
    .await;
    for request in in_flight {
        assert_eq!(request.await.unwrap().unwrap(), 200, "{}", proxy.log());
    }
    a.set_response_delay(Duration::ZERO);
    let on_b = b.traffic_started();
    for _ in 0..10 {
        let response = proxy.client.get(proxy.url("/orders")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(b.traffic_started(), on_b, "no new request for the gone pod");
    let metrics = proxy.metrics().await;
    assert_eq!(counter(&metrics, &nodes), 1, "{metrics}");
    assert!(
        !metrics.contains(&node_name(3, ports)),
        "the gone pod's series went:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_replacement_under_load_fails_no_request() {
    let dns = DnsServer::start().await;
    let ports = pod_ports();
    let old = [pod(2, ports), pod(3, ports)];
    dns.set(NAME, &[pod_ip(2), pod_ip(3)]);
    let proxy = discovering_proxy(&dns, ports).await;
    proxy.wait_ready(2).await;
    let load = Load::start(proxy.url("/orders"), 6);

    // As a Deployment's rolling update: a new pod (new IP) comes up and is listed; once it
    // is ready the old one gets SIGTERM (MI closes its traffic port first, `/healthz`
    // still says 200) and leaves the DNS answer.
    let mut new = Vec::new();
    let mut listed_ips = vec![pod_ip(2), pod_ip(3)];
    for (i, replaced) in old.iter().enumerate() {
        let last = 4 + i as u8;
        new.push(pod(last, ports));
        listed_ips.push(pod_ip(last));
        dns.set(NAME, &listed_ips);
        proxy.wait_ready(3).await;
        replaced.shutdown();
        listed_ips.retain(|ip| *ip != pod_ip(2 + i as u8));
        dns.set(NAME, &listed_ips);
        eventually(DEADLINE, "the replaced pod left the table", || async {
            !listed(&proxy)
                .await
                .contains(&node_name(2 + i as u8, ports))
        })
        .await;
    }
    let before: u64 = new.iter().map(SimNode::traffic_requests).sum();
    eventually(DEADLINE, "the new pods serve", || async {
        new.iter().map(SimNode::traffic_requests).sum::<u64>() > before + 50
    })
    .await;
    let samples = load.finish().await;
    assert!(samples.len() > 200, "{} samples", samples.len());
    assert_eq!(failures(&samples), Vec::<String>::new(), "{}", proxy.log());
    assert!(new.iter().all(|p| p.traffic_requests() > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_outage_or_nxdomain_keeps_the_last_known_nodes_and_is_counted() {
    let dns = DnsServer::start().await;
    let ports = pod_ports();
    let _a = pod(2, ports);
    dns.set(NAME, &[pod_ip(2)]);
    let proxy = discovering_proxy(&dns, ports).await;
    proxy.wait_ready(1).await;

    dns.set_down(true);
    eventually(DEADLINE, "failed resolutions counted", || async {
        metric_value(&proxy.metrics().await, &resolutions("error")).unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(proxy.status().await["ready"], 1, "the node stays");
    let response = proxy.client.get(proxy.url("/orders")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    dns.set_down(false);

    dns.remove(NAME);
    eventually(DEADLINE, "NXDOMAIN counted", || async {
        metric_value(&proxy.metrics().await, &resolutions("nxdomain")).unwrap_or(0) >= 2
    })
    .await;
    dns.set(NAME, &[]);
    eventually(DEADLINE, "an empty answer counted", || async {
        metric_value(&proxy.metrics().await, &resolutions("empty")).unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(listed(&proxy).await, vec![node_name(2, ports)]);
    assert_eq!(proxy.status().await["ready"], 1);
    let log = proxy.log();
    let outage_lines = log.matches("the last known 1 node(s) stay").count();
    assert!(
        (1..=4).contains(&outage_lines),
        "one line per change of outcome, not per failed round:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_no_address_at_start_gives_503_until_a_pod_appears() {
    let dns = DnsServer::start().await;
    let ports = pod_ports();
    let proxy = discovering_proxy(&dns, ports).await;
    let response = proxy.client.get(proxy.url("/orders")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(listed(&proxy).await.is_empty());

    let _a = pod(2, ports);
    dns.set(NAME, &[pod_ip(2)]);
    eventually(DEADLINE, "the first pod serves", || async {
        let response = proxy.client.get(proxy.url("/orders")).send().await;
        response.is_ok_and(|r| r.status() == 200)
    })
    .await;

    // `--check` resolves nothing: it says the name is asked at run time.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_healthgate"))
        .arg("--config")
        .arg(proxy.config_path())
        .arg("--check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("resolved at run time"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_host_name_that_moves_is_followed() {
    let dns = DnsServer::start().await;
    let ports = pod_ports();
    let (_a, b) = (pod(2, ports), pod(3, ports));
    dns.set("mi-1.wso2.test", &[pod_ip(2)]);
    let a_addr = |port| SocketAddr::new(pod_ip(2), port);
    let mut config = ProxyConfig::new(&[]).node("mi-1", a_addr(ports.0), a_addr(ports.1));
    config.node_host = Some("mi-1.wso2.test".into());
    config.extra_yaml = format!("resolver: \"{}\"\n", dns.addr());
    let proxy = config.start().await;
    proxy.wait_ready(1).await;
    dns.set("mi-1.wso2.test", &[pod_ip(3)]);
    eventually(DEADLINE, "mi-1 followed to its new address", || async {
        let status = proxy.status().await;
        node_field(&status, "mi-1", "address").starts_with("127.0.0.3") && status["ready"] == 1
    })
    .await;
    let response = proxy.client.get(proxy.url("/orders")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(b.traffic_requests() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_discovery_names_and_max_nodes_caps_a_name() {
    let dns = DnsServer::start().await;
    let ports = pod_ports();
    let _pods: Vec<SimNode> = (2..=5).map(|last| pod(last, ports)).collect();
    dns.set(NAME, &[pod_ip(2), pod_ip(3), pod_ip(4)]);
    dns.set("other.wso2.test", &[pod_ip(5)]);
    let entry = |name: &str, cap: usize| {
        format!(
            "  - dns: {name}\n    traffic_port: {}\n    health_port: {}\n    interval: 200ms\n    max_nodes: {cap}\n",
            ports.0, ports.1
        )
    };
    let mut config = ProxyConfig::new(&[]);
    config.extra_yaml = format!(
        "resolver: \"{}\"\ndiscovery:\n{}",
        dns.addr(),
        entry(NAME, 2)
    );
    let proxy = config.start().await;
    proxy.wait_ready(2).await;
    assert_eq!(listed(&proxy).await.len(), 2, "max_nodes 2 of 3 addresses");
    assert!(
        proxy.log().contains("more than max_nodes 2"),
        "{}",
        proxy.log()
    );

    config.extra_yaml = format!(
        "resolver: \"{}\"\ndiscovery:\n{}",
        dns.addr(),
        entry("other.wso2.test", 10)
    );
    proxy.reload(&config);
    eventually(DEADLINE, "only the other name's pod", || async {
        listed(&proxy).await == vec![node_name(5, ports)]
    })
    .await;
    proxy.wait_ready(1).await;
    let metrics = proxy.metrics().await;
    assert!(
        !metrics.contains(NAME),
        "the removed name's series went:\n{metrics}"
    );
    assert!(metrics.contains("healthgate_discovery_nodes{name=\"other.wso2.test\"} 1"));
}
