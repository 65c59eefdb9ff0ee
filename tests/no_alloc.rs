//! The hot path's pick allocates nothing: a counting allocator (this test binary only)
//! measures every algorithm at 3, 100 and 1000 ready nodes, first try and retries.

use healthgate::config::Algorithm;
use healthgate::routing::{Routable, Router, Tried};

#[path = "common/backends.rs"]
mod backends;
use backends::loopback_backends;

#[test]
fn picking_a_node_does_not_allocate() {
    for n in [3, 100, 1000] {
        let nodes = loopback_backends(n);
        for algorithm in [
            Algorithm::RoundRobin,
            Algorithm::Weighted,
            Algorithm::LeastConnections,
        ] {
            let router = Router::new(algorithm);
            let all = nodes.clone();
            router.publish(false, || Routable::ready(all), |_, _| {});
            let mut tried = Tried::default();
            tried.push(0);
            tried.push(1);
            // Warm the thread-local state (arc-swap's debt list, fastrand's seed) first.
            let _ = router.load().pick(&Tried::default());
            let info = allocation_counter::measure(|| {
                for _ in 0..1000 {
                    let table = router.load();
                    assert!(table.pick(&Tried::default()).is_some());
                    let retry = table.pick(&tried);
                    assert!(retry.is_none_or(|b| b.id > 1));
                }
            });
            assert_eq!(
                info.count_total,
                0,
                "{} at {n} nodes allocated {} times in 2000 picks",
                algorithm.as_str(),
                info.count_total
            );
        }
    }
}
