//! The supervisor: the background service that runs one poller per node and applies
//! configuration reloads on SIGHUP (they change the node set, so they live where the pollers
//! are started and stopped).

mod certificates;
mod poller;

pub use certificates::{CertificateError, Certificates, EXPIRY_WARNING};

use crate::cluster::{Cluster, restart_only_changes};
use crate::config::Config;
use async_trait::async_trait;
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
}

impl Supervisor {
    /// A service for `cluster`, started from `config` read from `path`.
    pub fn new(
        cluster: Arc<Cluster>,
        config: &Config,
        path: Option<PathBuf>,
        certificates: Arc<Certificates>,
    ) -> Supervisor {
        Supervisor {
            cluster,
            path,
            started_with: config.clone(),
            certificates,
        }
    }

    /// Reload off the runtime's threads (a host name may take seconds to resolve, and the
    /// pollers share this runtime).
    async fn reload(&self) -> Result<Reloaded, String> {
        let Some(path) = self.path.clone() else {
            return Err("no configuration file to reload (demo)".into());
        };
        let (cluster, started_with) = (self.cluster.clone(), self.started_with.clone());
        let certificates = self.certificates.clone();
        tokio::task::spawn_blocking(move || reload(&cluster, &certificates, &path, &started_with))
            .await
            .unwrap_or_else(|e| Err(format!("reload task failed: {e}")))
    }
}

/// Read, validate and apply the file at `path` again; on any error the running configuration
/// stays. Returns the ids of the nodes whose pollers must start and stop. Blocking: it may
/// resolve host names.
fn reload(
    cluster: &Cluster,
    certificates: &Certificates,
    path: &Path,
    started_with: &Config,
) -> Result<Reloaded, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    // Everything that can fail is checked before anything changes: the listeners' new
    // certificates are loaded (not yet used), then the cluster plans and applies.
    let file = path.display();
    let swaps = certificates
        .prepare(&config)
        .map_err(|e| format!("{file}: {e}"))?;
    let summary = cluster.reload(&config).map_err(|e| e.to_string())?;
    let swapped = certificates.swap(swaps);
    certificates.report(cluster.metrics());
    log::info!(
        "{}: reloaded: {}, {swapped} listener certificate(s) read again; {}",
        path.display(),
        summary.describe(),
        config.summary()
    );
    let pending = restart_only_changes(started_with, &config);
    if !pending.is_empty() {
        log::warn!(
            "{}: changed {} take(s) effect only at the next start or --upgrade",
            path.display(),
            pending.join(", ")
        );
    }
    Ok(Reloaded {
        added: summary.added,
        removed: summary.removed,
    })
}

/// The pollers a reload starts and stops.
struct Reloaded {
    added: Vec<usize>,
    removed: Vec<usize>,
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
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            let stop = tokio::select! {
                // Ends when shutdown starts (true) or the server is gone (error).
                _ = shutdown.wait_for(|stopping| *stopping) => true,
                _ = hangup => false,
            };
            if stop {
                break;
            }
            match self.reload().await {
                Ok(Reloaded { added, removed }) => {
                    for id in removed {
                        if let Some(task) = pollers.remove(&id) {
                            task.abort();
                        }
                    }
                    pollers.extend(poller::spawn(&self.cluster, &added, &for_pollers));
                    self.cluster.metrics().count_reload(true);
                }
                Err(e) => {
                    log::error!("reload failed, the running configuration stays: {e}");
                    self.cluster.metrics().count_reload(false);
                }
            }
        }
        for task in pollers.into_values() {
            task.abort();
        }
    }
}
