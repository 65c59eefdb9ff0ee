//! healthgate: a health-aware reverse proxy for a WSO2 Micro Integrator cluster, on Pingora.
//!
//! It polls every MI node's `/healthz` and `/liveness`, keeps an immutable routing table of
//! the nodes that are ready behind one `ArcSwap`, and forwards client traffic only to them.
//! A refused connection to a node's traffic port evicts it at once — MI keeps answering
//! `/healthz` 200 while it shuts its traffic port — and the request is retried elsewhere.
//!
//! # Layers
//!
//! Each module uses only those listed before it; `tests/layers.rs` fails the build of the
//! test suite when one reaches up.
//!
//! | module | its one job |
//! |---|---|
//! | [`os`] | the open-file limit; telling this host's shortages from a node's faults |
//! | [`config`] | one YAML file → a validated, typed [`config::Config`] |
//! | [`tls`] | PEM files checked; a listener's reloadable acceptor; TLS towards https nodes; handshake failures in words |
//! | [`health`] | probes and their outcomes, the `/healthz` body, the pure state machine |
//! | [`telemetry`] | counters and histograms; rendering the Prometheus text format |
//! | [`routing`] | backends, the routing table and its one swap, selectors, outlier records |
//! | [`cluster`] | members: evidence → flips → table rebuilds; reloads; drains; scrapes |
//! | [`supervisor`] | one poller per node, SIGHUP reloads, DNS discovery and re-resolution |
//! | [`admin`] | the admin listener's HTTP: metrics, status, the page, operator actions |
//! | [`proxy`] | the request loop (hyper over Pingora's listeners): pick, retry, passive eviction, headers, tunnels, 503 |
//! | [`server`] | the Pingora server: listeners, services, shutdown |
//! | `demo` | `healthgate demo` (the `demo` feature, left out of production builds) |
//!
//! # Glossary (one word per concept; the code uses exactly these)
//!
//! - **node** — an MI server as the operator knows it, and every type the operator sees of it:
//!   its configuration [`config::NodeConfig`], its state [`health::NodeState`], its entry in
//!   `/status` ([`admin::NodeStatus`]) and in a scrape ([`telemetry::NodeSample`]); logs and
//!   metric labels say `node`.
//! - **member** — a node the running cluster tracks, from its addition to its removal by a
//!   reload; it has an id never reused. It holds the node's one health record (the state),
//!   its drain flag and its outlier record (`cluster::member`).
//! - **backend** — what the hot path needs of a member: addresses, prebuilt peer, in-flight
//!   count, counters ([`routing::Backend`]).
//! - **discovery** — a DNS name under `discovery` standing for every node at its addresses,
//!   asked again on a schedule (`supervisor/discovery.rs`); a discovered node is named
//!   `ip:traffic_port`. A **planned** node ([`cluster::Planned`]) is a configured or
//!   discovered node with its resolved addresses: the cluster runs with exactly the planned
//!   set ([`cluster::Cluster::run_with`]), at start, on a reload and when DNS changes it.
//! - **probe** — one check of a node, of a [`health::ProbeKind`] (readiness, liveness, tcp),
//!   ending in a [`health::ProbeOutcome`]; a **round** is a poller's readiness or liveness
//!   turn (one or two probes).
//! - **observation** — what a round or live traffic tells the state machine
//!   ([`health::Observation`]); a **flip** is a change of **state** ([`health::NodeState`]:
//!   starting, ready, partly_ready, not_ready, dead). Only flips (and a change in which CApps
//!   a node lists faulty) rebuild the table.
//! - **table** — the immutable snapshot of the **routable** backends ([`routing::RoutingTable`]),
//!   published by the [`routing::Router`]. Routable: ready or partly ready (or alive, under a
//!   `fallback`), not drained, not ejected.
//! - **route** — which mapped CApp a request path belongs to ([`routing::Route`], from the
//!   [`routing::RouteMap`] built from `capps`; route 0: none). The table holds the nodes of
//!   each route; a **partly ready** node is left out of the routes of the CApps it lists
//!   faulty.
//! - **drain** — the operator taking a node out by hand; **ejection** — outlier detection
//!   taking it out for a while.
//! - **counters** — a member's event counts ([`telemetry::Counters`]); **gauges** — what a
//!   member or the table is, read at **scrape** time from where it is kept
//!   ([`telemetry::Scrape`]), never stored a second time.
//!
//! # Where a change goes
//!
//! - **A new probe kind**: a [`health::ProbeKind`] variant and its probe function in
//!   `health/probe.rs` (metrics, `/status` and the status page list [`health::ProbeKind::ALL`]
//!   and pick it up); its schedule in `supervisor/poller.rs`; what its outcome means for the
//!   state machine in `cluster/evidence.rs` (an [`health::Observation`], judged in
//!   `health/state.rs`).
//! - **A new per-node metric**: an event count is a field of [`telemetry::Counters`] counted
//!   where the event happens (`cluster/evidence.rs`, or `proxy/request.rs` through the backend's
//!   counters) plus a family in `telemetry/exposition.rs`; a gauge is a field of
//!   [`telemetry::NodeGauges`], read from the member in `cluster/scrape.rs`.
//! - **A new balancing algorithm**: a [`config::Algorithm`] variant (its name in the file) and
//!   a [`routing::Selector`] variant in `routing/select.rs`, built once per table; picking
//!   must not allocate (`tests/no_alloc.rs`, `benches/routing.rs`).

pub mod os;

pub mod config;

pub mod tls;

pub mod health;

pub mod telemetry;

pub mod routing;

pub mod cluster;

pub mod supervisor;

pub mod admin;

pub mod proxy;

pub mod server;

#[cfg(feature = "demo")]
pub mod demo;
