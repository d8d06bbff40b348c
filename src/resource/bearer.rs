//! Bearer token validation: reading `Authorization: Bearer` (RFC 6750 section 2.1) and checking
//! a JWT access token (RFC 9068 section 4) for one route.
//!
//! Checks, in order: the header is one well-formed Bearer credential; the JOSE header names
//! one of the algorithms steelcut verifies (EdDSA, ES256, RS256: never `none` or HMAC,
//! whatever else it says), `typ: at+jwt`, no `crit`, and a known `kid`; the header's `alg` is
//! the algorithm of that key (a key verifies tokens of its own algorithm only, so an RSA key
//! never checks an ES256 or HS256 token); then the signature, with that algorithm's
//! validation, and the presence of `exp`, `iss` and `aud`; then `exp`/`nbf` within the leeway,
//! `iss`, `aud` and, for routes that require one, the scope.
//!
//! The steps up to the signature are skipped for a token found in the [`TokenCache`]; the
//! claim checks after it run on every request, cached or not ([`check_claims`]).

use std::collections::HashSet;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::{header, HeaderMap};

use crate::http::request::{authorization, AuthorizationError};
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;

use super::cache::{LastToken, TokenCache, TokenHash};
use super::catalog::Route;
use super::claims::{
    check_claims, check_time_and_issuer, validation_for, RawClaims, VerifiedClaims,
};
use super::error::{BearerError, InvalidToken};
use super::keys::KeyStore;
use crate::keys::Alg;

/// The JOSE header fields we check ourselves (RFC 7515 section 4.1).
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// RFC 7235 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(s: &str) -> bool {
    /// Bytes allowed in token68 before the padding (RFC 7235 section 2.1), as a table: this
    /// runs over every byte of every token on every request.
    const TOKEN68: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            t[b] = c.is_ascii_alphanumeric()
                || c == b'-'
                || c == b'.'
                || c == b'_'
                || c == b'~'
                || c == b'+'
                || c == b'/';
            b += 1;
        }
        t
    };
    let body = s.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| TOKEN68[b as usize])
}

/// The bearer token of a request (RFC 6750 section 2.1), checked to be token68.
#[cfg(test)]
fn credentials(headers: &HeaderMap) -> Result<&str, BearerError> {
    let token = presented(headers)?;
    check_token68(token)?;
    Ok(token)
}

/// The token of the request's one `Authorization: Bearer` header, as sent: not yet checked
/// to be token68 ([`check_token68`]).
fn presented(headers: &HeaderMap) -> Result<&str, BearerError> {
    let header = match authorization(headers) {
        Ok(Some(h)) => h,
        Ok(None) => return Err(BearerError::Missing),
        Err(AuthorizationError::Repeated) => {
            return Err(BearerError::Malformed("send one Authorization header"))
        }
        Err(AuthorizationError::NotAscii) => {
            return Err(BearerError::Malformed(
                "the Authorization header is not ASCII",
            ))
        }
    };
    // Another scheme means the client did not send bearer credentials: no error code (RFC
    // 6750 section 3.1).
    if !header.is("bearer") {
        return Err(BearerError::Missing);
    }
    let token = header.credentials;
    if token.is_empty() {
        return Err(BearerError::Malformed("the Bearer scheme needs a token"));
    }
    Ok(token)
}

fn check_token68(token: &str) -> Result<(), BearerError> {
    if is_token68(token) {
        return Ok(());
    }
    Err(BearerError::Malformed(if token.contains([' ', '\t']) {
        "send exactly one bearer token"
    } else {
        "the bearer token has characters outside token68"
    }))
}

