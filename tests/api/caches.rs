//! The two caches on the hot paths, seen from outside: through HTTP, the admin CLI and the
//! cache series of `/metrics` (`steelcut_credential_cache_entries`, `..._hits_total`,
//! `steelcut_token_cache_entries`, `..._hits_total`).
//!
//! - The verified-credential cache at `POST /token`: a change made with the admin CLI (a new
//!   secret, a disabled or removed client) is seen within a second by every daemon, on SQLite
//!   and on PostgreSQL shared by two nodes; a wrong secret is never cached and never answered
//!   faster than a right one; the size is bounded; `credential_cache_secs = 0` turns it off.
//! - The verified-token cache at the resource routes: a repeated token is answered from it, but
//!   the route's checks (time, audience, scope) still run on every request; a changed key set
//!   empties it; the size is bounded; `token_cache_size = 0` turns it off.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::pg::{self, PgDatabase};
use crate::resource::{assert_refused, get, now, Forge, DOC};

pub const CC: (&str, &str) = ("grant_type", "client_credentials");

/// The bound every change must meet.
pub const WITHIN: Duration = Duration::from_secs(1);

pub const CREDENTIAL_ENTRIES: &str = "steelcut_credential_cache_entries";
const TOKEN_ENTRIES: &str = "steelcut_token_cache_entries";
const TOKEN_HITS: &str = "steelcut_token_cache_hits_total";

/// Asserts a 401 `invalid_client` answer (RFC 6749 section 5.2) to HTTP Basic credentials.
pub async fn assert_invalid_client(resp: reqwest::Response) {
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Basic realm="steelcut", charset="UTF-8""#
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client", "{body}");
}

/// Requests tokens for `client` from `node` until one is refused with `invalid_client`;
/// returns how long after `since` that request was sent. A refused request costs an argon2
/// verify, so the time it was sent, not answered, is when the change had taken effect.
pub async fn refused_after(node: &TestApp, client: &TestClient, since: Instant) -> Duration {
    let what = "the old credentials to be refused (5 s after the change)";
    wait_for(Duration::from_secs(5), what, || async move {
        let sent = Instant::now();
        let resp = node.token_basic(client, &[CC]).await;
        if resp.status() == 401 {
            assert_invalid_client(resp).await;
            return Some(sent - since);
        }
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        None
    })
    .await
}

