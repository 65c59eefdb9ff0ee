//! One configured node as the cluster keeps it: the hot path's [`Backend`] plus its health
//! record, operator flag and outlier record. A reload keeps a node's `Member` (state and
//! counters) as long as its name and addresses stay the same.

use super::LastProbe;
use crate::health::{HealthMachine, NodeState};
use crate::outlier;
use crate::routing::Backend;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;
use tokio::sync::Notify;

/// What the probes and live traffic have shown about a node.
#[derive(Debug)]
pub(super) struct NodeHealth {
    pub machine: HealthMachine,
    pub since: SystemTime,
    pub faulty_capps: Vec<String>,
    pub last_error: Option<String>,
    pub last_probes: [Option<LastProbe>; 3],
}

/// A node and everything known about it.
#[derive(Debug)]
pub(super) struct Member {
    pub backend: Arc<Backend>,
    health: Mutex<NodeHealth>,
    /// Mirror of the state for lock-free reads by table rebuilds.
    state: AtomicU8,
    /// Wakes the node's poller for an immediate readiness round (after a passive eviction).
    pub recheck: Notify,
    /// Taken out of the routing table by the operator, whatever its health.
    pub drained: AtomicBool,
    /// Failure streak and ejection under outlier detection.
    pub outlier: outlier::Record,
}

impl Member {
    /// A node with no verdict yet (`starting`).
    pub fn new(backend: Arc<Backend>) -> Member {
        Member {
            backend,
            health: Mutex::new(NodeHealth {
                machine: HealthMachine::new(),
                since: SystemTime::now(),
                faulty_capps: Vec::new(),
                last_error: None,
                last_probes: [None; 3],
            }),
            state: AtomicU8::new(NodeState::Starting.to_u8()),
            recheck: Notify::new(),
            drained: AtomicBool::new(false),
            outlier: outlier::Record::default(),
        }
    }

    /// The health record, locked.
    pub fn lock(&self) -> MutexGuard<'_, NodeHealth> {
        // A poisoned lock only means a panic elsewhere; the record itself stays consistent.
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current state, without the lock.
    pub fn state(&self) -> NodeState {
        NodeState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Mirror a flip (called under the health lock).
    pub fn set_state(&self, state: NodeState) {
        self.state.store(state.to_u8(), Ordering::Release);
    }

    /// Whether the operator drained the node.
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }
}

/// The configured nodes: in configuration order, and by id.
#[derive(Debug, Default)]
pub(super) struct MemberSet {
    pub list: Vec<Arc<Member>>,
    /// Indexed by [`Backend::id`]; `None` for ids of removed nodes (ids are never reused,
    /// so this grows only by the nodes reloads add).
    by_id: Vec<Option<Arc<Member>>>,
}

impl MemberSet {
    /// A set of `list`.
    pub fn new(list: Vec<Arc<Member>>) -> MemberSet {
        let len = list.iter().map(|m| m.backend.id + 1).max().unwrap_or(0);
        let mut by_id = vec![None; len];
        for m in &list {
            by_id[m.backend.id] = Some(m.clone());
        }
        MemberSet { list, by_id }
    }

    /// The member with `id`, unless it was removed.
    pub fn get(&self, id: usize) -> Option<&Arc<Member>> {
        self.by_id.get(id).and_then(Option::as_ref)
    }
}
