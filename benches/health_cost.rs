//! What health checking costs: healthgate polling 1000 and 5000 nodes at a 1 s readiness
//! period (and 5 s liveness with, and again without, a TCP connect to the traffic port), with
//! no client traffic. Reports probes/s
//! (from healthgate's own `healthgate_probes_total`), CPU share of one core, resident memory
//! now and at its peak (the `/metrics` scrapes the bench makes count, as Prometheus's would),
//! memory per node over the 3-node baseline, and the idle RSS of the proxy.
//!
//! The nodes are one `mi-sim` process bound to the wildcard address; node i is 127.0.x.y, so
//! every node is a distinct address while one simulator answers them all. Nothing but
//! 127.0.0.0/8 is ever contacted.
//!
//! Run: `cargo bench --bench health_cost -- [--seconds S] [--nodes N,…]`.

#[path = "load/peers.rs"]
#[allow(dead_code)]
mod peers;
#[path = "support/procs.rs"]
#[allow(dead_code)] // shared by every bench target; each uses a part
mod procs;

use peers::{Nodes, Workdir};
use procs::{
    Proc, cpu_seconds, free_port, http_get, metric_sum, metric_value, mi_sim, peak_rss_bytes,
    rss_bytes, wait_until,
};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

struct Row {
    who: &'static str,
    nodes: usize,
    probes_per_s: f64,
    cpu_share: f64,
    rss: u64,
    peak_rss: u64,
}

fn run() -> Result<(), String> {
    let mut seconds = 20.0;
    let mut counts = vec![3, 1000, 5000];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--seconds needs a number")?
            }
            "--nodes" => {
                counts = args
                    .next()
                    .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
                    .ok_or("--nodes needs a list")?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = Workdir(tmp.path().to_path_buf());
    let (traffic_port, health_port) = (free_port(), free_port());
    let sim = start_sim(&dir, traffic_port, health_port)?;
    let mut rows = Vec::new();
    for n in counts {
        let mut nodes = Nodes::loopback(n);
        (nodes.traffic_port, nodes.health_port) = (traffic_port, health_port);
        rows.push(measure(&dir, &nodes, seconds, true)?);
        if n > 3 {
            // Like for like with HAProxy's checks: no connects to the traffic ports.
            rows.push(measure(&dir, &nodes, seconds, false)?);
            rows.push(measure_haproxy(&dir, &nodes, seconds)?);
        }
    }
    drop(sim);
    print_report(&rows, seconds);
    Ok(())
}

/// One `mi-sim` answering every 127.x.y.z address on the two ports.
fn start_sim(dir: &Workdir, traffic_port: u16, health_port: u16) -> Result<Proc, String> {
    let mut command = Command::new(mi_sim()?);
    command
        .args(["--name", "sim-all", "--host", "0.0.0.0"])
        .args(["--traffic-port", &traffic_port.to_string()])
        .args(["--health-port", &health_port.to_string()])
        .env("RUST_LOG", "warn");
    let sim = Proc::spawn("mi-sim", command, &dir.0.join("mi-sim.log"))?;
    let health = SocketAddr::from(([127, 0, 0, 1], health_port));
    wait_until(Duration::from_secs(10), "mi-sim", || {
        http_get(health, "/healthz").is_some_and(|(s, _)| s == 200)
    })?;
    Ok(sim)
}

