//! Connections to the nodes' traffic ports: opened with `timeouts.connect`, and kept idle
//! between requests in a pool per worker thread. Each worker runs its own current-thread
//! runtime, so its pool needs no lock, and a released connection costs a push onto a list
//! (hyper's connection task, already running, notices a node closing it).

use super::body::UpBody;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// A connection to a node, ready for one request at a time.
pub type Sender = http1::SendRequest<UpBody>;

/// Idle connections kept per node and worker thread.
const IDLE_PER_NODE: usize = 16;

thread_local! {
    /// This worker's idle connections, by traffic address.
    static IDLE: RefCell<HashMap<SocketAddr, Vec<Sender>>> = RefCell::new(HashMap::new());
}

/// Why no connection to a node could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `timeouts.connect` passed.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// The connect failed (refused, unreachable, or a local shortage).
    #[error("connect failed: {0}")]
    Io(#[from] io::Error),
    /// The connection opened but hyper could not set it up.
    #[error("HTTP/1 handshake failed: {0}")]
    Handshake(#[from] hyper::Error),
}

impl ConnectError {
    /// Whether this host's own resources ran out (descriptors, ports): no evidence about
    /// the node.
    pub fn is_local(&self) -> bool {
        matches!(self, ConnectError::Io(e) if crate::os::is_local_error(e))
    }
}

/// An idle pooled connection to `addr` that can take a request now, if any.
pub async fn pooled(addr: SocketAddr) -> Option<Sender> {
    loop {
        let mut sender = IDLE.with_borrow_mut(|idle| idle.get_mut(&addr)?.pop())?;
        if sender.is_closed() {
            continue;
        }
        // Ready at once unless its connection task has yet to see the last answer end.
        if sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
}

/// Keep `sender` for the next request to `addr`, unless enough are kept already.
pub fn release(addr: SocketAddr, sender: Sender) {
    if sender.is_closed() {
        return;
    }
    IDLE.with_borrow_mut(|idle| {
        let list = idle.entry(addr).or_default();
        if list.len() < IDLE_PER_NODE {
            list.push(sender);
        }
    });
}

/// A new connection to `addr` within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = open(addr, timeout).await?;
    let (sender, connection) = http1::Builder::new()
        .handshake::<_, UpBody>(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            log::debug!("connection to {addr} ended: {e}");
        }
    });
    Ok(sender)
}

/// A new connection to `addr` for a request that may upgrade it (WebSocket): never
/// pooled, and kept as a byte stream once the node answers 101.
pub async fn connect_upgradable(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Sender, ConnectError> {
    let stream = open(addr, timeout).await?;
    let (sender, connection) = http1::Builder::new()
        .handshake::<_, UpBody>(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            log::debug!("upgradable connection to {addr} ended: {e}");
        }
    });
    Ok(sender)
}

async fn open(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    // Requests and answers are written whole: no reason to wait for more to send.
    stream.set_nodelay(true)?;
    Ok(stream)
}
