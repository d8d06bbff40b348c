//! Key files any tool can read: `keys generate` writes PKCS#8 v1 PEM files (RFC 5208; RFC 8410
//! section 7 for Ed25519), byte for byte what OpenSSL writes for the same key, and OpenSSL and
//! Python `cryptography` load each one and derive the public key steelcut publishes.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject as _;

use crate::helpers::*;
use crate::tools::{python, require, require_python_module, run, OPENSSL};

/// Generates one key of `alg` with the real CLI in a fresh directory; returns the directory,
/// the key file and the kid printed.
fn generate(alg: &str) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let none = dir.path().join("no-config.toml");
    let out = steelcutd(&[
        "keys",
        "generate",
        "--config",
        none.to_str().unwrap(),
        "--dir",
        keys.to_str().unwrap(),
        "--alg",
        alg,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kid = stdout(&out).trim().to_owned();
    let files: Vec<PathBuf> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    (dir, files[0].clone(), kid)
}

/// The kid steelcut derives from a SubjectPublicKeyInfo.
fn kid_of_spki(der: &[u8]) -> String {
    steelcut::keys::jwk::from_spki_der(der)
        .unwrap_or_else(|e| panic!("{e}"))
        .thumbprint()
}

/// What OpenSSL makes of the file: it loads (`-noout`), its public key, and the private key as
/// OpenSSL itself writes it (PKCS#8 PEM).
async fn openssl_reads(file: &Path) -> (Vec<u8>, Vec<u8>) {
    let file = file.to_str().unwrap();
    let out = run(OPENSSL, &["pkey", "-in", file, "-noout"], &[]).await;
    assert!(
        out.status.success(),
        "openssl pkey -noout: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = run(
        OPENSSL,
        &["pkey", "-in", file, "-pubout", "-outform", "DER"],
        &[],
    )
    .await;
    assert!(
        public.status.success(),
        "{}",
        String::from_utf8_lossy(&public.stderr)
    );
    // PEM: OpenSSL writes PKCS#8 there (its DER output would be the traditional form).
    let private = run(OPENSSL, &["pkey", "-in", file], &[]).await;
    assert!(
        private.status.success(),
        "{}",
        String::from_utf8_lossy(&private.stderr)
    );
    (public.stdout, private.stdout)
}

const PY_LOAD: &str = r#"
import sys
from cryptography.hazmat.primitives import serialization
with open(sys.argv[1], "rb") as f:
    key = serialization.load_pem_private_key(f.read(), password=None)
print(key.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo).hex())
"#;

#[tokio::test]
async fn a_generated_key_of_every_algorithm_is_a_pkcs8_v1_file_openssl_and_python_read() {
    require(OPENSSL, "openssl");
    require_python_module("cryptography", "python3-cryptography").await;
    for alg in ["EdDSA", "ES256", "RS256"] {
        // 1. `keys generate --alg` writes one owner-only PEM file.
        let (_dir, file, kid) = generate(alg);
        let pem = std::fs::read(&file).unwrap();
        assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----\n"), "{alg}");
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(&pem).unwrap();
        let info = pkcs8::PrivateKeyInfo::try_from(der.secret_pkcs8_der()).unwrap();
        assert_eq!(info.version(), pkcs8::Version::V1, "{alg}: not PKCS#8 v1");
        // 2. OpenSSL loads it, derives the key steelcut publishes, and writes the same bytes.
        let (public, private) = openssl_reads(&file).await;
        assert_eq!(kid_of_spki(&public), kid, "{alg}: OpenSSL's public key");
        assert_eq!(
            String::from_utf8_lossy(&private),
            String::from_utf8_lossy(&pem),
            "{alg}: OpenSSL writes the key differently"
        );
        // 3. Python cryptography loads it and derives the same public key.
        let spki = python(PY_LOAD, &[file.to_str().unwrap()]).await;
        let spki = hex::decode(spki.trim()).unwrap();
        assert_eq!(kid_of_spki(&spki), kid, "{alg}: cryptography's public key");
    }
}

#[tokio::test]
async fn an_rsa_key_has_3072_bits_unless_asked_and_never_fewer_than_2048() {
    require(OPENSSL, "openssl");
    let (_dir, file, _) = generate("RS256");
    let out = run(
        OPENSSL,
        &["pkey", "-in", file.to_str().unwrap(), "-noout", "-text"],
        &[],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Private-Key: (3072 bit, 2 primes)"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let out = steelcutd(&[
        "keys",
        "generate",
        "--config",
        dir.path().join("none.toml").to_str().unwrap(),
        "--dir",
        dir.path().join("keys").to_str().unwrap(),
        "--alg",
        "RS256",
        "--rsa-bits",
        "1024",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("2048, 3072 or 4096"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("keys").exists());
}

#[tokio::test]
async fn keys_written_by_openssl_genpkey_load_with_their_algorithms() {
    require(OPENSSL, "openssl");
    // An operator may bring keys made elsewhere: OpenSSL's own files of each algorithm.
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for (name, args) in [
        ("a", &["-algorithm", "ed25519"][..]),
        (
            "b",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        ),
        (
            "c",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
        ),
    ] {
        let file = keys.join(format!("{name}.pem"));
        let mut all = vec!["genpkey"];
        all.extend_from_slice(args);
        all.extend(["-out", file.to_str().unwrap()]);
        let out = run(OPENSSL, &all, &[]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    let out = steelcutd(&[
        "keys",
        "list",
        "--json",
        "--config",
        dir.path().join("none.toml").to_str().unwrap(),
        "--dir",
        keys.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut algs: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["alg"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    algs.sort();
    assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);
}

#[tokio::test]
async fn an_rsa_key_file_under_2048_bits_is_refused() {
    require(OPENSSL, "openssl");
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let file = keys.join("weak.pem");
    let args = [
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
    ];
    let out = run(
        OPENSSL,
        &[&args[..], &[file.to_str().unwrap()]].concat(),
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = steelcutd(&[
        "keys",
        "list",
        "--config",
        dir.path().join("none.toml").to_str().unwrap(),
        "--dir",
        keys.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("weak.pem") && err.contains("(TooSmall)"),
        "{err}"
    );
}