/// The header's `alg` and `kid`, after the checks that need no key.
fn check_header(token: &str) -> Result<(Alg, String), InvalidToken> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(InvalidToken::NotJwt);
    };
    let header: JoseHeader = B64
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(InvalidToken::NotJwt)?;
    // Only the algorithms of our keys: `none` and HMAC (keyed with our public key) are the
    // classic forgeries.
    let alg = Alg::parse(&header.alg).ok_or(InvalidToken::Algorithm)?;
    // RFC 9068 section 4: "at+jwt" or "application/at+jwt"; media types are
    // case-insensitive (RFC 7515 section 4.1.9).
    let typ = header.typ.unwrap_or_default().to_ascii_lowercase();
    if typ != "at+jwt" && typ != "application/at+jwt" {
        return Err(InvalidToken::Type);
    }
    // RFC 7515 section 4.1.11: we understand no extension, so any `crit` is refused.
    if header.crit.is_some() {
        return Err(InvalidToken::Critical);
    }
    Ok((alg, header.kid.ok_or(InvalidToken::NoKeyId)?))
}

fn from_jwt_error(e: &jsonwebtoken::errors::Error) -> InvalidToken {
    match e.kind() {
        ErrorKind::InvalidSignature => InvalidToken::Signature,
        ErrorKind::ExpiredSignature => InvalidToken::Expired,
        ErrorKind::ImmatureSignature => InvalidToken::NotYetValid,
        ErrorKind::InvalidIssuer => InvalidToken::Issuer,
        ErrorKind::InvalidAudience => InvalidToken::Audience,
        // A claim the library checks that is absent or of the wrong type.
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
            InvalidToken::MissingClaim
        }
        // InvalidKeyFormat: a key of another type than the algorithm's (the binding of alg to
        // key below makes it unreachable, but it means the same thing).
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::InvalidKeyFormat => InvalidToken::Algorithm,
        _ => InvalidToken::NotJwt,
    }
}

/// What the token caches alone say of the request's bearer token for `route`, without any
/// signature work: its claims, with the route's checks passed, when the token is the one the
/// connection presented last (`last`) or is in the shared cache; `None` when the token must be
/// verified ([`authorize`]); or the refusal.
pub fn authorize_cached(
    keys: &KeyStore,
    cache: &TokenCache,
    last: Option<&LastToken>,
    route: &Route,
    headers: &HeaderMap,
) -> Result<Option<Arc<VerifiedClaims>>, BearerError> {
    let token = presented(headers)?;
    if !cache.enabled() {
        return Ok(None);
    }
    // One read of the clock for the key set and the token's times.
    let now_ms = crate::time::now_millis();
    let now = u64::try_from(now_ms.div_euclid(1000)).unwrap_or(0);
    let version = keys.version_at(now_ms);
    // A cached token is byte for byte one that passed every check up to its signature (the key
    // is its SHA-256), token68 included: only the checks of the route and the clock run again.
    let claims = match last.and_then(|l| l.get(token, version, now)) {
        Some(claims) => {
            cache.count_hit();
            claims
        }
        None => {
            let hash = TokenCache::hash(token);
            let Some((claims, until)) = cache.get_until(&hash, version, now) else {
                return Ok(None);
            };
            if let Some(last) = last {
                last.remember(token, &claims, version, until);
            }
            claims
        }
    };
    check_claims(&claims, &route.policy, now)?;
    Ok(Some(claims))
}

/// Checks the request's bearer token for `route`; returns its claims.
pub async fn authorize(
    keys: &KeyStore,
    cache: &TokenCache,
    route: &Route,
    headers: &HeaderMap,
) -> Result<Arc<VerifiedClaims>, BearerError> {
    if let Some(claims) = authorize_cached(keys, cache, None, route, headers)? {
        return Ok(claims);
    }
    let token = presented(headers)?;
    check_token68(token)?;
    let now = jsonwebtoken::get_current_timestamp();
    // The key set version is read before the key is looked up: if the keys change in between,
    // the token is stored under the older version, which the cache no longer serves.
    let cached = cache
        .enabled()
        .then(|| (TokenCache::hash(token), keys.version()));
    // Boxed: the key lookup may fetch a JWKS, a large future that a cached token, the common
    // case, should not carry.
    let claims = Box::pin(verify(keys, cache, route, token, now, cached))
        .await
        .map_err(BearerError::Invalid)?;
    check_claims(&claims, &route.policy, now)?;
    Ok(claims)
}

