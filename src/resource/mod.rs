//! The resource server role: protected JSON documents behind bearer tokens.
//!
//! - [`catalog`]: the routes and the document each serves, swapped atomically on change.
//! - [`watch`]: notify on the files' directories, so changes are served within a second.
//! - [`bearer`]: `Authorization: Bearer` parsing and JWT access token validation.
//! - [`cache`]: validated tokens, so a repeated token skips the signature check.
//! - [`keys`]: where verification keys come from and how they are kept current.
//! - [`error`]: refusals and the one function that turns them into RFC 6750 responses.
//!
//! A request for a route is answered in this order: the bearer token is checked first, whatever
//! the method (without a valid token nothing about the route leaks, not even its methods); then
//! a method other than GET or HEAD gets 405; only then does the client learn anything about the
//! document, including whether its `If-None-Match` matched.

pub mod bearer;
pub mod cache;
pub mod catalog;
pub mod claims;
pub mod error;
pub mod keys;
pub mod watch;

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{header, Method, Request, Response, StatusCode};
use tokio_util::task::AbortOnDropHandle;

use crate::config::ResourceConfig;
use crate::http::response::{self, Body};
use crate::keys::{KeySet, Schedule};
use crate::metrics::Metrics;
use cache::TokenCache;
use catalog::{Catalog, DocumentError, Route};
use claims::VerifiedClaims;
pub use error::BearerError;
use keys::{KeySourceError, KeyStore};
use watch::WatchError;

/// Documents are protected: a shared cache must not keep them, and a private cache must
/// revalidate (cheaply, with the `ETag`) so that a change is seen at once.
const DOCUMENT_CACHE_CONTROL: &str = "private, no-cache";

