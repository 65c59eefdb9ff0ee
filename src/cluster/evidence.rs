//! Evidence about nodes — probe rounds, live-traffic failures and answers — fed to each
//! member's state machine (or, for answers, its outlier record); a flip is logged, counted
//! and rebuilds the routing table. A probe that could not be made for want of this host's
//! resources is no evidence at all.

use super::member::{HealthRecord, Member};
use super::{Cluster, LastProbe};
use crate::health::{Flip, Healthz, NodeState, Observation, ProbeKind, ProbeOutcome, ProbeResult};
use crate::telemetry::LocalErrorSource;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

impl Cluster {
    /// A readiness round: `/healthz`, plus the traffic-port connect if the round made one.
    /// Returns whether `/healthz` passed, fully or partly (its node answered as a live MI
    /// does).
    pub fn record_readiness(
        &self,
        id: usize,
        healthz: &ProbeOutcome,
        traffic: Option<&ProbeOutcome>,
    ) -> bool {
        let Some(member) = self.member(id) else {
            return false;
        };
        if self.made_locally(&[Some(healthz), traffic]) {
            return false;
        }
        let verdict = self.healthz_verdict(healthz);
        let observation = match traffic.is_some_and(failed_tls) {
            true => Observation::TlsFailed,
            false => Observation::Readiness {
                healthz: verdict,
                traffic_ok: traffic.map(ProbeOutcome::passed),
            },
        };
        let reason = traffic
            .filter(|t| !t.passed())
            .or((verdict == Healthz::Failed).then_some(healthz))
            .map(|o| o.reason.clone());
        // The status code is the truth: a 200 has no faulty CApps, whatever its body says;
        // otherwise they are whatever the last answer listed.
        let capps = healthz.status.map(|status| match status {
            200 => Vec::new(),
            _ => healthz.faulty_capps.clone(),
        });
        let evidence = Evidence {
            observation: Some(observation),
            reason,
            capps,
            probe: Some((ProbeKind::Readiness, healthz)),
            traffic,
        };
        self.observe(&member, evidence);
        verdict != Healthz::Failed
    }

    /// What a `/healthz` answer says: 200 passes; a 500 whose complete list of faulty
    /// CApps names only mapped ones passes partly (every other path may go to the node);
    /// anything else fails, so a CApp nobody mapped takes the node out as before.
    fn healthz_verdict(&self, healthz: &ProbeOutcome) -> Healthz {
        if healthz.passed() {
            return Healthz::Ok;
        }
        let listed = healthz.status == Some(500)
            && healthz.faulty_capps_complete
            && !healthz.faulty_capps.is_empty();
        if !listed {
            return Healthz::Failed;
        }
        // The map of the table in force: lock-free, and the one routing uses.
        let table = self.table();
        let routes = table.routes();
        match healthz
            .faulty_capps
            .iter()
            .all(|c| routes.route_of_faulty(c).is_some())
        {
            true => Healthz::Partly,
            false => Healthz::Failed,
        }
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
        if self.made_locally(&[liveness, traffic]) {
            return;
        }
        let (observation, reason) = match (traffic.filter(|t| !t.passed()), liveness) {
            (Some(t), _) if failed_tls(t) => (Some(Observation::TlsFailed), Some(t.reason.clone())),
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
            probe: liveness.map(|l| (ProbeKind::Liveness, l)),
            traffic,
        };
        self.observe(&member, evidence);
    }

