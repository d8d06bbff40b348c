//! The test harness: one [`TestApp`] for a daemon that runs either in this process (the same
//! [`App`] that `steelcutd serve` builds, on a task) or as the real binary (a child process with
//! a notify socket, as systemd runs it), with one API for both:
//!
//! - starting: [`spawn_app`] / [`spawn_daemon`] / [`spawn_app_with`] write a configuration for a
//!   fresh temporary directory (a fresh database and key directory, listeners on port 0) and
//!   start it; [`TestApp::launch`] starts an existing file; [`TestApp::restart`] and
//!   [`TestApp::stop`] do what they say in either mode;
//! - talking to it: [`TestApp::url`], the token requests ([`TestApp::token_basic`],
//!   [`TestApp::access_token`], ...), [`TestApp::metrics`] and [`TestApp::readyz`] (on the
//!   admin listener when there is one);
//! - administering it as an operator does: [`TestApp::add_client`] and [`TestApp::cli`] run the
//!   real binary's admin commands on its configuration; [`TestApp::reload`] is SIGHUP;
//! - watching the process (binary mode): [`TestApp::signal`],
//!   [`TestApp::next_notification`], [`TestApp::log`], [`TestApp::wait_for_log`],
//!   [`TestApp::wait_exit`].
//!
//! Ports are never chosen by a test: every listener binds port 0 and the harness reads the
//! bound address back ([`App::local_addr`] in process, the `listening` log line of the binary).
//! Tests wait for conditions with [`wait_until`] rather than sleeping.

mod child;
mod cli;
mod relay;
mod wait;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use steelcut::app::{App, AppState};
use steelcut::auth::password::hash_secret;
use steelcut::config::{Argon2Params, Config, DatabaseConfig, DatabaseUrl};
use steelcut::domain::{ClientId, Resource};
use steelcut::store::clients::NewClient;
use steelcut::store::Store;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pg::{self, PgDatabase};
pub use child::{EVENT_TIMEOUT, START_TIMEOUT};

/// The longest any one HTTP request of a test may take, connecting included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
pub use cli::{async_command, command, stderr, stdout, steelcutd, steelcutd_env, BIN};
pub use relay::Relay;
pub use wait::{wait_for, wait_until, POLL};

use child::ChildDaemon;

/// How a test app runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The same [`App`] as `steelcutd serve`, on a task of the test's runtime: quick to start.
    InProcess,
    /// The real binary, `steelcutd serve`, as a child process with a notify socket: signals,
    /// exit codes, the log.
    Binary,
}

/// Which database a test app uses.
pub enum Backend {
    Sqlite,
    /// A fresh database on the shared test cluster: the daemon connects as a role that may
    /// only read, admin commands run as the owner.
    Postgres,
    /// The same with a given database, e.g. on a private cluster a test can stop.
    PostgresDb(PgDatabase),
}

/// What [`spawn_app_with`] writes and starts; `Default` is both roles on SQLite, in process,
/// with one route `/api_v0.0.1` serving [`DOC`](crate::resource::DOC).
pub struct TestOptions {
    pub mode: Mode,
    pub backend: Backend,
    pub roles: &'static str,
    /// Extra TOML appended to `[server]`.
    pub server_extra: String,
    /// Extra TOML appended to `[database]`.
    pub database_extra: String,
    /// Extra TOML appended to `[auth]`.
    pub auth_extra: String,
    /// The whole `[resource]` section (with routes); `None` for the default one route.
    pub resource_section: Option<String>,
    /// The whole configuration instead of the above (mode aside); `{dir}` stands for the
    /// app's directory, which holds `protected_resource.json`.
    pub toml: Option<String>,
    /// The real binary's open-file limit, in `prlimit --nofile` notation: `1024` for soft and
    /// hard (it cannot raise it), `1024:` for the soft limit only.
    pub open_files: Option<&'static str>,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            mode: Mode::InProcess,
            backend: Backend::Sqlite,
            roles: r#"["auth", "resource"]"#,
            server_extra: String::new(),
            database_extra: String::new(),
            auth_extra: String::new(),
            resource_section: None,
            toml: None,
            open_files: None,
        }
    }
}

/// The document every default route serves.
const DOCUMENT: &str = r#"{"about": "This is a protected resource"}"#;

