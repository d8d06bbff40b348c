//! A fleet on one PostgreSQL database, as the real binary: every client change reaches every
//! auth node within a second, whoever makes it (the CLI, or a DBA's plain SQL), through
//! LISTEN/NOTIFY and, when a node's listening connection is lost, through the change counter;
//! two nodes on one SQLite file see each other's CLI changes too; and a fleet of two auth nodes
//! and a resource-only node keeps serving through a client change and a key rotation.
//!
//! The measured latencies are printed (`cargo test fleet -- --nocapture` shows them).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::caches::{assert_invalid_client, refused_after, warm, CC, WITHIN};
use crate::helpers::*;
use crate::pg::{self, PgDatabase};
use crate::resource::{get_with_token, DOC, ISSUER};
use crate::rotation::{assert_none_refused, jwks_kids, kid_of, resource_toml, Traffic};

/// The listening connection's `application_name` in `pg_stat_activity`.
const LISTENER: &str = steelcut::store::listen::APPLICATION_NAME;

/// Failed authentications a test makes on purpose (polling for a refusal) must not be
/// throttled: every node gets generous buckets.
const LIMITS: &str = "[auth.limits]\nclient_burst = 1000\naddress_burst = 1000";

/// A fresh database on the shared cluster, migrated by its owner with `steelcutd migrate`, the
/// read-only role granted SELECT.
pub async fn migrated_database() -> PgDatabase {
    let db = tokio::task::spawn_blocking(pg::fresh_database)
        .await
        .unwrap();
    migrate(&db.owner_url);
    db.grant_read_only();
    db
}

/// `steelcutd migrate --database-url URL` (no configuration file needed).
pub fn migrate(owner_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("absent.toml");
    let out = steelcutd(&[
        "migrate",
        "--config",
        config.to_str().unwrap(),
        "--database-url",
        owner_url,
    ]);
    assert!(out.status.success(), "migrate: {}", stderr(&out));
}

/// `n` daemons (the real binary, both roles) reading `reader_url`; their admin commands run
/// as `owner_url`.
pub async fn binary_nodes(n: usize, reader_url: &str, owner_url: &str) -> Vec<TestApp> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), reader_url, "127.0.0.1:0", LIMITS);
        let mut node = TestApp::launch(Mode::Binary, dir, config).await;
        node.admin_url = owner_url.to_owned();
        nodes.push(node);
    }
    nodes
}

