//! The one routing table: every path the server answers is matched here, and every request
//! is logged here ([`crate::reqlog`]: method, path, status, latency, client id when known;
//! never credentials).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::state::AppState;
use crate::http::response::{self, Body};

/// The hyper service: cheap to clone, all state behind one `Arc`.
#[derive(Clone)]
pub struct Router {
    state: Arc<AppState>,
    listener: Listener,
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
        Self { state, listener }
    }
}

impl hyper::service::Service<Request<Incoming>> for Router {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let state = self.state.clone();
        let listener = self.listener;
        Box::pin(async move {
            let started = Instant::now();
            let method = req.method().clone();
            // A Uri clone shares its bytes: no allocation for the log line.
            let uri = req.uri().clone();
            let path = uri.path();
            let (resp, client_id) = match listener {
                Listener::Main => route(&state, req).await,
                Listener::Admin => (
                    admin_route(&state, path)
                        .await
                        .unwrap_or_else(response::not_found),
                    None,
                ),
            };
            crate::reqlog::log(&crate::reqlog::Request {
                method: method.as_str(),
                path,
                status: resp.status().as_u16(),
                latency: started.elapsed(),
                client_id: client_id.as_deref(),
            });
            Ok(resp)
        })
    }
}

/// Only these methods read documents.
fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Dispatches a request. Returns the response and the authenticated client id, if any.
pub async fn route<B>(state: &AppState, req: Request<B>) -> (Response<Body>, Option<String>)
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path();
    if let Some(auth) = &state.auth {
        if path == auth.config.token_path {
            let started = Instant::now();
            // Boxed: the token exchange is a large future (body, argon2, database) that the
            // far more frequent resource reads should not carry.
            let outcome = Box::pin(crate::auth::token::handle(auth, req)).await;
            state.metrics.token_request(outcome.label);
            state.metrics.token_issue_seconds.observe(started.elapsed());
            return (outcome.response, outcome.client_id);
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
        if let Some(outcome) = resource.handle(req).await {
            return (outcome.response, outcome.client_id);
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
