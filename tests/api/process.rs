//! The daemon as systemd runs it: the real binary, a notify socket, signals, TLS, the admin
//! listener, metrics and the request log.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use crate::helpers::*;

const CC: (&str, &str) = ("grant_type", "client_credentials");

/// Both roles on SQLite as the real binary, with `auth_extra` in `[auth]`.
async fn daemon(auth_extra: &str) -> TestApp {
    spawn_app_with(TestOptions {
        mode: Mode::Binary,
        auth_extra: auth_extra.to_owned(),
        ..TestOptions::default()
    })
    .await
}

#[tokio::test]
async fn the_daemon_notifies_ready_reloading_and_stopping_and_exits_zero() {
    // 1. READY=1 arrives once the listener answers.
    let mut d = daemon("").await;
    let resp = reqwest::get(d.url("/readyz")).await.expect("readyz");
    assert_eq!(resp.status(), 200);
    // 2. SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1.
    d.signal("HUP");
    let reloading = d.next_notification().await;
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    let usec: u64 = reloading
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("MONOTONIC_USEC value");
    assert!(usec > 0);
    let ready = d.next_notification().await;
    assert!(ready.starts_with("READY=1"), "{ready:?}");
    assert!(
        ready.contains("STATUS=serving (configuration reloaded)"),
        "{ready:?}"
    );
    // 3. SIGTERM: STOPPING=1, then exit code 0.
    d.signal("TERM");
    assert_eq!(d.next_notification().await, "STOPPING=1");
    assert_eq!(d.wait_exit().await, Some(0));
}

#[tokio::test]
async fn an_invalid_file_on_sighup_keeps_the_running_configuration() {
    // 1. A running daemon with a client that can get tokens.
    let mut d = daemon("").await;
    let client = d.add_client(&["api_v0.0.1"], &[]).await;
    // 2. The file is broken, then SIGHUP.
    let good = std::fs::read_to_string(&d.config_path).unwrap();
    std::fs::write(
        &d.config_path,
        good.replace("[server]", "[server]\nlissten = 1"),
    )
    .unwrap();
    d.signal("HUP");
    assert!(d.next_notification().await.starts_with("RELOADING=1"));
    let status = d.next_notification().await;
    assert!(
        status.starts_with("READY=1\nSTATUS=reload failed"),
        "{status:?}"
    );
    assert!(
        status.contains("lissten") || status.contains("problem"),
        "{status:?}"
    );
    // 3. The old configuration still serves, and the failure is counted.
    assert_eq!(d.token_basic(&client, &[CC]).await.status(), 200);
    assert_eq!(d.metric("steelcut_reload_failures_total").await, 1.0);
    // 4. The log names the key and the file.
    d.signal("TERM");
    assert_eq!(d.wait_exit().await, Some(0));
    let err = d.log();
    assert!(err.contains("lissten"), "{err}");
    assert!(err.contains("steelcut.toml"), "{err}");
}

