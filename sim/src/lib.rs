//! A simulated MI node that behaves as MI-HEALTH-API.md describes: it opens its ports in
//! MI's order, answers `/healthz` and `/liveness` byte for byte, and can be driven at run
//! time — faulty CApps, MI-style shutdown, hang, crash, slow startup. Its traffic port also
//! serves a WebSocket echo endpoint ([`ws`]), and serves HTTPS instead of HTTP when
//! [`SimOptions::https`] is set ([`tls`]), as MI's 8243 + offset does. Used by the `mi-sim`
//! binary, `healthgate demo` (the `demo` feature), and healthgate's tests and benchmarks.
//!
//! A crate of its own so that a production build of healthgate (`--no-default-features`)
//! carries none of it.

pub mod control;
pub mod mi;
mod serve;
pub mod tls;
pub mod ws;

use bytes::Bytes;
use http::HeaderValue;
use serve::{live, reserve};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tls::{TestPki, TlsIdentity};
use tokio::net::TcpSocket;
use tokio::sync::watch;

/// How a simulated node starts and behaves.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Node name, sent in the `x-mi-node` header of every traffic response.
    pub name: String,
    /// Address both ports bind to.
    pub ip: IpAddr,
    /// Pass-through (traffic) port; 0 picks a free one.
    pub traffic_port: u16,
    /// Internal API (health) port; 0 picks a free one.
    pub health_port: u16,
    /// MI version reported by `/healthz`.
    pub version: String,
    /// `update_level` reported by `/healthz`; `None` for MI 4.0, which has no such field.
    pub update_level: Option<String>,
    /// CApps that failed to deploy at startup.
    pub faulty_capps: Vec<String>,
    /// Time to "deploy CApps" before the ports open (both refuse connections meanwhile).
    pub startup_delay: Duration,
    /// On MI-style shutdown, how long `/healthz` keeps answering after the traffic port closed.
    pub shutdown_grace: Duration,
    /// Whether `/liveness` exists (MI 4.2 and later); older nodes answer 404 there.
    pub liveness_endpoint: bool,
    /// Every traffic response is held this long (a slow node).
    pub response_delay: Duration,
    /// Serve the traffic port over TLS with this certificate (MI's HTTPS pass-through);
    /// `None`, the default, serves plain HTTP. The health port is plain HTTP either way.
    pub https: Option<TlsIdentity>,
}

impl SimOptions {
    /// A ready MI 4.4.0 node on loopback with free ports, no startup delay, 2 s shutdown grace.
    pub fn new(name: impl Into<String>) -> SimOptions {
        SimOptions {
            name: name.into(),
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            traffic_port: 0,
            health_port: 0,
            version: "4.4.0".into(),
            update_level: Some("-".into()),
            faulty_capps: Vec::new(),
            startup_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(2),
            liveness_endpoint: true,
            response_delay: Duration::ZERO,
            https: None,
        }
    }

    /// The same options with the traffic port serving `pki`'s leaf over TLS.
    pub fn with_https(mut self, pki: Arc<TestPki>) -> Result<SimOptions, tls::TlsError> {
        self.https = Some(TlsIdentity::from_pki(pki)?);
        Ok(self)
    }
}

/// Where a simulated node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Deploying CApps: both ports refuse connections.
    Starting,
    /// Both ports open.
    Running,
    /// MI-style shutdown: traffic port closed, `/healthz` still answers.
    ShuttingDown,
    /// Everything closed (after shutdown or crash); `restart` brings it back.
    Stopped,
}

impl Phase {
    /// Lower-case name for the control API.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::ShuttingDown => "shutting_down",
            Phase::Stopped => "stopped",
        }
    }
}

/// State shared by the node handle and its serving tasks.
pub(crate) struct Shared {
    options: SimOptions,
    traffic_addr: SocketAddr,
    health_addr: SocketAddr,
    faulty: Mutex<Vec<String>>,
    hung: watch::Sender<bool>,
    phase: watch::Sender<Phase>,
    traffic_started: AtomicU64,
    traffic_requests: AtomicU64,
    health_requests: AtomicU64,
    /// WebSocket sessions: upgraded so far, open now; data frames echoed.
    ws_upgrades: AtomicU64,
    ws_open: AtomicU64,
    ws_frames: AtomicU64,
    /// Current response delay in microseconds (see [`SimOptions::response_delay`]).
    response_delay_us: AtomicU64,
    /// Status the traffic port answers with (200 unless set).
    traffic_status: AtomicU16,
    /// What an HTTPS traffic port serves now (`None`: plain HTTP); read at each accept, so a
    /// swap applies to new connections only.
    tls: Mutex<Option<TlsIdentity>>,
    /// TLS handshakes on the traffic port: completed, and failed or abandoned.
    tls_handshakes: AtomicU64,
    tls_handshake_failures: AtomicU64,
    node_header: HeaderValue,
    traffic_body: Bytes,
    life: Mutex<Option<Life>>,
}