/// The claims of a token not in the cache, once its header and signature check out; stored
/// under `cached` (its hash and the key set version) when it is worth remembering.
async fn verify(
    keys: &KeyStore,
    cache: &TokenCache,
    route: &Route,
    token: &str,
    now: u64,
    cached: Option<(TokenHash, u64)>,
) -> Result<Arc<VerifiedClaims>, InvalidToken> {
    let (alg, kid) = check_header(token)?;
    let key = keys.key(&kid).await.ok_or(InvalidToken::UnknownKey)?;
    // The key decides the algorithm, never the token.
    if key.alg != alg {
        return Err(InvalidToken::Algorithm);
    }
    let raw = jsonwebtoken::decode::<RawClaims>(token, &key.key, validation_for(key.alg))
        .map_err(|e| from_jwt_error(&e))?
        .claims;
    let claims = Arc::new(VerifiedClaims::from_raw(kid, raw)?);
    // Only tokens that are current and from our issuer are worth remembering; the error for
    // the others comes from the same check in `check_claims`.
    if let Some((hash, version)) = cached {
        if check_time_and_issuer(&claims, &route.policy, now).is_ok() {
            let until = claims.exp.saturating_add(route.policy.leeway);
            cache.insert(hash, claims.clone(), version, until, now);
        }
    }
    Ok(claims)
}

/// Whether `If-None-Match` matches `etag` (RFC 9110 section 13.1.2: weak comparison, `*`
/// matches any current representation, several values may be listed).
pub fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    let wanted: HashSet<&str> = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .map(|t| t.strip_prefix("W/").unwrap_or(t))
        .collect();
    wanted.contains("*") || wanted.contains(etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::AUTHORIZATION,
                http::HeaderValue::from_str(v).unwrap_or(http::HeaderValue::from_static("")),
            );
        }
        h
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_must_be_token68() {
        assert_eq!(
            credentials(&headers(&["bearer abc.def-_~+/=="])),
            Ok("abc.def-_~+/==")
        );
        assert_eq!(credentials(&headers(&["BEARER x"])), Ok("x"));
        assert_eq!(credentials(&headers(&[])), Err(BearerError::Missing));
        assert_eq!(
            credentials(&headers(&["Basic eDp5"])),
            Err(BearerError::Missing)
        );
        assert!(matches!(
            credentials(&headers(&["Bearer"])),
            Err(BearerError::Malformed(_))
        ));
        assert!(matches!(
            credentials(&headers(&["Bearer a b"])),
            Err(BearerError::Malformed(_))
        ));
        assert!(matches!(
            credentials(&headers(&["Bearer a,b"])),
            Err(BearerError::Malformed(_))
        ));
        assert!(matches!(
            credentials(&headers(&["Bearer =a"])),
            Err(BearerError::Malformed(_))
        ));
        assert!(matches!(
            credentials(&headers(&["Bearer a", "Bearer b"])),
            Err(BearerError::Malformed(_))
        ));
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            http::HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(none_match(&h, "\"b\""));
        assert!(none_match(&h, "\"a\""));
        assert!(!none_match(&h, "\"c\""));
        h.insert(header::IF_NONE_MATCH, http::HeaderValue::from_static("*"));
        assert!(none_match(&h, "\"c\""));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_authorization_header_gives_a_token68_token_or_a_typed_refusal(
            value in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_bytes(&value) {
                headers.insert(header::AUTHORIZATION, v);
            }
            if let Ok(token) = credentials(&headers) {
                prop_assert!(is_token68(token));
            }
        }

        #[test]
        fn any_token_text_is_a_kid_or_a_typed_refusal(token in "[A-Za-z0-9_.=-]{0,300}") {
            let _ = check_header(&token);
        }

        #[test]
        fn any_json_header_is_judged_without_panicking(header in proptest::collection::vec(any::<u8>(), 0..300)) {
            let token = format!("{}.e30.c2ln", B64.encode(&header));
            let _ = check_header(&token);
        }
    }
}
