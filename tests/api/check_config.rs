//! `steelcutd check-config` runs the real load path: every problem at once, each naming its key
//! and the file, the same messages from `serve`, and `STEELCUT_<SECTION>_<KEY>` overrides.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use steelcut::config::Config;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("steelcut.db").display())
}

/// The problem lines (`  - ...`) of a failed load, as printed on stderr.
fn problem_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn a_valid_configuration_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &sqlite_url(dir.path()), "127.0.0.1:0", "");
    let config = path.to_string_lossy().into_owned();
    let out = steelcutd_env(&["check-config", "--config", &config], &[], WAIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("configuration is valid"),
        "{}",
        stdout(&out)
    );
}

/// Every `*.toml` in `dir` of the checkout.
fn shipped(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// Checks a configuration meant for an installed system (config/steelcut.toml, which the
/// package installs as /etc/steelcut.toml, and config/examples/*.toml) with the real binary.
/// The paths that exist only once installed are mapped onto the checkout and a temporary
/// directory laid out as the package lays out the real ones: the example document of
/// /usr/share/steelcutd/ is config/examples/, and the state directory and the key directory
/// (0700, with a first key, as postinst makes it) are fresh. The rest of the file is checked
/// as shipped, from a working directory where a relative path would not resolve.
fn check_installed(file: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let (state, keys) = (dir.path().join("state"), dir.path().join("keys"));
    std::fs::DirBuilder::new()
        .mode(0o750)
        .create(&state)
        .unwrap();
    let out = steelcutd(&["keys", "generate", "--dir", &keys.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(file)
        .unwrap()
        .replace("/usr/share/steelcutd/", &format!("{root}/config/examples/"))
        .replace("/var/lib/steelcut/", &format!("{}/", state.display()))
        .replace("/etc/steelcut/keys", &keys.to_string_lossy());
    let copy = dir.path().join(file.file_name().unwrap());
    std::fs::write(&copy, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_steelcutd"))
        .args(["check-config", "--config", &copy.to_string_lossy()])
        .current_dir(dir.path())
        .env_remove("STEELCUT_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    drop(dir);
    out
}

#[test]
fn the_shipped_configuration_files_pass_check_config() {
    // 1. config/dev.toml names paths relative to the repository root, where a user runs it.
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_steelcutd"))
        .args(["check-config", "--config", "config/dev.toml"])
        .current_dir(root)
        .env_remove("STEELCUT_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "config/dev.toml: {}", stderr(&out));
    // 2. Every other shipped file is meant for an installed system.
    let mut checked = 0;
    for file in shipped("config")
        .into_iter()
        .chain(shipped("config/examples"))
    {
        if file.ends_with("config/dev.toml") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // A file whose clients live in PostgreSQL is pointed at the test cluster: its own
        // server (db.example.com) is not reachable from here.
        let db = text
            .contains("url = \"postgres")
            .then(crate::pg::fresh_database);
        let env: Vec<(&str, &str)> = db
            .iter()
            .map(|db| ("STEELCUT_DATABASE_URL", db.reader_url.as_str()))
            .collect();
        let out = check_installed(&file, &env);
        assert!(out.status.success(), "{}: {}", file.display(), stderr(&out));
        assert!(stdout(&out).contains("configuration is valid"));
        checked += 1;
    }
    assert_eq!(checked, 5, "config/steelcut.toml and the four examples");
}

#[test]
fn one_wrong_issuer_in_the_quick_start_file_is_one_problem() {
    // 1. config/dev.toml (both roles) with a mistake in [auth] issuer, run from the repository
    //    root like the quick start. The resource role inherits that issuer.
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(format!("{root}/config/dev.toml"))
        .unwrap()
        .replace(
            "issuer = \"http://127.0.0.1:8080\"",
            "issuer = \"127.0.0.1:8080\"",
        );
    assert!(text.contains("issuer = \"127.0.0.1:8080\""));
    let path = dir.path().join("dev.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_steelcutd"))
        .args(["check-config", "--config", &path.to_string_lossy()])
        .current_dir(root)
        .env_remove("STEELCUT_CONFIG")
        .output()
        .unwrap();
    // 2. One problem, about [auth] issuer; not a second, false one saying that [resource]
    //    issuer is missing.
    let err = stderr(&out);
    let lines = problem_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("`[auth] issuer`"), "{err}");
}

#[test]
fn check_config_lists_every_problem_at_once_naming_key_and_file_and_serve_refuses_the_same() {
    // 1. A file with an unknown top-level key, an unknown key in a section, a type error, a
    //    role without its section, a malformed database URL and an issuer that is not a URL.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        format!(
            r#"roles = ["auth", "resource"]
colour = "blue"

[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = "ten"

[database]
url = "mysql://steelcut@db/steelcut"

[keys]
dir = "{keys}"

[auth]
issuer = "not a url"
tokne_lifetime_secs = 60
"#,
            keys = dir.path().join("keys").display()
        ),
    )
    .unwrap();
    let file = path.display().to_string();

    // 2. check-config exits non-zero and names each problem with its key and the file.
    let out = steelcutd_env(&["check-config", "--config", &file], &[], WAIT);
    assert!(!out.status.success());
    let err = stderr(&out);
    let lines = problem_lines(&err);
    let expect = [
        ("`colour`", "unknown"),
        ("`[server] shutdown_grace_secs`", "invalid type"),
        ("`[database] url`", "sqlite://"),
        ("`[auth] issuer`", "\"not a url\""),
        ("`[auth] tokne_lifetime_secs`", "unknown"),
        ("`[resource]`", "missing"),
    ];
    for (key, words) in expect {
        let line = lines
            .iter()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("no problem names {key}:\n{err}"));
        assert!(line.contains(words), "{line}");
        assert!(line.contains(&file), "the line names the file: {line}");
    }
    assert_eq!(lines.len(), expect.len(), "exactly these problems:\n{err}");

    // 3. serve refuses to start on the same file with the same messages.
    let served = steelcutd_env(&["serve", "--config", &file], &[], WAIT);
    assert!(!served.status.success());
    assert_eq!(
        problem_lines(&stderr(&served)),
        lines,
        "{}",
        stderr(&served)
    );
}

#[test]
fn a_bad_environment_override_is_reported_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &sqlite_url(dir.path()), "127.0.0.1:0", "");
    let config = path.to_string_lossy().into_owned();
    let env = [
        ("STEELCUT_SERVER_LISTEN", "nonsense"),
        ("STEELCUT_AUTH_TOKEN_LIFETIME_SECS", "5"),
    ];
    let out = steelcutd_env(&["check-config", "--config", &config], &env, WAIT);
    assert!(!out.status.success());
    let err = stderr(&out);
    let lines = problem_lines(&err);
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines.iter().any(
            |l| l.contains("`[server] listen` (from STEELCUT_SERVER_LISTEN)")
                && l.contains("\"nonsense\"")
        ),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("STEELCUT_AUTH_TOKEN_LIFETIME_SECS")),
        "{err}"
    );
    // The daemon refuses the same way.
    let served = steelcutd_env(&["serve", "--config", &config], &env, WAIT);
    assert!(!served.status.success());
    assert_eq!(problem_lines(&stderr(&served)), lines);
}

