//! Builds the Pingora server from a [`Config`]: the proxy service on the traffic listeners,
//! the admin service, and the health poller as a background service.

use crate::admin::{AdminApp, Metrics};
use crate::cluster::{Cluster, ClusterError};
use crate::config::Config;
use crate::health::poller::{self, ProbeSettings};
use crate::proxy::HealthgateProxy;
use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use pingora::services::listening::Service;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// Seconds the runtimes get to stop after the grace period (open connections are cut then).
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;
/// Idle upstream connections the pool may keep per configured node.
const UPSTREAM_IDLE_PER_NODE: usize = 8;

/// Why healthgate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener address cannot be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Which listener (`listen` or `admin`).
        what: &'static str,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The cluster could not be built.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The metrics registry rejected a metric.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A built server, ready to run, and the cluster it serves.
pub struct Healthgate {
    /// The Pingora server with every service added.
    pub server: Server,
    /// The cluster state shared by the proxy, the admin app and the poller.
    pub cluster: Arc<Cluster>,
}

/// Build every service for `config`. Nothing listens until the server runs.
pub fn build(config: &Config) -> Result<Healthgate, StartError> {
    check_listeners(config)?;
    let cluster = Arc::new(Cluster::new(config, Metrics::new()?)?);

    let conf = ServerConf {
        threads: config.threads,
        // Pingora counts the first attempt too; one more lets the proxy answer 503 itself
        // once every ready node has been tried.
        max_retries: config.balancing.retries + 1,
        // One current-thread runtime per worker: no cross-thread wake-ups on the hot path
        // (measured: 47 → 39 µs of CPU per request with one thread; README, Performance).
        work_stealing: false,
        // Pingora keeps one LRU of idle upstream connections for all nodes (default 128).
        // Round robin over N nodes needs an idle connection per node, or most requests
        // open a new one: size the pool by the node count.
        upstream_keepalive_pool_size: (config.nodes.len() * UPSTREAM_IDLE_PER_NODE).max(128),
        // After SIGTERM Pingora closes the listeners, waits this long, then stops the
        // runtimes. It takes whole seconds: round up, never below what was asked for.
        grace_period_seconds: Some(config.shutdown.grace_period.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(SHUTDOWN_TIMEOUT_SECONDS),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let server_conf = server.configuration.clone();

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server_conf,
        HealthgateProxy::new(cluster.clone(), config),
        "healthgate proxy",
    );
    for addr in &config.listen {
        proxy.add_tcp(&addr.to_string());
    }

    let mut admin = Service::new(
        "healthgate admin".to_string(),
        AdminApp::new(cluster.clone(), config.admin_token.clone()),
    );
    admin.add_tcp(&config.admin.to_string());
    admin.threads = Some(1);

    let health = background_service(
        "healthgate health",
        HealthService {
            cluster: cluster.clone(),
            settings: ProbeSettings {
                readiness: config.readiness.clone(),
                liveness: config.liveness.clone(),
            },
        },
    );

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(health);
    Ok(Healthgate { server, cluster })
}

/// Bind each listener once, so a taken or invalid address is a clear start-up error
/// (Pingora would otherwise fail inside a service thread, after start-up).
fn check_listeners(config: &Config) -> Result<(), StartError> {
    let all = config
        .listen
        .iter()
        .map(|a| (*a, "listen"))
        .chain(std::iter::once((config.admin, "admin")));
    for (addr, what) in all {
        TcpListener::bind(addr).map_err(|source| StartError::Listen { addr, what, source })?;
    }
    Ok(())
}

/// Runs one polling task per node until shutdown.
struct HealthService {
    cluster: Arc<Cluster>,
    settings: ProbeSettings,
}

#[async_trait]
impl BackgroundService for HealthService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let tasks = poller::spawn_all(&self.cluster, &self.settings, &shutdown);
        log::info!("health checking {} node(s)", tasks.len());
        // Returns when shutdown starts (true) or the server is gone (error).
        let _ = shutdown.wait_for(|stopping| *stopping).await;
        for task in tasks {
            task.abort();
        }
    }
}
