//! The resource server: GET/HEAD of protected documents, and the bearer token validation
//! matrix of RFC 6750 section 3 (each refusal with its exact status and `WWW-Authenticate`).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

use crate::helpers::*;

pub const DOC: &str = r#"{"about": "This is a protected resource"}"#;
pub const ISSUER: &str = "http://steelcut.test";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signs tokens the way an attacker (or a misconfigured issuer) might.
pub struct Forge {
    pub key: SigningKey,
    pub kid: String,
}

impl Forge {
    /// The signing key the app generated (its newest key).
    pub fn from_app(app: &TestApp) -> Self {
        let mut pems: Vec<_> = std::fs::read_dir(app.dir.path().join("keys"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pem"))
            .collect();
        pems.sort();
        let pem = std::fs::read_to_string(pems.last().expect("a key file")).unwrap();
        Self::new(SigningKey::from_pkcs8_pem(&pem).unwrap())
    }

    /// A key nobody trusts.
    pub fn random() -> Self {
        Self::new(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    fn new(key: SigningKey) -> Self {
        let kid = steelcut::keys::PublicJwk::Okp {
            x: key.verifying_key().to_bytes(),
        }
        .thumbprint();
        Self { key, kid }
    }

    /// The header a real access token has.
    pub fn header(&self) -> Value {
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": self.kid})
    }

    /// Signs any header and claims with this key.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(signature.to_bytes()))
    }

    /// A well-formed access token for `aud` with these claims changed.
    pub fn token(&self, aud: &str, changes: Value) -> String {
        let mut c = claims(aud);
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        self.sign(&self.header(), &c)
    }
}

/// The claims the auth server puts in a token for `aud`.
pub fn claims(aud: &str) -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "sub": "0123456789abcdef0123456789abcdef",
        "client_id": "0123456789abcdef0123456789abcdef",
        "aud": aud,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "00112233445566778899aabbccddeeff",
    })
}

/// `GET path` with an `Authorization` header (or none).
pub async fn get(app: &TestApp, path: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut req = app.http.get(app.url(path));
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    req.send().await.expect("request")
}

pub async fn get_with_token(app: &TestApp, token: &str) -> reqwest::Response {
    get(app, "/api_v0.0.1", Some(&format!("Bearer {token}"))).await
}

/// Asserts a refusal: status, the exact challenge, `no-store`, and a body that does not echo
/// the token and (with an error code) repeats the code.
pub async fn assert_refused(
    resp: reqwest::Response,
    status: u16,
    challenge: &str,
    token: Option<&str>,
) {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["www-authenticate"], challenge);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body = resp.text().await.unwrap();
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        assert!(!body.contains(token), "the body echoes the token: {body}");
    }
    match challenge.split("error=\"").nth(1) {
        Some(rest) => {
            let code = rest.split('"').next().unwrap();
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["error"], code);
            assert!(body["error_description"].is_string());
        }
        None => assert_eq!(body, ""),
    }
}

fn invalid_token(description: &str) -> String {
    format!(r#"Bearer realm="steelcut", error="invalid_token", error_description="{description}""#)
}

fn invalid_request(description: &str) -> String {
    format!(
        r#"Bearer realm="steelcut", error="invalid_request", error_description="{description}""#
    )
}

async fn app_and_token() -> (TestApp, String) {
    let app = spawn_app().await;
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    let token = app.access_token(&client, "api_v0.0.1").await;
    (app, token)
}

// --- Serving documents ---------------------------------------------------------------------

#[tokio::test]
async fn a_valid_token_gets_the_document_with_a_strong_etag() {
    // 1. A client gets a token from the auth role of the same node.
    let (app, token) = app_and_token().await;
    // 2. It reads the resource.
    let resp = get_with_token(&app, &token).await;
    // 3. The document comes back as written, with a strong validator, never publicly cached.
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["cache-control"], "private, no-cache");
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.len() == 34
            && etag.starts_with('"')
            && etag.ends_with('"')
            && etag[1..33].bytes().all(|b| b.is_ascii_hexdigit()),
        "not a strong hex ETag: {etag}"
    );
    assert_eq!(resp.text().await.unwrap(), DOC);
}

