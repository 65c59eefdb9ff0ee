//! `healthgate --config F --check` through the real binary: every shipped file passes, and
//! each kind of bad file is rejected with exit code 1 and its own message naming the file,
//! the line/column where known, and the key path — never a panic.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

fn check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_healthgate"))
        .arg("--config")
        .arg(path)
        .arg("--check")
        .output()
        .expect("run healthgate --check")
}

const GOOD_NODES: &str = "nodes:\n  - host: 10.0.0.1\n";

/// (name, file content, what the error must contain: `file:line:column: path: message`).
const BAD: &[(&str, &str, &str)] = &[
    (
        "no-nodes",
        "nodes: []\n",
        ":1:8: nodes: at least one node is needed",
    ),
    (
        "missing-nodes",
        "listen: 127.0.0.1:80\n",
        ":1:1: nodes: at least one node is needed: list `nodes`, or names under `discovery`",
    ),
    (
        "duplicate-name",
        "nodes:\n  - { name: a, host: h1 }\n  - { name: a, host: h2 }\n",
        ":3:13: nodes[1].name: \"a\" is already the name of nodes[0]",
    ),
    (
        "duplicate-traffic-address",
        "nodes:\n  - { host: h1, offset: 10 }\n  - { host: h1, traffic_port: 8290, health_port: 9999 }\n",
        "nodes[1]: traffic address h1:8290 is already used by nodes[0]",
    ),
    (
        "derived-port-out-of-range",
        "nodes:\n  - host: h1\n    offset: 60000\n",
        ":3:13: nodes[0].offset: offset 60000 puts traffic_port at 8280+60000 = 68280, outside 1–65535",
    ),
    (
        "explicit-port-zero",
        "nodes:\n  - host: h1\n    health_port: 0\n",
        ":3:18: nodes[0].health_port: port 0 is outside 1–65535",
    ),
    (
        "threshold-zero",
        "readiness:\n  failure_threshold: 0\nnodes: [{host: h}]\n",
        ":2:22: readiness.failure_threshold: 0 is not allowed; a threshold must be ≥ 1",
    ),
    (
        "zero-duration",
        "liveness:\n  period: 0s\nnodes: [{host: h}]\n",
        ":2:11: liveness.period: must be greater than zero",
    ),
    (
        "huge-duration",
        "readiness:\n  initial_delay: 300000000000years\nnodes: [{host: h}]\n",
        ":2:18: readiness.initial_delay: must be at most 7 days",
    ),
    (
        "timeout-over-period",
        "readiness:\n  period: 1s\n  timeout: 1500ms\nnodes: [{host: h}]\n",
        ":3:12: readiness.timeout: timeout 1s 500ms is longer than period 1s; probes would overlap",
    ),
    (
        "path-without-slash",
        "readiness:\n  path: healthz\nnodes: [{host: h}]\n",
        ":2:9: readiness.path: \"healthz\" must start with '/' and contain no spaces",
    ),
    (
        "listen-not-socket-address",
        "listen: [\"0.0.0.0:8280\", \"localhost\"]\nnodes: [{host: h}]\n",
        "listen[1]: \"localhost\" is not a socket address",
    ),
    (
        "admin-not-socket-address",
        "admin: \"9300\"\nnodes: [{host: h}]\n",
        ":1:8: admin: \"9300\" is not a socket address",
    ),
    (
        "unknown-key",
        "balancing:\n  retrys: 3\nnodes: [{host: h}]\n",
        ":2:3: balancing.retrys: unknown field `retrys`, expected",
    ),
    (
        "bad-duration",
        "readiness:\n  period: 1 fortnight-ish\nnodes: [{host: h}]\n",
        ":2:11: readiness.period: invalid duration \"1 fortnight-ish\"",
    ),
    (
        "unknown-algorithm",
        "balancing:\n  algorithm: random\nnodes: [{host: h}]\n",
        ":2:14: balancing.algorithm: unknown variant `random`",
    ),
    (
        "unknown-none-ready-policy",
        "balancing:\n  when_none_ready: anything\nnodes: [{host: h}]\n",
        ":2:20: balancing.when_none_ready: unknown variant `anything`",
    ),
    (
        "short-admin-token",
        "admin_token: abc\nnodes: [{host: h}]\n",
        ":1:14: admin_token: an admin token must be at least 16 characters",
    ),
    (
        "long-upgrade-socket",
        "nodes: [{host: h}]\nupgrade_socket: \"/run/healthgate/a-very-long-directory-name-that-goes-on-and-on/and-on-and-on/and-on-and-on-and-on/upgrade.sock\"\n",
        ":2:17: upgrade_socket: a Unix socket path must be 1–107 bytes long",
    ),
    (
        "bad-size",
        "limits:\n  max_request_body: 10XB\nnodes: [{host: h}]\n",
        "limits.max_request_body: invalid size \"10XB\"; write it like 65536, 64KiB or 10MiB",
    ),
    (
        "outlier-max-below-base",
        "outlier_detection:\n  base_ejection: 1m\n  max_ejection: 10s\nnodes: [{host: h}]\n",
        ":3:17: outlier_detection.max_ejection: max_ejection 10s is shorter than base_ejection 60s",
    ),
    (
        "unknown-log-level",
        "log:\n  level: loud\nnodes: [{host: h}]\n",
        ":2:10: log.level: unknown variant `loud`",
    ),
    (
        "weight-zero",
        "nodes:\n  - host: h\n    weight: 0\n",
        ":3:13: nodes[0].weight: 0 is out of range; it must be 1–1000",
    ),
    (
        "too-many-retries",
        "balancing:\n  retries: 99\nnodes: [{host: h}]\n",
        ":2:12: balancing.retries: 99 is out of range; it must be 0–15",
    ),
    (
        "threads-zero",
        "threads: 0\nnodes: [{host: h}]\n",
        ":1:10: threads: 0 is out of range",
    ),
    (
        "empty-host",
        "nodes:\n  - host: \"\"\n",
        ":2:11: nodes[0].host: \"\" is not a host name or IP address",
    ),
    ("yaml-syntax", "nodes: [{host: h}\nlisten: x\n", "nodes"),
    ("empty-file", "\n", "the file is empty"),
    (
        "wrong-type",
        "threads: many\nnodes: [{host: h}]\n",
        ":1:10: threads:",
    ),
];

#[test]
fn every_bad_file_gets_its_own_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut messages = BTreeSet::new();
    for (name, content, expected) in BAD {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, content).unwrap();
        let out = check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: exit code; stderr: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name} panicked: {stderr}");
        let file = path.display().to_string();
        assert!(
            stderr.starts_with(&format!("error: {file}")),
            "{name}: names the file: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in: {stderr}"
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name}: one line: {stderr}"
        );
        messages.insert(stderr.replace(&file, "F"));
    }
    assert_eq!(messages.len(), BAD.len(), "every case has its own message");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = check(Path::new("/nonexistent/healthgate.yaml"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("/nonexistent/healthgate.yaml: cannot read"),
        "{stderr}"
    );
}

#[test]
fn shipped_configs_pass_check() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut checked = 0;
    for entry in std::fs::read_dir(conf).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = check(&path);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains(": ok: "));
            checked += 1;
        }
    }
    assert!(checked >= 2);
}

#[test]
fn a_good_minimal_file_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.yaml");
    std::fs::write(&path, GOOD_NODES).unwrap();
    let out = check(&path);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 node(s)"));
}
