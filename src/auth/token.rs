//! `POST /token`: the client credentials grant (RFC 6749 section 4.4) with resource indicators
//! (RFC 8707), issuing RFC 9068 JWT access tokens signed with the key the rotation rules pick
//! (EdDSA, ES256 or RS256).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use secrecy::SecretString;

use super::client_auth::{self, BasicScratch, Credentials};
use super::error::{InternalError, TokenError};
use super::AuthState;
use crate::domain::{Resource, Scope, CLIENT_CREDENTIALS};
use crate::http::json;
use crate::http::request::{self, BodyError, Form};
use crate::http::response::{self, Body};
use crate::keys::Signer;
use crate::logfield::{self, Bounded};
use crate::store::clients::Client;
use crate::time::now_unix;

/// Claims of an access token (RFC 9068 section 2.2).
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    client_id: &'a str,
    aud: &'a [Resource],
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: [u8; 16],
    scope: Option<&'a str>,
}

impl Claims<'_> {
    /// The claims as JSON, laid out by hand: on the hot path of every token request, where
    /// serde's generic serializer cost more than the rest of the claims' work together.
    fn to_json(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        json::open(&mut out);
        json::string_field(&mut out, "iss", self.iss);
        json::string_field(&mut out, "sub", self.sub);
        json::string_field(&mut out, "client_id", self.client_id);
        audience_field(&mut out, "aud", self.aud);
        json::int_field(&mut out, "iat", self.iat);
        json::int_field(&mut out, "nbf", self.nbf);
        json::int_field(&mut out, "exp", self.exp);
        let mut jti = [0u8; 32];
        // 16 bytes always fit 32 hex digits.
        let jti = match hex::encode_to_slice(self.jti, &mut jti) {
            Ok(()) => std::str::from_utf8(&jti).unwrap_or_default(),
            Err(_) => "",
        };
        json::plain_string_field(&mut out, "jti", jti);
        if let Some(scope) = self.scope {
            json::string_field(&mut out, "scope", scope);
        }
        json::close(&mut out);
        out.into_bytes()
    }
}

/// `aud` is a string for one resource and an array for several (RFC 7519 section 4.1.3); so is
/// the response's `resource`.
fn audience_field(out: &mut String, name: &str, resources: &[Resource]) {
    match resources {
        [one] => json::string_field(out, name, one.as_str()),
        many => json::array_field(out, name, many.iter().map(Resource::as_str)),
    }
}

/// The success body (RFC 6749 section 5.1) plus `expires_on`, `not_before` and `resource`,
/// which clients of the original package read: the access token is signed with `key` straight
/// into its place in the body.
fn token_response(key: &Signer, lifetime: u64, claims: &Claims<'_>) -> Result<Vec<u8>, TokenError> {
    let claims_json = claims.to_json();
    let mut out = String::with_capacity(key.token_len(&claims_json) + 200);
    json::open(&mut out);
    // A compact JWS: base64url and dots, nothing to escape.
    json::key(&mut out, "access_token");
    out.push('"');
    key.append_jwt(&mut out, &claims_json)
        .map_err(InternalError::from)?;
    out.push('"');
    json::string_field(&mut out, "token_type", "Bearer");
    json::int_field(&mut out, "expires_in", lifetime);
    if let Some(scope) = claims.scope {
        json::string_field(&mut out, "scope", scope);
    }
    json::int_field(&mut out, "expires_on", claims.exp);
    json::int_field(&mut out, "not_before", claims.nbf);
    audience_field(&mut out, "resource", claims.aud);
    json::close(&mut out);
    Ok(out.into_bytes())
}

/// The outcome of a token request, for the request log.
pub struct Outcome {
    pub response: Response<Body>,
    /// The authenticated client, when authentication succeeded.
    pub client: Option<Arc<Client>>,
    /// `issued`, `throttled` or the RFC error code.
    pub label: &'static str,
}

