//! The client table: what a client is, and the queries the daemon and the admin commands run.
//!
//! Every change bumps `store_state.generation` and (on PostgreSQL) notifies `steelcut_clients`
//! through triggers (migration `change_triggers`), whoever makes it; nothing here has to
//! remember to.

use diesel::prelude::*;

use super::conn::DbConnection;
use super::schema::clients;
use super::{Store, StoreError};
use crate::domain::{ClientId, Resource, Scope};
use crate::time::now_unix;

/// A client as stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = clients)]
#[diesel(treat_none_as_null = true)]
pub struct ClientRow {
    pub client_id: String,
    pub name: String,
    pub secret_hash: String,
    pub grant_types: String,
    pub resources: String,
    pub scopes: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub previous_secret_hash: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
}

/// A client with its lists parsed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    #[serde(skip)]
    pub secret_hash: String,
    pub grant_types: Vec<String>,
    pub resources: Vec<Resource>,
    pub scopes: Vec<Scope>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// The secret before the last rotation, still accepted until `previous_secret_expires_at`.
    #[serde(skip)]
    pub previous_secret_hash: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
}

impl Client {
    /// The previous secret's hash and when it stops working, if it still works at `now`.
    pub fn previous_secret(&self, now: i64) -> Option<(&str, i64)> {
        match (&self.previous_secret_hash, self.previous_secret_expires_at) {
            (Some(hash), Some(until)) if until > now => Some((hash.as_str(), until)),
            _ => None,
        }
    }
}

impl serde::Serialize for Resource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(' ').filter(|t| !t.is_empty())
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

impl From<ClientRow> for Client {
    fn from(r: ClientRow) -> Self {
        // Values were validated on the way in; anything unparsable (a hand-edited row) is
        // dropped rather than granted.
        Client {
            grant_types: split(&r.grant_types).map(str::to_owned).collect(),
            resources: split(&r.resources)
                .filter_map(|s| Resource::parse(s).ok())
                .collect(),
            scopes: split(&r.scopes)
                .filter_map(|s| Scope::parse(s).ok())
                .collect(),
            client_id: r.client_id,
            name: r.name,
            secret_hash: r.secret_hash,
            enabled: r.enabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
            previous_secret_hash: r.previous_secret_hash,
            previous_secret_expires_at: r.previous_secret_expires_at,
        }
    }
}

/// A new client to insert.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub client_id: ClientId,
    pub name: String,
    pub secret_hash: String,
    pub grant_types: Vec<String>,
    pub resources: Vec<Resource>,
    pub scopes: Vec<Scope>,
}

impl NewClient {
    fn into_row(self, now: i64) -> ClientRow {
        ClientRow {
            client_id: self.client_id.to_string(),
            name: self.name,
            secret_hash: self.secret_hash,
            grant_types: self.grant_types.join(" "),
            resources: join(&self.resources),
            scopes: join(&self.scopes),
            enabled: true,
            created_at: now,
            updated_at: now,
            previous_secret_hash: None,
            previous_secret_expires_at: None,
        }
    }
}

/// A new secret, and whether the one it replaces keeps working for a while.
#[derive(Debug, Clone)]
pub struct NewSecret {
    pub hash: String,
    /// Unix seconds until which the replaced secret is still accepted; `None`: not at all.
    pub keep_old_until: Option<i64>,
}

/// Changes to an existing client; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ClientChanges {
    pub grant_types: Option<Vec<String>>,
    pub resources: Option<Vec<Resource>>,
    pub scopes: Option<Vec<Scope>>,
    pub secret: Option<NewSecret>,
    pub enabled: Option<bool>,
}

impl ClientChanges {
    fn apply(self, row: &mut ClientRow) {
        if let Some(g) = self.grant_types {
            row.grant_types = g.join(" ");
        }
        if let Some(r) = self.resources {
            row.resources = join(&r);
        }
        if let Some(s) = self.scopes {
            row.scopes = join(&s);
        }
        if let Some(secret) = self.secret {
            let old = std::mem::replace(&mut row.secret_hash, secret.hash);
            (row.previous_secret_hash, row.previous_secret_expires_at) = match secret.keep_old_until
            {
                Some(until) => (Some(old), Some(until)),
                None => (None, None),
            };
        }
        if let Some(e) = self.enabled {
            row.enabled = e;
        }
    }
}

