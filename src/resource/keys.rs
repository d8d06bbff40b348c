//! Where the public keys that verify tokens come from, and keeping them current.
//!
//! Every source yields a map kid → public key (EdDSA, ES256 or RS256: the key's type fixes its
//! algorithm), from which the verification keys are built once per change of the key set
//! (never per request):
//!
//! - the auth role's own key set, shared in memory on a node with both roles: a key the auth
//!   role loads is seen by the next request, and a retired key leaves when the rotation rules
//!   withdraw it, at the time they say;
//! - a key directory, a JWKS file or a directory of public key PEMs: read at start (an
//!   unreadable source fails the start) and re-read when they change on disk;
//! - the JWKS URLs of the auth nodes: each fetched at start, cached, refreshed every
//!   `jwks_refresh`, and the keys of all of them merged. A URL that does not answer keeps the
//!   keys it gave last and does not hold up the others; the node is ready once any URL has
//!   given keys. A URL that never answered is retried every `jwks_min_refetch`.
//!
//! [`KeyStore::version`] changes whenever the keys in force change (a key added, removed or
//! replaced under the same kid), which is how the token cache knows to forget every token it
//! verified with the old set.
//!
//! A token with an unknown `kid` triggers a reload at once, but each source (each URL) is
//! reloaded at most once per `jwks_min_refetch`, whatever the cause, and concurrent callers
//! share one in-flight fetch, so a flood of made-up kids cannot make the node hammer an auth
//! server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use jsonwebtoken::DecodingKey;

use crate::config::KeySource;
use crate::files::{read_regular, ReadError};
use crate::keys::{self, Alg, KeyError, KeySet, PublicJwk, Schedule};

/// Why verification keys could not be loaded. Each message names the source.
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("{0} holds no Ed25519, P-256 or RSA public key")]
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

type PublicKeys = HashMap<String, PublicJwk>;

/// A key that verifies tokens of exactly one algorithm.
#[derive(Clone)]
pub struct VerifyKey {
    /// The only `alg` a token verified with this key may name.
    pub alg: Alg,
    pub key: DecodingKey,
}

/// One JWKS URL: what it gave last and when it was last asked.
struct Remote {
    url: String,
    /// The keys of its last successful fetch (kept while it does not answer).
    keys: ArcSwap<PublicKeys>,
    /// When it was last fetched; held across a fetch so that concurrent callers wait for it
    /// instead of starting their own.
    gate: tokio::sync::Mutex<Option<Instant>>,
    /// Bumped by every finished fetch of this URL.
    generation: AtomicU64,
    /// Whether the last fetch failed (so an outage is logged once, and its end once).
    failing: AtomicBool,
}

/// How keys are (re)loaded.
enum Loader {
    /// The auth role's key set on this node, replaced as a whole when it reloads.
    Shared(Arc<ArcSwap<KeySet>>),
    Disk(Disk),
    Urls {
        client: reqwest::Client,
        remotes: Vec<Remote>,
    },
}

/// A source on disk (absolute paths).
#[derive(Debug, Clone)]
enum Disk {
    /// A private key directory read by a node that does not sign.
    KeyDir(PathBuf, Schedule),
    JwksFile(PathBuf),
    PublicDir(PathBuf),
}

impl Disk {
    fn describe(&self) -> String {
        match self {
            Self::KeyDir(d, _) => format!("key directory {}", d.display()),
            Self::JwksFile(f) => format!("JWKS file {}", f.display()),
            Self::PublicDir(d) => format!("public key directory {}", d.display()),
        }
    }

