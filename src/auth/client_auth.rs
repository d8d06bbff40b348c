//! Client authentication at the token endpoint (RFC 6749 section 2.3.1): reading the
//! credentials from HTTP Basic or the form body. Checking the secret is [`super::password`]'s.

use std::borrow::Cow;

use base64::Engine;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::error::TokenError;
use crate::http::request::{Authorization, AuthorizationError, Form};

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
/// (Most ids and secrets have nothing to decode, and are returned as they are.)
fn form_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains(['+', '%']) {
        return Some(Cow::Borrowed(s));
    }
    let plus_decoded = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .ok()
        .map(|c| Cow::Owned(c.into_owned()))
}

/// Extracts the client's credentials, enforcing one authentication method per request
/// (RFC 6749 section 2.3).
pub fn extract(
    authorization: Result<Option<Authorization<'_>>, AuthorizationError>,
    form: &Form<'_>,
) -> Result<Credentials, TokenError> {
    let repeated =
        |name: &str| TokenError::InvalidRequest(format!("parameter `{name}` is repeated"));
    let body_id = form.single("client_id").map_err(repeated)?;
    let body_secret = form.single("client_secret").map_err(repeated)?;
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
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(header.credentials.as_bytes())
                .map_err(|_| malformed())?;
            // The decoded header holds the secret: wiped once the parts are taken out.
            let decoded = Zeroizing::new(String::from_utf8(decoded).map_err(|_| malformed())?);
            let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
            let id = form_decode(id).ok_or_else(malformed)?.into_owned();
            let secret =
                SecretString::from(form_decode(secret).ok_or_else(malformed)?.into_owned());
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

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn form(body: &str) -> Form<'_> {
        Form::parse(body.as_bytes())
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        // RFC 6749 section 2.3.1: "a b" is sent as "a+b", ':' inside as %3A.
        let value = base64::engine::general_purpose::STANDARD.encode("my+id:s%3Ac+r");
        let header = Authorization {
            scheme: "Basic",
            credentials: &value,
        };
        let c = extract(Ok(Some(header)), &form("")).ok();
        assert_eq!(c.as_ref().map(|c| c.client_id.as_str()), Some("my id"));
        assert_eq!(
            c.map(|c| c.secret.expose_secret().to_owned()),
            Some("s:c r".into())
        );
    }

    #[test]
    fn two_methods_at_once_are_an_invalid_request() {
        let value = base64::engine::general_purpose::STANDARD.encode("a:b");
        let header = Authorization {
            scheme: "basic",
            credentials: &value,
        };
        let e = extract(Ok(Some(header)), &form("client_secret=x")).err();
        assert_eq!(e.map(|e| e.code()), Some("invalid_request"));
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
            match extract(authorization(&headers), &form) {
                Ok(c) => prop_assert!(!c.client_id.is_empty() || !c.basic),
                Err(e) => prop_assert!(matches!(e.code(), "invalid_request" | "invalid_client")),
            }
        }

        #[test]
        fn basic_credentials_round_trip(id in "[a-f0-9]{32}", secret in "[ -~]{1,60}") {
            let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let value = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", encode(&id), encode(&secret)));
            let header = Authorization { scheme: "Basic", credentials: &value };
            let c = extract(Ok(Some(header)), &Form::parse(b""));
            prop_assert_eq!(c.as_ref().map(|c| c.client_id.clone()).ok(), Some(id));
            prop_assert_eq!(
                c.map(|c| secrecy::ExposeSecret::expose_secret(&c.secret).to_owned()).ok(),
                Some(secret)
            );
        }
    }
}
