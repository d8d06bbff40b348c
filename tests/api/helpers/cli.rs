//! Running the real `steelcutd` binary as a command: a hermetic environment (no `STEELCUT_*`
//! variable or `RUST_LOG` from the caller's shell leaks in), an optional deadline, and the
//! output as text.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::wait::wait_for_blocking;

/// The binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_steelcutd");

/// `steelcutd` with the caller's `STEELCUT_*` and `RUST_LOG` variables removed, so that a
/// developer's shell cannot change what a test sees.
pub fn command() -> Command {
    command_under(&[])
}

/// As [`command`], run through `prefix` (a program and its arguments, then the binary).
pub fn command_under(prefix: &[&str]) -> Command {
    let mut cmd = match prefix.split_first() {
        None => Command::new(BIN),
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(BIN);
            cmd
        }
    };
    for (name, _) in std::env::vars_os() {
        let keep = name
            .to_str()
            .is_some_and(|n| !n.starts_with("STEELCUT_") && n != "RUST_LOG");
        if !keep {
            cmd.env_remove(name);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// The same as [`command`], for use on a runtime (it does not block the thread).
pub fn async_command() -> tokio::process::Command {
    tokio::process::Command::from(command())
}

/// Runs the real binary and waits for it.
pub fn steelcutd(args: &[&str]) -> Output {
    command().args(args).output().expect("run steelcutd")
}

/// Runs the real binary with extra environment variables; kills it and panics if it is still
/// running after `timeout` (a `serve` that should have refused to start must not hang a test).
pub fn steelcutd_env(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = command()
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("run steelcutd");
    let exited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for_blocking(timeout, &format!("steelcutd {args:?} to exit"), || {
            child.try_wait().expect("wait for steelcutd")
        })
    }));
    let status = match exited {
        Ok(status) => status,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "steelcutd {args:?} still running after {timeout:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
