//! The hot path's pick allocates nothing: a counting allocator (this test binary only)
//! measures every algorithm at 3, 100 and 1000 ready nodes, first try and retries, with a
//! CApp map in force (matching the path to its route included), each read of the table as
//! the proxy makes it (`Router::with_table`).

use healthgate::config::Algorithm;
use healthgate::routing::{Routable, Router, Tried};

#[path = "common/backends.rs"]
mod backends;
use backends::{capp_routes, loopback_backends, with_capp0_faulty_on_odd};

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
            router.publish(false, |_| Routable::ready(all), |_, _| {});
            let mut tried = Tried::default();
            tried.push(0);
            tried.push(1);
            // Warm the thread-local state (the table cache, fastrand's seed) first.
            router.with_table(|table| table.pick(&Tried::default()).map(|b| b.id));
            let info = allocation_counter::measure(|| {
                for _ in 0..1000 {
                    router.with_table(|table| {
                        assert!(table.pick(&Tried::default()).is_some());
                        let retry = table.pick(&tried);
                        assert!(retry.is_none_or(|b| b.id > 1));
                    });
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

#[test]
fn matching_a_path_and_picking_for_its_capp_does_not_allocate() {
    for n in [3, 100, 1000] {
        let nodes = loopback_backends(n);
        for algorithm in [
            Algorithm::RoundRobin,
            Algorithm::Weighted,
            Algorithm::LeastConnections,
        ] {
            let router = Router::new(algorithm).with_capps(&capp_routes(20));
            router.publish(false, |_| with_capp0_faulty_on_odd(&nodes), |_, _| {});
            let mut tried = Tried::default();
            tried.push(0);
            router.with_table(|table| table.pick(&Tried::default()).map(|b| b.id));
            let info = allocation_counter::measure(|| {
                for _ in 0..1000 {
                    router.with_table(|table| {
                        let route = table.route("/api/capp0/v2/orders/42?expand=items");
                        assert_eq!(route, 1);
                        let picked = table.pick_route(route, &Tried::default());
                        assert!(
                            picked.is_some_and(|b| b.id % 2 == 0),
                            "capp0 only on even nodes"
                        );
                        let retry = table.pick_route(route, &tried);
                        assert!(retry.is_none_or(|b| b.id != 0 && b.id % 2 == 0));
                        let other = table.route("/capp7/x");
                        assert!(table.pick_route(other, &tried).is_some());
                    });
                }
            });
            assert_eq!(
                info.count_total,
                0,
                "{} at {n} nodes allocated {} times in 3000 matches and picks",
                algorithm.as_str(),
                info.count_total
            );
        }
    }
}
