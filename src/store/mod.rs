//! The client store: one Diesel connection type for SQLite and PostgreSQL, an r2d2 pool,
//! embedded migrations, and the queries the daemon and the admin CLI run.
//!
//! Every method here blocks; async callers go through [`Store::run`], which moves the work to
//! tokio's blocking pool so a slow or absent database never stalls the accept loop. Writes bump
//! `store_state.generation` in the same transaction, which is how running daemons (that may only
//! hold SELECT rights) learn that cached client data is stale.

pub mod schema;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::domain::{ClientId, Resource, Scope};
use crate::time::now_unix;
use schema::{clients, store_state};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// One connection type for both backends; the variant follows the URL scheme.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

/// Failures of the store, split by what the caller should do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now (answer 503, retry later).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The schema is not what this version expects.
    #[error("{0}")]
    Schema(String),
    #[error("no client with id {0}")]
    NotFound(String),
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
}

/// r2d2 manager that opens the right backend and applies SQLite pragmas to every connection.
#[derive(Debug, Clone)]
pub struct DbManager {
    url: DatabaseUrl,
}

/// A pooled connection and whether it has failed.
pub struct Conn {
    db: DbConnection,
    /// Set when a query on this connection failed. The cause may be a socket that died with a
    /// database restart, which nothing else would notice: back in the pool it would fail every
    /// request it serves. A new connection costs little next to that, so a connection that saw
    /// an error is never reused (see [`DbManager::has_broken`]).
    failed: bool,
}

impl ManageConnection for DbManager {
    type Connection = Conn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<Conn, r2d2::Error> {
        self.open().map(|db| Conn { db, failed: false })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), r2d2::Error> {
        conn.db
            .batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.failed
    }
}

