//! The key directory on disk: one PKCS#8 PEM file per key, named `key-<unix-millis>.pem`
//! (mode 0600, directory 0700: anything more open is refused), and beside a retired key a
//! sidecar `key-<unix-millis>.retired` saying since when it is retired.
//!
//! The sidecar is a small JSON object, `{"kid": ..., "retired_at": RFC 3339, "retired_at_ms":
//! ...}`, written atomically (a reader sees it whole or not at all); its `kid` must be the key
//! file's, so a key file replaced under the same name is not retired by accident. Keeping the
//! retirement beside the key, rather than in a list elsewhere, means copying or deleting a key
//! takes its state along, and the directory alone says everything `keys list` and the daemon
//! need.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::alg::{Alg, RsaBits};
use super::error::{file_err, KeyError};
use super::signer::{generate_der, to_pem, Signer};
use crate::files::{read_regular, write_atomically};

/// Largest key file read (an RSA-4096 PKCS#8 PEM is about 3.3 KiB).
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// One key file with what the rules need.
#[derive(Debug)]
pub struct KeyEntry {
    pub signer: Signer,
    /// Milliseconds since the epoch when the key was generated.
    pub created_ms: i64,
    pub path: PathBuf,
    /// When it stops (or stopped) signing, from its sidecar.
    pub retired_ms: Option<i64>,
}

/// A key just written by [`generate`].
#[derive(Debug, Clone)]
pub struct Generated {
    pub kid: String,
    pub alg: Alg,
    pub path: PathBuf,
    pub created_ms: i64,
}

/// The retirement sidecar of a key file.
#[derive(serde::Serialize, serde::Deserialize)]
struct Retirement {
    kid: String,
    /// For people reading the file; `retired_at_ms` is what counts.
    #[serde(default)]
    retired_at: String,
    retired_at_ms: i64,
}

/// The sidecar path of a key file: same name, `.retired` instead of `.pem`.
pub fn sidecar(key_file: &Path) -> PathBuf {
    key_file.with_extension("retired")
}

fn mode_of(meta: &fs::Metadata) -> u32 {
    meta.permissions().mode() & 0o777
}

/// Refuses a key directory that group or others may read or write.
fn check_dir(dir: &Path) -> Result<(), KeyError> {
    if let Ok(meta) = fs::metadata(dir) {
        let mode = mode_of(&meta);
        if meta.is_dir() && mode & 0o077 != 0 {
            return Err(KeyError::DirPermissions {
                dir: dir.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}

/// Reads every `*.pem` in `dir`, refusing files that others may read. A missing directory
/// holds no keys.
pub fn read_keys(dir: &Path) -> Result<Vec<KeyEntry>, KeyError> {
    check_dir(dir)?;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_err(dir, format!("cannot read key directory: {e}"))),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| file_err(dir, e))?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("pem") {
            keys.push(read_key(path)?);
        }
    }
    Ok(keys)
}

fn read_key(path: PathBuf) -> Result<KeyEntry, KeyError> {
    let meta = fs::metadata(&path).map_err(|e| file_err(&path, e))?;
    let mode = mode_of(&meta);
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions { path, mode });
    }
    let pem = read_regular(&path, MAX_KEY_FILE_BYTES).map_err(|e| file_err(&path, e))?;
    let signer = Signer::from_pem(&pem).map_err(|e| file_err(&path, e))?;
    let created_ms = created_from_name(&path).unwrap_or_else(|| {
        meta.modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64)
    });
    let retired_ms = read_retirement(&path, signer.kid())?;
    Ok(KeyEntry {
        signer,
        created_ms,
        path,
        retired_ms,
    })
}

fn read_retirement(key_file: &Path, kid: &str) -> Result<Option<i64>, KeyError> {
    let path = sidecar(key_file);
    let bytes = match read_regular(&path, MAX_KEY_FILE_BYTES) {
        Ok(b) => b,
        Err(crate::files::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => return Err(file_err(&path, e)),
    };
    let r: Retirement = serde_json::from_slice(&bytes)
        .map_err(|e| file_err(&path, format!("not a retirement record: {e}")))?;
    if r.kid != kid {
        return Err(file_err(
            &path,
            format!(
                "retires key {} but {} holds key {kid}; remove the stale file",
                r.kid,
                key_file.display()
            ),
        ));
    }
    Ok(Some(r.retired_at_ms))
}

fn created_from_name(path: &Path) -> Option<i64> {
    path.file_stem()?
        .to_str()?
        .strip_prefix("key-")?
        .parse()
        .ok()
}

/// Writes the retirement of the key in `key_file` (kid `kid`) from `at_ms` on.
pub fn write_retirement(key_file: &Path, kid: &str, at_ms: i64) -> Result<(), KeyError> {
    let path = sidecar(key_file);
    let record = Retirement {
        kid: kid.to_owned(),
        retired_at: crate::time::rfc3339_millis(at_ms),
        retired_at_ms: at_ms,
    };
    let text = serde_json::to_string(&record).map_err(|e| file_err(&path, e))? + "\n";
    write_atomically(&path, text.as_bytes(), 0o600).map_err(|source| KeyError::Io { path, source })
}

/// Generates a new `alg` key in `dir` (created 0700 if missing), written 0600 as PKCS#8 v1.
pub fn generate(dir: &Path, alg: Alg, rsa_bits: RsaBits) -> Result<Generated, KeyError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| file_err(dir, format!("cannot create key directory: {e}")))?;
    }
    let der = generate_der(alg, rsa_bits).map_err(|e| file_err(dir, e))?;
    let pem = to_pem(&der).map_err(|e| file_err(dir, e))?;
    let kid = Signer::from_pkcs8_der(&der)
        .map_err(|e| file_err(dir, e))?
        .kid()
        .to_owned();
    let mut created_ms = crate::time::now_millis();
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
                return Ok(Generated {
                    kid,
                    alg,
                    path,
                    created_ms,
                });
            }
            // Two keys generated within the same millisecond: take the next name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => created_ms += 1,
            Err(e) => return Err(file_err(&path, e)),
        }
    }
}

/// Reads every `*.pem` SubjectPublicKeyInfo in `dir` (Ed25519, P-256 or RSA), kid → key.
pub fn load_public_dir(dir: &Path) -> Result<Vec<(String, super::jwk::PublicJwk)>, KeyError> {
    use rustls_pki_types::pem::PemObject as _;
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| file_err(dir, e))? {
        let path = entry.map_err(|e| file_err(dir, e))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pem") {
            continue;
        }
        let pem = read_regular(&path, MAX_KEY_FILE_BYTES).map_err(|e| file_err(&path, e))?;
        let der = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(&pem)
            .map_err(|e| file_err(&path, format!("no PUBLIC KEY PEM: {e}")))?;
        let key = super::jwk::from_spki_der(&der).map_err(|e| file_err(&path, e))?;
        out.push((key.thumbprint(), key));
    }
    Ok(out)
}