#[tokio::test]
async fn a_get_that_sends_content_type_json_like_the_original_client_is_served() {
    let (app, token) = app_and_token().await;
    let resp = get_like_the_original(&app, &token).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), DOC);
}

/// `GET /api_v0.0.1` as the original package's `client_request_resource` sends it: the
/// token and a `Content-Type: application/json` header on a request without a body.
pub async fn get_like_the_original(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .get(app.url("/api_v0.0.1"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let (app, token) = app_and_token().await;
    let resp = get(&app, "/api_v0.0.1", Some(&format!("bearer {token}"))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), DOC);
}

#[tokio::test]
async fn head_answers_the_headers_of_get_without_the_body() {
    let (app, token) = app_and_token().await;
    let etag = get_with_token(&app, &token).await.headers()["etag"].clone();
    let resp = app
        .http
        .head(app.url("/api_v0.0.1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        resp.headers()["content-length"],
        DOC.len().to_string().as_str()
    );
    assert_eq!(resp.headers()["etag"], etag);
    assert_eq!(resp.headers()["cache-control"], "private, no-cache");
    assert_eq!(resp.bytes().await.unwrap().len(), 0);
}

async fn get_if_none_match(app: &TestApp, token: Option<&str>, inm: &str) -> reqwest::Response {
    let mut req = app
        .http
        .get(app.url("/api_v0.0.1"))
        .header("If-None-Match", inm);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_matching_if_none_match_gets_304_with_the_etag() {
    let (app, token) = app_and_token().await;
    let etag = get_with_token(&app, &token).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let resp = get_if_none_match(&app, Some(&token), &etag).await;
    assert_eq!(resp.status(), 304);
    assert_eq!(resp.headers()["etag"], etag.as_str());
    assert_eq!(resp.headers()["cache-control"], "private, no-cache");
    assert_eq!(resp.bytes().await.unwrap().len(), 0);
}

#[tokio::test]
async fn if_none_match_star_gets_304() {
    let (app, token) = app_and_token().await;
    let resp = get_if_none_match(&app, Some(&token), "*").await;
    assert_eq!(resp.status(), 304);
}

#[tokio::test]
async fn if_none_match_with_a_list_holding_the_etag_gets_304() {
    let (app, token) = app_and_token().await;
    let etag = get_with_token(&app, &token).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let list = format!("\"0000\", W/{etag}, \"ffff\"");
    let resp = get_if_none_match(&app, Some(&token), &list).await;
    assert_eq!(resp.status(), 304);
}

#[tokio::test]
async fn a_stale_if_none_match_gets_the_document() {
    let (app, token) = app_and_token().await;
    let resp = get_if_none_match(&app, Some(&token), "\"00000000000000000000000000000000\"").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), DOC);
}

#[tokio::test]
async fn if_none_match_without_a_token_gets_401_not_304() {
    let (app, token) = app_and_token().await;
    let etag = get_with_token(&app, &token).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let resp = get_if_none_match(&app, None, &etag).await;
    assert_refused(resp, 401, r#"Bearer realm="steelcut""#, None).await;
}

#[tokio::test]
async fn other_methods_get_405_with_allow_get_head() {
    let (app, token) = app_and_token().await;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let resp = app
            .http
            .request(method.clone(), app.url("/api_v0.0.1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method}");
        assert_eq!(resp.headers()["allow"], "GET, HEAD");
        assert!(!resp.text().await.unwrap().contains("protected"));
    }
}

#[tokio::test]
async fn other_methods_without_a_token_get_401_before_405() {
    // A caller without a token learns nothing about the route, not even which methods it has.
    let (app, _token) = app_and_token().await;
    for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
        let resp = app
            .http
            .request(method.clone(), app.url("/api_v0.0.1"))
            .send()
            .await
            .unwrap();
        assert!(resp.headers().get("allow").is_none(), "{method}");
        assert_refused(resp, 401, r#"Bearer realm="steelcut""#, None).await;
    }
}

#[tokio::test]
async fn a_path_that_is_not_a_route_gets_404() {
    let (app, token) = app_and_token().await;
    let resp = get(&app, "/api_v0.0.2", Some(&format!("Bearer {token}"))).await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn an_auth_only_node_serves_no_routes() {
    let app = spawn_app_with(TestOptions {
        roles: r#"["auth"]"#,
        ..Default::default()
    })
    .await;
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    let token = app.access_token(&client, "api_v0.0.1").await;
    let resp = get_with_token(&app, &token).await;
    assert_eq!(resp.status(), 404);
}

// --- RFC 6750 section 3: no or malformed credentials -----------------------------------

#[tokio::test]
async fn a_request_without_credentials_gets_401_without_an_error_code() {
    let app = spawn_app().await;
    let resp = get(&app, "/api_v0.0.1", None).await;
    assert_refused(resp, 401, r#"Bearer realm="steelcut""#, None).await;
}

#[tokio::test]
async fn another_authentication_scheme_gets_401_without_an_error_code() {
    let app = spawn_app().await;
    let resp = get(&app, "/api_v0.0.1", Some("Basic dXNlcjpwYXNz")).await;
    assert_refused(resp, 401, r#"Bearer realm="steelcut""#, None).await;
}

#[tokio::test]
async fn bearer_without_a_token_is_an_invalid_request() {
    let app = spawn_app().await;
    let resp = get(&app, "/api_v0.0.1", Some("Bearer")).await;
    assert_refused(
        resp,
        400,
        &invalid_request("the Bearer scheme needs a token"),
        None,
    )
    .await;
}

#[tokio::test]
async fn two_bearer_tokens_are_an_invalid_request() {
    let (app, token) = app_and_token().await;
    let resp = get(
        &app,
        "/api_v0.0.1",
        Some(&format!("Bearer {token} {token}")),
    )
    .await;
    assert_refused(
        resp,
        400,
        &invalid_request("send exactly one bearer token"),
        Some(&token),
    )
    .await;
}

#[tokio::test]
async fn a_token_with_characters_outside_token68_is_an_invalid_request() {
    let app = spawn_app().await;
    let resp = get(&app, "/api_v0.0.1", Some("Bearer abc,def")).await;
    assert_refused(
        resp,
        400,
        &invalid_request("the bearer token has characters outside token68"),
        Some("abc,def"),
    )
    .await;
}

#[tokio::test]
async fn two_authorization_headers_are_an_invalid_request() {
    let (app, token) = app_and_token().await;
    let resp = app
        .http
        .get(app.url("/api_v0.0.1"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_refused(
        resp,
        400,
        &invalid_request("send one Authorization header"),
        Some(&token),
    )
    .await;
}

// --- RFC 6750 section 3: invalid tokens ----------------------------------------------------

#[tokio::test]
async fn a_token_that_is_not_a_jwt_is_invalid() {
    let app = spawn_app().await;
    let resp = get_with_token(&app, "not-a-jwt").await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token is not a well-formed JWT"),
        Some("not-a-jwt"),
    )
    .await;
}

#[tokio::test]
async fn a_token_signed_with_another_key_under_a_known_kid_is_invalid() {
    let app = spawn_app().await;
    let real = Forge::from_app(&app);
    let mut forger = Forge::random();
    forger.kid = real.kid.clone();
    let token = forger.token("api_v0.0.1", json!({}));
    let resp = get_with_token(&app, &token).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token signature is invalid"),
        Some(&token),
    )
    .await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_invalid() {
    let app = spawn_app().await;
    let real = Forge::from_app(&app);
    let header = json!({"alg": "none", "typ": "at+jwt", "kid": real.kid});
    let token = format!(
        "{}.{}.",
        B64.encode(header.to_string()),
        B64.encode(claims("api_v0.0.1").to_string())
    );
    let resp = get_with_token(&app, &token).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token is not signed with its key's algorithm (EdDSA, ES256 or RS256)"),
        Some(&token),
    )
    .await;
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_public_key_is_invalid() {
    let app = spawn_app().await;
    let real = Forge::from_app(&app);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(real.kid.clone());
    let public = real.key.verifying_key();
    let token = jsonwebtoken::encode(
        &header,
        &claims("api_v0.0.1"),
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()).unwrap(),
    )
    .unwrap();
    let resp = get_with_token(&app, &token).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token is not signed with its key's algorithm (EdDSA, ES256 or RS256)"),
        Some(&token),
    )
    .await;
}

#[tokio::test]
async fn a_token_whose_typ_is_not_at_jwt_is_invalid() {
    let app = spawn_app().await;
    let real = Forge::from_app(&app);
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": real.kid});
    let token = real.sign(&header, &claims("api_v0.0.1"));
    let resp = get_with_token(&app, &token).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token is not a JWT access token (typ must be at+jwt)"),
        Some(&token),
    )
    .await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_invalid() {
    let app = spawn_app().await;
    let token = Forge::from_app(&app).token("api_v0.0.1", json!({"iss": "https://evil.example"}));
    let resp = get_with_token(&app, &token).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token was issued by another issuer"),
        Some(&token),
    )
    .await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_invalid() {
    // The auth server itself issues a token for another resource.
    let app = spawn_app().await;
    let client = app.add_client(&["api_v0.0.2"], &[]).await;
    let token = app.access_token(&client, "api_v0.0.2").await;
    let resp = get_with_token(&app, &token).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token is not meant for this resource"),
        Some(&token),
    )
    .await;
}

#[tokio::test]
async fn a_token_whose_audience_list_holds_the_route_is_valid() {
    let app = spawn_app().await;
    let token = Forge::from_app(&app).token("x", json!({"aud": ["other", "api_v0.0.1"]}));
    let resp = get_with_token(&app, &token).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_token_expired_beyond_the_leeway_is_invalid() {
    let app = spawn_app().await;
    let t = now() - 3600;
    let token =
        Forge::from_app(&app).token("api_v0.0.1", json!({"iat": t, "nbf": t, "exp": now() - 31}));
    let resp = get_with_token(&app, &token).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token has expired"),
        Some(&token),
    )
    .await;
}

#[tokio::test]
async fn a_token_expired_within_the_leeway_is_still_accepted() {
    let app = spawn_app().await;
    let t = now() - 3600;
    let token =
        Forge::from_app(&app).token("api_v0.0.1", json!({"iat": t, "nbf": t, "exp": now() - 10}));
    let resp = get_with_token(&app, &token).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_token_not_valid_yet_is_invalid() {
    let app = spawn_app().await;
    let token = Forge::from_app(&app).token(
        "api_v0.0.1",
        json!({"nbf": now() + 120, "exp": now() + 720}),
    );
    let resp = get_with_token(&app, &token).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token is not valid yet"),
        Some(&token),
    )
    .await;
}

#[tokio::test]
async fn a_token_with_an_unknown_kid_is_invalid() {
    let app = spawn_app().await;
    let token = Forge::random().token("api_v0.0.1", json!({}));
    let resp = get_with_token(&app, &token).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token was signed with an unknown key"),
        Some(&token),
    )
    .await;
}

#[tokio::test]
async fn a_token_without_an_expiry_is_invalid() {
    let app = spawn_app().await;
    let real = Forge::from_app(&app);
    let mut c = claims("api_v0.0.1");
    c.as_object_mut().unwrap().remove("exp");
    let token = real.sign(&real.header(), &c);
    let resp = get_with_token(&app, &token).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token lacks a required claim"),
        Some(&token),
    )
    .await;
}

// --- Scopes --------------------------------------------------------------------------------

/// A node with both roles and a route `/reports` that requires scope `reports:read`.
async fn app_with_scoped_route() -> TestApp {
    spawn_app_from_toml(
        r#"roles = ["auth", "resource"]
[server]
listen = "127.0.0.1:0"
[database]
url = "sqlite://{dir}/steelcut.db"
[keys]
dir = "{dir}/keys"
[auth]
issuer = "http://steelcut.test"
[resource]
[[resource.routes]]
path = "/reports"
file = "{dir}/protected_resource.json"
scope = "reports:read"
"#,
    )
    .await
}

#[tokio::test]
async fn a_token_without_the_routes_scope_gets_403_insufficient_scope() {
    // 1. A client allowed the resource but not the scope gets a token.
    let app = app_with_scoped_route().await;
    let client = app.add_client(&["reports"], &[]).await;
    let token = app.access_token(&client, "reports").await;
    // 2. The route refuses it and names the scope it needs.
    let resp = get(&app, "/reports", Some(&format!("Bearer {token}"))).await;
    assert_refused(
        resp,
        403,
        r#"Bearer realm="steelcut", error="insufficient_scope", error_description="the token lacks the scope this resource requires", scope="reports:read""#,
        Some(&token),
    )
    .await;
}

#[tokio::test]
async fn a_token_with_the_routes_scope_gets_the_document() {
    let app = app_with_scoped_route().await;
    let client = app
        .add_client(&["reports"], &["reports:read", "reports:write"])
        .await;
    let token = app.access_token(&client, "reports").await;
    let resp = get(&app, "/reports", Some(&format!("Bearer {token}"))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), DOC);
}

