//! The failure scenarios on the nodes: rolling restart, kill -9, hung health port, faulty
//! CApp, flapping, every node faulty, one CApp faulty everywhere. (Proxy lifecycle scenarios
//! are in `lifecycle.rs`.)

use crate::capps::FAULTY_PREFIX;
use crate::report::{Incident, Outcome};
use crate::run::Run;
use crate::view::first_at_or_after;
use std::time::{Duration, Instant};

/// The CApp the scenarios hot-deploy as faulty.
const FAULTY_CAPP: &str = "orders_1.0.0.car";
/// How long a node may take to be seen out before the scenario moves on regardless.
const OUT_DEADLINE: Duration = Duration::from_secs(8);
/// How long a recovered node may take to be seen in again.
const IN_DEADLINE: Duration = Duration::from_secs(10);
/// Seed of the flapping schedule, so every proxy sees the same flips.
const FLAP_SEED: u64 = 7;
/// `capp-everywhere` keeps the CApp faulty at least this long plus the hold: what a proxy
/// needing 3 failed 1 s checks takes to notice. The faulty time is then the same for every
/// proxy (unless one is slower), so their `/orders` counts compare.
const NOTICE_AT_MOST: Duration = Duration::from_secs(3);

/// What happens to a node.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGTERM, MI-style: traffic port first, `/healthz` still 200 for a while, then exit.
    Shutdown,
    /// `kill -9`.
    Kill9,
    /// The health port accepts and never answers; traffic is still served.
    Hang,
    /// A faulty CApp is hot-deployed: `/healthz` 500; traffic is still served.
    Faulty,
}

/// Put `fault` on node `i` at once; returns when it is in effect.
async fn inflict(run: &mut Run, i: usize, fault: Fault) -> Result<(), String> {
    match fault {
        // Returns once the process is gone (after MI's shutdown grace).
        Fault::Shutdown => run.cluster.stop_mi_style(i).await,
        Fault::Kill9 => run.cluster.kill9(i).await,
        Fault::Hang => run.cluster.control(i, "POST", "/hang", "").await,
        Fault::Faulty => run.cluster.control(i, "POST", "/faulty", FAULTY_CAPP).await,
    }
}

/// Undo `fault` on node `i`; returns the moment the node could serve properly again.
async fn recover(run: &mut Run, i: usize, fault: Fault) -> Result<Instant, String> {
    match fault {
        Fault::Shutdown | Fault::Kill9 => run.cluster.restart(i).await,
        Fault::Hang => {
            run.cluster.control(i, "POST", "/unhang", "").await?;
            Ok(Instant::now())
        }
        Fault::Faulty => {
            run.cluster.control(i, "DELETE", "/faulty", "").await?;
            Ok(Instant::now())
        }
    }
}

/// Fault nodes `which` together, keep them out until the proxy noticed (plus the hold), then
/// recover them and wait until the proxy routes to them again.
async fn incident(run: &mut Run, which: &[usize], fault: Fault) -> Result<Vec<Incident>, String> {
    incident_held(run, which, fault, Duration::ZERO).await
}

/// [`incident`], with the fault kept for at least `at_least` from its start.
async fn incident_held(
    run: &mut Run,
    which: &[usize],
    fault: Fault,
    at_least: Duration,
) -> Result<Vec<Incident>, String> {
    let out_at = Instant::now();
    for &i in which {
        inflict(run, i, fault).await?;
    }
    let names: Vec<String> = which
        .iter()
        .map(|&i| run.cluster.nodes[i].spec.name.clone())
        .collect();
    // A stopped node restarts as soon as it is down (a rolling restart does not wait for the
    // balancer); the others stay out until the proxy noticed, or long enough that it never will.
    if !matches!(fault, Fault::Shutdown) {
        for name in &names {
            run.view.wait(name, false, OUT_DEADLINE).await;
        }
        tokio::time::sleep(run.pace.hold).await;
        tokio::time::sleep_until((out_at + at_least).into()).await;
    }
    let mut backs = Vec::new();
    for &i in which {
        backs.push(recover(run, i, fault).await?);
    }
    for name in &names {
        run.view.wait(name, true, IN_DEADLINE).await;
    }
    Ok(names
        .iter()
        .zip(backs)
        .map(|(n, back)| Incident::between(n, out_at, Some(back)))
        .collect())
}

/// The window from the first event until now (the last readmission was waited for).
fn window_since(incidents: &[Incident]) -> Option<(Instant, Instant)> {
    let first = incidents.iter().filter_map(|i| i.out_at).min()?;
    Some((first, Instant::now()))
}

