//! Throwaway PostgreSQL for the integration tests.
//!
//! This module owns every PostgreSQL server the tests talk to:
//!
//! * one **shared cluster** per test process, started lazily by the first call to
//!   [`cluster_url`] or [`fresh_database`] and shared by all test threads; each test gets its
//!   own empty database and login roles on it ([`PgDatabase`]), so tests never see each other's
//!   rows and can run in parallel;
//! * **private clusters** ([`start_private_cluster`]), each owned by one test that needs to take
//!   the database away (stop it, check the server answers 503, start it again on the same
//!   socket and data directory, check it recovers) without disturbing the other tests.
//!
//! Every cluster listens on a unix socket in its own temporary directory and on no TCP port
//! (`listen_addresses = ''`). Nothing else can take that socket, so there is no port to pick,
//! no bind-then-release race with the other tests, and a private cluster always comes back at
//! the same address. The URLs name the socket directory in libpq's `host` parameter, e.g.
//! `postgres://owner_x:PASSWORD@localhost:5432/db_x?host=%2Ftmp%2Fscpg-AbC%2Fsock`: the query
//! parameter wins over the authority for libpq, and the authority keeps a host in the URL for
//! `[database] url`, which requires one. Local connections use password authentication
//! (scram-sha-256), so the tests still exercise the credentials in the URLs they are given.
//!
//! Setting `STEELCUT_TEST_DATABASE_URL` to a superuser URL of an existing server makes the
//! shared-cluster functions use that server instead of starting one (private clusters always
//! need the local PostgreSQL server binaries, since a test must be able to stop them).
//!
//! # Why postgres is started behind a shell reading its stdin
//!
//! Rust never runs destructors of statics, and a test process can also die by a panic in a
//! non-test thread, by `SIGKILL` or by Ctrl-C; none of these may leave a postmaster (and its
//! temporary data directory) behind. So each server is launched by a small supervisor shell:
//!
//! ```sh
//! postgres ... &  pid=$!
//! { read cmd; kill -INT $pid; } &     # the watcher
//! wait $pid;  rm -rf $dir             # unless cmd was "keep"
//! ```
//!
//! whose stdin is a pipe whose only write end is held by the test process (in the shared
//! cluster's static, or in the [`PrivateCluster`]). However the test process ends, the kernel
//! closes that pipe, `read` returns, and the shell performs a fast shutdown (`SIGINT`) of postgres
//! and deletes the directory. The read happens in a background watcher so that the supervisor
//! also exits when postgres dies on its own, which is how a failed start is noticed at once.
//! The supervisor runs in a process group of its own and ignores signals, so that a Ctrl-C
//! reaches only the test process, whose death then triggers the orderly stop.
//!
//! The cleanup happens just *after* the test process exits, so postgres may still be shutting
//! down for a fraction of a second when `cargo test` returns.
//!
//! [`PrivateCluster::stop`] writes `keep` into the pipe before closing it so that the data
//! directory survives for the next [`PrivateCluster::start`], and leaves a "janitor" shell
//! reading a new pipe in the same way, so that the directory is still deleted if the test
//! process dies while its cluster is stopped.
//!
//! When the tests run as root (as CI does), `initdb` and `postgres` refuse to run, so they are
//! run as the `postgres` system user (through `runuser`, or `su` where it is missing), and the
//! temporary directory is handed over to that user.

// Not every test uses every helper (e.g. `execute_as_superuser`), and this module is compiled
// into the single test binary whatever subset of it the tests use.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use rand::Rng;
use url::Url;

/// Environment variable holding a superuser URL of an existing server to use instead of
/// starting a throwaway cluster.
pub const DATABASE_URL_ENV: &str = "STEELCUT_TEST_DATABASE_URL";

/// How long a starting server may take to accept connections. Generous because the machine
/// has two cores and many test threads may be competing for them.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before the supervisor is killed outright.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The port in every cluster's socket name (`sock/.s.PGSQL.5432`). Each cluster has a socket
/// directory of its own and no TCP listener, so they can all use the same number.
const PORT: u16 = 5432;