/// The process ids of the listening connections on `db` (sorted), as `pg_stat_activity` shows
/// them.
fn listener_pids(db: &PgDatabase) -> Vec<String> {
    let text = db.query_as_superuser(&format!(
        "SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') AS value \
         FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = '{LISTENER}'"
    ));
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Waits until `count` listening connections are open on `db`, none of them in `not`; their
/// pids.
async fn listeners(db: &PgDatabase, count: usize, not: &[String]) -> Vec<String> {
    let what = format!("{count} listening connections");
    wait_for(Duration::from_secs(15), &what, || async move {
        let pids = tokio::task::block_in_place(|| listener_pids(db));
        (pids.len() == count && pids.iter().all(|p| !not.contains(p))).then_some(pids)
    })
    .await
}

/// Asserts that both nodes refuse `client` within a second of `since` and keep refusing it;
/// how long after `since` each first refused it.
pub async fn refused_by_both(
    a: &TestApp,
    b: &TestApp,
    client: &TestClient,
    since: Instant,
) -> (Duration, Duration) {
    let (on_a, on_b) = tokio::join!(
        refused_after(a, client, since),
        refused_after(b, client, since)
    );
    assert!(on_a < WITHIN, "node A accepted {} for {on_a:?}", client.id);
    assert!(on_b < WITHIN, "node B accepted {} for {on_b:?}", client.id);
    for node in [a, b] {
        assert_invalid_client(node.token_basic(client, &[CC]).await).await;
    }
    (on_a, on_b)
}

pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disabled_or_deleted_with_plain_sql_is_refused_by_every_node_within_a_second() {
    // 1. Two daemons on one PostgreSQL database, as the role that may only read, each LISTENing.
    let db = migrated_database().await;
    let nodes = binary_nodes(2, &db.reader_url, &db.owner_url).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    listeners(&db, 2, &[]).await;

    // 2. A client gets tokens on both (now cached); a DBA disables it with plain SQL as the
    //    owner, without the CLI.
    let disabled = a.add_client(&["api_v0.0.1"], &[]).await;
    warm(&[a, b], &disabled).await;
    db.execute_as_owner(&format!(
        "UPDATE clients SET enabled = false WHERE client_id = '{}'",
        disabled.id
    ));
    let since = Instant::now();
    // 3. Both nodes refuse it within a second, and keep refusing it.
    let (disable_a, disable_b) = refused_by_both(a, b, &disabled, since).await;

    // 4. Likewise a client deleted with plain SQL.
    let deleted = b.add_client(&["api_v0.0.1"], &[]).await;
    warm(&[a, b], &deleted).await;
    db.execute_as_owner(&format!(
        "DELETE FROM clients WHERE client_id = '{}'",
        deleted.id
    ));
    let since = Instant::now();
    let (delete_a, delete_b) = refused_by_both(a, b, &deleted, since).await;

    // 5. The other clients are untouched.
    let other = a.add_client(&["api_v0.0.1"], &[]).await;
    for node in [a, b] {
        assert_eq!(node.token_basic(&other, &[CC]).await.status(), 200);
    }
    println!(
        "NOTIFY propagation (plain SQL, refused after): UPDATE node A {}, node B {}; \
         DELETE node A {}, node B {}",
        ms(disable_a),
        ms(disable_b),
        ms(delete_a),
        ms(delete_b)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_the_listening_connections_are_down_is_seen_within_a_second_through_the_change_counter(
) {
    // 1. Two daemons on one database, each with its listening connection; a client cached on
    //    both.
    let db = migrated_database().await;
    let nodes = binary_nodes(2, &db.reader_url, &db.owner_url).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let before = listeners(&db, 2, &[]).await;
    let client = a.add_client(&["api_v0.0.1"], &[]).await;
    warm(&[a, b], &client).await;

    // 2. In one transaction: both listening connections are terminated on the PostgreSQL side
    //    (waiting until their backends are gone), then the client is disabled. Its
    //    notification goes out at the commit, when no node listens: it is lost.
    db.execute_as_superuser(&format!(
        "BEGIN; \
         SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = '{LISTENER}'; \
         UPDATE clients SET enabled = false WHERE client_id = '{}'; \
         COMMIT;",
        client.id
    ));
    let since = Instant::now();

    // 3. Both nodes still refuse the client within a second: the change counter says so.
    let (on_a, on_b) = refused_by_both(a, b, &client, since).await;

    // 4. Both nodes open new listening connections, and a change is pushed through them again.
    let listening_again = Instant::now();
    listeners(&db, 2, &before).await;
    let reconnected = listening_again.elapsed();
    let next = a.add_client(&["api_v0.0.1"], &[]).await;
    warm(&[a, b], &next).await;
    db.execute_as_owner(&format!(
        "UPDATE clients SET enabled = false WHERE client_id = '{}'",
        next.id
    ));
    refused_by_both(a, b, &next, Instant::now()).await;
    println!(
        "change counter fallback (listeners terminated, refused after): node A {}, node B {}; \
         listeners back {} later",
        ms(on_a),
        ms(on_b),
        ms(reconnected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disabled_with_the_cli_is_refused_by_a_second_node_on_the_same_sqlite_file_within_a_second(
) {
    // 1. Two daemons (the real binary) on one SQLite file; a client cached on both.
    let a = spawn_app_with(TestOptions {
        mode: Mode::Binary,
        auth_extra: LIMITS.into(),
        ..TestOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &a.database_url, "127.0.0.1:0", LIMITS);
    let b = TestApp::launch(Mode::Binary, dir, config).await;
    let client = a.add_client(&["api_v0.0.1"], &[]).await;
    warm(&[&a, &b], &client).await;
    // 2. `client update --disable` with the second node's configuration.
    let out = b.cli(&["client", "update", &client.id, "--disable"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let since = Instant::now();
    // 3. Both refuse it within a second.
    let (on_a, on_b) = refused_by_both(&a, &b, &client, since).await;
    println!(
        "SQLite change counter (CLI, refused after): node A {}, node B {}",
        ms(on_a),
        ms(on_b)
    );
}

/// An auth-only node (the real binary) reading `reader_url`, with `keys_extra` in `[keys]`.
async fn auth_node(reader_url: &str, owner_url: &str, keys_extra: &str) -> TestApp {
    let toml = format!(
        r#"roles = ["auth"]
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 5
[database]
url = "{reader_url}"
[keys]
dir = "{{dir}}/keys"
{keys_extra}
[auth]
issuer = "{ISSUER}"
{LIMITS}
"#
    );
    let mut node = spawn_app_with(TestOptions {
        mode: Mode::Binary,
        toml: Some(toml),
        ..TestOptions::default()
    })
    .await;
    node.admin_url = owner_url.to_owned();
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_two_auth_nodes_and_a_resource_node_serves_through_a_client_change_and_a_key_rotation(
) {
    // 1. Two auth nodes with key directories of their own on one PostgreSQL database (node 1
    //    publishes a new key 3 s before it signs), and a resource-only node listing both nodes'
    //    JWKS URLs, refreshed every second.
    let db = migrated_database().await;
    let mut auth1 = auth_node(
        &db.reader_url,
        &db.owner_url,
        "publish_before_sign_secs = 3",
    )
    .await;
    let auth2 = auth_node(&db.reader_url, &db.owner_url, "").await;
    let resource = spawn_app_with(TestOptions {
        mode: Mode::Binary,
        toml: Some(resource_toml(&format!(
            "jwks_url = [\"{}\", \"{}\"]\njwks_refresh_secs = 1\njwks_min_refetch_secs = 1",
            auth1.url("/.well-known/jwks.json"),
            auth2.url("/.well-known/jwks.json")
        ))),
        ..TestOptions::default()
    })
    .await;
    assert_ne!(jwks_kids(&auth1).await, jwks_kids(&auth2).await);

    // 2. A client registered once gets a token from either auth node, and either token reads
    //    the route at the resource node.
    let client = auth1.add_client(&["api_v0.0.1"], &[]).await;
    for auth in [&auth1, &auth2] {
        let token = auth.access_token(&client, "api_v0.0.1").await;
        let resp = get_with_token(&resource, &token).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), DOC);
    }

    // 3. Steady traffic through both auth nodes to the resource node while auth node 1
    //    rotates its key: `keys generate`, then a reload; the new key signs 3 s later.
    let traffic: Vec<Arc<Traffic>> = [&auth1, &auth2]
        .iter()
        .map(|auth| {
            Arc::new(Traffic {
                http: auth.http.clone(),
                token_url: auth.url("/token"),
                client: TestClient {
                    id: client.id.clone(),
                    secret: client.secret.clone(),
                },
                reads: vec![resource.url("/api_v0.0.1")],
            })
        })
        .collect();
    let old_kid = kid_of(&traffic[0].token().await);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = traffic
        .iter()
        .map(|t| tokio::spawn(t.clone().run(stop.clone())))
        .collect();
    let out = auth1.cli(&["keys", "generate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let new_kid = stdout(&out).trim().to_owned();
    auth1.reload().await.unwrap();
    assert!(jwks_kids(&auth1).await.contains(&new_kid));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut new_tokens = 0;
    while new_tokens < 10 {
        assert!(Instant::now() < deadline, "the new key never signed");
        if kid_of(&traffic[0].token().await) == new_kid {
            new_tokens += 1;
        }
        tokio::time::sleep(POLL).await;
    }
    stop.store(true, Ordering::Release);
    let mut rounds = Vec::new();
    for task in tasks {
        rounds.extend(task.await.unwrap());
    }
    // 4. No read was refused, before, during or after the switch; both keys of node 1 were
    //    used.
    assert_none_refused(&rounds);
    for kid in [&old_kid, &new_kid] {
        assert!(rounds.iter().any(|r| &r.0 == kid), "no round with {kid}");
    }

    // 5. The client is disabled with the CLI on auth node 2's configuration: both auth nodes
    //    refuse it within a second.
    let out = auth2.cli(&["client", "update", &client.id, "--disable"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let since = Instant::now();
    let (on_1, on_2) = refused_by_both(&auth1, &auth2, &client, since).await;
    println!(
        "fleet: {} rounds through a rotation, none refused; disabled client refused by auth \
         node 1 after {}, auth node 2 after {}",
        rounds.len(),
        ms(on_1),
        ms(on_2)
    );
}