/// Why the resource role could not start, or a reload of its routes was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("resource key source: {0}")]
    Keys(#[from] KeySourceError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error("loading documents failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The answer to a request for a route, with the client it was served to (for the log).
pub struct Outcome {
    pub response: Response<Body>,
    /// The claims of the token that was accepted, if one was.
    pub claims: Option<Arc<VerifiedClaims>>,
}

impl Outcome {
    /// The client the request was answered for, for the request log: `client_id`, else `sub`.
    pub fn client_id(&self) -> Option<&str> {
        self.claims.as_deref()?.caller()
    }
}

/// A reloaded route table, loaded and watched, not yet in force.
pub struct Prepared {
    catalog: Arc<Catalog>,
    watch: watch::Watch,
    token_cache_size: usize,
}

/// Shared state of the resource role. Dropping it stops its watcher and refresh task.
pub struct ResourceState {
    realm: String,
    /// Replaced as a whole when the configuration is reloaded.
    catalog: ArcSwap<Catalog>,
    keys: Arc<KeyStore>,
    /// Tokens verified recently (see [`cache`]).
    tokens: TokenCache,
    /// Watches the files of the catalog in force (and the key files).
    watch: ArcSwap<watch::Watch>,
    _refresh: Option<AbortOnDropHandle<()>>,
    metrics: Arc<Metrics>,
}

/// Starts one watcher for everything: the documents' directories (and their symlink targets'),
/// then the key source's if it is on disk.
fn watch_files(catalog: &Arc<Catalog>, keys: &Arc<KeyStore>) -> Result<watch::Watch, WatchError> {
    let mut dirs = catalog.dirs();
    let key_dir = keys.watch_dir();
    dirs.extend(key_dir.clone());
    let catalog = catalog.clone();
    let keys = keys.clone();
    watch::start(dirs, move |changed| {
        if key_dir.as_ref().is_some_and(|d| changed.contains(d)) {
            keys.reload_from_disk();
        }
        catalog.reload_in(changed)
    })
}

impl ResourceState {
    /// Loads every document and the verification keys, and starts watching the files.
    /// `local_keys` is the auth role's key set on a node that plays both roles, `key_schedule`
    /// the rotation rules for a key directory read without it. Must be
    /// called inside a Tokio runtime.
    pub async fn build(
        config: &ResourceConfig,
        local_keys: Option<Arc<ArcSwap<KeySet>>>,
        key_schedule: Schedule,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ResourceError> {
        let catalog = Arc::new(Catalog::build(config, &metrics)?);
        let keys = Arc::new(
            KeyStore::build(
                &config.key_source,
                local_keys,
                key_schedule,
                config.jwks_min_refetch,
            )
            .await?,
        );

        let watch = watch_files(&catalog, &keys)?;

        let refresh = keys.is_remote().then(|| {
            let keys = keys.clone();
            let every = config.jwks_refresh;
            // A URL that never gave keys is retried at the pace the rate limit allows.
            let retry = config
                .jwks_min_refetch
                .max(std::time::Duration::from_secs(1));
            AbortOnDropHandle::new(tokio::spawn(async move {
                keys.run_refresh(every, retry).await;
            }))
        });

        for path in config.routes.iter().map(|r| r.path.as_str()) {
            tracing::info!(route = path, "serving route");
        }
        Ok(Self {
            realm: config.realm.clone(),
            catalog: ArcSwap::new(catalog),
            keys,
            tokens: TokenCache::new(config.token_cache_size),
            metrics,
            watch: ArcSwap::from_pointee(watch),
            _refresh: refresh,
        })
    }

    /// Loads every document of a reloaded configuration (SIGHUP) and starts watching the new
    /// files; nothing in force changes until [`ResourceState::commit`]. The key source, issuer
    /// and realm take effect only on restart.
    pub async fn prepare(&self, config: &ResourceConfig) -> Result<Prepared, ResourceError> {
        let routes = config.clone();
        let metrics = self.metrics.clone();
        let catalog =
            tokio::task::spawn_blocking(move || Catalog::build(&routes, &metrics)).await??;
        let catalog = Arc::new(catalog);
        let watch = watch_files(&catalog, &self.keys)?;
        Ok(Prepared {
            catalog,
            watch,
            token_cache_size: config.token_cache_size,
        })
    }

    /// Puts a prepared route table in force; the previous watcher stops.
    pub fn commit(&self, prepared: Prepared) {
        for path in prepared.catalog.paths() {
            tracing::info!(route = path, "serving route");
        }
        self.catalog.store(prepared.catalog);
        self.watch.store(Arc::new(prepared.watch));
        // Cached claims are checked against the new routes on every request; only the bound
        // changes here.
        self.tokens.set_capacity(prepared.token_cache_size);
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    /// Ready when there is a key to verify tokens with (documents are loaded at start).
    pub fn is_ready(&self) -> bool {
        self.keys.is_ready()
    }

    /// Fetches of the JWKS URLs (every attempt), the first ones included.
    pub fn jwks_fetches(&self) -> u64 {
        self.keys.fetches()
    }

    /// How many requests found their token in the token cache (their route checks still ran).
    pub fn token_cache_hits(&self) -> u64 {
        self.tokens.hits()
    }

    /// How many validated tokens the token cache holds.
    pub fn token_cache_len(&self) -> usize {
        self.tokens.len()
    }

    /// Answers a request for one of the routes, or `None` when the path is not a route.
    pub async fn handle<B>(&self, req: Request<B>) -> Option<Outcome> {
        let catalog = self.catalog();
        let route = catalog.route_at(req.uri().path())?;
        // The token first, whatever the method: a caller without a valid token learns nothing
        // about the route, not even which methods it allows.
        let outcome = match bearer::authorize(&self.keys, &self.tokens, route, req.headers()).await
        {
            Ok(claims) => self.answer(route, &req, claims),
            Err(refusal) => self.refuse(route, refusal),
        };
        route.counters.count(outcome.response.status().as_u16());
        Some(outcome)
    }

    /// [`Self::handle`] for the common case, without awaiting: the answer when the path is a
    /// route and the token is refused outright or found in the token cache; `None` when the
    /// path is not a route or the token's signature must be checked.
    ///
    /// `last` is the connection's memo of the last token it presented ([`cache::LastToken`]).
    pub fn handle_now<B>(&self, req: &Request<B>, last: &cache::LastToken) -> Option<Outcome> {
        let catalog = self.catalog.load();
        let route = catalog.route_at(req.uri().path())?;
        let headers = req.headers();
        let outcome =
            match bearer::authorize_cached(&self.keys, &self.tokens, Some(last), route, headers) {
                Ok(Some(claims)) => self.answer(route, req, claims),
                Ok(None) => return None,
                Err(refusal) => self.refuse(route, refusal),
            };
        route.counters.count(outcome.response.status().as_u16());
        Some(outcome)
    }

    fn refuse(&self, route: &Route, refusal: BearerError) -> Outcome {
        tracing::debug!(route = %route.path, reason = %refusal, "bearer token refused");
        Outcome {
            response: refusal.into_response(&self.realm),
            claims: None,
        }
    }

    /// The answer for a request to `route` that presented a valid token with `claims`.
    fn answer<B>(&self, route: &Route, req: &Request<B>, claims: Arc<VerifiedClaims>) -> Outcome {
        let claims = Some(claims);
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            return Outcome {
                response: response::method_not_allowed("GET, HEAD"),
                claims,
            };
        }
        let document = route.document();
        let (body, etag) = document.body();
        let response = if bearer::none_match(req.headers(), &document.etag) {
            // RFC 9110 section 15.4.5: a 304 repeats the validator and the cache directives.
            response::empty(StatusCode::NOT_MODIFIED)
        } else {
            // For HEAD, hyper sends the headers (Content-Length included) without the body.
            response::json_bytes(StatusCode::OK, body)
        };
        let mut response = response;
        let headers = response.headers_mut();
        headers.insert(header::ETAG, etag);
        headers.insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_static(DOCUMENT_CACHE_CONTROL),
        );
        Outcome { response, claims }
    }
}