#[test]
fn a_misspelt_environment_variable_for_a_section_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &sqlite_url(dir.path()), "127.0.0.1:0", "");
    let config = path.to_string_lossy().into_owned();
    let out = steelcutd_env(
        &["check-config", "--config", &config],
        &[("STEELCUT_SERVER_LISTN", "127.0.0.1:1")],
        WAIT,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("STEELCUT_SERVER_LISTN"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_valid_environment_override_is_applied_to_the_served_app() {
    // 1. The file says nothing about the lifetime; the environment says 120 seconds.
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &sqlite_url(dir.path()), "127.0.0.1:0", "");
    let env = BTreeMap::from([(
        "STEELCUT_AUTH_TOKEN_LIFETIME_SECS".to_owned(),
        "120".to_owned(),
    )]);
    let config = Config::load_with_env(&path, &env).unwrap();
    // 2. The served app issues tokens with that lifetime.
    let mut app = start_config(config).await;
    app.admin_url = sqlite_url(dir.path());
    let client = app.add_client(&["api_v0.0.1"], &[]).await;
    let resp = app
        .token_basic(&client, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["expires_in"], 120);
    // 3. check-config accepts the same override from the real environment.
    let config = path.to_string_lossy().into_owned();
    let out = steelcutd_env(
        &["check-config", "--config", &config],
        &[("STEELCUT_AUTH_TOKEN_LIFETIME_SECS", "120")],
        WAIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn check_config_reports_a_private_key_that_others_may_read() {
    // 1. A key directory with a key file of mode 0644.
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &sqlite_url(dir.path()), "127.0.0.1:0", "");
    let keys = dir.path().join("keys");
    let out = steelcutd(&["keys", "generate", "--config", &path.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = std::fs::read_dir(&keys)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    // 2. check-config names the key, the file and the fix.
    let config = path.to_string_lossy().into_owned();
    let out = steelcutd_env(&["check-config", "--config", &config], &[], WAIT);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("`[keys] dir`") && err.contains(&format!("chmod 600 {}", key.display())),
        "{err}"
    );
    assert!(err.contains(&config), "{err}");
}

#[test]
fn check_config_reports_a_key_directory_that_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let path = write_config(dir.path(), &sqlite_url(dir.path()), "127.0.0.1:0", "");
    let env = [(
        "STEELCUT_KEYS_DIR",
        blocker.join("keys").to_string_lossy().into_owned(),
    )];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let config = path.to_string_lossy().into_owned();
    let out = steelcutd_env(&["check-config", "--config", &config], &env, WAIT);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("`[keys] dir` (from STEELCUT_KEYS_DIR)"),
        "{err}"
    );
    assert!(err.contains("steelcutd keys generate"), "{err}");
}

#[test]
fn check_config_reports_a_sqlite_path_that_cannot_be_created_and_serve_refuses_the_same() {
    // 1. The database would live below a regular file, as in sqlite:///etc/hostname/sub/x.db.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("hostname");
    std::fs::write(&blocker, "").unwrap();
    let db = blocker.join("sub").join("steelcut.db");
    let path = write_config(
        dir.path(),
        &format!("sqlite://{}", db.display()),
        "127.0.0.1:0",
        "",
    );
    let config = path.to_string_lossy().into_owned();
    // 2. check-config names the key, the path and what is in the way.
    let out = steelcutd_env(&["check-config", "--config", &config], &[], WAIT);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let lines = problem_lines(&stderr(&out));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("`[database] url`"), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!(
            "{} cannot be created: {} is not a directory",
            db.display(),
            blocker.display()
        )),
        "{}",
        lines[0]
    );
    // 3. serve refuses with the same line instead of failing later to open the database.
    let served = steelcutd_env(&["serve", "--config", &config], &[], WAIT);
    assert_eq!(served.status.code(), Some(78));
    assert_eq!(problem_lines(&stderr(&served)), lines);
}

