//! `[keys]`. What the directory holds is the preflight's business.

use std::path::PathBuf;

use crate::config::error::Problems;
use crate::config::file::RawKeys;
use crate::config::types::KeysConfig;

pub(super) fn validate_keys(raw: RawKeys, p: &mut Problems) -> Option<KeysConfig> {
    let Some(dir) = raw.dir else {
        p.missing(
            "`[keys] dir`",
            "missing: the directory holding the signing keys (e.g. \"/etc/steelcut/keys\")",
        );
        return None;
    };
    Some(KeysConfig {
        dir: PathBuf::from(dir),
    })
}
