//! The CApp-routing scenario's pieces: the integrations healthgate is told about (CApp name →
//! path prefix), the load's path mix, what the requests on each path got, and their tables.

use crate::load::Record;
use crate::proxies::Kind;
use crate::report::Measured;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

/// healthgate's `capps` map in this scenario: each CApp and the path prefix it serves.
/// `orders` is the CApp the plays make faulty (`orders_1.0.0.car`).
pub const CAPPS: [(&str, &str); 2] = [("orders", "/orders"), ("billing", "/billing")];
/// The prefix of the CApp made faulty on every node.
pub const FAULTY_PREFIX: &str = "/orders";
/// The load's paths in this scenario: the healthy integration (the headline) first, the
/// faulty one, and one no CApp claims. Each connection cycles through them.
pub const MIX: &[&str] = &["/billing/1", "/orders/1", "/"];

/// What the requests on one path got in one round.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PathCount {
    /// Requests sent.
    pub total: usize,
    /// Of them failed (non-2xx or transport error).
    pub failed: usize,
    /// Of the failed, answered 503.
    pub status_503: usize,
    /// Requests started while the proxy showed every node out: sent and failed (`None`:
    /// it never did).
    pub all_out: Option<(usize, usize)>,
}

/// The CApp that `path` belongs to by [`CAPPS`] (segment-aware prefix), or `none`.
pub fn capp_of(path: &str) -> &'static str {
    CAPPS
        .iter()
        .find(|(_, prefix)| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .map_or("none", |(name, _)| name)
}

/// Per-path counts of one round; empty when the load sent to one path only (every other
/// scenario), so their reports stay as they were. `all_out`: the interval in which the
/// proxy's view showed every node out.
pub fn count(
    records: &[Record],
    all_out: Option<(Instant, Instant)>,
) -> BTreeMap<String, PathCount> {
    let mut out: BTreeMap<String, PathCount> = BTreeMap::new();
    for r in records {
        let c = out.entry(r.path.to_string()).or_default();
        c.total += 1;
        let failed = !r.ok();
        c.failed += usize::from(failed);
        c.status_503 += usize::from(r.status == Some(503));
        if let Some((a, b)) = all_out {
            let (sent, lost) = c.all_out.get_or_insert((0, 0));
            if r.start >= a && r.start < b {
                *sent += 1;
                *lost += usize::from(failed);
            }
        }
    }
    if out.len() < 2 {
        out.clear();
    }
    out
}

/// One round's cells for the progress line.
pub fn line(paths: &BTreeMap<String, PathCount>) -> String {
    ordered(paths)
        .map(|(path, c)| format!("{path} {}/{} ({}× 503)", c.failed, c.total, c.status_503))
        .collect::<Vec<_>>()
        .join("  ")
}

/// The paths in [`MIX`] order (the headline first), then any other.
fn ordered(paths: &BTreeMap<String, PathCount>) -> impl Iterator<Item = (&String, &PathCount)> {
    let rank = |p: &str| MIX.iter().position(|m| *m == p).unwrap_or(MIX.len());
    let mut v: Vec<_> = paths.iter().collect();
    v.sort_by_key(|(p, _)| rank(p));
    v.into_iter()
}

/// The median of `values`, written as a count (x.5 between two middles).
fn median(mut values: Vec<usize>) -> String {
    if values.is_empty() {
        return "–".into();
    }
    values.sort_unstable();
    let n = values.len();
    let twice = values[(n - 1) / 2] + values[n / 2];
    match twice % 2 {
        0 => (twice / 2).to_string(),
        _ => format!("{:.1}", twice as f64 / 2.0),
    }
}

/// A row's cells for one path: failed/sent (503s), and failed/sent while every node was out.
fn cells(rounds: &[&PathCount]) -> (String, String) {
    let all = |f: fn(&PathCount) -> usize| median(rounds.iter().map(|c| f(c)).collect());
    let mut whole = format!("{}/{}", all(|c| c.failed), all(|c| c.total));
    if rounds.iter().any(|c| c.status_503 > 0) {
        let _ = write!(whole, " ({}× 503)", all(|c| c.status_503));
    }
    let out: Vec<(usize, usize)> = rounds.iter().filter_map(|c| c.all_out).collect();
    let window = match out.len() == rounds.len() {
        true => format!(
            "{}/{}",
            median(out.iter().map(|w| w.1).collect()),
            median(out.iter().map(|w| w.0).collect())
        ),
        false => "never all out".into(),
    };
    (whole, window)
}

/// The per-integration section (empty when no scenario sent to several paths): medians over
/// the rounds, then every round.
pub fn section(results: &[(&str, Vec<(Kind, Measured)>)]) -> String {
    let mut out = String::new();
    let mut columns: Vec<String> = Vec::new();
    for (_, per_kind) in results {
        for (_, m) in per_kind {
            for round in &m.paths {
                for (path, _) in ordered(round) {
                    if !columns.contains(path) {
                        columns.push(path.clone());
                    }
                }
            }
        }
    }
    if columns.is_empty() {
        return out;
    }
    let head: Vec<String> = columns
        .iter()
        .map(|p| format!("`{p}` ({})", capp_of(p)))
        .collect();
    let header = |round: bool| {
        let mut h = String::from("| scenario | proxy ");
        if round {
            h.push_str("| round ");
        }
        for p in &head {
            let _ = write!(h, "| {p}: failed | {p}: failed while all out ");
        }
        h.push_str("|\n|---|---|");
        h.push_str(&"---:|".repeat(columns.len() * 2 + usize::from(round)));
        h.push('\n');
        h
    };
    let map: Vec<String> = CAPPS
        .iter()
        .map(|(name, prefix)| format!("{{ name: {name}, paths: [{prefix}] }}"))
        .collect();
    let _ = write!(
        out,
        "\n## Per integration\n\n\
         Requests by path (each connection cycles through them). healthgate's configuration in \
         these scenarios adds `capps: [{}]`; HAProxy's is unchanged (it has no equivalent). \
         *failed*: failed/sent, with the 503 answers among the failed, over the whole run; \
         *failed while all out*: only the requests started while the proxy's own view showed \
         every node out, until the CApp was removed. Medians over the rounds, then each round.\n\n",
        map.join(", ")
    );
    out.push_str(&header(false));
    for (name, per_kind) in results {
        for (kind, m) in per_kind.iter().filter(|(_, m)| !m.paths.is_empty()) {
            let _ = write!(out, "| {name} | {} ", kind.label());
            for p in &columns {
                let rounds: Vec<&PathCount> = m.paths.iter().filter_map(|r| r.get(p)).collect();
                let (whole, window) = cells(&rounds);
                let _ = write!(out, "| {whole} | {window} ");
            }
            out.push_str("|\n");
        }
    }
    out.push('\n');
    out.push_str(&header(true));
    for (name, per_kind) in results {
        for (kind, m) in per_kind {
            for (i, round) in m.paths.iter().enumerate() {
                let _ = write!(out, "| {name} | {} | {} ", kind.label(), i + 1);
                for p in &columns {
                    let (whole, window) = cells(&round.get(p).into_iter().collect::<Vec<_>>());
                    let _ = write!(out, "| {whole} | {window} ");
                }
                out.push_str("|\n");
            }
        }
    }
    out
}