/// A running (or stopped) daemon and everything a test needs to talk to it.
pub struct TestApp {
    /// The main listener's bound address.
    pub addr: SocketAddr,
    /// The admin listener's bound address, if one is configured.
    pub admin_addr: Option<SocketAddr>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub dir: TempDir,
    pub config_path: PathBuf,
    /// The database URL the daemon uses (read-only role on PostgreSQL).
    pub database_url: String,
    /// The owning role's URL (admin commands); equal to `database_url` on SQLite.
    pub admin_url: String,
    pub pg: Option<PgDatabase>,
    pub http: reqwest::Client,
    mode: Mode,
    /// Working directory of the binary (relative paths in its configuration).
    cwd: Option<PathBuf>,
    runner: Runner,
}

enum Runner {
    InProcess {
        state: Arc<AppState>,
        shutdown: Option<oneshot::Sender<()>>,
        handle: Option<JoinHandle<()>>,
    },
    Binary(ChildDaemon),
}

/// A registered client.
pub struct TestClient {
    pub id: String,
    pub secret: String,
}

impl TestClient {
    /// The credentials that `client add` (or `client update --new-secret`) printed.
    pub fn from_cli_json(json: &serde_json::Value) -> Self {
        Self {
            id: json["client_id"]
                .as_str()
                .expect("client_id printed")
                .to_owned(),
            secret: json["client_secret"]
                .as_str()
                .expect("client_secret printed")
                .to_owned(),
        }
    }
}

/// `/metrics` as read once: every series (`name{labels}` exactly as printed) and its value.
pub struct Metrics {
    pub text: String,
    values: BTreeMap<String, f64>,
}

impl Metrics {
    fn parse(text: String) -> Self {
        let values = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Self { text, values }
    }

    /// The value of `series`; panics if the daemon does not export it.
    pub fn get(&self, series: &str) -> f64 {
        self.try_get(series)
            .unwrap_or_else(|| panic!("no metric {series} in:\n{}", self.text))
    }

    pub fn try_get(&self, series: &str) -> Option<f64> {
        self.values.get(series).copied()
    }
}

/// Both roles on SQLite, in process.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

/// Both roles on SQLite, as the real binary.
pub async fn spawn_daemon() -> TestApp {
    spawn_app_with(TestOptions {
        mode: Mode::Binary,
        ..TestOptions::default()
    })
    .await
}

/// A node from a whole configuration text, in process (`{dir}` = its fresh directory, which
/// holds `protected_resource.json`).
pub async fn spawn_app_from_toml(text: &str) -> TestApp {
    spawn_app_with(TestOptions {
        toml: Some(text.to_owned()),
        ..TestOptions::default()
    })
    .await
}

/// Writes the configuration `opts` describes into a fresh directory and starts it.
pub async fn spawn_app_with(opts: TestOptions) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("protected_resource.json"), DOCUMENT).expect("write doc");
    let dir_text = dir.path().display().to_string();
    let config_path = dir.path().join("steelcut.toml");
    let mut pg_db = None;
    let text = match opts.toml {
        Some(ref text) => text.replace("{dir}", &dir_text),
        None => {
            let database_url = match opts.backend {
                Backend::Sqlite => format!("sqlite://{dir_text}/steelcut.db"),
                Backend::Postgres => {
                    let db = tokio::task::spawn_blocking(pg::fresh_database)
                        .await
                        .expect("create a test database");
                    let url = db.reader_url.clone();
                    pg_db = Some(db);
                    url
                }
                Backend::PostgresDb(db) => {
                    let url = db.reader_url.clone();
                    pg_db = Some(db);
                    url
                }
            };
            let resource = opts.resource_section.clone().unwrap_or_else(|| {
                format!(
                    "[resource]\n[[resource.routes]]\npath = \"/api_v0.0.1\"\nfile = \"{dir_text}/protected_resource.json\"\n"
                )
            });
            format!(
                r#"roles = {roles}

[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 5
{server_extra}

[database]
url = "{database_url}"
{database_extra}

[keys]
dir = "{dir_text}/keys"

[auth]
issuer = "http://steelcut.test"
{auth_extra}

{resource}
"#,
                roles = opts.roles,
                server_extra = opts.server_extra,
                database_extra = opts.database_extra,
                auth_extra = opts.auth_extra,
            )
        }
    };
    std::fs::write(&config_path, text).expect("write config");
    if let Some(db) = &pg_db {
        // The schema belongs to the owner, as `steelcutd migrate` leaves it; the daemon only
        // reads.
        let config = config_path.to_string_lossy().into_owned();
        let out = steelcutd(&[
            "migrate",
            "--config",
            &config,
            "--database-url",
            &db.owner_url,
        ]);
        assert!(out.status.success(), "migrate: {}", stderr(&out));
        db.grant_read_only();
    }
    let mut app = TestApp::launch_limited(opts.mode, dir, config_path, opts.open_files).await;
    if let Some(db) = pg_db {
        app.admin_url = db.owner_url.clone();
        app.pg = Some(db);
    }
    app
}

