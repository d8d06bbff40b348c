//! Hot reload of served documents: a change on disk is served within one second, however the
//! file is replaced, and a broken or missing file never replaces the last good document.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::resource::{get_with_token, DOC};

const V2: &str = r#"{"about": "This is version 2"}"#;
const V3: &str = r#"{"about": "This is version 3"}"#;

/// What the daemon logs when a served file changed but cannot replace the document.
const KEPT: &str = "cannot reload document; still serving the last good version";

struct Reloading {
    app: TestApp,
    token: String,
    doc: PathBuf,
}

/// A node serving `protected_resource.json` at `/api_v0.0.1`, and a token for it.
async fn reloading_app(mode: Mode) -> Reloading {
    let app = spawn_app_with(TestOptions {
        mode,
        ..TestOptions::default()
    })
    .await;
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

/// Polls until `want` is served (at most two seconds); returns the time it took from `since`
/// (the write).
async fn served_within(r: &Reloading, want: &str, since: Instant) -> Duration {
    let what = format!("{want:?} to be served");
    wait_until(Duration::from_secs(2), &what, || async {
        body(&r.app, &r.token).await == want
    })
    .await;
    since.elapsed()
}

/// Applies `change` to the served file, waits until the daemon has looked at the result and
/// logged that it keeps the last good document, and checks that `want` is still served.
async fn kept_after(r: &Reloading, want: &str, change: impl FnOnce(&Path)) {
    let mark = r.app.log_len();
    change(&r.doc);
    let line = r.app.wait_for_log(mark, &["WARN", KEPT]).await;
    assert!(line.contains(&r.doc.display().to_string()), "{line}");
    assert_eq!(body(&r.app, &r.token).await, want);
}

fn write_by_rename(path: &Path, text: &str) {
    let tmp = path.with_file_name(".protected_resource.json.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn an_in_place_write_is_served_within_a_second() {
    let r = reloading_app(Mode::InProcess).await;
    let written = Instant::now();
    std::fs::write(&r.doc, V2).unwrap();
    let took = served_within(&r, V2, written).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn a_file_replaced_by_write_temp_and_rename_is_served_within_a_second() {
    // 1. The editor's way: a temporary file renamed over the served one.
    let r = reloading_app(Mode::InProcess).await;
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
    let r = reloading_app(Mode::InProcess).await;
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
    // 1. A broken write is looked at, logged, and not served.
    let r = reloading_app(Mode::Binary).await;
    kept_after(&r, DOC, |doc| {
        std::fs::write(doc, "{\"about\": oops}").unwrap()
    })
    .await;
    // 2. The fix is served within a second.
    let written = Instant::now();
    std::fs::write(&r.doc, V2).unwrap();
    let took = served_within(&r, V2, written).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn a_truncated_write_keeps_the_last_good_document() {
    let r = reloading_app(Mode::Binary).await;
    kept_after(&r, DOC, |doc| {
        std::fs::write(doc, &V2[..V2.len() / 2]).unwrap()
    })
    .await;
    kept_after(&r, DOC, |doc| std::fs::write(doc, "").unwrap()).await;
}

#[tokio::test]
async fn a_deleted_file_keeps_the_last_good_document_and_a_recreated_one_is_served() {
    // 1. The file disappears; the document stays.
    let r = reloading_app(Mode::Binary).await;
    kept_after(&r, DOC, |doc| std::fs::remove_file(doc).unwrap()).await;
    // 2. It comes back with new content, which is served within a second.
    let written = Instant::now();
    std::fs::write(&r.doc, V2).unwrap();
    let took = served_within(&r, V2, written).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn a_broken_write_is_logged_as_a_warning_naming_the_file_and_the_line_and_column() {
    // 1. The real daemon serves a document.
    let d = spawn_daemon().await;
    d.wait_for_log(0, &["serving route"]).await;
    let doc = d.dir.path().join("protected_resource.json");
    // 2. The document is broken on its second line.
    let mark = d.log_len();
    std::fs::write(&doc, "{\n  \"about\": oops\n}").unwrap();
    // 3. A warning names the file and where the JSON broke.
    let line = d
        .wait_for_log(mark, &["WARN", "protected_resource.json"])
        .await;
    assert!(line.contains(&doc.display().to_string()), "{line}");
    assert!(line.contains("line 2 column"), "{line}");
    assert!(line.contains("last good"), "{line}");
}

#[tokio::test]
async fn a_configuration_reload_swaps_the_routes_and_watches_the_new_files() {
    // 1. A node serving /api_v0.0.1.
    let mut r = reloading_app(Mode::InProcess).await;
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
    r.app.reload().await.unwrap();
    // 3. The old route is gone and the new one serves its file.
    assert_eq!(get_with_token(&r.app, &r.token).await.status(), 404);
    let get_v2 = || async {
        r.app
            .http
            .get(r.app.url("/v2"))
            .bearer_auth(&r.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert_eq!(get_v2().await, V2);
    // 4. The new file is watched.
    let written = Instant::now();
    std::fs::write(&v2, V3).unwrap();
    wait_until(Duration::from_secs(2), "V3 to be served", || async {
        get_v2().await == V3
    })
    .await;
    assert!(written.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_configuration_reload_with_a_broken_file_changes_nothing() {
    // 1. The route's file in the configuration no longer exists; the reload is refused.
    let mut r = reloading_app(Mode::InProcess).await;
    let good = std::fs::read_to_string(&r.app.config_path).unwrap();
    std::fs::write(
        &r.app.config_path,
        good.replace("protected_resource.json", "missing.json"),
    )
    .unwrap();
    let error = r.app.reload().await.unwrap_err();
    assert!(
        error.contains("/api_v0.0.1") && error.contains("missing.json"),
        "{error}"
    );
    // 2. The running configuration still serves, and still watches its file.
    assert_eq!(body(&r.app, &r.token).await, DOC);
    let written = Instant::now();
    std::fs::write(&r.doc, V2).unwrap();
    let took = served_within(&r, V2, written).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}
