//! Validation: from the raw structs of [`super::file`] to the typed [`Config`], one section per
//! module. Every problem is pushed to one [`Problems`] list instead of returning early, so the
//! operator sees all of them at once; a section that has a problem yields `None` and the whole
//! [`Config`] is then withheld.

mod auth;
mod database;
mod keys;
mod resource;
mod routes;
mod server;
mod values;

use std::path::Path;

use super::error::Problems;
use super::file::RawFile;
use super::preflight::plan::{Check, Plan};
use super::types::{Config, Roles};
use values::Fallback;

const MISSING_DATABASE: &str =
    "missing: the auth role needs [database] url (e.g. \"sqlite:///var/lib/steelcut/steelcut.db\")";

/// Checks every section of `raw` (read from `path`), noting in `plan` what the preflight is to
/// check.
pub(crate) fn validate(
    path: &Path,
    raw: RawFile,
    p: &mut Problems,
    plan: &mut Plan,
) -> Option<Config> {
    let roles = roles(raw.roles.as_deref(), p);
    let server = server::validate_server(raw.server.unwrap_or_default(), p, plan);
    let log = server::validate_log(raw.log.unwrap_or_default(), p);
    let for_auth = |key: &'static str, what: &'static str| (roles.auth, key, what);
    let database = section(
        raw.database,
        for_auth("`[database]`", MISSING_DATABASE),
        p,
        database::validate_database,
    );
    let keys = section(
        raw.keys,
        for_auth(
            "`[keys]`",
            "missing: the auth role needs [keys] dir (where the signing keys live)",
        ),
        p,
        keys::validate_keys,
    );
    let auth = section(
        raw.auth,
        for_auth(
            "`[auth]`",
            "missing: the auth role needs an [auth] section with at least issuer",
        ),
        p,
        auth::validate_auth,
    );
    let resource = match raw.resource {
        Some(r) if roles.resource => {
            resource::validate_resource(r, auth.as_ref(), keys.as_ref(), p, plan)
        }
        Some(_) => None,
        None => {
            if roles.resource {
                p.missing("`[resource]`", "missing: the resource role needs a [resource] section with its [[resource.routes]]");
            }
            None
        }
    };
    let (database, keys, auth) = (database.valid(), keys.valid(), auth.valid());
    if let Some(k) = &keys {
        plan.push(Check::KeyDir {
            dir: k.dir.clone(),
            signs: roles.auth.then_some(k.signing_alg),
        });
    }
    if let (true, Some(d)) = (roles.auth, &database) {
        plan.push(Check::Database(d.clone()));
    }
    Some(Config {
        file: path.to_owned(),
        roles,
        server: server?,
        log,
        database: if roles.auth { database } else { None },
        keys,
        auth: if roles.auth { auth } else { None },
        resource,
    })
}

/// Validates a section with `check` if it is present; if it is absent, reports it when a role
/// needs it (`needed`: whether, the key, the message).
fn section<R, T>(
    raw: Option<R>,
    (needed, key, missing): (bool, &str, &str),
    p: &mut Problems,
    check: impl FnOnce(R, &mut Problems) -> Option<T>,
) -> Fallback<T> {
    match raw {
        Some(r) => check(r, p).map_or(Fallback::Reported, Fallback::Valid),
        // Present but not a table: reported already.
        None if p.has(key) => Fallback::Reported,
        None if needed => {
            p.push(key, missing);
            Fallback::Reported
        }
        None => Fallback::Absent,
    }
}

/// `roles = [...]`.
fn roles(list: Option<&[String]>, p: &mut Problems) -> Roles {
    let mut roles = Roles {
        auth: false,
        resource: false,
    };
    let Some(list) = list else {
        p.missing(
            "`roles`",
            "missing: declare the roles this node plays, e.g. roles = [\"auth\", \"resource\"]",
        );
        return roles;
    };
    for r in list {
        match r.as_str() {
            "auth" => roles.auth = true,
            "resource" => roles.resource = true,
            other => p.push(
                "`roles`",
                format!("unknown role {other:?} (expected \"auth\" or \"resource\")"),
            ),
        }
    }
    if list.is_empty() {
        p.push("`roles`", "is empty: list \"auth\", \"resource\" or both");
    }
    roles
}

#[cfg(test)]
mod tests;
