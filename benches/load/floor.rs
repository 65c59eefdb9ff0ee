//! The floor: the least an HTTP/1.1 keep-alive forwarder does per request, measured beside the
//! proxies so every run shows what this machine, tokio and the kernel allow a proxy.
//!
//! Not a proxy one could run: requests are read with `httparse`, `X-Forwarded-For` is added,
//! `Connection` is dropped, nodes are taken in round robin with a pool of idle connections,
//! and bodies must be framed by `Content-Length` (nginx's and mi-sim's are). No timeouts, no
//! chunked bodies, no retries, no health checks. A connection it cannot serve is closed.
//!
//! The harness runs it as a child process by starting its own binary with
//! `--floor-forwarder THREADS LISTEN NODE…`, so its CPU time is counted like the others'.
//! Each thread runs a current-thread runtime (as healthgate's workers do) with its own
//! listening socket on the shared address.

use super::peers::{Nodes, Workdir, forwarder_args, start_self};
use super::procs::Proc;
use std::cell::RefCell;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The argument that turns the bench binary into the forwarder.
pub const ARG: &str = "--floor-forwarder";

/// Headers a request or response may carry; more is an error, as it is for a real proxy.
const MAX_HEADERS: usize = 64;

/// Start the floor over `nodes` with `threads` threads on `port`: this bench binary again, as a
/// child process.
pub fn start(dir: &Workdir, nodes: &Nodes, threads: usize, port: u16) -> Result<Proc, String> {
    start_self(dir, "floor", ARG, nodes, threads, port)
}

/// Run the forwarder with `args` (after [`ARG`]): `THREADS LISTEN NODE…`. Returns only on
/// an error (bad arguments); a worker that fails, one that cannot listen say, ends the
/// process.
pub fn main(args: &[String]) -> Result<(), String> {
    let (threads, listen, nodes) = forwarder_args(ARG, args)?;
    // At 1000 nodes the pool alone holds ~1000 sockets: lift the soft limit as healthgate,
    // HAProxy and nginx do theirs.
    healthgate::os::raise_open_files().map_err(|e| format!("raising the open-file limit: {e}"))?;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let nodes = nodes.clone();
            std::thread::spawn(move || {
                // Any worker that fails ends the process: the harness then reports the floor
                // as exited, rather than measure it with a thread fewer.
                let Err(e) = worker(listen, nodes);
                eprintln!("error: worker: {e}");
                std::process::exit(2);
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    Err("every worker stopped".into())
}

/// One worker thread: its own runtime, its own listener on the shared address
/// (`SO_REUSEPORT`, so the kernel spreads connections over the threads) and its own pool,
/// like a healthgate worker.
fn worker(listen: SocketAddr, nodes: Vec<SocketAddr>) -> io::Result<Infallible> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(listen)?;
        let listener = socket.listen(1024)?;
        let pool = Rc::new(RefCell::new(Pool::new(nodes)));
        loop {
            let (client, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file handles, say: do not spin on the error.
                    eprintln!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let pool = pool.clone();
            tokio::task::spawn_local(async move {
                let _ = serve(client, peer, &pool).await;
            });
        }
    })
}

/// Idle upstream connections per node, and the round-robin cursor.
struct Pool {
    nodes: Vec<SocketAddr>,
    idle: Vec<Vec<TcpStream>>,
    next: usize,
}

impl Pool {
    fn new(nodes: Vec<SocketAddr>) -> Pool {
        let idle = nodes.iter().map(|_| Vec::new()).collect();
        Pool {
            nodes,
            idle,
            next: 0,
        }
    }

    /// The next node in turn, and an idle connection to it if there is one.
    fn take(&mut self) -> (usize, Option<TcpStream>) {
        let i = self.next % self.nodes.len();
        self.next = self.next.wrapping_add(1);
        (i, self.idle[i].pop())
    }
}

