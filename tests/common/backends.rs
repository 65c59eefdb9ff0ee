//! Backends as the proxy builds them, for tests and benches that drive the routing table
//! without a running proxy: `n` nodes on distinct loopback addresses, weights 1–3.

use healthgate::routing::Backend;
use std::sync::Arc;

/// `n` backends, each with its own counters.
pub fn loopback_backends(n: usize) -> Vec<Arc<Backend>> {
    (0..n)
        .map(|id| {
            let ip = [127, 0, (id / 250) as u8, (id % 250 + 1) as u8];
            let name = format!("mi-{id}");
            Arc::new(Backend::new(
                id,
                name,
                "127.0.0.1".into(),
                ((ip, 8290).into(), (ip, 9201).into()),
                (id % 3 + 1) as u32,
                None,
            ))
        })
        .collect()
}

/// `k` mapped CApps: `capp0` … serving `/capp0` and `/api/capp0/v2`, `/api/capp1/v2`, …
/// (two prefixes each, so matching walks a trie of some breadth and depth).
pub fn capp_routes(k: usize) -> Vec<healthgate::config::CappRoute> {
    (0..k)
        .map(|i| healthgate::config::CappRoute {
            name: format!("capp{i}"),
            paths: vec![format!("/capp{i}"), format!("/api/capp{i}/v2")],
        })
        .collect()
}

/// `nodes` routable for every route, except that the odd ones list CApp `capp0` (route 1)
/// as faulty: route 1 goes to the even nodes only.
pub fn with_capp0_faulty_on_odd(nodes: &[Arc<Backend>]) -> healthgate::routing::Routable {
    let even = nodes.iter().step_by(2).cloned().collect();
    healthgate::routing::Routable {
        capps: vec![Some(healthgate::routing::RouteNodes {
            backends: even,
            fallback: false,
        })],
        ..healthgate::routing::Routable::ready(nodes.to_vec())
    }
}
