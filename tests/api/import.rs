//! `steelcutd client import --from-steelcut-oauth`: the clients of a real `stored_tokens` table,
//! as the original package keeps them (four varchar columns; argon2-cffi PHC strings at
//! m=65536, t=3, p=4; see the original's notes), move into steelcut's table with their ids and
//! hashes. A dry run writes nothing; refused rows are named with their reason; a second run
//! skips what exists, `--update` overwrites it; and the original secret then gets a token with
//! the original package's request shape.

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::helpers::*;
use crate::pg::{self, PgDatabase};
use crate::resource::{get_like_the_original, DOC};

/// The good client's id (32 lowercase hex characters, as the original made them).
const GOOD: &str = "0083c1b7e3a6ceeac4a4f47bd3a1b501";
const BAD_GRANT: &str = "1083c1b7e3a6ceeac4a4f47bd3a1b501";
const BAD_SECRET: &str = "2083c1b7e3a6ceeac4a4f47bd3a1b501";
const BAD_RESOURCE: &str = "3083c1b7e3a6ceeac4a4f47bd3a1b501";
const MALFORMED: &str = "0083C1B7-not-an-id";

/// The original's cost: argon2-cffi's defaults (64 MiB, three passes, four lanes).
const ORIGINAL_COST: steelcut::config::Argon2Params = steelcut::config::Argon2Params {
    memory_kib: 65_536,
    iterations: 3,
    parallelism: 4,
};

/// A steelcut-oauth database: `stored_tokens` as the original creates it, with one good client
/// on two rows (two resources) and one bad row of each kind. Returns the database and the good
/// client's original secret.
fn original_database() -> (PgDatabase, TestClient) {
    let db = pg::fresh_database();
    // `PRIVATE-` and 43 URL-safe characters, hashed as argon2-cffi does.
    let secret = steelcut::auth::password::generate_secret();
    let hash = steelcut::auth::password::hash_secret(&secret, ORIGINAL_COST).unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=65536,t=3,p=4$"),
        "{hash}"
    );
    let secret = secret.expose_secret().to_owned();
    assert!(
        secret.starts_with("PRIVATE-") && secret.len() == 8 + 43,
        "{secret}"
    );
    db.execute_as_owner(&format!(
        "CREATE TABLE stored_tokens (grant_type varchar, client_id varchar, \
                                     client_secret varchar, resource varchar); \
         INSERT INTO stored_tokens VALUES \
           ('client_credentials', '{GOOD}', '{hash}', 'api_v0.0.1'), \
           ('client_credentials', '{GOOD}', '{hash}', 'api_v2'), \
           ('client_credentials', '{MALFORMED}', '{hash}', 'api_v0.0.1'), \
           ('another grant type', '{BAD_GRANT}', '{hash}', 'api_v0.0.1'), \
           ('client_credentials', '{BAD_SECRET}', 'PRIVATE-stored-in-clear', 'api_v0.0.1'), \
           ('client_credentials', '{BAD_RESOURCE}', '{hash}', 'another resource');"
    ));
    (
        db,
        TestClient {
            id: GOOD.into(),
            secret,
        },
    )
}

/// Runs `client import` on `app` (as its owner) from `source` with `extra` arguments; the
/// report printed on stdout and what stderr said.
async fn import(app: &TestApp, source: &str, extra: &[&str]) -> (Value, String) {
    let mut args = vec!["client", "import", "--from-steelcut-oauth", source];
    args.extend_from_slice(extra);
    let out = app.cli_async(&args).await;
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    (serde_json::from_slice(&out.stdout).unwrap(), stderr(&out))
}

