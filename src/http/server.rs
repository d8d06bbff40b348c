//! The accept loop: HTTP/1.1 and HTTP/2 on one listener (hyper-util's auto builder), plain or
//! TLS, and a graceful shutdown that stops accepting, lets in-flight requests finish within a
//! grace period, then returns.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::response::Body;
use super::tls::TlsHandle;

/// A client that has not finished its TLS handshake by then is dropped, so idle sockets cannot
/// pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` completes, then drains connections for at most `grace`.
/// With `tls`, every connection starts with a handshake using the acceptor in force.
/// `service` answers every request of every connection (the application's routing table).
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    tls: Option<TlsHandle>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder = Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let builder = builder.clone();
                let router = service.clone();
                let watcher = graceful.watcher();
                let acceptor = tls.as_ref().map(|t| t.load_full());
                tokio::spawn(async move {
                    let result = match acceptor {
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(stream), router);
                            watcher.watch(conn.into_owned()).await
                        }
                        Some(acceptor) => {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls_stream)) => {
                                    let conn = builder.serve_connection(TokioIo::new(tls_stream), router);
                                    watcher.watch(conn.into_owned()).await
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake timed out");
                                    return;
                                }
                            }
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_secs = grace.as_secs(), "grace period over; closing remaining connections");
        }
    }
}
