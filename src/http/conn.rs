//! What one connection is doing, and the deadline that follows from it.
//!
//! hyper's own header-read timeout also bounds the wait for the next request on a keep-alive
//! connection, and a graceful shutdown waits for connections that never sent a whole request;
//! neither is what an operator expects from `header_read_timeout_secs` and
//! `keepalive_timeout_secs`. So each connection carries a [`ConnState`], fed by its I/O
//! ([`TrackedIo`]) and by its requests ([`Tracked`]), and the accept loop closes it when
//! [`ConnState::deadline`] passes:
//!
//! - no request dispatched yet: `header_read_timeout` after the connection was accepted (a
//!   slowloris that never completes its headers is closed, whatever it trickles);
//! - a request in flight: no connection deadline (the handler's own limits apply: the token
//!   endpoint's body deadline);
//! - between requests on HTTP/1.1: `keepalive_timeout` after the last response was written,
//!   or `header_read_timeout` after the first byte of the next request arrived;
//! - between requests on HTTP/2: `keepalive_timeout` after the last stream finished (frames
//!   such as PING do not count as a request starting).
//!
//! A connection with no request in flight has nothing to lose: a graceful shutdown closes it at
//! once (see [`ConnState::is_idle`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::response::Body;
use crate::metrics::ListenerCounters;

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a connection may take at each stage.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub keepalive: Duration,
}

/// See the module documentation. Times are milliseconds since `epoch`, read from the coarse
/// clock ([`crate::time::coarse_monotonic`]): they are noted on every request, and the
/// deadlines they set are whole seconds.
#[derive(Debug)]
pub struct ConnState {
    counters: Arc<ListenerCounters>,
    epoch: Instant,
    /// The coarse clock at `epoch`.
    epoch_coarse: Duration,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// When the connection became idle (accepted, or its last response was written).
    idle_since: AtomicU64,
    /// No byte written since the last request finished: the first write of its response
    /// happens as it finishes, and need not read the clock again.
    finished_unwritten: AtomicBool,
    /// When the first byte of a request arrived after the connection became idle (0: none).
    partial_since: AtomicU64,
    h2: AtomicBool,
    /// How many bytes of the HTTP/2 preface have matched so far.
    preface: AtomicUsize,
}

impl ConnState {
    pub fn new(counters: Arc<ListenerCounters>) -> Arc<Self> {
        Arc::new(Self {
            counters,
            epoch: Instant::now(),
            epoch_coarse: crate::time::coarse_monotonic(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            finished_unwritten: AtomicBool::new(false),
            partial_since: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            preface: AtomicUsize::new(0),
        })
    }

    fn now(&self) -> u64 {
        // Never 0, which means "not set" for `partial_since`.
        let elapsed = crate::time::coarse_monotonic().saturating_sub(self.epoch_coarse);
        elapsed.as_millis() as u64 + 1
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms.saturating_sub(1))
    }

    /// No request in flight: closing the connection loses nothing.
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// When the connection must be closed if nothing changes, or `None` while a request is in
    /// flight.
    pub fn deadline(&self, t: Timeouts) -> Option<Instant> {
        if !self.is_idle() {
            return None;
        }
        let idle_since = self.at(self.idle_since.load(Ordering::Acquire));
        if self.requests.load(Ordering::Acquire) == 0 {
            return Some(idle_since + t.header_read);
        }
        match self.partial_since.load(Ordering::Acquire) {
            0 => Some(idle_since + t.keepalive),
            since => Some(self.at(since) + t.header_read),
        }
    }

    fn request_started(&self) {
        self.counters.in_flight.incr();
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.partial_since.store(0, Ordering::Release);
    }

    fn request_finished(&self) {
        self.idle_since.store(self.now(), Ordering::Release);
        self.finished_unwritten.store(true, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.counters.in_flight.sub(0, 1);
    }

    fn bytes_read(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            self.detect_h2(bytes);
        }
        // Bytes arriving while idle, after a first request on HTTP/1.1: the next request's
        // head has started, and gets the header timeout from now.
        if self.is_idle()
            && !self.h2.load(Ordering::Relaxed)
            && self.requests.load(Ordering::Acquire) > 0
            && self.partial_since.load(Ordering::Acquire) == 0
        {
            self.partial_since.store(self.now(), Ordering::Release);
        }
    }