impl Shared {
    fn faulty_capps(&self) -> Vec<String> {
        lock(&self.faulty).clone()
    }

    fn response_delay(&self) -> Duration {
        Duration::from_micros(self.response_delay_us.load(Ordering::Relaxed))
    }
}

/// The switches of one run of the node (from start or restart until stopped).
struct Life {
    /// Closes everything at once.
    kill: watch::Sender<bool>,
    /// Closes the traffic port and its idle connections; in-flight requests finish.
    close_traffic: watch::Sender<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A handle to a running simulated MI node; clones share the node.
#[derive(Clone)]
pub struct SimNode {
    shared: Arc<Shared>,
}

impl SimNode {
    /// Reserve both ports and start the node's life in the background: after
    /// `startup_delay` the traffic port opens, then the health port (MI's order).
    /// Must be called inside a Tokio runtime.
    pub fn start(options: SimOptions) -> io::Result<SimNode> {
        let traffic = reserve(SocketAddr::new(options.ip, options.traffic_port))?;
        let health = reserve(SocketAddr::new(options.ip, options.health_port))?;
        let node_header = HeaderValue::from_str(&options.name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("node name: {e}")))?;
        let shared = Arc::new(Shared {
            traffic_addr: traffic.local_addr()?,
            health_addr: health.local_addr()?,
            faulty: Mutex::new(options.faulty_capps.clone()),
            hung: watch::channel(false).0,
            phase: watch::channel(Phase::Stopped).0,
            traffic_started: AtomicU64::new(0),
            traffic_requests: AtomicU64::new(0),
            health_requests: AtomicU64::new(0),
            ws_upgrades: AtomicU64::new(0),
            ws_open: AtomicU64::new(0),
            ws_frames: AtomicU64::new(0),
            response_delay_us: AtomicU64::new(options.response_delay.as_micros() as u64),
            traffic_status: AtomicU16::new(200),
            tls: Mutex::new(options.https.clone()),
            tls_handshakes: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            node_header,
            traffic_body: Bytes::from(format!("hello from {}\n", options.name)),
            life: Mutex::new(None),
            options,
        });
        let node = SimNode { shared };
        node.begin_life(traffic, health);
        Ok(node)
    }

    /// Node name.
    pub fn name(&self) -> &str {
        &self.shared.options.name
    }

    /// The pass-through (traffic) address.
    pub fn traffic_addr(&self) -> SocketAddr {
        self.shared.traffic_addr
    }

    /// The internal API (health) address.
    pub fn health_addr(&self) -> SocketAddr {
        self.shared.health_addr
    }

    /// Whether the traffic port serves HTTPS.
    pub fn is_https(&self) -> bool {
        lock(&self.shared.tls).is_some()
    }

