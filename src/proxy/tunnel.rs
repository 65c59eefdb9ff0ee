//! `Upgrade` requests (WebSocket): sent to one ready node on a connection of their own;
//! a 101 is the final answer, after which the two connections are joined into a byte
//! tunnel that lives until either side closes it or no byte passes for
//! `timeouts.tunnel_idle`. Never retried once sent; a 101 is counted as `1xx`, not as a
//! failure of the node.

use super::body::{DownBody, UpBody};
use super::headers;
use super::request::Exchange;
use super::upstream;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Proxy an upgrade request.
pub(super) async fn handle(x: &mut Exchange<'_>, mut req: Request<Incoming>) -> Response<DownBody> {
    if !x.proxy.settings.limits.allow_upgrade {
        return x.answer(
            StatusCode::FORBIDDEN,
            "protocol upgrades are refused here (limits.allow_upgrade: false)\n",
        );
    }
    let client_side = hyper::upgrade::on(&mut req);
    let (mut parts, _) = req.into_parts();
    headers::prepare_request(&mut parts, x.conn, &x.proxy.trust, true);
    loop {
        let Some(attempt) = x.pick().await else {
            return x.no_ready_node(false);
        };
        let backend = attempt.backend();
        let timeout = x.within_total(x.proxy.settings.timeouts.connect);
        let tls = backend.tls();
        let connected = upstream::connect(backend.traffic_addr, tls.as_deref(), timeout, true);
        let mut sender = match connected.await {
            Ok(sender) => sender,
            Err(e) => match x.connect_failed(&attempt, &e) {
                // Nothing was sent: another node may get it.
                None if x.may_retry() => continue,
                None => return x.answer(StatusCode::BAD_GATEWAY, ""),
                Some(answer) => return answer,
            },
        };
        let mut upstream_req = Request::new(UpBody::Empty);
        *upstream_req.method_mut() = parts.method.clone();
        *upstream_req.uri_mut() = parts.uri.clone();
        *upstream_req.headers_mut() = parts.headers.clone();
        let wait = x.within_total(x.proxy.settings.timeouts.read);
        let response = match tokio::time::timeout(wait, sender.send_request(upstream_req)).await {
            Ok(Ok(response)) => response,
            // The request reached the node: not sent again.
            Ok(Err(e)) => {
                log::debug!("upgrade to {} failed: {e}", attempt.backend().name);
                x.attempt_failed(&attempt, true);
                return x.answer(StatusCode::BAD_GATEWAY, "");
            }
            Err(_) => {
                x.attempt_failed(&attempt, true);
                return x.answer(StatusCode::GATEWAY_TIMEOUT, "");
            }
        };
        let status = response.status().as_u16();
        let backend = attempt.backend();
        backend.counters.count_status(Some(status));
        x.proxy.cluster.record_answer(backend.id, Some(status));
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            // Not switched: an ordinary answer, its connection not reused.
            let (mut head, body) = response.into_parts();
            headers::prepare_response(&mut head, x.proxy.is_draining());
            let finish = x.finish(status, Some(attempt));
            let body = DownBody::node(body, None, x.proxy.settings.timeouts.read, None, finish);
            return Response::from_parts(head, body);
        }
        let mut response = response;
        let node_side = hyper::upgrade::on(&mut response);
        x.conn.phase.tunnel();
        let idle = x.proxy.settings.timeouts.tunnel_idle;
        let gauge = x.proxy.cluster.metrics().tunnels.clone();
        let name = backend.name.clone();
        tokio::spawn(async move {
            gauge.inc();
            if let Err(e) = join(client_side, node_side, idle).await {
                log::debug!("tunnel to {name} ended: {e}");
            }
            gauge.dec();
        });
        let (mut head, _) = response.into_parts();
        headers::prepare_response(&mut head, false);
        let finish = x.finish(status, None);
        return Response::from_parts(head, DownBody::whole(Bytes::new(), finish));
    }
}

/// Once both sides have switched, copy bytes both ways until both are done, or no byte
/// passed for `idle`.
async fn join(client: OnUpgrade, node: OnUpgrade, idle: Duration) -> io::Result<()> {
    let (client, node) = tokio::try_join!(client, node).map_err(io::Error::other)?;
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut client = Active::new(TokioIo::new(client), start, last.clone());
    let mut node = Active::new(TokioIo::new(node), start, last.clone());
    let copy = tokio::io::copy_bidirectional(&mut client, &mut node);
    tokio::pin!(copy);
    loop {
        let since = Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::from_std(start + since + idle);
        tokio::select! {
            done = &mut copy => return done.map(|_| ()),
            () = tokio::time::sleep_until(deadline) => {
                let quiet = start.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "idle past timeouts.tunnel_idle"));
                }
            }
        }
    }
}

/// A stream that notes when it last read a byte.
struct Active<S> {
    inner: S,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<S> Active<S> {
    fn new(inner: S, start: Instant, last: Arc<AtomicU64>) -> Active<S> {
        Active { inner, start, last }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Active<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = self.start.elapsed().as_millis() as u64;
            self.last.store(now, Ordering::Relaxed);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Active<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