    /// Notes a write's outcome.
    fn after_write(&self, result: &Poll<io::Result<usize>>) {
        if matches!(result, Poll::Ready(Ok(n)) if *n > 0) {
            self.bytes_written();
        }
    }

    fn bytes_written(&self) {
        // On HTTP/1.1 a response still being written to a slow reader keeps the connection
        // alive for as long as it makes progress. Not on HTTP/2, where the server's own PING
        // frames would keep an idle connection open for ever.
        if self.finished_unwritten.swap(false, Ordering::Relaxed) {
            return;
        }
        if self.is_idle() && !self.h2.load(Ordering::Relaxed) {
            self.idle_since.store(self.now(), Ordering::Release);
        }
    }

    fn detect_h2(&self, bytes: &[u8]) {
        let seen = self.preface.load(Ordering::Relaxed);
        if seen >= H2_PREFACE.len() {
            return;
        }
        let want = &H2_PREFACE[seen..];
        let n = want.len().min(bytes.len());
        if bytes[..n] == want[..n] {
            self.preface.store(seen + n, Ordering::Relaxed);
            if seen + n == H2_PREFACE.len() {
                self.h2.store(true, Ordering::Relaxed);
            }
        } else {
            self.preface.store(usize::MAX, Ordering::Relaxed);
        }
    }
}

/// An I/O stream that reports its traffic to a [`ConnState`].
pub struct TrackedIo<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T> TrackedIo<T> {
    pub fn new(inner: T, state: Arc<ConnState>) -> Self {
        Self { inner, state }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            self.state.bytes_read(&buf.filled()[before..]);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.state.after_write(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.state.after_write(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A service that reports each request's start and end to a [`ConnState`].
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, state: Arc<ConnState>) -> Self {
        Self { inner, state }
    }
}

/// Marks a request finished when dropped (answered, or abandoned with its connection).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = TrackedCall<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.state.request_started();
        TrackedCall {
            inner: self.inner.call(req),
            _in_flight: InFlight(self.state.clone()),
        }
    }
}

/// A request being answered: the inner service's future, and the mark that the connection
/// has a request in flight until it is answered or dropped. (No box of its own: the router's
/// future is boxed already.)
pub struct TrackedCall<F> {
    inner: F,
    _in_flight: InFlight,
}

impl<F: Future + Unpin> Future for TrackedCall<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        keepalive: Duration::from_secs(60),
    };

    #[test]
    fn the_deadline_follows_the_stage_of_the_connection() {
        let s = ConnState::new(Arc::default());
        let accepted = Instant::now();
        // Nothing dispatched yet: the header timeout from accept, whatever bytes arrive.
        s.bytes_read(b"GET / HT");
        let d = s.deadline(T).map(|d| d.duration_since(accepted));
        assert!(d.is_some_and(|d| d <= T.header_read));
        // In flight: no deadline.
        s.request_started();
        assert!(s.deadline(T).is_none() && !s.is_idle());
        // Idle after a response: the keep-alive timeout.
        s.request_finished();
        let d = s.deadline(T).map(|d| d.duration_since(accepted));
        assert!(d.is_some_and(|d| d > T.header_read));
        // The next request's first bytes: the header timeout again.
        s.bytes_read(b"GE");
        let d = s.deadline(T).map(|d| d.duration_since(accepted));
        assert!(d.is_some_and(|d| d <= T.header_read + Duration::from_secs(1)));
    }

    #[test]
    fn http2_frames_between_streams_do_not_start_the_header_timeout() {
        let s = ConnState::new(Arc::default());
        s.bytes_read(&H2_PREFACE[..10]);
        s.bytes_read(&H2_PREFACE[10..]);
        s.request_started();
        s.request_finished();
        s.bytes_read(b"\x00\x00\x08\x06\x00\x00\x00\x00\x00ping....");
        let d = s.deadline(T).map(|d| d.duration_since(Instant::now()));
        assert!(d.is_some_and(|d| d > T.header_read));
    }
}
