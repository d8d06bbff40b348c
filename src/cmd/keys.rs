//! `steelcutd keys ...`: generating signing keys, listing them with their rotation state,
//! retiring them, exporting the public JWKS.
//!
//! Every command reads the rotation settings (`[keys] signing_alg`, `publish_before_sign_secs`,
//! the token lifetime and leeway) from the same configuration as the daemon and applies the
//! same rules ([`crate::keys::schedule`]), so what `keys list` says is what the daemon does.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Subcommand;

use super::admin::load_config;
use super::args::ConfigArg;
use crate::files::write_atomically;
use crate::keys::{self, Alg, KeySet, RsaBits, Schedule, State};
use crate::time::{now_millis, rfc3339_millis};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new signing key. It is published at the next reload and signs once it has
    /// been published for `publish_before_sign_secs` (at once if it is the directory's only
    /// usable key).
    Generate {
        #[command(flatten)]
        config: ConfigArg,
        /// Key directory (default: `[keys] dir` of the config).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// EdDSA, ES256 or RS256 (default: `[keys] signing_alg`).
        #[arg(long, value_parser = parse_alg)]
        alg: Option<Alg>,
        /// Size of an RS256 key: 2048, 3072 (default) or 4096.
        #[arg(long)]
        rsa_bits: Option<u32>,
    },
    /// List keys: kid, algorithm, state (published, signing, retired, withdrawn), when that
    /// changes, creation time.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Key directory (default: `[keys] dir` of the config).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// One JSON object per key instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop a key signing now (for the daemon: at its next reload); it stays published for
    /// the token lifetime plus leeway, then leaves the JWKS.
    Retire {
        #[command(flatten)]
        config: ConfigArg,
        /// Key directory (default: `[keys] dir` of the config).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The key's kid (see `keys list`).
        // A kid is a base64url thumbprint and starts with `-` one time in 64.
        #[arg(allow_hyphen_values = true)]
        kid: String,
        /// Retire it even if no other key may sign now (token requests then fail until a new
        /// key is generated: a key generated after the retirement signs at once).
        #[arg(long)]
        force: bool,
    },
    /// Write the public JWKS (for resource-only nodes' `jwks_file`).
    ExportPublic {
        #[command(flatten)]
        config: ConfigArg,
        /// Key directory (default: `[keys] dir` of the config).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `--alg` names none of the algorithms.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not EdDSA, ES256 or RS256")]
struct UnknownAlg(String);

fn parse_alg(s: &str) -> Result<Alg, UnknownAlg> {
    Alg::parse(s).ok_or_else(|| UnknownAlg(s.to_owned()))
}

/// `keys ...`.
pub fn run(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Generate {
            config,
            dir,
            alg,
            rsa_bits,
        } => generate(&context(&config, dir)?, alg, rsa_bits),
        KeysCommand::List { config, dir, json } => list(&context(&config, dir)?, json),
        KeysCommand::Retire {
            config,
            dir,
            kid,
            force,
        } => retire(&context(&config, dir)?, &kid, force),
        KeysCommand::ExportPublic { config, dir, out } => {
            let set = load_nonempty(&context(&config, dir)?)?;
            let text = serde_json::to_string_pretty(&set.jwks(now_millis()))? + "\n";
            match out {
                None => print!("{text}"),
                Some(path) => write_atomically(&path, text.as_bytes(), 0o644)
                    .with_context(|| format!("cannot write {}", path.display()))?,
            }
            Ok(())
        }
    }
}

/// The key directory and the rules the daemon applies to it.
struct Keys {
    dir: PathBuf,
    schedule: Schedule,
}

/// `--dir` or `[keys] dir`, and the rules of the configuration. With `--dir`, a missing or
/// invalid configuration file means the default rules (said on stderr when the file is
/// invalid): the key directory does not depend on it, and the package's maintainer script
/// must be able to make a first key whatever the file says.
fn context(config: &ConfigArg, dir: Option<PathBuf>) -> Result<Keys> {
    if let Some(dir) = &dir {
        let schedule = if config.config.exists() {
            match load_config(config) {
                Ok(c) => c.key_schedule().unwrap_or_default(),
                Err(e) => {
                    eprintln!(
                        "steelcutd: {e:#}\nsteelcutd: using the default key rotation settings"
                    );
                    Schedule::default()
                }
            }
        } else {
            Schedule::default()
        };
        return Ok(Keys {
            dir: dir.clone(),
            schedule,
        });
    }
    let c = load_config(config)?;
    let schedule = c.key_schedule().unwrap_or_default();
    let dir = c.keys.map(|k| k.dir).ok_or_else(|| {
        anyhow!(
            "{}: no [keys] dir; add one or pass --dir",
            config.config.display()
        )
    })?;
    Ok(Keys { dir, schedule })
}

