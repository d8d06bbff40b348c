//! Where the public keys that verify tokens come from, and keeping them current.
//!
//! Every source yields a map kid → Ed25519 public key, from which the `DecodingKey`s are built
//! once per change of the key set (never per request):
//!
//! - the auth role's own key set, shared in memory on a node with both roles (a key the auth
//!   role loads is seen by the next request);
//! - a key directory, a JWKS file or a directory of public key PEMs: read at start (an
//!   unreadable source fails the start) and re-read when they change on disk;
//! - the auth server's JWKS URL: fetched at start, cached, refreshed every `jwks_refresh`.
//!   If the first fetch fails, the node starts anyway, reports not ready on `/readyz`, and
//!   retries every `jwks_min_refetch`; it never stops validating with the keys it already has
//!   because the auth server is down.
//!
//! [`KeyStore::version`] changes whenever the keys in force change (a key added, removed or
//! replaced under the same kid), which is how the token cache knows to forget every token it
//! verified with the old set.
//!
//! A token with an unknown `kid` triggers a reload at once, but reloads of any cause are at
//! most one per `jwks_min_refetch`, and concurrent callers share one in-flight reload, so a
//! flood of made-up kids cannot make the node hammer the auth server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ed25519_dalek::VerifyingKey;
use jsonwebtoken::DecodingKey;

use crate::config::KeySource;
use crate::files::{read_regular, ReadError};
use crate::keys::{self, KeyError, KeySet};

/// Why verification keys could not be loaded. Each message names the source.
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("{0} holds no Ed25519 public key")]
    Empty(String),
    #[error("{}: {source}", path.display())]
    Path {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("{url}: {source}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{url}: JWKS larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url}: {source}")]
    Jwks {
        url: String,
        #[source]
        source: KeyError,
    },
    #[error("HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("reading keys failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Timeout of one JWKS fetch: a slow auth server must not hold requests for long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest JWKS accepted from the network.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

type PublicKeys = HashMap<String, VerifyingKey>;

/// How keys are (re)loaded.
enum Loader {
    /// The auth role's key set on this node, replaced as a whole when it reloads.
    Shared(Arc<ArcSwap<KeySet>>),
    Disk(Disk),
    Url {
        client: reqwest::Client,
        url: String,
    },
}

/// A source on disk (absolute paths).
#[derive(Debug, Clone)]
enum Disk {
    /// A private key directory read by a node that does not sign.
    KeyDir(PathBuf),
    JwksFile(PathBuf),
    PublicDir(PathBuf),
}

impl Disk {
    fn describe(&self) -> String {
        match self {
            Self::KeyDir(d) => format!("key directory {}", d.display()),
            Self::JwksFile(f) => format!("JWKS file {}", f.display()),
            Self::PublicDir(d) => format!("public key directory {}", d.display()),
        }
    }

    /// Reads the keys (blocking).
    fn read(&self) -> Result<PublicKeys, KeySourceError> {
        let keys = match self {
            Self::KeyDir(dir) => KeySet::load(dir)?.public_keys(),
            Self::JwksFile(file) => {
                let bytes = read_regular(file, MAX_JWKS_BYTES as u64).map_err(|source| {
                    KeySourceError::File {
                        path: file.clone(),
                        source,
                    }
                })?;
                keys::parse_jwks(&bytes).map_err(|source| KeySourceError::Jwks {
                    url: file.display().to_string(),
                    source,
                })?
            }
            Self::PublicDir(dir) => keys::load_public_dir(dir)?,
        };
        if keys.is_empty() {
            return Err(KeySourceError::Empty(self.describe()));
        }
        Ok(keys)
    }
}

/// The decoding keys in force.
struct Current {
    keys: Arc<HashMap<String, DecodingKey>>,
    /// The public keys they were built from, to tell a real change from a reload that found
    /// the same keys.
    public: PublicKeys,
    /// For [`Loader::Shared`]: the key set these were built from.
    built_from: Option<Arc<KeySet>>,
}

/// The verification keys of the resource role.
pub struct KeyStore {
    loader: Loader,
    /// Replaced whole; requests read it without locking.
    current: ArcSwap<Current>,
    /// Serializes the writers of `current` (rare: reloads), so that `changes` counts each
    /// change once.
    writer: parking_lot::Mutex<()>,
    /// When the last reload was attempted; held across a reload so that concurrent callers
    /// wait for it instead of starting their own.
    gate: tokio::sync::Mutex<Option<Instant>>,
    /// Bumped by every successful reload.
    generation: AtomicU64,
    /// Bumped when the keys in force change (see [`KeyStore::version`]).
    changes: AtomicU64,
    /// Every fetch of a JWKS URL, the first one included, successful or not.
    fetches: AtomicU64,
    min_refetch: Duration,
}

