//! The daemon as systemd runs it: the real binary, a fake `NOTIFY_SOCKET`, signals, TLS and
//! metrics.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::UnixDatagram;

use crate::helpers::*;

/// A `steelcutd serve` child process listening on a free port, with a notify socket.
struct Daemon {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    notify: UnixDatagram,
}

impl Daemon {
    /// Starts the daemon on `config` (written by the caller into `dir`) and waits for READY=1.
    async fn start(dir: tempfile::TempDir, config: PathBuf, port: u16) -> Self {
        let socket = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&socket).expect("bind notify socket");
        let child = Command::new(env!("CARGO_BIN_EXE_steelcutd"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &socket)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn steelcutd");
        let mut d = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            config,
            notify,
        };
        let ready = d.next_message().await;
        assert!(
            ready.starts_with("READY=1"),
            "first notification: {ready:?}"
        );
        d
    }

    async fn sqlite(auth_extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let db = format!("sqlite://{}", dir.path().join("steelcut.db").display());
        let config = write_config(dir.path(), &db, &format!("127.0.0.1:{port}"), auth_extra);
        Self::start(dir, config, port).await
    }

    /// The next datagram sent to the notify socket (fails after 10 s).
    async fn next_message(&mut self) -> String {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), self.notify.recv(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no notification within 10 s; stderr: {}",
                    self.stderr_so_far()
                )
            })
            .expect("recv");
        // One `KEY=value` per line; the trailing newline is not part of the message.
        String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn stderr_so_far(&mut self) -> String {
        let _ = self.child.kill();
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Waits for the process to exit; returns its code and stderr.
    fn wait(mut self) -> (Option<i32>, String) {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = self.child.wait().expect("wait");
        (status.code(), err)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers a client for `resource` through the real CLI.
    fn add_client(&self, resource: &str) -> TestClient {
        let config = self.config.to_str().unwrap();
        let out = steelcutd(&[
            "client",
            "add",
            "--config",
            config,
            "--name",
            "n",
            "--resource",
            resource,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        TestClient::from_cli_json(&c)
    }

    /// `POST /token` for `client` with HTTP Basic.
    async fn token(&self, client: &TestClient) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url("/token"))
            .basic_auth(&client.id, Some(&client.secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
    }

    /// `POST /token` for `client`, as a future that does not borrow the daemon.
    fn token_future(
        &self,
        client: &TestClient,
    ) -> impl std::future::Future<Output = reqwest::Response> + Send + 'static {
        let request = reqwest::Client::new()
            .post(self.url("/token"))
            .basic_auth(&client.id, Some(&client.secret))
            .form(&[("grant_type", "client_credentials")]);
        async move { request.send().await.unwrap() }
    }

    /// An access token for `client`.
    async fn access_token(&self, client: &TestClient) -> String {
        let body: serde_json::Value = self.token(client).await.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` until it holds; fails the test after `limit`.
async fn wait_for<F, Fut>(limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metric(url: &str, line_prefix: &str) -> f64 {
    let text = reqwest::get(url)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_prefix} in:\n{text}"))
}

#[tokio::test]
async fn the_daemon_notifies_ready_reloading_and_stopping_and_exits_zero() {
    // 1. READY=1 arrives once the listener answers.
    let mut d = Daemon::sqlite("").await;
    let resp = reqwest::get(d.url("/readyz")).await.expect("readyz");
    assert_eq!(resp.status(), 200);
    // 2. SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1.
    d.signal("HUP");
    let reloading = d.next_message().await;
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
    let ready = d.next_message().await;
    assert!(ready.starts_with("READY=1"), "{ready:?}");
    assert!(
        ready.contains("STATUS=serving (configuration reloaded)"),
        "{ready:?}"
    );
    // 3. SIGTERM: STOPPING=1, then exit code 0.
    d.signal("TERM");
    assert_eq!(d.next_message().await, "STOPPING=1");
    let (code, _) = d.wait();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn an_invalid_file_on_sighup_keeps_the_running_configuration() {
    // 1. A running daemon with a client that can get tokens.
    let mut d = Daemon::sqlite("").await;
    let client = d.add_client("api_v0.0.1");
    // 2. The file is broken, then SIGHUP.
    let good = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, good.replace("[server]", "[server]\nlissten = 1")).unwrap();
    d.signal("HUP");
    assert!(d.next_message().await.starts_with("RELOADING=1"));
    let status = d.next_message().await;
    assert!(
        status.starts_with("READY=1\nSTATUS=reload failed"),
        "{status:?}"
    );
    assert!(
        status.contains("lissten") || status.contains("problem"),
        "{status:?}"
    );
    // 3. The old configuration still serves, and the failure is counted.
    assert_eq!(d.token(&client).await.status(), 200);
    assert_eq!(
        metric(&d.url("/metrics"), "steelcut_reload_failures_total").await,
        1.0
    );
    // 4. The log names the key and the file.
    d.signal("TERM");
    let (code, err) = d.wait();
    assert_eq!(code, Some(0));
    assert!(err.contains("lissten"), "{err}");
    assert!(err.contains("steelcut.toml"), "{err}");
}

#[tokio::test]
async fn sighup_applies_a_new_token_lifetime_and_publishes_a_new_signing_key() {
    let mut d = Daemon::sqlite("token_lifetime_secs = 600").await;
    let config = d.config.to_str().unwrap().to_owned();
    let client = d.add_client("api_v0.0.1");
    let body: serde_json::Value = d.token(&client).await.json().await.unwrap();
    assert_eq!(body["expires_in"], 600);
    // 1. A new key and a new lifetime, then SIGHUP.
    let out = steelcutd(&["keys", "generate", "--config", &config]);
    assert!(out.status.success());
    let new_kid = stdout(&out).trim().to_owned();
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        text.replace("token_lifetime_secs = 600", "token_lifetime_secs = 900"),
    )
    .unwrap();
    d.signal("HUP");
    assert!(d.next_message().await.starts_with("RELOADING=1"));
    assert!(d.next_message().await.contains("configuration reloaded"));
    // 2. Tokens now last 900 s; the JWKS publishes the new key, which waits its
    //    pre-publication while the first key signs.
    let body: serde_json::Value = d.token(&client).await.json().await.unwrap();
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
    assert_eq!(
        metric(&d.url("/metrics"), "steelcut_reloads_total").await,
        1.0
    );
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_and_drops_one_still_sending_then_exits_zero() {
    // Verifying this client's secret takes a while (t = 40), long enough to be in flight.
    let mut d = Daemon::sqlite("[auth.argon2]\niterations = 40").await;
    let client = d.add_client("api_v0.0.1");
    let port: u16 = d.base.rsplit(':').next().unwrap().parse().unwrap();
    // 1. A request whose body is still arriving, and a complete one being answered.
    let body = "grant_type=client_credentials";
    let mut sending = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        sending,
        "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    let complete = tokio::spawn(d.token_future(&client));
    let in_flight = "steelcut_requests_in_flight{listener=\"main\"}";
    wait_for(Duration::from_secs(10), || async {
        metric(&d.url("/metrics"), in_flight).await >= 3.0
    })
    .await;
    // 2. SIGTERM while both are in flight.
    let term = std::time::Instant::now();
    d.signal("TERM");
    assert_eq!(d.next_message().await, "STOPPING=1");
    // 3. The one still sending is answered at once (503, connection closed); the complete one
    //    gets its token.
    let mut answer = String::new();
    sending
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = sending.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        term.elapsed() < Duration::from_secs(2),
        "{:?}",
        term.elapsed()
    );
    assert_eq!(complete.await.unwrap().status(), 200);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    // 4. Then the process exits 0, well before the grace period (5 s) is over.
    let (code, _) = d.wait();
    assert_eq!(code, Some(0));
    assert!(
        term.elapsed() < Duration::from_secs(4),
        "{:?}",
        term.elapsed()
    );
}

#[tokio::test]
async fn tls_serves_http2_and_http1_with_a_generated_certificate() {
    // 1. A self-signed certificate for 127.0.0.1.
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let port = free_port();
    let db = format!("sqlite://{}", dir.path().join("steelcut.db").display());
    let config = write_config(dir.path(), &db, &format!("127.0.0.1:{port}"), "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "shutdown_grace_secs = 5",
        &format!(
            "shutdown_grace_secs = 5\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"",
            dir.path().join("cert.pem").display(),
            dir.path().join("key.pem").display()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let d = Daemon::start(dir, config, port).await;
    // 2. HTTPS with HTTP/2 over ALPN, and HTTP/1.1 when that is all the client speaks.
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let url = format!("https://127.0.0.1:{port}/.well-known/jwks.json");
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
    let before = metric(&app.url("/metrics"), issued).await;
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
    assert_eq!(metric(&app.url("/metrics"), issued).await, before + 1.0);
    assert_eq!(metric(&app.url("/metrics"), refused).await, 1.0);
    assert_eq!(
        metric(
            &app.url("/metrics"),
            "steelcut_resource_requests_total{route=\"/api_v0.0.1\",status=\"200\"}"
        )
        .await,
        1.0
    );
    assert!(
        metric(
            &app.url("/metrics"),
            "steelcut_client_authentication_seconds_count"
        )
        .await
            >= 2.0
    );
    let resp = reqwest::get(app.url("/metrics")).await.unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
}

#[tokio::test]
async fn sighup_with_a_new_route_serves_it_without_restart() {
    let mut d = Daemon::sqlite("").await;
    let client = d.add_client("reports");
    let token = d.access_token(&client).await;
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
    let mut text = std::fs::read_to_string(&d.config).unwrap();
    text.push_str(&format!(
        "\n[[resource.routes]]\npath = \"/reports\"\nfile = \"{}\"\n",
        doc.display()
    ));
    std::fs::write(&d.config, text).unwrap();
    d.signal("HUP");
    assert!(d.next_message().await.starts_with("RELOADING=1"));
    assert!(d.next_message().await.contains("configuration reloaded"));
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
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let body = get(d.url("/reports")).await.text().await.unwrap();
        if body == r#"{"report": 2}"# {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "change not served: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_request_log_names_the_client_but_never_a_secret_or_token() {
    // 1. A daemon logging at info, a client, a token and a resource read.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = format!("sqlite://{}", dir.path().join("steelcut.db").display());
    let config = write_config(dir.path(), &db, &format!("127.0.0.1:{port}"), "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[log]\nlevel = \"info\"\n")).unwrap();
    let mut d = Daemon::start(dir, config, port).await;
    let client = d.add_client("api_v0.0.1");
    let (id, secret) = (client.id.as_str(), client.secret.as_str());
    let token = d.access_token(&client).await;
    let http = reqwest::Client::new();
    let resp = http
        .get(d.url("/api_v0.0.1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    d.signal("TERM");
    assert_eq!(d.next_message().await, "STOPPING=1");
    let (code, log) = d.wait();
    assert_eq!(code, Some(0));
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
    assert!(!log.contains(secret), "secret in the log");
    assert!(!log.contains(&token), "token in the log");
    assert!(!log.contains(&token[..40]), "token prefix in the log");
    assert!(
        !log.to_ascii_lowercase().contains("authorization: "),
        "{log}"
    );
}

#[tokio::test]
async fn health_and_metrics_move_to_the_admin_listener_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let db = format!("sqlite://{}", dir.path().join("steelcut.db").display());
    let config = write_config(dir.path(), &db, &format!("127.0.0.1:{port}"), "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "shutdown_grace_secs = 5",
        &format!("shutdown_grace_secs = 5\nadmin_listen = \"127.0.0.1:{admin}\""),
    );
    std::fs::write(&config, text).unwrap();
    let d = Daemon::start(dir, config, port).await;
    for path in ["/livez", "/readyz", "/metrics"] {
        let on_admin = reqwest::get(format!("http://127.0.0.1:{admin}{path}"))
            .await
            .unwrap();
        assert_eq!(on_admin.status(), 200, "{path} on the admin listener");
        let on_main = reqwest::get(d.url(path)).await.unwrap();
        assert_eq!(on_main.status(), 404, "{path} on the main listener");
    }
    // The admin listener answers nothing else.
    let jwks = reqwest::get(format!("http://127.0.0.1:{admin}/.well-known/jwks.json"))
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
    let mut d = Daemon::sqlite("").await;
    let text = std::fs::read_to_string(&d.config).unwrap();
    let other = free_port();
    let listen_line = text
        .lines()
        .find(|l| l.starts_with("listen = "))
        .unwrap()
        .to_owned();
    std::fs::write(
        &d.config,
        text.replace(&listen_line, &format!("listen = \"127.0.0.1:{other}\"")),
    )
    .unwrap();
    d.signal("HUP");
    assert!(d.next_message().await.starts_with("RELOADING=1"));
    assert!(d.next_message().await.contains("configuration reloaded"));
    // Still serving on the old address; the log says the new one needs a restart.
    assert_eq!(reqwest::get(d.url("/livez")).await.unwrap().status(), 200);
    d.signal("TERM");
    let (code, log) = d.wait();
    assert_eq!(code, Some(0));
    assert!(
        log.contains("only after a restart") && log.contains("[server] listen"),
        "{log}"
    );
}
