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
    /// Lifetime of new tokens in seconds; changed by a reload, so kept apart from `config`.
    pub token_lifetime_secs: std::sync::atomic::AtomicU64,
}

impl AuthState {
    /// Lifetime of tokens issued now.
    pub fn token_lifetime_secs(&self) -> u64 {
        self.token_lifetime_secs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Re-reads the key directory; the newest key signs from now on. On error the keys in
    /// force stay.
    pub fn reload_keys(&self) -> Result<(), crate::keys::KeyError> {
        let dir = self.keys().dir.clone();
        let fresh = KeySet::load(&dir)?;
        if fresh.is_empty() {
            return Err(crate::keys::KeyError::NoKey { dir });
        }
        let mut guard = match self.keys.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *guard = Arc::new(fresh);
        Ok(())
    }

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
