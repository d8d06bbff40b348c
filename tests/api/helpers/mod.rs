//! Test fixtures: `spawn_app` builds the same [`App`] as `steelcutd serve`, from a real TOML
//! file in a fresh temporary directory, on port 0, with a fresh database and a fresh key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use secrecy::ExposeSecret;
use steelcut::app::App;
use steelcut::auth::password::{generate_secret, hash_secret};
use steelcut::config::{Argon2Params, Config, DatabaseConfig, DatabaseUrl};
use steelcut::domain::{ClientId, Resource, Scope};
use steelcut::store::{NewClient, Store};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pg::{self, PgDatabase};

/// Which database a test app uses.
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Options for [`spawn_app_with`]; `Default` is both roles on SQLite with one route.
pub struct TestOptions {
    pub backend: Backend,
    pub roles: &'static str,
    /// Extra TOML appended to `[auth]`.
    pub auth_extra: String,
    /// The whole `[resource]` section (with routes); `None` for the default one route
    /// `/api_v0.0.1` serving `{"about": "This is a protected resource"}`.
    pub resource_section: Option<String>,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            roles: r#"["auth", "resource"]"#,
            auth_extra: String::new(),
            resource_section: None,
        }
    }
}

/// A running app and everything a test needs to talk to it.
pub struct TestApp {
    pub addr: SocketAddr,
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
    /// The running daemon's state (e.g. `resource.jwks_fetches()`).
    pub state: std::sync::Arc<steelcut::app::AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
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

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

pub async fn spawn_app_with(opts: TestOptions) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let doc = dir.path().join("protected_resource.json");
    std::fs::write(&doc, r#"{"about": "This is a protected resource"}"#).expect("write doc");
    let (database_url, admin_url, pg) = match opts.backend {
        Backend::Sqlite => {
            let url = format!("sqlite://{}", dir.path().join("steelcut.db").display());
            (url.clone(), url, None)
        }
        Backend::Postgres => {
            let db = pg::fresh_database();
            // The schema belongs to the owner; the daemon runs as a role that may only read.
            let store = open_store(&db.owner_url);
            store.migrate().expect("migrate as owner");
            db.grant_read_only();
            (db.reader_url.clone(), db.owner_url.clone(), Some(db))
        }
    };
    let resource = opts.resource_section.unwrap_or_else(|| {
        format!(
            "[resource]\n[[resource.routes]]\npath = \"/api_v0.0.1\"\nfile = \"{}\"\n",
            doc.display()
        )
    });
    let text = format!(
        r#"roles = {roles}

[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 5

[database]
url = "{database_url}"

[keys]
dir = "{keys}"

[auth]
issuer = "http://steelcut.test"
{auth_extra}

{resource}
"#,
        roles = opts.roles,
        keys = dir.path().join("keys").display(),
        auth_extra = opts.auth_extra,
    );
    let config_path = dir.path().join("steelcut.toml");
    std::fs::write(&config_path, text).expect("write config");
    let mut app = start(&config_path).await;
    app.config_path = config_path;
    app.database_url = database_url;
    app.admin_url = admin_url;
    app.pg = pg;
    app.dir = dir;
    app
}

/// Starts an app from an existing config file.
pub async fn start(config_path: &Path) -> TestApp {
    let config = Config::load(config_path).unwrap_or_else(|e| panic!("{e}"));
    start_config(config).await
}

/// Starts an app from a loaded config (e.g. one loaded with `Config::load_with_env`).
pub async fn start_config(config: Config) -> TestApp {
    let config_path = config.file.clone();
    let app = App::build(config)
        .await
        .unwrap_or_else(|e| panic!("App::build: {e}"));
    let addr = app.local_addr();
    let state = app.state();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        base: format!("http://{addr}"),
        dir: tempfile::tempdir().expect("temp dir"),
        config_path,
        database_url: String::new(),
        admin_url: String::new(),
        pg: None,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        state,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

pub fn open_store(url: &str) -> Store {
    Store::open(&DatabaseConfig {
        url: DatabaseUrl::parse(url).expect("database url"),
        pool_size: 2,
        connect_timeout: std::time::Duration::from_secs(5),
    })
    .expect("open store")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers a client directly in the store (as `client add` does) and returns its
    /// credentials.
    pub async fn add_client(&self, resources: &[&str], scopes: &[&str]) -> TestClient {
        let url = self.admin_url.clone();
        let resources: Vec<Resource> = resources
            .iter()
            .map(|r| Resource::parse(r).expect("resource"))
            .collect();
        let scopes: Vec<Scope> = scopes
            .iter()
            .map(|s| Scope::parse(s).expect("scope"))
            .collect();
        tokio::task::spawn_blocking(move || {
            let secret = generate_secret();
            let id = ClientId::generate();
            open_store(&url)
                .insert_client(NewClient {
                    client_id: id.clone(),
                    name: "test client".into(),
                    secret_hash: hash_secret(&secret, Argon2Params::default()).expect("hash"),
                    grant_types: vec!["client_credentials".into()],
                    resources,
                    scopes,
                })
                .expect("insert client");
            TestClient {
                id: id.to_string(),
                secret: secret.expose_secret().to_owned(),
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

    /// Runs the real `steelcutd` binary with `--config` of this app appended.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let config = self.config_path.to_string_lossy().into_owned();
        all.extend(["--config", &config]);
        if !self.admin_url.is_empty() && self.pg.is_some() && wants_db(args) {
            all.extend(["--database-url", &self.admin_url]);
            return steelcutd(&all);
        }
        steelcutd(&all)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

fn wants_db(args: &[&str]) -> bool {
    matches!(args.first(), Some(&"client") | Some(&"migrate"))
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs the real binary.
pub fn steelcutd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steelcutd"))
        .args(args)
        .env_remove("STEELCUT_CONFIG")
        .output()
        .expect("run steelcutd")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a configuration for both roles into `dir`: the given database and listen address,
/// keys in `dir/keys`, issuer `http://steelcut.test`, the route `/api_v0.0.1`, and
/// `auth_extra` appended to `[auth]`. Returns the file's path.
pub fn write_config(dir: &Path, database_url: &str, listen: &str, auth_extra: &str) -> PathBuf {
    let doc = dir.join("protected_resource.json");
    std::fs::write(&doc, r#"{"about": "This is a protected resource"}"#).expect("write doc");
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

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

impl TestApp {
    /// Registers a client with a chosen secret (one that needs form-urlencoding, say).
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

    /// The status of `token_basic(client, form)` once it equals `want`, polling for up to five
    /// seconds: a daemon may take a moment to notice a change made by the admin CLI.
    pub async fn token_status_becomes(
        &self,
        client: &TestClient,
        form: &[(&str, &str)],
        want: u16,
    ) -> u16 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let status = self.token_basic(client, form).await.status().as_u16();
            if status == want || std::time::Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// Runs the real binary with extra environment variables; kills it and panics if it is still
/// running after `timeout` (a `serve` that should have refused to start must not hang a test).
pub fn steelcutd_env(args: &[&str], env: &[(&str, &str)], timeout: std::time::Duration) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_steelcutd"))
        .args(args)
        .env_remove("STEELCUT_CONFIG")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("run steelcutd");
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for steelcutd") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "steelcutd {args:?} still running after {timeout:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

/// Starts an app from a whole configuration text, for nodes `spawn_app_with` cannot describe
/// (a resource-only node, say). `{dir}` in the text stands for the app's fresh temporary
/// directory, which already holds `protected_resource.json` with
/// `{"about": "This is a protected resource"}`.
pub async fn spawn_app_from_toml(text: &str) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let doc = dir.path().join("protected_resource.json");
    std::fs::write(&doc, r#"{"about": "This is a protected resource"}"#).expect("write doc");
    let config_path = dir.path().join("steelcut.toml");
    let text = text.replace("{dir}", &dir.path().display().to_string());
    std::fs::write(&config_path, text).expect("write config");
    let mut app = start(&config_path).await;
    if let Some(DatabaseUrl::Sqlite(path)) = app.state.config.database.as_ref().map(|d| &d.url) {
        app.database_url = format!("sqlite://{}", path.display());
        app.admin_url = app.database_url.clone();
    }
    app.dir = dir;
    app
}