fn outcome(incidents: Vec<Incident>) -> Outcome {
    Outcome {
        window: window_since(&incidents),
        incidents,
        counters_kept: true,
        ..Outcome::default()
    }
}

/// Scenario 1: every node in turn, MI-style shutdown, down, restart, readmitted, next.
pub async fn rolling(run: &mut Run) -> Result<Outcome, String> {
    let mut incidents = Vec::new();
    for i in 0..run.cluster.nodes.len() {
        incidents.extend(incident(run, &[i], Fault::Shutdown).await?);
    }
    Ok(outcome(incidents))
}

/// Scenario 2: `kill -9` of one node, restarted on the same ports.
pub async fn kill9(run: &mut Run) -> Result<Outcome, String> {
    Ok(outcome(incident(run, &[1], Fault::Kill9).await?))
}

/// Scenario 3: one node's health port hangs while its traffic port serves.
pub async fn hung(run: &mut Run) -> Result<Outcome, String> {
    Ok(outcome(incident(run, &[1], Fault::Hang).await?))
}

/// Scenario 4: a faulty CApp hot-deployed on one node, then removed.
pub async fn faulty(run: &mut Run) -> Result<Outcome, String> {
    Ok(outcome(incident(run, &[1], Fault::Faulty).await?))
}

/// Scenario 6: every node faulty at once, then all recover.
pub async fn all_faulty(run: &mut Run) -> Result<Outcome, String> {
    let all: Vec<usize> = (0..run.cluster.nodes.len()).collect();
    let mut o = outcome(incident(run, &all, Fault::Faulty).await?);
    o.notes
        .push("failures are the answers while no node was routable".into());
    Ok(o)
}

/// Scenario 7: the `orders` CApp faulty on every node at once (the load on `/orders`,
/// `/billing` and `/`), held until the proxy noticed and a fixed time passed, then removed.
pub async fn capp_everywhere(run: &mut Run) -> Result<Outcome, String> {
    let all: Vec<usize> = (0..run.cluster.nodes.len()).collect();
    let at_least = NOTICE_AT_MOST + run.pace.hold;
    let incidents = incident_held(run, &all, Fault::Faulty, at_least).await?;
    // From the proxy's view: from when it showed the last node out until the first removal
    // (healthgate: every node partly ready; HAProxy: every node down).
    let log = run.view.transitions();
    let noticed = incidents
        .iter()
        .map(|i| first_at_or_after(&log, &i.node, false, i.out_at?))
        .collect::<Option<Vec<Instant>>>()
        .and_then(|ts| ts.into_iter().max());
    let removed = incidents.iter().filter_map(|i| i.back_at).min();
    let mut o = outcome(incidents);
    o.all_out = noticed.zip(removed).filter(|(a, b)| a < b);
    // A node with a faulty `orders` is still right to serve `/billing` and `/`: only the
    // faulty CApp's requests that a node answered count as sent after out.
    o.out_paths = Some(vec![FAULTY_PREFIX.to_string()]);
    Ok(o)
}

/// Scenario 5: one node faulty on and off (0.5–1.5 s each, a fixed random schedule) for a while.
pub async fn flapping(run: &mut Run) -> Result<Outcome, String> {
    let i = 1;
    let name = run.cluster.nodes[i].spec.name.clone();
    let mut rng = fastrand::Rng::with_seed(FLAP_SEED);
    let started = Instant::now();
    let mut bad = Vec::new();
    let mut flips = 0;
    while started.elapsed() < run.pace.flap {
        let on = Instant::now();
        inflict(run, i, Fault::Faulty).await?;
        tokio::time::sleep(Duration::from_millis(rng.u64(500..=1500))).await;
        let off = recover(run, i, Fault::Faulty).await?;
        bad.push((on, Some(off)));
        flips += 2;
        tokio::time::sleep(Duration::from_millis(rng.u64(500..=1500))).await;
    }
    let back_at = bad.last().and_then(|(_, b)| *b);
    run.view.wait(&name, true, IN_DEADLINE).await;
    let changes = run
        .view
        .transitions()
        .iter()
        .filter(|t| t.node == name && t.at >= started)
        .count();
    let mut o = outcome(vec![Incident {
        node: name,
        out_at: Some(started),
        back_at,
        bad,
    }]);
    o.notes.push(format!(
        "{flips} flips of /healthz; the proxy changed its view {changes} times"
    ));
    Ok(o)
}
