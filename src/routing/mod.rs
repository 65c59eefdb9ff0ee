//! The routing table: one immutable snapshot of the ready nodes behind one `ArcSwap`.
//!
//! Everything a request needs (ready nodes with prebuilt peers, the selector, the
//! generation) lives in one [`RoutingTable`], so a request sees one consistent view with a
//! single lock-free load, and a state flip publishes a whole new table with a single store.

mod backend;
mod select;

pub use backend::{Backend, CONNECT_TIMEOUT, IDLE_TIMEOUT, InFlight, Tried};
pub use select::Selector;

use crate::config::Algorithm;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::Mutex;

/// An immutable view of the nodes that may receive traffic.
#[derive(Debug)]
pub struct RoutingTable {
    generation: u64,
    nodes: Box<[Arc<Backend>]>,
    selector: Selector,
}

impl RoutingTable {
    /// A table over `nodes` (all ready) with the given algorithm.
    pub fn new(generation: u64, algorithm: Algorithm, nodes: Vec<Arc<Backend>>) -> RoutingTable {
        let selector = Selector::new(algorithm, &nodes);
        RoutingTable {
            generation,
            nodes: nodes.into_boxed_slice(),
            selector,
        }
    }

    /// Bumped on every rebuild; starts at 0 for the empty table before any verdict.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The ready nodes, in configuration order.
    pub fn nodes(&self) -> &[Arc<Backend>] {
        &self.nodes
    }

    /// Number of ready nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is ready.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Pick a ready node not yet tried by this request.
    pub fn pick(&self, tried: &Tried) -> Option<&Arc<Backend>> {
        self.selector.pick(&self.nodes, tried)
    }
}

/// Owns the current table and publishes new ones.
#[derive(Debug)]
pub struct Router {
    current: ArcSwap<RoutingTable>,
    algorithm: Algorithm,
    /// Serialises rebuilds so generations are published in order.
    publish_lock: Mutex<()>,
}

impl Router {
    /// A router with an empty table (generation 0): nothing is routable before a verdict.
    pub fn new(algorithm: Algorithm) -> Router {
        Router {
            current: ArcSwap::from_pointee(RoutingTable::new(0, algorithm, Vec::new())),
            algorithm,
            publish_lock: Mutex::new(()),
        }
    }

    /// The current table: one lock-free load.
    pub fn load(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.current.load()
    }

    /// The current table as an owned `Arc` (for readers that hold it across awaits).
    pub fn load_full(&self) -> Arc<RoutingTable> {
        self.current.load_full()
    }

    /// Build a table from `ready()` and publish it with the next generation, then let
    /// `published` see it. Both run under the publish lock, so the last publisher always
    /// sees the latest states and observers see generations in order. When the ready set is
    /// the one already published (two flips raced and the first rebuild saw both), nothing
    /// is published: the generation counts membership changes only.
    pub fn publish(
        &self,
        ready: impl FnOnce() -> Vec<Arc<Backend>>,
        published: impl FnOnce(&RoutingTable),
    ) {
        let _serial = self
            .publish_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.current.load();
        let ready = ready();
        let same_ids = |a: &[Arc<Backend>], b: &[Arc<Backend>]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.id == y.id)
        };
        if same_ids(&current.nodes, &ready) {
            return;
        }
        let generation = current.generation + 1;
        let table = Arc::new(RoutingTable::new(generation, self.algorithm, ready));
        self.current.store(table.clone());
        published(&table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_counts_membership_changes_only() {
        let nodes = select::tests::backends(&[1, 1, 1]);
        let router = Router::new(Algorithm::RoundRobin);
        let publish = |ids: &[usize]| {
            let ready = ids.iter().map(|&i| nodes[i].clone()).collect();
            router.publish(|| ready, |_| {});
            router.load().generation()
        };
        assert_eq!(publish(&[]), 0, "the empty table is already published");
        assert_eq!(publish(&[0, 1]), 1);
        assert_eq!(publish(&[0, 1]), 1, "same set: no new table");
        assert_eq!(publish(&[0, 2]), 2, "same size, other node");
        assert_eq!(publish(&[0, 1, 2]), 3);
        assert_eq!(router.load().len(), 3);
    }
}
