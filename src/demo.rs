//! `healthgate demo`: three simulated MI nodes, each with a control API, and the proxy in
//! front of them on a built-in configuration. The out-of-the-box main job.
//!
//! With `--tls`, TLS on both sides: the nodes serve HTTPS on their traffic ports (as MI's
//! 8243 + offset) with leaves of one generated CA, and a TLS listener (ALPN `h2` and
//! `http/1.1`) stands beside the plain one, with another leaf of that CA for `localhost`.
//! The CA and the listener's files are written to a directory of the temporary directory
//! that lives as long as the demo.

use crate::config::Config;
use crate::server;
use mi_sim::tls::{LeafSpec, PkiFiles, TestPki};
use mi_sim::{SimNode, SimOptions, control};
use pingora::server::ExecutionPhase;
use std::error::Error;
use std::fmt::Write;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of `healthgate demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the proxy listens for traffic.
    #[arg(long, default_value = "127.0.0.1:8280")]
    pub listen: SocketAddr,
    /// Where the admin listener (status page, metrics) listens.
    #[arg(long, default_value = "127.0.0.1:9300")]
    pub admin: SocketAddr,
    /// TLS on both sides: HTTPS nodes (one generated CA) and a TLS listener (HTTP/2 and
    /// HTTP/1.1) beside the plain one; prints the CA to give `curl --cacert`.
    #[arg(long)]
    pub tls: bool,
    /// Where the TLS listener listens (with `--tls`).
    #[arg(long, default_value = "127.0.0.1:8443", requires = "tls")]
    pub tls_listen: SocketAddr,
}

/// A simulated node and the address of its control API.
struct DemoNode {
    node: SimNode,
    control: SocketAddr,
}

/// The demo's certificates (`--tls`): the nodes' leaf, and the files the proxy reads.
struct DemoTls {
    /// Served by every node's traffic port.
    nodes: Arc<TestPki>,
    /// `ca.pem` (trusted towards the nodes, and what `curl --cacert` needs) and the
    /// listener's `cert.pem` and `key.pem`.
    files: PkiFiles,
    /// Where the files are; removed when the demo stops.
    dir: TempDir,
}

/// A directory removed when dropped (an early error) or when the server stops.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run the demo until interrupted.
pub fn run(args: DemoArgs) -> Result<(), Box<dyn Error>> {
    let tls = match args.tls {
        true => Some(DemoTls::create(args.tls_listen)?),
        false => None,
    };
    // The simulated nodes live on their own runtime; the proxy runs Pingora's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("mi-sim")
        .enable_all()
        .build()?;
    let nodes = runtime.block_on(start_nodes(tls.as_ref().map(|t| &t.nodes)))?;
    let config = Config::from_yaml("<demo config>", &config_yaml(&args, &nodes, tls.as_ref()))?;
    let built = server::build(&config, &server::Launch::default())?;
    print!("{}", banner(&args, &nodes, tls.as_ref()));
    std::io::stdout().flush()?;
    if let Some(tls) = tls {
        remove_at_shutdown(&built.server, tls.dir);
    }
    built.server.run_forever()
}

impl DemoTls {
    /// A new CA with a leaf for the nodes and one for the listener on `listen`, the latter
    /// written to a new directory of the temporary directory (readable by its owner only).
    fn create(listen: SocketAddr) -> Result<DemoTls, Box<dyn Error>> {
        let name = format!(
            "healthgate-demo-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        );
        let path = std::env::temp_dir().join(name);
        create_private_dir(&path)?;
        let dir = TempDir(path);
        let nodes = Arc::new(TestPki::localhost()?);
        // The listener's leaf names localhost and 127.0.0.1, and the address it listens on
        // if that is another one, so `https://<that address>/` verifies too.
        let mut spec = LeafSpec::localhost();
        let ip = listen.ip();
        if !ip.is_unspecified() && !spec.ips.contains(&ip) {
            spec = spec.ip(ip);
        }
        let files = nodes.issue(spec)?.write_files(&dir.0)?;
        Ok(DemoTls { nodes, files, dir })
    }
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    // Not create_dir_all: the name is new, and a directory already there is not ours.
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// Remove the certificates' directory as the server stops (SIGINT, SIGTERM). Best effort: a
/// process killed with SIGKILL leaves it in the temporary directory.
fn remove_at_shutdown(server: &pingora::server::Server, dir: TempDir) {
    let mut phases = server.watch_execution_phase();
    let watcher = std::thread::Builder::new()
        .name("demo-tls-files".into())
        .spawn(move || {
            while let Ok(phase) = phases.blocking_recv() {
                if matches!(
                    phase,
                    ExecutionPhase::ShutdownStarted | ExecutionPhase::Terminated
                ) {
                    break;
                }
            }
            drop(dir);
        });
    if let Err(e) = watcher {
        log::warn!("the demo's certificates will stay in the temporary directory: {e}");
    }
}

async fn start_nodes(https: Option<&Arc<TestPki>>) -> std::io::Result<Vec<DemoNode>> {
    let mut nodes = Vec::new();
    for name in ["mi-1", "mi-2", "mi-3"] {
        let mut options = SimOptions::new(name);
        if let Some(pki) = https {
            options = options.with_https(pki.clone())?;
        }
        let node = SimNode::start(options)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let control = listener.local_addr()?;
        tokio::spawn(control::serve(listener, node.clone()));
        nodes.push(DemoNode { node, control });
    }
    Ok(nodes)
}

