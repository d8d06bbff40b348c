//! The keys with defaults, ranges and types of their own (timeouts, limits, CIDR blocks, key
//! rotation, document size, one or several JWKS URLs).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::config::{Config, IpNet, KeySource, Problem, SigningAlg};

/// A node with both roles, with `extra` TOML in each section: server, keys, auth,
/// auth.limits, resource.
fn both(extra: [&str; 5]) -> String {
    let [server, keys, auth, limits, resource] = extra;
    format!(
        r#"roles = ["auth", "resource"]
[server]
{server}
[database]
url = "sqlite://x.db"
[keys]
dir = "k"
{keys}
[auth]
issuer = "https://a.example"
{auth}
[auth.limits]
{limits}
[resource]
{resource}
"#
    )
}

fn load_with(text: &str, env: &[(&str, &str)]) -> Result<Config, Vec<Problem>> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_toml(Path::new("t.toml"), text, &env)
}

fn problems(text: &str) -> Vec<Problem> {
    load_with(text, &[]).err().unwrap_or_default()
}

#[test]
fn the_new_keys_have_their_defaults() {
    let c = load_with(&both([""; 5]), &[]).unwrap_or_else(|p| panic!("{p:?}"));
    let s = &c.server;
    assert_eq!(s.header_read_timeout, Duration::from_secs(10));
    assert_eq!(s.body_timeout, Duration::from_secs(10));
    assert_eq!(s.keepalive_timeout, Duration::from_secs(60));
    assert_eq!(s.max_connections, None);
    assert_eq!(s.admin_max_connections, 64);
    assert!(s.trusted_proxies.is_empty());
    let a = c.auth.as_ref().unwrap();
    assert_eq!(a.serve_cached_when_db_down, Duration::from_secs(60));
    assert_eq!(
        (
            a.limits.client_burst,
            a.limits.client_refill_per_minute,
            a.limits.address_burst,
            a.limits.address_refill_per_minute,
            a.limits.max_tracked
        ),
        (10, 10, 30, 60, 100_000)
    );
    let k = c.keys.as_ref().unwrap();
    assert_eq!(k.signing_alg, SigningAlg::EdDsa);
    assert_eq!(k.publish_before_sign, Duration::from_secs(900));
    assert_eq!(k.rotate_after, None);
    assert_eq!(c.resource.as_ref().unwrap().max_document_bytes, 10_485_760);
}

