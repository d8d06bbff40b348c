//! The state every request shares ([`AppState`]): the configuration in force, the roles'
//! state, metrics and the TLS acceptor; how a reload replaces what may change while running,
//! and what `/readyz` and `/metrics` report. Below the router, which only reads it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Response, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::auth::AuthState;
use crate::config::Config;
use crate::http::response::{self, Body};
use crate::http::tls::{TlsError, TlsHandle};
use crate::keys::KeyError;
use crate::metrics::{Gauges, Metrics};
use crate::resource::{ResourceError, ResourceState};

/// Why a reload was refused; the configuration in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Resource(#[from] ResourceError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// State shared by every request.
pub struct AppState {
    /// The configuration the process started with: listeners, roles, database and key
    /// source come from it for the life of the process.
    pub config: Config,
    pub auth: Option<AuthState>,
    pub resource: Option<ResourceState>,
    pub metrics: Arc<Metrics>,
    /// The TLS acceptor of the main listener, swapped on reload.
    pub tls: Option<TlsHandle>,
    /// The configuration applied last (at start or by a reload).
    applied: ArcSwap<Config>,
    ready: AtomicBool,
    /// Cancelled when shutdown begins: listeners stop, requests waiting on a slow client end.
    pub stopping: CancellationToken,
}

/// Settings a reload cannot change, and how to tell them apart.
fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |changed: bool, name: &'static str| {
        if changed {
            out.push(name);
        }
    };
    check(old.roles != new.roles, "roles");
    check(old.server.listen != new.server.listen, "[server] listen");
    check(
        old.server.admin_listen != new.server.admin_listen,
        "[server] admin_listen",
    );
    check(
        old.server.tls.is_some() != new.server.tls.is_some(),
        "[server.tls] (turning TLS on or off)",
    );
    check(
        old.database.as_ref().map(|d| &d.url) != new.database.as_ref().map(|d| &d.url),
        "[database] url",
    );
    check(
        old.keys.as_ref().map(|k| &k.dir) != new.keys.as_ref().map(|k| &k.dir),
        "[keys] dir",
    );
    let auth = |c: &Config| {
        c.auth.as_ref().map(|a| {
            (
                a.issuer.clone(),
                a.token_path.clone(),
                a.argon2,
                a.max_concurrent_hashes,
            )
        })
    };
    check(
        auth(old) != auth(new),
        "[auth] issuer, token_path, argon2 or max_concurrent_hashes",
    );
    let source = |c: &Config| {
        c.resource
            .as_ref()
            .map(|r| (r.key_source.clone(), r.issuer.clone(), r.realm.clone()))
    };
    check(
        source(old) != source(new),
        "[resource] key source, issuer or realm",
    );
    out
}

impl AppState {
    pub fn new(
        config: Config,
        auth: Option<AuthState>,
        resource: Option<ResourceState>,
        metrics: Arc<Metrics>,
        tls: Option<TlsHandle>,
        stopping: CancellationToken,
    ) -> Self {
        Self {
            applied: ArcSwap::from_pointee(config.clone()),
            config,
            auth,
            resource,
            metrics,
            tls,
            ready: AtomicBool::new(false),
            stopping,
        }
    }

    /// Called once the listeners serve: `/readyz` may say ready from now on.
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Applies a new configuration (SIGHUP): key directory (new keys published, the newest
    /// signs), token lifetime, TLS certificates, routes and their files. Everything is loaded
    /// and checked first and swapped in only if all of it is good, so a failed reload changes
    /// nothing. Returns the changed settings that only take effect after a restart, compared
    /// with what the process started with (so reverting such a change is not reported).
    pub async fn reload(&self, new: Config) -> Result<Vec<&'static str>, ReloadError> {
        let restart = restart_only(&self.config, &new);
        // 1. Prepare: anything that can fail happens here.
        let tls = match (&new.server.tls, &self.tls) {
            (Some(t), Some(_)) => Some(crate::http::tls::load(t)?),
            _ => None,
        };
        let catalog = match (&self.resource, &new.resource) {
            (Some(resource), Some(rc)) => Some(resource.prepare(rc).await?),
            _ => None,
        };
        let keys = match (&self.auth, new.key_schedule()) {
            (Some(auth), Some(schedule)) => Some(auth.load_keys(schedule).await?),
            _ => None,
        };
        // 2. Swap (infallible from here on).
        if let (Some(handle), Some(acceptor)) = (&self.tls, tls) {
            handle.store(Arc::new(acceptor));
        }
        if let (Some(resource), Some(catalog)) = (&self.resource, catalog) {
            resource.commit(catalog);
        }
        if let (Some(auth), Some(keys)) = (&self.auth, keys) {
            auth.keys.store(keys);
            if let Some(ac) = &new.auth {
                auth.token_lifetime_secs
                    .store(ac.token_lifetime.as_secs(), Ordering::Relaxed);
            }
            if let Some(kc) = &new.keys {
                auth.rotate_after.store(
                    kc.rotate_after.map_or(0, |d| d.as_secs()),
                    Ordering::Relaxed,
                );
            }
        }
        self.applied.store(Arc::new(new));
        Ok(restart)
    }

    /// The configuration applied last (at start or by a reload).
    pub fn applied(&self) -> Arc<Config> {
        self.applied.load_full()
    }

    /// `/metrics` text, including counters kept by the roles themselves.
    pub fn metrics_text(&self) -> String {
        let mut gauges = Gauges::default();
        if let Some(auth) = &self.auth {
            gauges.credential_cache_entries = auth.cache.len() as u64;
            gauges.credential_cache_hits = auth.cache.hits();
        }
        if let Some(resource) = &self.resource {
            gauges.token_cache_entries = resource.token_cache_len() as u64;
            gauges.token_cache_hits = resource.token_cache_hits();
            gauges.jwks_fetches = resource.jwks_fetches();
        }
        self.metrics.render(gauges)
    }

    /// `/readyz`: 200 once started, while the database answers (as the probe last found: no
    /// query here, so this answers at once even during an outage), with signing keys on an
    /// auth node and verification keys on a resource node; 503 otherwise.
    pub fn readiness(&self) -> Response<Body> {
        let mut checks = serde_json::Map::new();
        let mut ok = self.ready.load(Ordering::Acquire);
        checks.insert("started".into(), ok.into());
        if let Some(auth) = &self.auth {
            let db = auth.store.health().is_up();
            let keys = !auth.keys().is_empty();
            checks.insert("database".into(), db.into());
            checks.insert("signing_keys".into(), keys.into());
            ok &= db && keys;
        }
        if let Some(resource) = &self.resource {
            let r = resource.is_ready();
            checks.insert("verification_keys".into(), r.into());
            ok &= r;
        }
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let body =
            serde_json::json!({"status": if ok {"ready"} else {"not ready"}, "checks": checks});
        response::no_store(response::json(status, &body))
    }
}