/// Serve one client connection until it closes or sends something the floor cannot forward.
async fn serve(mut client: TcpStream, peer: SocketAddr, pool: &RefCell<Pool>) -> io::Result<()> {
    client.set_nodelay(true)?;
    let forwarded_for = peer.ip().to_string();
    let mut request = Vec::with_capacity(8192);
    let mut upstream_request = Vec::with_capacity(8192);
    let mut response = Vec::with_capacity(8192);
    loop {
        let Some(head) = read_head(&mut client, &mut request).await? else {
            return Ok(());
        };
        let asked = rewrite_request(&request[..head], &forwarded_for, &mut upstream_request)?;
        let body = asked.body;
        read_to(&mut client, &mut request, head + body).await?;
        upstream_request.extend_from_slice(&request[head..head + body]);
        request.drain(..head + body);

        let (node, idle) = pool.borrow_mut().take();
        let addr = pool.borrow().nodes[node];
        let reused = idle.is_some();
        let mut upstream = match idle {
            Some(connection) => connection,
            None => connect(addr).await?,
        };
        response.clear();
        let head = match exchange(&mut upstream, &upstream_request, &mut response).await {
            Ok(Some(head)) => head,
            // A pooled connection the node closed while it sat idle: once more, on a fresh one.
            Ok(None) | Err(_) if reused && response.is_empty() => {
                upstream = connect(addr).await?;
                exchange(&mut upstream, &upstream_request, &mut response)
                    .await?
                    .ok_or_else(|| io::Error::other("the node closed before answering"))?
            }
            Ok(None) => return Err(io::Error::other("the node closed before answering")),
            Err(e) => return Err(e),
        };
        let answer = response_framing(&response[..head])?;
        read_to(&mut upstream, &mut response, head + answer.body).await?;
        client.write_all(&response[..head + answer.body]).await?;
        if !answer.close {
            pool.borrow_mut().idle[node].push(upstream);
        }
        if asked.close {
            return Ok(());
        }
    }
}

/// A fresh connection to a node.
async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let connection = TcpStream::connect(addr).await?;
    connection.set_nodelay(true)?;
    Ok(connection)
}

/// Send `request` and read the answer's header block into `response`: its length, or `None`
/// if the node closed the connection before answering.
async fn exchange(
    upstream: &mut TcpStream,
    request: &[u8],
    response: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    upstream.write_all(request).await?;
    read_head(upstream, response).await
}

/// Read until `buf` holds a whole header block; its length, or `None` if the peer closed
/// between messages.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(end + 4));
        }
        if stream.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

/// Read until `buf` holds at least `len` bytes.
async fn read_to(stream: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
    while buf.len() < len {
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// How a message is framed and whether its connection ends after it.
struct Framing {
    /// The length of its body (`Content-Length`; the floor forwards no other framing).
    body: usize,
    /// The connection closes after it: `Connection: close`, or HTTP/1.0 without keep-alive.
    /// A client's is closed after the answer; a node's is not pooled.
    close: bool,
}

/// The framing of a request or response with `version` and `headers`.
fn framing(version: Option<u8>, headers: &[httparse::Header]) -> io::Result<Framing> {
    let mut close = version == Some(0);
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(io::Error::other(
                "the floor forwards Content-Length bodies only",
            ));
        }
        if h.name.eq_ignore_ascii_case("connection") {
            let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            close = value.contains("close") || (close && !value.contains("keep-alive"));
        }
    }
    Ok(Framing {
        body: content_length(headers)?,
        close,
    })
}

/// Write the upstream request head for `head` into `out`; the request's framing.
fn rewrite_request(head: &[u8], forwarded_for: &str, out: &mut Vec<u8>) -> io::Result<Framing> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    request.parse(head).map_err(io::Error::other)?;
    let (Some(method), Some(path)) = (request.method, request.path) else {
        return Err(io::Error::other("a partial request head"));
    };
    let asked = framing(request.version, request.headers)?;
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in request.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    out.extend_from_slice(forwarded_for.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    Ok(asked)
}

/// The framing of a node's answer, from its head.
fn response_framing(head: &[u8]) -> io::Result<Framing> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    response.parse(head).map_err(io::Error::other)?;
    framing(response.version, response.headers)
}

/// The `Content-Length` among `headers`, 0 without one.
fn content_length(headers: &[httparse::Header]) -> io::Result<usize> {
    match headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        None => Ok(0),
        Some(h) => std::str::from_utf8(h.value)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| io::Error::other("a bad Content-Length")),
    }
}
