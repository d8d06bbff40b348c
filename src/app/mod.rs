//! Assembling and running the daemon: [`App::build`] turns a [`Config`] into bound sockets and
//! loaded state (the same code path for `serve` and for the tests, which bind port 0), and
//! [`App::run_until`] serves until a shutdown future completes.

pub mod router;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::cache::CredentialCache;
use crate::auth::limits::Limiter;
use crate::auth::password::Verifier;
use crate::auth::AuthState;
use crate::config::{AuthRole, Config, DatabaseUrl};
use crate::http::conn::Timeouts;
use crate::http::server::{serve, Limits};
use crate::http::tls::TlsError;
use crate::keys::{KeyError, KeySet};
use crate::metrics::Metrics;
use crate::resource::{ResourceError, ResourceState};
use crate::store::listen::{self, Listener as ChangeListener};
use crate::store::{Store, StoreError};
use router::{Listener, Router};
pub use state::AppState;

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
    #[error("cannot start the client change listener: {0}")]
    Listener(#[source] std::io::Error),
    #[error("cannot start the argon2 hash workers: {0}")]
    HashWorkers(#[source] std::io::Error),
    #[error(transparent)]
    Resource(#[from] ResourceError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("a start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A daemon with its sockets bound and state loaded, ready to serve.
pub struct App {
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    state: Arc<AppState>,
}

impl App {
    /// Opens the store (migrating SQLite, checking PostgreSQL), loads or creates keys, loads
    /// resources, and binds the listeners.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let metrics = Arc::new(Metrics::default());
        let stopping = CancellationToken::new();
        let auth = match config.auth_role() {
            None => None,
            Some(role) => Some(build_auth(&config, role, metrics.clone(), &stopping).await?),
        };
        let local_keys = auth.as_ref().map(|a| a.keys.clone());
        let resource = match &config.resource {
            None => None,
            Some(rc) => Some(
                ResourceState::build(
                    rc,
                    local_keys,
                    config.key_schedule().unwrap_or_default(),
                    metrics.clone(),
                )
                .await?,
            ),
        };
        let tls = match &config.server.tls {
            None => None,
            Some(t) => Some(Arc::new(ArcSwap::from_pointee(crate::http::tls::load(t)?))),
        };
        let listener = bind(config.server.listen)?;
        let admin_listener = match config.server.admin_listen {
            None => None,
            Some(addr) => Some(bind(addr)?),
        };
        let state = Arc::new(AppState::new(
            config, auth, resource, metrics, tls, stopping,
        ));
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

    /// Serves until `shutdown` completes, then drains: idle connections close at once,
    /// requests in flight get `shutdown_grace_secs` (see [`crate::http::server`]).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let server = &self.state.config.server;
        let timeouts = Timeouts {
            header_read: server.header_read_timeout,
            keepalive: server.keepalive_timeout,
        };
        let main_limits = Limits {
            timeouts,
            max_connections: server
                .max_connections
                .unwrap_or_else(|| default_max_connections(server.admin_max_connections)),
            grace: server.shutdown_grace,
        };
        let admin_limits = Limits {
            max_connections: server.admin_max_connections,
            ..main_limits
        };
        tracing::debug!(
            max_connections = main_limits.max_connections,
            admin_max_connections = admin_limits.max_connections,
            "connection limits"
        );
        self.state.mark_ready();
        // One shutdown signal for both listeners and for requests waiting on a client.
        let stopping = self.state.stopping.clone();
        let metrics = &self.state.metrics;
        let main = serve(
            self.listener,
            Router::new(self.state.clone(), Listener::Main),
            self.state.tls.clone(),
            stopping.clone().cancelled_owned(),
            main_limits,
            metrics.main_listener.clone(),
        );
        let admin = self.admin_listener.map(|admin| {
            serve(
                admin,
                Router::new(self.state.clone(), Listener::Admin),
                None,
                stopping.clone().cancelled_owned(),
                admin_limits,
                metrics.admin_listener.clone(),
            )
        });
        let trigger = async {
            shutdown.await;
            stopping.cancel();
        };
        match admin {
            None => tokio::join!(main, trigger).0,
            Some(admin) => tokio::join!(main, admin, trigger).0,
        };
    }

    /// The bound address of the admin listener, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }
}

/// File descriptors kept for everything but client connections: database connections, key
/// and document files, the watcher, the log, the admin listener's own connections.
const RESERVED_FDS: u64 = 256;

/// Most connections a listener takes by default whatever the open-file limit: each may hold a
/// request head of up to `MAX_HEAD_BYTES`.
const DEFAULT_MAX_CONNECTIONS: u64 = 16_384;

/// `max_connections` when not configured: what the open-file limit leaves once the reserve and
/// the admin listener's share are set aside (see `cmd::serve`, which raises the soft limit to the
/// hard one at start).
fn default_max_connections(admin: usize) -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let spare = soft.saturating_sub(RESERVED_FDS + admin as u64);
    spare.clamp(16, DEFAULT_MAX_CONNECTIONS) as usize
}

/// Connections the kernel queues for a listener before it accepts them (capped by
/// `net.core.somaxconn`). The default of 128 drops SYNs during a burst, and each dropped one
/// costs the client a retransmission second.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    let fail = |source| StartupError::Bind { addr, source };
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(fail)?;
    // As std and tokio's own bind do: a restarted daemon may bind while old connections linger
    // in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(addr).map_err(fail)?;
    socket.listen(LISTEN_BACKLOG).map_err(fail)
}

