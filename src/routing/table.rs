//! The routing table: one immutable snapshot of the routable nodes behind one `ArcSwap`.
//!
//! Everything a request needs (routable backends with prebuilt peers, a selector per route,
//! the CApp map that gives a path its route, the generation) lives in one [`RoutingTable`],
//! so a request sees one consistent view with a single lock-free load, and a flip or a
//! reload publishes a whole new table with a single store.

use super::backend::{Backend, Tried};
use super::routes::{DEFAULT_ROUTE, Route, RouteMap};
use super::select::Selector;
use crate::config::{Algorithm, CappRoute};
use arc_swap::{ArcSwap, Cache};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// The nodes a route's requests may go to.
#[derive(Debug, Default, Clone)]
pub struct RouteNodes {
    /// The backends that may receive the route's traffic, in configuration order.
    pub backends: Vec<Arc<Backend>>,
    /// True when no node can serve the route and these are alive but not ready nodes,
    /// routed to under `when_none_ready: any_alive`.
    pub fallback: bool,
}

/// The routable backends a table is built from.
#[derive(Debug, Default)]
pub struct Routable {
    /// The nodes of the default route (paths of no mapped CApp); a fallback when no node
    /// is ready.
    pub default: RouteNodes,
    /// Per mapped CApp (route `i + 1`), its nodes when they differ from the default
    /// route's (some node reports the CApp faulty); `None` or missing: the same.
    pub capps: Vec<Option<RouteNodes>>,
}

impl Routable {
    /// Ready nodes, every route alike.
    pub fn ready(backends: Vec<Arc<Backend>>) -> Routable {
        Routable {
            default: RouteNodes {
                backends,
                fallback: false,
            },
            capps: Vec::new(),
        }
    }
}

/// One distinct set of nodes in a table, with its own selector.
#[derive(Debug)]
struct NodeSet {
    backends: Box<[Arc<Backend>]>,
    fallback: bool,
    selector: Selector,
}

impl NodeSet {
    fn new(algorithm: Algorithm, nodes: RouteNodes) -> NodeSet {
        NodeSet {
            selector: Selector::new(algorithm, &nodes.backends),
            backends: nodes.backends.into_boxed_slice(),
            fallback: nodes.fallback,
        }
    }

    fn same_as(&self, nodes: &RouteNodes) -> bool {
        self.fallback == nodes.fallback
            && self.backends.len() == nodes.backends.len()
            && self
                .backends
                .iter()
                .zip(&nodes.backends)
                .all(|(x, y)| x.id == y.id)
    }
}

/// An immutable view of the nodes that may receive traffic, per route.
#[derive(Debug)]
pub struct RoutingTable {
    generation: u64,
    /// Distinct node sets; `sets[0]` is the default route's.
    sets: Box<[NodeSet]>,
    /// The set of each route (index: [`Route`]); routes whose CApp no node reports faulty
    /// share the default set.
    set_of: Box<[u16]>,
    routes: Arc<RouteMap>,
    slow_start: Option<Duration>,
}

impl RoutingTable {
    /// A table over `routable` with the given algorithm (no slow start, no CApp map).
    pub fn new(generation: u64, algorithm: Algorithm, routable: Routable) -> RoutingTable {
        RoutingTable::with_routes(generation, algorithm, routable, Arc::default())
    }

    /// A table over `routable` whose paths are matched by `routes`.
    pub fn with_routes(
        generation: u64,
        algorithm: Algorithm,
        routable: Routable,
        routes: Arc<RouteMap>,
    ) -> RoutingTable {
        let Routable { default, mut capps } = routable;
        let mut sets = vec![NodeSet::new(algorithm, default)];
        capps.resize(routes.len() - 1, None);
        let mut set_of = vec![0u16; routes.len()];
        for (i, nodes) in capps.into_iter().enumerate() {
            if let Some(nodes) = nodes.filter(|n| !sets[0].same_as(n)) {
                // At most 1001 sets (validation bounds the CApps): the index fits.
                set_of[i + 1] = sets.len() as u16;
                sets.push(NodeSet::new(algorithm, nodes));
            }
        }
        RoutingTable {
            generation,
            sets: sets.into_boxed_slice(),
            set_of: set_of.into_boxed_slice(),
            routes,
            slow_start: None,
        }
    }

