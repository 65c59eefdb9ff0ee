//! `mi-sim`: one simulated WSO2 Micro Integrator node (see MI-HEALTH-API.md).
//!
//! SIGTERM or Ctrl-C starts MI's shutdown (traffic port closes first, `/healthz` keeps
//! answering 200 for `--shutdown-grace`, then the process exits); a second signal exits at
//! once. With `--control ADDR` the node can be driven over HTTP (see the README).

use clap::Parser;
use mi_sim::{Phase, SimNode, SimOptions, control};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
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
    /// MI port offset: traffic 8280+offset, health 9191+offset.
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
    options.traffic_port = port(args.traffic_port, 8280)?;
    options.health_port = port(args.health_port, 9191)?;
    options.faulty_capps = args.faulty_capps.clone();
    options.startup_delay = args.startup_delay;
    options.shutdown_grace = args.shutdown_grace;
    options.version = args.mi_version.clone();
    options.liveness_endpoint = !args.no_liveness;
    Ok(options)
}

async fn run(args: Args) -> Result<(), String> {
    let options = options(&args)?;
    let node = SimNode::start(options).map_err(|e| format!("cannot start: {e}"))?;
    if let Some(addr) = args.control {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("control {addr}: {e}"))?;
        tokio::spawn(control::serve(listener, node.clone()));
    }
    println!(
        "mi-sim {}: traffic {}, health {}{}",
        node.name(),
        node.traffic_addr(),
        node.health_addr(),
        args.control
            .map(|c| format!(", control http://{c}/"))
            .unwrap_or_default()
    );
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
