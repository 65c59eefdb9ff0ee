//! The HTTP GET behind the health probes, on a connection each node keeps between probes.
//!
//! A probe on a fresh connection costs a connect and a close on both ends, which is most of
//! what health checking a large cluster costs (measured at 5000 nodes: see the README's
//! Performance section). So a node's idle connection to its health port is kept for its next
//! probe, with this policy for connections that went stale in between:
//! - a kept connection the node closed or reset (restart, idle timeout) is noticed before use
//!   if the close has arrived, and otherwise by the failed exchange: either way the probe is
//!   sent again, once, on a fresh connection, within the same deadline;
//! - only a connection whose answer was whole, framed and keep-alive is kept; a timeout, an
//!   error, a truncated or `Connection: close` answer drops it (closed with a RST, as HAProxy
//!   closes its checks: no `TIME_WAIT` on either side);
//! - at most [`kept_limit`] connections are kept process-wide (a share of the open-file
//!   limit); beyond it probes connect afresh each time.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;
use tokio::net::TcpStream;

/// A probe reads at most this much of an answer body (and buffers at most this much of its head).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// An HTTP answer, cut at [`MAX_ANSWER_BYTES`].
#[derive(Debug)]
pub(super) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub truncated: bool,
    /// The answer lets the connection carry another request (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `keep-alive`).
    keep_alive: bool,
}

/// Why a GET gave no answer.
#[derive(Debug)]
pub(super) enum GetError {
    Timeout,
    Failed(String),
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
    *LIMIT.get_or_init(|| crate::fd_limit::open_files() / 4)
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
        Ok(result) => result.map_err(GetError::Failed),
        Err(_) => Err(GetError::Timeout),
    }
}

async fn get_unbounded(
    connection: &mut HealthConnection,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<Answer, String> {
    if let Some(stream) = connection.take(addr) {
        // A failure on a kept connection may only mean the node closed it a moment ago:
        // the probe is sent again on a fresh one, whose outcome is the verdict.
        if let Ok((answer, reusable)) = exchange(stream, addr, host, path).await {
            connection.keep(addr, reusable);
            return Ok(answer);
        }
    }
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_zero_linger();
    let (answer, reusable) = exchange(stream, addr, host, path).await?;
    connection.keep(addr, reusable);
    Ok(answer)
}

/// One request and its answer on `stream`, and the stream back if it can carry another.
async fn exchange(
    stream: TcpStream,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(Answer, Option<TcpStream>), String> {
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_ANSWER_BYTES.max(8192))
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let request = http::Request::get(path)
        .header(http::header::HOST, host_header(host, addr.port()))
        .header(http::header::USER_AGENT, "healthgate")
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| format!("request: {e}"))?;
    // The sender is moved in, so it is dropped when the answer is read: the connection then
    // has nothing more to do and hands its socket back.
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("no valid answer: {e}"))?;
        read_answer(response).await
    };
    // The connection future does the I/O. It runs in this task, not a spawned one.
    let mut connection = pin!(connection.without_shutdown());
    let mut exchange = pin!(exchange);
    let mut connection_ended = false;
    let answer = loop {
        tokio::select! {
            answer = &mut exchange => break answer?,
            // An I/O error also fails the exchange, which then reports it.
            _ = &mut connection, if !connection_ended => connection_ended = true,
        }
    };
    if connection_ended || answer.truncated || !answer.keep_alive {
        return Ok((answer, None));
    }
    // With the answer read and the sender gone, one poll finishes the connection's cycle; if
    // it does not, or bytes beyond the answer arrived, the socket is not reused.
    let parts = poll_fn(|cx| Poll::Ready(connection.as_mut().poll(cx))).await;
    let reusable = match parts {
        Poll::Ready(Ok(parts)) if parts.read_buf.is_empty() => Some(parts.io.into_inner()),
        _ => None,
    };
    Ok((answer, reusable))
}

/// Status and body (cut at [`MAX_ANSWER_BYTES`]) of an answer.
async fn read_answer(response: http::Response<Incoming>) -> Result<Answer, String> {
    let status = response.status().as_u16();
    let keep_alive = keeps_alive(&response);
    let mut incoming = response.into_body();
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| format!("answer {status}, body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            let room = MAX_ANSWER_BYTES - body.len();
            if data.len() > room {
                body.extend_from_slice(&data[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(data);
        }
    }
    Ok(Answer {
        status,
        body,
        truncated,
        keep_alive,
    })
}

/// Whether an answer lets its connection carry another request.
fn keeps_alive<B>(response: &http::Response<B>) -> bool {
    let says = |token: &str| {
        response
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match response.version() {
        http::Version::HTTP_11 => !says("close"),
        http::Version::HTTP_10 => says("keep-alive"),
        _ => false,
    }
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
