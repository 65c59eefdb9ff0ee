//! Candidate (c) for the hot path: hyper's HTTP/1 server and client connections, run on the
//! connections Pingora's listeners accept.
//!
//! Pingora's server (one current-thread runtime per worker, as healthgate runs it) hands each
//! accepted connection to our [`ServerApp`], which serves it with hyper's HTTP/1 server
//! (`serve_connection`, keep-alive, no timer). Each request goes to the next node in round robin
//! (the node list an `ArcSwap` snapshot loaded per request) over a hyper HTTP/1 client
//! connection from a per-thread pool of idle ones per node; the connection's task runs on the
//! worker's runtime. The request and response bodies are hyper's `Incoming` streamed straight
//! through (Content-Length or chunked); hop-by-hop headers are dropped and `X-Forwarded-For`
//! is appended. A client connection goes back to the pool when the response body it carried
//! has been read to its end.
//!
//! Retry: an idempotent request that fails on a pooled connection before any answer is sent
//! once more, on a fresh connection to the next node: the request itself when hyper hands it
//! back unsent, or else a copy kept for the purpose (made only for a request without a body:
//! a streamed body cannot be sent twice). hyper reports a node that closed after part of a
//! response header as it does one that closed before any ("incomplete message"), so that case
//! is retried too.
//!
//! Not handled (an experiment, not a proxy to ship): timeouts (hyper gets no timer), upgrades,
//! retries of requests with a body once sent, nodes named in `Connection`, health.
//!
//! The harness runs it as a child process (`--hyper-loop THREADS LISTEN NODE…`), like the
//! floor.

use super::peers::{Nodes, Workdir, forwarder_args, start_self};
use super::pingora_loop::{HOP_BY_HOP, idempotent, run_server};
use super::procs::Proc;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::{Either, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::net::TcpStream;

/// The argument that turns the bench binary into candidate (c).
pub const ARG: &str = "--hyper-loop";

/// What goes to a node: the client's body streamed through, or none (a retried copy).
type UpstreamBody = Either<Incoming, Empty<Bytes>>;
/// One idle or busy client connection to a node.
type Sender = SendRequest<UpstreamBody>;
/// What goes back to the client: the node's body streamed through, or none (a 502).
type Answer = Response<Either<Relay, Empty<Bytes>>>;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Start candidate (c) over `nodes` with `threads` threads on `port`.
pub fn start(dir: &Workdir, nodes: &Nodes, threads: usize, port: u16) -> Result<Proc, String> {
    start_self(dir, "hyper-loop", ARG, nodes, threads, port)
}

/// Run candidate (c) with `args` (after [`ARG`]): `THREADS LISTEN NODE…`. Returns only on bad
/// arguments.
pub fn main(args: &[String]) -> Result<(), String> {
    let (threads, listen, nodes) = forwarder_args(ARG, args)?;
    healthgate::os::raise_open_files().map_err(|e| format!("raising the open-file limit: {e}"))?;
    let mut server = http1::Builder::new();
    // No timer is given to hyper, so no timeouts (as the floor and candidate (b)).
    server.header_read_timeout(None);
    let app = HyperLoop {
        nodes: ArcSwap::from_pointee(nodes),
        server,
    };
    run_server("hyper loop (c)", threads, listen, app)
}

/// Idle client connections of this worker thread, per node index, and its round-robin cursor.
struct Pool {
    idle: Vec<Vec<Sender>>,
    next: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { idle: Vec::new(), next: 0 }) };
}

/// The next node of `nodes` in turn.
fn next_node(nodes: usize) -> usize {
    POOL.with_borrow_mut(|pool| {
        if pool.idle.len() != nodes {
            pool.idle.resize_with(nodes, Vec::new);
        }
        let node = pool.next % nodes;
        pool.next = pool.next.wrapping_add(1);
        node
    })
}

/// An idle connection to `node` ready for a request, if this thread has one.
async fn pooled(node: usize) -> Option<Sender> {
    loop {
        let mut sender = POOL.with_borrow_mut(|pool| pool.idle.get_mut(node)?.pop())?;
        // Closed by the node while idle (hyper's connection task saw it): drop it. Not yet
        // ready: its last response was read to the end just now and the connection task has
        // not run since.
        if !sender.is_closed() && sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
}

/// Keep `sender` to `node` for a later request on this thread (it may be dropped while the
/// thread ends).
fn put_back(node: usize, sender: Sender) {
    let _ = POOL.try_with(|pool| {
        if let Some(idle) = pool.borrow_mut().idle.get_mut(node) {
            idle.push(sender);
        }
    });
}

/// A fresh client connection to a node; its task runs on this worker's runtime.
async fn connect(addr: SocketAddr) -> Result<Sender, Box<dyn std::error::Error + Send + Sync>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Candidate (c): the application Pingora's service runs for each accepted connection.
struct HyperLoop {
    nodes: ArcSwap<Vec<SocketAddr>>,
    server: http1::Builder,
}

#[async_trait]
impl ServerApp for HyperLoop {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // The listener knew the peer's address when it accepted: no getpeername.
        let forwarded_for = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
            .and_then(|ip| HeaderValue::try_from(ip.to_string()).ok())?;
        let app: &HyperLoop = self;
        let service = service_fn(move |request| {
            let forwarded_for = forwarded_for.clone();
            async move { Ok::<_, Infallible>(app.forward(request, forwarded_for).await) }
        });
        let _ = self
            .server
            .serve_connection(TokioIo::new(stream), service)
            .await;
        None
    }
}

