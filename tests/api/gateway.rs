//! A real gateway in front: Apache httpd with mod_auth_openidc (`OIDCOAuthVerifyJwksUri`,
//! Debian 12's packages) fetching steelcutd's JWKS over TLS from steelcutd itself, as an
//! operator would deploy it. It accepts RS256 and ES256 tokens, refuses a tampered one, and
//! refuses EdDSA tokens (its JOSE library, cjose 0.6, cannot parse `alg: EdDSA`), even with
//! the Ed25519 key published beside the others.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use crate::algorithms::node_key;
use crate::helpers::*;
use crate::resource::ISSUER;
use crate::tools::{require, APACHE, MOD_AUTH_OPENIDC};

/// A steelcutd auth node serving HTTPS with a throwaway certificate for 127.0.0.1, signing
/// with `alg`; returns it, an HTTPS client trusting the certificate, and the certificate file.
async fn tls_node(alg: &str, tls: &Path) -> (TestApp, reqwest::Client, PathBuf) {
    let cert = TestCert::new(tls);
    let app = spawn_app_from_toml(&format!(
        r#"roles = ["auth"]
[server]
listen = "127.0.0.1:0"
[server.tls]
cert = "{}"
key = "{}"
[database]
url = "sqlite://{{dir}}/steelcut.db"
[keys]
dir = "{{dir}}/keys"
signing_alg = "{alg}"
[auth]
issuer = "{ISSUER}"
"#,
        cert.cert.display(),
        cert.key.display()
    ))
    .await;
    let root = cert.root;
    let https = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    (app, https, cert.cert)
}

/// A token from the node's token endpoint over HTTPS.
async fn https_token(app: &TestApp, https: &reqwest::Client, client: &TestClient) -> String {
    let resp = https
        .post(format!("https://{}/token", app.addr))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", "api_v0.0.1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// The same token with one byte of its claims changed and its signature kept.
fn tampered(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let claims = String::from_utf8(B64.decode(parts[1]).unwrap()).unwrap();
    let changed = claims.replacen("\"sub\":\"", "\"sub\":\"0", 1);
    assert_ne!(claims, changed);
    format!("{}.{}.{}", parts[0], B64.encode(changed), parts[2])
}

const MODULES: &str = "/usr/lib/apache2/modules";

/// A throwaway `apache2 -X` on a loopback port, stopped when dropped.
struct Gateway {
    port: u16,
    root: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Gateway {
    async fn start(jwks_port: u16, ca: &Path) -> Self {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for sub in ["run", "logs", "htdocs/api", "tls"] {
            std::fs::create_dir_all(r.join(sub)).unwrap();
        }
        // Started as root, Apache serves as www-data, which must read the instance.
        for dir in [
            r.to_owned(),
            r.join("htdocs"),
            r.join("htdocs/api"),
            r.join("tls"),
        ] {
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        std::fs::write(
            r.join("htdocs/api/hello.json"),
            "{\"hello\": \"gateway\"}\n",
        )
        .unwrap();
        std::fs::copy(ca, r.join("tls/cert.pem")).unwrap();
        std::fs::set_permissions(
            r.join("tls/cert.pem"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let port = free_port();
        let user = if rustix::process::geteuid().is_root() {
            "User www-data\nGroup www-data"
        } else {
            ""
        };
        let conf = format!(
            r#"ServerRoot "{root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{root}/run/httpd.pid"
DefaultRuntimeDir "{root}/run"
ErrorLog "{root}/logs/error.log"
LogLevel warn
{user}
LoadModule mpm_event_module {MODULES}/mod_mpm_event.so
LoadModule authn_core_module {MODULES}/mod_authn_core.so
LoadModule authz_core_module {MODULES}/mod_authz_core.so
LoadModule authz_user_module {MODULES}/mod_authz_user.so
LoadModule mime_module {MODULES}/mod_mime.so
LoadModule auth_openidc_module {MOD_AUTH_OPENIDC}
StartServers 1
ServerLimit 1
ThreadsPerChild 4
MaxRequestWorkers 4
MinSpareThreads 1
MaxSpareThreads 4
Timeout 15
TypesConfig /dev/null
AddType application/json .json
DocumentRoot "{root}/htdocs"
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "{root}/htdocs">
    Require all granted
</Directory>
OIDCOAuthVerifyJwksUri https://127.0.0.1:{jwks_port}/.well-known/jwks.json
OIDCOAuthSSLValidateServer On
OIDCCABundlePath "{root}/tls/cert.pem"
OIDCOAuthRemoteUserClaim sub
<Location /api>
    AuthType oauth20
    <RequireAll>
        Require claim aud:api_v0.0.1
        Require claim iss:{ISSUER}
    </RequireAll>
</Location>
"#,
            root = r.display()
        );
        let conf_file = r.join("httpd.conf");
        std::fs::write(&conf_file, conf).unwrap();
        let mut child = tokio::process::Command::new(APACHE)
            .args(["-X", "-f", conf_file.to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(r.join("logs/stderr.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {APACHE}: {e}"));
        let log = r.join("logs");
        wait_for(Duration::from_secs(15), "Apache to listen", || {
            let exited = child.try_wait().unwrap();
            let log = log.clone();
            async move {
                if let Some(status) = exited {
                    panic!(
                        "apache2 exited ({status}):\n{}\n{}",
                        std::fs::read_to_string(log.join("stderr.log")).unwrap_or_default(),
                        std::fs::read_to_string(log.join("error.log")).unwrap_or_default()
                    );
                }
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await;
        Self {
            port,
            root,
            _child: child,
        }
    }

    async fn get(&self, token: &str) -> u16 {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/hello.json", self.port))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("logs/error.log")).unwrap_or_default()
    }
}

#[tokio::test]
async fn mod_auth_openidc_accepts_rs256_and_es256_tokens_and_refuses_tampered_and_eddsa_ones() {
    require(APACHE, "apache2-bin");
    require(MOD_AUTH_OPENIDC, "libapache2-mod-auth-openidc");
    for alg in ["RS256", "ES256"] {
        // 1. steelcutd signs with `alg` and serves its JWKS over TLS; an Ed25519 key is
        //    published beside its key (after it in the JWKS) but does not sign.
        let tls = tempfile::tempdir().unwrap();
        let (mut app, https, cert) = tls_node(alg, tls.path()).await;
        let out = app.cli(&["keys", "generate", "--alg", "EdDSA"]);
        assert!(out.status.success(), "{}", stderr(&out));
        app.reload().await.unwrap();
        let client = app.add_client(&["api_v0.0.1"], &[]).await;
        let token = https_token(&app, &https, &client).await;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg);
        // 2. Apache, pointed at that JWKS and trusting the certificate, accepts the token.
        let gateway = Gateway::start(app.addr.port(), &cert).await;
        assert_eq!(
            gateway.get(&token).await,
            200,
            "{alg}: {}",
            gateway.error_log()
        );
        // 3. A tampered token is refused.
        assert_eq!(gateway.get(&tampered(&token)).await, 401, "{alg}");
        // 4. A genuine EdDSA token from the published Ed25519 key is refused: the gateway
        //    cannot parse the algorithm.
        let eddsa = node_key(&app);
        assert_eq!(eddsa.alg(), steelcut::keys::Alg::EdDsa);
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
        let eddsa_token = eddsa.sign_jwt(claims.to_string().as_bytes()).unwrap();
        assert_eq!(gateway.get(&eddsa_token).await, 401, "{alg}: EdDSA");
        let log = gateway.error_log();
        assert!(log.contains("could not parse JWT"), "{alg}: {log}");
    }
}