/// Runs the real binary as the owning role (`--database-url`), as an operator would.
fn admin(node: &TestApp, args: &[&str]) -> std::process::Output {
    let out = node.cli(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

/// Two daemons on the same PostgreSQL database, both as the read-only role; the owner has
/// applied the migrations with `steelcutd migrate`.
async fn two_nodes_on_postgresql() -> (PgDatabase, TestApp, TestApp) {
    let db = tokio::task::spawn_blocking(pg::fresh_database)
        .await
        .unwrap();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a_config = write_config(a_dir.path(), &db.reader_url, "127.0.0.1:0", "");
    let b_config = write_config(b_dir.path(), &db.reader_url, "127.0.0.1:0", "");
    let config = a_config.to_string_lossy().into_owned();
    let out = steelcutd(&[
        "migrate",
        "--config",
        &config,
        "--database-url",
        &db.owner_url,
    ]);
    assert!(out.status.success(), "migrate: {}", stderr(&out));
    db.grant_read_only();
    let mut a = TestApp::launch(Mode::InProcess, a_dir, a_config).await;
    let mut b = TestApp::launch(Mode::InProcess, b_dir, b_config).await;
    a.admin_url = db.owner_url.clone();
    b.admin_url = db.owner_url.clone();
    (db, a, b)
}

/// Gets a token for `client` from every node, and checks each node now caches it. On
/// PostgreSQL the notification of the client's own `client add` may reach a node just after
/// its first verification and drop that entry once: tokens are asked for until it holds.
pub async fn warm(nodes: &[&TestApp], client: &TestClient) {
    for node in nodes {
        assert_eq!(node.token_basic(client, &[CC]).await.status(), 200);
        wait_until(
            Duration::from_secs(5),
            "the node to cache the client",
            || async move {
                assert_eq!(node.token_basic(client, &[CC]).await.status(), 200);
                node.metric(CREDENTIAL_ENTRIES).await == 1.0
            },
        )
        .await;
    }
}

/// Asserts that both nodes refuse `client` within a second of `since`, and keep refusing it.
pub async fn both_refuse_within_a_second(
    a: &TestApp,
    b: &TestApp,
    client: &TestClient,
    since: Instant,
) {
    let (on_a, on_b) = tokio::join!(
        refused_after(a, client, since),
        refused_after(b, client, since)
    );
    assert!(
        on_a < WITHIN,
        "node A accepted the old credentials for {on_a:?}"
    );
    assert!(
        on_b < WITHIN,
        "node B accepted the old credentials for {on_b:?}"
    );
    for node in [a, b] {
        assert_invalid_client(node.token_basic(client, &[CC]).await).await;
    }
}

// --- The verified-credential cache ------------------------------------------------------------

#[tokio::test]
async fn a_secret_rotated_with_the_cli_fails_within_a_second_on_two_nodes_sharing_postgresql() {
    // 1. Two daemons on one database; both have verified (and cached) the client's secret.
    let (_db, a, b) = two_nodes_on_postgresql().await;
    let old = a.add_client(&["api_v0.0.1"], &[]).await;
    warm(&[&a, &b], &old).await;

    // 2. The operator rotates the secret with the CLI, as the owning role.
    let out = admin(&a, &["client", "update", &old.id, "--new-secret"]);
    let rotated = Instant::now();
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let new = TestClient::from_cli_json(&printed);
    assert_eq!(new.id, old.id);

    // 3. Within a second neither node accepts the old secret, and it stays refused.
    both_refuse_within_a_second(&a, &b, &old, rotated).await;

    // 4. The new secret works on both.
    for node in [&a, &b] {
        assert_eq!(node.token_basic(&new, &[CC]).await.status(), 200);
    }
}

#[tokio::test]
async fn a_client_disabled_with_the_cli_gets_invalid_client_within_a_second_on_two_nodes() {
    // 1. Two daemons on one PostgreSQL database, both caching the client.
    let (_db, a, b) = two_nodes_on_postgresql().await;
    let client = a.add_client(&["api_v0.0.1"], &[]).await;
    warm(&[&a, &b], &client).await;
    // 2. `client update --disable`.
    admin(&a, &["client", "update", &client.id, "--disable"]);
    let disabled = Instant::now();
    // 3. Refused everywhere within a second.
    both_refuse_within_a_second(&a, &b, &client, disabled).await;
}

#[tokio::test]
async fn a_client_removed_with_the_cli_gets_invalid_client_within_a_second_on_two_nodes() {
    // 1. Two daemons on one PostgreSQL database, both caching the client.
    let (_db, a, b) = two_nodes_on_postgresql().await;
    let client = a.add_client(&["api_v0.0.1"], &[]).await;
    warm(&[&a, &b], &client).await;
    // 2. `client remove`.
    admin(&a, &["client", "remove", &client.id]);
    let removed = Instant::now();
    // 3. Refused everywhere within a second.
    both_refuse_within_a_second(&a, &b, &client, removed).await;
}

/// On SQLite: warms the cache, runs `args` (with the client id appended) through the CLI on
/// the daemon's own database file, and asserts the client is refused within a second.
async fn sqlite_change_refuses_within_a_second(args: &[&str]) {
    // 1. A daemon on SQLite caching the client.
    let app = spawn_app().await;
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    warm(&[&app], &client).await;
    // 2. The CLI changes the client in the same file.
    let mut all = args.to_vec();
    all.push(&client.id);
    let out = app.cli(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    let changed = Instant::now();
    // 3. The daemon refuses the old credentials within a second, and keeps refusing them.
    let after = refused_after(&app, &client, changed).await;
    assert!(after < WITHIN, "accepted for {after:?} after the change");
    assert_invalid_client(app.token_basic(&client, &[CC]).await).await;
}

#[tokio::test]
async fn a_client_disabled_with_the_cli_on_the_same_sqlite_file_is_refused_within_a_second() {
    sqlite_change_refuses_within_a_second(&["client", "update", "--disable"]).await;
}

#[tokio::test]
async fn a_client_removed_with_the_cli_on_the_same_sqlite_file_is_refused_within_a_second() {
    sqlite_change_refuses_within_a_second(&["client", "remove"]).await;
}

#[tokio::test]
async fn a_secret_rotated_with_the_cli_on_the_same_sqlite_file_fails_within_a_second() {
    sqlite_change_refuses_within_a_second(&["client", "update", "--new-secret"]).await;
}

#[tokio::test]
async fn a_wrong_secret_after_a_right_one_still_fails_and_is_never_faster_than_a_right_one() {
    // 1. A client whose right secret has been verified (and cached).
    let app = spawn_app().await;
    let right = app.add_client(&["api_v0.0.1"], &[]).await;
    let wrong = TestClient {
        id: right.id.clone(),
        secret: format!("{}x", right.secret),
    };
    assert_eq!(app.token_basic(&right, &[CC]).await.status(), 200);

    // 2. Right and wrong alternate, ten of each: every wrong one fails, every right one
    //    succeeds (a wrong secret does not evict the cached right one).
    let (mut right_times, mut wrong_times) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let started = Instant::now();
        let resp = app.token_basic(&right, &[CC]).await;
        right_times.push(started.elapsed());
        assert_eq!(resp.status(), 200);

        let started = Instant::now();
        let resp = app.token_basic(&wrong, &[CC]).await;
        wrong_times.push(started.elapsed());
        assert_invalid_client(resp).await;
    }
    assert_eq!(app.metric(CREDENTIAL_ENTRIES).await, 1.0);

    // 3. The fastest wrong answer is no faster than the fastest right one: a wrong secret
    //    always pays the full argon2 verify.
    let (fastest_right, fastest_wrong) = (
        right_times.iter().min().unwrap(),
        wrong_times.iter().min().unwrap(),
    );
    assert!(
        fastest_wrong >= fastest_right,
        "a wrong secret answered in {fastest_wrong:?}, a right one in {fastest_right:?}"
    );
}

#[tokio::test]
async fn the_credential_cache_stays_bounded_under_many_clients() {
    // 1. A cache of five, and twenty clients.
    let app = spawn_app_with(TestOptions {
        auth_extra: "credential_cache_size = 5".into(),
        ..TestOptions::default()
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(app.add_client(&["api_v0.0.1"], &[]).await);
    }
    // 2. Every client gets a token; the cache holds at most five of them.
    for client in &clients {
        assert_eq!(app.token_basic(client, &[CC]).await.status(), 200);
        assert!(app.metric(CREDENTIAL_ENTRIES).await <= 5.0);
    }
    assert_eq!(app.metric(CREDENTIAL_ENTRIES).await, 5.0);
    // 3. An evicted client is simply verified again.
    assert_eq!(app.token_basic(&clients[0], &[CC]).await.status(), 200);
    assert_eq!(app.metric(CREDENTIAL_ENTRIES).await, 5.0);
}

#[tokio::test]
async fn with_the_credential_cache_disabled_every_request_still_works() {
    // 1. credential_cache_secs = 0.
    let app = spawn_app_with(TestOptions {
        auth_extra: "credential_cache_secs = 0".into(),
        ..TestOptions::default()
    })
    .await;
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    // 2. Repeated requests all succeed, a wrong secret fails, and nothing is cached.
    for _ in 0..3 {
        assert_eq!(app.token_basic(&client, &[CC]).await.status(), 200);
    }
    let wrong = TestClient {
        id: client.id.clone(),
        secret: "wrong".into(),
    };
    assert_invalid_client(app.token_basic(&wrong, &[CC]).await).await;
    assert_eq!(app.metric(CREDENTIAL_ENTRIES).await, 0.0);
    // 3. A rotation takes effect with the very next request.
    let out = app.cli(&["client", "update", &client.id, "--new-secret"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_invalid_client(app.token_basic(&client, &[CC]).await).await;
}

// --- The verified-token cache ----------------------------------------------------------------

/// A node with both roles, `leeway_secs = 0` and three routes: `/a` (audience `a`), `/b`
/// (audience `b`) and `/a-reports` (audience `a`, scope `reports`). `resource_extra` is added
/// to `[resource]`.
async fn app_with_routes(resource_extra: &str) -> TestApp {
    let text = r#"roles = ["auth", "resource"]
[server]
listen = "127.0.0.1:0"
[database]
url = "sqlite://{dir}/steelcut.db"
[keys]
dir = "{dir}/keys"
[auth]
issuer = "http://steelcut.test"
[resource]
leeway_secs = 0
EXTRA
[[resource.routes]]
path = "/a"
file = "{dir}/protected_resource.json"
[[resource.routes]]
path = "/b"
file = "{dir}/protected_resource.json"
[[resource.routes]]
path = "/a-reports"
file = "{dir}/protected_resource.json"
audience = "a"
scope = "reports"
"#;
    spawn_app_from_toml(&text.replace("EXTRA", resource_extra)).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn invalid_token(description: &str) -> String {
    format!(r#"Bearer realm="steelcut", error="invalid_token", error_description="{description}""#)
}

#[tokio::test]
async fn a_repeated_token_is_answered_from_the_token_cache() {
    // 1. A token from the auth server for audience `a`.
    let app = app_with_routes("").await;
    let client = app.add_client(&["a"], &[]).await;
    let token = app.access_token(&client, "a").await;
    let hits = app.metric(TOKEN_HITS).await;
    // 2. The first request verifies the signature and remembers the token.
    let resp = get(&app, "/a", Some(&bearer(&token))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), DOC);
    assert_eq!(app.metric(TOKEN_HITS).await, hits);
    assert_eq!(app.metric(TOKEN_ENTRIES).await, 1.0);
    // 3. The next ones are answered from the cache, with the same document and headers.
    for n in 1..=3 {
        let resp = get(&app, "/a", Some(&bearer(&token))).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "private, no-cache");
        assert!(resp.headers().contains_key("etag"));
        assert_eq!(resp.text().await.unwrap(), DOC);
        assert_eq!(app.metric(TOKEN_HITS).await, hits + n as f64);
    }
    assert_eq!(app.metric(TOKEN_ENTRIES).await, 1.0);
}

#[tokio::test]
async fn an_expired_cached_token_is_refused() {
    // 1. A token that expires in two seconds (leeway 0), served and cached.
    let app = app_with_routes("").await;
    let exp = now() + 2;
    let token = Forge::from_app(&app).token("a", json!({"exp": exp}));
    assert_eq!(get(&app, "/a", Some(&bearer(&token))).await.status(), 200);
    let hits = app.metric(TOKEN_HITS).await;
    assert_eq!(get(&app, "/a", Some(&bearer(&token))).await.status(), 200);
    assert_eq!(
        app.metric(TOKEN_HITS).await,
        hits + 1.0,
        "served from the cache"
    );
    // 2. Once `exp` has passed, the cached token is refused as expired.
    wait_until(
        Duration::from_secs(5),
        "the token's exp to pass",
        || async { now() > exp },
    )
    .await;
    let resp = get(&app, "/a", Some(&bearer(&token))).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token has expired"),
        Some(&token),
    )
    .await;
}

#[tokio::test]
async fn a_cached_token_for_one_audience_is_refused_at_a_route_for_another() {
    // 1. A token for audience `a` with scope `read`, served at `/a` and so cached.
    let app = app_with_routes("").await;
    let client = app.add_client(&["a"], &["read"]).await;
    let token = app.access_token(&client, "a").await;
    assert_eq!(get(&app, "/a", Some(&bearer(&token))).await.status(), 200);
    assert_eq!(app.metric(TOKEN_ENTRIES).await, 1.0);
    let hits = app.metric(TOKEN_HITS).await;

    // 2. At `/b` it is found in the cache and still refused: wrong audience.
    let resp = get(&app, "/b", Some(&bearer(&token))).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token is not meant for this resource"),
        Some(&token),
    )
    .await;
    assert_eq!(app.metric(TOKEN_HITS).await, hits + 1.0);

    // 3. At `/a-reports` (same audience, scope `reports`) it lacks the scope: 403.
    let resp = get(&app, "/a-reports", Some(&bearer(&token))).await;
    assert_refused(
        resp,
        403,
        r#"Bearer realm="steelcut", error="insufficient_scope", error_description="the token lacks the scope this resource requires", scope="reports""#,
        Some(&token),
    )
    .await;
    assert_eq!(app.metric(TOKEN_HITS).await, hits + 2.0);

    // 4. At `/a` it is still served.
    assert_eq!(get(&app, "/a", Some(&bearer(&token))).await.status(), 200);
}

#[tokio::test]
async fn the_token_cache_stays_bounded() {
    // 1. A cache of three, and ten different valid tokens.
    let app = app_with_routes("token_cache_size = 3").await;
    let forge = Forge::from_app(&app);
    let tokens: Vec<String> = (0..10)
        .map(|i| forge.token("a", json!({"jti": format!("{i:032x}")})))
        .collect();
    // 2. Every one is served; the cache never holds more than three.
    for token in &tokens {
        assert_eq!(get(&app, "/a", Some(&bearer(token))).await.status(), 200);
        assert!(app.metric(TOKEN_ENTRIES).await <= 3.0);
    }
    assert!(app.metric(TOKEN_ENTRIES).await > 0.0);
    // 3. A token that was evicted is simply verified again.
    for token in &tokens {
        assert_eq!(get(&app, "/a", Some(&bearer(token))).await.status(), 200);
    }
    assert!(app.metric(TOKEN_ENTRIES).await <= 3.0);
}

#[tokio::test]
async fn with_the_token_cache_disabled_every_request_verifies_the_token() {
    let app = app_with_routes("token_cache_size = 0").await;
    let token = Forge::from_app(&app).token("a", json!({}));
    for _ in 0..3 {
        let resp = get(&app, "/a", Some(&bearer(&token))).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), DOC);
    }
    assert_eq!(app.metric(TOKEN_HITS).await, 0.0);
    assert_eq!(app.metric(TOKEN_ENTRIES).await, 0.0);
}

#[tokio::test]
async fn a_signing_key_removed_by_a_reload_stops_validating_its_cached_tokens_at_once() {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    // 1. A node with both roles serves (and caches) a token signed with its key.
    let mut app = app_with_routes("").await;
    let old_key = Forge::from_app(&app);
    let token = old_key.token("a", json!({}));
    assert_eq!(get(&app, "/a", Some(&bearer(&token))).await.status(), 200);
    assert_eq!(get(&app, "/a", Some(&bearer(&token))).await.status(), 200);
    assert_eq!(app.metric(TOKEN_ENTRIES).await, 1.0);

    // 2. A new key is generated, the old key file deleted, and the daemon reloaded.
    let out = app.cli(&["keys", "generate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let keys = app.dir.path().join("keys");
    for entry in std::fs::read_dir(&keys).unwrap() {
        let path = entry.unwrap().path();
        let pem = std::fs::read_to_string(&path).unwrap_or_default();
        let kid = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
            .map(|k| {
                steelcut::keys::PublicJwk::Okp {
                    x: k.verifying_key().to_bytes(),
                }
                .thumbprint()
            })
            .unwrap_or_default();
        if kid == old_key.kid {
            std::fs::remove_file(&path).unwrap();
        }
    }
    app.reload().await.unwrap();

    // 3. The very next request with the cached token is refused: unknown key.
    let resp = get(&app, "/a", Some(&bearer(&token))).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token was signed with an unknown key"),
        Some(&token),
    )
    .await;
    // 4. A token signed with the new key is served.
    let fresh = Forge::from_app(&app).token("a", json!({}));
    assert_ne!(Forge::from_app(&app).kid, old_key.kid);
    assert_eq!(get(&app, "/a", Some(&bearer(&fresh))).await.status(), 200);
}

#[tokio::test]
async fn a_key_removed_from_a_public_key_directory_stops_validating_cached_tokens_within_a_second()
{
    use ed25519_dalek::pkcs8::EncodePublicKey;
    // 1. A resource-only node trusting a directory with one public key; a token signed with it
    //    is served and cached.
    let public = tempfile::tempdir().unwrap();
    let (first, second) = (Forge::random(), Forge::random());
    let pem = |f: &Forge| {
        f.key
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap()
    };
    std::fs::write(public.path().join("first.pem"), pem(&first)).unwrap();
    let node = spawn_app_from_toml(&format!(
        r#"roles = ["resource"]
[server]
listen = "127.0.0.1:0"
[resource]
issuer = "http://steelcut.test"
public_keys_dir = "{}"
[[resource.routes]]
path = "/a"
file = "{{dir}}/protected_resource.json"
"#,
        public.path().display()
    ))
    .await;
    let token = first.token("a", json!({}));
    assert_eq!(get(&node, "/a", Some(&bearer(&token))).await.status(), 200);
    assert_eq!(get(&node, "/a", Some(&bearer(&token))).await.status(), 200);
    assert_eq!(node.metric(TOKEN_ENTRIES).await, 1.0);

    // 2. The key is replaced by another one.
    std::fs::write(public.path().join("second.pem"), pem(&second)).unwrap();
    std::fs::remove_file(public.path().join("first.pem")).unwrap();
    let removed = Instant::now();

    // 3. Within a second the cached token is refused, and a token of the new key served.
    let (node_ref, token_ref) = (&node, &token);
    let what = "the cached token to be refused (5 s after the key was removed)";
    let refused = wait_for(Duration::from_secs(5), what, || async move {
        let sent = Instant::now();
        let status = get(node_ref, "/a", Some(&bearer(token_ref))).await.status();
        if status == 401 {
            return Some(sent - removed);
        }
        assert_eq!(status, 200);
        None
    })
    .await;
    assert!(
        refused < WITHIN,
        "served for {refused:?} after the key was removed"
    );
    let resp = get(&node, "/a", Some(&bearer(&token))).await;
    assert_refused(
        resp,
        401,
        &invalid_token("the token was signed with an unknown key"),
        Some(&token),
    )
    .await;
    let fresh = second.token("a", json!({}));
    assert_eq!(get(&node, "/a", Some(&bearer(&fresh))).await.status(), 200);
}
