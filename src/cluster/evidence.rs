//! Evidence about nodes — probe rounds, live-traffic failures and answers, the operator's
//! drain — fed to each node's state machine; a flip is logged, counted and rebuilds the
//! routing table.

use super::member::{Member, NodeHealth};
use super::{Cluster, LastProbe};
use crate::admin::Probe;
use crate::health::{Flip, NodeState, Observation, ProbeOutcome};
use std::sync::Arc;
use std::time::SystemTime;

impl Cluster {
    /// A readiness round: `/healthz`, plus the traffic-port connect if the round made one.
    pub fn record_readiness(
        &self,
        id: usize,
        healthz: &ProbeOutcome,
        traffic: Option<&ProbeOutcome>,
    ) {
        let Some(member) = self.member(id) else {
            return;
        };
        // The status code is the truth; faulty CApps are whatever the last answer listed.
        if healthz.status.is_some() {
            member
                .backend
                .series
                .set_faulty_capps(healthz.faulty_capps.len());
        }
        let observation = Observation::Readiness {
            healthz_ok: healthz.passed(),
            traffic_ok: traffic.map(ProbeOutcome::passed),
        };
        let reason = traffic
            .filter(|t| !t.passed())
            .or((!healthz.passed()).then_some(healthz))
            .map(|o| o.reason.clone());
        let evidence = Evidence {
            observation: Some(observation),
            reason,
            capps: healthz.status.map(|_| healthz.faulty_capps.clone()),
            probe: Some((Probe::Readiness, healthz)),
            traffic,
        };
        self.observe(&member, evidence);
    }

    /// A liveness round: `/liveness` (`None`: skipped, the node having just passed
    /// readiness), plus the traffic-port connect if configured. A failed connect is evidence
    /// on its own and evicts at once.
    pub fn record_liveness(
        &self,
        id: usize,
        liveness: Option<&ProbeOutcome>,
        traffic: Option<&ProbeOutcome>,
    ) {
        let Some(member) = self.member(id) else {
            return;
        };
        let (observation, reason) = match (traffic.filter(|t| !t.passed()), liveness) {
            (Some(t), _) => (Some(Observation::TrafficFailed), Some(t.reason.clone())),
            (None, Some(l)) => (
                Some(Observation::Liveness(l.passed())),
                (!l.passed()).then(|| l.reason.clone()),
            ),
            (None, None) => (None, None),
        };
        let evidence = Evidence {
            observation,
            reason,
            capps: None,
            probe: liveness.map(|l| (Probe::Liveness, l)),
            traffic,
        };
        self.observe(&member, evidence);
    }

    /// Live traffic could not use the node (connect failed, or a pooled connection broke):
    /// evict at once and ask its poller to verify right away.
    pub fn traffic_failed(&self, id: usize, reason: String) {
        let Some(member) = self.member(id) else {
            return;
        };
        member.backend.series.count_connect_failure();
        let flip = {
            let mut h = member.lock();
            h.last_error = Some(reason.clone());
            self.apply(&member, &mut h, Observation::TrafficFailed, Some(&reason))
        };
        if flip.is_some() {
            self.rebuild_table(false);
        }
        member.recheck.notify_one();
    }

    /// Drain (`true`) or undrain a node by name: a drained node leaves the routing table at
    /// once, whatever its health; requests in flight to it finish. `None` if no such node.
    pub fn set_drained(&self, name: &str, drained: bool) -> Option<()> {
        let members = self.members.load();
        let member = members.list.iter().find(|m| m.backend.name == name)?;
        member
            .drained
            .store(drained, std::sync::atomic::Ordering::Release);
        member.backend.series.set_drained(drained);
        self.rebuild_table(false);
        Some(())
    }

