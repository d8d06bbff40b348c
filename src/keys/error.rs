//! What can go wrong with key files, key directories and JWKS documents. Every message names
//! the file and, where there is one, the command that fixes it.

use std::path::{Path, PathBuf};

/// What can go wrong with key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is readable by group or others (mode {mode:o}); private keys must be owner-only: \
         run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "key directory {dir} holds no signing key and cannot be written ({cause}); \
         create one with `steelcutd keys generate --config FILE` as a user that may write there"
    )]
    NoKeyNotWritable { dir: PathBuf, cause: String },
    #[error(
        "key directory {dir} is open to group or others (mode {mode:o}); it holds private keys \
         and must be owner-only: run `chmod 700 {dir}`"
    )]
    DirPermissions { dir: PathBuf, mode: u32 },
    #[error("key directory {dir} holds no signing key; create one with `steelcutd keys generate`")]
    NoKey { dir: PathBuf },
    #[error("invalid JWKS: {0}")]
    Jwks(String),
    #[error("{alg} key generation failed")]
    Generate { alg: super::alg::Alg },
    #[error("signing with key {kid} failed")]
    Sign { kid: String },
    #[error("no key with kid {kid} in {dir}")]
    UnknownKid { kid: String, dir: PathBuf },
    #[error("reading keys failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A [`KeyError::File`] for `path`.
pub fn file_err(path: &Path, message: impl std::fmt::Display) -> KeyError {
    KeyError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}
