//! The `serve` and `check-config` commands: logging set-up, the runtime, the signal loop and
//! the systemd notifications (`READY=1` once listening, `RELOADING=1` then `READY=1` around a
//! SIGHUP reload, `STOPPING=1` on SIGTERM/SIGINT).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};

use sd_notify::NotifyState;

use super::args::{CheckArgs, ConfigArg};
use super::logging::{self, LogHandle};
use crate::app::state::ReloadError;
use crate::app::{App, AppState, StartupError};
use crate::config::{CheckError, Checked, Config, ConfigError, Options, Problem, TlsConfig};

/// The one load path of `check-config`, `serve` and reloads: the file, then the preflight of
/// what it names (key directory, TLS files, route documents, and the database unless
/// `database` is false).
fn load_checked(path: &Path, database: bool) -> Result<Checked, CheckError> {
    let tls = |t: &TlsConfig| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        crate::http::tls::load(t)?;
        Ok(())
    };
    Config::check(
        path,
        &Options {
            database,
            tls: &tls,
        },
    )
}

/// A refused configuration as the commands report it. A wrong file is a [`ConfigError`], which
/// `main` turns into EX_CONFIG (the unit does not restart on it); a database that does not
/// answer is not the file's fault and exits 1, so that systemd tries again.
fn refused(e: CheckError) -> anyhow::Error {
    match e {
        CheckError::Invalid(e) => e.into(),
        unavailable @ CheckError::Unavailable(_) => unavailable.into(),
    }
}

/// `check-config`: the load path of `serve`, without starting anything. Warnings go to stderr
/// and do not fail the check.
pub fn check_config(args: &CheckArgs) -> Result<()> {
    let arg = &args.config;
    let checked = load_checked(&arg.config, !args.no_database).map_err(refused)?;
    for w in &checked.warnings {
        eprintln!(
            "steelcutd: {}: warning: {}: {}",
            arg.config.display(),
            w.key,
            w.message
        );
    }
    println!("{}: configuration is valid", arg.config.display());
    Ok(())
}

/// `serve`: run until SIGTERM or SIGINT; SIGHUP reloads.
pub fn serve(arg: &ConfigArg) -> Result<()> {
    let started = std::time::Instant::now();
    let Checked { config, warnings } = load_checked(&arg.config, true).map_err(refused)?;
    let (log, _log_guard) = logging::init(&config)?;
    raise_open_file_limit();
    log_warnings(&config, &warnings);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let path = arg.config.clone();
    runtime.block_on(async move {
        warn_about_plain_http(&config);
        let app = App::build(config).await.map_err(CannotStart)?;
        let state = app.state();
        tracing::info!(
            addr = %app.local_addr(),
            admin_addr = ?app.admin_addr(),
            startup_ms = started.elapsed().as_millis() as u64,
            "listening"
        );
        // Handlers first: a SIGHUP sent as soon as READY=1 arrives must reload, not kill.
        let signals = SignalLoop::install(state.clone(), path, log)
            .context("cannot install the signal handlers")?;
        let run = app.run_until(signals.run());
        // Listeners are bound, migrations checked, keys and documents loaded: tell systemd.
        notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
        run.await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// `serve` could not start. The start-up error's message already ends with its cause, so it is
/// kept whole but not chained as a source, which would print the cause twice.
#[derive(Debug, thiserror::Error)]
#[error("cannot start: {0}")]
struct CannotStart(StartupError);

/// The preflight's warnings, in the log.
fn log_warnings(config: &Config, warnings: &[Problem]) {
    for w in warnings {
        tracing::warn!(file = %config.file.display(), key = %w.key, "{}", w.message);
    }
}

/// Raises the soft open-file limit to the hard one, as Go's runtime and nginx do: the soft
/// default of 1024 exists for select(2), which nothing here uses, and each connection needs a
/// descriptor. `max_connections` is sized from the result (see `app`); the packaged unit sets
/// `LimitNOFILE=` for the hard limit.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(soft), Some(hard)) = (limit.current, limit.maximum) else {
        return;
    };
    if soft >= hard {
        return;
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-file limit"),
        Err(error) => tracing::warn!(%error, soft, hard, "cannot raise the open-file limit"),
    }
}

/// Waits for signals: SIGHUP reloads, SIGTERM/SIGINT complete the future (which stops the
/// server).
struct SignalLoop {
    state: Arc<AppState>,
    path: std::path::PathBuf,
    log: Option<LogHandle>,
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl SignalLoop {
    fn install(
        state: Arc<AppState>,
        path: std::path::PathBuf,
        log: Option<LogHandle>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            state,
            path,
            log,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn run(mut self) {
        loop {
            tokio::select! {
                _ = self.term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                _ = self.int.recv() => { tracing::info!("SIGINT: stopping"); break; }
                _ = self.hup.recv() => self.reload().await,
            }
        }
        notify(&[NotifyState::Stopping]);
    }

    async fn reload(&self) {
        notify(&[NotifyState::Reloading, monotonic_now()]);
        tracing::info!(file = %self.path.display(), "SIGHUP: reloading the configuration");
        let metrics = &self.state.metrics;
        match self.apply().await {
            Ok(restart) => {
                metrics.reloads.fetch_add(1, Ordering::Relaxed);
                if !restart.is_empty() {
                    tracing::warn!(
                        settings = %restart.join(", "),
                        "these changed settings take effect only after a restart"
                    );
                }
                tracing::info!("configuration reloaded");
                notify(&[
                    NotifyState::Ready,
                    NotifyState::Status("serving (configuration reloaded)"),
                ]);
            }
            Err(e) => {
                metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                // Every problem, key and file, one per line, then keep serving the old config.
                let text = e.to_string();
                for line in text.lines() {
                    tracing::error!("reload refused: {}", line.trim());
                }
                let first = text.lines().next().unwrap_or("invalid configuration");
                let status =
                    format!("reload failed, still serving the previous configuration: {first}");
                notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
            }
        }
    }

    /// Loads the file and applies it; returns the changed settings that need a restart.
    async fn apply(&self) -> Result<Vec<&'static str>, ReloadFailure> {
        // The database stays the one the process started with, and a reload must not fail
        // because it is down at this moment.
        let Checked { config, warnings } =
            load_checked(&self.path, false).map_err(CheckError::into_config_error)?;
        log_warnings(&config, &warnings);
        let level = config.log.level.clone();
        let restart = self.state.reload(config).await?;
        if let Some(handle) = &self.log {
            if std::env::var_os("RUST_LOG").is_none() {
                let _ = handle.reload(logging::filter(&level));
                crate::reqlog::refresh();
            }
        }
        Ok(restart)
    }
}

/// Why a SIGHUP reload was refused.
#[derive(Debug, thiserror::Error)]
enum ReloadFailure {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Apply(#[from] ReloadError),
}

/// Tells systemd (when it started us with `NOTIFY_SOCKET`) how the service is doing. A failure
/// is logged, never fatal: the daemon works the same without systemd.
fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the service manager");
    }
}

/// `MONOTONIC_USEC`, which systemd expects alongside `RELOADING=1`.
fn monotonic_now() -> NotifyState<'static> {
    NotifyState::monotonic_usec_now().unwrap_or(NotifyState::MonotonicUsec(0))
}

