//! Candidate (b) for the hot path: a request loop of our own on Pingora's HTTP/1 sessions.
//!
//! Pingora's server (listeners, one current-thread runtime per worker as healthgate runs it)
//! hands each accepted connection to our own [`ServerApp`] (not the blanket one over
//! `HttpServerApp`, which rebuilds the server session and goes back through the service for
//! every request). `process_new` keeps one HTTP/1 server session for the whole connection and
//! loops over its requests; each request goes to the next node in round robin (the node list
//! an `ArcSwap` snapshot loaded per request) over Pingora's HTTP/1 client session, on a TCP
//! connection we open ourselves and keep in a per-thread pool of idle connections per node
//! (not Pingora's `Connector`, whose pool spawns an idle-watch task for every release).
//!
//! Per request: the request header is copied (Pingora's client session takes it by value)
//! with the hop-by-hop headers dropped and `X-Forwarded-For` appended, the body is copied
//! chunk by chunk (Content-Length or chunked, re-framed by the client session), then the
//! response header and body the other way (zero-copy from the client session's buffer).
//! An idempotent request without a body that fails on a pooled connection before any
//! response byte arrived is sent once more, on a fresh connection to the next node.
//!
//! Not handled (an experiment, not a proxy to ship): timeouts (the session's default 60 s
//! body read timeout is switched off, as the floor and candidate (c) have none), pipelined
//! requests (bytes of a next request read with this one stay in Pingora's body reader, which
//! only `reuse()`, consuming the session, hands over: such a client stalls), upgrades,
//! retries of requests with a body, nodes named in `Connection`, health.
//!
//! The harness runs it as a child process (`--pingora-loop THREADS LISTEN NODE…`), like the
//! floor.

use super::peers::{Nodes, Workdir, forwarder_args, start_self};
use super::procs::Proc;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{HeaderName, HeaderValue, Method, Version, header};
use pingora::apps::ServerApp;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::Stream;
use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::listening::Service;
use pingora::{Error, ErrorType};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// The argument that turns the bench binary into candidate (b).
pub const ARG: &str = "--pingora-loop";

/// Hop-by-hop headers: not forwarded in either direction (`Transfer-Encoding` is re-framed by
/// the sessions, not dropped).
pub static HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Start candidate (b) over `nodes` with `threads` threads on `port`.
pub fn start(dir: &Workdir, nodes: &Nodes, threads: usize, port: u16) -> Result<Proc, String> {
    start_self(dir, "pingora-loop", ARG, nodes, threads, port)
}

/// Run candidate (b) with `args` (after [`ARG`]): `THREADS LISTEN NODE…`. Returns only on bad
/// arguments.
pub fn main(args: &[String]) -> Result<(), String> {
    let (threads, listen, nodes) = forwarder_args(ARG, args)?;
    healthgate::os::raise_open_files().map_err(|e| format!("raising the open-file limit: {e}"))?;
    let app = Loop {
        nodes: ArcSwap::from_pointee(nodes),
    };
    run_server("pingora loop (b)", threads, listen, app)
}

/// Run `app` on Pingora's server with `threads` current-thread runtimes (`work_stealing:
/// false`, as healthgate) listening on `listen`. Never returns.
pub fn run_server<A: ServerApp + Send + Sync + 'static>(
    name: &str,
    threads: usize,
    listen: SocketAddr,
    app: A,
) -> ! {
    let conf = ServerConf {
        threads,
        work_stealing: false,
        // The harness stops it with SIGTERM: no grace period to wait out.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = Service::new(name.to_string(), app);
    service.add_tcp(&listen.to_string());
    server.add_service(service);
    server.run_forever()
}

/// Whether `method` may be sent again after a failure (RFC 9110 §9.2.2).
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// Idle upstream connections of this worker thread, per node index, and its round-robin
/// cursor.
struct Pool {
    idle: Vec<Vec<Stream>>,
    next: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { idle: Vec::new(), next: 0 }) };
}

