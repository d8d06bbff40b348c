//! `steelcutd client import --from-steelcut-oauth URL`: moving the clients of the package
//! steelcut replaces into steelcut's own table, with the same ids and the same argon2 hashes
//! (argon2-cffi writes standard PHC strings, which verify as they are), so every caller keeps
//! its id and secret.
//!
//! Every row is judged first; a row with a malformed id, an unknown grant type, a secret column
//! that is not an argon2 PHC string or a bad resource is reported with its id and left out.
//! The good rows go in one transaction (all or nothing); an id that already exists is skipped
//! and reported, or overwritten with `--update`. Running it twice changes nothing the second
//! time. The counts are printed as JSON on stdout; each refused row is also named on stderr.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use argon2::password_hash::PasswordHash;

use super::admin::{client_context, print_json};
use super::args::DbArgs;
use crate::config::DatabaseUrl;
use crate::domain::{ClientId, InvalidIdentifier, Resource, CLIENT_CREDENTIALS};
use crate::store::clients::NewClient;
use crate::store::original::{self, OriginalRow};

/// The grant types registered with IANA: an import keeps these (only client_credentials gets
/// tokens here); any other value is a mistake in the source and the row is left out.
const KNOWN_GRANT_TYPES: &[&str] = &[
    "client_credentials",
    "authorization_code",
    "implicit",
    "password",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:saml2-bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange",
];

/// The name given to imported clients (the original stored none).
const IMPORTED_NAME: &str = "imported from steelcut-oauth";

/// A row left out, and why.
#[derive(Debug, Clone, serde::Serialize)]
struct Refused {
    client_id: String,
    reason: String,
}

/// Why a row cannot be imported.
#[derive(Debug, thiserror::Error)]
enum BadRow {
    #[error(transparent)]
    Identifier(#[from] InvalidIdentifier),
    #[error("unknown grant type {0:?}")]
    GrantType(String),
    #[error("the secret column is not an argon2 PHC string")]
    NotArgon2,
    #[error("another row for this id has a different secret or grant type")]
    Conflict,
}

/// `client import`.
pub fn run(db: &DbArgs, from: &str, table: &str, dry_run: bool, update: bool) -> Result<()> {
    let table = original::check_table_name(table)?;
    let source = DatabaseUrl::parse(from).map_err(|e| anyhow!("--from-steelcut-oauth: {e}"))?;
    let rows = original::read(&source, table)?;
    let read = rows.len();
    let (clients, refused) = judge(rows);
    for r in &refused {
        eprintln!("skipped row {}: {}", r.client_id, r.reason);
    }
    let (store, _) = client_context(db)?;
    if !dry_run {
        store.require_primary()?;
    }
    let report = store.import_clients(clients, update, dry_run)?;
    print_json(&serde_json::json!({
        "dry_run": dry_run,
        "rows_read": read,
        "imported": report.imported.len(),
        "updated": report.updated.len(),
        "skipped_existing": report.skipped,
        "refused": refused,
    }))
}

/// Splits the rows into clients to import and refused rows. Several rows for one id (one per
/// resource) make one client with all the resources, if they agree on the secret and grant
/// type.
fn judge(rows: Vec<OriginalRow>) -> (Vec<NewClient>, Vec<Refused>) {
    let mut clients: BTreeMap<String, NewClient> = BTreeMap::new();
    let mut refused = Vec::new();
    for row in rows {
        let id = row.client_id.clone().unwrap_or_default();
        match judge_row(row) {
            Err(reason) => refused.push(Refused {
                client_id: id,
                reason: reason.to_string(),
            }),
            Ok(new) => match clients.get_mut(&id) {
                None => {
                    clients.insert(id, new);
                }
                Some(seen)
                    if seen.secret_hash == new.secret_hash
                        && seen.grant_types == new.grant_types =>
                {
                    for r in new.resources {
                        if !seen.resources.contains(&r) {
                            seen.resources.push(r);
                        }
                    }
                }
                Some(_) => refused.push(Refused {
                    client_id: id,
                    reason: BadRow::Conflict.to_string(),
                }),
            },
        }
    }
    (clients.into_values().collect(), refused)
}

fn judge_row(row: OriginalRow) -> Result<NewClient, BadRow> {
    let id = row.client_id.unwrap_or_default();
    let client_id = ClientId::parse(id.trim())?;
    let grant = row.grant_type.unwrap_or_default();
    let grant = grant.trim();
    if !KNOWN_GRANT_TYPES.contains(&grant) {
        return Err(BadRow::GrantType(grant.to_owned()));
    }
    if grant != CLIENT_CREDENTIALS {
        eprintln!(
            "note: client {client_id} has grant type {grant}; only client_credentials is served"
        );
    }
    let hash = row.client_secret.unwrap_or_default();
    check_phc(&hash)?;
    let resource = row.resource.unwrap_or_default();
    let resource = Resource::parse(resource.trim())?;
    Ok(NewClient {
        client_id,
        name: IMPORTED_NAME.into(),
        secret_hash: hash,
        grant_types: vec![grant.to_owned()],
        resources: vec![resource],
        scopes: Vec::new(),
    })
}

/// Whether `hash` is an argon2 PHC string this server can verify.
fn check_phc(hash: &str) -> Result<(), BadRow> {
    let parsed = PasswordHash::new(hash).map_err(|_| BadRow::NotArgon2)?;
    argon2::Algorithm::try_from(parsed.algorithm).map_err(|_| BadRow::NotArgon2)?;
    argon2::Params::try_from(&parsed).map_err(|_| BadRow::NotArgon2)?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(BadRow::NotArgon2);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, grant: &str, hash: &str, resource: &str) -> OriginalRow {
        OriginalRow {
            grant_type: Some(grant.into()),
            client_id: Some(id.into()),
            client_secret: Some(hash.into()),
            resource: Some(resource.into()),
        }
    }

    const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$Bb1cHLoHoZ1mjjrEE7MpOBSbyXBmmUUSLZQKb0YbrWg";
    const ID: &str = "0083c1b7e3a6ceeac4a4f47bd3a1b501";

    #[test]
    fn rows_are_judged_one_by_one_and_merged_per_id() {
        let (clients, refused) = judge(vec![
            row(ID, "client_credentials", HASH, "api_v0.0.1"),
            row(ID, "client_credentials", HASH, "api_v2"),
            row("not-hex", "client_credentials", HASH, "api"),
            row(
                "1083c1b7e3a6ceeac4a4f47bd3a1b501",
                "another grant type",
                HASH,
                "api",
            ),
            row(
                "2083c1b7e3a6ceeac4a4f47bd3a1b501",
                "client_credentials",
                "PRIVATE-plain",
                "api",
            ),
            row(
                "3083c1b7e3a6ceeac4a4f47bd3a1b501",
                "client_credentials",
                HASH,
                "bad resource",
            ),
        ]);
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].resources.len(), 2);
        assert_eq!(clients[0].secret_hash, HASH);
        let reasons: Vec<&str> = refused.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(refused.len(), 4, "{reasons:?}");
        assert!(reasons[1].contains("unknown grant type"), "{reasons:?}");
        assert!(reasons[2].contains("argon2 PHC"), "{reasons:?}");
    }
}
