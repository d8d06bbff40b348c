//! A resource-only node that gets its verification keys from an auth node's JWKS URL: fetched
//! at start, refreshed on an unknown kid (at most once per `jwks_min_refetch`), and kept when
//! the auth node is down.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::resource::{assert_refused, get_with_token, Forge, DOC};

/// An auth-only node on SQLite.
async fn auth_node() -> TestApp {
    spawn_app_with(TestOptions {
        roles: r#"["auth"]"#,
        ..Default::default()
    })
    .await
}

/// A resource-only node (no database, no key) trusting `jwks_url`.
async fn resource_node(jwks_url: &str, min_refetch_secs: u64, refresh_secs: u64) -> TestApp {
    spawn_app_from_toml(&format!(
        r#"roles = ["resource"]
[server]
listen = "127.0.0.1:0"
[resource]
issuer = "http://steelcut.test"
jwks_url = "{jwks_url}"
jwks_min_refetch_secs = {min_refetch_secs}
jwks_refresh_secs = {refresh_secs}
[[resource.routes]]
path = "/api_v0.0.1"
file = "{{dir}}/protected_resource.json"
"#
    ))
    .await
}

fn fetches(node: &TestApp) -> u64 {
    node.state.resource.as_ref().unwrap().jwks_fetches()
}

/// Starts the auth node of `config` again, on `port`.
async fn restart_on(config: &Path, port: u16) -> TestApp {
    let text = std::fs::read_to_string(config).unwrap();
    let text = text.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(config, text).unwrap();
    start(config).await
}

#[tokio::test]
async fn a_resource_only_node_validates_tokens_from_an_auth_only_node() {
    // 1. An auth-only node issues a token.
    let auth = auth_node().await;
    let client = auth.add_client(&["api_v0.0.1"], &[]).await;
    let token = auth.access_token(&client, "api_v0.0.1").await;
    // 2. A resource-only node, pointed at its JWKS, fetched the keys once at start.
    let node = resource_node(&auth.url("/.well-known/jwks.json"), 10, 300).await;
    assert!(node.state.config.database.is_none());
    assert!(node.state.config.keys.is_none());
    assert_eq!(fetches(&node), 1);
    // 3. It serves the document to the token.
    let resp = get_with_token(&node, &token).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), DOC);
    // 4. A token the auth node did not sign is refused.
    let forged = Forge::random().token("api_v0.0.1", json!({}));
    assert_refused(
        get_with_token(&node, &forged).await,
        401,
        r#"Bearer realm="steelcut", error="invalid_token", error_description="the token was signed with an unknown key""#,
        Some(&forged),
    )
    .await;
}

#[tokio::test]
async fn a_key_added_on_the_auth_node_is_fetched_when_a_token_names_it() {
    // 1. An auth-only node, a client, and a resource-only node trusting its JWKS.
    let mut auth = auth_node().await;
    let port = auth.addr.port();
    let client = auth.add_client(&["api_v0.0.1"], &[]).await;
    let old_token = auth.access_token(&client, "api_v0.0.1").await;
    let node = resource_node(&auth.url("/.well-known/jwks.json"), 1, 300).await;
    assert_eq!(get_with_token(&node, &old_token).await.status(), 200);
    // 2. A new key is generated and the auth node restarts on the same port and key dir.
    let o = auth.cli(&["keys", "generate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    auth.stop().await;
    let _auth2 = restart_on(&auth.config_path, port).await;
    // The new key is published but pre-published: a token it signs is forged here.
    let new_token = Forge::from_app(&auth).token("api_v0.0.1", json!({}));
    assert_ne!(
        jsonwebtoken::decode_header(&new_token).unwrap().kid,
        jsonwebtoken::decode_header(&old_token).unwrap().kid
    );
    // 3. Once the rate limit since the start-up fetch has passed, the unknown kid triggers
    //    one refetch and the new token is accepted.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = fetches(&node);
    let resp = get_with_token(&node, &new_token).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), DOC);
    assert_eq!(fetches(&node), before + 1);
    // 4. The old key is still published, so the old token stays valid.
    assert_eq!(get_with_token(&node, &old_token).await.status(), 200);
}

#[tokio::test]
async fn known_kid_tokens_still_validate_while_the_auth_node_is_down() {
    // 1. A token from an auth node, accepted by a resource node refreshing every second.
    let mut auth = auth_node().await;
    let client = auth.add_client(&["api_v0.0.1"], &[]).await;
    let token = auth.access_token(&client, "api_v0.0.1").await;
    let node = resource_node(&auth.url("/.well-known/jwks.json"), 1, 1).await;
    assert_eq!(get_with_token(&node, &token).await.status(), 200);
    // 2. The auth node goes away, and periodic refreshes start failing.
    auth.stop().await;
    let before = fetches(&node);
    let deadline = Instant::now() + Duration::from_secs(5);
    while fetches(&node) < before + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fetches(&node) >= before + 2, "no refresh was attempted");
    // 3. The token still validates with the cached keys, and the node stays ready.
    let resp = get_with_token(&node, &token).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), DOC);
    let ready = node.http.get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_causes_at_most_one_refetch_per_interval() {
    const INTERVAL: u64 = 3;
    // 1. A resource node whose start-up fetch is older than the rate limit.
    let auth = auth_node().await;
    let node = resource_node(&auth.url("/.well-known/jwks.json"), INTERVAL, 300).await;
    tokio::time::sleep(Duration::from_millis(INTERVAL * 1000 + 100)).await;
    let before = fetches(&node);
    // 2. 1,000 requests, 50 at a time, each naming a kid nobody has.
    let started = Instant::now();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(50));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let http = node.http.clone();
        let url = node.url("/api_v0.0.1");
        let mut forger = Forge::random();
        forger.kid = format!("made-up-{}", rand::random::<u64>());
        let token = forger.token("api_v0.0.1", json!({}));
        tasks.spawn(async move {
            let status = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status();
            drop(permit);
            status
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 401);
    }
    let elapsed = started.elapsed();
    // 3. The first unknown kid refetched once; the rest waited for the interval to pass.
    let refetches = fetches(&node) - before;
    let allowed = 1 + elapsed.as_secs() / INTERVAL;
    assert!(
        (1..=allowed).contains(&refetches),
        "{refetches} refetches in {elapsed:?} (allowed {allowed})"
    );
}

#[tokio::test]
async fn a_resource_node_started_before_its_auth_node_is_not_ready_until_it_has_keys() {
    // 1. The resource node starts while nothing answers at the JWKS URL; it starts anyway.
    let port = free_port();
    let node = resource_node(
        &format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
        1,
        300,
    )
    .await;
    let ready = node.http.get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // 2. The auth node comes up on that port.
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("steelcut.db").display());
    let config = write_config(dir.path(), &database, &format!("127.0.0.1:{port}"), "");
    let mut auth = start(&config).await;
    auth.admin_url = database;
    let client = auth.add_client(&["api_v0.0.1"], &[]).await;
    let token = auth.access_token(&client, "api_v0.0.1").await;
    // 3. The resource node retries, becomes ready and accepts the token.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut status = 0;
    while Instant::now() < deadline {
        status = node
            .http
            .get(node.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(get_with_token(&node, &token).await.status(), 200);
}
