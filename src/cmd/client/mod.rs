//! The client side: `steelcutd token` and `steelcutd get`, the counterparts of the original
//! package's `client_request_token` and `client_request_resource`.
//!
//! - `token` asks a token endpoint for an access token with the client credentials grant
//!   (RFC 6749 section 4.4), naming the resources (RFC 8707) and scope wanted, and prints the
//!   token alone on standard output, so `TOKEN=$(steelcutd token ...)` works.
//! - `get` fetches a protected resource with `Authorization: Bearer` (RFC 6750 section 2.1)
//!   and prints the document; a refusal prints the resource server's error code.
//!
//! What holds:
//! - The client secret never comes from the command line, where every user would see it in
//!   `ps`: it is read from `STEELCUT_CLIENT_SECRET` or from `--client-secret-file`, kept in a
//!   [`SecretString`] and used in one place, the token request.
//! - Tokens are cached per user (see [`cache`]) and reused until they are within
//!   `--margin-secs` of expiry; the cache never holds the secret. A broken cache only costs a
//!   fresh token request (with a warning), never the command.
//! - Nothing here ends the process: every failure is returned to `main`, which prints it and
//!   exits non-zero.

pub mod cache;
pub mod wire;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use clap::Args;

use crate::time::now_unix;
use cache::{CacheKey, CachedToken, TokenCache};
use wire::AuthMethod;
use wire::{ClientError, TokenParams};

/// The environment variable holding the client secret.
pub const SECRET_ENV: &str = "STEELCUT_CLIENT_SECRET";

