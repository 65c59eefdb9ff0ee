//! Side-by-side load comparison: direct to a backend, HAProxy, NGINX, healthgate, a bare
//! forwarder (the floor, `floor.rs`) and two request-loop experiments for healthgate's hot
//! path (`pingora_loop.rs`, candidate (b); `hyper_loop.rs`, candidate (c); healthgate itself is
//! candidate (a)), measured in one run, interleaved A/B/A/B over several rounds, with the same
//! worker threads, the same connections and the same load tool (`wrk`). The TLS scenarios
//! (`tls-*`, issue 14) put HAProxy and healthgate beside each other with TLS: terminating it
//! with the same certificate, re-encrypting to the same https `mi-sim` node, or both; new
//! connections per request come from a client of this bench (`handshakes.rs`).
//!
//! Run: `scripts/bench.sh` (installs nginx, haproxy and wrk if missing), or
//! `cargo bench --bench load -- [--quick] [--rounds N] [--seconds S] [--only NAME,…]`.
//! Prints, per scenario, the medians of requests/s, p50/p99/p99.9 latency and CPU seconds per
//! 100k requests, and the ratios of healthgate to HAProxy, the direct connection and the floor,
//! and of candidates (b) and (c) to HAProxy and to healthgate; writes the same as Markdown to
//! `target/bench/load.md`. The TLS scenarios print CPU µs per request, the proxy's
//! connections to the node per request (`perf stat` on the connect tracepoint), the issue's
//! targets, and the CPU a new connection costs (docs/bench/tls.md).

// The floor and the experiments run inside this binary; they get healthgate's allocator so
// they compare like for like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod floor;
mod handshakes;
mod hyper_loop;
mod idle;
mod peers;
mod pingora_loop;
#[path = "../support/procs.rs"]
#[allow(dead_code)] // shared by every bench target; each uses a part
mod procs;
mod tls;
mod wrk;

use peers::{Nodes, Workdir};
use procs::{Proc, cpu_seconds, free_port};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;
use wrk::{Load, Measured};

/// What serves the traffic behind the proxies.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Nginx,
    MiSim,
}

/// Who the load goes to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Direct,
    Haproxy,
    Nginx,
    Healthgate,
    Floor,
    /// Candidate (b): our own request loop on Pingora's HTTP/1 sessions.
    PingoraLoop,
    /// Candidate (c): hyper's HTTP/1 server and client on Pingora's listeners.
    HyperLoop,
    /// Candidate (a): a healthgate build still on Pingora's `ProxyHttp`, from the binary
    /// `HEALTHGATE_BASELINE` names (left out when unset).
    Baseline,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Haproxy => "HAProxy 2.6",
            Target::Nginx => "NGINX",
            Target::Healthgate => "healthgate",
            Target::Floor => "floor (bare forwarder)",
            Target::PingoraLoop => "loop on Pingora sessions (b)",
            Target::HyperLoop => "hyper loop (c)",
            Target::Baseline => "healthgate on ProxyHttp (a)",
        }
    }
}

/// Where TLS is, and how the load opens connections.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Wire {
    /// Plain HTTP on both sides, wrk's keep-alive connections.
    Plain,
    /// HTTPS clients (wrk, keep-alive: a handshake per connection only), https nodes.
    TlsKeepAlive,
    /// HTTPS clients opening a new connection, with a full handshake, for every request
    /// (`handshakes.rs`), https nodes.
    TlsHandshakes,
    /// Plain clients (wrk, keep-alive), https nodes: the node side alone.
    TlsUpstreamOnly,
}

impl Wire {
    fn client_tls(self) -> bool {
        matches!(self, Wire::TlsKeepAlive | Wire::TlsHandshakes)
    }

    fn nodes_tls(self) -> bool {
        self != Wire::Plain
    }

    fn describe(self) -> &'static str {
        match self {
            Wire::Plain => "",
            Wire::TlsKeepAlive => ", HTTPS keep-alive → https node",
            Wire::TlsHandshakes => {
                ", a new HTTPS connection (full handshake) per request → https node; \
                 req/s = new handshakes/s"
            }
            Wire::TlsUpstreamOnly => ", plain HTTP keep-alive → https node",
        }
    }
}

/// One comparison: a backend, a node count, proxy threads and a request shape.
struct Scenario {
    name: &'static str,
    backend: Backend,
    nodes: usize,
    threads: usize,
    body_bytes: usize,
    wire: Wire,
    targets: &'static [Target],
}

