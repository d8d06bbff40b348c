//! The documentation a reader meets, checked against the real binary: the exit statuses of the
//! manual page and the `--help` of every command.

use crate::helpers::*;

const MANUAL: &str = include_str!("../../packaging/steelcutd.8");

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

#[test]
fn every_option_of_every_command_is_described_in_its_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["check-config"],
        &["migrate"],
        &["client", "add"],
        &["client", "update"],
        &["client", "remove"],
        &["client", "list"],
        &["client", "show"],
        &["keys", "generate"],
        &["keys", "list"],
        &["keys", "export-public"],
        &["token"],
        &["get"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = steelcutd(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
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
