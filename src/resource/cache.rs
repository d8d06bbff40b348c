//! The verified-token cache: a token whose signature checked out is remembered, so that a client
//! presenting it again costs one SHA-256 and a hash-map lookup instead of a signature check.
//!
//! What is remembered, and what is not:
//!
//! - The key is the SHA-256 of the whole token, never the token itself: a memory dump does not
//!   hand out usable bearer tokens, and two tokens differing in any byte (a signature included)
//!   never share an entry.
//! - The value is the validated claims ([`VerifiedClaims`]), *not* a verdict. The checks that
//!   depend on the route or on the clock (`exp`/`nbf` with the leeway, `iss`, `aud`, the
//!   route's scope) run on every request, cached or not, so a token admitted at route A is not
//!   thereby admitted at route B.
//! - An entry lives until the token's `exp` plus the leeway in force when it was stored.
//! - Every entry belongs to the version of the key set it was verified with
//!   ([`super::keys::KeyStore::version`]); when the keys change the whole cache is emptied, so a
//!   removed key stops validating its tokens with the next request.
//! - The size is bounded: when full, expired entries go first, then a batch of arbitrary ones
//!   (the map's order, which follows the SHA-256 keys, so no client can choose what is evicted).
//!
//! In front of it, each connection remembers the last token it presented ([`LastToken`]): a
//! client on a kept-alive connection sends the same token request after request, and finding
//! it there costs a comparison of the bytes, where the shared cache costs a SHA-256 of the
//! token and a lock and counters that every worker thread writes. That memo holds the token's
//! bytes for as long as the connection lives (its read buffer holds them too), wiped when
//! replaced or dropped, and obeys the same rules as the shared cache: the key set version it
//! was verified with, and the token's `exp` plus the leeway.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use zeroize::Zeroizing;

use sha2::{Digest, Sha256};

use super::claims::VerifiedClaims;
use crate::ct::same_bytes;

/// The cache key of a token.
pub type TokenHash = [u8; 32];

struct Entry {
    claims: Arc<VerifiedClaims>,
    /// Unix seconds after which the entry is not used: `exp` plus the leeway.
    until: u64,
}

struct Inner {
    /// The key set version every entry was verified with.
    version: u64,
    entries: HashMap<TokenHash, Entry, BuildHasherDefault<DigestHasher>>,
}

/// The map's hasher: a key is a SHA-256 already, so eight of its bytes are as good a hash as
/// SipHash over all 32, for a fraction of the work on every request. (Only tokens whose
/// signature checked out are ever inserted, so no client can crowd one bucket either.)
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(word);
    }

    /// The array's length, the same for every key.
    fn write_usize(&mut self, _: usize) {}
}

