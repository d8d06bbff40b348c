//! The documentation a newcomer reads, checked against the real binary: README.md's quick start
//! and walk-through (run command by command), the exit statuses of the manual page, and the
//! `--help` of every command, and that every command is in the manual page and the README.
//!
//! # How the walk-through is run
//!
//! The commands between `<!-- walkthrough -->` and `<!-- /walkthrough -->` in README.md are
//! run as written, one `bash -c` each, in a temporary copy of the checkout's layout:
//! `config/dev.toml`, `config/examples/protected_resource.json` and `target/release/steelcutd`
//! (a link to the binary cargo built for the tests). The daemon is started with the `serve`
//! command of the quick start (`<!-- quick-start -->`), in that directory, as the real binary.
//!
//! Two things differ from a newcomer's terminal, and only these:
//!
//! - the port: the walk-through talks to `127.0.0.1:8080`, which tests running in parallel (or
//!   a daemon of the developer's) cannot share. The copy of `config/dev.toml` listens on
//!   `127.0.0.1:0`, and every `127.0.0.1:8080` in a command is replaced by the address the
//!   daemon reports in its `listening` log line;
//! - the values a reader pastes: a line `NAME=VALUE` (or `export NAME=VALUE`) whose VALUE is
//!   a value of the JSON printed just above it gets the value actually printed for the same
//!   key, in the environment of the following commands.
//!
//! The output printed below each command is compared by shape: JSON with the same keys and the
//! same values except those that differ on every run (ids, secrets, tokens, times), an HTTP
//! response with the same status line and headers (the `date` aside) and body, and text with
//! the same lines and columns, where key ids and timestamps may differ.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const README: &str = include_str!("../../README.md");
const MANUAL: &str = include_str!("../../packaging/steelcutd.8");

/// The address the walk-through talks to.
const DOCUMENTED_ADDR: &str = "127.0.0.1:8080";
/// The binary as the quick start builds it.
const RELEASE_BINARY: &str = "target/release/steelcutd";
/// JSON members whose values differ on every run: only their type is compared.
const VARYING: &[&str] = &[
    "client_id",
    "client_secret",
    "created_at",
    "updated_at",
    "access_token",
    "expires_on",
    "not_before",
];

/// The text between `<!-- name -->` and `<!-- /name -->`, without the code fences.
fn marked(name: &str) -> Vec<&'static str> {
    let open = format!("<!-- {name} -->");
    let close = format!("<!-- /{name} -->");
    let start = README
        .find(&open)
        .unwrap_or_else(|| panic!("README.md has no {open}"));
    let end = README[start..]
        .find(&close)
        .map(|e| start + e)
        .unwrap_or_else(|| panic!("README.md has no {close} after {open}"));
    README[start + open.len()..end]
        .lines()
        .filter(|l| !l.starts_with("```"))
        .collect()
}

/// One `$ command` of the walk-through and the lines printed below it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<&'static str>,
}

fn walkthrough() -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = marked("walkthrough").into_iter();
    let mut in_output = false;
    while let Some(line) = lines.next() {
        if let Some(first) = line.strip_prefix("$ ") {
            // A trailing backslash continues the command on the next line.
            let mut command = first.to_owned();
            while command.ends_with('\\') {
                command.pop();
                let next = lines.next().expect("a continued command goes on");
                command.push(' ');
                command.push_str(next.trim_start());
            }
            steps.push(Step {
                command,
                expected: Vec::new(),
            });
            in_output = true;
        } else if line.starts_with('#') {
            in_output = false;
        } else if in_output {
            steps.last_mut().expect("a command").expected.push(line);
        }
    }
    for step in &mut steps {
        while step.expected.last().is_some_and(|l| l.trim().is_empty()) {
            step.expected.pop();
        }
    }
    steps
}

/// `NAME=VALUE` or `export NAME=VALUE`.
fn assignment(command: &str) -> Option<(&str, &str)> {
    let (name, value) = command
        .strip_prefix("export ")
        .unwrap_or(command)
        .split_once('=')?;
    let is_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    is_name.then_some((name, value))
}

