//! A PostgreSQL outage, seen from outside the real binary: requests that need the database are
//! refused at once (503, `Retry-After`, an RFC 6749 body) rather than after
//! `connect_timeout_secs`; credentials verified before the outage keep working for
//! `serve_cached_when_db_down_secs`, then not; `/readyz` answers at once and says why; the
//! daemon recovers by itself when the database returns; and the log says so once each way.
//!
//! The measured timings are printed (`cargo test outage -- --nocapture` shows them).
//!
//! Connections opened before an outage outlive it in the pool; the store checks each on the way
//! out, so after the database returns none of them fails a request
//! ([`connections_opened_before_an_outage_fail_no_request_after_it`], with the default pool).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;
use crate::pg;

const CC: (&str, &str) = ("grant_type", "client_credentials");
/// `[auth] serve_cached_when_db_down_secs`.
const WINDOW: Duration = Duration::from_secs(3);
/// Every answer during the outage must come far below `connect_timeout_secs = 5`.
const PROMPT: Duration = Duration::from_secs(1);

/// A token request and how long its answer took.
async fn timed_token(app: &TestApp, client: &TestClient) -> (reqwest::Response, Duration) {
    let sent = Instant::now();
    let resp = app.token_basic(client, &[CC]).await;
    (resp, sent.elapsed())
}

/// `/readyz` and how long it took.
async fn timed_readyz(app: &TestApp) -> (u16, Value, Duration) {
    let sent = Instant::now();
    let (status, body) = app.readyz().await;
    (status, body, sent.elapsed())
}

/// Asserts the RFC 6749 section 5.2 answer to a request that needs the database while it is
/// down: 503, `Retry-After`, `no-store`, `{"error": "server_error", "error_description"}`.
async fn assert_unavailable(resp: reqwest::Response) {
    assert_eq!(resp.status(), 503);
    let retry_after = resp.headers()["retry-after"].to_str().unwrap().to_owned();
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s > 0),
        "Retry-After: {retry_after}"
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "server_error", "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
}

