//! A key directory as the daemon holds it: every key loaded, the rules of [`Schedule`] applied
//! to them at any time asked. Replaced whole when the directory is read again (a reload or the
//! daemon's own generation); between two reads, which key signs and which are published follow
//! the clock alone.

use std::path::{Path, PathBuf};

use super::alg::{Alg, RsaBits};
use super::dir::{self, Generated, KeyEntry};
use super::error::KeyError;
use super::jwk::PublicJwk;
use super::schedule::{KeyTimes, Schedule, State};
use super::signer::Signer;

/// The keys of a key directory, newest first, and the rules in force.
#[derive(Debug)]
pub struct KeySet {
    pub dir: PathBuf,
    keys: Vec<KeyEntry>,
    /// What the rules read of `keys`, in the same order.
    times: Vec<KeyTimes>,
    schedule: Schedule,
}

/// What [`KeySet::load_or_generate`] did about a missing key of the signing algorithm.
#[derive(Debug)]
pub enum Provision {
    /// The directory had one.
    Present,
    /// One was generated.
    Generated(Generated),
    /// None could be generated (the directory is read-only); another algorithm signs.
    CannotGenerate(KeyError),
}

impl KeySet {
    /// Loads every `*.pem` in `dir` (and their retirements), refusing files that others may
    /// read.
    pub fn load(dir: &Path, schedule: Schedule) -> Result<Self, KeyError> {
        let mut keys = dir::read_keys(dir)?;
        keys.sort_by(|a, b| (b.created_ms, a.signer.kid()).cmp(&(a.created_ms, b.signer.kid())));
        // The same key copied under two names counts once (the newer name).
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(k.signer.kid().to_owned()));
        let times = keys
            .iter()
            .map(|k| KeyTimes {
                alg: k.signer.alg(),
                created_ms: k.created_ms,
                retired_ms: k.retired_ms,
            })
            .collect();
        Ok(Self {
            dir: dir.to_owned(),
            keys,
            times,
            schedule,
        })
    }

    /// Loads the directory and makes sure it holds a key of the signing algorithm that is not
    /// retired, generating one if not (the `serve` and reload path). In an empty directory the
    /// new key signs at once; beside keys of another algorithm it waits its pre-publication
    /// while they sign. An empty directory that cannot be written is an error; a directory
    /// with other keys that cannot be written only means the other algorithm keeps signing.
    pub fn load_or_generate(
        dir: &Path,
        schedule: Schedule,
        now: i64,
    ) -> Result<(Self, Provision), KeyError> {
        let set = Self::load(dir, schedule)?;
        let has_alg = (0..set.keys.len()).any(|i| {
            set.times[i].alg == schedule.signing_alg
                && set.times[i].retired_ms.is_none_or(|r| r > now)
        });
        if has_alg {
            return Ok((set, Provision::Present));
        }
        match dir::generate(dir, schedule.signing_alg, RsaBits::default()) {
            Ok(generated) => Ok((Self::load(dir, schedule)?, Provision::Generated(generated))),
            Err(e) if set.signing(now).is_some() => Ok((set, Provision::CannotGenerate(e))),
            Err(e) => Err(KeyError::NoKeyNotWritable {
                dir: dir.to_owned(),
                cause: match e {
                    KeyError::File { message, .. } => message,
                    other => other.to_string(),
                },
            }),
        }
    }

    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key, newest first.
    pub fn entries(&self) -> impl Iterator<Item = &KeyEntry> {
        self.keys.iter()
    }

    /// The key that signs new tokens at `now` (milliseconds since the epoch).
    pub fn signing(&self, now: i64) -> Option<&Signer> {
        self.schedule
            .signing(&self.times, now)
            .map(|i| &self.keys[i].signer)
    }

    /// The state of the key at position `i` of [`KeySet::entries`] at `now`, and its next
    /// change.
    pub fn state(&self, i: usize, now: i64) -> (State, Option<(i64, State)>) {
        (
            self.schedule.state(&self.times, i, now),
            self.schedule.change(&self.times, i, now),
        )
    }

    /// When the key at position `i` may sign.
    pub fn activates_at(&self, i: usize) -> i64 {
        self.schedule.activates_at(&self.times, i)
    }

    /// The next time the signing key or the published set changes, after `now`.
    pub fn next_change(&self, now: i64) -> Option<i64> {
        self.schedule.next_change(&self.times, now)
    }

    /// The keys in the JWKS at `now`, in its order: RSA and EC before OKP (see
    /// [`Alg::jwks_rank`]), newest first within each.
    fn published(&self, now: i64) -> Vec<&KeyEntry> {
        let mut out: Vec<&KeyEntry> = (0..self.keys.len())
            .filter(|&i| self.schedule.published(&self.times, i, now))
            .map(|i| &self.keys[i])
            .collect();
        // A stable sort keeps newest-first within a rank.
        out.sort_by_key(|k| k.signer.alg().jwks_rank());
        out
    }

    /// The public JWKS document (RFC 7517 section 5) at `now`.
    pub fn jwks(&self, now: i64) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .published(now)
            .into_iter()
            .map(|k| k.signer.public().to_json(k.signer.kid()))
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// The algorithms of the keys published at `now`, in JWKS order, each once.
    pub fn algs(&self, now: i64) -> Vec<Alg> {
        let mut out = Vec::new();
        for k in self.published(now) {
            if !out.contains(&k.signer.alg()) {
                out.push(k.signer.alg());
            }
        }
        out
    }

    /// kid → public key of the keys published at `now`, for verification on a node that also
    /// signs.
    pub fn public_keys(&self, now: i64) -> Vec<(String, PublicJwk)> {
        self.published(now)
            .into_iter()
            .map(|k| (k.signer.kid().to_owned(), k.signer.public().clone()))
            .collect()
    }

    /// The position of the key `kid` in [`KeySet::entries`].
    pub fn position(&self, kid: &str) -> Option<usize> {
        self.keys.iter().position(|k| k.signer.kid() == kid)
    }

    /// The key at position `i` of [`KeySet::entries`].
    pub fn entry(&self, i: usize) -> Option<&KeyEntry> {
        self.keys.get(i)
    }

    /// Whether some key other than the one at `i` may sign at `now` if `i` is retired then.
    pub fn signs_without(&self, i: usize, now: i64) -> bool {
        let mut times = self.times.clone();
        if let Some(t) = times.get_mut(i) {
            t.retired_ms = Some(now);
        }
        self.schedule.signing(&times, now).is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_directory_gets_a_first_key_that_signs_and_successors_that_wait() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let schedule = Schedule::default();
        // 1. An empty directory gets a first key, created 0700/0600, which signs at once.
        let (set, provision) = KeySet::load_or_generate(&keys, schedule, 0).unwrap();
        let Provision::Generated(first) = provision else {
            panic!("no key generated: {provision:?}")
        };
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&keys), 0o700);
        assert_eq!(mode(&first.path), 0o600);
        let now = crate::time::now_millis();
        assert_eq!(set.signing(now).map(|s| s.kid()), Some(first.kid.as_str()));
        // 2. An ES256 and an RS256 successor are published at once, listed before the OKP
        //    key, and wait their pre-publication while the first key signs.
        let es = dir::generate(&keys, Alg::Es256, RsaBits::B2048).unwrap();
        let rs = dir::generate(&keys, Alg::Rs256, RsaBits::B2048).unwrap();
        let set = KeySet::load(&keys, schedule).unwrap();
        let jwks = set.jwks(now);
        let order: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kty"].as_str().unwrap())
            .collect();
        assert_eq!(order, ["RSA", "EC", "OKP"]);
        assert!(
            !jwks.to_string().contains("\"d\""),
            "private part leaked: {jwks}"
        );
        assert_eq!(set.algs(now), [Alg::Rs256, Alg::Es256, Alg::EdDsa]);
        assert_eq!(set.signing(now).map(|s| s.kid()), Some(first.kid.as_str()));
        // When the newest successor's pre-publication is over: from its creation time, not
        // from `now`, since making an RSA key can take more than a second on a busy machine.
        let publish_before_sign = i64::try_from(schedule.publish_before_sign.as_millis()).unwrap();
        let later = rs.created_ms + publish_before_sign;
        assert_eq!(
            set.signing(later).map(|s| s.kid()),
            Some(first.kid.as_str())
        );
        let es_schedule = Schedule {
            signing_alg: Alg::Es256,
            ..schedule
        };
        let set = KeySet::load(&keys, es_schedule).unwrap();
        assert_eq!(set.signing(later).map(|s| s.kid()), Some(es.kid.as_str()));
        // 3. A retirement sidecar stops the ES256 key; the RS256 one is next in line.
        dir::write_retirement(&es.path, &es.kid, now).unwrap();
        let set = KeySet::load(&keys, es_schedule).unwrap();
        assert_eq!(set.signing(later).map(|s| s.kid()), Some(rs.kid.as_str()));
        assert_eq!(mode(&dir::sidecar(&es.path)), 0o600);
    }
}
