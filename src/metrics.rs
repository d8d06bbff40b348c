//! Prometheus metrics, rendered in the text exposition format at `GET /metrics`.
//!
//! Counters and histograms are atomics sharded by thread ([`Sharded`]): recording costs a few
//! nanoseconds, takes no lock, and touches a cache line no other worker thread writes (a
//! route's counters are found once, when its route is built, and kept with it). Label values come only from fixed sets (outcome codes, configured route
//! paths, HTTP status codes), never from what a client sends, so an attacker cannot grow the
//! series count (no raw client ids from failed requests).

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

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
    "throttled",
];

/// Bucket bounds in seconds, from 100 µs (a cached credential) to 5 s (a queue of argon2).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How many copies of each counter there are: enough that the worker threads of a daemon
/// rarely share one.
pub const SHARDS: usize = 8;

/// `N` counters, one copy per shard, each shard on cache lines of its own.
///
/// Two worker threads adding to one atomic make its cache line travel between their cores on
/// every request, which costs more than the addition; here each thread adds to its own shard
/// (threads are dealt shards in turn), and a reader sums the shards. Gauges that go up on one
/// thread and down on another still sum right: the shards add with wrapping arithmetic.
#[derive(Debug)]
pub struct Sharded<const N: usize> {
    shards: [Padded<[AtomicU64; N]>; SHARDS],
}

/// Cache-line (pair) alignment, so that neighbouring shards never share a line.
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

impl<const N: usize> Default for Sharded<N> {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Padded(std::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }
}

impl<const N: usize> Sharded<N> {
    /// Adds `n` to counter `i` (out of range: ignored).
    pub fn add(&self, i: usize, n: u64) {
        if let Some(c) = self.shards[shard()].0.get(i) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Takes `n` from counter `i` (a gauge going down).
    pub fn sub(&self, i: usize, n: u64) {
        if let Some(c) = self.shards[shard()].0.get(i) {
            c.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Counter `i`, summed over the shards.
    pub fn get(&self, i: usize) -> u64 {
        self.shards.iter().fold(0u64, |sum, s| {
            sum.wrapping_add(s.0.get(i).map_or(0, |c| c.load(Ordering::Relaxed)))
        })
    }
}

/// The shard of the calling thread, below [`SHARDS`]: for other per-thread copies of hot data.
pub fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(i);
        }
        i
    })
}

/// One counter, sharded ([`Sharded`]).
pub type Counter = Sharded<1>;

impl Counter {
    pub fn incr(&self) {
        self.add(0, 1);
    }

    pub fn value(&self) -> u64 {
        self.get(0)
    }
}

/// Cells of a [`Histogram`]: one per bucket, then the sum in nanoseconds, then the count.
const HISTOGRAM_CELLS: usize = BUCKETS.len() + 2;

/// A fixed-bucket histogram of durations.
#[derive(Default)]
pub struct Histogram {
    cells: Sharded<HISTOGRAM_CELLS>,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.cells.add(i, 1);
        }
        let nanos = d.as_nanos().min(u64::MAX as u128) as u64;
        self.cells.add(BUCKETS.len(), nanos);
        self.cells.add(BUCKETS.len() + 1, 1);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.cells.get(i);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total = self.cells.get(BUCKETS.len() + 1);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.cells.get(BUCKETS.len()) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

/// The statuses a protected route answers with, in the order they are rendered; anything
/// else is counted under the last slot as `other`.
const ROUTE_STATUSES: [u16; 8] = [200, 304, 400, 401, 403, 405, 503, 0];

/// Requests to one configured route, by status. Shared by every version of the route (a
/// reload keeps the counts).
#[derive(Debug, Default)]
pub struct RouteCounters {
    by_status: Sharded<{ ROUTE_STATUSES.len() }>,
}

impl RouteCounters {
    /// Counts one answer.
    pub fn count(&self, status: u16) {
        let i = ROUTE_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(ROUTE_STATUSES.len() - 1);
        self.by_status.add(i, 1);
    }
}

/// One listener's connections: open now, refused at the cap since start, and requests in
/// flight now.
#[derive(Debug, Default)]
pub struct ListenerCounters {
    pub open: AtomicU64,
    pub refused: AtomicU64,
    /// Changed by every request (on whichever worker thread answers it): sharded.
    pub in_flight: Counter,
}

/// Counters kept elsewhere (by the roles' caches and key stores), read when `/metrics` is
/// rendered.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    pub credential_cache_entries: u64,
    pub credential_cache_hits: u64,
    pub token_cache_entries: u64,
    pub token_cache_hits: u64,
    pub jwks_fetches: u64,
}

