//! Token endpoint errors and the one place they become HTTP responses (RFC 6749 section 5.2).
//!
//! What the client sees (`error`, `error_description`) is separate from what is logged: an
//! internal failure answers an opaque `server_error` while the cause goes to the log.

use http::{header, Response, StatusCode};

use super::limits::Throttled;
use super::password::WorkersGone;
use crate::http::response::{self, Body};
use crate::store::StoreError;

/// Everything `POST /token` can answer besides a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    #[error("request body too large")]
    TooLarge,
    /// The body did not arrive within `[server] body_timeout_secs` (408).
    #[error("the request body did not arrive within {} s", .0.as_secs())]
    BodyTimeout(std::time::Duration),
    /// Too many failed authentications for this client id or from this address (429): see
    /// [`super::limits`].
    #[error("too many failed client authentications; retry after {} s", retry_after_secs(.0))]
    Throttled(Throttled),
    /// The daemon is stopping and the request was not complete yet (503).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Unknown client, wrong secret, disabled client or no authentication (section 5.2).
    /// `basic` records whether the client tried HTTP Basic, which decides `WWW-Authenticate`.
    #[error("invalid_client: {description}")]
    InvalidClient { description: String, basic: bool },
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// RFC 8707 section 2.
    #[error("invalid_target: {0}")]
    InvalidTarget(String),
    /// The client store cannot be reached; retrying later may succeed.
    #[error("temporarily unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[from] InternalError),
}

/// Failures that are ours, never the client's: answered with an opaque `server_error`, logged
/// with their cause.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    #[error(transparent)]
    Workers(#[from] WorkersGone),
    #[error("no key may sign now")]
    NoSigningKey,
    #[error(transparent)]
    Sign(#[from] crate::keys::signer::KeyFileError),
}

impl TokenError {
    /// A form parameter given more than once (RFC 6749 section 3.2: "Request and response
    /// parameters MUST NOT be included more than once").
    pub fn repeated(name: &str) -> Self {
        Self::InvalidRequest(format!("parameter `{name}` is repeated"))
    }

    /// The RFC error code, also used as the outcome label in logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_)
            | Self::TooLarge
            | Self::BodyTimeout(_)
            | Self::Throttled(_) => "invalid_request",
            Self::InvalidClient { .. } => "invalid_client",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::Unavailable(_) | Self::Internal(_) | Self::ShuttingDown => "server_error",
        }
    }

    /// The outcome label of logs and metrics: the RFC code, except `throttled` for a 429.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Throttled(_) => "throttled",
            other => other.code(),
        }
    }

    /// The response for this error. `realm` is named in `WWW-Authenticate` for Basic clients.
    pub fn into_response(self, realm: &str) -> Response<Body> {
        let (status, description) = match &self {
            Self::InvalidRequest(d) => (StatusCode::BAD_REQUEST, d.clone()),
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body exceeds {} bytes",
                    crate::http::request::MAX_BODY
                ),
            ),
            // RFC 9110 section 15.5.9; the connection is closed after it.
            Self::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, self.to_string()),
            Self::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, self.to_string()),
            // RFC 6585 section 4, with the RFC 6749 section 5.2 body.
            Self::Throttled(_) => (StatusCode::TOO_MANY_REQUESTS, self.to_string()),
            Self::InvalidClient { description, .. } => {
                (StatusCode::UNAUTHORIZED, description.clone())
            }
            Self::UnauthorizedClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d)
            | Self::InvalidTarget(d) => (StatusCode::BAD_REQUEST, d.clone()),
            // 503 tells clients and load balancers to retry; the body keeps the RFC shape.
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the authorization server is temporarily unavailable; retry later".to_owned(),
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_owned(),
            ),
        };
        let body = serde_json::json!({"error": self.code(), "error_description": description});
        let mut resp = response::no_store(response::json(status, &body));
        match &self {
            Self::InvalidClient { basic: true, .. } => {
                resp = response::with_header(
                    resp,
                    header::WWW_AUTHENTICATE,
                    &format!("Basic realm=\"{realm}\", charset=\"UTF-8\""),
                );
            }
            Self::Unavailable(_) => {
                resp = response::with_header(resp, header::RETRY_AFTER, "5");
            }
            Self::Throttled(t) => {
                let secs = retry_after_secs(t).to_string();
                resp = response::with_header(resp, header::RETRY_AFTER, &secs);
            }
            Self::BodyTimeout(_) | Self::ShuttingDown => {
                resp = response::with_header(resp, header::CONNECTION, "close");
            }
            _ => {}
        }
        resp
    }
}

/// Whole seconds until a throttled client may try again (at least 1).
fn retry_after_secs(t: &Throttled) -> u64 {
    t.retry_after.as_secs_f64().ceil().max(1.0) as u64
}
