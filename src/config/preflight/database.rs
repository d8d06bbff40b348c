//! `[database] url`: a SQLite file that `serve` can open or create, or a PostgreSQL server
//! that answers within `connect_timeout_secs`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use diesel::Connection;

use super::paths::{creatable, kind, writable, Uncreatable};
use super::plan::Report;
use crate::config::types::{DatabaseConfig, DatabaseUrl};

const KEY: &str = "`[database] url`";

pub(super) fn check_database(db: &DatabaseConfig, r: &mut Report) {
    match &db.url {
        DatabaseUrl::Sqlite(path) => check_sqlite(path, r),
        DatabaseUrl::Postgres(url) => {
            if let Err(e) = connect(url, db.connect_timeout) {
                // Not the file's fault: the server may come back (see `Report::unavailable`).
                r.unavailable(
                    KEY,
                    format!(
                        "cannot connect to {} within {} s: {e}",
                        db.url.redacted(),
                        db.connect_timeout.as_secs()
                    ),
                );
            }
        }
    }
}

/// The daemon migrates and writes SQLite itself, so the file must be writable or creatable,
/// and so must its directory: SQLite keeps its `-wal` and `-shm` files beside the database.
fn check_sqlite(path: &Path, r: &mut Report) {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o004 != 0 {
                r.warning(
                    KEY,
                    format!(
                        "{shown} holds the clients' argon2 hashes and every user may read it \
                         (mode {mode:o}): run `chmod 600 {shown}`"
                    ),
                );
            }
            let dir = parent(path);
            if let Err(e) = writable(path) {
                r.problem(KEY, format!("{shown} cannot be written: {e}"));
            } else if let Err(e) = writable(dir) {
                r.problem(
                    KEY,
                    format!(
                        "{} cannot be written: {e} (SQLite keeps its -wal and -shm files \
                         beside {shown})",
                        dir.display()
                    ),
                );
            }
        }
        Ok(m) => r.problem(
            KEY,
            format!("{shown} is {}, not a database file", kind(m.file_type())),
        ),
        Err(e) => match creatable(path, e) {
            Ok(()) => {}
            Err(Uncreatable::Unreadable(e)) => r.problem(KEY, format!("{shown}: {e}")),
            Err(e) => r.problem(KEY, format!("{shown} cannot be created: {e}")),
        },
    }
}

/// The directory of `path` ("." for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Why the PostgreSQL server did not answer.
#[derive(Debug, thiserror::Error)]
enum Unreachable {
    #[error("{}", .0.to_string().trim())]
    Connect(#[source] diesel::ConnectionError),
    #[error("no answer")]
    TimedOut,
}

/// Opens one connection and closes it again.
fn connect(url: &str, timeout: Duration) -> Result<(), Unreachable> {
    let url = with_connect_timeout(url, timeout);
    let (tx, rx) = std::sync::mpsc::channel();
    // libpq's connect_timeout bounds each connection attempt; the name lookup before it has no
    // bound of its own, so the attempt runs on a thread this check stops waiting for. libpq
    // rounds a timeout below 2 s up to 2 s, hence the margin.
    std::thread::spawn(move || {
        let _ = tx.send(diesel::PgConnection::establish(&url).map(drop));
    });
    match rx.recv_timeout(timeout + Duration::from_secs(2)) {
        Ok(result) => result.map_err(Unreachable::Connect),
        Err(_) => Err(Unreachable::TimedOut),
    }
}

/// `url` with libpq's `connect_timeout` set to `timeout`, unless the URL sets it itself.
fn with_connect_timeout(url: &str, timeout: Duration) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    if parsed.query_pairs().any(|(k, _)| k == "connect_timeout") {
        return url.to_owned();
    }
    parsed
        .query_pairs_mut()
        .append_pair("connect_timeout", &timeout.as_secs().max(1).to_string());
    parsed.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connect_timeout_is_added_unless_the_url_sets_one() {
        let five = Duration::from_secs(5);
        assert_eq!(
            with_connect_timeout("postgres://u:p@db/x", five),
            "postgres://u:p@db/x?connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://db/x?sslmode=require", five),
            "postgres://db/x?sslmode=require&connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://db/x?connect_timeout=1", five),
            "postgres://db/x?connect_timeout=1"
        );
    }
}