/// Every metric the daemon exports.
pub struct Metrics {
    token_requests: Sharded<{ TOKEN_OUTCOMES.len() }>,
    pub client_auth_seconds: Histogram,
    pub token_issue_seconds: Histogram,
    /// Configured route path -> its counters. Replaced whole when a route is added (rare:
    /// start and reloads); requests never look it up.
    routes: ArcSwap<HashMap<String, Arc<RouteCounters>>>,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// Token requests refused by the failed-authentication throttle: by client id, by address.
    auth_throttled: [AtomicU64; 2],
    /// The main listener's connections.
    pub main_listener: Arc<ListenerCounters>,
    /// The admin listener's connections (when there is one).
    pub admin_listener: Arc<ListenerCounters>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            token_requests: Sharded::default(),
            client_auth_seconds: Histogram::default(),
            token_issue_seconds: Histogram::default(),
            routes: ArcSwap::default(),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            auth_throttled: Default::default(),
            main_listener: Arc::default(),
            admin_listener: Arc::default(),
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
        self.token_requests.add(i, 1);
    }

    /// Counts a token request refused by the throttle, by what was throttled (`client` or
    /// `address`; anything else counts as `address`).
    pub fn throttled(&self, by: &str) {
        let i = usize::from(by != "client");
        self.auth_throttled[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of the route at `path` (configured paths only), created on first use.
    pub fn route(&self, path: &str) -> Arc<RouteCounters> {
        if let Some(c) = self.routes.load().get(path) {
            return c.clone();
        }
        let mut found = None;
        self.routes.rcu(|routes| {
            let mut routes = HashMap::clone(routes);
            found = Some(routes.entry(path.to_owned()).or_default().clone());
            routes
        });
        found.unwrap_or_default()
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
        family(
            &mut out,
            "steelcut_build_info",
            "gauge",
            "Build information.",
            [(version.as_str(), 1)],
        );
        let outcomes: Vec<(String, u64)> = TOKEN_OUTCOMES
            .iter()
            .enumerate()
            .map(|(i, label)| (format!("outcome=\"{label}\""), self.token_requests.get(i)))
            .collect();
        family(
            &mut out,
            "steelcut_token_requests_total",
            "counter",
            "Token requests by outcome.",
            outcomes.iter().map(|(l, n)| (l.as_str(), *n)),
        );
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
        self.render_routes(&mut out);
        self.render_counters(&mut out, gauges);
        self.render_listeners(&mut out);
        out
    }

    fn render_counters(&self, out: &mut String, gauges: Gauges) {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        for (name, kind, help, value) in [
            (
                "steelcut_reloads_total",
                "counter",
                "Successful configuration reloads.",
                load(&self.reloads),
            ),
            (
                "steelcut_reload_failures_total",
                "counter",
                "Configuration reloads refused because the new configuration was invalid.",
                load(&self.reload_failures),
            ),
            (
                "steelcut_jwks_fetches_total",
                "counter",
                "Fetches of a remote JWKS (jwks_url), successful or not.",
                gauges.jwks_fetches,
            ),
            (
                "steelcut_credential_cache_hits_total",
                "counter",
                "Token requests whose client secret was found in the verified-credential cache.",
                gauges.credential_cache_hits,
            ),
            (
                "steelcut_token_cache_hits_total",
                "counter",
                "Resource requests whose token was found in the verified-token cache.",
                gauges.token_cache_hits,
            ),
            (
                "steelcut_credential_cache_entries",
                "gauge",
                "Clients in the verified-credential cache.",
                gauges.credential_cache_entries,
            ),
            (
                "steelcut_token_cache_entries",
                "gauge",
                "Tokens in the verified-token cache.",
                gauges.token_cache_entries,
            ),
        ] {
            family(out, name, kind, help, [("", value)]);
        }
        family(
            out,
            "steelcut_auth_throttled_total",
            "counter",
            "Token requests refused (429) after too many failed client authentications, by what was throttled.",
            [
                ("by=\"client\"", load(&self.auth_throttled[0])),
                ("by=\"address\"", load(&self.auth_throttled[1])),
            ],
        );
    }

    fn render_listeners(&self, out: &mut String) {
        let listeners = [
            ("main", &self.main_listener),
            ("admin", &self.admin_listener),
        ];
        let labels = listeners.map(|(name, _)| format!("listener=\"{name}\""));
        let series = |f: fn(&ListenerCounters) -> u64| {
            labels
                .iter()
                .zip(listeners)
                .map(move |(l, (_, c))| (l.as_str(), f(c)))
        };
        family(
            out,
            "steelcut_connections_open",
            "gauge",
            "Connections open now, by listener.",
            series(|c| c.open.load(Ordering::Relaxed)),
        );
        family(
            out,
            "steelcut_requests_in_flight",
            "gauge",
            "Requests being answered now, by listener.",
            series(|c| c.in_flight.value()),
        );
        family(
            out,
            "steelcut_connections_refused_total",
            "counter",
            "Connections closed at once because the listener was at its max_connections.",
            series(|c| c.refused.load(Ordering::Relaxed)),
        );
    }

    fn render_routes(&self, out: &mut String) {
        out.push_str("# HELP steelcut_resource_requests_total Requests to protected routes by route and status.\n# TYPE steelcut_resource_requests_total counter\n");
        let routes = self.routes.load();
        let mut paths: Vec<&String> = routes.keys().collect();
        paths.sort();
        for path in paths {
            let counters = &routes[path];
            for (i, status) in ROUTE_STATUSES.iter().enumerate() {
                let n = counters.by_status.get(i);
                if n == 0 {
                    continue;
                }
                let status = match status {
                    0 => "other".to_owned(),
                    s => s.to_string(),
                };
                let _ = writeln!(
                    out,
                    "steelcut_resource_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    escape(path)
                );
            }
        }
    }
}

/// One metric family: its HELP and TYPE lines, then a sample per `(labels, value)`, where
/// `labels` is the inside of the braces (empty for none).
fn family<'a>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
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
        m.route("/api").count(200);
        let text = m.render(Gauges::default());
        assert!(text.contains("steelcut_token_requests_total{outcome=\"issued\"} 1"));
        assert!(text.contains("steelcut_token_requests_total{outcome=\"server_error\"} 1"));
        assert!(text.contains("steelcut_client_authentication_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("steelcut_resource_requests_total{route=\"/api\",status=\"200\"} 1"));
    }
}