/// The key of the (top-level) string or number member of `json` whose text is `value`.
fn key_of(json: &Value, value: &str) -> Option<String> {
    json.as_object()?.iter().find_map(|(key, v)| {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        (text == value).then(|| key.clone())
    })
}

#[test]
fn the_quick_start_builds_once_and_every_command_runs_that_build() {
    let quick_start: Vec<&str> = marked("quick-start")
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        quick_start.first().copied(),
        Some("cargo build --release"),
        "the quick start builds first: {quick_start:?}"
    );
    let commands = quick_start.iter().map(|l| l.to_string()).chain(
        walkthrough()
            .into_iter()
            .map(|s| s.command)
            .filter(|c| assignment(c).is_none()),
    );
    for command in commands {
        let program = command.split_whitespace().next().unwrap_or_default();
        assert!(
            !program.ends_with("steelcutd") || program == RELEASE_BINARY,
            "README.md runs `{program}` where the quick start built {RELEASE_BINARY}: {command}"
        );
    }
}

#[tokio::test]
async fn the_readme_walk_through_runs_as_written_and_prints_what_it_shows() {
    // 1. The checkout's layout in a temporary directory, and the quick start's daemon.
    let root = tempfile::tempdir().unwrap();
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(root.path().join("config/examples")).unwrap();
    std::fs::create_dir_all(root.path().join("target/release")).unwrap();
    let dev = std::fs::read_to_string(checkout.join("config/dev.toml")).unwrap();
    let listen = format!("listen = \"{DOCUMENTED_ADDR}\"");
    assert!(dev.contains(&listen), "config/dev.toml has {listen}");
    std::fs::write(
        root.path().join("config/dev.toml"),
        dev.replace(&listen, "listen = \"127.0.0.1:0\""),
    )
    .unwrap();
    std::fs::copy(
        checkout.join("config/examples/protected_resource.json"),
        root.path().join("config/examples/protected_resource.json"),
    )
    .unwrap();
    std::os::unix::fs::symlink(BIN, root.path().join(RELEASE_BINARY)).unwrap();
    let serve = marked("quick-start")
        .into_iter()
        .find(|l| l.contains(" serve "))
        .expect("the quick start starts the daemon");
    let config = serve
        .strip_prefix(&format!("{RELEASE_BINARY} serve --config "))
        .unwrap_or_else(|| panic!("unexpected serve command: {serve}"));
    let mut daemon = TestApp::launch_binary_in(root.path(), Path::new(config)).await;
    let addr = daemon.addr.to_string();

    // 2. Each command, in order, with the values the reader would paste.
    let home = root.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    let mut previous: Option<(Value, Value)> = None;
    let steps = walkthrough();
    assert!(steps.len() >= 5, "{steps:?}");
    for step in &steps {
        if let Some((name, documented)) = assignment(&step.command) {
            let (shown, printed) = previous
                .as_ref()
                .unwrap_or_else(|| panic!("`{}` follows no JSON output", step.command));
            let key = key_of(shown, documented).unwrap_or_else(|| {
                panic!("README.md: {name}={documented} is not a value printed just above")
            });
            let value = printed[&key]
                .as_str()
                .map_or_else(|| printed[&key].to_string(), |s| s.to_owned());
            vars.insert(name, value);
            continue;
        }
        let command = step.command.replace(DOCUMENTED_ADDR, &addr);
        let run = tokio::process::Command::new("bash")
            .args(["-c", &command])
            .current_dir(root.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::null())
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("`{command}` still running after 30 s"))
            .unwrap_or_else(|e| panic!("cannot run bash (and curl) for `{command}`: {e}"));
        let printed = stdout(&out);
        assert!(
            out.status.success(),
            "`{command}` failed ({}): {}{printed}",
            out.status,
            stderr(&out)
        );
        let context = format!("`{}`\nprinted:\n{printed}", step.command);
        previous = same_shape(&step.expected, &printed, &context);
    }

    // 3. Ctrl-C (SIGINT) stops the daemon cleanly, as the README says.
    daemon.signal("INT");
    assert_eq!(daemon.wait_exit().await, Some(0), "{}", daemon.log());
}

