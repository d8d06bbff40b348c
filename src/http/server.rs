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
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn::{ConnState, Timeouts, Tracked, TrackedIo};
use super::response::Body;
use super::tls::TlsHandle;
use crate::logfield::{self, Bounded};
use crate::metrics::ListenerCounters;

/// What the accept loop serves: the application's routing table, one clone per connection.
/// Its future is `Unpin` (boxed, typically) so that the per-request bookkeeping wraps it
/// without a second allocation.
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
}

impl<S> AppService for S
where
    S: Clone + Send + Sync + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + Unpin + 'static,
{
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
    /// Cancelled when shutdown begins: idle connections close, busy ones finish.
    stopping: CancellationToken,
    /// Cancelled when the grace period is over: every connection closes.
    stopped: CancellationToken,
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
        stopping: CancellationToken::new(),
        stopped: CancellationToken::new(),
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
    shared.stopping.cancel();
    tokio::select! {
        () = tracker.wait() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.grace) => {
            tracing::warn!(
                grace_secs = limits.grace.as_secs(),
                "grace period over; closing remaining connections"
            );
            shared.stopped.cancel();
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
    tokio::select! {
        result = handshake => match result {
            Ok(Ok(tls_stream)) => drive(tls_stream, peer, state, &shared).await,
            Ok(Err(e)) => tracing::debug!(error = %Bounded::new(&e.to_string(), logfield::ERROR), "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        },
        () = shared.stopping.cancelled() => {}
    }
}

/// Serves HTTP on an established stream until it ends, its deadline passes, or shutdown.
async fn drive<I, S>(io: I, peer: SocketAddr, state: Arc<ConnState>, shared: &Shared<S>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: AppService,
{
    let io = TokioIo::new(TrackedIo::new(io, state.clone()));
    let service = Tracked::new(shared.service.clone(), state.clone(), peer);
    let conn = shared.builder.serve_connection(io, service);
    tokio::pin!(conn);
    let timeouts = shared.limits.timeouts;
    // While a request is in flight there is no deadline; look again this often.
    let recheck = timeouts.header_read.min(Duration::from_secs(1));
    let mut draining = false;
    loop {
        let wake = state
            .deadline(timeouts)
            .unwrap_or_else(|| Instant::now() + recheck);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    let error = e.to_string();
                    tracing::debug!(error = %Bounded::new(&error, logfield::ERROR), "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(wake) => {
                if state.deadline(timeouts).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!("closing a connection that timed out");
                    return;
                }
            }
            () = shared.stopping.cancelled(), if !draining => {
                if state.is_idle() {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            () = shared.stopped.cancelled() => return,
        }
    }
}
