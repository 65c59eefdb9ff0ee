//! The report: a summary table (healthgate beside the better HAProxy variant), a detail
//! table (every proxy, with notes), the command, date and machine, and what each column means.

use crate::SCENARIOS;
use crate::capps;
use crate::load::CONNECTIONS;
use crate::nodes::{SHUTDOWN_GRACE, STARTUP_DELAY};
use crate::proxies::Kind;
use crate::report::Measured;
use std::fmt::Write as _;

/// What each column means (also printed under the tables).
const DEFINITIONS: &str = "\
- **failed**: requests the client saw fail — any non-2xx answer or transport error (refused, \
reset, closed before a complete answer, no answer within 10 s) — out of all requests sent in the \
run (warm-up, events, tail; summed over rounds). `sigterm`: only the requests in flight when the \
signal was sent (later ones are refused by design).
- **sent after out**: requests *started* after the node went out, and before it could serve again, \
that the node answered (its `x-mi-node` header), plus the proxy's own count of attempts on that \
node that got no answer during the run (healthgate `healthgate_upstream_requests_total{node,class=\"error\"}`, \
HAProxy `econ + eresp + wretr + wredis` of the server; a request retried after an empty answer \
may count twice there): each was sent to the out node and then failed for the \
client or was retried elsewhere. The node goes out at: the SIGTERM (`rolling-restart`: its \
traffic port closes then), the `kill -9`, the hang, the CApp deployment (`faulty-capp`, \
`all-faulty`), each faulty interval (`flapping`), the reload signal for the removed node \
(`reload`; HAProxy's counters restart with its new worker, so answered requests only there). \
`capp-everywhere`: only `/orders` requests count, from the CApp deployment (a node with a \
faulty `orders` rightly serves the other paths).
- **evict s**: from the event to the first poll (every 10 ms) in which the proxy's own view shows \
the node not routed: healthgate `/status` state other than `ready` (or drained, or ejected; \
`partly_ready`, some paths refused, counts as out); \
HAProxy stats CSV status not `UP…` (`UP 1/3` still routes). Worst over the scenario's nodes and \
rounds; `never`: not while the scenario ran. `reload`: the removed node leaving the view.
- **readmit s**: from the node's recovery (restarted: its `/healthz` answers 200, polled directly; \
hang or CApp: the moment it was undone) to the first poll showing it routed again; `reload`: the \
added node, from the signal. `–` when the node was never seen out; `0.00` when the \
proxy already routed it again by then (between two flaps).
- **p99 ms**: 99th percentile latency of the requests started in the event window (the first \
event until the last readmission was seen, or the reload/upgrade finished); `sigterm`: of the \
requests in flight at the signal.";

/// One run's numbers on one line (progress output).
pub fn line(m: &Measured) -> String {
    if let Some(na) = &m.na {
        return format!("n/a: {na}");
    }
    if let Some(e) = &m.error {
        return format!("error: {e}");
    }
    let paths = m.paths.last().map(capps::line).unwrap_or_default();
    format!(
        "failed {}/{}  after-out {}  evict {}  readmit {}  p99 {}  {paths}",
        m.failed,
        m.total,
        after_out(m),
        m.evict.cell(),
        m.readmit.cell(),
        p99(m)
    )
    .trim_end()
    .to_string()
}

fn after_out(m: &Measured) -> String {
    m.after_out.map_or("–".into(), |n| n.to_string())
}

fn p99(m: &Measured) -> String {
    m.p99
        .map_or("–".into(), |d| format!("{:.0}", d.as_secs_f64() * 1000.0))
}

fn cells(m: &Measured) -> [String; 5] {
    if m.na.is_some() {
        return [
            "n/a".into(),
            "n/a".into(),
            "n/a".into(),
            "n/a".into(),
            "n/a".into(),
        ];
    }
    [
        format!("{}/{}", m.failed, m.total),
        after_out(m),
        m.evict.cell(),
        m.readmit.cell(),
        p99(m),
    ]
}