/// RFC 6749 section 3.2 requires TLS on the token endpoint.
fn warn_about_plain_http(config: &Config) {
    if let (true, Some(auth)) = (plain_http_reaches_others(config), &config.auth) {
        tracing::warn!(
            issuer = %auth.issuer,
            listen = %config.server.listen,
            "the issuer is not https:// and this listener has no TLS: RFC 6749 requires TLS \
             on the token endpoint; this is fine only behind a TLS-terminating proxy"
        );
    }
}

/// Whether the token endpoint is served over plain HTTP to other hosts: no TLS here, an issuer
/// that is not https:// (so no proxy terminates TLS in front), and a listener that is not
/// loopback only. Only `listen` serves the token endpoint; the admin listener does not.
fn plain_http_reaches_others(config: &Config) -> bool {
    let Some(auth) = &config.auth else {
        return false;
    };
    !auth.issuer.starts_with("https://")
        && config.server.tls.is_none()
        && !is_loopback(config.server.listen.ip())
}

/// 127.0.0.0/8, ::1, and 127.0.0.0/8 mapped into IPv6.
fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    fn config(listen: &str, issuer: &str) -> Config {
        let text = format!(
            "roles = [\"auth\"]\n[server]\nlisten = \"{listen}\"\n[database]\nurl = \"sqlite://x.db\"\n\
             [keys]\ndir = \"k\"\n[auth]\nissuer = \"{issuer}\"\n"
        );
        match Config::from_toml(Path::new("t.toml"), &text, &BTreeMap::new()) {
            Ok(c) => c,
            Err(problems) => panic!("{problems:?}"),
        }
    }

    #[test]
    fn plain_http_is_worth_a_warning_only_beyond_loopback() {
        for quiet in [
            "127.0.0.1:8080",
            "127.1.2.3:8080",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(
                !plain_http_reaches_others(&config(quiet, "http://a.example")),
                "{quiet}"
            );
        }
        for loud in [
            "0.0.0.0:8080",
            "[::]:8080",
            "192.0.2.1:8080",
            "[2001:db8::1]:8080",
        ] {
            assert!(
                plain_http_reaches_others(&config(loud, "http://a.example")),
                "{loud}"
            );
        }
        // An https issuer means TLS ends at a proxy in front.
        assert!(!plain_http_reaches_others(&config(
            "0.0.0.0:8080",
            "https://a.example"
        )));
    }
}
