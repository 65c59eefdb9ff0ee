//! One configured node as the cluster keeps it: the hot path's [`Backend`] plus its health
//! record, operator drain and outlier record. Each fact about the node lives here once: its
//! state in the health machine, its drain in `drained`, its ejection in `outlier`. A reload
//! keeps a node's `Member` (state and counters) as long as its name and addresses stay the
//! same.

use super::LastProbe;
use crate::health::{HealthMachine, NodeState, ProbeKind};
use crate::routing::Backend;
use crate::routing::outlier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;
use tokio::sync::Notify;

/// What the probes and live traffic have shown about a member.
#[derive(Debug)]
pub(super) struct HealthRecord {
    /// The state and the streaks behind it: the one place the state is kept.
    pub machine: HealthMachine,
    /// When the state last changed.
    pub since: SystemTime,
    /// Faulty CApps from the last readiness answer.
    pub faulty_capps: Vec<String>,
    /// The latest failure reason, cleared when the node becomes ready.
    pub last_error: Option<String>,
    /// The latest probe of each kind, indexed like [`ProbeKind::ALL`].
    pub last_probes: [Option<LastProbe>; ProbeKind::ALL.len()],
}

/// A node and everything known about it.
#[derive(Debug)]
pub(super) struct Member {
    pub backend: Arc<Backend>,
    health: Mutex<HealthRecord>,
    /// Wakes the node's poller for an immediate readiness round (after a passive eviction).
    pub recheck: Notify,
    /// Taken out of the routing table by the operator, whatever its health.
    drained: AtomicBool,
    /// Failure streak and ejection under outlier detection.
    pub outlier: outlier::Record,
}

impl Member {
    /// A node with no verdict yet (`starting`), drained if `drained`.
    pub fn new(backend: Arc<Backend>, drained: bool) -> Member {
        Member {
            backend,
            health: Mutex::new(HealthRecord {
                machine: HealthMachine::new(),
                since: SystemTime::now(),
                faulty_capps: Vec::new(),
                last_error: None,
                last_probes: [None; ProbeKind::ALL.len()],
            }),
            recheck: Notify::new(),
            drained: AtomicBool::new(drained),
            outlier: outlier::Record::default(),
        }
    }

    /// The health record, locked.
    pub fn lock(&self) -> MutexGuard<'_, HealthRecord> {
        // A poisoned lock only means a panic elsewhere; the record itself stays consistent.
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current state (read under the health lock: there is no other copy).
    pub fn state(&self) -> NodeState {
        self.lock().machine.state()
    }

    /// Whether the operator drained the node.
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    /// Drain or undrain; true if that changed anything.
    pub fn set_drained(&self, drained: bool) -> bool {
        self.drained.swap(drained, Ordering::AcqRel) != drained
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

    /// The member named `name`.
    pub fn named(&self, name: &str) -> Option<&Arc<Member>> {
        self.list.iter().find(|m| m.backend.name == name)
    }
}
