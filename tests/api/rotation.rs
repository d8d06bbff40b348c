//! Key rotation across a fleet: a new key is published before it signs, so that no resource
//! node ever refuses a token during a rotation, whether it fetches JWKS URLs or reads a JWKS
//! file; retirement; a change of algorithm; and a resource node merging the JWKS of two auth
//! nodes, one of them down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::algorithms::{node_key, node_toml, stranger};
use crate::helpers::*;
use crate::resource::{get_with_token, DOC, ISSUER};

/// An auth-only node on SQLite with `keys_extra` in `[keys]`.
fn auth_toml(keys_extra: &str) -> String {
    format!(
        r#"roles = ["auth"]
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 5
[database]
url = "sqlite://{{dir}}/steelcut.db"
[keys]
dir = "{{dir}}/keys"
{keys_extra}
[auth]
issuer = "{ISSUER}"
"#
    )
}

/// A resource-only node with `source` naming its keys.
pub fn resource_toml(source: &str) -> String {
    format!(
        r#"roles = ["resource"]
[server]
listen = "127.0.0.1:0"
[resource]
issuer = "{ISSUER}"
{source}
[[resource.routes]]
path = "/api_v0.0.1"
file = "{{dir}}/protected_resource.json"
"#
    )
}

pub fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

pub async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// What the traffic saw: for each round, the token's kid and each read's status.
pub type Rounds = Vec<(String, Vec<u16>)>;

/// Where the traffic goes: the token endpoint with a client's credentials, and the URLs it
/// reads with each token.
pub struct Traffic {
    pub http: reqwest::Client,
    pub token_url: String,
    pub client: TestClient,
    pub reads: Vec<String>,
}