/// Handles a request to the token endpoint that came from `peer` (the connection's address).
pub async fn handle<B>(state: &AuthState, req: Request<B>, peer: IpAddr) -> Outcome
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if req.method() != Method::POST {
        return Outcome {
            response: response::method_not_allowed("POST"),
            client: None,
            label: "method_not_allowed",
        };
    }
    let mut client = None;
    let result = issue(state, req, peer, &mut client).await;
    match result {
        Ok(response) => Outcome {
            response,
            client,
            label: "issued",
        },
        Err(e) => {
            match &e {
                // An outage is logged once by the store's health, not once per request.
                TokenError::Unavailable(cause) if cause.is_outage() => {
                    tracing::debug!(error = %bounded(cause), "token request refused: database unavailable")
                }
                TokenError::Unavailable(cause) => {
                    tracing::error!(error = %bounded(cause), "token request failed: client store error")
                }
                TokenError::Internal(cause) => {
                    tracing::error!(error = %bounded(cause), "token request failed")
                }
                // The description may quote the request (a grant type, a parameter name).
                other => tracing::debug!(error = %bounded(other), "token request refused"),
            }
            let label = e.label();
            Outcome {
                response: e.into_response(&state.config.realm),
                client,
                label,
            }
        }
    }
}

async fn issue<B>(
    state: &AuthState,
    req: Request<B>,
    peer: IpAddr,
    authenticated: &mut Option<Arc<Client>>,
) -> Result<Response<Body>, TokenError>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let address = request::client_address(peer, req.headers(), &state.trusted_proxies);
    let (headers, body) = read_request(state, req).await?;
    let form = Form::parse(&body);
    let mut scratch = BasicScratch::default();
    let credentials = check_form(&headers, &form, &mut scratch)?;
    let scope_param = form.single("scope").map_err(TokenError::repeated)?;

    let auth_started = std::time::Instant::now();
    let client = authenticate(state, credentials, address, auth_started).await;
    state
        .metrics
        .client_auth_seconds
        .observe(auth_started.elapsed());
    let client: &Client = authenticated.insert(client?);

    if !client.grant_types.iter().any(|g| g == CLIENT_CREDENTIALS) {
        return Err(TokenError::UnauthorizedClient(
            "this client may not use the client_credentials grant".into(),
        ));
    }
    let resources = select_resources(client, &form.all("resource"))?;
    let scopes = select_scopes(client, scope_param)?;
    let body = mint(state, client, &resources, &scopes)?;
    Ok(response::no_store(response::json_bytes(
        StatusCode::OK,
        body,
    )))
}

/// Reads the body of a form post (RFC 6749 section 4.4.2). The body must arrive within the
/// body deadline, and is not waited for once the daemon stops.
async fn read_request<B>(
    state: &AuthState,
    req: Request<B>,
) -> Result<(http::HeaderMap, Bytes), TokenError>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (parts, body) = req.into_parts();
    // Section 4.4.2: the parameters are sent form-encoded; anything else is malformed.
    if !request::has_content_type(&parts.headers, "application/x-www-form-urlencoded") {
        return Err(TokenError::InvalidRequest(
            "Content-Type must be application/x-www-form-urlencoded".into(),
        ));
    }
    let mut read = std::pin::pin!(request::read_body(body));
    // A token request's small body has almost always arrived with its head: then it is taken
    // at once, without arming the deadline's timer or a wait for shutdown.
    let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
    let body = match first {
        Poll::Ready(body) => body,
        Poll::Pending => {
            let read = tokio::time::timeout(state.body_timeout, read);
            tokio::select! {
                read = read => read.map_err(|_| TokenError::BodyTimeout(state.body_timeout))?,
                () = state.stopping.cancelled() => return Err(TokenError::ShuttingDown),
            }
        }
    };
    let body = body.map_err(|e| match e {
        BodyError::TooLarge => TokenError::TooLarge,
        BodyError::Read(m) => TokenError::InvalidRequest(m),
    })?;
    Ok((parts.headers, body))
}

