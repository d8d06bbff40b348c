//! `steelcutd client ...`: registering, changing, removing and listing OAuth clients. Every
//! input is validated before the database is touched, and each change is one transaction, so
//! a failed command writes nothing.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use secrecy::{ExposeSecret, SecretString};

use super::admin::{client_context, print_json};
use super::args::DbArgs;
use crate::auth::password::{generate_secret, hash_secret};
use crate::config::Argon2Params;
use crate::domain::{parse_grant_type, ClientId, Resource, Scope, CLIENT_CREDENTIALS};
use crate::store::clients::NewSecret;
use crate::store::clients::{Client, ClientChanges, NewClient};
use crate::store::StoreError;
use crate::time::now_unix;

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
        /// Generate a new secret (printed once); the old one stops working, at once or after
        /// `--keep-old-secret-for`.
        #[arg(long)]
        new_secret: bool,
        /// With `--new-secret`: keep accepting the old secret for this long (e.g. `1h`, `7d`),
        /// so callers can switch one by one. Both are stored only as argon2id hashes.
        #[arg(long, requires = "new_secret", value_parser = humantime::parse_duration)]
        keep_old_secret_for: Option<std::time::Duration>,
        /// Refuse tokens to this client.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Allow tokens to this client again.
        #[arg(long)]
        enable: bool,
    },
    /// Import the clients of a steelcut-oauth database (its `stored_tokens` table), keeping
    /// their ids and argon2 hashes: the original secrets keep working.
    Import {
        #[command(flatten)]
        db: DbArgs,
        /// The steelcut-oauth database, e.g. postgres://admin@db/clientdb (a password here
        /// shows in `ps`: prefer ~/.pgpass).
        #[arg(long = "from-steelcut-oauth", value_name = "URL")]
        from: String,
        /// The table holding the clients.
        #[arg(long, default_value = "stored_tokens")]
        table: String,
        /// Check every row and report what would be imported, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// Overwrite the secret, grant type and resource of clients that already exist (by
        /// default they are skipped and reported).
        #[arg(long)]
        update: bool,
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

/// `client ...`.
pub fn run(cmd: ClientCommand) -> Result<()> {
    match cmd {
        ClientCommand::Add {
            db,
            name,
            resources,
            scopes,
            grant_type,
        } => add(&db, &name, &resources, &scopes, &grant_type),
        ClientCommand::Update {
            db,
            id,
            grant_type,
            resources,
            scopes,
            clear_scopes,
            new_secret,
            keep_old_secret_for,
            disable,
            enable,
        } => {
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
            changes.enabled = match (disable, enable) {
                (true, _) => Some(false),
                (_, true) => Some(true),
                _ => None,
            };
            let rotate = new_secret.then_some(keep_old_secret_for);
            update(&db, &id, changes, rotate)
        }
        ClientCommand::Import {
            db,
            from,
            table,
            dry_run,
            update,
        } => super::import::run(&db, &from, &table, dry_run, update),
        ClientCommand::Remove { db, id } => {
            let id = parse_id(&id)?;
            let (store, _) = client_context(&db)?;
            store.require_primary()?;
            store.remove_client(id.as_str()).map_err(not_found)?;
            println!("removed client {id}");
            Ok(())
        }
        ClientCommand::List { db, json } => list(&db, json),
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

/// `client add`: prints the new id and secret once.
fn add(
    db: &DbArgs,
    name: &str,
    resources: &[String],
    scopes: &[String],
    grant_type: &str,
) -> Result<()> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.len() > 200 {
        bail!("--name must be 1 to 200 characters");
    }
    let resources = parse_resources(resources)?;
    let scopes = parse_scopes(scopes)?;
    let grant_type = parse_grant_type(grant_type).map_err(|e| anyhow!("--grant-type: {e}"))?;
    let (store, params) = client_context(db)?;
    store.require_primary()?;
    let (secret, secret_hash) = new_secret(params)?;
    let client = store.insert_client(NewClient {
        client_id: ClientId::generate(),
        name,
        secret_hash,
        grant_types: vec![grant_type],
        resources,
        scopes,
    })?;
    let mut out = client_json(&client);
    out["client_secret"] = secret.expose_secret().into();
    print_json(&out)?;
    eprintln!("Store the client_secret now: it is not stored and cannot be shown again.");
    Ok(())
}

/// `client update`: applies `changes`, with a new secret (printed once) if `rotate` is set,
/// the old one kept valid for the duration it holds.
fn update(
    db: &DbArgs,
    id: &str,
    mut changes: ClientChanges,
    rotate: Option<Option<Duration>>,
) -> Result<()> {
    let id = parse_id(id)?;
    let (store, params) = client_context(db)?;
    store.require_primary()?;
    let secret = match rotate {
        None => None,
        Some(keep) => {
            let (secret, hash) = new_secret(params)?;
            let keep_old_until = keep.map(|d| now_unix().saturating_add(d.as_secs() as i64));
            changes.secret = Some(NewSecret {
                hash,
                keep_old_until,
            });
            Some((secret, keep_old_until))
        }
    };
    let client = store
        .update_client(id.as_str(), changes)
        .map_err(not_found)?;
    let mut out = client_json(&client);
    if let Some((s, _)) = &secret {
        out["client_secret"] = s.expose_secret().into();
    }
    print_json(&out)?;
    match secret {
        Some((_, None)) => eprintln!(
            "Store the new client_secret now: it cannot be shown again. The old one no longer works."
        ),
        Some((_, Some(until))) => eprintln!(
            "Store the new client_secret now: it cannot be shown again. The old one keeps working \
             until {} on every node.",
            crate::time::rfc3339_millis(until.saturating_mul(1000))
        ),
        None => {}
    }
    Ok(())
}

/// `client list`: a table (or JSON) without secrets or hashes.
fn list(db: &DbArgs, json: bool) -> Result<()> {
    let (store, _) = client_context(db)?;
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
        let joined = |items: Vec<&str>| match items.join(",") {
            s if s.is_empty() => "-".to_owned(),
            s => s,
        };
        writeln!(
            out,
            "{:<32}  {:<7}  {:<24}  {:<24}  {}",
            c.client_id,
            if c.enabled { "yes" } else { "no" },
            joined(c.resources.iter().map(|r| r.as_str()).collect()),
            joined(c.scopes.iter().map(|s| s.as_str()).collect()),
            c.name
        )?;
    }
    Ok(())
}

/// A fresh secret and its argon2id hash.
fn new_secret(params: Argon2Params) -> Result<(SecretString, String)> {
    let secret = generate_secret();
    let hash = hash_secret(&secret, params)?;
    Ok((secret, hash))
}

pub fn parse_resources(values: &[String]) -> Result<Vec<Resource>> {
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
    Ok(ClientId::parse(id)?)
}

/// A client as printed by the CLI: never a hash. `previous_secret_valid_until` says until when
/// the secret replaced by the last rotation still works (`null`: it does not).
pub fn client_json(c: &Client) -> serde_json::Value {
    let previous = c
        .previous_secret(now_unix())
        .map(|(_, until)| crate::time::rfc3339_millis(until.saturating_mul(1000)));
    serde_json::json!({
        "client_id": c.client_id,
        "name": c.name,
        "grant_types": c.grant_types,
        "resources": c.resources,
        "scopes": c.scopes,
        "enabled": c.enabled,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "previous_secret_valid_until": previous,
    })
}

fn not_found(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::NotFound(id) => anyhow!("no client with id {id}"),
        other => other.into(),
    }
}