impl HyperLoop {
    /// Forward one request and return the node's answer, its body still to be streamed.
    async fn forward(&self, request: Request<Incoming>, forwarded_for: HeaderValue) -> Answer {
        let (mut parts, body) = request.into_parts();
        for name in HOP_BY_HOP.iter().chain([&header::EXPECT]) {
            parts.headers.remove(name);
        }
        parts.headers.append(X_FORWARDED_FOR.clone(), forwarded_for);
        parts.version = Version::HTTP_11;

        // The snapshot is read per request and not held across an await.
        let (mut node, addr) = {
            let nodes = self.nodes.load();
            let node = next_node(nodes.len());
            (node, nodes[node])
        };
        let pooled = pooled(node).await;
        let reused = pooled.is_some();
        let retryable = reused && idempotent(&parts.method);
        // hyper keeps nothing of a request it has begun to write: a copy to send again, for a
        // request without a body only.
        let mut copy = (retryable && body.is_end_stream()).then(|| {
            let mut copy = Request::new(Either::Right(Empty::new()));
            *copy.method_mut() = parts.method.clone();
            *copy.uri_mut() = parts.uri.clone();
            *copy.version_mut() = parts.version;
            *copy.headers_mut() = parts.headers.clone();
            copy
        });
        let request = Request::from_parts(parts, Either::Left(body));
        let mut sender = match pooled {
            Some(sender) => sender,
            None => match connect(addr).await {
                Ok(sender) => sender,
                Err(_) => return bad_gateway(),
            },
        };
        let answer = match sender.try_send_request(request).await {
            Ok(answer) => answer,
            Err(mut e) => {
                let again = if retryable && nothing_answered(e.error()) {
                    e.take_message().or_else(|| copy.take())
                } else {
                    None
                };
                let Some(request) = again else {
                    return bad_gateway();
                };
                // The pooled connection was dead (the node closed it as it was taken): once
                // more, on a fresh connection to the next node.
                let addr = {
                    let nodes = self.nodes.load();
                    node = next_node(nodes.len());
                    nodes[node]
                };
                sender = match connect(addr).await {
                    Ok(sender) => sender,
                    Err(_) => return bad_gateway(),
                };
                match sender.send_request(request).await {
                    Ok(answer) => answer,
                    Err(_) => return bad_gateway(),
                }
            }
        };
        let (mut parts, body) = answer.into_parts();
        for name in &HOP_BY_HOP {
            parts.headers.remove(name);
        }
        let relay = Relay {
            body,
            back: Some((node, sender)),
            ended: false,
        };
        Response::from_parts(parts, Either::Left(relay))
    }
}

/// Whether hyper's `e` came before the node answered anything: the request was not sent, the
/// connection closed before a whole answer, or it was reset.
fn nothing_answered(e: &hyper::Error) -> bool {
    use std::error::Error as _;
    e.is_canceled()
        || e.is_incomplete_message()
        || e.source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::ConnectionAborted
                )
            })
}

/// A 502 with an empty body: the node could not be reached or failed before answering.
fn bad_gateway() -> Answer {
    let mut answer = Response::new(Either::Right(Empty::new()));
    *answer.status_mut() = StatusCode::BAD_GATEWAY;
    answer
}

/// The node's response body on its way to the client; the client connection it came on goes
/// back to the pool once the body has been read to its end (dropped otherwise: hyper closes
/// a connection whose response body was not read).
struct Relay {
    body: Incoming,
    back: Option<(usize, Sender)>,
    ended: bool,
}

impl Body for Relay {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            None => self.ended = true,
            Some(Err(_)) => self.back = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // hyper stops polling a body that says it has ended (a Content-Length body after its
        // last byte), so the end is also read from the body itself.
        if (self.ended || self.body.is_end_stream())
            && let Some((node, sender)) = self.back.take()
        {
            put_back(node, sender);
        }
    }
}
