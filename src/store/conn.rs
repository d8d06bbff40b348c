//! Connections: one Diesel connection type for SQLite and PostgreSQL, chosen by the URL
//! scheme, and the r2d2 manager that opens them (applying SQLite's pragmas to each).

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};

use std::sync::Arc;

use super::health::Health;
use crate::config::DatabaseUrl;

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Connect(#[from] diesel::ConnectionError),
    #[error(transparent)]
    Pool(#[from] r2d2::PoolError),
    /// The connection died under a query (the server went away).
    #[error("connection lost: {0}")]
    Lost(#[source] diesel::result::Error),
}

/// One connection type for both backends; the variant follows the URL scheme.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

/// r2d2 manager that opens the right backend and applies SQLite pragmas to every connection.
#[derive(Debug, Clone)]
pub struct DbManager {
    pub(super) url: DatabaseUrl,
    /// Counts the outages seen (see [`Health::outages`]): a connection opened before the last
    /// one is not handed out again.
    pub(super) health: Arc<Health>,
}

/// A pooled connection and whether it has failed.
pub struct Conn {
    pub(super) db: DbConnection,
    /// Set when a query on this connection failed. The cause may be a socket that died with a
    /// database restart, which nothing else would notice: back in the pool it would fail every
    /// request it serves. A new connection costs little next to that, so a connection that saw
    /// an error is never reused (see [`DbManager::has_broken`]).
    pub(super) failed: bool,
    /// How many outages had been seen when it was opened.
    born: u64,
}

impl ManageConnection for DbManager {
    type Connection = Conn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<Conn, r2d2::Error> {
        let born = self.health.outages();
        self.open()
            .map(|db| Conn {
                db,
                failed: false,
                born,
            })
            .map_err(|e| match e {
                ConnectError::Connect(c) => r2d2::Error::ConnectionError(c),
                ConnectError::Pool(p) => r2d2::Error::ConnectionError(
                    diesel::ConnectionError::BadConnection(p.to_string()),
                ),
                ConnectError::Lost(q) => r2d2::Error::QueryError(q),
            })
    }

    /// Checked when a connection leaves the pool, without a query: one opened before the last
    /// outage is most likely a socket to a server that went away, and is replaced rather than
    /// failing the request it would serve.
    fn is_valid(&self, conn: &mut Conn) -> Result<(), r2d2::Error> {
        if conn.born < self.health.outages() {
            return Err(r2d2::Error::ConnectionError(
                diesel::ConnectionError::BadConnection("opened before an outage".into()),
            ));
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.failed
    }
}

impl DbManager {
    pub(super) fn open(&self) -> Result<DbConnection, ConnectError> {
        match &self.url {
            DatabaseUrl::Postgres(url) => {
                Ok(diesel::PgConnection::establish(url).map(DbConnection::Postgres)?)
            }
            DatabaseUrl::Sqlite(path) => {
                let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())?;
                // WAL lets the daemon read while the CLI writes; busy_timeout makes a writer
                // wait for a lock instead of failing at once.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
                .map_err(ConnectError::Lost)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}