/// Checks the grant type of `form` and takes the client's credentials from it or `headers`.
fn check_form<'a>(
    headers: &'a http::HeaderMap,
    form: &'a Form<'_>,
    scratch: &'a mut BasicScratch,
) -> Result<Credentials<'a>, TokenError> {
    let grant_type = form.single("grant_type").map_err(TokenError::repeated)?;
    let credentials = client_auth::extract(request::authorization(headers), form, scratch)?;
    match grant_type {
        None => Err(TokenError::InvalidRequest("grant_type is required".into())),
        Some(CLIENT_CREDENTIALS) => Ok(credentials),
        Some(other) => Err(TokenError::UnsupportedGrantType(format!(
            "grant type {:?} is not supported; use client_credentials",
            truncate(other)
        ))),
    }
}

/// Signs an access token for `client` and returns the success body (RFC 6749 section 5.1).
fn mint(
    state: &AuthState,
    client: &Client,
    resources: &[Resource],
    scopes: &[String],
) -> Result<Vec<u8>, TokenError> {
    let keys = state.keys();
    let now_ms = crate::time::now_millis();
    // Which key signs follows the clock: a successor takes over once it has been published
    // long enough, without a reload (see `keys::schedule`).
    let key = keys.signing(now_ms).ok_or(InternalError::NoSigningKey)?;
    let now = now_ms.div_euclid(1000);
    let lifetime = state.token_lifetime_secs();
    let scope = (!scopes.is_empty()).then(|| scopes.join(" "));
    let claims = Claims {
        iss: &state.config.issuer,
        sub: &client.client_id,
        client_id: &client.client_id,
        aud: resources,
        iat: now,
        nbf: now,
        exp: now + lifetime as i64,
        jti: rand::random(),
        scope: scope.as_deref(),
    };
    let body = token_response(key, lifetime, &claims)?;
    tracing::debug!(client_id = %client.client_id, kid = %key.kid(), "access token issued");
    Ok(body)
}

/// Looks the client up and verifies its secret. Unknown, disabled and wrong-secret clients get
/// the same answer after the same amount of hashing. A secret verified recently for this client
/// is answered from the credential cache (see [`super::cache`]).
async fn authenticate(
    state: &AuthState,
    credentials: Credentials<'_>,
    address: IpAddr,
    now: std::time::Instant,
) -> Result<Arc<Client>, TokenError> {
    let Credentials {
        client_id,
        secret,
        basic,
    } = credentials;
    let digest = state.cache.digest(&client_id, &secret);
    if let Some(client) = state
        .cache
        .lookup(&client_id, &digest, state.store.health(), now)
    {
        return Ok(client);
    }
    // Boxed: the database and argon2 futures are large, and a client seen before (the common
    // case) never needs them.
    Box::pin(authenticate_uncached(
        state,
        client_id.into_owned(),
        secret.to_secret(),
        basic,
        digest,
        address,
    ))
    .await
}

/// [`authenticate`] for credentials not in the cache: throttling, the database, argon2.
async fn authenticate_uncached(
    state: &AuthState,
    client_id: String,
    secret: SecretString,
    basic: bool,
    digest: [u8; 32],
    address: IpAddr,
) -> Result<Arc<Client>, TokenError> {
    // Past the cache: from here on an attempt costs an argon2 verify, which too many recent
    // failures for this id or address do not get.
    if let Err(throttled) = state.limiter.check(&client_id, address) {
        state.metrics.throttled(throttled.by.label());
        return Err(TokenError::Throttled(throttled));
    }
    let lookup_id = client_id.clone();
    // While the database is known to be down this fails at once (503), without waiting for a
    // connection. The counter is read with the row, to tag the cache entry.
    let (generation, client) = if lookup_id.len() <= 64 {
        state
            .store
            .run_if_up(move |s| s.find_client_at(&lookup_id))
            .await
            .map_err(TokenError::Unavailable)?
    } else {
        (i64::MIN, None)
    };
    let verified = verify(state, secret, client.as_ref()).await?;
    match (client, verified) {
        (Some(c), Some(until)) if c.enabled => {
            let c = Arc::new(c);
            state.cache.insert(c.clone(), digest, generation, until);
            Ok(c)
        }
        _ => {
            state.limiter.failed(&client_id, address);
            tracing::info!(
                client_id = %Bounded::new(&client_id, logfield::CLIENT_ID),
                %address,
                "client authentication failed"
            );
            Err(TokenError::InvalidClient {
                description: "client authentication failed".into(),
                basic,
            })
        }
    }
}

