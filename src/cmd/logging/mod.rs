//! The daemon's log: `tracing` to stderr (the journal under systemd), plain text or JSON, with
//! a filter that a reload can change.

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{Config, LogFormat};

/// Lines the writer thread may fall behind before new lines are dropped.
pub const BUFFERED_LINES: usize = 64 * 1024;

/// Changes the log filter of the running process (SIGHUP).
pub type LogHandle = reload::Handle<EnvFilter, Registry>;

pub fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Sets up `tracing`: the journal-friendly plain format under systemd (`JOURNAL_STREAM` set;
/// the journal adds timestamps), plain lines on stderr otherwise, or JSON by config. `RUST_LOG`
/// wins over `[log] level` when set.
///
/// Lines are written to stderr by a dedicated thread ([`tracing_appender::non_blocking`]): a
/// request never waits for the log. If the writer falls more than [`BUFFERED_LINES`] lines
/// behind (stderr blocked, a flood of requests), further lines are dropped rather than slowing
/// the service. The returned guard flushes what is buffered when dropped: keep it until exit.
pub fn init(config: &Config) -> (Option<LogHandle>, WorkerGuard) {
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log.level.clone());
    let (filter_layer, handle) = reload::Layer::new(filter(&level));
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    // Colour only for a person at a terminal, never in files or the journal.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match config.log.format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text if std::env::var_os("JOURNAL_STREAM").is_some() => {
            fmt.without_time().with_ansi(false).boxed()
        }
        LogFormat::Text => fmt.boxed(),
    };
    let handle = tracing_subscriber::registry()
        .with(filter_layer)
        .with(fmt)
        .try_init()
        .ok()
        .map(|_| handle);
    (handle, guard)
}