/// See the module documentation.
pub struct TokenCache {
    capacity: AtomicUsize,
    inner: RwLock<Inner>,
    /// Sharded: every cached request counts here.
    hits: crate::metrics::Counter,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 disables it.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: AtomicUsize::new(capacity),
            inner: RwLock::new(Inner {
                version: 0,
                entries: HashMap::default(),
            }),
            hits: crate::metrics::Counter::default(),
        }
    }

    /// Changes the bound (a configuration reload); a smaller one applies from the next insert.
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity, Ordering::Relaxed);
        if capacity == 0 {
            self.write().entries.clear();
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity.load(Ordering::Relaxed) > 0
    }

    /// The cache key of `token`.
    pub fn hash(token: &str) -> TokenHash {
        Sha256::digest(token.as_bytes()).into()
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write()
    }

    /// The claims of a token verified with key set `version` (the version in force now), unless
    /// the entry has expired at `now` (Unix seconds), with the time (Unix seconds) after which
    /// the entry is no longer used.
    pub fn get_until(
        &self,
        hash: &TokenHash,
        version: u64,
        now: u64,
    ) -> Option<(Arc<VerifiedClaims>, u64)> {
        {
            let inner = self.inner.read();
            if inner.version == version {
                let entry = inner.entries.get(hash).filter(|e| now <= e.until)?;
                self.hits.incr();
                return Some((entry.claims.clone(), entry.until));
            }
        }
        // The keys changed since these entries were verified: forget them all.
        let mut inner = self.write();
        if version > inner.version {
            inner.version = version;
            inner.entries.clear();
        }
        None
    }

    /// Remembers `claims` of the token with `hash`, verified with key set `version` (read
    /// before the key was looked up), until `until` (Unix seconds).
    pub fn insert(
        &self,
        hash: TokenHash,
        claims: Arc<VerifiedClaims>,
        version: u64,
        until: u64,
        now: u64,
    ) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        if capacity == 0 || until < now {
            return;
        }
        let mut inner = self.write();
        if version < inner.version {
            // Verified with keys that have since changed.
            return;
        }
        if version > inner.version {
            inner.version = version;
            inner.entries.clear();
        }
        if inner.entries.len() >= capacity && !inner.entries.contains_key(&hash) {
            inner.entries.retain(|_, e| now <= e.until);
            if inner.entries.len() >= capacity {
                // Evict a batch at once so that a full cache does not pay a scan per insert.
                let excess = inner.entries.len() - (capacity - capacity / 16 - 1);
                let evict: Vec<TokenHash> = inner.entries.keys().take(excess).copied().collect();
                for key in &evict {
                    inner.entries.remove(key);
                }
            }
        }
        inner.entries.insert(hash, Entry { claims, until });
    }

    /// How many requests were answered from the cache (the route checks still ran).
    pub fn hits(&self) -> u64 {
        self.hits.value()
    }

    /// Counts a request answered from a connection's [`LastToken`], which stands in front of
    /// this cache.
    pub fn count_hit(&self) {
        self.hits.incr();
    }

    /// How many tokens are remembered now.
    pub fn len(&self) -> usize {
        self.inner.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The last token one connection presented, and its claims (see the module documentation).
#[derive(Default)]
pub struct LastToken(Mutex<Option<Remembered>>);

struct Remembered {
    token: Zeroizing<Vec<u8>>,
    /// The connection's own copy: the shared cache's `Arc` would have every connection
    /// presenting the token count its references on one cache line.
    claims: Arc<VerifiedClaims>,
    version: u64,
    until: u64,
}

impl LastToken {
    /// The claims of `token` if it is the one remembered, verified with key set `version`, and
    /// not past its end at `now` (Unix seconds).
    pub fn get(&self, token: &str, version: u64, now: u64) -> Option<Arc<VerifiedClaims>> {
        let slot = self.0.lock();
        let r = slot.as_ref()?;
        let usable = r.version == version && now <= r.until;
        (usable && same_bytes(&r.token, token.as_bytes())).then(|| r.claims.clone())
    }

    /// Remembers `token`, found in the shared cache with `claims` until `until`.
    pub fn remember(&self, token: &str, claims: &VerifiedClaims, version: u64, until: u64) {
        let remembered = Remembered {
            token: Zeroizing::new(token.as_bytes().to_vec()),
            claims: Arc::new(claims.clone()),
            version,
            until,
        };
        *self.0.lock() = Some(remembered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Arc<VerifiedClaims> {
        Arc::new(VerifiedClaims {
            kid: "k".into(),
            iss: vec!["i".into()],
            aud: vec!["a".into()],
            exp: 100,
            nbf: None,
            scope: vec![],
            client_id: None,
            sub: None,
        })
    }

    #[test]
    fn an_entry_ends_with_its_token_and_with_its_key_set() {
        let cache = TokenCache::new(10);
        let h = TokenCache::hash("t");
        cache.insert(h, claims(), 1, 130, 50);
        assert_eq!(
            cache.get_until(&h, 1, 130).map(|(_, until)| until),
            Some(130)
        );
        assert!(cache.get_until(&h, 1, 131).is_none());
        // A newer key set empties the cache; an insert verified with the older one is dropped.
        assert!(cache.get_until(&h, 2, 60).is_none());
        assert!(cache.is_empty());
        cache.insert(h, claims(), 1, 130, 60);
        assert!(cache.is_empty());
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn a_connection_remembers_its_last_token_under_the_same_rules() {
        let last = LastToken::default();
        assert!(last.get("t", 1, 50).is_none());
        last.remember("token-1", &claims(), 1, 130);
        assert!(last.get("token-1", 1, 130).is_some());
        // Another token of the same length, a longer one, a newer key set, past its end.
        assert!(last.get("token-2", 1, 50).is_none());
        assert!(last.get("token-1x", 1, 50).is_none());
        assert!(last.get("token-1", 2, 50).is_none());
        assert!(last.get("token-1", 1, 131).is_none());
    }

    #[test]
    fn the_size_stays_bounded_and_zero_disables() {
        let cache = TokenCache::new(3);
        for i in 0..50 {
            cache.insert(TokenCache::hash(&i.to_string()), claims(), 1, 130, 50);
            assert!(cache.len() <= 3);
        }
        let big = TokenCache::new(1000);
        for i in 0..5000 {
            big.insert(TokenCache::hash(&i.to_string()), claims(), 1, 130, 50);
        }
        assert!((900..=1000).contains(&big.len()), "{}", big.len());
        let off = TokenCache::new(0);
        off.insert(TokenCache::hash("t"), claims(), 1, 130, 50);
        assert!(off.is_empty() && !off.enabled());
    }
}
