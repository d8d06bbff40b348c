//! `steelcutd keys ...`: generating signing keys, listing them, exporting the public JWKS.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;

use super::admin::load_config;
use super::args::ConfigArg;
use crate::files::write_atomically;
use crate::keys::{self, KeySet};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new signing key; it signs from the next start or reload.
    Generate {
        #[command(flatten)]
        config: ConfigArg,
        /// Key directory (default: `[keys] dir` of the config).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// List keys: kid, creation time, which one signs.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Key directory (default: `[keys] dir` of the config).
        #[arg(long)]
        dir: Option<PathBuf>,
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

/// `keys ...`.
pub fn run(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Generate { config, dir } => {
            let dir = key_dir(&config, dir)?;
            let kid = keys::generate(&dir)?;
            println!("{kid}");
            eprintln!(
                "generated key {kid} in {}; it signs new tokens after the next start or reload (SIGHUP)",
                dir.display()
            );
            Ok(())
        }
        KeysCommand::List { config, dir } => list(&key_dir(&config, dir)?),
        KeysCommand::ExportPublic { config, dir, out } => {
            let set = load_nonempty(&key_dir(&config, dir)?)?;
            let text = serde_json::to_string_pretty(&set.jwks())? + "\n";
            match out {
                None => print!("{text}"),
                Some(path) => write_atomically(&path, text.as_bytes(), 0o644)
                    .with_context(|| format!("cannot write {}", path.display()))?,
            }
            Ok(())
        }
    }
}

/// `keys list`: kid, creation time, which key signs.
fn list(dir: &std::path::Path) -> Result<()> {
    let set = load_nonempty(dir)?;
    let current = set.current().map(|k| k.kid.clone());
    println!("{:<43}  {:<20}  SIGNING", "KID", "CREATED");
    for k in set.iter() {
        let signing = if Some(&k.kid) == current.as_ref() {
            "yes"
        } else {
            "no"
        };
        println!(
            "{:<43}  {:<20}  {signing}",
            k.kid,
            crate::time::rfc3339_millis(k.created_ms)
        );
    }
    Ok(())
}

fn load_nonempty(dir: &std::path::Path) -> Result<KeySet> {
    let set = KeySet::load(dir)?;
    if set.is_empty() {
        bail!(
            "{} holds no keys; run `steelcutd keys generate`",
            dir.display()
        );
    }
    Ok(set)
}

/// The key directory: `--dir`, else `[keys] dir` of the config.
fn key_dir(config: &ConfigArg, dir: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = dir {
        return Ok(d);
    }
    let c = load_config(config)?;
    c.keys.map(|k| k.dir).ok_or_else(|| {
        anyhow!(
            "{}: no [keys] dir; add one or pass --dir",
            config.config.display()
        )
    })
}
