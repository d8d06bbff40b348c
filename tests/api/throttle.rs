//! Brute-force throttling at the token endpoint, against the real binary: failed client
//! authentications are counted per client id and per source address, past the limit the
//! answer is 429 with `Retry-After` and no argon2 work is done, a client presenting its own
//! verified secret is never throttled, and forwarding headers count only from trusted proxies.

use std::time::Instant;

use crate::helpers::*;

const CC: (&str, &str) = ("grant_type", "client_credentials");

async fn daemon(server: &str, auth: &str) -> TestApp {
    spawn_app_with(TestOptions {
        mode: Mode::Binary,
        server_extra: server.to_owned(),
        auth_extra: auth.to_owned(),
        ..TestOptions::default()
    })
    .await
}

/// An address bucket of the documented size (30) that refills one token a minute instead of
/// one a second, so that how many attempts pass does not depend on how fast the machine runs
/// the loop.
const SLOW_ADDRESS_REFILL: &str = "[auth.limits]\naddress_refill_per_minute = 1";

/// The attempts an address bucket under [`SLOW_ADDRESS_REFILL`] can have let through, beyond
/// its 30, since `started`.
fn refilled_since(started: Instant) -> usize {
    usize::try_from(started.elapsed().as_secs() / 60).unwrap_or(usize::MAX)
}

/// One token request with HTTP Basic and an optional `X-Forwarded-For`.
async fn attempt(app: &TestApp, id: &str, secret: &str, xff: Option<&str>) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url("/token"))
        .basic_auth(id, Some(secret))
        .form(&[CC]);
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.expect("token request")
}

#[tokio::test]
async fn two_thousand_wrong_secrets_are_throttled_without_argon2_and_the_real_client_keeps_its_tokens(
) {
    // 1. A real client, verified once (its secret is now in the credential cache).
    let app = daemon("", "").await;
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    assert_eq!(app.token_basic(&client, &[CC]).await.status(), 200);
    let cpu_before = app.cpu_seconds();
    let started = Instant::now();
    // 2. 2,000 wrong secrets for its id, from one address; the real client in between.
    let (mut refused, mut throttled) = (0, 0);
    for i in 0..2000 {
        let resp = attempt(&app, &client.id, "PRIVATE-wrong", None).await;
        match resp.status().as_u16() {
            401 => refused += 1,
            429 => {
                throttled += 1;
                let retry: u64 = resp.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry >= 1);
                assert_eq!(resp.headers()["cache-control"], "no-store");
                let body: serde_json::Value = resp.json().await.unwrap();
                assert_eq!(body["error"], "invalid_request", "{body}");
                let description = body["error_description"].as_str().unwrap();
                assert!(description.contains("too many failed"), "{description}");
            }
            other => panic!("attempt {i}: {other}"),
        }
        if i % 100 == 0 {
            assert_eq!(
                app.token_basic(&client, &[CC]).await.status(),
                200,
                "at {i}"
            );
        }
    }
    let cpu = app.cpu_seconds() - cpu_before;
    println!(
        "2,000 wrong secrets in {:?}: {refused} refused (401), {throttled} throttled (429); \
         the daemon used {cpu:.2} CPU seconds",
        started.elapsed()
    );
    // 3. After the documented burst of 10 (plus what refilled meanwhile, 10 a minute), every
    //    attempt was throttled before any argon2 work: far below 2,000 verifies of ~35 ms.
    assert!((10..=20).contains(&refused), "{refused} refused");
    assert_eq!(refused + throttled, 2000);
    assert!(cpu < 5.0, "{cpu} CPU seconds");
    let by_client = app
        .metric("steelcut_auth_throttled_total{by=\"client\"}")
        .await;
    assert_eq!(by_client, throttled as f64);
}

#[tokio::test]
async fn spoofed_forwarded_for_values_do_not_escape_the_address_limit_without_a_trusted_proxy() {
    // 1. A hundred attempts, each with another made-up client id (so no client bucket runs
    //    dry) and another X-Forwarded-For: the peer address counts, and its bucket (30) does.
    let app = daemon("", SLOW_ADDRESS_REFILL).await;
    let started = Instant::now();
    let mut throttled = 0;
    for i in 0..100 {
        let id = format!("{i:032x}");
        let xff = format!("198.51.100.{i}");
        if attempt(&app, &id, "PRIVATE-x", Some(&xff)).await.status() == 429 {
            throttled += 1;
        }
    }
    let passed_on_refill = refilled_since(started);
    assert!(
        (70_usize.saturating_sub(passed_on_refill)..=70).contains(&throttled),
        "{throttled} throttled"
    );
    let by_address = app
        .metric("steelcut_auth_throttled_total{by=\"address\"}")
        .await;
    assert_eq!(by_address, throttled as f64);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    // 1. Loopback is the proxy: X-Forwarded-For names the client.
    let app = daemon("trusted_proxies = [\"127.0.0.0/8\"]", SLOW_ADDRESS_REFILL).await;
    // 2. A hundred clients behind it, each failing once: nobody is throttled.
    for i in 0..100 {
        let id = format!("{i:032x}");
        let xff = format!("198.51.100.{i}");
        let status = attempt(&app, &id, "PRIVATE-x", Some(&xff)).await.status();
        assert_eq!(status, 401, "client {i}");
    }
    // 3. One address behind it failing again and again is throttled by address.
    let started = Instant::now();
    let mut throttled = 0;
    for i in 0..40 {
        let id = format!("{:032x}", 1000 + i);
        if attempt(&app, &id, "PRIVATE-x", Some("203.0.113.7"))
            .await
            .status()
            == 429
        {
            throttled += 1;
        }
    }
    let passed_on_refill = refilled_since(started);
    assert!(
        (10_usize.saturating_sub(passed_on_refill)..=10).contains(&throttled),
        "{throttled} throttled"
    );
}
