//! The verified-credential cache: after a successful argon2id verify, remember per client a
//! keyed digest of the secret that was presented, so that the same client presenting the same
//! secret again skips both the database and the slow hash.
//!
//! What is stored at rest does not change (argon2id PHC strings in the client table); this cache
//! lives in memory only and holds `HMAC-SHA256(process key, client_id || 0 || secret)`, with a
//! key drawn at start and never written anywhere, so a memory dump does not give an offline
//! dictionary attack on the secrets at HMAC speed across restarts, and digests are compared in
//! constant time.
//!
//! Freshness: every client change made by the CLI bumps `store_state.generation` in the same
//! transaction. A background task (the probe) reads that counter every [`POLL_INTERVAL`]. Each
//! entry is tagged with the counter value read from the database just before its client row,
//! and is used only while that tag is at least the value the probe saw last: a change drops
//! every older entry. Entries are trusted only while the last successful read *started* less
//! than [`MAX_STALENESS`] ago (a read that was slow to answer may predate a change, so its age
//! counts from when it was sent), so a rotated secret, a disabled or removed client stops
//! working within a second on every node sharing the database.
//!
//! When the database is down (see [`crate::store::Health`]), entries keep answering for at most
//! `[auth] serve_cached_when_db_down_secs` after it went down, then the cache stops answering
//! (requests get 503 like uncached ones). Changes made during the outage cannot be seen: that is
//! the price of staying up, and why the window is bounded and can be set to 0.
//!
//! A wrong secret never enters the cache (only verified ones do), and a wrong secret for a cached
//! client takes the full path (database + argon2), so it is never faster than a right one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::ct::same_bytes;
use crate::store::clients::Client;
use crate::store::listen::Changed;
use crate::store::{Health, Store};

/// How often the change counter is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Entries are used only while the change counter was confirmed this recently.
pub const MAX_STALENESS: Duration = Duration::from_millis(900);

struct Entry {
    digest: [u8; 32],
    client: Arc<Client>,
    expires: Instant,
    /// The change counter read just before the client row.
    generation: i64,
}

/// See the module documentation.
pub struct CredentialCache {
    /// HMAC-SHA256 keyed with a random key drawn at start: cloned per request, so the key's
    /// own two blocks are hashed once, not on every request.
    keyed: Hmac<Sha256>,
    ttl: Duration,
    capacity: usize,
    entries: RwLock<HashMap<String, Entry>>,
    generation: AtomicI64,
    /// When the last successful read of the change counter was sent, in nanoseconds after
    /// `epoch` plus one (0: never). An atomic, not a lock: every cached request reads it.
    confirmed: AtomicU64,
    epoch: Instant,
    /// Sharded: every cached request counts here.
    hits: crate::metrics::Counter,
    /// How long after the database went down entries still answer.
    outage_window: Duration,
}

