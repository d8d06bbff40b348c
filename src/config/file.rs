//! The configuration file as written by the operator: raw TOML structures.
//!
//! Every field is optional here so that a missing value and a wrong value are told apart
//! during validation ([`super::Config::load`]), which turns these structs into the typed,
//! checked [`super::Config`]. Unknown keys are rejected (`deny_unknown_fields`): a typo in
//! `/etc/steelcut.toml` must be an error, never a silently ignored setting.

use serde::Deserialize;

/// The whole file. `roles` is the only top-level key; the rest are sections.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// Which roles this node plays: `["auth"]`, `["resource"]` or `["auth", "resource"]`.
    pub roles: Option<Vec<String>>,
    pub server: Option<RawServer>,
    pub log: Option<RawLog>,
    pub database: Option<RawDatabase>,
    pub keys: Option<RawKeys>,
    pub auth: Option<RawAuth>,
    pub resource: Option<RawResource>,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Socket address to listen on, e.g. `127.0.0.1:8080` or `[::]:443`.
    pub listen: Option<String>,
    /// Seconds in-flight requests get to finish on SIGTERM before the process exits.
    pub shutdown_grace_secs: Option<u64>,
    /// A second listener for `/livez`, `/readyz` and `/metrics` only (e.g. `127.0.0.1:9090`).
    /// Without it those paths are answered on `listen`.
    pub admin_listen: Option<String>,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 over ALPN) on `listen`.
    pub tls: Option<RawTls>,
    /// Seconds a client has to send a request's headers (1 to 3600, default 10).
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a client has to send a whole request body to the token endpoint (1 to 3600,
    /// default 10).
    pub body_timeout_secs: Option<u64>,
    /// Seconds an idle keep-alive connection, or an idle HTTP/2 connection, stays open (1 to
    /// 3600, default 60).
    pub keepalive_timeout_secs: Option<u64>,
    /// Connections `listen` accepts at once (at least 1). Default: sized at start from the
    /// process's open-file limit.
    pub max_connections: Option<usize>,
    /// Connections the admin listener accepts at once, kept apart from `listen`'s so that
    /// health checks get through a flood (at least 1, default 64).
    pub admin_max_connections: Option<usize>,
    /// Proxies whose `Forwarded` and `X-Forwarded-For` headers are believed, as addresses or
    /// CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`, `127.0.0.1`). Default: none, so those
    /// headers are ignored and the peer address is the client's.
    pub trusted_proxies: Option<Vec<String>>,
}

/// `[server.tls]`: certificate chain and private key, PEM; re-read on SIGHUP.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The certificate chain, leaf first.
    pub cert: Option<String>,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<String>,
}

/// `[log]`: where and how much to log.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// A `tracing` filter: `info`, `debug`, `steelcut=debug,info`, ...
    pub level: Option<String>,
    /// `text` (default) or `json`.
    pub format: Option<String>,
}

/// `[database]`: the client store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// `sqlite://PATH` (relative paths are relative to the working directory) or `postgres://...`.
    pub url: Option<String>,
    /// Maximum number of pooled connections.
    pub pool_size: Option<u32>,
    /// Seconds to wait for a connection from the pool before answering 503.
    pub connect_timeout_secs: Option<u64>,
}

/// `[keys]`: the signing keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeys {
    /// Directory holding the private signing keys (`*.pem`, mode 0600, directory 0700).
    pub dir: Option<String>,
    /// The JWS algorithm of new signing keys: `EdDSA` (default, Ed25519), `ES256` or `RS256`.
    pub signing_alg: Option<String>,
    /// Seconds a new key is published in the JWKS before it signs, so that resource servers
    /// have fetched it by then (default 900, above the default `jwks_refresh_secs` of 300 with
    /// room to spare; 0 signs at once).
    pub publish_before_sign_secs: Option<u64>,
    /// Days after which a new signing key is made (at least 1). Default: keys are rotated by
    /// hand with `steelcutd keys generate`.
    pub rotate_after_days: Option<u64>,
}

