//! The command line side, apart from the server roles: parsing ([`cli`]), running the daemon
//! ([`serve`]: `serve` and `check-config`), the admin commands ([`admin`]: `migrate`;
//! [`clients`]: `client ...`; [`keys`]: `keys ...`) and the client helpers ([`client`]: `token`, `get`).
//!
//! Top of the dependency order: these modules use the server's assembly (`app`), the
//! roles and the bottom layers; nothing outside `cmd` imports them.

pub mod admin;
pub mod args;
pub mod cli;
pub mod client;
pub mod clients;
pub mod import;
pub mod keys;
pub mod logging;
pub mod serve;
