//! The per-node health state machine: a pure function of (state, observation) → flip.
//!
//! No I/O and no clocks: the poller and the proxy feed it observations, and only a returned
//! [`Flip`] makes them rebuild the routing table, log, and count a transition.

use std::fmt;

/// Where a node stands. Only `Ready` nodes receive traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// No verdict yet.
    Starting,
    /// Readiness passed and the traffic port accepts connections: in the routing table.
    Ready,
    /// As `Ready`, but `/healthz` lists faulty CApps, every one of them mapped to paths
    /// (`capps`): routable for every path but theirs.
    PartlyReady,
    /// Alive, but `/healthz` is not 200 (faulty CApps, or no answer in time).
    NotReady,
    /// Liveness failed or the traffic port refused a connection.
    Dead,
}

impl NodeState {
    /// Every state, in the order metrics and the status page list them.
    pub const ALL: [NodeState; 5] = [
        NodeState::Starting,
        NodeState::Ready,
        NodeState::PartlyReady,
        NodeState::NotReady,
        NodeState::Dead,
    ];

    /// The name used in metrics labels, logs and `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Starting => "starting",
            NodeState::Ready => "ready",
            NodeState::PartlyReady => "partly_ready",
            NodeState::NotReady => "not_ready",
            NodeState::Dead => "dead",
        }
    }

    /// Whether the node receives traffic (`Ready`, or `PartlyReady` for the paths of its
    /// working CApps).
    pub fn is_routable(self) -> bool {
        matches!(self, NodeState::Ready | NodeState::PartlyReady)
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a `/healthz` answer says about readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Healthz {
    /// 200 within the deadline.
    Ok,
    /// 500 listing faulty CApps that are all mapped to paths: a pass for every other path.
    Partly,
    /// Anything else: another status, an unmapped faulty CApp, no answer in time.
    Failed,
}

/// One piece of evidence about a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// A readiness round: what `/healthz` said, and, when the round checked it, did the
    /// traffic port accept a connection?
    Readiness {
        /// The `/healthz` verdict.
        healthz: Healthz,
        /// `Some(result)` when the round also connected to the traffic port.
        traffic_ok: Option<bool>,
    },
    /// A liveness round (`/liveness` answered) passed or failed.
    Liveness(bool),
    /// The traffic port refused or failed a connection (from a probe or from live traffic).
    TrafficFailed,
    /// The traffic port accepted a connection, but its TLS handshake failed (unknown CA,
    /// wrong name, expired): the node is alive and cannot serve.
    TlsFailed,
}

/// Thresholds from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive readiness passes that make a node ready.
    pub success: u32,
    /// Consecutive readiness failures that make a ready node not ready.
    pub failure: u32,
    /// Consecutive liveness failures that make a node dead.
    pub liveness_failure: u32,
}

/// A change of state: the only thing that triggers work elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flip {
    /// State before.
    pub from: NodeState,
    /// State after.
    pub to: NodeState,
}

/// The state and the streak counters behind its hysteresis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthMachine {
    state: NodeState,
    ready_streak: u32,
    unready_streak: u32,
    liveness_failures: u32,
}

impl Default for HealthMachine {
    fn default() -> Self {
        HealthMachine::new()
    }
}

impl HealthMachine {
    /// A node with no verdict yet (`Starting`).
    pub fn new() -> HealthMachine {
        HealthMachine {
            state: NodeState::Starting,
            ready_streak: 0,
            unready_streak: 0,
            liveness_failures: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> NodeState {
        self.state
    }

    /// Whether the next readiness round must also connect to the traffic port: readmission
    /// needs `/healthz` 200 *and* a live traffic port, because MI keeps answering 200 while
    /// it shuts its traffic port.
    pub fn needs_traffic_check(&self) -> bool {
        !self.state.is_routable()
    }

    /// Apply one observation; returns the flip if the state changed.
    pub fn observe(&mut self, observation: Observation, t: &Thresholds) -> Option<Flip> {
        let next = match observation {
            Observation::TrafficFailed
            | Observation::Readiness {
                traffic_ok: Some(false),
                ..
            } => self.traffic_failed(),
            Observation::TlsFailed => {
                self.ready_streak = 0;
                NodeState::NotReady
            }
            Observation::Readiness {
                healthz: Healthz::Failed,
                ..
            } => self.readiness_failed(t),
            Observation::Readiness {
                healthz,
                traffic_ok,
            } => {
                if self.state.is_routable() || traffic_ok == Some(true) {
                    self.readiness_passed(t, healthz == Healthz::Partly)
                } else {
                    // `/healthz` 200 alone says nothing about readmission (MI answers 200
                    // while its traffic port is closed): neither a pass nor a failure.
                    self.state
                }
            }
            Observation::Liveness(true) => self.liveness_passed(),
            Observation::Liveness(false) => self.liveness_failed(t),
        };
        self.move_to(next)
    }

    fn traffic_failed(&mut self) -> NodeState {
        self.ready_streak = 0;
        NodeState::Dead
    }

    /// A pass (`partly`: for the paths of the working CApps only). A routable node moves
    /// between ready and partly ready on the answer that says so: which CApps are faulty
    /// is MI's own report, not a guess hysteresis should smooth.
    fn readiness_passed(&mut self, t: &Thresholds, partly: bool) -> NodeState {
        self.unready_streak = 0;
        self.ready_streak = self.ready_streak.saturating_add(1);
        if self.state.is_routable() || self.ready_streak >= t.success {
            // A ready verdict includes a live traffic port: the node is alive too.
            self.liveness_failures = 0;
            match partly {
                true => NodeState::PartlyReady,
                false => NodeState::Ready,
            }
        } else {
            self.state
        }
    }

    fn readiness_failed(&mut self, t: &Thresholds) -> NodeState {
        self.ready_streak = 0;
        self.unready_streak = self.unready_streak.saturating_add(1);
        match self.state {
            NodeState::Starting | NodeState::Ready | NodeState::PartlyReady
                if self.unready_streak >= t.failure =>
            {
                NodeState::NotReady
            }
            // A dead node stays dead until it proves liveness or readiness.
            other => other,
        }
    }

    fn liveness_passed(&mut self) -> NodeState {
        self.liveness_failures = 0;
        match self.state {
            NodeState::Dead => NodeState::NotReady,
            other => other,
        }
    }

    fn liveness_failed(&mut self, t: &Thresholds) -> NodeState {
        self.liveness_failures = self.liveness_failures.saturating_add(1);
        if self.liveness_failures >= t.liveness_failure {
            self.ready_streak = 0;
            NodeState::Dead
        } else {
            self.state
        }
    }

    fn move_to(&mut self, next: NodeState) -> Option<Flip> {
        if next == self.state {
            return None;
        }
        let flip = Flip {
            from: self.state,
            to: next,
        };
        self.state = next;
        // A fresh state starts fresh streaks, so hysteresis is measured from the flip.
        match next {
            NodeState::Ready | NodeState::PartlyReady => self.unready_streak = 0,
            NodeState::NotReady | NodeState::Dead => self.ready_streak = 0,
            NodeState::Starting => {}
        }
        Some(flip)
    }
}

#[cfg(test)]
mod tests;
