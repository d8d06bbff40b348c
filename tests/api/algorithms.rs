//! Every signing algorithm end to end: a node with `[keys] signing_alg` EdDSA, ES256 or RS256
//! issues tokens of that algorithm, publishes its key with `kty`, `alg`, `use` and `kid`, and
//! lists the algorithm in its metadata; the oauth2 crate, PyJWT (fetching the JWKS as
//! `PyJWKClient` does) and the built-in resource role accept its tokens; and the forged-token
//! matrix is refused by the resource role and by PyJWT for each algorithm, including a token
//! of another algorithm under the key's kid (each key verifies its own algorithm only).

use serde_json::{json, Value};
use steelcut::keys::{Alg, RsaBits, Signer};

use crate::helpers::*;
use crate::resource::{claims, get_with_token, now, DOC, ISSUER};
use crate::tools::{python, require_python_module};

pub const ALGS: [&str; 3] = ["EdDSA", "ES256", "RS256"];

/// A node with both roles whose keys sign with `alg`, and `keys_extra` in `[keys]`.
pub fn node_toml(alg: &str, keys_extra: &str) -> String {
    format!(
        r#"roles = ["auth", "resource"]
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 5
[database]
url = "sqlite://{{dir}}/steelcut.db"
[keys]
dir = "{{dir}}/keys"
signing_alg = "{alg}"
{keys_extra}
[auth]
issuer = "{ISSUER}"
[resource]
[[resource.routes]]
path = "/api_v0.0.1"
file = "{{dir}}/protected_resource.json"
"#
    )
}

/// The node's only key, loaded from its file.
pub fn node_key(app: &TestApp) -> Signer {
    let dir = app.dir.path().join("keys");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .collect();
    files.sort();
    let pem = std::fs::read(files.last().expect("a key file")).unwrap();
    Signer::from_pem(&pem).unwrap()
}

/// A fresh key of `alg` that nobody trusts.
pub fn stranger(alg: Alg) -> Signer {
    let der = steelcut::keys::signer::generate_der(alg, RsaBits::B2048).unwrap();
    Signer::from_pkcs8_der(&der).unwrap()
}

fn header(alg: &str, kid: &str) -> Value {
    json!({"alg": alg, "typ": "at+jwt", "kid": kid})
}

fn with(changes: Value) -> Vec<u8> {
    let mut c = claims("api_v0.0.1");
    for (k, v) in changes.as_object().unwrap() {
        match v {
            Value::Null => {
                c.as_object_mut().unwrap().remove(k);
            }
            v => c[k] = v.clone(),
        }
    }
    c.to_string().into_bytes()
}

/// The forged tokens for a node whose key is `key`, each with the description the resource
/// role answers.
pub fn forged_matrix(key: &Signer) -> Vec<(&'static str, String, &'static str)> {
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let kid = key.kid();
    let alg = key.alg().as_str();
    let sign = |h: Value, c: Vec<u8>| key.sign_with_header(&h, &c).unwrap();
    let mut out = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(header("none", kid).to_string().as_bytes()),
                b64(&with(json!({})))
            ),
            "the token is not signed with its key's algorithm (EdDSA, ES256 or RS256)",
        ),
        (
            "HS256 keyed with the public key",
            {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                h.typ = Some("at+jwt".into());
                h.kid = Some(kid.to_owned());
                let secret = key.public().to_json(kid).to_string();
                let claims: Value = serde_json::from_slice(&with(json!({}))).unwrap();
                jsonwebtoken::encode(
                    &h,
                    &claims,
                    &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
                )
                .unwrap()
            },
            "the token is not signed with its key's algorithm (EdDSA, ES256 or RS256)",
        ),
        (
            "typ JWT",
            sign(
                json!({"alg": alg, "typ": "JWT", "kid": kid}),
                with(json!({})),
            ),
            "the token is not a JWT access token (typ must be at+jwt)",
        ),
        (
            "another issuer",
            sign(
                header(alg, kid),
                with(json!({"iss": "https://evil.example"})),
            ),
            "the token was issued by another issuer",
        ),
        (
            "another audience",
            sign(header(alg, kid), with(json!({"aud": "api_v0.0.2"}))),
            "the token is not meant for this resource",
        ),
        (
            "expired",
            sign(
                header(alg, kid),
                with(json!({"iat": now() - 3600, "nbf": now() - 3600, "exp": now() - 31})),
            ),
            "the token has expired",
        ),
        (
            "not valid yet",
            sign(
                header(alg, kid),
                with(json!({"nbf": now() + 120, "exp": now() + 720})),
            ),
            "the token is not valid yet",
        ),
        (
            "nbf not a number",
            sign(header(alg, kid), with(json!({"nbf": "9999999999"}))),
            "the token lacks a required claim",
        ),
        (
            "no exp",
            sign(header(alg, kid), with(json!({"exp": null}))),
            "the token lacks a required claim",
        ),
        (
            "crit",
            sign(
                json!({"alg": alg, "typ": "at+jwt", "kid": kid, "crit": ["exp"]}),
                with(json!({})),
            ),
            "the token uses unsupported critical header parameters",
        ),
    ];
    let other = stranger(key.alg());
    out.push((
        "unknown kid",
        other.sign_jwt(&with(json!({}))).unwrap(),
        "the token was signed with an unknown key",
    ));
    out.push((
        "another key under the kid",
        other
            .sign_with_header(&header(alg, kid), &with(json!({})))
            .unwrap(),
        "the token signature is invalid",
    ));
    let real = sign(header(alg, kid), with(json!({})));
    let (head, sig) = real.rsplit_once('.').unwrap();
    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    bytes[5] ^= 1;
    out.push((
        "one signature bit flipped",
        format!("{head}.{}", b64(&bytes)),
        "the token signature is invalid",
    ));
    for a in Alg::ALL.into_iter().filter(|a| *a != key.alg()) {
        // A token of another algorithm, signed by a key of that algorithm, under our kid.
        let token = stranger(a)
            .sign_with_header(&header(a.as_str(), kid), &with(json!({})))
            .unwrap();
        out.push((
            "another algorithm under the kid",
            token,
            "the token is not signed with its key's algorithm (EdDSA, ES256 or RS256)",
        ));
    }
    out
}

