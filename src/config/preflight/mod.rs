//! The preflight: what `serve` will find on disk and on the network, checked before it starts,
//! so that "configuration is valid" means the daemon will start.
//!
//! Validation looks only at the text of the file. While it runs, each section notes the files,
//! directories and servers its values name (a [`Plan`]); the preflight then checks them all in
//! one pass:
//!
//! - the key directory: owner-only, every key file owner-only (each refused one named with the
//!   `chmod` to run) and loadable, or a directory that can be created;
//! - the TLS certificate and key, loaded as `serve` loads them;
//! - a resource node's `jwks_file` or `public_keys_dir`;
//! - every route's document: a regular file within `[resource] max_document_bytes`, read
//!   without blocking (`crate::files::read_regular`), holding JSON;
//! - the database: a SQLite path that can be opened or created, a PostgreSQL server that
//!   answers within `connect_timeout_secs`.
//!
//! Its problems join validation's, so the operator still gets every problem at once, each
//! naming the key and the file.
//!
//! It also warns about what works but exposes a secret: a configuration file every user may
//! read that holds a database password, or a SQLite database (the clients' argon2 hashes) every
//! user may read.
//!
//! `check-config`, `serve` and SIGHUP reloads all run [`Config::check`].

mod database;
mod files;
mod keys;
mod paths;
pub mod plan;

use plan::{Check, Options, Plan, Report};

/// Runs every check of `plan`.
pub(crate) fn run(plan: &Plan, options: &Options<'_>) -> Report {
    let mut r = Report::default();
    for check in &plan.0 {
        match check {
            Check::Tls(tls) => files::check_tls(tls, options, &mut r),
            Check::KeyDir { dir, signs } => keys::check_key_dir(dir, *signs, &mut r),
            Check::Database(db) if options.database => database::check_database(db, &mut r),
            Check::Database(_) => {}
            Check::JwksFile(f) => files::check_jwks_file(f, &mut r),
            Check::PublicKeysDir(d) => files::check_public_keys_dir(d, &mut r),
            Check::Document {
                label,
                file,
                max_bytes,
            } => files::check_document(label, file, *max_bytes, &mut r),
            Check::SecretInFile(file) => files::check_secret_file(file, &mut r),
        }
    }
    r
}