/// Starts an app in process from an existing config file (its directory is not owned).
pub async fn start(config_path: &Path) -> TestApp {
    let config = Config::load(config_path).unwrap_or_else(|e| panic!("{e}"));
    start_config(config).await
}

/// Starts an app in process from a loaded config (e.g. one loaded with
/// `Config::load_with_env`).
pub async fn start_config(config: Config) -> TestApp {
    let config_path = config.file.clone();
    let database_url = database_url_of(&config_path);
    let (runner, addr, admin_addr) = run_in_process(config).await;
    TestApp::new(
        Mode::InProcess,
        tempfile::tempdir().expect("temp dir"),
        config_path,
        database_url,
        None,
        runner,
        addr,
        admin_addr,
    )
}

/// `[database] url` of a configuration file (empty when there is none), for admin commands.
fn database_url_of(config_path: &Path) -> String {
    let text = std::fs::read_to_string(config_path).unwrap_or_default();
    let value: toml::Value = toml::from_str(&text).unwrap_or(toml::Value::Boolean(false));
    value
        .get("database")
        .and_then(|d| d.get("url"))
        .and_then(|u| u.as_str())
        .unwrap_or_default()
        .to_owned()
}

async fn run_in_process(config: Config) -> (Runner, SocketAddr, Option<SocketAddr>) {
    let app = App::build(config)
        .await
        .unwrap_or_else(|e| panic!("App::build: {e}"));
    let (addr, admin_addr, state) = (app.local_addr(), app.admin_addr(), app.state());
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let runner = Runner::InProcess {
        state,
        shutdown: Some(tx),
        handle: Some(handle),
    };
    (runner, addr, admin_addr)
}

async fn run_binary(
    config_path: &Path,
    cwd: Option<&Path>,
    dir: &Path,
    open_files: Option<&str>,
) -> (Runner, SocketAddr, Option<SocketAddr>) {
    let started = ChildDaemon::start(config_path, cwd, &[], dir, open_files).await;
    (
        Runner::Binary(started.daemon),
        started.addr,
        started.admin_addr,
    )
}

