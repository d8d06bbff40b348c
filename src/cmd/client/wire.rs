//! What the client commands send and how they read the answers: the token request of the
//! client credentials grant (RFC 6749 section 4.4.2) and the bearer request of a protected
//! resource (RFC 6750 section 2.1).
//!
//! Every failure becomes a [`ClientError`] that says, in one line, what the user needs: the
//! server's RFC error code and description, the URL that could not be reached, or the fact
//! that an answer was not JSON. Redirects are never followed, so credentials and tokens go
//! only to the URL the user named.

use base64::Engine;
use bytes::Bytes;
use http::{header, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMethod {
    /// HTTP Basic (`client_secret_basic`), which every server must support.
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`), as the
    /// original client sent them.
    Post,
}

/// The largest token endpoint answer read (a token response is a few hundred bytes).
const TOKEN_ANSWER_LIMIT: usize = 64 * 1024;
/// The largest protected document read.
const RESOURCE_LIMIT: usize = 64 * 1024 * 1024;
/// How much of an unexpected body an error message quotes.
const SNIPPET_CHARS: usize = 200;

/// Why a token or a resource could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("{url} redirects to {location}; not following (credentials go only to the URL given), use that URL instead")]
    Redirected { url: String, location: String },
    #[error("{url} answered more than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error(
        "{url} answered HTTP {status} with a body that is not JSON ({content_type}): {snippet}"
    )]
    NotJson {
        url: String,
        status: u16,
        content_type: String,
        snippet: String,
    },
    /// An error response of the token endpoint (RFC 6749 section 5.2).
    #[error("the token endpoint answered error: {code}{} (HTTP {status})", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    TokenRefused {
        status: u16,
        code: String,
        description: Option<String>,
    },
    #[error("{url} answered HTTP {status} without an access token or an OAuth error: {snippet}")]
    NoToken {
        url: String,
        status: u16,
        snippet: String,
    },
    #[error("{url}: the token response is not usable: {reason}")]
    BadTokenResponse { url: String, reason: String },
    /// A resource server's bearer error (RFC 6750 section 3).
    #[error(
        "{url} refused the request: {code}{}{} (HTTP {status})",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default(),
        scope.as_deref().map(|s| format!(" (needs scope {s:?})")).unwrap_or_default()
    )]
    ResourceRefused {
        url: String,
        status: u16,
        code: String,
        description: Option<String>,
        /// The scope the resource asks for (`insufficient_scope`).
        scope: Option<String>,
    },
    #[error("{url} answered HTTP {status}: {detail}")]
    ResourceStatus {
        url: String,
        status: u16,
        detail: String,
    },
}

/// A successful token response, reduced to what the commands use.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenAnswer {
    pub access_token: String,
    pub token_type: String,
    /// Unix seconds; `None` when the server said nothing about the lifetime.
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
}

/// The HTTP client both commands use.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(60))
        .user_agent(concat!("steelcutd/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// What the token request carries besides the endpoint.
pub struct TokenParams<'a> {
    pub client_id: &'a str,
    pub secret: &'a SecretString,
    pub auth_method: AuthMethod,
    pub resources: &'a [String],
    pub scope: Option<&'a str>,
}

/// The `Authorization` value of `client_secret_basic`. RFC 6749 section 2.3.1: id and secret
/// are each form-urlencoded before they are joined with ':' and base64-encoded, so a ':' or a
/// non-ASCII character in either survives.
pub fn basic_authorization(client_id: &str, secret: &SecretString) -> SecretString {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let joined = format!("{}:{}", enc(client_id), enc(secret.expose_secret()));
    SecretString::from(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(joined)
    ))
}

/// Asks the token endpoint for a token with the client credentials grant.
pub async fn request_token(
    http: &reqwest::Client,
    url: &Url,
    params: &TokenParams<'_>,
    sent_at: i64,
) -> Result<TokenAnswer, ClientError> {
    // Section 4.4.2: grant_type, optional scope; RFC 8707 section 2: one `resource` per value.
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    for r in params.resources {
        form.append_pair("resource", r);
    }
    if let Some(scope) = params.scope {
        form.append_pair("scope", scope);
    }
    let mut req = http
        .post(url.clone())
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    match params.auth_method {
        AuthMethod::Basic => {
            let value = basic_authorization(params.client_id, params.secret);
            let mut value = http::HeaderValue::from_str(value.expose_secret()).map_err(|_| {
                ClientError::BadTokenResponse {
                    url: url.to_string(),
                    reason: "the credentials cannot be put in a header".into(),
                }
            })?;
            value.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, value);
        }
        AuthMethod::Post => {
            form.append_pair("client_id", params.client_id);
            form.append_pair("client_secret", params.secret.expose_secret());
        }
    }
    let resp = req
        .body(form.finish())
        .send()
        .await
        .map_err(|e| unreachable(url, &e))?;
    let status = resp.status();
    let content_type = content_type(&resp);
    refuse_redirect(url, &resp)?;
    let body = read_limited(url, resp, TOKEN_ANSWER_LIMIT).await?;
    parse_token_answer(url.as_str(), status, &content_type, &body, sent_at)
}

/// Reads a token endpoint answer. `sent_at` is when the request left, so `expires_in` is
/// counted from a moment no later than the server's: network delay only makes us earlier.
pub fn parse_token_answer(
    url: &str,
    status: StatusCode,
    content_type: &str,
    body: &[u8],
    sent_at: i64,
) -> Result<TokenAnswer, ClientError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| ClientError::NotJson {
            url: url.to_owned(),
            status: status.as_u16(),
            content_type: if content_type.is_empty() {
                "no Content-Type".into()
            } else {
                content_type.to_owned()
            },
            snippet: snippet(body),
        })?;
    if let Some(refused) = refusal(&value, status) {
        return Err(refused);
    }
    let access_token = value.get("access_token").and_then(|t| t.as_str());
    let access_token = match access_token {
        Some(t) if status.is_success() && !t.is_empty() => t.to_owned(),
        _ => {
            return Err(ClientError::NoToken {
                url: url.to_owned(),
                status: status.as_u16(),
                snippet: snippet(body),
            })
        }
    };
    let bad = |reason: String| ClientError::BadTokenResponse {
        url: url.to_owned(),
        reason,
    };
    if access_token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(bad(
            "access_token contains characters a header cannot carry".into(),
        ));
    }
    // Section 7.1: a client must not use a token whose type it does not understand.
    let token_type = match value.get("token_type").and_then(|t| t.as_str()) {
        None => "Bearer".to_owned(),
        Some(t) if t.eq_ignore_ascii_case("bearer") => t.to_owned(),
        Some(t) => return Err(bad(format!("token_type {t:?} is not Bearer"))),
    };
    let expires_in = number(&value, "expires_in").map(|n| sent_at.saturating_add(n));
    let expires_on = number(&value, "expires_on");
    // Both present: take the earlier, so a clock difference with the server cannot make us
    // hold on to a token longer than either says.
    let expires_at = match (expires_in, expires_on) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(TokenAnswer {
        access_token,
        token_type,
        expires_at,
        scope: value
            .get("scope")
            .and_then(|s| s.as_str())
            .map(str::to_owned),
    })
}

/// The error an answer carries, if any: RFC 6749 section 5.2, or the original server's
/// `{"error": {"message", "type", "code"}}` (sent with HTTP 200), so that talking to an old
/// node still explains itself.
fn refusal(value: &serde_json::Value, status: StatusCode) -> Option<ClientError> {
    match value.get("error")? {
        serde_json::Value::String(code) => Some(ClientError::TokenRefused {
            status: status.as_u16(),
            code: code.clone(),
            description: value
                .get("error_description")
                .and_then(|d| d.as_str())
                .map(str::to_owned),
        }),
        serde_json::Value::Object(o) => {
            let field = |k: &str| o.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            Some(ClientError::TokenRefused {
                status: status.as_u16(),
                code: field("code")
                    .or_else(|| field("type"))
                    .unwrap_or_else(|| "error".into()),
                description: field("message"),
            })
        }
        _ => None,
    }
}

/// A whole number of seconds, given as an integer, a float (the original sent floats) or a
/// numeric string.
fn number(value: &serde_json::Value, key: &str) -> Option<i64> {
    match value.get(key)? {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().map(|f| f as i64)),
        _ => None,
    }
}

/// Fetches a protected resource with `Authorization: Bearer` (RFC 6750 section 2.1) and
/// returns its body.
pub async fn fetch_resource(
    http: &reqwest::Client,
    url: &Url,
    token: &str,
) -> Result<Bytes, ClientError> {
    let mut auth = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        ClientError::ResourceStatus {
            url: url.to_string(),
            status: 0,
            detail: "the token contains characters a header cannot carry".into(),
        }
    })?;
    auth.set_sensitive(true);
    let resp = http
        .get(url.clone())
        .header(header::AUTHORIZATION, auth)
        .header(header::ACCEPT, "application/json")
        // The original client sent this on its GET; servers accept it.
        .header(header::CONTENT_TYPE, "application/json")
        .send()
        .await
        .map_err(|e| unreachable(url, &e))?;
    let status = resp.status();
    refuse_redirect(url, &resp)?;
    let challenge = resp
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(bearer_params);
    let body = read_limited(url, resp, RESOURCE_LIMIT).await?;
    if status.is_success() {
        return Ok(body);
    }
    // RFC 6750 section 3: the error code and description travel in WWW-Authenticate.
    if let Some(params) = &challenge {
        let param = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        if let Some(code) = param("error") {
            return Err(ClientError::ResourceRefused {
                url: url.to_string(),
                status: status.as_u16(),
                code,
                description: param("error_description"),
                scope: param("scope"),
            });
        }
    }
    let detail = match (&challenge, status) {
        // Section 3.1: no error code means the request carried no usable credentials.
        (Some(_), StatusCode::UNAUTHORIZED) => {
            "authentication required, no error code given".into()
        }
        _ if body.is_empty() => status.canonical_reason().unwrap_or("").to_owned(),
        _ => snippet(&body),
    };
    Err(ClientError::ResourceStatus {
        url: url.to_string(),
        status: status.as_u16(),
        detail,
    })
}

/// The auth-params of the `Bearer` challenge in a `WWW-Authenticate` value (RFC 7235 section
/// 2.1), or `None` when it has no Bearer challenge. Values may be tokens or quoted strings.
pub fn bearer_params(header: &str) -> Option<Vec<(String, String)>> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    loop {
        p.skip(|b| b == b' ' || b == b'\t' || b == b',');
        let scheme = p.token()?;
        let params = p.params();
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(params);
        }
        if p.i >= p.s.len() {
            return None;
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    fn ows(&mut self) {
        self.skip(|b| b == b' ' || b == b'\t');
    }

    /// An RFC 7230 token.
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        self.skip(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// `name=value` pairs up to the next challenge (a token not followed by '=') or the end.
    fn params(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        loop {
            self.skip(|b| b == b' ' || b == b'\t' || b == b',');
            let mark = self.i;
            let Some(name) = self.token() else {
                return out;
            };
            self.ows();
            if self.peek() != Some(b'=') {
                // The start of the next challenge.
                self.i = mark;
                return out;
            }
            self.i += 1;
            self.ows();
            let value = if self.peek() == Some(b'"') {
                self.quoted()
            } else {
                self.token().unwrap_or_default()
            };
            out.push((name, value));
        }
    }

    fn quoted(&mut self) -> String {
        self.i += 1;
        let mut v = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        v.push(n);
                        self.i += 1;
                    }
                }
                _ => v.push(b),
            }
        }
        String::from_utf8_lossy(&v).into_owned()
    }
}

fn unreachable(url: &Url, e: &reqwest::Error) -> ClientError {
    let cause = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        // reqwest's own message repeats the URL; the innermost cause is the useful part
        // ("Connection refused", "dns error: ...").
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        cause.to_string()
    };
    ClientError::Unreachable {
        url: url.to_string(),
        cause,
    }
}

fn refuse_redirect(url: &Url, resp: &reqwest::Response) -> Result<(), ClientError> {
    if resp.status().is_redirection() && resp.status() != StatusCode::NOT_MODIFIED {
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or("(no Location)")
            .to_owned();
        return Err(ClientError::Redirected {
            url: url.to_string(),
            location,
        });
    }
    Ok(())
}

fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn read_limited(
    url: &Url,
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Bytes, ClientError> {
    let too_large = || ClientError::TooLarge {
        url: url.to_string(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable(url, &e))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// The start of a body, printable on one line.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > SNIPPET_CHARS {
        out.push_str("...");
    }
    if out.trim().is_empty() {
        "(empty body)".into()
    } else {
        out.trim().to_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(status: u16, body: &str) -> Result<TokenAnswer, ClientError> {
        parse_token_answer(
            "http://a/token",
            StatusCode::from_u16(status).unwrap(),
            "application/json",
            body.as_bytes(),
            1000,
        )
    }

    #[test]
    fn basic_credentials_are_form_urlencoded_before_base64() {
        let v = basic_authorization("a:b", &SecretString::from("p w+é"));
        let b64 = v.expose_secret().strip_prefix("Basic ").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(String::from_utf8(raw).unwrap(), "a%3Ab:p+w%2B%C3%A9");
    }

    #[test]
    fn an_rfc_error_is_reported_with_code_description_and_status() {
        let e = parse(
            401,
            r#"{"error":"invalid_client","error_description":"bad secret"}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the token endpoint answered error: invalid_client: bad secret (HTTP 401)"
        );
        let e = parse(400, r#"{"error":"invalid_scope"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the token endpoint answered error: invalid_scope (HTTP 400)"
        );
    }

    #[test]
    fn the_original_servers_error_shape_is_understood() {
        let e = parse(
            200,
            r#"{"error":{"message":"no such client","type":"auth","code":"401"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the token endpoint answered error: 401: no such client (HTTP 200)"
        );
    }

    #[test]
    fn a_non_json_answer_says_so() {
        let e = parse_token_answer(
            "http://a/token",
            StatusCode::BAD_GATEWAY,
            "text/html",
            b"<html>bad gateway</html>",
            0,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "http://a/token answered HTTP 502 with a body that is not JSON (text/html): <html>bad gateway</html>"
        );
    }

    #[test]
    fn expiry_comes_from_expires_in_or_expires_on_whichever_is_earlier() {
        let a = parse(
            200,
            r#"{"access_token":"t","token_type":"bearer","expires_in":3600}"#,
        )
        .unwrap();
        assert_eq!(a.expires_at, Some(4600));
        let a = parse(
            200,
            r#"{"access_token":"t","token_type":"Bearer","expires_on":"2000.5"}"#,
        )
        .unwrap();
        assert_eq!(a.expires_at, Some(2000));
        let a = parse(
            200,
            r#"{"access_token":"t","expires_in":3600,"expires_on":3000}"#,
        )
        .unwrap();
        assert_eq!(a.expires_at, Some(3000));
        let a = parse(200, r#"{"access_token":"t"}"#).unwrap();
        assert_eq!(a.expires_at, None);
    }

    #[test]
    fn a_token_of_another_type_or_a_missing_token_is_refused() {
        assert!(matches!(
            parse(200, r#"{"access_token":"t","token_type":"mac"}"#),
            Err(ClientError::BadTokenResponse { .. })
        ));
        assert!(matches!(
            parse(200, r#"{"token_type":"Bearer"}"#),
            Err(ClientError::NoToken { .. })
        ));
        assert!(matches!(
            parse(500, r#"{"access_token":"t"}"#),
            Err(ClientError::NoToken { .. })
        ));
    }

    #[test]
    fn bearer_challenge_parameters_are_parsed() {
        let p = bearer_params(
            r#"Bearer realm="steelcut", error="invalid_token", error_description="say \"hi\", ok""#,
        )
        .unwrap();
        assert_eq!(
            p,
            [
                ("realm".to_owned(), "steelcut".to_owned()),
                ("error".to_owned(), "invalid_token".to_owned()),
                ("error_description".to_owned(), r#"say "hi", ok"#.to_owned()),
            ]
        );
        let p = bearer_params(r#"Basic realm="x", bearer error=insufficient_scope,scope="a b""#)
            .unwrap();
        assert_eq!(p[0], ("error".to_owned(), "insufficient_scope".to_owned()));
        assert_eq!(p[1], ("scope".to_owned(), "a b".to_owned()));
        assert!(bearer_params(r#"Basic realm="x""#).is_none());
        assert_eq!(bearer_params("Bearer").unwrap(), []);
    }
}