const ALL: &[Target] = &[
    Target::Direct,
    Target::Haproxy,
    Target::Nginx,
    Target::Healthgate,
    Target::Floor,
    Target::PingoraLoop,
    Target::HyperLoop,
    Target::Baseline,
];
const PROXIES: &[Target] = &[
    Target::Haproxy,
    Target::Nginx,
    Target::Healthgate,
    Target::Floor,
    Target::PingoraLoop,
    Target::HyperLoop,
    Target::Baseline,
];
/// The targets that speak TLS: mi-sim directly, HAProxy, healthgate.
const TLS: &[Target] = &[Target::Direct, Target::Haproxy, Target::Healthgate];
/// The proxies that speak TLS.
const TLS_PROXIES: &[Target] = &[Target::Haproxy, Target::Healthgate];

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "get-1thread",
        backend: Backend::Nginx,
        nodes: 3,
        threads: 1,
        body_bytes: 0,
        wire: Wire::Plain,
        targets: ALL,
    },
    Scenario {
        name: "get-2threads",
        backend: Backend::Nginx,
        nodes: 3,
        threads: 2,
        body_bytes: 0,
        wire: Wire::Plain,
        targets: ALL,
    },
    Scenario {
        name: "nodes-100",
        backend: Backend::Nginx,
        nodes: 100,
        threads: 1,
        body_bytes: 0,
        wire: Wire::Plain,
        targets: PROXIES,
    },
    Scenario {
        name: "nodes-1000",
        backend: Backend::Nginx,
        nodes: 1000,
        threads: 1,
        body_bytes: 0,
        wire: Wire::Plain,
        targets: PROXIES,
    },
    Scenario {
        name: "post-1KiB",
        backend: Backend::Nginx,
        nodes: 3,
        threads: 1,
        body_bytes: 1024,
        wire: Wire::Plain,
        targets: ALL,
    },
    Scenario {
        name: "post-64KiB",
        backend: Backend::Nginx,
        nodes: 3,
        threads: 1,
        body_bytes: 65536,
        wire: Wire::Plain,
        targets: ALL,
    },
    Scenario {
        name: "mi-sim",
        backend: Backend::MiSim,
        nodes: 1,
        threads: 1,
        body_bytes: 0,
        wire: Wire::Plain,
        targets: ALL,
    },
    Scenario {
        name: "tls-keepalive",
        backend: Backend::MiSim,
        nodes: 1,
        threads: 1,
        body_bytes: 0,
        wire: Wire::TlsKeepAlive,
        targets: TLS,
    },
    Scenario {
        name: "tls-handshakes",
        backend: Backend::MiSim,
        nodes: 1,
        threads: 1,
        body_bytes: 0,
        wire: Wire::TlsHandshakes,
        targets: TLS,
    },
    Scenario {
        name: "tls-upstream-only",
        backend: Backend::MiSim,
        nodes: 1,
        threads: 1,
        body_bytes: 0,
        wire: Wire::TlsUpstreamOnly,
        targets: TLS_PROXIES,
    },
];