/// How to obtain a token from an authorization server.
#[derive(Debug, Clone, Args)]
pub struct TokenSource {
    /// The token endpoint, e.g. http://127.0.0.1:8080/token.
    #[arg(long)]
    pub token_url: Option<String>,
    /// The client id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// A file holding the client secret (otherwise `STEELCUT_CLIENT_SECRET`).
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// Refused: a secret on the command line is visible to every user in `ps`.
    #[arg(long, hide = true)]
    pub client_secret: Option<String>,
    /// How to send the client credentials (RFC 6749 section 2.3.1).
    #[arg(long, value_enum, default_value_t = AuthMethod::Basic)]
    pub auth_method: AuthMethod,
    /// The resource to request (RFC 8707); repeat for several.
    #[arg(long = "resource")]
    pub resources: Vec<String>,
    /// Space-separated scopes to request.
    #[arg(long)]
    pub scope: Option<String>,
    /// Do not read or write the token cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Token cache file (default: `$XDG_CACHE_HOME/steelcut/tokens.json`).
    #[arg(long)]
    pub cache_file: Option<PathBuf>,
    /// Reuse a cached token only while it has more than this many seconds left.
    #[arg(long, default_value_t = 60)]
    pub margin_secs: u64,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub source: TokenSource,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The resource URL, e.g. http://127.0.0.1:8080/api_v0.0.1.
    pub url: String,
    /// Use this access token instead of requesting one (`-` reads it from standard input).
    #[arg(long, conflicts_with = "token_url")]
    pub token: Option<String>,
    #[command(flatten)]
    pub source: TokenSource,
}
/// `steelcutd token`: prints an access token (from the cache when one is still good).
pub fn token_command(args: &TokenArgs) -> Result<()> {
    let source = TokenSource::checked(&args.source)?;
    let token = runtime()?.block_on(async {
        let http = wire::http_client().context("cannot set up the HTTP client")?;
        source.token(&http).await
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", token.access_token)?;
    out.flush()?;
    Ok(())
}

/// `steelcutd get URL`: prints the protected document.
pub fn get_command(args: &GetArgs) -> Result<()> {
    let url = parse_url(&args.url, "the resource URL")?;
    // Read everything the command needs before any network traffic, so a usage mistake is
    // reported as such and not after a token request.
    let given = match args.token.as_deref() {
        Some("-") => Some(read_token_from_stdin()?),
        Some(t) if t.trim().is_empty() => bail!("--token is empty"),
        Some(t) => Some(t.trim().to_owned()),
        None => None,
    };
    let source = match given {
        Some(_) => None,
        None if args.source.token_url.is_some() => Some(TokenSource::checked(&args.source)?),
        None => bail!(
            "give --token TOKEN (or --token - to read it from standard input), or --token-url \
             with --client-id and a secret in {SECRET_ENV} or --client-secret-file"
        ),
    };
    let body = runtime()?.block_on(async {
        let http = wire::http_client().context("cannot set up the HTTP client")?;
        let Some(source) = source else {
            let token = given.unwrap_or_default();
            return Ok::<_, anyhow::Error>(wire::fetch_resource(&http, &url, &token).await?);
        };
        let token = source.token(&http).await?;
        match wire::fetch_resource(&http, &url, &token.access_token).await {
            // A cached token can go stale early (the auth node rotated its key, the client
            // was changed): forget it and try once more with a fresh one.
            Err(ClientError::ResourceRefused { code, .. })
                if token.from_cache && code == "invalid_token" =>
            {
                source.forget();
                let token = source.fresh_token(&http).await?;
                Ok(wire::fetch_resource(&http, &url, &token.access_token).await?)
            }
            other => Ok(other?),
        }
    })?;
    let mut out = std::io::stdout().lock();
    out.write_all(&body)?;
    if !body.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// The tokio runtime of one command: a single thread is plenty for one or two requests.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A token and whether it came from the cache.
#[derive(Debug)]
pub struct Token {
    pub access_token: String,
    pub from_cache: bool,
}

/// A checked token source: where to ask, as whom, for what, and where to cache.
pub struct Source {
    token_url: Url,
    client_id: String,
    secret: SecretString,
    auth_method: AuthMethod,
    resources: Vec<String>,
    scope: Option<String>,
    cache: Option<TokenCache>,
    margin_secs: u64,
}

impl TokenSource {
    /// Checks the options and reads the secret, from the process environment.
    pub fn checked(&self) -> Result<Source> {
        Source::new(
            self,
            std::env::var_os(SECRET_ENV),
            std::env::var_os("XDG_CACHE_HOME"),
            std::env::var_os("HOME"),
        )
    }
}

impl Source {
    /// Checks the options; the environment is passed in so tests need not change the
    /// process environment.
    pub fn new(
        opts: &TokenSource,
        secret_env: Option<OsString>,
        xdg_cache_home: Option<OsString>,
        home: Option<OsString>,
    ) -> Result<Self> {
        if opts.client_secret.is_some() {
            bail!(
                "--client-secret is refused: a secret on the command line is visible to every \
                 user of this machine (ps, /proc/PID/cmdline) and lands in shell history; put \
                 it in the environment variable {SECRET_ENV} or in a file named with \
                 --client-secret-file"
            );
        }
        let token_url = parse_url(
            opts.token_url
                .as_deref()
                .ok_or_else(|| anyhow!("--token-url is required"))?,
            "--token-url",
        )?;
        let client_id = opts
            .client_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow!("--client-id is required"))?
            .to_owned();
        let secret = read_secret(opts.client_secret_file.as_deref(), secret_env)?;
        warn_if_cleartext(&token_url);
        let cache = if opts.no_cache {
            None
        } else {
            let path = match &opts.cache_file {
                Some(p) => p.clone(),
                None => cache::default_path(xdg_cache_home, home).ok_or_else(|| {
                    anyhow!(
                        "no cache directory (neither XDG_CACHE_HOME nor HOME is set): give \
                         --cache-file or --no-cache"
                    )
                })?,
            };
            Some(TokenCache::new(path))
        };
        let scope = opts
            .scope
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        Ok(Self {
            token_url,
            client_id,
            secret,
            auth_method: opts.auth_method,
            resources: opts.resources.clone(),
            scope,
            cache,
            margin_secs: opts.margin_secs,
        })
    }

    fn key(&self) -> CacheKey {
        CacheKey::new(
            self.token_url.as_str(),
            &self.client_id,
            &self.resources,
            self.scope.as_deref(),
        )
    }

    /// A cached token with more than the margin left, or a fresh one.
    pub async fn token(&self, http: &reqwest::Client) -> Result<Token> {
        if let Some(cache) = &self.cache {
            match cache.lookup(&self.key(), now_unix(), self.margin_secs) {
                Ok(Some(hit)) => {
                    return Ok(Token {
                        access_token: hit.access_token,
                        from_cache: true,
                    })
                }
                Ok(None) => {}
                Err(e) => eprintln!("warning: {e}"),
            }
        }
        self.fresh_token(http).await
    }

    /// Asks the token endpoint (never the cache) and caches the answer.
    pub async fn fresh_token(&self, http: &reqwest::Client) -> Result<Token> {
        let sent_at = now_unix();
        let params = TokenParams {
            client_id: &self.client_id,
            secret: &self.secret,
            auth_method: self.auth_method,
            resources: &self.resources,
            scope: self.scope.as_deref(),
        };
        let answer = wire::request_token(http, &self.token_url, &params, sent_at).await?;
        match (&self.cache, answer.expires_at) {
            (Some(cache), Some(expires_at)) => {
                let entry = CachedToken {
                    key: self.key(),
                    access_token: answer.access_token.clone(),
                    token_type: answer.token_type.clone(),
                    expires_at,
                    obtained_at: sent_at,
                    granted_scope: answer.scope.clone(),
                };
                if let Err(e) = cache.store(entry, now_unix()) {
                    eprintln!("warning: the token was not cached: {e}");
                }
            }
            // Without a lifetime there is no telling when the token stops working.
            (Some(_), None) => {
                eprintln!("warning: the token response has no expires_in; not caching it")
            }
            (None, _) => {}
        }
        Ok(Token {
            access_token: answer.access_token,
            from_cache: false,
        })
    }

    /// Drops this source's cached token.
    pub fn forget(&self) {
        if let Some(cache) = &self.cache {
            if let Err(e) = cache.remove(&self.key()) {
                eprintln!("warning: {e}");
            }
        }
    }

    pub fn cache_path(&self) -> Option<&Path> {
        self.cache.as_ref().map(|c| c.path())
    }
}

/// The client secret from `--client-secret-file` (preferred, being explicit) or the
/// environment. One trailing newline is dropped, as `echo` and editors add one.
fn read_secret(file: Option<&Path>, env: Option<OsString>) -> Result<SecretString> {
    let secret = match file {
        Some(path) => {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("--client-secret-file {}", path.display()))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o004 != 0 {
                bail!(
                    "--client-secret-file {} is readable by every user (mode {mode:03o}); \
                     run `chmod 600 {}` first",
                    path.display(),
                    path.display()
                );
            }
            let bytes = std::fs::read(path)
                .with_context(|| format!("--client-secret-file {}", path.display()))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow!("--client-secret-file {} is not UTF-8", path.display()))?;
            let text = SecretString::from(text);
            let trimmed = strip_one_newline(text.expose_secret());
            if trimmed.is_empty() {
                bail!("--client-secret-file {} is empty", path.display());
            }
            SecretString::from(trimmed.to_owned())
        }
        None => {
            let Some(value) = env else {
                bail!(
                    "no client secret: set {SECRET_ENV} or give --client-secret-file (a secret \
                     on the command line would be visible in ps)"
                );
            };
            let value = value
                .into_string()
                .map_err(|_| anyhow!("{SECRET_ENV} is not UTF-8"))?;
            let value = SecretString::from(value);
            let trimmed = strip_one_newline(value.expose_secret());
            if trimmed.is_empty() {
                bail!("{SECRET_ENV} is empty");
            }
            SecretString::from(trimmed.to_owned())
        }
    };
    Ok(secret)
}

