//! Routing: the hot path's view of the nodes. A [`Backend`] per member (addresses, prebuilt
//! peer, in-flight count, counters), the immutable [`RoutingTable`] of the routable ones (per
//! route: the [`RouteMap`] gives each request path its CApp) behind the [`Router`]'s one
//! `ArcSwap`, the [`Selector`] algorithms that pick from it, and
//! [`outlier`] detection's per-node records. It knows nothing of probes or of why a node is
//! routable: the cluster decides and publishes.

mod backend;
pub mod outlier;
mod routes;
mod select;
mod table;

pub use backend::{Backend, InFlight, NodeTls, Tried};
pub use routes::{DEFAULT_ROUTE, Route, RouteMap};
pub use select::Selector;
pub use table::{Routable, RouteNodes, Router, RoutingTable};
