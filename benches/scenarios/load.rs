//! The load: a few keep-alive HTTP/1.1 connections, each sending GETs one after another at a
//! steady pace, recording every request's start, path, latency, outcome and answering node. A
//! connection that breaks is counted (the request on it failed) and opened again.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Concurrent keep-alive connections.
pub const CONNECTIONS: usize = 6;
/// Each connection starts a request at most this often (≈1200 requests/s in all): enough
/// resolution for sub-second events without saturating a 2-core machine.
const PACE: Duration = Duration::from_millis(5);
/// A request with no complete answer after this long is a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The path every scenario sends to, unless it needs several integrations.
pub const ROOT: &[&str] = &["/"];

/// What happened to one request.
#[derive(Clone, Debug)]
pub struct Record {
    /// When it was sent.
    pub start: Instant,
    /// The request path.
    pub path: &'static str,
    /// Until its answer was complete or it failed.
    pub latency: Duration,
    /// The HTTP status, or `None` for a transport error (refused, reset, timed out).
    pub status: Option<u16>,
    /// The node that answered (`x-mi-node`), if any.
    pub node: Option<String>,
}

impl Record {
    /// A 2xx answer.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// When it ended.
    pub fn end(&self) -> Instant {
        self.start + self.latency
    }
}

/// Load running in the background until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Vec<Record>>>,
}

impl Load {
    /// Start [`CONNECTIONS`] connections to `addr`, each sending to `paths` in turn.
    pub fn start(addr: SocketAddr, paths: &'static [&'static str]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..CONNECTIONS)
            .map(|c| tokio::spawn(worker(addr, paths, c, stop.clone())))
            .collect();
        Load { stop, workers }
    }

    /// Stop sending (requests in flight finish) and return every record, by start time.
    pub async fn stop(mut self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for w in std::mem::take(&mut self.workers) {
            all.extend(w.await.unwrap_or_default());
        }
        all.sort_by_key(|r| r.start);
        all
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Connection `c`'s loop. With several paths each connection cycles through them, starting
/// at its own, so every path is sent at every moment and on every connection (a proxy that
/// mishandles one path's answer shows it on the others' requests too).
async fn worker(
    addr: SocketAddr,
    paths: &'static [&'static str],
    c: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Record> {
    let mut records = Vec::new();
    let mut sender: Option<Sender> = None;
    let mut next = Instant::now();
    let mut turn = c;
    while !stop.load(Ordering::Relaxed) {
        let path = paths[turn % paths.len()];
        turn += 1;
        tokio::time::sleep_until(next.into()).await;
        next = Instant::now().max(next) + PACE;
        // A connection the proxy closed cleanly between requests (it said `Connection:
        // close`, or closed an idle one) is replaced before sending: no request was lost.
        if let Some(s) = sender.as_mut() {
            if s.ready().await.is_err() {
                sender = None;
            }
        }
        let start = Instant::now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, request(addr, path, &mut sender)).await;
        let (status, node) = match result {
            Ok(Ok(answer)) => answer,
            _ => {
                sender = None;
                (None, None)
            }
        };
        records.push(Record {
            start,
            path,
            latency: start.elapsed(),
            status,
            node,
        });
    }
    records
}

/// One GET of `path` on the connection (opened first if there is none); the status and node.
async fn request(
    addr: SocketAddr,
    path: &str,
    sender: &mut Option<Sender>,
) -> Result<(Option<u16>, Option<String>), String> {
    if sender.is_none() {
        *sender = Some(connect(addr).await?);
    }
    let s = sender.as_mut().ok_or("no connection")?;
    let request = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = s.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let node = response
        .headers()
        .get("x-mi-node")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The answer counts only once its body arrived whole.
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((Some(status), node))
}
