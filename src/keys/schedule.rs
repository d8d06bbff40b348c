//! The rotation rules: from each key's algorithm, creation time and retirement (if any), and
//! the clock, which key signs, which keys are published, and when that changes. Pure functions
//! of the key set and a time, so the daemon, `keys list` and the tests agree by construction,
//! and the daemon moves to a successor when its time comes without being told.
//!
//! - A key is **published** in the JWKS from its creation. It **signs** only once it has been
//!   published for `publish_before_sign`, so that every resource server has fetched it before
//!   the first token it signs arrives (the default 900 s is three times the default JWKS
//!   refresh of 300 s). The exception is a key with no usable predecessor (a directory's first
//!   key, or the first after every other was retired): nobody can hold tokens from a key that
//!   does not exist yet, and waiting would leave the node unable to sign, so it signs at once.
//! - Of the keys that may sign, the newest of the configured algorithm signs; if none of that
//!   algorithm may sign yet, the newest of any algorithm does.
//! - A **retired** key stops signing at its retirement time and stays published for
//!   `retire_grace` (token lifetime plus leeway) after it, so the tokens it signed stay valid
//!   until they expire; then it is **withdrawn** from the JWKS.

use std::time::Duration;

use super::alg::Alg;

/// The parameters of the rules, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// The algorithm that should sign (`[keys] signing_alg`).
    pub signing_alg: Alg,
    /// `[keys] publish_before_sign_secs`.
    pub publish_before_sign: Duration,
    /// How long a retired key stays published: `[auth] token_lifetime_secs` plus
    /// `[resource] leeway_secs`.
    pub retire_grace: Duration,
}

impl Default for Schedule {
    /// The defaults of the configuration: EdDSA, 900 s, 3600 s + 30 s.
    fn default() -> Self {
        Self {
            signing_alg: Alg::EdDsa,
            publish_before_sign: Duration::from_secs(900),
            retire_grace: Duration::from_secs(3600 + 30),
        }
    }
}

/// What the rules need to know of one key. Times in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTimes {
    pub alg: Alg,
    pub created_ms: i64,
    /// When it stops (or stopped) signing, if it is retired.
    pub retired_ms: Option<i64>,
}

/// Where a key stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// In the JWKS, not signing: before it signs for the first time, or after a newer key took
    /// over (its tokens stay valid).
    Published,
    /// In the JWKS and signing new tokens.
    Signing,
    /// Signs no more; in the JWKS until the tokens it signed have expired.
    Retired,
    /// Retired and out of the JWKS: its file may be deleted.
    Withdrawn,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Signing => "signing",
            Self::Retired => "retired",
            Self::Withdrawn => "withdrawn",
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whether `j` is older than `i` (creation time, then position as the tie-break).
fn older(keys: &[KeyTimes], j: usize, i: usize) -> bool {
    (keys[j].created_ms, j) < (keys[i].created_ms, i)
}

impl Schedule {
    /// When key `i` may start signing: at once for a key without a usable predecessor (no
    /// older key that was not retired when it was made), `publish_before_sign` after its
    /// creation otherwise.
    pub fn activates_at(&self, keys: &[KeyTimes], i: usize) -> i64 {
        let created = keys[i].created_ms;
        let has_predecessor = (0..keys.len())
            .any(|j| older(keys, j, i) && keys[j].retired_ms.is_none_or(|r| r > created));
        if has_predecessor {
            created.saturating_add(ms(self.publish_before_sign))
        } else {
            created
        }
    }

    fn may_sign(&self, keys: &[KeyTimes], i: usize, now: i64) -> bool {
        self.activates_at(keys, i) <= now && keys[i].retired_ms.is_none_or(|r| now < r)
    }

    /// The key that signs at `now`: the newest one that may sign of the configured algorithm,
    /// else the newest one that may sign of any algorithm.
    pub fn signing(&self, keys: &[KeyTimes], now: i64) -> Option<usize> {
        let newest = |want: Option<Alg>| {
            (0..keys.len())
                .filter(|&i| want.is_none_or(|a| keys[i].alg == a) && self.may_sign(keys, i, now))
                .max_by_key(|&i| (keys[i].created_ms, i))
        };
        newest(Some(self.signing_alg)).or_else(|| newest(None))
    }

    /// Whether key `i` is in the JWKS at `now`.
    pub fn published(&self, keys: &[KeyTimes], i: usize, now: i64) -> bool {
        keys[i]
            .retired_ms
            .is_none_or(|r| now < r.saturating_add(ms(self.retire_grace)))
    }

