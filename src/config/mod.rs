//! The validated configuration the daemon runs with.
//!
//! Loading happens in two stages: the TOML text (plus `STEELCUT_<SECTION>_<KEY>` environment
//! overrides) is deserialized into the raw structs of [`file`], then [`Config::load`] checks
//! every value and returns either a [`Config`] whose fields can be trusted or a
//! [`ConfigError`] listing *all* problems, each naming the key and the file. `check-config`,
//! `serve` and SIGHUP reloads all go through [`Config::load`], so they agree on what is valid.

pub mod error;
pub mod file;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use error::Problems;
pub use error::{ConfigError, Problem};
use file::{
    RawArgon2, RawAuth, RawDatabase, RawFile, RawKeys, RawLog, RawResource, RawRoute, RawServer,
};

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
    /// A connection must complete each request head within this.
    pub header_read_timeout: Duration,
    /// The token endpoint's whole request body must arrive within this.
    pub body_timeout: Duration,
    /// An idle keep-alive connection (HTTP/1.1 or HTTP/2) is closed after this.
    pub keepalive_timeout: Duration,
    /// Open connections on `listen`; `None`: sized at start from the open-file limit.
    pub max_connections: Option<usize>,
    /// Open connections on `admin_listen`, kept apart so health checks answer during a flood.
    pub admin_max_connections: usize,
    /// Proxies whose `Forwarded`/`X-Forwarded-For` headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
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

/// Where the client store lives, decided by the URL scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses `sqlite://PATH` or `postgres://...` / `postgresql://...`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(
                    "`sqlite://` needs a file path, e.g. sqlite:///var/lib/steelcut/steelcut.db"
                        .into(),
                );
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let url = url::Url::parse(s).map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
            if url.host_str().unwrap_or("").is_empty() {
                return Err(
                    "a PostgreSQL URL needs a host, e.g. postgres://user:pass@db.example/steelcut"
                        .into(),
                );
            }
            return Ok(Self::Postgres(s.to_owned()));
        }
        Err("must start with sqlite:// or postgres:// (e.g. sqlite:///var/lib/steelcut/steelcut.db)".into())
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
    /// How long verified credentials keep answering once the database is down (0: not at all).
    pub serve_cached_when_db_down: Duration,
    /// Throttling of failed client authentication (`[auth.limits]`).
    pub limits: crate::auth::limits::Policy,
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
    /// Largest route document served; bigger files are refused without being read.
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

/// Kinds of value an environment override may carry.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    List,
}

/// Every key that `STEELCUT_<SECTION>_<KEY>` may override (routes are per-file only).
const ENV_KEYS: &[(&str, &str, Kind)] = &[
    ("", "roles", Kind::List),
    ("server", "listen", Kind::Str),
    ("server", "shutdown_grace_secs", Kind::Int),
    ("server", "admin_listen", Kind::Str),
    ("server.tls", "cert", Kind::Str),
    ("server.tls", "key", Kind::Str),
    ("log", "level", Kind::Str),
    ("log", "format", Kind::Str),
    ("database", "url", Kind::Str),
    ("database", "pool_size", Kind::Int),
    ("database", "connect_timeout_secs", Kind::Int),
    ("keys", "dir", Kind::Str),
    ("auth", "issuer", Kind::Str),
    ("auth", "token_path", Kind::Str),
    ("auth", "token_lifetime_secs", Kind::Int),
    ("auth", "realm", Kind::Str),
    ("auth", "max_concurrent_hashes", Kind::Int),
    ("auth", "credential_cache_secs", Kind::Int),
    ("auth", "credential_cache_size", Kind::Int),
    ("auth", "serve_cached_when_db_down_secs", Kind::Int),
    ("auth.argon2", "memory_kib", Kind::Int),
    ("auth.argon2", "iterations", Kind::Int),
    ("auth.argon2", "parallelism", Kind::Int),
    ("resource", "issuer", Kind::Str),
    ("resource", "realm", Kind::Str),
    ("resource", "leeway_secs", Kind::Int),
    ("resource", "keys", Kind::Str),
    ("resource", "jwks_file", Kind::Str),
    ("resource", "public_keys_dir", Kind::Str),
    ("resource", "jwks_url", Kind::Str),
    ("resource", "jwks_refresh_secs", Kind::Int),
    ("resource", "jwks_min_refetch_secs", Kind::Int),
    ("resource", "token_cache_size", Kind::Int),
];

