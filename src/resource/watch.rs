//! Watching served files (and key files) for changes with `notify`.
//!
//! Each file is watched through its *parent directory*, non-recursively: editors and deploy
//! tools replace a file by writing a temporary file and renaming it over the old one, which a
//! watch on the old inode would miss. Events are debounced briefly (a burst of writes becomes
//! one reload) and handed, as target indices, to a callback that runs on a blocking thread.
//! Dropping the [`Watch`] stops the notify thread and the debounce task.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use tokio_util::task::AbortOnDropHandle;

/// A directory that cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {} for changes: {source}", dir.display())]
pub struct WatchError {
    pub dir: PathBuf,
    #[source]
    pub source: notify::Error,
}

/// How long to wait after the first event for the rest of a burst. Well under the 1 second
/// within which a change must be visible.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// How often the polling fallback scans, when the kernel refuses another inotify instance.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Something to watch.
#[derive(Debug, Clone)]
pub enum Target {
    /// One file (absolute path), watched through its parent directory.
    File(PathBuf),
    /// Every entry of a directory (absolute path).
    Dir(PathBuf),
}

impl Target {
    /// The directory whose events concern this target.
    fn dir(&self) -> Option<&Path> {
        match self {
            Self::File(f) => f.parent(),
            Self::Dir(d) => Some(d),
        }
    }

    /// Whether an event on `path` concerns this target.
    fn touched_by(&self, path: &Path) -> bool {
        match self {
            Self::File(f) => {
                path == f
                    // Kubernetes-style deploys swap a `..data` symlink next to the file.
                    || (path.parent() == f.parent()
                        && path
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("..")))
            }
            Self::Dir(d) => path == d || path.parent() == Some(d),
        }
    }
}

/// A running watch; stops when dropped.
pub struct Watch {
    _watcher: Box<dyn Watcher + Send + Sync>,
    _task: AbortOnDropHandle<()>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// Events that may have changed a file's content. Opening and reading do not, and the
/// reloads themselves open the files, so reacting to those would loop.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Starts watching `targets`; `on_change(i)` runs (on a blocking thread) after `targets[i]`
/// may have changed. Must be called inside a Tokio runtime.
pub fn start(
    targets: Vec<Target>,
    on_change: impl Fn(usize) + Send + Sync + 'static,
) -> Result<Watch, WatchError> {
    let targets = Arc::new(targets);
    let (tx, rx) = mpsc::unbounded_channel::<Vec<usize>>();
    let handler = {
        let targets = targets.clone();
        move |event: notify::Result<notify::Event>| match event {
            Ok(event) if changes_content(&event.kind) => {
                let hit: Vec<usize> = targets
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| event.paths.iter().any(|p| t.touched_by(p)))
                    .map(|(i, _)| i)
                    .collect();
                if !hit.is_empty() {
                    let _ = tx.send(hit);
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "file watch error"),
        }
    };
    let mut watcher: Box<dyn Watcher + Send + Sync> = match notify::recommended_watcher(
        handler.clone(),
    ) {
        Ok(w) => Box::new(w),
        Err(error) => {
            // Typically the per-user inotify instance limit; polling still meets the
            // one-second promise, at the cost of a directory scan every POLL_INTERVAL.
            tracing::warn!(%error, "cannot use native file events; polling for changes instead");
            let config = notify::Config::default().with_poll_interval(POLL_INTERVAL);
            Box::new(
                notify::PollWatcher::new(handler, config).map_err(|source| WatchError {
                    dir: PathBuf::from("(polling)"),
                    source,
                })?,
            )
        }
    };
    let mut dirs: Vec<&Path> = targets.iter().filter_map(Target::dir).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError {
                dir: dir.to_owned(),
                source,
            })?;
    }
    let on_change = Arc::new(on_change);
    let task = tokio::spawn(debounce(rx, on_change));
    Ok(Watch {
        _watcher: watcher,
        _task: AbortOnDropHandle::new(task),
    })
}

/// Collects a burst of events, then runs `on_change` once per touched target. Ends when the
/// watcher (which holds the sender) is dropped.
async fn debounce(
    mut rx: mpsc::UnboundedReceiver<Vec<usize>>,
    on_change: Arc<dyn Fn(usize) + Send + Sync>,
) {
    while let Some(first) = rx.recv().await {
        let mut hit: BTreeSet<usize> = first.into_iter().collect();
        tokio::time::sleep(DEBOUNCE).await;
        while let Ok(more) = rx.try_recv() {
            hit.extend(more);
        }
        let on_change = on_change.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for i in hit {
                on_change(i);
            }
        })
        .await;
    }
}
