//! `[server]`, `[server.tls]` and `[log]`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::values::{at_least_one, secs_in};
use crate::config::error::Problems;
use crate::config::file::{RawLog, RawServer, RawTls};
use crate::config::preflight::plan::{Check, Plan};
use crate::config::types::{IpNet, LogConfig, LogFormat, ServerConfig, TlsConfig};

pub(super) fn validate_server(
    raw: RawServer,
    p: &mut Problems,
    plan: &mut Plan,
) -> Option<ServerConfig> {
    let listen = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen = match listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(
                "`[server] listen`",
                format!("{listen:?} is not a socket address such as 127.0.0.1:8080 or [::]:8443"),
            );
            None
        }
    };
    let admin_listen = match raw.admin_listen.as_deref().map(str::parse::<SocketAddr>) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(_)) => {
            p.push(
                "`[server] admin_listen`",
                "is not a socket address such as 127.0.0.1:9090",
            );
            None
        }
    };
    let tls = raw.tls.and_then(|t| validate_tls(t, p));
    if let Some(t) = &tls {
        plan.push(Check::Tls(t.clone()));
    }
    Some(ServerConfig {
        listen: listen?,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(10)),
        admin_listen,
        tls,
        header_read_timeout: timeout(
            "header_read_timeout_secs",
            raw.header_read_timeout_secs,
            10,
            p,
        ),
        body_timeout: timeout("body_timeout_secs", raw.body_timeout_secs, 10, p),
        keepalive_timeout: timeout("keepalive_timeout_secs", raw.keepalive_timeout_secs, 60, p),
        max_connections: raw
            .max_connections
            .map(|n| at_least_one("`[server] max_connections`", Some(n), 1, p)),
        admin_max_connections: at_least_one(
            "`[server] admin_max_connections`",
            raw.admin_max_connections,
            64,
            p,
        ),
        trusted_proxies: trusted_proxies(raw.trusted_proxies.unwrap_or_default(), p),
    })
}

/// A network timeout: 1 to 3600 seconds.
fn timeout(key: &str, value: Option<u64>, default: u64, p: &mut Problems) -> Duration {
    secs_in(&format!("`[server] {key}`"), value, default, 1..=3600, p)
}

/// Addresses and CIDR blocks; a bare address is a block of one, and host bits below the
/// prefix are dropped (`10.1.2.3/8` is `10.0.0.0/8`).
fn trusted_proxies(entries: Vec<String>, p: &mut Problems) -> Vec<IpNet> {
    let mut out = Vec::new();
    for entry in entries {
        let parsed = entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => out.push(net.trunc()),
            Err(_) => p.push(
                "`[server] trusted_proxies`",
                format!(
                    "{entry:?} is not an address or a CIDR block such as 10.0.0.0/8 or \
                     2001:db8::/32"
                ),
            ),
        }
    }
    out
}

fn validate_tls(raw: RawTls, p: &mut Problems) -> Option<TlsConfig> {
    let mut file = |key: &str, value: Option<String>| {
        if value.is_none() {
            p.missing(&format!("`[server.tls] {key}`"), "missing: a PEM file path");
        }
        value.map(PathBuf::from)
    };
    let cert = file("cert", raw.cert);
    let key = file("key", raw.key);
    Some(TlsConfig {
        cert: cert?,
        key: key?,
    })
}

pub(super) fn validate_log(raw: RawLog, p: &mut Problems) -> LogConfig {
    let level = raw.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        p.push(
            "`[log] level`",
            format!(
                "{level:?} is not a log filter (e.g. \"info\", \"debug\", \"steelcut=debug,info\")"
            ),
        );
    }
    let format = match raw.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            p.push(
                "`[log] format`",
                format!("{other:?} is not \"text\" or \"json\""),
            );
            LogFormat::Text
        }
    };
    LogConfig { level, format }
}
