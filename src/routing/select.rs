//! Selection algorithms over the ready nodes of one snapshot. Picking is lock-free and does
//! not allocate; any per-algorithm table is built once with the snapshot.

use super::backend::{Backend, Tried};
use crate::config::Algorithm;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Up to this many ready nodes, `least_connections` compares them all; above, two random
/// choices (the power of two choices keeps the pick O(1) with near-optimal balance).
const EXACT_LEAST_CONNECTIONS_MAX: usize = 16;

/// Up to this many weight slots (32 KiB of them), and at most [`SLOTS_PER_NODE_MAX`] per
/// node, the weighted selector keeps the node of each slot, so a pick is one load rather
/// than a binary search over the nodes (at 1000 nodes of weights 1–3: 54 → 26 ns a pick,
/// see docs/bench/capp-routing.md). The per-node bound keeps a table's memory in line with
/// its node list (a table may hold a set per CApp route); a few heavy nodes are searched
/// quickly anyway.
const SLOT_TABLE_MAX: usize = 16 * 1024;

/// See [`SLOT_TABLE_MAX`].
const SLOTS_PER_NODE_MAX: usize = 16;

/// Chooses a ready node; built with, and owned by, one routing snapshot.
#[derive(Debug)]
pub enum Selector {
    /// Each node in turn.
    RoundRobin {
        /// The next turn.
        next: AtomicUsize,
    },
    /// In proportion to weights: turn `k` maps to slot `k × step mod total` in the cumulative
    /// weights. `step` is coprime with `total`, so every cycle of `total` turns gives each node
    /// exactly `weight` picks, interleaved rather than in runs.
    Weighted {
        /// The next turn.
        next: AtomicUsize,
        /// Sum of the weights.
        total: usize,
        /// Stride through the slots, coprime with `total`.
        step: usize,
        /// Which node a slot belongs to.
        slots: Slots,
    },
    /// The node with the fewest requests in flight.
    LeastConnections {
        /// Rotates where ties start, so an idle cluster is still shared.
        next: AtomicUsize,
    },
}

/// How the weighted selector finds the node of a slot.
#[derive(Debug)]
pub enum Slots {
    /// The node of each slot (when there are few enough, see [`SLOT_TABLE_MAX`]): one load.
    Table(Box<[u16]>),
    /// `cumulative[i]` = sum of weights of nodes `0..=i`: a binary search.
    Cumulative(Box<[usize]>),
}

impl Slots {
    /// The slots of nodes of these `weights` (each at least 1), `total` in all.
    fn new(weights: &[usize], total: usize) -> Slots {
        if total <= SLOT_TABLE_MAX && total <= SLOTS_PER_NODE_MAX * weights.len() {
            let mut table = Vec::with_capacity(total);
            // An index fits: every node has a slot, and there are at most 16 Ki.
            for (i, &weight) in (0u16..).zip(weights) {
                table.extend(std::iter::repeat_n(i, weight));
            }
            return Slots::Table(table.into_boxed_slice());
        }
        let cumulative = weights.iter().scan(0usize, |sum, &weight| {
            *sum += weight;
            Some(*sum)
        });
        Slots::Cumulative(cumulative.collect())
    }

    /// The index of the node that `slot` belongs to.
    fn node(&self, slot: usize) -> usize {
        match self {
            Slots::Table(table) => table.get(slot).map_or(0, |&node| usize::from(node)),
            Slots::Cumulative(cumulative) => cumulative.partition_point(|&c| c <= slot),
        }
    }
}

impl Selector {
    /// Build the selector for `nodes` (the ready nodes of a snapshot).
    pub fn new(algorithm: Algorithm, nodes: &[Arc<Backend>]) -> Selector {
        match algorithm {
            Algorithm::RoundRobin => Selector::RoundRobin {
                next: AtomicUsize::new(0),
            },
            Algorithm::LeastConnections => Selector::LeastConnections {
                next: AtomicUsize::new(0),
            },
            Algorithm::Weighted => {
                // Read once: a reload may change weights while a table is built.
                let weights: Vec<usize> =
                    nodes.iter().map(|b| b.weight().max(1) as usize).collect();
                let total: usize = weights.iter().sum();
                Selector::Weighted {
                    next: AtomicUsize::new(0),
                    total,
                    step: coprime_step(total),
                    slots: Slots::new(&weights, total),
                }
            }
        }
    }

    /// Pick a node from `nodes` that is not in `tried`; `None` if every node was tried.
    pub fn pick<'a>(&self, nodes: &'a [Arc<Backend>], tried: &Tried) -> Option<&'a Arc<Backend>> {
        let n = nodes.len();
        if n == 0 {
            return None;
        }
        let start = match self {
            Selector::RoundRobin { next } => next.fetch_add(1, Ordering::Relaxed) % n,
            Selector::Weighted {
                next,
                total,
                step,
                slots,
            } => {
                let turn = next.fetch_add(1, Ordering::Relaxed) % total;
                // `turn * step` cannot overflow: both are below `total`, itself ≤ 1000 × nodes.
                let slot = (turn * step) % total;
                slots.node(slot)
            }
            Selector::LeastConnections { next } => {
                return least_loaded(nodes, tried, next.fetch_add(1, Ordering::Relaxed));
            }
        };
        first_untried(nodes, tried, start)
    }
}

/// The first node at or after `start` (wrapping) that was not tried yet.
fn first_untried<'a>(
    nodes: &'a [Arc<Backend>],
    tried: &Tried,
    start: usize,
) -> Option<&'a Arc<Backend>> {
    let n = nodes.len();
    (0..n)
        .map(|k| &nodes[(start + k) % n])
        .find(|b| tried.is_empty() || !tried.contains(b.id))
}

fn least_loaded<'a>(
    nodes: &'a [Arc<Backend>],
    tried: &Tried,
    turn: usize,
) -> Option<&'a Arc<Backend>> {
    let n = nodes.len();
    if n <= EXACT_LEAST_CONNECTIONS_MAX {
        return (0..n)
            .map(|k| &nodes[(turn + k) % n])
            .filter(|b| !tried.contains(b.id))
            .min_by_key(|b| b.in_flight());
    }
    let a = &nodes[fastrand::usize(..n)];
    let b = &nodes[fastrand::usize(..n)];
    let choice = if b.in_flight() < a.in_flight() { b } else { a };
    if tried.contains(choice.id) {
        first_untried(nodes, tried, turn % n)
    } else {
        Some(choice)
    }
}

/// A stride near `total × 0.618` (spreads consecutive turns) that is coprime with `total`.
fn coprime_step(total: usize) -> usize {
    if total <= 1 {
        return 1;
    }
    let mut step = ((total as f64) * 0.618).round().max(1.0) as usize;
    while gcd(step, total) != 1 {
        step += 1;
    }
    step
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
pub(super) mod tests;
