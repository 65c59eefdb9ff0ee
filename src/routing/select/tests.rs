use super::*;
use crate::routing::InFlight;

pub(crate) fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
    weights
        .iter()
        .enumerate()
        .map(|(id, &weight)| {
            let port = 10_000 + id as u16;
            Arc::new(Backend::new(
                id,
                format!("n{id}"),
                "127.0.0.1".into(),
                (
                    ([127, 0, 0, 1], port).into(),
                    ([127, 0, 0, 1], port + 1000).into(),
                ),
                weight,
                None,
            ))
        })
        .collect()
}

fn shares(algorithm: Algorithm, nodes: &[Arc<Backend>], picks: usize) -> Vec<usize> {
    let selector = Selector::new(algorithm, nodes);
    let mut counts = vec![0; nodes.len()];
    for _ in 0..picks {
        let b = selector.pick(nodes, &Tried::default()).expect("a node");
        counts[b.id] += 1;
    }
    counts
}

#[test]
fn round_robin_is_exactly_even() {
    let nodes = backends(&[1, 1, 1]);
    assert_eq!(shares(Algorithm::RoundRobin, &nodes, 300), [100, 100, 100]);
}

#[test]
fn weighted_gives_exact_shares_per_cycle() {
    let nodes = backends(&[1, 2, 5, 0]);
    // weight 0 is treated as 1 (validation forbids it anyway); total = 9.
    assert_eq!(
        shares(Algorithm::Weighted, &nodes, 9 * 40),
        [40, 80, 200, 40]
    );
}

#[test]
fn weighted_interleaves_instead_of_runs() {
    let nodes = backends(&[1, 1, 8]);
    let selector = Selector::new(Algorithm::Weighted, &nodes);
    let order: Vec<usize> = (0..10)
        .map(|_| selector.pick(&nodes, &Tried::default()).expect("node").id)
        .collect();
    let longest_run_of_heavy = order
        .split(|&id| id != 2)
        .map(<[usize]>::len)
        .max()
        .unwrap_or(0);
    assert!(longest_run_of_heavy < 8, "order {order:?}");
}

/// Exact shares at 1000 nodes, both with a slot table (4 000 slots) and with the binary
/// search it gives way to above `SLOT_TABLE_MAX` (31 000 slots), and for a few heavy nodes.
#[test]
fn weighted_handles_large_tables() {
    let with_heaviest = |n: u32, heaviest: u32| (0..n).map(|i| 1 + (i % heaviest)).collect();
    let few_heavy = vec![1000, 1, 500, 999];
    for (weights, table) in [
        (with_heaviest(1000, 7), true),
        (with_heaviest(1000, 61), false),
        (few_heavy, false),
    ] {
        let weights: Vec<u32> = weights;
        let nodes = backends(&weights);
        let total: usize = weights.iter().map(|&w| w as usize).sum();
        let Selector::Weighted { slots, .. } = Selector::new(Algorithm::Weighted, &nodes) else {
            panic!("a weighted selector");
        };
        match slots {
            Slots::Table(slots) => assert!(table && slots.len() == total, "{total} slots"),
            Slots::Cumulative(_) => assert!(!table, "{total} slots: no table"),
        }
        let counts = shares(Algorithm::Weighted, &nodes, total);
        for (i, &w) in weights.iter().enumerate() {
            assert_eq!(counts[i], w as usize, "node {i} of {total} slots");
        }
    }
}

#[test]
fn least_connections_prefers_the_idle_node() {
    let nodes = backends(&[1, 1, 1]);
    let _busy0 = InFlight::new(nodes[0].clone());
    let _busy2a = InFlight::new(nodes[2].clone());
    let _busy2b = InFlight::new(nodes[2].clone());
    assert_eq!(shares(Algorithm::LeastConnections, &nodes, 10), [0, 10, 0]);
}

#[test]
fn least_connections_rotates_ties() {
    let nodes = backends(&[1, 1, 1]);
    assert_eq!(
        shares(Algorithm::LeastConnections, &nodes, 300),
        [100, 100, 100]
    );
}

#[test]
fn least_connections_scales_with_two_choices() {
    let nodes = backends(&vec![1; 100]);
    let hot: Vec<InFlight> = (0..50).map(|_| InFlight::new(nodes[7].clone())).collect();
    let counts = shares(Algorithm::LeastConnections, &nodes, 10_000);
    assert!(
        counts[7] < 150,
        "a loaded node should rarely be chosen: {}",
        counts[7]
    );
    drop(hot);
}

#[test]
fn no_node_is_picked_twice_for_one_request() {
    for algorithm in [
        Algorithm::RoundRobin,
        Algorithm::Weighted,
        Algorithm::LeastConnections,
    ] {
        for size in [1, 3, 20] {
            let nodes = backends(&vec![2; size]);
            let selector = Selector::new(algorithm, &nodes);
            let mut tried = Tried::default();
            for _ in 0..size.min(16) {
                let b = selector.pick(&nodes, &tried).expect("an untried node");
                assert!(
                    !tried.contains(b.id),
                    "{algorithm:?}/{size}: picked {} twice",
                    b.id
                );
                tried.push(b.id);
            }
            if size <= 16 {
                assert!(
                    selector.pick(&nodes, &tried).is_none(),
                    "{algorithm:?}/{size}"
                );
            }
        }
    }
}

#[test]
fn empty_table_picks_nothing() {
    for algorithm in [
        Algorithm::RoundRobin,
        Algorithm::Weighted,
        Algorithm::LeastConnections,
    ] {
        let selector = Selector::new(algorithm, &[]);
        assert!(selector.pick(&[], &Tried::default()).is_none());
    }
}

#[test]
fn stride_is_coprime() {
    for total in 1..500 {
        let step = coprime_step(total);
        assert_eq!(gcd(step, total.max(1)), 1, "total {total}");
    }
}