/// The whole report.
pub fn document(
    results: &[(&str, Vec<(Kind, Measured)>)],
    command: &str,
    rounds: usize,
    quick: bool,
) -> String {
    let date = std::process::Command::new("date")
        .arg("+%Y-%m-%d %H:%M %Z")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut out = format!(
        "# Failure scenarios: healthgate beside HAProxy 2.6\n\n\
         Command: `{command}` ({date}; {rounds} round(s){}). Machine: 2 cores of a shared virtual \
         machine: times and latencies are noisy, failure counts less so.\n\n\
         Three `mi-sim` nodes (separate processes, fixed loopback ports; MI-style shutdown keeps \
         `/healthz` 200 for {SHUTDOWN_GRACE}, a restart takes {STARTUP_DELAY} before its ports \
         open), {CONNECTIONS} keep-alive client connections each sending a GET every 5 ms. Both \
         proxies: 1 thread, round robin, readiness `/healthz` every 1 s (timeout 1 s), 3 failures \
         out, 1 success in, 2 retries on another node, connect timeout 1 s. HAProxy variants: \
         *checks* (`option httpchk GET /healthz`, `check port <health port> inter 1s fall 3 rise 1`, \
         `retries 2`, `option redispatch 1`, `retry-on conn-failure empty-response \
         response-timeout`, POST not retried, master-worker with `expose-fd listeners` and server \
         state saved across reloads) and *checks+observe* (plus `observe layer4 error-limit 1 \
         on-error mark-down on-marked-down shutdown-sessions`). The summary shows the better \
         HAProxy variant per row (fewer failures, then fewer requests sent after out, then \
         faster eviction).\n\n",
        if quick { ", --quick: short phases" } else { "" }
    );
    out.push_str(
        "| scenario | failed: healthgate | failed: HAProxy | sent after out: healthgate | sent after out: HAProxy \
         | evict s: healthgate | evict s: HAProxy | readmit s: healthgate | readmit s: HAProxy \
         | p99 ms: healthgate | p99 ms: HAProxy | HAProxy variant |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (name, per_kind) in results {
        let get = |k: Kind| per_kind.iter().find(|(x, _)| *x == k).map(|(_, m)| m);
        let (Some(hg), Some(checks), Some(observe)) =
            (get(Kind::Healthgate), get(Kind::Checks), get(Kind::Observe))
        else {
            continue;
        };
        let (variant, ha) = match observe.rank() < checks.rank() {
            true => ("checks+observe", observe),
            false => ("checks", checks),
        };
        let (h, a) = (cells(hg), cells(ha));
        let _ = write!(out, "| {name} ");
        for (x, y) in h.iter().zip(&a) {
            let _ = write!(out, "| {x} | {y} ");
        }
        let _ = writeln!(out, "| {variant} |");
    }
    out.push_str("\n## Every proxy\n\n| scenario | proxy | failed | sent after out | evict s | readmit s | p99 ms | notes |\n\
                  |---|---|---:|---:|---:|---:|---:|---|\n");
    for (name, per_kind) in results {
        for (kind, m) in per_kind {
            let c = cells(m);
            let failures = (!m.failures.is_empty()).then(|| {
                let kinds: Vec<String> = m
                    .failures
                    .iter()
                    .map(|(k, n)| format!("{n}× {k}"))
                    .collect();
                format!("failed: {}", kinds.join(", "))
            });
            let notes =
                m.na.iter()
                    .chain(&failures)
                    .chain(&m.notes)
                    .map(|n| n.replace('\n', " ").replace('|', "/"))
                    .collect::<Vec<_>>();
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                kind.label(),
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                notes.join("; ")
            );
        }
    }
    out.push_str(&capps::section(results));
    out.push_str("\n## Scenarios\n\n");
    for (name, what) in SCENARIOS {
        let _ = writeln!(out, "- `{name}`: {what}");
    }
    out.push_str("\n## Columns\n\n");
    out.push_str(DEFINITIONS);
    out.push('\n');
    out
}
