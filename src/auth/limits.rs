//! Throttling failed client authentication (RFC 6749 section 2.3.1 asks the authorization
//! server to protect the token endpoint against brute force).
//!
//! Secrets are 256-bit random values, so guessing is hopeless; what a stream of wrong secrets
//! really costs is CPU, one argon2id verify each. Failures are therefore counted per client id
//! and per source address in token buckets ([`Policy`]: a burst, refilled at a steady rate),
//! and once either bucket is empty the token endpoint answers 429 with `Retry-After` *before*
//! doing any argon2 work.
//!
//! - Only failures consume: a client that authenticates keeps its bucket.
//! - A request whose credentials are valid and already verified (a credential-cache hit) is
//!   answered before this check, so hammering a real client's id cannot lock that client out
//!   while it keeps presenting its secret.
//! - The source address is the peer's, or the one a trusted proxy names (see
//!   `crate::http::request::client_address`); IPv6 addresses count per /64, the block one host
//!   usually holds.
//! - Memory is bounded: at most `max_tracked` buckets, half for ids and half for addresses. When full, the buckets closest to
//!   full (the least suspicious; a full bucket is the same as none) are dropped, an eighth at a
//!   time, so a flood of random ids or addresses costs a bounded map and amortized O(1) work.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::AuthLimits as Policy;

/// Which bucket ran dry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Client,
    Address,
}

impl By {
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Address => "address",
        }
    }
}

/// A refused attempt: which bucket, and when it will hold a token again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub by: By,
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// One kind of key (client ids or addresses) and its buckets.
#[derive(Debug)]
struct Buckets<K> {
    burst: f64,
    /// Tokens per second.
    rate: f64,
    max: usize,
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(burst: u32, per_minute: u32, max: usize) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            rate: f64::from(per_minute.max(1)) / 60.0,
            max: max.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn level(&self, bucket: &Bucket, now: Instant) -> f64 {
        let refill = now.saturating_duration_since(bucket.updated).as_secs_f64() * self.rate;
        (bucket.tokens + refill).min(self.burst)
    }

    /// How long until `key` may try again, if it may not now.
    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        let map = self.map.lock();
        let level = self.level(map.get(key)?, now);
        (level < 1.0).then(|| Duration::from_secs_f64((1.0 - level) / self.rate))
    }

    fn consume(&self, key: &K, now: Instant) {
        let mut map = self.map.lock();
        if !map.contains_key(key) && map.len() >= self.max {
            self.evict(&mut map, now);
        }
        let level = map.get(key).map_or(self.burst, |b| self.level(b, now));
        map.insert(
            key.clone(),
            Bucket {
                tokens: (level - 1.0).max(0.0),
                updated: now,
            },
        );
    }

    /// Drops the fullest eighth of the buckets.
    fn evict(&self, map: &mut HashMap<K, Bucket>, now: Instant) {
        let mut levels: Vec<f64> = map.values().map(|b| self.level(b, now)).collect();
        let keep = map.len() - (map.len() / 8).max(1);
        levels.sort_by(f64::total_cmp);
        let threshold = levels[keep.min(levels.len() - 1)];
        let mut dropped = 0;
        let target = map.len() - keep;
        map.retain(|_, b| {
            let drop_it = dropped < target && self.level(b, now) >= threshold;
            dropped += usize::from(drop_it);
            !drop_it
        });
    }

    fn len(&self) -> usize {
        self.map.lock().len()
    }
}

/// The address a bucket is kept for: the address itself, or its /64 for IPv6.
fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Limiter {
    clients: Buckets<String>,
    addresses: Buckets<IpAddr>,
}

impl Limiter {
    pub fn new(policy: Policy) -> Self {
        Self {
            clients: Buckets::new(
                policy.client_burst,
                policy.client_refill_per_minute,
                policy.max_tracked / 2,
            ),
            addresses: Buckets::new(
                policy.address_burst,
                policy.address_refill_per_minute,
                policy.max_tracked / 2,
            ),
        }
    }

    /// Whether an attempt for `client_id` from `addr` may go ahead (costing an argon2 verify).
    pub fn check(&self, client_id: &str, addr: IpAddr) -> Result<(), Throttled> {
        let now = Instant::now();
        if let Some(retry_after) = self.addresses.wait(&address_key(addr), now) {
            return Err(Throttled {
                by: By::Address,
                retry_after,
            });
        }
        if let Some(retry_after) = self.clients.wait(&client_id.to_owned(), now) {
            return Err(Throttled {
                by: By::Client,
                retry_after,
            });
        }
        Ok(())
    }

    /// Records a failed authentication.
    pub fn failed(&self, client_id: &str, addr: IpAddr) {
        let now = Instant::now();
        self.addresses.consume(&address_key(addr), now);
        self.clients.consume(&client_id.to_owned(), now);
    }

    /// Buckets held now (clients, addresses).
    pub fn tracked(&self) -> (usize, usize) {
        (self.clients.len(), self.addresses.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            client_burst: 3,
            client_refill_per_minute: 60,
            address_burst: 5,
            address_refill_per_minute: 60,
            max_tracked: 100,
        }
    }

    #[test]
    fn failures_empty_the_client_bucket_then_the_address_bucket() {
        let limiter = Limiter::new(policy());
        let addr: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        for _ in 0..3 {
            assert!(limiter.check("a", addr).is_ok());
            limiter.failed("a", addr);
        }
        let refused = limiter.check("a", addr).err();
        assert_eq!(refused.map(|t| t.by), Some(By::Client));
        assert!(refused.is_some_and(|t| t.retry_after <= Duration::from_secs(1)));
        // Another id from the same address still has two attempts, then the address is out.
        for _ in 0..2 {
            assert!(limiter.check("b", addr).is_ok());
            limiter.failed("b", addr);
        }
        assert_eq!(
            limiter.check("c", addr).err().map(|t| t.by),
            Some(By::Address)
        );
    }

    #[test]
    fn ipv6_addresses_share_a_bucket_per_slash_64_and_memory_stays_bounded() {
        let limiter = Limiter::new(policy());
        let one: IpAddr = "2001:db8::1".parse().unwrap_or(IpAddr::from([0u8; 16]));
        let two: IpAddr = "2001:db8::2".parse().unwrap_or(IpAddr::from([0u8; 16]));
        for i in 0..5 {
            limiter.failed(&format!("id{i}"), if i % 2 == 0 { one } else { two });
        }
        assert_eq!(
            limiter.check("x", one).err().map(|t| t.by),
            Some(By::Address)
        );
        for i in 0..10_000u32 {
            limiter.failed(&i.to_string(), IpAddr::from(i.to_be_bytes()));
        }
        let (clients, addresses) = limiter.tracked();
        assert!(clients <= 50 && addresses <= 50, "{clients} {addresses}");
    }
}