    /// The state of key `i` at `now`.
    pub fn state(&self, keys: &[KeyTimes], i: usize, now: i64) -> State {
        match keys[i].retired_ms {
            Some(r) if r <= now && !self.published(keys, i, now) => State::Withdrawn,
            Some(r) if r <= now => State::Retired,
            _ if self.signing(keys, now) == Some(i) => State::Signing,
            _ => State::Published,
        }
    }

    /// Every time after `now` at which some key's state may change, earliest first.
    fn events(&self, keys: &[KeyTimes], now: i64) -> Vec<i64> {
        let mut out: Vec<i64> = (0..keys.len())
            .flat_map(|i| {
                let retired = keys[i].retired_ms;
                [
                    Some(self.activates_at(keys, i)),
                    retired,
                    retired.map(|r| r.saturating_add(ms(self.retire_grace))),
                ]
            })
            .flatten()
            .filter(|&t| t > now)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The next time after `now` at which any key's state changes (the signing key or the
    /// published set), if one is known.
    pub fn next_change(&self, keys: &[KeyTimes], now: i64) -> Option<i64> {
        self.events(keys, now).into_iter().next()
    }

    /// When key `i` next changes state after `now`, and into what.
    pub fn change(&self, keys: &[KeyTimes], i: usize, now: i64) -> Option<(i64, State)> {
        let current = self.state(keys, i, now);
        self.events(keys, now)
            .into_iter()
            .map(|t| (t, self.state(keys, i, t)))
            .find(|(_, s)| *s != current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn schedule(alg: Alg) -> Schedule {
        Schedule {
            signing_alg: alg,
            publish_before_sign: Duration::from_secs(15 * 60),
            retire_grace: Duration::from_secs(60 * 60),
        }
    }

    fn key(alg: Alg, created_min: i64) -> KeyTimes {
        KeyTimes {
            alg,
            created_ms: created_min * MIN,
            retired_ms: None,
        }
    }

    #[test]
    fn a_first_key_signs_at_once_and_a_successor_after_pre_publication() {
        let s = schedule(Alg::EdDsa);
        let keys = [key(Alg::EdDsa, 0), key(Alg::EdDsa, 100)];
        assert_eq!(s.activates_at(&keys, 0), 0);
        assert_eq!(s.signing(&keys, 0), Some(0));
        // The successor is published at once but the first key keeps signing for 15 minutes.
        assert_eq!(s.state(&keys, 1, 100 * MIN), State::Published);
        assert_eq!(s.signing(&keys, 114 * MIN), Some(0));
        assert_eq!(
            s.change(&keys, 0, 100 * MIN),
            Some((115 * MIN, State::Published))
        );
        assert_eq!(
            s.change(&keys, 1, 100 * MIN),
            Some((115 * MIN, State::Signing))
        );
        assert_eq!(s.signing(&keys, 115 * MIN), Some(1));
        assert!(s.published(&keys, 0, 10_000 * MIN));
    }

    #[test]
    fn a_new_algorithm_waits_while_the_old_one_signs() {
        let s = schedule(Alg::Es256);
        let keys = [key(Alg::EdDsa, 0), key(Alg::Es256, 10)];
        assert_eq!(s.signing(&keys, 20 * MIN), Some(0));
        assert_eq!(s.signing(&keys, 25 * MIN), Some(1));
    }

    #[test]
    fn a_retired_key_stops_signing_at_once_and_is_withdrawn_after_the_grace() {
        let s = schedule(Alg::EdDsa);
        let mut keys = [key(Alg::EdDsa, 0), key(Alg::EdDsa, 100)];
        keys[0].retired_ms = Some(200 * MIN);
        assert_eq!(s.state(&keys, 0, 200 * MIN), State::Retired);
        assert_eq!(s.signing(&keys, 200 * MIN), Some(1));
        assert_eq!(
            s.change(&keys, 0, 200 * MIN),
            Some((260 * MIN, State::Withdrawn))
        );
        assert!(!s.published(&keys, 0, 260 * MIN));
        // A key made after every other was retired has no predecessor: it signs at once.
        let mut alone = [key(Alg::EdDsa, 0), key(Alg::EdDsa, 100)];
        alone[0].retired_ms = Some(50 * MIN);
        assert_eq!(s.signing(&alone, 100 * MIN), Some(1));
    }

    #[test]
    fn the_defaults_publish_longer_than_a_jwks_refresh_plus_margin() {
        // The default `[resource] jwks_refresh_secs` is 300: a resource server fetches a new
        // key at most 300 s after it is published; a minute of margin covers a fetch that
        // fails once and the clock skew between nodes.
        let d = Schedule::default();
        assert!(d.publish_before_sign > Duration::from_secs(300 + 60));
    }
}
