//! The command line: `serve`, `check-config`, `migrate`, `client ...`, `keys ...`, and the
//! client-side helpers `token` and `get`.

use clap::{Parser, Subcommand};

use super::args::{CheckArgs, ConfigArg, DbArgs};
use super::client::{GetArgs, TokenArgs};
use super::clients::ClientCommand;
use super::keys::KeysCommand;

/// steelcutd: OAuth 2.0 client-credentials authorization server and JSON resource server.
#[derive(Debug, Parser)]
#[command(name = "steelcutd", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve(ConfigArg),
    /// Validate the configuration exactly as `serve` would, print every problem, exit non-zero
    /// if there is one.
    CheckConfig(CheckArgs),
    /// Apply pending database migrations (run as the role that owns the schema).
    Migrate(DbArgs),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Get an access token (client credentials grant) and print it.
    Token(TokenArgs),
    /// Fetch a protected resource and print it.
    Get(GetArgs),
}