impl Traffic {
    pub async fn token(&self) -> String {
        let resp = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.client.id, Some(&self.client.secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", "api_v0.0.1"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn read(&self, i: usize, token: &str) -> u16 {
        let resp = self
            .http
            .get(&self.reads[i])
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        resp.status().as_u16()
    }

    /// A fresh token, then a read of each URL, round after round, until `stop`.
    pub async fn run(self: Arc<Self>, stop: Arc<AtomicBool>) -> Rounds {
        let mut rounds = Vec::new();
        while !stop.load(Ordering::Acquire) {
            let token = self.token().await;
            let mut statuses = Vec::new();
            for i in 0..self.reads.len() {
                statuses.push(self.read(i, &token).await);
            }
            rounds.push((kid_of(&token), statuses));
        }
        rounds
    }
}

/// Every read of every round got 200 (the failure shows the first few rounds that did not).
pub fn assert_none_refused(rounds: &Rounds) {
    let refused: Vec<&(String, Vec<u16>)> = rounds
        .iter()
        .filter(|r| r.1.iter().any(|&s| s != 200))
        .collect();
    assert!(
        refused.is_empty(),
        "{} of {} rounds refused, e.g. {:?}",
        refused.len(),
        rounds.len(),
        &refused[..refused.len().min(5)]
    );
}

#[tokio::test]
async fn a_rotation_causes_no_401_on_a_jwks_url_node_or_a_jwks_file_node() {
    // 1. An auth node whose new keys are published 3 s before they sign, its JWKS exported to
    //    a file, and two resource-only nodes: one fetching the JWKS URL every second, one
    //    reading the file.
    let mut auth = spawn_app_with(TestOptions {
        mode: Mode::Binary,
        toml: Some(auth_toml("publish_before_sign_secs = 3")),
        ..TestOptions::default()
    })
    .await;
    let client = auth.add_client(&["api_v0.0.1"], &[]).await;
    let jwks_file = auth.dir.path().join("exported-jwks.json");
    let export = [
        "keys",
        "export-public",
        "--out",
        jwks_file.to_str().unwrap(),
    ];
    assert!(auth.cli(&export).status.success());
    let by_url = spawn_app_from_toml(&resource_toml(&format!(
        "jwks_url = \"{}\"\njwks_refresh_secs = 1\njwks_min_refetch_secs = 1",
        auth.url("/.well-known/jwks.json")
    )))
    .await;
    let by_file = spawn_app_from_toml(&resource_toml(&format!(
        "jwks_file = \"{}\"",
        jwks_file.display()
    )))
    .await;
    // 2. Steady traffic: a token, then a read on each node, round after round.
    let traffic = Arc::new(Traffic {
        http: auth.http.clone(),
        token_url: auth.url("/token"),
        client,
        reads: vec![by_url.url("/api_v0.0.1"), by_file.url("/api_v0.0.1")],
    });
    let old_kid = kid_of(&traffic.token().await);
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(traffic.clone().run(stop.clone()));
    // 3. The operator generates a key, exports the JWKS again and reloads the auth node.
    let out = auth.cli(&["keys", "generate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let new_kid = stdout(&out).trim().to_owned();
    assert!(auth.cli(&export).status.success());
    auth.reload().await.unwrap();
    assert!(jwks_kids(&auth).await.contains(&new_kid));
    // 4. No further action: the new key starts signing by itself once its 3 s are over.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut new_tokens = 0;
    while new_tokens < 20 {
        assert!(Instant::now() < deadline, "the new key never signed");
        if kid_of(&traffic.token().await) == new_kid {
            new_tokens += 1;
        }
        tokio::time::sleep(POLL).await;
    }
    stop.store(true, Ordering::Release);
    let rounds = task.await.unwrap();
    // 5. Every read on both nodes succeeded, before, during and after the switch, and both
    //    keys' tokens were read.
    assert_none_refused(&rounds);
    assert!(
        rounds.iter().any(|r| r.0 == old_kid),
        "no round with the old key"
    );
    let with_new = rounds.iter().filter(|r| r.0 == new_kid).count();
    assert!(
        with_new >= 5,
        "{with_new} of {} rounds with the new key",
        rounds.len()
    );
    assert_eq!(
        by_url
            .http
            .get(by_url.url("/api_v0.0.1"))
            .bearer_auth(traffic.token().await)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        DOC
    );
}

#[tokio::test]
async fn a_resource_node_merges_two_auth_nodes_jwks_and_one_down_blocks_nothing() {
    // 1. Auth node 1 answers; auth node 2's address (a relay) accepts and closes connections.
    let auth1 = spawn_app_from_toml(&auth_toml("")).await;
    let relay = Relay::start().await;
    let node = spawn_app_from_toml(&resource_toml(&format!(
        "jwks_url = [\"{}\", \"{}\"]\njwks_min_refetch_secs = 1",
        auth1.url("/.well-known/jwks.json"),
        relay.url("/.well-known/jwks.json")
    )))
    .await;
    // 2. The node is ready with node 1's keys and accepts its tokens.
    assert_eq!(node.readyz().await.0, 200);
    let client1 = auth1.add_client(&["api_v0.0.1"], &[]).await;
    let token1 = auth1.access_token(&client1, "api_v0.0.1").await;
    assert_eq!(get_with_token(&node, &token1).await.status(), 200);
    assert_eq!(node.metric("steelcut_jwks_fetches_total").await, 2.0);
    // 3. Auth node 2 comes up behind the relay: its first token names an unknown kid, which
    //    refetches the URLs (each at most once per second) and is then accepted.
    let auth2 = spawn_app_from_toml(&auth_toml("signing_alg = \"ES256\"")).await;
    relay.forward_to(auth2.addr);
    let client2 = auth2.add_client(&["api_v0.0.1"], &[]).await;
    let token2 = auth2.access_token(&client2, "api_v0.0.1").await;
    wait_until(Duration::from_secs(5), "node 2's token accepted", || {
        let (node, token) = (&node, &token2);
        async move { get_with_token(node, token).await.status() == 200 }
    })
    .await;
    // 4. Auth node 2 goes away again: both nodes' tokens still verify with the keys kept.
    relay.refuse();
    assert_eq!(get_with_token(&node, &token2).await.status(), 200);
    assert_eq!(get_with_token(&node, &token1).await.status(), 200);
    // 5. A flood of unknown kids from 50 requests at a time fetches each URL at most once per
    //    second (and concurrent requests share a fetch).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = node.metric("steelcut_jwks_fetches_total").await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (http, url) = (node.http.clone(), node.url("/api_v0.0.1"));
        let token = stranger(steelcut::keys::Alg::EdDsa)
            .sign_jwt(crate::resource::claims("api_v0.0.1").to_string().as_bytes())
            .unwrap();
        tasks.spawn(async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        });
        if tasks.len() >= 50 {
            assert_eq!(tasks.join_next().await.unwrap().unwrap(), 401);
        }
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 401);
    }
    let fetched = node.metric("steelcut_jwks_fetches_total").await - before;
    let allowed = 2.0 * (1.0 + started.elapsed().as_secs_f64().floor());
    assert!(
        (1.0..=allowed).contains(&fetched),
        "{fetched} fetches in {:?}",
        started.elapsed()
    );
}