    /// Reads the keys (blocking).
    fn read(&self) -> Result<PublicKeys, KeySourceError> {
        let keys = match self {
            Self::KeyDir(dir, schedule) => {
                KeySet::load(dir, *schedule)?.public_keys(crate::time::now_millis())
            }
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
        Ok(keys.into_iter().collect())
    }
}

/// The verification keys in force.
struct Current {
    keys: Arc<HashMap<String, VerifyKey>>,
    /// The public keys they were built from, to tell a real change from a reload that found
    /// the same keys.
    public: PublicKeys,
    /// For [`Loader::Shared`]: the key set these were built from, and until when (the next
    /// change of its published keys) they hold.
    built_from: Option<(Arc<KeySet>, Option<i64>)>,
}

/// The verification keys of the resource role.
pub struct KeyStore {
    loader: Loader,
    /// Replaced whole; requests read it without locking.
    current: ArcSwap<Current>,
    /// Serializes the writers of `current` (rare: reloads), so that `changes` counts each
    /// change once.
    writer: parking_lot::Mutex<()>,
    /// For a source on disk: when it was last read (see [`Remote::gate`]).
    gate: tokio::sync::Mutex<Option<Instant>>,
    /// Bumped by every successful reload of a source on disk.
    generation: AtomicU64,
    /// Bumped when the keys in force change (see [`KeyStore::version`]).
    changes: AtomicU64,
    /// Every fetch of a JWKS URL, the first ones included, successful or not.
    fetches: AtomicU64,
    min_refetch: Duration,
}

fn verify_keys(keys: &PublicKeys) -> Arc<HashMap<String, VerifyKey>> {
    let mut out = HashMap::new();
    for (kid, key) in keys {
        match key.decoding_key() {
            Ok(decoding) => {
                out.insert(
                    kid.clone(),
                    VerifyKey {
                        alg: key.alg(),
                        key: decoding,
                    },
                );
            }
            Err(error) => tracing::warn!(%kid, %error, "unusable verification key skipped"),
        }
    }
    Arc::new(out)
}

fn http_client() -> Result<reqwest::Client, KeySourceError> {
    reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(FETCH_TIMEOUT)
        .build()
        .map_err(KeySourceError::Client)
}

impl KeyStore {
    /// Loads the keys of `source`. `shared` is the auth role's key set on a node that also
    /// signs; with it, a [`KeySource::Local`] source reads nothing from disk. `schedule` is
    /// the rotation rules for a key directory read without the auth role.
    pub async fn build(
        source: &KeySource,
        shared: Option<Arc<ArcSwap<KeySet>>>,
        schedule: Schedule,
        min_refetch: Duration,
    ) -> Result<Self, KeySourceError> {
        let loader = match (source, shared) {
            (KeySource::Local(_), Some(shared)) => Loader::Shared(shared),
            (KeySource::Local(dir), None) => Loader::Disk(Disk::KeyDir(absolute(dir)?, schedule)),
            (KeySource::JwksFile(f), _) => Loader::Disk(Disk::JwksFile(absolute(f)?)),
            (KeySource::PublicKeysDir(d), _) => Loader::Disk(Disk::PublicDir(absolute(d)?)),
            (KeySource::JwksUrl(urls), _) => Loader::Urls {
                client: http_client()?,
                remotes: urls.iter().map(|url| Remote::new(url)).collect(),
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
            Loader::Urls { .. } => {
                if !store.refresh().await {
                    tracing::warn!(
                        retry_secs = min_refetch.as_secs(),
                        "starting without verification keys: no JWKS URL answered; will retry"
                    );
                }
            }
            Loader::Disk(_) => {
                *store.gate.lock().await = Some(Instant::now());
                let keys = store.load_disk().await?;
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
            Loader::Urls { remotes, .. } => {
                let urls: Vec<&str> = remotes.iter().map(|r| r.url.as_str()).collect();
                format!("JWKS {}", urls.join(", "))
            }
        }
    }

    /// What to watch on disk for changes, if the source is a file or directory.
    pub fn watch_dir(&self) -> Option<PathBuf> {
        match &self.loader {
            Loader::Disk(Disk::JwksFile(f)) => f.parent().map(Path::to_owned),
            Loader::Disk(Disk::PublicDir(d) | Disk::KeyDir(d, _)) => Some(d.clone()),
            Loader::Shared(_) | Loader::Urls { .. } => None,
        }
    }

    /// Whether the source is fetched periodically (only JWKS URLs are).
    pub fn is_remote(&self) -> bool {
        matches!(self.loader, Loader::Urls { .. })
    }

    /// Whether there is at least one key to verify with.
    pub fn is_ready(&self) -> bool {
        self.sync_shared();
        !self.snapshot().is_empty()
    }

    /// How many times a JWKS URL has been fetched, the first fetches included.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Arc<HashMap<String, VerifyKey>> {
        self.current.load().keys.clone()
    }

    /// Puts `keys` in force (a reload of a source other than the shared key set).
    fn install(&self, keys: &PublicKeys) {
        let _writer = self.writer.lock();
        let current = self.current.load_full();
        self.replace(&current, keys, None);
    }

    /// Puts `keys` in force (built from `built_from`), counting a change if they differ from
    /// the keys in force. Called with `writer` held. The counter moves after the swap: whoever
    /// reads the new version and then looks a key up sees the new keys.
    fn replace(
        &self,
        current: &Current,
        keys: &PublicKeys,
        built_from: Option<(Arc<KeySet>, Option<i64>)>,
    ) {
        let changed = current.public != *keys;
        self.current.store(Arc::new(Current {
            keys: if changed {
                verify_keys(keys)
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

    /// For the auth role's key set: rebuilds the verification keys if that set was replaced
    /// (by a reload) or its published keys changed with the clock since they were built.
    fn sync_shared(&self) {
        self.sync_shared_at(crate::time::now_millis());
    }

    /// [`Self::sync_shared`] at `now` (Unix milliseconds), for a caller that has read the clock.
    fn sync_shared_at(&self, now: i64) {
        let Loader::Shared(shared) = &self.loader else {
            return;
        };
        // On every request: a guard, not a clone, so no shared reference count is touched.
        let set = shared.load();
        let fresh = |c: &Current, set: &Arc<KeySet>, now: i64| {
            c.built_from
                .as_ref()
                .is_some_and(|(b, until)| Arc::ptr_eq(b, set) && until.is_none_or(|t| now < t))
        };
        if fresh(&self.current.load(), &set, now) {
            return;
        }
        let set = arc_swap::Guard::into_inner(set);
        let public: PublicKeys = set.public_keys(now).into_iter().collect();
        let until = set.next_change(now);
        let _writer = self.writer.lock();
        let current = self.current.load_full();
        // Another request may have rebuilt them while this one waited for the lock.
        if !fresh(&current, &set, now) {
            self.replace(&current, &public, Some((set, until)));
        }
    }

    /// A number that changes whenever the keys in force change, and only then (a reload that
    /// finds the same keys leaves it alone). Never decreases.
    pub fn version(&self) -> u64 {
        self.version_at(crate::time::now_millis())
    }

    /// [`Self::version`] at `now` (Unix milliseconds), for a caller that has read the clock.
    pub fn version_at(&self, now: i64) -> u64 {
        self.sync_shared_at(now);
        self.changes.load(Ordering::Acquire)
    }

    /// The key for `kid` among the keys in force, without reloading.
    fn lookup(&self, kid: &str) -> Option<VerifyKey> {
        self.sync_shared();
        self.snapshot().get(kid).cloned()
    }

    /// The key for `kid`; an unknown kid triggers a reload of every source (rate limited per
    /// source, shared with concurrent callers), and the answer comes as soon as one source
    /// knows the kid.
    pub async fn key(&self, kid: &str) -> Option<VerifyKey> {
        if let Some(key) = self.lookup(kid) {
            return Some(key);
        }
        match &self.loader {
            // The auth role owns its key set; a kid it does not know is simply unknown.
            Loader::Shared(_) => None,
            Loader::Disk(_) => {
                self.refresh_disk().await;
                self.lookup(kid)
            }
            Loader::Urls { client, remotes } => {
                let mut fetches: FuturesUnordered<_> = remotes
                    .iter()
                    .map(|r| self.refresh_remote(client, r))
                    .collect();
                while fetches.next().await.is_some() {
                    if let Some(key) = self.lookup(kid) {
                        return Some(key);
                    }
                }
                None
            }
        }
    }

    /// Reloads every source that the rate limit allows, all URLs at once. Returns whether any
    /// gave keys.
    pub async fn refresh(&self) -> bool {
        match &self.loader {
            Loader::Shared(_) => true,
            Loader::Disk(_) => self.refresh_disk().await,
            Loader::Urls { client, remotes } => {
                let fetches = remotes.iter().map(|r| self.refresh_remote(client, r));
                futures_util::future::join_all(fetches)
                    .await
                    .into_iter()
                    .any(|ok| ok)
            }
        }
    }

    /// The periodic refresh of the JWKS URLs (a task of the resource role, for the life of
    /// the node): a URL is fetched again `every` after its last fetch, or `retry` after it if
    /// it never gave keys.
    pub async fn run_refresh(&self, every: Duration, retry: Duration) {
        let Loader::Urls { client, remotes } = &self.loader else {
            return;
        };
        loop {
            tokio::time::sleep(every.min(retry)).await;
            let due = remotes.iter().filter(|r| r.due(every, retry));
            futures_util::future::join_all(due.map(|r| self.refresh_remote(client, r))).await;
        }
    }

    /// Fetches one URL unless another fetch of it finished while this one waited or it was
    /// fetched less than `jwks_min_refetch` ago; merges the keys of all URLs into the keys in
    /// force. Returns whether this URL's keys are fresh.
    async fn refresh_remote(&self, client: &reqwest::Client, remote: &Remote) -> bool {
        let seen = remote.generation.load(Ordering::Acquire);
        let mut last = remote.gate.lock().await;
        if remote.generation.load(Ordering::Acquire) != seen {
            return !remote.failing.load(Ordering::Acquire);
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return false;
        }
        *last = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = fetch(client, &remote.url).await;
        let ok = result.is_ok();
        remote.record(result);
        remote.generation.fetch_add(1, Ordering::AcqRel);
        if ok {
            self.merge_remotes();
        }
        ok
    }

    /// Installs the union of every URL's keys (the first URL naming a kid wins).
    fn merge_remotes(&self) {
        let Loader::Urls { remotes, .. } = &self.loader else {
            return;
        };
        let mut merged = PublicKeys::new();
        for remote in remotes {
            for (kid, key) in remote.keys.load().iter() {
                merged.entry(kid.clone()).or_insert_with(|| key.clone());
            }
        }
        let before = self.current.load().public.len();
        if merged != self.current.load().public {
            tracing::info!(source = %self.describe(), keys = merged.len(), before, "verification keys loaded");
        }
        self.install(&merged);
    }

    /// Reloads a source on disk, at most once per `jwks_min_refetch` (concurrent callers wait
    /// for the reload in flight). Returns whether the keys are fresh.
    async fn refresh_disk(&self) -> bool {
        let seen = self.generation.load(Ordering::Acquire);
        let mut last = self.gate.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return false;
        }
        *last = Some(Instant::now());
        match self.load_disk().await {
            Ok(keys) => {
                self.install(&keys);
                self.generation.fetch_add(1, Ordering::AcqRel);
                true
            }
            Err(error) => {
                tracing::warn!(source = %self.describe(), %error, "cannot reload verification keys; keeping the ones in force");
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
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            Err(error) => tracing::warn!(
                source = %self.describe(),
                %error,
                "cannot reload verification keys; keeping the ones in force"
            ),
        }
    }

    async fn load_disk(&self) -> Result<PublicKeys, KeySourceError> {
        let Loader::Disk(disk) = &self.loader else {
            return Ok(PublicKeys::new());
        };
        let disk = disk.clone();
        tokio::task::spawn_blocking(move || disk.read()).await?
    }
}

impl Remote {
    fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            keys: ArcSwap::from_pointee(PublicKeys::new()),
            gate: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        }
    }

    /// Whether the periodic refresh should fetch this URL now (never while a fetch of it is
    /// in flight).
    fn due(&self, every: Duration, retry: Duration) -> bool {
        let Ok(last) = self.gate.try_lock() else {
            return false;
        };
        let wait = if self.keys.load().is_empty() {
            retry
        } else {
            every
        };
        last.is_none_or(|t| t.elapsed() >= wait)
    }

    /// Keeps the keys of a successful fetch; logs the start and the end of an outage once.
    fn record(&self, result: Result<PublicKeys, KeySourceError>) {
        match result {
            Ok(keys) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(url = %self.url, "JWKS URL answers again");
                }
                self.keys.store(Arc::new(keys));
            }
            Err(error) => {
                if self.failing.swap(true, Ordering::AcqRel) {
                    tracing::debug!(url = %self.url, %error, "JWKS URL still unreachable");
                } else {
                    tracing::warn!(url = %self.url, %error, "cannot fetch the JWKS; keeping the keys it gave last");
                }
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

/// One GET of a JWKS, bounded in time and size.
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
    Ok(keys.into_iter().collect())
}
