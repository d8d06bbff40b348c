//! Two secrets during a rotation, on two nodes (the real binary) sharing PostgreSQL:
//! `client update ID --new-secret --keep-old-secret-for D` prints the new secret once and says
//! until when the old one works; both work on every node until then (on a node that had the
//! old one cached too), and only the new one right after, the credential cache included. A
//! rotation without `--keep-old-secret-for` cuts the old secret at once.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::caches::{warm, CC, WITHIN};
use crate::fleet::{binary_nodes, migrated_database, ms, refused_by_both};
use crate::helpers::*;

/// `client show ID` as JSON.
fn show(node: &TestApp, id: &str) -> Value {
    let out = node.cli(&["client", "show", id]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Requests tokens with `client`'s credentials until one is refused; each request sent before
/// `until` must succeed. Returns how long after `until` the first refused one was sent (zero if
/// it was sent just before and answered after).
async fn refused_after_until(node: &TestApp, client: &TestClient, until: SystemTime) -> Duration {
    wait_for(
        Duration::from_secs(10),
        "the old secret to be refused",
        || async move {
            let sent = SystemTime::now();
            let status = node.token_basic(client, &[CC]).await.status().as_u16();
            match status {
                200 => None,
                401 => {
                    // Sent before `until`, answered after it: allowed, counted as zero.
                    let early = until.duration_since(sent).unwrap_or_default();
                    assert!(
                        early < Duration::from_millis(200),
                        "the old secret was refused {early:?} before it expired"
                    );
                    Some(sent.duration_since(until).unwrap_or_default())
                }
                other => panic!("status {other}"),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_both_secrets_work_on_both_nodes_until_the_printed_time_then_only_the_new_one(
) {
    // 1. Two daemons on one PostgreSQL database; the client's first secret is cached on both.
    let db = migrated_database().await;
    let nodes = binary_nodes(2, &db.reader_url, &db.owner_url).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let old = a.add_client(&["api_v0.0.1"], &[]).await;
    warm(&[a, b], &old).await;

    // 2. A rotation keeping the old secret for 3 s: the new secret is printed once, on stdout;
    //    stderr says until when the old one works, as `client show` does.
    let out = a.cli(&[
        "client",
        "update",
        &old.id,
        "--new-secret",
        "--keep-old-secret-for",
        "3s",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (printed, said) = (stdout(&out), stderr(&out));
    let json: Value = serde_json::from_str(&printed).unwrap();
    let new = TestClient::from_cli_json(&json);
    assert_eq!(new.id, old.id);
    assert_ne!(new.secret, old.secret);
    assert_eq!(printed.matches(&new.secret).count(), 1, "{printed}");
    assert!(!said.contains(&new.secret), "{said}");
    let until_text = json["previous_secret_valid_until"]
        .as_str()
        .unwrap()
        .to_owned();
    let until = humantime::parse_rfc3339(&until_text).unwrap();
    assert!(
        said.contains(&format!("keeps working until {until_text}")),
        "{said}"
    );
    assert_eq!(show(a, &old.id)["previous_secret_valid_until"], until_text);
    let left = until.duration_since(SystemTime::now()).unwrap();
    assert!(left <= Duration::from_secs(3), "{left:?}");

    // 3. Until then both secrets get tokens on both nodes (node B had the old one cached).
    //    They are asked for late in a second (at .7 or after), so that a cache that rounded the
    //    old secret's end to whole seconds would keep it most of a second too long.
    wait_until(Duration::from_secs(2), "late in a second", || async {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        now.subsec_millis() >= 700
    })
    .await;
    for node in [a, b] {
        for client in [&old, &new] {
            let resp = node.token_basic(client, &[CC]).await;
            assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        }
    }
    assert!(
        SystemTime::now() < until,
        "the overlap ended before its checks: the machine is too slow for this test"
    );

    // 4. Right after it only the new one works, on both nodes: within a second, and in fact
    //    at once (the credential cache keeps no entry past the secret's end).
    let (on_a, on_b) = tokio::join!(
        refused_after_until(a, &old, until),
        refused_after_until(b, &old, until)
    );
    for (node, late) in [("A", on_a), ("B", on_b)] {
        assert!(
            late < WITHIN / 2,
            "node {node} accepted the old secret {late:?} after its end"
        );
    }
    for node in [a, b] {
        assert_eq!(node.token_basic(&old, &[CC]).await.status(), 401);
        assert_eq!(node.token_basic(&new, &[CC]).await.status(), 200);
    }
    assert_eq!(show(b, &old.id)["previous_secret_valid_until"], Value::Null);

    // 5. A rotation without `--keep-old-secret-for` cuts the previous secret at once on both
    //    nodes (both had it cached).
    let out = b.cli(&["client", "update", &old.id, "--new-secret"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rotated = std::time::Instant::now();
    assert!(
        stderr(&out).contains("The old one no longer works"),
        "{}",
        stderr(&out)
    );
    let newest = TestClient::from_cli_json(&serde_json::from_slice(&out.stdout).unwrap());
    let (cut_a, cut_b) = refused_by_both(a, b, &new, rotated).await;
    assert_eq!(show(a, &old.id)["previous_secret_valid_until"], Value::Null);
    for node in [a, b] {
        assert_eq!(node.token_basic(&newest, &[CC]).await.status(), 200);
    }

    // 6. `--keep-old-secret-for` without `--new-secret` is a usage error, and changes nothing.
    let out = a.cli(&["client", "update", &old.id, "--keep-old-secret-for", "1h"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--new-secret"), "{}", stderr(&out));
    for node in [a, b] {
        assert_eq!(node.token_basic(&newest, &[CC]).await.status(), 200);
    }
    println!(
        "rotation overlap: the old secret refused {} (node A) and {} (node B) after its \
         printed end; without an overlap, refused after {} and {}",
        ms(on_a),
        ms(on_b),
        ms(cut_a),
        ms(cut_b)
    );
}
