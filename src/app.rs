//! Assembling and running the daemon: [`App::build`] turns a [`Config`] into bound sockets and
//! loaded state (the same code path for `serve` and for the tests, which bind port 0), and
//! [`App::run_until`] serves until a shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use http::{Response, StatusCode};
use tokio::net::TcpListener;

use crate::auth::cache::CredentialCache;
use crate::auth::client_auth::Verifier;
use crate::auth::AuthState;
use crate::config::{Config, DatabaseUrl};
use crate::http::response::{self, Body};
use crate::http::router::{Listener, Router};
use crate::http::server::serve;
use crate::http::tls::TlsHandle;
use crate::keys::{KeyError, KeySet};
use crate::metrics::Metrics;
use crate::resource::ResourceState;
use crate::store::{Store, StoreError};

/// Why the daemon could not start. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("client store: {0}")]
    Store(#[from] StoreError),
    #[error(
        "the PostgreSQL database has {count} pending migration(s) ({names}); the daemon never \
         alters the schema: run `steelcutd migrate --config {file}` as the owning role"
    )]
    PendingMigrations {
        count: usize,
        names: String,
        file: String,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// State shared by every request.
pub struct AppState {
    pub config: Config,
    pub auth: Option<AuthState>,
    pub resource: Option<ResourceState>,
    pub metrics: Arc<Metrics>,
    /// The TLS acceptor of the main listener, swapped on reload.
    pub tls: Option<TlsHandle>,
    /// The configuration applied last (at start or by a reload).
    applied: std::sync::Mutex<Config>,
    ready: AtomicBool,
}

/// Settings a reload cannot change, and how to tell them apart.
fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |changed: bool, name: &'static str| {
        if changed {
            out.push(name);
        }
    };
    check(old.roles != new.roles, "roles");
    check(old.server.listen != new.server.listen, "[server] listen");
    check(
        old.server.admin_listen != new.server.admin_listen,
        "[server] admin_listen",
    );
    check(
        old.server.tls.is_some() != new.server.tls.is_some(),
        "[server.tls] (turning TLS on or off)",
    );
    check(
        old.database.as_ref().map(|d| &d.url) != new.database.as_ref().map(|d| &d.url),
        "[database] url",
    );
    check(
        old.keys.as_ref().map(|k| &k.dir) != new.keys.as_ref().map(|k| &k.dir),
        "[keys] dir",
    );
    let auth = |c: &Config| {
        c.auth.as_ref().map(|a| {
            (
                a.issuer.clone(),
                a.token_path.clone(),
                a.argon2,
                a.max_concurrent_hashes,
            )
        })
    };
    check(
        auth(old) != auth(new),
        "[auth] issuer, token_path, argon2 or max_concurrent_hashes",
    );
    let source = |c: &Config| {
        c.resource
            .as_ref()
            .map(|r| (r.key_source.clone(), r.issuer.clone(), r.realm.clone()))
    };
    check(
        source(old) != source(new),
        "[resource] key source, issuer or realm",
    );
    out
}

impl AppState {
    /// Applies a new configuration (SIGHUP): key directory (new keys published, the newest
    /// signs), token lifetime, TLS certificates, routes and their files. Everything is loaded
    /// and checked first and swapped in only if all of it is good, so a failed reload changes
    /// nothing. Returns the changed settings that only take effect after a restart.
    pub async fn reload(&self, new: Config) -> Result<Vec<&'static str>, String> {
        let old = match self.applied.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let restart = restart_only(&old, &new);
        // 1. Prepare.
        let tls = match (&new.server.tls, &self.tls) {
            (Some(t), Some(_)) => Some(crate::http::tls::load(t)?),
            _ => None,
        };
        if let (Some(resource), Some(rc)) = (&self.resource, &new.resource) {
            resource.reload(rc).await.map_err(|e| e.to_string())?;
        }
        if let Some(auth) = &self.auth {
            auth.reload_keys().map_err(|e| e.to_string())?;
        }
        // 2. Swap what is left (infallible from here on).
        if let (Some(handle), Some(acceptor)) = (&self.tls, tls) {
            match handle.write() {
                Ok(mut g) => *g = Some(acceptor),
                Err(p) => *p.into_inner() = Some(acceptor),
            }
        }
        if let (Some(auth), Some(ac)) = (&self.auth, &new.auth) {
            auth.token_lifetime_secs
                .store(ac.token_lifetime.as_secs(), Ordering::Relaxed);
        }
        match self.applied.lock() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
        Ok(restart)
    }

    /// `/metrics` text, including counters kept by the roles themselves.
    pub fn metrics_text(&self) -> String {
        let fetches = self
            .resource
            .as_ref()
            .map(|r| r.jwks_fetches())
            .unwrap_or(0);
        self.metrics.render(fetches)
    }

    /// `/readyz`: 200 once started and while the store answers; 503 otherwise.
    pub async fn readiness(&self) -> Response<Body> {
        let mut checks = serde_json::Map::new();
        let mut ok = self.ready.load(Ordering::Acquire);
        checks.insert("started".into(), ok.into());
        if let Some(auth) = &self.auth {
            let db = auth.store.run(|s| s.ping()).await.is_ok();
            let keys = !auth.keys().is_empty();
            checks.insert("database".into(), db.into());
            checks.insert("signing_keys".into(), keys.into());
            ok &= db && keys;
        }
        if let Some(resource) = &self.resource {
            let r = resource.is_ready();
            checks.insert("resources".into(), r.into());
            ok &= r;
        }
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let body =
            serde_json::json!({"status": if ok {"ready"} else {"not ready"}, "checks": checks});
        response::no_store(response::json(status, &body))
    }
}

