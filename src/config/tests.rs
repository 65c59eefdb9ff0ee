use super::*;
use std::path::PathBuf;

fn invalid(yaml: &str) -> Invalid {
    match Config::from_yaml("t.yaml", yaml) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.invalid().cloned().expect("an Invalid error"),
    }
}

#[test]
fn minimal_file_gets_mi_defaults() {
    let c = Config::from_yaml("t.yaml", "nodes:\n  - host: 10.0.0.1\n").expect("valid");
    assert_eq!(c.nodes[0].traffic_port, 8290);
    assert_eq!(c.nodes[0].health_port, 9201);
    assert_eq!(c.nodes[0].name, "10.0.0.1:8290");
    assert_eq!(c.nodes[0].weight, 1);
    assert_eq!(c.listen, defaults::listen());
    assert_eq!(c.admin, defaults::admin());
    assert_eq!(c.readiness, ReadinessConfig::default());
    assert_eq!(c.liveness, LivenessConfig::default());
    assert_eq!(c.balancing.algorithm, Algorithm::RoundRobin);
    assert_eq!(c.balancing.retries, 2);
}

#[test]
fn full_file_is_read_as_written() {
    let yaml = r#"
listen: ["127.0.0.1:1", "127.0.0.1:2"]
admin: "127.0.0.1:3"
threads: 3
nodes:
  - name: a
    host: h1
    offset: 0
  - name: b
    host: h2
    traffic_port: 7000
    health_port: 7001
    weight: 5
readiness:
  path: /healthz/
  period: 500ms
  timeout: 200ms
  initial_delay: 2s
  success_threshold: 2
  failure_threshold: 4
liveness:
  path: /live
  tcp: false
  period: 2m
  timeout: 1s
  failure_threshold: 9
balancing:
  algorithm: least_connections
  retries: 0
"#;
    let c = Config::from_yaml("t.yaml", yaml).expect("valid");
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.threads, 3);
    assert_eq!(
        (c.nodes[0].traffic_port, c.nodes[0].health_port),
        (8280, 9191)
    );
    assert_eq!(
        (c.nodes[1].traffic_port, c.nodes[1].health_port),
        (7000, 7001)
    );
    assert_eq!(c.nodes[1].weight, 5);
    assert_eq!(c.readiness.period, Duration::from_millis(500));
    assert_eq!(c.readiness.initial_delay, Duration::from_secs(2));
    assert_eq!(c.readiness.success_threshold, 2);
    assert!(!c.liveness.tcp);
    assert_eq!(c.liveness.period, Duration::from_secs(120));
    assert_eq!(c.balancing.algorithm, Algorithm::LeastConnections);
    assert_eq!(c.balancing.retries, 0);
}

#[test]
fn single_listen_string_is_accepted() {
    let c = Config::from_yaml("t.yaml", "listen: 127.0.0.1:80\nnodes: [{host: a}]\n").expect("ok");
    let address = "127.0.0.1:80".parse().expect("addr");
    assert_eq!(c.listen, vec![ListenConfig::plain(address)]);
}

#[test]
fn unknown_key_names_its_path_and_line() {
    let e = invalid("nodes:\n  - host: a\n  - host: b\n    ofset: 3\n");
    assert_eq!(e.path, "nodes[1].ofset");
    assert_eq!(e.position, Some((4, 5)));
    assert!(e.message.contains("unknown field `ofset`"), "{e}");
}

#[test]
fn bad_duration_names_its_path() {
    let e = invalid("nodes: [{host: a}]\nreadiness:\n  period: 5 parsecs\n");
    assert_eq!(e.path, "readiness.period");
    assert_eq!(e.position.map(|p| p.0), Some(3));
    assert!(e.message.contains("invalid duration"), "{e}");
}

#[test]
fn derived_port_out_of_range_blames_the_offset() {
    let e = invalid("nodes:\n  - host: a\n    offset: 60000\n");
    assert_eq!(e.path, "nodes[0].offset");
    assert_eq!(e.position, Some((3, 13)));
    assert!(e.message.contains("68280"), "{e}");
}

#[test]
fn timeout_longer_than_period_is_rejected() {
    let e = invalid("nodes: [{host: a}]\nliveness:\n  period: 1s\n  timeout: 2s\n");
    assert_eq!(e.path, "liveness.timeout");
    assert_eq!(e.position.map(|p| p.0), Some(4));
}

#[test]
fn display_has_file_position_path_and_message() {
    let e = Config::from_yaml("conf/x.yaml", "nodes: []\n").expect_err("empty nodes");
    assert_eq!(
        e.to_string(),
        "conf/x.yaml:1:8: nodes: at least one node is needed"
    );
}

#[test]
fn empty_file_is_rejected_clearly() {
    let e = invalid("  \n");
    assert!(e.message.contains("empty"), "{e}");
}

#[test]
fn new_limits_and_timeouts_have_their_defaults() {
    let c = Config::from_yaml("t.yaml", "nodes:\n  - host: 10.0.0.1\n").expect("valid");
    assert_eq!(c.timeouts.client_header, Duration::from_secs(10));
    assert_eq!(c.timeouts.tunnel_idle, Duration::from_secs(3600));
    assert_eq!(c.limits.max_connections, None);
    assert!(c.limits.allow_upgrade);
    assert!(c.forwarded.trusted_proxies.is_empty());
}

