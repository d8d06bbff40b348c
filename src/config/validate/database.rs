//! `[database]`.

use std::time::Duration;

use crate::config::error::Problems;
use crate::config::file::RawDatabase;
use crate::config::types::{DatabaseConfig, DatabaseUrl};

pub(super) fn validate_database(raw: RawDatabase, p: &mut Problems) -> Option<DatabaseConfig> {
    let url = match raw.url.as_deref() {
        None => {
            p.missing("`[database] url`", "missing (e.g. \"sqlite:///var/lib/steelcut/steelcut.db\" or \"postgres://steelcut@db/steelcut\")");
            None
        }
        Some(u) => match DatabaseUrl::parse(u) {
            Ok(u) => Some(u),
            Err(e) => {
                p.push("`[database] url`", e.to_string());
                None
            }
        },
    };
    let pool_size = raw.pool_size.unwrap_or(8);
    if pool_size == 0 {
        p.push("`[database] pool_size`", "must be at least 1");
    }
    Some(DatabaseConfig {
        url: url?,
        pool_size: pool_size.max(1),
        connect_timeout: Duration::from_secs(raw.connect_timeout_secs.unwrap_or(5).max(1)),
    })
}