struct Options {
    rounds: usize,
    seconds: f64,
    warmup: f64,
    connections: usize,
    only: Option<Vec<String>>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        rounds: 5,
        seconds: 5.0,
        warmup: 1.0,
        connections: 32,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--bench" => {} // cargo bench passes this to every bench binary
            "--quick" => (o.rounds, o.seconds, o.warmup) = (2, 2.0, 1.0),
            "--rounds" => {
                o.rounds = value("--rounds")?
                    .parse()
                    .map_err(|e| format!("--rounds: {e}"))?
            }
            "--seconds" => {
                o.seconds = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?
            }
            "--connections" => {
                o.connections = value("--connections")?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?
            }
            "--only" => o.only = Some(value("--only")?.split(',').map(str::to_string).collect()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// One proxy or backend under load, and the process whose CPU time is counted.
struct Running {
    target: Target,
    addr: SocketAddr,
    pid: u32,
    proc: Option<Proc>,
}

/// A measured run with the CPU the target spent on it.
#[derive(Clone, Copy)]
struct Sample {
    m: Measured,
    cpu_per_100k: f64,
    /// A proxy's `connect()` calls per request, warm-up included (TLS scenarios; NaN for
    /// the direct target, plain scenarios, or where perf cannot count them).
    connects_per_request: f64,
    /// CPU µs per request of the handshake client (NaN for wrk).
    client_us: f64,
}

/// A forwarder this binary runs when started with its argument (see [`peers::start_self`]).
type Forwarder = fn(&[String]) -> Result<(), String>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let forwarder: Option<Forwarder> = match args.get(1).map(String::as_str) {
        Some(floor::ARG) => Some(floor::main),
        Some(pingora_loop::ARG) => Some(pingora_loop::main),
        Some(hyper_loop::ARG) => Some(hyper_loop::main),
        _ => None,
    };
    if let Some(forwarder) = forwarder {
        if let Err(e) = forwarder(&args[2..]) {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
        return;
    }
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let o = options()?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = Workdir(tmp.path().to_path_buf());
    wrk::prepare(&dir.0)?;
    let certificates = tls::Certificates::generate(&dir)?;
    let mut report = format!(
        "wrk: 1 thread, {} connections, {} s per run after {} s warm-up, {} rounds interleaved; \
         medians. CPU = CPU seconds the target process spent per 100k requests.\n",
        o.connections, o.seconds, o.warmup, o.rounds
    );
    println!("{report}");
    let mut medians = Vec::new();
    for s in SCENARIOS {
        if o.only
            .as_ref()
            .is_some_and(|only| !only.iter().any(|n| n == s.name))
        {
            continue;
        }
        let (section, of_targets) = scenario(&dir, s, &o, &certificates)?;
        print!("{section}");
        report.push_str(&section);
        medians.push((s.name, of_targets));
    }
    if o.only
        .as_ref()
        .is_none_or(|only| only.iter().any(|n| n == idle::NAME))
    {
        let section = idle::run(&dir)?;
        print!("{section}");
        report.push_str(&section);
    }
    let growth = node_count_growth(&medians);
    print!("{growth}");
    report.push_str(&growth);
    let handshakes = handshake_cost(&medians);
    print!("{handshakes}");
    report.push_str(&handshakes);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("load.md"), &report).map_err(|e| e.to_string())?;
    println!("\nwritten to target/bench/load.md");
    Ok(())
}

/// One target's medians in one scenario.
struct Medians {
    target: Target,
    rps: f64,
    cpu_per_100k: f64,
}

/// How each proxy's requests/s and CPU per request change from 3 nodes (`get-1thread`) to
/// 100 and 1000: the proxy's own CPU shows its cost growing apart from the backend's.
fn node_count_growth(medians: &[(&str, Vec<Medians>)]) -> String {
    let of = |scenario: &str, target: Target| {
        let (_, all) = medians.iter().find(|(name, _)| *name == scenario)?;
        all.iter().find(|m| m.target == target)
    };
    let mut out = String::new();
    for target in PROXIES {
        let Some(three) = of("get-1thread", *target) else {
            continue;
        };
        for many in ["nodes-100", "nodes-1000"] {
            if let Some(m) = of(many, *target) {
                let _ = writeln!(
                    out,
                    "{} {many} against 3 nodes: requests/s {:.2}×, CPU per request {:.2}×",
                    target.label(),
                    m.rps / three.rps,
                    m.cpu_per_100k / three.cpu_per_100k
                );
            }
        }
    }
    if out.is_empty() {
        out
    } else {
        format!("\n{out}")
    }
}

/// What a new TLS connection costs each target: the CPU per request of `tls-handshakes`
/// (a new connection per request) less that of `tls-keepalive`.
fn handshake_cost(medians: &[(&str, Vec<Medians>)]) -> String {
    let of = |scenario: &str, target: Target| {
        let (_, all) = medians.iter().find(|(name, _)| *name == scenario)?;
        all.iter().find(|m| m.target == target)
    };
    let mut out = String::new();
    let mut costs = Vec::new();
    for &target in TLS {
        let (Some(kept), Some(new)) = (of("tls-keepalive", target), of("tls-handshakes", target))
        else {
            continue;
        };
        // CPU seconds per 100k requests are 10 µs per request.
        let (kept_us, new_us) = (kept.cpu_per_100k * 10.0, new.cpu_per_100k * 10.0);
        costs.push((target, new_us - kept_us));
        let _ = writeln!(
            out,
            "{}: CPU per request {kept_us:.1} µs with keep-alive, {new_us:.1} µs with a new \
             connection per request: a new TLS connection costs {:.1} µs of CPU",
            target.label(),
            new_us - kept_us
        );
    }
    let cost = |t: Target| costs.iter().find(|(x, _)| *x == t).map(|(_, c)| *c);
    if let (Some(h), Some(a)) = (cost(Target::Healthgate), cost(Target::Haproxy)) {
        let _ = writeln!(
            out,
            "healthgate/HAProxy: CPU per new connection {:.2}×",
            h / a
        );
    }
    if out.is_empty() {
        out
    } else {
        format!("\n{out}")
    }
}

/// Run one scenario: its table, and every target's medians.
fn scenario(
    dir: &Workdir,
    s: &Scenario,
    o: &Options,
    certificates: &tls::Certificates,
) -> Result<(String, Vec<Medians>), String> {
    let nodes = Nodes::loopback(s.nodes);
    let secure = s.wire != Wire::Plain;
    let node_tls = s.wire.nodes_tls().then_some((
        certificates.node_cert.as_path(),
        certificates.node_key.as_path(),
    ));
    let backend = match s.backend {
        Backend::Nginx if secure => return Err(format!("{}: nginx nodes speak no TLS", s.name)),
        Backend::Nginx => peers::nginx_backend(dir, &nodes)?,
        Backend::MiSim => peers::mi_sim_backend(dir, &nodes, node_tls)?,
    };
    let mut running = Vec::new();
    for &target in s.targets {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let tls_port = free_port();
        let proxy_tls = certificates.for_proxy(s.wire.client_tls(), s.wire.nodes_tls(), tls_port);
        let proc = match target {
            _ if secure && !TLS.contains(&target) => {
                return Err(format!("{}: {} speaks no TLS", s.name, target.label()));
            }
            Target::Direct => None,
            Target::Haproxy if secure => Some(peers::haproxy_tls(
                dir, &nodes, s.threads, port, &proxy_tls,
            )?),
            Target::Healthgate if secure => Some(peers::healthgate_tls(
                dir, &nodes, s.threads, port, &proxy_tls,
            )?),
            Target::Haproxy => Some(peers::haproxy(dir, &nodes, s.threads, port)?),
            Target::Nginx => Some(peers::nginx_proxy(dir, &nodes, s.threads, port)?),
            Target::Healthgate => Some(peers::healthgate(dir, &nodes, s.threads, port)?),
            Target::Floor => Some(floor::start(dir, &nodes, s.threads, port)?),
            Target::PingoraLoop => Some(pingora_loop::start(dir, &nodes, s.threads, port)?),
            Target::HyperLoop => Some(hyper_loop::start(dir, &nodes, s.threads, port)?),
            Target::Baseline => match peers::baseline_binary() {
                Some(binary) => Some(peers::healthgate_binary(
                    dir,
                    &nodes,
                    s.threads,
                    port,
                    &binary,
                    "healthgate-a",
                    "",
                )?),
                None => continue,
            },
        };
        let (addr, pid) = match &proc {
            Some(p) if s.wire.client_tls() => {
                (SocketAddr::from(([127, 0, 0, 1], tls_port)), p.pid())
            }
            Some(p) => (addr, p.pid()),
            None => (nodes.first_traffic(), backend.pid()),
        };
        if s.wire.client_tls() {
            // The plain port answered; the TLS one must too before any load.
            handshakes::probe(addr).map_err(|e| format!("{}: {e}", target.label()))?;
        }
        running.push(Running {
            target,
            addr,
            pid,
            proc,
        });
    }
    let load = Load {
        threads: 1,
        connections: o.connections,
        body_bytes: s.body_bytes,
        tls: s.wire.client_tls(),
    };
    let measure = |addr: SocketAddr, seconds: f64| {
        let duration = Duration::from_secs_f64(seconds);
        match s.wire {
            Wire::TlsHandshakes => handshakes::run(addr, o.connections, duration),
            _ => wrk::run(&dir.0, addr, load, duration),
        }
    };
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); running.len()];
    for round in 0..o.rounds {
        // Rotate the starting target each round so no one always runs first.
        for k in 0..running.len() {
            let i = (k + round) % running.len();
            let r = &running[i];
            // The others are stopped while one is measured: HAProxy's and healthgate's health
            // checks (2000 probes/s at 1000 nodes, with the backend's answers) would
            // otherwise take CPU from whichever target is measured.
            for (j, other) in running.iter().enumerate() {
                if let Some(proc) = &other.proc {
                    proc.set_paused(j != i)?;
                }
            }
            // A proxy's connects, warm-up included (the direct target opens none).
            let counter = match &r.proc {
                Some(_) if secure => tls::ConnectCounter::start(&dir.0, r.pid),
                _ => None,
            };
            let warm = measure(r.addr, o.warmup)?;
            let before = cpu_seconds(r.pid);
            let client_before = tls::own_cpu_seconds();
            let m = measure(r.addr, o.seconds)?;
            let client_us = match s.wire {
                Wire::TlsHandshakes => {
                    (tls::own_cpu_seconds() - client_before) / m.requests.max(1) as f64 * 1e6
                }
                _ => f64::NAN,
            };
            let cpu = cpu_seconds(r.pid) - before;
            let connects_per_request = counter
                .and_then(tls::ConnectCounter::stop)
                .map_or(f64::NAN, |n| {
                    n as f64 / (warm.requests + m.requests).max(1) as f64
                });
            let cpu_per_100k = cpu / m.requests.max(1) as f64 * 100_000.0;
            eprintln!(
                "  {} round {} {:<12} {:>9.0} req/s  p99 {:>7.0} µs  errors {}{}",
                s.name,
                round + 1,
                r.target.label(),
                m.rps,
                m.p99_us,
                m.errors,
                if secure {
                    format!(
                        "  CPU {:.1} µs/req{}{}",
                        cpu_per_100k * 10.0,
                        if connects_per_request.is_nan() {
                            String::new()
                        } else {
                            format!("  connects/req {connects_per_request:.3}")
                        },
                        if client_us.is_nan() {
                            String::new()
                        } else {
                            format!("  client CPU {client_us:.1} µs/req")
                        }
                    )
                } else {
                    String::new()
                }
            );
            samples[i].push(Sample {
                m,
                cpu_per_100k,
                connects_per_request,
                client_us,
            });
        }
    }
    // The targets that ran: the baseline is left out when no binary is named.
    let targets: Vec<Target> = running.iter().map(|r| r.target).collect();
    // Dropping a `Proc` continues it before it must stop (also on an early return above).
    drop(running);
    drop(backend);
    let medians = targets
        .iter()
        .zip(&samples)
        .map(|(&target, of_target)| Medians {
            target,
            rps: median(of_target.iter().map(|x| x.m.rps).collect()),
            cpu_per_100k: median(of_target.iter().map(|x| x.cpu_per_100k).collect()),
        })
        .collect();
    let section = if secure {
        tls_table(s, &samples, &targets)
    } else {
        table(s, &samples, &targets)
    };
    Ok((section, medians))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The scenario's Markdown table of medians, and the ratios.
