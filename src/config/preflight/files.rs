//! Files the daemon reads at start: the TLS certificate and key, the verification keys of a
//! resource node, and the documents its routes serve.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::plan::{Options, Report};
use crate::config::types::TlsConfig;
use crate::files::{read_regular, ReadError};

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

/// A route's document: a regular file of at most `max_bytes`, and one complete JSON value.
/// `label` names the route.
pub(super) fn check_document(label: &str, file: &Path, max_bytes: u64, r: &mut Report) {
    let key = format!("{label} `file`");
    let shown = file.display();
    match read_regular(file, max_bytes) {
        Err(ReadError::TooLarge { size, limit }) => r.problem(
            key,
            format!("{shown} is {size} bytes, more than `[resource] max_document_bytes` ({limit})"),
        ),
        Err(e @ ReadError::NotRegular(_)) => r.problem(key, format!("{shown} {e}")),
        Err(e) => r.problem(key, format!("{shown}: {e}")),
        Ok(bytes) => {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                r.problem(key, format!("{} is not valid JSON: {e}", file.display()));
            }
        }
    }
}

/// A configuration file holding a database password should not be readable by every user. The
/// package installs it root:steelcut 0640, so the group is the daemon's and is left alone.
pub(super) fn check_secret_file(file: &Path, r: &mut Report) {
    let Ok(meta) = std::fs::metadata(file) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        let f = file.display();
        r.warning(
            "`[database] url`",
            format!(
                "{f} is readable by every user (mode {mode:o}) and this URL holds a password: \
                 run `chmod 640 {f}` (the group being the daemon's) or `chmod 600 {f}`, or \
                 leave the password out of the file and set STEELCUT_DATABASE_URL from an \
                 EnvironmentFile= only root may read or from a systemd credential"
            ),
        );
    }
}
