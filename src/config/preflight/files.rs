//! Files the daemon reads at start: the TLS certificate and key, the verification keys of a
//! resource node, and the documents its routes serve.

use std::path::Path;

use super::{Options, Report};
use crate::config::types::TlsConfig;

/// Each TLS file opens, then the two make an acceptor (by the loader `serve` uses).
pub(super) fn check_tls(tls: &TlsConfig, options: &Options<'_>, r: &mut Report) {
    let mut opened = true;
    for (key, path) in [("cert", &tls.cert), ("key", &tls.key)] {
        if let Err(e) = std::fs::File::open(path) {
            r.problem(
                format!("`[server.tls] {key}`"),
                format!("{}: {e}", path.display()),
            );
            opened = false;
        }
    }
    if opened {
        if let Err(e) = (options.tls)(tls) {
            r.problem("`[server.tls]`", e.to_string());
        }
    }
}

/// `[resource] jwks_file`.
pub(super) fn check_jwks_file(file: &Path, r: &mut Report) {
    if !file.is_file() {
        r.problem(
            "`[resource] jwks_file`",
            format!(
                "{} does not exist (write it with `steelcutd keys export-public`)",
                file.display()
            ),
        );
    }
}

/// `[resource] public_keys_dir`.
pub(super) fn check_public_keys_dir(dir: &Path, r: &mut Report) {
    if !dir.is_dir() {
        r.problem(
            "`[resource] public_keys_dir`",
            format!("{} is not a directory", dir.display()),
        );
    }
}

/// A route's document: readable, and one complete JSON value. `label` names the route.
pub(super) fn check_document(label: &str, file: &Path, r: &mut Report) {
    let key = format!("{label} `file`");
    match std::fs::read(file) {
        Err(e) => r.problem(key, format!("{}: {e}", file.display())),
        Ok(bytes) => {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                r.problem(key, format!("{} is not valid JSON: {e}", file.display()));
            }
        }
    }
}
