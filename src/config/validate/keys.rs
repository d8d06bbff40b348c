//! `[keys]`. What the directory holds is the preflight's business.

use std::path::PathBuf;
use std::time::Duration;

use super::values::at_least_one;
use crate::config::error::Problems;
use crate::config::file::RawKeys;
use crate::config::types::{KeysConfig, SigningAlg};

const DAY: u64 = 86_400;

pub(super) fn validate_keys(raw: RawKeys, p: &mut Problems) -> Option<KeysConfig> {
    let signing_alg = match raw
        .signing_alg
        .as_deref()
        .map(|s| (s, SigningAlg::parse(s)))
    {
        None => Some(SigningAlg::default()),
        Some((_, Some(alg))) => Some(alg),
        Some((other, None)) => {
            p.push(
                "`[keys] signing_alg`",
                format!("{other:?} is not \"EdDSA\", \"ES256\" or \"RS256\""),
            );
            None
        }
    };
    let publish_before_sign = Duration::from_secs(raw.publish_before_sign_secs.unwrap_or(900));
    let rotate_after = raw.rotate_after_days.map(|days| {
        let days = at_least_one("`[keys] rotate_after_days`", Some(days), 1, p);
        Duration::from_secs(days.saturating_mul(DAY))
    });
    // A key that would be replaced before it ever signs.
    if let Some(rotate) = rotate_after.filter(|r| publish_before_sign >= *r) {
        p.push(
            "`[keys] publish_before_sign_secs`",
            format!(
                "{} seconds is not less than rotate_after_days ({} seconds): a new key would be \
                 replaced before it signs",
                publish_before_sign.as_secs(),
                rotate.as_secs()
            ),
        );
    }
    let Some(dir) = raw.dir else {
        p.missing(
            "`[keys] dir`",
            "missing: the directory holding the signing keys (e.g. \"/etc/steelcut/keys\")",
        );
        return None;
    };
    Some(KeysConfig {
        dir: PathBuf::from(dir),
        signing_alg: signing_alg?,
        publish_before_sign,
        rotate_after,
    })
}