fn table(s: &Scenario, samples: &[Vec<Sample>], targets: &[Target]) -> String {
    let backend = match s.backend {
        Backend::Nginx => "nginx",
        Backend::MiSim => "mi-sim",
    };
    let body = match s.body_bytes {
        0 => "GET".to_string(),
        b => format!("POST {} KiB", b / 1024),
    };
    let mut out = format!(
        "\n### {}: {} node(s) ({backend}), {} proxy thread(s), {body}\n\n\
         | target | req/s | p50 µs | p99 µs | p99.9 µs | CPU s / 100k req | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        s.name, s.nodes, s.threads
    );
    let med = |i: usize, f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
    let mut rps = Vec::new();
    let mut p99 = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let errors: u64 = samples[i].iter().map(|x| x.m.errors).sum();
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {errors} |",
            t.label(),
            med(i, |x| x.m.rps),
            med(i, |x| x.m.p50_us),
            med(i, |x| x.m.p99_us),
            med(i, |x| x.m.p999_us),
            med(i, |x| x.cpu_per_100k),
        );
        rps.push((*t, med(i, |x| x.m.rps)));
        p99.push((*t, med(i, |x| x.m.p99_us)));
    }
    let get = |v: &[(Target, f64)], t: Target| v.iter().find(|(x, _)| *x == t).map(|(_, r)| *r);
    out.push('\n');
    if let (Some(h), Some(a)) = (get(&rps, Target::Healthgate), get(&rps, Target::Haproxy)) {
        let (hp, ap) = (get(&p99, Target::Healthgate), get(&p99, Target::Haproxy));
        let _ = write!(out, "healthgate/HAProxy: throughput {:.2}×", h / a);
        if let (Some(hp), Some(ap)) = (hp, ap) {
            let _ = write!(out, ", p99 {:.2}×", hp / ap);
        }
        out.push_str(". ");
    }
    if let (Some(h), Some(d)) = (get(&rps, Target::Healthgate), get(&rps, Target::Direct)) {
        let _ = write!(out, "healthgate/direct: throughput {:.2}×. ", h / d);
    }
    if let (Some(h), Some(f)) = (get(&rps, Target::Healthgate), get(&rps, Target::Floor)) {
        let _ = write!(out, "healthgate/floor: throughput {:.2}×.", h / f);
    }
    out.push('\n');
    // The request-loop candidates, and healthgate as adopted, against HAProxy and against
    // candidate (a), healthgate on ProxyHttp.
    let candidates = [
        (Target::Healthgate, "healthgate"),
        (Target::PingoraLoop, "(b)"),
        (Target::HyperLoop, "(c)"),
    ];
    for (candidate, name) in candidates {
        let Some(c) = get(&rps, candidate) else {
            continue;
        };
        let cp = get(&p99, candidate);
        let mut parts = Vec::new();
        for (peer, peer_name) in [(Target::Haproxy, "HAProxy"), (Target::Baseline, "(a)")] {
            if let (Some(r), Some(rp)) = (get(&rps, peer), get(&p99, peer)) {
                let mut part = format!("{name}/{peer_name}: throughput {:.2}×", c / r);
                if let Some(cp) = cp {
                    let _ = write!(part, ", p99 {:.2}×", cp / rp);
                }
                parts.push(part);
            }
        }
        if !parts.is_empty() {
            let _ = writeln!(out, "{}.", parts.join(". "));
        }
    }
    out
}