/// A fresh, empty database on the shared test cluster, with two login roles:
/// `owner` owns the database (runs migrations and admin commands), `reader` can only connect
/// (call [`PgDatabase::grant_read_only`] after migrations to give it SELECT on every table).
///
/// Dropping it drops the database and both roles (best effort), so that a long test run does
/// not fill the disk, nor leave litter on a server given by `STEELCUT_TEST_DATABASE_URL`.
pub struct PgDatabase {
    /// Name of the database.
    pub name: String,
    /// `postgres://owner_xxx:password@localhost:5432/db_xxx?host=SOCKET_DIR`
    pub owner_url: String,
    /// `postgres://reader_xxx:password@localhost:5432/db_xxx?host=SOCKET_DIR`
    pub reader_url: String,
    /// The cluster's superuser, connected to this database.
    superuser_url: String,
    /// The cluster's superuser URL as given (its own database), used to drop this one.
    cluster_url: String,
    owner: String,
    reader: String,
}

impl PgDatabase {
    /// GRANT SELECT ON ALL TABLES IN SCHEMA public TO the reader role (and USAGE on schema
    /// public). Covers the tables existing now only: call it after the migrations.
    pub fn grant_read_only(&self) {
        self.execute_as_superuser(&format!(
            "GRANT USAGE ON SCHEMA public TO {reader}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader};",
            reader = self.reader
        ));
    }

    /// The text column `value` of the first row of `sql`, run as the superuser in this
    /// database.
    pub fn query_as_superuser(&self, sql: &str) -> String {
        query_text(&self.superuser_url, sql)
    }

    /// Run arbitrary SQL (several statements allowed) as the owner in this database, as a DBA
    /// would with psql.
    pub fn execute_as_owner(&self, sql: &str) {
        let mut conn = connect(&self.owner_url);
        conn.batch_execute(sql).unwrap_or_else(|e| {
            panic!(
                "SQL as owner in database {} failed: {e}\nSQL: {sql}",
                self.name
            )
        });
    }

    /// Run arbitrary SQL (several statements allowed) as the superuser in this database.
    pub fn execute_as_superuser(&self, sql: &str) {
        let mut conn = connect(&self.superuser_url);
        conn.batch_execute(sql).unwrap_or_else(|e| {
            panic!(
                "SQL as superuser in database {} failed: {e}\nSQL: {sql}",
                self.name
            )
        });
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Best effort and silent: the cluster may be stopped (private clusters) or already gone,
        // and panicking in drop would abort a test that is already unwinding. FORCE ends the
        // connections that a server under test may still hold in its pool.
        if let Ok(mut conn) = PgConnection::establish(&self.cluster_url) {
            let _ = conn.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
            let _ = conn.batch_execute(&format!(
                "DROP ROLE IF EXISTS {}, {}",
                self.owner, self.reader
            ));
        }
    }
}

/// A fresh database with its own owner and reader roles on the shared cluster (or on the
/// server given by `STEELCUT_TEST_DATABASE_URL`).
///
/// Panics with a clear message if PostgreSQL cannot be reached or started.
pub fn fresh_database() -> PgDatabase {
    create_database(&cluster_url())
}

/// The superuser URL of the shared cluster (starting it on first use), or the value of
/// `STEELCUT_TEST_DATABASE_URL` when set.
///
/// Panics with a clear message if PostgreSQL cannot be started.
pub fn cluster_url() -> String {
    if let Some(url) = external_url() {
        return url;
    }
    // The outcome, failure included, is kept: after a failed start every test fails at once
    // with the same message instead of each one spending READY_TIMEOUT on its own attempt.
    static SHARED: OnceLock<Result<Instance, String>> = OnceLock::new();
    match SHARED.get_or_init(|| Instance::create(300)) {
        // The Instance stays in the static for the life of the process: its supervisor's stdin
        // pipe closes only when the process exits, which is what stops the cluster.
        Ok(instance) => instance.superuser_url(),
        Err(message) => panic!("{message}"),
    }
}

/// A cluster owned by one test, so that it can stop and restart the database (outage tests)
/// without affecting any other test. Dropping it stops the server and deletes its data.
pub struct PrivateCluster {
    instance: Instance,
}