/// Asserts that `printed` has the shape of the `expected` lines (see the module
/// documentation); returns the documented and the printed JSON when the output is JSON.
fn same_shape(expected: &[&str], printed: &str, context: &str) -> Option<(Value, Value)> {
    let shown = expected.join("\n");
    let printed = printed.replace("\r\n", "\n");
    if shown.starts_with("HTTP/") {
        let (shown_head, shown_body) = shown.split_once("\n\n").expect("headers, then a body");
        let (head, body) = printed
            .split_once("\n\n")
            .unwrap_or_else(|| panic!("no blank line after the headers: {context}"));
        let lines = |text: &str| -> Vec<String> {
            let mut lines: Vec<String> = text
                .lines()
                .map(|l| match l.split_once(':') {
                    Some((name, _)) if name.eq_ignore_ascii_case("date") => "date".into(),
                    _ => l.to_owned(),
                })
                .collect();
            lines[1..].sort();
            lines
        };
        assert_eq!(lines(shown_head), lines(head), "{context}");
        return same_shape(&[shown_body], body, context);
    }
    if shown.starts_with('{') || shown.starts_with('[') {
        let shown: Value = serde_json::from_str(&shown).unwrap_or_else(|e| {
            panic!("README.md shows JSON that does not parse ({e}): {context}")
        });
        let actual: Value =
            serde_json::from_str(&printed).unwrap_or_else(|e| panic!("not JSON ({e}): {context}"));
        same_json(&shown, &actual, "", context);
        return Some((shown, actual));
    }
    let (shown_lines, lines): (Vec<&str>, Vec<&str>) =
        (shown.lines().collect(), printed.lines().collect());
    assert_eq!(shown_lines.len(), lines.len(), "{context}");
    for (s, p) in shown_lines.iter().zip(&lines) {
        let (s, p): (Vec<&str>, Vec<&str>) = (
            s.split_whitespace().collect(),
            p.split_whitespace().collect(),
        );
        assert_eq!(s.len(), p.len(), "columns of {p:?}: {context}");
        for (a, b) in s.iter().zip(&p) {
            assert_eq!(word_kind(a), word_kind(b), "{context}");
        }
    }
    None
}

/// JSON `shown` and `actual` have the same members, and the same values but for [`VARYING`]
/// ones, which have the same type.
fn same_json(shown: &Value, actual: &Value, at: &str, context: &str) {
    match (shown, actual) {
        (Value::Object(s), Value::Object(a)) => {
            let (sk, ak): (Vec<&String>, Vec<&String>) = (s.keys().collect(), a.keys().collect());
            assert_eq!(sk, ak, "the members of {at:?}: {context}");
            for (key, value) in s {
                if VARYING.contains(&key.as_str()) {
                    let same_type =
                        std::mem::discriminant(value) == std::mem::discriminant(&a[key]);
                    assert!(same_type, "the type of {key:?}: {context}");
                } else {
                    same_json(value, &a[key], key, context);
                }
            }
        }
        (Value::Array(s), Value::Array(a)) => {
            assert_eq!(s.len(), a.len(), "the length of {at:?}: {context}");
            for (s, a) in s.iter().zip(a) {
                same_json(s, a, at, context);
            }
        }
        _ => assert_eq!(shown, actual, "the value of {at:?}: {context}"),
    }
}

/// A word of a text table: key ids and timestamps stand for their kind, the rest for itself.
fn word_kind(word: &str) -> String {
    let kid = word.len() == 43
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let timestamp = word.len() == 20
        && word.ends_with('Z')
        && word.as_bytes()[10] == b'T'
        && word
            .bytes()
            .all(|b| b.is_ascii_digit() || b"-:TZ".contains(&b));
    match (kid, timestamp) {
        (true, _) => "<kid>".into(),
        (_, true) => "<RFC 3339 time>".into(),
        _ => word.into(),
    }
}

/// The statuses listed under EXIT STATUS in the manual page (`.TP` then `.B N`).
fn documented_exit_statuses() -> Vec<i32> {
    let section = MANUAL
        .split(".SH EXIT STATUS")
        .nth(1)
        .and_then(|rest| rest.split("\n.SH ").next())
        .expect("the manual page has an EXIT STATUS section");
    let lines: Vec<&str> = section.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == ".TP")
        .filter_map(|w| w[1].strip_prefix(".B ")?.parse().ok())
        .collect()
}

