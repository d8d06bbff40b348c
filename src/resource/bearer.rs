//! Bearer token validation: reading `Authorization: Bearer` (RFC 6750 section 2.1) and checking
//! a JWT access token (RFC 9068 section 4) for one route.
//!
//! Checks, in order: the header is one well-formed Bearer credential; the JOSE header says
//! `alg: EdDSA` (whatever else it says, nothing else is accepted), `typ: at+jwt`, no `crit`, and
//! a known `kid`; then the signature and the presence of `exp`, `iss` and `aud`; then
//! `exp`/`nbf` within the leeway, `iss`, `aud` and, for routes that require one, the scope.
//!
//! The steps up to the signature are skipped for a token found in the [`TokenCache`]; the
//! claim checks after it run on every request, cached or not ([`check_claims`]).

use std::collections::HashSet;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::{header, HeaderMap};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::cache::TokenCache;
use super::catalog::Route;
use super::error::{BearerError, InvalidToken};
use super::keys::KeyStore;

/// The claims as they appear in a token whose signature checked out. Types are loose where
/// the checks decide (a malformed value is refused by them, not by the parser).
#[derive(Debug, Deserialize)]
struct RawClaims {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: Option<serde_json::Value>,
    #[serde(default)]
    iss: Option<serde_json::Value>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<serde_json::Value>,
    #[serde(default)]
    nbf: Option<serde_json::Value>,
}

/// What a verified token says, as the checks of every request need it. Kept in the token
/// cache: nothing here has been judged against a route or a clock.
#[derive(Debug)]
pub struct VerifiedClaims {
    /// The key that verified the signature.
    pub kid: String,
    /// `iss`, one or several (RFC 7519 section 4.1.1).
    pub iss: Vec<String>,
    /// `aud`, one or several (RFC 7519 section 4.1.3).
    pub aud: Vec<String>,
    pub exp: u64,
    pub nbf: Option<u64>,
    /// RFC 9068 section 2.2.3: a space-separated string; anything else grants nothing.
    pub scope: Vec<String>,
    pub client_id: Option<String>,
    pub sub: Option<String>,
}

/// A NumericDate (RFC 7519 section 2) as a whole number of seconds, read as the signature
/// check's claim parser reads it (fractions rounded, negatives refused).
fn numeric_date(value: &serde_json::Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.round() as u64)
}

