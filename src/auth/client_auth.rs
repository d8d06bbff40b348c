//! Client authentication at the token endpoint (RFC 6749 section 2.3.1): reading the
//! credentials from HTTP Basic or the form body, and checking the secret against its argon2id
//! hash on a bounded pool of blocking threads.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Version};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

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
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.expose_secret().as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
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

/// Runs argon2 verifications on the blocking pool, at most `limit` at once, so a flood of token
/// requests queues here instead of exhausting memory (each hash holds `m` KiB) or starving the
/// async workers.
#[derive(Clone)]
pub struct Verifier {
    permits: Arc<Semaphore>,
    /// Verified instead of a real hash when the client id is unknown, so that an unknown id
    /// costs the same time as a wrong secret (no id enumeration by timing).
    dummy_hash: Arc<str>,
}

impl Verifier {
    pub fn new(params: Argon2Params, limit: usize) -> Result<Self, String> {
        let dummy = hash_secret(&generate_secret(), params)?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            dummy_hash: dummy.into(),
        })
    }

    /// Verifies `secret` against `hash`, or against the dummy hash when `hash` is `None`
    /// (the result is then always `false`).
    pub async fn verify(
        &self,
        secret: SecretString,
        hash: Option<String>,
    ) -> Result<bool, TokenError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| TokenError::Internal(format!("hash pool closed: {e}")))?;
        let dummy = self.dummy_hash.clone();
        tokio::task::spawn_blocking(move || match hash {
            Some(h) => verify_secret(&secret, &h),
            None => {
                let _ = verify_secret(&secret, &dummy);
                false
            }
        })
        .await
        .map_err(|e| TokenError::Internal(format!("hash task failed: {e}")))
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
