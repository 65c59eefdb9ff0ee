//! `mi-sim`: one simulated WSO2 Micro Integrator node (see MI-HEALTH-API.md).
//!
//! SIGTERM or Ctrl-C starts MI's shutdown (traffic port closes first, `/healthz` keeps
//! answering 200 for `--shutdown-grace`, then the process exits); a second signal exits at
//! once. With `--control ADDR` the node can be driven over HTTP (see the README). With
//! `--https` the traffic port serves TLS on 8243 + offset, as MI's HTTPS pass-through does,
//! with a certificate for `localhost` signed by a CA generated at start (or `--tls-cert`).

use clap::Parser;
use mi_sim::tls::{LeafSpec, TestPki, TlsIdentity};
use mi_sim::{Phase, SimNode, SimOptions, control};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// A simulated WSO2 Micro Integrator node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Node name (sent as `x-mi-node` on every traffic response).
    #[arg(long, default_value = "mi-sim")]
    name: String,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// MI port offset: traffic 8280+offset (8243+offset with --https), health 9191+offset.
    #[arg(long, default_value_t = 10)]
    offset: u16,
    /// Explicit traffic port (overrides the offset; 0 = any free port).
    #[arg(long)]
    traffic_port: Option<u16>,
    /// Explicit health port (overrides the offset; 0 = any free port).
    #[arg(long)]
    health_port: Option<u16>,
    /// A CApp that failed to deploy (repeatable).
    #[arg(long = "faulty-capp", value_name = "NAME")]
    faulty_capps: Vec<String>,
    /// Time to deploy CApps before the ports open, e.g. 5s.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    startup_delay: Duration,
    /// After a shutdown starts, how long /healthz keeps answering, e.g. 10s.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// MI version reported by /healthz.
    #[arg(long, default_value = "4.4.0")]
    mi_version: String,
    /// Behave like MI 4.1 and older: no /liveness endpoint (404).
    #[arg(long)]
    no_liveness: bool,
    /// Serve the control API here, e.g. 127.0.0.1:9400.
    #[arg(long, value_name = "ADDR")]
    control: Option<SocketAddr>,
    /// Serve the traffic port over HTTPS (8243+offset) with a certificate for localhost
    /// signed by a CA generated at start.
    #[arg(long)]
    https: bool,
    /// Where --https writes ca.pem, cert.pem and key.pem [default: <temp dir>/mi-sim-<name>].
    #[arg(long, value_name = "DIR", conflicts_with = "tls_cert")]
    tls_dir: Option<PathBuf>,
    /// A further DNS name or IP address for the generated certificate (repeatable).
    #[arg(long = "tls-san", value_name = "NAME", conflicts_with = "tls_cert")]
    tls_sans: Vec<String>,
    /// Serve this certificate chain (PEM, leaf first) instead of generating one; implies --https.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl Args {
    fn https(&self) -> bool {
        self.https || self.tls_cert.is_some()
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn options(args: &Args) -> Result<SimOptions, String> {
    let port = |explicit: Option<u16>, base: u16| -> Result<u16, String> {
        explicit.map_or_else(
            || {
                base.checked_add(args.offset)
                    .ok_or_else(|| format!("--offset {} puts a port past 65535", args.offset))
            },
            Ok,
        )
    };
    let mut options = SimOptions::new(args.name.clone());
    options.ip = args.host;
    let traffic_base = if args.https() { 8243 } else { 8280 };
    options.traffic_port = port(args.traffic_port, traffic_base)?;
    options.health_port = port(args.health_port, 9191)?;
    options.faulty_capps = args.faulty_capps.clone();
    options.startup_delay = args.startup_delay;
    options.shutdown_grace = args.shutdown_grace;
    options.version = args.mi_version.clone();
    options.liveness_endpoint = !args.no_liveness;
    Ok(options)
}

/// The certificate the traffic port serves, and (generated) where its CA was written.
fn tls_identity(args: &Args) -> Result<(TlsIdentity, Option<PathBuf>), String> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let identity = TlsIdentity::from_pem_files(cert, key).map_err(|e| e.to_string())?;
        return Ok((identity, None));
    }
    let mut spec = LeafSpec::localhost();
    // A node bound to another loopback address (127.0.0.2) is reached by that address.
    if !args.host.is_unspecified() && !spec.ips.contains(&args.host) {
        spec = spec.ip(args.host);
    }
    for san in &args.tls_sans {
        spec = match san.parse::<IpAddr>() {
            Ok(ip) => spec.ip(ip),
            Err(_) => spec.dns(san.clone()),
        };
    }
    let pki = Arc::new(TestPki::new(spec).map_err(|e| e.to_string())?);
    let dir = args.tls_dir.clone().unwrap_or_else(|| {
        // One directory per node name, so nodes started side by side keep their own files.
        let name: String = args
            .name
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
                _ => '_',
            })
            .collect();
        std::env::temp_dir().join(format!("mi-sim-{name}"))
    });
    let files = pki
        .write_files(&dir)
        .map_err(|e| format!("--tls-dir {}: {e}", dir.display()))?;
    let identity = TlsIdentity::from_pki(pki).map_err(|e| e.to_string())?;
    Ok((identity, Some(files.ca)))
}

async fn run(args: Args) -> Result<(), String> {
    let mut options = options(&args)?;
    let mut ca_file = None;
    if args.https() {
        let (identity, ca) = tls_identity(&args)?;
        log::info!(
            "{}: HTTPS traffic port serves {}",
            args.name,
            identity.describe()
        );
        options.https = Some(identity);
        ca_file = ca;
    }
    let node = SimNode::start(options).map_err(|e| format!("cannot start: {e}"))?;
    if let Some(addr) = args.control {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("control {addr}: {e}"))?;
        tokio::spawn(control::serve(listener, node.clone()));
    }
    println!(
        "mi-sim {}: traffic {}, health http://{}{}",
        node.name(),
        node.traffic_url(),
        node.health_addr(),
        args.control
            .map(|c| format!(", control http://{c}/"))
            .unwrap_or_default()
    );
    if let Some(ca) = ca_file {
        log::info!(
            "{}: CA certificate {} (curl --cacert {} https://localhost:{}/)",
            node.name(),
            ca.display(),
            ca.display(),
            node.traffic_addr().port()
        );
    }
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    log::info!(
        "{}: shutting down like MI (traffic port first)",
        node.name()
    );
    node.shutdown();
    tokio::select! {
        _ = node.wait_for_phase(Phase::Stopped) => {}
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
