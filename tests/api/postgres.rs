//! The client store on a real PostgreSQL cluster: least privilege (the daemon only reads),
//! migrations that only `steelcutd migrate` applies, and an outage the daemon rides out.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use serde_json::Value;

use crate::helpers::*;
use crate::pg;

const CC: (&str, &str) = ("grant_type", "client_credentials");
const WAIT: Duration = Duration::from_secs(60);

fn run_ok(args: &[&str]) -> String {
    let out = steelcutd_env(args, &[], WAIT);
    assert!(out.status.success(), "steelcutd {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Whether the `clients` table exists, asked as the owning role.
fn clients_table_exists(owner_url: &str) -> bool {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    let mut conn = diesel::PgConnection::establish(owner_url).unwrap();
    diesel::sql_query("SELECT to_regclass('public.clients') IS NOT NULL AS found")
        .get_result::<Found>(&mut conn)
        .unwrap()
        .found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_flow_runs_as_a_select_only_role_while_admin_commands_run_as_the_owner() {
    // 1. A fresh database; the daemon's config names the read-only role.
    let db = pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.reader_url, "127.0.0.1:0", "");
    let config = config.to_string_lossy().into_owned();

    // 2. The owner applies the migrations and registers a client (--database-url overrides the
    //    config for admin commands); the reader is then granted SELECT.
    let out = run_ok(&[
        "migrate",
        "--config",
        &config,
        "--database-url",
        &db.owner_url,
    ]);
    assert!(out.contains("applied"), "{out}");
    db.grant_read_only();
    let out = run_ok(&[
        "client",
        "add",
        "--config",
        &config,
        "--database-url",
        &db.owner_url,
        "--name",
        "Jane Doe",
        "--resource",
        "api_v0.0.1",
    ]);
    let json: Value = serde_json::from_str(&out).unwrap();
    let client = TestClient::from_cli_json(&json);

    // 3. The daemon, connected as the reader, issues tokens.
    let app = TestApp::launch(Mode::InProcess, dir, config.clone().into()).await;
    let resp = app
        .token_basic(&client, &[CC, ("resource", "api_v0.0.1")])
        .await;
    assert_eq!(resp.status(), 200);
    let resp = app.token_post(&client, &[CC]).await;
    assert_eq!(resp.status(), 200);
    let wrong = TestClient {
        id: client.id.clone(),
        secret: "PRIVATE-wrong".into(),
    };
    assert_eq!(app.token_basic(&wrong, &[CC]).await.status(), 401);

    // 4. The reader really may only read: an admin command as the reader fails, writes nothing.
    let out = steelcutd_env(
        &[
            "client",
            "add",
            "--config",
            &config,
            "--database-url",
            &db.reader_url,
            "--name",
            "x",
            "--resource",
            "api_v0.0.1",
        ],
        &[],
        WAIT,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    let list = run_ok(&[
        "client",
        "list",
        "--json",
        "--config",
        &config,
        "--database-url",
        &db.owner_url,
    ]);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn the_same_flow_works_through_spawn_app_on_postgresql() {
    let app = spawn_app_with(TestOptions {
        backend: Backend::Postgres,
        ..Default::default()
    })
    .await;
    let client = app.add_client(&["api_v0.0.1"], &["read"]).await;
    let resp = app.token_basic(&client, &[CC]).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["scope"], "read");
    // The admin CLI (as the owner) changes what the read-only daemon sees.
    let out = app.cli(&["client", "update", &client.id, "--disable"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(app.token_status_becomes(&client, &[CC], 401).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_pending_migrations_on_postgresql_until_steelcutd_migrate_runs() {
    // 1. A fresh, unmigrated database.
    let db = pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.reader_url, "127.0.0.1:0", "");
    let config = config.to_string_lossy().into_owned();

    // 2. serve refuses, says what to run, and leaves the schema alone.
    let out = steelcutd_env(&["serve", "--config", &config], &[], WAIT);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("pending migration"), "{err}");
    assert!(err.contains("steelcutd migrate"), "{err}");
    assert!(!clients_table_exists(&db.owner_url));

    // 3. The owner migrates; a second run has nothing to do.
    let out = run_ok(&[
        "migrate",
        "--config",
        &config,
        "--database-url",
        &db.owner_url,
    ]);
    assert!(out.contains("applied"), "{out}");
    let out = run_ok(&[
        "migrate",
        "--config",
        &config,
        "--database-url",
        &db.owner_url,
    ]);
    assert!(out.contains("up to date"), "{out}");
    assert!(clients_table_exists(&db.owner_url));

    // 4. Before SELECT is granted, serve names the real cause instead of asking for migrate.
    let out = steelcutd_env(&["serve", "--config", &config], &[], WAIT);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("permission denied"), "{err}");
    assert!(!err.contains("pending migration"), "{err}");

    // 5. With the grant, the daemon starts and serves tokens.
    db.grant_read_only();
    let run = run_ok(&[
        "client",
        "add",
        "--config",
        &config,
        "--database-url",
        &db.owner_url,
        "--name",
        "x",
        "--resource",
        "api_v0.0.1",
    ]);
    let json: Value = serde_json::from_str(&run).unwrap();
    let client = TestClient::from_cli_json(&json);
    let app = TestApp::launch(Mode::InProcess, dir, config.into()).await;
    assert_eq!(app.token_basic(&client, &[CC]).await.status(), 200);
}

#[tokio::test]
async fn an_admin_command_on_an_unmigrated_postgresql_database_says_to_run_migrate() {
    let db = pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.reader_url, "127.0.0.1:0", "");
    let config = config.to_string_lossy().into_owned();
    let out = steelcutd_env(
        &[
            "client",
            "list",
            "--config",
            &config,
            "--database-url",
            &db.owner_url,
        ],
        &[],
        WAIT,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("steelcutd migrate"),
        "{}",
        stderr(&out)
    );
    assert!(!clients_table_exists(&db.owner_url));
}

async fn token_once(app: &TestApp, client: &TestClient) -> reqwest::Response {
    let started = Instant::now();
    let resp = app.token_basic(client, &[CC]).await;
    // connect_timeout_secs = 1 in the config: an outage is answered promptly, never hangs.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_503_server_error_and_the_daemon_recovers_by_itself() {
    // 1. A private cluster: migrate and add a client as its superuser, then start the daemon.
    let mut cluster = tokio::task::spawn_blocking(pg::start_private_cluster)
        .await
        .unwrap();
    let url = cluster.superuser_url();
    let dir = tempfile::tempdir().unwrap();
    // Verified credentials are not served from memory during the outage here (see
    // `outage.rs` for that window): every request needs the database.
    let config = write_config(
        dir.path(),
        &url,
        "127.0.0.1:0",
        "serve_cached_when_db_down_secs = 0",
    );
    let config_arg = config.to_string_lossy().into_owned();
    run_ok(&["migrate", "--config", &config_arg]);
    let json: Value = serde_json::from_str(&run_ok(&[
        "client",
        "add",
        "--config",
        &config_arg,
        "--name",
        "x",
        "--resource",
        "api_v0.0.1",
    ]))
    .unwrap();
    let client = TestClient::from_cli_json(&json);
    let app = TestApp::launch(Mode::InProcess, dir, config).await;
    assert_eq!(token_once(&app, &client).await.status(), 200);

    // 2. The database goes away: /token answers 503 with an RFC-shaped body, every time.
    tokio::task::block_in_place(|| cluster.stop());
    // (Credentials verified a moment ago may be answered from memory for under a second, until
    // the daemon notices it can no longer confirm them with the database.)
    let (app_ref, client_ref) = (&app, &client);
    wait_until(
        Duration::from_secs(10),
        "/token to stop answering 200",
        || async move { token_once(app_ref, client_ref).await.status() != 200 },
    )
    .await;
    for _ in 0..3 {
        let resp = token_once(&app, &client).await;
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "server_error", "{body}");
        assert!(body["error_description"].is_string(), "{body}");
        assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    }
    // The process is still serving everything that does not need the database.
    let resp = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // 3. The database returns: the same request succeeds without restarting the daemon.
    tokio::task::block_in_place(|| cluster.start());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = 0;
    while Instant::now() < deadline {
        last = token_once(&app, &client).await.status().as_u16();
        if last == 200 {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(
        last, 200,
        "the daemon did not recover after the database came back"
    );
    for _ in 0..3 {
        assert_eq!(token_once(&app, &client).await.status(), 200);
    }
}
