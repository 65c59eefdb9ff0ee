//! The two bodies a request passes on: the client's request body on its way to a node
//! ([`UpBody`]: held whole when it may have to be sent again, streamed otherwise, with the
//! body limit and `timeouts.client_body`), and the answer on its way to the client
//! ([`DownBody`]: streamed with `timeouts.read` between reads, and the request's end —
//! metrics, access log, the connection back to the pool — when it is done).

use super::client_io::Phase;
use super::timer::LazyTimer;
use super::upstream::{self, PoolKey, Sender};
use crate::routing::InFlight;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// A body error: boxed, as hyper wants it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request body stopped short, as seen by the request loop after a failed attempt:
/// the client's doing, not the node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientFault {
    /// No fault seen.
    None = 0,
    /// The client stalled past `timeouts.client_body` (408).
    Stalled = 1,
    /// The body grew past `limits.max_request_body` (413).
    TooLarge = 2,
    /// The client's connection failed mid-body (nothing to answer).
    Gone = 3,
}

/// Where a streaming request body records a [`ClientFault`] for the request loop.
#[derive(Debug, Default)]
pub struct FaultCell(AtomicU8);

impl FaultCell {
    fn set(&self, fault: ClientFault) {
        self.0.store(fault as u8, Ordering::Relaxed);
    }

    /// The fault recorded, if any.
    pub fn get(&self) -> ClientFault {
        match self.0.load(Ordering::Relaxed) {
            1 => ClientFault::Stalled,
            2 => ClientFault::TooLarge,
            3 => ClientFault::Gone,
            _ => ClientFault::None,
        }
    }
}

/// A request body on its way to a node.
pub enum UpBody {
    /// No body.
    Empty,
    /// The whole body, read before the first attempt so another attempt can send it again.
    Whole(Option<Bytes>),
    /// The body as the client sends it: one attempt only.
    Streamed(ClientBody),
}

impl UpBody {
    /// A copy for another attempt, if this body can be sent again.
    pub fn replay(&self) -> Option<UpBody> {
        match self {
            UpBody::Empty => Some(UpBody::Empty),
            UpBody::Whole(b) => Some(UpBody::Whole(b.clone())),
            UpBody::Streamed(_) => None,
        }
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpBody::Empty => Poll::Ready(None),
            UpBody::Whole(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            UpBody::Streamed(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Empty => true,
            UpBody::Whole(b) => b.is_none(),
            UpBody::Streamed(s) => s.read.is_none() && s.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Empty => SizeHint::with_exact(0),
            UpBody::Whole(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            UpBody::Streamed(s) => {
                let read = s.read.as_ref().map_or(0, |b| b.len() as u64);
                let rest = s.inner.size_hint();
                match rest.exact() {
                    Some(n) => SizeHint::with_exact(n + read),
                    None => {
                        let mut hint = SizeHint::new();
                        hint.set_lower(rest.lower() + read);
                        hint
                    }
                }
            }
        }
    }
}

/// The client's body, streamed: counted against the limit, each read bounded in time.
pub struct ClientBody {
    inner: Incoming,
    /// Read already (while trying to hold the body whole), sent first.
    read: Option<Bytes>,
    seen: u64,
    max: Option<u64>,
    timeout: Duration,
    deadline: Option<Instant>,
    timer: LazyTimer,
    fault: Arc<FaultCell>,
}

impl ClientBody {
    /// Stream `inner`, at most `max` bytes, no read waiting longer than `timeout`.
    pub fn new(
        inner: Incoming,
        max: Option<u64>,
        timeout: Duration,
        fault: Arc<FaultCell>,
    ) -> ClientBody {
        ClientBody {
            inner,
            read: None,
            seen: 0,
            max,
            timeout,
            deadline: None,
            timer: LazyTimer::default(),
            fault,
        }
    }

    /// The next frame, for reading the body here rather than sending it on.
    pub async fn frame(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_frame(cx)).await
    }

    /// Send `read` (taken from this body) before the rest.
    pub fn put_back(&mut self, read: Bytes) {
        self.read = Some(read);
    }

    fn fail(
        &mut self,
        fault: ClientFault,
        why: &'static str,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.fault.set(fault);
        Poll::Ready(Some(Err(why.into())))
    }

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(read) = this.read.take() {
            return Poll::Ready(Some(Ok(Frame::data(read))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.deadline = None;
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.max.is_some_and(|max| this.seen > max) {
                        return this.fail(
                            ClientFault::TooLarge,
                            "request body over limits.max_request_body",
                        );
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => this.fail(ClientFault::Gone, "client body failed"),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = *this
                    .deadline
                    .get_or_insert_with(|| Instant::now() + this.timeout);
                if this.timer.expired(cx, deadline) {
                    return this.fail(ClientFault::Stalled, "client body stalled");
                }
                Poll::Pending
            }
        }
    }
}

/// What is done once an answer has gone to the client (or the client went away).
pub struct Finish {
    /// The request's start, for `healthgate_request_duration_seconds` and the access log.
    pub started: std::time::Instant,
    /// The histogram to observe the duration in.
    pub duration: prometheus::Histogram,
    /// The node's attempt, counted in flight until the answer ends.
    pub attempt: Option<InFlight>,
    /// The access-log line's fields, when the access log is on.
    pub access: Option<AccessLine>,
    /// The connection's phase: idle again once the answer is done.
    pub phase: Arc<Phase>,
}

/// One access-log line's fields, known before the answer streams.
pub struct AccessLine {
    /// The client's address.
    pub client: String,
    /// The request method.
    pub method: http::Method,
    /// The request target.
    pub path: http::Uri,
    /// The status sent to the client.
    pub status: u16,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        self.duration.observe(elapsed.as_secs_f64());
        if let Some(line) = &self.access {
            let node = self
                .attempt
                .as_ref()
                .map_or("-", |a| a.backend().name.as_str());
            log::info!(
                target: "healthgate::access",
                "client={} method={} path={} status={} node={node} ms={:.1}",
                line.client,
                line.method,
                line.path,
                line.status,
                elapsed.as_secs_f64() * 1000.0
            );
        }
        self.phase.idle();
    }
}

/// An answer on its way to the client.
pub struct DownBody {
    source: Source,
    /// Dropped when the answer ends: the request is over.
    finish: Option<Finish>,
}

enum Source {
    /// An answer of healthgate's own.
    Whole(Option<Bytes>),
    /// A node's answer, streamed.
    Node(NodeBody),
}

/// A node's answer body and the connection it came on.
struct NodeBody {
    inner: Incoming,
    /// Back to the pool once the body ended (`None`: not to be reused).
    sender: Option<(PoolKey, Sender)>,
    /// Longest wait for the next part of the body (`timeouts.read`).
    read: Duration,
    /// The end of `timeouts.total`, if set.
    total: Option<Instant>,
    deadline: Option<Instant>,
    timer: LazyTimer,
}

impl DownBody {
    /// An answer of healthgate's own.
    pub fn whole(body: Bytes, finish: Finish) -> DownBody {
        DownBody {
            source: Source::Whole((!body.is_empty()).then_some(body)),
            finish: Some(finish),
        }
    }