/// A daemon with its sockets bound and state loaded, ready to serve.
pub struct App {
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    state: Arc<AppState>,
}

impl App {
    /// Opens the store (migrating SQLite, checking PostgreSQL), loads or creates keys, loads
    /// resources, and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let metrics = Arc::new(Metrics::default());
        let mut local_keys = None;
        let auth = match &config.auth {
            None => None,
            Some(auth_config) => {
                let db = config
                    .database
                    .as_ref()
                    .ok_or_else(|| StartupError::Other("the auth role needs [database]".into()))?;
                let store = Store::open(db)?;
                prepare_schema(&store, &config).await?;
                let dir =
                    config.keys.as_ref().map(|k| k.dir.clone()).ok_or_else(|| {
                        StartupError::Other("the auth role needs [keys] dir".into())
                    })?;
                let (keys, generated) =
                    tokio::task::spawn_blocking(move || KeySet::load_or_generate(&dir))
                        .await
                        .map_err(|e| StartupError::Other(e.to_string()))??;
                if let Some(kid) = generated {
                    tracing::info!(%kid, dir = %keys.dir.display(), "generated a new signing key");
                }
                if let Some(current) = keys.current() {
                    tracing::info!(kid = %current.kid, keys = keys.iter().count(), "signing key loaded");
                }
                let keys = Arc::new(RwLock::new(Arc::new(keys)));
                local_keys = Some(keys.clone());
                let params = auth_config.argon2;
                let limit = auth_config.max_concurrent_hashes;
                let verifier = tokio::task::spawn_blocking(move || Verifier::new(params, limit))
                    .await
                    .map_err(|e| StartupError::Other(e.to_string()))?
                    .map_err(StartupError::Other)?;
                let cache = Arc::new(CredentialCache::new(
                    auth_config.credential_cache_ttl,
                    auth_config.credential_cache_size,
                ));
                CredentialCache::spawn_poller(&cache, store.clone());
                Some(AuthState {
                    config: auth_config.clone(),
                    store,
                    keys,
                    verifier,
                    cache,
                    metrics: metrics.clone(),
                    token_lifetime_secs: auth_config.token_lifetime.as_secs().into(),
                })
            }
        };
        let resource = match &config.resource {
            None => None,
            Some(rc) => Some(
                ResourceState::build(rc, local_keys)
                    .await
                    .map_err(|e| StartupError::Other(e.to_string()))?,
            ),
        };
        let tls = match &config.server.tls {
            None => None,
            Some(t) => Some(Arc::new(RwLock::new(Some(
                crate::http::tls::load(t).map_err(StartupError::Other)?,
            )))),
        };
        let addr = config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let admin_listener = match config.server.admin_listen {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::Bind { addr, source })?,
            ),
        };
        let applied = config.clone();
        let state = Arc::new(AppState {
            config,
            auth,
            resource,
            metrics,
            tls,
            applied: std::sync::Mutex::new(applied),
            ready: AtomicBool::new(false),
        });
        Ok(Self {
            listener,
            admin_listener,
            state,
        })
    }

    /// The bound address (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.config.server.listen)
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let grace = self.state.config.server.shutdown_grace;
        self.state.ready.store(true, Ordering::Release);
        let router = Router::new(self.state.clone(), Listener::Main);
        let tls = self.state.tls.clone();
        match self.admin_listener {
            None => serve(self.listener, router, tls, shutdown, grace).await,
            Some(admin) => {
                // One shutdown signal for both listeners.
                let (tx, rx) = tokio::sync::watch::channel(false);
                let admin_router = Router::new(self.state.clone(), Listener::Admin);
                let mut admin_rx = rx.clone();
                let admin_task = tokio::spawn(serve(
                    admin,
                    admin_router,
                    None,
                    async move {
                        let _ = admin_rx.wait_for(|stop| *stop).await;
                    },
                    grace,
                ));
                let mut main_rx = rx;
                let main = serve(
                    self.listener,
                    router,
                    tls,
                    async move {
                        let _ = main_rx.wait_for(|stop| *stop).await;
                    },
                    grace,
                );
                let trigger = async move {
                    shutdown.await;
                    let _ = tx.send(true);
                };
                tokio::join!(main, trigger);
                let _ = admin_task.await;
            }
        }
    }

    /// The bound address of the admin listener, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }
}

/// SQLite is migrated in place (it belongs to this node); PostgreSQL is only checked, since it
/// is shared and the daemon's role may only read.
async fn prepare_schema(store: &Store, config: &Config) -> Result<(), StartupError> {
    match store.url() {
        DatabaseUrl::Sqlite(_) => {
            let applied = store.run(|s| s.migrate()).await?;
            for name in applied {
                tracing::info!(migration = %name, "applied migration");
            }
        }
        DatabaseUrl::Postgres(_) => {
            let pending = store.run(|s| s.pending_migrations()).await?;
            if !pending.is_empty() {
                return Err(StartupError::PendingMigrations {
                    count: pending.len(),
                    names: pending.join(", "),
                    file: config.file.display().to_string(),
                });
            }
        }
    }
    Ok(())
}