#[tokio::test]
async fn sighup_applies_a_new_token_lifetime_and_publishes_a_new_signing_key() {
    let mut d = daemon("token_lifetime_secs = 600").await;
    let client = d.add_client(&["api_v0.0.1"], &[]).await;
    let body: serde_json::Value = d.token_basic(&client, &[CC]).await.json().await.unwrap();
    assert_eq!(body["expires_in"], 600);
    // 1. A new key and a new lifetime, then SIGHUP.
    let out = d.cli(&["keys", "generate"]);
    assert!(out.status.success());
    let new_kid = stdout(&out).trim().to_owned();
    let text = std::fs::read_to_string(&d.config_path).unwrap();
    std::fs::write(
        &d.config_path,
        text.replace("token_lifetime_secs = 600", "token_lifetime_secs = 900"),
    )
    .unwrap();
    d.reload().await.expect("reload");
    // 2. Tokens now last 900 s; the JWKS publishes the new key, which waits its
    //    pre-publication while the first key signs.
    let body: serde_json::Value = d.token_basic(&client, &[CC]).await.json().await.unwrap();
    assert_eq!(body["expires_in"], 900);
    let header = jsonwebtoken::decode_header(body["access_token"].as_str().unwrap()).unwrap();
    assert_ne!(header.kid.as_deref(), Some(new_kid.as_str()));
    let jwks: serde_json::Value = reqwest::get(d.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().map(|k| k.len()), Some(2));
    assert!(jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == new_kid.as_str()));
    assert_eq!(d.metric("steelcut_reloads_total").await, 1.0);
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_and_drops_one_still_sending_then_exits_zero() {
    // Verifying this client's secret takes a while (t = 40): long enough to be in flight.
    let mut d = daemon("[auth.argon2]\niterations = 40").await;
    let client = d.add_client(&["api_v0.0.1"], &[]).await;
    // 1. A request whose body is still arriving. `Expect: 100-continue` makes the server say
    //    when the handler starts reading the body: from then on the request is in flight.
    let body = "grant_type=client_credentials";
    let mut conn = std::net::TcpStream::connect(d.addr).unwrap();
    conn.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    write!(
        conn,
        "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    conn.flush().unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "\r\n");
    // 2. A complete request, being answered (its argon2 verify running): with the one above
    //    and the /metrics request itself, three requests in flight.
    let request = d
        .http
        .post(d.url("/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[CC]);
    let complete = tokio::spawn(async move { request.send().await.map(|r| r.status()) });
    let in_flight = "steelcut_requests_in_flight{listener=\"main\"}";
    wait_until(EVENT_TIMEOUT, "both requests in flight", || async {
        d.metric(in_flight).await >= 3.0
    })
    .await;
    // 3. SIGTERM: the one still sending gets 503 at once and its connection closes; the
    //    complete one gets its token; new connections are refused.
    let term = std::time::Instant::now();
    d.signal("TERM");
    assert_eq!(d.next_notification().await, "STOPPING=1");
    let mut answer = String::new();
    let _ = reader.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        term.elapsed() < Duration::from_secs(2),
        "{:?}",
        term.elapsed()
    );
    assert_eq!(complete.await.unwrap().unwrap(), 200);
    let addr = d.addr;
    wait_until(EVENT_TIMEOUT, "the listener to close", || async move {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    // 4. The process exits 0, well before the grace period (5 s) is over.
    assert_eq!(d.wait_exit().await, Some(0));
    assert!(
        term.elapsed() < Duration::from_secs(4),
        "{:?}",
        term.elapsed()
    );
}

#[tokio::test]
async fn tls_serves_http2_and_http1_with_a_generated_certificate() {
    // 1. A self-signed certificate for 127.0.0.1, and a daemon serving HTTPS with it.
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new(dir.path());
    let d = spawn_app_with(TestOptions {
        mode: Mode::Binary,
        server_extra: cert.server_tls(),
        ..TestOptions::default()
    })
    .await;
    // 2. HTTPS with HTTP/2 over ALPN, and HTTP/1.1 when that is all the client speaks.
    let root = cert.root;
    let url = format!("https://{}/.well-known/jwks.json", d.addr);
    let h2 = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .build()
        .unwrap();
    let resp = h2.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let h1 = reqwest::Client::builder()
        .add_root_certificate(root)
        .http1_only()
        .build()
        .unwrap();
    let resp = h1.get(&url).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    // 3. Plain HTTP on the TLS port does not get an answer.
    assert!(reqwest::get(d.url("/livez")).await.is_err());
}

#[tokio::test]
async fn metrics_move_as_requests_are_made() {
    let app = spawn_app().await;
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    let issued = "steelcut_token_requests_total{outcome=\"issued\"}";
    let refused = "steelcut_token_requests_total{outcome=\"invalid_client\"}";
    let before = app.metric(issued).await;
    // 1. One token issued, one refused, one resource read.
    let token = app.access_token(&client, "api_v0.0.1").await;
    let bad = TestClient {
        id: client.id.clone(),
        secret: "wrong".into(),
    };
    assert_eq!(
        app.token_basic(&bad, &[("grant_type", "client_credentials")])
            .await
            .status(),
        401
    );
    let resp = app
        .http
        .get(app.url("/api_v0.0.1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // 2. The counters moved by exactly that.
    let metrics = app.metrics().await;
    assert_eq!(metrics.get(issued), before + 1.0);
    assert_eq!(metrics.get(refused), 1.0);
    assert_eq!(
        metrics.get("steelcut_resource_requests_total{route=\"/api_v0.0.1\",status=\"200\"}"),
        1.0
    );
    assert!(metrics.get("steelcut_client_authentication_seconds_count") >= 2.0);
    let resp = reqwest::get(app.url("/metrics")).await.unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
}

#[tokio::test]
async fn sighup_with_a_new_route_serves_it_without_restart() {
    let mut d = daemon("").await;
    let client = d.add_client(&["reports"], &[]).await;
    let token = d.access_token(&client, "reports").await;
    let get = |url: String| {
        let token = token.clone();
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(get(d.url("/reports")).await.status(), 404);
    // 1. A new route and its document, then SIGHUP.
    let doc = d.dir.path().join("reports.json");
    std::fs::write(&doc, r#"{"report": 1}"#).unwrap();
    let mut text = std::fs::read_to_string(&d.config_path).unwrap();
    text.push_str(&format!(
        "\n[[resource.routes]]\npath = \"/reports\"\nfile = \"{}\"\n",
        doc.display()
    ));
    std::fs::write(&d.config_path, text).unwrap();
    d.reload().await.expect("reload");
    // 2. The new route serves its document; the old one still works.
    let resp = get(d.url("/reports")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), r#"{"report": 1}"#);
    assert_eq!(
        get(d.url("/api_v0.0.1")).await.status(),
        401,
        "token for another audience"
    );
    // 3. And the new document is hot-reloaded like the others.
    std::fs::write(&doc, r#"{"report": 2}"#).unwrap();
    let reports = d.url("/reports");
    wait_until(
        Duration::from_secs(2),
        "the change to be served",
        || async { get(reports.clone()).await.text().await.unwrap() == r#"{"report": 2}"# },
    )
    .await;
}

#[tokio::test]
async fn a_reload_warns_of_a_restart_only_change_and_not_once_it_is_reverted() {
    let mut d = daemon("").await;
    let original = std::fs::read_to_string(&d.config_path).unwrap();
    let line = original
        .lines()
        .find(|l| l.starts_with("listen = "))
        .expect("listen line")
        .to_owned();
    // 1. A new listen address: applied only at restart, and the log says so.
    std::fs::write(
        &d.config_path,
        original.replace(&line, "listen = \"127.0.0.2:0\""),
    )
    .unwrap();
    let mark = d.log_len();
    d.reload().await.expect("reload");
    let warning = d
        .wait_for_log(mark, &["take effect only after a restart"])
        .await;
    assert!(warning.contains("[server] listen"), "{warning}");
    // 2. The original file again: nothing differs from what the process started with, so a
    //    second reload carries no warning (the comparison is with the startup configuration).
    std::fs::write(&d.config_path, &original).unwrap();
    let mark = d.log_len();
    d.reload().await.expect("reload");
    d.wait_for_log(mark, &["configuration reloaded"]).await;
    let after: Vec<String> = d.log().lines().skip(mark).map(str::to_owned).collect();
    assert!(
        !after.iter().any(|l| l.contains("after a restart")),
        "{after:#?}"
    );
    // 3. And the daemon still serves on its original address.
    assert_eq!(reqwest::get(d.url("/livez")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_request_log_names_the_client_but_never_a_secret_or_token() {
    // 1. A daemon logging at info (the default level), a client, a token and a resource read.
    let mut d = daemon("").await;
    let client = d.add_client(&["api_v0.0.1"], &[]).await;
    let (id, secret) = (client.id.clone(), client.secret.clone());
    let token = d.access_token(&client, "api_v0.0.1").await;
    let resp = d
        .http
        .get(d.url("/api_v0.0.1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    d.signal("TERM");
    assert_eq!(d.next_notification().await, "STOPPING=1");
    assert_eq!(d.wait_exit().await, Some(0));
    let log = d.log();
    // 2. One line per request with method, path, status, latency and the client id.
    let token_line = log
        .lines()
        .find(|l| l.contains("path=/token"))
        .unwrap_or_else(|| panic!("no request line for /token in:\n{log}"));
    for field in [
        "method=POST",
        "status=200",
        "latency_ms=",
        &format!("client_id={id}"),
    ] {
        assert!(
            token_line.contains(field),
            "{field} missing from {token_line}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("path=/api_v0.0.1") && l.contains("status=200")),
        "{log}"
    );
    // 3. Never the secret, the token or the Authorization header.
    assert!(!log.contains(&secret), "secret in the log");
    assert!(!log.contains(&token), "token in the log");
    assert!(!log.contains(&token[..40]), "token prefix in the log");
    assert!(
        !log.to_ascii_lowercase().contains("authorization: "),
        "{log}"
    );
}

#[tokio::test]
async fn health_and_metrics_move_to_the_admin_listener_when_one_is_set() {
    let d = spawn_app_with(TestOptions {
        mode: Mode::Binary,
        server_extra: "admin_listen = \"127.0.0.1:0\"".into(),
        ..TestOptions::default()
    })
    .await;
    let admin = d
        .admin_addr
        .expect("the admin listener's address is logged");
    assert_ne!(admin, d.addr);
    for path in ["/livez", "/readyz", "/metrics"] {
        let on_admin = reqwest::get(format!("http://{admin}{path}")).await.unwrap();
        assert_eq!(on_admin.status(), 200, "{path} on the admin listener");
        let on_main = reqwest::get(d.url(path)).await.unwrap();
        assert_eq!(on_main.status(), 404, "{path} on the main listener");
    }
    // The admin listener answers nothing else.
    let jwks = reqwest::get(format!("http://{admin}/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(jwks.status(), 404);
    assert_eq!(
        reqwest::get(d.url("/.well-known/jwks.json"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_reload_names_changed_settings_that_need_a_restart() {
    // 1. The file now asks for another listen address (never bound: a reload cannot move a
    //    listener).
    let mut d = daemon("").await;
    let text = std::fs::read_to_string(&d.config_path).unwrap();
    std::fs::write(
        &d.config_path,
        text.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\""),
    )
    .unwrap();
    d.reload().await.unwrap();
    // 2. Still serving on the old address; the log says the new one needs a restart.
    assert_eq!(reqwest::get(d.url("/livez")).await.unwrap().status(), 200);
    d.signal("TERM");
    assert_eq!(d.wait_exit().await, Some(0));
    let log = d.log();
    assert!(
        log.contains("only after a restart") && log.contains("[server] listen"),
        "{log}"
    );
}
