//! The resource server role: protected JSON documents behind bearer tokens.

use std::sync::{Arc, RwLock};

use http::{Request, Response};

use crate::config::ResourceConfig;
use crate::http::response::Body;
use crate::keys::KeySet;

/// Errors building the resource role.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("{0}")]
    Load(String),
}

/// Shared state of the resource role.
pub struct ResourceState {}

impl ResourceState {
    pub async fn build(
        _config: &ResourceConfig,
        _local_keys: Option<Arc<RwLock<Arc<KeySet>>>>,
    ) -> Result<Self, ResourceError> {
        Ok(Self {})
    }

    pub fn is_ready(&self) -> bool {
        true
    }

    /// Answers a request for one of the routes, or `None` when the path is not a route.
    pub async fn handle<B>(&self, _req: Request<B>) -> Option<Response<Body>> {
        None
    }
}
