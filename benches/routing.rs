//! Micro-benchmarks of the hot path and of what a flip costs:
//! - picking a node from the published snapshot (3, 100, 1000 ready nodes; each algorithm)
//!   while another thread swaps in a new table every millisecond, read as the proxy reads
//!   it (`Router::with_table`), and for round robin also through an arc-swap guard;
//! - the same with a CApp map of 20 CApps: matching the path, then picking for its route
//!   (`pick_for_path`), and the match alone (`match_path`);
//! - building a snapshot;
//! - reading faulty CApp names from a `/healthz` body.
//!
//! Run: `cargo bench --bench routing`. The no-allocation half of the pick target is checked
//! by `tests/no_alloc.rs`.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use healthgate::config::Algorithm;
use healthgate::health::body::faulty_capps;
use healthgate::routing::{Routable, Router, RoutingTable, Tried};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

#[path = "../tests/common/backends.rs"]
mod backends;
use backends::{capp_routes, loopback_backends, with_capp0_faulty_on_odd};

const SIZES: [usize; 3] = [3, 100, 1000];
const ALGORITHMS: [Algorithm; 3] = [
    Algorithm::RoundRobin,
    Algorithm::Weighted,
    Algorithm::LeastConnections,
];

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    group.throughput(Throughput::Elements(1));
    for n in SIZES {
        let nodes = loopback_backends(n);
        for algorithm in ALGORITHMS {
            let router = Arc::new(Router::new(algorithm));
            let all = nodes.clone();
            router.publish(false, |_| Routable::ready(all), |_, _| {});
            // A writer that flips one node out and back in every millisecond: a thousand
            // flips a second, far more than a real cluster makes, so every pick races a swap.
            let stop = Arc::new(AtomicBool::new(false));
            let writer = {
                let (router, nodes, stop) = (router.clone(), nodes.clone(), stop.clone());
                thread::spawn(move || {
                    let mut swaps = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let skip = (swaps % 2) as usize;
                        let ready = nodes[skip..].to_vec();
                        router.publish(false, |_| Routable::ready(ready), |_, _| {});
                        swaps += 1;
                        thread::sleep(Duration::from_millis(1));
                    }
                    swaps
                })
            };
            let tried = Tried::default();
            // Whether a filter let any of these run (else the writer had no time to swap).
            let ran = std::cell::Cell::new(false);
            group.bench_with_input(
                BenchmarkId::new(algorithm.as_str(), n),
                &router,
                |b, router| {
                    ran.set(true);
                    b.iter(|| {
                        router.with_table(|table| {
                            black_box(table.pick(black_box(&tried)).map(|b| b.id))
                        })
                    })
                },
            );
            if algorithm == Algorithm::RoundRobin {
                // The same pick through an arc-swap guard, as the proxy read its table
                // before `with_table`: the difference is the guard's two atomic swaps.
                group.bench_with_input(
                    BenchmarkId::new("round_robin_through_guard", n),
                    &router,
                    |b, router| {
                        ran.set(true);
                        b.iter(|| {
                            let table = router.load();
                            black_box(table.pick(black_box(&tried)).map(|b| b.id))
                        })
                    },
                );
            }
            stop.store(true, Ordering::Relaxed);
            let swaps = writer.join().expect("writer thread");
            assert!(
                swaps > 0 || !ran.get(),
                "the table was never swapped during the benchmark"
            );
        }
    }
    group.finish();
}

/// CApp-aware routing: match the path against a map of 20 CApps (40 prefixes), then pick
/// from the nodes that serve that CApp (half of them list it faulty).
fn pick_for_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick_for_path");
    group.throughput(Throughput::Elements(1));
    for n in SIZES {
        let nodes = loopback_backends(n);
        for algorithm in ALGORITHMS {
            let router = Router::new(algorithm).with_capps(&capp_routes(20));
            router.publish(false, |_| with_capp0_faulty_on_odd(&nodes), |_, _| {});
            let tried = Tried::default();
            // Whether a filter let any of these run (else the writer had no time to swap).
            let ran = std::cell::Cell::new(false);
            group.bench_with_input(
                BenchmarkId::new(algorithm.as_str(), n),
                &router,
                |b, router| {
                    ran.set(true);
                    b.iter(|| {
                        router.with_table(|table| {
                            let route = table.route(black_box("/api/capp0/v2/orders/42?expand=1"));
                            black_box(table.pick_route(route, black_box(&tried)).map(|b| b.id))
                        })
                    })
                },
            );
        }
    }
    group.finish();
    // The match alone, on a prefix one segment deep and one three segments deep.
    let mut group = c.benchmark_group("match_path");
    group.throughput(Throughput::Elements(1));
    let router = Router::new(Algorithm::RoundRobin).with_capps(&capp_routes(20));
    for (label, target) in [
        ("1_segment", "/capp0/orders/42"),
        ("3_segments", "/api/capp0/v2/orders/42?expand=1"),
        ("unmapped", "/services/echo"),
    ] {
        group.bench_with_input(label, target, |b, target| {
            let table = router.load();
            b.iter(|| black_box(table.route(black_box(target))))
        });
    }
    group.finish();
}

fn rebuild(c: &mut Criterion) {
    let mut group = c.benchmark_group("rebuild_snapshot");
    for n in SIZES {
        let nodes = loopback_backends(n);
        for algorithm in ALGORITHMS {
            group.bench_with_input(
                BenchmarkId::new(algorithm.as_str(), n),
                &nodes,
                |b, nodes| {
                    b.iter(|| {
                        black_box(RoutingTable::new(
                            1,
                            algorithm,
                            Routable::ready(nodes.clone()),
                        ))
                    })
                },
            );
        }
    }
    group.finish();
}

fn parse_healthz(c: &mut Criterion) {
    let ready = br#"{"status": "ready", "version": "4.4.0", "update_level": "-"}"#.to_vec();
    let faulty = br#"{"status": "not ready", "version": "4.4.0", "update_level": "-", "Faulty CAPPs" : ["OrderServiceCApp_1.0.0.car","Payments"Quoted"_2.1.0.car","InventoryCApp_3.0.0.car"]}"#.to_vec();
    let names: Vec<String> = (0..64)
        .map(|i| format!("\"CApp{i:02}_1.0.0.car\""))
        .collect();
    let many = format!(
        r#"{{"status": "not ready", "version": "4.4.0", "Faulty CAPPs" : [{}]}}"#,
        names.join(",")
    )
    .into_bytes();
    let mut group = c.benchmark_group("parse_healthz");
    for (label, body) in [("ready", ready), ("3_faulty", faulty), ("64_faulty", many)] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(label, &body, |b, body| {
            b.iter(|| black_box(faulty_capps(black_box(body))))
        });
    }
    group.finish();
}

criterion_group!(benches, pick, pick_for_path, rebuild, parse_healthz);
criterion_main!(benches);
