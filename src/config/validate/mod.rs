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
use super::preflight::{Check, Plan};
use super::types::{Config, Roles};

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
    let database = match raw.database {
        Some(d) => database::validate_database(d, p),
        None => required(roles.auth, "`[database]`", "missing: the auth role needs [database] url (e.g. \"sqlite:///var/lib/steelcut/steelcut.db\")", p),
    };
    let keys = match raw.keys {
        Some(k) => keys::validate_keys(k, p),
        None => required(
            roles.auth,
            "`[keys]`",
            "missing: the auth role needs [keys] dir (where the signing keys live)",
            p,
        ),
    };
    let auth = match raw.auth {
        Some(a) => auth::validate_auth(a, p),
        None => required(
            roles.auth,
            "`[auth]`",
            "missing: the auth role needs an [auth] section with at least issuer",
            p,
        ),
    };
    let resource = match raw.resource {
        Some(r) if roles.resource => {
            resource::validate_resource(r, auth.as_ref(), keys.as_ref(), p, plan)
        }
        Some(_) => None,
        None => required(
            roles.resource,
            "`[resource]`",
            "missing: the resource role needs a [resource] section with its [[resource.routes]]",
            p,
        ),
    };
    if let Some(k) = &keys {
        plan.push(Check::KeyDir {
            dir: k.dir.clone(),
            signs: roles.auth,
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

/// A section that is absent: a problem if a role needs it.
fn required<T>(needed: bool, key: &str, message: &str, p: &mut Problems) -> Option<T> {
    if needed {
        p.push(key, message);
    }
    None
}

/// `roles = [...]`.
fn roles(list: Option<&[String]>, p: &mut Problems) -> Roles {
    let mut roles = Roles {
        auth: false,
        resource: false,
    };
    let Some(list) = list else {
        p.push(
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
