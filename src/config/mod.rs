//! The configuration: one TOML file, `STEELCUT_<SECTION>_<KEY>` overrides, and validation.
//!
//! Loading happens in two stages: the TOML text, with the environment overrides of `env`
//! applied, is deserialized key by key (`lenient`) into the raw structs of [`file`]; then
//! `validate` checks every value and yields either a [`Config`] (the types of `types`)
//! whose fields can be trusted or a [`ConfigError`] listing *all* problems, each naming the key
//! and the file. [`preflight`] then checks what the values name on disk and on the network;
//! `check-config`, `serve` and SIGHUP reloads all go through [`Config::check`], so they agree
//! on what is valid.
//!
//! - [`file`]: the file as written, every field documented for operators.
//! - `env`: which keys the environment may override, and how.
//! - `lenient`: one key's mistake does not hide its section's other keys.
//! - `validate`: one module per section.
//! - `types`: the validated configuration the daemon reads.
//! - [`preflight`]: the key directory, TLS files, route documents and database, checked once.
//! - [`error`]: a problem names its key and the file.

pub mod error;
pub mod file;
pub mod preflight;

mod database_url;
mod env;
mod lenient;
mod types;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

pub use env::env_name;
use error::Problems;
pub use error::{ConfigError, Problem};
use preflight::Plan;
pub use preflight::{CheckError, Checked, Options, TlsLoader};
pub use types::*;

impl Config {
    /// Reads, overrides from the process environment, and validates `path`. Nothing but the
    /// file is read: [`Config::check`] adds the preflight of what the values name.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, &env::process_vars())
    }

    /// As [`Config::load`], with the environment given explicitly (tests, reloads).
    pub fn load_with_env(path: &Path, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let text = read(path)?;
        Self::from_toml(path, &text, env).map_err(|problems| ConfigError {
            file: path.to_owned(),
            problems,
        })
    }

    /// Validates TOML text as if it had been read from `path`.
    pub fn from_toml(
        path: &Path,
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, Vec<Problem>> {
        let mut found = evaluate(path, text, env);
        found.overridden.name_variables(&mut found.problems.0);
        match found.config {
            Some(config) if found.problems.0.is_empty() => Ok(config),
            _ => Err(found.problems.0),
        }
    }
}

/// The text of the configuration file.
fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        let message = if e.kind() == std::io::ErrorKind::NotFound {
            // Most often the default /etc/steelcut.toml of a command run without --config.
            format!(
                "{} does not exist: pass --config FILE or set STEELCUT_CONFIG",
                path.display()
            )
        } else {
            format!("cannot read {}: {e}", path.display())
        };
        ConfigError {
            file: path.to_owned(),
            problems: vec![Problem {
                key: "(file)".into(),
                message,
            }],
        }
    })
}

/// What one reading of the text found.
struct Evaluation {
    /// `Some` when every section could be built, which alone does not mean without problems.
    config: Option<Config>,
    problems: Problems,
    /// What the preflight is to check.
    plan: Plan,
    /// Which values came from the environment, to name the variable in their problems.
    overridden: env::Overridden,
}

/// Whether the file itself (before any environment override) has a `[database] url` with a
/// password in it.
fn file_has_database_password(doc: &toml::Table) -> bool {
    doc.get("database")
        .and_then(|d| d.get("url"))
        .and_then(|u| u.as_str())
        .and_then(|u| DatabaseUrl::parse(u).ok())
        .is_some_and(|u| u.has_password())
}

/// Parses, applies the environment and validates, collecting every problem.
fn evaluate(path: &Path, text: &str, env: &BTreeMap<String, String>) -> Evaluation {
    let mut problems = Problems::default();
    let mut plan = Plan::default();
    let mut doc: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            problems.push("(syntax)", e.to_string().trim_end().replace('\n', "\n    "));
            return Evaluation {
                config: None,
                problems,
                plan,
                overridden: env::Overridden::default(),
            };
        }
    };
    if file_has_database_password(&doc) {
        plan.push(preflight::Check::SecretInFile(path.to_owned()));
    }
    let overridden = env::apply(&mut doc, env, &mut problems);
    let raw = lenient::split_sections(doc, &mut problems);
    let config = validate::validate(path, raw, &mut problems, &mut plan);
    Evaluation {
        config,
        problems,
        plan,
        overridden,
    }
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
    fn a_value_that_is_present_but_invalid_is_not_reported_again_as_missing_where_inherited() {
        // Both roles: the resource role falls back on [auth] issuer and on [keys] dir.
        let problems = load(
            r#"
            roles = ["auth", "resource"]
            [database]
            url = "sqlite://x.db"
            [keys]
            [auth]
            issuer = "not a url"
            [resource]
            keys = "local"
            "#,
        )
        .err()
        .unwrap_or_default();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["`[keys] dir`", "`[auth] issuer`"], "{problems:?}");
        // A role's section that is missing is one problem too.
        let problems = load(
            "roles = [\"auth\", \"resource\"]\n[database]\nurl = \"sqlite://x.db\"\n[resource]\n",
        )
        .err()
        .unwrap_or_default();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["`[keys]`", "`[auth]`"], "{problems:?}");
    }

    #[test]
    fn a_resource_only_node_without_an_issuer_or_a_key_source_is_told_so() {
        let problems = load("roles = [\"resource\"]\n[resource]\n")
            .err()
            .unwrap_or_default();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["`[resource] issuer`", "`[resource]`"],
            "{problems:?}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_not_reported_again_as_missing() {
        let problems = load(
            r#"
            roles = "auth"
            [database]
            url = 5
            [keys]
            dir = ["k"]
            [auth]
            issuer = 1
            "#,
        )
        .err()
        .unwrap_or_default();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "`roles`",
                "`[database] url`",
                "`[keys] dir`",
                "`[auth] issuer`"
            ],
            "{problems:?}"
        );
        // A section that is not a table, and key sources that are wrong.
        for (text, key) in [
            ("roles = [\"resource\"]\nresource = 1\n", "`[resource]`"),
            (
                "roles = [\"resource\"]\n[resource]\nissuer = \"https://a.example\"\njwks_url = 1\n",
                "`[resource] jwks_url`",
            ),
            (
                "roles = [\"resource\"]\n[resource]\nissuer = \"https://a.example\"\njwks_url = \"ftp://a\"\n",
                "`[resource] jwks_url`",
            ),
            (
                "roles = [\"resource\"]\n[resource]\nissuer = \"https://a.example\"\nkeys = \"remote\"\n",
                "`[resource] keys`",
            ),
        ] {
            let problems = load(text).err().unwrap_or_default();
            let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys, [key], "{text}");
        }
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