#[test]
fn the_exit_statuses_of_the_manual_page_are_the_binarys() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, empty) = (dir.path().join("keys"), dir.path().join("empty"));
    std::fs::create_dir(&empty).unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "roles = [\"auth\"]\ncolour = \"blue\"\n").unwrap();
    let code = |args: &[&str]| steelcutd(args).status.code().expect("an exit code");
    let seen = [
        // Success.
        code(&["keys", "generate", "--dir", keys.to_str().unwrap()]),
        // A failed command: a key directory without keys.
        code(&["keys", "list", "--dir", empty.to_str().unwrap()]),
        // A usage error.
        code(&["keys", "list", "--no-such-option"]),
        // An invalid configuration.
        code(&["check-config", "--config", broken.to_str().unwrap()]),
    ];
    assert_eq!(seen, [0, 1, 2, 78]);
    assert_eq!(documented_exit_statuses(), seen);
}

/// The subcommands a `--help` lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command of the binary, as the words after `steelcutd`, found by walking `--help`:
/// `[]`, `["serve"]`, `["client"]`, `["client", "add"]`, ...
fn every_command() -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(command) = todo.pop() {
        let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
        args.push("--help");
        let out = steelcutd(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        for sub in subcommands(&stdout(&out)) {
            let mut next = command.clone();
            next.push(sub);
            todo.push(next);
        }
        found.push(command);
    }
    found
}

#[test]
fn every_option_of_every_command_is_described_in_its_help() {
    let commands = every_command();
    assert!(commands.len() >= 18, "{commands:?}");
    for command in &commands {
        let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
        args.push("--help");
        let out = steelcutd(&args);
        let help = stdout(&out);
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            // `--name` or `-h, --help`, not a `- value:` of a list of possible values.
            let option = line.trim();
            let is_option = option.starts_with("--")
                || option
                    .as_bytes()
                    .get(1)
                    .is_some_and(u8::is_ascii_alphabetic)
                    && option.starts_with('-');
            if !is_option {
                continue;
            }
            // `--dir <DIR>  Key directory ...`, or (long help) the description on the next
            // line, indented further.
            let indent = line.len() - line.trim_start().len();
            let below = lines.get(i + 1).copied().unwrap_or_default();
            let described_below =
                !below.trim().is_empty() && below.len() - below.trim_start().len() > indent;
            assert!(
                option.contains("  ") || described_below,
                "`steelcutd {}` describes no `{option}`:\n{help}",
                command.join(" ")
            );
        }
    }
}

#[test]
fn every_command_is_in_the_manual_page_and_the_readme() {
    // The manual page's COMMANDS entries (`.B client import ...`, with roff's `\-` for `-`)
    // and the README's command table (`| `steelcutd client import ...` |`).
    let manual: Vec<String> = MANUAL
        .split(".SH COMMANDS")
        .nth(1)
        .and_then(|rest| rest.split("\n.SH ").next())
        .expect("the manual page has a COMMANDS section")
        .lines()
        .filter_map(|l| l.strip_prefix(".B "))
        .map(|l| l.replace("\\-", "-"))
        .collect();
    let readme: Vec<&str> = README
        .lines()
        .filter_map(|l| l.strip_prefix("| `steelcutd "))
        .collect();
    let leaves = every_command();
    let leaves = leaves.iter().filter(|c| {
        // A command with subcommands is described through them.
        !c.is_empty() && !leaves.iter().any(|o| o.len() > c.len() && o.starts_with(c))
    });
    for command in leaves {
        let words = command.join(" ");
        let names = |entry: &str| entry == words || entry.starts_with(&format!("{words} "));
        assert!(
            manual.iter().any(|e| names(e)),
            "`steelcutd {words}` is not under COMMANDS in packaging/steelcutd.8"
        );
        assert!(
            readme.iter().any(|e| names(e)),
            "`steelcutd {words}` is not in README.md's command table"
        );
    }
}
