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
//! With `--discovery`, the same nodes are found through DNS instead of listed (`discovery:`
//! entries asking a DNS server in this process, `tests/common/dns.rs`), beside the listed
//! nodes in the same run: the nodes are split over names of at most [`PER_NAME`] addresses
//! (one DNS message holds at most 4094 A records, even over TCP), re-resolved every 5 s, and
//! also every 1 s and every 30 s to isolate what one re-resolution round costs. Each row also
//! says how long healthgate took from its start until every node was ready.
//!
//! Run: `cargo bench --bench health_cost -- [--seconds S] [--nodes N,…] [--discovery]`.

#[path = "../tests/common/dns.rs"]
#[allow(dead_code)] // the tests' fixture: this bench sets names and counts queries only
mod dns;
#[path = "load/peers.rs"]
#[allow(dead_code)]
mod peers;
#[path = "support/procs.rs"]
#[allow(dead_code)] // shared by every bench target; each uses a part
mod procs;

use dns::DnsServer;
use peers::{Nodes, Workdir};
use procs::{
    Proc, cpu_seconds, free_port, http_get, metric_sum, mi_sim, peak_rss_bytes, rss_bytes,
    wait_until,
};
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

/// The most addresses the bench puts under one discovery name: 5000 nodes are two names.
/// One DNS message is at most 65,535 bytes, which holds at most 4094 A records (16 bytes
/// each), so TCP fallback alone cannot carry 5000; 2500 keeps each answer near 40 KB.
const PER_NAME: usize = 2500;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Where healthgate learns its nodes from.
#[derive(Clone, Copy)]
enum Source {
    /// Listed under `nodes`, one entry per address.
    Listed,
    /// Found through `discovery`: this many names, each re-resolved every `interval`.
    Dns { names: usize, interval: Duration },
}

struct Row {
    who: String,
    nodes: usize,
    probes_per_s: f64,
    cpu_share: f64,
    rss: u64,
    peak_rss: u64,
    /// From healthgate's start until every node was ready (healthgate rows only).
    ready_after: Option<Duration>,
    /// Where the nodes came from, and how often DNS was asked in the window.
    source: Option<Source>,
    rounds_per_s: f64,
}

