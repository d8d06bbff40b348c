//! The token cache of `steelcutd token` and `steelcutd get`: one JSON file per user, by
//! default `$XDG_CACHE_HOME/steelcut/tokens.json` (or `~/.cache/steelcut/tokens.json`).
//!
//! Guarantees:
//! - Entries are keyed by token endpoint, client id, the set of resources and the set of
//!   scopes, so different requests never get each other's tokens.
//! - A token is handed out only while it has more than the safety margin left, so a caller
//!   never starts a request with a token that expires on the way.
//! - The file holds access tokens, never the client secret. It is created `0600` (its
//!   directory `0700`) and replaced atomically (temporary file in the same directory, then
//!   rename), so a reader never sees half a file. A cache file that others may read is not
//!   trusted and gets replaced by a private one on the next write.
//! - Two processes writing at once may lose one entry (the last rename wins); that only costs
//!   one extra token request.

use std::fs::{self, DirBuilder};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::write_atomically;

/// The version written into the file; a file with another version is ignored and replaced.
const FORMAT_VERSION: u32 = 1;

/// Why the cache could not be read or written. The caller warns and carries on without it:
/// a broken cache must not stop anyone from getting a token.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("token cache {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token cache {path} is not valid (ignored; it will be replaced): {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "token cache {path} has mode {mode:03o}, so others may read its tokens; not using it \
         (the next write replaces it with a private file)"
    )]
    NotPrivate { path: PathBuf, mode: u32 },
}

/// What a cached token was obtained for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    pub token_url: String,
    pub client_id: String,
    /// Sorted, without duplicates: the order of `--resource` options does not matter.
    pub resources: Vec<String>,
    /// Sorted scope tokens joined by one space; `None` when no scope was asked for.
    pub scope: Option<String>,
}

impl CacheKey {
    pub fn new(
        token_url: &str,
        client_id: &str,
        resources: &[String],
        scope: Option<&str>,
    ) -> Self {
        let mut resources = resources.to_vec();
        resources.sort();
        resources.dedup();
        // RFC 6749 section 3.3: the scope is a set of space-delimited tokens; order is noise.
        let mut scopes: Vec<&str> = scope
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        Self {
            token_url: token_url.to_owned(),
            client_id: client_id.to_owned(),
            resources,
            scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
        }
    }
}

/// One cached token response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedToken {
    #[serde(flatten)]
    pub key: CacheKey,
    pub access_token: String,
    pub token_type: String,
    /// Unix seconds after which the token is no longer valid.
    pub expires_at: i64,
    /// Unix seconds when it was requested.
    pub obtained_at: i64,
    /// The scope the server granted, when it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_scope: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    tokens: Vec<CachedToken>,
}

/// The cache file at one path.
#[derive(Debug, Clone)]
pub struct TokenCache {
    path: PathBuf,
}

impl TokenCache {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A cached token for `key` that is still valid for more than `margin_secs` after `now`.
    pub fn lookup(
        &self,
        key: &CacheKey,
        now: i64,
        margin_secs: u64,
    ) -> Result<Option<CachedToken>, CacheError> {
        let margin = i64::try_from(margin_secs).unwrap_or(i64::MAX);
        Ok(self.read()?.and_then(|file| {
            file.tokens
                .into_iter()
                .find(|t| &t.key == key && t.expires_at.saturating_sub(now) > margin)
        }))
    }

    /// Stores `token`, replacing any entry for the same key and dropping expired ones.
    pub fn store(&self, token: CachedToken, now: i64) -> Result<(), CacheError> {
        let mut tokens = self.read_for_update();
        tokens.retain(|t| t.key != token.key && t.expires_at > now);
        tokens.push(token);
        self.write(&CacheFile {
            version: FORMAT_VERSION,
            tokens,
        })
    }

    /// Forgets the entry for `key` (e.g. after the resource server refused its token).
    pub fn remove(&self, key: &CacheKey) -> Result<(), CacheError> {
        let mut tokens = self.read_for_update();
        let before = tokens.len();
        tokens.retain(|t| &t.key != key);
        if tokens.len() == before {
            return Ok(());
        }
        self.write(&CacheFile {
            version: FORMAT_VERSION,
            tokens,
        })
    }

