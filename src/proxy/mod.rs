//! The request loop: healthgate's own, on hyper's HTTP/1 codec, over the connections
//! Pingora's listeners accept (a `ServerApp`). It picks a ready node from the current
//! snapshot, evicts a node at once when live traffic cannot reach it, and retries on
//! another ready node (never the same one twice). When no node is ready it answers 503
//! with `Retry-After`. Why this loop and not Pingora's `ProxyHttp`: docs/bench/hot-path.md.
//!
//! Files: `request` (one request, its attempts and their failures), `body` (the two
//! bodies and the end of a request), `headers` (what passes between the hops), `upstream`
//! (connections to the nodes, pooled per worker), `tunnel` (WebSocket), `client_io` (the
//! client-side deadlines), `answers` (healthgate's own answers), `forwarded` (whose
//! `X-Forwarded-For` is believed), `timer` (a timer armed only when a wait waits).

mod answers;
mod body;
mod client_io;
mod forwarded;
mod headers;
mod request;
mod timer;
mod tunnel;
mod upstream;

pub use answers::{NO_READY_NODE_BODY, OUT_OF_RESOURCES_BODY};
pub use forwarded::Trust;

use crate::cluster::Cluster;
use crate::config::{Config, LimitsConfig, TimeoutsConfig};
use crate::tls::ListenerTls;
use async_trait::async_trait;
use client_io::{ClientIo, Phase};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Sent to a client connection over its listener's `limits.max_connections`.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 47\r\nconnection: close\r\n\r\n\
healthgate holds all the connections it may now\n";

/// Streams an HTTP/2 client may have open at once (NGINX's `http2_max_concurrent_streams`
/// is 128).
const MAX_STREAMS: u32 = 128;
/// How long an HTTP/2 client has to answer a keep-alive ping.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// What the request loop needs of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Further attempts after the first (`balancing.retries`).
    pub retries: usize,
    /// One log line per request.
    pub access_log: bool,
    /// Size and connection limits.
    pub limits: LimitsConfig,
    /// Every timeout, towards the nodes and the clients.
    pub timeouts: TimeoutsConfig,
}

impl Settings {
    /// The request loop's part of `config`.
    pub fn new(config: &Config) -> Settings {
        Settings {
            retries: config.balancing.retries,
            access_log: config.log.access_log,
            limits: config.limits,
            timeouts: config.timeouts,
        }
    }
}

/// The traffic listeners' application.
pub struct HealthgateProxy {
    cluster: Arc<Cluster>,
    settings: Settings,
    trust: Trust,
    /// Set once this process is handing over (`--upgrade`) or stopping: every answer then
    /// says `Connection: close`, so clients move to fresh connections while this process
    /// still serves, instead of meeting an idle connection closed under them.
    draining: Arc<AtomicBool>,
    slots: Arc<Slots>,
    /// Each traffic listener's TLS, indexed like `config.listen` (`None`: plain HTTP).
    tls: Vec<Option<Arc<ListenerTls>>>,
}

/// One client connection, as the requests on it see it.
pub struct Connection {
    /// The client's address.
    peer: Option<SocketAddr>,
    /// Where the connection is in its request cycle (for the client-side deadlines of
    /// HTTP/1; an HTTP/2 connection's streams overlap, and nothing reads it there).
    phase: Arc<Phase>,
    /// Whether the client came over TLS (`X-Forwarded-Proto: https`).
    tls: bool,
}

impl Connection {
    fn peer_ip(&self) -> Option<IpAddr> {
        self.peer.map(|p| p.ip())
    }

    fn peer_text(&self) -> String {
        self.peer.map_or_else(|| "-".to_string(), |p| p.to_string())
    }
}

impl HealthgateProxy {
    /// The request loop over `cluster`, with `config`'s limits and timeouts; each traffic
    /// listener holds at most `max_connections` client connections, and terminates TLS
    /// with its entry of `tls` (indexed like `config.listen`).
    pub fn new(
        cluster: Arc<Cluster>,
        config: &Config,
        max_connections: usize,
        tls: Vec<Option<Arc<ListenerTls>>>,
    ) -> HealthgateProxy {
        let listeners = config.listen.iter().map(|l| l.address.port()).collect();
        HealthgateProxy {
            slots: Arc::new(Slots::new(listeners, max_connections, &cluster)),
            cluster,
            settings: Settings::new(config),
            trust: Trust::new(config.forwarded.trusted_proxies.clone()),
            draining: Arc::new(AtomicBool::new(false)),
            tls,
        }
    }

