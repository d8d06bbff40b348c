//! `[keys]`.

use std::path::{Path, PathBuf};

use crate::config::error::Problems;
use crate::config::file::RawKeys;
use crate::config::types::KeysConfig;

pub(super) fn validate_keys(raw: RawKeys, p: &mut Problems) -> Option<KeysConfig> {
    let Some(dir) = raw.dir else {
        p.push(
            "`[keys] dir`",
            "missing: the directory holding the signing keys (e.g. \"/etc/steelcut/keys\")",
        );
        return None;
    };
    let dir = PathBuf::from(dir);
    check_dir(&dir, p);
    Some(KeysConfig { dir })
}

fn check_dir(dir: &Path, p: &mut Problems) {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => p.push(
            "`[keys] dir`",
            format!("{} is not a directory", dir.display()),
        ),
        Ok(_) => {
            if let Err(e) = std::fs::read_dir(dir) {
                p.push(
                    "`[keys] dir`",
                    format!(
                        "{} cannot be read: {e} (the daemon's user needs read access)",
                        dir.display()
                    ),
                );
            }
        }
        Err(e) => {
            // A missing directory is created (mode 0700) on first start or by `keys generate`,
            // which works only if its nearest existing ancestor is a directory.
            let nearest = dir.ancestors().skip(1).find_map(|a| {
                let a = if a.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    a
                };
                std::fs::metadata(a).ok().map(|m| (a, m.is_dir()))
            });
            match nearest {
                Some((_, true)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Some((blocker, false)) => p.push(
                    "`[keys] dir`",
                    format!(
                        "{} cannot be created: {} is not a directory; point `[keys] dir` at a \
                         directory, then create the first key with `steelcutd keys generate`",
                        dir.display(),
                        blocker.display()
                    ),
                ),
                _ => p.push(
                    "`[keys] dir`",
                    format!("{} cannot be read: {e}", dir.display()),
                ),
            }
        }
    }
}
