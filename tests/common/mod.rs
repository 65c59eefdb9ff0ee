//! Shared fixtures: simulated MI nodes in the test process, the real `healthgate` binary as a
//! child process on free loopback ports, polling with deadlines, and a load generator.
#![allow(dead_code, clippy::unwrap_used)]

pub mod dns;
mod load;
pub mod raw;

#[allow(unused_imports)] // not every test binary uses the load generator
pub use load::{Load, Sample, count_by_node, failures};

use mi_sim::{SimNode, SimOptions};
use serde_json::Value;
use std::fmt::Write as _;
use std::future::Future;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Poll `condition` every 20 ms until it holds; panic with `what` after `deadline`.
pub async fn eventually<F, Fut>(deadline: Duration, what: &str, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return started.elapsed();
        }
        if started.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Start `count` ready simulated nodes named mi-1, mi-2, …
pub fn start_nodes(count: usize) -> Vec<SimNode> {
    (1..=count)
        .map(|i| start_node(SimOptions::new(format!("mi-{i}"))))
        .collect()
}

/// Start one simulated node.
pub fn start_node(options: SimOptions) -> SimNode {
    SimNode::start(options).expect("simulated node starts")
}

/// Fluent builder of a healthgate configuration for tests: fast probe periods by default.
#[derive(Clone)]
pub struct ProxyConfig {
    nodes: Vec<(String, SocketAddr, SocketAddr, u32)>,
    pub algorithm: &'static str,
    pub retries: usize,
    pub readiness_period: &'static str,
    pub readiness_timeout: &'static str,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    pub liveness_period: &'static str,
    pub liveness_timeout: &'static str,
    pub liveness_failure_threshold: u32,
    pub readiness_initial_delay: &'static str,
    pub liveness_initial_delay: &'static str,
    pub threads: usize,
    pub access_log: bool,
    pub when_none_ready: &'static str,
    pub shutdown_grace: &'static str,
    pub slow_start: Option<&'static str>,
    pub read_timeout: Option<&'static str>,
    /// More top-level YAML, put before `nodes:`.
    pub extra_yaml: String,
    /// Run the proxy under `ulimit -n` of this (soft and hard, so it cannot raise it).
    pub open_files: Option<usize>,
    /// Every node gets `scheme: https` (give `upstream_tls` in `extra_yaml`).
    pub https_nodes: bool,
    /// A TLS listener beside the plain one: its address, certificate and key files.
    pub tls_listener: Option<(SocketAddr, PathBuf, PathBuf)>,
    /// Every node's `host` is this name instead of its IP address.
    pub node_host: Option<String>,
}

impl ProxyConfig {
    /// A config over these nodes (weight 1 each).
    pub fn new(nodes: &[SimNode]) -> ProxyConfig {
        ProxyConfig {
            nodes: nodes
                .iter()
                .map(|n| (n.name().to_string(), n.traffic_addr(), n.health_addr(), 1))
                .collect(),
            algorithm: "round_robin",
            retries: 2,
            readiness_period: "200ms",
            readiness_timeout: "200ms",
            success_threshold: 1,
            failure_threshold: 2,
            liveness_period: "500ms",
            liveness_timeout: "300ms",
            liveness_failure_threshold: 2,
            readiness_initial_delay: "0s",
            liveness_initial_delay: "0s",
            threads: 2,
            access_log: false,
            when_none_ready: "reject",
            shutdown_grace: "1s",
            slow_start: None,
            read_timeout: None,
            extra_yaml: String::new(),
            open_files: None,
            https_nodes: false,
            tls_listener: None,
            node_host: None,
        }
    }

    /// Add a TLS listener on a free port with this certificate and key.
    pub fn with_tls_listener(mut self, cert: PathBuf, key: PathBuf) -> ProxyConfig {
        let address = ([127, 0, 0, 1], free_port()).into();
        self.tls_listener = Some((address, cert, key));
        self
    }

    /// Add a node by addresses (for hand-made health endpoints).
    pub fn node(mut self, name: &str, traffic: SocketAddr, health: SocketAddr) -> ProxyConfig {
        self.nodes.push((name.to_string(), traffic, health, 1));
        self
    }

    /// Set the weights, in node order.
    pub fn weights(mut self, weights: &[u32]) -> ProxyConfig {
        for (node, w) in self.nodes.iter_mut().zip(weights) {
            node.3 = *w;
        }
        self
    }

    /// Use this algorithm.
    pub fn algorithm(mut self, algorithm: &'static str) -> ProxyConfig {
        self.algorithm = algorithm;
        self
    }

