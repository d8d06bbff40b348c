//! The served documents: the route table built from `[[resource.routes]]`, and for each route
//! the document currently in force.
//!
//! A [`Document`] is only ever built from bytes that parse completely as JSON, and it replaces
//! the previous one in a single pointer swap, so a reader sees either the old document or the
//! new one, never half a file. When a file cannot be read or parsed, the last good document
//! stays in force and a warning names the file and the parse error (line and column).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::claims::Policy;
use crate::config::{ResourceConfig, RouteConfig};
use crate::files::{read_regular, ReadError};
use crate::metrics::{Metrics, RouteCounters};

/// Documents up to this size are copied once per shard of worker threads ([`Document::body`]):
/// at most `SHARDS` × 4 KiB more per route.
const SHARDED_MAX_BYTES: usize = 4 * 1024;

/// One version of a served file.
#[derive(Debug)]
pub struct Document {
    /// The file's bytes, served exactly as written.
    pub bytes: Bytes,
    /// A strong validator (RFC 9110 section 8.8.3): the quoted hex of the first 128 bits of
    /// the SHA-256 of the bytes, so equal bytes give equal tags on every node and restart.
    pub etag: String,
    /// The same tag as a header value, built once per version rather than per request.
    pub etag_header: http::HeaderValue,
    /// For a small document, a copy of the body and the tag per shard of threads (see
    /// [`Document::body`]); empty for a large one.
    copies: Box<[ShardCopy]>,
}

/// A document's body and tag, each in an allocation whose reference count has a cache line to
/// itself.
#[derive(Debug)]
struct ShardCopy {
    bytes: Bytes,
    etag_header: http::HeaderValue,
}

/// Bytes whose owner starts on a cache-line pair of its own: `Bytes::from_owner` puts the
/// reference count right before the owner, so no other allocation shares its line.
#[repr(align(128))]
struct Aligned(Box<[u8]>);

impl AsRef<[u8]> for Aligned {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl ShardCopy {
    fn new(bytes: &[u8], etag: &str) -> Self {
        let etag = Bytes::from_owner(Aligned(etag.as_bytes().into()));
        Self {
            bytes: Bytes::from_owner(Aligned(bytes.into())),
            etag_header: http::HeaderValue::from_maybe_shared(etag)
                .unwrap_or_else(|_| http::HeaderValue::from_static("\"\"")),
        }
    }
}

/// A route whose document cannot be served (at start or in a reloaded configuration).
#[derive(Debug, thiserror::Error)]
#[error("route {path}: cannot serve {}: {source}", file.display())]
pub struct DocumentError {
    pub path: String,
    pub file: PathBuf,
    #[source]
    pub source: LoadError,
}

/// Why a file could not become a document.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    /// Not a regular file, or larger than `[resource] max_document_bytes`: nothing was read.
    #[error("{0}")]
    Refused(#[from] ReadError),
    /// serde_json's message ends with "at line L column C".
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Document {
    /// A document from bytes that must be one complete JSON value.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, serde_json::Error> {
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)?;
        let digest = Sha256::digest(&bytes);
        // Quoted hex: always a valid header value.
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        let copies = if bytes.len() <= SHARDED_MAX_BYTES {
            (0..crate::metrics::SHARDS)
                .map(|_| ShardCopy::new(&bytes, &etag))
                .collect()
        } else {
            Box::default()
        };
        Ok(Self {
            etag_header: http::HeaderValue::from_str(&etag)
                .unwrap_or_else(|_| http::HeaderValue::from_static("\"\"")),
            etag,
            bytes: Bytes::from(bytes),
            copies,
        })
    }

    /// The body and the tag to send, shared with the other requests of this thread's shard.
    ///
    /// Every response holds a reference to the body and the tag until it is written. Were they
    /// one `Bytes` for all, every worker thread would count references on the same two cache
    /// lines, which then travel between cores on every request (a measurable part of a read);
    /// a small document is cheap to copy once per shard instead.
    pub fn body(&self) -> (Bytes, http::HeaderValue) {
        match self.copies.get(crate::metrics::shard()) {
            Some(copy) => (copy.bytes.clone(), copy.etag_header.clone()),
            None => (self.bytes.clone(), self.etag_header.clone()),
        }
    }

    /// Reads and parses `path`: a regular file (symlinks followed) of at most `limit` bytes.
    pub fn load(path: &Path, limit: u64) -> Result<Self, LoadError> {
        Ok(Self::parse(read_regular(path, limit)?)?)
    }
}

/// A route and the document it serves now.
#[derive(Debug)]
pub struct Route {
    pub path: String,
    /// Absolute, so that it compares equal to the paths file-system events carry.
    pub file: PathBuf,
    /// What a token must say to read this route.
    pub policy: Policy,
    /// Replaced whole when the file changes; readers never lock.
    document: ArcSwap<Document>,
    /// This route's request counters (kept across reloads by [`Metrics`]).
    pub counters: Arc<RouteCounters>,
}

impl Route {
    /// The document in force. (A guard, not a clone of the `Arc`: every request reads it, and
    /// a clone would have all worker threads count references on one cache line.)
    pub fn document(&self) -> arc_swap::Guard<Arc<Document>> {
        self.document.load()
    }

    fn replace(&self, document: Arc<Document>) {
        self.document.store(document);
    }
}

/// A served file, with the routes that serve it.
#[derive(Debug)]
struct Served {
    /// The path as configured, made absolute (possibly a symlink).
    path: PathBuf,
    /// What `path` resolved to when last read: a symlink may be swapped to another target.
    target: ArcSwap<PathBuf>,
    routes: Vec<Arc<Route>>,
}

