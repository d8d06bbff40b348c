//! Prometheus metrics, rendered in the text exposition format at `GET /metrics`.
//!
//! Counters and histograms are plain atomics: recording costs a few nanoseconds and takes no
//! lock on the token path. Label values come only from fixed sets (outcome codes, configured
//! route paths, HTTP status codes), never from what a client sends, so an attacker cannot grow
//! the series count (no raw client ids from failed requests).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Outcomes of token requests: `issued` or an RFC 6749 error code.
pub const TOKEN_OUTCOMES: &[&str] = &[
    "issued",
    "invalid_request",
    "invalid_client",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "server_error",
    "method_not_allowed",
];

/// Bucket bounds in seconds, from 100 µs (a cached credential) to 5 s (a queue of argon2).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A fixed-bucket histogram of durations.
pub struct Histogram {
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

/// Every metric the daemon exports.
pub struct Metrics {
    token_requests: Vec<AtomicU64>,
    pub client_auth_seconds: Histogram,
    pub token_issue_seconds: Histogram,
    /// (configured route path, status) -> count. Paths come from the config only.
    resource_requests: Mutex<HashMap<String, BTreeMap<u16, u64>>>,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    pub jwks_fetches: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            token_requests: TOKEN_OUTCOMES.iter().map(|_| AtomicU64::new(0)).collect(),
            client_auth_seconds: Histogram::default(),
            token_issue_seconds: Histogram::default(),
            resource_requests: Mutex::new(HashMap::new()),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            jwks_fetches: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts a token request by outcome (unknown labels are counted as `server_error`).
    pub fn token_request(&self, outcome: &str) {
        let i = TOKEN_OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .or_else(|| TOKEN_OUTCOMES.iter().position(|o| *o == "server_error"))
            .unwrap_or(0);
        self.token_requests[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request to a configured route.
    pub fn resource_request(&self, route: &str, status: u16) {
        if let Ok(mut m) = self.resource_requests.lock() {
            // Look up by &str first: no allocation once the route has been counted.
            match m.get_mut(route) {
                Some(by_status) => *by_status.entry(status).or_insert(0) += 1,
                None => {
                    m.insert(route.to_owned(), BTreeMap::from([(status, 1)]));
                }
            }
        }
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self, extra_jwks_fetches: u64) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP steelcut_build_info Build information.\n# TYPE steelcut_build_info gauge\n",
        );
        let _ = writeln!(
            out,
            "steelcut_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out.push_str("# HELP steelcut_token_requests_total Token requests by outcome.\n# TYPE steelcut_token_requests_total counter\n");
        for (label, n) in TOKEN_OUTCOMES.iter().zip(&self.token_requests) {
            let _ = writeln!(
                out,
                "steelcut_token_requests_total{{outcome=\"{label}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        self.client_auth_seconds.render(
            &mut out,
            "steelcut_client_authentication_seconds",
            "Time to authenticate a client at the token endpoint.",
        );
        self.token_issue_seconds.render(
            &mut out,
            "steelcut_token_issuance_seconds",
            "Time to answer a token request.",
        );
        out.push_str("# HELP steelcut_resource_requests_total Requests to protected routes by route and status.\n# TYPE steelcut_resource_requests_total counter\n");
        if let Ok(m) = self.resource_requests.lock() {
            let mut routes: Vec<_> = m.iter().collect();
            routes.sort();
            for (route, status, n) in routes
                .into_iter()
                .flat_map(|(r, s)| s.iter().map(move |(status, n)| (r, status, n)))
            {
                let _ = writeln!(
                    out,
                    "steelcut_resource_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        for (name, help, value) in [
            (
                "steelcut_reloads_total",
                "Successful configuration reloads.",
                self.reloads.load(Ordering::Relaxed),
            ),
            (
                "steelcut_reload_failures_total",
                "Configuration reloads refused because the new configuration was invalid.",
                self.reload_failures.load(Ordering::Relaxed),
            ),
            (
                "steelcut_jwks_fetches_total",
                "Fetches of a remote JWKS.",
                self.jwks_fetches.load(Ordering::Relaxed) + extra_jwks_fetches,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        out
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_text_format() {
        let m = Metrics::default();
        m.token_request("issued");
        m.token_request("made-up");
        m.client_auth_seconds.observe(Duration::from_millis(3));
        m.resource_request("/api", 200);
        let text = m.render(0);
        assert!(text.contains("steelcut_token_requests_total{outcome=\"issued\"} 1"));
        assert!(text.contains("steelcut_token_requests_total{outcome=\"server_error\"} 1"));
        assert!(text.contains("steelcut_client_authentication_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("steelcut_resource_requests_total{route=\"/api\",status=\"200\"} 1"));
    }
}
