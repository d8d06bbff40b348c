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
mod load;
mod types;
mod validate;

pub use env::env_name;
pub use error::{ConfigError, Problem};
pub use preflight::plan::{CheckError, Checked, Options, TlsLoader};
pub use types::*;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

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

#[cfg(test)]
mod properties {
    use std::collections::BTreeMap;
    use std::path::Path;

    use proptest::prelude::*;

    use super::Config;

    /// TOML made of this file's own section and key names, with values of every type.
    fn toml_text() -> impl Strategy<Value = String> {
        let section = prop_oneof![
            Just(""),
            Just("[server]"),
            Just("[server.tls]"),
            Just("[log]"),
            Just("[database]"),
            Just("[keys]"),
            Just("[auth]"),
            Just("[auth.argon2]"),
            Just("[auth.limits]"),
            Just("[resource]"),
            Just("[[resource.routes]]"),
            Just("[bogus]"),
        ];
        let key = "(roles|listen|url|dir|issuer|path|file|audience|scope|jwks_url|max_connections|token_lifetime_secs|memory_kib|client_burst|trusted_proxies|signing_alg|x)";
        let value = prop_oneof![
            Just("\"auth\"".to_owned()),
            Just("[\"auth\", \"resource\"]".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            "\"[ -!#-\\[\\]-~]{0,30}\"",
            Just("true".to_owned()),
            Just("[1, \"a\"]".to_owned()),
            Just("{ a = 1 }".to_owned()),
        ];
        proptest::collection::vec((section, key, value), 0..20).prop_map(|lines| {
            lines
                .into_iter()
                .map(|(s, k, v)| format!("{s}\n{k} = {v}\n"))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn any_text_is_a_configuration_or_a_list_of_problems(text in "\\PC{0,400}") {
            let _ = Config::from_toml(Path::new("t.toml"), &text, &BTreeMap::new());
        }

        #[test]
        fn any_mix_of_known_keys_and_values_is_judged_without_panicking(text in toml_text()) {
            match Config::from_toml(Path::new("t.toml"), &text, &BTreeMap::new()) {
                Ok(_) => {}
                Err(problems) => prop_assert!(!problems.is_empty()),
            }
        }
    }
}
