//! Watching the directories of served files (and key files) for changes with `notify`.
//!
//! Directories, not files, are watched, non-recursively: editors and deploy tools replace a
//! file by writing a temporary file and renaming it over the old one, which a watch on the old
//! inode would miss, and Kubernetes-style deploys swap a `..data` symlink next to the file. A
//! served file that is a symlink is watched in its own directory *and* in its target's, so an
//! edit to the target is seen; when a change makes the symlink point into another directory,
//! the callback names that directory and it is watched from then on.
//!
//! Events are debounced briefly (a burst of writes becomes one reload) and handed, as the set
//! of directories that saw them, to a callback that runs on a blocking thread. Dropping the
//! [`Watch`] stops the notify thread and the debounce task.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

/// How long to wait after the first event for the rest of a burst. Well under the 1 second
/// within which a change must be visible.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// How often the polling fallback scans, when the kernel refuses another inotify instance.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A directory that cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {} for changes: {source}", dir.display())]
pub struct WatchError {
    pub dir: PathBuf,
    #[source]
    pub source: notify::Error,
}

type SharedWatcher = Arc<Mutex<Box<dyn Watcher + Send>>>;

/// The callback: given the directories that saw events, reloads and names new ones to watch.
type OnChange = Arc<dyn Fn(&BTreeSet<PathBuf>) -> Vec<PathBuf> + Send + Sync>;

/// A running watch; stops when dropped.
pub struct Watch {
    _watcher: SharedWatcher,
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

/// The watched directory an event path belongs to: the path itself (a watched directory's own
/// event) or its parent.
fn dir_of(path: &Path, watched: &BTreeSet<PathBuf>) -> Option<PathBuf> {
    if watched.contains(path) {
        return Some(path.to_owned());
    }
    path.parent()
        .filter(|p| watched.contains(*p))
        .map(Path::to_owned)
}

/// Starts watching `dirs`; `on_change(changed)` runs (on a blocking thread) after events in the
/// directories of `changed`, and returns further directories to watch. Must be called inside a
/// Tokio runtime.
pub fn start(
    dirs: Vec<PathBuf>,
    on_change: impl Fn(&BTreeSet<PathBuf>) -> Vec<PathBuf> + Send + Sync + 'static,
) -> Result<Watch, WatchError> {
    let watched: Arc<Mutex<BTreeSet<PathBuf>>> = Arc::default();
    let (tx, rx) = mpsc::unbounded_channel::<BTreeSet<PathBuf>>();
    let handler = {
        let watched = watched.clone();
        move |event: notify::Result<notify::Event>| match event {
            Ok(event) if changes_content(&event.kind) => {
                let watched = watched.lock();
                let hit: BTreeSet<PathBuf> = event
                    .paths
                    .iter()
                    .filter_map(|p| dir_of(p, &watched))
                    .collect();
                if !hit.is_empty() {
                    let _ = tx.send(hit);
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "file watch error"),
        }
    };
    let watcher: SharedWatcher = Arc::new(Mutex::new(new_watcher(handler)?));
    for dir in dirs {
        add(&watcher, &watched, dir)?;
    }
    let task = tokio::spawn(debounce(rx, Arc::new(on_change), watcher.clone(), watched));
    Ok(Watch {
        _watcher: watcher,
        _task: AbortOnDropHandle::new(task),
    })
}

fn new_watcher<H>(handler: H) -> Result<Box<dyn Watcher + Send>, WatchError>
where
    H: notify::EventHandler + Clone,
{
    match notify::recommended_watcher(handler.clone()) {
        Ok(w) => Ok(Box::new(w)),
        Err(error) => {
            // Typically the per-user inotify instance limit; polling still meets the
            // one-second promise, at the cost of a directory scan every POLL_INTERVAL.
            tracing::warn!(%error, "cannot use native file events; polling for changes instead");
            let config = notify::Config::default().with_poll_interval(POLL_INTERVAL);
            let poll = notify::PollWatcher::new(handler, config).map_err(|source| WatchError {
                dir: PathBuf::from("(polling)"),
                source,
            })?;
            Ok(Box::new(poll))
        }
    }
}

/// Watches one more directory (once).
fn add(
    watcher: &SharedWatcher,
    watched: &Mutex<BTreeSet<PathBuf>>,
    dir: PathBuf,
) -> Result<(), WatchError> {
    if !watched.lock().insert(dir.clone()) {
        return Ok(());
    }
    watcher
        .lock()
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError { dir, source })
}

/// Collects a burst of events, then runs `on_change` once for the directories touched, and
/// watches the directories it names. Ends when the watcher (which holds the sender) is dropped.
async fn debounce(
    mut rx: mpsc::UnboundedReceiver<BTreeSet<PathBuf>>,
    on_change: OnChange,
    watcher: SharedWatcher,
    watched: Arc<Mutex<BTreeSet<PathBuf>>>,
) {
    while let Some(mut hit) = rx.recv().await {
        tokio::time::sleep(DEBOUNCE).await;
        while let Ok(more) = rx.try_recv() {
            hit.extend(more);
        }
        let on_change = on_change.clone();
        let Ok(new_dirs) = tokio::task::spawn_blocking(move || on_change(&hit)).await else {
            continue;
        };
        for dir in new_dirs {
            if let Err(error) = add(&watcher, &watched, dir) {
                tracing::warn!(%error, "a moved symlink target will not be watched");
            }
        }
    }
}
