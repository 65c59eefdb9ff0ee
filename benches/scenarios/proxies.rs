//! The proxies under test: healthgate and HAProxy 2.6 (two variants), configured with the
//! same health timings, started, asked what they route to, and reloaded, upgraded or stopped.

use crate::nodes::NodeSpec;
use crate::procs::{Proc, find_tool, free_port};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Readiness period (`readiness.period`, HAProxy `inter`).
const PERIOD: &str = "1s";
/// Failed checks before a ready node is taken out (`failure_threshold`, HAProxy `fall`).
const FALL: u32 = 3;
/// Passed checks before a node is let back (`success_threshold`, HAProxy `rise`).
const RISE: u32 = 1;
/// Further attempts on other nodes (`balancing.retries`, HAProxy `retries`).
const RETRIES: u32 = 2;
/// Time in-flight requests get on a graceful stop (`shutdown.grace_period`).
pub const GRACE_SECONDS: u64 = 5;

/// Which proxy, and for HAProxy which configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// healthgate.
    Healthgate,
    /// HAProxy with HTTP checks, retries, redispatch and `retry-on`.
    Checks,
    /// The same plus `observe layer4` (`on-error mark-down`, `shutdown-sessions`).
    Observe,
}

impl Kind {
    /// Every kind, in run order.
    pub const ALL: [Kind; 3] = [Kind::Healthgate, Kind::Checks, Kind::Observe];

    /// Its name in the tables.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Healthgate => "healthgate",
            Kind::Checks => "HAProxy checks",
            Kind::Observe => "HAProxy checks+observe",
        }
    }
}

/// A running proxy.
pub struct Proxy {
    /// Which one.
    pub kind: Kind,
    /// Where clients connect.
    pub traffic: SocketAddr,
    /// Its admin (healthgate) or stats (HAProxy) listener.
    pub admin: Admin,
    config: PathBuf,
    dir: PathBuf,
    /// The process signalled for reload and stop (HAProxy: the master).
    pub process: Proc,
    /// Processes replaced by an upgrade, kept until the run ends so they are cleaned up.
    retired: Vec<Proc>,
    http: reqwest::Client,
}

/// Extra healthgate configuration for one scenario.
#[derive(Clone, Debug, Default)]
pub struct Extra {
    /// `upgrade_socket: PATH` (binary upgrade).
    pub upgrade_socket: Option<PathBuf>,
    /// The `capps` map of [`crate::capps::CAPPS`] (CApp-aware routing). Only the scenario
    /// about it sets this: the other CApp scenarios measure whole-node eviction.
    pub capps: bool,
}

impl Proxy {
    /// Start `kind` in front of `nodes` and wait until it routes to every node.
    pub async fn start(
        kind: Kind,
        dir: &Path,
        nodes: &[NodeSpec],
        extra: &Extra,
    ) -> Result<Proxy, String> {
        let traffic = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let name = match kind {
            Kind::Healthgate => "healthgate",
            _ => "haproxy",
        };
        let config = dir.join(match kind {
            Kind::Healthgate => "healthgate.yaml",
            _ => "haproxy.cfg",
        });
        let log = dir.join(format!("{name}.log"));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| e.to_string())?;
        let paths = ConfigPaths {
            kind,
            traffic,
            admin,
            dir,
            config: &config,
        };
        paths.write(nodes, extra)?;
        let command = match kind {
            Kind::Healthgate => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_healthgate"));
                c.arg("--config").arg(&config);
                c
            }
            _ => {
                let haproxy = find_tool("haproxy").ok_or("haproxy not found")?;
                let mut c = Command::new(haproxy);
                // Master-worker in the foreground: SIGUSR2 reloads, SIGUSR1 stops softly.
                c.args(["-W", "-db", "-f"]).arg(&config);
                c
            }
        };
        let mut proxy = Proxy {
            kind,
            traffic,
            admin: Admin {
                kind,
                addr: admin,
                http: http.clone(),
            },
            process: Proc::spawn_group(name, command, &log)?,
            config,
            dir: dir.to_path_buf(),
            retired: Vec::new(),
            http: http.clone(),
        };
        let want: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let started = Instant::now();
        loop {
            let routed = proxy.admin.routed().await.unwrap_or_default();
            if want.iter().all(|n| routed.get(n) == Some(&true)) && proxy.answers().await {
                return Ok(proxy);
            }
            if proxy.process.exited() || started.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "{} did not start routing to every node; its log:\n{}",
                    kind.label(),
                    proxy.process.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether a GET through the proxy answers 200.
    async fn answers(&self) -> bool {
        let url = format!("http://{}/", self.traffic);
        self.http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    }

    /// Rewrite the configuration file for `nodes` (before a reload).
    pub fn write_config(&self, nodes: &[NodeSpec], extra: &Extra) -> Result<(), String> {
        ConfigPaths {
            kind: self.kind,
            traffic: self.traffic,
            admin: self.admin.addr,
            dir: &self.dir,
            config: &self.config,
        }
        .write(nodes, extra)
    }

    /// HAProxy, before a reload: save server states where `load-server-state-from-file`
    /// finds them (what `socat … "show servers state"` does in a reload script).
    pub fn haproxy_save_state(&self) -> Result<(), String> {
        let state = self.haproxy_cli("show servers state")?;
        std::fs::write(self.dir.join("haproxy.state"), state).map_err(|e| e.to_string())
    }

    /// HAProxy: the pid of the worker serving the stats socket now (`show info`).
    pub fn haproxy_worker(&self) -> Option<u32> {
        let info = self.haproxy_cli("show info").ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("Pid: ")?.trim().parse().ok())
    }

    /// One command on HAProxy's stats socket; its whole answer.
    fn haproxy_cli(&self, command: &str) -> Result<String, String> {
        let socket = self.dir.join("haproxy.sock");
        let mut stream =
            std::os::unix::net::UnixStream::connect(&socket).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(format!("{command}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .map_err(|e| e.to_string())?;
        Ok(answer)
    }

    /// Start `healthgate --config FILE --upgrade` beside the running one; it becomes the
    /// process this proxy signals, the old one is kept for cleanup.
    pub fn spawn_upgrade(&mut self) -> Result<(), String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_healthgate"));
        command.arg("--config").arg(&self.config).arg("--upgrade");
        let new = Proc::spawn_group(
            "healthgate (new)",
            command,
            &self.dir.join("healthgate-new.log"),
        )?;
        let old = std::mem::replace(&mut self.process, new);
        self.retired.push(old);
        Ok(())
    }

    /// The process an upgrade replaced.
    pub fn retired(&mut self) -> Option<&mut Proc> {
        self.retired.last_mut()
    }
}