/// Asserts the four bad rows are reported with their ids and reasons, in the JSON and on
/// stderr.
fn assert_refused_rows(report: &Value, said: &str) {
    let refused = report["refused"].as_array().unwrap();
    let reason = |id: &str| -> String {
        refused
            .iter()
            .find(|r| r["client_id"] == id)
            .unwrap_or_else(|| panic!("{id} not refused: {report}"))["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(refused.len(), 4, "{report}");
    assert!(reason(MALFORMED).contains("client id"), "{report}");
    assert_eq!(
        reason(BAD_GRANT),
        r#"unknown grant type "another grant type""#
    );
    assert!(
        reason(BAD_SECRET).contains("not an argon2 PHC string"),
        "{report}"
    );
    assert!(reason(BAD_RESOURCE).contains("resource"), "{report}");
    for r in refused {
        let line = format!(
            "skipped row {}: {}",
            r["client_id"].as_str().unwrap(),
            r["reason"].as_str().unwrap()
        );
        assert!(said.lines().any(|l| l == line), "{line:?} not in:\n{said}");
    }
}

fn listed(app: &TestApp) -> Vec<Value> {
    let out = app.cli(&["client", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_imported_from_steelcut_oauth_keep_their_ids_and_secrets_and_get_tokens_the_original_way(
) {
    // 1. A steelcut-oauth database, and steelcutd (the real binary) on a database of its own.
    let (source, original) = tokio::task::spawn_blocking(original_database)
        .await
        .unwrap();
    let app = spawn_app_with(TestOptions {
        mode: Mode::Binary,
        backend: Backend::Postgres,
        ..TestOptions::default()
    })
    .await;
    let from = source.owner_url.as_str();

    // 2. A dry run reports the counts and the refused rows, and writes nothing.
    let (report, said) = import(&app, from, &["--dry-run"]).await;
    assert_eq!(report["dry_run"], true, "{report}");
    assert_eq!(report["rows_read"], 6, "{report}");
    assert_eq!(report["imported"], 1, "{report}");
    assert_eq!(report["updated"], 0, "{report}");
    assert_eq!(
        report["skipped_existing"],
        serde_json::json!([]),
        "{report}"
    );
    assert_refused_rows(&report, &said);
    assert!(listed(&app).is_empty(), "a dry run wrote clients");

    // 3. The import writes the good client: same id, same hash verbatim, both resources.
    let (report, said) = import(&app, from, &[]).await;
    assert_eq!(report["dry_run"], false, "{report}");
    assert_eq!(report["imported"], 1, "{report}");
    assert_refused_rows(&report, &said);
    let clients = listed(&app);
    assert_eq!(clients.len(), 1, "{clients:?}");
    let client = &clients[0];
    assert_eq!(client["client_id"], GOOD);
    assert_eq!(client["name"], "imported from steelcut-oauth");
    assert_eq!(
        client["grant_types"],
        serde_json::json!(["client_credentials"])
    );
    assert_eq!(
        client["resources"],
        serde_json::json!(["api_v0.0.1", "api_v2"])
    );
    assert_eq!(client["enabled"], true);
    let db = app.pg.as_ref().unwrap();
    let stored = db.query_as_superuser(&format!(
        "SELECT secret_hash AS value FROM clients WHERE client_id = '{GOOD}'"
    ));
    let original_hash = source.query_as_superuser(&format!(
        "SELECT client_secret AS value FROM stored_tokens WHERE client_id = '{GOOD}' LIMIT 1"
    ));
    assert_eq!(stored, original_hash);

    // 4. Run again, it skips the existing id and changes nothing.
    source.execute_as_owner(&format!(
        "UPDATE stored_tokens SET resource = 'api_v3' \
         WHERE client_id = '{GOOD}' AND resource = 'api_v2'"
    ));
    let (report, _) = import(&app, from, &[]).await;
    assert_eq!(report["imported"], 0, "{report}");
    assert_eq!(
        report["skipped_existing"],
        serde_json::json!([GOOD]),
        "{report}"
    );
    assert_eq!(
        listed(&app)[0]["resources"],
        serde_json::json!(["api_v0.0.1", "api_v2"])
    );

    // 5. With `--update` it takes the source's resources (and hash) again.
    let (report, _) = import(&app, from, &["--update"]).await;
    assert_eq!(report["updated"], 1, "{report}");
    assert_eq!(report["imported"], 0, "{report}");
    assert_eq!(
        listed(&app)[0]["resources"],
        serde_json::json!(["api_v0.0.1", "api_v3"])
    );

    // 6. A malformed `--table` is refused before anything is read.
    let out = app.cli(&[
        "client",
        "import",
        "--from-steelcut-oauth",
        from,
        "--table",
        "stored_tokens; DROP TABLE clients",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("must be an identifier"),
        "{}",
        stderr(&out)
    );
    assert_eq!(listed(&app).len(), 1);

    // 7. The ORIGINAL secret gets a token with the original package's request: a form with
    //    grant_type, client_id, client_secret and resource (client_secret_post).
    let resp = app
        .http
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", original.id.as_str()),
            ("client_secret", original.secret.as_str()),
            ("resource", "api_v0.0.1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["resource"], "api_v0.0.1", "{body}");
    let (expires_on, not_before) = (
        body["expires_on"].as_i64().unwrap(),
        body["not_before"].as_i64().unwrap(),
    );
    assert_eq!(
        expires_on - not_before,
        body["expires_in"].as_i64().unwrap()
    );
    assert!((not_before - crate::resource::now()).abs() <= 5, "{body}");
    // 8. ... and the token reads the route, as `client_request_resource` asks for it.
    let resp = get_like_the_original(&app, body["access_token"].as_str().unwrap()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), DOC);
    // A wrong secret for the imported client is refused.
    let wrong = TestClient {
        id: GOOD.into(),
        secret: format!("{}x", original.secret),
    };
    let resp = app
        .token_post(&wrong, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(resp.status(), 401);
}
