//! Hot reload of served documents: a change on disk is served within one second, however the
//! file is replaced, and a broken or missing file never replaces the last good document.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::resource::{get_with_token, DOC};

const V2: &str = r#"{"about": "This is version 2"}"#;
const V3: &str = r#"{"about": "This is version 3"}"#;

struct Reloading {
    app: TestApp,
    token: String,
    doc: PathBuf,
}

async fn reloading_app() -> Reloading {
    let app = spawn_app().await;
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    let token = app.access_token(&client, "api_v0.0.1").await;
    let doc = app.dir.path().join("protected_resource.json");
    assert_eq!(body(&app, &token).await, DOC);
    Reloading { app, token, doc }
}

async fn body(app: &TestApp, token: &str) -> String {
    let resp = get_with_token(app, token).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// Polls every 50 ms for up to two seconds until `want` is served; returns the time it took
/// from `since` (the write), or panics with what was served instead.
async fn served_within(r: &Reloading, want: &str, since: Instant) -> Duration {
    let mut last = String::new();
    while since.elapsed() < Duration::from_secs(2) {
        last = body(&r.app, &r.token).await;
        if last == want {
            return since.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("still serving {last:?} two seconds after the write, expected {want:?}");
}

/// Asserts `want` keeps being served for half a second (well past the reload debounce).
async fn still_served(r: &Reloading, want: &str) {
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        assert_eq!(body(&r.app, &r.token).await, want);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn write_by_rename(path: &Path, text: &str) {
    let tmp = path.with_file_name(".protected_resource.json.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn an_in_place_write_is_served_within_a_second() {
    let r = reloading_app().await;
    let written = Instant::now();
    std::fs::write(&r.doc, V2).unwrap();
    let took = served_within(&r, V2, written).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn a_file_replaced_by_write_temp_and_rename_is_served_within_a_second() {
    // 1. The editor's way: a temporary file renamed over the served one.
    let r = reloading_app().await;
    let written = Instant::now();
    write_by_rename(&r.doc, V2);
    let took = served_within(&r, V2, written).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // 2. The watch survives the inode change: a second replacement is seen too.
    let written = Instant::now();
    write_by_rename(&r.doc, V3);
    let took = served_within(&r, V3, written).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn the_etag_follows_the_content_and_an_old_etag_no_longer_matches() {
    let r = reloading_app().await;
    let old = get_with_token(&r.app, &r.token).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    std::fs::write(&r.doc, V2).unwrap();
    served_within(&r, V2, Instant::now()).await;
    let resp = r
        .app
        .http
        .get(r.app.url("/api_v0.0.1"))
        .bearer_auth(&r.token)
        .header("If-None-Match", &old)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_ne!(resp.headers()["etag"], old.as_str());
    assert_eq!(resp.text().await.unwrap(), V2);
}

#[tokio::test]
async fn invalid_json_keeps_the_last_good_document_and_a_later_fix_is_served() {
    // 1. A broken write is not served.
    let r = reloading_app().await;
    std::fs::write(&r.doc, "{\"about\": oops}").unwrap();
    still_served(&r, DOC).await;
    // 2. The fix is served within a second.
    let written = Instant::now();
    std::fs::write(&r.doc, V2).unwrap();
    let took = served_within(&r, V2, written).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn a_truncated_write_keeps_the_last_good_document() {
    let r = reloading_app().await;
    std::fs::write(&r.doc, &V2[..V2.len() / 2]).unwrap();
    still_served(&r, DOC).await;
    std::fs::write(&r.doc, "").unwrap();
    still_served(&r, DOC).await;
}

#[tokio::test]
async fn a_deleted_file_keeps_the_last_good_document_and_a_recreated_one_is_served() {
    // 1. The file disappears; the document stays.
    let r = reloading_app().await;
    std::fs::remove_file(&r.doc).unwrap();
    still_served(&r, DOC).await;
    // 2. It comes back with new content, which is served within a second.
    let written = Instant::now();
    std::fs::write(&r.doc, V2).unwrap();
    let took = served_within(&r, V2, written).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

/// `steelcutd serve` as a child process, its stderr lines collected by a thread.
struct Daemon {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_steelcutd"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .env_remove("STEELCUT_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The first line (within ten seconds) that contains every one of `needles`.
    fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if needles.iter().all(|n| line.contains(n)) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no log line with {needles:?}; saw:\n{}", seen.join("\n"));
    }
}

#[tokio::test]
async fn a_broken_write_is_logged_as_a_warning_naming_the_file_and_the_line_and_column() {
    // 1. The real daemon serves a document.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let database = format!("sqlite://{}", dir.path().join("steelcut.db").display());
    let config = write_config(dir.path(), &database, &format!("127.0.0.1:{port}"), "");
    let doc = dir.path().join("protected_resource.json");
    let daemon = Daemon::start(&config);
    daemon.wait_for(&["serving route"]);
    daemon.wait_for(&["listening"]);
    // 2. The document is broken on its second line.
    std::fs::write(&doc, "{\n  \"about\": oops\n}").unwrap();
    // 3. A warning names the file and where the JSON broke.
    let line = daemon.wait_for(&["WARN", "protected_resource.json"]);
    assert!(line.contains(&doc.display().to_string()), "{line}");
    assert!(line.contains("line 2 column"), "{line}");
    assert!(line.contains("last good"), "{line}");
}

#[tokio::test]
async fn a_configuration_reload_swaps_the_routes_and_watches_the_new_files() {
    // 1. A node serving /api_v0.0.1.
    let r = reloading_app().await;
    // 2. The configuration now serves /v2 from another file instead.
    let v2 = r.app.dir.path().join("v2.json");
    std::fs::write(&v2, V2).unwrap();
    let text = std::fs::read_to_string(&r.app.config_path)
        .unwrap()
        .replace(
            "path = \"/api_v0.0.1\"",
            "path = \"/v2\"\naudience = \"api_v0.0.1\"",
        )
        .replace("protected_resource.json", "v2.json");
    std::fs::write(&r.app.config_path, text).unwrap();
    let config = steelcut::config::Config::load(&r.app.config_path).unwrap();
    r.app.state.reload(config).await.unwrap();
    // 3. The old route is gone and the new one serves its file.
    assert_eq!(get_with_token(&r.app, &r.token).await.status(), 404);
    let get_v2 = || {
        r.app
            .http
            .get(r.app.url("/v2"))
            .bearer_auth(&r.token)
            .send()
    };
    assert_eq!(get_v2().await.unwrap().text().await.unwrap(), V2);
    // 4. The new file is watched.
    let written = Instant::now();
    std::fs::write(&v2, V3).unwrap();
    while written.elapsed() < Duration::from_secs(2) {
        if get_v2().await.unwrap().text().await.unwrap() == V3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_configuration_reload_with_a_broken_file_changes_nothing() {
    let r = reloading_app().await;
    let mut config = r.app.state.config.clone();
    config.resource.as_mut().unwrap().routes[0].file = r.app.dir.path().join("missing.json");
    let error = r.app.state.reload(config).await.unwrap_err().to_string();
    assert!(
        error.contains("/api_v0.0.1") && error.contains("missing.json"),
        "{error}"
    );
    assert_eq!(body(&r.app, &r.token).await, DOC);
    let written = Instant::now();
    std::fs::write(&r.doc, V2).unwrap();
    let took = served_within(&r, V2, written).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}
