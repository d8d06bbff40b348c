//! Client authentication at the token endpoint (RFC 6749 section 2.3.1): reading the
//! credentials from HTTP Basic or the form body, and checking the secret against its argon2id
//! hash on a bounded pool of blocking threads.

use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Version};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::error::TokenError;
use crate::config::Argon2Params;
use crate::http::request::Form;

/// Credentials presented by a client. The secret stays wrapped until the verify call.
pub struct Credentials {
    pub client_id: String,
    pub secret: SecretString,
    /// Whether they came in an `Authorization: Basic` header.
    pub basic: bool,
}

fn invalid_client(description: &str, basic: bool) -> TokenError {
    TokenError::InvalidClient {
        description: description.to_owned(),
        basic,
    }
}

/// Undoes the `application/x-www-form-urlencoded` encoding that section 2.3.1 applies to the
/// id and secret before they are joined for HTTP Basic.
fn form_decode(s: &str) -> Option<String> {
    let plus_decoded = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Extracts the client's credentials, enforcing one authentication method per request
/// (RFC 6749 section 2.3).
pub fn extract(
    authorization: Result<Option<(String, String)>, ()>,
    form: &Form,
) -> Result<Credentials, TokenError> {
    let repeated =
        |name: &str| TokenError::InvalidRequest(format!("parameter `{name}` is repeated"));
    let body_id = form.single("client_id").map_err(repeated)?;
    let body_secret = form.single("client_secret").map_err(repeated)?;
    match authorization {
        Err(()) => Err(TokenError::InvalidRequest(
            "malformed Authorization header".into(),
        )),
        Ok(Some((scheme, value))) => {
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(invalid_client(
                    "unsupported authentication scheme: use HTTP Basic or client_secret_post",
                    true,
                ));
            }
            let malformed =
                || TokenError::InvalidRequest("malformed HTTP Basic credentials".into());
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.as_bytes())
                .map_err(|_| malformed())?;
            let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
            let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
            let id = form_decode(id).ok_or_else(malformed)?;
            let secret = SecretString::from(form_decode(secret).ok_or_else(malformed)?);
            if body_secret.is_some() {
                return Err(TokenError::InvalidRequest(
                    "use one client authentication method: HTTP Basic or client_secret in the body, not both".into(),
                ));
            }
            if body_id.is_some_and(|b| b != id) {
                return Err(TokenError::InvalidRequest(
                    "client_id in the body differs from the HTTP Basic user".into(),
                ));
            }
            if id.is_empty() {
                return Err(invalid_client("client authentication failed", true));
            }
            Ok(Credentials {
                client_id: id,
                secret,
                basic: true,
            })
        }
        Ok(None) => match (body_id, body_secret) {
            (Some(id), Some(secret)) => Ok(Credentials {
                client_id: id.to_owned(),
                secret: SecretString::from(secret.to_owned()),
                basic: false,
            }),
            (Some(_), None) => Err(invalid_client(
                "client_secret is required: this server has no public clients",
                false,
            )),
            _ => Err(invalid_client(
                "client authentication required (HTTP Basic or client_id and client_secret)",
                true,
            )),
        },
    }
}

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
pub fn hash_secret(secret: &SecretString, params: Argon2Params) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2(params)
        .map_err(|e| e.to_string())?
        .hash_password(secret.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
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
    pub fn new(params: Argon2Params, limit: usize) -> Result<Self, String> {
        let (jobs, rx) = tokio::sync::mpsc::channel::<Job>(1024);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..limit.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        // One worker waits on the queue at a time; the others wait for the lock.
                        let job = match rx.lock() {
                            Ok(mut rx) => rx.blocking_recv(),
                            Err(_) => None,
                        };
                        // All senders gone: the verifier was dropped, the worker ends.
                        let Some(job) = job else { break };
                        let ok = verify_with_memory(&job.secret, &job.phc, &mut memory);
                        let _ = job.reply.send(ok);
                    }
                })
                .map_err(|e| format!("cannot start hash worker: {e}"))?;
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
    ) -> Result<bool, TokenError> {
        let known = hash.is_some();
        let phc = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job { secret, phc, reply })
            .await
            .map_err(|_| TokenError::Internal("hash workers stopped".into()))?;
        let ok = answer
            .await
            .map_err(|_| TokenError::Internal("hash worker failed".into()))?;
        Ok(ok && known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Form {
        Form::parse(body.as_bytes())
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        // RFC 6749 section 2.3.1: "a b" is sent as "a+b", ':' inside as %3A.
        let value = base64::engine::general_purpose::STANDARD.encode("my+id:s%3Ac+r");
        let c = extract(Ok(Some(("Basic".into(), value))), &form("")).ok();
        assert_eq!(c.as_ref().map(|c| c.client_id.as_str()), Some("my id"));
        assert_eq!(
            c.map(|c| c.secret.expose_secret().to_owned()),
            Some("s:c r".into())
        );
    }

    #[test]
    fn two_methods_at_once_are_an_invalid_request() {
        let value = base64::engine::general_purpose::STANDARD.encode("a:b");
        let e = extract(Ok(Some(("basic".into(), value))), &form("client_secret=x")).err();
        assert_eq!(e.map(|e| e.code()), Some("invalid_request"));
    }

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