fn decoding_keys(keys: &PublicKeys) -> Arc<HashMap<String, DecodingKey>> {
    Arc::new(
        keys.iter()
            .map(|(kid, key)| (kid.clone(), DecodingKey::from_ed_der(key.as_bytes())))
            .collect(),
    )
}

fn read_shared(shared: &ArcSwap<KeySet>) -> Arc<KeySet> {
    shared.load_full()
}

impl KeyStore {
    /// Loads the keys of `source`. `shared` is the auth role's key set on a node that also
    /// signs; with it, a [`KeySource::Local`] source reads nothing from disk.
    pub async fn build(
        source: &KeySource,
        shared: Option<Arc<ArcSwap<KeySet>>>,
        min_refetch: Duration,
    ) -> Result<Self, KeySourceError> {
        let loader = match (source, shared) {
            (KeySource::Local(_), Some(shared)) => Loader::Shared(shared),
            (KeySource::Local(dir), None) => Loader::Disk(Disk::KeyDir(absolute(dir)?)),
            (KeySource::JwksFile(f), _) => Loader::Disk(Disk::JwksFile(absolute(f)?)),
            (KeySource::PublicKeysDir(d), _) => Loader::Disk(Disk::PublicDir(absolute(d)?)),
            // Validation guarantees at least one URL. Only the first is fetched here: merging
            // the key sets of several auth nodes belongs to the key store, not to this match.
            (KeySource::JwksUrl(urls), _) => Loader::Url {
                client: reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .connect_timeout(FETCH_TIMEOUT)
                    .build()
                    .map_err(KeySourceError::Client)?,
                url: urls.first().cloned().unwrap_or_default(),
            },
        };
        let store = Self {
            loader,
            current: ArcSwap::from_pointee(Current {
                keys: Arc::new(HashMap::new()),
                public: HashMap::new(),
                built_from: None,
            }),
            writer: parking_lot::Mutex::new(()),
            gate: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            min_refetch,
        };
        match &store.loader {
            Loader::Shared(_) => {}
            Loader::Url { url, .. } => {
                if !store.refresh().await {
                    tracing::warn!(
                        %url,
                        retry_secs = min_refetch.as_secs(),
                        "starting without verification keys; will retry the JWKS fetch"
                    );
                }
            }
            Loader::Disk(_) => {
                *store.gate.lock().await = Some(Instant::now());
                let keys = store.load().await?;
                tracing::info!(source = %store.describe(), keys = keys.len(), "verification keys loaded");
                store.install(&keys);
            }
        }
        Ok(store)
    }

    /// What the keys come from, for logs.
    fn describe(&self) -> String {
        match &self.loader {
            Loader::Shared(_) => "the local signing keys".into(),
            Loader::Disk(disk) => disk.describe(),
            Loader::Url { url, .. } => format!("JWKS {url}"),
        }
    }

    /// What to watch on disk for changes, if the source is a file or directory.
    pub fn watch_dir(&self) -> Option<PathBuf> {
        match &self.loader {
            Loader::Disk(Disk::JwksFile(f)) => f.parent().map(Path::to_owned),
            Loader::Disk(Disk::PublicDir(d) | Disk::KeyDir(d)) => Some(d.clone()),
            Loader::Shared(_) | Loader::Url { .. } => None,
        }
    }

    /// Whether the source is fetched periodically (only the JWKS URL is).
    pub fn is_remote(&self) -> bool {
        matches!(self.loader, Loader::Url { .. })
    }

    /// Whether there is at least one key to verify with.
    pub fn is_ready(&self) -> bool {
        match &self.loader {
            Loader::Shared(shared) => !read_shared(shared).is_empty(),
            _ => !self.snapshot().is_empty(),
        }
    }

