//! Reading a route's document within bounds: only a regular file, only up to the limit.
//!
//! A route may name anything the file system holds. `/dev/zero` or a 20 GiB log would be read
//! until memory runs out, a FIFO with no writer would block the reader for ever, and a
//! directory cannot be served. So the kind and size are checked on the metadata before the
//! file is opened, the open cannot block (`O_NONBLOCK`, in case the path was swapped for a
//! FIFO meanwhile), the open file is checked again, and at most one byte more than the limit
//! is read, so a file that grows meanwhile is caught too.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::paths::kind;

/// Why a document was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is {kind}, not a regular file", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{} is {size} bytes, more than `[resource] max_document_bytes` ({limit})",
        path.display()
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error(
        "{} grew past `[resource] max_document_bytes` ({limit}) while being read",
        path.display()
    )]
    Grew { path: PathBuf, limit: u64 },
}

/// The bytes of `path`, a regular file of at most `limit` bytes.
pub fn read_document(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    check_metadata(path, &std::fs::metadata(path).map_err(io)?, limit)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(io)?;
    check_metadata(path, &file.metadata().map_err(io)?, limit)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::Grew {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

fn check_metadata(path: &Path, meta: &std::fs::Metadata, limit: u64) -> Result<(), ReadError> {
    if !meta.is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_owned(),
            kind: kind(meta.file_type()),
        });
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
            limit,
        });
    }
    Ok(())
}