impl TestApp {
    #[allow(clippy::too_many_arguments)]
    fn new(
        mode: Mode,
        dir: TempDir,
        config_path: PathBuf,
        database_url: String,
        cwd: Option<PathBuf>,
        runner: Runner,
        addr: SocketAddr,
        admin_addr: Option<SocketAddr>,
    ) -> Self {
        Self {
            addr,
            admin_addr,
            base: format!("http://{addr}"),
            dir,
            config_path,
            admin_url: database_url.clone(),
            database_url,
            pg: None,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                // No request of a test may wait without end: a daemon that stops answering, or
                // a client pool that loses track of a connection closed under it, fails the
                // request (and the test, naming it) instead of hanging the suite.
                .connect_timeout(REQUEST_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("http client"),
            mode,
            cwd,
            runner,
        }
    }

    /// Starts the configuration at `config_path` (usually inside `dir`, which the app keeps).
    pub async fn launch(mode: Mode, dir: TempDir, config_path: PathBuf) -> Self {
        Self::launch_limited(mode, dir, config_path, None).await
    }

    /// As [`TestApp::launch`]; the real binary gets `open_files` as its open-file limit
    /// (`prlimit --nofile` notation: `1024`, or `1024:` for the soft limit only).
    pub async fn launch_limited(
        mode: Mode,
        dir: TempDir,
        config_path: PathBuf,
        open_files: Option<&str>,
    ) -> Self {
        let database_url = database_url_of(&config_path);
        let (runner, addr, admin_addr) = match mode {
            Mode::InProcess => {
                let config = Config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
                run_in_process(config).await
            }
            Mode::Binary => run_binary(&config_path, None, dir.path(), open_files).await,
        };
        Self::new(
            mode,
            dir,
            config_path,
            database_url,
            None,
            runner,
            addr,
            admin_addr,
        )
    }

    /// Starts the real binary in `cwd`, where the relative paths of `config` (relative too)
    /// resolve, as a user runs it from a checkout.
    pub async fn launch_binary_in(cwd: &Path, config: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (runner, addr, admin_addr) = run_binary(config, Some(cwd), dir.path(), None).await;
        let config_path = cwd.join(config);
        let database_url = database_url_of(&config_path);
        Self::new(
            Mode::Binary,
            dir,
            config_path,
            database_url,
            Some(cwd.to_owned()),
            runner,
            addr,
            admin_addr,
        )
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The URL of `/livez`, `/readyz` or `/metrics`: on the admin listener when there is one.
    pub fn ops_url(&self, path: &str) -> String {
        match self.admin_addr {
            Some(admin) => format!("http://{admin}{path}"),
            None => self.url(path),
        }
    }

    /// `/metrics`, parsed.
    pub async fn metrics(&self) -> Metrics {
        let resp = self
            .http
            .get(self.ops_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(resp.status(), 200, "GET /metrics");
        Metrics::parse(resp.text().await.expect("metrics text"))
    }

    /// One series of `/metrics` (`name{labels}` exactly as printed).
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics().await.get(series)
    }

    /// `GET /readyz`: the status and the JSON body.
    pub async fn readyz(&self) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .get(self.ops_url("/readyz"))
            .send()
            .await
            .expect("GET /readyz");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("readyz JSON"))
    }

    /// Registers a client with the real CLI (`client add`, as the owning role) and returns the
    /// credentials it printed.
    pub async fn add_client(&self, resources: &[&str], scopes: &[&str]) -> TestClient {
        let mut args = vec!["client", "add", "--name", "test client"];
        for r in resources {
            args.extend(["--resource", r]);
        }
        for s in scopes {
            args.extend(["--scope", s]);
        }
        let out = self.cli_async(&args).await;
        assert!(out.status.success(), "client add: {}", stderr(&out));
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("client add prints JSON");
        TestClient::from_cli_json(&json)
    }

    /// Registers a client with a chosen secret (one that needs form-urlencoding, say). The CLI
    /// only ever generates secrets, so this writes the store directly, as `client add` would.
    pub async fn add_client_with_secret(&self, resources: &[&str], secret: &str) -> TestClient {
        let url = self.admin_url.clone();
        let resources: Vec<Resource> = resources
            .iter()
            .map(|r| Resource::parse(r).expect("resource"))
            .collect();
        let secret = secret.to_owned();
        tokio::task::spawn_blocking(move || {
            let id = ClientId::generate();
            let hash = hash_secret(
                &secrecy::SecretString::from(secret.clone()),
                Argon2Params::default(),
            )
            .expect("hash");
            open_store(&url)
                .insert_client(NewClient {
                    client_id: id.clone(),
                    name: "test client".into(),
                    secret_hash: hash,
                    grant_types: vec!["client_credentials".into()],
                    resources,
                    scopes: Vec::new(),
                })
                .expect("insert client");
            TestClient {
                id: id.to_string(),
                secret,
            }
        })
        .await
        .expect("add client task")
    }

    /// `POST /token` with client_secret_basic and the given form.
    pub async fn token_basic(
        &self,
        client: &TestClient,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .post(self.url("/token"))
            .basic_auth(&client.id, Some(&client.secret))
            .form(form)
            .send()
            .await
            .expect("token request")
    }

    /// `POST /token` with client_secret_post: the credentials in the form body.
    pub async fn token_post(
        &self,
        client: &TestClient,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut all: Vec<(&str, &str)> =
            vec![("client_id", &client.id), ("client_secret", &client.secret)];
        all.extend_from_slice(form);
        self.http
            .post(self.url("/token"))
            .form(&all)
            .send()
            .await
            .expect("token request")
    }

