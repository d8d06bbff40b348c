//! The programs outside steelcut that the interoperability tests run: OpenSSL, Debian's
//! python3 with PyJWT and cryptography, Apache httpd with mod_auth_openidc. Each is required:
//! a missing one fails the test with the Debian package that provides it, never skips it.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// Debian's python (PyJWT and cryptography are Debian packages; a python on PATH from
/// elsewhere may not have them).
pub const PYTHON: &str = "/usr/bin/python3";
pub const OPENSSL: &str = "/usr/bin/openssl";
pub const APACHE: &str = "/usr/sbin/apache2";
pub const MOD_AUTH_OPENIDC: &str = "/usr/lib/apache2/modules/mod_auth_openidc.so";

/// How long one run of an outside program may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Panics unless `path` exists, naming the Debian package to install.
pub fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: this test needs the Debian package {package} \
         (apt-get install {package}; .ci/run installs it)"
    );
}

/// Panics unless Debian's python can import `module`, naming the package.
pub async fn require_python_module(module: &str, package: &str) {
    require(PYTHON, "python3");
    let out = run(PYTHON, &["-c", &format!("import {module}")], &[]).await;
    assert!(
        out.status.success(),
        "{PYTHON} cannot import {module}: this test needs the Debian package {package} \
         (apt-get install {package}; .ci/run installs it)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `program` with `args` (and `env`), bounded in time; the process is killed if the
/// deadline passes or the test ends first.
pub async fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(TOOL_TIMEOUT, child)
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} still running after {TOOL_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a python script (given as text) with arguments; panics with its output if it fails.
pub async fn python(script: &str, args: &[&str]) -> String {
    let mut all = vec!["-c", script];
    all.extend_from_slice(args);
    let out = run(PYTHON, &all, &[]).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
