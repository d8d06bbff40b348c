//! The HTTP layer: the accept loop, TLS, and request/response helpers (below the roles: nothing here knows about them).

pub mod conn;
pub mod json;
pub mod request;
pub mod response;
pub mod server;
pub mod stage;
pub mod tls;
