//! Wall-clock time as the protocol writes it: Unix seconds (JWT NumericDate, RFC 7519
//! section 2) and RFC 3339 timestamps for people; and a cheap monotonic clock for deadlines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is set before it).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The monotonic clock as of the last scheduler tick (`CLOCK_MONOTONIC_COARSE`: a few
/// milliseconds behind at most), from an arbitrary start. A quarter of the cost of a precise
/// read: for deadlines counted in seconds that are noted several times on every request.
pub fn coarse_monotonic() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// RFC 3339 in UTC with second precision, e.g. `2026-11-18T11:06:40Z`.
pub fn rfc3339_millis(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_coarse_clock_follows_the_monotonic_clock_within_a_tick() {
        let before = std::time::Instant::now();
        let a = super::coarse_monotonic();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = super::coarse_monotonic();
        let elapsed = before.elapsed();
        // Never backwards; and the 30 ms are seen, give or take a tick (at most 10 ms at 100 Hz).
        assert!(b >= a);
        assert!(b - a >= std::time::Duration::from_millis(20), "{:?}", b - a);
        assert!(
            b - a <= elapsed + std::time::Duration::from_millis(10),
            "{:?}",
            b - a
        );
    }

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(super::rfc3339_millis(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            super::rfc3339_millis(1_795_000_000_000),
            "2026-11-18T11:06:40Z"
        );
    }
}
