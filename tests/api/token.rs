//! `POST /token` (RFC 6749 section 4.4).

use crate::helpers::*;

#[tokio::test]
async fn a_registered_client_gets_a_bearer_token_with_basic_authentication() {
    // 1. A running server and a registered client.
    let app = spawn_app().await;
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    // 2. The client asks for a token.
    let resp = app
        .token_basic(&client, &[("grant_type", "client_credentials"), ("resource", "api_v0.0.1")])
        .await;
    // 3. It gets one, never to be cached.
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["resource"], "api_v0.0.1");
    assert!(body["access_token"].as_str().is_some_and(|t| t.split('.').count() == 3));
}

#[tokio::test]
async fn the_same_flow_works_on_postgresql_as_a_read_only_role() {
    let app = spawn_app_with(TestOptions { backend: Backend::Postgres, ..Default::default() }).await;
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    let resp = app
        .token_basic(&client, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(resp.status(), 200);
}
