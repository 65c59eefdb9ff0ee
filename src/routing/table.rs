//! The routing table: one immutable snapshot of the routable nodes behind one `ArcSwap`.
//!
//! Everything a request needs (routable backends with prebuilt peers, the selector, the
//! generation) lives in one [`RoutingTable`], so a request sees one consistent view with a
//! single lock-free load, and a flip publishes a whole new table with a single store.

use super::backend::{Backend, Tried};
use super::select::Selector;
use crate::config::Algorithm;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// The routable backends a table is built from.
#[derive(Debug, Default)]
pub struct Routable {
    /// The backends that may receive traffic, in configuration order.
    pub backends: Vec<Arc<Backend>>,
    /// True when no node is ready and these are alive but not ready nodes, routed to under
    /// `when_none_ready: any_alive`.
    pub fallback: bool,
}

impl Routable {
    /// Ready nodes.
    pub fn ready(backends: Vec<Arc<Backend>>) -> Routable {
        Routable {
            backends,
            fallback: false,
        }
    }
}

/// An immutable view of the nodes that may receive traffic.
#[derive(Debug)]
pub struct RoutingTable {
    generation: u64,
    backends: Box<[Arc<Backend>]>,
    fallback: bool,
    selector: Selector,
    slow_start: Option<Duration>,
}

impl RoutingTable {
    /// A table over `routable` with the given algorithm (and no slow start).
    pub fn new(generation: u64, algorithm: Algorithm, routable: Routable) -> RoutingTable {
        let selector = Selector::new(algorithm, &routable.backends);
        RoutingTable {
            generation,
            backends: routable.backends.into_boxed_slice(),
            fallback: routable.fallback,
            selector,
            slow_start: None,
        }
    }

    /// Bumped on every rebuild; starts at 0 for the empty table before any verdict.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The routable backends, in configuration order.
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// Number of routable nodes.
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// Whether no node is routable.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// Number of ready nodes: the routable ones, unless this is a fallback table.
    pub fn ready(&self) -> usize {
        if self.fallback {
            0
        } else {
            self.backends.len()
        }
    }

    /// Whether no node is ready and the table routes to alive, not ready nodes instead.
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    /// Pick a routable node not yet tried by this request. Under slow start, a node still
    /// ramping up is passed over with probability 1 − its share (but taken if every
    /// candidate is ramping: slow start never refuses traffic).
    pub fn pick(&self, tried: &Tried) -> Option<&Arc<Backend>> {
        let Some(ramp) = self.slow_start else {
            return self.selector.pick(&self.backends, tried);
        };
        let mut passed_over = *tried;
        let mut fallback = None;
        while let Some(candidate) = self.selector.pick(&self.backends, &passed_over) {
            let share = candidate.ramp_share(ramp);
            if share >= 1.0 || fastrand::f64() < share {
                return Some(candidate);
            }
            fallback.get_or_insert(candidate);
            if passed_over.is_full() {
                break;
            }
            passed_over.push(candidate.id);
        }
        fallback
    }
}

/// Owns the current table and publishes new ones.
#[derive(Debug)]
pub struct Router {
    current: ArcSwap<RoutingTable>,
    /// How tables are built. Held while a table is built, so rebuilds are serialised and
    /// generations are published in order.
    policy: Mutex<Policy>,
}

/// The settings a table is built with (a reload may change them).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Policy {
    algorithm: Algorithm,
    slow_start: Option<Duration>,
}

impl Router {
    /// A router with an empty table (generation 0): nothing is routable before a verdict.
    pub fn new(algorithm: Algorithm) -> Router {
        Router {
            current: ArcSwap::from_pointee(RoutingTable::new(0, algorithm, Routable::default())),
            policy: Mutex::new(Policy {
                algorithm,
                slow_start: None,
            }),
        }
    }

    /// Ramp readmitted nodes up over `slow_start` (`None`: off).
    pub fn with_slow_start(self, slow_start: Option<Duration>) -> Router {
        self.lock_policy().slow_start = slow_start;
        self
    }

    /// Build later tables with `algorithm` and `slow_start`; true if that is a change (the
    /// caller then publishes with `force`).
    pub fn set_policy(&self, algorithm: Algorithm, slow_start: Option<Duration>) -> bool {
        let mut policy = self.lock_policy();
        let new = Policy {
            algorithm,
            slow_start,
        };
        let changed = *policy != new;
        *policy = new;
        changed
    }

    fn lock_policy(&self) -> std::sync::MutexGuard<'_, Policy> {
        self.policy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current table: one lock-free load.
    pub fn load(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.current.load()
    }

    /// The current table as an owned `Arc` (for readers that hold it across awaits).
    pub fn load_full(&self) -> Arc<RoutingTable> {
        self.current.load_full()
    }

    /// Build a table from `routable()` and publish it with the next generation, then let
    /// `published` see the previous and the new table. Both run under the policy lock, so
    /// the last publisher always sees the latest states and observers see generations in
    /// order. Unless `force` (the policy or a weight changed), nothing is published when
    /// the backends are the ones already published (two flips raced and the first rebuild
    /// saw both): the generation counts changes only.
    pub fn publish(
        &self,
        force: bool,
        routable: impl FnOnce() -> Routable,
        published: impl FnOnce(&RoutingTable, &RoutingTable),
    ) {
        let policy = self.lock_policy();
        let current = self.current.load_full();
        let routable = routable();
        let same_ids = |a: &[Arc<Backend>], b: &[Arc<Backend>]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.id == y.id)
        };
        if !force
            && current.fallback == routable.fallback
            && same_ids(&current.backends, &routable.backends)
        {
            return;
        }
        let generation = current.generation + 1;
        let mut table = RoutingTable::new(generation, policy.algorithm, routable);
        table.slow_start = policy.slow_start;
        let table = Arc::new(table);
        self.current.store(table.clone());
        published(&current, &table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_counts_membership_changes_only() {
        let nodes = crate::routing::select::tests::backends(&[1, 1, 1]);
        let router = Router::new(Algorithm::RoundRobin);
        let publish = |ids: &[usize]| {
            let ready = ids.iter().map(|&i| nodes[i].clone()).collect();
            router.publish(false, || Routable::ready(ready), |_, _| {});
            router.load().generation()
        };
        assert_eq!(publish(&[]), 0, "the empty table is already published");
        assert_eq!(publish(&[0, 1]), 1);
        assert_eq!(publish(&[0, 1]), 1, "same set: no new table");
        assert_eq!(publish(&[0, 2]), 2, "same size, other node");
        assert_eq!(publish(&[0, 1, 2]), 3);
        assert_eq!(router.load().len(), 3);
        let alive = Routable {
            backends: vec![nodes[0].clone(), nodes[1].clone(), nodes[2].clone()],
            fallback: true,
        };
        router.publish(false, || alive, |_, _| {});
        let table = router.load();
        assert_eq!(
            table.generation(),
            4,
            "same nodes, now as a fallback: a new table"
        );
        assert_eq!((table.len(), table.ready()), (3, 0));
    }
}
