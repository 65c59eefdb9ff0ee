//! Failure scenarios under load: healthgate beside HAProxy 2.6 (two expert configurations)
//! in front of simulated MI nodes (`mi-sim` processes) that are restarted, killed, hung,
//! given faulty CApps, flapped, and while the proxy itself is reloaded, stopped or upgraded.
//!
//! Run: `scripts/bench.sh scenarios [--quick] [--only NAME,…] [--rounds N] [--keep-logs]`.
//! Prints a Markdown table (healthgate and the better HAProxy variant per row) and a detail
//! table; a full run of every scenario also writes `docs/bench/scenarios.md`, any other run
//! `target/bench/scenarios.md`. The column definitions are in `table.rs`.

mod capps;
mod lifecycle;
mod load;
mod nodes;
mod plays;
#[path = "../support/procs.rs"]
#[allow(dead_code)] // shared by every bench target; each uses a part
mod procs;
mod proxies;
mod report;
mod run;
mod table;
mod view;

use nodes::NodeSpec;
use proxies::{Extra, Kind};
use report::{Measured, Outcome};
use run::{Pace, Run};
use std::path::Path;

/// The scenarios, in run order: name and one-line description.
pub const SCENARIOS: [(&str, &str); 10] = [
    (
        "rolling-restart",
        "every node in turn: MI-style shutdown (traffic port first, /healthz 200 for 2 s), restart, readmitted",
    ),
    (
        "kill-9",
        "kill -9 of one node under load, restarted on the same ports after the proxy noticed",
    ),
    (
        "hung-health",
        "one node's health port accepts and never answers; its traffic is still served",
    ),
    (
        "faulty-capp",
        "a faulty CApp hot-deployed on one node (/healthz 500), removed after the proxy noticed",
    ),
    (
        "flapping",
        "one node faulty on and off every 0.5–1.5 s (fixed random schedule)",
    ),
    ("all-faulty", "every node faulty at once, then all recover"),
    (
        "capp-everywhere",
        "one faulty CApp (orders_1.0.0.car) on every node for 4.5 s (until the proxy noticed plus 1.5 s, if later), then removed; load on /orders, /billing and /",
    ),
    (
        "reload",
        "configuration reload under load: the first node removed, a running fourth added",
    ),
    (
        "sigterm",
        "graceful stop with 2 s requests in flight (healthgate SIGTERM, HAProxy SIGUSR1)",
    ),
    (
        "upgrade",
        "binary upgrade under load (healthgate --upgrade + SIGQUIT; HAProxy reload)",
    ),
];

