//! `steelcutd token` and `steelcutd get`, run as the real binary against a running app.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use tempfile::TempDir;

use crate::helpers::*;

const RESOURCE: &str = "api_v0.0.1";

/// The environment of one user of the client commands: a private cache directory and,
/// optionally, a client secret in `STEELCUT_CLIENT_SECRET`.
struct User {
    home: TempDir,
    secret: Option<String>,
}

impl User {
    fn new(secret: Option<&str>) -> Self {
        Self {
            home: tempfile::tempdir().expect("temp dir"),
            secret: secret.map(str::to_owned),
        }
    }

    /// `$XDG_CACHE_HOME/steelcut/tokens.json`
    fn cache_file(&self) -> PathBuf {
        self.home.path().join("cache/steelcut/tokens.json")
    }

    /// Runs the real binary without blocking the runtime the app is served on.
    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_steelcutd"));
        cmd.args(args)
            .env_remove("STEELCUT_CONFIG")
            .env_remove("STEELCUT_CLIENT_SECRET")
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.home.path().join("cache"));
        if let Some(s) = &self.secret {
            cmd.env("STEELCUT_CLIENT_SECRET", s);
        }
        cmd.output().await.expect("run steelcutd")
    }

    /// `steelcutd token --token-url .. --client-id .. --resource api_v0.0.1 EXTRA...`
    async fn token(&self, app: &TestApp, client_id: &str, extra: &[&str]) -> Output {
        let url = app.url("/token");
        let mut args = vec![
            "token",
            "--token-url",
            &url,
            "--client-id",
            client_id,
            "--resource",
            RESOURCE,
        ];
        args.extend_from_slice(extra);
        self.run(&args).await
    }
}

/// The token a successful `token` run printed, after checking it printed only that.
fn printed_token(o: &Output) -> String {
    assert!(o.status.success(), "token failed: {}", stderr(o));
    let out = stdout(o);
    let token = out.strip_suffix('\n').expect("a trailing newline");
    assert!(!token.contains('\n'), "only the token is printed: {out:?}");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    token.to_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn assert_failed_with(o: &Output, needle: &str) {
    assert!(
        !o.status.success(),
        "expected a failure, got stdout {:?}",
        stdout(o)
    );
    assert!(
        stderr(o).contains(needle),
        "stderr lacks {needle:?}: {}",
        stderr(o)
    );
    assert_eq!(stdout(o), "", "nothing on stdout when failing");
}

#[tokio::test]
async fn token_prints_a_jwt_and_reuses_it_from_a_private_cache_until_the_margin() {
    // 1. A server, a client, and a user with the secret in the environment.
    let mut app = spawn_app().await;
    let client = app.add_client(&[RESOURCE], &[]).await;
    let user = User::new(Some(&client.secret));

    // 2. The first call prints a JWT and caches it in a private file in a private directory.
    let first = printed_token(&user.token(&app, &client.id, &[]).await);
    let cache = user.cache_file();
    assert_eq!(mode(&cache), 0o600);
    assert_eq!(mode(cache.parent().unwrap()), 0o700);
    let cached = std::fs::read_to_string(&cache).unwrap();
    assert!(cached.contains(&first));
    assert!(
        !cached.contains(&client.secret),
        "the cache never holds the secret"
    );

    // 3. The second call prints the same token: every issued token has a fresh `jti`, so an
    //    equal token can only come from the cache.
    assert_eq!(
        printed_token(&user.token(&app, &client.id, &[]).await),
        first
    );

    // 4. --no-cache asks the server again.
    let fresh = printed_token(&user.token(&app, &client.id, &["--no-cache"]).await);
    assert_ne!(fresh, first);

    // 5. A margin longer than the token's lifetime (3600 s) means the cached token is too
    //    close to expiry: a new one is fetched, and it replaces the old one in the cache.
    let renewed = printed_token(
        &user
            .token(&app, &client.id, &["--margin-secs", "4000"])
            .await,
    );
    assert_ne!(renewed, first);
    assert_ne!(renewed, fresh);

    // 6. With the server gone, the cached token is still handed out...
    app.stop().await;
    assert_eq!(
        printed_token(&user.token(&app, &client.id, &[]).await),
        renewed
    );

    // 7. ...while a request that must reach the server fails, naming the URL.
    let o = user.token(&app, &client.id, &["--no-cache"]).await;
    assert_failed_with(&o, &format!("cannot reach {}", app.url("/token")));
}

#[tokio::test]
async fn a_token_near_its_expiry_is_not_reused() {
    // 1. A server issuing tokens that live 60 s; the default margin is 60 s.
    let app = spawn_app_with(TestOptions {
        auth_extra: "token_lifetime_secs = 60".into(),
        ..Default::default()
    })
    .await;
    let client = app.add_client(&[RESOURCE], &[]).await;
    let user = User::new(Some(&client.secret));
    // 2. Each call gets a new token: none is ever more than the margin away from expiry.
    let first = printed_token(&user.token(&app, &client.id, &[]).await);
    let second = printed_token(&user.token(&app, &client.id, &[]).await);
    assert_ne!(first, second);
    // 3. With a smaller margin the cached one is good again.
    let third = printed_token(&user.token(&app, &client.id, &["--margin-secs", "10"]).await);
    assert_eq!(third, second);
}

#[tokio::test]
async fn different_requests_do_not_share_a_cache_entry() {
    // 1. A client allowed two resources and a scope.
    let app = spawn_app().await;
    let client = app
        .add_client(&[RESOURCE, "other"], &["read", "write"])
        .await;
    let user = User::new(Some(&client.secret));
    let url = app.url("/token");
    let token = |extra: Vec<&'static str>| {
        let mut args = vec!["token", "--token-url", &url, "--client-id", &client.id];
        args.extend(extra);
        let user = &user;
        async move { printed_token(&user.run(&args).await) }
    };
    // 2. Each distinct request gets its own token...
    let a = token(vec!["--resource", RESOURCE]).await;
    let b = token(vec!["--resource", "other"]).await;
    let ab = token(vec!["--resource", RESOURCE, "--resource", "other"]).await;
    let a_read = token(vec!["--resource", RESOURCE, "--scope", "read"]).await;
    let all = [&a, &b, &ab, &a_read];
    for (i, x) in all.iter().enumerate() {
        for y in &all[i + 1..] {
            assert_ne!(x, y);
        }
    }
    // 3. ...and asking again, in any order, finds it.
    assert_eq!(
        token(vec!["--resource", "other", "--resource", RESOURCE]).await,
        ab
    );
    assert_eq!(
        token(vec!["--resource", RESOURCE, "--scope", "read"]).await,
        a_read
    );
    assert_eq!(token(vec!["--resource", RESOURCE]).await, a);
}