    /// A node's answer; `sender` goes back to the pool when it ends.
    pub fn node(
        inner: Incoming,
        sender: Option<(PoolKey, Sender)>,
        read: Duration,
        total: Option<Instant>,
        finish: Finish,
    ) -> DownBody {
        let mut body = DownBody {
            source: Source::Node(NodeBody {
                inner,
                sender,
                read,
                total,
                deadline: None,
                timer: LazyTimer::default(),
            }),
            finish: Some(finish),
        };
        body.end_if_done();
        body
    }

    /// An answer that is already complete ends the request now (a bodiless answer is
    /// never polled).
    fn end_if_done(&mut self) {
        if let Source::Node(node) = &mut self.source
            && node.inner.is_end_stream()
        {
            if let Some((key, sender)) = node.sender.take() {
                upstream::release(key, sender);
            }
            self.finish = None;
        }
    }
}

impl Body for DownBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let node = match &mut this.source {
            Source::Whole(b) => {
                let frame = b.take().map(|b| Ok(Frame::data(b)));
                if frame.is_none() {
                    this.finish = None;
                }
                return Poll::Ready(frame);
            }
            Source::Node(node) => node,
        };
        match Pin::new(&mut node.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                node.deadline = None;
                if node.inner.is_end_stream() {
                    this.end_if_done();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                node.sender = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.end_if_done();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let read = node.read;
                let deadline = *node.deadline.get_or_insert_with(|| {
                    let next = Instant::now() + read;
                    node.total.map_or(next, |total| next.min(total))
                });
                if node.timer.expired(cx, deadline) {
                    // The client sees a cut answer rather than a wait without end.
                    node.sender = None;
                    return Poll::Ready(Some(Err("the node's answer stalled (timeouts.read or \
                                                 timeouts.total)"
                        .into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Whole(b) => b.is_none(),
            Source::Node(node) => node.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Whole(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Source::Node(node) => node.inner.size_hint(),
        }
    }
}
