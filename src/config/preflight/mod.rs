//! The preflight: what `serve` will find on disk and on the network, checked before it starts,
//! so that "configuration is valid" means the daemon will start.
//!
//! Validation looks only at the text of the file. While it runs, each section notes the files,
//! directories and servers its values name (a [`Plan`]); the preflight then checks them all in
//! one pass:
//!
//! - the key directory: owner-only, every key file owner-only (each refused one named with the
//!   `chmod` to run) and loadable, or a directory that can be created;
//! - the TLS certificate and key, loaded as `serve` loads them;
//! - a resource node's `jwks_file` or `public_keys_dir`;
//! - every route's document: a regular file within `[resource] max_document_bytes`, read
//!   without blocking (`crate::files::read_regular`), holding JSON;
//! - the database: a SQLite path that can be opened or created, a PostgreSQL server that
//!   answers within `connect_timeout_secs`.
//!
//! Its problems join validation's, so the operator still gets every problem at once, each
//! naming the key and the file.
//!
//! It also warns about what works but exposes a secret: a configuration file every user may
//! read that holds a database password, or a SQLite database (the clients' argon2 hashes) every
//! user may read.
//!
//! `check-config`, `serve` and SIGHUP reloads all run [`Config::check`].

mod database;
mod files;
mod keys;
mod paths;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::Problems;
use super::types::{Config, DatabaseConfig, TlsConfig};
use super::{env, ConfigError, Problem};

/// Something on disk or on the network that a value names, to be checked by the preflight.
#[derive(Debug)]
pub(crate) enum Check {
    Tls(TlsConfig),
    /// `signs`: the node generates a first key when the directory holds none.
    KeyDir {
        dir: PathBuf,
        signs: bool,
    },
    Database(DatabaseConfig),
    JwksFile(PathBuf),
    PublicKeysDir(PathBuf),
    /// A route's document; `label` names the route in messages.
    Document {
        label: String,
        file: PathBuf,
        max_bytes: u64,
    },
    /// The configuration file itself holds a database password.
    SecretInFile(PathBuf),
}

/// The checks noted during validation, in the order of the file.
#[derive(Debug, Default)]
pub(crate) struct Plan(Vec<Check>);

impl Plan {
    pub fn push(&mut self, check: Check) {
        self.0.push(check);
    }
}

/// Builds the TLS acceptor exactly as `serve` will. The HTTP layer owns TLS and sits above
/// the configuration, so the caller passes it in rather than this module importing it.
pub type TlsLoader<'a> =
    &'a dyn Fn(&TlsConfig) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// What the preflight checks beyond the files.
pub struct Options<'a> {
    /// Whether to check the database. A reload keeps the database the process started with,
    /// and must not fail because the database is down at that moment.
    pub database: bool,
    pub tls: TlsLoader<'a>,
}

/// What the preflight found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    problems: Problems,
    /// Problems that trying again later may solve (a database server that does not answer).
    unavailable: Problems,
    warnings: Problems,
}

impl Report {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(key, message);
    }

    fn unavailable(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.unavailable.push(key, message);
    }

    fn warning(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(key, message);
    }
}

/// A configuration that passed validation and the preflight.
#[derive(Debug)]
pub struct Checked {
    pub config: Config,
    /// Things that work but should be changed, each naming its key (the file is
    /// `config.file`).
    pub warnings: Vec<Problem>,
}

/// Why [`Config::check`] refused a configuration; both list every problem.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file, or what it names on disk, is wrong: the operator has to change something.
    #[error(transparent)]
    Invalid(ConfigError),
    /// Everything is right except that the database does not answer now: trying again later
    /// may work without any change.
    #[error(transparent)]
    Unavailable(ConfigError),
}

impl CheckError {
    /// The problems, whatever their kind.
    pub fn into_config_error(self) -> ConfigError {
        match self {
            Self::Invalid(e) | Self::Unavailable(e) => e,
        }
    }
}

impl Config {
    /// Loads `path` with the process environment, then runs the preflight.
    pub fn check(path: &Path, options: &Options<'_>) -> Result<Checked, CheckError> {
        Self::check_with_env(path, &env::process_vars(), options)
    }

    /// As [`Config::check`], with the environment given explicitly.
    pub fn check_with_env(
        path: &Path,
        env: &BTreeMap<String, String>,
        options: &Options<'_>,
    ) -> Result<Checked, CheckError> {
        let text = super::read(path).map_err(CheckError::Invalid)?;
        let mut found = super::evaluate(path, &text, env);
        let report = run(&found.plan, options);
        let transient = found.problems.0.is_empty()
            && report.problems.0.is_empty()
            && !report.unavailable.0.is_empty();
        found.problems.0.extend(report.problems.0);
        found.problems.0.extend(report.unavailable.0);
        found.overridden.name_variables(&mut found.problems.0);
        let mut warnings = report.warnings.0;
        found.overridden.name_variables(&mut warnings);
        match found.config {
            Some(config) if found.problems.0.is_empty() => Ok(Checked { config, warnings }),
            _ => {
                let error = ConfigError {
                    file: path.to_owned(),
                    problems: found.problems.0,
                };
                Err(if transient {
                    CheckError::Unavailable(error)
                } else {
                    CheckError::Invalid(error)
                })
            }
        }
    }
}

/// Runs every check of `plan`.
fn run(plan: &Plan, options: &Options<'_>) -> Report {
    let mut r = Report::default();
    for check in &plan.0 {
        match check {
            Check::Tls(tls) => files::check_tls(tls, options, &mut r),
            Check::KeyDir { dir, signs } => keys::check_key_dir(dir, *signs, &mut r),
            Check::Database(db) if options.database => database::check_database(db, &mut r),
            Check::Database(_) => {}
            Check::JwksFile(f) => files::check_jwks_file(f, &mut r),
            Check::PublicKeysDir(d) => files::check_public_keys_dir(d, &mut r),
            Check::Document {
                label,
                file,
                max_bytes,
            } => files::check_document(label, file, *max_bytes, &mut r),
            Check::SecretInFile(file) => files::check_secret_file(file, &mut r),
        }
    }
    r
}
