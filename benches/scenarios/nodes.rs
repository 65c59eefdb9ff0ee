//! The simulated MI nodes: one `mi-sim` process per node on fixed loopback ports, so a node
//! can be killed for real (`kill -9`), stopped MI-style (SIGTERM) and started again on the
//! same ports, and driven through its control API (faulty CApps, hang, delay).

use crate::procs::{Proc, Signal, free_port, mi_sim};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a stopping node keeps answering `/healthz` 200 after its traffic port closed
/// (MI takes several seconds; see MI-HEALTH-API.md).
pub const SHUTDOWN_GRACE: &str = "2s";
/// How long a restarted node "deploys CApps" before its ports open.
pub const STARTUP_DELAY: &str = "1s";

/// One node's fixed identity: its name (the `x-mi-node` header) and its ports.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Node name, as the proxies and the simulator call it.
    pub name: String,
    /// Pass-through (traffic) port.
    pub traffic_port: u16,
    /// Internal API (health) port.
    pub health_port: u16,
    /// The simulator's control API port.
    pub control_port: u16,
}

impl NodeSpec {
    /// A node called `name` on fresh free ports.
    pub fn fresh(name: &str) -> NodeSpec {
        NodeSpec {
            name: name.to_string(),
            traffic_port: free_port(),
            health_port: free_port(),
            control_port: free_port(),
        }
    }

    fn control_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.control_port)
    }

    fn health_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.health_port))
    }
}

/// A running simulated node (its process is killed when this is dropped).
pub struct Node {
    /// Who it is.
    pub spec: NodeSpec,
    process: Option<Proc>,
    log: PathBuf,
}

/// The nodes of one scenario run and the HTTP client that drives them.
pub struct Cluster {
    /// Nodes in configuration order.
    pub nodes: Vec<Node>,
    http: reqwest::Client,
}

impl Cluster {
    /// Start every node in `specs` (no startup delay) and wait until each answers `/healthz` 200.
    pub async fn start(dir: &Path, specs: &[NodeSpec]) -> Result<Cluster, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| e.to_string())?;
        let mut cluster = Cluster {
            nodes: Vec::new(),
            http,
        };
        for spec in specs {
            cluster.add(dir, spec.clone(), "0s").await?;
        }
        Ok(cluster)
    }

    /// Start one more node and wait until it is healthy. A node that cannot bind (another
    /// process took one of its free ports meanwhile) is tried again on fresh ports.
    pub async fn add(&mut self, dir: &Path, spec: NodeSpec, startup: &str) -> Result<(), String> {
        let log = dir.join(format!("{}.log", spec.name));
        let mut spec = spec;
        for attempt in 1.. {
            let process = Some(spawn(&spec, &log, startup)?);
            self.nodes.push(Node {
                spec: spec.clone(),
                process,
                log: log.clone(),
            });
            let i = self.nodes.len() - 1;
            match self.wait_healthy(i, Duration::from_secs(10)).await {
                Ok(_) => return Ok(()),
                Err(e) if attempt == 3 => return Err(e),
                Err(_) => {
                    self.nodes.pop();
                    spec = NodeSpec::fresh(&spec.name);
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Every node's spec.
    pub fn specs(&self) -> Vec<NodeSpec> {
        self.nodes.iter().map(|n| n.spec.clone()).collect()
    }

    /// `kill -9` the node's process.
    pub async fn kill9(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let mut process = node.process.take().ok_or("node not running")?;
        process.signal(Signal::SIGKILL)?;
        process.wait_exit(Duration::from_secs(5)).await;
        Ok(())
    }

    /// SIGTERM: MI's shutdown (traffic port closes first, `/healthz` answers 200 for
    /// [`SHUTDOWN_GRACE`], then the process exits). Returns once the process is gone.
    pub async fn stop_mi_style(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let mut process = node.process.take().ok_or("node not running")?;
        process.signal(Signal::SIGTERM)?;
        if !process.wait_exit(Duration::from_secs(15)).await {
            return Err(format!("{} did not exit after SIGTERM", node.spec.name));
        }
        Ok(())
    }

    /// Start a stopped node again on its ports (with MI's startup delay); returns the moment
    /// it answered `/healthz` 200, seen directly.
    pub async fn restart(&mut self, i: usize) -> Result<Instant, String> {
        let node = &mut self.nodes[i];
        node.process = Some(spawn(&node.spec, &node.log, STARTUP_DELAY)?);
        self.wait_healthy(i, Duration::from_secs(15)).await
    }

    /// Poll the node's `/healthz` until it answers 200; the moment it did.
    pub async fn wait_healthy(&mut self, i: usize, deadline: Duration) -> Result<Instant, String> {
        let name = self.nodes[i].spec.name.clone();
        let url = format!("http://{}/healthz", self.nodes[i].spec.health_addr());
        let started = Instant::now();
        loop {
            let ok = self
                .http
                .get(&url)
                .timeout(Duration::from_millis(200))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ok {
                return Ok(Instant::now());
            }
            let exited = self.nodes[i].process.as_mut().is_none_or(|p| p.exited());
            if exited || started.elapsed() > deadline {
                let why = if exited {
                    "exited"
                } else {
                    "not healthy in time"
                };
                let tail = self.nodes[i]
                    .process
                    .as_ref()
                    .map(|p| p.log_tail())
                    .unwrap_or_default();
                return Err(format!("{name} {why}: {tail}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A control API call, e.g. `("POST", "/faulty", "bad_1.0.0.car")`.
    pub async fn control(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(), String> {
        let spec = &self.nodes[i].spec;
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let response = self
            .http
            .request(method, spec.control_url(path))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("{} control {path}: {e}", spec.name))?;
        if !response.status().is_success() {
            return Err(format!(
                "{} control {path}: {}",
                spec.name,
                response.status()
            ));
        }
        Ok(())
    }
}

fn spawn(spec: &NodeSpec, log: &Path, startup: &str) -> Result<Proc, String> {
    let mut command = Command::new(mi_sim()?);
    command
        .args(["--name", &spec.name, "--host", "127.0.0.1"])
        .args(["--traffic-port", &spec.traffic_port.to_string()])
        .args(["--health-port", &spec.health_port.to_string()])
        .args(["--control", &format!("127.0.0.1:{}", spec.control_port)])
        .args([
            "--shutdown-grace",
            SHUTDOWN_GRACE,
            "--startup-delay",
            startup,
        ])
        .env("RUST_LOG", "warn");
    Proc::spawn_group(&spec.name, command, log)
}
