//! The proxy's own view, polled every 10 ms: which nodes it routes to, and every change with
//! the moment it was seen. Eviction and readmission times are read from this log.

use crate::proxies::Admin;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the proxy is asked.
const POLL: Duration = Duration::from_millis(10);

/// A node entering or leaving the proxy's routing, as first seen by a poll.
#[derive(Clone, Debug)]
pub struct Transition {
    /// When the poll that saw it answered.
    pub at: Instant,
    /// Node name.
    pub node: String,
    /// Routed from then on.
    pub routed: bool,
}

/// A background poller of one proxy (stops when dropped).
pub struct View {
    now: watch::Receiver<BTreeMap<String, bool>>,
    log: Arc<Mutex<Vec<Transition>>>,
    task: JoinHandle<()>,
}

impl View {
    /// Start polling; the first answer is the baseline (logged as transitions at that time).
    pub fn start(admin: Admin) -> View {
        let (tx, now) = watch::channel(BTreeMap::new());
        let log = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(poll(admin, tx, log.clone()));
        View { now, log, task }
    }

    /// Wait until the proxy shows `node` as `routed` (a node it no longer lists counts as
    /// not routed); false after `deadline`.
    pub async fn wait(&self, node: &str, routed: bool, deadline: Duration) -> bool {
        let mut rx = self.now.clone();
        let seen = rx.wait_for(|m| m.get(node) == Some(&routed));
        tokio::time::timeout(deadline, seen)
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Every change seen so far.
    pub fn transitions(&self) -> Vec<Transition> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for View {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn poll(
    admin: Admin,
    tx: watch::Sender<BTreeMap<String, bool>>,
    log: Arc<Mutex<Vec<Transition>>>,
) {
    let mut last: BTreeMap<String, bool> = BTreeMap::new();
    loop {
        // A proxy that does not answer (stopping, being replaced) keeps its last known view.
        if let Some(mut seen) = admin.routed().await {
            let at = Instant::now();
            for (node, routed) in &last {
                if *routed && !seen.contains_key(node) {
                    seen.insert(node.clone(), false);
                }
            }
            if let Ok(mut log) = log.lock() {
                for (node, routed) in &seen {
                    if last.get(node) != Some(routed) {
                        log.push(Transition {
                            at,
                            node: node.clone(),
                            routed: *routed,
                        });
                    }
                }
            }
            tx.send_replace(seen.clone());
            last = seen;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether `node` was routed at `t`, by the log (`None` before it was first seen).
pub fn routed_at(log: &[Transition], node: &str, t: Instant) -> Option<bool> {
    log.iter()
        .rev()
        .find(|x| x.node == node && x.at <= t)
        .map(|x| x.routed)
}

/// The first moment at or after `from` the log shows `node` as `routed`.
pub fn first_at_or_after(
    log: &[Transition],
    node: &str,
    routed: bool,
    from: Instant,
) -> Option<Instant> {
    if routed_at(log, node, from) == Some(routed) {
        return Some(from);
    }
    log.iter()
        .find(|x| x.node == node && x.at >= from && x.routed == routed)
        .map(|x| x.at)
}