fn strip_one_newline(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

fn parse_url(s: &str, what: &str) -> Result<Url> {
    let url = Url::parse(s).map_err(|e| anyhow!("{what} {s:?} is not a URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        bail!("{what} {s:?} must be an http or https URL");
    }
    Ok(url)
}

/// RFC 6749 section 2.3.1 requires TLS for client credentials; plain HTTP is tolerated on
/// loopback (tests, a sidecar) and warned about elsewhere.
fn warn_if_cleartext(url: &Url) {
    if url.scheme() != "http" {
        return;
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if !loopback {
        eprintln!(
            "warning: {url} is plain HTTP: the client secret crosses the network unencrypted"
        );
    }
}

fn read_token_from_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut s)
        .context("reading the token from standard input")?;
    let token = s.trim();
    if token.is_empty() {
        bail!("--token -: standard input is empty");
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn opts() -> TokenSource {
        TokenSource {
            token_url: Some("http://127.0.0.1:1/token".into()),
            client_id: Some("id".into()),
            client_secret_file: None,
            client_secret: None,
            auth_method: AuthMethod::Basic,
            resources: vec!["r".into()],
            scope: None,
            no_cache: false,
            cache_file: None,
            margin_secs: 60,
        }
    }

    #[test]
    fn a_secret_on_the_command_line_is_refused() {
        let mut o = opts();
        o.client_secret = Some("s".into());
        let e = Source::new(&o, Some("s".into()), None, Some("/h".into()))
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(msg.contains("ps") && msg.contains(SECRET_ENV), "{msg}");
    }

    #[test]
    fn the_secret_comes_from_the_environment_or_a_private_file() {
        let s = Source::new(&opts(), Some("abc\n".into()), None, Some("/h".into())).unwrap();
        assert_eq!(s.secret.expose_secret(), "abc");
        assert_eq!(
            s.cache_path().unwrap(),
            Path::new("/h/.cache/steelcut/tokens.json")
        );
        assert!(Source::new(&opts(), None, None, Some("/h".into())).is_err());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut o = opts();
        o.client_secret_file = Some(file.clone());
        let s = Source::new(&o, Some("env".into()), None, Some("/h".into())).unwrap();
        assert_eq!(s.secret.expose_secret(), "from-file\n");

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Source::new(&o, None, None, None).err().unwrap();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn a_missing_cache_directory_is_an_error_unless_the_cache_is_off() {
        assert!(Source::new(&opts(), Some("s".into()), None, None).is_err());
        let mut o = opts();
        o.no_cache = true;
        assert!(Source::new(&o, Some("s".into()), None, None)
            .unwrap()
            .cache_path()
            .is_none());
    }
}