/// Asks a proxy what it routes to and what it counted; cheap to clone (pollers hold one).
#[derive(Clone)]
pub struct Admin {
    kind: Kind,
    addr: SocketAddr,
    http: reqwest::Client,
}

impl Admin {
    /// What the proxy routes to now, node by node (`None` if it did not answer). healthgate:
    /// `/status` state `ready`, not drained or ejected; HAProxy: stats CSV status `UP…`.
    pub async fn routed(&self) -> Option<BTreeMap<String, bool>> {
        match self.kind {
            Kind::Healthgate => {
                let status: serde_json::Value = self.get("/status").await?.parse().ok()?;
                let nodes = status.get("nodes")?.as_array()?;
                Some(
                    nodes
                        .iter()
                        .filter_map(|n| {
                            let routed = n.get("state")?.as_str()? == "ready"
                                && n.get("drained").and_then(|d| d.as_bool()) != Some(true)
                                && n.get("ejected_for_ms").is_none_or(|e| e.is_null());
                            Some((n.get("name")?.as_str()?.to_string(), routed))
                        })
                        .collect(),
                )
            }
            _ => {
                let csv = self.haproxy_csv().await?;
                Some(
                    csv.into_iter()
                        .map(|r| (r.server, r.status.starts_with("UP")))
                        .collect(),
                )
            }
        }
    }

    /// Attempts per node that got no answer (refused, reset, timed out), by the proxy's own
    /// count: healthgate `upstream_requests_total{class="error"}`, HAProxy
    /// `econ + eresp + wretr + wredis`.
    pub async fn failed_attempts(&self) -> Option<BTreeMap<String, u64>> {
        match self.kind {
            Kind::Healthgate => {
                let metrics = self.get("/metrics").await?;
                let mut out = BTreeMap::new();
                for line in metrics.lines() {
                    let Some(rest) =
                        line.strip_prefix("healthgate_upstream_requests_total{node=\"")
                    else {
                        continue;
                    };
                    let Some((node, rest)) = rest.split_once('"') else {
                        continue;
                    };
                    if rest.starts_with(",class=\"error\"}") {
                        let value = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
                        out.insert(node.to_string(), value as u64);
                    }
                }
                Some(out)
            }
            _ => Some(
                self.haproxy_csv()
                    .await?
                    .into_iter()
                    .map(|r| (r.server, r.failed))
                    .collect(),
            ),
        }
    }

    /// healthgate's `healthgate_config_reloads_total{result="success"}`, if exported.
    pub async fn reloads_succeeded(&self) -> Option<f64> {
        let metrics = self.get("/metrics").await?;
        metrics.lines().find_map(|l| {
            l.strip_prefix("healthgate_config_reloads_total{result=\"success\"} ")?
                .trim()
                .parse()
                .ok()
        })
    }

    async fn get(&self, path: &str) -> Option<String> {
        let url = format!("http://{}{path}", self.addr);
        self.http.get(url).send().await.ok()?.text().await.ok()
    }

