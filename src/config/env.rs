//! Environment overrides: `STEELCUT_<SECTION>_<KEY>` wins over the file.
//!
//! Overrides are applied to the parsed TOML document before validation, so a value from the
//! environment is checked exactly like one from the file; a problem with it names the variable,
//! or the operator would look for it in the file. A `STEELCUT_` variable that looks like a
//! setting but is none is reported, since a typo there is as silent as a typo in the file.

use std::collections::{BTreeMap, HashSet};

use super::error::{key_name, Problem, Problems};

/// Kinds of value an environment override may carry.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    /// Comma- or space-separated.
    List,
}

/// Every key that `STEELCUT_<SECTION>_<KEY>` may override (routes are per-file only).
const ENV_KEYS: &[(&str, &str, Kind)] = &[
    ("", "roles", Kind::List),
    ("server", "listen", Kind::Str),
    ("server", "shutdown_grace_secs", Kind::Int),
    ("server", "admin_listen", Kind::Str),
    ("server", "header_read_timeout_secs", Kind::Int),
    ("server", "body_timeout_secs", Kind::Int),
    ("server", "keepalive_timeout_secs", Kind::Int),
    ("server", "max_connections", Kind::Int),
    ("server", "admin_max_connections", Kind::Int),
    ("server", "trusted_proxies", Kind::List),
    ("server.tls", "cert", Kind::Str),
    ("server.tls", "key", Kind::Str),
    ("log", "level", Kind::Str),
    ("log", "format", Kind::Str),
    ("database", "url", Kind::Str),
    ("database", "pool_size", Kind::Int),
    ("database", "connect_timeout_secs", Kind::Int),
    ("keys", "dir", Kind::Str),
    ("keys", "signing_alg", Kind::Str),
    ("keys", "publish_before_sign_secs", Kind::Int),
    ("keys", "rotate_after_days", Kind::Int),
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
    ("auth.limits", "client_burst", Kind::Int),
    ("auth.limits", "client_refill_per_minute", Kind::Int),
    ("auth.limits", "address_burst", Kind::Int),
    ("auth.limits", "address_refill_per_minute", Kind::Int),
    ("auth.limits", "max_tracked", Kind::Int),
    ("resource", "issuer", Kind::Str),
    ("resource", "realm", Kind::Str),
    ("resource", "leeway_secs", Kind::Int),
    ("resource", "keys", Kind::Str),
    ("resource", "jwks_file", Kind::Str),
    ("resource", "public_keys_dir", Kind::Str),
    // Several auth nodes: STEELCUT_RESOURCE_JWKS_URL="https://a/jwks.json,https://b/jwks.json".
    ("resource", "jwks_url", Kind::List),
    ("resource", "jwks_refresh_secs", Kind::Int),
    ("resource", "jwks_min_refetch_secs", Kind::Int),
    ("resource", "token_cache_size", Kind::Int),
    ("resource", "max_document_bytes", Kind::Int),
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

/// The `STEELCUT_*` variables of this process.
pub fn process_vars() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("STEELCUT_"))
        .collect()
}

/// The keys (`section.key`) whose value came from the environment.
#[derive(Debug, Default)]
pub(crate) struct Overridden(HashSet<String>);

impl Overridden {
    pub fn contains(&self, section: &str, key: &str) -> bool {
        self.0.contains(&format!("{section}.{key}"))
    }

    /// Appends "(from STEELCUT_...)" to the key of every problem about an overridden value.
    pub fn name_variables(&self, problems: &mut [Problem]) {
        for problem in problems {
            for (section, key, _) in ENV_KEYS {
                if self.contains(section, key) && problem.key == key_name(section, key) {
                    problem.key = format!("{} (from {})", problem.key, env_name(section, key));
                }
            }
        }
    }
}

/// Applies `STEELCUT_*` overrides to the parsed document and reports variables that look like
/// settings but are none.
pub(crate) fn apply(
    doc: &mut toml::Table,
    env: &BTreeMap<String, String>,
    problems: &mut Problems,
) -> Overridden {
    let mut overridden = Overridden::default();
    for (section, key, kind) in ENV_KEYS {
        let name = env_name(section, key);
        let Some(raw) = env.get(&name) else { continue };
        let Some(value) = to_value(*kind, raw) else {
            problems.push(
                format!("{} (from {name})", key_name(section, key)),
                format!("{raw:?} is not a whole number"),
            );
            continue;
        };
        let parts: Vec<&str> = section.split('.').filter(|s| !s.is_empty()).collect();
        if let Err(NotATable(part)) = insert_path(doc, &parts, key, value) {
            problems.push(
                format!("`{part}`"),
                format!("must be a table for {name} to apply"),
            );
            continue;
        }
        overridden.0.insert(format!("{section}.{key}"));
    }
    report_unknown(env, problems);
    overridden
}

/// The TOML value of an override; `None` when a number is not one.
fn to_value(kind: Kind, raw: &str) -> Option<toml::Value> {
    Some(match kind {
        Kind::Str => toml::Value::String(raw.to_owned()),
        Kind::Int => toml::Value::Integer(raw.trim().parse::<i64>().ok()?),
        Kind::List => toml::Value::Array(
            raw.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
    })
}

/// Reports `STEELCUT_<SECTION>_...` variables that override nothing.
fn report_unknown(env: &BTreeMap<String, String>, problems: &mut Problems) {
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
}

/// A part of an override's path exists in the file but is not a table (e.g. `server = 1`).
#[derive(Debug)]
struct NotATable(String);

/// Inserts `value` at `section.key`, creating tables on the way.
fn insert_path(
    table: &mut toml::Table,
    section: &[&str],
    key: &str,
    value: toml::Value,
) -> Result<(), NotATable> {
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
                _ => Err(NotATable((*first).to_owned())),
            }
        }
    }
}
