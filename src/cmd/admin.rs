//! The admin commands behind the CLI: migrations, client management, key management. Each
//! validates all of its input before touching the database, and each database change is one
//! transaction, so a failed command leaves nothing half-written.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use secrecy::ExposeSecret;

use crate::auth::password::{generate_secret, hash_secret};
use clap::Subcommand;

use super::args::{ConfigArg, DbArgs};
use crate::config::{Argon2Params, Config, DatabaseConfig, DatabaseUrl};
use crate::domain::{parse_grant_type, ClientId, Resource, Scope, CLIENT_CREDENTIALS};
use crate::keys::{self, KeySet};
use crate::store::{Client, ClientChanges, NewClient, Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints its id and secret once.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// Display name.
        #[arg(long)]
        name: String,
        /// A resource (audience) the client may request; repeat for several.
        #[arg(long = "resource", required = true)]
        resources: Vec<String>,
        /// A scope the client may request; repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// The grant type the client may use.
        #[arg(long, default_value = "client_credentials")]
        grant_type: String,
    },
    /// Change a client. Options not given stay as they are.
    Update {
        #[command(flatten)]
        db: DbArgs,
        /// The client id.
        id: String,
        /// Replace the allowed grant type.
        #[arg(long)]
        grant_type: Option<String>,
        /// Replace the allowed resources; repeat for several.
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// Replace the allowed scopes; repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Remove every scope.
        #[arg(long, conflicts_with = "scopes")]
        clear_scopes: bool,
        /// Generate a new secret (printed once); the old one stops working.
        #[arg(long)]
        new_secret: bool,
        /// Refuse tokens to this client.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Allow tokens to this client again.
        #[arg(long)]
        enable: bool,
    },
    /// Delete a client.
    Remove {
        #[command(flatten)]
        db: DbArgs,
        /// The client id.
        id: String,
    },
    /// List clients (never secrets or hashes).
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one client as JSON (never its secret or hash).
    Show {
        #[command(flatten)]
        db: DbArgs,
        /// The client id.
        id: String,
    },
}

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
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Write the public JWKS (for resource-only nodes' `jwks_file`).
    ExportPublic {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Loads the config through the same path as `serve`.
pub fn load_config(arg: &ConfigArg) -> Result<Config> {
    Config::load(&arg.config).map_err(|e| anyhow!("{e}"))
}

/// The store and hashing parameters an admin command works with: `--database-url` wins over
/// the config, and with it the config file may be absent.
fn admin_context(db: &DbArgs) -> Result<(Store, Argon2Params)> {
    let config = match (&db.database_url, db.config.config.exists()) {
        (Some(_), false) => None,
        _ => Some(load_config(&db.config)?),
    };
    let params = config
        .as_ref()
        .and_then(|c| c.auth.as_ref())
        .map(|a| a.argon2)
        .unwrap_or_default();
    let database = match (
        &db.database_url,
        config.as_ref().and_then(|c| c.database.clone()),
    ) {
        (Some(url), base) => DatabaseConfig {
            url: DatabaseUrl::parse(url).map_err(|e| anyhow!("--database-url: {e}"))?,
            pool_size: 1,
            connect_timeout: base
                .map(|b| b.connect_timeout)
                .unwrap_or(std::time::Duration::from_secs(5)),
        },
        (None, Some(d)) => DatabaseConfig { pool_size: 1, ..d },
        (None, None) => bail!(
            "{}: no [database] url; add one or pass --database-url",
            db.config.config.display()
        ),
    };
    Ok((Store::open(&database)?, params))
}

/// [`admin_context`] for commands that use the client table: the schema must be up to date,
/// and if it is not the message says how to fix it (rather than naming a missing table).
fn client_context(db: &DbArgs) -> Result<(Store, Argon2Params)> {
    let (store, params) = admin_context(db)?;
    store.require_migrated()?;
    Ok((store, params))
}

/// `migrate`.
pub fn migrate(db: &DbArgs) -> Result<()> {
    let (store, _) = admin_context(db)?;
    let applied = store.migrate()?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        for m in applied {
            println!("applied {m}");
        }
    }
    Ok(())
}

fn parse_resources(values: &[String]) -> Result<Vec<Resource>> {
    let mut out: Vec<Resource> = Vec::new();
    for v in values {
        let r = Resource::parse(v).map_err(|e| anyhow!("--resource: {e}"))?;
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

fn parse_scopes(values: &[String]) -> Result<Vec<Scope>> {
    let mut out: Vec<Scope> = Vec::new();
    for v in values {
        for s in Scope::parse_list(v).map_err(|e| anyhow!("--scope: {e}"))? {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

fn parse_id(id: &str) -> Result<ClientId> {
    ClientId::parse(id).map_err(|e| anyhow!("{e}"))
}

/// A client as printed by the CLI: never the hash.
fn client_json(c: &Client) -> serde_json::Value {
    serde_json::json!({
        "client_id": c.client_id,
        "name": c.name,
        "grant_types": c.grant_types,
        "resources": c.resources,
        "scopes": c.scopes,
        "enabled": c.enabled,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    })
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn not_found(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::NotFound(id) => anyhow!("no client with id {id}"),
        other => other.into(),
    }
}

/// `client ...`.
pub fn client(cmd: ClientCommand) -> Result<()> {
    match cmd {
        ClientCommand::Add {
            db,
            name,
            resources,
            scopes,
            grant_type,
        } => {
            let name = name.trim().to_owned();
            if name.is_empty() || name.len() > 200 {
                bail!("--name must be 1 to 200 characters");
            }
            let resources = parse_resources(&resources)?;
            let scopes = parse_scopes(&scopes)?;
            let grant_type =
                parse_grant_type(&grant_type).map_err(|e| anyhow!("--grant-type: {e}"))?;
            let (store, params) = client_context(&db)?;
            let secret = generate_secret();
            let secret_hash =
                hash_secret(&secret, params).map_err(|e| anyhow!("hashing failed: {e}"))?;
            let client = store.insert_client(NewClient {
                client_id: ClientId::generate(),
                name,
                secret_hash,
                grant_types: vec![grant_type.clone()],
                resources,
                scopes,
            })?;
            let mut out = client_json(&client);
            out["client_secret"] = secret.expose_secret().into();
            out["grant_type"] = grant_type.into();
            print_json(&out)?;
            eprintln!("Store the client_secret now: it is not stored and cannot be shown again.");
            Ok(())
        }
        ClientCommand::Update {
            db,
            id,
            grant_type,
            resources,
            scopes,
            clear_scopes,
            new_secret,
            disable,
            enable,
        } => {
            let id = parse_id(&id)?;
            let mut changes = ClientChanges::default();
            if let Some(g) = grant_type {
                let g = parse_grant_type(&g).map_err(|e| anyhow!("--grant-type: {e}"))?;
                if g != CLIENT_CREDENTIALS {
                    eprintln!("warning: only client_credentials is served; this client will get unauthorized_client");
                }
                changes.grant_types = Some(vec![g]);
            }
            if !resources.is_empty() {
                changes.resources = Some(parse_resources(&resources)?);
            }
            if !scopes.is_empty() {
                changes.scopes = Some(parse_scopes(&scopes)?);
            }
            if clear_scopes {
                changes.scopes = Some(Vec::new());
            }
            if disable {
                changes.enabled = Some(false);
            }
            if enable {
                changes.enabled = Some(true);
            }
            let (store, params) = client_context(&db)?;
            let secret = if new_secret {
                let s = generate_secret();
                changes.secret_hash =
                    Some(hash_secret(&s, params).map_err(|e| anyhow!("hashing failed: {e}"))?);
                Some(s)
            } else {
                None
            };
            let client = store
                .update_client(id.as_str(), changes)
                .map_err(not_found)?;
            let mut out = client_json(&client);
            if let Some(s) = &secret {
                out["client_secret"] = s.expose_secret().into();
            }
            print_json(&out)?;
            if secret.is_some() {
                eprintln!("Store the new client_secret now: it cannot be shown again. The old one no longer works.");
            }
            Ok(())
        }
        ClientCommand::Remove { db, id } => {
            let id = parse_id(&id)?;
            let (store, _) = client_context(&db)?;
            store.remove_client(id.as_str()).map_err(not_found)?;
            println!("removed client {id}");
            Ok(())
        }
        ClientCommand::List { db, json } => {
            let (store, _) = client_context(&db)?;
            let clients = store.list_clients()?;
            if json {
                return print_json(&serde_json::Value::Array(
                    clients.iter().map(client_json).collect(),
                ));
            }
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<32}  {:<7}  {:<24}  {:<24}  NAME",
                "CLIENT_ID", "ENABLED", "RESOURCES", "SCOPES"
            )?;
            for c in &clients {
                let resources = c
                    .resources
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                let scopes = c
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                writeln!(
                    out,
                    "{:<32}  {:<7}  {:<24}  {:<24}  {}",
                    c.client_id,
                    if c.enabled { "yes" } else { "no" },
                    resources,
                    if scopes.is_empty() {
                        "-".to_owned()
                    } else {
                        scopes
                    },
                    c.name
                )?;
            }
            Ok(())
        }
        ClientCommand::Show { db, id } => {
            let id = parse_id(&id)?;
            let (store, _) = client_context(&db)?;
            let client = store
                .find_client(id.as_str())?
                .ok_or_else(|| anyhow!("no client with id {id}"))?;
            print_json(&client_json(&client))
        }
    }
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

/// `keys ...`.
pub fn keys(cmd: KeysCommand) -> Result<()> {
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
        KeysCommand::List { config, dir } => {
            let dir = key_dir(&config, dir)?;
            let set = KeySet::load(&dir)?;
            if set.is_empty() {
                bail!(
                    "{} holds no keys; run `steelcutd keys generate`",
                    dir.display()
                );
            }
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
        KeysCommand::ExportPublic { config, dir, out } => {
            let dir = key_dir(&config, dir)?;
            let set = KeySet::load(&dir)?;
            if set.is_empty() {
                bail!(
                    "{} holds no keys; run `steelcutd keys generate`",
                    dir.display()
                );
            }
            let text = serde_json::to_string_pretty(&set.jwks())? + "\n";
            match out {
                None => print!("{text}"),
                Some(path) => write_atomically(&path, text.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?,
            }
            Ok(())
        }
    }
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
