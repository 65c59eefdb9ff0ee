//! Probes: an HTTP GET on the health port and a TCP connect to the traffic port.
//!
//! Each probe runs under one deadline (connect, request, answer and body together), reads at
//! most [`MAX_ANSWER_BYTES`] of the answer, and reports every outcome as a value: a malformed
//! or hostile answer is a failed probe with a reason, never a panic.

use super::body;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A probe reads at most this much of an answer body (and buffers at most this much of its head).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How a probe ended; the `result` label of `healthgate_probes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// The node passed.
    Success,
    /// The node answered, and the answer says no (e.g. `/healthz` 500).
    Failure,
    /// No complete answer within the deadline.
    Timeout,
    /// Refused, reset, or not HTTP.
    Error,
}

impl ProbeResult {
    /// Every result, for pre-registering metric label sets.
    pub const ALL: [ProbeResult; 4] = [
        ProbeResult::Success,
        ProbeResult::Failure,
        ProbeResult::Timeout,
        ProbeResult::Error,
    ];

    /// The metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Success => "success",
            ProbeResult::Failure => "failure",
            ProbeResult::Timeout => "timeout",
            ProbeResult::Error => "error",
        }
    }
}

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// Pass, fail, timeout or error.
    pub result: ProbeResult,
    /// Why it did not pass (empty on success).
    pub reason: String,
    /// The HTTP status, if an answer head arrived.
    pub status: Option<u16>,
    /// Faulty CApp names from a `/healthz` answer (readiness only).
    pub faulty_capps: Vec<String>,
    /// How long the probe took.
    pub elapsed: Duration,
}

impl ProbeOutcome {
    fn new(result: ProbeResult, reason: String, started: Instant) -> ProbeOutcome {
        ProbeOutcome {
            result,
            reason,
            status: None,
            faulty_capps: Vec::new(),
            elapsed: started.elapsed(),
        }
    }

    /// Whether the probe passed.
    pub fn passed(&self) -> bool {
        self.result == ProbeResult::Success
    }
}

/// An HTTP answer, cut at [`MAX_ANSWER_BYTES`].
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
    truncated: bool,
}

#[derive(Debug)]
enum GetError {
    Timeout,
    Failed(String),
}

/// `GET /healthz`: passes only on 200. A 500 carries faulty CApp names, read leniently.
pub async fn readiness(
    addr: SocketAddr,
    host: &str,
    path: &str,
    deadline: Duration,
) -> ProbeOutcome {
    let started = Instant::now();
    match get(addr, host, path, deadline).await {
        Ok(answer) => {
            let mut outcome = if answer.status == 200 {
                ProbeOutcome::new(ProbeResult::Success, String::new(), started)
            } else {
                let capps = body::faulty_capps(&answer.body);
                let reason = if capps.is_empty() {
                    format!("{path} answered {}", answer.status)
                } else {
                    format!(
                        "{path} answered {}: faulty CApps {}",
                        answer.status,
                        capps.join(", ")
                    )
                };
                let mut outcome = ProbeOutcome::new(ProbeResult::Failure, reason, started);
                outcome.faulty_capps = capps;
                outcome
            };
            if answer.truncated {
                log::debug!("{addr}{path}: answer body cut at {MAX_ANSWER_BYTES} bytes");
            }
            outcome.status = Some(answer.status);
            outcome
        }
        Err(e) => failed(e, addr, path, deadline, started),
    }
}

/// `GET /liveness`: MI answers 200 while the process runs and never says "not live"; MI 4.1
/// and older answer 404. Any answer below 500 therefore proves the process is alive.
pub async fn liveness(
    addr: SocketAddr,
    host: &str,
    path: &str,
    deadline: Duration,
) -> ProbeOutcome {
    let started = Instant::now();
    match get(addr, host, path, deadline).await {
        Ok(answer) => {
            let mut outcome = if answer.status < 500 {
                ProbeOutcome::new(ProbeResult::Success, String::new(), started)
            } else {
                let reason = format!("{path} answered {}", answer.status);
                ProbeOutcome::new(ProbeResult::Failure, reason, started)
            };
            outcome.status = Some(answer.status);
            outcome
        }
        Err(e) => failed(e, addr, path, deadline, started),
    }
}

/// A TCP connect to the traffic port, closed at once (with a RST, like the HTTP probes).
pub async fn tcp(addr: SocketAddr, deadline: Duration) -> ProbeOutcome {
    let started = Instant::now();
    match tokio::time::timeout(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_zero_linger();
            ProbeOutcome::new(ProbeResult::Success, String::new(), started)
        }
        Ok(Err(e)) => ProbeOutcome::new(
            ProbeResult::Error,
            format!("traffic port {addr}: {e}"),
            started,
        ),
        Err(_) => ProbeOutcome::new(
            ProbeResult::Timeout,
            format!("traffic port {addr}: no connection within {deadline:?}"),
            started,
        ),
    }
}

fn failed(
    e: GetError,
    addr: SocketAddr,
    path: &str,
    deadline: Duration,
    started: Instant,
) -> ProbeOutcome {
    match e {
        GetError::Timeout => ProbeOutcome::new(
            ProbeResult::Timeout,
            format!("{addr}{path}: no complete answer within {deadline:?}"),
            started,
        ),
        GetError::Failed(why) => {
            ProbeOutcome::new(ProbeResult::Error, format!("{addr}{path}: {why}"), started)
        }
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

/// One GET under one deadline, on a fresh connection that is closed afterwards (as
/// Kubernetes probes do: no pooled connection can go stale between probes). The close is an
/// abortive one (zero linger: RST), as HAProxy closes its checks: no FIN exchange and no
/// `TIME_WAIT` socket on either side for every probe (measured: N µs → M µs of CPU a probe).
async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    deadline: Duration,
) -> Result<Answer, GetError> {
    match tokio::time::timeout(deadline, get_unbounded(addr, host, path)).await {
        Ok(result) => result.map_err(GetError::Failed),
        Err(_) => Err(GetError::Timeout),
    }
}

async fn get_unbounded(addr: SocketAddr, host: &str, path: &str) -> Result<Answer, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_zero_linger();
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_ANSWER_BYTES.max(8192))
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let exchange = async move {
        let request = http::Request::get(path)
            .header(http::header::HOST, host_header(host, addr.port()))
            .header(http::header::USER_AGENT, "healthgate")
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("no valid answer: {e}"))?;
        read_answer(response).await
    };
    // The connection future does the I/O. It runs in this task, not a spawned one, and is
    // dropped (closing the socket) as soon as the answer is read or the deadline passes.
    tokio::pin!(connection, exchange);
    let mut connection_ended = false;
    loop {
        tokio::select! {
            answer = &mut exchange => return answer,
            // An I/O error also fails the exchange, which then reports it.
            _ = &mut connection, if !connection_ended => connection_ended = true,
        }
    }
}

/// Status and body (cut at [`MAX_ANSWER_BYTES`]) of an answer.
async fn read_answer(response: http::Response<Incoming>) -> Result<Answer, String> {
    let status = response.status().as_u16();
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one answer: a head declaring `size` bytes, then that many bytes.
    async fn serve_body(size: usize) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let head = format!("HTTP/1.1 500 X\r\nContent-Length: {size}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&vec![b'x'; size]).await;
        });
        addr
    }

    #[tokio::test]
    async fn body_is_cut_at_the_limit() {
        let addr = serve_body(1024 * 1024).await;
        let answer = get(addr, "h", "/healthz", Duration::from_secs(2))
            .await
            .expect("answer");
        assert_eq!(answer.status, 500);
        assert_eq!(answer.body.len(), MAX_ANSWER_BYTES);
        assert!(answer.truncated);
    }

    #[tokio::test]
    async fn small_body_is_read_whole() {
        let addr = serve_body(100).await;
        let answer = get(addr, "h", "/healthz", Duration::from_secs(2))
            .await
            .expect("answer");
        assert_eq!(answer.body.len(), 100);
        assert!(!answer.truncated);
    }

    #[test]
    fn host_header_brackets_ipv6_literals() {
        assert_eq!(host_header("10.0.0.1", 9201), "10.0.0.1:9201");
        assert_eq!(host_header("mi-1.local", 9201), "mi-1.local:9201");
        assert_eq!(host_header("::1", 9201), "[::1]:9201");
    }
}
