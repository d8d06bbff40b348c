//! Ed25519 signing keys: files on disk, key ids, the public JWKS, and JWT signing.
//!
//! A key directory holds one PKCS#8 PEM file per key, named `key-<unix-millis>.pem`; the newest
//! key signs, every key is published (so tokens signed before a rotation stay valid until they
//! expire). Private key files must be readable by their owner only: the daemon refuses to start
//! otherwise. The key id is the RFC 7638 JWK thumbprint, so every node derives the same `kid`
//! from the same public key without coordination.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256, Sha512};

use crate::files::read_regular;

/// Largest key file read (an RSA-4096 PKCS#8 PEM is about 3.3 KiB).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// What can go wrong with key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(
        "{path} is readable by group or others (mode {mode:o}); private keys must be owner-only: \
         run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "key directory {dir} holds no signing key and cannot be written ({cause}); \
         create one with `steelcutd keys generate --config FILE` as a user that may write there"
    )]
    NoKeyNotWritable { dir: PathBuf, cause: String },
    #[error(
        "key directory {dir} is open to group or others (mode {mode:o}); it holds private keys \
         and must be owner-only: run `chmod 700 {dir}`"
    )]
    DirPermissions { dir: PathBuf, mode: u32 },
    #[error("key directory {dir} holds no signing key; create one with `steelcutd keys generate`")]
    NoKey { dir: PathBuf },
    #[error("invalid JWKS: {0}")]
    Jwks(String),
    #[error("reading keys failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> KeyError {
    KeyError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key (members in lexicographic order, no spaces).
pub fn thumbprint(key: &VerifyingKey) -> String {
    let x = B64.encode(key.as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

/// The public JWK (RFC 8037) of a key.
pub fn public_jwk(kid: &str, key: &VerifyingKey) -> serde_json::Value {
    serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": B64.encode(key.as_bytes()),
        "kid": kid,
        "alg": "EdDSA",
        "use": "sig",
    })
}

/// One signing key with what signing needs precomputed.
pub struct SigningEntry {
    pub kid: String,
    /// Milliseconds since the epoch when the key was generated.
    pub created_ms: i64,
    pub path: PathBuf,
    /// The key expanded once (RFC 8032 section 5.1.5 steps 1-3), so signing skips that hash.
    expanded: ExpandedSecretKey,
    verifying: VerifyingKey,
    /// `base64url(header)` followed by '.', ready to be prefixed to a payload.
    header_prefix: String,
}

impl std::fmt::Debug for SigningEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningEntry")
            .field("kid", &self.kid)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

impl SigningEntry {
    fn new(key: SigningKey, created_ms: i64, path: PathBuf) -> Self {
        let kid = thumbprint(&key.verifying_key());
        // RFC 9068 section 2.1: access tokens carry `typ: at+jwt`.
        let header = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
        let header_prefix = format!("{}.", B64.encode(header.to_string()));
        let expanded = ExpandedSecretKey::from(&key.to_bytes());
        let verifying = key.verifying_key();
        Self {
            kid,
            created_ms,
            path,
            expanded,
            verifying,
            header_prefix,
        }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.verifying
    }

    /// A compact JWS over `claims` (already JSON), signed with this key.
    pub fn sign_jwt(&self, claims_json: &[u8]) -> String {
        let mut out =
            String::with_capacity(self.header_prefix.len() + claims_json.len() * 4 / 3 + 90);
        out.push_str(&self.header_prefix);
        B64.encode_string(claims_json, &mut out);
        // The expanded key and its public key belong to the same signing key (both derived
        // in `new`), which is what raw_sign requires to be safe.
        let signature = raw_sign::<Sha512>(&self.expanded, out.as_bytes(), &self.verifying);
        out.push('.');
        B64.encode_string(signature.to_bytes(), &mut out);
        out
    }
}

/// The keys of a key directory, newest first.
#[derive(Debug)]
pub struct KeySet {
    pub dir: PathBuf,
    keys: Vec<SigningEntry>,
}

