//! The client store: one Diesel connection type for SQLite and PostgreSQL, an r2d2 pool,
//! embedded migrations, and the queries the daemon and the admin CLI run.
//!
//! Every method here blocks; async callers go through [`Store::run`], which moves the work to
//! tokio's blocking pool so a slow or absent database never stalls the accept loop. Writes bump
//! `store_state.generation` in the same transaction, which is how running daemons (that may only
//! hold SELECT rights) learn that cached client data is stale.

pub mod clients;
pub mod conn;
pub mod health;
pub mod listen;
pub mod original;
pub mod schema;

use std::sync::Arc;

use diesel::prelude::*;
use diesel::r2d2::{self, Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::{DatabaseConfig, DatabaseUrl};
pub use conn::ConnectError;
use conn::{DbConnection, DbManager};
pub use health::Health;
use schema::store_state;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Failures of the store, split by what the caller should do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now (answer 503, retry later).
    #[error("database unavailable at {url}: {source}")]
    Unavailable {
        /// The URL without its password.
        url: String,
        #[source]
        source: ConnectError,
    },
    /// The database was known to be down when the work was asked for: not even tried.
    #[error("the database has been unavailable for {:.1} s", .0.as_secs_f64())]
    Down(std::time::Duration),
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("migration failed: {0}")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The schema is not what this version expects.
    #[error("{url}: {} pending migration(s) ({}): {how}", names.len(), names.join(", "))]
    Pending {
        url: String,
        names: Vec<String>,
        how: &'static str,
    },
    #[error(
        "{url} is a read-only hot standby (pg_is_in_recovery() is true): run `migrate` and the \
         client commands against the primary (serve works from a standby)"
    )]
    Standby { url: String },
    #[error("{url} is not a PostgreSQL database")]
    NotPostgres { url: String },
    #[error("no client with id {0}")]
    NotFound(String),
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl StoreError {
    /// Whether this says the database is unreachable (as opposed to a query's own failure).
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Down(_))
    }
}
#[derive(QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

/// The pooled client store.
#[derive(Clone)]
pub struct Store {
    pool: Pool<DbManager>,
    url: DatabaseUrl,
    health: Arc<Health>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.url.redacted())
            .finish()
    }
}

