//! What a verified token says and what a route asks of it: the claims kept after a signature
//! check ([`VerifiedClaims`], the value the token cache holds), the signature check's
//! requirements ([`validation_for`]), and the checks that run on every request, cached or not
//! ([`check_claims`]) against a route's [`Policy`].
//!
//! Below `bearer`, `cache` and `catalog`, which all use it; it uses none of them.

use std::sync::LazyLock;

use jsonwebtoken::Validation;
use serde::Deserialize;

use super::error::{BearerError, InvalidToken};
use crate::domain::{Resource, Scope};
use crate::keys::Alg;

/// What a route requires of a token besides a good signature.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The `iss` a token must carry.
    pub issuer: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway: u64,
    /// One of the token's audiences must be this (RFC 9068 section 4).
    pub audience: Resource,
    /// A scope the token must hold, if the route names one.
    pub scope: Option<Scope>,
}

/// The claims as they appear in a token whose signature checked out. Types are loose where
/// the checks decide (a malformed value is refused by them, not by the parser).
#[derive(Debug, Deserialize)]
pub struct RawClaims {
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
#[derive(Debug, Clone)]
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
    /// The client the token was issued to, for the request log: `client_id`, else `sub`.
    pub fn caller(&self) -> Option<&str> {
        self.client_id.as_deref().or(self.sub.as_deref())
    }

    pub fn from_raw(kid: String, raw: RawClaims) -> Result<Self, InvalidToken> {
        // `exp`, `iss` and `aud` were required by the signature check, which treats a value of
        // the wrong type as absent; so does this.
        let required = |v: Option<serde_json::Value>| v.ok_or(InvalidToken::MissingClaim);
        Ok(Self {
            kid,
            iss: strings(&required(raw.iss)?).ok_or(InvalidToken::MissingClaim)?,
            aud: strings(&required(raw.aud)?).ok_or(InvalidToken::MissingClaim)?,
            exp: numeric_date(&required(raw.exp)?).ok_or(InvalidToken::MissingClaim)?,
            // Optional, but a present `nbf` that is not a NumericDate is refused rather than
            // ignored: `"nbf": "9999999999"` must not make a token valid before its time.
            nbf: match &raw.nbf {
                None => None,
                Some(v) => Some(numeric_date(v).ok_or(InvalidToken::MissingClaim)?),
            },
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

/// What the signature check asks of a token besides the signature: the key's algorithm and
/// the presence of `exp`, `iss` and `aud` (RFC 9068 section 2.2). Their values are judged by
/// [`check_claims`], which also runs for cached tokens. One per algorithm (jsonwebtoken refuses
/// a `Validation` whose algorithms span key types), built once.
pub fn validation_for(alg: Alg) -> &'static Validation {
    static EDDSA: LazyLock<Validation> = LazyLock::new(|| validation(Alg::EdDsa));
    static ES256: LazyLock<Validation> = LazyLock::new(|| validation(Alg::Es256));
    static RS256: LazyLock<Validation> = LazyLock::new(|| validation(Alg::Rs256));
    match alg {
        Alg::EdDsa => &EDDSA,
        Alg::Es256 => &ES256,
        Alg::Rs256 => &RS256,
    }
}

fn validation(alg: Alg) -> Validation {
    let mut v = Validation::new(alg.jwt());
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v
}

/// The checks that do not depend on the route's audience or scope: the token is current
/// (RFC 7519 sections 4.1.4 and 4.1.5, with the leeway for clock skew) and comes from the
/// issuer this server trusts (RFC 9068 section 4).
pub fn check_time_and_issuer(
    claims: &VerifiedClaims,
    policy: &Policy,
    now: u64,
) -> Result<(), InvalidToken> {
    if claims.exp < now.saturating_sub(policy.leeway) {
        return Err(InvalidToken::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(policy.leeway))
    {
        return Err(InvalidToken::NotYetValid);
    }
    if !claims.iss.contains(&policy.issuer) {
        return Err(InvalidToken::Issuer);
    }
    Ok(())
}

/// Every claim check for `route` at `now`: time and issuer, then the audience (RFC 9068
/// section 4: the resource must be among the token's audiences), then the route's scope.
pub fn check_claims(claims: &VerifiedClaims, policy: &Policy, now: u64) -> Result<(), BearerError> {
    check_time_and_issuer(claims, policy, now).map_err(BearerError::Invalid)?;
    if !claims.aud.iter().any(|a| a == policy.audience.as_str()) {
        return Err(BearerError::Invalid(InvalidToken::Audience));
    }
    if let Some(scope) = &policy.scope {
        if !claims.has_scope(scope.as_str()) {
            return Err(BearerError::InsufficientScope(scope.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            "[ -~]{0,20}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    "(iss|aud|exp|nbf|scope|sub|client_id|x)",
                    inner,
                    0..8
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_claims_are_accepted_or_refused_with_a_typed_error(claims in json(), now in any::<u64>()) {
            let policy = Policy {
                issuer: "https://a.example".into(),
                leeway: 30,
                audience: Resource::parse("api").map_err(|e| TestCaseError::fail(e.to_string()))?,
                scope: Scope::parse("read").ok(),
            };
            if let Ok(raw) = serde_json::from_value::<RawClaims>(claims) {
                if let Ok(verified) = VerifiedClaims::from_raw("kid".into(), raw) {
                    let _ = check_claims(&verified, &policy, now);
                }
            }
        }
    }
}
