//! Builds the Pingora server from a [`Config`]: the proxy service on the traffic listeners,
//! the admin service, and the supervisor (pollers, reloads) as a background service.

use crate::admin::AdminApp;
use crate::cluster::{Cluster, ClusterError, Planned, resolve_configured};
use crate::config::Config;
use crate::proxy::HealthgateProxy;
use crate::supervisor::{CertificateError, Certificates, Discovery, Supervisor};
use crate::telemetry::Metrics;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::Opt;
use pingora::server::configuration::ServerConf;
use pingora::server::{ExecutionPhase, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Seconds the runtimes get to stop after the grace period (open connections are cut then).
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;
/// After SIGTERM's grace period begins, how long no request may be in flight before the
/// process exits early.
const IDLE_BEFORE_EXIT: Duration = Duration::from_millis(300);
/// Descriptors kept back from the client connections' share of the open-file limit: the
/// listeners, the admin side, logs, and the health checks' kept connections.
const RESERVED_FILES: usize = 256;

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
    /// A node's host name did not resolve.
    #[error("{0}")]
    Resolve(String),
    /// The runtime that resolves host names at start could not be made.
    #[error("cannot start a runtime to resolve host names: {0}")]
    Runtime(std::io::Error),
    /// A TLS listener's certificate or key cannot be used.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
}

/// A built server, ready to run, and the cluster it serves.
pub struct Healthgate {
    /// The Pingora server with every service added.
    pub server: Server,
    /// The cluster state shared by the proxy, the admin app and the poller.
    pub cluster: Arc<Cluster>,
}

/// How the process was started, beyond its configuration.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// The configuration file, read again on SIGHUP (`None`: nothing to reload).
    pub config_path: Option<PathBuf>,
    /// Take the listeners over from the running process (`--upgrade`) instead of binding.
    pub upgrade: bool,
}