impl CredentialCache {
    /// A cache keeping at most `capacity` clients for at most `ttl` each. A zero `ttl` or
    /// `capacity` disables it.
    pub fn new(ttl: Duration, capacity: usize, outage_window: Duration) -> Self {
        let key: [u8; 32] = rand::random();
        Self {
            // Any key length is valid for HMAC; the fallback (a fixed key) is unreachable.
            keyed: Hmac::<Sha256>::new_from_slice(&key)
                .unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default())),
            ttl,
            capacity,
            outage_window,
            entries: RwLock::new(HashMap::new()),
            generation: AtomicI64::new(i64::MIN),
            confirmed: AtomicU64::new(0),
            // Early enough that a read sent before this cache existed counts as stale.
            epoch: Instant::now()
                .checked_sub(MAX_STALENESS)
                .unwrap_or_else(Instant::now),
            hits: crate::metrics::Counter::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    /// The keyed digest of a presented secret (computed once per request, before the secret
    /// moves to the hashing pool).
    pub fn digest(&self, client_id: &str, secret: &impl ExposeSecret<str>) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(client_id.as_bytes());
        mac.update(&[0]);
        mac.update(secret.expose_secret().as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn fresh(&self, now: Instant) -> bool {
        let confirmed = self.confirmed.load(Ordering::Acquire);
        if confirmed == 0 {
            return false;
        }
        let confirmed_at = self.epoch + Duration::from_nanos(confirmed - 1);
        now.saturating_duration_since(confirmed_at) < MAX_STALENESS
    }

    /// Whether entries may answer now: the change counter was confirmed recently, or the
    /// database went down less than the outage window ago.
    fn trusted(&self, health: &Health, now: Instant) -> bool {
        match health.down_for() {
            None => self.fresh(now),
            Some(down) => self.confirmed.load(Ordering::Acquire) != 0 && down < self.outage_window,
        }
    }

    /// The client, if this exact secret was verified for it recently and nothing changed since,
    /// as of `now` (read once by the caller, who also times the authentication with it).
    pub fn lookup(
        &self,
        client_id: &str,
        digest: &[u8; 32],
        health: &Health,
        now: Instant,
    ) -> Option<Arc<Client>> {
        if !self.enabled() || !self.trusted(health, now) {
            return None;
        }
        let entries = self.entries.read();
        let entry = entries.get(client_id)?;
        let same = same_bytes(&entry.digest, digest);
        let current = entry.generation >= self.generation.load(Ordering::Acquire);
        let hit = same && current && entry.expires > now;
        if hit {
            self.hits.incr();
        }
        hit.then(|| entry.client.clone())
    }

    /// Remembers a successful verification. `generation` is the counter value read from the
    /// database just before the client row: if a newer value has been seen since, the entry
    /// may be stale and is not stored.
    ///
    /// `valid_until` (Unix seconds) bounds the entry when the secret stops working on its own
    /// (the previous secret during a rotation overlap).
    pub fn insert(
        &self,
        client: Arc<Client>,
        digest: [u8; 32],
        generation: i64,
        valid_until: Option<i64>,
    ) {
        if !self.enabled() {
            return;
        }
        let mut ttl = self.ttl;
        if let Some(until) = valid_until {
            // In milliseconds: whole seconds (`until - now_unix()`) would keep the entry up to
            // a second past `until`, when the database already refuses the secret.
            let left_ms = until
                .saturating_mul(1000)
                .saturating_sub(crate::time::now_millis());
            ttl = ttl.min(Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)));
        }
        let mut entries = self.entries.write();
        // Compared under the lock that `observe` holds while it moves the counter and drops the
        // older entries: checked before taking it, a change observed in between would drop
        // first and this stale entry be written after, to outlive the change.
        if generation < self.generation.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        if entries.len() >= self.capacity && !entries.contains_key(&client.client_id) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.capacity {
                // Still full of live entries: drop the one closest to expiry.
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
                {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(
            client.client_id.clone(),
            Entry {
                digest,
                client,
                expires: now + ttl,
                generation,
            },
        );
    }

    /// The change counter last seen.
    pub fn generation(&self) -> i64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records a read of the change counter that was sent at `sent`; a newer value drops the
    /// entries tagged with an older one. The entries are then trusted until
    /// `sent + MAX_STALENESS`: the value may be as old as the moment the query left, however
    /// long the answer took.
    pub fn observe(&self, generation: i64, sent: Instant) {
        if self.generation.load(Ordering::Acquire) != generation {
            let mut entries = self.entries.write();
            self.generation.store(generation, Ordering::Release);
            entries.retain(|_, e| e.generation >= generation);
        }
        let nanos = sent.saturating_duration_since(self.epoch).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1;
        self.confirmed.fetch_max(nanos, Ordering::AcqRel);
    }

    /// Forgets one client (a change announced by the database), or every client.
    pub fn forget(&self, changed: &Changed) {
        let mut entries = self.entries.write();
        match changed {
            Changed::Client(id) => {
                entries.remove(id);
            }
            Changed::All => entries.clear(),
        }
    }

    /// Requests answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.value()
    }