fn generate(cx: &Keys, alg: Option<Alg>, rsa_bits: Option<u32>) -> Result<()> {
    let alg = alg.unwrap_or(cx.schedule.signing_alg);
    let bits = match (alg, rsa_bits) {
        (_, None) => RsaBits::default(),
        (Alg::Rs256, Some(n)) => RsaBits::from_bits(n)
            .ok_or_else(|| anyhow!("--rsa-bits {n}: use 2048, 3072 or 4096"))?,
        (other, Some(_)) => bail!("--rsa-bits applies to RS256 keys, not {other}"),
    };
    let g = keys::generate(&cx.dir, alg, bits)?;
    println!("{}", g.kid);
    let set = KeySet::load(&cx.dir, cx.schedule)?;
    let signs = set
        .position(&g.kid)
        .map(|i| set.activates_at(i))
        .unwrap_or(g.created_ms);
    let when = if signs <= g.created_ms {
        "it signs at once (the directory has no other usable key)".to_owned()
    } else {
        format!("it signs from {}", rfc3339_millis(signs))
    };
    eprintln!(
        "generated {alg} key {} in {}; the daemon publishes it at its next start or reload \
         (SIGHUP) and {when}",
        g.kid,
        cx.dir.display()
    );
    Ok(())
}

/// One line of `keys list`.
fn describe_change(change: Option<(i64, State)>) -> String {
    match change {
        None => "-".to_owned(),
        Some((at, State::Signing)) => format!("signs from {}", rfc3339_millis(at)),
        Some((at, State::Published)) => format!("replaced at {}", rfc3339_millis(at)),
        Some((at, State::Retired)) => format!("retired at {}", rfc3339_millis(at)),
        Some((at, State::Withdrawn)) => format!("withdrawn at {}", rfc3339_millis(at)),
    }
}

/// `keys list`: the state of every key now, as the daemon sees it.
fn list(cx: &Keys, json: bool) -> Result<()> {
    let set = load_nonempty(cx)?;
    let now = now_millis();
    if !json {
        println!(
            "{:<43}  {:<5}  {:<9}  {:<20}  NEXT",
            "KID", "ALG", "STATE", "CREATED"
        );
    }
    for (i, k) in set.entries().enumerate() {
        let (state, change) = set.state(i, now);
        if json {
            let line = serde_json::json!({
                "kid": k.signer.kid(),
                "alg": k.signer.alg().as_str(),
                "state": state.as_str(),
                "created": rfc3339_millis(k.created_ms),
                "next_state": change.map(|(_, s)| s.as_str()),
                "next_change": change.map(|(t, _)| rfc3339_millis(t)),
                "file": k.path,
            });
            println!("{line}");
        } else {
            println!(
                "{:<43}  {:<5}  {:<9}  {:<20}  {}",
                k.signer.kid(),
                k.signer.alg().as_str(),
                state.as_str(),
                rfc3339_millis(k.created_ms),
                describe_change(change)
            );
        }
    }
    Ok(())
}

/// `keys retire KID`: writes the retirement sidecar, effective now.
fn retire(cx: &Keys, kid: &str, force: bool) -> Result<()> {
    let set = load_nonempty(cx)?;
    let now = now_millis();
    let i = set
        .position(kid)
        .ok_or_else(|| keys::KeyError::UnknownKid {
            kid: kid.to_owned(),
            dir: cx.dir.clone(),
        })?;
    let entry = set.entry(i).context("key vanished")?;
    if entry.retired_ms.is_some_and(|r| r <= now) {
        bail!("key {kid} is already retired");
    }
    if !force && !set.signs_without(i, now) {
        bail!(
            "no other key may sign now: generate a successor and retire {kid} once it signs \
             (see `steelcutd keys list`), or pass --force"
        );
    }
    keys::dir::write_retirement(&entry.path, kid, now)?;
    let withdrawn = now.saturating_add(set.schedule().retire_grace.as_millis() as i64);
    eprintln!(
        "retired key {kid}: it signs no more once the daemon reloads (SIGHUP, now), and leaves \
         the JWKS at {}",
        rfc3339_millis(withdrawn)
    );
    Ok(())
}

fn load_nonempty(cx: &Keys) -> Result<KeySet> {
    let set = KeySet::load(&cx.dir, cx.schedule)?;
    if set.is_empty() {
        bail!(
            "{} holds no keys; run `steelcutd keys generate`",
            dir_name(&cx.dir)
        );
    }
    Ok(set)
}

fn dir_name(dir: &Path) -> String {
    dir.display().to_string()
}
