//! The real binary as systemd runs it: `steelcutd serve` as a child process with a
//! `NOTIFY_SOCKET` of its own, its stderr (the log) collected line by line, signals sent by
//! pid.
//!
//! Start-up waits for `READY=1` (sent once the listeners are bound and keys and documents are
//! loaded), then reads the bound addresses from the `listening addr=… admin_addr=…` log line,
//! which the daemon logs before `READY=1`. So the configuration can ask for port 0 and no test
//! ever picks a port that someone else may take first. (The log is written by a thread of its
//! own, so the line may reach the pipe a moment after `READY=1`: it is awaited too.)

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::net::UnixDatagram;

use super::cli::{command, command_under};
use super::wait::POLL;

/// How long a daemon may take to start or to stop (debug build, two busy cores).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a notification or an expected log line may take.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or exited) `steelcutd serve`.
pub struct ChildDaemon {
    process: Child,
    notify: UnixDatagram,
    log: Arc<Mutex<Vec<String>>>,
    /// The thread copying stderr into `log`; it ends at EOF, once the process has exited.
    reader: Option<JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

/// What start-up found.
pub struct Started {
    pub daemon: ChildDaemon,
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
}

impl ChildDaemon {
    /// Runs `steelcutd serve --config CONFIG` in `cwd` with `env` added, and waits until it is
    /// ready. `socket_dir` holds the notify socket (a path short enough for a unix socket).
    ///
    /// With `open_files`, the daemon starts with that open-file limit, in `prlimit --nofile`'s
    /// notation: `1024` for soft and hard (it cannot raise it), `1024:` for the soft one only.
    pub async fn start(
        config: &Path,
        cwd: Option<&Path>,
        env: &[(String, String)],
        socket_dir: &Path,
        open_files: Option<&str>,
    ) -> Started {
        let socket = socket_dir.join(format!("notify-{}.sock", rand::random::<u32>()));
        let notify = UnixDatagram::bind(&socket).expect("bind the notify socket");
        let mut cmd = match open_files {
            None => command(),
            Some(n) => command_under(&["prlimit", &format!("--nofile={n}"), "--"]),
        };
        cmd.args(["serve", "--config"])
            .arg(config)
            .env("NOTIFY_SOCKET", &socket)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut process = cmd.spawn().expect("spawn steelcutd serve");
        // A thread drains the pipe whatever the test does, so the daemon never blocks on (or
        // drops lines because of) a full pipe.
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = process.stderr.take().expect("piped stderr");
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        let mut daemon = Self {
            process,
            notify,
            log,
            reader: Some(reader),
            exit: None,
        };
        let first = daemon.next_notification_within(START_TIMEOUT).await;
        assert!(
            first.starts_with("READY=1"),
            "first notification: {first:?}; log:\n{}",
            daemon.log()
        );
        let line = daemon.wait_for_log(0, &["listening", "addr="]).await;
        let addr = field(&line, "addr")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        let admin_addr = field(&line, "admin_addr").and_then(|v| {
            let inner = v.strip_prefix("Some(")?.strip_suffix(')')?;
            inner.parse().ok()
        });
        Started {
            daemon,
            addr,
            admin_addr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...) to this process only.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// The next datagram on the notify socket, without its trailing newline.
    pub async fn next_notification(&mut self) -> String {
        self.next_notification_within(EVENT_TIMEOUT).await
    }

    async fn next_notification_within(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        // Awaited in short slices so that a daemon that exits (a failed start) is reported at
        // once with its log rather than after the whole timeout.
        loop {
            match tokio::time::timeout(Duration::from_millis(100), self.notify.recv(&mut buf)).await
            {
                Ok(received) => {
                    let n = received.expect("recv on the notify socket");
                    return String::from_utf8_lossy(&buf[..n]).trim_end().to_owned();
                }
                Err(_) => {
                    if let Some(status) = self.try_exit() {
                        self.join_reader().await;
                        panic!(
                            "steelcutd exited ({status}) while a notification was awaited; \
                             log:\n{}",
                            self.log()
                        );
                    }
                    if Instant::now() > deadline {
                        panic!(
                            "no notification from steelcutd within {within:?}; log:\n{}",
                            self.log()
                        );
                    }
                }
            }
        }
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.process.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Waits (bounded) for the process to exit and for its log to be read to the end;
    /// returns the exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + START_TIMEOUT;
        let status = loop {
            if let Some(status) = self.try_exit() {
                break status;
            }
            if Instant::now() > deadline {
                panic!(
                    "steelcutd (pid {}) still running after {START_TIMEOUT:?}; log:\n{}",
                    self.pid(),
                    self.log()
                );
            }
            tokio::time::sleep(POLL).await;
        };
        self.join_reader().await;
        status.code()
    }

    /// Waits for the log thread, which ends at EOF once the process has exited.
    async fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            let joined = tokio::task::spawn_blocking(move || reader.join());
            let _ = tokio::time::timeout(EVENT_TIMEOUT, joined).await;
        }
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// How many log lines there are so far (a mark for [`ChildDaemon::wait_for_log`]).
    pub fn log_len(&self) -> usize {
        self.log.lock().expect("log lock").len()
    }

    /// The first log line from line `from` on that contains every needle, waiting for it.
    pub async fn wait_for_log(&self, from: usize, needles: &[&str]) -> String {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let hit = self
                .log
                .lock()
                .expect("log lock")
                .iter()
                .skip(from)
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .cloned();
            if let Some(line) = hit {
                return line;
            }
            if Instant::now() > deadline {
                panic!(
                    "no log line with {needles:?} within {EVENT_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The value of `name=` in a text log line (up to the next space).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=");
    let start = line.find(&key)? + key.len();
    line[start..].split(' ').next()
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}