    /// How many times a JWKS URL has been fetched, the first fetch included.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Arc<HashMap<String, DecodingKey>> {
        self.current.load().keys.clone()
    }

    fn install(&self, keys: &PublicKeys) {
        {
            let _writer = self.writer.lock();
            let current = self.current.load_full();
            self.replace(&current, keys, current.built_from.clone());
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Puts `keys` in force (built from `built_from`), counting a change if they differ from
    /// the keys in force. Called with `writer` held. The counter moves after the swap: whoever
    /// reads the new version and then looks a key up sees the new keys.
    fn replace(&self, current: &Current, keys: &PublicKeys, built_from: Option<Arc<KeySet>>) {
        let changed = current.public != *keys;
        self.current.store(Arc::new(Current {
            keys: if changed {
                decoding_keys(keys)
            } else {
                current.keys.clone()
            },
            public: keys.clone(),
            built_from,
        }));
        if changed {
            self.changes.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// For the auth role's key set: rebuilds the decoding keys if that set was replaced (by a
    /// reload) since they were built.
    fn sync_shared(&self) {
        let Loader::Shared(shared) = &self.loader else {
            return;
        };
        let set = read_shared(shared);
        let built_from = |c: &Current| c.built_from.as_ref().is_some_and(|b| Arc::ptr_eq(b, &set));
        if built_from(&self.current.load()) {
            return;
        }
        let public = set.public_keys();
        let _writer = self.writer.lock();
        let current = self.current.load_full();
        // Another request may have rebuilt them while this one waited for the lock.
        if !built_from(&current) {
            self.replace(&current, &public, Some(set));
        }
    }

    /// A number that changes whenever the keys in force change, and only then (a reload that
    /// finds the same keys leaves it alone). Never decreases.
    pub fn version(&self) -> u64 {
        self.sync_shared();
        self.changes.load(Ordering::Acquire)
    }

    /// The key for `kid` among the keys in force, without reloading.
    fn lookup(&self, kid: &str) -> Option<DecodingKey> {
        self.sync_shared();
        self.snapshot().get(kid).cloned()
    }

    /// The key for `kid`; an unknown kid triggers a reload (rate limited, shared).
    pub async fn key(&self, kid: &str) -> Option<DecodingKey> {
        if let Some(key) = self.lookup(kid) {
            return Some(key);
        }
        if matches!(self.loader, Loader::Shared(_)) {
            // The auth role owns its key set; a kid it does not know is simply unknown.
            return None;
        }
        self.refresh().await;
        self.lookup(kid)
    }

    /// Reloads the source unless another reload finished while this one waited or the last
    /// attempt was less than `jwks_min_refetch` ago. Returns whether the keys are fresh.
    pub async fn refresh(&self) -> bool {
        let seen = self.generation.load(Ordering::Acquire);
        let mut last = self.gate.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return false;
        }
        *last = Some(Instant::now());
        match self.load().await {
            Ok(keys) => {
                let before = self.snapshot();
                let changed =
                    keys.len() != before.len() || keys.keys().any(|kid| !before.contains_key(kid));
                if changed {
                    tracing::info!(source = %self.describe(), keys = keys.len(), "verification keys loaded");
                }
                self.install(&keys);
                true
            }
            Err(error) => {
                tracing::warn!(
                    source = %self.describe(),
                    %error,
                    "cannot reload verification keys; keeping the ones in force"
                );
                false
            }
        }
    }

    /// Re-reads a file source after it changed on disk (blocking: call off the async
    /// workers). The keys in force stay if the new content is not usable.
    pub fn reload_from_disk(&self) {
        let Loader::Disk(disk) = &self.loader else {
            return;
        };
        match disk.read() {
            Ok(keys) => {
                tracing::info!(source = %self.describe(), keys = keys.len(), "verification keys reloaded");
                self.install(&keys);
            }
            Err(error) => tracing::warn!(
                source = %self.describe(),
                %error,
                "cannot reload verification keys; keeping the ones in force"
            ),
        }
    }

    /// One load of the source.
    async fn load(&self) -> Result<PublicKeys, KeySourceError> {
        match &self.loader {
            Loader::Url { client, url } => {
                self.fetches.fetch_add(1, Ordering::Relaxed);
                fetch(client, url).await
            }
            Loader::Shared(shared) => Ok(read_shared(shared).public_keys()),
            Loader::Disk(disk) => {
                let disk = disk.clone();
                tokio::task::spawn_blocking(move || disk.read()).await?
            }
        }
    }
}

fn absolute(path: &std::path::Path) -> Result<PathBuf, KeySourceError> {
    std::path::absolute(path).map_err(|source| KeySourceError::Path {
        path: path.to_owned(),
        source,
    })
}

/// One GET of the JWKS, bounded in time and size.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<PublicKeys, KeySourceError> {
    let failed = |source| KeySourceError::Fetch {
        url: url.to_owned(),
        source,
    };
    let mut resp = client.get(url).send().await.map_err(failed)?;
    if !resp.status().is_success() {
        return Err(KeySourceError::Status {
            url: url.to_owned(),
            status: resp.status(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(failed)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_JWKS_BYTES {
            return Err(KeySourceError::TooLarge {
                url: url.to_owned(),
            });
        }
    }
    let keys = keys::parse_jwks(&body).map_err(|source| KeySourceError::Jwks {
        url: url.to_owned(),
        source,
    })?;
    if keys.is_empty() {
        return Err(KeySourceError::Empty(format!("JWKS {url}")));
    }
    Ok(keys)
}
