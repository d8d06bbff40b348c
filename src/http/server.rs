//! The accept loop: HTTP/1.1 and HTTP/2 on one listener (hyper-util's auto builder), plain or
//! TLS, with every input bounded:
//!
//! - at most `max_connections` open connections; past that a new connection is closed at once
//!   and counted (`steelcut_connections_refused_total`), so a flood cannot exhaust the process's
//!   file descriptors (each listener has its own cap, so the admin listener keeps answering);
//! - a header-read timeout, a keep-alive idle timeout and a TLS handshake timeout per
//!   connection (see [`super::conn`]), and a bounded request head (`MAX_HEAD_BYTES`);
//! - accept errors (EMFILE and friends) back off and are logged at most once a second, with a
//!   count;
//! - a graceful shutdown that stops accepting, closes at once every connection with no request
//!   in flight (idle keep-alives, slowloris, half-sent heads), lets requests in flight finish
//!   within the grace period, then closes what is left.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::conn::{ConnState, Timeouts, Tracked, TrackedIo};
use super::response::Body;
use super::stage::{Stage, Stages};
use super::tls::TlsHandle;
use crate::logfield::{self, Bounded};
use crate::metrics::ListenerCounters;

/// What the accept loop serves: the application's routing table, one per connection. Its
/// future is `Unpin` (boxed, typically) so that the per-request bookkeeping wraps it without a
/// second allocation.
pub trait AppService:
    hyper::service::Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + Unpin + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// The service for one connection from `peer`. (Knowing its peer per connection spares
    /// every request an extension map, with its allocations, to carry the address.)
    fn for_connection(&self, peer: SocketAddr) -> Self;
}

/// The largest request head (request line and headers) accepted, on HTTP/1.1 and HTTP/2.
pub const MAX_HEAD_BYTES: usize = 96 * 1024;

/// Streams one HTTP/2 connection may have open at once.
const MAX_STREAMS: u32 = 100;

/// How one listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeouts: Timeouts,
    pub max_connections: usize,
    /// Time requests in flight get to finish after shutdown begins.
    pub grace: Duration,
}

/// What every connection of a listener shares.
struct Shared<S> {
    service: S,
    builder: Builder<TokioExecutor>,
    tls: Option<TlsHandle>,
    limits: Limits,
    counters: Arc<ListenerCounters>,
    /// Stopping when shutdown begins (idle connections close, busy ones finish), stopped when
    /// the grace period is over (every connection closes).
    stages: Stages,
}

fn builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // Header and idle deadlines are the accept loop's (see `super::conn`); hyper's own header
    // timeout would also cut keep-alive connections short.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        // A peer that stops answering pings while streams are open is gone.
        .keep_alive_interval(limits.timeouts.keepalive / 2)
        .keep_alive_timeout(limits.timeouts.header_read);
    builder
}

/// Serves `listener` until `shutdown` completes, then drains connections as described in the
/// module documentation. `service` answers every request (the application's routing table).
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    tls: Option<TlsHandle>,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
    counters: Arc<ListenerCounters>,
) where
    S: AppService,
{
    let shared = Arc::new(Shared {
        service,
        builder: builder(&limits),
        tls,
        limits,
        counters,
        stages: Stages::default(),
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    let mut errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        // At the cap: closing at once is the cheapest answer, and keeps the
                        // descriptors for connections that are already being served.
                        shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                        continue;
                    };
                    tracker.spawn(connection(stream, peer, permit, shared.clone()));
                }
                Err(e) => {
                    errors.record(&e);
                    // EMFILE and friends: back off instead of spinning, keep serving.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracker.close();
    shared.stages.enter(Stage::Stopping);
    tokio::select! {
        () = tracker.wait() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.grace) => {
            tracing::warn!(
                grace_secs = limits.grace.as_secs(),
                "grace period over; closing remaining connections"
            );
            shared.stages.enter(Stage::Stopped);
            tracker.wait().await;
        }
    }
}

/// Logs accept failures at most once a second, with how many there were.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn record(&mut self, e: &std::io::Error) {
        self.unlogged += 1;
        if self
            .last_logged
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        tracing::warn!(error = %e, count = self.unlogged, "accept failed");
        self.last_logged = Some(Instant::now());
        self.unlogged = 0;
    }
}

