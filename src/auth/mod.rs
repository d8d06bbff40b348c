//! The authorization server role: `POST /token` for the client credentials grant
//! (RFC 6749 section 4.4), the JWKS, and authorization server metadata (RFC 8414).

pub mod cache;
pub mod client_auth;
pub mod error;
pub mod limits;
pub mod password;
pub mod token;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::AuthConfig;
use crate::keys::{KeyError, KeySet};
use crate::store::Store;
use cache::CredentialCache;
use password::Verifier;

/// Shared state of the auth role.
pub struct AuthState {
    pub config: AuthConfig,
    pub store: Store,
    /// The key set in force, replaced whole on reload (shared with the resource role on a
    /// node that plays both).
    pub keys: Arc<ArcSwap<KeySet>>,
    pub verifier: Verifier,
    /// Recently verified credentials (see [`cache`]).
    pub cache: Arc<CredentialCache>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Lifetime of new tokens in seconds; changed by a reload, so kept apart from `config`.
    pub token_lifetime_secs: std::sync::atomic::AtomicU64,
    /// The whole request body must arrive within this (`[server] body_timeout_secs`).
    pub body_timeout: std::time::Duration,
    /// Cancelled when the daemon stops: a body still arriving is not waited for.
    pub stopping: tokio_util::sync::CancellationToken,
    /// Failed authentications per client id and address (see [`limits`]).
    pub limiter: limits::Limiter,
    /// Proxies whose `Forwarded`/`X-Forwarded-For` name the client's address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// PostgreSQL's change notifications, feeding the cache (stops when dropped).
    pub changes: Option<crate::store::listen::Listener>,
}

impl AuthState {
    /// Lifetime of tokens issued now.
    pub fn token_lifetime_secs(&self) -> u64 {
        self.token_lifetime_secs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads the key directory again (a reload); the caller swaps the result in. An empty
    /// directory is an error: the keys in force stay.
    pub async fn load_keys(&self) -> Result<Arc<KeySet>, KeyError> {
        let dir = self.keys().dir.clone();
        let fresh = tokio::task::spawn_blocking(move || KeySet::load(&dir)).await??;
        if fresh.is_empty() {
            return Err(KeyError::NoKey { dir: fresh.dir });
        }
        Ok(Arc::new(fresh))
    }

    /// The key set in force (replaced as a whole on reload).
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
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
