//! Whether the database answers, tracked in one place. Every store operation reports its outcome
//! here (see `Store::run`), and the auth role's probe reads the change counter every 200 ms
//! whatever the traffic, so the state follows the database within a fraction of a second.
//!
//! Requests read the state instead of waiting on the database: while it is down, work that
//! needs the database is refused at once (HTTP 503 with `Retry-After`) rather than each request
//! waiting `connect_timeout_secs` for a connection, and `/readyz` answers from the state. The
//! log says when the database went down (with the cause) and when it came back: one line per
//! change of state, never one per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// See the module documentation. Starts "up": the first failure is logged.
#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    /// 0 while up; otherwise when it went down, as nanoseconds after `epoch`, plus one.
    down_since: AtomicU64,
    /// How many times it went down.
    outages: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            down_since: AtomicU64::new(0),
            outages: AtomicU64::new(0),
        }
    }
}

impl Health {
    pub fn is_up(&self) -> bool {
        self.down_since.load(Ordering::Acquire) == 0
    }

    /// How long the database has been down, if it is.
    pub fn down_for(&self) -> Option<Duration> {
        match self.down_since.load(Ordering::Acquire) {
            0 => None,
            at => Some((self.epoch + Duration::from_nanos(at - 1)).elapsed()),
        }
    }

    /// How many outages have begun since start.
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Acquire)
    }

    /// The database answered.
    pub fn ok(&self) {
        let was = self.down_since.swap(0, Ordering::AcqRel);
        if was != 0 {
            let down = (self.epoch + Duration::from_nanos(was - 1)).elapsed();
            tracing::warn!(
                down_secs = format_args!("{:.1}", down.as_secs_f64()),
                "database reachable again"
            );
        }
    }

    /// The database could not be reached; `cause` is logged if this is news.
    pub fn failed(&self, cause: &dyn std::error::Error) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        if self
            .down_since
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.outages.fetch_add(1, Ordering::AcqRel);
            tracing::error!(
                error = %crate::logfield::Bounded::new(&cause.to_string(), crate::logfield::ERROR),
                "database unavailable: requests that need it get 503 until it answers again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Health;

    #[test]
    fn the_state_follows_the_outcomes() {
        let h = Health::default();
        assert!(h.is_up() && h.down_for().is_none());
        h.failed(&std::io::Error::other("refused"));
        h.failed(&std::io::Error::other("refused again"));
        assert!(!h.is_up() && h.down_for().is_some());
        h.ok();
        assert!(h.is_up());
    }
}
