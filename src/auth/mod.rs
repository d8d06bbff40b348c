//! The authorization server role: `POST /token` for the client credentials grant
//! (RFC 6749 section 4.4), the JWKS, and authorization server metadata (RFC 8414).

pub mod cache;
pub mod client_auth;
pub mod error;
pub mod token;

use std::sync::{Arc, RwLock};

use crate::config::AuthConfig;
use crate::keys::KeySet;
use crate::store::Store;
use cache::CredentialCache;
use client_auth::Verifier;

/// Shared state of the auth role.
pub struct AuthState {
    pub config: AuthConfig,
    pub store: Store,
    pub keys: Arc<RwLock<Arc<KeySet>>>,
    pub verifier: Verifier,
    /// Recently verified credentials (see [`cache`]).
    pub cache: Arc<CredentialCache>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl AuthState {
    /// The key set in force (replaced as a whole on reload).
    pub fn keys(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// `GET /.well-known/oauth-authorization-server` (RFC 8414 section 3.2).
    pub fn metadata(&self) -> serde_json::Value {
        let issuer = &self.config.issuer;
        serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}{}", self.config.token_path),
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "resource_indicators_supported": true,
            "access_token_signing_alg_values_supported": ["EdDSA"],
        })
    }
}