#[test]
fn the_new_keys_are_read_from_the_file() {
    let text = both([
        r#"header_read_timeout_secs = 5
body_timeout_secs = 20
keepalive_timeout_secs = 3600
max_connections = 1
admin_max_connections = 2
trusted_proxies = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7", "172.16.9.9/12"]"#,
        "signing_alg = \"ES256\"\npublish_before_sign_secs = 0\nrotate_after_days = 30",
        "serve_cached_when_db_down_secs = 0",
        "client_burst = 1\nmax_tracked = 5",
        "max_document_bytes = 1",
    ]);
    let c = load_with(&text, &[]).unwrap_or_else(|p| panic!("{p:?}"));
    let s = &c.server;
    assert_eq!(s.header_read_timeout, Duration::from_secs(5));
    assert_eq!(s.body_timeout, Duration::from_secs(20));
    assert_eq!(s.keepalive_timeout, Duration::from_secs(3600));
    assert_eq!((s.max_connections, s.admin_max_connections), (Some(1), 2));
    let nets: Vec<IpNet> = [
        "10.0.0.0/8",
        "2001:db8::/32",
        "192.0.2.7/32",
        "172.16.0.0/12",
    ]
    .iter()
    .map(|n| n.parse().unwrap())
    .collect();
    assert_eq!(s.trusted_proxies, nets);
    let a = c.auth.as_ref().unwrap();
    assert_eq!(a.serve_cached_when_db_down, Duration::ZERO);
    assert_eq!((a.limits.client_burst, a.limits.max_tracked), (1, 5));
    assert_eq!(a.limits.address_burst, 30);
    let k = c.keys.as_ref().unwrap();
    assert_eq!(k.signing_alg, SigningAlg::Es256);
    assert_eq!(k.publish_before_sign, Duration::ZERO);
    assert_eq!(k.rotate_after, Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(c.resource.as_ref().unwrap().max_document_bytes, 1);
}

#[test]
fn every_value_out_of_range_is_reported_naming_its_key() {
    let text = both([
        r#"header_read_timeout_secs = 0
body_timeout_secs = 3601
keepalive_timeout_secs = 0
max_connections = 0
admin_max_connections = 0
trusted_proxies = ["10.0.0.0/33", "proxy.example"]"#,
        "signing_alg = \"HS256\"\nrotate_after_days = 0",
        "serve_cached_when_db_down_secs = 86401",
        "client_burst = 0\nclient_refill_per_minute = 0\naddress_burst = 0\n\
         address_refill_per_minute = 0\nmax_tracked = 0",
        "max_document_bytes = 0",
    ]);
    let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
    let expected = [
        "`[server] header_read_timeout_secs`",
        "`[server] body_timeout_secs`",
        "`[server] keepalive_timeout_secs`",
        "`[server] max_connections`",
        "`[server] admin_max_connections`",
        "`[server] trusted_proxies`",
        "`[server] trusted_proxies`",
        "`[keys] signing_alg`",
        "`[keys] rotate_after_days`",
        "`[auth] serve_cached_when_db_down_secs`",
        "`[auth.limits] client_burst`",
        "`[auth.limits] client_refill_per_minute`",
        "`[auth.limits] address_burst`",
        "`[auth.limits] address_refill_per_minute`",
        "`[auth.limits] max_tracked`",
        "`[resource] max_document_bytes`",
    ];
    assert_eq!(keys, expected);
}

#[test]
fn a_key_is_published_for_less_time_than_it_lives() {
    let text = both([
        "",
        "publish_before_sign_secs = 86400\nrotate_after_days = 1",
        "",
        "",
        "",
    ]);
    let problems = problems(&text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "`[keys] publish_before_sign_secs`");
    assert!(problems[0].message.contains("replaced before it signs"));
}

const RESOURCE_ONLY: &str = r#"
roles = ["resource"]
[resource]
issuer = "https://a.example"
"#;

#[test]
fn jwks_url_is_one_url_or_a_list_of_them() {
    let one = format!("{RESOURCE_ONLY}jwks_url = \"https://a.example/jwks.json\"\n");
    let c = load_with(&one, &[]).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(
        c.resource.map(|r| r.key_source),
        Some(KeySource::JwksUrl(vec![
            "https://a.example/jwks.json".into()
        ]))
    );
    let two = format!(
        "{RESOURCE_ONLY}jwks_url = [\"https://a.example/jwks.json\", \"https://b.example/jwks.json\"]\n"
    );
    let c = load_with(&two, &[]).unwrap_or_else(|p| panic!("{p:?}"));
    let Some(KeySource::JwksUrl(urls)) = c.resource.map(|r| r.key_source) else {
        panic!("not a JWKS URL source");
    };
    assert_eq!(urls.len(), 2);
}

#[test]
fn a_wrong_jwks_url_is_one_problem_each_and_not_also_a_missing_key_source() {
    for (value, words) in [
        ("[]", "empty list"),
        ("[\"ftp://a.example/jwks.json\"]", "not an http(s) URL"),
        (
            "[\"https://a.example/j\", \"https://a.example/j\"]",
            "listed twice",
        ),
        ("3", "a URL or a list of URLs"),
    ] {
        let text = format!("{RESOURCE_ONLY}jwks_url = {value}\n");
        let problems = problems(&text);
        assert_eq!(problems.len(), 1, "{value}: {problems:?}");
        assert_eq!(problems[0].key, "`[resource] jwks_url`", "{value}");
        assert!(problems[0].message.contains(words), "{problems:?}");
    }
}

#[test]
fn the_new_scalars_and_lists_can_be_set_from_the_environment() {
    let env = [
        ("STEELCUT_SERVER_HEADER_READ_TIMEOUT_SECS", "7"),
        ("STEELCUT_SERVER_MAX_CONNECTIONS", "100"),
        ("STEELCUT_SERVER_TRUSTED_PROXIES", "10.0.0.0/8,192.0.2.1"),
        ("STEELCUT_AUTH_SERVE_CACHED_WHEN_DB_DOWN_SECS", "0"),
        ("STEELCUT_AUTH_LIMITS_ADDRESS_BURST", "5"),
        ("STEELCUT_KEYS_SIGNING_ALG", "RS256"),
        ("STEELCUT_KEYS_ROTATE_AFTER_DAYS", "90"),
        ("STEELCUT_RESOURCE_MAX_DOCUMENT_BYTES", "4096"),
    ];
    let c = load_with(&both([""; 5]), &env).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(7));
    assert_eq!(c.server.max_connections, Some(100));
    assert_eq!(c.server.trusted_proxies.len(), 2);
    let a = c.auth.as_ref().unwrap();
    assert_eq!(a.serve_cached_when_db_down, Duration::ZERO);
    assert_eq!(a.limits.address_burst, 5);
    let k = c.keys.as_ref().unwrap();
    assert_eq!(k.signing_alg, SigningAlg::Rs256);
    assert_eq!(k.rotate_after, Some(Duration::from_secs(90 * 86_400)));
    assert_eq!(c.resource.as_ref().unwrap().max_document_bytes, 4096);
    // Several auth nodes' JWKS URLs in one variable.
    let env = [(
        "STEELCUT_RESOURCE_JWKS_URL",
        "https://a.example/jwks.json,https://b.example/jwks.json",
    )];
    let c = load_with(RESOURCE_ONLY, &env).unwrap_or_else(|p| panic!("{p:?}"));
    let Some(KeySource::JwksUrl(urls)) = c.resource.map(|r| r.key_source) else {
        panic!("not a JWKS URL source");
    };
    assert_eq!(urls.len(), 2);
    // A wrong value names the variable.
    let problems = load_with(&both([""; 5]), &[("STEELCUT_AUTH_LIMITS_MAX_TRACKED", "0")])
        .err()
        .unwrap_or_default();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["`[auth.limits] max_tracked` (from STEELCUT_AUTH_LIMITS_MAX_TRACKED)"]
    );
}

#[test]
fn by_default_a_new_key_is_published_longer_than_a_jwks_refresh_plus_a_margin() {
    // A resource server that fetches a remote JWKS learns of a new key at most one refresh
    // after it is published; a key that signed before then could have its first tokens
    // refused. The margin covers one failed fetch's retry and clock skew between nodes.
    const MARGIN: Duration = Duration::from_secs(60);
    let c = load_with(&both([""; 5]), &[]).unwrap_or_else(|p| panic!("{p:?}"));
    let publish = c
        .keys
        .as_ref()
        .map(|k| k.publish_before_sign)
        .unwrap_or_default();
    let refresh = c
        .resource
        .as_ref()
        .map(|r| r.jwks_refresh)
        .unwrap_or_default();
    assert_eq!(refresh, Duration::from_secs(300));
    assert!(publish > refresh + MARGIN, "{publish:?} vs {refresh:?}");
    // The schedule the daemon runs with is the configuration's, and a retired key stays
    // published for the token lifetime plus the leeway.
    let schedule = c.key_schedule().unwrap_or_default();
    assert_eq!(schedule.publish_before_sign, publish);
    assert_eq!(schedule.retire_grace, Duration::from_secs(3600 + 30));
}
