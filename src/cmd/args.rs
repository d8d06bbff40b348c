//! Options shared by several commands: `--config` and the database options of the admin
//! commands.

use std::path::PathBuf;

use clap::Args;

/// `--config`, shared by every command that reads the configuration.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// The configuration file.
    #[arg(
        long,
        short = 'c',
        env = "STEELCUT_CONFIG",
        default_value = "/etc/steelcut.toml"
    )]
    pub config: PathBuf,
}

/// `check-config`'s options.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Do not try to reach the database. The unit's `ExecReload=` uses this: a reload re-reads
    /// the file and must not be refused because the database is down at that moment.
    #[arg(long)]
    pub no_database: bool,
}

/// Options of commands that talk to the client store.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Use this database instead of `[database] url` (e.g. the owning role's URL for admin work
    /// while the daemon runs as a read-only role). The config file is then optional. A password
    /// on the command line is visible to every local user in `ps`: prefer the environment
    /// variable, `--database-url-file`, or libpq's `~/.pgpass` (`PGPASSFILE`) with a URL
    /// without password.
    #[arg(
        long,
        env = "STEELCUT_ADMIN_DATABASE_URL",
        conflicts_with = "database_url_file"
    )]
    pub database_url: Option<String>,
    /// Read the database URL from this file (its first line), so that a password stays out of
    /// `ps` and shell history.
    #[arg(long)]
    pub database_url_file: Option<PathBuf>,
}

/// Largest `--database-url-file` read.
const MAX_URL_FILE_BYTES: u64 = 4096;

impl DbArgs {
    /// The database URL asked for on the command line, the environment or a file, if any. A
    /// password given on the command line itself gets a warning on stderr.
    pub fn url(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.database_url_file {
            let bytes = crate::files::read_regular(path, MAX_URL_FILE_BYTES)
                .map_err(|e| anyhow::anyhow!("--database-url-file {}: {e}", path.display()))?;
            let text = String::from_utf8_lossy(&bytes);
            let url = text.lines().next().unwrap_or("").trim().to_owned();
            if url.is_empty() {
                anyhow::bail!("--database-url-file {}: the file is empty", path.display());
            }
            return Ok(Some(url));
        }
        if let Some(url) = &self.database_url {
            if given_on_command_line() && has_password(url) {
                eprintln!(
                    "warning: --database-url carries a password, which every local user can read \
                     in `ps`; use STEELCUT_ADMIN_DATABASE_URL, --database-url-file, or ~/.pgpass \
                     with a URL without password"
                );
            }
        }
        Ok(self.database_url.clone())
    }
}

/// Whether `--database-url` was typed on the command line (rather than taken from
/// `STEELCUT_ADMIN_DATABASE_URL`).
fn given_on_command_line() -> bool {
    std::env::args_os().any(|a| {
        let a = a.to_string_lossy();
        a == "--database-url" || a.starts_with("--database-url=")
    })
}

fn has_password(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.password().is_some_and(|p| !p.is_empty()))
}
