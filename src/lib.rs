//! healthgate: a health-aware reverse proxy for a WSO2 Micro Integrator cluster, on Pingora.
//!
//! It polls every MI node's `/healthz` and `/liveness`, keeps an immutable routing table of
//! the nodes that are ready behind one `ArcSwap`, and forwards client traffic only to them.
//! A refused connection to a node's traffic port evicts it at once — MI keeps answering
//! `/healthz` 200 while it shuts its traffic port — and the request is retried elsewhere.
//!
//! Data flow: [`config`] → [`health`] probes → state machine → [`cluster`] → [`routing`]
//! snapshot → [`proxy`]; [`admin`] reads the same state. [`sim`] simulates MI nodes.

pub mod admin;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod fd_limit;
pub mod health;
pub mod outlier;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod sim;