/// healthgate probing `nodes`, with (`tcp`) or without the traffic-port connects.
fn measure(dir: &Workdir, nodes: &Nodes, seconds: f64, tcp: bool) -> Result<Row, String> {
    let n = nodes.ips.len();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut config = peers::healthgate_config(nodes, 1, free_port(), admin);
    if !tcp {
        config = config.replacen("tcp: true", "tcp: false", 1);
    }
    let path = dir.0.join(format!("healthgate-{n}-{tcp}.yaml"));
    std::fs::write(&path, config).map_err(|e| e.to_string())?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_healthgate"));
    command.arg("--config").arg(&path).env("RUST_LOG", "warn");
    let log = dir.0.join(format!("healthgate-{n}-{tcp}.log"));
    let mut proc = Proc::spawn("healthgate", command, &log)?;
    let metrics = || http_get(admin, "/metrics").map(|(_, m)| m);
    wait_until(Duration::from_secs(90), &format!("{n} nodes ready"), || {
        metrics()
            .and_then(|m| metric_value(&m, "healthgate_ready_backends"))
            .is_some_and(|r| r == n as f64)
    })?;
    proc.check_running()?;
    // Let the first liveness round pass before measuring the steady state.
    std::thread::sleep(Duration::from_secs(6));
    let probes = || metrics().map_or(f64::NAN, |m| metric_sum(&m, "healthgate_probes_total"));
    let (p0, c0, t0) = (probes(), cpu_seconds(proc.pid()), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    // Resident memory while probing, read before the closing scrape (a 5000-node scrape
    // renders ~29 MB of text; that shows in the peak).
    let rss = rss_bytes(proc.pid());
    let (p1, c1, elapsed) = (
        probes(),
        cpu_seconds(proc.pid()),
        t0.elapsed().as_secs_f64(),
    );
    let row = Row {
        who: if tcp {
            "healthgate"
        } else {
            "healthgate, no TCP check"
        },
        nodes: n,
        // The two /metrics scrapes are inside the window; their cost is counted too.
        probes_per_s: (p1 - p0) / elapsed,
        cpu_share: (c1 - c0) / elapsed,
        rss,
        peak_rss: peak_rss_bytes(proc.pid()),
    };
    eprintln!(
        "  {}, {n} nodes: {:.0} probes/s, {:.1}% of a core, RSS {:.1} MiB (peak {:.1} MiB)",
        row.who,
        row.probes_per_s,
        row.cpu_share * 100.0,
        mib(row.rss),
        mib(row.peak_rss)
    );
    Ok(row)
}

/// The reference: HAProxy with one thread doing `option httpchk GET /healthz` on every
/// server every second on a fresh connection (its default), which is healthgate's readiness
/// probe without the liveness and TCP rounds. HAProxy does not count its checks, so the rate
/// shown is the configured one (n per second).
fn measure_haproxy(dir: &Workdir, nodes: &Nodes, seconds: f64) -> Result<Row, String> {
    let n = nodes.ips.len();
    let proc = peers::haproxy(dir, nodes, 1, free_port())?;
    // HAProxy spreads its first checks over one interval; let a few intervals pass.
    std::thread::sleep(Duration::from_secs(6));
    let (c0, t0) = (cpu_seconds(proc.pid()), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (c1, elapsed) = (cpu_seconds(proc.pid()), t0.elapsed().as_secs_f64());
    let row = Row {
        who: "HAProxy 2.6",
        nodes: n,
        probes_per_s: n as f64,
        cpu_share: (c1 - c0) / elapsed,
        rss: rss_bytes(proc.pid()),
        peak_rss: peak_rss_bytes(proc.pid()),
    };
    eprintln!(
        "  HAProxy, {n} servers: {:.1}% of a core, RSS {:.1} MiB",
        row.cpu_share * 100.0,
        mib(row.rss)
    );
    Ok(row)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_report(rows: &[Row], seconds: f64) {
    println!(
        "\nHealth checking, no client traffic. healthgate: readiness every 1 s on a kept \
         connection per node, liveness + TCP every 5 s (no /liveness GET while a node passes \
         readiness; \"no TCP check\": without the traffic-port connects, like for like with \
         HAProxy's checks). HAProxy: httpchk every 1 s on a fresh connection (rate as configured). \
         CPU over {seconds} s; peak RSS includes start-up and the /metrics scrapes.\n"
    );
    println!(
        "| prober | nodes | probes/s | CPU (share of one core) | CPU µs per probe | RSS MiB | \
         peak RSS MiB | RSS per node over baseline |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let base = rows
        .iter()
        .filter(|r| r.who == "healthgate")
        .min_by_key(|r| r.nodes);
    for r in rows {
        let per_node = base
            .filter(|b| b.nodes < r.nodes && r.who.starts_with(b.who))
            .map(|b| {
                let extra = r.rss.saturating_sub(b.rss) as f64 / (r.nodes - b.nodes) as f64;
                format!("{:.1} KiB", extra / 1024.0)
            })
            .unwrap_or_else(|| {
                if r.who == "healthgate" {
                    "(baseline)"
                } else {
                    ""
                }
                .into()
            });
        println!(
            "| {} | {} | {:.0} | {:.1}% | {:.0} | {:.1} | {:.1} | {per_node} |",
            r.who,
            r.nodes,
            r.probes_per_s,
            r.cpu_share * 100.0,
            r.cpu_share * 1e6 / r.probes_per_s.max(1.0),
            mib(r.rss),
            mib(r.peak_rss)
        );
    }
}