    /// The current file, `None` when there is none (or it is of another format version).
    fn read(&self) -> Result<Option<CacheFile>, CacheError> {
        let io = |source| CacheError::Io {
            path: self.path.clone(),
            source,
        };
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CacheError::NotPrivate {
                path: self.path.clone(),
                mode,
            });
        }
        let bytes = fs::read(&self.path).map_err(io)?;
        let file: CacheFile =
            serde_json::from_slice(&bytes).map_err(|source| CacheError::Corrupt {
                path: self.path.clone(),
                source,
            })?;
        Ok((file.version == FORMAT_VERSION).then_some(file))
    }

    /// The entries to keep when rewriting: whatever is readable, nothing otherwise (an
    /// unreadable or foreign file is replaced rather than blocking the cache forever).
    fn read_for_update(&self) -> Vec<CachedToken> {
        self.read()
            .ok()
            .flatten()
            .map(|f| f.tokens)
            .unwrap_or_default()
    }

    fn write(&self, file: &CacheFile) -> Result<(), CacheError> {
        let io = |source| CacheError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Directories we create are private (XDG base directory spec asks 0700 as well).
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        let mut bytes =
            serde_json::to_vec_pretty(file).map_err(|e| io(std::io::Error::other(e)))?;
        bytes.push(b'\n');

        // Created with its final mode, so the tokens are never readable by others.
        write_atomically(&self.path, &bytes, 0o600).map_err(io)?;
        Ok(())
    }
}

/// The default cache file: `$XDG_CACHE_HOME/steelcut/tokens.json`, else
/// `$HOME/.cache/steelcut/tokens.json`. A relative `XDG_CACHE_HOME` is ignored, as the XDG
/// base directory specification requires.
pub fn default_path(
    xdg_cache_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let base = xdg_cache_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            home.map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".cache"))
        })?;
    Some(base.join("steelcut").join("tokens.json"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn key(scope: Option<&str>) -> CacheKey {
        CacheKey::new(
            "http://a/token",
            "id",
            &["b".to_owned(), "a".to_owned(), "b".to_owned()],
            scope,
        )
    }

    fn token(key: CacheKey, value: &str, expires_at: i64) -> CachedToken {
        CachedToken {
            key,
            access_token: value.into(),
            token_type: "Bearer".into(),
            expires_at,
            obtained_at: 0,
            granted_scope: None,
        }
    }

    #[test]
    fn keys_ignore_the_order_of_resources_and_scopes() {
        assert_eq!(key(Some("y x")), key(Some(" x  y")));
        assert_eq!(key(Some("y x")).resources, ["a", "b"]);
        assert_eq!(key(Some("")).scope, None);
        assert_ne!(key(Some("x")), key(None));
    }

    #[test]
    fn a_token_is_reused_only_outside_the_margin_and_only_for_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path().join("sub/tokens.json"));
        assert!(cache.lookup(&key(None), 0, 60).unwrap().is_none());
        cache.store(token(key(None), "t1", 1000), 0).unwrap();
        cache.store(token(key(Some("x")), "t2", 1000), 0).unwrap();
        assert_eq!(
            cache
                .lookup(&key(None), 939, 60)
                .unwrap()
                .unwrap()
                .access_token,
            "t1"
        );
        assert_eq!(
            cache
                .lookup(&key(Some("x")), 0, 60)
                .unwrap()
                .unwrap()
                .access_token,
            "t2"
        );
        assert!(cache.lookup(&key(None), 940, 60).unwrap().is_none());
        cache.remove(&key(None)).unwrap();
        assert!(cache.lookup(&key(None), 0, 60).unwrap().is_none());

        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(cache.path()), 0o600);
        assert_eq!(mode(&dir.path().join("sub")), 0o700);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }

    #[test]
    fn a_cache_file_others_can_read_is_not_used_and_gets_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path().join("tokens.json"));
        cache.store(token(key(None), "t1", 1000), 0).unwrap();
        fs::set_permissions(cache.path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            cache.lookup(&key(None), 0, 60),
            Err(CacheError::NotPrivate { mode: 0o644, .. })
        ));
        cache.store(token(key(None), "t2", 1000), 0).unwrap();
        assert_eq!(
            cache
                .lookup(&key(None), 0, 60)
                .unwrap()
                .unwrap()
                .access_token,
            "t2"
        );
    }

    #[test]
    fn the_default_path_follows_xdg_and_falls_back_to_home() {
        assert_eq!(
            default_path(Some("/x".into()), Some("/h".into())),
            Some(PathBuf::from("/x/steelcut/tokens.json"))
        );
        assert_eq!(
            default_path(Some("rel".into()), Some("/h".into())),
            Some(PathBuf::from("/h/.cache/steelcut/tokens.json"))
        );
        assert_eq!(default_path(None, None), None);
    }
}
