//! A resource-only node that gets its verification keys from an auth node's JWKS URL: fetched
//! at start, refreshed on an unknown kid (at most once per `jwks_min_refetch`), and kept when
//! the auth node is down.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::resource::{assert_refused, get_with_token, Forge, DOC};

const FETCHES: &str = "steelcut_jwks_fetches_total";

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

/// Remote JWKS fetches the node has made, successful or not.
async fn fetches(node: &TestApp) -> f64 {
    node.metric(FETCHES).await
}

#[tokio::test]
async fn a_resource_only_node_validates_tokens_from_an_auth_only_node() {
    // 1. An auth-only node issues a token.
    let auth = auth_node().await;
    let client = auth.add_client(&["api_v0.0.1"], &[]).await;
    let token = auth.access_token(&client, "api_v0.0.1").await;
    // 2. A resource-only node, pointed at its JWKS, fetched the keys once at start; it has
    //    neither a database nor signing keys to check.
    let node = resource_node(&auth.url("/.well-known/jwks.json"), 10, 300).await;
    let (status, ready) = node.readyz().await;
    assert_eq!(status, 200, "{ready}");
    assert!(ready["checks"].get("database").is_none(), "{ready}");
    assert!(ready["checks"].get("signing_keys").is_none(), "{ready}");
    assert_eq!(fetches(&node).await, 1.0);
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
    let client = auth.add_client(&["api_v0.0.1"], &[]).await;
    let old_token = auth.access_token(&client, "api_v0.0.1").await;
    let node = resource_node(&auth.url("/.well-known/jwks.json"), 1, 300).await;
    assert_eq!(get_with_token(&node, &old_token).await.status(), 200);
    let before = fetches(&node).await;
    // 2. A new key is generated and the auth node reloaded.
    let o = auth.cli(&["keys", "generate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    auth.reload().await.unwrap();
    // It is published at once but signs only after its pre-publication: a token it signs is
    // made here from its file.
    let new_token = Forge::from_app(&auth).token("api_v0.0.1", json!({}));
    assert_ne!(
        jsonwebtoken::decode_header(&new_token).unwrap().kid,
        jsonwebtoken::decode_header(&old_token).unwrap().kid
    );
    // 3. The unknown kid triggers a refetch as soon as the rate limit (1 s since the start-up
    //    fetch) allows: refused until then, then accepted, after exactly one more fetch.
    let (node_ref, new_token_ref) = (&node, &new_token);
    wait_until(
        Duration::from_secs(5),
        "the new token to be accepted",
        || async move { get_with_token(node_ref, new_token_ref).await.status() == 200 },
    )
    .await;
    let resp = get_with_token(&node, &new_token).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), DOC);
    assert_eq!(fetches(&node).await, before + 1.0);
    // 4. The old key is still published, so the old token stays valid.
    assert_eq!(get_with_token(&node, &old_token).await.status(), 200);
}

#[tokio::test]
async fn known_kid_tokens_still_validate_while_the_auth_node_is_down() {
    // 1. A token from an auth node (reached through a relay, so that its address stays
    //    nobody's when it goes away), accepted by a resource node refreshing every second.
    let mut auth = auth_node().await;
    let relay = Relay::start().await;
    relay.forward_to(auth.addr);
    let client = auth.add_client(&["api_v0.0.1"], &[]).await;
    let token = auth.access_token(&client, "api_v0.0.1").await;
    let node = resource_node(&relay.url("/.well-known/jwks.json"), 1, 1).await;
    assert_eq!(get_with_token(&node, &token).await.status(), 200);
    // 2. The auth node goes away, and periodic refreshes start failing.
    auth.stop().await;
    relay.refuse();
    let before = fetches(&node).await;
    let node_ref = &node;
    wait_until(
        Duration::from_secs(5),
        "two refresh attempts",
        || async move { fetches(node_ref).await >= before + 2.0 },
    )
    .await;
    // 3. The token still validates with the cached keys, and the node stays ready.
    let resp = get_with_token(&node, &token).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), DOC);
    assert_eq!(node.readyz().await.0, 200);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_causes_at_most_one_refetch_per_interval() {
    const INTERVAL: u64 = 3;
    // 1. A resource node whose rate limit has just let an unknown kid through: requests with
    //    one are sent until one causes a fetch (the first once INTERVAL has passed since the
    //    start-up fetch).
    let auth = auth_node().await;
    let node = resource_node(&auth.url("/.well-known/jwks.json"), INTERVAL, 300).await;
    let start_up = fetches(&node).await;
    let node_ref = &node;
    let within = Duration::from_secs(2 * INTERVAL);
    let primed = wait_for(within, "an unknown kid to cause a refetch", || async move {
        let token = unknown_kid_token();
        let sent = Instant::now();
        assert_eq!(get_with_token(node_ref, &token).await.status(), 401);
        (fetches(node_ref).await > start_up).then_some(sent)
    })
    .await;
    let before = fetches(&node).await;
    // 2. 1,000 requests, 50 at a time, each naming a kid nobody has.
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(50));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let http = node.http.clone();
        let url = node.url("/api_v0.0.1");
        let token = unknown_kid_token();
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
    // 3. That refetch started after `primed`: the flood may cause one more per INTERVAL
    //    since then, no more.
    let elapsed = primed.elapsed();
    let refetches = fetches(&node).await - before;
    let allowed = (elapsed.as_secs() / INTERVAL) as f64;
    assert!(
        refetches <= allowed,
        "{refetches} refetches in {elapsed:?} (allowed {allowed})"
    );
}

/// A token signed by a key nobody has, naming a kid nobody has.
fn unknown_kid_token() -> String {
    let mut forger = Forge::random();
    forger.kid = format!("made-up-{}", rand::random::<u64>());
    forger.token("api_v0.0.1", json!({}))
}

#[tokio::test]
async fn a_resource_node_started_before_its_auth_node_is_not_ready_until_it_has_keys() {
    // 1. The resource node starts while nothing answers at the JWKS URL (a relay that closes
    //    every connection); it starts anyway, not ready.
    let relay = Relay::start().await;
    let node = resource_node(&relay.url("/.well-known/jwks.json"), 1, 300).await;
    assert_eq!(node.readyz().await.0, 503);
    // 2. The auth node comes up behind that address.
    let auth = auth_node().await;
    relay.forward_to(auth.addr);
    let client = auth.add_client(&["api_v0.0.1"], &[]).await;
    let token = auth.access_token(&client, "api_v0.0.1").await;
    // 3. The resource node retries, becomes ready and accepts the token.
    let node_ref = &node;
    wait_until(
        Duration::from_secs(5),
        "the node to be ready",
        || async move { node_ref.readyz().await.0 == 200 },
    )
    .await;
    assert_eq!(get_with_token(&node, &token).await.status(), 200);
}