impl Store {
    /// Builds the pool without connecting: connections are made on first use, so a database
    /// that is down at this moment is reported by the first query, not here. A SQLite file
    /// that does not exist yet is created first, owner-only.
    pub fn open(config: &DatabaseConfig) -> Result<Self, StoreError> {
        if let DatabaseUrl::Sqlite(path) = &config.url {
            create_sqlite_file(path)?;
        }
        let health: Arc<Health> = Arc::default();
        let pool = Pool::builder()
            .max_size(config.pool_size)
            .min_idle(Some(0))
            .connection_timeout(config.connect_timeout)
            // A pooled connection may have outlived its server: one opened before the last
            // outage is replaced on the way out instead of failing a request (a check without
            // a query, see `DbManager::is_valid`).
            .test_on_check_out(true)
            // Failures reach the caller as typed errors and the log once per outage through
            // `Health`; r2d2's own handler would log every failed attempt, per request.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(DbManager {
                url: config.url.clone(),
                health: health.clone(),
            });
        Ok(Self {
            pool,
            url: config.url.clone(),
            health,
        })
    }

    /// Whether the database answers, as the last operations found.
    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    fn unavailable(&self, source: ConnectError) -> StoreError {
        StoreError::Unavailable {
            url: self.url.redacted(),
            source,
        }
    }

    fn conn(&self) -> Result<PooledConnection<DbManager>, StoreError> {
        self.pool.get().map_err(|e| {
            // r2d2 reports only "timed out"; try once directly to get the real cause.
            let manager = DbManager {
                url: self.url.clone(),
                health: self.health.clone(),
            };
            match manager.open() {
                Err(cause) => self.unavailable(cause),
                Ok(_) => self.unavailable(e.into()),
            }
        })
    }

    /// Runs `f` on a pooled connection. A connection whose work failed is dropped instead of
    /// going back to the pool (see [`Conn`]), which is how the store recovers by itself once a
    /// database that went away returns.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        let result = f(&mut conn.db);
        if let Err(e) = &result {
            conn.failed = !matches!(e, StoreError::NotFound(_));
        }
        result.map_err(|e| match e {
            StoreError::Query(q) if is_lost_connection(&q) => {
                self.unavailable(ConnectError::Lost(q))
            }
            other => other,
        })
    }

    /// Reads the change counter to learn whether the database answers (the auth role's probe).
    /// While the database is known to be down this opens a connection of its own rather than
    /// asking the pool, which would wait up to `connect_timeout_secs` for one.
    pub fn probe(&self) -> Result<i64, StoreError> {
        let result = if self.health.is_up() {
            self.generation()
        } else {
            let manager = DbManager {
                url: self.url.clone(),
                health: self.health.clone(),
            };
            let mut db = manager.open().map_err(|e| self.unavailable(e))?;
            Self::read_generation(&mut db).map_err(|q| self.unavailable(ConnectError::Lost(q)))
        };
        self.record(&result);
        result
    }

    /// Tells [`Health`] what an operation found.
    fn record<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => self.health.ok(),
            Err(e @ StoreError::Unavailable { .. }) => self.health.failed(e),
            Err(_) => {}
        }
    }

    /// Runs blocking store work on tokio's blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        let result = tokio::task::spawn_blocking(move || f(&store)).await?;
        self.record(&result);
        result
    }

    /// As [`Store::run`], but refused at once while the database is known to be down.
    pub async fn run_if_up<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some(down) = self.health.down_for() {
            return Err(StoreError::Down(down));
        }
        self.run(f).await
    }

    /// Applies pending migrations; returns the names applied.
    pub fn migrate(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(|conn| {
            let applied = match conn {
                DbConnection::Postgres(c) => c
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.iter().map(|m| m.to_string()).collect()),
                DbConnection::Sqlite(c) => c
                    .run_pending_migrations(SQLITE_MIGRATIONS)
                    .map(|v| v.iter().map(|m| m.to_string()).collect()),
            };
            applied.map_err(StoreError::Migration)
        })
    }

    /// The embedded migrations not yet applied. Only reads, so it works for a role that has
    /// nothing but SELECT (the daemon never alters a PostgreSQL schema).
    pub fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(|conn| {
            let wanted: Vec<String> = match conn {
                DbConnection::Postgres(_) => {
                    diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(
                        &POSTGRES_MIGRATIONS,
                    )
                    .map_err(StoreError::Migration)?
                    .iter()
                    .map(|m| m.name().version().to_string())
                    .collect()
                }
                DbConnection::Sqlite(_) => diesel::migration::MigrationSource::<
                    diesel::sqlite::Sqlite,
                >::migrations(&SQLITE_MIGRATIONS)
                .map_err(StoreError::Migration)?
                .iter()
                .map(|m| m.name().version().to_string())
                .collect(),
            };
            let applied: Vec<String> =
                match diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
                    .load::<AppliedVersion>(conn)
                {
                    Ok(rows) => rows.into_iter().map(|r| r.version).collect(),
                    // No migrations table: nothing applied yet. Only that error: a table that
                    // exists but may not be read (a role without its grants) is a different
                    // problem, and running `migrate` would not fix it.
                    Err(diesel::result::Error::DatabaseError(_, info))
                        if is_missing_table(info.message()) =>
                    {
                        Vec::new()
                    }
                    Err(e) => return Err(e.into()),
                };
            Ok(wanted
                .into_iter()
                .filter(|v| !applied.contains(v))
                .collect())
        })
    }

    /// Fails with a message naming `steelcutd migrate` when migrations are pending; admin
    /// commands on PostgreSQL call this first, so that an unmigrated database is not reported
    /// as a missing table.
    pub fn require_migrated(&self) -> Result<(), StoreError> {
        let pending = self.pending_migrations()?;
        if pending.is_empty() {
            return Ok(());
        }
        let how = match self.url {
            DatabaseUrl::Postgres(_) => "run `steelcutd migrate` as the role that owns the schema",
            DatabaseUrl::Sqlite(_) => {
                "run `steelcutd migrate`, or start the daemon once (it migrates SQLite itself)"
            }
        };
        Err(StoreError::Pending {
            url: self.url.redacted(),
            names: pending,
            how,
        })
    }

    /// Whether the database is a read-only hot standby (PostgreSQL in recovery). SQLite never is.
    pub fn is_standby(&self) -> Result<bool, StoreError> {
        #[derive(QueryableByName)]
        struct Recovery {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            standby: bool,
        }
        self.with_conn(|conn| match conn {
            DbConnection::Sqlite(_) => Ok(false),
            DbConnection::Postgres(c) => {
                Ok(diesel::sql_query("SELECT pg_is_in_recovery() AS standby")
                    .get_result::<Recovery>(c)?
                    .standby)
            }
        })
    }

    /// Fails with a clear message on a hot standby, for commands that write (a standby refuses
    /// writes with a less helpful error).
    pub fn require_primary(&self) -> Result<(), StoreError> {
        if self.is_standby()? {
            return Err(StoreError::Standby {
                url: self.url.redacted(),
            });
        }
        Ok(())
    }

    /// The change counter bumped by every write to `clients`.
    pub fn generation(&self) -> Result<i64, StoreError> {
        self.with_conn(|conn| Ok(Self::read_generation(conn)?))
    }

    fn read_generation(conn: &mut DbConnection) -> Result<i64, diesel::result::Error> {
        store_state::table
            .find(1)
            .select(store_state::generation)
            .first::<i64>(conn)
    }
}

/// Whether a query failed because the connection itself died (the server went away).
fn is_lost_connection(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        e,
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _
        )
    )
}

/// Creates a missing SQLite database file, and the directories above it, readable by the
/// owner only: the file holds the clients' argon2 hashes. SQLite gives its `-wal` and `-shm`
/// files the mode of the database file. An existing file or directory is left as it is.
fn create_sqlite_file(path: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let failed = |path: &std::path::Path, source: std::io::Error| StoreError::Create {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| failed(dir, e))?;
            tracing::info!(dir = %dir.display(), mode = "0700", "created the database directory");
        }
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        // SQLite takes an empty file for a new database.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(failed(path, e)),
    }
}

/// Whether a database error says a table does not exist (PostgreSQL or SQLite wording).
fn is_missing_table(message: &str) -> bool {
    message.contains("does not exist") || message.contains("no such table")
}
