//! Configuration errors: every problem found in one pass, each naming its key and file.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key in TOML notation, e.g. "`[server] listen`" or "`[[resource.routes]]` #2 `file`".
    pub key: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

/// The configuration could not be loaded. Lists every problem, not only the first.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {} problem{} in the configuration",
            self.file.display(),
            n,
            if n == 1 { "" } else { "s" }
        )?;
        // Each line names the file too, so that one line copied into a ticket or grepped out of
        // a journal still says where to look.
        for p in &self.problems {
            write!(f, "\n  - {}: {}: {}", self.file.display(), p.key, p.message)?;
        }
        Ok(())
    }
}

/// Collects problems while validating.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Whether a problem names `key` already (e.g. a value of the wrong type, which is left
    /// out before validation and would otherwise look missing).
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|p| {
            p.key == key
                || p.key
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with(" ("))
        })
    }

    /// Reports `key` as missing, unless a problem names it already: one mistake, one problem.
    pub fn missing(&mut self, key: &str, message: impl Into<String>) {
        if !self.has(key) {
            self.push(key, message);
        }
    }
}

/// How a key is named in messages, e.g. "`[server] listen`" (`section` empty: a top-level key).
pub(crate) fn key_name(section: &str, key: &str) -> String {
    if section.is_empty() {
        format!("`{key}`")
    } else {
        format!("`[{section}] {key}`")
    }
}
