//! The `serve` and `check-config` commands: logging set-up, the runtime, signals.

use anyhow::{anyhow, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::app::App;
use crate::cli::ConfigArg;
use crate::config::{Config, LogFormat};
use crate::keys::KeySet;

/// Sets up `tracing` from the config (the `RUST_LOG` variable wins when set).
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        // Under systemd the journal adds its own timestamps.
        LogFormat::Text if std::env::var_os("JOURNAL_STREAM").is_some() => {
            builder.without_time().with_ansi(false).try_init()
        }
        LogFormat::Text => builder.try_init(),
    };
}

/// Everything `check-config` verifies beyond the file itself: key files that would be refused.
fn check_runtime_files(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(keys) = &config.keys {
        if keys.dir.exists() {
            if let Err(e) = KeySet::load(&keys.dir) {
                problems.push(format!("`[keys] dir`: {e}"));
            }
        }
    }
    problems
}

/// `check-config`: the load path of `serve`, without starting anything.
pub fn check_config(arg: &ConfigArg) -> Result<()> {
    let config = Config::load(&arg.config).map_err(|e| anyhow!("{e}"))?;
    let problems = check_runtime_files(&config);
    if !problems.is_empty() {
        return Err(anyhow!(
            "{}: {} problem(s)\n  - {}",
            arg.config.display(),
            problems.len(),
            problems.join("\n  - ")
        ));
    }
    println!("{}: configuration is valid", arg.config.display());
    Ok(())
}

/// `serve`: run until SIGTERM or SIGINT.
pub fn serve(arg: &ConfigArg) -> Result<()> {
    let config = Config::load(&arg.config).map_err(|e| anyhow!("{e}"))?;
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        warn_about_plain_http(&config);
        let app = App::build(config)
            .await
            .map_err(|e| anyhow!("cannot start: {e}"))?;
        tracing::info!(addr = %app.local_addr(), "listening");
        app.run_until(shutdown_signal()).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// RFC 6749 section 3.2 requires TLS on the token endpoint.
fn warn_about_plain_http(config: &Config) {
    if let Some(auth) = &config.auth {
        if !auth.issuer.starts_with("https://") {
            tracing::warn!(
                issuer = %auth.issuer,
                "the issuer is not https:// and this listener has no TLS: RFC 6749 requires TLS \
                 on the token endpoint; this is fine only behind a TLS-terminating proxy or on \
                 loopback"
            );
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}