/// The environment variable that overrides `section.key`.
pub fn env_name(section: &str, key: &str) -> String {
    let mut name = String::from("STEELCUT_");
    if !section.is_empty() {
        name.push_str(&section.replace('.', "_").to_ascii_uppercase());
        name.push('_');
    }
    name.push_str(&key.to_ascii_uppercase());
    name
}

/// How a key is named in messages, e.g. "`[server] listen`".
fn key_name(section: &str, key: &str) -> String {
    if section.is_empty() {
        format!("`{key}`")
    } else {
        format!("`[{section}] {key}`")
    }
}

impl Config {
    /// Reads, overrides from the process environment, and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let vars: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("STEELCUT_"))
            .collect();
        Self::load_with_env(path, &vars)
    }

    /// As [`Config::load`], with the environment given explicitly (tests, reloads).
    pub fn load_with_env(path: &Path, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let fail = |problems: Vec<Problem>| ConfigError {
            file: path.to_owned(),
            problems,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(vec![Problem {
                key: "(file)".into(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        Self::from_toml(path, &text, env).map_err(fail)
    }

    /// Validates TOML text as if it had been read from `path`.
    pub fn from_toml(
        path: &Path,
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, Vec<Problem>> {
        let mut problems = Problems::default();
        let mut doc: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                problems.push("(syntax)", e.to_string().trim_end().replace('\n', "\n    "));
                return Err(problems.0);
            }
        };
        let overridden = apply_env(&mut doc, env, &mut problems);
        let raw = split_sections(doc, &mut problems);
        let config = validate(path, raw, &mut problems);
        // A value that came from the environment is named as such, or the operator would look
        // for it in the file.
        for problem in &mut problems.0 {
            for (section, key, _) in ENV_KEYS {
                if overridden.contains(&format!("{section}.{key}"))
                    && problem.key == key_name(section, key)
                {
                    problem.key = format!("{} (from {})", problem.key, env_name(section, key));
                }
            }
        }
        if problems.0.is_empty() {
            config.ok_or_else(Vec::new)
        } else {
            Err(problems.0)
        }
    }
}

/// Applies `STEELCUT_*` overrides to the parsed document; returns which keys were overridden so
/// that messages about them can name the variable. An unknown `STEELCUT_` variable that looks
/// like a config key is reported, since a typo there is as silent as a typo in the file.
fn apply_env(
    doc: &mut toml::Table,
    env: &BTreeMap<String, String>,
    problems: &mut Problems,
) -> HashSet<String> {
    let mut overridden = HashSet::new();
    for (section, key, kind) in ENV_KEYS {
        let name = env_name(section, key);
        let Some(raw) = env.get(&name) else { continue };
        let value = match kind {
            Kind::Str => toml::Value::String(raw.clone()),
            Kind::Int => match raw.trim().parse::<i64>() {
                Ok(n) => toml::Value::Integer(n),
                Err(_) => {
                    problems.push(
                        format!("{} (from {name})", key_name(section, key)),
                        format!("{raw:?} is not a whole number"),
                    );
                    continue;
                }
            },
            Kind::List => toml::Value::Array(
                raw.split([',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_owned()))
                    .collect(),
            ),
        };
        let parts: Vec<&str> = section.split('.').filter(|s| !s.is_empty()).collect();
        if let Err(part) = insert_path(doc, &parts, key, value) {
            problems.push(
                format!("`{part}`"),
                format!("must be a table for {name} to apply"),
            );
            continue;
        }
        overridden.insert(format!("{section}.{key}"));
    }
    for name in env.keys() {
        if ENV_KEYS.iter().any(|(s, k, _)| env_name(s, k) == *name) {
            continue;
        }
        // Only names that start like a section's variables: others (STEELCUT_CONFIG,
        // STEELCUT_CLIENT_SECRET, ...) belong to other parts of the program.
        let Some(section) = ENV_KEYS
            .iter()
            .map(|(s, _, _)| s.split('.').next().unwrap_or(""))
            .filter(|s| !s.is_empty())
            .find(|s| name.starts_with(&env_name(s, "")))
        else {
            continue;
        };
        let known: Vec<String> = ENV_KEYS
            .iter()
            .filter(|(s, _, _)| s.split('.').next() == Some(section))
            .map(|(s, k, _)| env_name(s, k))
            .collect();
        problems.push(
            format!("`{name}` (environment)"),
            format!(
                "not a setting of [{section}]; the variables for it are {}",
                known.join(", ")
            ),
        );
    }
    overridden
}

/// Inserts `value` at `section.key`, creating tables on the way; `Err(part)` when a part of
/// the path exists but is not a table.
fn insert_path(
    table: &mut toml::Table,
    section: &[&str],
    key: &str,
    value: toml::Value,
) -> Result<(), String> {
    match section.split_first() {
        None => {
            table.insert(key.to_owned(), value);
            Ok(())
        }
        Some((first, rest)) => {
            let entry = table
                .entry((*first).to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => insert_path(t, rest, key, value),
                _ => Err((*first).to_owned()),
            }
        }
    }
}

/// Deserializes each section on its own so that a mistake in one does not hide the others.
fn split_sections(mut doc: toml::Table, problems: &mut Problems) -> RawFile {
    fn section<T: DeserializeOwned + Default>(
        doc: &mut toml::Table,
        name: &str,
        problems: &mut Problems,
    ) -> Option<T> {
        match doc.remove(name)? {
            toml::Value::Table(table) => Some(lenient(name, table, problems)),
            _ => {
                problems.push(format!("`[{name}]`"), "must be a table (a [section])");
                Some(T::default())
            }
        }
    }
    let roles = doc
        .remove("roles")
        .map(|v| match v.try_into::<Vec<String>>() {
            Ok(r) => r,
            Err(_) => {
                problems.push(
                    "`roles`",
                    "must be a list of strings, e.g. roles = [\"auth\", \"resource\"]",
                );
                Vec::new()
            }
        });
    let raw = RawFile {
        roles,
        server: section::<RawServer>(&mut doc, "server", problems),
        log: section::<RawLog>(&mut doc, "log", problems),
        database: section::<RawDatabase>(&mut doc, "database", problems),
        keys: section::<RawKeys>(&mut doc, "keys", problems),
        auth: section::<RawAuth>(&mut doc, "auth", problems),
        resource: section::<RawResource>(&mut doc, "resource", problems),
    };
    for unknown in doc.keys() {
        problems.push(
            format!("`{unknown}`"),
            "unknown key or section (expected roles, [server], [log], [database], [keys], [auth], [resource])",
        );
    }
    raw
}

/// A serde error as one line.
fn clean(e: &toml::de::Error) -> String {
    e.message().trim().replace('\n', " ")
}

/// Deserializes a section as `T`, leaving out (and reporting under its own name) every key that
/// `T` rejects: an unknown key or a wrong type. Deserializing the section as a whole would stop
/// at its first mistake, name only the section, and throw away the section's good keys, whose
/// own problems would then go unreported.
fn lenient<T: DeserializeOwned + Default>(
    section: &str,
    table: toml::Table,
    p: &mut Problems,
) -> T {
    let mut good = toml::Table::new();
    for (key, value) in table {
        if let Some(v) = keep_valid::<T>(section, &[key.as_str()], value, p) {
            good.insert(key, v);
        }
    }
    toml::Value::Table(good).try_into().unwrap_or_default()
}

/// Whether `value`, alone at `path` inside the section, deserializes as `T`. A rejected table
/// (such as `[auth.argon2]`) is checked key by key so that the problem names the inner key and
/// the valid ones are kept.
fn keep_valid<T: DeserializeOwned>(
    section: &str,
    path: &[&str],
    value: toml::Value,
    p: &mut Problems,
) -> Option<toml::Value> {
    let wrap = |value: toml::Value| {
        path.iter().rev().fold(value, |inner, key| {
            let mut t = toml::Table::new();
            t.insert((*key).to_owned(), inner);
            toml::Value::Table(t)
        })
    };
    let error = match wrap(value.clone()).try_into::<T>() {
        Ok(_) => return Some(value),
        Err(e) => e,
    };
    if let toml::Value::Table(inner) = value {
        // An unknown table is reported as a whole; a known one key by key.
        if wrap(toml::Value::Table(toml::Table::new()))
            .try_into::<T>()
            .is_ok()
        {
            let mut good = toml::Table::new();
            for (key, v) in inner {
                let mut deeper = path.to_vec();
                deeper.push(key.as_str());
                if let Some(v) = keep_valid::<T>(section, &deeper, v, p) {
                    good.insert(key, v);
                }
            }
            return Some(toml::Value::Table(good));
        }
    }
    let (key, parents) = path.split_last().map_or(("", &[][..]), |(k, ps)| (*k, ps));
    let mut name = section.to_owned();
    for parent in parents {
        name.push('.');
        name.push_str(parent);
    }
    p.push(key_name(&name, key), clean(&error));
    None
}

fn validate(path: &Path, raw: RawFile, p: &mut Problems) -> Option<Config> {
    let roles = match &raw.roles {
        None => {
            p.push(
                "`roles`",
                "missing: declare the roles this node plays, e.g. roles = [\"auth\", \"resource\"]",
            );
            Roles {
                auth: false,
                resource: false,
            }
        }
        Some(list) => {
            let mut roles = Roles {
                auth: false,
                resource: false,
            };
            for r in list {
                match r.as_str() {
                    "auth" => roles.auth = true,
                    "resource" => roles.resource = true,
                    other => p.push(
                        "`roles`",
                        format!("unknown role {other:?} (expected \"auth\" or \"resource\")"),
                    ),
                }
            }
            if list.is_empty() {
                p.push("`roles`", "is empty: list \"auth\", \"resource\" or both");
            }
            roles
        }
    };

    let server = validate_server(raw.server.unwrap_or_default(), p);
    let log = validate_log(raw.log.unwrap_or_default(), p);

    let database = match raw.database {
        Some(d) => validate_database(d, p),
        None => {
            if roles.auth {
                p.push("`[database]`", "missing: the auth role needs [database] url (e.g. \"sqlite:///var/lib/steelcut/steelcut.db\")");
            }
            None
        }
    };

    let keys = match raw.keys {
        Some(k) => validate_keys(k, p),
        None => {
            if roles.auth {
                p.push(
                    "`[keys]`",
                    "missing: the auth role needs [keys] dir (where the signing keys live)",
                );
            }
            None
        }
    };

    let auth = match raw.auth {
        Some(a) => validate_auth(a, p),
        None => {
            if roles.auth {
                p.push(
                    "`[auth]`",
                    "missing: the auth role needs an [auth] section with at least issuer",
                );
            }
            None
        }
    };

    let resource = match raw.resource {
        Some(r) if roles.resource => validate_resource(
            r,
            auth.as_ref(),
            keys.as_ref(),
            auth.as_ref().map(|a| a.token_path.as_str()),
            p,
        ),
        Some(_) => None,
        None => {
            if roles.resource {
                p.push("`[resource]`", "missing: the resource role needs a [resource] section with its [[resource.routes]]");
            }
            None
        }
    };

    Some(Config {
        file: path.to_owned(),
        roles,
        server: server?,
        log,
        database: if roles.auth { database } else { None },
        keys,
        auth: if roles.auth { auth } else { None },
        resource,
    })
}

fn validate_server(raw: RawServer, p: &mut Problems) -> Option<ServerConfig> {
    let listen = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen = match listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(
                "`[server] listen`",
                format!("{listen:?} is not a socket address such as 127.0.0.1:8080 or [::]:8443"),
            );
            None
        }
    };
    let admin_listen = match raw.admin_listen.as_deref().map(str::parse::<SocketAddr>) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(_)) => {
            p.push(
                "`[server] admin_listen`",
                "is not a socket address such as 127.0.0.1:9090",
            );
            None
        }
    };
    let tls = raw.tls.and_then(|t| {
        let mut file = |key: &str, value: Option<String>| match value {
            None => {
                p.push(format!("`[server.tls] {key}`"), "missing: a PEM file path");
                None
            }
            Some(v) => {
                let path = PathBuf::from(v);
                if let Err(e) = std::fs::File::open(&path) {
                    p.push(
                        format!("`[server.tls] {key}`"),
                        format!("{}: {e}", path.display()),
                    );
                }
                Some(path)
            }
        };
        let cert = file("cert", t.cert);
        let key = file("key", t.key);
        Some(TlsConfig {
            cert: cert?,
            key: key?,
        })
    });
    Some(ServerConfig {
        listen: listen?,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(10)),
        admin_listen,
        tls,
        header_read_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        keepalive_timeout: Duration::from_secs(60),
        max_connections: None,
        admin_max_connections: 64,
        trusted_proxies: Vec::new(),
    })
}

