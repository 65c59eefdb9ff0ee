//! One scenario against one proxy: nodes, proxy, view and load started; the scenario plays;
//! then the load stops and the run is measured.

use crate::load::Load;
use crate::nodes::{Cluster, NodeSpec};
use crate::proxies::{Extra, Kind, Proxy};
use crate::report::{Counters, Measured, Outcome, measure};
use crate::view::View;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Scenario pacing: how long the load runs around the events.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Load before the first event.
    pub warm: Duration,
    /// How long a node stays out once the proxy noticed (or gave up noticing).
    pub hold: Duration,
    /// Load after the last event.
    pub tail: Duration,
    /// How long a node flaps.
    pub flap: Duration,
}

impl Pace {
    /// Full phases, or shorter ones with `quick`.
    pub fn new(quick: bool) -> Pace {
        let s = Duration::from_secs_f64;
        match quick {
            true => Pace {
                warm: s(0.5),
                hold: s(0.5),
                tail: s(0.5),
                flap: s(4.0),
            },
            false => Pace {
                warm: s(1.0),
                hold: s(1.5),
                tail: s(1.0),
                flap: s(8.0),
            },
        }
    }
}

/// Everything one run has going.
pub struct Run {
    /// Which proxy.
    pub kind: Kind,
    /// Pacing.
    pub pace: Pace,
    /// The simulated nodes.
    pub cluster: Cluster,
    /// The proxy under test.
    pub proxy: Proxy,
    /// Its polled view.
    pub view: View,
    load: Load,
    before: Counters,
    dir: PathBuf,
    begun: Instant,
}

impl Run {
    /// Start `routed` nodes (in the proxy's configuration) and `standby` ones (running, not
    /// configured), the proxy, its view and the load on `paths`; warm up; note the proxy's
    /// counters.
    pub async fn begin(
        kind: Kind,
        dir: &Path,
        routed: &[NodeSpec],
        standby: &[NodeSpec],
        extra: &Extra,
        paths: &'static [&'static str],
        pace: Pace,
    ) -> Result<Run, String> {
        let begun = Instant::now();
        let mut cluster = Cluster::start(dir, routed).await?;
        for spec in standby {
            cluster.add(dir, spec.clone(), "0s").await?;
        }
        let proxy = Proxy::start(kind, dir, routed, extra).await?;
        let view = View::start(proxy.admin.clone());
        let load = Load::start(proxy.traffic, paths);
        tokio::time::sleep(pace.warm).await;
        let before = proxy.admin.failed_attempts().await;
        Ok(Run {
            kind,
            pace,
            cluster,
            proxy,
            view,
            load,
            before,
            dir: dir.to_path_buf(),
            begun,
        })
    }

    /// Let the load run a little more, stop it, and measure.
    pub async fn end(self, outcome: Outcome) -> Measured {
        tokio::time::sleep(self.pace.tail).await;
        let after = self.proxy.admin.failed_attempts().await;
        let records = self.load.stop().await;
        let log = self.view.transitions();
        // The raw data beside the logs (kept with --keep-logs), for a closer look at a run.
        let ms = |t: Instant| t.saturating_duration_since(self.begun).as_secs_f64() * 1000.0;
        let mut csv = String::from("start_ms,path,latency_ms,status,node\n");
        for r in &records {
            let status = r.status.map_or("error".into(), |s| s.to_string());
            let node = r.node.as_deref().unwrap_or("");
            let latency = r.latency.as_secs_f64() * 1000.0;
            let _ = writeln!(
                csv,
                "{:.1},{},{latency:.2},{status},{node}",
                ms(r.start),
                r.path
            );
        }
        let _ = std::fs::write(self.dir.join("records.csv"), csv);
        let mut csv = String::from("at_ms,node,routed\n");
        for t in &log {
            let _ = writeln!(csv, "{:.1},{},{}", ms(t.at), t.node, t.routed);
        }
        let _ = std::fs::write(self.dir.join("view.csv"), csv);
        measure(outcome, &records, &log, self.before, after)
    }
}