    /// A valid access token for `client` and `resource`.
    pub async fn access_token(&self, client: &TestClient, resource: &str) -> String {
        let resp = self
            .token_basic(
                client,
                &[("grant_type", "client_credentials"), ("resource", resource)],
            )
            .await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.expect("json");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// The status of `token_basic(client, form)` once it equals `want`, polling for up to five
    /// seconds: a daemon may take a moment to notice a change made by the admin CLI.
    pub async fn token_status_becomes(
        &self,
        client: &TestClient,
        form: &[(&str, &str)],
        want: u16,
    ) -> u16 {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let status = self.token_basic(client, form).await.status().as_u16();
            if status == want || std::time::Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The arguments of an admin command on this app: `--config`, and `--database-url` of the
    /// owning role for the commands that write to the database.
    fn admin_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", self.config_path.to_str().expect("UTF-8 path")]);
        let wants_db = matches!(args.first(), Some(&"client") | Some(&"migrate"));
        if wants_db && !self.admin_url.is_empty() && self.admin_url != self.database_url {
            all.extend(["--database-url", &self.admin_url]);
        }
        all
    }

    /// Runs the real `steelcutd` binary with `--config` of this app appended (and, for client
    /// and migrate commands on PostgreSQL, the owner's `--database-url`).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = command();
        cmd.args(self.admin_args(args));
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd.output().expect("run steelcutd")
    }

    /// [`TestApp::cli`] without blocking the runtime the app may be serving on.
    pub async fn cli_async(&self, args: &[&str]) -> Output {
        let mut cmd = async_command();
        cmd.args(self.admin_args(args));
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd.kill_on_drop(true);
        tokio::time::timeout(START_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("steelcutd {args:?} still running after {START_TIMEOUT:?}"))
            .expect("run steelcutd")
    }

    /// Re-reads the configuration file as SIGHUP does; `Err` carries why it was refused (the
    /// configuration in force then stays). Binary mode sends SIGHUP and reads the outcome from
    /// the notifications (`RELOADING=1`, then `READY=1` with a `STATUS=`) and the log.
    pub async fn reload(&mut self) -> Result<(), String> {
        match &mut self.runner {
            Runner::InProcess { state, .. } => {
                let config = Config::load(&self.config_path).map_err(|e| e.to_string())?;
                state.reload(config).await.map_err(|e| e.to_string())?;
                Ok(())
            }
            Runner::Binary(daemon) => {
                let mark = daemon.log_len();
                daemon.signal("HUP");
                let reloading = daemon.next_notification().await;
                assert!(reloading.starts_with("RELOADING=1"), "{reloading:?}");
                let ready = daemon.next_notification().await;
                assert!(ready.starts_with("READY=1"), "{ready:?}");
                if ready.contains("configuration reloaded") {
                    return Ok(());
                }
                daemon.wait_for_log(mark, &["reload refused"]).await;
                let log = daemon.log();
                let refused: Vec<&str> = log
                    .lines()
                    .skip(mark)
                    .filter(|l| l.contains("reload refused"))
                    .collect();
                Err(format!("{ready}\n{}", refused.join("\n")))
            }
        }
    }

    /// Stops the daemon gracefully (SIGTERM for the binary) and waits for it (bounded).
    pub async fn stop(&mut self) {
        match &mut self.runner {
            Runner::InProcess {
                shutdown, handle, ..
            } => {
                if let Some(tx) = shutdown.take() {
                    let _ = tx.send(());
                }
                if let Some(h) = handle.take() {
                    tokio::time::timeout(START_TIMEOUT, h)
                        .await
                        .expect("the app stops within the timeout")
                        .expect("the app task");
                }
            }
            Runner::Binary(daemon) => {
                daemon.signal("TERM");
                daemon.wait_exit().await;
            }
        }
    }

    /// Stops the daemon if it runs, then starts the same configuration again in the same mode
    /// (on new port-0 addresses).
    pub async fn restart(&mut self) {
        self.stop().await;
        let (runner, addr, admin_addr) = match self.mode {
            Mode::InProcess => {
                let config = Config::load(&self.config_path).unwrap_or_else(|e| panic!("{e}"));
                run_in_process(config).await
            }
            Mode::Binary => {
                run_binary(
                    &self.config_path,
                    self.cwd.as_deref(),
                    self.dir.path(),
                    None,
                )
                .await
            }
        };
        self.runner = runner;
        self.addr = addr;
        self.admin_addr = admin_addr;
        self.base = format!("http://{addr}");
    }

