//! The one routing table: every path the server answers is matched here, and every request
//! is logged here ([`crate::reqlog`]: method, path, status, latency, client id when known;
//! never credentials).

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::Either;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::state::AppState;
use crate::http::response::{self, Body};
use crate::http::server::AppService;
use crate::resource::cache::LastToken;

/// The hyper service: cheap to clone, all state behind one `Arc`; one per connection, which
/// knows its peer.
#[derive(Clone)]
pub struct Router {
    state: Arc<AppState>,
    listener: Listener,
    peer: IpAddr,
    /// The last bearer token this connection presented (see [`LastToken`]).
    last_token: Arc<LastToken>,
}

/// Which listener a router serves: the admin listener answers only health and metrics, and
/// when it exists the main listener leaves those to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Main,
    Admin,
}

impl Router {
    pub fn new(state: Arc<AppState>, listener: Listener) -> Self {
        Self {
            state,
            listener,
            peer: IpAddr::from([0, 0, 0, 0]),
            last_token: Arc::default(),
        }
    }
}

impl AppService for Router {
    fn for_connection(&self, peer: SocketAddr) -> Self {
        Self {
            state: self.state.clone(),
            listener: self.listener,
            peer: peer.ip(),
            last_token: Arc::default(),
        }
    }
}

/// A request answered at once ([`route_now`]: no allocation, no future to drive), or later.
pub type RouterFuture = Either<
    Ready<Result<Response<Body>, Infallible>>,
    Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>,
>;

impl hyper::service::Service<Request<Incoming>> for Router {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = RouterFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let started = Instant::now();
        if self.listener == Listener::Main {
            if let Some(outcome) = route_now(&self.state, &req, &self.last_token) {
                log(
                    req.method(),
                    req.uri().path(),
                    &outcome.response,
                    started,
                    outcome.client_id(),
                );
                return Either::Left(ready(Ok(outcome.response)));
            }
        }
        let state = self.state.clone();
        let listener = self.listener;
        let peer = self.peer;
        Either::Right(Box::pin(async move {
            let method = req.method().clone();
            // A Uri clone shares its bytes: no allocation for the log line.
            let uri = req.uri().clone();
            let path = uri.path();
            let (resp, client_id) = match listener {
                Listener::Main => route(&state, req, peer, started).await,
                Listener::Admin => (
                    admin_route(&state, path)
                        .await
                        .unwrap_or_else(response::not_found),
                    None,
                ),
            };
            log(
                &method,
                path,
                &resp,
                started,
                client_id.as_ref().and_then(Caller::id),
            );
            Ok(resp)
        }))
    }
}

/// The request line of the log ([`crate::reqlog`]).
fn log(method: &Method, path: &str, resp: &Response<Body>, started: Instant, client: Option<&str>) {
    crate::reqlog::log(&crate::reqlog::Request {
        method: method.as_str(),
        path,
        status: resp.status().as_u16(),
        latency: started.elapsed(),
        client_id: client,
    });
}

/// The answer [`route`] would give, when it can be given without awaiting anything: a request
/// for a resource route whose token is refused outright or is in the token cache, the
/// daemon's most frequent request. `None` sends the request the way of [`route`], which also
/// takes every path that [`route`] matches before the resource routes.
fn route_now<B>(
    state: &AppState,
    req: &Request<B>,
    last_token: &LastToken,
) -> Option<crate::resource::Outcome> {
    let path = req.uri().path();
    if let Some(auth) = &state.auth {
        if path == auth.config.token_path || path.starts_with("/.well-known/") {
            return None;
        }
    }
    if state.config.server.admin_listen.is_none() && is_admin_path(path) {
        return None;
    }
    state.resource.as_ref()?.handle_now(req, last_token)
}

fn is_admin_path(path: &str) -> bool {
    matches!(path, "/livez" | "/readyz" | "/metrics")
}

/// Only these methods read documents.
fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Who a request was answered for, for its log line: shared with the handler that found out,
/// not copied.
pub enum Caller {
    /// Authenticated at the token endpoint.
    Client(Arc<crate::store::clients::Client>),
    /// Named by the access token a resource was read with.
    Token(Arc<crate::resource::claims::VerifiedClaims>),
}

impl Caller {
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Client(client) => Some(&client.client_id),
            Self::Token(claims) => claims.caller(),
        }
    }
}

/// Dispatches a request from `peer`, which arrived at `started`. Returns the response and who
/// it was answered for, if anyone.
pub async fn route<B>(
    state: &AppState,
    req: Request<B>,
    peer: IpAddr,
    started: Instant,
) -> (Response<Body>, Option<Caller>)
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path();
    if let Some(auth) = &state.auth {
        if path == auth.config.token_path {
            // Boxed: the token exchange is a large future (body, argon2, database) that the
            // far more frequent resource reads should not carry.
            let outcome = Box::pin(crate::auth::token::handle(auth, req, peer)).await;
            state.metrics.token_request(outcome.label);
            state.metrics.token_issue_seconds.observe(started.elapsed());
            return (outcome.response, outcome.client.map(Caller::Client));
        }
        match path {
            "/.well-known/jwks.json" => {
                if !is_read(req.method()) {
                    return (response::method_not_allowed("GET, HEAD"), None);
                }
                let resp =
                    response::json(StatusCode::OK, &auth.keys().jwks(crate::time::now_millis()));
                // Public keys may be cached briefly; rotation publishes new keys before use.
                let resp = response::with_header(resp, http::header::CACHE_CONTROL, "max-age=60");
                return (resp, None);
            }
            "/.well-known/oauth-authorization-server" => {
                if !is_read(req.method()) {
                    return (response::method_not_allowed("GET, HEAD"), None);
                }
                return (response::json(StatusCode::OK, &auth.metadata()), None);
            }
            _ => {}
        }
    }
    if state.config.server.admin_listen.is_none() {
        if let Some(resp) = admin_route(state, path).await {
            return (resp, None);
        }
    }
    if let Some(resource) = &state.resource {
        // Boxed: a read whose token is cached never comes here (see `route_now`), and the
        // verification future is large for the token requests that do.
        if let Some(outcome) = Box::pin(resource.handle(req)).await {
            return (outcome.response, outcome.claims.map(Caller::Token));
        }
    }
    (response::not_found(), None)
}

/// Health and metrics: `/livez` (the process answers), `/readyz` (it can do its work),
/// `/metrics` (Prometheus text format).
async fn admin_route(state: &AppState, path: &str) -> Option<Response<Body>> {
    match path {
        "/livez" => Some(response::json(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
        )),
        "/readyz" => Some(state.readiness()),
        "/metrics" => Some(response::bytes(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics_text(),
        )),
        _ => None,
    }
}