/// Checks `secret` against the client's hash, then, during a rotation overlap, against the
/// previous secret's (a wrong secret then costs two verifies). Returns whether it matched, and
/// for the previous secret until when (Unix seconds) it may be remembered. An unknown client
/// costs one verify against the dummy hash.
async fn verify(
    state: &AuthState,
    secret: SecretString,
    client: Option<&Client>,
) -> Result<Option<Option<i64>>, TokenError> {
    let verifier = &state.verifier;
    let hash = client.map(|c| c.secret_hash.clone());
    let previous = client
        .and_then(|c| c.previous_secret(now_unix()))
        .map(|(h, until)| (h.to_owned(), until));
    let Some((old_hash, until)) = previous else {
        let ok = verifier
            .verify(secret, hash)
            .await
            .map_err(InternalError::from)?;
        return Ok(ok.then_some(None));
    };
    if verifier
        .verify(secret.clone(), hash)
        .await
        .map_err(InternalError::from)?
    {
        return Ok(Some(None));
    }
    let ok = verifier
        .verify(secret, Some(old_hash))
        .await
        .map_err(InternalError::from)?;
    Ok(ok.then_some(Some(until)))
}

/// An error's text as it may go to the log: cut and escaped (see [`crate::logfield`]).
fn bounded(e: &dyn std::fmt::Display) -> String {
    Bounded::new(&e.to_string(), logfield::ERROR).to_string()
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// RFC 8707 section 2: every requested resource must be one the client may access; without a
/// `resource` parameter a client with exactly one resource gets that one.
fn select_resources<'c>(
    client: &'c Client,
    requested: &[&str],
) -> Result<Cow<'c, [Resource]>, TokenError> {
    if requested.is_empty() {
        return match client.resources.as_slice() {
            [_] => Ok(Cow::Borrowed(&client.resources)),
            [] => Err(TokenError::InvalidTarget(
                "this client has no resources".into(),
            )),
            _ => Err(TokenError::InvalidTarget(
                "this client may access several resources: name one with the resource parameter"
                    .into(),
            )),
        };
    }
    // One resource, named exactly as the client's: the usual request, valid by construction.
    if let [one] = requested {
        if let Some(resource) = client.resources.iter().find(|c| c.as_str() == *one) {
            return Ok(Cow::Borrowed(std::slice::from_ref(resource)));
        }
    }
    let mut out = BTreeSet::new();
    for r in requested {
        let resource = Resource::parse(r).map_err(|e| TokenError::InvalidTarget(e.to_string()))?;
        if !client.resources.contains(&resource) {
            return Err(TokenError::InvalidTarget(format!(
                "resource {:?} is not allowed for this client",
                truncate(r)
            )));
        }
        out.insert(resource);
    }
    Ok(Cow::Owned(out.into_iter().collect()))
}

/// RFC 6749 section 3.3: the requested scope must be a subset of the client's; without a
/// `scope` parameter the client gets all of its scopes.
fn select_scopes(client: &Client, requested: Option<&str>) -> Result<Vec<String>, TokenError> {
    let Some(requested) = requested else {
        return Ok(client.scopes.iter().map(|s| s.to_string()).collect());
    };
    let list = Scope::parse_list(requested).map_err(|e| TokenError::InvalidScope(e.to_string()))?;
    let mut out = BTreeSet::new();
    for s in list {
        if !client.scopes.contains(&s) {
            return Err(TokenError::InvalidScope(format!(
                "scope {:?} is not allowed for this client",
                truncate(s.as_str())
            )));
        }
        out.insert(s.to_string());
    }
    Ok(out.into_iter().collect())
}
