//! An auth node on a PostgreSQL hot standby, for real: a primary and a standby made with
//! `pg_basebackup -R` (see [`pg::start_primary_and_standby`]), the schema migrated and the
//! read-only role granted on the primary and replicated. The node (the real binary) reads the
//! standby: it says once that LISTEN does not exist there, and sees every change made on the
//! primary within a second plus the replication lag, through the replicated change counter.
//! `migrate` and the client commands that write refuse the standby and name the primary;
//! `client list` works there.
//!
//! The measured replication lag and latencies are printed (`cargo test standby --
//! --nocapture` shows them).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::caches::{refused_after, warm, CC, WITHIN};
use crate::fleet::{migrate, ms};
use crate::helpers::*;
use crate::pg::{self, PgDatabase, PrivateCluster};

/// How long the standby may take to replay a write (a bound for the test, not a measurement).
const REPLAY_TIMEOUT: Duration = Duration::from_secs(10);

const LIMITS: &str = "[auth.limits]\nclient_burst = 1000\naddress_burst = 1000";

/// A primary and its standby, a database migrated and granted on the primary, and the moment
/// the standby has replayed it all.
async fn replicated_database() -> (PrivateCluster, PrivateCluster, PgDatabase) {
    let (primary, standby) = tokio::task::spawn_blocking(pg::start_primary_and_standby)
        .await
        .unwrap();
    let db = tokio::task::block_in_place(|| {
        let db = primary.fresh_database();
        migrate(&db.owner_url);
        db.grant_read_only();
        standby.replayed(&primary, REPLAY_TIMEOUT);
        db
    });
    (primary, standby, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_node_on_a_hot_standby_sees_changes_made_on_the_primary_within_a_second_plus_the_replication_lag(
) {
    // 1. A primary and a hot standby; the real binary reads the standby as the read-only role,
    //    while the operator's CLI writes to the primary as the owner.
    let (primary, standby, db) = replicated_database().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &standby.rehost(&db.reader_url),
        "127.0.0.1:0",
        LIMITS,
    );
    let mut node = TestApp::launch(Mode::Binary, dir, config).await;
    node.admin_url = db.owner_url.clone();
    assert_eq!(node.readyz().await.0, 200);

    // 2. Its log says that LISTEN does not exist on a hot standby.
    node.wait_for_log(0, &["hot standby", "LISTEN"]).await;

    // 3. A client added on the primary with the CLI gets a token from the node within a
    //    second plus the replication lag of that write.
    let client = node.add_client(&["api_v0.0.1"], &[]).await;
    let added = Instant::now();
    let add_lag = tokio::task::block_in_place(|| standby.replayed(&primary, REPLAY_TIMEOUT));
    let issued = wait_for(Duration::from_secs(5), "a token for the new client", || {
        let (node, client) = (&node, &client);
        async move {
            let sent = Instant::now();
            let resp = node.token_basic(client, &[CC]).await;
            match resp.status().as_u16() {
                200 => Some(sent - added),
                401 => None,
                other => panic!("{other}: {}", resp.text().await.unwrap()),
            }
        }
    })
    .await;
    assert!(
        issued < WITHIN + add_lag,
        "the new client got its first token {issued:?} after `client add` (lag {add_lag:?})"
    );

    // 4. Cached on the node, then disabled on the primary: refused within a second plus the
    //    replication lag.
    warm(&[&node], &client).await;
    let out = node.cli(&["client", "update", &client.id, "--disable"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let disabled = Instant::now();
    let disable_lag = tokio::task::block_in_place(|| standby.replayed(&primary, REPLAY_TIMEOUT));
    let refused = refused_after(&node, &client, disabled).await;
    assert!(
        refused < WITHIN + disable_lag,
        "the disabled client was served for {refused:?} (lag {disable_lag:?})"
    );

    // 5. The log said it once, and the node stops cleanly.
    node.signal("TERM");
    assert_eq!(node.wait_exit().await, Some(0));
    let log = node.log();
    let said = log.lines().filter(|l| l.contains("hot standby")).count();
    assert_eq!(said, 1, "{log}");
    println!(
        "hot standby: replication lag {} after `client add`, first token {} after it; \
         lag {} after `client update --disable`, refused {} after it",
        ms(add_lag),
        ms(issued),
        ms(disable_lag),
        ms(refused)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_commands_given_a_hot_standby_say_to_run_them_against_the_primary_and_client_list_works_there(
) {
    // 1. A primary and a hot standby; a client added on the primary, and a steelcut-oauth
    //    table to import from; all of it replayed on the standby.
    let (primary, standby, db) = replicated_database().await;
    db.execute_as_owner(
        "CREATE TABLE stored_tokens (grant_type varchar, client_id varchar, \
         client_secret varchar, resource varchar)",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &standby.rehost(&db.reader_url),
        "127.0.0.1:0",
        "",
    );
    let config = config.to_str().unwrap();
    let out = steelcutd(&[
        "client",
        "add",
        "--name",
        "on the primary",
        "--resource",
        "api_v0.0.1",
        "--config",
        config,
        "--database-url",
        &db.owner_url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::task::block_in_place(|| standby.replayed(&primary, REPLAY_TIMEOUT));

    // 2. Every command that writes, given the standby's URL (as its owner), fails with exit
    //    code 1 and says to run it against the primary.
    let on_standby = standby.rehost(&db.owner_url);
    let writes: [&[&str]; 5] = [
        &["migrate"],
        &[
            "client",
            "add",
            "--name",
            "on the standby",
            "--resource",
            "api_v0.0.1",
        ],
        &["client", "update", &id, "--disable"],
        &["client", "remove", &id],
        &["client", "import", "--from-steelcut-oauth", &db.owner_url],
    ];
    for args in writes {
        let mut all = args.to_vec();
        all.extend(["--config", config, "--database-url", &on_standby]);
        let out = steelcutd(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("is a read-only hot standby") && err.contains("against the primary"),
            "{args:?}: {err}"
        );
    }

    // 3. The client is still there, enabled, and `client list` reads it from the standby
    //    (the configuration's URL, the read-only role).
    let out = steelcutd(&["client", "list", "--json", "--config", config]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["client_id"], id.as_str());
    assert_eq!(listed[0]["enabled"], true);
    let out = steelcutd(&["client", "list", "--config", config]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));
}