    /// The flag that makes every answer close its connection (see `draining`).
    pub fn draining_flag(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The largest request head a connection buffers: a longer one gets hyper's 431 (the
    /// exact limit is checked per request, `headers::size_verdict`).
    fn head_room(&self) -> usize {
        usize::try_from(self.settings.limits.max_request_header)
            .unwrap_or(usize::MAX)
            .saturating_add(1024)
            .max(8192)
    }

    /// Serve the HTTP/1.1 requests of one client connection until it closes.
    async fn serve_http1<S>(&self, stream: S, peer: Option<SocketAddr>, tls: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let phase = Arc::new(Phase::default());
        let conn = Connection {
            peer,
            phase: phase.clone(),
            tls,
        };
        let io = ClientIo::new(
            stream,
            phase,
            self.settings.timeouts.client_idle,
            self.settings.timeouts.client_header,
        );
        let conn = &conn;
        let service = hyper::service::service_fn(move |req| async move {
            Ok::<_, Infallible>(request::handle(self, conn, req).await)
        });
        let served = http1::Builder::new()
            .max_buf_size(self.head_room())
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await;
        if let Err(e) = served {
            log::debug!("client connection {}: {e}", conn.peer_text());
        }
    }

    /// Serve the HTTP/2 streams of one TLS client connection until it closes. Each
    /// stream is a request like any other: the same routing, retries and limits, and an
    /// HTTP/1.1 request to the node.
    async fn serve_http2<S>(
        self: Arc<Self>,
        stream: S,
        peer: Option<SocketAddr>,
        mut shutdown: ShutdownWatch,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let conn = Arc::new(Connection {
            peer,
            phase: Arc::new(Phase::default()),
            tls: true,
        });
        let peer_text = conn.peer_text();
        let proxy = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let (proxy, conn) = (proxy.clone(), conn.clone());
            async move { Ok::<_, Infallible>(request::handle(&proxy, &conn, req).await) }
        });
        let header_list = u32::try_from(self.head_room()).unwrap_or(u32::MAX);
        let builder = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS)
            .max_header_list_size(header_list)
            // A client that vanished without a word is found by pings, not by waiting.
            .keep_alive_interval(Some(self.settings.timeouts.client_idle / 2))
            .keep_alive_timeout(PING_TIMEOUT)
            .clone();
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        // `Connection: close` means nothing in HTTP/2: when this process stops or hands
        // over, GOAWAY tells the client to open new streams elsewhere while the open ones
        // finish.
        let stopping = async move {
            // The guard `wait_for` returns is not `Send`: dropped here, at once.
            let _ = shutdown.wait_for(|stopping| *stopping).await.map(|_| ());
        };
        let served = tokio::select! {
            served = connection.as_mut() => served,
            () = stopping => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = served {
            log::debug!("HTTP/2 client connection {peer_text}: {e}");
        }
    }

    /// Complete a TLS handshake within `timeouts.client_header`, then serve the protocol
    /// the client chose by ALPN.
    async fn serve_tls(
        self: &Arc<Self>,
        stream: Stream,
        peer: Option<SocketAddr>,
        tls: &ListenerTls,
        shutdown: &ShutdownWatch,
    ) {
        let deadline = self.settings.timeouts.client_header;
        let stream = match tokio::time::timeout(deadline, tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                self.cluster.metrics().tls_handshake_failures_total.inc();
                log::debug!("TLS handshake with {peer:?} failed: {e}");
                return;
            }
            Err(_) => {
                self.cluster.metrics().tls_handshake_failures_total.inc();
                log::debug!("TLS handshake with {peer:?} not done within {deadline:?}");
                return;
            }
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        match h2 {
            true => {
                let shutdown = shutdown.clone();
                self.clone().serve_http2(stream, peer, shutdown).await;
            }
            false => self.serve_http1(stream, peer, true).await,
        }
    }
}

#[async_trait]
impl ServerApp for HealthgateProxy {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let digest = stream.get_socket_digest();
        let addr_of = |a: Option<&pingora::protocols::l4::socket::SocketAddr>| {
            a.and_then(|a| a.as_inet()).copied()
        };
        let peer = digest.as_ref().and_then(|d| addr_of(d.peer_addr()));
        let port = digest
            .as_ref()
            .and_then(|d| addr_of(d.local_addr()))
            .map(|a| a.port());
        let Some(slot) = Slots::take(&self.slots, port) else {
            // Over the cap: said at once and closed, rather than held in a queue of
            // descriptors nobody serves.
            let _ = stream.write_all(TOO_MANY_CONNECTIONS).await;
            let _ = stream.shutdown().await;
            return None;
        };
        // On SIGTERM or a hand-over the draining flag ends each connection after its
        // current answer; Pingora cuts what is left when the grace period ends.
        match self.tls.get(slot.index).cloned().flatten() {
            Some(tls) => self.serve_tls(stream, peer, &tls, shutdown).await,
            None => self.serve_http1(stream, peer, false).await,
        }
        None
    }
}

/// `limits.max_connections` per traffic listener, told apart by local port.
struct Slots {
    open: Vec<(u16, AtomicUsize)>,
    max: usize,
    gauge: prometheus::IntGauge,
    refused: prometheus::IntCounter,
}

/// A connection's place under its listener's cap, given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    index: usize,
}

impl Slots {
    fn new(ports: Vec<u16>, max: usize, cluster: &Cluster) -> Slots {
        Slots {
            open: ports
                .into_iter()
                .map(|p| (p, AtomicUsize::new(0)))
                .collect(),
            max,
            gauge: cluster.metrics().client_connections.clone(),
            refused: cluster.metrics().connections_refused_total.clone(),
        }
    }

    /// A place for a connection on the listener at `port`, if it holds fewer than the cap.
    fn take(slots: &Arc<Slots>, port: Option<u16>) -> Option<Slot> {
        // A port not in the list (a listener taken over with other settings): the first.
        let index = port
            .and_then(|port| slots.open.iter().position(|(p, _)| *p == port))
            .unwrap_or(0);
        let (_, open) = slots.open.get(index)?;
        if open.fetch_add(1, Ordering::Relaxed) >= slots.max {
            open.fetch_sub(1, Ordering::Relaxed);
            slots.refused.inc();
            return None;
        }
        slots.gauge.inc();
        Some(Slot {
            slots: slots.clone(),
            index,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((_, open)) = self.slots.open.get(self.index) {
            open.fetch_sub(1, Ordering::Relaxed);
        }
        self.slots.gauge.dec();
    }
}
