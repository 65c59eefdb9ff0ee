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
