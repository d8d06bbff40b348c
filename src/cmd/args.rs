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

/// Options of commands that talk to the client store.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Use this database instead of `[database] url` (e.g. the owning role's URL for admin work
    /// while the daemon runs as a read-only role). The config file is then optional.
    #[arg(long, env = "STEELCUT_ADMIN_DATABASE_URL")]
    pub database_url: Option<String>,
}