fn validate_log(raw: RawLog, p: &mut Problems) -> LogConfig {
    let level = raw.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        p.push(
            "`[log] level`",
            format!(
                "{level:?} is not a log filter (e.g. \"info\", \"debug\", \"steelcut=debug,info\")"
            ),
        );
    }
    let format = match raw.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            p.push(
                "`[log] format`",
                format!("{other:?} is not \"text\" or \"json\""),
            );
            LogFormat::Text
        }
    };
    LogConfig { level, format }
}

fn validate_database(raw: RawDatabase, p: &mut Problems) -> Option<DatabaseConfig> {
    let url = match raw.url.as_deref() {
        None => {
            p.push("`[database] url`", "missing (e.g. \"sqlite:///var/lib/steelcut/steelcut.db\" or \"postgres://steelcut@db/steelcut\")");
            None
        }
        Some(u) => match DatabaseUrl::parse(u) {
            Ok(u) => Some(u),
            Err(e) => {
                p.push("`[database] url`", e);
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

fn validate_keys(raw: RawKeys, p: &mut Problems) -> Option<KeysConfig> {
    let Some(dir) = raw.dir else {
        p.push(
            "`[keys] dir`",
            "missing: the directory holding the signing keys (e.g. \"/etc/steelcut/keys\")",
        );
        return None;
    };
    let dir = PathBuf::from(dir);
    match std::fs::metadata(&dir) {
        Ok(m) if !m.is_dir() => p.push(
            "`[keys] dir`",
            format!("{} is not a directory", dir.display()),
        ),
        Ok(_) => {
            if let Err(e) = std::fs::read_dir(&dir) {
                p.push(
                    "`[keys] dir`",
                    format!(
                        "{} cannot be read: {e} (the daemon's user needs read access)",
                        dir.display()
                    ),
                );
            }
        }
        Err(e) => {
            // A missing directory is created (mode 0700) on first start or by `keys generate`,
            // which works only if its nearest existing ancestor is a directory.
            let nearest = dir.ancestors().skip(1).find_map(|a| {
                let a = if a.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    a
                };
                std::fs::metadata(a).ok().map(|m| (a, m.is_dir()))
            });
            match nearest {
                Some((_, true)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Some((blocker, false)) => p.push(
                    "`[keys] dir`",
                    format!(
                        "{} cannot be created: {} is not a directory; point `[keys] dir` at a \
                         directory, then create the first key with `steelcutd keys generate`",
                        dir.display(),
                        blocker.display()
                    ),
                ),
                _ => p.push(
                    "`[keys] dir`",
                    format!("{} cannot be read: {e}", dir.display()),
                ),
            }
        }
    }
    Some(KeysConfig { dir })
}

/// Checks an issuer identifier (RFC 8414 section 2: https URL, no query or fragment; plain
/// http is accepted for loopback and TLS-terminating proxies, with a warning at start).
fn parse_issuer(key: &str, s: &str, p: &mut Problems) -> Option<String> {
    match url::Url::parse(s) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host_str().is_some() => {
            if u.query().is_some() || u.fragment().is_some() {
                p.push(
                    key,
                    format!("{s:?} must not have a query or fragment (RFC 8414 section 2)"),
                );
                None
            } else {
                Some(s.trim_end_matches('/').to_owned())
            }
        }
        _ => {
            p.push(
                key,
                format!(
                    "{s:?} is not an absolute http(s) URL such as \"https://auth.example.com\""
                ),
            );
            None
        }
    }
}

fn validate_auth(raw: RawAuth, p: &mut Problems) -> Option<AuthConfig> {
    let issuer = match raw.issuer.as_deref() {
        None => {
            p.push("`[auth] issuer`", "missing: the URL clients use to reach this server, e.g. \"https://auth.example.com\"");
            None
        }
        Some(s) => parse_issuer("`[auth] issuer`", s, p),
    };
    let token_path = raw.token_path.unwrap_or_else(|| "/token".into());
    if !token_path.starts_with('/')
        || token_path.starts_with(RESERVED_PREFIX)
        || token_path.contains(['?', '#', ' '])
    {
        p.push(
            "`[auth] token_path`",
            format!("{token_path:?} must be a path starting with '/' (not under /.well-known/)"),
        );
    }
    let lifetime = raw.token_lifetime_secs.unwrap_or(3600);
    if !(60..=86_400).contains(&lifetime) {
        p.push(
            "`[auth] token_lifetime_secs`",
            format!("{lifetime} is outside 60..=86400 seconds"),
        );
    }
    let realm = raw.realm.unwrap_or_else(|| "steelcut".into());
    check_realm("`[auth] realm`", &realm, p);
    let a = raw.argon2.unwrap_or_default();
    let argon2 = validate_argon2(a, p);
    let max_concurrent_hashes = raw.max_concurrent_hashes.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    if max_concurrent_hashes == 0 {
        p.push("`[auth] max_concurrent_hashes`", "must be at least 1");
    }
    Some(AuthConfig {
        issuer: issuer?,
        token_path,
        token_lifetime: Duration::from_secs(lifetime),
        realm,
        argon2,
        max_concurrent_hashes: max_concurrent_hashes.max(1),
        credential_cache_ttl: Duration::from_secs(raw.credential_cache_secs.unwrap_or(300)),
        credential_cache_size: raw.credential_cache_size.unwrap_or(10_000),
        serve_cached_when_db_down: Duration::from_secs(
            raw.serve_cached_when_db_down_secs.unwrap_or(60),
        ),
        limits: crate::auth::limits::Policy::default(),
    })
}

fn check_realm(key: &str, realm: &str, p: &mut Problems) {
    if realm.is_empty() || realm.contains(['"', '\\']) || !realm.is_ascii() {
        p.push(
            key,
            format!("{realm:?} must be non-empty ASCII without quotes or backslashes"),
        );
    }
}

fn validate_argon2(a: RawArgon2, p: &mut Problems) -> Argon2Params {
    let d = Argon2Params::default();
    let params = Argon2Params {
        memory_kib: a.memory_kib.unwrap_or(d.memory_kib),
        iterations: a.iterations.unwrap_or(d.iterations),
        parallelism: a.parallelism.unwrap_or(d.parallelism),
    };
    if let Err(e) = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    ) {
        p.push(
            "`[auth.argon2]`",
            format!(
                "invalid argon2id parameters m={} t={} p={}: {e}",
                params.memory_kib, params.iterations, params.parallelism
            ),
        );
    }
    params
}

fn validate_resource(
    raw: RawResource,
    auth: Option<&AuthConfig>,
    keys: Option<&KeysConfig>,
    token_path: Option<&str>,
    p: &mut Problems,
) -> Option<ResourceConfig> {
    let issuer = match (raw.issuer.as_deref(), auth) {
        (Some(s), _) => parse_issuer("`[resource] issuer`", s, p),
        (None, Some(a)) => Some(a.issuer.clone()),
        (None, None) => {
            p.push(
                "`[resource] issuer`",
                "missing: a resource-only node must name the issuer whose tokens it accepts",
            );
            None
        }
    };
    let realm = raw.realm.unwrap_or_else(|| "steelcut".into());
    check_realm("`[resource] realm`", &realm, p);

    let mut sources = Vec::new();
    if let Some(k) = raw.keys.as_deref() {
        if k == "local" {
            match keys {
                Some(k) => sources.push(KeySource::Local(k.dir.clone())),
                None => p.push("`[resource] keys`", "\"local\" needs a [keys] dir"),
            }
        } else {
            p.push("`[resource] keys`", format!("{k:?}: the only value is \"local\"; use jwks_file, public_keys_dir or jwks_url for other sources"));
        }
    }
    if let Some(f) = raw.jwks_file {
        let f = PathBuf::from(f);
        if !f.is_file() {
            p.push(
                "`[resource] jwks_file`",
                format!(
                    "{} does not exist (write it with `steelcutd keys export-public`)",
                    f.display()
                ),
            );
        }
        sources.push(KeySource::JwksFile(f));
    }
    if let Some(d) = raw.public_keys_dir {
        let d = PathBuf::from(d);
        if !d.is_dir() {
            p.push(
                "`[resource] public_keys_dir`",
                format!("{} is not a directory", d.display()),
            );
        }
        sources.push(KeySource::PublicKeysDir(d));
    }
    if let Some(u) = raw.jwks_url {
        match url::Url::parse(&u) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                sources.push(KeySource::JwksUrl(u))
            }
            _ => p.push(
                "`[resource] jwks_url`",
                format!("{u:?} is not an http(s) URL"),
            ),
        }
    }
    let key_source = match sources.len() {
        0 => match keys {
            Some(k) => Some(KeySource::Local(k.dir.clone())),
            None => {
                p.push("`[resource]`", "no key source: set jwks_url, jwks_file or public_keys_dir (or [keys] dir on a node that also signs)");
                None
            }
        },
        1 => sources.pop(),
        _ => {
            p.push("`[resource]`", "more than one key source: choose one of keys = \"local\", jwks_file, public_keys_dir, jwks_url");
            None
        }
    };

    let mut routes = Vec::new();
    let mut seen = HashSet::new();
    for (i, value) in raw.routes.unwrap_or_default().into_iter().enumerate() {
        let at = format!("`[[resource.routes]]` #{}", i + 1);
        let r: RawRoute = match value.try_into() {
            Ok(r) => r,
            Err(e) => {
                p.push(at, clean(&e));
                continue;
            }
        };
        let label = match &r.path {
            Some(path) => format!("`[[resource.routes]]` {path}"),
            None => at.clone(),
        };
        let Some(path) = r.path else {
            p.push(
                format!("{at} `path`"),
                "missing (e.g. path = \"/api_v0.0.1\")",
            );
            continue;
        };
        // Every message about a route names its file too, so it can be found in a long list.
        let served = r.file.as_deref().unwrap_or("no file");
        let mut ok = true;
        if !path.starts_with('/') || path.len() < 2 || path.contains(['?', '#', ' ']) {
            p.push(
                format!("{label} `path`"),
                format!("{path:?} (serving {served}) must be a path such as \"/api_v0.0.1\""),
            );
            ok = false;
        } else if path.starts_with(RESERVED_PREFIX)
            || Some(path.as_str()) == token_path
            || path == "/token"
        {
            p.push(
                format!("{label} `path`"),
                format!(
                    "{path} (serving {served}) clashes with a path the server answers itself (/token, /.well-known/*)"
                ),
            );
            ok = false;
        } else if !seen.insert(path.clone()) {
            p.push(
                format!("{label} `path`"),
                format!("{path} (serving {served}) is a duplicate: another route already serves this path"),
            );
            ok = false;
        }
        let file = match r.file {
            None => {
                p.push(
                    format!("{label} `file`"),
                    "missing: the JSON document to serve",
                );
                None
            }
            Some(f) => {
                let f = PathBuf::from(f);
                match std::fs::read(&f) {
                    Err(e) => {
                        p.push(format!("{label} `file`"), format!("{}: {e}", f.display()));
                    }
                    Ok(bytes) => {
                        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                            p.push(
                                format!("{label} `file`"),
                                format!("{} is not valid JSON: {e}", f.display()),
                            );
                        }
                    }
                }
                Some(f)
            }
        };
        let audience_text = r
            .audience
            .unwrap_or_else(|| path.trim_start_matches('/').to_owned());
        let audience = match Resource::parse(&audience_text) {
            Ok(a) => Some(a),
            Err(e) => {
                p.push(format!("{label} `audience`"), e.to_string());
                None
            }
        };
        let scope = match r.scope.as_deref().map(Scope::parse) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                p.push(format!("{label} `scope`"), e.to_string());
                ok = false;
                None
            }
        };
        if let (true, Some(file), Some(audience)) = (ok, file, audience) {
            routes.push(RouteConfig {
                path,
                file,
                audience,
                scope,
            });
        }
    }

    Some(ResourceConfig {
        issuer: issuer?,
        realm,
        leeway: Duration::from_secs(raw.leeway_secs.unwrap_or(30)),
        key_source: key_source?,
        jwks_refresh: Duration::from_secs(raw.jwks_refresh_secs.unwrap_or(300).max(1)),
        jwks_min_refetch: Duration::from_secs(raw.jwks_min_refetch_secs.unwrap_or(10)),
        token_cache_size: raw.token_cache_size.unwrap_or(10_000),
        max_document_bytes: 10 * 1024 * 1024,
        routes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, Vec<Problem>> {
        Config::from_toml(Path::new("t.toml"), text, &BTreeMap::new())
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = load(
            r#"
            roles = ["auth"]
            [server]
            listen = "nope"
            lissten = 1
            [database]
            url = "mysql://x"
            [auth]
            issuer = "not a url"
            token_lifetime_secs = "long"
            [auth.argon2]
            memory = 1
            iterations = 3
            "#,
        )
        .err()
        .unwrap_or_default();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        // A mistake in a section names its key and hides none of the section's other keys.
        assert!(keys.contains(&"`[server] lissten`"), "{problems:?}");
        assert!(keys.contains(&"`[server] listen`"), "{problems:?}");
        assert!(
            keys.contains(&"`[auth] token_lifetime_secs`"),
            "{problems:?}"
        );
        assert!(keys.contains(&"`[auth.argon2] memory`"), "{problems:?}");
        assert!(keys.contains(&"`[database] url`"), "{problems:?}");
        assert!(keys.contains(&"`[auth] issuer`"), "{problems:?}");
        assert!(keys.contains(&"`[keys]`"), "{problems:?}");
    }

    #[test]
    fn environment_overrides_win_over_the_file() {
        let mut env = BTreeMap::new();
        env.insert(
            "STEELCUT_SERVER_LISTEN".to_owned(),
            "127.0.0.1:9999".to_owned(),
        );
        env.insert("STEELCUT_AUTH_ARGON2_ITERATIONS".to_owned(), "3".to_owned());
        let c = Config::from_toml(
            Path::new("t.toml"),
            "roles = [\"auth\"]\n[database]\nurl = \"sqlite://x.db\"\n[keys]\ndir = \"k\"\n[auth]\nissuer = \"https://a.example\"\n",
            &env,
        );
        let c = c.ok();
        assert_eq!(c.as_ref().map(|c| c.server.listen.port()), Some(9999));
        assert_eq!(c.and_then(|c| c.auth).map(|a| a.argon2.iterations), Some(3));
    }
}
