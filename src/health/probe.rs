//! Probes: an HTTP GET on the health port and a TCP connect to the traffic port.
//!
//! Each probe runs under one deadline (connect, request, answer and body together), reads at
//! most [`MAX_ANSWER_BYTES`] of the answer, and reports every outcome as a value: a malformed
//! or hostile answer is a failed probe with a reason, never a panic.

pub use super::answer::MAX_ANSWER_BYTES;
use super::body;
pub use super::http_get::HealthConnection;
use super::http_get::{GetError, get};
use crate::tls::UpstreamTls;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A kind of health probe: the `probe` label of the probe metrics, and a column of the status
/// page. Everything that lists probes iterates [`ProbeKind::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// `GET /healthz` on the health port.
    Readiness,
    /// `GET /liveness` on the health port.
    Liveness,
    /// A TCP connect to the traffic port.
    Tcp,
}

impl ProbeKind {
    /// Every kind, in label order.
    pub const ALL: [ProbeKind; 3] = [ProbeKind::Readiness, ProbeKind::Liveness, ProbeKind::Tcp];

    /// The metrics label value and `/status` key.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Readiness => "readiness",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Tcp => "tcp",
        }
    }
}

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
    /// The TLS handshake with the traffic port failed (unknown CA, wrong name, expired).
    Tls,
}

impl ProbeResult {
    /// Every result, for pre-registering metric label sets.
    pub const ALL: [ProbeResult; 5] = [
        ProbeResult::Success,
        ProbeResult::Failure,
        ProbeResult::Timeout,
        ProbeResult::Error,
        ProbeResult::Tls,
    ];

    /// The metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Success => "success",
            ProbeResult::Failure => "failure",
            ProbeResult::Timeout => "timeout",
            ProbeResult::Error => "error",
            ProbeResult::Tls => "tls",
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
    /// Whether the answer listed its faulty CApps whole (see [`body::FaultyCapps`]).
    pub faulty_capps_complete: bool,
    /// How long the probe took.
    pub elapsed: Duration,
    /// The probe could not be made for want of this host's own resources (out of file
    /// descriptors or ports): it says nothing about the node.
    pub local: bool,
}

impl ProbeOutcome {
    fn new(result: ProbeResult, reason: String, started: Instant) -> ProbeOutcome {
        ProbeOutcome {
            result,
            reason,
            status: None,
            faulty_capps: Vec::new(),
            faulty_capps_complete: false,
            elapsed: started.elapsed(),
            local: false,
        }
    }

    fn local(reason: String, started: Instant) -> ProbeOutcome {
        ProbeOutcome {
            local: true,
            ..ProbeOutcome::new(ProbeResult::Error, reason, started)
        }
    }

    /// Whether the probe passed.
    pub fn passed(&self) -> bool {
        self.result == ProbeResult::Success
    }
}

/// `GET /healthz`: passes only on 200. A 500 carries faulty CApp names, read leniently.
pub async fn readiness(
    connection: &mut HealthConnection,
    addr: SocketAddr,
    host: &str,
    path: &str,
    deadline: Duration,
) -> ProbeOutcome {
    let started = Instant::now();
    match get(connection, addr, host, path, deadline).await {
        Ok(answer) => {
            let mut outcome = if answer.status == 200 {
                ProbeOutcome::new(ProbeResult::Success, String::new(), started)
            } else {
                let body::FaultyCapps {
                    names: capps,
                    complete,
                } = body::read_faulty_capps(&answer.body);
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
                outcome.faulty_capps_complete = complete && !answer.truncated;
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
    connection: &mut HealthConnection,
    addr: SocketAddr,
    host: &str,
    path: &str,
    deadline: Duration,
) -> ProbeOutcome {
    let started = Instant::now();
    match get(connection, addr, host, path, deadline).await {
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
/// For an https node (`tls`: its connector and the name to verify) the TLS handshake is
/// completed too: a node whose certificate cannot be verified cannot serve traffic.
pub async fn tcp(
    addr: SocketAddr,
    tls: Option<(&UpstreamTls, &ServerName<'static>)>,
    deadline: Duration,
) -> ProbeOutcome {
    let started = Instant::now();
    let within = tokio::time::Instant::now() + deadline;
    let timed_out = |started| {
        ProbeOutcome::new(
            ProbeResult::Timeout,
            format!("traffic port {addr}: no connection within {deadline:?}"),
            started,
        )
    };
    let stream = match tokio::time::timeout_at(within, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) if crate::os::is_local_error(&e) => {
            return ProbeOutcome::local(format!("traffic port {addr}: {e}"), started);
        }
        Ok(Err(e)) => {
            let reason = format!("traffic port {addr}: {e}");
            return ProbeOutcome::new(ProbeResult::Error, reason, started);
        }
        Err(_) => return timed_out(started),
    };
    let Some((connector, name)) = tls else {
        let _ = stream.set_zero_linger();
        return ProbeOutcome::new(ProbeResult::Success, String::new(), started);
    };
    match tokio::time::timeout_at(within, connector.connect(stream, name.clone())).await {
        Ok(Ok(stream)) => {
            let _ = stream.get_ref().0.set_zero_linger();
            ProbeOutcome::new(ProbeResult::Success, String::new(), started)
        }
        Ok(Err(e)) if crate::tls::is_tls_failure(&e) => {
            let why = crate::tls::describe_handshake_error(&e);
            ProbeOutcome::new(
                ProbeResult::Tls,
                format!("traffic port {addr}: {why}"),
                started,
            )
        }
        Ok(Err(e)) => {
            let reason = format!("traffic port {addr}: TLS handshake: {e}");
            ProbeOutcome::new(ProbeResult::Error, reason, started)
        }
        Err(_) => ProbeOutcome::new(
            ProbeResult::Timeout,
            format!("traffic port {addr}: no TLS handshake within {deadline:?}"),
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
        GetError::Local(why) => ProbeOutcome::local(format!("{addr}{path}: {why}"), started),
    }
}
