//! Applying a new configuration to the running cluster (SIGHUP). Nodes are matched by name:
//! a node whose host and ports are unchanged keeps its state, counters and pooled
//! connections (a new weight applies at once); a new or moved node starts in `starting`; a
//! removed node leaves the routing table at once while requests in flight to it finish.

use super::member::{Member, MemberSet};
use super::{Cluster, ClusterError, Judgement};
use crate::config::Config;
use crate::health::ProbeSettings;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What a reload changed.
#[derive(Debug, Default)]
pub struct ReloadSummary {
    /// Ids of the nodes added (their pollers must start).
    pub added: Vec<usize>,
    /// Ids of the nodes removed (their pollers must stop).
    pub removed: Vec<usize>,
    /// Nodes kept with their state.
    pub kept: usize,
    /// Of those, nodes whose weight changed.
    pub reweighted: usize,
}

impl ReloadSummary {
    /// One line for the log.
    pub fn describe(&self) -> String {
        format!(
            "{} node(s) kept ({} reweighted), {} added, {} removed",
            self.kept,
            self.reweighted,
            self.added.len(),
            self.removed.len()
        )
    }
}

impl Cluster {
    /// Apply `config`'s nodes, probe settings and balancing policy, and publish one new
    /// table. Nothing changes if a new node's host does not resolve.
    pub fn reload(&self, config: &Config) -> Result<ReloadSummary, ClusterError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.members.load_full();
        let mut by_name: HashMap<&str, &Arc<Member>> = current
            .list
            .iter()
            .map(|m| (m.backend.name.as_str(), m))
            .collect();
        let mut summary = ReloadSummary::default();
        let mut list = Vec::with_capacity(config.nodes.len());
        let mut reweigh = Vec::new();
        for (index, node) in config.nodes.iter().enumerate() {
            let kept = by_name.remove(node.name.as_str()).filter(|m| {
                let b = &m.backend;
                b.host == node.host
                    && b.traffic_addr.port() == node.traffic_port
                    && b.health_addr.port() == node.health_port
            });
            match kept {
                Some(member) => {
                    if member.backend.weight() != node.weight {
                        reweigh.push((member.clone(), node.weight));
                    }
                    summary.kept += 1;
                    list.push(member.clone());
                }
                None => {
                    let member = Arc::new(Member::new(self.new_backend(index, node)?));
                    summary.added.push(member.backend.id);
                    list.push(member);
                }
            }
        }
        // Whatever was not claimed by name, or moved, is gone.
        let listed: HashSet<usize> = list.iter().map(|m| m.backend.id).collect();
        let mut retired = self
            .retired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        retired.retain(|b| b.in_flight() > 0);
        for m in &current.list {
            if !listed.contains(&m.backend.id) {
                log::info!(
                    "node={} removed by reload; {} request(s) in flight to it finish",
                    m.backend.name,
                    m.backend.in_flight()
                );
                summary.removed.push(m.backend.id);
                retired.push(m.backend.clone());
            }
        }
        drop(retired);
        summary.reweighted = reweigh.len();
        for (member, weight) in reweigh {
            member.backend.set_weight(weight);
        }
        self.judgement.store(Arc::new(Judgement::of(config)));
        self.probes.store(Arc::new(ProbeSettings::of(config)));
        self.router
            .set_policy(config.balancing.algorithm, config.balancing.slow_start);
        self.metrics
            .set_nodes(list.iter().map(|m| m.backend.series.clone()).collect());
        self.members.store(Arc::new(MemberSet::new(list)));
        self.rebuild_table(true);
        Ok(summary)
    }
}

/// The keys `old` and `new` differ in that a reload cannot apply: they take effect at the
/// next start (or `--upgrade`).
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut differs = |key: &'static str, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    differs("listen", old.listen != new.listen);
    differs("admin", old.admin != new.admin);
    differs("admin_token", old.admin_token != new.admin_token);
    differs("threads", old.threads != new.threads);
    differs(
        "balancing.retries",
        old.balancing.retries != new.balancing.retries,
    );
    differs("log", old.log != new.log);
    differs("shutdown", old.shutdown != new.shutdown);
    differs("timeouts", old.timeouts != new.timeouts);
    differs("limits", old.limits != new.limits);
    differs(
        "outlier_detection",
        old.outlier_detection != new.outlier_detection,
    );
    differs("upgrade_socket", old.upgrade_socket != new.upgrade_socket);
    keys
}