impl DbManager {
    fn open(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => diesel::PgConnection::establish(url)
                .map(DbConnection::Postgres)
                .map_err(r2d2::Error::ConnectionError),
            DatabaseUrl::Sqlite(path) => {
                let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(r2d2::Error::ConnectionError)?;
                // WAL lets the daemon read while the CLI writes; busy_timeout makes a writer
                // wait for a lock instead of failing at once.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

/// A client as stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = clients)]
pub struct ClientRow {
    pub client_id: String,
    pub name: String,
    pub secret_hash: String,
    pub grant_types: String,
    pub resources: String,
    pub scopes: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A client with its lists parsed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    #[serde(skip)]
    pub secret_hash: String,
    pub grant_types: Vec<String>,
    pub resources: Vec<Resource>,
    pub scopes: Vec<Scope>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl serde::Serialize for Resource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(' ').filter(|t| !t.is_empty())
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

impl From<ClientRow> for Client {
    fn from(r: ClientRow) -> Self {
        // Values were validated on the way in; anything unparsable (a hand-edited row) is
        // dropped rather than granted.
        Client {
            grant_types: split(&r.grant_types).map(str::to_owned).collect(),
            resources: split(&r.resources)
                .filter_map(|s| Resource::parse(s).ok())
                .collect(),
            scopes: split(&r.scopes)
                .filter_map(|s| Scope::parse(s).ok())
                .collect(),
            client_id: r.client_id,
            name: r.name,
            secret_hash: r.secret_hash,
            enabled: r.enabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A new client to insert.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub client_id: ClientId,
    pub name: String,
    pub secret_hash: String,
    pub grant_types: Vec<String>,
    pub resources: Vec<Resource>,
    pub scopes: Vec<Scope>,
}

/// Changes to an existing client; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ClientChanges {
    pub grant_types: Option<Vec<String>>,
    pub resources: Option<Vec<Resource>>,
    pub scopes: Option<Vec<Scope>>,
    pub secret_hash: Option<String>,
    pub enabled: Option<bool>,
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
        let pool = Pool::builder()
            .max_size(config.pool_size)
            .min_idle(Some(0))
            .connection_timeout(config.connect_timeout)
            .test_on_check_out(false)
            .error_handler(Box::new(r2d2::LoggingErrorHandler))
            .build_unchecked(DbManager {
                url: config.url.clone(),
            });
        Ok(Self {
            pool,
            url: config.url.clone(),
        })
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    fn conn(&self) -> Result<PooledConnection<DbManager>, StoreError> {
        self.pool.get().map_err(|e| {
            // r2d2 reports only "timed out"; try once directly to get the real cause.
            let cause = match (DbManager {
                url: self.url.clone(),
            })
            .open()
            {
                Err(r2d2::Error::ConnectionError(c)) => c.to_string(),
                Err(other) => other.to_string(),
                Ok(_) => e.to_string(),
            };
            StoreError::Unavailable(format!("{}: {}", self.url.redacted(), cause.trim()))
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
        result
    }

    /// Runs blocking store work on tokio's blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
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
            applied.map_err(|e| StoreError::Schema(format!("migration failed: {e}")))
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
                    .map_err(|e| StoreError::Schema(e.to_string()))?
                    .iter()
                    .map(|m| m.name().version().to_string())
                    .collect()
                }
                DbConnection::Sqlite(_) => diesel::migration::MigrationSource::<
                    diesel::sqlite::Sqlite,
                >::migrations(&SQLITE_MIGRATIONS)
                .map_err(|e| StoreError::Schema(e.to_string()))?
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
        Err(StoreError::Schema(format!(
            "{}: {} pending migration(s) ({}): {how}",
            self.url.redacted(),
            pending.len(),
            pending.join(", ")
        )))
    }

    /// A cheap query that proves the database answers and the client table is readable.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.generation().map(|_| ())
    }

    /// The change counter bumped by every write to `clients`.
    pub fn generation(&self) -> Result<i64, StoreError> {
        self.with_conn(|conn| {
            Ok(store_state::table
                .find(1)
                .select(store_state::generation)
                .first::<i64>(conn)?)
        })
    }

    pub fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        self.with_conn(|conn| {
            let row = clients::table
                .find(id)
                .select(ClientRow::as_select())
                .first::<ClientRow>(conn)
                .optional()?;
            Ok(row.map(Client::from))
        })
    }

    pub fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        self.with_conn(|conn| {
            let rows = clients::table
                .order(clients::created_at.asc())
                .then_order_by(clients::client_id.asc())
                .select(ClientRow::as_select())
                .load::<ClientRow>(conn)?;
            Ok(rows.into_iter().map(Client::from).collect())
        })
    }

    fn bump(conn: &mut DbConnection) -> Result<(), diesel::result::Error> {
        diesel::update(store_state::table.find(1))
            .set(store_state::generation.eq(store_state::generation + 1))
            .execute(conn)
            .map(|_| ())
    }

    pub fn insert_client(&self, new: NewClient) -> Result<Client, StoreError> {
        let now = now_unix();
        let row = ClientRow {
            client_id: new.client_id.to_string(),
            name: new.name,
            secret_hash: new.secret_hash,
            grant_types: new.grant_types.join(" "),
            resources: join(&new.resources),
            scopes: join(&new.scopes),
            enabled: true,
            created_at: now,
            updated_at: now,
        };
        self.with_conn(|conn| {
            conn.transaction(|c| {
                diesel::insert_into(clients::table)
                    .values(&row)
                    .execute(c)?;
                Self::bump(c)
            })?;
            Ok(())
        })?;
        Ok(row.into())
    }

    pub fn update_client(&self, id: &str, changes: ClientChanges) -> Result<Client, StoreError> {
        let row = self.with_conn(|conn| {
            Ok(conn.transaction(|c| {
                let Some(mut row) = clients::table
                    .find(id)
                    .select(ClientRow::as_select())
                    .first::<ClientRow>(c)
                    .optional()?
                else {
                    return Ok(None);
                };
                if let Some(g) = changes.grant_types {
                    row.grant_types = g.join(" ");
                }
                if let Some(r) = changes.resources {
                    row.resources = join(&r);
                }
                if let Some(s) = changes.scopes {
                    row.scopes = join(&s);
                }
                if let Some(h) = changes.secret_hash {
                    row.secret_hash = h;
                }
                if let Some(e) = changes.enabled {
                    row.enabled = e;
                }
                row.updated_at = now_unix();
                diesel::update(clients::table.find(id))
                    .set(&row)
                    .execute(c)?;
                Self::bump(c)?;
                Ok::<_, diesel::result::Error>(Some(row))
            })?)
        })?;
        row.map(Client::from)
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))
    }

    pub fn remove_client(&self, id: &str) -> Result<(), StoreError> {
        let n = self.with_conn(|conn| {
            Ok(conn.transaction(|c| {
                let n = diesel::delete(clients::table.find(id)).execute(c)?;
                if n > 0 {
                    Self::bump(c)?;
                }
                Ok::<_, diesel::result::Error>(n)
            })?)
        })?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_owned()));
        }
        Ok(())
    }
}

/// Creates a missing SQLite database file, and the directories above it, readable by the
/// owner only: the file holds the clients' argon2 hashes. SQLite gives its `-wal` and `-shm`
/// files the mode of the database file. An existing file or directory is left as it is.
fn create_sqlite_file(path: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let failed = |path: &std::path::Path, e: std::io::Error| {
        StoreError::Unavailable(format!("cannot create {}: {e}", path.display()))
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
