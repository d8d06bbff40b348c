//! steelcut: an OAuth 2.0 authorization server for the client credentials grant and a resource
//! server for JSON documents, in one daemon (`steelcutd`).
//!
//! - [`config`]: the TOML file, environment overrides, validation.
//! - [`app`]: builds and runs the daemon from a [`config::Config`].
//! - [`http`]: accept loop, the routing table, request and response helpers.
//! - [`auth`]: `POST /token`, client authentication, discovery documents.
//! - [`resource`]: protected documents, bearer token validation.
//! - [`keys`]: key files (EdDSA, ES256, RS256), key ids, JWKS, JWT signing, rotation rules.
//! - [`store`]: the client table on SQLite or PostgreSQL (Diesel).
//! - [`domain`]: identifiers with rules (client ids, resources, scopes).
//! - [`ct`]: comparing secrets in a time that depends only on their lengths.
//! - [`cli`] and [`admin`]: the command line and the admin commands behind it.

pub mod app;
pub mod auth;
pub mod cmd;
pub mod config;
pub mod ct;
pub mod domain;
pub mod files;
pub mod http;
pub mod keys;
pub mod logfield;
pub mod metrics;
pub mod reqlog;
pub mod resource;
pub mod store;
pub mod time;