/// Start a private cluster (always a local one, even when `STEELCUT_TEST_DATABASE_URL` is set,
/// since the test needs to stop it). Returns once it accepts connections.
pub fn start_private_cluster() -> PrivateCluster {
    match Instance::create(100) {
        Ok(instance) => PrivateCluster { instance },
        Err(message) => panic!("{message}"),
    }
}

impl PrivateCluster {
    /// The superuser URL (database `postgres`); same value across stop/start.
    pub fn superuser_url(&self) -> String {
        self.instance.superuser_url()
    }

    /// A fresh database with owner and reader roles on this cluster, as [`fresh_database`].
    pub fn fresh_database(&self) -> PgDatabase {
        create_database(&self.superuser_url())
    }

    /// Fast shutdown (clients are disconnected at once). Returns once the socket refuses
    /// connections. Does nothing if already stopped.
    pub fn stop(&mut self) {
        if self.instance.supervisor.is_none() {
            return;
        }
        let halted = self.instance.halt(true);
        self.instance.park();
        if let Err(message) = halted {
            panic!("stopping the private PostgreSQL cluster: {message}");
        }
        // postgres removes its socket file as it exits, and halt returns once it has exited:
        // this only guards against surprises.
        let socket = self.instance.socket_path();
        if UnixStream::connect(&socket).is_ok() {
            panic!(
                "{} still accepts connections after postgres stopped",
                socket.display()
            );
        }
    }

    /// Start again on the same socket and data directory. Returns once it accepts connections.
    /// Does nothing if already running.
    pub fn start(&mut self) {
        if self.instance.supervisor.is_some() {
            return;
        }
        self.instance.unpark(true);
        if let Err(message) = self.instance.launch() {
            self.instance.park();
            panic!("restarting the private PostgreSQL cluster: {message}");
        }
    }
}

/// A primary cluster and a hot standby streaming from it (`pg_basebackup -R`), both private to
/// the calling test, each on its own socket. The primary commits synchronously
/// (`synchronous_commit = on`, unlike the other test clusters), so that a write's WAL is sent
/// as it commits and the replication lag measured is the standby's, not the WAL writer's
/// delay. Everything created on the primary (databases, roles, grants, rows) reaches the
/// standby; the standby refuses writes. Dropping them stops both and deletes their data.
pub fn start_primary_and_standby() -> (PrivateCluster, PrivateCluster) {
    let primary = match Instance::create_with(100, vec!["synchronous_commit=on".into()]) {
        Ok(instance) => PrivateCluster { instance },
        Err(message) => panic!("{message}"),
    };
    let standby = match Instance::create_standby(&primary.instance) {
        Ok(instance) => PrivateCluster { instance },
        Err(message) => panic!("starting a hot standby: {message}"),
    };
    (primary, standby)
}

