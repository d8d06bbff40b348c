//! Client secrets: generating them, hashing them with argon2id (PHC strings, the only form
//! ever stored), and verifying them on a bounded pool of dedicated threads. Used by the token
//! endpoint and by the admin commands alike.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Version};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::config::Argon2Params;

/// Why a secret could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("invalid argon2id parameters: {0}")]
    Params(#[from] argon2::Error),
    #[error("argon2id hashing failed: {0}")]
    Hash(#[from] argon2::password_hash::Error),
}

/// The hash workers have stopped (the verifier is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the argon2 hash workers have stopped")]
pub struct WorkersGone;

/// The argon2id hasher configured for new secrets.
pub fn argon2(params: Argon2Params) -> Result<Argon2<'static>, argon2::Error> {
    let p = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
}

/// Hashes a secret into a PHC string (`$argon2id$v=19$m=...`).
pub fn hash_secret(secret: &SecretString, params: Argon2Params) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let hash = argon2(params)?.hash_password(secret.expose_secret().as_bytes(), &salt)?;
    Ok(hash.to_string())
}

/// Checks a secret against a PHC hash. The parameters come from the hash itself, so hashes made
/// with other costs (such as the original package's m=65536, t=3, p=4) still verify.
pub fn verify_secret(secret: &SecretString, phc: &str) -> bool {
    verify_with_memory(secret, phc, &mut Vec::new())
}

/// As [`verify_secret`], computing in `memory` (grown as needed and kept by the caller), so a
/// worker that verifies again and again allocates its m KiB once instead of per request.
pub fn verify_with_memory(secret: &SecretString, phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (
        argon2::Params::try_from(&parsed),
        Algorithm::try_from(parsed.algorithm),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let result = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        secret.expose_secret().as_bytes(),
        salt,
        out,
        &mut memory[..blocks],
    );
    result.is_ok() && bool::from(out.ct_eq(expected.as_bytes()))
}

/// A PHC string with the given cost, a random salt and a random output: verifying any secret
/// against it costs exactly what verifying against a real hash of that cost does, and always
/// fails. Built without hashing, so start-up does not pay for it.
pub fn dummy_hash(params: Argon2Params) -> String {
    use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
    let salt: [u8; 16] = rand::random();
    let output: [u8; 32] = rand::random();
    format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.memory_kib,
        params.iterations,
        params.parallelism,
        B64.encode(salt),
        B64.encode(output)
    )
}

/// A fresh client secret: `PRIVATE-` and 256 random bits in URL-safe base64 (43 characters),
/// the shape the original package issued.
pub fn generate_secret() -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(format!(
        "PRIVATE-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A verification job for the hash workers.
struct Job {
    secret: SecretString,
    phc: String,
    reply: tokio::sync::oneshot::Sender<bool>,
}

/// Runs argon2 verifications on a fixed pool of `limit` dedicated threads, so a flood of token
/// requests queues here instead of starving the async workers, and memory stays bounded: each
/// worker owns one buffer of m KiB that it reuses for every verify (the allocator never sees
/// a flood of 19 MiB allocations spread over many threads and arenas). Peak memory is thus
/// `limit` buffers whatever the load.
#[derive(Clone)]
pub struct Verifier {
    jobs: tokio::sync::mpsc::Sender<Job>,
    /// Verified instead of a real hash when the client id is unknown, so that an unknown id
    /// costs the same time as a wrong secret (no id enumeration by timing).
    dummy_hash: Arc<str>,
}

impl Verifier {
    pub fn new(params: Argon2Params, limit: usize) -> Result<Self, std::io::Error> {
        let (jobs, rx) = tokio::sync::mpsc::channel::<Job>(1024);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for i in 0..limit.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        // One worker waits on the queue at a time; the others wait for the lock
                        // (tokio's mutex: no poisoning to recover from).
                        let job = rx.blocking_lock().blocking_recv();
                        // All senders gone: the verifier was dropped, the worker ends.
                        let Some(job) = job else { break };
                        let ok = verify_with_memory(&job.secret, &job.phc, &mut memory);
                        let _ = job.reply.send(ok);
                    }
                })?;
        }
        Ok(Self {
            jobs,
            dummy_hash: dummy_hash(params).into(),
        })
    }

    /// Verifies `secret` against `hash`, or against the dummy hash when `hash` is `None`
    /// (the result is then always `false`).
    pub async fn verify(
        &self,
        secret: SecretString,
        hash: Option<String>,
    ) -> Result<bool, WorkersGone> {
        let known = hash.is_some();
        let phc = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job { secret, phc, reply })
            .await
            .map_err(|_| WorkersGone)?;
        let ok = answer.await.map_err(|_| WorkersGone)?;
        Ok(ok && known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_verification_reuses_memory_and_the_dummy_hash_never_matches() {
        let small = Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let bigger = Argon2Params {
            memory_kib: 2048,
            iterations: 1,
            parallelism: 2,
        };
        let s = generate_secret();
        let mut memory = Vec::new();
        for p in [bigger, small, bigger] {
            let h = hash_secret(&s, p).unwrap_or_default();
            assert!(verify_with_memory(&s, &h, &mut memory));
            assert!(!verify_with_memory(
                &SecretString::from("x"),
                &h,
                &mut memory
            ));
        }
        assert_eq!(memory.len(), 2048, "one buffer, grown to the largest cost");
        let dummy = dummy_hash(small);
        assert!(dummy.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(PasswordHash::new(&dummy).is_ok());
        assert!(!verify_with_memory(&s, &dummy, &mut memory));
    }

    #[test]
    fn hashes_verify_and_generated_secrets_have_the_original_shape() {
        let p = Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let s = generate_secret();
        assert_eq!(s.expose_secret().len(), "PRIVATE-".len() + 43);
        let h = hash_secret(&s, p).unwrap_or_default();
        assert!(h.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(verify_secret(&s, &h));
        assert!(!verify_secret(&SecretString::from("nope"), &h));
    }
}
