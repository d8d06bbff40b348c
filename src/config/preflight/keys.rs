//! `[keys] dir`: the signing keys load as `serve` will load them, or the directory can be
//! created and a first key generated in it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::paths::{creatable, writable, Uncreatable};
use super::plan::Report;
use crate::keys::{Alg, KeyError, KeySet, Schedule};

const KEY: &str = "`[keys] dir`";

/// Checks the key directory; `signs` is the algorithm of a node that signs, which generates a
/// key of it if there is none.
pub(super) fn check_key_dir(dir: &Path, signs: Option<Alg>, r: &mut Report) {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => r.problem(KEY, format!("{} is not a directory", dir.display())),
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            // The key files are checked one by one too, but a directory others may write to
            // lets them swap a key in. The same rule and words as `KeySet::load`, which would
            // refuse it next; the fix comes first.
            if mode & 0o077 != 0 {
                let refused = KeyError::DirPermissions {
                    dir: dir.to_owned(),
                    mode,
                };
                return r.problem(KEY, refused.to_string());
            }
            check_keys(dir, signs, r)
        }
        Err(e) => match creatable(dir, e) {
            Ok(()) => {}
            Err(Uncreatable::Blocked { blocker }) => r.problem(
                KEY,
                format!(
                    "{} cannot be created: {} is not a directory; point `[keys] dir` at a \
                     directory, then create the first key with `steelcutd keys generate`",
                    dir.display(),
                    blocker.display()
                ),
            ),
            Err(Uncreatable::Unreadable(e)) => {
                r.problem(KEY, format!("{} cannot be read: {e}", dir.display()))
            }
            Err(e @ Uncreatable::ReadOnly { .. }) => r.problem(
                KEY,
                format!(
                    "{} cannot be created: {e}; create it with `steelcutd keys generate` as a \
                     user that may",
                    dir.display()
                ),
            ),
        },
    }
}

/// An existing directory: every key file owner-only (each refused file named with its fix),
/// every key parses, and a node that signs has a key or may write one; a key of its signing
/// algorithm, or a warning that another algorithm will sign.
fn check_keys(dir: &Path, signs: Option<Alg>, r: &mut Report) {
    let files = match key_files(dir) {
        Ok(files) => files,
        Err(e) => {
            return r.problem(
                KEY,
                format!(
                    "{} cannot be read: {e} (the daemon's user needs read access)",
                    dir.display()
                ),
            )
        }
    };
    let mut refused = false;
    for (path, mode) in files {
        if mode & 0o077 != 0 {
            r.problem(KEY, KeyError::Permissions { path, mode }.to_string());
            refused = true;
        }
    }
    if refused {
        return;
    }
    // Loading is all that is checked here: which key signs depends on the clock, not on the file.
    let set = match KeySet::load(dir, Schedule::default()) {
        Err(e) => return r.problem(KEY, e.to_string()),
        Ok(set) => set,
    };
    let Some(alg) = signs else {
        return;
    };
    let now = crate::time::now_millis();
    let has_alg = set
        .entries()
        .any(|k| k.signer.alg() == alg && k.retired_ms.is_none_or(|t| t > now));
    match writable(dir) {
        Err(e) if set.is_empty() => {
            let e = KeyError::NoKeyNotWritable {
                dir: dir.to_owned(),
                cause: e.to_string(),
            };
            r.problem(KEY, e.to_string());
        }
        Err(e) if !has_alg => r.warning(
            "`[keys] signing_alg`",
            format!(
                "{} holds no {alg} key and cannot be written ({e}): a key of another algorithm \
                 keeps signing; run `steelcutd keys generate --alg {alg}` as a user that may \
                 write there, then reload",
                dir.display()
            ),
        ),
        _ => {}
    }
}

/// The `*.pem` files of `dir` with their permission bits.
fn key_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, u32)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pem") {
            continue;
        }
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        out.push((path, mode));
    }
    out.sort();
    Ok(out)
}