#[tokio::test]
async fn a_wrong_secret_fails_with_the_servers_invalid_client_error() {
    let app = spawn_app().await;
    let client = app.add_client(&[RESOURCE], &[]).await;
    let user = User::new(Some("PRIVATE-not-the-secret"));
    let o = user.token(&app, &client.id, &[]).await;
    assert_failed_with(&o, "error: invalid_client: ");
    assert!(stderr(&o).contains("(HTTP 401)"), "{}", stderr(&o));
    assert!(!user.cache_file().exists(), "a refusal is not cached");
}

#[tokio::test]
async fn a_secret_on_the_command_line_is_refused() {
    let app = spawn_app().await;
    let client = app.add_client(&[RESOURCE], &[]).await;
    let user = User::new(None);
    let o = user
        .token(&app, &client.id, &["--client-secret", &client.secret])
        .await;
    assert_failed_with(&o, "--client-secret is refused");
    let err = stderr(&o);
    assert!(
        err.contains("ps") && err.contains("STEELCUT_CLIENT_SECRET"),
        "{err}"
    );
    assert!(err.contains("--client-secret-file"), "{err}");
}

#[tokio::test]
async fn no_secret_at_all_is_explained() {
    let app = spawn_app().await;
    let client = app.add_client(&[RESOURCE], &[]).await;
    let o = User::new(None).token(&app, &client.id, &[]).await;
    assert_failed_with(
        &o,
        "no client secret: set STEELCUT_CLIENT_SECRET or give --client-secret-file",
    );
}

