//! The auth role's key clock: logs when the signing key changes because a successor's
//! pre-publication ended or a retirement began (signing itself reads the clock on every token
//! and needs no task), and with `[keys] rotate_after_days` generates the successor of the
//! signing key when it reaches that age.
//!
//! An automatic rotation writes the new key, then retires its predecessor from the moment the
//! new key may sign: the predecessor signs until then, stays published for the token lifetime
//! plus leeway after it, and is then withdrawn from the JWKS. It needs a key directory the
//! daemon may write (`/var/lib/steelcut/keys` under the packaged unit, whose `/etc` is
//! read-only to the service); otherwise a warning says so, once per attempt, hourly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::task::AbortOnDropHandle;

use crate::keys::{self, KeyError, KeySet, RsaBits};
use crate::time::now_millis;

/// Longest sleep of the clock: a reload may bring keys with earlier changes.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Wait after a failed automatic rotation before the next attempt.
const RETRY_AFTER_FAILURE_MS: i64 = 3_600_000;

/// `[keys] rotate_after_days` in force, in seconds (0: rotation by hand); a reload changes it.
pub type RotateAfter = Arc<AtomicU64>;

/// When the newest usable key of the signing algorithm is due for a successor.
fn rotation_due(set: &KeySet, rotate_after: Duration, now: i64) -> Option<i64> {
    let alg = set.schedule().signing_alg;
    set.entries()
        .filter(|k| k.signer.alg() == alg && k.retired_ms.is_none_or(|r| r > now))
        .map(|k| k.created_ms)
        .max()
        .map(|created| created.saturating_add(rotate_after.as_millis() as i64))
}

/// Generates the successor and retires the predecessor from the successor's first signing;
/// returns the reloaded set.
fn rotate(set: &KeySet, now: i64) -> Result<KeySet, KeyError> {
    let schedule = set.schedule();
    let predecessor = set.signing(now).map(|s| s.kid().to_owned());
    let generated = keys::generate(&set.dir, schedule.signing_alg, RsaBits::default())?;
    let fresh = KeySet::load(&set.dir, schedule)?;
    if let (Some(kid), Some(new)) = (predecessor, fresh.position(&generated.kid)) {
        let from = fresh.activates_at(new);
        if let Some(old) = fresh.position(&kid).and_then(|i| fresh.entry(i)) {
            if old.signer.alg() == schedule.signing_alg {
                keys::dir::write_retirement(&old.path, &kid, from)?;
            }
        }
    }
    tracing::info!(kid = %generated.kid, alg = %generated.alg, "generated the successor of the signing key (rotate_after_days)");
    KeySet::load(&set.dir, schedule)
}

/// Starts the clock for the key set in `keys` (replaced by reloads).
pub fn spawn(keys: Arc<ArcSwap<KeySet>>, rotate_after: RotateAfter) -> AbortOnDropHandle<()> {
    AbortOnDropHandle::new(tokio::spawn(async move {
        let mut signing = keys
            .load()
            .signing(now_millis())
            .map(|s| s.kid().to_owned());
        let mut not_before = i64::MIN;
        loop {
            let set = keys.load_full();
            let now = now_millis();
            let every = rotate_after.load(Ordering::Relaxed);
            let due = (every > 0)
                .then(|| rotation_due(&set, Duration::from_secs(every), now))
                .flatten();
            if due.is_some_and(|d| d <= now) && now >= not_before {
                let result = tokio::task::spawn_blocking(move || rotate(&set, now)).await;
                match result.map_err(KeyError::from).and_then(|r| r) {
                    Ok(fresh) => keys.store(Arc::new(fresh)),
                    Err(error) => {
                        not_before = now + RETRY_AFTER_FAILURE_MS;
                        tracing::warn!(%error, "automatic key rotation failed; retrying in an hour");
                    }
                }
                continue;
            }
            let set = keys.load_full();
            let wake = [set.next_change(now), due.filter(|_| now >= not_before)]
                .into_iter()
                .flatten()
                .min()
                .map_or(
                    MAX_SLEEP,
                    |t| Duration::from_millis((t - now).max(1) as u64),
                );
            tokio::time::sleep(wake.min(MAX_SLEEP)).await;
            let now_signing = keys
                .load()
                .signing(now_millis())
                .map(|s| s.kid().to_owned());
            if now_signing != signing {
                match &now_signing {
                    Some(kid) => tracing::info!(%kid, "signing with a new key"),
                    None => tracing::error!("no key may sign now"),
                }
                signing = now_signing;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Alg, Schedule, State};

    #[test]
    fn a_due_key_gets_a_successor_and_is_retired_from_the_successors_first_signing() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let schedule = Schedule::default();
        let (set, _) = KeySet::load_or_generate(&keys, schedule, now_millis()).unwrap();
        let first = set.signing(now_millis()).unwrap().kid().to_owned();
        // 1. Due one day after the key was made.
        let day = Duration::from_secs(86_400);
        let created = set.entries().next().unwrap().created_ms;
        assert_eq!(rotation_due(&set, day, created), Some(created + 86_400_000));
        // 2. The rotation writes a successor of the signing algorithm; the first key signs on
        //    until the successor may, and is retired from that moment.
        let now = now_millis();
        let fresh = rotate(&set, now).unwrap();
        assert_eq!(fresh.entries().count(), 2);
        let new = fresh.entries().find(|k| k.signer.kid() != first).unwrap();
        assert_eq!(new.signer.alg(), Alg::EdDsa);
        let i_new = fresh.position(new.signer.kid()).unwrap();
        let i_old = fresh.position(&first).unwrap();
        let switch = fresh.activates_at(i_new);
        assert_eq!(fresh.entry(i_old).unwrap().retired_ms, Some(switch));
        assert_eq!(fresh.signing(now).map(|s| s.kid()), Some(first.as_str()));
        assert_eq!(fresh.state(i_old, now).1, Some((switch, State::Retired)));
        assert_eq!(
            fresh.signing(switch).map(|s| s.kid()),
            Some(new.signer.kid())
        );
    }
}
