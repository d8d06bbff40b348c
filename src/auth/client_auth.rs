//! Client authentication at the token endpoint (RFC 6749 section 2.3.1): reading the
//! credentials from HTTP Basic or the form body. Checking the secret is [`super::password`]'s.
//!
//! Credentials borrow the request wherever they can: a client seen before is answered from the
//! credential cache, which needs only a digest of them, so the common request copies neither
//! the id nor the secret. Copies are made for the slow path (the database and argon2).

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use zeroize::{Zeroize, Zeroizing};

use super::error::TokenError;
use crate::http::request::{Authorization, AuthorizationError, Form};

/// Credentials presented by a client, borrowed from the request or from the [`BasicScratch`]
/// its `Authorization: Basic` header was decoded into.
pub struct Credentials<'a> {
    pub client_id: Cow<'a, str>,
    pub secret: PresentedSecret<'a>,
    /// Whether they came in an `Authorization: Basic` header.
    pub basic: bool,
}

/// The secret a client presented. Printed as `[redacted]`; a decoded copy is wiped when
/// dropped. [`ExposeSecret`] gives it to the cache's digest; [`Self::to_secret`] to the verify.
pub struct PresentedSecret<'a>(Cow<'a, str>);

impl PresentedSecret<'_> {
    /// An owned copy for the hashing pool.
    pub fn to_secret(&self) -> SecretString {
        SecretString::from(self.0.as_ref())
    }
}

impl ExposeSecret<str> for PresentedSecret<'_> {
    fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PresentedSecret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for PresentedSecret<'_> {
    fn drop(&mut self) {
        if let Cow::Owned(decoded) = &mut self.0 {
            decoded.zeroize();
        }
    }
}

/// Room for a decoded `Authorization: Basic` value, wiped when dropped: the ids and secrets
/// this server issues (and most others) fit without an allocation.
pub struct BasicScratch {
    stack: [u8; 256],
    /// How much of `stack` holds a decoded value.
    used: usize,
    /// A longer value's room.
    heap: Zeroizing<Vec<u8>>,
}

impl Default for BasicScratch {
    fn default() -> Self {
        Self {
            stack: [0; 256],
            used: 0,
            heap: Zeroizing::new(Vec::new()),
        }
    }
}

impl Drop for BasicScratch {
    fn drop(&mut self) {
        // Only what was written: wiping the whole array costs more than the rest of this.
        self.stack[..self.used].zeroize();
    }
}

impl BasicScratch {
    /// Decodes standard base64 into this scratch, as UTF-8.
    fn decode(&mut self, encoded: &str) -> Option<&str> {
        let engine = &base64::engine::general_purpose::STANDARD;
        // A decode that fails part-way may have written some of the secret: until it succeeds,
        // the whole array counts as written, and is wiped.
        self.used = self.stack.len();
        let bytes = match engine.decode_slice(encoded, &mut self.stack) {
            Ok(n) => {
                self.used = n;
                &self.stack[..n]
            }
            Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
                *self.heap = engine.decode(encoded).ok()?;
                &self.heap[..]
            }
            Err(base64::DecodeSliceError::DecodeError(_)) => return None,
        };
        std::str::from_utf8(bytes).ok()
    }
}

fn invalid_client(description: &str, basic: bool) -> TokenError {
    TokenError::InvalidClient {
        description: description.to_owned(),
        basic,
    }
}

/// Undoes the `application/x-www-form-urlencoded` encoding that section 2.3.1 applies to the
/// id and secret before they are joined for HTTP Basic.
/// (Most ids and secrets have nothing to decode, and are returned as they are.)
fn form_decode(s: &str) -> Option<Cow<'_, str>> {
    if memchr::memchr2(b'+', b'%', s.as_bytes()).is_none() {
        return Some(Cow::Borrowed(s));
    }
    let plus_decoded = Zeroizing::new(s.replace('+', " "));
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .ok()
        .map(|c| Cow::Owned(c.into_owned()))
}

