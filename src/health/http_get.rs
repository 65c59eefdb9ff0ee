//! The HTTP GET behind the health probes, on a connection each node keeps between probes.
//!
//! A probe on a fresh connection costs a connect and a close on both ends, which is most of
//! what health checking a large cluster costs (measured at 5000 nodes: see
//! docs/bench/health-cost.md). So a node's idle connection to its health port is kept for its next
//! probe, with this policy for connections that went stale in between:
//! - a kept connection the node closed or reset (restart, idle timeout) is noticed before use
//!   if the close has arrived, and otherwise by the failed exchange: either way the probe is
//!   sent again, once, on a fresh connection, within the same deadline;
//! - only a connection whose answer was whole, framed and keep-alive is kept; a timeout, an
//!   error, a truncated or `Connection: close` answer drops it (closed with a RST, as HAProxy
//!   closes its checks: no `TIME_WAIT` on either side);
//! - at most [`kept_limit`] connections are kept process-wide (a share of the open-file
//!   limit); beyond it probes connect afresh each time.

use super::answer::{self, Answer};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Why a GET gave no answer.
#[derive(Debug)]
pub(super) enum GetError {
    Timeout,
    Failed(String),
    /// The connect failed for want of this host's own resources (see `crate::os`).
    Local(String),
}

/// A node's idle connection to its health port, kept for its next probe (empty at first, and
/// after any probe that could not leave its connection reusable).
#[derive(Debug, Default)]
pub struct HealthConnection {
    idle: Option<Idle>,
}

#[derive(Debug)]
struct Idle {
    addr: SocketAddr,
    stream: TcpStream,
    _slot: KeptSlot,
}

impl HealthConnection {
    /// Whether a connection is kept.
    pub fn is_kept(&self) -> bool {
        self.idle.is_some()
    }

    /// The kept connection to `addr`, unless the node has closed it since (a FIN or RST that
    /// has arrived makes it readable; an idle healthy connection never is).
    fn take(&mut self, addr: SocketAddr) -> Option<TcpStream> {
        let idle = self.idle.take()?;
        if idle.addr != addr {
            return None;
        }
        let mut probe = [0u8; 1];
        match idle.stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(idle.stream),
            _ => None,
        }
    }

    /// Keep `stream` (if the exchange left one reusable) for the next probe, if the
    /// process-wide budget allows.
    fn keep(&mut self, addr: SocketAddr, stream: Option<TcpStream>) {
        if let Some(stream) = stream
            && let Some(slot) = KeptSlot::take()
        {
            self.idle = Some(Idle {
                addr,
                stream,
                _slot: slot,
            });
        }
    }
}

/// Connections kept open by all nodes together.
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// How many idle health connections the process keeps at most: a quarter of its open-file
/// limit (the rest is for clients, upstream connections and probes that connect afresh).
pub fn kept_limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| crate::os::open_files() / 4)
}

/// One kept connection's share of the budget, given back when the connection is dropped.
#[derive(Debug)]
struct KeptSlot;

impl KeptSlot {
    fn take() -> Option<KeptSlot> {
        let limit = kept_limit();
        KEPT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < limit).then_some(n + 1)
        })
        .ok()
        .map(|_| KeptSlot)
    }
}

impl Drop for KeptSlot {
    fn drop(&mut self) {
        KEPT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One GET under one deadline, on `connection`'s kept connection to `addr` if it has one and
/// on a fresh one otherwise; a reusable connection is kept in `connection` afterwards.
pub(super) async fn get(
    connection: &mut HealthConnection,
    addr: SocketAddr,
    host: &str,
    path: &str,
    deadline: Duration,
) -> Result<Answer, GetError> {
    // On a timeout the connection has been taken out of `connection`, and is dropped here:
    // an answer may still be on its way, so it can never carry another probe.
    match tokio::time::timeout(deadline, get_unbounded(connection, addr, host, path)).await {
        Ok(result) => result,
        Err(_) => Err(GetError::Timeout),
    }
}

async fn get_unbounded(
    connection: &mut HealthConnection,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<Answer, GetError> {
    let request = request(path, &host_header(host, addr.port()));
    if let Some(stream) = connection.take(addr) {
        // A failure on a kept connection may only mean the node closed it a moment ago:
        // the probe is sent again on a fresh one, whose outcome is the verdict.
        match exchange(stream, &request).await {
            Ok((answer, reusable)) => {
                connection.keep(addr, reusable);
                return Ok(answer);
            }
            Err(e) => log::debug!("{addr}{path}: kept connection failed ({e}); asking afresh"),
        }
    }
    let stream = TcpStream::connect(addr).await.map_err(|e| {
        let why = format!("connect: {e}");
        match crate::os::is_local_error(&e) {
            true => GetError::Local(why),
            false => GetError::Failed(why),
        }
    })?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_zero_linger();
    let (answer, reusable) = exchange(stream, &request).await.map_err(GetError::Failed)?;
    connection.keep(addr, reusable);
    Ok(answer)
}

/// One request and its answer on `stream`, and the stream back if it can carry another.
async fn exchange(
    mut stream: TcpStream,
    request: &[u8],
) -> Result<(Answer, Option<TcpStream>), String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let answer = answer::read(&mut stream).await?;
    let reusable = answer.reusable.then_some(stream);
    Ok((answer, reusable))
}

/// The probe's request, whole (one write).
fn request(path: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: healthgate\r\nAccept: application/json\r\n\r\n"
    )
    .into_bytes()
}

/// `Host` for a probe: an IPv6 literal goes in brackets (`[::1]:9201`).
fn host_header(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests;