    /// The YAML text for the given listener addresses.
    pub fn yaml(&self, listen: SocketAddr, admin: SocketAddr) -> String {
        let mut y = format!(
            "listen: \"{listen}\"\nadmin: \"{admin}\"\nthreads: {}\n\
             readiness:\n  period: {}\n  timeout: {}\n  success_threshold: {}\n  failure_threshold: {}\n  initial_delay: {}\n\
             liveness:\n  period: {}\n  timeout: {}\n  failure_threshold: {}\n  initial_delay: {}\n\
             balancing:\n  algorithm: {}\n  retries: {}\n  when_none_ready: {}\nlog:\n  access_log: {}\nshutdown:\n  grace_period: {}\nnodes:\n",
            self.threads,
            self.readiness_period,
            self.readiness_timeout,
            self.success_threshold,
            self.failure_threshold,
            self.readiness_initial_delay,
            self.liveness_period,
            self.liveness_timeout,
            self.liveness_failure_threshold,
            self.liveness_initial_delay,
            self.algorithm,
            self.retries,
            self.when_none_ready,
            self.access_log,
            self.shutdown_grace
        );
        if let Some(ramp) = self.slow_start {
            y = y.replace(
                "balancing:\n",
                &format!("balancing:\n  slow_start: {ramp}\n"),
            );
        }
        if let Some(read) = self.read_timeout {
            y = y.replacen(
                "nodes:\n",
                &format!("timeouts:\n  read: {read}\nnodes:\n"),
                1,
            );
        }
        y = y.replacen("nodes:\n", &format!("{}nodes:\n", self.extra_yaml), 1);
        if let Some((address, cert, key)) = &self.tls_listener {
            let listeners = format!(
                "listen:\n  - \"{listen}\"\n  - address: \"{address}\"\n    tls:\n      cert: {}\n      key: {}\n",
                cert.display(),
                key.display()
            );
            y = y.replacen(&format!("listen: \"{listen}\"\n"), &listeners, 1);
        }
        for (name, traffic, health, weight) in &self.nodes {
            let _ = writeln!(
                y,
                "  - name: {name}\n    host: {}\n    traffic_port: {}\n    health_port: {}\n    weight: {weight}",
                self.node_host
                    .clone()
                    .unwrap_or_else(|| traffic.ip().to_string()),
                traffic.port(),
                health.port()
            );
            if self.https_nodes {
                y.push_str("    scheme: https\n");
            }
        }
        y
    }

    /// Write the config and start the real proxy binary; waits until its admin port answers
    /// and its traffic listener accepts.
    pub async fn start(&self) -> Proxy {
        for _attempt in 0..3 {
            let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let yaml = self.yaml(listen, admin);
            if let Some(mut proxy) = Proxy::spawn(&yaml, listen, admin, self.open_files).await {
                proxy.tls_listen = self.tls_listener.as_ref().map(|t| t.0);
                return proxy;
            }
        }
        panic!("healthgate did not start in three attempts");
    }
}

/// The real healthgate binary running as a child process.
pub struct Proxy {
    child: Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// The TLS listener, if the configuration has one.
    pub tls_listen: Option<SocketAddr>,
    dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

impl Proxy {
    async fn spawn(
        yaml: &str,
        listen: SocketAddr,
        admin: SocketAddr,
        open_files: Option<usize>,
    ) -> Option<Proxy> {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("healthgate.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let log = std::fs::File::create(dir.path().join("healthgate.log")).expect("log file");
        let binary = env!("CARGO_BIN_EXE_healthgate");
        let mut command = match open_files {
            // The shell sets the limit and becomes healthgate (same pid).
            Some(n) => {
                let mut shell = Command::new("sh");
                let script = format!("ulimit -n {n} && exec \"$0\" \"$@\"");
                shell.arg("-c").arg(script).arg(binary);
                shell
            }
            None => Command::new(binary),
        };
        let child = command
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn,healthgate=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn healthgate");
        let mut proxy = Proxy {
            child,
            listen,
            admin,
            tls_listen: None,
            dir,
            client: client(),
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_exit)) = proxy.child.try_wait() {
                eprintln!("healthgate exited early:\n{}", proxy.log());
                return None;
            }
            // Pingora starts the admin and traffic services on their own threads, so the
            // admin can answer before the traffic listener is bound: wait for both.
            let admin_up = match proxy.client.get(proxy.admin_url("/liveness")).send().await {
                Ok(r) => r.status() == 200,
                Err(_) => false,
            };
            if admin_up && tokio::net::TcpStream::connect(listen).await.is_ok() {
                return Some(proxy);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "healthgate admin did not answer within 20s:\n{}",
            proxy.log()
        );
    }

    /// A URL on the traffic listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The proxy's log so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Where the proxy's log is written.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("healthgate.log")
    }