impl Served {
    /// The directories whose events concern this file: its own, and its target's.
    fn dirs(&self) -> [Option<PathBuf>; 2] {
        [
            self.path.parent().map(Path::to_owned),
            self.target.load().parent().map(Path::to_owned),
        ]
    }
}

/// Every route, by path.
#[derive(Debug)]
pub struct Catalog {
    routes: HashMap<String, Arc<Route>>,
    /// Each served file once.
    files: Vec<Served>,
    /// `[resource] max_document_bytes`.
    limit: u64,
}

impl Catalog {
    /// Loads every route's document; a file that cannot be served fails the start, since
    /// there is no earlier good version to fall back on.
    pub fn build(config: &ResourceConfig, metrics: &Metrics) -> Result<Self, DocumentError> {
        let limit = config.max_document_bytes;
        let mut routes = HashMap::new();
        let mut files: Vec<Served> = Vec::new();
        for rc in &config.routes {
            let route = Arc::new(Self::route(config, rc, metrics)?);
            match files.iter_mut().find(|f| f.path == route.file) {
                Some(served) => served.routes.push(route.clone()),
                None => files.push(Served {
                    target: ArcSwap::from_pointee(resolve(&route.file)),
                    path: route.file.clone(),
                    routes: vec![route.clone()],
                }),
            }
            routes.insert(route.path.clone(), route);
        }
        Ok(Self {
            routes,
            files,
            limit,
        })
    }

    fn route(
        config: &ResourceConfig,
        rc: &RouteConfig,
        metrics: &Metrics,
    ) -> Result<Route, DocumentError> {
        let fail = |source: LoadError| DocumentError {
            path: rc.path.clone(),
            file: rc.file.clone(),
            source,
        };
        let file = std::path::absolute(&rc.file).map_err(|e| fail(e.into()))?;
        let document = Document::load(&file, config.max_document_bytes).map_err(fail)?;
        Ok(Route {
            path: rc.path.clone(),
            file,
            policy: Policy {
                issuer: config.issuer.clone(),
                leeway: config.leeway.as_secs(),
                audience: rc.audience.clone(),
                scope: rc.scope.clone(),
            },
            document: ArcSwap::from_pointee(document),
            counters: metrics.route(&rc.path),
        })
    }

    /// The paths of every route.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// The route at `path`, if any.
    pub fn route_at(&self, path: &str) -> Option<&Route> {
        self.routes.get(path).map(Arc::as_ref)
    }

    /// Every directory to watch: each served file's, and its symlink target's.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.files.iter().flat_map(|f| f.dirs()).flatten().collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Re-reads every served file that lives in (or whose symlink target lives in) one of
    /// `changed`; returns the directories of symlink targets that moved elsewhere, to be
    /// watched from now on. Blocking: call it off the async workers.
    pub fn reload_in(&self, changed: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
        let mut moved = Vec::new();
        for served in &self.files {
            if served.dirs().iter().flatten().any(|d| changed.contains(d)) {
                moved.extend(self.reload(served));
            }
        }
        moved
    }

    /// Re-reads one file and, if it parses, makes it the document of every route serving it.
    /// Returns the new target's directory if the file is a symlink that now points elsewhere.
    fn reload(&self, served: &Served) -> Option<PathBuf> {
        let file = &served.path;
        let target = resolve(file);
        let moved = (**served.target.load() != target).then(|| {
            tracing::warn!(
                file = %file.display(),
                from = %served.target.load().display(),
                to = %target.display(),
                "a served file's symlink now points elsewhere"
            );
            served.target.store(Arc::new(target.clone()));
            target.parent().map(Path::to_owned)
        });
        match Document::load(file, self.limit) {
            Ok(document) => replace(served, document),
            Err(error) => tracing::warn!(
                file = %file.display(),
                %error,
                "cannot reload document; still serving the last good version"
            ),
        }
        moved.flatten()
    }
}

/// Where `path` leads once symlinks are followed (itself if it cannot be resolved now).
fn resolve(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Makes `document` the one every route of `served` answers with, unless it is the same.
fn replace(served: &Served, document: Document) {
    let routes = &served.routes;
    let current = routes.first().map(|r| r.document());
    if current.is_some_and(|c| c.bytes == document.bytes) {
        return;
    }
    let document = Arc::new(document);
    for route in routes {
        route.replace(document.clone());
    }
    tracing::info!(
        file = %served.path.display(),
        etag = %document.etag,
        routes = %routes.iter().map(|r| r.path.as_str()).collect::<Vec<_>>().join(" "),
        "reloaded document"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_gets_the_same_body_and_tag_small_documents_from_a_copy_of_its_own() {
        let small = br#"{"a": 1}"#.to_vec();
        let large = format!(r#"{{"a": "{}"}}"#, "x".repeat(SHARDED_MAX_BYTES)).into_bytes();
        for (bytes, copied) in [(small, true), (large, false)] {
            let document = Arc::new(Document::parse(bytes.clone()).unwrap());
            let threads: Vec<_> = (0..crate::metrics::SHARDS + 1)
                .map(|_| {
                    let document = document.clone();
                    std::thread::spawn(move || {
                        let (body, etag) = document.body();
                        (body.to_vec(), etag, body.as_ptr() as usize)
                    })
                })
                .collect();
            let mut seen = BTreeSet::new();
            for t in threads {
                let (body, etag, at) = t.join().unwrap();
                assert_eq!(body, bytes);
                assert_eq!(etag, document.etag_header);
                assert_eq!(etag.to_str().unwrap(), document.etag);
                seen.insert(at);
            }
            // Nine threads over eight shards: a small document is served from several copies,
            // none of them the document's own bytes; a large one only from those.
            assert_eq!(seen.contains(&(document.bytes.as_ptr() as usize)), !copied);
            assert_eq!(seen.len() > 1, copied, "{} bytes", bytes.len());
        }
    }
}