impl PrivateCluster {
    /// `url` (a URL of another cluster made by these helpers: user, password, database) with
    /// its socket replaced by this cluster's.
    pub fn rehost(&self, url: &str) -> String {
        let mut parsed = Url::parse(url).unwrap_or_else(|e| panic!("{}: {e}", redact(url)));
        let socket_dir = self
            .instance
            .root
            .join("sock")
            .to_string_lossy()
            .into_owned();
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "host" {
                    socket_dir.clone()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        parsed.into()
    }

    /// The text column `value` of the first row of `sql`, run as the superuser in database
    /// `postgres`.
    pub fn query_text(&self, sql: &str) -> String {
        query_text(&self.superuser_url(), sql)
    }

    /// Waits until this standby has replayed everything `primary` has written so far (its
    /// `pg_current_wal_lsn()` now) and returns how long that took: the replication lag of the
    /// last write when called right after it. Panics after `within`.
    pub fn replayed(&self, primary: &PrivateCluster, within: Duration) -> Duration {
        let started = Instant::now();
        let lsn = primary.query_text("SELECT pg_current_wal_lsn()::text AS value");
        let mut standby = connect(&self.superuser_url());
        let sql = format!("SELECT (pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn)::text AS value");
        loop {
            if scalar(&mut standby, &sql) == "true" {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "the standby had not replayed the primary's WAL up to {lsn} after {within:?}"
            );
            sleep(Duration::from_millis(1));
        }
    }
}

#[derive(diesel::QueryableByName)]
struct TextValue {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

/// The column `value` (of type text) of the first row `sql` returns.
fn scalar(conn: &mut PgConnection, sql: &str) -> String {
    use diesel::RunQueryDsl;
    diesel::sql_query(sql)
        .get_result::<TextValue>(conn)
        .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"))
        .value
}

/// [`scalar`] on a new connection to `url`.
pub fn query_text(url: &str, sql: &str) -> String {
    scalar(&mut connect(url), sql)
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // Without `keep` the supervisor deletes the directory itself; do it here too for the
        // case where the server was already stopped (no supervisor) or the shell was killed.
        let _ = self.instance.halt(false);
        self.instance.unpark(false);
        let _ = fs::remove_dir_all(&self.instance.root);
    }
}

fn external_url() -> Option<String> {
    std::env::var(DATABASE_URL_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

fn create_database(cluster_url: &str) -> PgDatabase {
    let suffix = random_token(12);
    let name = format!("db_{suffix}");
    let owner = format!("owner_{suffix}");
    let reader = format!("reader_{suffix}");
    let owner_password = random_token(24);
    let reader_password = random_token(24);

    let mut admin = connect(cluster_url);
    let run = |conn: &mut PgConnection, sql: &str| {
        conn.batch_execute(sql)
            .unwrap_or_else(|e| panic!("creating test database {name}: `{sql}` failed: {e}"));
    };
    run(
        &mut admin,
        &format!(
            "CREATE ROLE {owner} LOGIN PASSWORD '{owner_password}'; \
             CREATE ROLE {reader} LOGIN PASSWORD '{reader_password}';"
        ),
    );
    // CREATE DATABASE refuses to run inside a transaction block, which a multi-statement
    // simple query is, so it goes alone.
    run(&mut admin, &format!("CREATE DATABASE {name} OWNER {owner}"));
    run(
        &mut admin,
        &format!("GRANT CONNECT ON DATABASE {name} TO {reader}"),
    );
    drop(admin);

    let superuser_url = with_credentials(cluster_url, None, &name);
    // PG15 gives schema public to pg_database_owner (and takes CREATE from PUBLIC), older
    // servers to the bootstrap superuser; owning it outright lets the owner run migrations and
    // grant on it alike on every version a STEELCUT_TEST_DATABASE_URL server may have.
    let mut in_db = connect(&superuser_url);
    run(&mut in_db, &format!("ALTER SCHEMA public OWNER TO {owner}"));
    drop(in_db);

    PgDatabase {
        owner_url: with_credentials(cluster_url, Some((&owner, &owner_password)), &name),
        reader_url: with_credentials(cluster_url, Some((&reader, &reader_password)), &name),
        superuser_url,
        cluster_url: cluster_url.to_owned(),
        name,
        owner,
        reader,
    }
}

/// `base` with its database replaced and, if given, its user and password too.
fn with_credentials(base: &str, credentials: Option<(&str, &str)>, database: &str) -> String {
    let mut url =
        Url::parse(base).unwrap_or_else(|e| panic!("invalid PostgreSQL URL {}: {e}", redact(base)));
    if let Some((user, password)) = credentials {
        let ok = url.set_username(user).is_ok() && url.set_password(Some(password)).is_ok();
        assert!(
            ok,
            "cannot set credentials in PostgreSQL URL {}",
            redact(base)
        );
    }
    url.set_path(&format!("/{database}"));
    url.into()
}

fn connect(url: &str) -> PgConnection {
    PgConnection::establish(url).unwrap_or_else(|e| {
        let hint = if external_url().is_some() {
            format!("check the server given by {DATABASE_URL_ENV}: it must be a superuser URL")
        } else {
            format!(
                "to use an existing server instead of a throwaway one, set {DATABASE_URL_ENV} \
                 to a superuser URL such as postgres://postgres:secret@127.0.0.1:5432/postgres"
            )
        };
        panic!(
            "cannot connect to PostgreSQL at {}: {e}\n({hint})",
            redact(url)
        )
    })
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.into()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// Lowercase letters and digits only: safe unquoted in SQL identifiers, string literals and
/// URLs, and case-folding leaves the names unchanged.
fn random_token(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect()
}

/// A cluster in a temporary directory: `data/` (PGDATA), `sock/` (its only listener, a unix
/// socket), `postgres.log`.
struct Instance {
    root: PathBuf,
    password: String,
    max_connections: u32,
    /// Server settings added after the defaults (`name=value`, later ones win).
    settings: Vec<String>,
    bin: PathBuf,
    run_as: RunAs,
    /// The supervisor shell while the server runs; its stdin is the pipe that stops it.
    supervisor: Option<Child>,
    /// The janitor shell while a private cluster is stopped (see `park`).
    janitor: Option<Child>,
}

impl Instance {
    /// initdb and start a new cluster; everything is removed again if that fails.
    fn create(max_connections: u32) -> Result<Self, String> {
        Self::create_with(max_connections, Vec::new())
    }

    /// As [`Instance::create`], with server settings added after the defaults.
    fn create_with(max_connections: u32, settings: Vec<String>) -> Result<Self, String> {
        let mut instance = Self::unstarted(max_connections, random_token(24))?;
        instance.settings = settings;
        match instance.init_and_launch() {
            Ok(()) => Ok(instance),
            Err(message) => Err(instance.abandon(&message)),
        }
    }

    /// A hot standby of `primary`: a copy of its data directory made by `pg_basebackup -R`
    /// (so it streams from the primary through the primary's socket, as its superuser), started
    /// on a socket of its own. Returns once it accepts (read-only) connections.
    fn create_standby(primary: &Instance) -> Result<Self, String> {
        let mut instance = Self::unstarted(primary.max_connections, primary.password.clone())?;
        // A standby needs at least the primary's max_connections; the rest is the same.
        instance.settings = primary.settings.clone();
        match instance
            .base_backup(primary)
            .and_then(|()| instance.launch())
        {
            Ok(()) => Ok(instance),
            Err(message) => Err(instance.abandon(&message)),
        }
    }

    /// Removes what a failed start left behind; the message to report.
    fn abandon(&mut self, message: &str) -> String {
        let _ = self.halt(false);
        let _ = fs::remove_dir_all(&self.root);
        format!(
            "could not start a throwaway PostgreSQL cluster: {message}\n\
             Install the PostgreSQL server (Debian: apt-get install postgresql), or set \
             {DATABASE_URL_ENV} to a superuser URL of an existing server, e.g. \
             postgres://postgres:secret@127.0.0.1:5432/postgres"
        )
    }

    /// A new temporary directory (with `sock/`, both private to the cluster's user) for a
    /// cluster not yet initialised.
    fn unstarted(max_connections: u32, password: String) -> Result<Self, String> {
        let bin = find_bin_dir()?;
        let run_as = RunAs::detect()?;
        // The postgres user must reach the directory: TMPDIR may be private to root.
        let base = if run_as.owner.is_some() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        // Short prefix: the socket path (.../sock/.s.PGSQL.PORT) must fit in ~107 bytes.
        let root = tempfile::Builder::new()
            .prefix("scpg-")
            .tempdir_in(&base)
            .map_err(|e| {
                format!(
                    "cannot create a temporary directory in {}: {e}",
                    base.display()
                )
            })?
            .keep();
        let instance = Instance {
            root,
            password,
            max_connections,
            settings: Vec::new(),
            bin,
            run_as,
            supervisor: None,
            janitor: None,
        };
        // Private to the cluster's user: the directory holds the socket and, until initdb has
        // read it, the superuser's password.
        let prepared = fs::set_permissions(&instance.root, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot chmod {}: {e}", instance.root.display()))
            .and_then(|()| {
                fs::create_dir(instance.root.join("sock"))
                    .map_err(|e| format!("cannot create the socket directory: {e}"))
            })
            .and_then(|()| {
                instance.hand_over(&[instance.root.clone(), instance.root.join("sock")])
            });
        match prepared {
            Ok(()) => Ok(instance),
            Err(message) => {
                let _ = fs::remove_dir_all(&instance.root);
                Err(message)
            }
        }
    }

    /// Gives `paths` to the postgres user when the tests run as root.
    fn hand_over(&self, paths: &[PathBuf]) -> Result<(), String> {
        if let Some((uid, gid)) = self.run_as.owner {
            for path in paths {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(|e| format!("cannot chown {} to postgres: {e}", path.display()))?;
            }
        }
        Ok(())
    }

    /// `pg_basebackup -R` of `primary` into `data/`, bounded by [`READY_TIMEOUT`] (a fast
    /// checkpoint, WAL streamed alongside). initdb's pg_hba.conf already lets local
    /// connections replicate (`local replication all scram-sha-256`).
    fn base_backup(&self, primary: &Instance) -> Result<(), String> {
        let conninfo = format!(
            "host={} port={PORT} user=postgres password={}",
            primary.root.join("sock").display(),
            self.password
        );
        let script = format!(
            "exec timeout -k 5 {secs} {basebackup} -D {data} -R --checkpoint=fast \
             --wal-method=stream --no-sync -d '{conninfo}'",
            secs = READY_TIMEOUT.as_secs(),
            basebackup = quote(&self.bin.join("pg_basebackup")),
            data = quote(&self.root.join("data")),
        );
        self.run_tool("pg_basebackup", &script)
    }

    /// Runs a PostgreSQL tool's shell `script` as the cluster's owner in the cluster's
    /// directory; a failure carries the tool's output.
    fn run_tool(&self, tool: &str, script: &str) -> Result<(), String> {
        let output = self
            .run_as
            .shell(script)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {tool}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{tool} failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    }

    /// `postgres://postgres:PASSWORD@localhost:5432/postgres?host=SOCKET_DIR` (see the module
    /// documentation for why the URL names a host it does not use).
    fn superuser_url(&self) -> String {
        let socket_dir: String = url::form_urlencoded::byte_serialize(
            self.root.join("sock").to_string_lossy().as_bytes(),
        )
        .collect();
        format!(
            "postgres://postgres:{}@localhost:{PORT}/postgres?host={socket_dir}",
            self.password
        )
    }

    /// The socket file postgres listens on.
    fn socket_path(&self) -> PathBuf {
        self.root.join("sock").join(format!(".s.PGSQL.{PORT}"))
    }

    fn init_and_launch(&mut self) -> Result<(), String> {
        let password_file = self.root.join("password");
        fs::write(&password_file, &self.password)
            .map_err(|e| format!("cannot write {}: {e}", password_file.display()))?;
        self.hand_over(&[password_file])?;

        // Password authentication on the socket, so that tests exercise the credentials in the
        // URLs they are given (there is no TCP listener: --auth-host does not matter).
        let script = format!(
            "exec {initdb} -D {data} -U postgres --pwfile={password} \
             --auth-local=scram-sha-256 --auth-host=reject --encoding=UTF8 --locale=C --no-sync",
            initdb = quote(&self.bin.join("initdb")),
            data = quote(&self.root.join("data")),
            password = quote(&self.root.join("password")),
        );
        self.run_tool("initdb", &script)?;
        // initdb has stored the password; nothing else needs the file.
        let _ = fs::remove_file(self.root.join("password"));

        self.launch()
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// Start postgres under a supervisor shell and wait until it accepts connections.
    fn launch(&mut self) -> Result<(), String> {
        let log_path = self.log_path();
        // Opened here (as the test's user) and inherited: the postgres user can write to an
        // inherited descriptor even though the file is not its own.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log_start = log.metadata().map_or(0, |m| m.len());
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot duplicate the log descriptor: {e}"))?;

        // The supervisor. Signals are ignored by the shells so that a Ctrl-C or a SIGTERM aimed
        // at the process group cannot kill them before they have stopped postgres and removed
        // the directory (the postmaster installs its own handlers, so it is unaffected); only
        // EOF or a line on stdin stops the server. The stdin pipe is read by a background
        // watcher while the main shell waits for postgres, so that the supervisor exits whenever
        // postgres does: that is how `launch` notices a server that died while starting.
        // The watcher records what it read in `stop-request`: "keep" keeps the data directory,
        // anything else (EOF) removes it, and no file (postgres died by itself) keeps it for the
        // Rust side to report on and clean up.
        let script = format!(
            "trap '' INT TERM HUP\n\
             cd {root} || exit 1\n\
             rm -f stop-request\n\
             exec 3<&0 </dev/null\n\
             {postgres} -D {data} -p {port} -k {sock} -c listen_addresses= \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections={max}{settings} 3<&- &\n\
             pid=$!\n\
             {{ read cmd <&3; echo \"$cmd\" > stop-request; kill -INT \"$pid\" 2>/dev/null; }} &\n\
             watcher=$!\n\
             exec 3<&-\n\
             wait \"$pid\"\n\
             status=$?\n\
             kill -KILL \"$watcher\" 2>/dev/null\n\
             wait \"$watcher\" 2>/dev/null\n\
             if [ -e stop-request ] && [ \"$(cat stop-request)\" != keep ]; then\n\
             cd / && rm -rf {root}\n\
             fi\n\
             exit \"$status\"\n",
            postgres = quote(&self.bin.join("postgres")),
            data = quote(&self.root.join("data")),
            sock = quote(&self.root.join("sock")),
            port = PORT,
            max = self.max_connections,
            settings = self
                .settings
                .iter()
                .map(|s| format!(" -c {s}"))
                .collect::<String>(),
            root = quote(&self.root),
        );
        let child = self
            .run_as
            .shell(&script)
            .current_dir(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        self.supervisor = Some(child);

        // connect_timeout: a server that accepts without answering must not hang the test.
        let url = format!("{}&connect_timeout=2", self.superuser_url());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let last_error = match PgConnection::establish(&url) {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            };
            let exited = match self.supervisor.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Ok(None)) => None,
                Some(Err(e)) => Some(e.to_string()),
                None => Some("no supervisor".to_owned()),
            };
            let why = match exited {
                Some(status) => format!("postgres exited early ({status})"),
                None if Instant::now() > deadline => format!(
                    "postgres did not accept connections within {}s",
                    READY_TIMEOUT.as_secs()
                ),
                None => {
                    sleep(Duration::from_millis(100));
                    continue;
                }
            };
            // Read the log before halting: without `keep` the supervisor deletes it.
            let log = read_log_from(&log_path, log_start);
            let _ = self.halt(true);
            return Err(format!(
                "{why} on {}; last connection error: {last_error}\npostgres log ({}):\n{log}",
                self.socket_path().display(),
                log_path.display()
            ));
        }
    }

    /// Stop the server (fast shutdown) by writing `keep` (data directory kept) or nothing
    /// (the supervisor deletes the directory) and closing the supervisor's stdin, then wait.
    fn halt(&mut self, keep: bool) -> Result<(), String> {
        end_supervised(self.supervisor.take(), keep)
            .map_err(|e| format!("postgres did not shut down: {e}"))
    }

    /// While a private cluster is stopped, a janitor shell holds the cleanup duty that the
    /// supervisor had: on EOF (test process gone) it deletes the directory, so that a test
    /// killed during an outage does not leave its data behind. Best effort.
    fn park(&mut self) {
        let script = format!(
            "trap '' INT TERM HUP\n\
             read cmd\n\
             if [ \"$cmd\" != keep ]; then cd / && rm -rf {root}; fi\n",
            root = quote(&self.root),
        );
        self.janitor = self
            .run_as
            .shell(&script)
            .current_dir(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
    }

    /// Dismiss the janitor, telling it whether to delete the directory; waits for it.
    fn unpark(&mut self, keep: bool) {
        let _ = end_supervised(self.janitor.take(), keep);
    }
}

/// Write `keep` (or nothing) to a supervisor or janitor's stdin, close it, wait for the shell.
fn end_supervised(child: Option<Child>, keep: bool) -> Result<(), String> {
    let Some(mut child) = child else {
        return Ok(());
    };
    if let (true, Some(stdin)) = (keep, child.stdin.as_mut()) {
        // If the shell is already gone the write fails, which changes nothing.
        let _ = stdin.write_all(b"keep\n");
    }
    // Closing our end of the pipe is the EOF that the shell's `read` waits for.
    drop(child.stdin.take());
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {}s", STOP_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(format!("cannot wait for the shell: {e}")),
        }
    }
}

/// Who runs initdb and postgres: the current user, or the `postgres` system user when root.
struct RunAs {
    /// `Some((uid, gid))` of the postgres user when running as root.
    owner: Option<(u32, u32)>,
    /// Program and arguments to put before `/bin/sh -c SCRIPT` (empty: run sh directly).
    prefix: Vec<String>,
}

impl RunAs {
    fn detect() -> Result<Self, String> {
        if effective_uid()? != 0 {
            return Ok(RunAs {
                owner: None,
                prefix: Vec::new(),
            });
        }
        let uid = id_of("-u")?;
        let gid = id_of("-g")?;
        let prefix = if let Some(runuser) = find_program("runuser") {
            vec![runuser, "-u".into(), "postgres".into(), "--".into()]
        } else if let Some(su) = find_program("su") {
            vec![su, "postgres".into(), "-s".into()]
        } else {
            return Err(
                "running as root, but neither runuser nor su is available to run \
                        initdb and postgres as the postgres user"
                    .to_owned(),
            );
        };
        Ok(RunAs {
            owner: Some((uid, gid)),
            prefix,
        })
    }

    fn shell(&self, script: &str) -> Command {
        let mut command = match self.prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args);
                command
            }
            None => Command::new("/bin/sh"),
        };
        if !self.prefix.is_empty() {
            command.arg("/bin/sh");
        }
        command.arg("-c").arg(script);
        // A process group of its own: a Ctrl-C in the terminal reaches the test process only.
        // Otherwise postgres would shut down by itself, and runuser would kill the shell before
        // it cleaned up; this way the test process dies, the pipe closes, and the supervisor
        // does the orderly stop and cleanup.
        command.process_group(0);
        command
    }
}