impl KeySet {
    /// Loads every `*.pem` in `dir`, refusing files that others may read.
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        if let Ok(meta) = fs::metadata(dir) {
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() && mode & 0o077 != 0 {
                return Err(KeyError::DirPermissions {
                    dir: dir.to_owned(),
                    mode,
                });
            }
        }
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    dir: dir.to_owned(),
                    keys,
                })
            }
            Err(e) => return Err(file_err(dir, format!("cannot read key directory: {e}"))),
        };
        for entry in entries {
            let entry = entry.map_err(|e| file_err(dir, e))?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                continue;
            }
            let meta = fs::metadata(&path).map_err(|e| file_err(&path, e))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions { path, mode });
            }
            let pem = read_regular(&path, MAX_KEY_FILE_BYTES).map_err(|e| file_err(&path, e))?;
            let pem = String::from_utf8(pem).map_err(|e| file_err(&path, e))?;
            let key = SigningKey::from_pkcs8_pem(&pem)
                .map_err(|e| file_err(&path, format!("not an Ed25519 PKCS#8 private key: {e}")))?;
            let created_ms = created_from_name(&path).unwrap_or_else(|| {
                meta.modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0)
            });
            keys.push(SigningEntry::new(key, created_ms, path));
        }
        keys.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.kid.cmp(&b.kid)));
        keys.dedup_by(|a, b| a.kid == b.kid);
        Ok(Self {
            dir: dir.to_owned(),
            keys,
        })
    }

    /// Loads the directory, generating a first key if it holds none (the `serve` path).
    /// Returns the set and the kid generated, if any.
    pub fn load_or_generate(dir: &Path) -> Result<(Self, Option<String>), KeyError> {
        let set = Self::load(dir)?;
        if !set.keys.is_empty() {
            return Ok((set, None));
        }
        let kid = generate(dir).map_err(|e| KeyError::NoKeyNotWritable {
            dir: dir.to_owned(),
            cause: match e {
                KeyError::File { message, .. } => message,
                other => other.to_string(),
            },
        })?;
        Ok((Self::load(dir)?, Some(kid)))
    }

    /// The key that signs new tokens (the newest).
    pub fn current(&self) -> Option<&SigningEntry> {
        self.keys.first()
    }

    pub fn iter(&self) -> impl Iterator<Item = &SigningEntry> {
        self.keys.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The public JWKS document (RFC 7517 section 5) of every key.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": self.keys.iter().map(|k| public_jwk(&k.kid, &k.verifying_key())).collect::<Vec<_>>()
        })
    }

    /// kid → public key, for verification on a node that also signs.
    pub fn public_keys(&self) -> HashMap<String, VerifyingKey> {
        self.keys
            .iter()
            .map(|k| (k.kid.clone(), k.verifying_key()))
            .collect()
    }
}

fn created_from_name(path: &Path) -> Option<i64> {
    path.file_stem()?
        .to_str()?
        .strip_prefix("key-")?
        .parse()
        .ok()
}

/// Generates a new key in `dir` (created 0700 if missing), written 0600. Returns its kid.
pub fn generate(dir: &Path) -> Result<String, KeyError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| file_err(dir, format!("cannot create key directory: {e}")))?;
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| file_err(dir, format!("cannot encode key: {e}")))?;
    let mut created_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    loop {
        let path = dir.join(format!("key-{created_ms}.pem"));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(pem.as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| file_err(&path, e))?;
                return Ok(thumbprint(&key.verifying_key()));
            }
            // Two keys generated within the same millisecond: take the next name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => created_ms += 1,
            Err(e) => return Err(file_err(&path, e)),
        }
    }
}

/// Parses a JWKS document into kid → key, keeping only Ed25519 signature keys.
pub fn parse_jwks(text: &[u8]) -> Result<HashMap<String, VerifyingKey>, KeyError> {
    #[derive(serde::Deserialize)]
    struct Jwks {
        keys: Vec<serde_json::Value>,
    }
    let jwks: Jwks = serde_json::from_slice(text).map_err(|e| KeyError::Jwks(e.to_string()))?;
    let mut out = HashMap::new();
    for jwk in jwks.keys {
        let field = |n: &str| jwk.get(n).and_then(|v| v.as_str());
        if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
            continue;
        }
        if field("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let x = field("x").ok_or_else(|| KeyError::Jwks("OKP key without x".into()))?;
        let bytes: [u8; 32] = B64
            .decode(x)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError::Jwks(format!("x {x:?} is not a 32-byte base64url value")))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|e| KeyError::Jwks(format!("x {x:?} is not an Ed25519 point: {e}")))?;
        let kid = field("kid")
            .map(str::to_owned)
            .unwrap_or_else(|| thumbprint(&key));
        out.insert(kid, key);
    }
    Ok(out)
}

/// Loads every `*.pem` SubjectPublicKeyInfo in `dir` into kid → key.
pub fn load_public_dir(dir: &Path) -> Result<HashMap<String, VerifyingKey>, KeyError> {
    let mut out = HashMap::new();
    let entries = fs::read_dir(dir).map_err(|e| file_err(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| file_err(dir, e))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pem") {
            continue;
        }
        let pem = read_regular(&path, MAX_KEY_FILE_BYTES).map_err(|e| file_err(&path, e))?;
        let pem = String::from_utf8(pem).map_err(|e| file_err(&path, e))?;
        let key = VerifyingKey::from_public_key_pem(&pem)
            .map_err(|e| file_err(&path, format!("not an Ed25519 public key PEM: {e}")))?;
        out.insert(thumbprint(&key), key);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_owner_only_and_the_newest_signs() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        let keys = dir.join("keys");
        let a = generate(&keys).ok();
        let b = generate(&keys).ok();
        let mode = fs::metadata(&keys)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o700));
        let set = KeySet::load(&keys).ok();
        assert_eq!(set.as_ref().map(|s| s.iter().count()), Some(2));
        assert_eq!(
            set.as_ref()
                .and_then(|s| s.current())
                .map(|k| k.kid.clone()),
            b
        );
        assert_ne!(a, b);
        let jwks = set.map(|s| s.jwks().to_string()).unwrap_or_default();
        assert!(!jwks.contains("\"d\""), "private part leaked: {jwks}");
        let parsed = parse_jwks(jwks.as_bytes()).map(|m| m.len()).ok();
        assert_eq!(parsed, Some(2));
    }
}
