//! Refusals of the resource server and the one place they become HTTP responses (RFC 6750
//! section 3).
//!
//! Every refusal carries `WWW-Authenticate: Bearer realm="..."`, with an `error` code when the
//! request carried a bearer token (section 3.1), and `Cache-Control: no-store`. Descriptions are
//! short fixed strings: a response never echoes the token or any claim from it.

use http::{header, Response, StatusCode};

use crate::http::response::{self, Body};

/// Why a request for a protected document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// No `Authorization: Bearer` credentials at all (or another scheme): section 3.1 says to
    /// answer without an error code.
    #[error("no bearer credentials")]
    Missing,
    /// The `Authorization` header is unusable: `invalid_request`, 400.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The token is not acceptable: `invalid_token`, 401.
    #[error("invalid token: {0}")]
    Invalid(InvalidToken),
    /// The token is valid but lacks the route's scope: `insufficient_scope`, 403.
    #[error("insufficient scope: needs {0}")]
    InsufficientScope(String),
}

/// The reasons a token is refused, each with its fixed description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidToken {
    NotJwt,
    Algorithm,
    Type,
    Critical,
    NoKeyId,
    UnknownKey,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    MissingClaim,
}

impl InvalidToken {
    /// What the client is told (and what is logged): never any part of the token.
    pub fn description(self) -> &'static str {
        match self {
            Self::NotJwt => "the token is not a well-formed JWT",
            Self::Algorithm => {
                "the token is not signed with its key's algorithm (EdDSA, ES256 or RS256)"
            }
            Self::Type => "the token is not a JWT access token (typ must be at+jwt)",
            Self::Critical => "the token uses unsupported critical header parameters",
            Self::NoKeyId => "the token has no key id",
            Self::UnknownKey => "the token was signed with an unknown key",
            Self::Signature => "the token signature is invalid",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::Issuer => "the token was issued by another issuer",
            Self::Audience => "the token is not meant for this resource",
            Self::MissingClaim => "the token lacks a required claim",
        }
    }
}

impl std::fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.description())
    }
}

impl BearerError {
    /// The RFC 6750 error code, if any (also the outcome label in logs).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::Missing => None,
            Self::Malformed(_) => Some("invalid_request"),
            Self::Invalid(_) => Some("invalid_token"),
            Self::InsufficientScope(_) => Some("insufficient_scope"),
        }
    }

    fn description(&self) -> Option<&'static str> {
        match self {
            Self::Missing => None,
            Self::Malformed(d) => Some(d),
            Self::Invalid(reason) => Some(reason.description()),
            Self::InsufficientScope(_) => Some("the token lacks the scope this resource requires"),
        }
    }

    /// The response for this refusal: the only place a [`BearerError`] becomes HTTP.
    pub fn into_response(self, realm: &str) -> Response<Body> {
        // RFC 6750 section 3.1: 400 for a malformed request, 401 for a missing or invalid
        // token, 403 for a valid token without the needed scope.
        let status = match &self {
            Self::Missing | Self::Invalid(_) => StatusCode::UNAUTHORIZED,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope(_) => StatusCode::FORBIDDEN,
        };
        // The realm and scope are validated at config load (no quotes or backslashes) and the
        // descriptions are fixed, so every value is a valid quoted-string (section 3).
        let mut challenge = format!("Bearer realm=\"{realm}\"");
        if let (Some(code), Some(description)) = (self.code(), self.description()) {
            challenge.push_str(&format!(
                ", error=\"{code}\", error_description=\"{description}\""
            ));
        }
        if let Self::InsufficientScope(scope) = &self {
            challenge.push_str(&format!(", scope=\"{scope}\""));
        }
        let resp = match (self.code(), self.description()) {
            (Some(code), Some(description)) => response::json(
                status,
                &serde_json::json!({"error": code, "error_description": description}),
            ),
            // Section 3.1: a request without credentials gets no error information.
            _ => response::empty(status),
        };
        response::with_header(
            response::no_store(resp),
            header::WWW_AUTHENTICATE,
            &challenge,
        )
    }
}