/// The `p`-th percentile (0..=100) of `times`, nearest rank.
fn percentile(times: &[Duration], p: usize) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_refused_at_once_ridden_out_from_memory_and_recovered_from() {
    // 1. The real binary on a database of a private cluster (the daemon as a role that may
    //    only read), with a window of three seconds and a five-second connect timeout.
    let mut cluster = tokio::task::spawn_blocking(pg::start_private_cluster)
        .await
        .unwrap();
    let db = tokio::task::block_in_place(|| cluster.fresh_database());
    let mut app = spawn_app_with(TestOptions {
        mode: Mode::Binary,
        backend: Backend::PostgresDb(db),
        database_extra: "connect_timeout_secs = 5".into(),
        auth_extra: format!("serve_cached_when_db_down_secs = {}", WINDOW.as_secs()),
        ..TestOptions::default()
    })
    .await;
    // Two clients registered with the CLI: W is verified (and so cached) before the outage,
    // C is cold.
    let warm = app.add_client(&["api_v0.0.1"], &[]).await;
    let cold = app.add_client(&["api_v0.0.1"], &[]).await;
    assert_eq!(app.token_basic(&warm, &[CC]).await.status(), 200);
    assert_eq!(
        app.metric("steelcut_credential_cache_entries").await,
        1.0,
        "W is cached"
    );
    assert_eq!(app.readyz().await.0, 200);

    // 2. PostgreSQL stops. The daemon notices through its probe: /readyz says so.
    let before_stop = Instant::now();
    tokio::task::block_in_place(|| cluster.stop());
    let stopped = before_stop.elapsed();
    let app_ref = &app;
    wait_until(
        Duration::from_secs(10),
        "/readyz to report the database down",
        || async {
            let (status, body) = app_ref.readyz().await;
            status == 503 && body["checks"]["database"] == false
        },
    )
    .await;
    let noticed = before_stop.elapsed();

    // 3. During the outage: C is refused at once, every time; W is answered from memory while
    //    the window lasts (its end counted from the moment the daemon saw the database go,
    //    which is after `before_stop`); /readyz answers at once.
    let (mut cold_times, mut ready_times, mut warm_served) = (Vec::new(), Vec::new(), 0);
    for _ in 0..50 {
        let (resp, took) = timed_token(&app, &cold).await;
        assert!(took < PROMPT, "C answered in {took:?}");
        assert_unavailable(resp).await;
        cold_times.push(took);

        let sent = before_stop.elapsed();
        if sent + Duration::from_millis(500) < WINDOW {
            let (resp, took) = timed_token(&app, &warm).await;
            assert_eq!(resp.status(), 200, "W at {sent:?} after the stop");
            assert!(took < PROMPT, "W answered in {took:?}");
            warm_served += 1;
        }

        let (status, body, took) = timed_readyz(&app).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["checks"]["database"], false, "{body}");
        assert!(took < PROMPT, "/readyz answered in {took:?}");
        ready_times.push(took);
    }
    assert!(
        warm_served > 0,
        "the outage was noticed only {noticed:?} after the stop: W was never tried in its window"
    );

    // 4. After the window, W is refused like any other client.
    let warm_ref = &warm;
    let refused_at = wait_for(Duration::from_secs(10), "W to be refused", || async move {
        let sent = before_stop.elapsed();
        let (resp, took) = timed_token(app_ref, warm_ref).await;
        assert!(took < PROMPT, "W answered in {took:?}");
        match resp.status().as_u16() {
            200 => None,
            _ => {
                assert_unavailable(resp).await;
                Some(sent)
            }
        }
    })
    .await;
    assert!(
        refused_at >= WINDOW,
        "W refused {refused_at:?} after the stop, within the {WINDOW:?} window"
    );

    // 5. PostgreSQL returns: without a restart the daemon is ready again and both clients get
    //    tokens.
    let before_start = Instant::now();
    tokio::task::block_in_place(|| cluster.start());
    wait_until(
        Duration::from_secs(20),
        "/readyz to be 200 again",
        || async { app_ref.readyz().await.0 == 200 },
    )
    .await;
    let recovered = before_start.elapsed();
    for client in [&warm, &cold] {
        let resp = app.token_basic(client, &[CC]).await;
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert_eq!(status, 200, "{body}\nlog:\n{}", app.log());
    }

    // 6. SIGTERM; the log has one line for the outage and one for the recovery.
    app.signal("TERM");
    assert_eq!(app.wait_exit().await, Some(0));
    let log = app.log();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("database unavailable"), 1, "{log}");
    assert_eq!(count("database reachable again"), 1, "{log}");

    println!(
        "outage: postgres stopped in {stopped:?}; noticed {noticed:?} after the stop request; \
         C refused {} times, p50 {:?}, p99 {:?}, max {:?}; /readyz p50 {:?}, p99 {:?}, max {:?}; \
         W served {warm_served} times within the window, refused {refused_at:?} after the stop \
         request; ready again {recovered:?} after the start request",
        cold_times.len(),
        percentile(&cold_times, 50),
        percentile(&cold_times, 99),
        percentile(&cold_times, 100),
        percentile(&ready_times, 50),
        percentile(&ready_times, 99),
        percentile(&ready_times, 100),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_opened_before_an_outage_fail_no_request_after_it() {
    // 1. The real binary on a private cluster with the default pool (8 connections), several
    //    of them opened by concurrent requests.
    let mut cluster = tokio::task::spawn_blocking(pg::start_private_cluster)
        .await
        .unwrap();
    let db = tokio::task::block_in_place(|| cluster.fresh_database());
    // (The 32 wrong secrets below would empty the client's throttling bucket.)
    let mut app = spawn_app_with(TestOptions {
        mode: Mode::Binary,
        backend: Backend::PostgresDb(db),
        auth_extra: "[auth.limits]\nclient_burst = 100\naddress_burst = 100".into(),
        ..TestOptions::default()
    })
    .await;
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    let wrong = TestClient {
        id: client.id.clone(),
        secret: "PRIVATE-wrong".into(),
    };
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (http, url) = (app.http.clone(), app.url("/token"));
        let (id, secret) = (wrong.id.clone(), wrong.secret.clone());
        requests.spawn(async move {
            http.post(url)
                .basic_auth(id, Some(secret))
                .form(&[CC])
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), 401);
    }
    // 2. An outage, noticed, and the database back, noticed.
    tokio::task::block_in_place(|| cluster.stop());
    let app_ref = &app;
    wait_until(
        Duration::from_secs(10),
        "/readyz to report the database down",
        || async { app_ref.readyz().await.0 == 503 },
    )
    .await;
    tokio::task::block_in_place(|| cluster.start());
    wait_until(
        Duration::from_secs(20),
        "/readyz to be 200 again",
        || async { app_ref.readyz().await.0 == 200 },
    )
    .await;
    // 3. Every request succeeds from now on, and the log has one line each way.
    for _ in 0..10 {
        let resp = app.token_basic(&client, &[CC]).await;
        let status = resp.status();
        assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    }
    app.signal("TERM");
    assert_eq!(app.wait_exit().await, Some(0));
    let log = app.log();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("database unavailable"), 1, "{log}");
    assert_eq!(count("database reachable again"), 1, "{log}");
}
