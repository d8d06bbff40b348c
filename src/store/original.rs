//! Reading the client table of the package steelcut replaces (steelcut-oauth): PostgreSQL
//! table `stored_tokens(grant_type, client_id, client_secret, resource)`, all varchar, the
//! secret column holding argon2-cffi PHC strings. Read as it is; judging the rows is the
//! import command's job.

use diesel::prelude::*;

use super::{ConnectError, StoreError};
use crate::config::DatabaseUrl;

/// One row as the original stored it.
#[derive(Debug, Clone, QueryableByName)]
pub struct OriginalRow {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub grant_type: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub client_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub client_secret: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub resource: Option<String>,
}

/// Why a table name was refused (it is put into SQL, so only plain identifiers pass).
#[derive(Debug, thiserror::Error)]
#[error("table name {0:?} must be an identifier, optionally schema-qualified (e.g. stored_tokens or public.stored_tokens)")]
pub struct BadTableName(pub String);

/// Checks a table name: `[A-Za-z_][A-Za-z0-9_]*`, optionally `schema.table`.
pub fn check_table_name(name: &str) -> Result<&str, BadTableName> {
    let ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && s.len() <= 63
    };
    let ok = match name.split_once('.') {
        Some((schema, table)) => ident(schema) && ident(table),
        None => ident(name),
    };
    if ok {
        Ok(name)
    } else {
        Err(BadTableName(name.to_owned()))
    }
}

/// Every row of `table` at `url`, in a stable order.
pub fn read(url: &DatabaseUrl, table: &str) -> Result<Vec<OriginalRow>, StoreError> {
    let DatabaseUrl::Postgres(pg) = url else {
        return Err(StoreError::NotPostgres {
            url: url.redacted(),
        });
    };
    let unavailable = |source: ConnectError| StoreError::Unavailable {
        url: url.redacted(),
        source,
    };
    let mut conn = PgConnection::establish(pg).map_err(|e| unavailable(e.into()))?;
    let query = format!(
        "SELECT grant_type::text AS grant_type, client_id::text AS client_id, \
         client_secret::text AS client_secret, resource::text AS resource \
         FROM {table} ORDER BY client_id"
    );
    Ok(diesel::sql_query(query).load::<OriginalRow>(&mut conn)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_identifiers_are_table_names() {
        for good in ["stored_tokens", "public.stored_tokens", "_t1"] {
            assert!(super::check_table_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1t", "t; DROP TABLE x", "a.b.c", "t\"", "ta ble"] {
            assert!(super::check_table_name(bad).is_err(), "{bad}");
        }
    }
}