#[test]
fn trusted_proxies_take_ranges_and_addresses_and_name_a_bad_entry() {
    let yaml = "forwarded:\n  trusted_proxies: [10.0.0.0/8, 192.168.1.7, \"fd00::/8\"]\nnodes:\n  - host: h\n";
    let c = Config::from_yaml("t.yaml", yaml).expect("valid");
    assert_eq!(c.forwarded.trusted_proxies.len(), 3);
    let e = invalid(
        "forwarded:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.0.0.300\nnodes:\n  - host: h\n",
    );
    assert_eq!(e.path, "forwarded.trusted_proxies[1]");
    assert_eq!(e.position.map(|p| p.0), Some(4));
}

#[test]
fn a_header_limit_the_parser_cannot_hold_is_refused() {
    let e = invalid("limits:\n  max_request_header: 2MiB\nnodes:\n  - host: h\n");
    assert_eq!(e.path, "limits.max_request_header");
    assert!(e.message.contains("at most"), "{}", e.message);
    let e = invalid("limits:\n  max_connections: 0\nnodes:\n  - host: h\n");
    assert_eq!(e.path, "limits.max_connections");
}

#[test]
fn tls_listeners_sit_beside_plain_ones() {
    let yaml = r#"
listen:
  - 127.0.0.1:8280
  - address: 127.0.0.1:8443
    tls: {cert: /etc/hg/cert.pem, key: /etc/hg/key.pem}
nodes: [{host: h}]
"#;
    let c = Config::from_yaml("t.yaml", yaml).expect("valid");
    assert_eq!(c.listen[0].tls, None);
    let tls = c.listen[1].tls.as_ref().expect("tls");
    assert_eq!(tls.cert, PathBuf::from("/etc/hg/cert.pem"));
    assert_eq!(c.listen[1].address.port(), 8443);
    let e = invalid("listen:\n  - address: nowhere\nnodes: [{host: h}]\n");
    assert_eq!(e.path, "listen[0].address");
    let e =
        invalid("listen:\n  - address: 127.0.0.1:1\n    tls: {cert: c.pem}\nnodes: [{host: h}]\n");
    assert!(e.path.starts_with("listen"), "{e}");
}

#[test]
fn https_nodes_default_to_8243_plus_offset_and_merge_their_tls_over_upstream_tls() {
    let yaml = r#"
upstream_tls: {ca: /etc/hg/mi-ca.pem, sni: localhost}
nodes:
  - {host: a, scheme: https}
  - {host: b, scheme: https, offset: 0, tls: {sni: mi-b.internal, verify: false}}
  - {host: c}
"#;
    let c = Config::from_yaml("t.yaml", yaml).expect("valid");
    let (a, b, plain) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    assert_eq!((a.traffic_port, a.health_port), (8253, 9201));
    assert_eq!(b.traffic_port, 8243);
    let a_tls = a.tls.as_ref().expect("https");
    assert_eq!(a_tls.sni.as_deref(), Some("localhost"));
    assert_eq!(a_tls.ca, Some(PathBuf::from("/etc/hg/mi-ca.pem")));
    assert!(a_tls.verify);
    let b_tls = b.tls.as_ref().expect("https");
    assert_eq!(b_tls.sni.as_deref(), Some("mi-b.internal"));
    assert_eq!(b_tls.ca, a_tls.ca, "the CA comes from upstream_tls");
    assert!(!b_tls.verify);
    assert_eq!(
        (plain.scheme, plain.traffic_port, &plain.tls),
        (Scheme::Http, 8290, &None)
    );
}

#[test]
fn an_empty_sni_and_half_a_client_certificate_are_config_errors() {
    let e = invalid("upstream_tls: {sni: \"\"}\nnodes: [{host: h, scheme: https}]\n");
    assert_eq!(e.path, "upstream_tls.sni");
    assert_eq!(e.position.map(|p| p.0), Some(1));
    let e = invalid("nodes:\n  - host: h\n    scheme: https\n    tls: {sni: \"a b\"}\n");
    assert_eq!(e.path, "nodes[0].tls.sni");
    let e = invalid("upstream_tls: {cert: /c.pem}\nnodes: [{host: h, scheme: https}]\n");
    assert_eq!(e.path, "upstream_tls.key");
    let e = invalid("nodes:\n  - host: h\n    tls: {verify: false}\n");
    assert_eq!(e.path, "nodes[0].tls");
    assert!(e.message.contains("scheme: https"), "{e}");
    let e = invalid("nodes: [{host: h, scheme: ftp}]\n");
    assert!(e.path.starts_with("nodes[0].scheme"), "{e}");
}

