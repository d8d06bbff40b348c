//! HTTPS: loading a certificate chain and key into a rustls acceptor that offers HTTP/2 and
//! HTTP/1.1 over ALPN. The acceptor sits behind a lock so SIGHUP can swap in renewed
//! certificates without dropping the listener; a handshake in progress keeps the old one.

use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio_rustls::rustls::{self, pki_types::CertificateDer, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// The acceptor in force; `None` serves plain HTTP.
pub type TlsHandle = Arc<RwLock<Option<TlsAcceptor>>>;

/// Builds an acceptor from PEM files; the message names the file at fault.
pub fn load(config: &TlsConfig) -> Result<TlsAcceptor, String> {
    let certs = read_certs(&config.cert)?;
    let key = read_key(&config.key)?;
    // ring explicitly: never depend on which crypto provider other crates happened to enable.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} and {} do not form a usable certificate and key: {e}",
                config.cert.display(),
                config.key.display()
            )
        })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no PEM private key found", path.display()))
}