/// Build every service for `config`. Nothing listens until the server runs; with
/// `launch.upgrade` the listeners come from the running process when it gets SIGQUIT.
pub fn build(config: &Config, launch: &Launch) -> Result<Healthgate, StartError> {
    if !launch.upgrade {
        check_listeners(config)?;
    }
    let certificates = Arc::new(Certificates::load(config)?);
    let metrics = Metrics::new()?;
    let (planned, discovery) = resolve_at_start(config, &metrics)?;
    let cluster = Arc::new(Cluster::new(config, metrics, planned)?);
    certificates.report(cluster.metrics());

    let conf = ServerConf {
        threads: config.threads,
        // One current-thread runtime per worker: no cross-thread wake-ups on the hot path
        // (measured: 47 → 39 µs of CPU per request with one thread; docs/bench/README.md).
        work_stealing: false,
        // After SIGTERM Pingora closes the listeners, waits this long, then stops the
        // runtimes. It takes whole seconds: round up, never below what was asked for.
        grace_period_seconds: Some(config.shutdown.grace_period.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(SHUTDOWN_TIMEOUT_SECONDS),
        upgrade_sock: config.upgrade_socket.clone(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: launch.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();
    let server_conf = server.configuration.clone();

    let app = HealthgateProxy::new(
        cluster.clone(),
        config,
        max_connections(config),
        certificates.by_listener(&config.listen),
    );
    watch_shutdown(&server, cluster.clone(), app.draining_flag());
    let mut proxy = Service::new("healthgate proxy".to_string(), app);
    for listener in &config.listen {
        // No read or write buffer of Pingora's in front of hyper's own: Pingora's default
        // (64 KiB read) is memory every idle client connection would hold. TLS listeners
        // are plain TCP to Pingora too: the request loop does the handshake, with a
        // certificate a reload can swap (docs/tls.md).
        let endpoint = ListenerConfig::tcp(listener.address.to_string())
            .l4_buffer(L4BufferSettings::unbuffered());
        proxy.add_listener(endpoint);
    }
    proxy.threads = Some(server_conf.threads);

    let mut admin = Service::new(
        "healthgate admin".to_string(),
        AdminApp::new(cluster.clone(), config.admin_token.clone(), config.admin),
    );
    admin.add_tcp(&config.admin.to_string());
    admin.threads = Some(1);

    let supervisor = background_service(
        "healthgate supervisor",
        Supervisor::new(
            cluster.clone(),
            config,
            launch.config_path.clone(),
            certificates,
            discovery,
        ),
    );

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(supervisor);
    Ok(Healthgate { server, cluster })
}

/// The nodes to start with: the configured ones (host names asked of DNS) and those the
/// `discovery` names stand for now (a name that does not resolve yet adds none: it is
/// asked again on its schedule). The discovery state goes on to the supervisor.
fn resolve_at_start(
    config: &Config,
    metrics: &Metrics,
) -> Result<(Vec<Planned>, Option<Discovery>), StartError> {
    let mut discovery = match Discovery::new(config, metrics.clone()) {
        Ok(discovery) => discovery,
        Err(e) => {
            log::warn!("{e}; node host names are resolved once, by the system");
            let planned =
                resolve_configured(config).map_err(|e| StartError::Resolve(e.to_string()))?;
            return Ok((planned, None));
        }
    };
    // Pingora's runtimes do not run yet: a runtime of its own, for these few lookups.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let planned = runtime
        .block_on(async {
            let mut planned = discovery.configured(config).await?;
            discovery.refresh(config).await;
            planned.extend(discovery.discovered_nodes(config, &planned));
            Ok::<_, String>(planned)
        })
        .map_err(StartError::Resolve)?;
    Ok((planned, Some(discovery)))
}

/// Load every certificate, key and CA file `config` names, as a start would, without
/// starting anything (`--check`). Returns the warnings: certificates that expire within
/// 14 days, `upstream_tls.verify: false`.
pub fn check_tls(config: &Config) -> Result<Vec<String>, StartError> {
    let mut warnings = Certificates::load(config)?.warnings();
    warnings.extend(crate::cluster::check_upstream_tls(config)?);
    Ok(warnings)
}

/// `limits.max_connections`, or by default what the open-file limit allows: each proxied
/// connection may hold two descriptors (the client's and a node's), after the reserve and
/// one kept health connection per node, shared among the listeners.
fn max_connections(config: &Config) -> usize {
    if let Some(max) = config.limits.max_connections {
        return max;
    }
    let spare = crate::os::open_files().saturating_sub(RESERVED_FILES + 2 * config.nodes.len());
    (spare / 2 / config.listen.len().max(1)).max(64)
}

/// Watch the server's phases: set `draining` as soon as it starts handing its listeners
/// over (SIGQUIT) or stopping (SIGTERM) — Pingora keeps serving for a while, and answers
/// that close their connection move clients over before it closes the idle ones — and once
/// the grace period has begun, exit as soon as no request is in flight instead of sleeping
/// out the whole grace period as Pingora does.
fn watch_shutdown(server: &Server, cluster: Arc<Cluster>, draining: Arc<AtomicBool>) {
    let mut phases = server.watch_execution_phase();
    let watcher = std::thread::Builder::new()
        .name("healthgate-phases".into())
        .spawn(move || {
            while let Ok(phase) = phases.blocking_recv() {
                match phase {
                    ExecutionPhase::GracefulUpgradeTransferringFds
                    | ExecutionPhase::GracefulTerminate
                    | ExecutionPhase::ShutdownStarted
                        if !draining.swap(true, Ordering::Relaxed) =>
                    {
                        log::info!("draining client connections ({phase:?})");
                    }
                    ExecutionPhase::ShutdownGracePeriod => exit_when_idle(&cluster),
                    _ => {}
                }
            }
        });
    if let Err(e) = watcher {
        log::warn!("cannot watch for shutdown; client connections will not be drained: {e}");
    }
}

/// Exit once no request has been in flight for [`IDLE_BEFORE_EXIT`] (the listeners are
/// closed by now; a request whose header was still arriving gets that long to be routed).
/// Pingora's own end of the grace period still applies if requests keep running.
fn exit_when_idle(cluster: &Cluster) {
    let mut idle_since: Option<Instant> = None;
    loop {
        if cluster.requests_in_flight() > 0 {
            idle_since = None;
        } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= IDLE_BEFORE_EXIT {
            log::info!("no request in flight: exiting before the grace period ends");
            std::process::exit(0);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bind each listener once, so a taken or invalid address is a clear start-up error
/// (Pingora would otherwise fail inside a service thread, after start-up).
fn check_listeners(config: &Config) -> Result<(), StartError> {
    let all = config
        .listen
        .iter()
        .map(|l| (l.address, "listen"))
        .chain(std::iter::once((config.admin, "admin")));
    for (addr, what) in all {
        TcpListener::bind(addr).map_err(|source| StartError::Listen { addr, what, source })?;
    }
    Ok(())
}
