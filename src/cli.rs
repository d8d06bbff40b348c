//! The command line: `serve`, `check-config`, `migrate`, `client ...`, `keys ...`, and the
//! client-side helpers `token` and `get`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// steelcutd: OAuth 2.0 client-credentials authorization server and JSON resource server.
#[derive(Debug, Parser)]
#[command(name = "steelcutd", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve(ConfigArg),
    /// Validate the configuration exactly as `serve` would, print every problem, exit non-zero
    /// if there is one.
    CheckConfig(ConfigArg),
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

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints its id and secret once.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// Display name.
        #[arg(long)]
        name: String,
        /// A resource (audience) the client may request; repeat for several.
        #[arg(long = "resource", required = true)]
        resources: Vec<String>,
        /// A scope the client may request; repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// The grant type the client may use.
        #[arg(long, default_value = "client_credentials")]
        grant_type: String,
    },
    /// Change a client. Options not given stay as they are.
    Update {
        #[command(flatten)]
        db: DbArgs,
        /// The client id.
        id: String,
        /// Replace the allowed grant type.
        #[arg(long)]
        grant_type: Option<String>,
        /// Replace the allowed resources; repeat for several.
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// Replace the allowed scopes; repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Remove every scope.
        #[arg(long, conflicts_with = "scopes")]
        clear_scopes: bool,
        /// Generate a new secret (printed once); the old one stops working.
        #[arg(long)]
        new_secret: bool,
        /// Refuse tokens to this client.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Allow tokens to this client again.
        #[arg(long)]
        enable: bool,
    },
    /// Delete a client.
    Remove {
        #[command(flatten)]
        db: DbArgs,
        /// The client id.
        id: String,
    },
    /// List clients (never secrets or hashes).
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one client as JSON (never its secret or hash).
    Show {
        #[command(flatten)]
        db: DbArgs,
        /// The client id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new signing key; it signs from the next start or reload.
    Generate {
        #[command(flatten)]
        config: ConfigArg,
        /// Key directory (default: `[keys] dir` of the config).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// List keys: kid, creation time, which one signs.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Write the public JWKS (for resource-only nodes' `jwks_file`).
    ExportPublic {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// How to obtain a token from an authorization server.
#[derive(Debug, Clone, Args)]
pub struct TokenSource {
    /// The token endpoint, e.g. http://127.0.0.1:8080/token.
    #[arg(long)]
    pub token_url: Option<String>,
    /// The client id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// A file holding the client secret (otherwise `STEELCUT_CLIENT_SECRET`).
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// Refused: a secret on the command line is visible to every user in `ps`.
    #[arg(long, hide = true)]
    pub client_secret: Option<String>,
    /// How to send the client credentials (RFC 6749 section 2.3.1).
    #[arg(long, value_enum, default_value_t = AuthMethod::Basic)]
    pub auth_method: AuthMethod,
    /// The resource to request (RFC 8707); repeat for several.
    #[arg(long = "resource")]
    pub resources: Vec<String>,
    /// Space-separated scopes to request.
    #[arg(long)]
    pub scope: Option<String>,
    /// Do not read or write the token cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Token cache file (default: `$XDG_CACHE_HOME/steelcut/tokens.json`).
    #[arg(long)]
    pub cache_file: Option<PathBuf>,
    /// Reuse a cached token only while it has more than this many seconds left.
    #[arg(long, default_value_t = 60)]
    pub margin_secs: u64,
}

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMethod {
    /// HTTP Basic (`client_secret_basic`), which every server must support.
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`), as the
    /// original client sent them.
    Post,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub source: TokenSource,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The resource URL, e.g. http://127.0.0.1:8080/api_v0.0.1.
    pub url: String,
    /// Use this access token instead of requesting one (`-` reads it from standard input).
    #[arg(long, conflicts_with = "token_url")]
    pub token: Option<String>,
    #[command(flatten)]
    pub source: TokenSource,
}
