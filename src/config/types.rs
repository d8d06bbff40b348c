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
pub use ipnet::IpNet;

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
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole body to the token endpoint.
    pub body_timeout: Duration,
    /// Idle time after which a keep-alive (or HTTP/2) connection is closed.
    pub keepalive_timeout: Duration,
    /// Connections `listen` accepts at once; `None`: sized at start from the open-file limit.
    pub max_connections: Option<usize>,
    /// Connections the admin listener accepts at once, apart from `max_connections`.
    pub admin_max_connections: usize,
    /// Peers whose `Forwarded` / `X-Forwarded-For` headers are believed (none by default).
    pub trusted_proxies: Vec<IpNet>,
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
    /// The algorithm of new signing keys.
    pub signing_alg: SigningAlg,
    /// How long a new key is published before it signs.
    pub publish_before_sign: Duration,
    /// Age at which a new key is made; `None`: keys are rotated by hand.
    pub rotate_after: Option<Duration>,
}

/// A JWS algorithm for signing keys (RFC 7518 section 3.1, RFC 8037 section 3.1): the keys'
/// own type, so that the configuration and the key files speak of the same thing.
pub use crate::keys::Alg as SigningAlg;

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
    /// How long a cached verified secret is still accepted while the database does not answer;
    /// zero: requests are refused then.
    pub serve_cached_when_db_down: Duration,
    pub limits: AuthLimits,
}

/// Token buckets for failed client authentications (`[auth.limits]`); every value is at
/// least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    pub client_burst: u32,
    pub client_refill_per_minute: u32,
    pub address_burst: u32,
    pub address_refill_per_minute: u32,
    /// Buckets kept at most, client ids and addresses together.
    pub max_tracked: usize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            client_burst: 10,
            client_refill_per_minute: 10,
            address_burst: 30,
            address_refill_per_minute: 60,
            max_tracked: 100_000,
        }
    }
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
    /// The JWKS endpoints of the auth nodes (at least one).
    JwksUrl(Vec<String>),
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
    /// The largest document a route may serve, in bytes.
    pub max_document_bytes: u64,
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

/// The leeway a resource server allows when none is configured here (an auth-only node): the
/// default of `[resource] leeway_secs`.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

impl Config {
    /// The rotation rules of `[keys]`: a retired key stays published for the token lifetime
    /// plus the leeway (this node's, or the default on an auth-only node, whose resource
    /// servers are configured elsewhere), so every token it signed can still be verified.
    pub fn key_schedule(&self) -> Option<crate::keys::Schedule> {
        let keys = self.keys.as_ref()?;
        let defaults = crate::keys::Schedule::default();
        let lifetime = self
            .auth
            .as_ref()
            .map_or(defaults.retire_grace.saturating_sub(DEFAULT_LEEWAY), |a| {
                a.token_lifetime
            });
        let leeway = self.resource.as_ref().map_or(DEFAULT_LEEWAY, |r| r.leeway);
        Some(crate::keys::Schedule {
            signing_alg: keys.signing_alg,
            publish_before_sign: keys.publish_before_sign,
            retire_grace: lifetime + leeway,
        })
    }

    /// The auth role's settings, if this node plays it.
    pub fn auth_role(&self) -> Option<AuthRole<'_>> {
        Some(AuthRole {
            auth: self.auth.as_ref()?,
            database: self.database.as_ref()?,
            keys: self.keys.as_ref()?,
        })
    }
}