#[test]
fn check_config_reports_an_unreachable_postgresql_server_without_its_password() {
    // 1. A PostgreSQL URL on a loopback port where nothing listens.
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://steelcut:s3cret-pw@127.0.0.1:{}/steelcut",
        free_port()
    );
    let path = write_config(dir.path(), &url, "127.0.0.1:0", "");
    let config = path.to_string_lossy().into_owned();
    // 2. The problem names the key and the server, never the password.
    let out = steelcutd_env(&["check-config", "--config", &config], &[], WAIT);
    let err = stderr(&out);
    let lines = problem_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("`[database] url`"), "{err}");
    assert!(
        lines[0].contains("cannot connect to postgres://steelcut:***@127.0.0.1"),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
    // 3. A database that is down is not a broken file: exit 1, which systemd restarts, not 78.
    assert_eq!(out.status.code(), Some(1), "{err}");
}

#[test]
fn check_config_lists_every_refused_key_file_and_the_problems_of_the_file_at_once() {
    // 1. Two key files others may read, a route whose document is missing, and a token
    //    lifetime out of range.
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &sqlite_url(dir.path()), "127.0.0.1:0", "");
    let config = path.to_string_lossy().into_owned();
    for _ in 0..2 {
        let out = steelcutd(&["keys", "generate", "--config", &config]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let mut keys: Vec<_> = std::fs::read_dir(dir.path().join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    keys.sort();
    for key in &keys {
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::remove_file(dir.path().join("protected_resource.json")).unwrap();
    let env = [("STEELCUT_AUTH_TOKEN_LIFETIME_SECS", "5")];
    // 2. One run lists all four, each naming the key and the file.
    let out = steelcutd_env(&["check-config", "--config", &config], &env, WAIT);
    let err = stderr(&out);
    let lines = problem_lines(&err);
    assert_eq!(lines.len(), 4, "{err}");
    assert!(lines.iter().all(|l| l.contains(&config)), "{err}");
    for key in &keys {
        let fix = format!("chmod 600 {}", key.display());
        assert!(
            lines
                .iter()
                .any(|l| l.contains("`[keys] dir`") && l.contains(&fix)),
            "{err}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("`[[resource.routes]]` /api_v0.0.1 `file`")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l
                .contains("`[auth] token_lifetime_secs` (from STEELCUT_AUTH_TOKEN_LIFETIME_SECS)")),
        "{err}"
    );
}

#[test]
fn check_config_reports_tls_files_that_do_not_make_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &sqlite_url(dir.path()), "127.0.0.1:0", "");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, "not a certificate\n").unwrap();
    std::fs::write(&key, "not a key\n").unwrap();
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "shutdown_grace_secs = 5",
        &format!(
            "shutdown_grace_secs = 5\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    std::fs::write(&path, text).unwrap();
    let config = path.to_string_lossy().into_owned();
    let out = steelcutd_env(&["check-config", "--config", &config], &[], WAIT);
    assert!(!out.status.success());
    let lines = problem_lines(&stderr(&out));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("`[server.tls]`"), "{}", lines[0]);
    assert!(
        lines[0].contains(&cert.display().to_string()),
        "{}",
        lines[0]
    );
}

