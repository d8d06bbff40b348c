//! The admin CLI, run as the real `steelcutd` binary: clients, keys, their errors, and the whole
//! quick start (`serve`, `client add`, a token request, SIGTERM) as a user would do it.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use serde_json::Value;

use crate::helpers::*;

const CC: (&str, &str) = ("grant_type", "client_credentials");

fn ok_json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}; stderr:\n{}",
        out.status,
        stderr(out)
    );
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

fn failed(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure; stdout:\n{}",
        stdout(out)
    );
    assert_ne!(out.status.code(), Some(0));
    stderr(out)
}

/// `client add` through the real binary, returning its JSON and the credentials.
fn cli_add(app: &TestApp, extra: &[&str]) -> (Value, TestClient) {
    let mut args = vec!["client", "add", "--name", "Jane Doe"];
    args.extend_from_slice(extra);
    let json = ok_json(&app.cli(&args));
    let client = TestClient::from_cli_json(&json);
    (json, client)
}

fn list_json(app: &TestApp) -> Value {
    ok_json(&app.cli(&["client", "list", "--json"]))
}

#[derive(QueryableByName)]
struct StoredHash {
    #[diesel(sql_type = diesel::sql_types::Text)]
    secret_hash: String,
}

#[tokio::test]
async fn client_add_prints_the_credentials_once_as_json_and_they_work() {
    // 1. Register a client with two resources and two scopes.
    let app = spawn_app().await;
    let out = app.cli(&[
        "client",
        "add",
        "--name",
        "Jane Doe",
        "--resource",
        "api_v0.0.1",
        "--resource",
        "api_v2",
        "--scope",
        "read",
        "--scope",
        "write",
    ]);
    let json = ok_json(&out);
    // 2. The JSON has everything the operator hands to the client.
    let id = json["client_id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
    let secret = json["client_secret"].as_str().unwrap();
    let tail = secret.strip_prefix("PRIVATE-").expect("PRIVATE- prefix");
    assert_eq!(tail.len(), 43, "{secret}");
    assert!(
        tail.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{secret}"
    );
    // One field for the grant types, as `client show` and `client list --json` print it.
    assert_eq!(
        json["grant_types"],
        serde_json::json!(["client_credentials"])
    );
    assert!(json.get("grant_type").is_none(), "{json}");
    assert_eq!(
        json["resources"],
        serde_json::json!(["api_v0.0.1", "api_v2"])
    );
    assert_eq!(json["scopes"], serde_json::json!(["read", "write"]));
    assert_eq!(json["name"], "Jane Doe");
    assert!(
        stderr(&out).contains("cannot be shown again"),
        "{}",
        stderr(&out)
    );
    // 3. The credentials work at the token endpoint.
    let client = TestClient {
        id: id.to_owned(),
        secret: secret.to_owned(),
    };
    let resp = app
        .token_basic(&client, &[CC, ("resource", "api_v2"), ("scope", "write")])
        .await;
    assert_eq!(resp.status(), 200);
    // 4. Two clients never share an id or a secret.
    let (_, other) = cli_add(&app, &["--resource", "api_v0.0.1"]);
    assert_ne!(other.id, client.id);
    assert_ne!(other.secret, client.secret);
}

#[tokio::test]
async fn the_database_holds_only_an_argon2id_hash_of_the_secret() {
    // 1. Register a client through the CLI.
    let app = spawn_app().await;
    let (_, client) = cli_add(&app, &["--resource", "api_v0.0.1"]);
    // 2. Its row holds an argon2id PHC string with the OWASP parameters.
    let path = app.dir.path().join("steelcut.db");
    let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy()).unwrap();
    let row: StoredHash = diesel::sql_query("SELECT secret_hash FROM clients WHERE client_id = ?")
        .bind::<diesel::sql_types::Text, _>(&client.id)
        .get_result(&mut conn)
        .unwrap();
    assert!(
        row.secret_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        row.secret_hash
    );
    drop(conn);
    // 3. The secret's text appears in no file of the database (main file, WAL, shared memory).
    let mut checked = 0;
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("steelcut.db")
        {
            let bytes = std::fs::read(&path).unwrap();
            let needle = client.secret.as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "the secret is stored in clear in {}",
                path.display()
            );
            let tail = &needle["PRIVATE-".len()..];
            assert!(
                !bytes.windows(tail.len()).any(|w| w == tail),
                "{}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

#[tokio::test]
async fn client_update_rotates_the_secret_and_changes_resources_scopes_and_state() {
    // 1. A client registered with the CLI.
    let app = spawn_app().await;
    let (_, old) = cli_add(&app, &["--resource", "api_v0.0.1", "--scope", "read"]);
    assert_eq!(app.token_basic(&old, &[CC]).await.status(), 200);

    // 2. --new-secret prints a new secret once; the old one stops working, the new one works.
    let json = ok_json(&app.cli(&["client", "update", &old.id, "--new-secret"]));
    let new = TestClient::from_cli_json(&json);
    assert_eq!(new.id, old.id);
    assert_ne!(new.secret, old.secret);
    assert_eq!(app.token_status_becomes(&old, &[CC], 401).await, 401);
    assert_eq!(app.token_basic(&new, &[CC]).await.status(), 200);
    // The secret is not shown again afterwards.
    let shown = ok_json(&app.cli(&["client", "show", &old.id]));
    assert!(shown.get("client_secret").is_none(), "{shown}");

    // 3. --resource replaces the resources.
    let json = ok_json(&app.cli(&[
        "client",
        "update",
        &old.id,
        "--resource",
        "api_v2",
        "--resource",
        "api_v3",
    ]));
    assert_eq!(json["resources"], serde_json::json!(["api_v2", "api_v3"]));
    assert!(json.get("client_secret").is_none(), "{json}");
    // (A running daemon notices the change within a second, hence the polling.)
    let v3 = [CC, ("resource", "api_v3")];
    assert_eq!(app.token_status_becomes(&new, &v3, 200).await, 200);
    let resp = app
        .token_basic(&new, &[CC, ("resource", "api_v0.0.1")])
        .await;
    assert_eq!(resp.status(), 400);

    // 4. --scope replaces the scopes.
    let json = ok_json(&app.cli(&["client", "update", &old.id, "--scope", "write"]));
    assert_eq!(json["scopes"], serde_json::json!(["write"]));
    let read = [CC, ("resource", "api_v2"), ("scope", "read")];
    assert_eq!(app.token_status_becomes(&new, &read, 400).await, 400);
    let body: Value = app
        .token_basic(&new, &[CC, ("resource", "api_v2")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["scope"], "write");

    // 5. --disable refuses tokens, --enable allows them again.
    let json = ok_json(&app.cli(&["client", "update", &old.id, "--disable"]));
    assert_eq!(json["enabled"], false);
    let form = [CC, ("resource", "api_v2")];
    assert_eq!(app.token_status_becomes(&new, &form, 401).await, 401);
    let json = ok_json(&app.cli(&["client", "update", &old.id, "--enable"]));
    assert_eq!(json["enabled"], true);
    assert_eq!(app.token_status_becomes(&new, &form, 200).await, 200);
}

#[tokio::test]
async fn client_remove_deletes_the_client() {
    let app = spawn_app().await;
    let (_, client) = cli_add(&app, &["--resource", "api_v0.0.1"]);
    let out = app.cli(&["client", "remove", &client.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&client.id));
    assert_eq!(app.token_status_becomes(&client, &[CC], 401).await, 401);
    let err = failed(&app.cli(&["client", "show", &client.id]));
    assert!(err.contains("no client with id"), "{err}");
    assert_eq!(list_json(&app), serde_json::json!([]));
}

#[tokio::test]
async fn client_list_and_show_never_print_a_secret_or_a_hash() {
    // 1. Two clients.
    let app = spawn_app().await;
    let (_, a) = cli_add(&app, &["--resource", "api_v0.0.1", "--scope", "read"]);
    let (_, b) = cli_add(&app, &["--resource", "api_v2"]);
    // 2. The table lists both, by id and name.
    let out = app.cli(&["client", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("CLIENT_ID"), "{table}");
    for c in [&a, &b] {
        let line = table
            .lines()
            .find(|l| l.starts_with(&c.id))
            .expect("listed");
        assert!(line.contains("Jane Doe"), "{line}");
        assert!(!table.contains(&c.secret), "{table}");
    }
    assert!(!table.contains("$argon2"), "{table}");
    // 3. The JSON form has the same clients and no secret or hash either.
    let json = list_json(&app);
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let ids: Vec<&str> = list
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&a.id.as_str()) && ids.contains(&b.id.as_str()),
        "{json}"
    );
    for c in list {
        assert!(
            c.get("client_secret").is_none() && c.get("secret_hash").is_none(),
            "{c}"
        );
        assert_eq!(c["enabled"], true);
    }
    let text = json.to_string();
    assert!(
        !text.contains("$argon2") && !text.contains("PRIVATE-"),
        "{text}"
    );
    // 4. `client show` prints one client.
    let shown = ok_json(&app.cli(&["client", "show", &a.id]));
    assert_eq!(shown["client_id"], a.id.as_str());
    assert_eq!(shown["resources"], serde_json::json!(["api_v0.0.1"]));
    assert_eq!(shown["scopes"], serde_json::json!(["read"]));
    assert_eq!(
        shown["grant_types"],
        serde_json::json!(["client_credentials"])
    );
    let text = shown.to_string();
    assert!(
        !text.contains("$argon2") && !text.contains(&a.secret),
        "{text}"
    );
}

#[tokio::test]
async fn keys_generate_and_keys_list_show_each_keys_state_and_when_it_changes() {
    // 1. The first start made one key; generate two more.
    let app = spawn_app().await;
    let first = ok_kid(&app.cli(&["keys", "generate"]));
    let second = ok_kid(&app.cli(&["keys", "generate"]));
    assert_ne!(first, second);
    // 2. The table has a header and the three keys; the first key still signs, the new ones
    //    are published and say when they would sign.
    let out = app.cli(&["keys", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let header = text.lines().next().unwrap();
    for column in ["KID", "ALG", "STATE", "CREATED", "NEXT"] {
        assert!(header.contains(column), "{text}");
    }
    assert_eq!(text.lines().count(), 4, "{text}");
    let out = app.cli(&["keys", "list", "--json"]);
    let rows: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in &rows {
        let created = row["created"].as_str().unwrap();
        assert!(created.len() == 20 && created.ends_with('Z'), "{row}");
        assert_eq!(row["alg"], "EdDSA");
    }
    let state = |kid: &str| rows.iter().find(|r| r["kid"] == kid).unwrap().clone();
    let signing: Vec<&serde_json::Value> =
        rows.iter().filter(|r| r["state"] == "signing").collect();
    assert_eq!(signing.len(), 1, "{rows:?}");
    assert_ne!(signing[0]["kid"], first.as_str());
    assert_ne!(signing[0]["kid"], second.as_str());
    for kid in [&first, &second] {
        assert_eq!(state(kid)["state"], "published");
        assert_eq!(state(kid)["next_state"], "signing");
    }
}

fn ok_kid(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    let kid = stdout(out).trim().to_owned();
    assert_eq!(kid.len(), 43, "{kid}");
    kid
}

#[tokio::test]
async fn admin_errors_are_clear_exit_non_zero_and_write_nothing() {
    let app = spawn_app().await;
    let (_, client) = cli_add(&app, &["--resource", "api_v0.0.1"]);
    let before = list_json(&app);

    // 1. An unknown (well-formed) id, for each command that takes one.
    let unknown = "00000000000000000000000000000000";
    for args in [
        vec!["client", "show", unknown],
        vec!["client", "remove", unknown],
        vec!["client", "update", unknown, "--disable"],
    ] {
        let err = failed(&app.cli(&args));
        assert!(
            err.contains(&format!("no client with id {unknown}")),
            "{args:?}: {err}"
        );
    }
    // A malformed id is named as such.
    let err = failed(&app.cli(&["client", "show", "xyz"]));
    assert!(err.contains("32 lowercase hex"), "{err}");

    // 2. An empty name.
    let err = failed(&app.cli(&["client", "add", "--name", "  ", "--resource", "api_v0.0.1"]));
    assert!(err.contains("--name"), "{err}");

    // 3. An invalid resource string.
    let err = failed(&app.cli(&["client", "add", "--name", "x", "--resource", "a b"]));
    assert!(
        err.contains("--resource") && err.contains("\"a b\""),
        "{err}"
    );
    let err = failed(&app.cli(&["client", "update", &client.id, "--resource", "a b"]));
    assert!(err.contains("--resource"), "{err}");

    // 4. A database that cannot be reached: a PostgreSQL URL whose server socket (libpq's
    //    `host` parameter: a directory) does not exist.
    let nowhere = tempfile::tempdir().unwrap();
    let socket_dir = nowhere.path().display().to_string();
    let url = format!("postgres://steelcut:hunter2@localhost:5432/steelcut?host={socket_dir}");
    let started = Instant::now();
    let err = failed(&app.cli(&[
        "client",
        "add",
        "--name",
        "x",
        "--resource",
        "r",
        "--database-url",
        &url,
    ]));
    assert!(err.contains("database unavailable"), "{err}");
    assert!(err.contains(&socket_dir), "names where it looked: {err}");
    assert!(
        !err.contains("hunter2"),
        "the password is not printed: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    // 5. Nothing was written by any of the failed commands.
    assert_eq!(list_json(&app), before);
}

#[tokio::test]
async fn the_quick_start_works_with_the_real_binary_and_sigterm_stops_it_cleanly() {
    // 1. A config with a fresh SQLite path in a directory that does not exist yet, as
    //    config/dev.toml has.
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("var").join("steelcut.db");
    let db = format!("sqlite://{}", db_path.display());
    let config = write_config(dir.path(), &db, "127.0.0.1:0", "");

    // 2. `steelcutd serve --config F` as a child process, ready.
    let mut d = TestApp::launch(Mode::Binary, dir, config).await;

    // 3. serve created and migrated the SQLite database by itself, and made a signing key.
    {
        let mut conn = diesel::SqliteConnection::establish(&db_path.to_string_lossy()).unwrap();
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let count: Count = diesel::sql_query("SELECT COUNT(*) AS n FROM clients")
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(count.n, 0);
    }
    d.wait_for_log(0, &["generated a new signing key"]).await;

    // 4. `client add` with the same config prints the credentials.
    let json = ok_json(&d.cli(&[
        "client",
        "add",
        "--name",
        "Jane Doe",
        "--resource",
        "api_v0.0.1",
    ]));
    let (id, secret) = (
        json["client_id"].as_str().unwrap(),
        json["client_secret"].as_str().unwrap(),
    );

    // 5. What `curl -u ID:SECRET -d grant_type=client_credentials -d resource=...` does.
    let resp = d
        .http
        .post(d.url("/token"))
        .basic_auth(id, Some(secret))
        .form(&[CC, ("resource", "api_v0.0.1")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"]
        .as_str()
        .is_some_and(|t| t.split('.').count() == 3));

    // 6. SIGTERM stops it with exit code 0.
    d.signal("TERM");
    assert_eq!(d.wait_exit().await, Some(0), "{}", d.log());
    // The secret never reaches the log.
    assert!(!d.log().contains(secret), "{}", d.log());
}