    /// The traffic port's URL scheme: `"https"` or `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.is_https() { "https" } else { "http" }
    }

    /// The traffic port's base URL, e.g. `https://127.0.0.1:8253` (the default leaf has IP
    /// SAN `127.0.0.1`, so it verifies without naming `localhost`).
    pub fn traffic_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.traffic_addr())
    }

    /// What the traffic port serves over TLS now; `None` for plain HTTP.
    pub fn tls_identity(&self) -> Option<TlsIdentity> {
        lock(&self.shared.tls).clone()
    }

    /// The generated PKI the traffic port serves (its CA is what clients trust); `None` for
    /// plain HTTP or a certificate from files.
    pub fn pki(&self) -> Option<Arc<TestPki>> {
        lock(&self.shared.tls).as_ref()?.pki().cloned()
    }

    /// Serve another certificate from now on (e.g. a second leaf from the same CA): new
    /// connections get it, open ones keep theirs. Fails on a plain HTTP node: the scheme is
    /// fixed at start, as MI's transports are.
    pub fn set_tls_identity(&self, identity: TlsIdentity) -> io::Result<()> {
        let mut tls = lock(&self.shared.tls);
        match tls.as_mut() {
            Some(current) => {
                *current = identity;
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{} serves plain HTTP", self.name()),
            )),
        }
    }

    /// TLS handshakes completed on the traffic port so far.
    pub fn tls_handshakes(&self) -> u64 {
        self.shared.tls_handshakes.load(Ordering::Relaxed)
    }

    /// Traffic connections that failed or gave up the TLS handshake so far (a client that
    /// distrusts the certificate, or a TCP-only probe).
    pub fn tls_handshake_failures(&self) -> u64 {
        self.shared.tls_handshake_failures.load(Ordering::Relaxed)
    }

    /// Where the node is in its life.
    pub fn phase(&self) -> Phase {
        *self.shared.phase.borrow()
    }

    /// Wait until the node reaches `phase`.
    pub async fn wait_for_phase(&self, phase: Phase) {
        let mut rx = self.shared.phase.subscribe();
        let _ = rx.wait_for(|p| *p == phase).await;
    }

    /// Traffic requests that reached the node so far (answered or not).
    pub fn traffic_started(&self) -> u64 {
        self.shared.traffic_started.load(Ordering::Relaxed)
    }

    /// Traffic requests answered so far.
    pub fn traffic_requests(&self) -> u64 {
        self.shared.traffic_requests.load(Ordering::Relaxed)
    }

    /// Health requests answered so far.
    pub fn health_requests(&self) -> u64 {
        self.shared.health_requests.load(Ordering::Relaxed)
    }

    /// WebSocket sessions on [`ws::ECHO_PATH`] upgraded so far.
    pub fn websocket_upgrades(&self) -> u64 {
        self.shared.ws_upgrades.load(Ordering::Relaxed)
    }

    /// WebSocket sessions open now.
    pub fn websocket_open(&self) -> u64 {
        self.shared.ws_open.load(Ordering::Relaxed)
    }

    /// Text, binary and continuation frames echoed so far (all sessions).
    pub fn websocket_frames(&self) -> u64 {
        self.shared.ws_frames.load(Ordering::Relaxed)
    }

    /// The faulty CApps `/healthz` reports now.
    pub fn faulty_capps(&self) -> Vec<String> {
        self.shared.faulty_capps()
    }

    /// Replace the faulty CApps (empty: ready again). Like hot deployment, this takes
    /// effect on the next `/healthz` answer.
    pub fn set_faulty_capps(&self, capps: Vec<String>) {
        *lock(&self.shared.faulty) = capps;
    }

    /// Hot-deploy a CApp that fails.
    pub fn add_faulty_capp(&self, capp: impl Into<String>) {
        let capp = capp.into();
        let mut faulty = lock(&self.shared.faulty);
        if !faulty.contains(&capp) {
            faulty.push(capp);
        }
    }

    /// Remove a faulty CApp; returns whether it was there.
    pub fn remove_faulty_capp(&self, capp: &str) -> bool {
        let mut faulty = lock(&self.shared.faulty);
        let before = faulty.len();
        faulty.retain(|c| c != capp);
        faulty.len() != before
    }

    /// Answer traffic with this status from now on (e.g. 500: an integration failing on
    /// this node only).
    pub fn set_traffic_status(&self, status: u16) {
        self.shared.traffic_status.store(status, Ordering::Relaxed);
    }

    /// Hold every traffic response this long from now on.
    pub fn set_response_delay(&self, delay: Duration) {
        self.shared
            .response_delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Hang (`true`): the health port accepts connections and never answers. `false` resumes.
    pub fn set_hung(&self, hung: bool) {
        self.shared.hung.send_replace(hung);
    }

    /// Whether the health port hangs.
    pub fn is_hung(&self) -> bool {
        *self.shared.hung.borrow()
    }

    /// MI's SIGTERM behaviour: close the traffic port and its idle keep-alive connections
    /// (in-flight requests finish; WebSocket sessions get a close frame, 1001), keep answering `/healthz` 200 for `shutdown_grace`, then
    /// close everything. Returns at once; see [`SimNode::wait_for_phase`].
    pub fn shutdown(&self) {
        let Some((kill, close_traffic)) = self.switches() else {
            return;
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if *shared.phase.borrow() == Phase::Stopped {
                return;
            }
            shared.phase.send_replace(Phase::ShuttingDown);
            close_traffic.send_replace(true);
            tokio::time::sleep(shared.options.shutdown_grace).await;
            kill.send_replace(true);
        });
    }

    /// Like `kill -9`: every port and connection closes at once.
    pub fn crash(&self) {
        if let Some((kill, _)) = self.switches() {
            kill.send_replace(true);
        }
    }

    /// Start again on the same ports after the node stopped (startup delay applies again).
    pub fn restart(&self) -> io::Result<()> {
        if self.phase() != Phase::Stopped {
            return Err(io::Error::other(format!(
                "{} is {}, not stopped",
                self.name(),
                self.phase().as_str()
            )));
        }
        let traffic = reserve(self.shared.traffic_addr)?;
        let health = reserve(self.shared.health_addr)?;
        self.begin_life(traffic, health);
        Ok(())
    }

    fn switches(&self) -> Option<(watch::Sender<bool>, watch::Sender<bool>)> {
        lock(&self.shared.life)
            .as_ref()
            .map(|life| (life.kill.clone(), life.close_traffic.clone()))
    }

    fn begin_life(&self, traffic: TcpSocket, health: TcpSocket) {
        let (kill, kill_rx) = watch::channel(false);
        let (close_traffic, close_rx) = watch::channel(false);
        *lock(&self.shared.life) = Some(Life {
            kill,
            close_traffic,
        });
        self.shared.phase.send_replace(Phase::Starting);
        tokio::spawn(live(
            self.shared.clone(),
            traffic,
            health,
            kill_rx,
            close_rx,
        ));
    }
}
