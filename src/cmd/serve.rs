//! The `serve` and `check-config` commands: logging set-up, the runtime, the signal loop and
//! the systemd notifications (`READY=1` once listening, `RELOADING=1` then `READY=1` around a
//! SIGHUP reload, `STOPPING=1` on SIGTERM/SIGINT).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};

use sd_notify::NotifyState;

use super::args::ConfigArg;
use super::logging::{self, LogHandle};
use crate::app::state::ReloadError;
use crate::app::{App, AppState};
use crate::config::{Config, ConfigError, Problem};
use crate::keys::KeySet;

/// Everything `check-config` verifies beyond the file itself (key files that would be refused,
/// TLS files that do not load), as a [`ConfigError`] so that it prints like the file's problems.
fn check_runtime_files(config: &Config) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    if let Some(keys) = &config.keys {
        if keys.dir.exists() {
            if let Err(e) = KeySet::load(&keys.dir) {
                problems.push(Problem {
                    key: "`[keys] dir`".into(),
                    message: e.to_string(),
                });
            }
        }
    }
    if let Some(tls) = &config.server.tls {
        if let Err(e) = crate::http::tls::load(tls) {
            problems.push(Problem {
                key: "`[server.tls]`".into(),
                message: e.to_string(),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError {
            file: config.file.clone(),
            problems,
        })
    }
}

/// `check-config`: the load path of `serve`, without starting anything.
pub fn check_config(arg: &ConfigArg) -> Result<()> {
    let config = Config::load(&arg.config)?;
    check_runtime_files(&config)?;
    println!("{}: configuration is valid", arg.config.display());
    Ok(())
}

/// `serve`: run until SIGTERM or SIGINT; SIGHUP reloads.
pub fn serve(arg: &ConfigArg) -> Result<()> {
    let started = std::time::Instant::now();
    let config = Config::load(&arg.config)?;
    check_runtime_files(&config)?;
    let (log, _log_guard) = logging::init(&config);
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let path = arg.config.clone();
    runtime.block_on(async move {
        warn_about_plain_http(&config);
        let app = App::build(config).await.context("cannot start")?;
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
        let config = Config::load(&self.path)?;
        let level = config.log.level.clone();
        let restart = self.state.reload(config).await?;
        if let Some(handle) = &self.log {
            if std::env::var_os("RUST_LOG").is_none() {
                let _ = handle.reload(logging::filter(&level));
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
    if let Some(auth) = &config.auth {
        if !auth.issuer.starts_with("https://") && config.server.tls.is_none() {
            tracing::warn!(
                issuer = %auth.issuer,
                "the issuer is not https:// and this listener has no TLS: RFC 6749 requires TLS \
                 on the token endpoint; this is fine only behind a TLS-terminating proxy or on \
                 loopback"
            );
        }
    }
}
