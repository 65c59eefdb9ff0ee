//! The supervisor: the background service that runs one poller per node, applies
//! configuration reloads on SIGHUP and follows DNS (both change the node set, so they live
//! where the pollers are started and stopped).

mod certificates;
mod discovery;
mod poller;

pub use certificates::{CertificateError, Certificates, EXPIRY_WARNING};

use crate::cluster::{Cluster, Occasion, ReloadSummary, restart_only_changes};
use crate::config::Config;
use async_trait::async_trait;
pub use discovery::Discovery;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Runs the pollers until shutdown and applies reloads.
pub struct Supervisor {
    cluster: Arc<Cluster>,
    /// The file to read again on SIGHUP (`None`: the built-in demo config, no reloads).
    path: Option<PathBuf>,
    /// The configuration the process started with: keys a reload cannot apply are
    /// compared against it.
    started_with: Config,
    /// The TLS listeners' certificates, read again on every reload.
    certificates: Arc<Certificates>,
    /// What DNS said at start (taken when the service starts; `None`: DNS is off).
    discovery: std::sync::Mutex<Option<Discovery>>,
}

impl Supervisor {
    /// A service for `cluster`, started from `config` read from `path`.
    pub fn new(
        cluster: Arc<Cluster>,
        config: &Config,
        path: Option<PathBuf>,
        certificates: Arc<Certificates>,
        discovery: Option<Discovery>,
    ) -> Supervisor {
        Supervisor {
            cluster,
            path,
            started_with: config.clone(),
            certificates,
            discovery: std::sync::Mutex::new(discovery),
        }
    }

    /// Read the file again off the runtime's threads (a host name may take seconds to
    /// resolve, and the pollers share this runtime), then apply it with the nodes
    /// discovery knows of. On any error the running configuration stays.
    async fn reload(
        &self,
        discovery: Option<&mut Discovery>,
    ) -> Result<(Config, ReloadSummary), String> {
        let Some(path) = self.path.clone() else {
            return Err("no configuration file to reload (demo)".into());
        };
        let certificates = self.certificates.clone();
        let loaded = tokio::task::spawn_blocking(move || load(&certificates, &path))
            .await
            .unwrap_or_else(|e| Err(format!("reload task failed: {e}")))?;
        let Loaded { config, swaps } = loaded;
        let planned = match discovery {
            Some(discovery) => {
                let mut planned = discovery.configured(&config).await?;
                planned.extend(discovery.discovered_nodes(&config, &planned));
                planned
            }
            None => {
                let config = config.clone();
                let resolved = tokio::task::spawn_blocking(move || {
                    crate::cluster::resolve_configured(&config)
                })
                .await
                .map_err(|e| format!("reload task failed: {e}"))?;
                resolved.map_err(|e| e.to_string())?
            }
        };
        let summary = self
            .cluster
            .run_with(&config, planned, Occasion::Reload)
            .map_err(|e| e.to_string())?;
        let swapped = self.certificates.swap(swaps);
        self.certificates.report(self.cluster.metrics());
        let file = self.path.as_deref().map(Path::display);
        let file = file.map(|f| f.to_string()).unwrap_or_default();
        log::info!(
            "{file}: reloaded: {}, {swapped} listener certificate(s) read again; {}",
            summary.describe(),
            config.summary()
        );
        let pending = restart_only_changes(&self.started_with, &config);
        if !pending.is_empty() {
            log::warn!(
                "{file}: changed {} take(s) effect only at the next start or --upgrade",
                pending.join(", ")
            );
        }
        Ok((config, summary))
    }

    /// Ask DNS what is due; when a node set changed, run with the new one.
    async fn rediscover(
        &self,
        discovery: &mut Discovery,
        config: &Config,
    ) -> Option<ReloadSummary> {
        if !discovery.refresh(config).await {
            return None;
        }
        let cluster = &self.cluster;
        let planned = discovery.planned(config, |name| cluster.addresses_of(name));
        match cluster.run_with(config, planned, Occasion::Discovery) {
            Ok(summary) => {
                log::info!("discovery: {}", summary.describe());
                Some(summary)
            }
            Err(e) => {
                log::error!("discovery: the new node set cannot be used, the old one stays: {e}");
                None
            }
        }
    }
}

/// A configuration file read again, with its listeners' new certificates (loaded and
/// checked, not yet in use).
struct Loaded {
    config: Config,
    swaps: Vec<certificates::Swap>,
}

/// Read and check the file at `path`. Blocking: it reads files.
fn load(certificates: &Certificates, path: &Path) -> Result<Loaded, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let file = path.display();
    let swaps = certificates
        .prepare(&config)
        .map_err(|e| format!("{file}: {e}"))?;
    Ok(Loaded { config, swaps })
}

/// Start the pollers of the nodes `summary` added, stop those of the ones it removed.
fn update_pollers(
    cluster: &Arc<Cluster>,
    pollers: &mut HashMap<usize, JoinHandle<()>>,
    summary: ReloadSummary,
    shutdown: &ShutdownWatch,
) {
    for id in summary.removed {
        if let Some(task) = pollers.remove(&id) {
            task.abort();
        }
    }
    pollers.extend(poller::spawn(cluster, &summary.added, shutdown));
}

#[async_trait]
impl BackgroundService for Supervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Installed first thing: until it is, SIGHUP's default action ends the process.
        let mut hangups =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    log::error!("cannot handle SIGHUP, reloads are off: {e}");
                    None
                }
            };
        self.cluster.restore_drains();
        self.cluster.probing_started();
        let ids = self.cluster.node_ids();
        let for_pollers = shutdown.clone();
        let mut pollers: HashMap<usize, JoinHandle<()>> =
            poller::spawn(&self.cluster, &ids, &for_pollers)
                .into_iter()
                .collect();
        log::info!("health checking {} node(s)", pollers.len());
        let mut config = self.started_with.clone();
        let started = self.discovery.lock().ok().and_then(|mut d| d.take());
        let mut discovery = match started.map(|d| d.renewed(&config)) {
            Some(Ok(discovery)) => Some(discovery),
            Some(Err(e)) => {
                log::error!("DNS discovery and re-resolution are off: {e}");
                None
            }
            None => None,
        };
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            let due = discovery.as_ref().and_then(|d| d.next_due(&config));
            let dns = async {
                match due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                // Ends when shutdown starts (true) or the server is gone (error).
                _ = shutdown.wait_for(|stopping| *stopping) => Event::Stop,
                _ = hangup => Event::Reload,
                () = dns => Event::Rediscover,
            };
            match event {
                Event::Stop => break,
                Event::Rediscover => {
                    let Some(discovery) = discovery.as_mut() else {
                        continue;
                    };
                    if let Some(summary) = self.rediscover(discovery, &config).await {
                        update_pollers(&self.cluster, &mut pollers, summary, &for_pollers);
                    }
                }
                Event::Reload => match self.reload(discovery.as_mut()).await {
                    Ok((reloaded, summary)) => {
                        update_pollers(&self.cluster, &mut pollers, summary, &for_pollers);
                        self.cluster.metrics().count_reload(true);
                        if let Some(d) = discovery.as_mut() {
                            d.retain(&reloaded);
                        }
                        config = reloaded;
                    }
                    Err(e) => {
                        log::error!("reload failed, the running configuration stays: {e}");
                        self.cluster.metrics().count_reload(false);
                    }
                },
            }
        }
        for task in pollers.into_values() {
            task.abort();
        }
    }
}

/// What woke the supervisor.
enum Event {
    Stop,
    Reload,
    Rediscover,
}
