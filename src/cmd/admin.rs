//! What the admin commands share: the configuration and the store they work with, `migrate`,
//! and output helpers. The commands themselves are in the `clients` and `keys` modules beside this one.

use std::io::Write;

use anyhow::{anyhow, bail, Result};

use super::args::{ConfigArg, DbArgs};
use crate::config::{Argon2Params, Config, DatabaseConfig, DatabaseUrl};
use crate::store::Store;

/// Loads the config through the same path as `serve`.
pub fn load_config(arg: &ConfigArg) -> Result<Config> {
    Ok(Config::load(&arg.config)?)
}

/// The store and hashing parameters an admin command works with: `--database-url` wins over
/// the config, and with it the config file may be absent.
fn admin_context(db: &DbArgs) -> Result<(Store, Argon2Params)> {
    let url = db.url()?;
    let config = match (&url, db.config.config.exists()) {
        (Some(_), false) => None,
        _ => Some(load_config(&db.config)?),
    };
    let params = config
        .as_ref()
        .and_then(|c| c.auth.as_ref())
        .map(|a| a.argon2)
        .unwrap_or_default();
    let database = match (&url, config.as_ref().and_then(|c| c.database.clone())) {
        (Some(url), base) => DatabaseConfig {
            url: DatabaseUrl::parse(url).map_err(|e| anyhow!("--database-url: {e}"))?,
            pool_size: 1,
            connect_timeout: base
                .map(|b| b.connect_timeout)
                .unwrap_or(std::time::Duration::from_secs(5)),
        },
        (None, Some(d)) => DatabaseConfig { pool_size: 1, ..d },
        (None, None) => bail!(
            "{}: no [database] url; add one or pass --database-url",
            db.config.config.display()
        ),
    };
    Ok((Store::open(&database)?, params))
}

/// [`admin_context`] for commands that use the client table: the schema must be up to date,
/// and if it is not the message says how to fix it (rather than naming a missing table).
pub fn client_context(db: &DbArgs) -> Result<(Store, Argon2Params)> {
    let (store, params) = admin_context(db)?;
    store.require_migrated()?;
    Ok((store, params))
}

/// `migrate`.
pub fn migrate(db: &DbArgs) -> Result<()> {
    let (store, _) = admin_context(db)?;
    store.require_primary()?;
    let applied = store.migrate()?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        for m in applied {
            println!("applied {m}");
        }
    }
    Ok(())
}

/// Prints `v` as pretty JSON on standard output.
pub fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}
