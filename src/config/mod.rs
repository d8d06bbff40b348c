//! The configuration: one TOML file, `STEELCUT_<SECTION>_<KEY>` overrides, and validation.
//!
//! Loading happens in two stages: the TOML text, with the environment overrides of `env`
//! applied, is deserialized key by key (`lenient`) into the raw structs of [`file`]; then
//! `validate` checks every value and yields either a [`Config`] (the types of `types`)
//! whose fields can be trusted or a [`ConfigError`] listing *all* problems, each naming the key
//! and the file. `check-config`, `serve` and SIGHUP reloads all go through [`Config::load`],
//! so they agree on what is valid.
//!
//! - [`file`]: the file as written, every field documented for operators.
//! - `env`: which keys the environment may override, and how.
//! - `lenient`: one key's mistake does not hide its section's other keys.
//! - `validate`: one module per section.
//! - `types`: the validated configuration the daemon reads.
//! - [`error`]: a problem names its key and the file.

pub mod error;
pub mod file;

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
pub use types::*;

impl Config {
    /// Reads, overrides from the process environment, and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, &env::process_vars())
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
        let overridden = env::apply(&mut doc, env, &mut problems);
        let raw = lenient::split_sections(doc, &mut problems);
        let config = validate::validate(path, raw, &mut problems);
        overridden.name_variables(&mut problems.0);
        if problems.0.is_empty() {
            config.ok_or_else(Vec::new)
        } else {
            Err(problems.0)
        }
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
