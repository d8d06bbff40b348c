//! HTTPS: loading a certificate chain and key into a rustls acceptor that offers HTTP/2 and
//! HTTP/1.1 over ALPN. The acceptor in force is published through an [`ArcSwap`], so SIGHUP can
//! swap in renewed certificates without dropping the listener; a handshake in progress keeps
//! the acceptor it started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// The acceptor in force, replaced whole on reload.
pub type TlsHandle = Arc<ArcSwap<TlsAcceptor>>;

/// Why the certificate and key do not make a TLS acceptor. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("TLS set-up: {0}")]
    Setup(#[source] rustls::Error),
    #[error("{cert} and {key} do not form a usable certificate and key: {source}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Builds an acceptor from PEM files.
pub fn load(config: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let certs = read_certs(&config.cert)?;
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|source| TlsError::Pem {
        path: config.key.clone(),
        source,
    })?;
    // ring explicitly: never depend on which crypto provider other crates happened to enable.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Pair {
            cert: config.cert.clone(),
            key: config.key.clone(),
            source,
        })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}
