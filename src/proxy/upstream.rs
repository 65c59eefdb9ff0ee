//! Connections to the nodes' traffic ports: opened with `timeouts.connect`, and kept idle
//! between requests in a pool per worker thread. Each worker runs its own current-thread
//! runtime, so its pool needs no lock, and a released connection costs a push onto a list
//! (hyper's connection task, already running, notices a node closing it).

use super::body::UpBody;
use crate::routing::NodeTls;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A connection to a node, ready for one request at a time.
pub type Sender = http1::SendRequest<UpBody>;

/// Idle connections kept per node and worker thread. The pool only ever holds as many as
/// were busy at once (each was a client's request in flight), so this bounds a burst, not
/// the steady state. At 16, 32 keep-alive clients on one node reopened a connection about
/// every 5 requests — with TLS a full handshake each (docs/bench/tls.md).
const IDLE_PER_NODE: usize = 256;

/// A pool key: the traffic address, and whether it is spoken to over TLS (a reload that
/// turns a node to https must not get its plain connections back).
pub type PoolKey = (SocketAddr, bool);

thread_local! {
    /// This worker's idle connections, by traffic address and scheme.
    static IDLE: RefCell<HashMap<PoolKey, Vec<Sender>>> = RefCell::new(HashMap::new());
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
    /// The TLS handshake failed: the reason, as an operator reads it (`TLS: …`).
    #[error("{0}")]
    Tls(String),
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

/// An idle pooled connection to `key` that can take a request now.
pub async fn pooled(key: PoolKey) -> Option<Sender> {
    loop {
        let mut sender = IDLE.with_borrow_mut(|idle| idle.get_mut(&key)?.pop())?;
        if sender.is_closed() {
            continue;
        }
        // Ready at once unless its connection task has yet to see the last answer end.
        if sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
}

/// Keep `sender` for the next request to `key`, unless enough are kept already.
pub fn release(key: PoolKey, sender: Sender) {
    if sender.is_closed() {
        return;
    }
    IDLE.with_borrow_mut(|idle| {
        let list = idle.entry(key).or_default();
        if list.len() < IDLE_PER_NODE {
            list.push(sender);
        }
    });
}

/// A new connection to `addr`, over TLS with `tls`, within `timeout` (the handshake
/// included). `upgradable`: for a request that may upgrade it (WebSocket): never pooled,
/// and kept as a byte stream once the node answers 101.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<&NodeTls>,
    timeout: Duration,
    upgradable: bool,
) -> Result<Sender, ConnectError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    // Requests and answers are written whole: no reason to wait for more to send.
    stream.set_nodelay(true)?;
    let Some(tls) = tls else {
        return handshake(stream, addr, upgradable).await;
    };
    let name = tls.server_name.clone();
    let stream = tokio::time::timeout_at(deadline, tls.connector.connect(stream, name))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
        .map_err(|e| match crate::tls::is_tls_failure(&e) {
            true => ConnectError::Tls(crate::tls::describe_handshake_error(&e)),
            false => ConnectError::Io(e),
        })?;
    handshake(stream, addr, upgradable).await
}

/// hyper's HTTP/1 client on `stream`, its connection driven by a task of its own.
async fn handshake<S>(stream: S, addr: SocketAddr, upgradable: bool) -> Result<Sender, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake::<_, UpBody>(TokioIo::new(stream))
        .await?;
    match upgradable {
        false => tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("connection to {addr} ended: {e}");
            }
        }),
        true => tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                log::debug!("upgradable connection to {addr} ended: {e}");
            }
        }),
    };
    Ok(sender)
}
