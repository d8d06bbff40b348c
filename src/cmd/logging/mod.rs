//! The daemon's log: `tracing` to stderr (the journal under systemd), plain text or JSON, with
//! a filter that a reload can change.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{Config, LogFormat};
use crate::reqlog;

mod batch;

pub use batch::Guard;

/// Changes the log filter of the running process (SIGHUP).
pub type LogHandle = reload::Handle<EnvFilter, Registry>;

pub fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Sets up `tracing`: the journal-friendly plain format under systemd (`JOURNAL_STREAM` set;
/// the journal adds timestamps), plain lines on stderr otherwise, or JSON by config. `RUST_LOG`
/// wins over `[log] level` when set.
///
/// Lines go to stderr through [`batch`]: a request never waits for the log, lines are written
/// in batches within [`batch::GATHER`], and if stderr blocks, lines beyond
/// [`batch::MAX_BYTES`] of backlog are dropped (and counted) rather than slowing the service.
/// The returned guard writes what is buffered when dropped: keep it until exit.
pub fn init(config: &Config) -> std::io::Result<(Option<LogHandle>, Guard)> {
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log.level.clone());
    let (filter_layer, handle) = reload::Layer::new(filter(&level));
    let (writer, guard) = batch::start(std::io::stderr())?;
    // Colour only for a person at a terminal, never in files or the journal.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer.clone())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let (fmt, layout) = match config.log.format {
        LogFormat::Json => (fmt.json().boxed(), reqlog::Layout::Json),
        LogFormat::Text if journal => (
            fmt.without_time().with_ansi(false).boxed(),
            reqlog::Layout::Text { timestamps: false },
        ),
        LogFormat::Text => (fmt.boxed(), reqlog::Layout::Text { timestamps: true }),
    };
    // Request lines skip the generic formatter but go to the same output, laid out alike.
    reqlog::install(layout, Box::new(writer));
    let handle = tracing_subscriber::registry()
        .with(filter_layer)
        .with(fmt)
        .try_init()
        .ok()
        .map(|_| handle);
    reqlog::refresh();
    Ok((handle, guard))
}