// --- Resource-only nodes with keys on disk -------------------------------------------------

fn resource_only_toml(key_source: &str) -> String {
    format!(
        r#"roles = ["resource"]
[server]
listen = "127.0.0.1:0"
[resource]
issuer = "http://steelcut.test"
{key_source}
[[resource.routes]]
path = "/api_v0.0.1"
file = "{{dir}}/protected_resource.json"
"#
    )
}

#[tokio::test]
async fn a_resource_only_node_validates_with_a_jwks_file_written_by_keys_export_public() {
    // 1. An auth node and a client with a token.
    let (auth, token) = app_and_token().await;
    // 2. `keys export-public` writes the auth node's public JWKS.
    let out = tempfile::tempdir().unwrap();
    let jwks = out.path().join("jwks.json");
    let o = auth.cli(&["keys", "export-public", "--out", jwks.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // 3. A resource-only node (no database, no private key) trusts that file.
    let node = spawn_app_from_toml(&resource_only_toml(&format!(
        "jwks_file = \"{}\"",
        jwks.display()
    )))
    .await;
    let (status, ready) = node.readyz().await;
    assert_eq!(status, 200, "{ready}");
    assert!(ready["checks"].get("database").is_none(), "{ready}");
    assert!(!node.dir.path().join("keys").exists());
    // 4. It serves the document to the token, and refuses a forged one.
    let resp = get_with_token(&node, &token).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), DOC);
    let forged = Forge::random().token("api_v0.0.1", json!({}));
    assert_eq!(get_with_token(&node, &forged).await.status(), 401);
    let ready = node.http.get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn a_resource_only_node_validates_with_a_directory_of_public_keys() {
    use ed25519_dalek::pkcs8::EncodePublicKey;
    // 1. An auth node and a client with a token.
    let (auth, token) = app_and_token().await;
    // 2. Its public key, as a SubjectPublicKeyInfo PEM, in a directory of its own.
    let public = tempfile::tempdir().unwrap();
    let pem = Forge::from_app(&auth)
        .key
        .verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    std::fs::write(public.path().join("auth.pem"), pem).unwrap();
    // 3. A resource-only node reads that directory and accepts the token.
    let node = spawn_app_from_toml(&resource_only_toml(&format!(
        "public_keys_dir = \"{}\"",
        public.path().display()
    )))
    .await;
    let resp = get_with_token(&node, &token).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), DOC);
}