/// Counts a connection as open for as long as it lives.
struct Open(Arc<ListenerCounters>);

impl Open {
    fn new(counters: &Arc<ListenerCounters>) -> Self {
        counters.open.fetch_add(1, Ordering::Relaxed);
        Self(counters.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection, from accept to close. Holding `_permit` keeps its place under the cap.
async fn connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    shared: Arc<Shared<S>>,
) where
    S: AppService,
{
    let _open = Open::new(&shared.counters);
    let _ = stream.set_nodelay(true);
    let state = ConnState::new(shared.counters.clone());
    let Some(handle) = &shared.tls else {
        return drive(stream, peer, state, &shared).await;
    };
    let acceptor = handle.load_full();
    // The handshake gets the header timeout, and is abandoned at shutdown.
    let handshake =
        tokio::time::timeout(shared.limits.timeouts.header_read, acceptor.accept(stream));
    tokio::pin!(handshake);
    let mut watch = shared.stages.watch();
    let handshake = poll_fn(|cx| {
        if let Poll::Ready(result) = handshake.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        watch.poll_change(cx).map(|_| None)
    });
    match handshake.await {
        Some(Ok(Ok(tls_stream))) => drive(tls_stream, peer, state, &shared).await,
        Some(Ok(Err(e))) => {
            tracing::debug!(error = %Bounded::new(&e.to_string(), logfield::ERROR), "TLS handshake failed")
        }
        Some(Err(_)) => tracing::debug!("TLS handshake timed out"),
        // Shutdown began: a handshake has no request in flight yet.
        None => {}
    }
}

/// Why a connection's task woke up with something to do.
enum Wake<E> {
    /// The connection ended (the peer closed it, or an error).
    Ended(Result<(), E>),
    Stage(Stage),
    /// The deadline (or the recheck while a request is in flight) came.
    Timer,
}

/// Serves HTTP on an established stream until it ends, its deadline passes, or shutdown.
///
/// The connection's task wakes several times per request; each wake polls the connection,
/// then checks the shutdown stage (an atomic load) and the timer (an atomic load once it is
/// registered with this task's waker), rather than re-polling every branch of a `select!`.
async fn drive<I, S>(io: I, peer: SocketAddr, state: Arc<ConnState>, shared: &Shared<S>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: AppService,
{
    let io = TokioIo::new(TrackedIo::new(io, state.clone()));
    let service = Tracked::new(shared.service.for_connection(peer), state.clone());
    let conn = shared.builder.serve_connection(io, service);
    tokio::pin!(conn);
    let timeouts = shared.limits.timeouts;
    // While a request is in flight there is no deadline; look again this often.
    let recheck = timeouts.header_read.min(Duration::from_secs(1));
    let mut watch = shared.stages.watch();
    loop {
        let wake_at = state
            .deadline(timeouts)
            .unwrap_or_else(|| Instant::now() + recheck);
        let timer = tokio::time::sleep_until(wake_at);
        tokio::pin!(timer);
        let mut timer_waker: Option<Waker> = None;
        let wake = poll_fn(|cx| {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                return Poll::Ready(Wake::Ended(result));
            }
            if let Poll::Ready(stage) = watch.poll_change(cx) {
                return Poll::Ready(Wake::Stage(stage));
            }
            if timer_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                return match timer.is_elapsed() {
                    true => Poll::Ready(Wake::Timer),
                    false => Poll::Pending,
                };
            }
            timer_waker = Some(cx.waker().clone());
            timer.as_mut().poll(cx).map(|()| Wake::Timer)
        })
        .await;
        match wake {
            Wake::Ended(result) => {
                if let Err(e) = result {
                    let error = e.to_string();
                    tracing::debug!(error = %Bounded::new(&error, logfield::ERROR), "connection ended with an error");
                }
                return;
            }
            Wake::Timer => {
                if state
                    .deadline(timeouts)
                    .is_some_and(|d| d <= Instant::now())
                {
                    tracing::debug!("closing a connection that timed out");
                    return;
                }
            }
            Wake::Stage(Stage::Stopping) => {
                if state.is_idle() {
                    return;
                }
                conn.as_mut().graceful_shutdown();
            }
            Wake::Stage(_) => return,
        }
    }
}