/// `[auth]`: the authorization server role.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// The issuer identifier (RFC 8414): an absolute `https://` (or, behind a proxy, `http://`) URL
    /// without query or fragment. It is the `iss` claim of every token.
    pub issuer: Option<String>,
    /// Path of the token endpoint, default `/token`.
    pub token_path: Option<String>,
    /// Lifetime of access tokens in seconds, default 3600.
    pub token_lifetime_secs: Option<u64>,
    /// The realm named in `WWW-Authenticate: Basic realm="..."`, default `steelcut`.
    pub realm: Option<String>,
    /// Parameters for hashing new client secrets.
    pub argon2: Option<RawArgon2>,
    /// Maximum number of argon2 verifications running at once (default: number of CPUs).
    pub max_concurrent_hashes: Option<usize>,
    /// Seconds a verified client secret is remembered in memory (keyed digest only), sparing
    /// repeat requests the argon2 verify; 0 disables. Default 300.
    pub credential_cache_secs: Option<u64>,
    /// Maximum number of clients in that cache (default 10000).
    pub credential_cache_size: Option<usize>,
    /// Seconds a secret verified before the database went away may still be accepted from the
    /// cache while the database does not answer (default 60; 0 refuses every request then).
    pub serve_cached_when_db_down_secs: Option<u64>,
    /// Throttling of failed client authentications.
    pub limits: Option<RawAuthLimits>,
}

/// `[auth.limits]`: failed client authentications are throttled with a token bucket per client
/// id and another per source address. Each failure takes a token; a bucket refills at its
/// rate up to its burst; an empty bucket means refusal without an argon2 verify.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthLimits {
    /// Failures one client id may have in a row (default 10, at least 1).
    pub client_burst: Option<u32>,
    /// Tokens a client id's bucket regains per minute (default 10, at least 1).
    pub client_refill_per_minute: Option<u32>,
    /// Failures one source address may have in a row (default 30, at least 1).
    pub address_burst: Option<u32>,
    /// Tokens an address's bucket regains per minute (default 60, at least 1).
    pub address_refill_per_minute: Option<u32>,
    /// Buckets kept at most, client ids and addresses together, so that made-up ids cannot
    /// exhaust memory (default 100000, at least 1).
    pub max_tracked: Option<usize>,
}

/// `[auth.argon2]`: argon2id cost parameters (default: OWASP m=19456 KiB, t=2, p=1).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArgon2 {
    pub memory_kib: Option<u32>,
    pub iterations: Option<u32>,
    pub parallelism: Option<u32>,
}

/// `[resource]`: the resource server role.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    /// The `iss` every accepted token must carry; defaults to `[auth] issuer`.
    pub issuer: Option<String>,
    /// The realm named in `WWW-Authenticate: Bearer realm="..."`, default `steelcut`.
    pub realm: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 30).
    pub leeway_secs: Option<u64>,
    /// Where verification keys come from: `local` (the `[keys] dir`), default on a node with the
    /// auth role.
    pub keys: Option<String>,
    /// A JWKS file holding the public keys (a resource-only node).
    pub jwks_file: Option<String>,
    /// A directory of public keys (`*.pem`, SubjectPublicKeyInfo).
    pub public_keys_dir: Option<String>,
    /// The auth server's JWKS URL, e.g. `https://auth.example/.well-known/jwks.json`, or a list
    /// of them, one per auth node.
    pub jwks_url: Option<OneOrMany>,
    /// Seconds between periodic refreshes of a remote JWKS (default 300).
    pub jwks_refresh_secs: Option<u64>,
    /// Minimum seconds between two fetches of a remote JWKS, whatever causes them (default 10).
    pub jwks_min_refetch_secs: Option<u64>,
    /// Maximum number of validated tokens remembered, so that a repeated token costs a hash
    /// lookup instead of a signature check (default 10000); 0 disables.
    pub token_cache_size: Option<usize>,
    /// The largest document a route may serve, in bytes (default 10485760 = 10 MiB, at least
    /// 1). A larger file, or anything but a regular file, is refused without being read.
    pub max_document_bytes: Option<u64>,
    /// The protected documents.
    pub routes: Option<Vec<toml::Value>>,
}

/// One `[[resource.routes]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// URL path, e.g. `/api_v0.0.1`.
    pub path: Option<String>,
    /// The JSON document served on that path.
    pub file: Option<String>,
    /// The audience a token must carry; default: the path without its leading `/`.
    pub audience: Option<String>,
    /// A scope the token must hold (optional).
    pub scope: Option<String>,
}

/// A string, or a list of strings (`jwks_url = "..."` or `jwks_url = ["...", "..."]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a URL or a list of URLs")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![s.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut all = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    all.push(s);
                }
                Ok(OneOrMany(all))
            }
        }
        d.deserialize_any(Visitor)
    }
}
