//! The certificates of the TLS scenarios, generated once per run with mi-sim's test PKI:
//! one CA and leaf for the https nodes, another for the proxies' TLS listeners. Both leaves
//! are ECDSA P-256 for `localhost` and `127.0.0.1`; HAProxy and healthgate present the same
//! listener certificate and verify the nodes against the same CA with SNI `localhost`.

use mi_sim::tls::TestPki;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::peers::{ProxyTls, TlsListener, Workdir};
use super::procs::find_tool;

/// The PEM files of one run.
pub struct Certificates {
    /// The nodes' certificate and key (`mi-sim --tls-cert --tls-key`).
    pub node_cert: PathBuf,
    /// The nodes' private key.
    pub node_key: PathBuf,
    /// The CA the proxies trust for the nodes.
    pub node_ca: PathBuf,
    /// The listeners' certificate (leaf alone, as healthgate and HAProxy both serve it).
    pub listener_cert: PathBuf,
    /// The listeners' private key.
    pub listener_key: PathBuf,
    /// The listeners' certificate and key in one file (HAProxy's `crt`).
    pub listener_pem: PathBuf,
}

impl Certificates {
    /// Generate both PKIs and write their files under `dir`.
    pub fn generate(dir: &Workdir) -> Result<Certificates, String> {
        let nodes = TestPki::localhost().map_err(|e| format!("node certificate: {e}"))?;
        let listener = TestPki::localhost().map_err(|e| format!("listener certificate: {e}"))?;
        let node_files = nodes
            .write_files(&dir.0.join("tls-nodes"))
            .map_err(|e| format!("node certificate files: {e}"))?;
        let listener_files = listener
            .write_files(&dir.0.join("tls-listener"))
            .map_err(|e| format!("listener certificate files: {e}"))?;
        let listener_pem = dir.0.join("tls-listener").join("haproxy.pem");
        std::fs::write(
            &listener_pem,
            format!("{}{}", listener.cert_pem(), listener.key_pem()),
        )
        .map_err(|e| format!("{}: {e}", listener_pem.display()))?;
        Ok(Certificates {
            node_cert: node_files.cert,
            node_key: node_files.key,
            node_ca: node_files.ca,
            listener_cert: listener_files.cert,
            listener_key: listener_files.key,
            listener_pem,
        })
    }

    /// What a proxy gets: a TLS listener on `tls_port` if `client`, https nodes if `nodes`.
    pub fn for_proxy(&self, client: bool, nodes: bool, tls_port: u16) -> ProxyTls {
        ProxyTls {
            listener: client.then(|| TlsListener {
                port: tls_port,
                cert: self.listener_cert.clone(),
                key: self.listener_key.clone(),
                pem: self.listener_pem.clone(),
            }),
            nodes_ca: nodes.then(|| self.node_ca.clone()),
        }
    }
}

/// Counts the `connect()` calls of a process while it runs, with `perf stat` on the
/// `syscalls:sys_enter_connect` tracepoint (exact, per process, and cheap: the kernel only
/// increments a counter). For a proxy under load these are its connections to the node
/// (each one, with https nodes, a TLS handshake) and its few health probes.
pub struct ConnectCounter {
    perf: Child,
    out: PathBuf,
}

impl ConnectCounter {
    /// Start counting `pid`'s connects; `None` where perf is missing or cannot start.
    pub fn start(dir: &Path, pid: u32) -> Option<ConnectCounter> {
        let out = dir.join(format!("connects-{pid}.csv"));
        let perf = Command::new(find_tool("perf")?)
            .args(["stat", "-x", ",", "-e", "syscalls:sys_enter_connect", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // Attaching takes a moment; what the warm-up run does first is not measured anyway.
        std::thread::sleep(Duration::from_millis(200));
        Some(ConnectCounter { perf, out })
    }

    /// Stop counting: the connects since [`ConnectCounter::start`], or `None` where perf
    /// could not count them (no tracepoints, no permission).
    pub fn stop(mut self) -> Option<u64> {
        let pid = Pid::from_raw(i32::try_from(self.perf.id()).ok()?);
        // perf stat prints its counts when interrupted.
        kill(pid, Signal::SIGINT).ok()?;
        self.perf.wait().ok()?;
        let text = std::fs::read_to_string(&self.out).ok()?;
        text.lines()
            .find(|l| l.contains("sys_enter_connect"))
            .and_then(|l| l.split(',').next())
            .and_then(|count| count.trim().parse().ok())
    }
}

impl Drop for ConnectCounter {
    fn drop(&mut self) {
        // Only if `stop` was not reached (an error in between): the child must not outlive
        // the run.
        let _ = self.perf.kill();
        let _ = self.perf.wait();
    }
}

/// CPU seconds this process has used (the harness, and the handshake client it runs on its
/// main thread), its children (the targets) not counted.
pub fn own_cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    use nix::sys::time::TimeValLike;
    getrusage(UsageWho::RUSAGE_SELF).map_or(f64::NAN, |u| {
        (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as f64 / 1e6
    })
}
