//! Loading: the file's text, the environment's overrides, validation into a [`Config`], and
//! (for [`Config::check`]) the preflight of what the values name.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::{ConfigError, Problem, Problems};
use super::preflight::plan::{Check, CheckError, Checked, Options, Plan};
use super::types::{Config, DatabaseUrl};
use super::{env, lenient, preflight, validate};

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
        plan.push(Check::SecretInFile(path.to_owned()));
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
        let text = read(path).map_err(CheckError::Invalid)?;
        let mut found = evaluate(path, &text, env);
        let report = preflight::run(&found.plan, options);
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