fn run() -> Result<(), String> {
    let mut seconds = 20.0;
    let mut counts = None;
    let mut discovery = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--discovery" => discovery = true,
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--seconds needs a number")?
            }
            "--nodes" => {
                counts = Some(
                    args.next()
                        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
                        .ok_or("--nodes needs a list")?,
                )
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = Workdir(tmp.path().to_path_buf());
    let (traffic_port, health_port) = (free_port(), free_port());
    let sim = start_sim(&dir, traffic_port, health_port)?;
    let mut rows = Vec::new();
    if discovery {
        for n in counts.unwrap_or_else(|| vec![5000]) {
            let mut nodes = Nodes::loopback(n);
            (nodes.traffic_port, nodes.health_port) = (traffic_port, health_port);
            rows.extend(measure_discovery(&dir, &nodes, seconds)?);
        }
        drop(sim);
        print_discovery_report(&rows, seconds);
        return Ok(());
    }
    for n in counts.unwrap_or_else(|| vec![3, 1000, 5000]) {
        let mut nodes = Nodes::loopback(n);
        (nodes.traffic_port, nodes.health_port) = (traffic_port, health_port);
        rows.push(measure(&dir, &nodes, seconds, true, Source::Listed, None)?);
        if n > 3 {
            // Like for like with HAProxy's checks: no connects to the traffic ports.
            rows.push(measure(&dir, &nodes, seconds, false, Source::Listed, None)?);
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

/// The discovery scenario for `nodes`: listed and discovered alike, with and without the
/// traffic-port connects, interleaved; then discovered with re-resolution every 1 s and every
/// 30 s (the difference is the cost of the rounds).
fn measure_discovery(dir: &Workdir, nodes: &Nodes, seconds: f64) -> Result<Vec<Row>, String> {
    // A DNS server in this process, on a runtime of its own (one worker thread: its tasks
    // run while the bench's main thread sleeps or polls).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("dns")
        .enable_all()
        .build()
        .map_err(|e| format!("DNS runtime: {e}"))?;
    let server = runtime.block_on(DnsServer::start());
    let names = nodes.ips.len().div_ceil(PER_NAME);
    for (k, chunk) in nodes.ips.chunks(PER_NAME).enumerate() {
        let ips: Vec<IpAddr> = chunk.iter().map(|ip| IpAddr::V4(*ip)).collect();
        server.set(&dns_name(k), &ips);
    }
    let every = |secs| Source::Dns {
        names,
        interval: Duration::from_secs(secs),
    };
    let plan = [
        (true, Source::Listed),
        (true, every(5)),
        (false, Source::Listed),
        (false, every(5)),
        (true, every(1)),
        (true, every(30)),
    ];
    let mut rows = Vec::new();
    for (tcp, source) in plan {
        rows.push(measure(dir, nodes, seconds, tcp, source, Some(&server))?);
    }
    drop(server);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(rows)
}

/// The `k`th discovery name of the scenario.
fn dns_name(k: usize) -> String {
    format!("mi-{k}.health-cost.test")
}

/// healthgate's config for `nodes` with (`tcp`) or without the traffic-port connects, the
/// nodes listed or found through `dns`.
fn config(
    nodes: &Nodes,
    tcp: bool,
    source: Source,
    dns: Option<&DnsServer>,
    admin: SocketAddr,
) -> Result<String, String> {
    let mut config = match source {
        Source::Listed => peers::healthgate_config(nodes, 1, free_port(), admin),
        Source::Dns { names, interval } => {
            let dns = dns.ok_or("discovery without a DNS server")?;
            let none = Nodes {
                ips: Vec::new(),
                ..nodes.clone()
            };
            let mut config =
                peers::healthgate_config(&none, 1, free_port(), admin).replacen("nodes:\n", "", 1);
            config.push_str(&format!("resolver: \"{}\"\ndiscovery:\n", dns.addr()));
            for k in 0..names {
                config.push_str(&format!(
                    "  - {{ dns: {}, traffic_port: {}, health_port: {}, interval: {}s }}\n",
                    dns_name(k),
                    nodes.traffic_port,
                    nodes.health_port,
                    interval.as_secs()
                ));
            }
            config
        }
    };
    if !tcp {
        config = config.replacen("tcp: true", "tcp: false", 1);
    }
    Ok(config)
}

/// healthgate probing `nodes`, with (`tcp`) or without the traffic-port connects, listed or
/// found through `dns` as `source` says.
fn measure(
    dir: &Workdir,
    nodes: &Nodes,
    seconds: f64,
    tcp: bool,
    source: Source,
    dns: Option<&DnsServer>,
) -> Result<Row, String> {
    let n = nodes.ips.len();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let tag = match source {
        Source::Listed => "listed".to_string(),
        Source::Dns { interval, .. } => format!("dns-{}s", interval.as_secs()),
    };
    let path = dir.0.join(format!("healthgate-{n}-{tcp}-{tag}.yaml"));
    std::fs::write(&path, config(nodes, tcp, source, dns, admin)?).map_err(|e| e.to_string())?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_healthgate"));
    command.arg("--config").arg(&path).env("RUST_LOG", "warn");
    let log = dir.0.join(format!("healthgate-{n}-{tcp}-{tag}.log"));
    let started = Instant::now();
    let mut proc = Proc::spawn("healthgate", command, &log)?;
    // The admin `/healthz` says how many nodes are ready in a line (`ready: N node(s)`): a
    // poll that costs nothing next to a 5000-node `/metrics` (~29 MB of text).
    let ready_line = format!("ready: {n} node(s)");
    wait_until(Duration::from_secs(90), &format!("{n} nodes ready"), || {
        http_get(admin, "/healthz").is_some_and(|(_, body)| body.trim() == ready_line)
    })
    .map_err(|e| format!("{e}; healthgate's log:\n{}", proc.log_tail()))?;
    let ready_after = started.elapsed();
    proc.check_running()?;
    // Let the first liveness round pass before measuring the steady state.
    std::thread::sleep(Duration::from_secs(6));
    let metrics = || {
        http_get(admin, "/metrics")
            .map(|(_, m)| m)
            .unwrap_or_default()
    };
    let counts = |m: &str| {
        let probes = metric_sum(m, "healthgate_probes_total");
        (probes, resolutions(m, "success"), resolutions(m, ""))
    };
    let (m0, c0, t0) = (metrics(), cpu_seconds(proc.pid()), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    // Resident memory while probing, read before the closing scrape (a 5000-node scrape
    // renders ~29 MB of text; that shows in the peak).
    let rss = rss_bytes(proc.pid());
    let (m1, c1, elapsed) = (
        metrics(),
        cpu_seconds(proc.pid()),
        t0.elapsed().as_secs_f64(),
    );
    let ((p0, ok0, all0), (p1, ok1, all1)) = (counts(&m0), counts(&m1));
    let (who, rounds_per_s) = match source {
        Source::Listed => (String::from("healthgate"), 0.0),
        Source::Dns { names, interval } => {
            if all1 - all0 != ok1 - ok0 {
                eprintln!(
                    "  warning: {} of {} resolutions in the window did not succeed",
                    (all1 - all0) - (ok1 - ok0),
                    all1 - all0
                );
            }
            let discovered = metric_sum(&m1, "healthgate_discovery_nodes");
            if discovered != n as f64 {
                return Err(format!("discovery found {discovered} nodes, not {n}"));
            }
            let who = format!(
                "healthgate, discovery ({names} names, every {} s)",
                interval.as_secs()
            );
            (who, (ok1 - ok0) / names as f64 / elapsed)
        }
    };
    let row = Row {
        who: match tcp {
            true => who,
            false => format!("{who}, no TCP check"),
        },
        nodes: n,
        // The two /metrics scrapes are inside the window; their cost is counted too.
        probes_per_s: (p1 - p0) / elapsed,
        cpu_share: (c1 - c0) / elapsed,
        rss,
        peak_rss: peak_rss_bytes(proc.pid()),
        ready_after: Some(ready_after),
        source: Some(source),
        rounds_per_s,
    };
    eprintln!(
        "  {}, {n} nodes: ready after {:.1} s, {:.0} probes/s, {:.1}% of a core, \
         RSS {:.1} MiB (peak {:.1} MiB){}",
        row.who,
        ready_after.as_secs_f64(),
        row.probes_per_s,
        row.cpu_share * 100.0,
        mib(row.rss),
        mib(row.peak_rss),
        match source {
            Source::Listed => String::new(),
            Source::Dns { .. } => format!(", {:.2} DNS rounds/s", row.rounds_per_s),
        }
    );
    Ok(row)
}

/// The sum of `healthgate_discovery_resolutions_total` over every name, of the series with
/// `result="<result>"` (every result when `result` is empty).
fn resolutions(metrics: &str, result: &str) -> f64 {
    let label = format!("result=\"{result}\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("healthgate_discovery_resolutions_total{"))
        .filter(|l| result.is_empty() || l.contains(&label))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum()
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
        who: "HAProxy 2.6".into(),
        nodes: n,
        probes_per_s: n as f64,
        cpu_share: (c1 - c0) / elapsed,
        rss: rss_bytes(proc.pid()),
        peak_rss: peak_rss_bytes(proc.pid()),
        ready_after: None,
        source: None,
        rounds_per_s: 0.0,
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
            .filter(|b| b.nodes < r.nodes && r.who.starts_with(&b.who))
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

fn print_discovery_report(rows: &[Row], seconds: f64) {
    println!(
        "\nHealth checking of nodes listed under `nodes` or found through `discovery` (names of \
         at most {PER_NAME} A records from a DNS server in the bench process, UDP answer \
         truncated, then TCP), no client traffic: readiness every 1 s, liveness + TCP every 5 s \
         (\"no TCP check\": without the traffic-port connects). Ready after: from healthgate's \
         start until every node was ready. CPU over {seconds} s, after all nodes were ready \
         and one liveness round; peak RSS includes start-up and the /metrics scrapes. \
         Targets: < 10% of a core, < 64 MiB.\n"
    );
    println!(
        "| prober | nodes | ready after s | probes/s | DNS rounds/s | CPU (share of one core) | \
         RSS MiB | peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {:.0} | {:.2} | {:.1}% | {:.1} | {:.1} |",
            r.who,
            r.nodes,
            r.ready_after.map_or(f64::NAN, |d| d.as_secs_f64()),
            r.probes_per_s,
            r.rounds_per_s,
            r.cpu_share * 100.0,
            mib(r.rss),
            mib(r.peak_rss)
        );
    }
    // One round's CPU: the 1 s and the 30 s rows differ only in how often DNS is asked.
    let at = |secs| {
        rows.iter().find(|r| {
            matches!(r.source, Some(Source::Dns { interval, .. }) if interval.as_secs() == secs)
        })
    };
    if let (Some(fast), Some(slow)) = (at(1), at(30)) {
        let rounds = fast.rounds_per_s - slow.rounds_per_s;
        if rounds > 0.0 {
            let ms = (fast.cpu_share - slow.cpu_share) / rounds * 1000.0;
            println!(
                "\nOne re-resolution round of {} addresses (every name asked, the same set \
                 found): {ms:.1} ms of CPU = (CPU every 1 s - CPU every 30 s) / (rounds/s \
                 every 1 s - every 30 s) = ({:.1}% - {:.1}%) / ({:.2} - {:.2}).",
                fast.nodes,
                fast.cpu_share * 100.0,
                slow.cpu_share * 100.0,
                fast.rounds_per_s,
                slow.rounds_per_s
            );
        }
    }
}