/// The demo's configuration, written as YAML so it goes through the same parser as a file.
fn config_yaml(args: &DemoArgs, nodes: &[DemoNode], tls: Option<&DemoTls>) -> String {
    let listen = match tls {
        None => format!("\"{}\"", args.listen),
        Some(tls) => format!(
            "\n  - \"{}\"\n  - address: \"{}\"\n    tls: {{cert: {}, key: {}}}",
            args.listen,
            args.tls_listen,
            quoted(&tls.files.cert),
            quoted(&tls.files.key)
        ),
    };
    let mut yaml = format!(
        "listen: {listen}\nadmin: \"{}\"\nthreads: 2\nreadiness:\n  period: 1s\n  timeout: 500ms\nliveness:\n  period: 2s\n  timeout: 500ms\n",
        args.admin
    );
    if let Some(tls) = tls {
        // The nodes' leaf names localhost (as MI's default keystore does) and 127.0.0.1.
        let _ = writeln!(
            yaml,
            "upstream_tls:\n  ca: {}\n  sni: localhost",
            quoted(&tls.files.ca)
        );
    }
    // One mapped CApp, so the demo shows CApp-aware routing too.
    yaml.push_str("capps:\n  - name: orders\n    paths: [/orders]\nnodes:\n");
    for n in nodes {
        let _ = writeln!(
            yaml,
            "  - name: {}\n    host: {}\n    traffic_port: {}\n    health_port: {}",
            n.node.name(),
            n.node.traffic_addr().ip(),
            n.node.traffic_addr().port(),
            n.node.health_addr().port()
        );
        if tls.is_some() {
            yaml.push_str("    scheme: https\n");
        }
    }
    yaml
}

/// A path as a YAML double-quoted scalar (JSON's string escapes are YAML's too).
fn quoted(path: &Path) -> String {
    serde_json::to_string(&path.to_string_lossy()).unwrap_or_default()
}

/// A path as one shell word, for the lines to copy.
fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@%,".contains(&b));
    match plain && !text.is_empty() {
        true => text.into_owned(),
        false => format!("'{}'", text.replace('\'', r"'\''")),
    }
}

/// The URL to try the TLS listener with: `localhost` for a loopback or wildcard address
/// (the certificate names it), else the address itself (the certificate names that too).
fn tls_url(listen: SocketAddr) -> String {
    match listen.ip() {
        ip if ip.is_loopback() || ip.is_unspecified() => {
            format!("https://localhost:{}/", listen.port())
        }
        IpAddr::V4(ip) => format!("https://{ip}:{}/", listen.port()),
        IpAddr::V6(ip) => format!("https://[{ip}]:{}/", listen.port()),
    }
}

fn banner(args: &DemoArgs, nodes: &[DemoNode], tls: Option<&DemoTls>) -> String {
    let admin = args.admin;
    let mut text = match tls {
        None => "\nhealthgate demo: three simulated MI nodes behind the proxy\n\n".to_string(),
        Some(_) => {
            "\nhealthgate demo --tls: three simulated MI nodes serving HTTPS behind the proxy\n\n"
                .to_string()
        }
    };
    let _ = writeln!(text, "  proxy:       http://{}/", args.listen);
    if let Some(tls) = tls {
        let _ = write!(
            text,
            "  proxy (TLS): {}   (HTTP/2 and HTTP/1.1)\n  CA:          {}\n               \
             (signed the proxy's and the nodes' certificates; removed when the demo stops)\n",
            tls_url(args.tls_listen),
            tls.files.ca.display()
        );
    }
    let _ = write!(
        text,
        "  status page: http://{admin}/\n  status JSON: http://{admin}/status\n  \
         metrics:     http://{admin}/metrics\n\n"
    );
    for n in nodes {
        let traffic = match tls {
            None => n.node.traffic_addr().to_string(),
            Some(_) => n.node.traffic_url(),
        };
        let _ = writeln!(
            text,
            "  {}: traffic {traffic}, health {}, control http://{}/",
            n.node.name(),
            n.node.health_addr(),
            n.control
        );
    }
    let (second, third) = (
        nodes.get(1).map(|n| n.control),
        nodes.get(2).map(|n| n.control),
    );
    if let (Some(second), Some(third)) = (second, third) {
        let _ = writeln!(text, "\nTry:\n  curl -i http://{}/", args.listen);
        if let Some(tls) = tls {
            let (url, ca) = (tls_url(args.tls_listen), shell_word(&tls.files.ca));
            let _ = write!(
                text,
                "  curl -i --cacert {ca} {url}           # HTTPS to the proxy and on to the nodes\n  \
                 curl -i --http2 --cacert {ca} {url}   # HTTP/2 to the proxy, HTTP/1.1 over TLS to the nodes\n"
            );
        }
        let _ = write!(
            text,
            "  curl -X POST -d bad_1.0.0.car http://{second}/faulty     # mi-2 reports a faulty CApp: out\n  \
             curl -X DELETE http://{second}/faulty                     # and recovers\n  \
             curl -X POST -d orders_1.0.0.car http://{second}/faulty  # a mapped one: mi-2 partly_ready,\n  \
             curl -i http://{listen}/orders/1                          #   /orders no longer goes there\n  \
             curl -X DELETE http://{second}/faulty                     # and recovers\n  \
             curl -X POST http://{third}/shutdown                       # MI-style shutdown of mi-3\n  \
             curl -X POST http://{third}/start                          # mi-3 starts again\n\nCtrl-C stops.\n",
            listen = args.listen
        );
    }
    text
}
