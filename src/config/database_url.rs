//! `[database] url`: which backend holds the clients, decided by the URL scheme.

use std::path::PathBuf;

/// Where the client store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Why a string is not a database URL. Each message says what a good one looks like.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseUrlError {
    #[error("`sqlite://` needs a file path, e.g. sqlite:///var/lib/steelcut/steelcut.db")]
    SqliteWithoutPath,
    #[error("not a valid PostgreSQL URL: {0}")]
    Postgres(#[source] url::ParseError),
    #[error("a PostgreSQL URL needs a host, e.g. postgres://user:pass@db.example/steelcut")]
    PostgresWithoutHost,
    #[error(
        "must start with sqlite:// or postgres:// (e.g. sqlite:///var/lib/steelcut/steelcut.db)"
    )]
    UnknownScheme,
}

impl DatabaseUrl {
    /// Parses `sqlite://PATH` or `postgres://...` / `postgresql://...`.
    pub fn parse(s: &str) -> Result<Self, DatabaseUrlError> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(DatabaseUrlError::SqliteWithoutPath);
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let url = url::Url::parse(s).map_err(DatabaseUrlError::Postgres)?;
            if url.host_str().unwrap_or("").is_empty() {
                return Err(DatabaseUrlError::PostgresWithoutHost);
            }
            return Ok(Self::Postgres(s.to_owned()));
        }
        Err(DatabaseUrlError::UnknownScheme)
    }

    /// The URL with any password removed, for logs and messages.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite://{}", p.display()),
            Self::Postgres(s) => match url::Url::parse(s) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    u.to_string()
                }
                Err(_) => "postgres://(unparsable)".into(),
            },
        }
    }

    /// Whether the URL itself carries a password (`postgres://user:PASSWORD@host/db`), which
    /// makes the file that holds it a secret.
    pub fn has_password(&self) -> bool {
        match self {
            Self::Sqlite(_) => false,
            Self::Postgres(s) => url::Url::parse(s).is_ok_and(|u| u.password().is_some()),
        }
    }
}