    async fn haproxy_csv(&self) -> Option<Vec<CsvRow>> {
        let text = self.get("/stats;csv").await?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (px, sv, st) = (col("pxname")?, col("svname")?, col("status")?);
        // Attempts on the server that failed: connect errors that ended the request (econ),
        // broken answers (eresp), and those retried on it (wretr) or elsewhere (wredis).
        let failures = [col("econ")?, col("eresp")?, col("wretr")?, col("wredis")?];
        let num = |f: &[&str], i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Some(
            lines
                .map(|l| l.split(',').collect::<Vec<_>>())
                .filter(|f| {
                    f.get(px) == Some(&"be") && !matches!(f.get(sv), Some(&"BACKEND") | None)
                })
                .map(|f| CsvRow {
                    server: f[sv].to_string(),
                    status: f.get(st).unwrap_or(&"").to_string(),
                    failed: failures.iter().map(|&i| num(&f, i)).sum(),
                })
                .collect(),
        )
    }
}

/// Where a proxy's configuration goes and what it names.
struct ConfigPaths<'a> {
    kind: Kind,
    traffic: SocketAddr,
    admin: SocketAddr,
    dir: &'a Path,
    config: &'a Path,
}

impl ConfigPaths<'_> {
    fn write(&self, nodes: &[NodeSpec], extra: &Extra) -> Result<(), String> {
        let text = match self.kind {
            Kind::Healthgate => healthgate_config(self.traffic, self.admin, nodes, extra),
            kind => haproxy_config(kind, self.traffic, self.admin, self.dir, nodes),
        };
        std::fs::write(self.config, text).map_err(|e| format!("{}: {e}", self.config.display()))
    }
}

struct CsvRow {
    server: String,
    status: String,
    failed: u64,
}

/// healthgate: MI's documented probe cadence, round robin, the shared thresholds.
fn healthgate_config(
    traffic: SocketAddr,
    admin: SocketAddr,
    nodes: &[NodeSpec],
    extra: &Extra,
) -> String {
    let mut yaml = format!(
        "listen: \"{traffic}\"\nadmin: \"{admin}\"\nthreads: 1\n\
         readiness: {{ path: /healthz, period: {PERIOD}, timeout: 1s, success_threshold: {RISE}, failure_threshold: {FALL} }}\n\
         liveness: {{ path: /liveness, tcp: true, period: 5s, timeout: 1s, failure_threshold: {FALL} }}\n\
         balancing: {{ algorithm: round_robin, retries: {RETRIES}, when_none_ready: reject }}\n\
         timeouts: {{ connect: 1s, read: 30s }}\n\
         shutdown: {{ grace_period: {GRACE_SECONDS}s }}\n\
         log: {{ level: info }}\n"
    );
    if let Some(socket) = &extra.upgrade_socket {
        let _ = writeln!(yaml, "upgrade_socket: \"{}\"", socket.display());
    }
    if extra.capps {
        yaml.push_str("capps:\n");
        for (name, prefix) in crate::capps::CAPPS {
            let _ = writeln!(yaml, "  - {{ name: {name}, paths: [{prefix}] }}");
        }
    }
    yaml.push_str("nodes:\n");
    for n in nodes {
        let _ = writeln!(
            yaml,
            "  - {{ name: {}, host: 127.0.0.1, traffic_port: {}, health_port: {} }}",
            n.name, n.traffic_port, n.health_port
        );
    }
    yaml
}

/// HAProxy as an MI-aware operator writes it: `/healthz` on the health port with the same
/// period and thresholds, retries redispatched to another server, `retry-on` for failures
/// before any answer (GET only: POST is never replayed), seamless reloads (listeners passed
/// over the stats socket, server states saved and reloaded), a bounded soft stop.
fn haproxy_config(
    kind: Kind,
    traffic: SocketAddr,
    stats: SocketAddr,
    dir: &Path,
    nodes: &[NodeSpec],
) -> String {
    let d = dir.display();
    let observe = match kind {
        Kind::Observe => {
            " observe layer4 error-limit 1 on-error mark-down on-marked-down shutdown-sessions"
        }
        _ => "",
    };
    let mut cfg = format!(
        "global\n  nbthread 1\n  maxconn 4000\n  hard-stop-after {hard}s\n\
         \x20 stats socket {d}/haproxy.sock mode 600 level admin expose-fd listeners\n\
         \x20 server-state-file {d}/haproxy.state\n\
         defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n\
         \x20 timeout check 1s\n  option http-keep-alive\n  option forwardfor\n  http-reuse safe\n\
         \x20 retries {RETRIES}\n  option redispatch 1\n  retry-on conn-failure empty-response response-timeout\n\
         \x20 load-server-state-from-file global\n\
         frontend fe\n  bind {traffic}\n  default_backend be\n\
         backend be\n  balance roundrobin\n  http-request disable-l7-retry if METH_POST\n\
         \x20 option httpchk GET /healthz\n  http-check expect status 200\n\
         \x20 default-server check inter {PERIOD} fall {FALL} rise {RISE}{observe}\n",
        hard = GRACE_SECONDS * 2,
    );
    for n in nodes {
        let _ = writeln!(
            cfg,
            "  server {} 127.0.0.1:{} port {}",
            n.name, n.traffic_port, n.health_port
        );
    }
    let _ = write!(
        cfg,
        "listen stats\n  bind {stats}\n  stats enable\n  stats uri /stats\n"
    );
    cfg
}