    /// Bumped on every rebuild; starts at 0 for the empty table before any verdict.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The CApp map this table routes paths by.
    pub fn routes(&self) -> &RouteMap {
        &self.routes
    }

    /// The route of a request target (one walk of a prebuilt trie; no allocation).
    pub fn route(&self, target: &str) -> Route {
        self.routes.route(target)
    }

    fn set(&self, route: Route) -> &NodeSet {
        let i = self.set_of.get(route).copied().unwrap_or(0);
        &self.sets[usize::from(i)]
    }

    /// The backends that may receive the default route's traffic, in configuration order.
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.sets[0].backends
    }

    /// Whether `route` has no node that can serve it and routes to alive, not ready nodes.
    pub fn is_route_fallback(&self, route: Route) -> bool {
        self.set(route).fallback
    }

    /// Number of ready (or partly ready) nodes that receive `route`'s traffic: 0 when none
    /// can serve it, also under a fallback.
    pub fn route_ready(&self, route: Route) -> usize {
        let set = self.set(route);
        if set.fallback { 0 } else { set.backends.len() }
    }

    /// Number of nodes routable for the default route.
    pub fn len(&self) -> usize {
        self.backends().len()
    }

    /// Whether no node is routable for the default route.
    pub fn is_empty(&self) -> bool {
        self.backends().is_empty()
    }

    /// Number of ready nodes (partly ready ones included): the default route's, unless it
    /// is a fallback.
    pub fn ready(&self) -> usize {
        self.route_ready(DEFAULT_ROUTE)
    }

    /// Whether no node is ready and the table routes to alive, not ready nodes instead.
    pub fn is_fallback(&self) -> bool {
        self.sets[0].fallback
    }

    /// Pick a node for the default route not yet tried by this request.
    pub fn pick(&self, tried: &Tried) -> Option<&Arc<Backend>> {
        self.pick_route(DEFAULT_ROUTE, tried)
    }

    /// Pick a node that can serve `route`, not yet tried by this request. Under slow
    /// start, a node still ramping up is passed over with probability 1 − its share (but
    /// taken if every candidate is ramping: slow start never refuses traffic).
    pub fn pick_route(&self, route: Route, tried: &Tried) -> Option<&Arc<Backend>> {
        let set = self.set(route);
        let Some(ramp) = self.slow_start else {
            return set.selector.pick(&set.backends, tried);
        };
        let mut passed_over = *tried;
        let mut fallback = None;
        while let Some(candidate) = set.selector.pick(&set.backends, &passed_over) {
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

    /// Whether a table built from `routable` with `routes` would route as this one does.
    fn routes_as(&self, routable: &Routable, routes: &Arc<RouteMap>) -> bool {
        Arc::ptr_eq(&self.routes, routes)
            && self.sets[0].same_as(&routable.default)
            && (1..routes.len()).all(|route| {
                let nodes = routable.capps.get(route - 1).and_then(Option::as_ref);
                self.set(route).same_as(nodes.unwrap_or(&routable.default))
            })
    }
}

/// A thread's own reference to the table it last read, and the router it came from.
type TableCache = Cache<Arc<ArcSwap<RoutingTable>>, Arc<RoutingTable>>;

thread_local! {
    /// See [`Router::with_table`].
    static TABLE_CACHE: RefCell<Option<TableCache>> = const { RefCell::new(None) };
}

/// Owns the current table and publishes new ones.
#[derive(Debug)]
pub struct Router {
    /// Shared with each thread's [`TableCache`].
    current: Arc<ArcSwap<RoutingTable>>,
    /// How tables are built. Held while a table is built, so rebuilds are serialised and
    /// generations are published in order.
    policy: Mutex<Policy>,
}

/// The settings a table is built with (a reload may change them).
#[derive(Clone, Debug)]
struct Policy {
    algorithm: Algorithm,
    slow_start: Option<Duration>,
    routes: Arc<RouteMap>,
}

impl Router {
    /// A router with an empty table (generation 0): nothing is routable before a verdict.
    pub fn new(algorithm: Algorithm) -> Router {
        Router::empty(algorithm, Arc::default())
    }

    fn empty(algorithm: Algorithm, routes: Arc<RouteMap>) -> Router {
        let table = RoutingTable::with_routes(0, algorithm, Routable::default(), routes.clone());
        Router {
            current: Arc::new(ArcSwap::from_pointee(table)),
            policy: Mutex::new(Policy {
                algorithm,
                slow_start: None,
                routes,
            }),
        }
    }

    /// Ramp readmitted nodes up over `slow_start` (`None`: off).
    pub fn with_slow_start(self, slow_start: Option<Duration>) -> Router {
        self.lock_policy().slow_start = slow_start;
        self
    }

    /// Route paths by `capps` (CApp-aware routing), from the empty table on.
    pub fn with_capps(self, capps: &[CappRoute]) -> Router {
        let Policy {
            algorithm,
            slow_start,
            ..
        } = self.lock_policy().clone();
        Router::empty(algorithm, Arc::new(RouteMap::new(capps))).with_slow_start(slow_start)
    }

    /// Build later tables with `algorithm`, `slow_start` and the CApp map of `capps`; true
    /// if that is a change (the caller then publishes with `force`).
    pub fn set_policy(
        &self,
        algorithm: Algorithm,
        slow_start: Option<Duration>,
        capps: &[CappRoute],
    ) -> bool {
        // Built before the lock is taken: probes judge answers under it.
        let routes = (!self.routes().is_of(capps)).then(|| Arc::new(RouteMap::new(capps)));
        let mut policy = self.lock_policy();
        let changed =
            policy.algorithm != algorithm || policy.slow_start != slow_start || routes.is_some();
        policy.algorithm = algorithm;
        policy.slow_start = slow_start;
        if let Some(routes) = routes {
            policy.routes = routes;
        }
        changed
    }

    /// The CApp map the next table is built with.
    fn routes(&self) -> Arc<RouteMap> {
        self.lock_policy().routes.clone()
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

    /// Run `read` on the current table: the request path's way to it. Each thread keeps
    /// the table it last read and checks it against the current one with a plain load, so a
    /// read makes no atomic read-modify-write (a [`Router::load`] guard makes two, on this
    /// VM most of a pick's cost). A thread lets go of an old table at its next read.
    pub fn with_table<R>(&self, mut read: impl FnMut(&RoutingTable) -> R) -> R {
        let cached = TABLE_CACHE.try_with(|cell| {
            // Busy only if `read` itself reads a table; gone only while the thread exits.
            let mut slot = cell.try_borrow_mut().ok()?;
            let cache = match &mut *slot {
                Some(cache) if std::ptr::eq(cache.arc_swap(), &*self.current) => cache,
                other => other.insert(Cache::new(self.current.clone())),
            };
            Some(read(cache.load()))
        });
        match cached {
            Ok(Some(result)) => result,
            _ => read(&self.current.load()),
        }
    }

    /// The current table as an owned `Arc` (for readers that hold it across awaits).
    pub fn load_full(&self) -> Arc<RoutingTable> {
        self.current.load_full()
    }

    /// Build a table from `routable(routes)` and publish it with the next generation, then
    /// let `published` see the previous and the new table. All run under the policy lock,
    /// so the last publisher always sees the latest states, observers see generations in
    /// order, and the CApp map the nodes were sorted by is the one the table matches paths
    /// with. Unless `force` (the policy or a weight changed), nothing is published when the
    /// table would route as the one already published (two flips raced and the first
    /// rebuild saw both): the generation counts changes only.
    pub fn publish(
        &self,
        force: bool,
        routable: impl FnOnce(&RouteMap) -> Routable,
        published: impl FnOnce(&RoutingTable, &RoutingTable),
    ) {
        let policy = self.lock_policy();
        let current = self.current.load_full();
        let routable = routable(&policy.routes);
        if !force && current.routes_as(&routable, &policy.routes) {
            return;
        }
        let generation = current.generation + 1;
        let mut table = RoutingTable::with_routes(
            generation,
            policy.algorithm,
            routable,
            policy.routes.clone(),
        );
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
            router.publish(false, |_| Routable::ready(ready), |_, _| {});
            router.load().generation()
        };
        assert_eq!(publish(&[]), 0, "the empty table is already published");
        assert_eq!(publish(&[0, 1]), 1);
        assert_eq!(publish(&[0, 1]), 1, "same set: no new table");
        assert_eq!(publish(&[0, 2]), 2, "same size, other node");
        assert_eq!(publish(&[0, 1, 2]), 3);
        assert_eq!(router.load().len(), 3);
        let alive = Routable {
            default: RouteNodes {
                backends: vec![nodes[0].clone(), nodes[1].clone(), nodes[2].clone()],
                fallback: true,
            },
            capps: Vec::new(),
        };
        router.publish(false, |_| alive, |_, _| {});
        let table = router.load();
        assert_eq!(
            table.generation(),
            4,
            "same nodes, now as a fallback: a new table"
        );
        assert_eq!((table.len(), table.ready()), (3, 0));
    }

    #[test]
    fn each_capp_route_gets_its_own_nodes_only_where_they_differ() {
        let nodes = crate::routing::select::tests::backends(&[1, 1, 1]);
        let capps =
            [("orders", "/orders"), ("billing", "/billing")].map(|(name, path)| CappRoute {
                name: name.into(),
                paths: vec![path.into()],
            });
        let router = Router::new(Algorithm::RoundRobin).with_capps(&capps);
        let only_third = RouteNodes {
            backends: vec![nodes[2].clone()],
            fallback: false,
        };
        let routable = |orders: Option<RouteNodes>| Routable {
            capps: vec![orders, None],
            ..Routable::ready(nodes.clone())
        };
        router.publish(false, |_| routable(Some(only_third.clone())), |_, _| {});
        let table = router.load();
        let orders = table.route("/orders/7");
        let billing = table.route("/billing");
        assert_eq!((orders, billing), (1, 2));
        for _ in 0..6 {
            let picked = table.pick_route(orders, &Tried::default());
            assert_eq!(picked.map(|b| b.id), Some(nodes[2].id));
        }
        assert_eq!(table.route_ready(billing), 3);
        assert_eq!(table.len(), 3, "the default route keeps all three");
        let mut tried = Tried::default();
        tried.push(nodes[2].id);
        assert!(
            table.pick_route(orders, &tried).is_none(),
            "no other node serves orders"
        );
        assert_eq!(table.sets.len(), 2, "billing shares the default set");
        let generation = table.generation();
        router.publish(false, |_| routable(Some(only_third.clone())), |_, _| {});
        assert_eq!(router.load().generation(), generation, "nothing changed");
        let none = RouteNodes::default();
        router.publish(false, |_| routable(Some(none)), |_, _| {});
        let table = router.load();
        assert_eq!(table.generation(), generation + 1);
        assert!(table.pick_route(orders, &Tried::default()).is_none());
        router.publish(false, |_| routable(None), |_, _| {});
        assert_eq!(router.load().route_ready(orders), 3, "orders healthy again");
    }

    /// A thread's cached table follows every publish, belongs to one router (two routers
    /// read in turn on one thread each see their own), and a read inside a read still gets
    /// the current table.
    #[test]
    fn reads_through_the_thread_cache_see_each_publish_and_their_own_router() {
        let nodes = crate::routing::select::tests::backends(&[1, 1, 1]);
        let (a, b) = (
            Router::new(Algorithm::RoundRobin),
            Router::new(Algorithm::RoundRobin),
        );
        let generation = |router: &Router| router.with_table(RoutingTable::generation);
        assert_eq!((generation(&a), generation(&b)), (0, 0));
        for (turn, n) in [1, 2, 3, 1].into_iter().enumerate() {
            let ready = nodes[..n].to_vec();
            a.publish(false, |_| Routable::ready(ready), |_, _| {});
            assert_eq!(generation(&a), turn as u64 + 1);
            assert_eq!(a.with_table(RoutingTable::len), n);
            assert_eq!(generation(&b), 0, "the other router's table");
        }
        let nested = a.with_table(|outer| (outer.len(), a.with_table(RoutingTable::len)));
        assert_eq!(nested, (1, 1));
        // Another thread starts with no cache and reads the current table.
        let on_another_thread = std::thread::scope(|s| s.spawn(|| generation(&a)).join());
        assert_eq!(on_another_thread.ok(), Some(4));
    }
}