/// A TLS scenario's Markdown table of medians, the ratios to HAProxy and to the direct
/// connection, and whether issue 14's targets are met.
fn tls_table(s: &Scenario, samples: &[Vec<Sample>], targets: &[Target]) -> String {
    let mut out = format!(
        "\n### {}: {} node(s) (mi-sim, HTTPS), {} proxy thread(s), GET{}\n\n\
         | target | req/s | p50 µs | p99 µs | p99.9 µs | CPU µs / req | proxy connects / req | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        s.name,
        s.nodes,
        s.threads,
        s.wire.describe()
    );
    let med = |i: usize, f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
    let mut rows = Vec::new();
    for (i, &t) in targets.iter().enumerate() {
        let errors: u64 = samples[i].iter().map(|x| x.m.errors).sum();
        let row = (
            t,
            med(i, |x| x.m.rps),
            med(i, |x| x.m.p99_us),
            med(i, |x| x.cpu_per_100k * 10.0),
        );
        let connects = med(i, |x| x.connects_per_request);
        let connects = match connects.is_nan() {
            true => "–".to_string(),
            false => format!("{connects:.3}"),
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {connects} | {errors} |",
            t.label(),
            row.1,
            med(i, |x| x.m.p50_us),
            row.2,
            med(i, |x| x.m.p999_us),
            row.3,
        );
        rows.push(row);
    }
    let get = |t: Target| rows.iter().find(|r| r.0 == t).copied();
    out.push('\n');
    let (Some(h), Some(a)) = (get(Target::Healthgate), get(Target::Haproxy)) else {
        return out;
    };
    let (rps, p99, cpu) = (h.1 / a.1, h.2 / a.2, h.3 / a.3);
    let _ = write!(
        out,
        "healthgate/HAProxy: throughput {rps:.2}×, p99 {p99:.2}×, CPU per request {cpu:.2}×."
    );
    if let Some(d) = get(Target::Direct) {
        let _ = write!(
            out,
            " healthgate/direct: throughput {:.2}×; HAProxy/direct: {:.2}×.",
            h.1 / d.1,
            a.1 / d.1
        );
    }
    out.push('\n');
    let verdict = |met: bool| if met { "met" } else { "not met" };
    match s.wire {
        Wire::TlsKeepAlive => {
            let _ = writeln!(
                out,
                "Issue 14's targets: requests/s ≥ 1.0× HAProxy's: {} ({rps:.2}×); \
                 p99 ≤ HAProxy's: {} ({p99:.2}×).",
                verdict(rps >= 1.0),
                verdict(p99 <= 1.0)
            );
        }
        Wire::TlsHandshakes => {
            let _ = writeln!(
                out,
                "Issue 14's target: new handshakes/s ≥ 0.9× HAProxy's: {} ({rps:.2}×).",
                verdict(rps >= 0.9)
            );
            let client = median(samples.iter().flatten().map(|x| x.client_us).collect());
            let _ = writeln!(
                out,
                "The client (this bench, one thread, no verification, no resumption) spent \
                 {client:.1} µs of CPU per new connection (median of every run)."
            );
        }
        Wire::Plain | Wire::TlsUpstreamOnly => {}
    }
    out
}
