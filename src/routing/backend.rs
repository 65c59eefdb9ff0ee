//! A member as the hot path sees it: built once when the node is added, shared by every table.

use crate::telemetry::Counters;
use crate::tls::UpstreamTls;
use arc_swap::ArcSwapOption;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One member for the hot path: identity, addresses, live load, counters.
#[derive(Debug)]
pub struct Backend {
    /// Unique for the life of the process: a node added by a reload gets a new id, and a
    /// removed node's id is never reused (so late evidence cannot reach the wrong node).
    pub id: usize,
    /// Unique name from the configuration.
    pub name: String,
    /// Host as configured (sent as `Host` by probes).
    pub host: String,
    /// Resolved traffic address (HTTP pass-through port).
    pub traffic_addr: SocketAddr,
    /// Resolved health address (internal API port).
    pub health_addr: SocketAddr,
    /// Weight under the `weighted` algorithm (a reload may change it).
    weight: AtomicU32,
    /// Requests currently being proxied to this node (for `least_connections`).
    in_flight: AtomicUsize,
    /// When the node was last readmitted, in nanoseconds since [`epoch`] (0: not ramping).
    ramp_start: AtomicU64,
    /// The member's counters (requests and connect failures are counted on the hot path).
    pub counters: Arc<Counters>,
    /// TLS to the traffic port (`None`: plain HTTP). A reload may replace it (a new CA);
    /// connections already open keep the one they were made with.
    tls: ArcSwapOption<NodeTls>,
    /// Whether `tls` is set: fixed for the member's life (a reload that changes a node's
    /// scheme makes a new member).
    https: bool,
}

/// How to speak TLS to one https node: the connector of its `upstream_tls` settings and
/// the name its certificate must carry.
#[derive(Debug)]
pub struct NodeTls {
    /// The client configuration (CA, verification, client certificate).
    pub connector: Arc<UpstreamTls>,
    /// Sent as SNI and verified (`upstream_tls.sni`, else the node's host).
    pub server_name: ServerName<'static>,
}

impl Backend {
    /// A backend with its counters at zero; `tls` for an https node.
    pub fn new(
        id: usize,
        name: String,
        host: String,
        (traffic_addr, health_addr): (SocketAddr, SocketAddr),
        weight: u32,
        tls: Option<Arc<NodeTls>>,
    ) -> Backend {
        Backend {
            https: tls.is_some(),
            tls: ArcSwapOption::new(tls),
            id,
            host,
            traffic_addr,
            health_addr,
            weight: AtomicU32::new(weight),
            in_flight: AtomicUsize::new(0),
            ramp_start: AtomicU64::new(0),
            counters: Arc::new(Counters::new(&name)),
            name,
        }
    }

    /// TLS to the traffic port, if the node speaks https.
    pub fn tls(&self) -> Option<Arc<NodeTls>> {
        self.tls.load_full()
    }

    /// Whether the node's traffic port speaks TLS.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Use `tls` for the connections opened from now on.
    pub fn set_tls(&self, tls: Option<Arc<NodeTls>>) {
        self.tls.store(tls);
    }

    /// Weight under the `weighted` algorithm.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Change the weight; the next routing table uses it.
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
    }

    /// Requests in flight to this node right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Start a slow-start ramp now (the node was just readmitted).
    pub fn begin_ramp(&self) {
        let now = epoch().elapsed().as_nanos().max(1) as u64;
        self.ramp_start.store(now, Ordering::Relaxed);
    }

    /// The share of a full turn this node takes `over` a slow start: 0 at readmission,
    /// growing linearly to 1.
    pub fn ramp_share(&self, over: Duration) -> f64 {
        let start = self.ramp_start.load(Ordering::Relaxed);
        if start == 0 {
            return 1.0;
        }
        let elapsed = (epoch().elapsed().as_nanos() as u64).saturating_sub(start);
        (elapsed as f64 / over.as_nanos().max(1) as f64).min(1.0)
    }
}

/// A fixed instant for the ramp timestamps (atomics hold numbers, not `Instant`s).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Counts a request as in flight to a backend for as long as it lives.
#[derive(Debug)]
pub struct InFlight(Arc<Backend>);

impl InFlight {
    /// Start counting a request against `backend`.
    pub fn new(backend: Arc<Backend>) -> InFlight {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(backend)
    }

    /// The backend this request went to.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The nodes a request has already been sent to, so a retry never picks one twice.
/// Fixed size (retries are capped) so the hot path does not allocate.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tried {
    ids: [usize; 16],
    len: usize,
}

impl Tried {
    /// Record a node; ignored beyond capacity (retries are validated to fit).
    pub fn push(&mut self, id: usize) {
        if self.len < self.ids.len() {
            self.ids[self.len] = id;
            self.len += 1;
        }
    }

    /// Whether `id` was already tried.
    pub fn contains(&self, id: usize) -> bool {
        self.ids[..self.len].contains(&id)
    }

    /// How many nodes were tried.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no node was tried yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether no more nodes can be recorded.
    pub fn is_full(&self) -> bool {
        self.len == self.ids.len()
    }
}