    fn daemon(&self) -> &ChildDaemon {
        match &self.runner {
            Runner::Binary(daemon) => daemon,
            Runner::InProcess { .. } => panic!("only a Mode::Binary app is a process"),
        }
    }

    fn daemon_mut(&mut self) -> &mut ChildDaemon {
        match &mut self.runner {
            Runner::Binary(daemon) => daemon,
            Runner::InProcess { .. } => panic!("only a Mode::Binary app is a process"),
        }
    }

    /// The daemon's process id (binary mode).
    pub fn pid(&self) -> u32 {
        self.daemon().pid()
    }

    /// CPU seconds (user + system) the daemon's process has used so far (binary mode).
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        // Fields after the command name (which may hold spaces) in parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks: f64 =
            fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
        ticks / 100.0
    }

    /// The daemon's resident set size now, in MiB (binary mode).
    pub fn rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .expect("VmRSS")
            / 1024.0
    }

    /// Sends a signal (`TERM`, `HUP`, ...) to the daemon's process.
    pub fn signal(&self, name: &str) {
        self.daemon().signal(name);
    }

    /// The next message the daemon sent to its notify socket (fails after [`EVENT_TIMEOUT`]).
    pub async fn next_notification(&mut self) -> String {
        self.daemon_mut().next_notification().await
    }

    /// Waits for the process to exit (bounded); its exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        self.daemon_mut().wait_exit().await
    }

    /// The daemon's log (its stderr) so far.
    pub fn log(&self) -> String {
        self.daemon().log()
    }

    /// How many log lines there are so far: a mark for [`TestApp::wait_for_log`].
    pub fn log_len(&self) -> usize {
        self.daemon().log_len()
    }

    /// The first log line after the first `from` lines that contains every needle, waiting for
    /// it (at most [`EVENT_TIMEOUT`]).
    pub async fn wait_for_log(&self, from: usize, needles: &[&str]) -> String {
        self.daemon().wait_for_log(from, needles).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Runner::InProcess { shutdown, .. } = &mut self.runner {
            if let Some(tx) = shutdown.take() {
                let _ = tx.send(());
            }
        }
        // A child daemon is killed by its own Drop.
    }
}

/// A throwaway self-signed certificate for 127.0.0.1 and localhost, written into `dir` as
/// `cert.pem` and `key.pem`.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A client's trust anchor for it.
    pub root: reqwest::Certificate,
}

impl TestCert {
    pub fn new(dir: &Path) -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("self-signed certificate");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).expect("write cert.pem");
        std::fs::write(&key, made.key_pair.serialize_pem()).expect("write key.pem");
        let root = reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).expect("root");
        Self { cert, key, root }
    }

    /// The `[server.tls]` table naming both files.
    pub fn server_tls(&self) -> String {
        format!(
            "[server.tls]\ncert = \"{}\"\nkey = \"{}\"",
            self.cert.display(),
            self.key.display()
        )
    }
}

pub fn open_store(url: &str) -> Store {
    Store::open(&DatabaseConfig {
        url: DatabaseUrl::parse(url).expect("database url"),
        pool_size: 2,
        connect_timeout: Duration::from_secs(5),
    })
    .expect("open store")
}

/// Writes a configuration for both roles into `dir`: the given database and listen address,
/// keys in `dir/keys`, issuer `http://steelcut.test`, the route `/api_v0.0.1`, and
/// `auth_extra` appended to `[auth]`. Returns the file's path.
pub fn write_config(dir: &Path, database_url: &str, listen: &str, auth_extra: &str) -> PathBuf {
    let doc = dir.join("protected_resource.json");
    std::fs::write(&doc, DOCUMENT).expect("write doc");
    let text = format!(
        r#"roles = ["auth", "resource"]

[server]
listen = "{listen}"
shutdown_grace_secs = 5

[database]
url = "{database_url}"
connect_timeout_secs = 1

[keys]
dir = "{keys}"

[auth]
issuer = "http://steelcut.test"
{auth_extra}

[resource]
[[resource.routes]]
path = "/api_v0.0.1"
file = "{doc}"
"#,
        keys = dir.join("keys").display(),
        doc = doc.display(),
    );
    let path = dir.join("steelcut.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A TCP port on 127.0.0.1 that nobody listened on a moment ago. Not for listeners (they bind
/// port 0); kept for the configuration tests that need a database URL that does not answer.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}