    pub fn len(&self) -> usize {
        self.entries.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Probes the database every [`POLL_INTERVAL`] until the cache is dropped: the change
    /// counter read keeps the cache fresh, and its outcome keeps the store's [`Health`]
    /// current whatever the traffic (this runs even with the cache disabled).
    pub fn spawn_probe(cache: &Arc<Self>, store: Store) {
        let weak: Weak<Self> = Arc::downgrade(cache);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(cache) = weak.upgrade() else { break };
                let sent = Instant::now();
                // Failures are logged by `Health`, once per outage.
                if let Ok(g) = store.run(|s| s.probe()).await {
                    cache.observe(g, sent);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn client(id: &str) -> Arc<Client> {
        Arc::new(Client {
            client_id: id.into(),
            name: "n".into(),
            secret_hash: String::new(),
            grant_types: vec![],
            resources: vec![],
            scopes: vec![],
            enabled: true,
            created_at: 0,
            updated_at: 0,
            previous_secret_hash: None,
            previous_secret_expires_at: None,
        })
    }

    #[test]
    fn only_the_verified_secret_hits_and_a_change_empties_the_cache() {
        let cache = CredentialCache::new(Duration::from_secs(60), 10, Duration::ZERO);
        let up = Health::default();
        cache.observe(1, Instant::now());
        let right = cache.digest("a", &SecretString::from("right"));
        let wrong = cache.digest("a", &SecretString::from("wrong"));
        cache.insert(client("a"), right, 1, None);
        assert!(cache.lookup("a", &right, &up, Instant::now()).is_some());
        assert!(cache.lookup("a", &wrong, &up, Instant::now()).is_none());
        cache.observe(2, Instant::now());
        assert!(cache.lookup("a", &right, &up, Instant::now()).is_none());
    }

    #[test]
    fn a_counter_read_sent_too_long_ago_does_not_vouch_for_the_entries() {
        let cache = CredentialCache::new(Duration::from_secs(60), 10, Duration::ZERO);
        let up = Health::default();
        let d = cache.digest("a", &SecretString::from("right"));
        // Nothing confirmed yet: never answered from the cache.
        cache.insert(client("a"), d, cache.generation(), None);
        assert!(cache.lookup("a", &d, &up, Instant::now()).is_none());
        // A read that answered just now but was sent a second ago may predate a change.
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(Instant::now);
        cache.observe(7, long_ago);
        cache.insert(client("a"), d, 7, None);
        assert!(cache.lookup("a", &d, &up, Instant::now()).is_none());
        cache.observe(7, Instant::now());
        assert!(cache.lookup("a", &d, &up, Instant::now()).is_some());
    }

    #[test]
    fn an_entry_tagged_with_a_newer_counter_survives_an_older_change_and_answers_during_an_outage()
    {
        let cache = CredentialCache::new(Duration::from_secs(60), 10, Duration::from_secs(60));
        let health = Health::default();
        cache.observe(1, Instant::now());
        let d = cache.digest("a", &SecretString::from("right"));
        // Read from the database at counter 2 before the probe saw 2: kept when it does.
        cache.insert(client("a"), d, 2, None);
        cache.observe(2, Instant::now());
        assert!(cache.lookup("a", &d, &health, Instant::now()).is_some());
        // A change to 3 drops it.
        cache.insert(client("a"), d, 2, None);
        cache.observe(3, Instant::now());
        assert!(cache.lookup("a", &d, &health, Instant::now()).is_none());
        // Down: entries answer within the window, even unconfirmed for longer than usual.
        cache.insert(client("a"), d, 3, None);
        health.failed(&std::io::Error::other("refused"));
        assert!(cache.lookup("a", &d, &health, Instant::now()).is_some());
        let strict = CredentialCache::new(Duration::from_secs(60), 10, Duration::ZERO);
        strict.observe(3, Instant::now());
        strict.insert(client("a"), d, 3, None);
        assert!(strict.lookup("a", &d, &health, Instant::now()).is_none());
    }

    #[test]
    fn an_entry_for_a_previous_secret_ends_when_that_secret_does_not_up_to_a_second_later() {
        let cache = CredentialCache::new(Duration::from_secs(60), 10, Duration::ZERO);
        let up = Health::default();
        cache.observe(1, Instant::now());
        let d = cache.digest("a", &SecretString::from("old"));
        // The old secret works until the next whole second, less than a second from now.
        let until = crate::time::now_unix() + 1;
        cache.insert(client("a"), d, 1, Some(until));
        let ends = Duration::from_millis(
            u64::try_from(until * 1000 - crate::time::now_millis()).unwrap_or(0),
        );
        std::thread::sleep(ends + Duration::from_millis(20));
        cache.observe(1, Instant::now());
        assert!(cache.lookup("a", &d, &up, Instant::now()).is_none());
    }

    #[test]
    fn an_insert_racing_a_change_is_dropped_and_size_stays_bounded() {
        let cache = CredentialCache::new(Duration::from_secs(60), 3, Duration::ZERO);
        cache.observe(5, Instant::now());
        let d = cache.digest("x", &SecretString::from("s"));
        cache.insert(client("stale"), d, 4, None);
        assert!(cache.is_empty());
        for i in 0..10 {
            cache.insert(client(&format!("c{i}")), d, 5, None);
        }
        assert_eq!(cache.len(), 3);
    }
}