#[tokio::test]
async fn the_secret_can_come_from_a_private_file() {
    // 1. The secret in a 0600 file, with the newline an editor leaves.
    let app = spawn_app().await;
    let client = app.add_client(&[RESOURCE], &[]).await;
    let user = User::new(None);
    let file = user.home.path().join("secret");
    std::fs::write(&file, format!("{}\n", client.secret)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = file.to_string_lossy().into_owned();
    // 2. It works.
    printed_token(
        &user
            .token(
                &app,
                &client.id,
                &["--client-secret-file", &path, "--no-cache"],
            )
            .await,
    );
    // 3. A file every user can read is refused.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = user
        .token(&app, &client.id, &["--client-secret-file", &path])
        .await;
    assert_failed_with(&o, "is readable by every user");
}

#[tokio::test]
async fn client_secret_post_is_available_for_servers_that_want_it() {
    let app = spawn_app().await;
    let client = app.add_client(&[RESOURCE], &[]).await;
    let user = User::new(Some(&client.secret));
    printed_token(
        &user
            .token(&app, &client.id, &["--auth-method", "post", "--no-cache"])
            .await,
    );
}

#[tokio::test]
async fn get_with_a_token_prints_the_protected_document() {
    let app = spawn_app().await;
    let client = app.add_client(&[RESOURCE], &[]).await;
    let token = app.access_token(&client, RESOURCE).await;
    let o = User::new(None)
        .run(&["get", &app.url("/api_v0.0.1"), "--token", &token])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    assert_eq!(
        doc,
        serde_json::json!({"about": "This is a protected resource"})
    );
}

#[tokio::test]
async fn get_with_a_token_url_fetches_a_token_through_the_cache_and_prints_the_document() {
    // 1. A client and a user with its secret.
    let app = spawn_app().await;
    let client = app.add_client(&[RESOURCE], &[]).await;
    let user = User::new(Some(&client.secret));
    let (token_url, resource_url) = (app.url("/token"), app.url("/api_v0.0.1"));
    let get = [
        "get",
        &resource_url,
        "--token-url",
        &token_url,
        "--client-id",
        &client.id,
        "--resource",
        RESOURCE,
    ];
    // 2. `get` prints the document.
    let o = user.run(&get).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    assert_eq!(doc["about"], "This is a protected resource");
    // 3. The token it used is the one `token` now finds in the cache.
    let cached = std::fs::read_to_string(user.cache_file()).expect("cache written by get");
    let token = printed_token(&user.token(&app, &client.id, &[]).await);
    assert!(cached.contains(&token));
}

#[tokio::test]
async fn get_replaces_a_cached_token_the_resource_server_refuses() {
    // 1. The cache holds a token for this request that is not valid (e.g. signed with a key
    //    the servers no longer know), with hours left.
    let app = spawn_app().await;
    let client = app.add_client(&[RESOURCE], &[]).await;
    let user = User::new(Some(&client.secret));
    let token_url = app.url("/token");
    let stale = serde_json::json!({"version": 1, "tokens": [{
        "token_url": token_url, "client_id": client.id, "resources": [RESOURCE], "scope": null,
        "access_token": "stale.stale.stale", "token_type": "Bearer",
        "expires_at": 4_000_000_000i64, "obtained_at": 0,
    }]});
    let cache = user.cache_file();
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    std::fs::write(&cache, stale.to_string()).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        printed_token(&user.token(&app, &client.id, &[]).await),
        "stale.stale.stale"
    );
    // 2. `get` is refused with it, fetches a fresh one and succeeds.
    let resource_url = app.url("/api_v0.0.1");
    let get = [
        "get",
        &resource_url,
        "--token-url",
        &token_url,
        "--client-id",
        &client.id,
        "--resource",
        RESOURCE,
    ];
    let o = user.run(&get).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("This is a protected resource"));
    // 3. The stale token is gone from the cache.
    let cached = std::fs::read_to_string(&cache).unwrap();
    assert!(!cached.contains("stale.stale.stale"), "{cached}");
}

#[tokio::test]
async fn get_with_a_bad_token_prints_the_bearer_error_and_fails() {
    let app = spawn_app().await;
    let o = User::new(None)
        .run(&["get", &app.url("/api_v0.0.1"), "--token", "not.a.token"])
        .await;
    assert_failed_with(&o, "invalid_token");
    assert!(stderr(&o).contains("(HTTP 401)"), "{}", stderr(&o));
}

#[tokio::test]
async fn get_without_any_token_source_says_what_to_give() {
    let app = spawn_app().await;
    let o = User::new(None).run(&["get", &app.url("/api_v0.0.1")]).await;
    assert_failed_with(&o, "give --token");
}

/// `client add` -> `token` -> `get`, all through the real binary.
async fn end_to_end(app: &TestApp) {
    // 1. An operator registers a client.
    let o = app.cli(&["client", "add", "--name", "e2e", "--resource", RESOURCE]);
    assert!(o.status.success(), "client add: {}", stderr(&o));
    let added: serde_json::Value =
        serde_json::from_str(&stdout(&o)).expect("client add prints JSON");
    let id = added["client_id"].as_str().expect("client_id").to_owned();
    let secret = added["client_secret"]
        .as_str()
        .expect("client_secret")
        .to_owned();
    // 2. The client gets a token with its secret from the environment.
    let user = User::new(Some(&secret));
    let token = printed_token(&user.token(app, &id, &[]).await);
    // 3. And reads the protected document with it.
    let o = user
        .run(&["get", &app.url("/api_v0.0.1"), "--token", &token])
        .await;
    assert!(o.status.success(), "get: {}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    assert_eq!(
        doc,
        serde_json::json!({"about": "This is a protected resource"})
    );
}

#[tokio::test]
async fn client_add_then_token_then_get_works_end_to_end_on_sqlite() {
    end_to_end(&spawn_app().await).await;
}

#[tokio::test]
async fn client_add_then_token_then_get_works_end_to_end_on_postgresql() {
    end_to_end(
        &spawn_app_with(TestOptions {
            backend: Backend::Postgres,
            ..Default::default()
        })
        .await,
    )
    .await;
}