/// Extracts the client's credentials, enforcing one authentication method per request
/// (RFC 6749 section 2.3). An `Authorization: Basic` value is decoded into `scratch`.
pub fn extract<'a>(
    authorization: Result<Option<Authorization<'a>>, AuthorizationError>,
    form: &'a Form<'_>,
    scratch: &'a mut BasicScratch,
) -> Result<Credentials<'a>, TokenError> {
    let body_id = form.single("client_id").map_err(TokenError::repeated)?;
    let body_secret = form.single("client_secret").map_err(TokenError::repeated)?;
    match authorization {
        Err(_) => Err(TokenError::InvalidRequest(
            "malformed Authorization header".into(),
        )),
        Ok(Some(header)) => {
            if !header.is("basic") {
                return Err(invalid_client(
                    "unsupported authentication scheme: use HTTP Basic or client_secret_post",
                    true,
                ));
            }
            let malformed =
                || TokenError::InvalidRequest("malformed HTTP Basic credentials".into());
            let decoded = scratch.decode(header.credentials).ok_or_else(malformed)?;
            let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
            let id = form_decode(id).ok_or_else(malformed)?;
            let secret = PresentedSecret(form_decode(secret).ok_or_else(malformed)?);
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
                client_id: Cow::Borrowed(id),
                secret: PresentedSecret(Cow::Borrowed(secret)),
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

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn form(body: &str) -> Form<'_> {
        Form::parse(body.as_bytes())
    }

    /// Credentials sent as `Authorization: Basic base64(user_pass)` with an empty body: the
    /// id, the secret and how the secret prints.
    fn basic_only(user_pass: &str) -> Option<(String, String, String)> {
        let value = base64::engine::general_purpose::STANDARD.encode(user_pass);
        let header = Authorization {
            scheme: "Basic",
            credentials: &value,
        };
        let (empty, mut scratch) = (form(""), BasicScratch::default());
        let c = extract(Ok(Some(header)), &empty, &mut scratch).ok()?;
        let printed = format!("{:?}", c.secret);
        Some((
            c.client_id.to_string(),
            c.secret.expose_secret().to_owned(),
            printed,
        ))
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        // RFC 6749 section 2.3.1: "a b" is sent as "a+b", ':' inside as %3A.
        let c = basic_only("my+id:s%3Ac+r");
        assert_eq!(
            c.map(|(id, secret, _)| (id, secret)),
            Some(("my id".into(), "s:c r".into()))
        );
    }

    #[test]
    fn two_methods_at_once_are_an_invalid_request() {
        let value = base64::engine::general_purpose::STANDARD.encode("a:b");
        let header = Authorization {
            scheme: "basic",
            credentials: &value,
        };
        let e = extract(
            Ok(Some(header)),
            &form("client_secret=x"),
            &mut BasicScratch::default(),
        )
        .err();
        assert_eq!(e.map(|e| e.code()), Some("invalid_request"));
    }

    #[test]
    fn basic_credentials_longer_than_the_scratch_are_decoded_too() {
        let (id, secret) = ("i".repeat(200), "s".repeat(300));
        let c = basic_only(&format!("{id}:{secret}"));
        assert_eq!(c.map(|(i, s, _)| (i, s)), Some((id, secret)));
    }

    #[test]
    fn the_secret_prints_redacted() {
        let c = basic_only("id:hunter2");
        assert_eq!(
            c.map(|(_, _, printed)| printed).as_deref(),
            Some("[redacted]")
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::http::request::authorization;

    proptest! {
        #[test]
        fn any_basic_header_and_body_give_credentials_or_a_typed_error(
            header in proptest::collection::vec(any::<u8>(), 0..300),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut headers = http::HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_bytes(&header) {
                headers.insert(http::header::AUTHORIZATION, v);
            }
            let form = Form::parse(&body);
            let mut scratch = BasicScratch::default();
            let result = extract(authorization(&headers), &form, &mut scratch);
            match result {
                Ok(c) => prop_assert!(!c.client_id.is_empty() || !c.basic),
                Err(e) => prop_assert!(matches!(e.code(), "invalid_request" | "invalid_client")),
            };
        }

        #[test]
        fn basic_credentials_round_trip(id in "[a-f0-9]{32}", secret in "[ -~]{1,60}") {
            let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let value = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", encode(&id), encode(&secret)));
            let header = Authorization { scheme: "Basic", credentials: &value };
            let (empty, mut scratch) = (Form::parse(b""), BasicScratch::default());
            let c = extract(Ok(Some(header)), &empty, &mut scratch);
            prop_assert_eq!(c.as_ref().map(|c| c.client_id.to_string()).ok(), Some(id));
            prop_assert_eq!(
                c.map(|c| secrecy::ExposeSecret::expose_secret(&c.secret).to_owned()).ok(),
                Some(secret)
            );
        }
    }
}
