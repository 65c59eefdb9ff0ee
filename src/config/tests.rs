use super::*;

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
    assert_eq!(c.listen, vec!["127.0.0.1:80".parse().expect("addr")]);
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