fn invalid_token(description: &str) -> String {
    format!(r#"Bearer realm="steelcut", error="invalid_token", error_description="{description}""#)
}

async fn oauth2_token(app: &TestApp, client: &TestClient) -> String {
    use oauth2::TokenResponse;
    let oauth = oauth2::basic::BasicClient::new(oauth2::ClientId::new(client.id.clone()))
        .set_client_secret(oauth2::ClientSecret::new(client.secret.clone()))
        .set_token_uri(oauth2::TokenUrl::new(app.url("/token")).unwrap());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token = oauth
        .exchange_client_credentials()
        .add_extra_param("resource", "api_v0.0.1")
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("oauth2 exchange failed: {e:?}"));
    token.access_token().secret().clone()
}

#[tokio::test]
async fn every_algorithm_signs_publishes_and_verifies_and_refuses_the_forged_matrix() {
    for alg in ALGS {
        // 1. A node signing with `alg`; a client gets a token through the oauth2 crate.
        let app = spawn_app_from_toml(&node_toml(alg, "")).await;
        let client = app.add_client(&["api_v0.0.1"], &[]).await;
        let token = oauth2_token(&app, &client).await;
        let h = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(format!("{:?}", h.alg), alg);
        assert_eq!(h.typ.as_deref(), Some("at+jwt"));
        // 2. The JWKS publishes the key with kty, alg, use and kid; the metadata names alg.
        let jwks: Value = app
            .http
            .get(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "{jwks}");
        let key = node_key(&app);
        assert_eq!(keys[0]["kid"], key.kid());
        assert_eq!(h.kid.as_deref(), Some(key.kid()));
        assert_eq!(keys[0]["alg"], alg);
        assert_eq!(keys[0]["use"], "sig");
        assert_eq!(keys[0]["kty"], key.alg().kty());
        assert!(
            keys[0].get("d").is_none() && keys[0].get("p").is_none(),
            "{jwks}"
        );
        let meta: Value = app
            .http
            .get(app.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            meta["access_token_signing_alg_values_supported"],
            json!([alg])
        );
        // 3. The resource role accepts the token, and refuses every forged one.
        let resp = get_with_token(&app, &token).await;
        assert_eq!(resp.status(), 200, "{alg}");
        assert_eq!(resp.text().await.unwrap(), DOC);
        for (what, forged, description) in forged_matrix(&key) {
            let resp = get_with_token(&app, &forged).await;
            assert_eq!(resp.status(), 401, "{alg}: {what}");
            assert_eq!(
                resp.headers()["www-authenticate"],
                invalid_token(description).as_str(),
                "{alg}: {what}"
            );
        }
    }
}

/// Verifies each token as the PyJWT recipe does (`PyJWKClient` on the JWKS URL, the algorithm
/// pinned to the key's, `typ` checked by hand, the claims required) and prints one verdict per
/// token: `ok` or the exception's class.
const PYJWT: &str = r#"
import json, socket, sys
import jwt
socket.setdefaulttimeout(10)
jwks_url, alg, audience, issuer = sys.argv[1:5]
tokens = json.loads(sys.stdin.read()) if len(sys.argv) < 6 else json.loads(sys.argv[5])
client = jwt.PyJWKClient(jwks_url)
for token in tokens:
    try:
        header = jwt.get_unverified_header(token)
        if header.get("typ") not in ("at+jwt", "application/at+jwt"):
            raise jwt.InvalidTokenError("typ")
        key = client.get_signing_key_from_jwt(token)
        jwt.decode(token, key.key, algorithms=[alg], audience=audience, issuer=issuer,
                   options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]})
        print("ok")
    except Exception as e:
        print(type(e).__name__)
"#;

#[tokio::test]
async fn pyjwt_accepts_tokens_of_every_algorithm_and_refuses_the_forged_matrix() {
    require_python_module("jwt", "python3-jwt").await;
    require_python_module("cryptography", "python3-cryptography").await;
    for alg in ALGS {
        let app = spawn_app_from_toml(&node_toml(alg, "")).await;
        let client = app.add_client(&["api_v0.0.1"], &[]).await;
        let token = app.access_token(&client, "api_v0.0.1").await;
        let matrix = forged_matrix(&node_key(&app));
        let mut tokens = vec![token];
        tokens.extend(matrix.iter().map(|(_, t, _)| t.clone()));
        let verdicts = python(
            PYJWT,
            &[
                &app.url("/.well-known/jwks.json"),
                alg,
                "api_v0.0.1",
                ISSUER,
                &serde_json::to_string(&tokens).unwrap(),
            ],
        )
        .await;
        let verdicts: Vec<&str> = verdicts.lines().collect();
        assert_eq!(verdicts.len(), tokens.len(), "{verdicts:?}");
        assert_eq!(verdicts[0], "ok", "{alg}: PyJWT refused a steelcutd token");
        for ((what, _, _), verdict) in matrix.iter().zip(&verdicts[1..]) {
            assert_ne!(
                *verdict, "ok",
                "{alg}: PyJWT accepted the forged token ({what})"
            );
        }
    }
}