/// What `client import` did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub imported: Vec<String>,
    pub updated: Vec<String>,
    /// Already present, left as they are.
    pub skipped: Vec<String>,
}

fn find_row(conn: &mut DbConnection, id: &str) -> QueryResult<Option<ClientRow>> {
    clients::table
        .find(id)
        .select(ClientRow::as_select())
        .first::<ClientRow>(conn)
        .optional()
}

impl Store {
    /// The change counter, then the client: the row is at least as new as the counter value
    /// returned with it, which is what the credential cache needs to tag what it remembers.
    pub fn find_client_at(&self, id: &str) -> Result<(i64, Option<Client>), StoreError> {
        self.with_conn(|conn| {
            let generation = Self::read_generation(conn)?;
            Ok((generation, find_row(conn, id)?.map(Client::from)))
        })
    }

    pub fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        self.with_conn(|conn| Ok(find_row(conn, id)?.map(Client::from)))
    }

    pub fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        self.with_conn(|conn| {
            let rows = clients::table
                .order(clients::created_at.asc())
                .then_order_by(clients::client_id.asc())
                .select(ClientRow::as_select())
                .load::<ClientRow>(conn)?;
            Ok(rows.into_iter().map(Client::from).collect())
        })
    }

    pub fn insert_client(&self, new: NewClient) -> Result<Client, StoreError> {
        let row = new.into_row(now_unix());
        self.with_conn(|conn| {
            diesel::insert_into(clients::table)
                .values(&row)
                .execute(conn)?;
            Ok(())
        })?;
        Ok(row.into())
    }

    pub fn update_client(&self, id: &str, changes: ClientChanges) -> Result<Client, StoreError> {
        let row = self.with_conn(|conn| {
            Ok(conn.transaction(|c| {
                let Some(mut row) = find_row(c, id)? else {
                    return Ok(None);
                };
                changes.apply(&mut row);
                row.updated_at = now_unix();
                diesel::update(clients::table.find(id))
                    .set(&row)
                    .execute(c)?;
                Ok::<_, diesel::result::Error>(Some(row))
            })?)
        })?;
        row.map(Client::from)
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))
    }

    pub fn remove_client(&self, id: &str) -> Result<(), StoreError> {
        let n =
            self.with_conn(|conn| Ok(diesel::delete(clients::table.find(id)).execute(conn)?))?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Inserts `clients` (ids kept), in one transaction: all of them or none. A client whose id
    /// exists is left alone, or with `update` gets the imported secret hash, grant types and
    /// resources (its name, scopes and state stay). With `dry_run` nothing is written, but the
    /// report says what would have been.
    pub fn import_clients(
        &self,
        clients: Vec<NewClient>,
        update: bool,
        dry_run: bool,
    ) -> Result<ImportReport, StoreError> {
        self.with_conn(|conn| {
            let mut report = ImportReport::default();
            let result = conn.transaction(|c| {
                for new in clients {
                    import_one(c, new, update, dry_run, &mut report)?;
                }
                if dry_run {
                    // Roll back: a dry run reads what exists and writes nothing.
                    return Err(diesel::result::Error::RollbackTransaction);
                }
                Ok(())
            });
            match result {
                Ok(()) | Err(diesel::result::Error::RollbackTransaction) => Ok(report),
                Err(e) => Err(e.into()),
            }
        })
    }
}

fn import_one(
    c: &mut DbConnection,
    new: NewClient,
    update: bool,
    dry_run: bool,
    report: &mut ImportReport,
) -> QueryResult<()> {
    let id = new.client_id.to_string();
    let Some(mut row) = find_row(c, &id)? else {
        if !dry_run {
            diesel::insert_into(clients::table)
                .values(&new.into_row(now_unix()))
                .execute(c)?;
        }
        report.imported.push(id);
        return Ok(());
    };
    if !update {
        report.skipped.push(id);
        return Ok(());
    }
    row.secret_hash = new.secret_hash;
    row.grant_types = new.grant_types.join(" ");
    row.resources = join(&new.resources);
    row.previous_secret_hash = None;
    row.previous_secret_expires_at = None;
    row.updated_at = now_unix();
    if !dry_run {
        diesel::update(clients::table.find(&id))
            .set(&row)
            .execute(c)?;
    }
    report.updated.push(id);
    Ok(())
}