#[tokio::test]
async fn a_key_exported_again_after_keys_generate_is_picked_up_by_the_jwks_file_watch() {
    // 1. An auth node, its exported JWKS, and a resource-only node trusting it.
    let (auth, _) = app_and_token().await;
    let out = tempfile::tempdir().unwrap();
    let jwks = out.path().join("jwks.json");
    let jwks_arg = jwks.to_str().unwrap();
    assert!(auth
        .cli(&["keys", "export-public", "--out", jwks_arg])
        .status
        .success());
    let node = spawn_app_from_toml(&resource_only_toml(&format!(
        "jwks_file = \"{}\"",
        jwks.display()
    )))
    .await;
    // 2. A new key is generated and exported (write-temp-and-rename).
    assert!(auth.cli(&["keys", "generate"]).status.success());
    assert!(auth
        .cli(&["keys", "export-public", "--out", jwks_arg])
        .status
        .success());
    // 3. A token signed with the new key is accepted within a second.
    let token = Forge::from_app(&auth).token("api_v0.0.1", json!({}));
    let started = std::time::Instant::now();
    let (node, token) = (&node, &token);
    let within = std::time::Duration::from_secs(2);
    wait_until(
        within,
        "the new key's token to be accepted",
        || async move { get_with_token(node, token).await.status() == 200 },
    )
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

// --- check-config on routes ----------------------------------------------------------------

/// Writes a resource-only config with the given routes (`{dir}` = a fresh directory holding a
/// valid `good.json` and an invalid `bad.json`) and runs `check-config` on it.
fn check_routes(routes: &str) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.json"), DOC).unwrap();
    std::fs::write(dir.path().join("bad.json"), "{\"about\": \n  oops}").unwrap();
    std::fs::write(dir.path().join("jwks.json"), r#"{"keys": []}"#).unwrap();
    let text = format!(
        "roles = [\"resource\"]\n[resource]\nissuer = \"http://steelcut.test\"\njwks_file = \"{{dir}}/jwks.json\"\n{routes}"
    )
    .replace("{dir}", &dir.path().display().to_string());
    let config = dir.path().join("steelcut.toml");
    std::fs::write(&config, text).unwrap();
    let out = steelcutd(&["check-config", "--config", config.to_str().unwrap()]);
    (out, dir)
}

#[test]
fn check_config_accepts_valid_routes() {
    let (out, _dir) = check_routes(
        "[[resource.routes]]\npath = \"/a\"\nfile = \"{dir}/good.json\"\n[[resource.routes]]\npath = \"/b\"\nfile = \"{dir}/good.json\"\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The stderr line of a failed `check-config` run that mentions `needle`.
fn failing_line(out: &std::process::Output, needle: &str) -> String {
    assert!(!out.status.success(), "check-config should have failed");
    let err = stderr(out);
    err.lines()
        .find(|l| l.contains(needle))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{err}"))
}

#[test]
fn check_config_reports_a_route_whose_file_is_missing() {
    let (out, dir) =
        check_routes("[[resource.routes]]\npath = \"/a\"\nfile = \"{dir}/missing.json\"\n");
    let line = failing_line(&out, "missing.json");
    assert!(line.contains("`[[resource.routes]]` /a `file`"), "{line}");
    assert!(
        line.contains(&dir.path().join("missing.json").display().to_string()),
        "{line}"
    );
}

#[test]
fn check_config_reports_a_route_whose_file_is_not_json_with_line_and_column() {
    let (out, dir) =
        check_routes("[[resource.routes]]\npath = \"/a\"\nfile = \"{dir}/bad.json\"\n");
    let line = failing_line(&out, "bad.json");
    assert!(line.contains("`[[resource.routes]]` /a `file`"), "{line}");
    assert!(
        line.contains(&dir.path().join("bad.json").display().to_string()),
        "{line}"
    );
    assert!(line.contains("line 2 column 3"), "{line}");
}

#[test]
fn check_config_reports_a_duplicate_route_path() {
    let (out, dir) = check_routes(
        "[[resource.routes]]\npath = \"/a\"\nfile = \"{dir}/good.json\"\n[[resource.routes]]\npath = \"/a\"\nfile = \"{dir}/other.json\"\n",
    );
    let line = failing_line(&out, "duplicate");
    assert!(line.contains("`[[resource.routes]]` /a `path`"), "{line}");
    assert!(
        line.contains(&dir.path().join("other.json").display().to_string()),
        "{line}"
    );
}

#[test]
fn check_config_reports_a_route_that_clashes_with_the_token_endpoint() {
    let (out, dir) =
        check_routes("[[resource.routes]]\npath = \"/token\"\nfile = \"{dir}/good.json\"\n");
    let line = failing_line(&out, "clashes");
    assert!(
        line.contains("`[[resource.routes]]` /token `path`"),
        "{line}"
    );
    assert!(
        line.contains(&dir.path().join("good.json").display().to_string()),
        "{line}"
    );
}

#[test]
fn check_config_reports_a_route_under_well_known() {
    let (out, dir) = check_routes(
        "[[resource.routes]]\npath = \"/.well-known/jwks.json\"\nfile = \"{dir}/good.json\"\n",
    );
    let line = failing_line(&out, "clashes");
    assert!(
        line.contains("`[[resource.routes]]` /.well-known/jwks.json `path`"),
        "{line}"
    );
    assert!(
        line.contains(&dir.path().join("good.json").display().to_string()),
        "{line}"
    );
}
