//! The validated configuration: the types the rest of the daemon reads.
//!
//! Every value here has passed validation ([`super::Config::load`]): addresses parse, ranges
//! hold, and a node with the auth role has its database, keys and `[auth]` section. Nothing in
//! this module reads the file system; what the files on disk look like is the preflight's
//! business ([`super::preflight`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use super::database_url::{DatabaseUrl, DatabaseUrlError};
use crate::domain::{Resource, Scope};

/// Paths the daemon answers itself; routes may not take them.
pub const RESERVED_PREFIX: &str = "/.well-known/";

/// The roles a node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub auth: bool,
    pub resource: bool,
}

/// Output format of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub shutdown_grace: Duration,
    pub admin_listen: Option<SocketAddr>,
    pub tls: Option<TlsConfig>,
}

/// Certificate and key files for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub pool_size: u32,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct KeysConfig {
    pub dir: PathBuf,
}

/// argon2id cost parameters for newly hashed secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// OWASP's recommended argon2id configuration (m=19456 KiB, t=2, p=1).
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The issuer URL, without a trailing slash.
    pub issuer: String,
    pub token_path: String,
    pub token_lifetime: Duration,
    pub realm: String,
    pub argon2: Argon2Params,
    pub max_concurrent_hashes: usize,
    pub credential_cache_ttl: Duration,
    pub credential_cache_size: usize,
}

/// Where the resource server gets the public keys that verify tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The private keys in `[keys] dir` (a node with both roles).
    Local(PathBuf),
    /// A JWKS document on disk.
    JwksFile(PathBuf),
    /// A directory of SubjectPublicKeyInfo PEM files.
    PublicKeysDir(PathBuf),
    /// The auth server's JWKS endpoint.
    JwksUrl(String),
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub path: String,
    pub file: PathBuf,
    pub audience: Resource,
    pub scope: Option<Scope>,
}

#[derive(Debug, Clone)]
pub struct ResourceConfig {
    pub issuer: String,
    pub realm: String,
    pub leeway: Duration,
    pub key_source: KeySource,
    pub jwks_refresh: Duration,
    pub jwks_min_refetch: Duration,
    /// Validated tokens kept in memory (0: none).
    pub token_cache_size: usize,
    pub routes: Vec<RouteConfig>,
}

/// The checked configuration. Sections that a role does not need are `None`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from (named in every message).
    pub file: PathBuf,
    pub roles: Roles,
    pub server: ServerConfig,
    pub log: LogConfig,
    pub database: Option<DatabaseConfig>,
    pub keys: Option<KeysConfig>,
    pub auth: Option<AuthConfig>,
    pub resource: Option<ResourceConfig>,
}

/// What the auth role needs, all present: validation guarantees that a node with the auth
/// role has `[database]`, `[keys]` and `[auth]`.
#[derive(Debug, Clone, Copy)]
pub struct AuthRole<'a> {
    pub auth: &'a AuthConfig,
    pub database: &'a DatabaseConfig,
    pub keys: &'a KeysConfig,
}

impl Config {
    /// The auth role's settings, if this node plays it.
    pub fn auth_role(&self) -> Option<AuthRole<'_>> {
        Some(AuthRole {
            auth: self.auth.as_ref()?,
            database: self.database.as_ref()?,
            keys: self.keys.as_ref()?,
        })
    }
}