// --- files the daemon creates ---------------------------------------------------------------

/// Runs `steelcutd serve` on `config` until it logs that it listens, calls `running`, then
/// stops it with SIGTERM. Returns what it wrote on stderr.
fn serve_until_listening(config: &Path, running: impl FnOnce()) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_steelcutd"))
        .args(["serve", "--config", &config.to_string_lossy()])
        .env_remove("STEELCUT_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    while !read().contains("listening") {
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("steelcutd serve did not start:\n{}", read());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    running();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success(), "{}", read());
    read()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The database file and SQLite's companions (`-wal`, `-shm`) beside it.
fn database_files(db: &Path) -> Vec<PathBuf> {
    let name = db.file_name().unwrap().to_string_lossy().into_owned();
    let mut files: Vec<PathBuf> = std::fs::read_dir(db.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&name))
        .collect();
    files.sort();
    files
}

#[test]
fn serve_creates_the_sqlite_database_owner_only_and_logs_the_directories_it_creates() {
    // 1. The database is to live two directories below a fresh one.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("db").join("steelcut.db");
    let path = write_config(
        dir.path(),
        &format!("sqlite://{}", db.display()),
        "127.0.0.1:0",
        "",
    );
    // 2. While the daemon runs, the file, its -wal and -shm companions (which hold the same
    //    argon2 hashes) and the directories it made are its owner's alone.
    let log = serve_until_listening(&path, || {
        let files = database_files(&db);
        assert!(files.len() >= 2, "{files:?}");
        for f in files {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    });
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    assert_eq!(mode(&db), 0o600);
    // 3. Making a directory is logged, naming it.
    let created = log
        .lines()
        .find(|l| l.contains("created the database directory"))
        .unwrap_or_else(|| panic!("no log line about the directory:\n{log}"));
    assert!(
        created.contains(&db.parent().unwrap().display().to_string()),
        "{created}"
    );
}

#[test]
fn migrate_creates_the_sqlite_database_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("steelcut.db");
    let path = write_config(
        dir.path(),
        &format!("sqlite://{}", db.display()),
        "127.0.0.1:0",
        "",
    );
    let out = steelcutd(&["migrate", "--config", &path.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    for f in database_files(&db) {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    // An existing database keeps the mode its owner gave it.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = steelcutd(&["migrate", "--config", &path.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&db), 0o640);
}

// --- what the operator reads ----------------------------------------------------------------

#[test]
fn a_missing_configuration_file_says_how_to_name_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir
        .path()
        .join("steelcut.toml")
        .to_string_lossy()
        .into_owned();
    for command in ["check-config", "serve"] {
        let out = steelcutd_env(&[command, "--config", &missing], &[], WAIT);
        assert_eq!(out.status.code(), Some(78), "{command}");
        let lines = problem_lines(&stderr(&out));
        assert_eq!(
            lines,
            [format!(
                "- {missing}: (file): {missing} does not exist: pass --config FILE or set \
                 STEELCUT_CONFIG"
            )],
            "{command}"
        );
    }
}

#[test]
fn serve_on_loopback_does_not_warn_about_plain_http_and_logs_no_other_warning() {
    // The helper's configuration: an http:// issuer, no TLS, listening on 127.0.0.1 only.
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let path = write_config(dir.path(), &sqlite_url(dir.path()), &listen, "");
    let log = serve_until_listening(&path, || {});
    assert!(!log.contains("RFC 6749"), "{log}");
    assert!(!log.contains("WARN"), "{log}");
}

#[test]
fn the_readme_check_config_sample_is_the_real_output() {
    // 1. The sample in README's Configuration section: a command, then what it prints.
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let prompt = "$ steelcutd check-config --config tests/fixtures/bad.toml";
    let sample: Vec<&str> = readme
        .lines()
        .skip_while(|l| *l != prompt)
        .skip(1)
        .take_while(|l| *l != "```")
        .collect();
    assert!(sample.len() > 1, "no sample after {prompt:?} in README.md");
    // 2. The real binary, run from the repository root, prints exactly that.
    let out = Command::new(env!("CARGO_BIN_EXE_steelcutd"))
        .args(["check-config", "--config", "tests/fixtures/bad.toml"])
        .current_dir(root)
        .env_remove("STEELCUT_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(stderr(&out).lines().collect::<Vec<_>>(), sample);
}

// --- modes ----------------------------------------------------------------------------------

/// The warning lines of a `check-config` run (`steelcutd: FILE: warning: KEY: ...`).
fn warning_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains(": warning: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn check_config_refuses_a_key_directory_others_may_read_or_write_and_serve_refuses_the_same() {
    // 1. A key directory of mode 0755 (its key file is 0600).
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &sqlite_url(dir.path()), "127.0.0.1:0", "");
    let config = path.to_string_lossy().into_owned();
    let out = steelcutd(&["keys", "generate", "--config", &config]);
    assert!(out.status.success(), "{}", stderr(&out));
    let keys = dir.path().join("keys");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
    // 2. An error naming the key, the file and the fix.
    let out = steelcutd_env(&["check-config", "--config", &config], &[], WAIT);
    assert_eq!(out.status.code(), Some(78));
    let lines = problem_lines(&stderr(&out));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(&config), "{}", lines[0]);
    assert!(lines[0].contains("`[keys] dir`"), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!("run `chmod 700 {}`", keys.display())),
        "{}",
        lines[0]
    );
    // 3. serve refuses the same way; after the chmod both accept it.
    let served = steelcutd_env(&["serve", "--config", &config], &[], WAIT);
    assert_eq!(problem_lines(&stderr(&served)), lines);
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = steelcutd_env(&["check-config", "--config", &config], &[], WAIT);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn check_config_warns_about_a_database_password_in_a_file_every_user_may_read() {
    // 1. The daemon's PostgreSQL URL, password included, in a file of mode 0644.
    let db = crate::pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &db.reader_url, "127.0.0.1:0", "");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = path.to_string_lossy().into_owned();
    // 2. The file is valid; a warning names the file, the key and the ways out, and never
    //    the password.
    let out = steelcutd_env(&["check-config", "--config", &config], &[], WAIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings = warning_lines(&stderr(&out));
    assert_eq!(warnings.len(), 1, "{}", stderr(&out));
    let w = &warnings[0];
    assert!(
        w.starts_with(&format!("steelcutd: {config}: warning: `[database] url`")),
        "{w}"
    );
    for fix in [
        format!("chmod 640 {config}"),
        format!("chmod 600 {config}"),
        "STEELCUT_DATABASE_URL".to_owned(),
    ] {
        assert!(w.contains(&fix), "{w}");
    }
    let password = url::Url::parse(&db.reader_url)
        .unwrap()
        .password()
        .unwrap()
        .to_owned();
    assert!(!stderr(&out).contains(&password));
    // 3. No warning once only the owner and the group may read it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = steelcutd_env(&["check-config", "--config", &config], &[], WAIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(warning_lines(&stderr(&out)).is_empty(), "{}", stderr(&out));
    // 4. Nor when the password comes from the environment instead of the file.
    let mut no_password = url::Url::parse(&db.reader_url).unwrap();
    no_password.set_password(None).unwrap();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&db.reader_url, no_password.as_str());
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let env = [("STEELCUT_DATABASE_URL", db.reader_url.as_str())];
    let out = steelcutd_env(&["check-config", "--config", &config], &env, WAIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(warning_lines(&stderr(&out)).is_empty(), "{}", stderr(&out));
}

#[test]
fn a_sqlite_database_every_user_may_read_is_a_warning_of_check_config_and_of_serve() {
    // 1. A database file made by an older version, mode 0644.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("steelcut.db");
    let path = write_config(dir.path(), &sqlite_url(dir.path()), "127.0.0.1:0", "");
    let config = path.to_string_lossy().into_owned();
    let out = steelcutd(&["migrate", "--config", &config]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    // 2. check-config passes and prints the fix.
    let out = steelcutd_env(&["check-config", "--config", &config], &[], WAIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let fix = format!("chmod 600 {}", db.display());
    let warnings = warning_lines(&stderr(&out));
    assert_eq!(warnings.len(), 1, "{}", stderr(&out));
    assert!(warnings[0].contains(&fix), "{}", warnings[0]);
    // 3. serve starts and logs the same warning.
    let log = serve_until_listening(&path, || {});
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains(&fix)),
        "{log}"
    );
}

// --- route documents ------------------------------------------------------------------------

/// A resource-only configuration in `dir` serving `routes` (`(path, file)`), with `extra`
/// appended to `[resource]`.
fn resource_node(dir: &Path, routes: &[(&str, &Path)], extra: &str) -> PathBuf {
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, r#"{"keys": []}"#).unwrap();
    let mut text = format!(
        "roles = [\"resource\"]\n[resource]\nissuer = \"http://steelcut.test\"\njwks_file = \"{}\"\n{extra}\n",
        jwks.display()
    );
    for (path, file) in routes {
        text.push_str(&format!(
            "[[resource.routes]]\npath = \"{path}\"\nfile = \"{}\"\n",
            file.display()
        ));
    }
    let config = dir.join("steelcut.toml");
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn check_config_refuses_documents_that_are_too_big_or_not_regular_files_at_once() {
    // 1. Four routes: a 20 MiB file (sparse: it takes no room, but reading it would take
    //    20 MiB), /dev/zero (endless), a FIFO nobody writes to (a read would block for ever)
    //    and a directory.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(20 * 1024 * 1024)
        .unwrap();
    let fifo = dir.path().join("fifo.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let subdir = dir.path().join("a-directory");
    std::fs::create_dir(&subdir).unwrap();
    let zero = Path::new("/dev/zero");
    let routes = [
        ("/big", big.as_path()),
        ("/zero", zero),
        ("/fifo", fifo.as_path()),
        ("/dir", subdir.as_path()),
    ];
    let config = resource_node(dir.path(), &routes, "");
    // 2. check-config refuses all four in one run, at once, each naming the route, the file
    //    and its size or kind.
    let started = std::time::Instant::now();
    let out = steelcutd_env(
        &["check-config", "--config", &config.to_string_lossy()],
        &[],
        WAIT,
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(78));
    let lines = problem_lines(&stderr(&out));
    let expected = [
        format!(
            "`[[resource.routes]]` /big `file`: {} is 20971520 bytes, more than `[resource] \
             max_document_bytes` (10485760)",
            big.display()
        ),
        "`[[resource.routes]]` /zero `file`: /dev/zero is a character device, not a regular file"
            .to_owned(),
        format!(
            "`[[resource.routes]]` /fifo `file`: {} is a FIFO, not a regular file",
            fifo.display()
        ),
        format!(
            "`[[resource.routes]]` /dir `file`: {} is a directory, not a regular file",
            subdir.display()
        ),
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:?}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(line.ends_with(want.as_str()), "{line}\nwanted: {want}");
    }
}

#[test]
fn max_document_bytes_sets_the_largest_document_a_route_may_serve() {
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("doc.json");
    std::fs::write(&doc, r#"{"about": "This is a protected resource"}"#).unwrap();
    let size = std::fs::metadata(&doc).unwrap().len();
    let check = |limit: u64| {
        let extra = format!("max_document_bytes = {limit}");
        let config = resource_node(dir.path(), &[("/doc", doc.as_path())], &extra);
        steelcutd_env(
            &["check-config", "--config", &config.to_string_lossy()],
            &[],
            WAIT,
        )
    };
    let out = check(size);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = check(size - 1);
    let lines = problem_lines(&stderr(&out));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].ends_with(&format!(
            "{} is {size} bytes, more than `[resource] max_document_bytes` ({})",
            doc.display(),
            size - 1
        )),
        "{}",
        lines[0]
    );
}