    /// Send SIGTERM, as a service manager stopping healthgate would.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Send the signal `name` (e.g. `HUP`) to the process.
    pub fn signal(&self, name: &str) {
        let signal: nix::sys::signal::Signal = format!("SIG{name}").parse().expect("a signal name");
        let pid = nix::unistd::Pid::from_raw(self.child.id().try_into().expect("a pid"));
        nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("kill -{name}: {e}"));
    }

    /// The configuration file the process reads.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("healthgate.yaml")
    }

    /// Start a second healthgate with `--upgrade` on the same file: it waits on the
    /// configured `upgrade_socket` for this process's listeners (send this one SIGQUIT).
    /// Its log goes to `healthgate-upgraded.log` beside the first one's.
    pub fn start_upgrade(&self) -> Upgraded {
        let log_path = self.dir.path().join("healthgate-upgraded.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_healthgate"))
            .arg("--config")
            .arg(self.config_path())
            .arg("--upgrade")
            .env("RUST_LOG", "warn,healthgate=debug,pingora_core=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn healthgate --upgrade");
        Upgraded { child, log_path }
    }

    /// Write `config` (on this proxy's listeners) over the file and send SIGHUP.
    pub fn reload(&self, config: &ProxyConfig) {
        std::fs::write(self.config_path(), config.yaml(self.listen, self.admin))
            .expect("rewrite config");
        self.signal("HUP");
    }

    /// `healthgate_config_reloads_total{result}` now.
    pub async fn reloads(&self, result: &str) -> u64 {
        let text = self.metrics().await;
        let line = format!("healthgate_config_reloads_total{{result=\"{result}\"}} ");
        metric_value(&text, &line).unwrap_or(0)
    }

    /// Wait (polling, with a deadline) for the process to exit; its exit status, or `None`
    /// if it is still running at the deadline.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Descriptors the process has open now with a number below `limit` (its open-file
    /// limit): one it inherited above the limit (the test runner's, e.g.) takes no place
    /// under it.
    pub fn open_files_below(&self, limit: usize) -> usize {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return 0;
        };
        dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<usize>().ok())
            .filter(|&fd| fd < limit)
            .count()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/status` as JSON.
    pub async fn status(&self) -> Value {
        self.client
            .get(self.admin_url("/status"))
            .send()
            .await
            .expect("status request")
            .json()
            .await
            .expect("status json")
    }

    /// The state of node `name` in `/status`.
    pub async fn node_state(&self, name: &str) -> String {
        node_field(&self.status().await, name, "state")
    }

    /// Wait until node `name` is in `state` according to `/status`.
    pub async fn wait_state(&self, name: &str, state: &str) {
        eventually(
            Duration::from_secs(10),
            &format!("{name} {state}"),
            || async { self.node_state(name).await == state },
        )
        .await;
    }

    /// Names of the ready nodes according to `/status`.
    pub async fn ready_nodes(&self) -> Vec<String> {
        self.status().await["nodes"]
            .as_array()
            .expect("nodes array")
            .iter()
            .filter(|n| n["state"] == "ready")
            .map(|n| n["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Wait until exactly `count` nodes are ready.
    pub async fn wait_ready(&self, count: usize) {
        eventually(
            Duration::from_secs(10),
            &format!("{count} ready node(s)"),
            || async { self.ready_nodes().await.len() == count },
        )
        .await;
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics text")
    }

    /// One GET through the proxy: (status, `x-mi-node`).
    pub async fn get(&self, path: &str) -> (u16, Option<String>) {
        send(&self.client, reqwest::Method::GET, self.url(path)).await
    }

    /// Resident memory of the proxy process in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- healthgate log ----\n{}", self.log());
        }
    }
}

/// A healthgate started with `--upgrade`; killed when dropped.
pub struct Upgraded {
    pub child: Child,
    log_path: PathBuf,
}

impl Upgraded {
    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Upgraded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- upgraded healthgate log ----\n{}", self.log());
        }
    }
}

/// The value of the series whose line starts with `line_start` (name, labels and the
/// space) in a metrics text, if there is one.
pub fn metric_value(text: &str, line_start: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

/// Like [`metric_value`], for a series that must be there.
pub fn counter(text: &str, line_start: &str) -> u64 {
    metric_value(text, line_start).unwrap_or_else(|| panic!("no {line_start:?} in\n{text}"))
}

/// A field of node `name` in a `/status` document, as a string.
pub fn node_field(status: &Value, name: &str, field: &str) -> String {
    status["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["name"] == name))
        .map(|n| match &n[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

/// An HTTP client with connection reuse and a generous timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()
        .expect("http client")
}

/// One request to `url` (with a one-byte body unless GET or HEAD): (status, `x-mi-node`).
pub async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
) -> (u16, Option<String>) {
    let bodiless = method == reqwest::Method::GET || method == reqwest::Method::HEAD;
    let mut request = client.request(method, url);
    if !bodiless {
        request = request.body("x");
    }
    let r = request.send().await.expect("proxy request");
    let node = r
        .headers()
        .get("x-mi-node")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (r.status().as_u16(), node)
}

/// [`send`] in a task of its own, on a connection of its own.
pub fn spawn_send(
    method: reqwest::Method,
    url: String,
) -> tokio::task::JoinHandle<(u16, Option<String>)> {
    tokio::spawn(async move { send(&client(), method, url).await })
}
