//! The HTTP layer: the accept loop, the one routing table, and request/response helpers.

pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod tls;