    /// Live traffic could not use the node (connect failed, or a pooled connection broke;
    /// `tls`: the TLS handshake failed): evict at once and ask its poller to verify right
    /// away.
    pub fn traffic_failed(&self, id: usize, reason: String, tls: bool) {
        let Some(member) = self.member(id) else {
            return;
        };
        member.backend.counters.count_connect_failure();
        let flip = {
            let mut h = member.lock();
            h.last_error = Some(reason.clone());
            let observation = match tls {
                true => Observation::TlsFailed,
                false => Observation::TrafficFailed,
            };
            self.apply(&member, &mut h, observation, Some(&reason))
        };
        if let Some(flip) = flip {
            self.publish_flip(flip);
        }
        member.recheck.notify_one();
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
        backend.counters.count_ejection();
        log::warn!(
            "node={} ejected for {length:?} by outlier detection: failed answers in a row (last: {})",
            backend.name,
            status.map_or_else(|| "no answer".to_string(), |s| s.to_string())
        );
        self.rebuild_table(false);
        // The ejection ends by itself (the record holds its end); the table, built from the
        // records, needs a rebuild then to let the node back in.
        let cluster = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(length).await;
            log::info!("node={} ejection over", backend.name);
            cluster.rebuild_table(false);
        });
    }

    /// Whether any of a round's probes could not be made for want of this host's resources:
    /// then the round says nothing about the node, and is counted as a local error instead.
    fn made_locally(&self, outcomes: &[Option<&ProbeOutcome>]) -> bool {
        let Some(local) = outcomes.iter().flatten().find(|o| o.local) else {
            return false;
        };
        self.local_connect_error(LocalErrorSource::Probe, &local.reason);
        true
    }

    /// Count a probe round's outcomes, record them and its evidence under the node's lock,
    /// and rebuild the table if the node flipped.
    fn observe(&self, member: &Member, evidence: Evidence<'_>) {
        let (probe, traffic) = (evidence.probe, evidence.traffic);
        let counters = &member.backend.counters;
        if let Some((kind, outcome)) = probe {
            counters.observe_probe(kind, outcome.result, outcome.elapsed.as_secs_f64());
        }
        if let Some(t) = traffic {
            counters.observe_probe(ProbeKind::Tcp, t.result, t.elapsed.as_secs_f64());
        }
        let mut capps_changed = false;
        let flip = {
            let mut h = member.lock();
            if let Some((kind, outcome)) = probe {
                h.last_probes[kind as usize] = Some(LastProbe::of(outcome));
            }
            if let Some(t) = traffic {
                h.last_probes[ProbeKind::Tcp as usize] = Some(LastProbe::of(t));
            }
            if let Some(capps) = evidence.capps {
                capps_changed = h.faulty_capps != capps;
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
        // routable), and so may other faulty CApps (the routes they serve lose or regain
        // the node); `publish` makes no new table when nothing changed.
        match flip {
            Some(flip) => self.publish_flip(flip),
            None if capps_changed => self.rebuild_table(false),
            None => {}
        }
    }

    /// Publish the table a flip changed. A node's first verdict counts as awaited (see
    /// [`Cluster::awaiting_first_verdicts`]) until this table is out: between the flip and
    /// the publish, a request waiting for it would otherwise find no node and get 503.
    fn publish_flip(&self, flip: Flip) {
        self.rebuild_table(false);
        if flip.from == NodeState::Starting {
            self.first_verdicts_unpublished
                .fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Feed the state machine (under the node's lock, so concurrent flips cannot leave
    /// gauges out of order); log and count a flip.
    fn apply(
        &self,
        member: &Member,
        h: &mut HealthRecord,
        observation: Observation,
        reason: Option<&str>,
    ) -> Option<Flip> {
        let flip = h
            .machine
            .observe(observation, &self.judgement.load().thresholds)?;
        h.since = SystemTime::now();
        if flip.from == NodeState::Starting {
            // Counted before the node's lock is released, so whoever sees the new state
            // sees the count too; `publish_flip` takes it back.
            self.first_verdicts_unpublished
                .fetch_add(1, Ordering::SeqCst);
        }
        let readmitted = flip.to.is_routable() && !flip.from.is_routable();
        // Slow start is for readmission; at start-up every node starts together.
        if readmitted && flip.from != NodeState::Starting {
            member.backend.begin_ramp();
        }
        if flip.to.is_routable() {
            h.last_error = None;
        }
        let partly;
        let reason = reason.unwrap_or(match flip.to {
            NodeState::Ready => "readiness passed and traffic port accepts",
            NodeState::PartlyReady => {
                partly = format!(
                    "faulty CApps {} are all mapped: routable for every other path",
                    h.faulty_capps.join(", ")
                );
                &partly
            }
            NodeState::NotReady => "alive again; readiness not yet passed",
            _ => "no reason recorded",
        });
        log::info!(
            "node={} from={} to={} reason={reason:?}",
            member.backend.name,
            flip.from,
            flip.to
        );
        member.backend.counters.count_transition(flip.to);
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
    probe: Option<(ProbeKind, &'a ProbeOutcome)>,
    /// The traffic-port connect, if the round made one.
    traffic: Option<&'a ProbeOutcome>,
}

/// Whether a traffic-port check failed in its TLS handshake.
fn failed_tls(outcome: &ProbeOutcome) -> bool {
    outcome.result == ProbeResult::Tls
}