/// The auth role: the client store (schema checked), the signing keys (a first one generated
/// in an empty directory), the hash workers and the credential cache.
async fn build_auth(
    config: &Config,
    role: AuthRole<'_>,
    metrics: Arc<Metrics>,
    stopping: &CancellationToken,
) -> Result<AuthState, StartupError> {
    let store = Store::open(role.database)?;
    prepare_schema(&store, config).await?;
    let dir = role.keys.dir.clone();
    let schedule = config.key_schedule().unwrap_or_default();
    let now = crate::time::now_millis();
    let (keys, provision) =
        tokio::task::spawn_blocking(move || KeySet::load_or_generate(&dir, schedule, now))
            .await??;
    crate::auth::log_provision(&keys, &provision, now);
    let keys = Arc::new(ArcSwap::from_pointee(keys));
    let rotate_after = Arc::new(AtomicU64::new(
        role.keys.rotate_after.map_or(0, |d| d.as_secs()),
    ));
    let key_clock = crate::auth::rotation::spawn(keys.clone(), rotate_after.clone());
    let auth = role.auth;
    let (params, limit) = (auth.argon2, auth.max_concurrent_hashes);
    let verifier = tokio::task::spawn_blocking(move || Verifier::new(params, limit))
        .await?
        .map_err(StartupError::HashWorkers)?;
    let cache = Arc::new(CredentialCache::new(
        auth.credential_cache_ttl,
        auth.credential_cache_size,
        auth.serve_cached_when_db_down,
    ));
    CredentialCache::spawn_probe(&cache, store.clone());
    let listener = listen_for_changes(role.database, &cache)?;
    Ok(AuthState {
        config: auth.clone(),
        store,
        keys,
        rotate_after,
        key_clock,
        verifier,
        cache,
        metrics,
        token_lifetime_secs: auth.token_lifetime.as_secs().into(),
        body_timeout: config.server.body_timeout,
        stopping: stopping.clone(),
        limiter: Limiter::new(auth.limits),
        changes: listener,
        trusted_proxies: config.server.trusted_proxies.clone(),
    })
}

/// On PostgreSQL, client changes are pushed to the credential cache as they happen (see
/// [`crate::store::listen`]); the change counter the probe reads stays the fallback.
fn listen_for_changes(
    database: &crate::config::DatabaseConfig,
    cache: &Arc<CredentialCache>,
) -> Result<Option<ChangeListener>, StartupError> {
    let DatabaseUrl::Postgres(url) = &database.url else {
        return Ok(None);
    };
    let weak = Arc::downgrade(cache);
    let listener = listen::spawn(url.clone(), move |changed| {
        if let Some(cache) = weak.upgrade() {
            cache.forget(&changed);
        }
    })
    .map_err(StartupError::Listener)?;
    Ok(Some(listener))
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