/// A StringOrURI claim that may also be an array of them.
fn strings(value: &serde_json::Value) -> Option<Vec<String>> {
    match value {
        serde_json::Value::String(s) => Some(vec![s.clone()]),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

impl VerifiedClaims {
    fn from_raw(kid: String, raw: RawClaims) -> Result<Self, InvalidToken> {
        // `exp`, `iss` and `aud` were required by the signature check, which treats a value of
        // the wrong type as absent; so does this.
        let required = |v: Option<serde_json::Value>| v.ok_or(InvalidToken::MissingClaim);
        Ok(Self {
            kid,
            iss: strings(&required(raw.iss)?).ok_or(InvalidToken::MissingClaim)?,
            aud: strings(&required(raw.aud)?).ok_or(InvalidToken::MissingClaim)?,
            exp: numeric_date(&required(raw.exp)?).ok_or(InvalidToken::MissingClaim)?,
            nbf: raw.nbf.as_ref().and_then(numeric_date),
            scope: raw
                .scope
                .as_ref()
                .and_then(|s| s.as_str())
                .map(|s| s.split(' ').map(str::to_owned).collect())
                .unwrap_or_default(),
            client_id: raw.client_id,
            sub: raw.sub,
        })
    }

    fn has_scope(&self, needed: &str) -> bool {
        self.scope.iter().any(|t| t == needed)
    }
}

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

/// What the signature check asks of a token besides the signature: `alg: EdDSA` and the
/// presence of `exp`, `iss` and `aud` (RFC 9068 section 2.2). Their values are judged by
/// [`check_claims`], which also runs for cached tokens. Built once at start.
pub fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v
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

/// The bearer token of a request (RFC 6750 section 2.1).
pub fn credentials(headers: &HeaderMap) -> Result<&str, BearerError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(BearerError::Missing);
    };
    if values.next().is_some() {
        return Err(BearerError::Malformed("send one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| BearerError::Malformed("the Authorization header is not ASCII"))?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    // The scheme is case-insensitive (RFC 7235 section 2.1). Another scheme means the
    // client did not send bearer credentials: no error code (RFC 6750 section 3.1).
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Missing);
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err(BearerError::Malformed("the Bearer scheme needs a token"));
    }
    if !is_token68(token) {
        return Err(BearerError::Malformed(if token.contains([' ', '\t']) {
            "send exactly one bearer token"
        } else {
            "the bearer token has characters outside token68"
        }));
    }
    Ok(token)
}

/// The header's `kid`, after the checks that need no key.
fn check_header(token: &str) -> Result<String, InvalidToken> {
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
    // Only EdDSA: `none` and HMAC (keyed with our public key) are the classic forgeries.
    if header.alg != "EdDSA" {
        return Err(InvalidToken::Algorithm);
    }
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
    header.kid.ok_or(InvalidToken::NoKeyId)
}

fn from_jwt_error(e: &jsonwebtoken::errors::Error) -> InvalidToken {
    match e.kind() {
        ErrorKind::InvalidSignature => InvalidToken::Signature,
        ErrorKind::ExpiredSignature => InvalidToken::Expired,
        ErrorKind::ImmatureSignature => InvalidToken::NotYetValid,
        ErrorKind::InvalidIssuer => InvalidToken::Issuer,
        ErrorKind::InvalidAudience => InvalidToken::Audience,
        ErrorKind::MissingRequiredClaim(_) => InvalidToken::MissingClaim,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => InvalidToken::Algorithm,
        _ => InvalidToken::NotJwt,
    }
}

/// The checks that do not depend on the route's audience or scope: the token is current
/// (RFC 7519 sections 4.1.4 and 4.1.5, with the leeway for clock skew) and comes from the
/// issuer this server trusts (RFC 9068 section 4).
fn check_time_and_issuer(
    claims: &VerifiedClaims,
    route: &Route,
    now: u64,
) -> Result<(), InvalidToken> {
    if claims.exp < now.saturating_sub(route.leeway) {
        return Err(InvalidToken::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(route.leeway))
    {
        return Err(InvalidToken::NotYetValid);
    }
    if !claims.iss.contains(&route.issuer) {
        return Err(InvalidToken::Issuer);
    }
    Ok(())
}

/// Every claim check for `route` at `now`: time and issuer, then the audience (RFC 9068
/// section 4: the resource must be among the token's audiences), then the route's scope.
pub fn check_claims(claims: &VerifiedClaims, route: &Route, now: u64) -> Result<(), BearerError> {
    check_time_and_issuer(claims, route, now).map_err(BearerError::Invalid)?;
    if !claims.aud.iter().any(|a| a == route.audience.as_str()) {
        return Err(BearerError::Invalid(InvalidToken::Audience));
    }
    if let Some(scope) = &route.scope {
        if !claims.has_scope(scope.as_str()) {
            return Err(BearerError::InsufficientScope(scope.to_string()));
        }
    }
    Ok(())
}

/// Checks the request's bearer token for `route`; returns its claims.
pub async fn authorize(
    keys: &KeyStore,
    cache: &TokenCache,
    route: &Route,
    headers: &HeaderMap,
) -> Result<Arc<VerifiedClaims>, BearerError> {
    let token = credentials(headers)?;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = verified(keys, cache, route, token, now)
        .await
        .map_err(BearerError::Invalid)?;
    check_claims(&claims, route, now)?;
    Ok(claims)
}

/// The claims of a token whose header and signature check out, from the cache when the same
/// token was verified before with the keys in force.
async fn verified(
    keys: &KeyStore,
    cache: &TokenCache,
    route: &Route,
    token: &str,
    now: u64,
) -> Result<Arc<VerifiedClaims>, InvalidToken> {
    // The key set version is read before the key is looked up: if the keys change in between,
    // the token is stored under the older version, which the cache no longer serves.
    let cached = cache
        .enabled()
        .then(|| (TokenCache::hash(token), keys.version()));
    if let Some((hash, version)) = &cached {
        if let Some(claims) = cache.get(hash, *version, now) {
            return Ok(claims);
        }
    }
    let kid = check_header(token)?;
    let key = keys.key(&kid).await.ok_or(InvalidToken::UnknownKey)?;
    let raw = jsonwebtoken::decode::<RawClaims>(token, &key, &route.validation)
        .map_err(|e| from_jwt_error(&e))?
        .claims;
    let claims = Arc::new(VerifiedClaims::from_raw(kid, raw)?);
    // Only tokens that are current and from our issuer are worth remembering; the error for
    // the others comes from the same check in `check_claims`.
    if let Some((hash, version)) = cached {
        if check_time_and_issuer(&claims, route, now).is_ok() {
            let until = claims.exp.saturating_add(route.leeway);
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