    /// A live-traffic answer from node `id` (`None`: none came): feeds outlier detection,
    /// which may eject the node for a while.
    pub fn record_answer(self: &Arc<Self>, id: usize, status: Option<u16>) {
        let Some(outliers) = &self.outliers else {
            return;
        };
        let members = self.members.load();
        let Some(member) = members.get(id) else {
            return;
        };
        let failed = status.is_none_or(|s| s >= 500);
        let everyone = || members.list.iter().map(|m| &m.outlier);
        let Some(length) = outliers.record(&member.outlier, failed, everyone) else {
            return;
        };
        let backend = member.backend.clone();
        backend.series.record_ejection();
        log::warn!(
            "node={} ejected for {length:?} by outlier detection: failed answers in a row (last: {})",
            backend.name,
            status.map_or_else(|| "no answer".to_string(), |s| s.to_string())
        );
        self.rebuild_table(false);
        let cluster = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(length).await;
            backend.series.end_ejection();
            log::info!("node={} ejection over", backend.name);
            cluster.rebuild_table(false);
        });
    }

    /// Count a probe round's outcomes, record them and its evidence under the node's lock,
    /// and rebuild the table if the node flipped.
    fn observe(&self, member: &Member, evidence: Evidence<'_>) {
        let (probe, traffic) = (evidence.probe, evidence.traffic);
        let series = &member.backend.series;
        if let Some((kind, outcome)) = probe {
            series.observe_probe(kind, outcome.result, outcome.elapsed.as_secs_f64());
        }
        if let Some(t) = traffic {
            series.observe_probe(Probe::Tcp, t.result, t.elapsed.as_secs_f64());
        }
        let flip = {
            let mut h = member.lock();
            if let Some((kind, outcome)) = probe {
                h.last_probes[kind as usize] = Some(LastProbe::of(outcome));
            }
            if let Some(t) = traffic {
                h.last_probes[Probe::Tcp as usize] = Some(LastProbe::of(t));
            }
            if let Some(capps) = evidence.capps {
                h.faulty_capps = capps;
            }
            if evidence.reason.is_some() {
                h.last_error = evidence.reason.clone();
            }
            let reason = evidence.reason.as_deref();
            evidence
                .observation
                .and_then(|observation| self.apply(member, &mut h, observation, reason))
        };
        // Any flip may change the members (under `any_alive` a not-ready node may be
        // routable); `publish` makes no new table when they did not change.
        if flip.is_some() {
            self.rebuild_table(false);
        }
    }

    /// Feed the state machine (under the node's lock, so concurrent flips cannot leave
    /// gauges out of order); log and count a flip.
    fn apply(
        &self,
        member: &Member,
        h: &mut NodeHealth,
        observation: Observation,
        reason: Option<&str>,
    ) -> Option<Flip> {
        let flip = h
            .machine
            .observe(observation, &self.judgement.load().thresholds)?;
        h.since = SystemTime::now();
        // Slow start is for readmission; at start-up every node starts together.
        if flip.to == NodeState::Ready && flip.from != NodeState::Starting {
            member.backend.begin_ramp();
        }
        if flip.to == NodeState::Ready {
            h.last_error = None;
        }
        member.set_state(flip.to);
        let reason = reason.unwrap_or(match flip.to {
            NodeState::Ready => "readiness passed and traffic port accepts",
            NodeState::NotReady => "alive again; readiness not yet passed",
            _ => "no reason recorded",
        });
        log::info!(
            "node={} from={} to={} reason={reason:?}",
            member.backend.name,
            flip.from,
            flip.to
        );
        member.backend.series.record_transition(flip.to);
        Some(flip)
    }
}

/// One probe round's findings about a node.
struct Evidence<'a> {
    /// What the state machine is told (`None`: nothing new, e.g. a passed connect alone).
    observation: Option<Observation>,
    reason: Option<String>,
    /// The faulty CApps the readiness answer listed (`None`: no answer to read them from).
    capps: Option<Vec<String>>,
    /// The probe and its outcome, kept for the status page.
    probe: Option<(Probe, &'a ProbeOutcome)>,
    /// The traffic-port connect, if the round made one.
    traffic: Option<&'a ProbeOutcome>,
}
