//! `[server]`, `[server.tls]` and `[log]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::error::Problems;
use crate::config::file::{RawLog, RawServer, RawTls};
use crate::config::preflight::{Check, Plan};
use crate::config::types::{LogConfig, LogFormat, ServerConfig, TlsConfig};

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
    })
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