#[test]
fn discovery_entries_take_node_settings_and_need_no_nodes() {
    let yaml = r#"
resolver: 10.96.0.10
upstream_tls: {sni: localhost}
discovery:
  - dns: MI-Headless.wso2.svc.cluster.local.
    offset: 10
    scheme: https
    interval: 2s
  - dns: mi-plain
    traffic_port: 8290
    health_port: 9201
    max_nodes: 10
"#;
    let c = Config::from_yaml("t.yaml", yaml).expect("valid");
    assert!(c.nodes.is_empty());
    assert_eq!(c.resolver, Some("10.96.0.10:53".parse().expect("addr")));
    let (a, b) = (&c.discovery[0], &c.discovery[1]);
    assert_eq!(a.dns, "mi-headless.wso2.svc.cluster.local");
    assert_eq!((a.traffic_port, a.health_port), (8253, 9201));
    assert_eq!(a.interval, Duration::from_secs(2));
    assert_eq!(a.max_nodes, 5000);
    assert_eq!(
        a.tls.as_ref().and_then(|t| t.sni.as_deref()),
        Some("localhost")
    );
    assert_eq!(
        (b.interval, b.max_nodes, b.scheme),
        (Duration::from_secs(5), 10, Scheme::Http)
    );
    let node = a.node("10.1.2.3".parse().expect("ip"));
    assert_eq!(
        (node.name.as_str(), node.host.as_str()),
        ("10.1.2.3:8253", "10.1.2.3")
    );
    let v6 = b.node("fd00::7".parse().expect("ip"));
    assert_eq!(v6.name, "[fd00::7]:8290");
    assert!(c.summary().contains("1 DNS name(s)") || c.summary().contains("2 DNS name(s)"));
}

#[test]
fn bad_discovery_entries_name_their_key() {
    let e = invalid("discovery:\n  - dns: \"not a name\"\n");
    assert_eq!(e.path, "discovery[0].dns");
    let e = invalid("discovery:\n  - dns: 10.0.0.1\n");
    assert_eq!(e.path, "discovery[0].dns");
    let e = invalid("discovery:\n  - dns: a.b\n    interval: 0s\n");
    assert_eq!(e.path, "discovery[0].interval");
    let e = invalid("discovery:\n  - dns: a.b\n    max_nodes: 0\n");
    assert_eq!(e.path, "discovery[0].max_nodes");
    let e = invalid("discovery:\n  - dns: a.b\n  - dns: A.B.\n");
    assert_eq!(e.path, "discovery[1].dns");
    let e = invalid("resolver: dns.example\ndiscovery:\n  - dns: a.b\n");
    assert_eq!(e.path, "resolver");
    let e = invalid("discovery: []\n");
    assert_eq!(e.path, "nodes");
}

#[test]
fn capps_map_names_to_normalised_path_prefixes() {
    let yaml = "nodes: [{host: h}]\ncapps:\n  - name: orders\n    paths: [/orders/, /api/orders/v2]\n  - name: billing\n    paths: [/billing]\n";
    let c = Config::from_yaml("t.yaml", yaml).expect("valid");
    assert_eq!(c.capps.len(), 2);
    assert_eq!(c.capps[0].name, "orders");
    assert_eq!(c.capps[0].paths, ["/orders", "/api/orders/v2"]);
    assert_eq!(c.capps[1].paths, ["/billing"]);
    let none = Config::from_yaml("t.yaml", "nodes: [{host: h}]\n").expect("valid");
    assert!(none.capps.is_empty());
}

#[test]
fn bad_capps_are_refused_with_the_key_and_line() {
    for (capps, key, says) in [
        (
            "[{name: orders_1.0.0.car, paths: [/o]}]",
            "capps[0].name",
            "\"orders\"",
        ),
        (
            "[{name: \"a b\", paths: [/o]}]",
            "capps[0].name",
            "not a CApp name",
        ),
        ("[{name: o, paths: []}]", "capps[0].paths", "path prefixes"),
        (
            "[{name: o, paths: [orders]}]",
            "capps[0].paths[0]",
            "start with '/'",
        ),
        (
            "[{name: o, paths: [/o?x=1]}]",
            "capps[0].paths[0]",
            "no query",
        ),
        ("[{name: o, paths: [/a//b]}]", "capps[0].paths[0]", "empty"),
        ("[{name: o, paths: [/a/../b]}]", "capps[0].paths[0]", "'..'"),
        (
            "[{name: o, paths: [/café]}]",
            "capps[0].paths[0]",
            "not ASCII",
        ),
        (
            "[{name: o, paths: [/o]}, {name: o, paths: [/p]}]",
            "capps[1].name",
            "already capps[0]",
        ),
        (
            "[{name: o, paths: [/o]}, {name: p, paths: [/o/]}]",
            "capps[1].paths[0]",
            "already mapped to capps[0]",
        ),
        (
            "[{name: o, paths: [/o, /o]}]",
            "capps[0].paths[1]",
            "already mapped",
        ),
        ("[{name: o}]", "capps", "paths"),
    ] {
        let yaml = format!("nodes: [{{host: h}}]\ncapps: {capps}\n");
        let e = match Config::from_yaml("t.yaml", &yaml) {
            Ok(c) => panic!("accepted {capps}: {c:?}"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(key) && e.contains(says), "{capps}: {e}");
        assert!(e.contains("t.yaml:2"), "{capps}: names file and line: {e}");
    }
}
