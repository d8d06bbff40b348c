//! Client changes pushed by PostgreSQL: a dedicated connection LISTENs on `steelcut_clients`,
//! which the `change_triggers` migration notifies on every change to the client table (from the
//! CLI or from plain SQL), and each notification is handed to a callback within a fraction of a
//! second. The change counter the auth role polls stays the fallback: it covers a lost listener
//! connection, and it is the only path on a hot standby, where LISTEN does not exist (the
//! listener notices that and stops, once, with a log line).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;

/// How often pending notifications are collected (a non-blocking read of the socket).
const POLL: Duration = Duration::from_millis(50);
/// How often the connection proves it is alive (a dead peer would otherwise go unnoticed).
const KEEPALIVE: Duration = Duration::from_secs(5);
/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The channel the triggers notify.
pub const CHANNEL: &str = "steelcut_clients";
/// The listening connection's `application_name`, as `pg_stat_activity` shows it.
pub const APPLICATION_NAME: &str = "steelcutd listener";

/// A running listener; it stops when this is dropped.
#[derive(Debug)]
pub struct Listener {
    stop: Arc<AtomicBool>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// What a notification says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// One client, by id.
    Client(String),
    /// Possibly any client (a TRUNCATE).
    All,
}

/// Starts listening on `url` (a PostgreSQL URL) on a thread of its own; `on_change` runs on that
/// thread for every change.
pub fn spawn(
    url: String,
    on_change: impl Fn(Changed) + Send + 'static,
) -> std::io::Result<Listener> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("pg-listen".into())
        .spawn(move || run(&url, &flag, &on_change))?;
    Ok(Listener { stop })
}

/// Why a listening session ended.
enum End {
    Stopped,
    Standby,
    Failed(diesel::result::Error),
    Unreachable(diesel::ConnectionError),
}

fn run(url: &str, stop: &AtomicBool, on_change: &dyn Fn(Changed)) {
    let mut backoff = Duration::from_millis(100);
    let mut sessions = 0u64;
    loop {
        match session(url, stop, on_change, sessions) {
            End::Stopped => return,
            End::Standby => {
                tracing::info!(
                    "the database is a hot standby, where LISTEN does not exist: client changes \
                     arrive through the change counter (within a second)"
                );
                return;
            }
            End::Failed(error) => tracing::debug!(%error, "client change listener lost"),
            End::Unreachable(error) => {
                tracing::debug!(%error, "client change listener cannot connect")
            }
        }
        sessions += 1;
        // Notifications sent while reconnecting are lost, but not the changes: the triggers
        // also bump the change counter, which the probe reads. Forgetting everything here
        // would empty the cache at the start of every database outage.
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(POLL);
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: LISTEN, then collect notifications until told to stop or the connection
/// fails.
fn session(url: &str, stop: &AtomicBool, on_change: &dyn Fn(Changed), n: u64) -> End {
    let mut conn = match PgConnection::establish(url) {
        Ok(c) => c,
        Err(e) => return End::Unreachable(e),
    };
    // Named, so that a DBA can tell it in `pg_stat_activity` (whose `query` column shows the
    // keepalive's `SELECT 1` after the first few seconds, not the LISTEN).
    if let Err(e) =
        diesel::sql_query(format!("SET application_name = '{APPLICATION_NAME}'")).execute(&mut conn)
    {
        return End::Failed(e);
    }
    if let Err(e) = diesel::sql_query(format!("LISTEN {CHANNEL}")).execute(&mut conn) {
        return if e.to_string().contains("during recovery") {
            End::Standby
        } else {
            End::Failed(e)
        };
    }
    if n > 0 {
        tracing::debug!("client change listener reconnected");
    }
    let mut checked = Instant::now();
    while !stop.load(Ordering::Acquire) {
        for notification in conn.notifications_iter() {
            match notification {
                Ok(n) if n.payload == "*" => on_change(Changed::All),
                Ok(n) => on_change(Changed::Client(n.payload)),
                Err(e) => return End::Failed(e),
            }
        }
        if checked.elapsed() >= KEEPALIVE {
            if let Err(e) = diesel::sql_query("SELECT 1").execute(&mut conn) {
                return End::Failed(e);
            }
            checked = Instant::now();
        }
        std::thread::sleep(POLL);
    }
    End::Stopped
}
