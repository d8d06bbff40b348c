//! Discovery (the JWKS and RFC 8414 metadata) and the signing keys the daemon starts with.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::*;

async fn get_json(app: &TestApp, path: &str) -> (reqwest::header::HeaderMap, Value) {
    let resp = app.http.get(app.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let headers = resp.headers().clone();
    (headers, resp.json().await.unwrap())
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("kid")
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn pem_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn the_jwks_publishes_each_key_as_an_okp_ed25519_jwk_without_its_private_part() {
    let app = spawn_app().await;
    let (headers, jwks) = get_json(&app, "/.well-known/jwks.json").await;
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{jwks}");
    let jwk = keys[0].as_object().unwrap();
    let mut members: Vec<&str> = jwk.keys().map(String::as_str).collect();
    members.sort_unstable();
    // RFC 8037: no `d`, nothing beyond the public members.
    assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x"], "{jwks}");
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(jwk["use"], "sig");
    let x = jwk["x"].as_str().unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    assert_eq!(b64.decode(x).unwrap().len(), 32);
    // The kid is the RFC 7638 thumbprint, so any node derives the same one.
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    assert_eq!(jwk["kid"], b64.encode(Sha256::digest(canonical.as_bytes())));
}

#[tokio::test]
async fn after_keys_generate_and_a_restart_both_keys_are_published_and_the_first_signs_on() {
    // 1. A running server with its first key, and a token signed by it.
    let mut app = spawn_app().await;
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    let (_, jwks) = get_json(&app, "/.well-known/jwks.json").await;
    let first = kids(&jwks);
    assert_eq!(first.len(), 1);
    let old_token = app.access_token(&client, "api_v0.0.1").await;
    assert_eq!(kid_of(&old_token), first[0]);

    // 2. The operator generates a new key with the real CLI.
    let out = app.cli(&["keys", "generate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let new_kid = stdout(&out).trim().to_owned();
    assert_ne!(new_kid, first[0]);

    // 3. After a restart both keys are published; the new one is pre-published, so the
    //    first keeps signing.
    app.restart().await;
    let (_, jwks) = get_json(&app, "/.well-known/jwks.json").await;
    let mut published = kids(&jwks);
    published.sort();
    let mut expected = vec![first[0].clone(), new_kid.clone()];
    expected.sort();
    assert_eq!(published, expected);
    let new_token = app.access_token(&client, "api_v0.0.1").await;
    assert_eq!(kid_of(&new_token), first[0]);

    // 4. The token signed before the rotation still verifies against the published JWKS.
    let old_jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == first[0].as_str())
        .unwrap();
    let key =
        jsonwebtoken::DecodingKey::from_ed_components(old_jwk["x"].as_str().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["api_v0.0.1"]);
    assert!(jsonwebtoken::decode::<Value>(&old_token, &key, &validation).is_ok());
}

#[tokio::test]
async fn the_authorization_server_metadata_describes_the_token_endpoint_and_jwks() {
    let app = spawn_app().await;
    let (_, meta) = get_json(&app, "/.well-known/oauth-authorization-server").await;
    assert_eq!(meta["issuer"], "http://steelcut.test");
    assert_eq!(meta["token_endpoint"], "http://steelcut.test/token");
    assert_eq!(
        meta["jwks_uri"],
        "http://steelcut.test/.well-known/jwks.json"
    );
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );
    let methods = meta["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(methods.contains(&"client_secret_basic".into()), "{meta}");
    assert!(methods.contains(&"client_secret_post".into()), "{meta}");
    // RFC 8414 section 2 makes response_types_supported required; this server has none.
    assert!(meta["response_types_supported"].is_array(), "{meta}");
}

#[tokio::test]
async fn a_custom_token_path_is_served_and_advertised() {
    let app = spawn_app_with(TestOptions {
        auth_extra: "token_path = \"/oauth2/token\"".into(),
        ..Default::default()
    })
    .await;
    let (_, meta) = get_json(&app, "/.well-known/oauth-authorization-server").await;
    assert_eq!(meta["token_endpoint"], "http://steelcut.test/oauth2/token");
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    let resp = app
        .http
        .post(app.url("/oauth2/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_first_start_generates_an_owner_only_key_in_an_owner_only_directory() {
    let mut app = spawn_app().await;
    let keys = app.dir.path().join("keys");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&keys), 0o700);
    let files = pem_files(&keys);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);
    let pem = std::fs::read_to_string(&files[0]).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    // The same key is reused on the next start, not replaced.
    app.restart().await;
    assert_eq!(pem_files(&keys), files);
    let (_, jwks) = get_json(&app, "/.well-known/jwks.json").await;
    assert_eq!(kids(&jwks).len(), 1);
}

#[tokio::test]
async fn a_private_key_readable_by_the_group_stops_the_start_with_the_fix() {
    // 1. A key directory whose key file is 0640.
    let mut app = spawn_app().await;
    app.stop().await;
    let key = pem_files(&app.dir.path().join("keys")).remove(0);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    // 2. The daemon refuses to start with a non-zero exit, naming the file and the command
    //    that fixes it.
    let config = app.config_path.to_string_lossy().into_owned();
    let out = steelcutd_env(
        &["serve", "--config", &config],
        &[],
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&key.display().to_string()), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
}

#[tokio::test]
async fn a_key_directory_that_cannot_be_created_stops_the_start_saying_to_run_keys_generate() {
    // 1. A configuration whose key directory sits below a regular file, so it can be neither
    //    read nor created (the tests run as root, so permission bits would not stop them).
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let db = format!("sqlite://{}", dir.path().join("steelcut.db").display());
    let path = write_config(dir.path(), &db, "127.0.0.1:0", "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!("dir = \"{}\"", dir.path().join("keys").display()),
        &format!("dir = \"{}\"", blocker.join("keys").display()),
    );
    std::fs::write(&path, text).unwrap();
    // 2. The daemon refuses to start and tells the operator what to run.
    let config = path.to_string_lossy().into_owned();
    let out = steelcutd_env(
        &["serve", "--config", &config],
        &[],
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("steelcutd keys generate"), "{err}");
    assert!(
        err.contains(&blocker.join("keys").display().to_string()),
        "{err}"
    );
}
