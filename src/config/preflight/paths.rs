//! Questions several checks ask about a path: could it be created, may this user write there,
//! what kind of file is it.

use std::io;
use std::path::{Path, PathBuf};

/// Why a path that does not exist yet could not be created.
#[derive(Debug, thiserror::Error)]
pub(super) enum Uncreatable {
    #[error("{} is not a directory", blocker.display())]
    Blocked { blocker: PathBuf },
    #[error("{} is not writable by this user: {source}", dir.display())]
    ReadOnly {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Unreadable(io::Error),
}

/// Whether `path`, whose metadata could not be read (`error`), can be created with its
/// missing parents: its nearest existing ancestor must be a directory this user may write to.
pub(super) fn creatable(path: &Path, error: io::Error) -> Result<(), Uncreatable> {
    let nearest = path.ancestors().skip(1).find_map(|a| {
        // A relative path's last ancestor is "": the working directory.
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        std::fs::metadata(a).ok().map(|m| (a, m.is_dir()))
    });
    match nearest {
        Some((dir, true)) if error.kind() == io::ErrorKind::NotFound => {
            writable(dir).map_err(|source| Uncreatable::ReadOnly {
                dir: dir.to_owned(),
                source,
            })
        }
        Some((blocker, false)) => Err(Uncreatable::Blocked {
            blocker: blocker.to_owned(),
        }),
        _ => Err(Uncreatable::Unreadable(error)),
    }
}

/// Whether this user may write to `path` (the kernel's answer, so a read-only mount counts).
pub(super) fn writable(path: &Path) -> io::Result<()> {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).map_err(io::Error::from)
}

/// "a directory", "a FIFO", ...: what a path is, for messages refusing it.
pub(super) use crate::files::kind;