/// The next node of `nodes` in turn, and an idle connection to it if this thread has one.
fn take(nodes: usize) -> (usize, Option<Stream>) {
    POOL.with_borrow_mut(|pool| {
        if pool.idle.len() != nodes {
            pool.idle.resize_with(nodes, Vec::new);
        }
        let node = pool.next % nodes;
        pool.next = pool.next.wrapping_add(1);
        (node, pool.idle[node].pop())
    })
}

/// The next node of `nodes` in turn, without a connection (for a retry on a fresh one).
fn next_node(nodes: usize) -> usize {
    POOL.with_borrow_mut(|pool| {
        let node = pool.next % nodes;
        pool.next = pool.next.wrapping_add(1);
        node
    })
}

/// Keep `stream` to `node` for a later request on this thread.
fn put_back(node: usize, stream: Stream) {
    POOL.with_borrow_mut(|pool| {
        if let Some(idle) = pool.idle.get_mut(node) {
            idle.push(stream);
        }
    });
}

/// A fresh connection to a node, as a Pingora stream.
async fn connect(addr: SocketAddr) -> pingora::Result<Stream> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| Error::because(ErrorType::ConnectError, format!("connecting {addr}"), e))?;
    tcp.set_nodelay(true)
        .map_err(|e| Error::because(ErrorType::ConnectError, "TCP_NODELAY", e))?;
    Ok(Box::new(pingora::protocols::l4::stream::Stream::from(tcp)))
}

/// Which side a failure came from, and whether anything was sent downstream yet.
enum Failure {
    /// The node failed before its response header was read.
    BeforeAnswer(Box<Error>),
    /// The client failed, or either side after the answer began: the connection just closes.
    Close,
}

/// Candidate (b): the application Pingora's service runs for each accepted connection.
struct Loop {
    nodes: ArcSwap<Vec<SocketAddr>>,
}

#[async_trait]
impl ServerApp for Loop {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut session = DownstreamSession::new(stream);
        session.set_read_timeout(None);
        // The listener knew the peer's address when it accepted: no getpeername.
        let forwarded_for = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .and_then(|a| HeaderValue::try_from(a.ip().to_string()).ok())?;
        loop {
            match session.read_request().await {
                Ok(Some(_)) => {}
                // The client closed between requests, or sent what cannot be parsed.
                Ok(None) | Err(_) => return None,
            }
            if *shutdown.borrow() {
                session.set_server_keepalive(None);
            }
            match self.forward(&mut session, &forwarded_for).await {
                Ok(()) => {}
                Err(Failure::BeforeAnswer(_)) => {
                    bad_gateway(&mut session).await;
                    return None;
                }
                Err(Failure::Close) => return None,
            }
            if !session.will_keepalive() {
                session.shutdown().await;
                return None;
            }
        }
    }
}

