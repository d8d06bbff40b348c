//! The integration test binary: every test talks to a real `App` over loopback HTTP, or runs
//! the real `steelcutd` binary. One binary, so the crate links once.

// Fixtures outside #[test] functions may panic on broken set-up: that is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

mod admin_cli;
mod algorithms;
mod caches;
mod check_config;
mod client_cli;
mod discovery;
mod docs;
mod fleet;
mod gateway;
mod helpers;
mod hostile;
mod hot_reload;
mod import;
mod key_files;
mod outage;
mod overlap;
mod pg;
mod postgres;
mod process;
mod remote_jwks;
mod resource;
mod rotation;
mod standby;
mod throttle;
mod token;
mod tools;
