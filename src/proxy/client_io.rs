//! A client connection as the request loop reads it, with the two deadlines of the wait for
//! a request: `timeouts.client_idle` between requests (until the first byte of the next
//! one) and `timeouts.client_header` from a request's first byte to the end of its head.
//! A client trickling its header one byte at a time (slowloris) is dropped at the second,
//! with a 408; an idle kept connection is closed quietly at the first.
//!
//! hyper parses the head; it does not say when a head begins, so the request loop tells
//! this wrapper through [`Phase`]: a request was parsed ([`Phase::request`]), its answer
//! is done ([`Phase::idle`]), the connection became a tunnel ([`Phase::tunnel`]).

use super::timer::LazyTimer;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Sent to a client whose request head did not arrive in time.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

const IDLE: u32 = 0;
const HEAD: u32 = 1;
const REQUEST: u32 = 2;
const TUNNEL: u32 = 3;

/// Where a connection is in its request cycle; shared by the request loop and the reader.
/// The low two bits are the phase, the rest counts changes, so the reader sees every
/// change even when a whole request and its answer happened between two of its reads.
#[derive(Debug, Default)]
pub struct Phase {
    state: AtomicU32,
    /// The reader's task, parked without a deadline while a request ran: woken when the
    /// answer ends, so the wait for the next request gets its deadline (hyper does not
    /// read again on its own until bytes arrive).
    reader: Mutex<Option<Waker>>,
}

impl Phase {
    /// A request head was parsed: no deadline of this wrapper applies until its answer ends.
    pub fn request(&self) {
        self.set(REQUEST);
    }

    /// The answer is done: the wait for the next request begins.
    pub fn idle(&self) {
        // A tunnel never goes back to requests.
        if self.get() & 3 == REQUEST {
            self.set(IDLE);
            if let Some(reader) = self.reader.lock().ok().and_then(|mut r| r.take()) {
                reader.wake();
            }
        }
    }

    /// The connection was upgraded: the tunnel keeps its own idle timeout.
    pub fn tunnel(&self) {
        self.set(TUNNEL);
    }

    fn get(&self) -> u32 {
        self.state.load(Ordering::Relaxed)
    }

    /// One request at a time per connection: no two writers race.
    fn set(&self, phase: u32) {
        let changes = (self.get() >> 2).wrapping_add(1);
        self.state.store((changes << 2) | phase, Ordering::Relaxed);
    }

    /// Remember the reader's task, to be woken when the answer ends.
    fn park_reader(&self, waker: &Waker) {
        if let Ok(mut reader) = self.reader.lock()
            && !reader.as_ref().is_some_and(|r| r.will_wake(waker))
        {
            *reader = Some(waker.clone());
        }
    }
}

/// The client stream with the request-wait deadlines applied to its reads.
pub struct ClientIo<S> {
    inner: S,
    phase: Arc<Phase>,
    idle: Duration,
    header: Duration,
    /// The phase (with its change count) the current deadline was set for, and the deadline.
    seen: u32,
    deadline: Option<Instant>,
    timer: LazyTimer,
}

impl<S> ClientIo<S> {
    /// Wrap `inner`; `phase` is the request loop's view of the same connection.
    pub fn new(inner: S, phase: Arc<Phase>, idle: Duration, header: Duration) -> ClientIo<S> {
        ClientIo {
            inner,
            phase,
            idle,
            header,
            seen: u32::MAX,
            deadline: None,
            timer: LazyTimer::default(),
        }
    }

    /// The deadline for the phase now, set when the phase changed.
    fn deadline_for(&mut self, phase: u32) -> Option<Instant> {
        if phase != self.seen {
            self.seen = phase;
            let first = phase >> 2 == 0;
            self.deadline = match phase & 3 {
                // Before the first request there is no answer to be idle after: a client
                // that connects and sends nothing is held to `client_header`.
                IDLE if first => Some(Instant::now() + self.header),
                IDLE => Some(Instant::now() + self.idle),
                HEAD => Some(Instant::now() + self.header),
                _ => None,
            };
        }
        self.deadline
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let phase = this.phase.get();
        let deadline = this.deadline_for(phase);
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if phase & 3 == IDLE && buf.filled().len() > before {
                    // The first byte of a request: its head has `client_header` from now.
                    this.phase.set(HEAD);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(deadline) = deadline else {
                    if phase & 3 == REQUEST {
                        this.phase.park_reader(cx.waker());
                    }
                    return Poll::Pending;
                };
                if !this.timer.expired(cx, deadline) {
                    return Poll::Pending;
                }
                if phase & 3 == HEAD {
                    // Nothing was answered for this request yet: say why it ends. Best
                    // effort, one try: a client that does not read gets no more of our time.
                    let _ = Pin::new(&mut this.inner).poll_write(cx, REQUEST_TIMEOUT);
                    let _ = Pin::new(&mut this.inner).poll_flush(cx);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not complete within timeouts.client_header",
                    )));
                }
                // Idle too long between requests: end the connection as if closed.
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}
