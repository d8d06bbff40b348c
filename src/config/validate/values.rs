//! Checks shared by several sections: issuer URLs and realms.

use crate::config::error::Problems;

/// Checks an issuer identifier (RFC 8414 section 2: https URL, no query or fragment; plain
/// http is accepted for loopback and TLS-terminating proxies, with a warning at start).
pub(super) fn parse_issuer(key: &str, s: &str, p: &mut Problems) -> Option<String> {
    match url::Url::parse(s) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host_str().is_some() => {
            if u.query().is_some() || u.fragment().is_some() {
                p.push(
                    key,
                    format!("{s:?} must not have a query or fragment (RFC 8414 section 2)"),
                );
                None
            } else {
                Some(s.trim_end_matches('/').to_owned())
            }
        }
        _ => {
            p.push(
                key,
                format!(
                    "{s:?} is not an absolute http(s) URL such as \"https://auth.example.com\""
                ),
            );
            None
        }
    }
}

/// A realm goes inside a quoted `WWW-Authenticate` parameter (RFC 9110 section 11.6.1).
pub(super) fn check_realm(key: &str, realm: &str, p: &mut Problems) {
    if realm.is_empty() || realm.contains(['"', '\\']) || !realm.is_ascii() {
        p.push(
            key,
            format!("{realm:?} must be non-empty ASCII without quotes or backslashes"),
        );
    }
}

/// `value` (or `default`) seconds, which must lie in `range`.
pub(super) fn secs_in(
    key: &str,
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    p: &mut Problems,
) -> std::time::Duration {
    let secs = value.unwrap_or(default);
    if !range.contains(&secs) {
        p.push(
            key,
            format!(
                "{secs} is outside {}..={} seconds",
                range.start(),
                range.end()
            ),
        );
    }
    std::time::Duration::from_secs(secs)
}

/// `value` (or `default`), which must be at least 1. A zero is reported and replaced by 1, so
/// that what follows validates the rest as if it were right.
pub(super) fn at_least_one<T>(key: &str, value: Option<T>, default: T, p: &mut Problems) -> T
where
    T: Copy + PartialOrd + From<u8>,
{
    let v = value.unwrap_or(default);
    if v < T::from(1) {
        p.push(key, "must be at least 1");
        return T::from(1);
    }
    v
}

/// A section's value that another section falls back on: the resource role takes the issuer
/// of `[auth]` and the keys of `[keys]` when it names none of its own.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fallback<T> {
    Valid(T),
    /// Present (or required by a role) but wrong or missing, and a problem already says so.
    /// Reporting the value again as missing where it is inherited would be a second, false
    /// problem for one mistake.
    Reported,
    /// Not in the file, and no role asks for it.
    Absent,
}

impl<T> Fallback<T> {
    pub fn valid(self) -> Option<T> {
        match self {
            Self::Valid(t) => Some(t),
            Self::Reported | Self::Absent => None,
        }
    }

    pub fn as_ref(&self) -> Fallback<&T> {
        match self {
            Self::Valid(t) => Fallback::Valid(t),
            Self::Reported => Fallback::Reported,
            Self::Absent => Fallback::Absent,
        }
    }
}