struct Options {
    quick: bool,
    rounds: usize,
    only: Option<Vec<String>>,
    keep_logs: bool,
    args: Vec<String>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        rounds: 2,
        only: None,
        keep_logs: false,
        args: Vec::new(),
    };
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(arg) = args.next() {
        o.args.push(arg.clone());
        match arg.as_str() {
            "--quick" => (o.quick, o.rounds) = (true, 1),
            "--keep-logs" => o.keep_logs = true,
            "--rounds" => {
                let v = args.next().ok_or("--rounds needs a value")?;
                o.args.push(v.clone());
                o.rounds = v.parse().map_err(|e| format!("--rounds: {e}"))?;
            }
            "--only" => {
                let v = args.next().ok_or("--only needs a value")?;
                o.args.push(v.clone());
                let names: Vec<String> = v.split(',').map(str::to_string).collect();
                if let Some(bad) = names
                    .iter()
                    .find(|n| !SCENARIOS.iter().any(|(s, _)| s == n))
                {
                    let known: Vec<&str> = SCENARIOS.iter().map(|(s, _)| *s).collect();
                    return Err(format!(
                        "unknown scenario {bad:?}; known: {}",
                        known.join(", ")
                    ));
                }
                o.only = Some(names);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(async {
            // On Ctrl-C or SIGTERM the suite's future is dropped: every child is killed.
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(|e| e.to_string())?;
            tokio::select! {
                r = suite() => r,
                _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
                _ = term.recv() => Err("terminated".to_string()),
            }
        }),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn suite() -> Result<(), String> {
    let o = options()?;
    let tmp = tempfile::Builder::new()
        .prefix("healthgate-scenarios-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    if procs::find_tool("haproxy").is_none() {
        return Err("haproxy not found (scripts/ensure-deps.sh --bench installs it)".into());
    }
    let pace = Pace::new(o.quick);
    let mut results: Vec<(&str, Vec<(Kind, Measured)>)> = Vec::new();
    for (name, _) in SCENARIOS {
        if o.only
            .as_ref()
            .is_some_and(|only| !only.iter().any(|n| n == name))
        {
            continue;
        }
        let mut per_kind: Vec<(Kind, Measured)> = Vec::new();
        for round in 0..o.rounds {
            for kind in Kind::ALL {
                let dir = tmp.path().join(format!(
                    "{name}-{}-{round}",
                    kind.label().replace([' ', '+'], "-")
                ));
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                let m = one(name, kind, &dir, pace).await;
                eprintln!(
                    "  {name} round {} {:<24} {}",
                    round + 1,
                    kind.label(),
                    table::line(&m)
                );
                match per_kind.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, acc)) => *acc = acc.clone().merge(m),
                    None => per_kind.push((kind, m)),
                }
            }
        }
        results.push((name, per_kind));
    }
    let full = !o.quick && o.only.is_none();
    let command = format!("scripts/bench.sh scenarios {}", o.args.join(" "))
        .trim_end()
        .to_string();
    let text = table::document(&results, &command, o.rounds, o.quick);
    println!("\n{text}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = match full {
        true => root.join("docs/bench/scenarios.md"),
        false => root.join("target/bench/scenarios.md"),
    };
    std::fs::create_dir_all(out.parent().unwrap_or(root)).map_err(|e| e.to_string())?;
    std::fs::write(&out, &text).map_err(|e| e.to_string())?;
    println!(
        "written to {}",
        out.strip_prefix(root).unwrap_or(&out).display()
    );
    if o.keep_logs {
        println!("logs kept in {}", tmp.keep().display());
    }
    Ok(())
}

/// One scenario against one proxy; an error becomes a row note rather than ending the suite.
async fn one(name: &str, kind: Kind, dir: &Path, pace: Pace) -> Measured {
    match try_one(name, kind, dir, pace).await {
        Ok(m) => m,
        Err(e) => Measured::error(e.replace('\n', " ")),
    }
}

async fn try_one(name: &str, kind: Kind, dir: &Path, pace: Pace) -> Result<Measured, String> {
    let routed: Vec<NodeSpec> = (1..=3)
        .map(|i| NodeSpec::fresh(&format!("mi-{i}")))
        .collect();
    let mut standby = Vec::new();
    let mut extra = Extra::default();
    let mut paths = load::ROOT;
    match name {
        "capp-everywhere" => (extra.capps, paths) = (true, capps::MIX),
        "reload" => standby.push(NodeSpec::fresh("mi-4")),
        "upgrade" if kind == Kind::Healthgate => {
            if let Some(reason) = lifecycle::upgrade_unsupported(dir) {
                return Ok(Measured::na(reason));
            }
            extra.upgrade_socket = Some(dir.join("upgrade.sock"));
        }
        _ => {}
    }
    let mut run = Run::begin(kind, dir, &routed, &standby, &extra, paths, pace).await?;
    let outcome: Outcome = match name {
        "rolling-restart" => plays::rolling(&mut run).await?,
        "kill-9" => plays::kill9(&mut run).await?,
        "hung-health" => plays::hung(&mut run).await?,
        "faulty-capp" => plays::faulty(&mut run).await?,
        "flapping" => plays::flapping(&mut run).await?,
        "all-faulty" => plays::all_faulty(&mut run).await?,
        "capp-everywhere" => plays::capp_everywhere(&mut run).await?,
        "reload" => lifecycle::reload(&mut run, &standby[0]).await?,
        "sigterm" => lifecycle::sigterm(&mut run).await?,
        "upgrade" => lifecycle::upgrade(&mut run).await?,
        other => return Err(format!("no scenario {other}")),
    };
    Ok(run.end(outcome).await)
}