impl Loop {
    /// Forward the request just read on `session` and copy the answer back.
    async fn forward(
        &self,
        session: &mut DownstreamSession,
        forwarded_for: &HeaderValue,
    ) -> Result<(), Failure> {
        // The snapshot is read per request and not held across an await.
        let (mut node, pooled, addr) = {
            let nodes = self.nodes.load();
            let (node, pooled) = take(nodes.len());
            (node, pooled, nodes[node])
        };
        let reused = pooled.is_some();
        let stream = match pooled {
            Some(stream) => stream,
            None => connect(addr).await.map_err(Failure::BeforeAnswer)?,
        };
        // Nothing of the request is kept for a second attempt: the header is built again from
        // the downstream session's, and only a request without a body is sent again.
        let retryable = idempotent(&session.req_header().method) && session.is_body_empty();
        if session.req_header().headers.contains_key(header::EXPECT) {
            // Answered here; the node is not asked (it would wait for a body we send anyway).
            session
                .write_continue_response()
                .await
                .map_err(|_| Failure::Close)?;
        }
        let mut upstream = UpstreamSession::new(stream);
        let sent = send(&mut upstream, session, forwarded_for).await;
        let again = match &sent {
            Err(Failure::BeforeAnswer(e)) => reused && retryable && nothing_answered(e),
            _ => false,
        };
        if again {
            // The pooled connection was dead (the node closed it while it sat idle): once
            // more, on a fresh connection to the next node.
            let addr = {
                let nodes = self.nodes.load();
                node = next_node(nodes.len());
                nodes[node]
            };
            let stream = connect(addr).await.map_err(Failure::BeforeAnswer)?;
            upstream = UpstreamSession::new(stream);
            send(&mut upstream, session, forwarded_for).await?;
        } else {
            sent?;
        }

        let Some(answer) = upstream.resp_header() else {
            return Err(Failure::Close);
        };
        let mut answer = Box::new(answer.clone());
        for name in &HOP_BY_HOP {
            answer.remove_header(name);
        }
        session
            .write_response_header(answer)
            .await
            .map_err(|_| Failure::Close)?;
        while let Some(chunk) = upstream.read_body_ref().await.map_err(|_| Failure::Close)? {
            session
                .write_body(chunk)
                .await
                .map_err(|_| Failure::Close)?;
        }
        session.finish_body().await.map_err(|_| Failure::Close)?;
        upstream.respect_keepalive();
        if let Some(stream) = upstream.reuse().await {
            put_back(node, stream);
        }
        Ok(())
    }
}

/// Send the request read on `session` over `upstream` (header with `X-Forwarded-For`, then the
/// body as it arrives) and read the node's response header, skipping 1xx answers.
async fn send(
    upstream: &mut UpstreamSession,
    session: &mut DownstreamSession,
    forwarded_for: &HeaderValue,
) -> Result<(), Failure> {
    upstream
        .write_request_header(upstream_request(session.req_header(), forwarded_for))
        .await
        .map_err(Failure::BeforeAnswer)?;
    while let Some(chunk) = session
        .read_body_bytes()
        .await
        .map_err(|_| Failure::Close)?
    {
        upstream
            .write_body(&chunk)
            .await
            .map_err(Failure::BeforeAnswer)?;
    }
    upstream
        .finish_body()
        .await
        .map_err(Failure::BeforeAnswer)?;
    loop {
        upstream
            .read_response()
            .await
            .map_err(Failure::BeforeAnswer)?;
        match upstream.resp_header() {
            Some(h) if h.status.is_informational() && h.status != 101 => continue,
            _ => return Ok(()),
        }
    }
}

/// The header to send the node for `request`: hop-by-hop headers and `Expect` dropped,
/// HTTP/1.1, `X-Forwarded-For` appended.
fn upstream_request(request: &RequestHeader, forwarded_for: &HeaderValue) -> Box<RequestHeader> {
    let mut upstream = Box::new(request.clone());
    for name in HOP_BY_HOP.iter().chain([&header::EXPECT]) {
        upstream.remove_header(name);
    }
    upstream.set_version(Version::HTTP_11);
    // A valid name and value cannot fail to append.
    let _ = upstream.append_header("X-Forwarded-For", forwarded_for.clone());
    upstream
}

/// Whether `e` happened before the node sent any byte of an answer: a failed write, or a read
/// that met the end of the connection (or a reset) with nothing read. Pingora says how much
/// it had read only in the error's context.
fn nothing_answered(e: &Error) -> bool {
    match e.etype {
        ErrorType::WriteError => true,
        ErrorType::ConnectionClosed | ErrorType::ReadError => e
            .context
            .as_ref()
            .is_some_and(|c| c.as_str().ends_with("bytes already read: 0")),
        _ => false,
    }
}

/// Answer 502 and close: the node could not be reached or failed before answering.
async fn bad_gateway(session: &mut DownstreamSession) {
    session.set_server_keepalive(None);
    let Ok(mut answer) = ResponseHeader::build(502, Some(1)) else {
        return;
    };
    if answer.set_content_length(0).is_ok()
        && session
            .write_response_header(Box::new(answer))
            .await
            .is_ok()
    {
        let _ = session.finish_body().await;
    }
}
