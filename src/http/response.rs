//! Building responses. Every response the server sends is made here, so headers such as
//! `Cache-Control: no-store` on credentials are set in one place and never forgotten.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

/// The body type of every response.
pub type Body = Full<Bytes>;

/// A response with a body and a content type.
pub fn bytes(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    bytes(status, "application/json", value.to_string())
}

/// A JSON response from bytes already serialized.
pub fn json_bytes(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    bytes(status, "application/json", body)
}

/// An empty response.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Adds a header whose value is known to be valid ASCII (built by us, never from input).
pub fn with_header(mut resp: Response<Body>, name: HeaderName, value: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(name, v);
    }
    resp
}

/// Marks a response as never to be cached (RFC 6749 section 5.1 for tokens and their errors).
pub fn no_store(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// 405 with the methods that are allowed.
pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let body = serde_json::json!({
        "error": "method_not_allowed",
        "error_description": format!("use {allow}"),
    });
    with_header(
        json(StatusCode::METHOD_NOT_ALLOWED, &body),
        header::ALLOW,
        allow,
    )
}

/// 404 for paths nobody serves.
pub fn not_found() -> Response<Body> {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({"error": "not_found", "error_description": "no such path"}),
    )
}
