//! The authorization server role: `POST /token` for the client credentials grant
//! (RFC 6749 section 4.4), the JWKS, and authorization server metadata (RFC 8414).

pub mod cache;
pub mod client_auth;
pub mod error;
pub mod limits;
pub mod password;
pub mod rotation;
pub mod token;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::AuthConfig;
use crate::keys::{KeyError, KeySet, Provision, Schedule};
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
    /// `[keys] rotate_after_days` in force (see [`rotation`]).
    pub rotate_after: rotation::RotateAfter,
    /// The key clock (see [`rotation`]); stops when dropped.
    pub key_clock: tokio_util::task::AbortOnDropHandle<()>,
}

impl AuthState {
    /// Lifetime of tokens issued now.
    pub fn token_lifetime_secs(&self) -> u64 {
        self.token_lifetime_secs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads the key directory again (a reload) with the rules of the reloaded configuration,
    /// generating a key of the signing algorithm if there is none; the caller swaps the
    /// result in. An empty directory is an error: the keys in force stay.
    pub async fn load_keys(&self, schedule: Schedule) -> Result<Arc<KeySet>, KeyError> {
        let dir = self.keys().dir.clone();
        let now = crate::time::now_millis();
        let (fresh, provision) =
            tokio::task::spawn_blocking(move || KeySet::load_or_generate(&dir, schedule, now))
                .await??;
        if fresh.is_empty() {
            return Err(KeyError::NoKey { dir: fresh.dir });
        }
        log_provision(&fresh, &provision, now);
        warn_late_publication(&self.keys(), &fresh, now);
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
            // RFC 8414 section 2: the algorithms of the keys a client may meet now.
            "access_token_signing_alg_values_supported": self
                .keys()
                .algs(crate::time::now_millis())
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>(),
        })
    }
}

/// Warns about a key this reload publishes for the first time although its pre-publication,
/// which counts from its creation, is already over: it signs at once, so a resource server
/// that has not fetched it yet refetches on its unknown kid (or, with a JWKS file, refuses its
/// tokens until the file is copied again). The cure is to reload right after `keys generate`.
fn warn_late_publication(before: &KeySet, after: &KeySet, now: i64) {
    let Some(signer) = after.signing(now) else {
        return;
    };
    let Some(i) = after.position(signer.kid()) else {
        return;
    };
    let was_published = before.position(signer.kid()).is_some();
    let created = after.entry(i).map_or(now, |e| e.created_ms);
    if !was_published && !before.is_empty() && after.activates_at(i) > created {
        tracing::warn!(
            kid = %signer.kid(),
            generated = %crate::time::rfc3339_millis(created),
            "a key published only now already signs: its pre-publication counts from its creation; reload right after `steelcutd keys generate`"
        );
    }
}

/// Logs what a (re)load of the key directory found: a key generated for the signing algorithm,
/// or that none could be, and which key signs now and why.
pub fn log_provision(set: &KeySet, provision: &Provision, now: i64) {
    let schedule = set.schedule();
    match provision {
        Provision::Present => {}
        Provision::Generated(g) => {
            tracing::info!(kid = %g.kid, alg = %g.alg, dir = %set.dir.display(), "generated a new signing key")
        }
        Provision::CannotGenerate(error) => tracing::warn!(
            alg = %schedule.signing_alg,
            %error,
            "no key of the signing algorithm and none can be generated; run `steelcutd keys generate` as a user that may write the key directory"
        ),
    }
    match set.signing(now) {
        Some(k) if k.alg() == schedule.signing_alg => {
            tracing::info!(kid = %k.kid(), alg = %k.alg(), keys = set.entries().count(), "signing key loaded")
        }
        Some(k) => {
            let pending = set
                .entries()
                .enumerate()
                .filter(|(_, e)| e.signer.alg() == schedule.signing_alg && e.retired_ms.is_none())
                .map(|(i, e)| (set.activates_at(i), e.signer.kid().to_owned()))
                .min();
            let (at, successor) = pending.map_or_else(
                || ("never".to_owned(), "none".to_owned()),
                |(at, kid)| (crate::time::rfc3339_millis(at), kid),
            );
            tracing::warn!(
                kid = %k.kid(),
                alg = %k.alg(),
                wanted = %schedule.signing_alg,
                %successor,
                successor_signs_at = %at,
                "signing with a key of another algorithm until a key of the signing algorithm has been published long enough"
            )
        }
        None => tracing::error!(dir = %set.dir.display(), "no key may sign now"),
    }
}
