//! Wall-clock time as the protocol writes it: Unix seconds (JWT NumericDate, RFC 7519
//! section 2) and RFC 3339 timestamps for people.

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

/// RFC 3339 in UTC with second precision, e.g. `2026-11-18T11:06:40Z`.
pub fn rfc3339_millis(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(super::rfc3339_millis(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            super::rfc3339_millis(1_795_000_000_000),
            "2026-11-18T11:06:40Z"
        );
    }
}
