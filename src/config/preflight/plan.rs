//! What the preflight is asked to check (a [`Plan`] noted during validation), how it is told
//! to check it ([`Options`]), and what it found ([`Report`], then [`Checked`] or
//! [`CheckError`]).

use std::path::PathBuf;

use crate::config::error::{ConfigError, Problem, Problems};
use crate::config::types::{Config, DatabaseConfig, TlsConfig};

/// Something on disk or on the network that a value names, to be checked by the preflight.
#[derive(Debug)]
pub(crate) enum Check {
    Tls(TlsConfig),
    /// `signs`: the algorithm the node signs with, if it signs: it generates a key of it when
    /// the directory holds none.
    KeyDir {
        dir: PathBuf,
        signs: Option<crate::keys::Alg>,
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
pub(crate) struct Plan(pub(crate) Vec<Check>);

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
    pub(crate) problems: Problems,
    /// Problems that trying again later may solve (a database server that does not answer).
    pub(crate) unavailable: Problems,
    pub(crate) warnings: Problems,
}

impl Report {
    pub(super) fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(key, message);
    }

    pub(super) fn unavailable(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.unavailable.push(key, message);
    }

    pub(super) fn warning(&mut self, key: impl Into<String>, message: impl Into<String>) {
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