/// `keys list --json` of an app: kid → the row.
fn listed(app: &TestApp) -> Vec<Value> {
    let out = app.cli(&["keys", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn row<'a>(rows: &'a [Value], kid: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["kid"] == kid)
        .unwrap_or_else(|| panic!("{kid} not in {rows:?}"))
}

#[tokio::test]
async fn a_retired_key_stops_signing_at_the_reload_and_leaves_the_jwks_after_the_grace() {
    // 1. An EdDSA node, and an ES256 key generated beside it: published, never signing while
    //    the EdDSA key may.
    let mut app = spawn_app_from_toml(&node_toml("EdDSA", "publish_before_sign_secs = 1")).await;
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    let first = node_key(&app).kid().to_owned();
    let old_token = app.access_token(&client, "api_v0.0.1").await;
    let out = app.cli(&["keys", "generate", "--alg", "ES256"]);
    let second = stdout(&out).trim().to_owned();
    // 2. Retiring the only key that may sign is refused until the new one may.
    let out = app.cli(&["keys", "retire", &first]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no other key may sign now"),
        "{}",
        stderr(&out)
    );
    wait_until(
        Duration::from_secs(5),
        "the ES256 key to be allowed to sign",
        || {
            let ok = app.cli(&["keys", "retire", &first]).status.success();
            async move { ok }
        },
    )
    .await;
    // 3. Until the reload the daemon signs with the retired key; after it, with the other,
    //    while the retired key stays published and its tokens valid.
    assert_eq!(
        kid_of(&app.access_token(&client, "api_v0.0.1").await),
        first
    );
    app.reload().await.unwrap();
    let token = app.access_token(&client, "api_v0.0.1").await;
    assert_eq!(kid_of(&token), second);
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().alg,
        jsonwebtoken::Algorithm::ES256
    );
    assert!(jwks_kids(&app).await.contains(&first));
    assert_eq!(get_with_token(&app, &old_token).await.status(), 200);
    let rows = listed(&app);
    assert_eq!(row(&rows, &first)["state"], "retired");
    assert_eq!(row(&rows, &first)["next_state"], "withdrawn");
    assert_eq!(row(&rows, &second)["state"], "signing");
    // 4. The retirement is a sidecar beside the key; once the token lifetime plus leeway have
    //    passed since it (here: a retirement dated two hours back), the key leaves the JWKS
    //    and its tokens are refused.
    let sidecars: Vec<_> = std::fs::read_dir(app.dir.path().join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "retired"))
        .collect();
    assert_eq!(sidecars.len(), 1);
    let mut record: Value = serde_json::from_slice(&std::fs::read(&sidecars[0]).unwrap()).unwrap();
    assert_eq!(record["kid"], first.as_str());
    let two_hours_ago = record["retired_at_ms"].as_i64().unwrap() - 7_200_000;
    record["retired_at_ms"] = json!(two_hours_ago);
    std::fs::write(&sidecars[0], record.to_string()).unwrap();
    app.reload().await.unwrap();
    assert!(!jwks_kids(&app).await.contains(&first));
    assert_eq!(row(&listed(&app), &first)["state"], "withdrawn");
    assert_eq!(get_with_token(&app, &old_token).await.status(), 401);
}

#[tokio::test]
async fn a_new_signing_alg_gets_a_key_that_signs_after_its_pre_publication() {
    // 1. An EdDSA node.
    let mut app = spawn_app_from_toml(&node_toml("EdDSA", "publish_before_sign_secs = 2")).await;
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    let eddsa = node_key(&app).kid().to_owned();
    // 2. The configuration now says RS256: the reload generates an RSA key and publishes it
    //    first in the JWKS, while the EdDSA key keeps signing.
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        text.replace("signing_alg = \"EdDSA\"", "signing_alg = \"RS256\""),
    )
    .unwrap();
    app.reload().await.unwrap();
    let kids = jwks_kids(&app).await;
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[1], eddsa, "RSA keys come before OKP ones: {kids:?}");
    assert_eq!(
        kid_of(&app.access_token(&client, "api_v0.0.1").await),
        eddsa
    );
    // 3. Two seconds later, without a reload, RS256 tokens are issued and accepted.
    let token = wait_for(Duration::from_secs(5), "an RS256 token", || {
        let (app, client) = (&app, &client);
        async move {
            let token = app.access_token(client, "api_v0.0.1").await;
            (jsonwebtoken::decode_header(&token).unwrap().alg == jsonwebtoken::Algorithm::RS256)
                .then_some(token)
        }
    })
    .await;
    assert_eq!(kid_of(&token), kids[0]);
    assert_eq!(get_with_token(&app, &token).await.status(), 200);
}

#[tokio::test]
async fn keys_retire_takes_a_kid_that_starts_with_a_dash() {
    // A kid is a base64url thumbprint: one in 64 starts with `-`, which must not be read as
    // an option.
    let app = spawn_app_from_toml(&node_toml("EdDSA", "")).await;
    let out = app.cli(&["keys", "retire", "-eXyz", "--force"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no key with kid -eXyz"),
        "{}",
        stderr(&out)
    );
}