/// Effective uid, from /proc (no libc call: the crate forbids `unsafe`), else from `id -u`.
fn effective_uid() -> Result<u32, String> {
    if let Ok(status) = fs::read_to_string("/proc/self/status") {
        let euid = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .and_then(|euid| euid.parse().ok());
        if let Some(euid) = euid {
            return Ok(euid);
        }
    }
    let output = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("cannot run `id -u`: {e}"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("cannot parse the output of `id -u`: {e}"))
}

/// `id -u postgres` / `id -g postgres` (through NSS, unlike reading /etc/passwd).
fn id_of(flag: &str) -> Result<u32, String> {
    let output = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .map_err(|e| format!("cannot run `id {flag} postgres`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "running as root, and initdb/postgres refuse to: they must run as the postgres \
             user, but `id {flag} postgres` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("cannot parse the output of `id {flag} postgres`: {e}"))
}

/// Look in PATH and in the sbin directories, which a CI environment's PATH may lack.
fn find_program(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .map(|found| found.to_string_lossy().into_owned())
}

/// The server binaries: the highest version under /usr/lib/postgresql (Debian's layout, where
/// `pg_config --bindir` may describe the client package only), then `pg_config --bindir`, then
/// PATH.
fn find_bin_dir() -> Result<PathBuf, String> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();

    let mut versioned: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versioned.sort();
    if let Some((_, bin)) = versioned.pop() {
        return Ok(bin);
    }

    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_server(&bin) {
            return Ok(bin);
        }
    }

    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| has_server(dir))
        .ok_or_else(|| {
            "no PostgreSQL server binaries (initdb and postgres) found under \
             /usr/lib/postgresql/*/bin, in `pg_config --bindir` or in PATH"
                .to_owned()
        })
}

/// The log from byte `start` on (what this launch wrote), lossily decoded.
fn read_log_from(path: &Path, start: u64) -> String {
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(start))?;
        file.read_to_end(&mut bytes)
    });
    match read {
        Ok(_) if bytes.is_empty() => "(empty)".to_owned(),
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("(cannot read the log: {e})"),
    }
}

/// Single-quote a path for sh.
fn quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}
