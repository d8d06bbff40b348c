//! `[auth]`, `[auth.argon2]` and `[auth.limits]`.

use std::time::Duration;

use super::values::{at_least_one, check_realm, parse_issuer, secs_in};
use crate::config::error::Problems;
use crate::config::file::{RawArgon2, RawAuth, RawAuthLimits};
use crate::config::types::{Argon2Params, AuthConfig, AuthLimits, RESERVED_PREFIX};

pub(super) fn validate_auth(raw: RawAuth, p: &mut Problems) -> Option<AuthConfig> {
    let issuer = match raw.issuer.as_deref() {
        None => {
            p.missing("`[auth] issuer`", "missing: the URL clients use to reach this server, e.g. \"https://auth.example.com\"");
            None
        }
        Some(s) => parse_issuer("`[auth] issuer`", s, p),
    };
    let token_path = raw.token_path.unwrap_or_else(|| "/token".into());
    if !token_path.starts_with('/')
        || token_path.starts_with(RESERVED_PREFIX)
        || token_path.contains(['?', '#', ' '])
    {
        p.push(
            "`[auth] token_path`",
            format!("{token_path:?} must be a path starting with '/' (not under /.well-known/)"),
        );
    }
    let lifetime = raw.token_lifetime_secs.unwrap_or(3600);
    if !(60..=86_400).contains(&lifetime) {
        p.push(
            "`[auth] token_lifetime_secs`",
            format!("{lifetime} is outside 60..=86400 seconds"),
        );
    }
    let realm = raw.realm.unwrap_or_else(|| "steelcut".into());
    check_realm("`[auth] realm`", &realm, p);
    let argon2 = validate_argon2(raw.argon2.unwrap_or_default(), p);
    let max_concurrent_hashes = raw.max_concurrent_hashes.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    if max_concurrent_hashes == 0 {
        p.push("`[auth] max_concurrent_hashes`", "must be at least 1");
    }
    Some(AuthConfig {
        issuer: issuer?,
        token_path,
        token_lifetime: Duration::from_secs(lifetime),
        realm,
        argon2,
        max_concurrent_hashes: max_concurrent_hashes.max(1),
        credential_cache_ttl: Duration::from_secs(raw.credential_cache_secs.unwrap_or(300)),
        credential_cache_size: raw.credential_cache_size.unwrap_or(10_000),
        serve_cached_when_db_down: secs_in(
            "`[auth] serve_cached_when_db_down_secs`",
            raw.serve_cached_when_db_down_secs,
            60,
            0..=86_400,
            p,
        ),
        limits: validate_limits(raw.limits.unwrap_or_default(), p),
    })
}

/// `[auth.limits]`: every bucket holds and regains at least one token.
fn validate_limits(raw: RawAuthLimits, p: &mut Problems) -> AuthLimits {
    let d = AuthLimits::default();
    let mut one = |key: &str, value, default| {
        at_least_one(&format!("`[auth.limits] {key}`"), value, default, p)
    };
    AuthLimits {
        client_burst: one("client_burst", raw.client_burst, d.client_burst),
        client_refill_per_minute: one(
            "client_refill_per_minute",
            raw.client_refill_per_minute,
            d.client_refill_per_minute,
        ),
        address_burst: one("address_burst", raw.address_burst, d.address_burst),
        address_refill_per_minute: one(
            "address_refill_per_minute",
            raw.address_refill_per_minute,
            d.address_refill_per_minute,
        ),
        max_tracked: at_least_one(
            "`[auth.limits] max_tracked`",
            raw.max_tracked,
            d.max_tracked,
            p,
        ),
    }
}

fn validate_argon2(a: RawArgon2, p: &mut Problems) -> Argon2Params {
    let d = Argon2Params::default();
    let params = Argon2Params {
        memory_kib: a.memory_kib.unwrap_or(d.memory_kib),
        iterations: a.iterations.unwrap_or(d.iterations),
        parallelism: a.parallelism.unwrap_or(d.parallelism),
    };
    if let Err(e) = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    ) {
        p.push(
            "`[auth.argon2]`",
            format!(
                "invalid argon2id parameters m={} t={} p={}: {e}",
                params.memory_kib, params.iterations, params.parallelism
            ),
        );
    }
    params
}
