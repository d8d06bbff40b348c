//! `[resource]`: the issuer whose tokens are accepted and where the verification keys come
//! from. The routes are in [`super::routes`].

use std::path::PathBuf;
use std::time::Duration;

use super::routes::{validate_routes, RouteRules};
use super::values::{at_least_one, check_realm, parse_issuer, Fallback};
use crate::config::error::Problems;
use crate::config::file::{OneOrMany, RawResource};
use crate::config::preflight::plan::{Check, Plan};
use crate::config::types::{AuthConfig, KeySource, KeysConfig, ResourceConfig};

pub(super) fn validate_resource(
    mut raw: RawResource,
    auth: Fallback<&AuthConfig>,
    keys: Fallback<&KeysConfig>,
    p: &mut Problems,
    plan: &mut Plan,
) -> Option<ResourceConfig> {
    let issuer = match (raw.issuer.as_deref(), auth) {
        (Some(s), _) => parse_issuer("`[resource] issuer`", s, p),
        (None, Fallback::Valid(a)) => Some(a.issuer.clone()),
        (None, Fallback::Reported) => None,
        (None, Fallback::Absent) => {
            p.missing(
                "`[resource] issuer`",
                "missing: a resource-only node must name the issuer whose tokens it accepts",
            );
            None
        }
    };
    let realm = raw.realm.take().unwrap_or_else(|| "steelcut".into());
    check_realm("`[resource] realm`", &realm, p);
    let key_source = key_source(&mut raw, keys, p);
    match &key_source {
        Some(KeySource::JwksFile(f)) => plan.push(Check::JwksFile(f.clone())),
        Some(KeySource::PublicKeysDir(d)) => plan.push(Check::PublicKeysDir(d.clone())),
        _ => {}
    }
    let max_document_bytes = at_least_one(
        "`[resource] max_document_bytes`",
        raw.max_document_bytes,
        10 * 1024 * 1024,
        p,
    );
    let rules = RouteRules {
        token_path: auth.valid().map(|a| a.token_path.as_str()),
        max_document_bytes,
    };
    let routes = validate_routes(raw.routes.take().unwrap_or_default(), &rules, p, plan);
    Some(ResourceConfig {
        issuer: issuer?,
        realm,
        leeway: Duration::from_secs(raw.leeway_secs.unwrap_or(30)),
        key_source: key_source?,
        jwks_refresh: Duration::from_secs(raw.jwks_refresh_secs.unwrap_or(300).max(1)),
        jwks_min_refetch: Duration::from_secs(raw.jwks_min_refetch_secs.unwrap_or(10)),
        token_cache_size: raw.token_cache_size.unwrap_or(10_000),
        max_document_bytes,
        routes,
    })
}

/// The keys that name a key source.
const SOURCES: [&str; 4] = [
    "`[resource] keys`",
    "`[resource] jwks_file`",
    "`[resource] public_keys_dir`",
    "`[resource] jwks_url`",
];

/// Exactly one of `keys = "local"`, `jwks_file`, `public_keys_dir` and `jwks_url`; none means
/// the local `[keys] dir` on a node that has one.
fn key_source(
    raw: &mut RawResource,
    keys: Fallback<&KeysConfig>,
    p: &mut Problems,
) -> Option<KeySource> {
    let mut named = named_sources(raw, keys, p);
    match named.len() {
        0 => match keys {
            Fallback::Valid(k) => Some(KeySource::Local(k.dir.clone())),
            Fallback::Reported => None,
            // A source whose value was of the wrong type is reported already.
            Fallback::Absent if SOURCES.iter().any(|k| p.has(k)) => None,
            Fallback::Absent => {
                p.push("`[resource]`", "no key source: set jwks_url, jwks_file or public_keys_dir (or [keys] dir on a node that also signs)");
                None
            }
        },
        1 => named.pop().flatten(),
        _ => {
            p.push("`[resource]`", "more than one key source: choose one of keys = \"local\", jwks_file, public_keys_dir, jwks_url");
            None
        }
    }
}

/// Each key source the section names: `None` for one whose value is wrong, which is reported
/// already (it still counts as named, so it is not reported again as no source at all).
fn named_sources(
    raw: &mut RawResource,
    keys: Fallback<&KeysConfig>,
    p: &mut Problems,
) -> Vec<Option<KeySource>> {
    let mut named = Vec::new();
    if let Some(k) = raw.keys.take() {
        named.push(local_keys(&k, keys, p));
    }
    if let Some(f) = raw.jwks_file.take() {
        named.push(Some(KeySource::JwksFile(PathBuf::from(f))));
    }
    if let Some(d) = raw.public_keys_dir.take() {
        named.push(Some(KeySource::PublicKeysDir(PathBuf::from(d))));
    }
    if let Some(OneOrMany(urls)) = raw.jwks_url.take() {
        named.push(jwks_urls(urls, p));
    }
    named
}

/// `keys = "local"`: the `[keys] dir` of this node.
fn local_keys(value: &str, keys: Fallback<&KeysConfig>, p: &mut Problems) -> Option<KeySource> {
    if value != "local" {
        p.push("`[resource] keys`", format!("{value:?}: the only value is \"local\"; use jwks_file, public_keys_dir or jwks_url for other sources"));
        return None;
    }
    match keys {
        Fallback::Valid(k) => Some(KeySource::Local(k.dir.clone())),
        Fallback::Reported => None,
        Fallback::Absent => {
            p.push("`[resource] keys`", "\"local\" needs a [keys] dir");
            None
        }
    }
}

/// `jwks_url`: one http(s) URL per auth node, at least one, none twice.
fn jwks_urls(urls: Vec<String>, p: &mut Problems) -> Option<KeySource> {
    const KEY: &str = "`[resource] jwks_url`";
    if urls.is_empty() {
        p.push(
            KEY,
            "is an empty list: name the JWKS URL of at least one auth node",
        );
        return None;
    }
    let mut ok = true;
    for (i, u) in urls.iter().enumerate() {
        let http =
            url::Url::parse(u).is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https"));
        if !http {
            p.push(KEY, format!("{u:?} is not an http(s) URL"));
            ok = false;
        } else if urls[..i].contains(u) {
            p.push(KEY, format!("{u:?} is listed twice"));
            ok = false;
        }
    }
    ok.then_some(KeySource::JwksUrl(urls))
}
